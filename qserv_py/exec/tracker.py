"""The query tracker: this process's background writer of query records, and its queries.

Each query that :func:`qserv_py.exec.dispatch.execute` runs is a :class:`Query` made by
:func:`start`. Its records on the czar (its row in ``qserv_meta.queries``, the sessions it
uses in ``qserv_meta.query_backends``; read and killed through :mod:`qserv_py.exec.tracking`)
are written here, so that a short query costs the czar no round trip:

- **Ids** come from blocks of ``ID_BLOCK`` values of the table's id sequence, one block per
  process at a time, refilled when used up: unique, but across processes their order is not
  the order the queries started in.
- **A tracker** per process (a daemon thread with a czar session from the czar pool) writes
  the records. A query registers with it when it starts (:func:`start`, no I/O). If it is
  still running ``TRACK_AFTER_S`` later, the tracker writes its running row and the
  sessions it has: from then on ``ps`` shows it and a kill cancels it, as for a query
  recorded at once. Sessions it takes later are recorded by the tracker, which cancels
  the query (``Query.on_kill``) if it finds it killed. A query that ends before that
  leaves its final row to the tracker, which writes those of several queries in one
  statement, at most ``END_DELAY_S`` after they ended: it appears in the history then.
  (The thread wakes for deadlines, not for each query: it takes little of the GIL.)
- A query whose running row is on the czar records its end synchronously
  (:meth:`Query.finish`), so a kill that raced with its end is reported as killed, as
  before. The general (multi-batch) path writes its running row at once (``start(czar=)``)
  and registers its sessions and progress synchronously.
- :func:`flush` writes all the tracker holds, including the running rows of queries
  younger than ``TRACK_AFTER_S``. :func:`~qserv_py.exec.tracking.list_queries`,
  :func:`~qserv_py.exec.tracking.get_query` and :func:`~qserv_py.exec.tracking.kill_query`
  call it (so readers in the same process see its queries), and
  :func:`~qserv_py.exec.pools.close_pools` and the exit of the process flush too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QservError
from qserv_py.exec.pools import before_close, borrow, czar_pool

log = logging.getLogger(__name__)

#: the statuses a query ends with
FINAL = ("completed", "failed", "killed")
#: a query still running this long after its start gets its running record
TRACK_AFTER_S = 0.05
#: query ids a process takes from the sequence at once
ID_BLOCK = 64
#: the ends of short queries are written together, at most this long after they ended
END_DELAY_S = 0.02
#: how long :func:`flush` waits for the tracker at most
FLUSH_TIMEOUT_S = 10.0
#: how long the tracker waits for a czar session
TRACKER_WAIT_S = 5.0


# --- statements ------------------------------------------------------------------------

_IDS = (
    "SELECT nextval(pg_get_serial_sequence('qserv_meta.queries', 'id')) FROM generate_series(1, %s)"
)
# times are the server's: now() minus how long ago (by this process's clock) it happened
_RUNNING = (
    "WITH q AS (INSERT INTO qserv_meta.queries (id, owner, lang, text, status, chunks_total,"
    "  submitted_at, started_at) VALUES (%(id)s, %(owner)s, %(lang)s, %(text)s, 'running',"
    "  %(total)s, now() - %(age)s * interval '1 second', now() - %(age)s * interval '1 second')"
    "  RETURNING id)"
    " INSERT INTO qserv_meta.query_backends (query_id, worker, pid)"
    " SELECT q.id, b.worker, b.pid FROM q, unnest(%(workers)s::text[], %(pids)s::int[])"
    "  AS b(worker, pid) ON CONFLICT DO NOTHING"
)
# the ends of queries (one array per column), whether their running rows were written or
# not; a killed one stays killed. Returns each query's final status.
_ENDS = (
    "WITH e AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[],"
    "  %s::text[], %s::int[], %s::int[], %s::bigint[], %s::bool[], %s::text[],"
    "  %s::float8[], %s::float8[]) AS e(id, owner, lang, text, status, total, done, rows,"
    "  truncated, error, age, since)),"
    " gone AS (DELETE FROM qserv_meta.query_backends b USING e WHERE b.query_id = e.id),"
    " done AS (INSERT INTO qserv_meta.queries AS q (id, owner, lang, text, status,"
    "  chunks_total, chunks_done, rows, truncated, error, submitted_at, started_at, finished_at)"
    "  SELECT id, owner, lang, text, status, total, done, rows, truncated, error,"
    "  now() - age * interval '1 second', now() - age * interval '1 second',"
    "  now() - since * interval '1 second' FROM e"
    "  ON CONFLICT (id) DO UPDATE SET status = excluded.status, rows = excluded.rows,"
    "  truncated = excluded.truncated, error = excluded.error,"
    "  finished_at = excluded.finished_at,"
    "  chunks_done = greatest(q.chunks_done, excluded.chunks_done)"
    "  WHERE q.status IN ('queued', 'running') RETURNING id, status)"
    " SELECT e.id, coalesce(done.status, q.status) FROM e LEFT JOIN done USING (id)"
    "  LEFT JOIN qserv_meta.queries q USING (id)"
)

# states of a Query's records
_LOCAL = "local"  # nothing on the czar (yet)
_WRITING = "writing"  # the tracker is writing its running row
_WRITTEN = "written"  # its running row is on the czar
_ENDED = "ended"  # its end is recorded, or handed to the tracker


@dataclass(frozen=True)
class _End:
    """How a query ended, and when (this process's monotonic clock)."""

    status: str
    rows: int | None
    truncated: bool
    error: str | None
    chunks_done: int
    at: float


class Query:
    """A query of this process, and what its records on the czar hold."""

    def __init__(
        self, spec: ClusterSpec, query_id: int, text: str, lang: str, owner: str, total: int
    ) -> None:
        self.spec, self.id = spec, query_id
        self.text, self.lang, self.owner, self.chunks_total = text, lang, owner, total
        self.started = time.monotonic()
        #: seen killed (by the tracker, or by a synchronous registration)
        self.killed = False
        #: called (on the tracker's thread) when the tracker finds the query killed
        self.on_kill: Callable[[], None] | None = None
        self._state = _LOCAL
        self._backends: list[tuple[str, int]] = []
        self._settled: threading.Event | None = None  # set when its running row is written
        self._end: str | None = None

    def add_backend(self, worker: str, pid: int, czar: psycopg.Connection | None = None) -> bool:
        """Record that session ``pid`` on ``worker`` works for the query now; False if the
        query was killed. With ``czar`` (a query written at once), on that session now;
        else the tracker records it with the running row, or soon after if that is
        written already."""
        if czar is not None:
            status = register_backend(czar, self.id, worker, pid)
            if status == "killed":
                self.killed = True
            return status == "running"
        tracker = _tracker()
        with tracker.lock:
            self._backends.append((worker, pid))
            if self._state == _WRITTEN:
                tracker.add_job(_Job("backend", self, (worker, pid)))
            return not self.killed

    def finish(
        self,
        status: str,
        *,
        rows: int | None = None,
        truncated: bool = False,
        error: str | None = None,
        chunks_done: int = 0,
    ) -> str:
        """Record the end of the query; the status it ends with (``killed`` if it was
        killed meanwhile). Without a running row on the czar, the tracker writes it in the
        background; with one, it is written now. Only the first call records."""
        assert status in FINAL
        tracker = _tracker()
        end = _End(status, rows, truncated, error, chunks_done, time.monotonic())
        with tracker.lock:
            if self._end is not None:
                return self._end
            if self._state == _LOCAL:
                self._state, self._end = _ENDED, "killed" if self.killed else status
                tracker.young.pop(self.id, None)
                tracker.add_end(self, end)
                return self._end
            settled = self._settled
        # the running row is (being) written: the end comes after it, now
        if settled is not None and not settled.wait(FLUSH_TIMEOUT_S):
            log.warning("query %s: its running record is still being written", self.id)
        with tracker.lock:
            if self._state == _LOCAL:  # writing it failed: the tracker writes it all
                self._state, self._end = _ENDED, status
                tracker.add_end(self, end)
                return status
        with borrow(czar_pool(self.spec)) as czar:
            final = _write_ends(czar, [(self, end)])[self.id]
        with tracker.lock:
            self._state, self._end = _ENDED, final
        return final

    def was_killed(self) -> bool:
        """Whether the query was killed (asks the czar once its running row may be there)."""
        if not self.killed and self._state != _LOCAL:
            with borrow(czar_pool(self.spec)) as czar:
                self.killed = query_status(czar, self.id) == "killed"
        return self.killed

    def _running_params(self, backends: list[tuple[str, int]]) -> dict[str, Any]:
        return {
            "id": self.id, "owner": self.owner, "lang": self.lang, "text": self.text,
            "total": self.chunks_total, "age": time.monotonic() - self.started,
            "workers": [w for w, _ in backends], "pids": [p for _, p in backends],
        }  # fmt: skip

    def _noticed_kill(self) -> None:
        self.killed = True
        if self.on_kill is not None:
            try:
                self.on_kill()
            except Exception:
                log.exception("query %s: cannot cancel it after its kill", self.id)


def _write_ends(czar: psycopg.Connection, ends: list[tuple[Query, _End]]) -> dict[int, str]:
    """Record the ends of queries in one statement; their final statuses."""
    now = time.monotonic()
    columns: list[list[Any]] = [[] for _ in range(12)]
    for query, end in ends:
        row = (
            query.id, query.owner, query.lang, query.text, end.status, query.chunks_total,
            end.chunks_done, end.rows, end.truncated, end.error, now - query.started,
            now - end.at,
        )  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    rows = czar.execute(_ENDS, columns).fetchall()
    return {int(r[0]): str(r[1] or "unknown") for r in rows}


@dataclass
class _Job:
    kind: str  # running | backend
    query: Query
    detail: Any = None


class _Tracker:
    """This process's writer of query records (see the module's docstring)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)  # the thread waits for work here
        self.progress = threading.Condition(self.lock)  # flush waits for the thread here
        #: queries with nothing on the czar, in start order (so in the order they fall due)
        self.young: dict[int, Query] = {}
        self.jobs: deque[_Job] = deque()  # written at once
        self.ends: list[tuple[Query, _End]] = []  # written together, END_DELAY_S late
        self.hurry = False  # write the ends now (a flush)
        self.added = self.done = 0
        self.asleep = False  # waiting with no deadline: new work must wake it
        self.thread: threading.Thread | None = None
        self.ids: dict[str, list[int]] = {}  # czar DSN -> free ids, the next one last
        self.ids_lock = threading.Lock()

    def next_id(self, spec: ClusterSpec) -> int:
        with self.ids_lock:
            free = self.ids.setdefault(spec.czar.dsn, [])
            if not free:
                with borrow(czar_pool(spec)) as czar:
                    rows = czar.execute(_IDS, (ID_BLOCK,)).fetchall()
                free.extend(sorted((int(r[0]) for r in rows), reverse=True))
            return free.pop()

    def add_job(self, job: _Job) -> None:
        """Queue a write to do now (the lock held)."""
        self.jobs.append(job)
        self.added += 1
        self._start()
        self.work.notify()

    def add_end(self, query: Query, end: _End) -> None:
        """Queue the end of a query without a running row (the lock held)."""
        self.ends.append((query, end))
        self.added += 1
        self._wake()

    def add_young(self, query: Query) -> None:
        with self.lock:
            self.young[query.id] = query
            self._wake()

    def promote(self, query: Query) -> None:
        """Queue the running row of a young query (the lock held)."""
        del self.young[query.id]
        query._state = _WRITING
        query._settled = threading.Event()
        self.add_job(_Job("running", query, list(query._backends)))

    def flush(self, *, promote: bool, timeout: float) -> bool:
        with self.lock:
            if promote:
                for query in list(self.young.values()):
                    self.promote(query)
            target = self.added
            if self.done >= target:
                return True
            self.hurry = True
            self.work.notify()
            deadline = time.monotonic() + timeout
            while self.done < target:
                left = deadline - time.monotonic()
                if left <= 0 or self.thread is None or not self.thread.is_alive():
                    return False
                self.progress.wait(left)
        return True

    def _wake(self) -> None:
        """Make sure the thread runs and sees new work (the lock held): it has a deadline
        for all it holds, so only an indefinite wait needs waking."""
        self._start()
        if self.asleep:
            self.asleep = False
            self.work.notify()

    def _start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._loop, name="qserv-query-tracker", daemon=True
            )
            self.thread.start()

    def _next(self) -> tuple[list[_Job], list[tuple[Query, _End]]]:
        """Wait for work that is due, and take it (the lock held)."""
        while True:
            now = time.monotonic()
            for query in list(self.young.values()):
                if query.started + TRACK_AFTER_S > now:
                    break
                self.promote(query)
            first_end = self.ends[0][1].at + END_DELAY_S if self.ends else None
            if self.jobs or (first_end is not None and (self.hurry or first_end <= now)):
                break
            first = next(iter(self.young.values()), None)
            deadlines = [] if first is None else [first.started + TRACK_AFTER_S]
            deadlines += [] if first_end is None else [first_end]
            self.asleep = not deadlines
            self.work.wait(min(deadlines) - now if deadlines else None)
        self.asleep = self.hurry = False
        jobs, ends = list(self.jobs), self.ends
        self.jobs.clear()
        self.ends = []
        return jobs, ends

    def _loop(self) -> None:
        while True:
            with self.lock:
                jobs, ends = self._next()
            try:
                self._write(jobs, ends)
            except BaseException:  # never leave flush waiting
                log.exception("the query tracker failed")
            finally:
                with self.lock:
                    self.done += len(jobs) + len(ends)
                    self.progress.notify_all()

    def _write(self, jobs: list[_Job], ends: list[tuple[Query, _End]]) -> None:
        """Write the running rows and sessions, then the ends, per czar."""
        by_czar: dict[str, tuple[list[_Job], list[tuple[Query, _End]]]] = {}
        for job in jobs:
            by_czar.setdefault(job.query.spec.czar.dsn, ([], []))[0].append(job)
        for end in ends:
            by_czar.setdefault(end[0].spec.czar.dsn, ([], []))[1].append(end)
        for czar_jobs, czar_ends in by_czar.values():
            left = deque(czar_jobs)
            spec = (czar_jobs[0].query if czar_jobs else czar_ends[0][0]).spec
            try:
                with borrow(czar_pool(spec), TRACKER_WAIT_S) as czar:
                    while left:
                        try:
                            self._do(czar, left[0])
                        except psycopg.Error as exc:
                            if czar.broken:
                                raise
                            log.warning("query %s: cannot record it: %s", left[0].query.id, exc)
                            if left[0].kind == "running":
                                self._settle(left[0].query, _LOCAL)
                        left.popleft()
                    if czar_ends:
                        _write_ends(czar, czar_ends)
            except (QservError, psycopg.Error) as exc:
                lost = len(left) + len(czar_ends)
                log.warning("cannot record %d query events on the czar: %s", lost, exc)
                for job in left:
                    if job.kind == "running":  # not tried again: its end is written instead
                        self._settle(job.query, _LOCAL)

    def _do(self, czar: psycopg.Connection, job: _Job) -> None:
        query = job.query
        if job.kind == "backend":
            worker, pid = job.detail
            if register_backend(czar, query.id, worker, pid) == "killed":
                query._noticed_kill()
            return
        backends = job.detail
        czar.execute(_RUNNING, query._running_params(backends))
        with self.lock:
            later = query._backends[len(backends) :]
        self._settle(query, _WRITTEN)
        for worker, pid in later:  # taken while the row was being written
            if register_backend(czar, query.id, worker, pid) == "killed":
                query._noticed_kill()

    def _settle(self, query: Query, state: str) -> None:
        with self.lock:
            query._state = state
            if query._settled is not None:
                query._settled.set()


_the_tracker: _Tracker | None = None
_tracker_lock = threading.Lock()


def _tracker() -> _Tracker:
    """This process's tracker (a forked child makes its own)."""
    global _the_tracker
    tracker = _the_tracker
    if tracker is None or tracker.pid != os.getpid():
        with _tracker_lock:
            if _the_tracker is None or _the_tracker.pid != os.getpid():
                _the_tracker = _Tracker()
            tracker = _the_tracker
    return tracker


def flush(*, promote: bool = True, timeout: float = FLUSH_TIMEOUT_S) -> bool:
    """Write every record this process's tracker holds, and wait until it is written
    (False if that took longer than ``timeout``). ``promote``: also the running rows of
    queries younger than ``TRACK_AFTER_S``."""
    tracker = _the_tracker
    if tracker is None or tracker.pid != os.getpid():
        return True
    return tracker.flush(promote=promote, timeout=timeout)


def _flush_before_close() -> None:
    flush(promote=False)


before_close(_flush_before_close)


# --- used by execution -------------------------------------------------------------------


def start(
    spec: ClusterSpec,
    *,
    text: str,
    lang: str,
    owner: str,
    chunks_total: int,
    czar: psycopg.Connection | None = None,
) -> Query:
    """A new query of this process. With ``czar`` its running row is written now, on that
    session; without, the tracker writes it if it runs longer than ``TRACK_AFTER_S``."""
    tracker = _tracker()
    query = Query(spec, tracker.next_id(spec), text, lang, owner, chunks_total)
    if czar is None:
        tracker.add_young(query)
    else:
        czar.execute(_RUNNING, query._running_params([]))
        query._state = _WRITTEN
    return query


def register_backend(conn: psycopg.Connection, query_id: int, worker: str, pid: int) -> str:
    """Record that session ``pid`` on ``worker`` works for the query; the query's status.

    Nothing is recorded unless the query is running (a kill may have come first).
    """
    row = conn.execute(
        "WITH q AS (SELECT status FROM qserv_meta.queries WHERE id = %(id)s),"
        " ins AS (INSERT INTO qserv_meta.query_backends (query_id, worker, pid)"
        "  SELECT %(id)s, %(worker)s, %(pid)s FROM q WHERE status = 'running'"
        "  ON CONFLICT DO NOTHING)"
        " SELECT status FROM q",
        {"id": query_id, "worker": worker, "pid": pid},
    ).fetchone()
    return str(row[0]) if row else "unknown"


def query_status(conn: psycopg.Connection, query_id: int) -> str:
    row = conn.execute("SELECT status FROM qserv_meta.queries WHERE id = %s", (query_id,))
    found = row.fetchone()
    return str(found[0]) if found else "unknown"
