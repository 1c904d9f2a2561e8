"""The state one query's execution shares with its lanes, and what its failures mean.

A failure of a worker's session is either the *worker's* (its server died, refused the
connection, restarted, or the link to it broke: :func:`worker_failure`), a *moved
chunk* (a partition that its worker no longer holds: :func:`chunk_moved`), or the
*query's* own (an error of its SQL, the time limit, a kill). The first two are answered
by running the batch on another replica (:mod:`qserv_py.exec.routing`); the last ends
the query.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import NamedTuple
from weakref import WeakKeyDictionary

import psycopg
import pyarrow as pa
from psycopg import pq

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import InstanceUnreachable, QueryKilled, QueryTimeout
from qserv_py.exec import limits, tracking, watchdog
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.pools import POOL_TIMEOUT_S, borrow, czar_pool, worker_pool
from qserv_py.exec.routing import Router
from qserv_py.exec.sqlstate import database_error
from qserv_py.exec.watchdog import sever as sever  # re-exported

CANCEL_AGAIN_S = 0.2  # after a kill that the tracker found, cancel once more this late
RESULT_SCHEMA = "qserv_result"  # the merge tables: qserv_result.q<id>

#: SQLSTATE classes and codes of a worker's own failure: connection exceptions, the
#: server shutting down or starting up, out of connections, I/O errors
_WORKER_STATES = ("08", "57P01", "57P02", "57P03", "53300", "58")

#: worker session -> the statement_timeout and planner settings last set there (sessions
#: are pooled)
_prepared: WeakKeyDictionary[psycopg.Connection, tuple[str, tuple[tuple[str, str], ...]]] = (
    WeakKeyDictionary()
)


def prepare_session(
    conn: psycopg.Connection, timeout: str, settings: tuple[tuple[str, str], ...] = ()
) -> None:
    """Set a worker session's statement timeout and the plan's planner ``settings`` (those
    of the session's previous query reset) if they changed: one round trip, none if
    nothing changed. Sent by libpq straight away (a third cheaper than through a
    cursor); anything unexpected goes through psycopg again, which raises its error."""
    wanted = (timeout, settings)
    last = _prepared.get(conn)
    if last == wanted:
        return
    names = {name for name, _ in settings}
    statements = [f"SET statement_timeout = {timeout}"]
    statements += [f"RESET {name}" for name, _ in (last[1] if last else ()) if name not in names]
    statements += [f"SET {name} = {value}" for name, value in settings]
    result = conn.pgconn.exec_("; ".join(statements).encode())
    if result.status != pq.ExecStatus.COMMAND_OK:
        for statement in statements:
            conn.execute(statement)
    _prepared[conn] = wanted


class Failure(Exception):
    """A database error, and where it happened (a worker's name, or ``czar``)."""

    def __init__(self, where: str, error: psycopg.Error) -> None:
        super().__init__(where, error)
        self.where, self.error = where, error


class BatchDone(NamedTuple):
    chunks: int
    rows: int
    status: str


def worker_failure(exc: BaseException) -> str | None:
    """Why the worker failed, if ``exc`` means it did (not the query); else None."""
    if isinstance(exc, InstanceUnreachable):
        return str(exc)
    if not isinstance(exc, Failure) or exc.where == tracking.CZAR:
        return None
    return _message(exc.error) if server_failed(exc.error) else None


def server_failed(error: psycopg.Error) -> bool:
    """``error`` is its server's failure (or the connection's), not the statement's."""
    if error.sqlstate:
        return error.sqlstate.startswith(_WORKER_STATES)
    # no SQLSTATE: the connection broke (the server died, the link or its socket closed)
    return isinstance(error, psycopg.OperationalError)


def chunk_moved(exc: BaseException) -> bool:
    """``exc`` says a chunk partition is missing where the plan looked (it moved away)."""
    return (
        isinstance(exc, Failure)
        and exc.where != tracking.CZAR
        and isinstance(exc.error, psycopg.errors.UndefinedTable)
    )


def _message(error: psycopg.Error) -> str:
    text = getattr(error.diag, "message_primary", None) or str(error).strip() or repr(error)
    return text.splitlines()[0] if text else type(error).__name__


class Run:
    """The state an execution shares with its lanes."""

    def __init__(
        self,
        spec: ClusterSpec,
        plan: ExecPlan,
        query: tracking.Query,
        timeout_s: float | None,
        router: Router,
        max_bytes: int | None = None,
    ) -> None:
        self.spec, self.plan, self.query, self.timeout_s = spec, plan, query, timeout_s
        self.router = router
        #: the result's byte limit, enforced by the servers (:mod:`qserv_py.exec.limits`)
        self.max_bytes = max_bytes
        self.batch_deadline_s = router.view.settings.batch_deadline_s
        self.query_id = query.id
        self.tag = tracking.tag(query.id)
        self.table = f"{RESULT_SCHEMA}.q{query.id}"
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.timeout = "DEFAULT" if timeout_s is None else str(max(1, int(timeout_s * 1000)))
        self.czar = czar_pool(spec)
        self.stop = threading.Event()
        self.reason: str | None = None  # enough | error | killed | timeout
        self.failure: BaseException | None = None
        #: a gathered run's batch results (no merge table; see dispatch), else None
        self.gathered: list[pa.Table] | None = None
        #: a gathered run stops once it has more rows than this (``max_rows``)
        self.row_cap: int | None = None
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self._busy: dict[psycopg.Connection, str] = {}  # session -> its worker
        query.on_kill = self._killed  # the tracker found it killed

    def halt(self, reason: str, failure: BaseException | None = None) -> None:
        """Stop launching batches and cancel the running ones (the first reason wins)."""
        if not self.stop.is_set():
            self.reason, self.failure = reason, failure
            self.stop.set()
            self.cancel()

    def _killed(self) -> None:
        self.halt("killed")
        # a statement sent just after that cancel missed it: once more a moment later
        again = threading.Timer(CANCEL_AGAIN_S, self.cancel)
        again.daemon = True
        again.start()

    def cancel(self) -> None:
        """Cancel the worker statements running now. The lock keeps each session from going
        back to its pool (and on to another query) meanwhile; an idle session ignores it.
        A failed worker's sessions are cut instead (a cancel could wait on a hung host)."""
        with self.lock:
            for conn, worker in self._busy.items():
                if worker in self.router.failed:
                    sever(conn)
                    continue
                with suppress(psycopg.Error):  # a broken session runs nothing
                    conn.cancel_safe(timeout=5)

    def wait(self) -> float:
        """How long a lane may wait for a pooled session. A pool that cannot connect to a
        hung host, or set a session up there, ends the wait at once (see ``borrow``)."""
        left = POOL_TIMEOUT_S if self.deadline is None else self.deadline - time.monotonic()
        return max(min(left, POOL_TIMEOUT_S), 0.001)

    def killed(self) -> QueryKilled:
        return QueryKilled(f"query {self.query_id} was killed")

    def timed_out(self, detail: str = "") -> QueryTimeout:
        limit = f"its time limit of {self.timeout_s:g} s" if self.timeout_s else "the time limit"
        return QueryTimeout(f"query {self.query_id} exceeded {limit}{detail}")

    @contextmanager
    def worker_session(
        self, name: str, czar: psycopg.Connection | None = None
    ) -> Iterator[psycopg.Connection]:
        """A session on worker ``name`` that works for this query and can be cancelled; it
        is registered on ``czar`` now, or (without) by the query's tracker."""
        with borrow(worker_pool(self.spec, name), self.wait()) as conn:
            try:
                with watchdog.guard(conn, self.batch_deadline_s):
                    prepare_session(conn, self.timeout, self.plan.worker_settings)
            except psycopg.Error as exc:
                raise Failure(name, exc) from exc
            with self.lock:
                self._busy[conn] = name
            try:
                try:
                    registered = self.query.add_backend(name, conn.info.backend_pid, czar)
                except psycopg.Error as exc:  # the czar's failure, not the worker's
                    raise Failure(tracking.CZAR, exc) from exc
                if not registered:
                    raise self.killed()
                yield conn
            finally:
                with self.lock:
                    self._busy.pop(conn, None)

    @contextmanager
    def watchdog(
        self, conn: psycopg.Connection, worker: str, on_expiry: Callable[[], None]
    ) -> Iterator[None]:
        """Cut ``conn`` (``worker``'s session) if the block runs past the batch deadline
        and the worker no longer answers (a hung host); a slow statement goes on."""
        with watchdog.patient_guard(
            conn, self.batch_deadline_s, lambda: self.router.view.answers(worker), on_expiry
        ):
            yield

    def translate(self, exc: BaseException) -> BaseException:
        """The error a user sees for a failure of a lane or of the merge."""
        if isinstance(exc, QueryKilled) or self.query.was_killed():
            return self.killed()
        if not isinstance(exc, Failure):
            return exc
        error, where = exc.error, exc.where
        if (over := limits.too_large(error, self.max_bytes)) is not None:
            return over
        message = getattr(error.diag, "message_primary", None) or str(error).strip() or repr(error)
        if isinstance(error, psycopg.errors.QueryCanceled) and "timeout" in message:
            return self.timed_out(f" ({where}: {message})")
        return database_error(where, error, "running the merge" if where == tracking.CZAR else "")
