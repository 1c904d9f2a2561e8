"""TAP async jobs (UWS 1.1): the job store on the czar, and the runner.

A job is a row of ``qserv_meta.uws_jobs`` (``sql/czar/005_jobs.sql``) and a directory
``<results_dir>/<id>/`` that holds the files uploaded with it and its result
(``result.<ext>``). Both outlive the service process: a new process on the same cluster
sees the old jobs and serves their results, until their destruction time.

Phases (UWS 1.1): PENDING —PHASE=RUN→ QUEUED → EXECUTING → COMPLETED | ERROR |
ABORTED; PHASE=ABORT takes a PENDING, QUEUED or EXECUTING job to ABORTED, and cancels the
worker statements of its query. A job runs in a thread pool of ``async_concurrency``
threads, at most ``executionDuration`` seconds.

Several service processes may share a cluster. Each is a *runner* with a random id, alive
while it holds its czar session named ``qserv_py:uws:<id>`` (opened at start, closed at
stop, reopened by the sweeper if it breaks). A job QUEUED or EXECUTING in a runner that
is gone (the service stopped or died) is recovered by the next runner that sweeps (at
its start, then every minute): a QUEUED job is queued again; an EXECUTING one becomes
ERROR and its query is killed — a query that may have taken the service down is not run
again behind the user's back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from fastapi.concurrency import run_in_threadpool
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from qserv_py.api import formats
from qserv_py.api.deps import TapParams
from qserv_py.api.routes.tap import query_text
from qserv_py.api.service import Outcome, Service, language
from qserv_py.api.uploads import read_uploads
from qserv_py.config import Settings
from qserv_py.errors import (
    InstanceUnreachable,
    JobError,
    JobStateError,
    MetadataError,
    QservError,
    QueryError,
    QueryKilled,
    QueryRefused,
    QueryTimeout,
    UnknownJob,
)
from qserv_py.exec.tracking import kill_query

log = logging.getLogger(__name__)

PENDING, QUEUED, EXECUTING = "PENDING", "QUEUED", "EXECUTING"
COMPLETED, ERROR, ABORTED, ARCHIVED = "COMPLETED", "ERROR", "ABORTED", "ARCHIVED"
PHASES = (PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED, ARCHIVED)
#: the phases a WAIT blocks in (UWS 1.1 §2.2.1.1)
ACTIVE = (PENDING, QUEUED, EXECUTING)

#: the longest a WAIT blocks (WAIT=-1 and larger values get this)
MAX_WAIT_S = 60.0
#: how often a WAIT looks at the job itself (changes made by other service processes)
WAIT_POLL_S = 2.0
#: how often expired jobs are destroyed and jobs of vanished runners recovered
SWEEP_S = 60.0
#: at stop, how long running jobs may still finish before their queries are killed
STOP_GRACE_S = 3.0
#: a directory in results_dir without a job is removed once it is this old
STRAY_DIR_AGE_S = 3600.0

#: parameters that set the job's own attributes rather than being DALI parameters
CONTROL = frozenset({"phase", "runid", "executionduration", "destruction"})

STOPPED = "the service stopped while the job was executing; create the job again to rerun it"
ABORTED_ON_REQUEST = "aborted on request"

JOB_ID = re.compile(r"[A-Za-z0-9_-]{16}\Z")
_APP_PREFIX = "qserv_py:uws:"


def results_dir(settings: Settings) -> Path:
    """Where job files go: ``results_dir``, else ``results`` beside a local cluster's
    directory, else ``~/.local/share/qserv_py/results``."""
    if settings.results_dir is not None:
        return Path(settings.results_dir)
    if Path(settings.cluster).is_dir():
        return Path(settings.cluster).parent / "results"
    return Path.home() / ".local" / "share" / "qserv_py" / "results"


def owner_of(job_id: str) -> str:
    """The owner the engine records for a job's queries (``qserv_meta.queries.owner``)."""
    return f"uws:{job_id}"


def isoformat(moment: datetime) -> str:
    """UTC, milliseconds, ``Z``: ``2030-01-01T00:00:00.000Z`` (what pyvo and DALI read)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 time of a parameter (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise JobError(
            f"{name}={value!r} is not an ISO 8601 time; write e.g. 2030-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_phase(name: str, value: str) -> str:
    """A UWS phase name (case-insensitive)."""
    phase = value.strip().upper()
    if phase not in PHASES:
        raise JobError(f"{name}={value!r} is not a UWS phase; use one of {', '.join(PHASES)}")
    return phase


@dataclass(frozen=True)
class Job:
    """A job as stored (the columns of ``qserv_meta.uws_jobs``)."""

    id: str
    run_id: str | None
    owner: str | None
    phase: str
    parameters: dict[str, list[str]]
    uploads: dict[str, str]
    execution_duration: int
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    destruction: datetime
    runner: str | None
    query_id: int | None
    error: str | None
    result_file: str | None
    result_type: str | None
    result_size: int | None
    result_rows: int | None
    overflow: bool | None


@dataclass(frozen=True)
class JobRef:
    """A job as the job list shows it."""

    id: str
    phase: str
    run_id: str | None
    owner: str | None
    creation_time: datetime


_COLUMNS = ", ".join(Job.__dataclass_fields__)
_REF_COLUMNS = ", ".join(JobRef.__dataclass_fields__)
_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_stat_activity a"
    f" WHERE a.application_name = '{_APP_PREFIX}' || j.runner)"
)


@dataclass
class _Waiters:
    """The asyncio events of the WAIT requests of this process, by job id."""

    loop: asyncio.AbstractEventLoop
    events: dict[str, set[asyncio.Event]] = field(default_factory=dict)

    def notify(self, job_id: str) -> None:
        """Wake the WAITs on ``job_id`` (from any thread)."""
        with suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self._wake, job_id)

    def _wake(self, job_id: str) -> None:
        for event in self.events.get(job_id, ()):
            event.set()


class Jobs:
    """The async jobs of one service process: store, runner and sweeper."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.settings = service.settings
        self.directory = results_dir(self.settings)
        self.runner_id = secrets.token_hex(8)
        self._pool = ConnectionPool(
            service.spec.czar.dsn,
            kwargs=dict(autocommit=True, connect_timeout=10, application_name="qserv_py:uws"),
            min_size=1,
            max_size=self.settings.async_concurrency + 8,
            check=ConnectionPool.check_connection,
            name="qserv_py:uws",
            timeout=30.0,
            open=False,
        )
        self._executor = ThreadPoolExecutor(
            self.settings.async_concurrency, thread_name_prefix="uws-job"
        )
        self._running: set[str] = set()  # ids of the jobs executing in this process
        self._lock = threading.Lock()
        self._stopping = False
        self._ready = False
        self._waiters = _Waiters(loop)
        self._presence: psycopg.Connection | None = None

    # --- life cycle ---------------------------------------------------------------------

    def open(self) -> None:
        self._pool.open(wait=False)
        try:
            self._ensure_presence()
        except psycopg.Error as exc:  # the sweeper tries again
            log.warning("async jobs: cannot reach the czar: %s", exc)

    def _ensure_presence(self) -> None:
        """Hold the czar session that says this runner is alive (see the module's doc)."""
        if self._presence is not None and not self._presence.closed:
            try:
                self._presence.execute("SELECT 1")
                return
            except psycopg.Error:
                self._presence.close()
        self._presence = psycopg.connect(
            self.service.spec.czar.dsn,
            autocommit=True,
            connect_timeout=10,
            application_name=_APP_PREFIX + self.runner_id,
        )

    def stop(self) -> None:
        """Take no more jobs; let the running ones finish within STOP_GRACE_S, then kill
        their queries (they become ERROR). Jobs still queued stay QUEUED: the next runner
        queues them again."""
        self._stopping = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._wait_idle(STOP_GRACE_S)
        with self._lock:
            left = sorted(self._running)
        for job_id in left:
            try:
                with self._conn() as conn:
                    conn.execute(
                        "UPDATE qserv_meta.uws_jobs SET phase = 'ERROR', error = %s,"
                        " end_time = now() WHERE id = %s AND phase = 'EXECUTING'",
                        (STOPPED, job_id),
                    )
                self._kill_engine(job_id, STOPPED)
            except (QservError, psycopg.Error) as exc:
                log.warning("job %s: cannot stop it: %s", job_id, exc)
        self._wait_idle(STOP_GRACE_S)
        self._pool.close()
        if self._presence is not None:
            self._presence.close()

    def _wait_idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.05)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        if not self._ready:
            self._check_table()
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise InstanceUnreachable(
                "no session on the czar for async jobs within 30 s: it is unreachable or busy"
            ) from exc

    def _check_table(self) -> None:
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT to_regclass('qserv_meta.uws_jobs')").fetchone()
        except PoolTimeout as exc:
            raise InstanceUnreachable("cannot reach the czar for async jobs") from exc
        if row is None or row[0] is None:
            raise MetadataError(
                "async jobs need czar metadata version 5 (table qserv_meta.uws_jobs); run "
                "`qserv-py init` on the cluster to upgrade it (safe to run again)"
            )
        self._ready = True

    # --- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        with self._conn() as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            job = cur.execute(
                f"SELECT {_COLUMNS} FROM qserv_meta.uws_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        if job is None:
            raise UnknownJob(
                f"there is no job {job_id!r} (it may have been destroyed); see /tap/async"
            )
        return job

    def job_list(
        self,
        phases: list[str] | None = None,
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[JobRef]:
        """The jobs, newest first (the UWS 1.1 filters: any of ``phases``, created
        after ``after``, the ``last`` most recently created). Without ``phases``,
        ARCHIVED jobs are left out."""
        where: list[str] = []
        args: list[object] = []
        if phases:
            where.append("phase = ANY(%s)")
            args.append(phases)
        else:
            where.append("phase <> 'ARCHIVED'")
        if after is not None:
            where.append("creation_time > %s")
            args.append(after)
        sql = f"SELECT {_REF_COLUMNS} FROM qserv_meta.uws_jobs WHERE {' AND '.join(where)}"
        sql += " ORDER BY creation_time DESC, id"
        if last is not None:
            sql += " LIMIT %s"
            args.append(last)
        with self._conn() as conn, conn.cursor(row_factory=class_row(JobRef)) as cur:
            return cur.execute(sql, args).fetchall()

    def result_path(self, job: Job) -> Path:
        if job.phase != COMPLETED or job.result_file is None:
            raise UnknownJob(f"job {job.id} has no result: it is {job.phase}")
        return self.directory / job.id / job.result_file

    async def wait(self, job_id: str, seconds: float, phase: str | None) -> Job:
        """The job, once its phase differs from ``phase`` (default: its phase now), or is
        not active, or after ``seconds`` (UWS 1.1 §2.2.1.1, blocking)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(seconds, MAX_WAIT_S)
        event = asyncio.Event()
        self._waiters.events.setdefault(job_id, set()).add(event)
        try:
            job = await run_in_threadpool(self.get, job_id)
            reference = phase or job.phase
            while job.phase == reference and job.phase in ACTIVE:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, WAIT_POLL_S))
                event.clear()
                job = await run_in_threadpool(self.get, job_id)
            return job
        finally:
            waiting = self._waiters.events.get(job_id, set())
            waiting.discard(event)
            if not waiting:
                self._waiters.events.pop(job_id, None)

    # --- creating and changing ------------------------------------------------------------

    def create(self, params: TapParams) -> Job:
        """A new PENDING job with ``params`` (and the files sent with them); queued at once
        when PHASE=RUN is among them."""
        run = self._phase_request(params, allowed=("RUN",))
        values = {k: v for k, v in params.values.items() if k not in CONTROL}
        self._validate(TapParams(values, params.files))
        duration = self._duration(params.get("executionduration"))
        destruction = params.get("destruction")
        wanted = parse_time("DESTRUCTION", destruction) if destruction is not None else None
        job_id = secrets.token_urlsafe(12)
        uploads = self._save_files(job_id, params.files)
        try:
            with self._conn() as conn:
                conn.execute(
                    "INSERT INTO qserv_meta.uws_jobs (id, run_id, parameters, uploads,"
                    " execution_duration, destruction) VALUES (%(id)s, %(run)s, %(params)s,"
                    " %(uploads)s, %(duration)s, least(%(wanted)s::timestamptz,"
                    " now() + make_interval(secs => %(retention)s)))",
                    {
                        "id": job_id,
                        "run": params.get("runid"),
                        "params": Jsonb(values),
                        "uploads": Jsonb(uploads),
                        "duration": duration,
                        "wanted": wanted,
                        "retention": self.settings.job_retention_s,
                    },
                )
        except BaseException:
            shutil.rmtree(self.directory / job_id, ignore_errors=True)
            raise
        if run:
            self.run(job_id)
        return self.get(job_id)

    def set_phase(self, job_id: str, params: TapParams) -> None:
        """POST PHASE=RUN or PHASE=ABORT."""
        if self._phase_request(params, allowed=("RUN", "ABORT"), required=True) == "RUN":
            self.run(job_id)
        else:
            self.abort(job_id)

    def run(self, job_id: str) -> None:
        """Queue a PENDING job (a QUEUED or EXECUTING one is left as it is)."""
        with self._conn() as conn:
            queued = conn.execute(
                "UPDATE qserv_meta.uws_jobs SET phase = 'QUEUED', runner = %s"
                " WHERE id = %s AND phase = 'PENDING' RETURNING id",
                (self.runner_id, job_id),
            ).fetchone()
        if queued is None:
            job = self.get(job_id)
            if job.phase in (QUEUED, EXECUTING):
                return
            raise JobStateError(
                f"job {job_id} is {job.phase}: it cannot run again; create a new job"
            )
        self._waiters.notify(job_id)
        self._submit(job_id)

    def abort(self, job_id: str, reason: str = ABORTED_ON_REQUEST) -> None:
        """Abort a PENDING, QUEUED or EXECUTING job (a finished one is left as it is)."""
        with self._conn() as conn:
            row = conn.execute(
                "UPDATE qserv_meta.uws_jobs j SET phase = 'ABORTED', error = %s,"
                " end_time = now() FROM (SELECT id, phase FROM qserv_meta.uws_jobs"
                "  WHERE id = %s FOR UPDATE) old"
                " WHERE j.id = old.id AND j.phase IN ('PENDING', 'QUEUED', 'EXECUTING')"
                " RETURNING old.phase",
                (reason, job_id),
            ).fetchone()
        if row is None:
            self.get(job_id)  # UnknownJob if there is none
            return
        self._waiters.notify(job_id)
        if row[0] == EXECUTING:
            self._kill_engine(job_id, reason)

    def delete(self, job_id: str) -> None:
        """Destroy a job: cancel its query if it runs, delete its record and files."""
        with self._conn() as conn:
            row = conn.execute(
                "DELETE FROM qserv_meta.uws_jobs WHERE id = %s RETURNING phase", (job_id,)
            ).fetchone()
        if row is None:
            raise UnknownJob(f"there is no job {job_id!r}; see /tap/async")
        self._destroyed(job_id, row[0], "the job was deleted")

    def set_execution_duration(self, job_id: str, value: str | None) -> None:
        if value is None:
            raise JobError("EXECUTIONDURATION is missing: give the seconds the job may run")
        duration = self._duration(value)
        with self._conn() as conn:
            done = conn.execute(
                "UPDATE qserv_meta.uws_jobs SET execution_duration = %s"
                " WHERE id = %s AND phase = 'PENDING' RETURNING id",
                (duration, job_id),
            ).fetchone()
        if done is None:
            job = self.get(job_id)
            raise JobStateError(
                f"job {job_id} is {job.phase}: its execution duration can only change while "
                "it is PENDING"
            )

    def set_destruction(self, job_id: str, value: str | None) -> None:
        """A new destruction time: any time until creation + ``job_retention_s``."""
        if value is None:
            raise JobError("DESTRUCTION is missing: give an ISO 8601 time")
        wanted = parse_time("DESTRUCTION", value)
        with self._conn() as conn:
            done = conn.execute(
                "UPDATE qserv_meta.uws_jobs SET destruction = least(%s::timestamptz,"
                " creation_time + make_interval(secs => %s)) WHERE id = %s RETURNING id",
                (wanted, self.settings.job_retention_s, job_id),
            ).fetchone()
        if done is None:
            raise UnknownJob(f"there is no job {job_id!r}; see /tap/async")
        self._waiters.notify(job_id)

    def set_parameters(self, job_id: str, params: TapParams) -> None:
        """Change parameters of a PENDING job: each one given replaces its old values; files
        sent replace files of the same part name. RUNID, EXECUTIONDURATION and DESTRUCTION
        change those attributes."""
        job = self.get(job_id)
        self._check_pending(job)
        values = dict(job.parameters)
        values.update({k: v for k, v in params.values.items() if k not in CONTROL})
        files = self._files(job)
        files.update(params.files)
        self._validate(TapParams(values, files))
        if params.get("phase") is not None:
            raise JobError("PHASE cannot be set here: POST it to the job's /phase")
        duration = params.get("executionduration")
        if duration is not None:
            self.set_execution_duration(job_id, duration)
        destruction = params.get("destruction")
        if destruction is not None:
            self.set_destruction(job_id, destruction)
        uploads = dict(job.uploads)
        uploads.update(self._save_files(job_id, params.files))
        with self._conn() as conn:
            done = conn.execute(
                "UPDATE qserv_meta.uws_jobs SET parameters = %s, uploads = %s,"
                " run_id = coalesce(%s, run_id) WHERE id = %s AND phase = 'PENDING'"
                " RETURNING id",
                (Jsonb(values), Jsonb(uploads), params.get("runid"), job_id),
            ).fetchone()
        if done is None:
            self._check_pending(self.get(job_id))
        for part in params.files.keys() & job.uploads.keys():  # replaced files
            with suppress(FileNotFoundError):
                (self.directory / job_id / "uploads" / job.uploads[part]).unlink()

    # --- the runner ------------------------------------------------------------------------

    def _submit(self, job_id: str) -> None:
        if self._stopping:
            return  # it stays QUEUED; the next runner queues it again
        with suppress(RuntimeError):  # shut down meanwhile
            self._executor.submit(self._run, job_id)

    def _run(self, job_id: str) -> None:
        """Run a QUEUED job (in a thread of the pool)."""
        if self._stopping:
            return
        try:
            with self._conn() as conn, conn.cursor(row_factory=class_row(Job)) as cur:
                job = cur.execute(
                    "UPDATE qserv_meta.uws_jobs SET phase = 'EXECUTING', start_time = now(),"
                    f" runner = %s WHERE id = %s AND phase = 'QUEUED' RETURNING {_COLUMNS}",
                    (self.runner_id, job_id),
                ).fetchone()
        except (QservError, psycopg.Error) as exc:
            log.warning("job %s: cannot start it: %s", job_id, exc)
            return
        if job is None:
            return  # aborted or deleted while queued
        with self._lock:
            self._running.add(job_id)
        self._waiters.notify(job_id)
        try:
            self._finish(job, *self._outcome(job))
        except Exception:
            log.exception("job %s: cannot record its end", job_id)
        finally:
            with self._lock:
                self._running.discard(job_id)
            self._waiters.notify(job_id)

    def _execute(self, job: Job) -> Outcome:
        """Run the job's query: the one place a job meets the engine."""
        params = TapParams({k: list(v) for k, v in job.parameters.items()}, self._files(job))
        return self.service.run(
            query_text(params),
            language(params.get("lang")),
            maxrec=params.int("maxrec"),
            timeout_s=float(job.execution_duration),
            owner=owner_of(job.id),
        )

    def _outcome(self, job: Job) -> tuple[str, dict[str, object]]:
        """Run the job; its final phase and what to record with it."""
        try:
            params = TapParams(job.parameters)
            fmt = formats.parse_format(params.get("responseformat") or params.get("format"))
            outcome = self._execute(job)
            body = formats.render(
                outcome.table, fmt, truncated=outcome.truncated, info=outcome.info
            )
            name = f"result.{fmt.extension}"
            folder = self.directory / job.id
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{name}.part"
            partial.write_bytes(body)
            os.replace(partial, folder / name)
            return COMPLETED, {
                "result_file": name,
                "result_type": fmt.media_type,
                "result_size": len(body),
                "result_rows": outcome.table.num_rows,
                "overflow": outcome.truncated,
                "query_id": outcome.query_id,
            }
        except QueryKilled as exc:
            return ABORTED, {"error": f"the query was killed: {exc.message}"}
        except QueryTimeout as exc:
            limit = int(self.settings.async_timeout_limit_s)
            return ERROR, {
                "error": f"the job ran longer than its execution duration of "
                f"{job.execution_duration} s and was stopped ({exc.message}); ask for a longer "
                f"one (EXECUTIONDURATION, at most {limit} s) or make the query cheaper"
            }
        except QservError as exc:
            return ERROR, {"error": exc.message}
        except Exception as exc:
            log.exception("job %s failed", job.id)
            return ERROR, {"error": f"internal error ({type(exc).__name__}); see the service log"}

    def _finish(self, job: Job, phase: str, fields: dict[str, object]) -> None:
        """Record the end of an EXECUTING job; a job aborted or deleted meanwhile keeps
        its phase, and a result written for it is dropped."""
        names = sorted(fields)
        assignments = "".join(f", {name} = %({name})s" for name in names)
        with self._conn() as conn:
            done = conn.execute(
                f"UPDATE qserv_meta.uws_jobs SET phase = %(phase)s, end_time = now()"
                f"{assignments} WHERE id = %(id)s AND phase = 'EXECUTING' RETURNING id",
                {"phase": phase, "id": job.id, **fields},
            ).fetchone()
            exists = (
                done is not None
                or conn.execute(
                    "SELECT 1 FROM qserv_meta.uws_jobs WHERE id = %s", (job.id,)
                ).fetchone()
            )
        if done is None and "result_file" in fields:
            if exists:
                with suppress(FileNotFoundError):
                    (self.directory / job.id / str(fields["result_file"])).unlink()
            else:
                shutil.rmtree(self.directory / job.id, ignore_errors=True)

    def _kill_engine(self, job_id: str, reason: str) -> None:
        """Kill the running engine queries of a job (their worker statements too)."""
        with self._conn() as conn:
            ids = conn.execute(
                "SELECT id FROM qserv_meta.queries WHERE owner = %s"
                " AND status IN ('queued', 'running')",
                (owner_of(job_id),),
            ).fetchall()
        for (query_id,) in ids:
            with suppress(QueryError):  # it finished meanwhile
                kill_query(self.service.spec, query_id, reason=f"UWS job {job_id}: {reason}")

    # --- the sweeper -----------------------------------------------------------------------

    def sweep(self) -> None:
        """Recover the jobs of vanished runners, destroy expired jobs, kill queries of jobs
        that no longer execute, remove stray directories."""
        self._ensure_presence()
        self.recover()
        with self._conn() as conn:
            expired = conn.execute(
                "DELETE FROM qserv_meta.uws_jobs WHERE destruction <= now() RETURNING id, phase"
            ).fetchall()
            strays = conn.execute(
                "SELECT q.id, q.owner FROM qserv_meta.queries q"
                " WHERE q.status IN ('queued', 'running') AND q.owner LIKE 'uws:%'"
                " AND NOT EXISTS (SELECT 1 FROM qserv_meta.uws_jobs j"
                "  WHERE q.owner = 'uws:' || j.id AND j.phase = 'EXECUTING')"
            ).fetchall()
        for job_id, phase in expired:
            self._destroyed(job_id, phase, "the job reached its destruction time")
        for query_id, owner in strays:
            with suppress(QueryError):
                kill_query(self.service.spec, query_id, reason=f"{owner} no longer executes")
        self._remove_stray_dirs()

    def recover(self) -> None:
        """Take over the QUEUED jobs of runners that are gone; EXECUTING ones become ERROR."""
        with self._conn() as conn:
            lost = conn.execute(
                "UPDATE qserv_meta.uws_jobs j SET phase = 'ERROR', error = %s, end_time = now()"
                f" WHERE phase = 'EXECUTING' AND runner IS DISTINCT FROM %s AND NOT {_ALIVE}"
                " RETURNING id",
                (STOPPED, self.runner_id),
            ).fetchall()
            if self._stopping:
                queued = []
            else:
                queued = conn.execute(
                    "UPDATE qserv_meta.uws_jobs j SET runner = %s WHERE phase = 'QUEUED'"
                    f" AND runner IS DISTINCT FROM %s AND NOT {_ALIVE}"
                    " RETURNING id, creation_time",
                    (self.runner_id, self.runner_id),
                ).fetchall()
        for (job_id,) in lost:
            log.warning("job %s: its service process is gone; it is now ERROR", job_id)
            self._waiters.notify(job_id)
            self._kill_engine(job_id, STOPPED)
        for job_id, _ in sorted(queued, key=lambda r: r[1]):
            log.info("job %s: queued again (its service process is gone)", job_id)
            self._submit(job_id)

    def _destroyed(self, job_id: str, phase: str, reason: str) -> None:
        self._waiters.notify(job_id)
        if phase == EXECUTING:
            self._kill_engine(job_id, reason)
        shutil.rmtree(self.directory / job_id, ignore_errors=True)

    def _remove_stray_dirs(self) -> None:
        """Job directories without a job (a service that died between writing a job's
        files and recording it, or while destroying it)."""
        if not self.directory.is_dir():
            return
        now = time.time()
        candidates = []
        for entry in self.directory.iterdir():
            with suppress(OSError):
                if JOB_ID.match(entry.name) and now - entry.stat().st_mtime > STRAY_DIR_AGE_S:
                    candidates.append(entry.name)
        if not candidates:
            return
        with self._conn() as conn:
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM qserv_meta.uws_jobs WHERE id = ANY(%s)", (candidates,)
                )
            }
        for name in set(candidates) - known:
            shutil.rmtree(self.directory / name, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------

    def _validate(self, params: TapParams) -> None:
        """Refuse parameter values the job could never run with (the query itself is
        checked when the job runs: its errors make the job ERROR)."""
        request = params.get("request")
        if request is not None and request.strip().lower() != "doquery":
            raise QueryRefused(f"REQUEST={request!r} is not supported; use REQUEST=doQuery")
        language(params.get("lang"))
        self.service.maxrec(params.int("maxrec"))
        formats.parse_format(params.get("responseformat") or params.get("format"))
        if params.all("upload"):
            read_uploads(
                params,
                max_bytes=self.settings.upload_max_bytes,
                max_rows=self.settings.upload_max_rows,
            )

    def _duration(self, value: str | None) -> int:
        """The execution duration of a request: whole seconds, at most the service's limit
        (0, unlimited, also gets the limit)."""
        limit = max(1, int(self.settings.async_timeout_limit_s))
        if value is None:
            return min(max(1, math.ceil(self.settings.async_timeout_s)), limit)
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise JobError(
                f"EXECUTIONDURATION={value!r} is not a number of seconds ≥ 0; give e.g. 600 "
                f"(0: as long as the service allows, {limit} s)"
            )
        return limit if seconds == 0 else min(max(1, math.ceil(seconds)), limit)

    @staticmethod
    def _phase_request(
        params: TapParams, *, allowed: tuple[str, ...], required: bool = False
    ) -> str | None:
        value = params.get("phase")
        if value is None:
            if required:
                raise JobError(f"PHASE is missing: give PHASE={' or PHASE='.join(allowed)}")
            return None
        phase = value.strip().upper()
        if phase not in allowed:
            raise JobError(
                f"PHASE={value!r} is not allowed here; give PHASE={' or '.join(allowed)}"
            )
        return phase

    @staticmethod
    def _check_pending(job: Job) -> None:
        if job.phase != PENDING:
            raise JobStateError(
                f"job {job.id} is {job.phase}: its parameters can only change while it is "
                "PENDING; create a new job"
            )

    def _save_files(self, job_id: str, files: dict[str, bytes]) -> dict[str, str]:
        """Store multipart file parts in the job's directory; part name → file name."""
        saved: dict[str, str] = {}
        if not files:
            return saved
        folder = self.directory / job_id / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        for part, data in files.items():
            name = f"part-{secrets.token_hex(6)}"
            (folder / name).write_bytes(data)
            saved[part] = name
        return saved

    def _files(self, job: Job) -> dict[str, bytes]:
        """The file parts stored with a job, by part name."""
        folder = self.directory / job.id / "uploads"
        return {part: (folder / name).read_bytes() for part, name in job.uploads.items()}
