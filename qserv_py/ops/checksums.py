"""Checksums of chunk partitions: taken, recorded on their worker, compared across replicas.

A partition's checksum is its row count and the sum of its rows' 64-bit hashes
(:func:`row_hash`): order-independent, equal for equal multisets of rows on any server of
the same PostgreSQL major version. A chunk copy (:mod:`qserv_py.ops.copy`) compares the
source's with the copy's before it publishes anything.

Taking one is a full scan that hashes every column of every row (1M rows of 43 columns:
~1.5 CPU-s), so each worker records the checksums it has taken in ``qserv.checksums``,
keyed by the partition's oid and the hash expression. A recorded checksum stays right for
as long as its partition's rows do:

- a load that appends rows in place forgets the checksums of the partitions it inserts
  into, in its own publishing transaction (:func:`forget`);
- a load that replaces a partition builds a new table, with a new oid: the old record
  names nothing any more (records of dropped tables are removed by the next
  :func:`record`);
- copies and :func:`verify` record what they take (:func:`record`).

A copy then reads the source's recorded checksum in its own snapshot instead of taking it
again, and should a record ever disagree with the copy, takes the source's again before
it refuses (:func:`qserv_py.ops.copy.build`): a record only saves work, it never decides
alone. :func:`verify` (``qserv-py replicate --verify``, and the service's replication loop
when it has nothing to copy) takes the checksums not recorded yet and reports the chunks
whose replicas disagree, as Qserv's replication system compares its replicas' checksums.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import ConfigError, QservError

if TYPE_CHECKING:
    from qserv_py.ops.copy import Part
    from qserv_py.schema.model import Catalog

log = logging.getLogger(__name__)

TABLE = "qserv.checksums"  # made by sql/worker.sql
#: a checksum of this many rows or more is compiled by PostgreSQL's JIT, optimised and
#: inlined: compiling the hash of ~40 columns costs ~0.25 s, and the scan then runs in
#: ~60 % of its time (1M rows of 43 columns: 0.85 s against 1.45 s). A server without
#: JIT (``llvmjit`` not installed) takes the settings and runs it as before.
JIT_ROWS = 500_000
JIT_ON = (
    "SET jit = on; SET jit_above_cost = 0; SET jit_optimize_above_cost = 0;"
    " SET jit_inline_above_cost = 0"
)
#: checksums (and a copy's index builds) run without PostgreSQL's parallel workers: a
#: copy runs its steps side by side on sessions of its own already, and parallel workers
#: cost CPU of their own (1M rows: an index build 0.87 CPU-s against 0.68, and a
#: JIT-compiled checksum is compiled again in each worker: 2.2-3.1 CPU-s against 1.5-1.9)
SERIAL = "SET max_parallel_workers_per_gather = 0; SET max_parallel_maintenance_workers = 0"

#: the seeded 64-bit hash function of a column type, where PostgreSQL has one to call by
#: name (the one its hash operator class uses); any other type is hashed as a record
#: of one column, which costs a tuple a row
TYPE_HASHES = {
    "smallint": "hashint2extended",
    "integer": "hashint4extended",
    "bigint": "hashint8extended",
    "real": "hashfloat4extended",
    "double precision": "hashfloat8extended",
    "numeric": "hash_numeric_extended",
    "text": "hashtextextended",
    "character varying": "hashtextextended",
}

Sum = tuple[int, int]  # rows, checksum


def row_hash(columns: list[tuple[str, str]]) -> str:
    """SQL of a row's 64-bit hash from its (name, type) ``columns``: the XOR of each
    column's hash, seeded by the column's position (equal values in two columns do not
    cancel; a value moved to another column changes it), a NULL hashed as the position
    plus one. Equal rows hash equal on any server of the same major version.

    About 40 % cheaper than ``hash_record_extended(ROW(...))``, which builds a tuple of
    each row to take it apart again (1M rows of 42 columns: 6.1 s against 9.8 s in one
    run on a loaded machine): the checksums are a large part of a chunk copy's CPU.

    >>> row_hash([("ra", "double precision"), ("order", "character varying(8)")])
    'coalesce(hashfloat8extended("ra", 0), 1) # coalesce(hashtextextended("order", 1), 2)'
    >>> row_hash([("t", "timestamp without time zone")])
    'coalesce(hash_record_extended(ROW("t"), 0), 1)'
    """
    terms = []
    for i, (name, type_) in enumerate(columns):
        column = sql.Identifier(name).as_string(None)
        function = TYPE_HASHES.get(type_.split("(")[0])
        hashed = (
            f"{function}({column}, {i})"
            if function
            else f"hash_record_extended(ROW({column}), {i})"
        )
        terms.append(f"coalesce({hashed}, {i + 1})")
    return " # ".join(terms)


def columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of ``schema.table``'s columns, in order."""
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (f"{schema}.{table}",),
    ).fetchall()
    return [(str(n), str(t)) for n, t in rows]


def take(conn: psycopg.Connection, schema: str, table: str, hashed: str, rows: int) -> Sum:
    """(rows, the sum of the rows' 64-bit hashes ``hashed``) of ``schema.table``: equal
    sums, equal multisets of rows but for a hash collision. ``rows``, about how many
    there are, decides whether the expression is compiled (:data:`JIT_ROWS`)."""
    conn.execute(f"{JIT_ON if rows >= JIT_ROWS else 'SET jit = off'}; {SERIAL}")
    row = conn.execute(
        f"SELECT count(*), coalesce(sum({hashed}), 0) FROM {schema}.{table}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _present(conn: psycopg.Connection) -> bool:
    """Whether the worker has the table (a worker set up by an older qserv_py has not,
    until ``qserv-py init`` runs again: then nothing is recorded and nothing read)."""
    row = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
    return row is not None and row[0] is not None


def recorded(conn: psycopg.Connection, schema: str, hashes: dict[str, str]) -> dict[str, Sum]:
    """The checksums recorded of ``schema``'s partitions ``hashes`` (partition → its row
    hash's SQL), as ``conn``'s snapshot sees them."""
    if not hashes or not _present(conn):
        return {}
    names = list(hashes)
    rows = conn.execute(
        f"SELECT t.p, c.rows, c.checksum FROM unnest(%s::text[], %s::text[]) AS t(p, h)"
        f" JOIN {TABLE} c ON c.relation = to_regclass(%s || '.' || t.p)::oid"
        " AND c.hashed = md5(t.h)",
        (names, [hashes[n] for n in names], schema),
    )
    return {str(p): (int(r), int(c)) for p, r, c in rows}


def record(conn: psycopg.Connection, schema: str, taken: dict[str, tuple[str, int, int]]) -> None:
    """Record ``taken`` (partition → (row hash SQL, rows, checksum)) of ``schema``'s
    partitions, in ``conn``'s transaction."""
    if not taken or not _present(conn):
        return
    names = list(taken)
    conn.execute(
        f"INSERT INTO {TABLE} (relation, hashed, rows, checksum)"
        " SELECT to_regclass(%s || '.' || t.p)::oid, md5(t.h), t.r, t.c"
        " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::numeric[]) AS t(p, h, r, c)"
        " WHERE to_regclass(%s || '.' || t.p) IS NOT NULL"
        " ON CONFLICT (relation, hashed) DO UPDATE"
        " SET rows = excluded.rows, checksum = excluded.checksum, taken = now()",
        (
            schema,
            names,
            [taken[n][0] for n in names],
            [taken[n][1] for n in names],
            [taken[n][2] for n in names],
            schema,
        ),
    )


def prune(conn: psycopg.Connection) -> None:
    """Forget the records of tables dropped without :func:`forget` (a catalog dropped):
    an oid is used again once PostgreSQL's counter wraps around."""
    if _present(conn):
        conn.execute(
            f"DELETE FROM {TABLE} c WHERE NOT EXISTS"
            " (SELECT FROM pg_class r WHERE r.oid = c.relation)"
        )


def forget(conn: psycopg.Connection, schema: str, partitions: Iterable[str]) -> None:
    """Forget the checksums of ``schema``'s ``partitions`` (rows are being added to
    them), in ``conn``'s transaction."""
    names = list(partitions)
    if not names or not _present(conn):
        return
    conn.execute(
        f"DELETE FROM {TABLE} WHERE relation IN"
        " (SELECT to_regclass(%s || '.' || p)::oid FROM unnest(%s::text[]) AS p)",
        (schema, names),
    )


# --- comparing replicas ------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """A partition whose replicas do not hold the same rows."""

    catalog: str
    chunk: int
    partition: str
    #: worker → (rows, checksum); a worker lacking the partition is absent
    sums: dict[str, Sum]
    czar_rows: int


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` compared."""

    chunks: int
    partitions: int  # checksums compared, recorded ones included
    taken: int  # checksums taken now (not recorded before)
    rows_taken: int
    disagreements: tuple[Disagreement, ...]
    #: (catalog, chunk, worker, why): a replica that could not be read now
    skipped: tuple[tuple[str, int, str, str], ...]
    seconds: float

    @property
    def healthy(self) -> bool:
        return not (self.disagreements or self.skipped)


def verify(
    spec: ClusterSpec,
    *,
    catalog: str | None = None,
    max_rows: int | None = None,
    workers: Iterable[str] | None = None,
) -> VerifyReport:
    """Take the checksums of every replica of every chunk (of ``catalog``, or of every
    catalog) that its worker has not recorded, record them, and compare each partition's
    replicas with each other and with the czar's row count. ``max_rows`` bounds the rows
    hashed now (the loop's share of a pass: the rest is taken by later passes);
    ``workers`` are the live ones to read (default: every worker of the cluster)."""
    from qserv_py.ops import journal

    if spec.backend == "citus":
        raise ConfigError(
            "on Citus the shards' placements are Citus's: compare them with Citus's own "
            "tools (docs/citus.md); `replicate --verify` checks a native cluster's replicas"
        )
    started = time.monotonic()
    live = {w.name for w in spec.workers} if workers is None else set(workers)
    with connect(spec.czar, autocommit=True) as czar:
        placements = [
            (str(c), int(k), [str(w) for w in ws])
            for c, k, ws in czar.execute(
                "SELECT p.catalog, p.chunk_id, array_agg(p.worker ORDER BY p.worker)"
                " FROM qserv_meta.placement p JOIN qserv_meta.catalogs c ON c.name = p.catalog"
                " WHERE %s::text IS NULL OR p.catalog = %s GROUP BY 1, 2 ORDER BY 1, 2",
                (catalog, catalog),
            )
        ]
        counts = _czar_counts(czar, catalog)
        models = {name: journal.catalog_model(czar, name) for name in {p[0] for p in placements}}
    run = _Run(spec, live, counts, max_rows)
    try:
        for cat, chunk, holders in placements:
            if not run.compare(models[cat], chunk, holders):
                break  # the budget is spent: the rest by a later pass
    finally:
        run.close()
    for d in run.disagreements:
        log.error(
            "replicas of %s (chunk %d of %s) disagree: %s (the czar counts %d rows)",
            d.partition, d.chunk, d.catalog, d.sums, d.czar_rows,
        )  # fmt: skip
    return VerifyReport(
        len(placements),
        run.compared,
        run.taken,
        run.rows_taken,
        tuple(run.disagreements),
        tuple(run.skipped),
        time.monotonic() - started,
    )


Counts = dict[tuple[str, int, str, bool], int]  # (catalog, chunk, table, overlap) → rows


def _czar_counts(czar: psycopg.Connection, catalog: str | None) -> Counts:
    counts: Counts = {}
    for c, k, t, rows, overlap in czar.execute(
        "SELECT catalog, chunk_id, table_name, rows, overlap_rows FROM qserv_meta.chunk_stats"
        " WHERE %s::text IS NULL OR catalog = %s",
        (catalog, catalog),
    ):
        counts[(str(c), int(k), str(t), False)] = int(rows)
        counts[(str(c), int(k), str(t), True)] = int(overlap)
    return counts


class _Run:
    """One :func:`verify`: a session per worker, the records each worker holds (read once
    per catalog), and what was found."""

    def __init__(self, spec: ClusterSpec, live: set[str], counts: Counts, max_rows: int | None):
        self.spec, self.live, self.counts = spec, live, counts
        self.budget = max_rows  # rows still to hash (None: no bound)
        self.sessions: dict[str, psycopg.Connection] = {}
        self.records: dict[tuple[str, str], _Held] = {}
        self.taken = self.rows_taken = self.compared = 0
        self.disagreements: list[Disagreement] = []
        self.skipped: list[tuple[str, int, str, str]] = []

    def compare(self, model: Catalog, chunk: int, holders: list[str]) -> bool:
        """Compare the replicas of one chunk; False once the budget is spent."""
        from qserv_py.ops.copy import chunk_parts

        parts = chunk_parts(model, chunk)
        sums: dict[str, dict[str, Sum]] = {}
        for worker in holders:
            if worker not in self.live:
                self.skipped.append((model.name, chunk, worker, "not live"))
                continue
            try:
                sums[worker] = self._replica(worker, model, parts, chunk)
            except _Spent:
                return False
            except (psycopg.Error, QservError) as exc:
                broken = self.sessions.pop(worker, None)
                if broken is not None:
                    broken.close()
                self.skipped.append((model.name, chunk, worker, str(exc).split("\n")[0]))
        for part in parts:
            seen = {w: s[part.partition] for w, s in sums.items() if part.partition in s}
            czar_rows = self.counts.get((model.name, chunk, part.table, part.overlap), 0)
            self.compared += len(seen)
            if len(set(seen.values())) > 1 or any(r != czar_rows for r, _ in seen.values()):
                self.disagreements.append(
                    Disagreement(model.name, chunk, part.partition, seen, czar_rows)
                )
        return True

    def _replica(
        self, worker: str, model: Catalog, parts: list[Part], chunk: int
    ) -> dict[str, Sum]:
        conn = self.sessions.get(worker)
        if conn is None:
            conn = self.sessions[worker] = connect(self.spec.worker(worker), autocommit=True)
        key = (worker, model.sql_name)
        if key not in self.records:  # what the worker holds and has recorded, at once
            self.records[key] = _held_and_recorded(conn, model)
        held = self.records[key]
        mine = [p for p in parts if p.partition in held.parents]
        if all(p.partition in held.known for p in mine):
            return {p.partition: held.known[p.partition] for p in mine}
        if self.budget == 0:
            raise _Spent
        found, fresh = _take_replica(conn, model, mine, held.hashes, self.counts, chunk)
        rows = sum(r for _, r, _ in fresh.values())
        self.taken += len(fresh)
        self.rows_taken += rows
        if self.budget is not None:
            self.budget = max(0, self.budget - rows)
        return found

    def close(self) -> None:
        for conn in self.sessions.values():
            conn.close()


class _Spent(Exception):
    """The rows a :func:`verify` may hash are hashed."""


@dataclass(frozen=True)
class _Held:
    """What a worker holds of a catalog: partition → parent, the row hash's SQL of each
    parent, and the checksums it has recorded."""

    parents: dict[str, str]
    hashes: dict[str, str]
    known: dict[str, Sum]


def _held_and_recorded(conn: psycopg.Connection, model: Catalog) -> _Held:
    """The partitions of ``model`` a worker holds, and the checksums it has recorded."""
    prune(conn)
    schema = model.sql_name
    parents: dict[str, str] = dict(
        conn.execute(
            "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace"
            " WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    )
    hashes = {parent: row_hash(columns(conn, schema, parent)) for parent in set(parents.values())}
    known = recorded(conn, schema, {c: hashes[p] for c, p in parents.items()})
    return _Held(parents, hashes, known)


def _take_replica(
    conn: psycopg.Connection,
    model: Catalog,
    parts: list[Part],
    parent_hashes: dict[str, str],
    counts: Counts,
    chunk: int,
) -> tuple[dict[str, Sum], dict[str, tuple[str, int, int]]]:
    """One replica's checksums of a chunk's partitions, the recorded ones read and the
    others taken and recorded, in one transaction that holds the partitions still (a SHARE
    lock: queries go on, a load that would change them waits); and those taken now
    (partition → (row hash SQL, rows, checksum))."""
    from qserv_py.ops.copy import held_parts

    schema = model.sql_name
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '10s'")
        held = held_parts(conn, schema, parts)
        if held:
            names = ", ".join(f"{schema}.{p.partition}" for p in held)
            conn.execute(f"LOCK TABLE {names} IN SHARE MODE")
        hashes = {p.partition: parent_hashes[p.parent] for p in held}
        found = recorded(conn, schema, hashes)
        fresh: dict[str, tuple[str, int, int]] = {}
        for p in held:
            if p.partition not in found:
                rows = counts.get((model.name, chunk, p.table, p.overlap), 0)
                found[p.partition] = take(conn, schema, p.partition, hashes[p.partition], rows)
                fresh[p.partition] = (hashes[p.partition], *found[p.partition])
        record(conn, schema, fresh)
    return found, fresh
