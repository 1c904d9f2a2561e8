"""TAP async jobs (UWS 1.1): the runner, on top of the job store
(:mod:`qserv_py.api.job_store`).

A job runs in a thread pool of ``async_concurrency`` threads, at most
``executionDuration`` seconds; its result is written to its directory, and its end
(COMPLETED, ERROR, or ABORTED when its query was killed) recorded on the czar.

Several service processes may share a cluster. Each is a *runner* with a random id, alive
while it holds its czar session named ``qserv_py:uws:<id>`` (opened at start, closed at
stop, reopened within a second when it breaks). A job QUEUED or EXECUTING in a runner
that is gone (the service stopped or died) is recovered by the next runner that sweeps
(at its start, then every minute): a QUEUED job is queued again; an EXECUTING one becomes
ERROR and its query is killed — a query that may have taken the service down is not run
again behind the user's back. The sweeper also destroys the jobs past their destruction
time.

The czar restarting ends every session on it: the runner waits for it to start a queued
job or record a job's end, and takes no runner for gone until the czar has been up for
``PRESENCE_GRACE_S`` (every live runner has opened its presence session again by then).
A job whose query lost its czar session ends in ERROR and says so (see ``Service.run``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import TypeVar

import psycopg
from psycopg.rows import class_row

from qserv_py.api import formats
from qserv_py.api.deps import TapParams
from qserv_py.api.job_store import JOB_COLUMNS, JobStore
from qserv_py.api.routes.tap import query_text
from qserv_py.api.service import Outcome, Service, language
from qserv_py.api.uploads import request_uploads
from qserv_py.api.uws import ABORTED, COMPLETED, ERROR, Job
from qserv_py.cluster.db import has_input
from qserv_py.errors import InstanceUnreachable, QservError, QueryError, QueryKilled, QueryTimeout
from qserv_py.exec import memory
from qserv_py.exec.tracking import flush, kill_query

log = logging.getLogger(__name__)

#: how often expired jobs are destroyed and jobs of vanished runners recovered
SWEEP_S = 60.0
#: at stop, how long running jobs may still finish before their queries are killed
STOP_GRACE_S = 3.0
#: a directory in results_dir without a job is removed once it is this old
STRAY_DIR_AGE_S = 3600.0
#: how often the presence session is looked at (no round trip), and a broken one reopened
PRESENCE_POLL_S = 0.5
#: a runner without a presence session is gone only if the czar has been up this long
PRESENCE_GRACE_S = 10.0
#: how long a job waiting for an unreachable czar waits for a session, and then pauses
CZAR_WAIT_S = 5.0
CZAR_RETRY_S = 1.0

T = TypeVar("T")

STOPPED = "the service stopped while the job was executing; create the job again to rerun it"

JOB_ID = re.compile(r"[A-Za-z0-9_-]{16}\Z")
_APP_PREFIX = "qserv_py:uws:"


def owner_of(job_id: str) -> str:
    """The owner the engine records for a job's queries (``qserv_meta.queries.owner``)."""
    return f"uws:{job_id}"


_ALIVE = (
    "(EXISTS (SELECT 1 FROM pg_stat_activity a"
    f" WHERE a.application_name = '{_APP_PREFIX}' || j.runner)"
    # (right after a czar restart, live runners may not have reconnected yet)
    " OR now() - pg_postmaster_start_time() < make_interval(secs => %s))"
)


class Jobs(JobStore):
    """The async jobs of one service process: store, runner and sweeper."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(service, loop)
        self._executor = ThreadPoolExecutor(
            self.settings.async_concurrency, thread_name_prefix="uws-job"
        )
        self._running: set[str] = set()  # ids of the jobs executing in this process
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = threading.Event()  # set by stop(): waits for the czar end
        self._presence: psycopg.Connection | None = None
        self._presence_lock = threading.Lock()
        self._presence_keeper = threading.Thread(
            target=self._keep_presence, name="uws-presence", daemon=True
        )

    # --- life cycle ---------------------------------------------------------------------

    def open(self) -> None:
        self._pool.open(wait=False)
        try:
            self._ensure_presence()
        except psycopg.Error as exc:  # the keeper tries again
            log.warning("async jobs: cannot reach the czar: %s", exc)
        self._presence_keeper.start()

    def _ensure_presence(self) -> None:
        """Hold the czar session that says this runner is alive (see the module's doc)."""
        with self._presence_lock:
            if self._presence is not None and not self._presence.closed:
                try:
                    self._presence.execute("SELECT 1")
                    return
                except psycopg.Error:
                    self._presence.close()
            if self._stopping:
                return
            self._presence = psycopg.connect(
                self.service.spec.czar.dsn,
                autocommit=True,
                connect_timeout=10,
                application_name=_APP_PREFIX + self.runner_id,
            )

    def _keep_presence(self) -> None:
        """(a thread) Reopen the presence session as soon as it breaks: the czar hung up
        (it restarted), which the session sees as input, without a round trip."""
        while not self._stopped.wait(PRESENCE_POLL_S):
            conn = self._presence
            if conn is None or conn.closed or has_input(conn):
                with suppress(psycopg.Error):  # still down: try again at the next poll
                    self._ensure_presence()

    def _on_czar(self, what: str, work: Callable[[psycopg.Connection, bool], T]) -> T:
        """``work(session, again)`` on the czar; while the czar is unreachable (it
        restarts), tried ``again`` every CZAR_RETRY_S until it is back or the runner
        stops. (A try that lost its session may have committed: ``work`` must allow it.)"""
        waiting = False
        while True:
            try:
                with self._conn(CZAR_WAIT_S) as conn:
                    result = work(conn, waiting)
                if waiting:
                    log.info("async jobs: the czar is back; %s", what)
                return result
            except (InstanceUnreachable, psycopg.OperationalError) as exc:
                if self._stopping:
                    raise
                if not waiting:
                    log.warning("async jobs: waiting for the czar to %s: %s", what, exc)
                    waiting = True
                self._stopped.wait(CZAR_RETRY_S)

    def stop(self) -> None:
        """Take no more jobs; let the running ones finish within STOP_GRACE_S, then kill
        their queries (they become ERROR). Jobs still queued stay QUEUED: the next runner
        queues them again."""
        self._stopping = True
        self._stopped.set()
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
        if self._presence_keeper.is_alive():
            self._presence_keeper.join()
        with self._presence_lock:
            if self._presence is not None:
                self._presence.close()

    def _wait_idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.05)

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

        def begin(conn: psycopg.Connection, again: bool) -> Job | None:
            # (again: an earlier try may have started it; only this runner ran it)
            started = " OR (phase = 'EXECUTING' AND runner = %(runner)s)" if again else ""
            with conn.cursor(row_factory=class_row(Job)) as cur:
                return cur.execute(
                    "UPDATE qserv_meta.uws_jobs SET phase = 'EXECUTING', start_time = now(),"
                    f" runner = %(runner)s WHERE id = %(id)s AND (phase = 'QUEUED'{started})"
                    f" RETURNING {JOB_COLUMNS}",
                    {"runner": self.runner_id, "id": job_id},
                ).fetchone()

        try:
            job = self._on_czar(f"start job {job_id}", begin)
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
            uploads=request_uploads(params, self.settings),
            partial=params.flag("partial"),
            mode="async",
        )

    def _outcome(self, job: Job) -> tuple[str, dict[str, object]]:
        """Run the job; its final phase and what to record with it."""
        try:
            params = TapParams(job.parameters)
            fmt = formats.parse_format(params.get("responseformat") or params.get("format"))
            with memory.request_scope():  # the result's memory is held until written
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

        def record(conn: psycopg.Connection, again: bool) -> tuple[bool, bool]:
            done = conn.execute(
                f"UPDATE qserv_meta.uws_jobs SET phase = %(phase)s, end_time = now()"
                f"{assignments} WHERE id = %(id)s AND phase = 'EXECUTING' RETURNING id",
                {"phase": phase, "id": job.id, **fields},
            ).fetchone()
            if done is not None:
                return True, True
            row = conn.execute(
                "SELECT phase, result_file FROM qserv_meta.uws_jobs WHERE id = %s", (job.id,)
            ).fetchone()
            # (again: an earlier try may have recorded this very end)
            mine = row is not None and again and tuple(row) == (phase, fields.get("result_file"))
            return mine, row is not None

        done, exists = self._on_czar(f"record the end of job {job.id}", record)
        if not done and "result_file" in fields:
            if exists:
                with suppress(FileNotFoundError):
                    (self.directory / job.id / str(fields["result_file"])).unlink()
            else:
                shutil.rmtree(self.directory / job.id, ignore_errors=True)

    def _kill_engine(self, job_id: str, reason: str) -> None:
        """Kill the running engine queries of a job (their worker statements too)."""
        flush()  # a query of this process younger than TRACK_AFTER_S has no record yet
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
                (STOPPED, self.runner_id, PRESENCE_GRACE_S),
            ).fetchall()
            if self._stopping:
                queued = []
            else:
                queued = conn.execute(
                    "UPDATE qserv_meta.uws_jobs j SET runner = %s WHERE phase = 'QUEUED'"
                    f" AND runner IS DISTINCT FROM %s AND NOT {_ALIVE}"
                    " RETURNING id, creation_time",
                    (self.runner_id, self.runner_id, PRESENCE_GRACE_S),
                ).fetchall()
        for (job_id,) in lost:
            log.warning("job %s: its service process is gone; it is now ERROR", job_id)
            self._waiters.notify(job_id)
            self._kill_engine(job_id, STOPPED)
        for job_id, _ in sorted(queued, key=lambda r: r[1]):
            log.info("job %s: queued again (its service process is gone)", job_id)
            self._submit(job_id)

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
