"""Running an :class:`ExecPlan` on the cluster: fan out to the workers, merge on the czar.

1. Record the query (``qserv_meta.queries``, running). Run the worker SQL with no chunks
   and ``LIMIT 0`` on one worker to learn its columns' types (``format_type`` there);
   make an UNLOGGED merge table ``qserv_result.q<id>`` of those columns on the czar.
2. Cut each worker's chunks into batches of ``batch_chunks``; ``per_worker`` lanes
   (threads) per worker take batches in turn, each streaming ``COPY (worker SQL) TO
   STDOUT (FORMAT BINARY)`` straight into ``COPY qserv_result.q<id> FROM STDIN (FORMAT
   BINARY)`` on its own czar session (rows are never decoded in Python), then adding to
   ``chunks_done`` and reading the query's status (a kill shows there).
3. Run the merge SQL on the czar, limited to ``max_rows + 1`` rows (to detect overflow),
   into Arrow; record the query completed. Drop the merge table, whatever happened.

A plan that one worker answers in one batch (a cone, an id lookup, a light curve, a
query of replicated tables) takes a shorter path: the merge SQL runs on that worker over
the worker SQL as a subquery, straight into Arrow; no probe, no merge table, no COPY. It
does not wait for the czar at all: its id comes from the process's block of ids, and
:mod:`qserv_py.exec.tracking`'s tracker writes its record in the background (its running
record only if it still runs after ``TRACK_AFTER_S``; from then on it can be killed as
any other). The worker session's ``statement_timeout`` is set only when it changes; each
statement starts with the query's tag (a comment, which a kill checks: ``tracking.tag``).

The calling thread watches the lanes: it calls ``on_progress``, stops early once a
concatenating query with a LIMIT has its rows, enforces ``timeout_s``, and on the first
error (or kill, or timeout) cancels the worker statements still running, waits for the
lanes, and raises.

Sessions come from the process's pools (:mod:`qserv_py.exec.pools`).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import NamedTuple
from weakref import WeakKeyDictionary

import psycopg
import pyarrow as pa
from psycopg import pq, sql

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import (
    QservError,
    QueryError,
    QueryKilled,
    QueryTimeout,
    WorkerError,
)
from qserv_py.exec import tracking
from qserv_py.exec.arrow import fetch_table
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.pools import POOL_TIMEOUT_S, borrow, czar_pool, worker_pool
from qserv_py.exec.pools import admin_pool as admin_pool  # re-exported
from qserv_py.exec.pools import close_pools as close_pools  # re-exported

RESULT_SCHEMA = "qserv_result"
COPY_BUFFER = 1 << 18  # bytes passed to the czar at once
CANCEL_AGAIN_S = 0.2  # after a kill that the tracker found, cancel once more this late

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (chunks done, chunks total)


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    #: more than ``max_rows`` rows existed; ``table`` holds the first ``max_rows``
    truncated: bool
    query_id: int
    #: chunks read (fewer than the plan's when a LIMIT was met early)
    chunks: int
    seconds: float


#: worker session -> the statement_timeout last set there (sessions are pooled)
_timeouts: WeakKeyDictionary[psycopg.Connection, str] = WeakKeyDictionary()


def _prepare(conn: psycopg.Connection, timeout: str) -> None:
    """Set a worker session's statement timeout if it changed (no round trip if not). Sent
    by libpq straight away (a third cheaper than through a cursor); anything unexpected
    goes through psycopg again, which raises its error."""
    if _timeouts.get(conn) == timeout:
        return
    settings = f"SET statement_timeout = {timeout}"
    result = conn.pgconn.exec_(settings.encode())
    if result.status != pq.ExecStatus.COMMAND_OK:
        conn.execute(settings)
    _timeouts[conn] = timeout


class _Failure(Exception):
    """A database error, and where it happened (a worker's name, or ``czar``)."""

    def __init__(self, where: str, error: psycopg.Error) -> None:
        super().__init__(where, error)
        self.where, self.error = where, error


class _BatchDone(NamedTuple):
    chunks: int
    rows: int
    status: str


class _Run:
    """The state an execution shares with its lanes."""

    def __init__(
        self, spec: ClusterSpec, plan: ExecPlan, query: tracking.Query, timeout_s: float | None
    ) -> None:
        self.spec, self.plan, self.query, self.timeout_s = spec, plan, query, timeout_s
        self.query_id = query.id
        self.tag = tracking.tag(query.id)
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.timeout = "DEFAULT" if timeout_s is None else str(max(1, int(timeout_s * 1000)))
        self.table = f"{RESULT_SCHEMA}.q{query.id}"
        self.czar = czar_pool(spec)
        self.stop = threading.Event()
        self.reason: str | None = None  # enough | error | killed | timeout
        self.failure: BaseException | None = None
        self.events: queue.SimpleQueue[_BatchDone | BaseException | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: set[psycopg.Connection] = set()
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
        back to its pool (and on to another query) meanwhile; an idle session ignores it."""
        with self._lock:
            for conn in self._busy:
                with suppress(psycopg.Error):  # a broken session runs nothing
                    conn.cancel_safe(timeout=5)

    def wait(self) -> float:
        """How long a lane may wait for a pooled session."""
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
            _prepare(conn, self.timeout)
            with self._lock:
                self._busy.add(conn)
            try:
                if not self.query.add_backend(name, conn.info.backend_pid, czar):
                    raise self.killed()
                yield conn
            finally:
                with self._lock:
                    self._busy.discard(conn)

    def lane(self, worker: str, batches: deque[tuple[int, ...]]) -> None:
        """Run batches of ``worker`` one after the other until none is left or we stop."""
        try:
            with borrow(self.czar, self.wait()) as czar, self.worker_session(worker, czar) as conn:
                while not self.stop.is_set():
                    try:
                        batch = batches.popleft()
                    except IndexError:
                        break
                    rows = self.stream(worker, conn, czar, batch)
                    status = tracking.add_progress(czar, self.query_id, len(batch))
                    self.events.put(_BatchDone(len(batch), rows, status))
        except BaseException as exc:
            self.events.put(exc)
        finally:
            self.events.put(None)

    def stream(
        self, worker: str, conn: psycopg.Connection, czar: psycopg.Connection, chunks: tuple
    ) -> int:
        """Copy the worker SQL's rows for ``chunks`` into the merge table; how many."""
        copy_out = f"{self.tag}COPY ({worker_sql(self.plan, chunks)}) TO STDOUT (FORMAT BINARY)"
        where = tracking.CZAR
        try:
            with czar.cursor() as into_cur:
                with into_cur.copy(f"COPY {self.table} FROM STDIN (FORMAT BINARY)") as into:
                    where = worker
                    buffer = bytearray()
                    with conn.cursor() as cur, cur.copy(copy_out) as out:
                        for data in out:  # one message per row: pass them on in bulk
                            buffer += data
                            if len(buffer) >= COPY_BUFFER:
                                where = tracking.CZAR
                                into.write(buffer)
                                buffer.clear()
                                where = worker
                    where = tracking.CZAR
                    into.write(buffer)
                return into_cur.rowcount
        except psycopg.Error as exc:
            raise _Failure(where, exc) from exc

    def make_table(self, czar: psycopg.Connection) -> None:
        """Learn the worker SQL's columns on one worker; make the merge table of them."""
        plan = self.plan
        worker = plan.replicated_worker or next(
            (w for w, chunks in plan.chunks.items() if chunks), self.spec.workers[0].name
        )
        try:
            with self.worker_session(worker, czar) as conn:
                probe = f"SELECT * FROM ({worker_sql(self.plan, ())}) AS qserv_probe LIMIT 0"
                cur = conn.execute(self.tag + probe)  # the tag first, where a kill looks
                res = cur.pgresult
                assert res is not None
                cols = range(res.nfields)
                kinds = conn.execute(
                    "SELECT format_type(t, nullif(m, -1)) FROM unnest(%s::oid[], %s::int[])"
                    " WITH ORDINALITY AS c(t, m, n) ORDER BY n",
                    ([res.ftype(i) for i in cols], [res.fmod(i) for i in cols]),
                ).fetchall()
        except psycopg.Error as exc:
            raise _Failure(worker, exc) from exc
        fields, seen = [], set()
        for i, (kind,) in enumerate(kinds):
            name = (res.fname(i) or b"").decode()
            while name in seen:  # the merge table cannot repeat a name
                name = f"{name}_{i}"
            seen.add(name)
            fields.append(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)))
        table = sql.Identifier(RESULT_SCHEMA, f"q{self.query_id}")
        czar.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(table, sql.SQL(", ").join(fields))
        )

    def translate(self, exc: BaseException) -> BaseException:
        """The error a user sees for a failure of a lane or of the merge."""
        if isinstance(exc, QueryKilled) or self.query.was_killed():
            return self.killed()
        if not isinstance(exc, _Failure):
            return exc
        error, where = exc.error, exc.where
        message = getattr(error.diag, "message_primary", None) or str(error).strip() or repr(error)
        if isinstance(error, psycopg.errors.QueryCanceled) and "timeout" in message:
            return self.timed_out(f" ({where}: {message})")
        if where == tracking.CZAR:
            return QueryError(f"the merge on the czar failed: {message}")
        return WorkerError(f"worker {where}: {message}")


def execute(
    spec: ClusterSpec,
    plan: ExecPlan,
    *,
    text: str = "",
    lang: str = "",
    owner: str = "",
    timeout_s: float | None = None,
    max_rows: int | None = None,
    batch_chunks: int = 16,
    per_worker: int = 2,
    on_progress: Progress | None = None,
) -> QueryResult:
    """Run ``plan`` on the cluster and return its result (see the module's docstring).

    Raises WorkerError (a worker's SQL failed), QueryTimeout, QueryKilled, QueryError
    (the merge failed) or InstanceUnreachable; the query is recorded failed or killed.
    """
    if batch_chunks < 1 or per_worker < 1 or (max_rows is not None and max_rows < 0):
        raise ValueError("batch_chunks and per_worker must be ≥ 1, max_rows ≥ 0")
    named = set(plan.chunks) | ({plan.replicated_worker} if plan.replicated_worker else set())
    if missing := named - {w.name for w in spec.workers}:
        raise QueryError(f"the plan names workers the cluster does not have: {sorted(missing)}")
    started = time.monotonic()
    total = 0 if plan.replicated_worker else plan.total_chunks
    worker = _single_batch_worker(plan, batch_chunks)
    # a single-batch plan is recorded by the tracker; the general path now, on the czar
    with nullcontext() if worker is not None else borrow(czar_pool(spec)) as czar:
        query = tracking.start(
            spec, text=text, lang=lang, owner=owner, chunks_total=total, czar=czar
        )
    run = _Run(spec, plan, query, timeout_s)
    table_made, failure = False, None
    try:
        try:
            if worker is not None:
                table, done = _run_direct(run, worker, max_rows), total
            else:
                with borrow(run.czar) as czar:
                    run.make_table(czar)
                    table_made = True
                lanes = _lanes(plan, batch_chunks, per_worker)
                done = _dispatch(run, lanes, total, on_progress) if lanes else 0
                with borrow(run.czar) as czar:
                    table = _merge(run, czar, max_rows)
            truncated = max_rows is not None and table.num_rows > max_rows
            if truncated:
                table = table.slice(0, max_rows)
            status = query.finish(
                "completed", rows=table.num_rows, truncated=truncated, chunks_done=done
            )
        except (_Failure, QueryKilled) as exc:
            raise run.translate(exc) from exc
        if status == "killed":
            raise run.killed()
        if worker is not None and on_progress is not None:
            on_progress(total, total)
        return QueryResult(table, truncated, query.id, done, time.monotonic() - started)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _cleanup(run, failure, table_made)


_PARTITION = re.compile(r"\.qserv_part__(\w+)\b")  # a literal first: a fast scan


def worker_sql(plan: ExecPlan, chunks: tuple[int, ...]) -> str:
    """The statement a worker runs for ``chunks`` (see :mod:`qserv_py.exec.plan`)."""
    template = plan.worker_sql.strip().rstrip(";")
    if "qserv_part__" not in template:
        return template.replace("{chunks}", _array(chunks))
    pieces = _pieces(template)

    def one(chunk: int | None) -> str:
        text = list(pieces)
        for i in range(1, len(pieces), 2):
            table = pieces[i]
            if chunk is not None and chunk in plan.partitions.get(table, ()):
                text[i] = f"{table}_{chunk}"
            else:
                text[i] = f"ONLY {table}"  # a partitioned parent alone holds no rows
        return "".join(text).replace("{chunks}", _array(() if chunk is None else (chunk,)))

    if not chunks:
        return one(None)
    if len(chunks) == 1:
        return one(chunks[0])
    return " UNION ALL ".join(f"({one(c)})" for c in chunks)


def _pieces(template: str) -> list[str]:
    """``template`` cut at its placeholders (``catalog.qserv_part__table``): its text at
    even indices, the tables (``catalog.table``) between them at odd ones."""
    pieces: list[str] = []
    end = 0
    for match in _PARTITION.finditer(template):
        start = match.start()  # the catalog is the word before the dot
        while start > end and (template[start - 1].isalnum() or template[start - 1] == "_"):
            start -= 1
        if start == match.start():
            continue
        pieces += [template[end:start], f"{template[start : match.start()]}.{match[1]}"]
        end = match.end()
    pieces.append(template[end:])
    return pieces


def _array(chunks: tuple[int, ...]) -> str:
    return f"ARRAY[{','.join(str(int(c)) for c in chunks)}]::bigint[]"


def _single_batch_worker(plan: ExecPlan, batch_chunks: int) -> str | None:
    """The worker that can answer ``plan`` alone in one statement, if there is one: a
    query of replicated tables, or one whose chunks fit one batch of one worker."""
    if plan.replicated_worker is not None:
        return plan.replicated_worker
    if len(plan.chunks) == 1:
        worker, chunks = next(iter(plan.chunks.items()))
        if 0 < len(chunks) <= batch_chunks:
            return worker
    return None


def _run_direct(run: _Run, worker: str, max_rows: int | None) -> pa.Table:
    """Answer a single-batch plan on its worker: the merge SQL over the worker SQL as a
    subquery, in one statement, straight into Arrow (at most ``max_rows + 1`` rows). The
    same SQL as the general path (so the same PostgreSQL semantics), without the merge
    table and its round trips."""
    plan = run.plan
    statement = worker_sql(plan, plan.chunks.get(worker, ()))
    if plan.passthrough and max_rows is None:  # the merge would only name the columns
        sql = run.tag + statement
    else:
        sql = run.tag + _merge_sql(plan, f"({statement}) AS qserv_partials", max_rows)
    with run.worker_session(worker) as conn:
        if run.stop.is_set():  # killed while the session was being registered
            raise run.killed()
        try:
            return fetch_table(conn, sql, columns=plan.columns)
        except psycopg.Error as exc:
            raise _Failure(worker, exc) from exc


def _merge_sql(plan: ExecPlan, partials: str, max_rows: int | None) -> str:
    """The merge SQL over ``partials``, cut to ``max_rows + 1`` rows (one more tells that
    more exist)."""
    sql = plan.merge_sql.strip().rstrip(";").replace("{partials}", partials)
    if max_rows is None:
        return sql
    return f"SELECT * FROM ({sql}) AS qserv_merge LIMIT {max_rows + 1}"


def _lanes(plan: ExecPlan, batch_chunks: int, per_worker: int) -> list[tuple[str, deque]]:
    """(worker, its queue of batches) for each lane; lanes of a worker share the queue."""
    if plan.replicated_worker is not None:
        return [(plan.replicated_worker, deque([()]))]
    lanes: list[tuple[str, deque]] = []
    for worker, chunks in plan.chunks.items():
        step = range(0, len(chunks), batch_chunks)
        batches = deque(tuple(chunks[i : i + batch_chunks]) for i in step)
        lanes += [(worker, batches)] * min(per_worker, len(batches))
    return lanes


def _dispatch(run: _Run, lanes: list, total: int, on_progress: Progress | None) -> int:
    """Run the lanes and watch them; the number of chunks done."""
    done = rows = 0
    deadline = run.deadline
    alive = len(lanes)
    pool = ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix=f"qserv-q{run.query_id}")
    try:
        for worker, batches in lanes:
            pool.submit(run.lane, worker, batches)
        while alive:
            if deadline is not None and time.monotonic() >= deadline:
                run.halt("timeout")
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                event = run.events.get(timeout=0.25 if run.stop.is_set() else wait)
            except queue.Empty:
                run.cancel()  # a lane may have begun a batch just before the stop
                continue
            if event is None:
                alive -= 1
            elif not isinstance(event, _BatchDone):
                run.halt("error", event)  # no-op when stopping: then errors are expected
            else:
                done, rows = done + event.chunks, rows + event.rows
                if event.status == "killed":
                    run.halt("killed")
                elif run.plan.concatenate and run.plan.limit is not None and rows >= run.plan.limit:
                    run.halt("enough")
                if on_progress is not None and run.reason in (None, "enough"):
                    try:
                        on_progress(done, total)
                    except Exception as exc:
                        run.halt("error", exc)
    except BaseException as exc:  # e.g. KeyboardInterrupt: stop the lanes before leaving
        run.halt("error", exc)
        raise
    finally:
        pool.shutdown(wait=True)
    if run.reason == "timeout":
        raise run.timed_out()
    if run.reason in ("error", "killed"):
        raise run.failure or run.killed()
    return done


def _merge(run: _Run, czar: psycopg.Connection, max_rows: int | None) -> pa.Table:
    """Run the merge SQL on the czar: at most ``max_rows + 1`` rows."""
    if not run.query.add_backend(tracking.CZAR, czar.info.backend_pid, czar):
        raise run.killed()
    merge = run.tag + _merge_sql(run.plan, run.table, max_rows)
    try:
        with czar.transaction():
            if run.deadline is not None:
                if (left := run.deadline - time.monotonic()) <= 0:
                    raise run.timed_out()
                czar.execute(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")
            return fetch_table(czar, merge, columns=run.plan.columns)
    except psycopg.Error as exc:
        raise _Failure(tracking.CZAR, exc) from exc


def _cleanup(run: _Run, exc: BaseException | None, table_made: bool) -> None:
    """Record a failure (or kill) with its message; drop the merge table."""
    try:
        if exc is not None:
            status = "killed" if isinstance(exc, QueryKilled) else "failed"
            message = str(exc) if isinstance(exc, QservError) else repr(exc)
            run.query.finish(status, error=message)
        if table_made:
            with borrow(run.czar) as czar:
                czar.execute(f"DROP TABLE IF EXISTS {run.table}")
    except (QservError, psycopg.Error) as err:
        log.warning("query %s: cannot record its end or drop %s: %s", run.query_id, run.table, err)
