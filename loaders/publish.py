"""Publishing a staged load, atomically, and aborting one.

Publish has two steps:

1. *Build*, invisible to queries and repeatable. On each worker and for each staged
   chunk that is new or holds no more live rows than the load adds, a new table holds
   the chunk's live rows plus its staged rows, sorted by ``spatial_index``. It carries
   a ``CHECK (chunk_id = …)`` constraint and the parent's indexes, and is analysed.
   A child's keys are checked against the live rows of the chunks that already have
   some, where a reloaded row would land.
   A director's keys are not checked here: the director index's primary key refuses a
   repeated or an existing one in the swap's transaction (which then rolls back whole),
   and only then are the keys compared to name them.
2. *Swap*, in one two-phase commit across the workers and the czar. Each new table
   replaces the chunk's partition (detach, drop, rename, attach: the constraint and
   the indexes make the attach instant). The staged rows of the other chunks (an
   append to chunks larger than it) are inserted into their partitions, sorted, in one
   statement per table: an append costs what it adds, not what the catalog holds, and
   such a chunk holds a sorted run per load until a later, larger load rebuilds it.
   Replicated rows are inserted. On the czar, the director index, the row counts and
   the placement are updated, and the load is marked published.

A publish killed during the build is resumed by building again. A publish killed
during the commit is settled by the in-doubt recovery: it commits if the czar decided,
else it rolls back.

On Citus (docs/citus.md) there are no chunk partitions to build and swap: the staged rows
(local tables on the coordinator) are inserted into the distributed tables, and the czar
updated, in one transaction on the coordinator (Citus commits its nodes' shares with its
own two-phase commit).
"""

from __future__ import annotations

from typing import NoReturn

import psycopg
from psycopg import sql

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.cluster.twophase import commit_two_phase, recover_in_doubt
from qserv_py.errors import LoadError
from qserv_py.loaders import txn as txns
from qserv_py.loaders.load import Progress
from qserv_py.loaders.staging import drop_staging, lost_staging, stage_name, stage_partition
from qserv_py.ops.checksums import forget as forget_checksums
from qserv_py.schema.ddl import dirindex_table, overlap_table_name, partition_name
from qserv_py.schema.model import (
    CHUNK_ID,
    SPATIAL_INDEX,
    Catalog,
    Table,
    TableKind,
    sql_identifier,
)

#: chunk, overlap, partition, new table (None: its staged rows are inserted), replaces
_Swap = tuple[int, bool, str, str | None, bool]
_InPlace = tuple[set[int], set[int]]  # chunks appended in place: own rows, overlap rows
#: memory for sorting and indexing one chunk in the build (a chunk is a few hundred MB)
BUILD_MEMORY = "1GB"
#: statistics target of the partitions' ANALYZE: 9,000 sampled rows per chunk, which
#: plans chunk queries well and costs a third of the default (100)
PARTITION_STATISTICS = 30
#: chunks built in one transaction of a worker: with 10^4-10^5 small chunks, a
#: transaction (and a commit) per chunk cost more than the chunks' rows
BUILD_GROUP = 32


def publish(spec: ClusterSpec, txn: int, progress: Progress | None = None) -> None:
    """Make staged load ``txn`` visible to queries, on every worker at once."""
    with connect(spec.czar, autocommit=True) as czar, txns.locked(czar, txn):
        record = txns.get_txn(czar, txn)
        if record.state == "published":
            drop_staging(spec, txn)
            return
        txns.require_state(record, "staged", "publishing", done="published")
        recover_in_doubt(spec)
        catalog = get_catalog(czar, record.catalog)
        table = catalog.table(record.table)
        _check_staged_rows(czar, spec, table, txn)
        in_place = _appended_in_place(czar, catalog, table, txn)
        txns.set_state(czar, txn, "publishing")
        done = [0]

        def build(instance: Instance) -> list[_Swap]:
            if instance is spec.czar:
                return []
            if spec.backend == "citus":
                swaps = _citus_appends(instance, catalog, table, txn)
            else:
                swaps = _build_worker(instance, catalog, table, txn, in_place)
            done[0] += 1
            if progress:
                progress("publishing", done[0], len(spec.workers))
            return swaps

        try:
            built = dict(
                zip(
                    (w.name for w in spec.workers),
                    on_each(spec.instances, build)[1:],
                    strict=True,
                )
            )
        except _DuplicateKeys as exc:
            _refuse_duplicates(czar, txn, table, exc.key, f"occur {exc.where}", exc.examples)
        except psycopg.errors.UniqueViolation as exc:  # a chunk's own unique index
            _diagnose_duplicates(czar, spec.czar, catalog, table, txn, exc)
        try:
            commit_two_phase(
                spec,
                {name: _swap_worker(catalog, table, txn, swaps) for name, swaps in built.items()},
                lambda conn: _publish_czar(conn, catalog, table, txn),
                label=f"publish:{txn}",
                every_worker=True,
            )
        except psycopg.errors.UniqueViolation as exc:
            _diagnose_duplicates(czar, spec.czar, catalog, table, txn, exc)
    # (each new partition was analysed when built; ANALYZE of a partitioned parent would
    # re-analyse every partition of the table on PostgreSQL < 17, at a cost growing with
    # the catalog)
    drop_staging(spec, txn)


def abort(spec: ClusterSpec, txn: int) -> None:
    """Drop everything load ``txn`` staged; nothing of it was or will be visible."""
    with connect(spec.czar, autocommit=True) as czar, txns.locked(czar, txn):
        record = txns.get_txn(czar, txn)
        txns.require_state(
            record, "staging", "staged", "publishing", "failed", "aborted", done="aborted"
        )
        recover_in_doubt(spec)
        record = txns.get_txn(czar, txn)
        if record.state == "published":  # its publish had been decided
            raise LoadError(f"load {txn} was published before it could be aborted")
        catalog = get_catalog(czar, record.catalog)
        for worker in spec.workers:
            with connect(worker, autocommit=True) as conn:
                _drop_built(conn, catalog, txn)
        drop_staging(spec, txn)
        with czar.transaction():
            txns.set_state(czar, txn, "aborted", error=record.error)
            _forget_unused_layout(czar, catalog, txn)


def _check_staged_rows(czar: psycopg.Connection, spec: ClusterSpec, table: Table, txn: int) -> None:
    """Every instance still holds what the czar recorded as staged there (UNLOGGED
    staging does not survive a crash of its server; a publish would miss rows)."""
    lost = lost_staging(spec, czar, table, txn)
    if lost:
        name, held, recorded = lost[0]
        message = (
            f"load {txn}: {name} holds {held:,} staged rows of {table.name}, not the "
            f"{recorded:,} recorded (did that server restart? staging tables do not survive "
            f"a crash); nothing was published: resume the load (`qserv-py txn resume {txn}`) "
            "to stage its files again, or abort it"
        )
        record = txns.get_txn(czar, txn)
        txns.set_state(czar, txn, record.state, error=message)
        raise LoadError(message)


def _refuse_duplicates(
    czar: psycopg.Connection, txn: int, table: Table, key: str, where: str, examples: str
) -> NoReturn:
    """Mark load ``txn`` failed (nothing published) and raise a LoadError saying why."""
    message = (
        f"{table.name}.{key} values {where} (e.g. {examples}); "
        f"nothing was published: abort the load (`qserv-py txn abort {txn}`) and "
        "load only new rows"
    )
    txns.set_state(czar, txn, "failed", error=message)
    raise LoadError(message) from None


class _DuplicateKeys(Exception):
    def __init__(self, key: str, where: str, rows: list[tuple[object, ...]]) -> None:
        super().__init__(key)
        self.key, self.where = key, where
        self.examples = ", ".join(str(r[0]) for r in rows)


def _diagnose_duplicates(
    czar: psycopg.Connection,
    czar_instance: Instance,
    catalog: Catalog,
    table: Table,
    txn: int,
    exc: psycopg.errors.UniqueViolation,
) -> NoReturn:
    """Refuse load ``txn`` for the duplicate keys a unique index found, named.

    A director's keys are not checked before the publish: the director index's primary
    key (and each chunk's unique index) refuses a repeated or an existing one inside the
    publishing transaction, which then rolls back whole. Only then are the keys compared,
    to say which (an append spends no time on a check that finds nothing)."""
    if table.kind is TableKind.DIRECTOR:
        try:
            _check_director_keys(czar_instance, catalog, table, txn)
        except _DuplicateKeys as found:
            _refuse_duplicates(czar, txn, table, found.key, f"occur {found.where}", found.examples)
    detail = exc.diag.message_detail or str(exc)  # a replicated table's primary key
    _refuse_duplicates(
        czar, txn, table, table.key_column or "key", "are already in the table", detail
    )


def _check_director_keys(czar: Instance, catalog: Catalog, table: Table, txn: int) -> None:
    """Director keys must be unique within the load and new to the catalog."""
    stage = f"qserv_stage.{stage_name(txn)}_dirindex"
    assert table.key_column is not None
    with connect(czar, autocommit=True) as conn:
        conn.execute(f"ANALYZE {stage}")
        repeated = conn.execute(
            f"SELECT key FROM {stage} GROUP BY key HAVING count(*) > 1 ORDER BY key LIMIT 5"
        ).fetchall()
        if repeated:
            raise _DuplicateKeys(table.key_column, "more than once in this load", repeated)
        existing = _first_common_keys(conn, "key", stage, dirindex_table(catalog.name, table.name))
        if existing:
            raise _DuplicateKeys(table.key_column, "already in the catalog", existing)


def _appended_in_place(
    czar: psycopg.Connection, catalog: Catalog, table: Table, txn: int
) -> _InPlace:
    """The chunks whose live rows (own, overlap) outnumber what load ``txn`` adds: its
    rows are inserted into their partitions rather than the partitions rebuilt."""
    if not table.partitioned:
        return set(), set()
    rows = czar.execute(
        "SELECT l.chunk_id, s.rows > l.rows, s.overlap_rows > l.overlap_rows"
        " FROM qserv_meta.load_chunks l JOIN qserv_meta.chunk_stats s"
        " ON s.catalog = %s AND s.table_name = %s AND s.chunk_id = l.chunk_id"
        " WHERE l.txn = %s",
        (catalog.sql_name, table.sql_name, txn),
    ).fetchall()
    return {c for c, own, _ in rows if own}, {c for c, _, overlap in rows if overlap}


def _build_worker(
    worker: Instance, catalog: Catalog, table: Table, txn: int, in_place: _InPlace
) -> list[_Swap]:
    """Build the sorted, indexed replacement of every chunk staged on ``worker`` that is
    not appended in place; check a child's keys against the live chunks."""
    if not table.partitioned:
        return []
    schema = catalog.sql_name
    columns = ", ".join([c.sql_ident for c in table.columns] + list(table.stored_extra))
    key = table.key_column if table.kind is TableKind.DIRECTOR else table.director_key
    assert key is not None
    swaps: list[_Swap] = []
    with connect(worker, autocommit=True) as conn:
        conn.execute(f"SET work_mem = '{BUILD_MEMORY}'")
        conn.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY}'")
        conn.execute(f"SET default_statistics_target = {PARTITION_STATISTICS}")
        # the build is repeatable and the swap's PREPARE flushes the WAL before it: its
        # commits need not wait for their own flush (with small chunks, that wait was
        # most of the build)
        conn.execute("SET synchronous_commit = off")
        _drop_built(conn, catalog, txn)
        for overlap in (False, True) if table.kind is TableKind.DIRECTOR else (False,):
            parent = overlap_table_name(table) if overlap else table.sql_name
            live_parts = _live_partitions(conn, schema, parent)
            staged_chunks = _staged_chunks(conn, txn, overlap=overlap)
            if table.kind is TableKind.CHILD and table.key_column:
                replaced = [c for c in staged_chunks if partition_name(table, c) in live_parts]
                _check_child_keys(conn, table.key_column, txn, f"{schema}.{parent}", replaced)
            group: list[str] = []  # built in the transaction open now
            for chunk in staged_chunks:
                part = partition_name(table, chunk, overlap=overlap)
                replaces = part in live_parts
                if replaces and chunk in in_place[overlap]:
                    swaps.append((chunk, overlap, part, None, True))
                    continue
                new = f"n{txn}_{chunk}{'o' if overlap else ''}"
                live = f"SELECT {columns} FROM {schema}.{part} UNION ALL " if replaces else ""
                stage = stage_partition(txn, chunk, overlap=overlap)
                staged = f"SELECT {columns} FROM qserv_stage.{stage}"
                if not group:
                    conn.execute("BEGIN")
                # the CHECK (which makes the attach instant) is declared up front, so
                # rows are checked as they go in rather than by another scan
                conn.execute(
                    f"CREATE TABLE {schema}.{new} (LIKE {schema}.{parent} INCLUDING DEFAULTS,"
                    f" CHECK ({CHUNK_ID} = {int(chunk)}))"
                )
                conn.execute(
                    f"INSERT INTO {schema}.{new}"
                    f" SELECT * FROM ({live}{staged}) s ORDER BY {SPATIAL_INDEX}"
                )
                conn.execute(f"CREATE INDEX ON {schema}.{new} ({SPATIAL_INDEX})")
                conn.execute(f"CREATE INDEX ON {schema}.{new} ({sql_identifier(key)})")
                # no VACUUM: setting the visibility map would write every page again
                # (+30 % load time); autovacuum does it soon after (inserted rows)
                conn.execute(f"ANALYZE {schema}.{new}")
                group.append(new)
                swaps.append((chunk, overlap, part, new, replaces))
                if len(group) >= BUILD_GROUP:
                    conn.execute("COMMIT")
                    group = []
            if group:
                conn.execute("COMMIT")
    return swaps


def _citus_appends(worker: Instance, catalog: Catalog, table: Table, txn: int) -> list[_Swap]:
    """On Citus every staged chunk is appended (its rows inserted into the distributed
    table by the swap); a child's keys are checked against the live rows first."""
    if not table.partitioned:
        return []
    swaps: list[_Swap] = []
    with connect(worker, autocommit=True) as conn:
        for overlap in (False, True) if table.kind is TableKind.DIRECTOR else (False,):
            parent = overlap_table_name(table) if overlap else table.sql_name
            staged_chunks = _staged_chunks(conn, txn, overlap=overlap)
            if table.kind is TableKind.CHILD and table.key_column:
                live = f"{catalog.sql_name}.{parent}"
                _check_child_keys(conn, table.key_column, txn, live, staged_chunks)
            part = partition_name(table, 0, overlap=overlap)  # (no partitions on Citus)
            swaps += [(chunk, overlap, part, None, True) for chunk in staged_chunks]
    return swaps


def _check_child_keys(
    conn: psycopg.Connection, key: str, txn: int, live: str, chunks: list[int]
) -> None:
    """A child's keys must be new to their chunk (where a reloaded row would land): one
    join of the staged rows with the live partitions of ``chunks``."""
    if not chunks:
        return
    rows = _first_common_keys(
        conn, sql_identifier(key), f"qserv_stage.{stage_name(txn)}", live, chunks=chunks
    )
    if rows:
        raise _DuplicateKeys(key, "already in the catalog", rows)


def _first_common_keys(
    conn: psycopg.Connection,
    column: str,
    stage: str,
    live: str,
    *,
    chunks: list[int] | None = None,
) -> list[tuple[object, ...]]:
    """The first 5 values of ``column`` in both ``stage`` and ``live`` (none: the usual);
    with ``chunks``, only rows of those chunks, matched within their chunk.

    The join is a MATERIALIZED CTE, planned to run to its end (a hash or merge join).
    Written as a join under ``ORDER BY … LIMIT 5``, PostgreSQL expects to find five
    matches early and walks one table's key index in order against the whole other
    table, held in memory: quadratic when, as it should be, nothing matches (an append
    of 400k objects to 200k stalled for minutes there).
    """
    on, where = f"USING ({column})", ""
    params: tuple[list[int], ...] = ()
    if chunks is not None:
        on = f"USING ({CHUNK_ID}, {column})"
        where = f" WHERE l.{CHUNK_ID} = ANY(%s) AND s.{CHUNK_ID} = ANY(%s)"
        params = (chunks, chunks)
    return conn.execute(
        f"WITH common AS MATERIALIZED (SELECT s.{column} AS key FROM {stage} s"
        f" JOIN {live} l {on}{where})"
        " SELECT key FROM common ORDER BY key LIMIT 5",
        params,
    ).fetchall()


def _live_partitions(conn: psycopg.Connection, schema: str, parent: str) -> set[str]:
    """The names of the partitions of ``schema.parent`` (one catalog query, not one a chunk)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        (f"{schema}.{parent}",),
    ).fetchall()
    return {r[0] for r in rows}


def _staged_chunks(conn: psycopg.Connection, txn: int, *, overlap: bool) -> list[int]:
    name = stage_name(txn, overlap=overlap)
    if not conn.execute("SELECT to_regclass(%s)", (f"qserv_stage.{name}",)).fetchone()[0]:  # type: ignore[index]
        return []
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        (f"qserv_stage.{name}",),
    ).fetchall()
    return sorted(int(r[0].rsplit("_", 1)[1]) for r in rows)


def _drop_built(conn: psycopg.Connection, catalog: Catalog, txn: int) -> None:
    """Drop replacement tables an earlier attempt built (and did not swap in)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname ~ %s AND NOT c.relispartition",
        (catalog.sql_name, rf"^n{int(txn)}_\d+o?$"),
    ).fetchall()
    for (name,) in rows:
        conn.execute(f"DROP TABLE {catalog.sql_name}.{name}")


def _swap_worker(catalog: Catalog, table: Table, txn: int, swaps: list[_Swap]):  # type: ignore[no-untyped-def]
    schema = catalog.sql_name
    stored = ", ".join([c.sql_ident for c in table.columns] + list(table.stored_extra))

    def work(conn: psycopg.Connection) -> None:
        if not table.partitioned:
            columns = ", ".join(c.sql_ident for c in table.columns)
            conn.execute(
                f"INSERT INTO {schema}.{table.sql_name} ({columns})"
                f" SELECT {columns} FROM qserv_stage.{stage_name(txn)}"
            )
            return
        appended: tuple[list[int], list[int]] = ([], [])
        for chunk, overlap, part, new, replaces in swaps:
            if new is None:
                appended[overlap].append(chunk)
                continue
            parent = f"{schema}.{overlap_table_name(table) if overlap else table.sql_name}"
            if replaces:
                conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {schema}.{part}")
                forget_checksums(conn, schema, [part])
                conn.execute(f"DROP TABLE {schema}.{part}")
            conn.execute(f"ALTER TABLE {schema}.{new} RENAME TO {part}")
            conn.execute(
                f"ALTER TABLE {parent} ATTACH PARTITION {schema}.{part}"
                f" FOR VALUES IN ({int(chunk)})"
            )
        if any(appended):
            conn.execute(f"SET LOCAL work_mem = '{BUILD_MEMORY}'")  # the sorts in memory
        for overlap, chunks in ((False, appended[0]), (True, appended[1])):
            if not chunks:
                continue
            parent = f"{schema}.{overlap_table_name(table) if overlap else table.sql_name}"
            # the rows change: their recorded checksums (qserv_py.ops.checksums) no longer hold
            forget_checksums(
                conn, schema, [partition_name(table, c, overlap=overlap) for c in chunks]
            )
            conn.execute(
                f"INSERT INTO {parent} ({stored}) SELECT {stored}"
                f" FROM qserv_stage.{stage_name(txn, overlap=overlap)}"
                f" WHERE {CHUNK_ID} = ANY(%s) ORDER BY {SPATIAL_INDEX}",
                (chunks,),
            )

    return work


def _publish_czar(czar: psycopg.Connection, catalog: Catalog, table: Table, txn: int) -> None:
    if table.kind is TableKind.DIRECTOR:
        czar.execute(f"ANALYZE qserv_stage.{stage_name(txn)}_dirindex")
        czar.execute(f"SET LOCAL work_mem = '{BUILD_MEMORY}'")
        index = dirindex_table(catalog.name, table.name)
        key = _key_built_after(czar, index)
        czar.execute(
            f"INSERT INTO {index} (key, chunk_id, spatial_index)"
            f" SELECT key, chunk_id, spatial_index FROM qserv_stage.{stage_name(txn)}_dirindex"
            " ORDER BY key"
        )
        if key is not None:  # a repeated key is refused here as by the insert
            czar.execute(f"ALTER TABLE {index} ADD CONSTRAINT {key} PRIMARY KEY (key)")
    czar.execute(
        "INSERT INTO qserv_meta.chunk_stats (catalog, table_name, chunk_id, rows, overlap_rows)"
        " SELECT %s, %s, chunk_id, rows, overlap_rows FROM qserv_meta.load_chunks WHERE txn = %s"
        " ON CONFLICT (catalog, table_name, chunk_id) DO UPDATE SET"
        " rows = chunk_stats.rows + excluded.rows,"
        " overlap_rows = chunk_stats.overlap_rows + excluded.overlap_rows",
        (catalog.sql_name, table.sql_name, txn),
    )
    czar.execute(
        "INSERT INTO qserv_meta.placement (catalog, chunk_id, worker)"
        " SELECT %s, chunk_id, worker FROM qserv_meta.load_placement WHERE txn = %s"
        " ON CONFLICT DO NOTHING",
        (catalog.sql_name, txn),
    )
    # the catalog's replication level (the controller's target) rises to the load's
    czar.execute(
        "UPDATE qserv_meta.catalogs c SET replication = (t.options->>'replication')::int"
        " FROM qserv_meta.load_txns t WHERE t.id = %s AND c.name = t.catalog"
        " AND (t.options->>'replication')::int > c.replication",
        (txn,),
    )
    txns.set_state(czar, txn, "published")


def _key_built_after(czar: psycopg.Connection, index: str) -> str | None:
    """For a director index still empty (a first load), drop its primary key, to build it
    again after the insert (in the publish's transaction: nothing sees it without): one
    sorted build instead of a btree insert per key (2M keys: ~3.5 s of a narrow table's
    ~12 s load became ~1.5 s). Its name, or None (rows there already: kept)."""
    if czar.execute(f"SELECT 1 FROM {index} LIMIT 1").fetchone() is not None:
        return None
    row = czar.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (index,),
    ).fetchone()
    if row is None:
        return None
    key = sql.Identifier(row[0]).as_string(czar)
    czar.execute(f"ALTER TABLE {index} DROP CONSTRAINT {key}")
    return key


def _forget_unused_layout(czar: psycopg.Connection, catalog: Catalog, txn: int) -> None:
    """An aborted first load leaves no layout behind (nothing else was published)."""
    row = czar.execute(
        "SELECT (layout->>'built_by')::bigint FROM qserv_meta.catalogs WHERE name = %s",
        (catalog.sql_name,),
    ).fetchone()
    published = czar.execute(
        "SELECT 1 FROM qserv_meta.load_txns WHERE catalog = %s AND state = 'published' LIMIT 1",
        (catalog.sql_name,),
    ).fetchone()
    if row and row[0] == txn and not published:
        czar.execute("DELETE FROM qserv_meta.chunks WHERE catalog = %s", (catalog.sql_name,))
        czar.execute(
            "UPDATE qserv_meta.catalogs SET layout = NULL WHERE name = %s", (catalog.sql_name,)
        )
