"""Running an :class:`ExecPlan` on the cluster: fan out to the workers, merge on the czar.

0. Route: every chunk goes to a usable holder (:mod:`qserv_py.exec.routing`): the plan's
   choice where that worker is up, another replica where it is not. A chunk with no
   live holder fails the query at once, naming the chunks and the workers that are down
   — or, with ``partial=True``, is left out and listed in the result.
1. Record the query (``qserv_meta.queries``, running). Run the worker SQL with no chunks
   and ``LIMIT 0`` on one worker to learn its columns' types (``format_type`` there);
   make an UNLOGGED merge table ``qserv_result.q<id>`` of those columns on the czar.
2. Stream the batches of chunks into it (:mod:`qserv_py.exec.batches`): each batch lands
   whole or not at all; a failed worker's unfinished batches run on other replicas.
3. Run the merge SQL on the czar, limited to ``max_rows + 1`` rows (to detect overflow),
   into Arrow; record the query completed. Drop the merge table, whatever happened.

A plan whose merge only names the worker SQL's columns (``passthrough``), run without a
byte limit, needs no merge table: each batch's rows are fetched into Arrow (at most
``max_rows + 1``; a batch given up is dropped, as its COPY would be rolled back) and the
batches concatenated. No probe, no table made, filled, read and dropped on the czar.

A plan that one worker answers in one batch (a cone, an id lookup, a light curve, a
query of replicated tables) takes a shorter path: the merge SQL runs on that worker over
the worker SQL as a subquery, straight into Arrow; no probe, no merge table, no COPY. It
does not wait for the czar at all: its id comes from the process's block of ids, and
:mod:`qserv_py.exec.tracking`'s tracker writes its record in the background (its running
record only if it still runs after ``TRACK_AFTER_S``; from then on it can be killed as
any other). If its worker fails (or runs past ``batch_deadline_s`` and then no longer
answers), the plan is routed again without that worker and run again: nothing of the
failed attempt was kept. The worker session's ``statement_timeout`` is set only when it
changes; each statement starts with the query's tag (a comment, which a kill checks:
``tracking.tag``).

Sessions come from the process's pools (:mod:`qserv_py.exec.pools`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import partial as partial_call

import psycopg
import pyarrow as pa
from psycopg import sql

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import (
    InstanceUnreachable,
    QservError,
    QueryError,
    QueryKilled,
    QueryTimeout,
    WorkerError,
)
from qserv_py.exec import citus_direct, limits, pools, tracking
from qserv_py.exec.arrow import fetch_table
from qserv_py.exec.batches import Prepare, run_batches
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.plan import worker_sql as worker_sql  # re-exported
from qserv_py.exec.pools import admin_pool as admin_pool  # re-exported
from qserv_py.exec.pools import borrow, czar_pool
from qserv_py.exec.pools import close_pools as close_pools  # re-exported
from qserv_py.exec.routing import Router
from qserv_py.exec.run import RESULT_SCHEMA, Failure, Run, chunk_moved, worker_failure

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
    #: chunks left out of a partial query (no live replica): the result is incomplete
    missing_chunks: tuple[int, ...] = ()


class ShardsMoved(QservError):
    """Citus moved shards while a query read them straight from the nodes: the answer
    is not used (the query is answered again through the coordinator)."""


def execute(
    spec: ClusterSpec,
    plan: ExecPlan,
    *,
    text: str = "",
    lang: str = "",
    owner: str = "",
    timeout_s: float | None = None,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    batch_chunks: int = 16,
    per_worker: int = 2,
    on_progress: Progress | None = None,
    partial: bool = False,
    prepare: Prepare | None = None,
    on_start: Callable[[int], None] | None = None,
) -> QueryResult:
    """Run ``plan`` on the cluster and return its result (see :func:`_execute`).

    On Citus, a plan :mod:`qserv_py.exec.citus_direct` can serve reads the shards
    straight from the worker nodes; if Citus moved shards meanwhile (the placement
    changed, or the read failed on a shard or a node no longer there), it is answered
    again through the coordinator, which routes it to the shards where they are."""
    run = partial_call(
        _execute,
        text=text,
        lang=lang,
        owner=owner,
        timeout_s=timeout_s,
        max_rows=max_rows,
        max_bytes=max_bytes,
        batch_chunks=batch_chunks,
        per_worker=per_worker,
        on_progress=on_progress,
        partial=partial,
        prepare=prepare,
        on_start=on_start,
    )
    direct = citus_direct.route(spec, plan, batch_chunks) if prepare is None else None
    if direct is not None:
        try:
            return run(direct.spec, direct.plan, verify=direct.still_placed)
        except ShardsMoved:
            pass
        except (QueryKilled, QueryTimeout):
            raise
        except (InstanceUnreachable, WorkerError) as exc:  # a node failed (or its shard is
            # gone): Citus reads the shards' other placements, if any
            direct.still_placed()  # (the map is read again if the placements changed)
            log.info("a direct read failed (%s): answered through the coordinator", exc)
            return run(spec, plan)
        except QservError:  # e.g. the query's own error: the coordinator's if shards moved
            if direct.still_placed():
                raise
        log.info("Citus moved shards during a query: answered through the coordinator")
    return run(spec, plan)


def _execute(
    spec: ClusterSpec,
    plan: ExecPlan,
    *,
    verify: Callable[[], bool] | None = None,
    text: str = "",
    lang: str = "",
    owner: str = "",
    timeout_s: float | None = None,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    batch_chunks: int = 16,
    per_worker: int = 2,
    on_progress: Progress | None = None,
    partial: bool = False,
    prepare: Prepare | None = None,
    on_start: Callable[[int], None] | None = None,
) -> QueryResult:
    """Run ``plan`` on the cluster and return its result (see the module's docstring).

    ``partial``: answer from the live chunks when some have no live replica (listed in
    ``missing_chunks``) instead of failing. ``prepare(worker, chunks)`` runs before a
    worker reads chunks (uploads ship their rows there first). ``max_bytes``: the most
    bytes of rows the result may have; the servers stop the query beyond it
    (:mod:`qserv_py.exec.limits`, ResultTooLarge). ``on_start(query_id)`` is called once
    the query has its id (a caller that may kill it, e.g. when its client goes away); it
    may raise QueryKilled to stop the query at once.

    ``verify()``, if given, is asked before the result is returned: False raises
    ShardsMoved (the placement the plan read changed meanwhile).

    Raises WorkerError (a worker's SQL failed), ChunksUnavailable, QueryTimeout,
    QueryKilled, QueryError (the merge failed) or InstanceUnreachable; the query is
    recorded failed or killed.
    """
    if batch_chunks < 1 or per_worker < 1 or (max_rows is not None and max_rows < 0):
        raise ValueError("batch_chunks and per_worker must be ≥ 1, max_rows ≥ 0")
    named = set(plan.chunks) | ({plan.replicated_worker} if plan.replicated_worker else set())
    if missing := named - {w.name for w in spec.workers}:
        raise QueryError(f"the plan names workers the cluster does not have: {sorted(missing)}")
    started = time.monotonic()
    total = 0 if plan.replicated_worker else plan.total_chunks
    router = Router(spec, plan, partial=partial)
    plan = _routed(plan, router)
    worker = _single_batch_worker(plan, batch_chunks)
    # a single-batch plan is recorded by the tracker; the general path now, on the czar
    with nullcontext() if worker is not None else borrow(czar_pool(spec)) as czar:
        query = tracking.start(
            spec, text=text, lang=lang, owner=owner, chunks_total=total, czar=czar
        )
    run = Run(spec, plan, query, timeout_s, router, max_bytes)
    table_made, failure = False, None
    try:
        try:
            if on_start is not None:
                on_start(query.id)
            table: pa.Table | None = None
            while worker is not None and table is None:
                table = _run_direct(run, worker, max_rows, prepare)
                if table is None:  # its worker failed: route again
                    run.plan = plan = _rerouted(plan, router, worker)
                    worker = _single_batch_worker(plan, batch_chunks)
            if table is not None:
                done = total - len(router.missing)
            else:
                tracking.flush()  # the running row exists before sessions are registered
                if _gathers(run):
                    run.gathered, run.row_cap = [], max_rows
                else:
                    with borrow(run.czar) as czar:
                        _make_table(run, czar, prepare)
                        table_made = True
                done = run_batches(
                    run,
                    dict(plan.chunks),
                    total,
                    batch_chunks=batch_chunks,
                    per_worker=per_worker,
                    on_progress=on_progress,
                    prepare=prepare,
                )
                if run.reason is None and done + len(router.missing) < total:
                    # a backstop: an answer missing chunks is refused, never returned
                    raise WorkerError(
                        f"query {query.id} read {done} of its {total} chunks; it is not "
                        "answered (an internal error of qserv_py: please report it)"
                    )
                if run.gathered is not None:
                    table = pa.concat_tables(run.gathered)
                else:
                    with borrow(run.czar) as czar:
                        table = _merge(run, czar, max_rows)
            if verify is not None and not verify():
                raise ShardsMoved(
                    "Citus moved shards this query read from the worker nodes; "
                    "it was answered again through the coordinator"
                )
            truncated = max_rows is not None and table.num_rows > max_rows
            if truncated:
                table = table.slice(0, max_rows)
            status = query.finish(
                "completed", rows=table.num_rows, truncated=truncated, chunks_done=done
            )
        except (Failure, QueryKilled) as exc:
            raise run.translate(exc) from exc
        if status == "killed":
            raise run.killed()
        if worker is not None and on_progress is not None:
            on_progress(total, total)
        return QueryResult(
            table,
            truncated,
            query.id,
            done,
            time.monotonic() - started,
            tuple(sorted(router.missing)),
        )
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _cleanup(run, failure, table_made)


def _routed(plan: ExecPlan, router: Router) -> ExecPlan:
    """``plan`` with every chunk on a usable worker."""
    if plan.replicated_worker is not None:
        chosen = router.replicated()
        return plan if chosen == plan.replicated_worker else replace(plan, replicated_worker=chosen)
    chunks = router.initial()
    return plan if chunks is plan.chunks else replace(plan, chunks=chunks)


def _rerouted(plan: ExecPlan, router: Router, failed: str) -> ExecPlan:
    """``plan`` without worker ``failed`` (which the router knows failed)."""
    if plan.replicated_worker is not None:
        return replace(plan, replicated_worker=router.replicated())
    chunks = {w: list(cs) for w, cs in plan.chunks.items() if w != failed}
    for worker, moved in router.reassign(plan.chunks.get(failed, ()), (failed,)).items():
        chunks.setdefault(worker, []).extend(moved)
    return replace(plan, chunks={w: tuple(sorted(cs)) for w, cs in chunks.items() if cs})


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


def _gathers(run: Run) -> bool:
    """Can the general path do without a merge table? When the merge only names the
    worker SQL's columns (``passthrough``) and no byte limit is to be enforced (the merge
    counts the bytes), each batch's rows are fetched into Arrow and concatenated: no
    probe of the columns, no merge table made, filled, read and dropped on the czar."""
    return run.plan.passthrough and run.max_bytes is None and run.plan.total_chunks > 0


def _run_direct(
    run: Run, worker: str, max_rows: int | None, prepare: Prepare | None
) -> pa.Table | None:
    """Answer a single-batch plan on its worker: the merge SQL over the worker SQL as a
    subquery, in one statement, straight into Arrow (at most ``max_rows + 1`` rows). The
    same SQL as the general path (so the same PostgreSQL semantics), without the merge
    table and its round trips. None if the worker failed (or the chunk moved away): the
    router knows, and the plan can be routed again."""
    plan = run.plan
    statement = worker_sql(plan, plan.chunks.get(worker, ()), citus=run.spec.backend == "citus")
    if plan.passthrough and max_rows is None:  # the merge would only name the columns
        text = statement
    else:
        text = _merge_sql(plan, f"({statement}) AS qserv_partials", max_rows)
    guarded = run.max_bytes is not None
    if run.max_bytes is not None:
        text = limits.capped_total(text, run.max_bytes)
    text = run.tag + text
    late: list[bool] = []
    try:
        if prepare is not None:
            prepare(worker, plan.chunks.get(worker, ()))
        with run.worker_session(worker) as conn:
            if run.stop.is_set():  # killed while the session was being registered
                raise run.killed()
            try:
                with run.watchdog(conn, worker, lambda: late.append(True)):
                    return fetch_table(conn, text, columns=plan.columns, guarded=guarded)
            except psycopg.Error as exc:
                raise Failure(worker, exc) from exc
    except BaseException as exc:
        if run.stop.is_set():
            raise
        why = worker_failure(exc)
        if late:
            why = (
                f"its statement ran longer than the batch deadline ({run.batch_deadline_s:g} s)"
                " and its worker no longer answered"
            )
        if why is not None:
            run.router.fail(worker, why)
            pools.discard(run.spec, worker)
            if not run.router.can_move and plan.replicated_worker is None:
                raise
            return None
        if chunk_moved(exc) and run.router.can_move and plan.replicated_worker is None:
            run.router.failed.add(worker)  # for this query only: the chunk is elsewhere
            return None
        raise


def _make_table(run: Run, czar: psycopg.Connection, prepare: Prepare | None) -> None:
    """Learn the worker SQL's columns on a live worker; make the merge table of them."""
    plan, router = run.plan, run.router
    order = [w for w, cs in plan.chunks.items() if cs] + [w.name for w in run.spec.workers]
    for worker in dict.fromkeys(order):
        if worker in router.failed or not router.view.usable(worker):
            continue
        try:
            res, kinds = _probe_columns(run, worker, czar, prepare)
            break
        except (Failure, InstanceUnreachable) as exc:  # the latter: no session there
            why = worker_failure(exc)
            if why is None:
                raise
            router.fail(worker, why)
            pools.discard(run.spec, worker)
    else:
        router.replicated()  # raises ChunksUnavailable: no worker is reachable
        raise QueryError("no live worker could describe the query's columns; try again")
    fields, seen = [], set()
    for i, (kind,) in enumerate(kinds):
        name = (res.fname(i) or b"").decode()
        while name in seen:  # the merge table cannot repeat a name
            name = f"{name}_{i}"
        seen.add(name)
        fields.append(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)))
    table = sql.Identifier(RESULT_SCHEMA, f"q{run.query_id}")
    czar.execute(sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(table, sql.SQL(", ").join(fields)))
    if run.max_bytes is not None:  # sizes as sent, not as compressed there (see limits)
        czar.execute(limits.uncompressed(run.table))


def _probe_columns(
    run: Run, worker: str, czar: psycopg.Connection, prepare: Prepare | None
) -> tuple:
    """The worker SQL's result description (no chunks, no rows) and its column types."""
    try:
        if prepare is not None:
            prepare(worker, ())
        with (
            run.worker_session(worker, czar) as conn,
            run.watchdog(conn, worker, lambda: None),
        ):
            statement = worker_sql(run.plan, (), citus=run.spec.backend == "citus")
            probe = f"SELECT * FROM ({statement}) AS qserv_probe LIMIT 0"
            cur = conn.execute(run.tag + probe)  # the tag first, where a kill looks
            res = cur.pgresult
            assert res is not None
            cols = range(res.nfields)
            kinds = conn.execute(
                "SELECT format_type(t, nullif(m, -1)) FROM unnest(%s::oid[], %s::int[])"
                " WITH ORDINALITY AS c(t, m, n) ORDER BY n",
                ([res.ftype(i) for i in cols], [res.fmod(i) for i in cols]),
            ).fetchall()
    except psycopg.Error as exc:
        raise Failure(worker, exc) from exc
    return res, kinds


def _merge_sql(plan: ExecPlan, partials: str, max_rows: int | None) -> str:
    """The merge SQL over ``partials``, cut to ``max_rows + 1`` rows (one more tells that
    more exist)."""
    text = plan.merge_sql.strip().rstrip(";").replace("{partials}", partials)
    if max_rows is None:
        return text
    return f"SELECT * FROM ({text}) AS qserv_merge LIMIT {max_rows + 1}"


def _merge(run: Run, czar: psycopg.Connection, max_rows: int | None) -> pa.Table:
    """Run the merge SQL on the czar: at most ``max_rows + 1`` rows."""
    if not run.query.add_backend(tracking.CZAR, czar.info.backend_pid, czar):
        raise run.killed()
    merge = _merge_sql(run.plan, run.table, max_rows)
    if run.max_bytes is not None:
        merge = limits.capped_total(merge, run.max_bytes)
    merge = run.tag + merge
    try:
        with czar.transaction():
            if run.deadline is not None:
                if (left := run.deadline - time.monotonic()) <= 0:
                    raise run.timed_out()
                czar.execute(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")
            return fetch_table(
                czar, merge, columns=run.plan.columns, guarded=run.max_bytes is not None
            )
    except psycopg.Error as exc:
        raise Failure(tracking.CZAR, exc) from exc


def _cleanup(run: Run, exc: BaseException | None, table_made: bool) -> None:
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
