"""TAP async: UWS 1.1 jobs at ``/tap/async`` (the job model: ``api/uws.py``, the store:
``api/job_store.py``, the runner: ``api/jobs.py``).

Every change answers 303 See Other: to the job (create, phase, parameters, execution
duration, destruction) or to the job list (delete). Documents are UWS 1.1 XML
(namespace ``http://www.ivoa.net/xml/UWS/v1.0``); a wrong request gets a DALI error
VOTable with the HTTP status of its error class.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from contextlib import suppress
from datetime import datetime
from typing import Annotated
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from qserv_py.api.auth import caller_of, check_owner, job_limit, require_user
from qserv_py.api.deps import ParamsDep
from qserv_py.api.esatapplus import GZIP_HEADERS, compressed_file, gzip_for
from qserv_py.api.formats import VOTABLE_MEDIA, disposition, error_document
from qserv_py.api.job_store import MAX_WAIT_S
from qserv_py.api.jobs import SWEEP_S, Jobs
from qserv_py.api.uws import (
    ABORTED,
    COMPLETED,
    ERROR,
    Job,
    JobRef,
    isoformat,
    parse_phase,
    parse_time,
)
from qserv_py.errors import ClusterError, JobError, UnknownJob

log = logging.getLogger(__name__)

async def job_access(request: Request) -> None:
    """A job's routes are its owner's (and an admin's): anyone else gets 403 (see
    api/auth.py; with auth = none everybody is an admin)."""
    job_id = request.path_params.get("job_id")
    caller = caller_of(request)
    if job_id is None or caller.admin:
        return
    job = await run_in_threadpool(get_jobs(request).get, job_id)
    check_owner(caller, job.owner, f"job {job_id}")


router = APIRouter(
    prefix="/tap/async", tags=["TAP async (UWS)"], dependencies=[Depends(job_access)]
)

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_NAMESPACES = f'xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" xmlns:xsi="{XSI_NS}"'
_XML_MEDIA = "text/xml"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --- life cycle (called by the app's lifespan) --------------------------------------------


async def start(app: FastAPI) -> None:
    """Start the job runner, recover jobs of stopped service processes, destroy expired
    jobs, and sweep again every SWEEP_S seconds."""
    jobs = Jobs(app.state.service, asyncio.get_running_loop())
    jobs.open()
    app.state.jobs = jobs
    await _sweep(jobs, None)
    app.state.jobs_sweeper = asyncio.create_task(_sweep_forever(jobs))


async def stop(app: FastAPI) -> None:
    """Stop the sweeper and the runner (running jobs get a short grace, then are killed)."""
    sweeper = getattr(app.state, "jobs_sweeper", None)
    if sweeper is not None:
        sweeper.cancel()
        with suppress(asyncio.CancelledError):
            await sweeper
    jobs: Jobs | None = getattr(app.state, "jobs", None)
    if jobs is not None:
        await run_in_threadpool(jobs.stop)


async def _sweep(jobs: Jobs, last_problem: str | None) -> str | None:
    """One sweep; the problem it met (logged when it is a new one)."""
    try:
        await run_in_threadpool(jobs.sweep)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        if problem != last_problem:
            log.warning("async jobs: cannot sweep: %s", problem)
        return problem
    return None


async def _sweep_forever(jobs: Jobs) -> None:
    problem: str | None = None
    while True:
        await asyncio.sleep(SWEEP_S)
        problem = await _sweep(jobs, problem)


def get_jobs(request: Request) -> Jobs:
    jobs: Jobs | None = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise ClusterError("the async job runner is not running")
    return jobs


JobsDep = Annotated[Jobs, Depends(get_jobs)]


# --- URLs ------------------------------------------------------------------------------------


def list_url(request: Request, jobs: Jobs) -> str:
    base = jobs.settings.public_url or str(request.base_url)
    return base.rstrip("/") + "/tap/async"


def job_url(request: Request, jobs: Jobs, job_id: str) -> str:
    return f"{list_url(request, jobs)}/{job_id}"


def see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


# --- the job list ----------------------------------------------------------------------------


@router.post("", summary="Create a job (PHASE=RUN also runs it)", status_code=303)
def create_job(request: Request, params: ParamsDep, jobs: JobsDep) -> Response:
    caller = caller_of(request)
    if params.all("upload"):
        require_user(jobs.settings, caller, "uploads")
    run = (params.get("phase") or "").strip().upper() == "RUN"
    with job_limit(jobs.settings, jobs.service.spec, caller.name if run else None):
        job = jobs.create(params, owner=caller.name)
    return see_other(job_url(request, jobs, job.id))


@router.get("", summary="The jobs (filters PHASE, AFTER, LAST)")
def job_list(request: Request, params: ParamsDep, jobs: JobsDep) -> Response:
    phases = [parse_phase("PHASE", value) for value in params.all("phase")]
    after = params.get("after")
    last = params.int("last")
    if last is not None and last < 1:
        raise JobError(f"LAST={last} is not a positive number of jobs")
    caller = caller_of(request)
    refs = jobs.job_list(
        phases or None,
        parse_time("AFTER", after) if after is not None else None,
        last,
        of_owner=None if caller.admin else (caller.name,),
    )
    return _xml(jobs_document(refs, list_url(request, jobs)))


# --- a job -------------------------------------------------------------------------------------


@router.get("/{job_id}", summary="The job (WAIT=n blocks while it is active)")
async def get_job(request: Request, job_id: str, params: ParamsDep, jobs: JobsDep) -> Response:
    wait = params.get("wait")
    if wait is None:
        job = await run_in_threadpool(jobs.get, job_id)
    else:
        phase = params.get("phase")
        job = await jobs.wait(
            job_id, _wait_seconds(wait), parse_phase("PHASE", phase) if phase else None
        )
    return _xml(job_document(job, job_url(request, jobs, job.id)))


@router.delete("/{job_id}", summary="Destroy the job", status_code=303)
def delete_job(request: Request, job_id: str, jobs: JobsDep) -> Response:
    jobs.delete(job_id)
    return see_other(list_url(request, jobs))


@router.post("/{job_id}", summary="ACTION=DELETE destroys the job", status_code=303)
def post_job(request: Request, job_id: str, params: ParamsDep, jobs: JobsDep) -> Response:
    action = params.get("action")
    if action is None or action.strip().upper() != "DELETE":
        raise JobError(
            f"ACTION={action!r} is not supported here; POST ACTION=DELETE to destroy the job, "
            "or POST to its /phase, /parameters, /executionduration or /destruction"
        )
    jobs.delete(job_id)
    return see_other(list_url(request, jobs))


@router.get("/{job_id}/phase", summary="The job's phase", response_class=PlainTextResponse)
def get_phase(job_id: str, jobs: JobsDep) -> str:
    return jobs.get(job_id).phase


@router.post("/{job_id}/phase", summary="PHASE=RUN or PHASE=ABORT", status_code=303)
def post_phase(request: Request, job_id: str, params: ParamsDep, jobs: JobsDep) -> Response:
    run = (params.get("phase") or "").strip().upper() == "RUN"
    with job_limit(jobs.settings, jobs.service.spec, jobs.get(job_id).owner if run else None):
        jobs.set_phase(job_id, params)
    return see_other(job_url(request, jobs, job_id))


@router.get("/{job_id}/executionduration", response_class=PlainTextResponse)
def get_execution_duration(job_id: str, jobs: JobsDep) -> str:
    return str(jobs.get(job_id).execution_duration)


@router.post("/{job_id}/executionduration", status_code=303)
def post_execution_duration(
    request: Request, job_id: str, params: ParamsDep, jobs: JobsDep
) -> Response:
    jobs.set_execution_duration(job_id, params.get("executionduration"))
    return see_other(job_url(request, jobs, job_id))


@router.get("/{job_id}/destruction", response_class=PlainTextResponse)
def get_destruction(job_id: str, jobs: JobsDep) -> str:
    return isoformat(jobs.get(job_id).destruction)


@router.post("/{job_id}/destruction", status_code=303)
def post_destruction(request: Request, job_id: str, params: ParamsDep, jobs: JobsDep) -> Response:
    jobs.set_destruction(job_id, params.get("destruction"))
    return see_other(job_url(request, jobs, job_id))


@router.get("/{job_id}/quote", summary="No estimate (empty)", response_class=PlainTextResponse)
def get_quote(job_id: str, jobs: JobsDep) -> str:
    jobs.get(job_id)
    return ""


@router.get(
    "/{job_id}/owner", summary="The job's user (empty: anonymous)", response_class=PlainTextResponse
)
def get_owner(job_id: str, jobs: JobsDep) -> str:
    return jobs.get(job_id).owner or ""


@router.get("/{job_id}/error", summary="The DALI error document of an ERROR job")
def get_error(job_id: str, jobs: JobsDep) -> Response:
    job = jobs.get(job_id)
    if job.phase != ERROR:
        raise UnknownJob(f"job {job_id} has no error: it is {job.phase}")
    return Response(error_document(job.error or "unknown error"), media_type=VOTABLE_MEDIA)


@router.get("/{job_id}/parameters")
def get_parameters(job_id: str, jobs: JobsDep) -> Response:
    return _xml(_document("parameters", _parameters(jobs.get(job_id), "")))


@router.post("/{job_id}/parameters", summary="Change parameters while PENDING", status_code=303)
def post_parameters(request: Request, job_id: str, params: ParamsDep, jobs: JobsDep) -> Response:
    jobs.set_parameters(job_id, params)
    return see_other(job_url(request, jobs, job_id))


@router.get("/{job_id}/results")
def get_results(request: Request, job_id: str, jobs: JobsDep) -> Response:
    job = jobs.get(job_id)
    return _xml(_document("results", _results(job, job_url(request, jobs, job_id), "")))


@router.get("/{job_id}/results/result", summary="The result of a COMPLETED job")
def get_result(request: Request, job_id: str, jobs: JobsDep) -> Response:
    job = jobs.get(job_id)
    path = jobs.result_path(job)
    if not path.is_file():
        raise UnknownJob(f"the result file of job {job_id} is gone; run the query again")
    headers = disposition(f"job_{job_id}{path.suffix}")
    if gzip_for(request.state, job.result_type):  # /esa/tap: as astroquery's TapPlus wants
        return StreamingResponse(
            compressed_file(path), media_type=job.result_type, headers={**headers, **GZIP_HEADERS}
        )
    return FileResponse(path, media_type=job.result_type, headers=headers)


# --- documents -------------------------------------------------------------------------------


def _wait_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if seconds == -1:
        return MAX_WAIT_S
    if not math.isfinite(seconds) or seconds < 0:
        raise JobError(
            f"WAIT={value!r} is not a number of seconds; give WAIT=n (n ≥ 0) or WAIT=-1 "
            f"(as long as the service allows, {MAX_WAIT_S:g} s)"
        )
    return min(seconds, MAX_WAIT_S)


def _xml(body: str) -> Response:
    return Response(body.encode(), media_type=_XML_MEDIA)


def _text(value: str) -> str:
    """XML character data (characters XML 1.0 does not allow become U+FFFD)."""
    return escape(_NOT_XML.sub("\ufffd", value))


def _element(name: str, value: str | None, indent: str = "  ") -> str:
    if value is None:
        return f'{indent}<uws:{name} xsi:nil="true"/>\n'
    return f"{indent}<uws:{name}>{_text(value)}</uws:{name}>\n"


def _document(root: str, inner: str) -> str:
    """A UWS document whose root element ``uws:<root>`` holds ``inner``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<uws:{root} {_NAMESPACES} version="1.1">\n{inner}</uws:{root}>\n'
    )


def _time(moment: datetime | None) -> str | None:
    return isoformat(moment) if moment is not None else None


def jobs_document(refs: list[JobRef], base: str) -> str:
    """The job list (``uws:jobs`` of ``uws:jobref``, UWS 1.1 shortJobDescription)."""
    parts = []
    for ref in refs:
        parts.append(
            f'  <uws:jobref id={quoteattr(ref.id)} xlink:type="simple"'
            f" xlink:href={quoteattr(f'{base}/{ref.id}')}>\n"
            + _element("phase", ref.phase, "    ")
            + (_element("runId", ref.run_id, "    ") if ref.run_id is not None else "")
            + _element("ownerId", ref.owner, "    ")
            + _element("creationTime", isoformat(ref.creation_time), "    ")
            + "  </uws:jobref>\n"
        )
    return _document("jobs", "".join(parts))


def job_document(job: Job, url: str) -> str:
    """The ``uws:job`` document (UWS 1.1 jobSummary, elements in the schema's order)."""
    inner = (
        _element("jobId", job.id)
        + (_element("runId", job.run_id) if job.run_id is not None else "")
        + _element("ownerId", job.owner)
        + _element("phase", job.phase)
        + _element("quote", None)
        + _element("creationTime", isoformat(job.creation_time))
        + _element("startTime", _time(job.start_time))
        + _element("endTime", _time(job.end_time))
        + _element("executionDuration", str(job.execution_duration))
        + _element("destruction", isoformat(job.destruction))
        + _parameters(job, "  ")
        + _results(job, url, "  ")
        + _error_summary(job)
        + _job_info(job)
    )
    return _document("job", inner)


def _parameters(job: Job, indent: str) -> str:
    lines = [f"{indent}<uws:parameters>\n"] if indent else []
    for name, values in sorted(job.parameters.items()):
        for value in values:
            lines.append(
                f"{indent}  <uws:parameter id={quoteattr(name)}>{_text(value)}</uws:parameter>\n"
            )
    if indent:
        lines.append(f"{indent}</uws:parameters>\n")
    return "".join(lines)


def _results(job: Job, url: str, indent: str) -> str:
    lines = [f"{indent}<uws:results>\n"] if indent else []
    if job.phase == COMPLETED and job.result_file is not None:
        attributes = f' size="{job.result_size}"' if job.result_size is not None else ""
        if job.result_type:
            attributes += f" mime-type={quoteattr(job.result_type)}"
        lines.append(
            f'{indent}  <uws:result id="result" xlink:type="simple"'
            f" xlink:href={quoteattr(url + '/results/result')}{attributes}/>\n"
        )
    if indent:
        lines.append(f"{indent}</uws:results>\n")
    return "".join(lines)


def _error_summary(job: Job) -> str:
    if job.phase not in (ERROR, ABORTED):
        return ""
    kind = "fatal" if job.phase == ERROR else "transient"
    detail = "true" if job.phase == ERROR else "false"
    message = job.error or ("aborted" if job.phase == ABORTED else "unknown error")
    return (
        f'  <uws:errorSummary type="{kind}" hasDetail="{detail}">\n'
        + _element("message", message, "    ")
        + "  </uws:errorSummary>\n"
    )


def _job_info(job: Job) -> str:
    """Extra facts (elements in no namespace): the engine query, rows, overflow."""
    facts = []
    if job.query_id is not None:
        facts.append(f"    <queryId>{job.query_id}</queryId>\n")
    if job.result_rows is not None:
        facts.append(f"    <rows>{job.result_rows}</rows>\n")
    if job.overflow is not None:
        facts.append(f"    <overflow>{'true' if job.overflow else 'false'}</overflow>\n")
    if not facts:
        return ""
    return "  <uws:jobInfo>\n" + "".join(facts) + "  </uws:jobInfo>\n"
