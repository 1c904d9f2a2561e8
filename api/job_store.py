"""The store of TAP async jobs (UWS 1.1): the czar table, the job directories, and the
changes a client asks for.

A job is a row of ``qserv_meta.uws_jobs`` (``sql/czar/005_jobs.sql``) and a directory
``<results_dir>/<id>/`` that holds the files uploaded with it and its result
(``result.<ext>``). Both outlive the service process: a new process on the same cluster
sees the old jobs and serves their results, until their destruction time.

:class:`JobStore` reads jobs, waits for their changes (UWS WAIT), and creates, queues,
aborts, deletes and edits them; what runs them is :class:`qserv_py.api.jobs.Jobs`, which
builds on it (a queued job is handed to it, an executing one that must stop is killed by
it).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from fastapi.concurrency import run_in_threadpool
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from qserv_py.api.deps import TapParams
from qserv_py.api.service import Service
from qserv_py.api.uws import ACTIVE, COMPLETED, EXECUTING, PENDING, QUEUED, Job, JobRef, parse_time
from qserv_py.config import Settings
from qserv_py.errors import (
    InstanceUnreachable,
    JobError,
    JobStateError,
    MetadataError,
    UnknownJob,
)

#: the longest a WAIT blocks (WAIT=-1 and larger values get this)
MAX_WAIT_S = 60.0
#: how often a WAIT looks at the job itself (changes made by other service processes)
WAIT_POLL_S = 2.0

#: parameters that set the job's own attributes rather than being DALI parameters
CONTROL = frozenset({"phase", "runid", "executionduration", "destruction"})

ABORTED_ON_REQUEST = "aborted on request"


def results_dir(settings: Settings) -> Path:
    """Where job files go: ``results_dir``, else ``results`` beside a local cluster's
    directory, else ``~/.local/share/qserv_py/results``."""
    if settings.results_dir is not None:
        return Path(settings.results_dir)
    if Path(settings.cluster).is_dir():
        return Path(settings.cluster).parent / "results"
    return Path.home() / ".local" / "share" / "qserv_py" / "results"


JOB_COLUMNS = ", ".join(Job.__dataclass_fields__)
_REF_COLUMNS = ", ".join(JobRef.__dataclass_fields__)


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


class JobStore(ABC):
    """The async jobs of one service process as stored; the runner (a subclass) hands
    queued jobs to its threads and kills the queries of jobs that stop executing."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.settings = service.settings
        self.directory = results_dir(self.settings)
        self.runner_id = secrets.token_hex(8)  # the runner this process is (api/jobs.py)
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
        self._ready = False
        self._waiters = _Waiters(loop)

    @abstractmethod
    def _submit(self, job_id: str) -> None:
        """Hand a job just QUEUED to the runner."""

    @abstractmethod
    def _kill_engine(self, job_id: str, reason: str) -> None:
        """Kill the engine queries of a job that no longer executes (aborted, deleted)."""

    @contextmanager
    def _conn(self, timeout: float = 30.0) -> Iterator[psycopg.Connection]:
        if not self._ready:
            self._check_table()
        try:
            with self._pool.connection(timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise InstanceUnreachable(
                f"no session on the czar for async jobs within {timeout:g} s: it is "
                "unreachable or busy"
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
                f"SELECT {JOB_COLUMNS} FROM qserv_meta.uws_jobs WHERE id = %s", (job_id,)
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
        of_owner: tuple[str | None] | None = None,
    ) -> list[JobRef]:
        """The jobs, newest first (the UWS 1.1 filters: any of ``phases``, created
        after ``after``, the ``last`` most recently created). Without ``phases``,
        ARCHIVED jobs are left out. ``of_owner=(name,)``: only the jobs of that owner
        (None: the anonymous ones)."""
        where: list[str] = []
        args: list[object] = []
        if of_owner is not None:
            where.append("owner IS NOT DISTINCT FROM %s")
            args.append(of_owner[0])
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

    def create(self, params: TapParams, owner: str | None = None) -> Job:
        """A new PENDING job of ``owner`` (None: anonymous) with ``params`` (and the files
        sent with them); queued at once when PHASE=RUN is among them.

        Only the UWS values (PHASE, EXECUTIONDURATION, DESTRUCTION) are refused here. The
        DALI ones are not: TAP 1.1 (§3.1) has a job with a bad query — or a wrong LANG,
        MAXREC, RESPONSEFORMAT, REQUEST or UPLOAD — created (303) and ended in ERROR when it
        runs, the error readable from the job (``/error``, ``errorSummary``)."""
        run = self._phase_request(params, allowed=("RUN",))
        values = {k: v for k, v in params.values.items() if k not in CONTROL}
        duration = self._duration(params.get("executionduration"))
        destruction = params.get("destruction")
        wanted = parse_time("DESTRUCTION", destruction) if destruction is not None else None
        job_id = secrets.token_urlsafe(12)
        uploads = self._save_files(job_id, params.files)
        try:
            with self._conn() as conn:
                conn.execute(
                    "INSERT INTO qserv_meta.uws_jobs (id, run_id, owner, parameters, uploads,"
                    " execution_duration, destruction) VALUES (%(id)s, %(run)s, %(owner)s,"
                    " %(params)s, %(uploads)s, %(duration)s, least(%(wanted)s::timestamptz,"
                    " now() + make_interval(secs => %(retention)s)))",
                    {
                        "id": job_id,
                        "owner": owner,
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

    def _destroyed(self, job_id: str, phase: str, reason: str) -> None:
        """A job whose record is gone: wake its WAITs, kill its query, remove its files."""
        self._waiters.notify(job_id)
        if phase == EXECUTING:
            self._kill_engine(job_id, reason)
        shutil.rmtree(self.directory / job_id, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------

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
