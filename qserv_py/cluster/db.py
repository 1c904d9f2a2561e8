"""Connections to the cluster's databases, with failures translated into our errors."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

import psycopg
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus

from qserv_py.cluster.spec import Instance
from qserv_py.errors import InstanceUnreachable

T = TypeVar("T")
Item = TypeVar("Item")


def connect(
    instance: Instance, *, autocommit: bool = False, timeout: float = 10
) -> psycopg.Connection:
    """A connection to ``instance``; InstanceUnreachable says which one and why. Inside
    :func:`kept_sessions`, a connection closed earlier (idle) is handed out again."""
    if (kept := _keeper.take(instance.dsn)) is not None:
        kept.autocommit = autocommit
        return kept
    try:
        if _keeper.active:
            conn = _Kept.connect(instance.dsn, autocommit=autocommit, connect_timeout=int(timeout))
            conn.kept_dsn = instance.dsn
            return conn
        return psycopg.connect(instance.dsn, autocommit=autocommit, connect_timeout=int(timeout))
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InstanceUnreachable(
            f"cannot connect to {instance.name} ({instance.public_dsn}): {reason}; is it "
            "running (`qserv-py cluster status`) and is the cluster file right?"
        ) from exc


@contextmanager
def kept_sessions() -> Iterator[None]:
    """Within the block, connections made by :func:`connect` are kept when closed
    outside a transaction (their settings reset, session locks released), handed out again
    to the next ``connect`` of the same instance: a small load, which opens and closes a
    dozen sessions on each instance in turn, pays for each connection once (a connection
    costs as much as the load's own statements). Kept sessions are closed at the end."""
    with _keeper.lock:
        _keeper.depth += 1
    try:
        yield
    finally:
        with _keeper.lock:
            _keeper.depth -= 1
            idle = [] if _keeper.depth else [c for cs in _keeper.idle.values() for c in cs]
            if idle:
                _keeper.idle.clear()
        for conn in idle:
            psycopg.Connection.close(conn)


class _Keeper:
    """The idle sessions :func:`kept_sessions` keeps, by DSN."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.idle: dict[str, list[psycopg.Connection]] = {}

    @property
    def active(self) -> bool:
        return self.depth > 0

    def take(self, dsn: str) -> psycopg.Connection | None:
        if not self.depth:
            return None
        while True:
            with self.lock:
                conns = self.idle.get(dsn)
                conn = conns.pop() if conns else None
            if conn is None or not (conn.broken or has_input(conn)):
                return conn
            psycopg.Connection.close(conn)  # its server closed it (restarted, or gone)

    def give(self, conn: _Kept) -> bool:
        """Keep ``conn`` (being closed) if sessions are kept and it is reusable."""
        if not self.depth or conn.broken or conn.closed:
            return False
        if conn.info.transaction_status != TransactionStatus.IDLE:
            return False  # a transaction left open is rolled back by the close
        try:  # as a new session: no setting made with SET, no session advisory lock
            conn.autocommit = True
            conn.execute("RESET ALL; SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            return False
        with self.lock:
            if not self.depth:
                return False
            self.idle.setdefault(conn.kept_dsn, []).append(conn)
        return True


_keeper = _Keeper()


class _Kept(psycopg.Connection):  # type: ignore[type-arg]
    """A connection that :func:`kept_sessions` may keep when it is closed."""

    kept_dsn = ""  # the instance's DSN (``info.dsn`` leaves the password out)

    def close(self) -> None:
        if not _keeper.give(self):
            super().close()


def has_input(conn: psycopg.Connection) -> bool:
    """Whether the server has sent an idle session something (a notification, or the
    end of the connection), without waiting or a round trip."""
    poll = select.poll()
    poll.register(conn.fileno(), select.POLLIN)
    return bool(poll.poll(0))


def on_each(items: Sequence[Item], fn: Callable[[Item], T]) -> list[T]:
    """Run ``fn`` for every item (instance) concurrently; results in the items' order.

    The first exception (in the items' order) is raised after all have finished.
    """
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(len(items), 16)) as pool:
        futures = [pool.submit(fn, i) for i in items]
    return [f.result() for f in futures]


#: bytes of a ``COPY … TO STDOUT`` handed on at once by :func:`copy_out`
COPY_BUFFER = 1 << 18


def copy_out(
    conn: psycopg.Connection,
    statement: str,
    write: Callable[[bytearray], object],
    size: int = COPY_BUFFER,
) -> int:
    """Run ``statement`` (a ``COPY … TO STDOUT``) on ``conn`` and hand its bytes to
    ``write`` in pieces of about ``size`` bytes (the same bytearray, refilled: ``write``
    must be done with it when it returns); the rows copied.

    The server sends one message per row. psycopg's ``Copy`` iterator drives a generator
    through its wait loop for each, about 0.8 µs of this process's CPU per row; reading
    libpq here, as many messages as have arrived before waiting on the socket, halves
    that (a 1M-row, 340 MB chunk: 1.7 s of CPU against 2.5 s). A relay between two
    workers spends its CPU on the same cores as their COPYs, so this is time.

    Errors are psycopg's: the statement's own (``QueryCanceled`` after a cancel, …) once
    the server ends the copy, ``OperationalError`` if the connection breaks (a
    :func:`~qserv_py.exec.watchdog.sever` included). If ``write`` raises, the copy is
    cancelled and its end read, so the session can be used again (if it is alive).
    """
    if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        raise psycopg.ProgrammingError("copy_out needs an autocommit session or a transaction")
    pgconn = conn.pgconn
    with conn.lock:
        pgconn.send_query(statement.encode(conn.info.encoding))
        while pgconn.flush():
            select.select([], [pgconn.socket], [])
        result = _next_result(pgconn)
        if result is None or result.status != ExecStatus.COPY_OUT:
            _drain(pgconn)
            raise _error(conn, result, statement)
        buffer = bytearray()
        try:  # until the server has sent the copy's end
            while True:
                nbytes, data = pgconn.get_copy_data(1)
                if nbytes > 0:
                    buffer += data
                    if len(buffer) >= size:
                        write(buffer)
                        buffer.clear()
                elif nbytes == 0:
                    select.select([pgconn.socket], [], [])
                    pgconn.consume_input()
                elif nbytes == -1:
                    break
                else:
                    raise psycopg.OperationalError(
                        f"reading the copy failed: {pgconn.get_error_message()}"
                    )
        except BaseException:
            _abandon(conn)
            raise
        result = _next_result(pgconn)
        _drain(pgconn)
        if result is None or result.status != ExecStatus.COMMAND_OK:
            raise _error(conn, result, statement)
        if buffer:
            write(buffer)
        return int(result.command_tuples or 0)


def _next_result(pgconn: psycopg.pq.abc.PGconn) -> psycopg.pq.abc.PGresult | None:
    """The next result of the query sent, waiting for it to arrive."""
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()
    return pgconn.get_result()


def _drain(pgconn: psycopg.pq.abc.PGconn) -> None:
    """Read the query's results to their end (the session is then idle)."""
    while _next_result(pgconn) is not None:
        pass


#: seconds a copy given up gets to end after its cancel, before its session is closed
ABANDON_S = 10.0


def _abandon(conn: psycopg.Connection) -> None:
    """Cancel a copy being read and read it to its end, if the session still works; a
    server that does not end it in :data:`ABANDON_S` (hung) loses the session."""
    pgconn = conn.pgconn
    deadline = time.monotonic() + ABANDON_S
    with suppress(psycopg.Error, OSError):
        if pgconn.status != ConnStatus.OK:
            return
        conn.cancel_safe(timeout=ABANDON_S)
        while (left := deadline - time.monotonic()) > 0:
            nbytes, _ = pgconn.get_copy_data(1)
            if nbytes == 0:
                select.select([pgconn.socket], [], [], left)
                pgconn.consume_input()
            elif nbytes < 0:
                _drain(pgconn)
                return
    psycopg.Connection.close(conn)  # still in the copy: never to be used again (nor kept)


def _error(
    conn: psycopg.Connection, result: psycopg.pq.abc.PGresult | None, statement: str
) -> psycopg.Error:
    if result is not None and result.status == ExecStatus.FATAL_ERROR:
        return psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    if result is None:
        return psycopg.OperationalError(
            f"the server sent no result: {conn.pgconn.get_error_message()}"
        )
    return psycopg.ProgrammingError(
        f"{statement[:80]!r} is not a COPY … TO STDOUT (result status {result.status})"
    )
