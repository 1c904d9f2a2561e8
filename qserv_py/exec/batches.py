"""The general path of execution: batches of chunks streamed from the workers into the
merge table, with failover.

Each worker's chunks are cut into batches of ``batch_chunks`` in a queue of its own;
``per_worker`` lanes (threads) per worker take batches in turn, each streaming ``COPY
(worker SQL) TO STDOUT (FORMAT BINARY)`` straight into ``COPY qserv_result.q<id> FROM
STDIN (FORMAT BINARY)`` on its own czar session, inside a czar transaction: a batch's
rows land whole or not at all. A batch commits only if it was not given up meanwhile
(under the run's lock), so a batch is never counted twice.

The calling thread watches the lanes. When a worker fails (its server died, refused the
connection, or the link broke), it is marked failed, its unfinished batches — the one
that failed, whose rows were rolled back, and those still queued — go to other holders
of their chunks (:class:`~qserv_py.exec.routing.Router`), and lanes start there. A batch
that runs longer than ``batch_deadline_s`` on a worker that then no longer answers a new
session (a hung host) is given up, its session cut, and its worker treated as failed; on
a worker that answers, it is slow, not hung, and goes on. A batch that finds its
partition gone (the chunk moved away) runs on the chunk's holders of now. The thread
also calls ``on_progress``, stops early once a concatenating query with a LIMIT has its
rows, enforces ``timeout_s``, and on any other error (or kill, or timeout) cancels the
worker statements still running, waits for the lanes, and raises.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from typing import NamedTuple

import psycopg

from qserv_py.cluster.db import copy_out
from qserv_py.exec import limits, pools, tracking
from qserv_py.exec.arrow import fetch_table
from qserv_py.exec.plan import worker_sql
from qserv_py.exec.pools import borrow
from qserv_py.exec.run import BatchDone, Failure, Run, chunk_moved, sever, worker_failure

#: threads that run the lanes of all runs of the process; an idle one takes the next
#: lane, so a small query starts no thread (thread starts cost 6 ms of a 2,000-target
#: cross-match's 40 ms on a busy machine). A lane never waits for another lane, only for
#: sessions that running lanes give back: lanes beyond this number wait their turn.
LANE_THREADS = 256
_LANES = ThreadPoolExecutor(LANE_THREADS, thread_name_prefix="qserv-lane")
WATCH_S = 0.25  # how often the calling thread looks at the running batches' deadlines

Progress = Callable[[int, int], None]  # (chunks done, chunks total)
#: called in a lane before it runs chunks on a worker (uploads ship their rows there)
Prepare = Callable[[str, tuple[int, ...]], None]


@dataclass(eq=False)
class Batch:
    worker: str
    chunks: tuple[int, ...]
    #: queued | running | committed | abandoned
    state: str = "queued"
    started: float = 0.0  # when it began running, or was last found slow, not hung
    conn: psycopg.Connection | None = field(default=None, repr=False)
    judging: bool = False  # past its deadline: is its worker still answering?


class _Failed(NamedTuple):
    """A lane stopped on an error; ``batch`` is the one it was running, if any."""

    worker: str
    batch: Batch | None
    error: BaseException


class _Judged(NamedTuple):
    """Whether the worker of ``batch``, which ran past the batch deadline, answers."""

    batch: Batch
    alive: bool


class _Abandoned(Exception):
    """The batch was given up while it ran: its rows are rolled back."""


class Scheduler:
    """The batches of one run, their lanes, and the failover of a failed worker's work."""

    def __init__(
        self,
        run: Run,
        chunks: dict[str, tuple[int, ...]],
        batch_chunks: int,
        per_worker: int,
        prepare: Prepare | None,
    ) -> None:
        self.run, self.batch_chunks, self.per_worker = run, batch_chunks, per_worker
        self.prepare = prepare
        self.queues: dict[str, deque[Batch]] = {}
        self.lanes: dict[str, int] = {}  # live lanes per worker
        self.running: set[Batch] = set()
        self.alive = 0
        self.started: list[Future[None]] = []
        for worker, cs in chunks.items():
            self._enqueue(worker, cs)

    # --- the lanes (their own threads) -------------------------------------------------

    def lane(self, worker: str) -> None:
        """Run batches of ``worker`` one after the other until none is left or we stop."""
        run, batch, counted = self.run, None, True
        try:
            try:
                czar_session = borrow(run.czar, run.wait())
                czar = czar_session.__enter__()
            except BaseException as exc:
                run.events.put(_Failed(tracking.CZAR, None, exc))
                return
            try:
                with run.worker_session(worker, czar) as conn:
                    while not run.stop.is_set():
                        with run.lock:
                            if not self.queues[worker]:
                                self.lanes[worker] -= 1  # with the check: see _start_lanes
                                counted = False
                                break
                            batch = self.queues[worker].popleft()
                            batch.state, batch.conn = "running", conn
                            batch.started = time.monotonic()
                            self.running.add(batch)
                        if self.prepare is not None:
                            self.prepare(worker, self._ahead(worker, batch))
                        rows = self.stream(batch, conn, czar)
                        status = tracking.add_progress(czar, run.query_id, len(batch.chunks))
                        run.events.put(BatchDone(len(batch.chunks), rows, status))
                        batch = None
            finally:
                czar_session.__exit__(None, None, None)
        except BaseException as exc:
            run.events.put(_Failed(worker, batch, exc))
        finally:
            with run.lock:
                if batch is not None:
                    self.running.discard(batch)
                if counted:
                    self.lanes[worker] -= 1
            run.events.put(None)

    def _ahead(self, worker: str, batch: Batch) -> tuple[int, ...]:
        """The batch's chunks and those queued for ``worker`` (prepared all at once)."""
        with self.run.lock:
            queued = [c for b in self.queues[worker] for c in b.chunks]
        return (*batch.chunks, *queued)

    def stream(self, batch: Batch, conn: psycopg.Connection, czar: psycopg.Connection) -> int:
        """Copy the worker SQL's rows for the batch into the merge table, in one czar
        transaction that commits only if the batch was not given up; how many rows."""
        run = self.run
        rows = worker_sql(run.plan, batch.chunks, citus=run.spec.backend == "citus")
        if run.gathered is not None:
            return self.gather(batch, conn, rows)
        if run.max_bytes is not None:  # a row is one message through this process
            rows = limits.capped_rows(rows, run.max_bytes)
        out_sql = f"{run.tag}COPY ({rows}) TO STDOUT (FORMAT BINARY)"
        where = tracking.CZAR
        try:
            with czar.transaction(), czar.cursor() as into_cur:
                with into_cur.copy(f"COPY {run.table} FROM STDIN (FORMAT BINARY)") as into:

                    def write(buffer: bytearray) -> None:
                        nonlocal where
                        where = tracking.CZAR
                        into.write(buffer)
                        where = batch.worker

                    where = batch.worker
                    copy_out(conn, out_sql, write)
                    where = tracking.CZAR
                with run.lock:
                    self.running.discard(batch)
                    if batch.state == "abandoned":
                        raise _Abandoned()
                    batch.state = "committed"
                return into_cur.rowcount
        except psycopg.Error as exc:
            raise Failure(where, exc) from exc

    def gather(self, batch: Batch, conn: psycopg.Connection, rows: str) -> int:
        """Fetch the batch's rows into Arrow (a run without a merge table), kept only if
        the batch was not given up; how many rows."""
        run = self.run
        if run.row_cap is not None:  # rows past the cap are never needed
            rows = f"SELECT * FROM ({rows}) AS qserv_batch LIMIT {run.row_cap + 1}"
        try:
            table = fetch_table(conn, run.tag + rows, columns=run.plan.columns)
        except psycopg.Error as exc:
            raise Failure(batch.worker, exc) from exc
        with run.lock:
            self.running.discard(batch)
            if batch.state == "abandoned":
                raise _Abandoned()
            batch.state = "committed"
            assert run.gathered is not None
            run.gathered.append(table)
        return table.num_rows

    # --- the calling thread ------------------------------------------------------------

    def watch(self, total: int, on_progress: Progress | None) -> int:
        """Run every batch and watch them; the number of chunks done."""
        run = self.run
        done = rows = 0
        try:
            self._start_lanes()
            while self.alive:
                if run.deadline is not None and time.monotonic() >= run.deadline:
                    run.halt("timeout")
                self._check_deadlines()
                wait = WATCH_S if run.stop.is_set() or self.running else None
                if run.deadline is not None:
                    left = max(run.deadline - time.monotonic(), 0.0)
                    wait = left if wait is None else min(wait, left)
                try:
                    event = run.events.get(timeout=wait)
                except queue.Empty:
                    if run.stop.is_set():
                        run.cancel()  # a lane may have begun a batch just before the stop
                    continue
                if event is None:
                    self.alive -= 1
                elif isinstance(event, _Failed):
                    self._failed(event)
                elif isinstance(event, _Judged):
                    self._judged(event)
                elif isinstance(event, BatchDone):
                    done, rows = done + event.chunks, rows + event.rows
                    if event.status == "killed":
                        run.halt("killed")
                    elif (
                        run.plan.concatenate
                        and run.plan.limit is not None
                        and rows >= run.plan.limit
                    ) or (run.row_cap is not None and rows > run.row_cap):
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
            wait_all(self.started)
        if run.reason == "timeout":
            raise run.timed_out()
        if run.reason in ("error", "killed"):
            raise run.failure or run.killed()
        return done

    def _enough(self, rows: int) -> bool:
        plan = self.run.plan
        return plan.concatenate and plan.limit is not None and rows >= plan.limit

    def _failed(self, event: _Failed) -> None:
        """A lane's error: fail over if a worker failed or a chunk moved, else halt."""
        run, batch = self.run, event.batch
        if run.stop.is_set() or isinstance(event.error, _Abandoned):
            return  # errors are expected when stopping; an abandoned batch was rerouted
        if batch is not None and batch.state == "abandoned":
            return
        why = None if event.worker == tracking.CZAR else worker_failure(event.error)
        if not run.router.can_move:  # a plan made by hand: its errors are the answer
            if why is not None:
                run.router.fail(event.worker, why)
            run.halt("error", event.error)
            return
        try:
            if why is not None:
                self._fail_worker(event.worker, why, [batch] if batch is not None else [])
            elif batch is not None and chunk_moved(event.error):
                self._reroute(batch.chunks, exclude=(batch.worker,), moved=True)
                self._start_lanes()
            else:
                run.halt("error", event.error)
        except Exception as exc:  # no live replica: ChunksUnavailable
            run.halt("error", exc)

    def _fail_worker(self, worker: str, why: str, batches: list[Batch]) -> None:
        """``worker`` failed: its batches still running are given up (their sessions cut),
        and every unfinished batch of it goes to other holders."""
        run = self.run
        if worker not in run.router.failed:
            run.router.fail(worker, why)
            pools.discard(run.spec, worker)
        with run.lock:
            waiting = list(self.queues.get(worker, ()))
            if worker in self.queues:
                self.queues[worker].clear()
            running = [b for b in self.running if b.worker == worker and b.state == "running"]
            for b in running:
                b.state = "abandoned"
            self.running.difference_update(running)
        for b in running:
            if b.conn is not None:
                sever(b.conn)
        chunks = [c for b in (*batches, *running, *waiting) for c in b.chunks]
        if chunks:
            self._reroute(chunks, exclude=(worker,))
        self._start_lanes()

    def _check_deadlines(self) -> None:
        """Ask, on a thread of its own, whether the worker of each batch running past the
        batch deadline still answers (:meth:`_judged` acts on the answer)."""
        run = self.run
        now, limit = time.monotonic(), run.batch_deadline_s
        with run.lock:
            late = [
                b
                for b in self.running
                if b.state == "running" and not b.judging and now - b.started > limit
            ]
            for batch in late:
                batch.judging = True
        for batch in late:
            if run.stop.is_set():  # stopping: only free the lane stuck on it
                if batch.conn is not None:
                    sever(batch.conn)
                continue

            def judge(batch: Batch = batch) -> None:
                run.events.put(_Judged(batch, run.router.view.answers(batch.worker)))

            threading.Thread(target=judge, name="qserv-deadline", daemon=True).start()

    def _judged(self, event: _Judged) -> None:
        """A batch past the deadline on a worker that answers is slow: it gets the time
        again. On one that does not (a hung host), it is given up with its worker."""
        batch, run = event.batch, self.run
        with run.lock:
            batch.judging = False
            if batch.state != "running":  # it ended meanwhile, or was given up
                return
            if event.alive:
                batch.started = time.monotonic()
                return
        why = f"a batch ran longer than the batch deadline ({run.batch_deadline_s:g} s)"
        why += " and its worker no longer answers"
        try:
            self._fail_worker(batch.worker, why, [])
        except Exception as exc:
            run.halt("error", exc)

    def _reroute(
        self, chunks: Iterable[int], exclude: tuple[str, ...], *, moved: bool = False
    ) -> None:
        for worker, taken in self.run.router.reassign(chunks, exclude, moved=moved).items():
            self._enqueue(worker, tuple(taken))

    def _enqueue(self, worker: str, chunks: tuple[int, ...]) -> None:
        step = range(0, len(chunks), self.batch_chunks)
        with self.run.lock:
            queue_ = self.queues.setdefault(worker, deque())
            queue_.extend(Batch(worker, chunks[i : i + self.batch_chunks]) for i in step)

    def _start_lanes(self) -> None:
        """Lanes for the workers with queued batches, up to ``per_worker`` each. (A lane
        that finds its queue empty leaves the count under the same lock, so batches
        queued meanwhile always get a lane.)"""
        starts: list[str] = []
        with self.run.lock:
            for worker, batches in self.queues.items():
                if worker in self.run.router.failed or not batches:
                    continue
                have = self.lanes.get(worker, 0)
                for _ in range(max(min(self.per_worker, len(batches)) - have, 0)):
                    self.lanes[worker] = self.lanes.get(worker, 0) + 1
                    starts.append(worker)
        for worker in starts:
            self.alive += 1
            self.started.append(_LANES.submit(self.lane, worker))


def run_batches(
    run: Run,
    chunks: dict[str, tuple[int, ...]],
    total: int,
    *,
    batch_chunks: int,
    per_worker: int,
    on_progress: Progress | None,
    prepare: Prepare | None = None,
) -> int:
    """Run the chunks' batches on their workers (see the module's docstring); the number
    of chunks done."""
    if not chunks:
        return 0
    return Scheduler(run, chunks, batch_chunks, per_worker, prepare).watch(total, on_progress)
