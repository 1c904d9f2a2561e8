"""Running a plan that reads uploads: ship them to the workers, run it, drop them.

:func:`execute` takes any plan. One that reads uploads
(:class:`~qserv_py.query.uploads.UploadPlan`) first gets its rows: prepared by the planner
when it had the uploads' data, else prepared here from ``uploads`` (a cross-match's
targets partitioned to chunks; the chunk set narrowed to chunks with targets). Then
:func:`qserv_py.exec.dispatch.execute` runs it, with the worker SQL naming this run's
tables in place of the planner's tokens; before a worker first reads (execution routes
chunks to live workers only), its tables are made there, as the admin user, in one
transaction: an UNLOGGED table ``qserv_upload.u<unix time>_<random>_<n>`` per upload (a
cross-match's table holds only the copies for that worker's chunks, sorted by chunk and
range, with an index on the chunk), filled by binary COPY, analyzed, readable by the
read-only role. A worker that takes over chunks of a failed one gets their rows then.
The tables are dropped whatever happens; :func:`sweep` drops leftovers of a crashed
process (the service runs it at start).

A small upload (at most ``INLINE_ROWS`` rows in one worker statement) on native workers
makes no tables: its rows are written into each chunk's statement as array literals
(:func:`_inline`), so a 2,000-target cross-match costs no round trip on a worker beyond
its statements. The merge of a cross-match usually only names the columns: such a plan
runs without a merge table on the czar (:mod:`qserv_py.exec.dispatch`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg_pool import PoolTimeout

from qserv_py.cluster.db import on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import InstanceUnreachable, QservError, QueryError, UploadError
from qserv_py.exec import dispatch, pools, watchdog
from qserv_py.exec.dispatch import QueryResult
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.run import Failure, server_failed
from qserv_py.exec.sqlstate import database_error, user_error
from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch
from qserv_py.ops.health import health
from qserv_py.query.uploads import (
    CHUNK,
    HI,
    LO,
    SCHEMA,
    UploadPlan,
    UploadUse,
    prepare,
    shipment_chunks,
)

log = logging.getLogger(__name__)

#: upload tables older than this are leftovers (no query runs that long)
MAX_AGE_S = 86_400.0
#: rows encoded for COPY at a time
COPY_ROWS = 1 << 16
_LOCK = 0x5155_504C  # advisory lock key for creating the schema ("QUPL")
_NAME = re.compile(r"^u(\d+)_[0-9a-f]+_\d+$")

_ready: set[tuple[int, str]] = set()  # workers whose schema this process has checked
_lock = threading.Lock()


def execute(
    spec: ClusterSpec,
    plan: ExecPlan,
    *,
    uploads: Mapping[str, pa.Table] | None = None,
    **options: Any,
) -> QueryResult:
    """Run ``plan`` (with its uploads, if it reads any); ``options`` are those of
    :func:`qserv_py.exec.dispatch.execute`. ``uploads`` (by name) are needed when the
    plan was made from the uploads' schemas only."""
    if not isinstance(plan, UploadPlan) or not plan.uploads:
        return dispatch.execute(spec, plan, **options)
    shipments = _shipments(plan, uploads or {})
    plan = _narrowed(plan, shipments)
    if not plan.passthrough and _renames(plan):
        plan = replace(plan, passthrough=True)
    inline = _inline(spec, plan, shipments, options.get("batch_chunks", 16))
    if inline is not None:  # nothing to make on the workers, nor to drop
        return dispatch.execute(spec, inline, **options)
    stamp = f"u{int(time.time())}_{secrets.token_hex(5)}"
    names = {use.token: f"{stamp}_{i}" for i, use in enumerate(plan.uploads)}
    shipper = _Shipper(spec, plan, shipments, names)
    try:
        named = replace(plan, worker_sql=_named(plan, names))
        return dispatch.execute(spec, named, prepare=shipper.prepare, **options)
    finally:
        shipper.drop()


class _Shipper:
    """Ships a run's uploads to each worker before it reads them: on its first use the
    tables with the rows of the chunks it is to read (all rows of an upload that is not
    a cross-match's), then the rows of any chunk it takes over from a failed worker."""

    def __init__(
        self,
        spec: ClusterSpec,
        plan: UploadPlan,
        shipments: Mapping[str, pa.Table],
        names: Mapping[str, str],
    ) -> None:
        self.spec, self.plan, self.shipments, self.names = spec, plan, shipments, names
        self.shipped: dict[str, set[int]] = {}  # worker -> chunks shipped there
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def prepare(self, worker: str, chunks: tuple[int, ...]) -> None:
        with self._lock:
            lock = self._locks.setdefault(worker, threading.Lock())
        with lock:
            done = self.shipped.get(worker)
            new = [c for c in chunks if done is None or c not in done]
            if done is not None and not new:
                return
            _ship(self.spec, self.spec.worker(worker), self.plan, self.shipments, self.names,
                  new, create=done is None)  # fmt: skip
            self.shipped.setdefault(worker, set()).update(new)

    def drop(self) -> None:
        workers = [self.spec.worker(w) for w in self._locks]
        on_each(workers, lambda w: _drop(self.spec, w, list(self.names.values())))


def _shipments(plan: UploadPlan, uploads: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """The rows of each use of the plan: the planner's, or prepared now."""
    out = dict(plan.shipments)
    chunks = {c for cs in plan.chunks.values() for c in cs}
    by_name = {name.lower(): table for name, table in uploads.items()}
    for use in plan.uploads:
        if use.token in out:
            continue
        data = by_name.get(use.name)
        if data is None:
            raise QueryError(
                f"the query reads the upload {use.name}, but its data was not given "
                f"(uploads={{'{use.name}': table}})"
            )
        out[use.token] = prepare(use, data, chunks)
    return out


def _narrowed(plan: UploadPlan, shipments: Mapping[str, pa.Table]) -> UploadPlan:
    """The plan without chunks where an (inner) cross-match has no target."""
    matches = [u for u in plan.uploads if u.xmatch is not None and u.xmatch.narrows]
    if not matches:
        return plan
    reachable = set.intersection(*(shipment_chunks(shipments[u.token]) for u in matches))
    chunks = {w: tuple(c for c in cs if c in reachable) for w, cs in plan.chunks.items()}
    return replace(plan, chunks={w: cs for w, cs in chunks.items() if cs})


def _renames(plan: ExecPlan) -> bool:
    """Does the merge SQL only name the worker SQL's columns, in order (``SELECT c0 AS
    "a", c1 AS "b" FROM {partials}``)? (The planner leaves ``passthrough`` unset for
    plans with uploads; a cross-match's merge is often just this.)"""
    found = _RENAMES.fullmatch(plan.merge_sql.strip())
    if found is None:
        return False
    sources = re.findall(r'(?:^|, )c(\d+) AS "', found.group(1))
    return sources == [str(i) for i in range(len(plan.columns))] and len(plan.columns) > 0


_RENAMES = re.compile(r'SELECT ((?:c\d+ AS "[^"]*"(?:, )?)+) FROM \{partials\}')


def _named(plan: ExecPlan, names: Mapping[str, str]) -> str:
    """The worker SQL reading the tables made for this run."""

    def name(match: re.Match[str]) -> str:
        found = names.get(match.group(1) or "")
        return match.group(0) if found is None else f"{SCHEMA}.{found}"

    return _TOKEN.sub(name, plan.worker_sql)


_TOKEN = re.compile(r"'(?:[^']|'')*'|\b" + SCHEMA + r"\.(upload__[a-z0-9_]+)\b")
#: what an inlined statement's rewrite replaces: _TOKEN's, and the probe's PRESENT
_INLINED = re.compile(_TOKEN.pattern + "|(" + re.escape("{partitions_present}") + ")")


# --- small uploads: rows written into the statement ------------------------------------------


def _inline(
    spec: ClusterSpec, plan: UploadPlan, shipments: Mapping[str, pa.Table], batch_chunks: int
) -> ExecPlan | None:
    """For a small upload on native workers, the plan whose statements hold its rows in
    place of its table, through ``ExecPlan.per_chunk``: ``(SELECT * FROM
    unnest('{...}'::type[], ...) AS qserv_rows(columns))`` (a cross-match's rows of the
    statement's chunks; all rows of another upload), run without parallel workers
    (:func:`_serial`), its director read by :func:`_probing` where the shape allows.
    Nothing is made on the workers, so the query saves the tables' creation, filling,
    analysis and drop (round trips on each worker), and a failed worker's chunks need
    nothing shipped. None when an upload is too large (a statement would hold more than
    INLINE_ROWS rows) or too wide (more than INLINE_COLUMNS columns), has a column whose
    values are not written exactly as text here, or is not named with an alias in the
    SQL."""
    if spec.backend == "citus":
        return None
    whole = sum(shipments[u.token].num_rows for u in plan.uploads if u.xmatch is None)
    matched = sum(shipments[u.token].num_rows for u in plan.uploads if u.xmatch is not None)
    branches = max(1, min(batch_chunks, max((len(c) for c in plan.chunks.values()), default=1)))
    if matched + whole * branches > INLINE_ROWS:
        return None
    if any(len(u.columns) > INLINE_COLUMNS for u in plan.uploads):
        return None  # a wide upload goes as a table (which also names PostgreSQL's limits)
    for found in _TOKEN.finditer(plan.worker_sql):
        if found.group(1) is not None and not _ALIASED.match(plan.worker_sql, found.end()):
            return None
    rows_of: dict[str, Callable[[tuple[int, ...]], str]] = {}
    for use in plan.uploads:
        rows = shipments[use.token]
        if not all(_writable(rows.column(n)) for n, _ in use.columns):
            return None
        rows_of[use.token] = _rows_text(use, rows)
    probing = _probing(plan)
    partitions = plan.partitions.get(probing[1], frozenset()) if probing else frozenset()

    def rewrite(statement: str, chunks: tuple[int, ...]) -> str:
        def one(match: re.Match[str]) -> str:
            if match.group(1) is not None:
                return rows_of[match.group(1)](chunks)
            if match.group(2) is not None:  # the probe's partitions (see _probing)
                return _present(probing[1] if probing else "", chunks, partitions)
            return match.group(0)  # a string literal

        return _INLINED.sub(one, statement)

    return replace(
        plan,
        worker_sql=plan.worker_sql if probing is None else probing[0],
        per_chunk=rewrite,
        worker_settings=_serial(plan.worker_settings),
    )


def _probing(plan: UploadPlan) -> tuple[str, str] | None:
    """The worker SQL of an inner cross-match whose one partitioned table is the
    director, written to read the director's partitioned parent once per target copy,
    and that parent's name; None for any other shape.

    ``... FROM <targets> AS t JOIN cat.qserv_part__object AS o ON (<distance>) WHERE
    t.qserv_chunk = ANY({chunks}) AND o.spatial_index >= t.qserv_lo AND ...`` becomes
    ``... JOIN LATERAL (SELECT * FROM cat.object AS o WHERE o.chunk_id = t.qserv_chunk
    AND o.chunk_id = ANY({chunks}) AND <the copy's range> AND <the partitions exist>
    OFFSET 0) AS o ON (<distance>) ...``: one statement for a batch of chunks, not a
    UNION ALL of a branch per chunk. PostgreSQL plans it once (a 16-chunk batch of a
    2,000-target cross-match: 0.8-1.3 ms against 3.4-3.5 ms), prunes the parent's
    partitions to the batch's at planning and to the copy's chunk at each probe (run-time
    pruning), and OFFSET 0 keeps the probe a nested loop (without it, a hash join of
    every row of the chunks was chosen: docs/benchmarks.md). The partitions' names are
    read as ``regclass`` in the statement's text, so one that is gone (its chunk moved
    away) fails the statement as naming it would (``undefined_table``: the batch runs
    again where its chunks are now); the parent, locked from then on, keeps them.
    """
    matches = [u for u in plan.uploads if u.xmatch is not None and u.xmatch.narrows]
    sql_ = plan.worker_sql
    if len(matches) != 1 or len(_PARTITIONED.findall(sql_)) != 1:
        return None
    use = matches[0]
    assert use.xmatch is not None
    t, o = use.xmatch.alias, use.xmatch.director
    ranges = (
        f"{t}.{CHUNK} = ANY({{chunks}}) AND {o}.spatial_index >= {t}.{LO} "
        f"AND {o}.spatial_index < {t}.{HI}"
    )
    found = re.search(
        rf"\b([a-z_][a-z0-9_]*)\.qserv_part__([a-z0-9_]+) AS {re.escape(o)}(?=[ ,)]|$)", sql_
    )
    if found is None or ranges not in sql_:
        return None
    director, targets = found.group(0), f"{SCHEMA}.{use.token} AS {t}"
    for before, after in (  # an inner join's sides swap: the probe comes after the targets
        (f"FROM {director} JOIN {targets} ON ", f"FROM {targets} JOIN {director} ON "),
        (f"FROM {director}, {targets} ", f"FROM {targets}, {director} "),
    ):
        if sql_.count(before) == 1:
            sql_ = sql_.replace(before, after)
    at = sql_.find(director)
    lead = sql_[:at]
    if not (
        re.search(rf"{re.escape(targets)}[ ,]", lead)
        and (lead.endswith(", ") or lead.endswith(" JOIN "))
        and lead.rsplit(None, 2)[-2 if lead.endswith(" JOIN ") else -1].upper() not in _OUTER
    ):
        return None
    parent = f"{found.group(1)}.{found.group(2)}"
    probe = (
        f"LATERAL (SELECT * FROM {parent} AS {o} WHERE {o}.chunk_id = {t}.{CHUNK}"
        f" AND {o}.chunk_id = ANY({{chunks}}) AND {o}.spatial_index >= {t}.{LO}"
        f" AND {o}.spatial_index < {t}.{HI} AND {PRESENT} OFFSET 0) AS {o}"
    )
    return lead + probe + sql_[at + len(director) :], parent


def _present(parent: str, chunks: tuple[int, ...], partitions: frozenset[int]) -> str:
    """A condition that fails the statement where a partition of ``parent`` for one of
    ``chunks`` is missing (see :func:`_probing`), true otherwise."""
    names = ",".join(f"{parent}_{c}" for c in chunks if c in partitions)
    return f"'{{{names}}}'::regclass[] IS NOT NULL" if names else "true"


PRESENT = "{partitions_present}"
_PARTITIONED = re.compile(r"\.qserv_part__\w+\b")
_OUTER = frozenset({"LEFT", "RIGHT", "FULL", "OUTER", "CROSS", "NATURAL"})


def _rows_text(use: UploadUse, rows: pa.Table) -> Callable[[tuple[int, ...]], str]:
    """The subquery of ``use``'s rows that a statement reading ``chunks`` holds: all of
    them for an upload that is not cross-matched, else the target copies of those chunks."""
    if use.xmatch is not None:
        order = np.argsort(rows.column(CHUNK).to_numpy(), kind="stable")
        rows = rows.take(pa.array(order))
    names = ", ".join(sql.Identifier(n).as_string(None) for n, _ in use.columns)
    types = [t for _, t in use.columns]
    if use.xmatch is None:
        bounds, at = [0, rows.num_rows], {}
    else:
        chunk_ids = rows.column(CHUNK).to_numpy()
        edges = np.r_[True, chunk_ids[1:] != chunk_ids[:-1]] if len(chunk_ids) else []
        bounds = [*map(int, np.flatnonzero(edges)), len(chunk_ids)]
        at = {int(chunk_ids[a]): i for i, a in enumerate(bounds[:-1])}
    # each column's values, joined per chunk
    joined = [_joined(rows.column(n), bounds) for n, _ in use.columns]

    def subquery(chunks: tuple[int, ...]) -> str:
        if use.xmatch is None:
            parts = [[j[0]] for j in joined]
        else:
            slices = [at[c] for c in chunks if c in at]
            parts = [[j[i] for i in slices] for j in joined]
        arrays = ", ".join(_literal(",".join(p), t) for p, t in zip(parts, types, strict=True))
        return f"(SELECT * FROM unnest({arrays}) AS qserv_rows({names}))"

    return subquery


def _serial(settings: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A small upload's worker statements run without parallel workers: each branch is an
    index probe per target (~0.1 ms for 10-30 targets of a chunk), but a batch's
    UNION ALL of 16 such branches is estimated costly enough for a Parallel Append, whose
    workers took 25-70 ms to start on a busy worker for ~8 ms of work (EXPLAIN ANALYZE
    of a 2,000-target cross-match's batch: 90-127 ms in parallel, 20-43 ms serial). The
    cluster's lanes already run a query's batches concurrently."""
    kept = tuple((name, value) for name, value in settings if name != PARALLEL)
    return (*kept, (PARALLEL, "0"))


PARALLEL = "max_parallel_workers_per_gather"
#: the most rows of uploads that one worker statement holds in its text (see _inline)
INLINE_ROWS = 5_000
#: the most columns of an upload written into statements (a wider one is shipped)
INLINE_COLUMNS = 64
_ALIASED = re.compile(r"\s+AS\s", re.IGNORECASE)


def _writable(column: pa.ChunkedArray) -> bool:
    """Are ``column``'s values written exactly by :func:`_values`? (Other types, and text
    with a NUL, which PostgreSQL refuses, are shipped as tables, with their errors.)"""
    kind = column.type
    if kind == pa.string():
        import pyarrow.compute as pc  # (here: slow to import)

        return not pc.any(pc.match_substring(column, "\x00")).as_py()
    return kind in _WRITABLE


_WRITABLE = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
             pa.float32(), pa.float64(), pa.bool_())  # fmt: skip


def _joined(column: pa.ChunkedArray, bounds: list[int]) -> list[str]:
    """The values of each slice ``bounds[i]:bounds[i + 1]`` of ``column`` as the elements
    of an array literal, comma-separated: integers and booleans as such, floats by their
    shortest exact text (Arrow's, as ``repr``'s; PostgreSQL reads ``nan``, ``inf`` and
    ``-inf`` too), strings double-quoted with their quotes and backslashes escaped, NULL.
    (Arrow's kernels: writing 2,000 targets' six columns one value at a time in Python
    was a tenth of a small cross-match's time.)"""
    import pyarrow.compute as pc  # (here: slow to import)

    values = column.combine_chunks()
    kind = values.type
    if kind == pa.string():
        text = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', text, '"', "")
    elif kind == pa.bool_():
        text = pc.if_else(values, "t", "f")
    else:
        text = pc.cast(values, pa.string())
    lists = pa.ListArray.from_arrays(pa.array(bounds, pa.int32()), pc.fill_null(text, "NULL"))
    return pc.binary_join(lists, ",").to_pylist()


def _literal(joined: str, kind: str) -> str:
    """The array of the ``joined`` elements (from :func:`_joined`) as a SQL literal of
    type ``kind[]``: an escape string where a backslash is in it, so that no server
    setting changes it."""
    text = ("{" + joined + "}").replace("'", "''")
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\") + f"'::{kind}[]"
    return f"'{text}'::{kind}[]"


# --- the workers' side -----------------------------------------------------------------------


@contextmanager
def _admin(spec: ClusterSpec, worker: Instance) -> Iterator[psycopg.Connection]:
    try:
        with pools.admin_pool(worker).connection() as conn:
            _schema(spec, worker, conn)
            yield conn
    except PoolTimeout as exc:
        raise InstanceUnreachable(f"no admin session on {worker.name}: {exc}") from exc


def _schema(spec: ClusterSpec, worker: Instance, conn: psycopg.Connection) -> None:
    """The upload schema, readable by the read-only role (made once; clusters set up
    before uploads existed get it here)."""
    key = (os.getpid(), worker.dsn)
    if key in _ready:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(spec.reader_user)
            )
        )
    with _lock:
        _ready.add(key)


def _ship(
    spec: ClusterSpec,
    worker: Instance,
    plan: UploadPlan,
    shipments: Mapping[str, pa.Table],
    names: Mapping[str, str],
    chunks: list[int],
    *,
    create: bool,
) -> None:
    """Make the plan's upload tables on ``worker`` (``create``), or add to them, in one
    transaction: a cross-match's rows of ``chunks``, every row of the others."""
    import pyarrow.compute as pc  # (here: slow to import)

    wanted = pa.array(chunks, pa.int64())
    where = " or ".join(use.name for use in plan.uploads) or "?"  # until we know which
    view = health(spec)  # a big upload on a live worker is slow, not hung
    try:
        with (
            _admin(spec, worker) as conn,
            watchdog.patient_guard(
                conn, view.settings.batch_deadline_s, functools.partial(view.answers, worker.name)
            ),
        ):
            if create:  # in a transaction of its own that never waits (see _create)
                conn.execute(_create(spec, plan, names))
            with conn.transaction():
                for use in plan.uploads:
                    where = use.name
                    rows = shipments[use.token]
                    if use.xmatch is not None:
                        rows = rows.filter(pc.is_in(rows.column(CHUNK), value_set=wanted))
                    elif not create:
                        continue  # all its rows are there
                    _store(conn, use, names[use.token], rows)
    except psycopg.Error as exc:
        if server_failed(exc):
            raise Failure(worker.name, exc) from exc  # the worker's failure: fail over
        found = user_error(worker.name, exc)
        if found is not None:  # e.g. more columns than a PostgreSQL table can have
            raise UploadError(f"the upload {where} cannot be stored: {found}") from exc
        raise database_error(worker.name, exc, f"storing the upload {where}") from exc


def _create(spec: ClusterSpec, plan: UploadPlan, names: Mapping[str, str]) -> sql.Composed:
    """The run's upload tables (a cross-match's with a BRIN index on its chunk, summarised
    once filled), readable by the read-only role: one simple-query message, run in
    autocommit as one implicit transaction that never waits for the client. (A backend
    whose postmaster was SIGKILLed notices only while waiting, and its rollback of a
    transaction that made UNLOGGED tables would leave them without init forks: crash
    recovery then fails, see loaders.staging.create_unlogged.)"""
    statements = []
    for use in plan.uploads:
        name = names[use.token]
        table = sql.Identifier(SCHEMA, name)
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in use.columns
        )
        statements.append(sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(table, definition))
        if use.xmatch is not None:  # rows come sorted by chunk: BRIN finds a chunk's
            statements.append(
                sql.SQL("CREATE INDEX {} ON {} USING brin ({}) WITH (pages_per_range = 4)").format(
                    sql.Identifier(f"{name}_chunk"), table, sql.Identifier(CHUNK)
                )
            )
        statements.append(
            sql.SQL("GRANT SELECT ON {} TO {}").format(table, sql.Identifier(spec.reader_user))
        )
    return sql.SQL("; ").join(statements)


def _store(conn: psycopg.Connection, use: UploadUse, name: str, rows: pa.Table) -> None:
    """Add ``rows`` to the upload table ``name`` (in the caller's transaction)."""
    table = sql.Identifier(SCHEMA, name)
    columns = [n for n, _ in use.columns]
    types = [t for _, t in use.columns]
    into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    labels = [f"{use.name}.{n}" for n in columns]
    with conn.cursor() as cur, cur.copy(into) as copy:
        copy.write(HEADER)
        for start in range(0, rows.num_rows, COPY_ROWS):
            part = rows.slice(start, COPY_ROWS)
            try:
                data = encode_batch([part.column(n) for n in columns], types, names=labels)
            except ValueError as exc:
                raise QueryError(f"upload {use.name}: {exc}") from exc
            copy.write(data)
        copy.write(TRAILER)
    if use.xmatch is not None:  # the new pages in the index (BRIN leaves them out)
        index = sql.Literal(f"{SCHEMA}.{name}_chunk")
        conn.execute(sql.SQL("SELECT brin_summarize_new_values({}::regclass)").format(index))
    # statistics from a small sample: enough for the planner, at a tenth of the cost
    conn.execute("SET LOCAL default_statistics_target = 10")
    conn.execute(sql.SQL("ANALYZE {}").format(table))


def _drop(spec: ClusterSpec, worker: Instance, names: list[str]) -> None:
    """Drop this run's tables on ``worker`` (those that exist); never raises."""
    try:
        with _admin(spec, worker) as conn:
            tables = sql.SQL(", ").join(sql.Identifier(SCHEMA, n) for n in names)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables))
    except (QservError, psycopg.Error) as exc:
        log.warning("cannot drop the upload tables %s on %s: %s", names, worker.name, exc)


def sweep(spec: ClusterSpec, max_age_s: float = MAX_AGE_S) -> int:
    """Drop upload tables older than ``max_age_s`` on every worker (leftovers of a
    process that died while running a query); how many. A worker that cannot be
    reached is skipped (with a warning)."""

    def one(worker: Instance) -> int:
        try:
            with _admin(spec, worker) as conn:
                found = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (SCHEMA,)
                ).fetchall()
                now = time.time()
                old = [
                    n
                    for (n,) in found
                    if (m := _NAME.match(n)) is not None and now - int(m.group(1)) > max_age_s
                ]
                if old:
                    tables = sql.SQL(", ").join(sql.Identifier(SCHEMA, n) for n in old)
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables))
                return len(old)
        except (QservError, psycopg.Error) as exc:
            log.warning("cannot sweep the upload tables of %s: %s", worker.name, exc)
            return 0

    return sum(on_each(list(spec.workers), one))


def upload_tables(spec: ClusterSpec) -> dict[str, list[str]]:
    """The upload tables on each worker now (for tests and operators)."""

    def one(worker: Instance) -> list[str]:
        with _admin(spec, worker) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (SCHEMA,)
            ).fetchall()
        return [r[0] for r in rows]

    return dict(zip((w.name for w in spec.workers), on_each(list(spec.workers), one), strict=True))
