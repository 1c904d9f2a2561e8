"""Copying one chunk's partitions from one worker to another, and dropping them.

:func:`build` streams every partition a source worker holds of a chunk (the catalog's
director and child tables, and the directors' overlap tables) into new tables of the
target: binary ``COPY … TO STDOUT`` on the source passed on in ~256 KB writes to ``COPY …
FROM STDIN`` on the target (rows are never decoded here). The new tables
(``qserv_copy_<copy>_<n>``) are created and filled in one target transaction, with
``CHECK (chunk_id = N)`` declared up front (so the attach is instant), rows in
``spatial_index`` order, and ``FREEZE`` (no later vacuum pass; no WAL under
``wal_level = minimal``). Once committed they are still unattached, so queries never see
them; their indexes (the source partition's) and checksums are then made on
several target sessions at once. The check: each table's row count and order-independent
checksum (:mod:`qserv_py.ops.checksums`) equal the source's, and the row count equals
the czar's. The source's is read in the copy's snapshot: recorded on the source if it was
taken before (by an earlier copy, or ``replicate --verify``), else taken then, beside the
stream; a recorded one the copy disagrees with is taken again before the copy is refused.
The publish records both, on the source and the target. Whatever fails, the tables are
dropped (:func:`drop_leftovers`, by the copy's record after a crash). Their planner
statistics are made once they are published (:func:`analyze`): they do not decide
whether the copy is right, and replication is restored without waiting for them.

:func:`attach_work` and :func:`check_source_work` are the target's and the source's
shares of the publishing two-phase commit (:mod:`qserv_py.ops.chunks`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from qserv_py.cluster.db import connect, copy_out
from qserv_py.cluster.spec import Instance
from qserv_py.errors import ClusterError
from qserv_py.ops import checksums
from qserv_py.ops.checksums import SERIAL, Sum
from qserv_py.schema.ddl import overlap_table_name, partition_name
from qserv_py.schema.model import CHUNK_ID, SPATIAL_INDEX, Catalog, TableKind

log = logging.getLogger(__name__)

TEMP_PREFIX = "qserv_copy_"
#: memory for the index builds of one copy (a chunk is a few hundred MB at most)
BUILD_MEMORY = "1GB"
#: statistics target of a copied partition's ANALYZE (as a load's: loaders.publish)
PARTITION_STATISTICS = 30
#: a copy of this many rows or more builds its indexes and checksums on several target
#: sessions at once (a small one does not pay for the connections)
PARALLEL_ROWS = 100_000
FINISH_SESSIONS = 3
Work = Callable[[psycopg.Connection], None]
#: ("index", table, statement) | ("check", table, the row hash's SQL)
_Task = tuple[str, str, str]


@dataclass(frozen=True)
class Part:
    """One partition of a chunk: ``partition`` of ``parent`` in the catalog's schema."""

    parent: str
    partition: str
    table: str  # the catalog table it belongs to
    overlap: bool


@dataclass(frozen=True)
class Built:
    """A partition copied into an unattached table ``temp`` of the target."""

    part: Part
    temp: str
    rows: int
    checksum: int
    source_oid: int  # the source partition copied (a load replacing it changes this)
    bytes: int
    hashed: str  # the row hash's SQL of the checksum
    source_recorded: bool  # the source's checksum was read from its record

    @property
    def sum(self) -> Sum:
        return self.rows, self.checksum


def chunk_parts(catalog: Catalog, chunk: int) -> list[Part]:
    """Every partition a chunk may have: per partitioned table, and overlap of directors."""
    parts = []
    for table in catalog.tables:
        if not table.partitioned:
            continue
        for overlap in (False, True) if table.kind is TableKind.DIRECTOR else (False,):
            parent = overlap_table_name(table) if overlap else table.sql_name
            parts.append(
                Part(parent, partition_name(table, chunk, overlap=overlap), table.sql_name, overlap)
            )
    return parts


def held_parts(conn: psycopg.Connection, schema: str, parts: list[Part]) -> list[Part]:
    """The ``parts`` that exist on ``conn``'s worker as attached partitions."""
    found = {
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relispartition",
            (schema, [p.partition for p in parts]),
        )
    }
    return [p for p in parts if p.partition in found]


def temp_name(copy_id: int, n: int) -> str:
    return f"{TEMP_PREFIX}{int(copy_id)}_{int(n)}"


def drop_leftovers(conn: psycopg.Connection, schema: str, copy_id: int) -> int:
    """Drop the unattached tables copy ``copy_id`` left on ``conn``'s worker; how many.

    (A prepared transaction of its publish that is still in doubt locks them: then this
    fails after a lock timeout, and a later resume, after the in-doubt recovery, drops
    them.)"""
    conn.execute("SET lock_timeout = '5s'")
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' AND NOT c.relispartition AND c.relname ~ %s",
        (schema, rf"^{TEMP_PREFIX}{int(copy_id)}_\d+$"),
    ).fetchall()
    for (name,) in rows:
        conn.execute(f"DROP TABLE IF EXISTS {schema}.{name}")
    return len(rows)


def build(
    source: Instance,
    target: Instance,
    catalog: Catalog,
    chunk: int,
    copy_id: int,
    expected: dict[tuple[str, bool], int],
) -> list[Built]:
    """Copy the chunk's partitions held by ``source`` into new unattached tables of
    ``target``, verified; ``expected`` is the czar's row count per (table, overlap)."""
    schema = catalog.sql_name
    app = f"qserv_py:copy:{int(copy_id)}"
    try:
        with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
            for conn in (src, tgt):
                conn.execute("SELECT set_config('application_name', %s, false)", (app,))
            parts = held_parts(src, schema, chunk_parts(catalog, chunk))
            _check_complete(parts, expected, catalog, chunk, source)
            hashes = {
                p.partition: checksums.row_hash(checksums.columns(tgt, schema, p.parent))
                for p in parts
            }
            src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if parts:  # a load cannot replace them while they are copied
                names = ", ".join(f"{schema}.{p.partition}" for p in parts)
                src.execute(f"LOCK TABLE {names} IN ACCESS SHARE MODE")
            snapshot = str(src.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            oids = _oids(src, schema, parts)
            indexes = {p.partition: _index_definitions(src, schema, p.partition) for p in parts}
            # the source's checksums, in the copy's snapshot, on a session of their own from
            # the start: they overlap the stream (which the target's side bounds)
            with ThreadPoolExecutor(1) as pool:
                sums = pool.submit(
                    _source_checksums, source, app, snapshot, schema, parts, hashes, expected
                )
                with tgt.transaction():
                    streamed = []
                    for n, part in enumerate(parts):
                        temp = temp_name(copy_id, n)
                        rows, size = _stream(src, tgt, schema, part, temp, chunk)
                        streamed.append((part, temp, rows, size))
                # committed, still unattached (dropped by the copy's record if anything fails)
                tasks: list[_Task] = []
                for part, temp, _, _ in sorted(streamed, key=lambda s: -s[2]):  # biggest first
                    # the checksum (a full scan) first, beside the index builds; ANALYZE last
                    tasks.append(("check", temp, hashes[part.partition]))
                    tasks += [
                        ("index", temp, _index_on(schema, temp, d)) for d in indexes[part.partition]
                    ]
                rows = sum(s[2] for s in streamed)
                sessions = FINISH_SESSIONS if rows >= PARALLEL_ROWS else 1
                checks = _finish(
                    target, tgt, app, schema, tasks, sessions, {s[1]: s[2] for s in streamed}
                )
                theirs, known = sums.result()
            built = [
                Built(
                    part,
                    temp,
                    *checks[temp],
                    oids[part.partition],
                    size,
                    hashes[part.partition],
                    part.partition in known,
                )
                for part, temp, _, size in streamed
            ]
            stale = [
                b.part for b in built if b.source_recorded and b.sum != theirs[b.part.partition]
            ]
            if stale:  # a record the copy disagrees with decides nothing: take it again
                log.warning(
                    "the checksums %s recorded on %s disagree with their copy; taking them again",
                    ", ".join(p.partition for p in stale), source.name,
                )  # fmt: skip
                again, _ = _source_checksums(
                    source, app, snapshot, schema, stale, hashes, expected, use_records=False
                )
                theirs.update(again)
                built = [replace(b, source_recorded=False) if b.part in stale else b for b in built]
            _verify(built, theirs, expected, catalog.name, chunk, source, target)
            src.execute("ROLLBACK")
            return built
    except psycopg.Error as exc:
        raise ClusterError(
            f"copy of chunk {chunk} of {catalog.name} from {source.name} to {target.name}"
            f" failed: {reason(exc)}; nothing of it is visible to queries: run it again"
            " (`qserv-py replicate` resumes or cleans it)"
        ) from exc


def _stream(
    src: psycopg.Connection, tgt: psycopg.Connection, schema: str, part: Part, temp: str, chunk: int
) -> tuple[int, int]:
    """Stream one partition into a new table ``temp``; (rows, bytes)."""
    typed = checksums.columns(tgt, schema, part.parent)
    theirs = set(checksums.columns(src, schema, part.partition))
    ours = set(typed)
    if theirs != ours:
        raise ClusterError(
            f"{schema}.{part.partition} has other columns on the source than {schema}."
            f"{part.parent} on the target ({sorted(theirs ^ ours)}); the catalog's tables "
            "differ between the workers: recreate the catalog"
        )
    names = _quoted([name for name, _ in typed])
    started = time.monotonic()
    tgt.execute(
        f"CREATE TABLE {schema}.{temp} (LIKE {schema}.{part.parent} INCLUDING DEFAULTS,"
        f" CHECK ({CHUNK_ID} = {int(chunk)}))"
    )
    size = 0
    with tgt.cursor() as into_cur:
        # FREEZE: the table is new in this transaction; its rows need no vacuum pass later
        with into_cur.copy(
            f"COPY {schema}.{temp} ({names}) FROM STDIN (FORMAT BINARY, FREEZE)"
        ) as into:
            out_sql = (
                f"COPY (SELECT {names} FROM {schema}.{part.partition} ORDER BY {SPATIAL_INDEX})"
                " TO STDOUT (FORMAT BINARY)"
            )

            def write(buffer: bytearray) -> None:
                nonlocal size
                size += len(buffer)
                into.write(buffer)

            sent = copy_out(src, out_sql, write)
        rows = into_cur.rowcount
    if rows != sent:
        raise ClusterError(
            f"copy of {schema}.{part.partition}: the source sent {sent:,} rows, the target "
            f"took {rows:,}; nothing was published: copy it again"
        )
    log.debug(
        "streamed %s: %s rows, %s bytes, %.2f s",
        part.partition,
        rows,
        size,
        time.monotonic() - started,
    )
    return rows, size


def _index_on(schema: str, temp: str, definition: str) -> str:
    """The statement making index ``definition`` (of the source partition) on ``temp``."""
    unique = "UNIQUE " if definition.startswith("CREATE UNIQUE INDEX") else ""
    return f"CREATE {unique}INDEX ON {schema}.{temp} USING {definition.split(' USING ', 1)[1]}"


def _finish(
    target: Instance,
    tgt: psycopg.Connection,
    app: str,
    schema: str,
    tasks: list[_Task],
    sessions: int,
    rows: dict[str, int],
) -> dict[str, tuple[int, int]]:
    """Run the index builds and the checksum of each new table (of ``rows`` rows) on
    ``sessions`` target sessions at once (``tgt`` alone when 1); the checksums."""
    started = time.monotonic()
    todo = deque(tasks)
    found: dict[str, tuple[int, int]] = {}

    def work(conn: psycopg.Connection) -> None:
        conn.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY}'; {SERIAL}")
        while True:
            try:
                kind, temp, text = todo.popleft()
            except IndexError:
                return
            if kind == "index":
                conn.execute(text)
            else:
                found[temp] = checksums.take(conn, schema, temp, text, rows[temp])

    def session() -> None:
        with connect(target, autocommit=True) as conn:
            conn.execute("SELECT set_config('application_name', %s, false)", (app,))
            work(conn)

    if sessions <= 1:
        work(tgt)
    else:
        with ThreadPoolExecutor(sessions) as pool:
            running = [pool.submit(session) for _ in range(sessions)]
        for future in running:
            future.result()
    log.debug(
        "indexed and summed on %s session(s): %.2f s",
        sessions,
        time.monotonic() - started,
    )
    return found


def _quoted(columns: list[str]) -> str:
    """Column names (as the catalog has them, lower case) for a column list: quoted, since
    a catalog's columns may be reserved words (``offset``, ``order``)."""
    return ", ".join(f'"{c}"' for c in columns)


def _index_definitions(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass"
            " ORDER BY indexrelid",
            (f"{schema}.{table}",),
        )
    ]


def _oids(conn: psycopg.Connection, schema: str, parts: list[Part]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT p, to_regclass(%s || '.' || p)::oid FROM unnest(%s::text[]) AS p",
        (schema, [p.partition for p in parts]),
    )
    return {str(name): int(oid) for name, oid in rows}


def _source_checksums(
    source: Instance,
    app: str,
    snapshot: str,
    schema: str,
    parts: list[Part],
    hashes: dict[str, str],
    expected: dict[tuple[str, bool], int],
    *,
    use_records: bool = True,
) -> tuple[dict[str, Sum], set[str]]:
    """Row counts and checksums of the source's partitions in the copy's snapshot, read
    from their record where the source has one (``use_records``) and else taken
    (``expected``: the czar's row counts); and the partitions whose were recorded."""
    with connect(source, autocommit=True) as conn:
        conn.execute("SELECT set_config('application_name', %s, false)", (app,))
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        mine = {p.partition: hashes[p.partition] for p in parts}
        known = checksums.recorded(conn, schema, mine) if use_records else {}
        found = dict(known)
        for part in parts:  # in the target's column order: equal rows, equal hashes
            if part.partition not in found:
                rows = expected.get((part.table, part.overlap), 0)
                found[part.partition] = checksums.take(
                    conn, schema, part.partition, hashes[part.partition], rows
                )
        conn.execute("ROLLBACK")
        return found, set(known)


def _check_complete(
    parts: list[Part],
    expected: dict[tuple[str, bool], int],
    catalog: Catalog,
    chunk: int,
    source: Instance,
) -> None:
    held = {(p.table, p.overlap) for p in parts}
    missing = sorted(
        f"{t}{' overlap' if o else ''}"
        for (t, o), n in expected.items()
        if n and (t, o) not in held
    )
    if missing:
        raise ClusterError(
            f"{source.name} lacks the partitions of chunk {chunk} of {catalog.name} for "
            f"{', '.join(missing)}, though the czar counts rows there: it is not a good "
            "replica; copy the chunk from another worker"
        )


def _verify(
    built: list[Built],
    source: dict[str, Sum],
    expected: dict[tuple[str, bool], int],
    catalog: str,
    chunk: int,
    src: Instance,
    tgt: Instance,
) -> None:
    for b in built:
        rows, checksum = source[b.part.partition]
        want = expected.get((b.part.table, b.part.overlap), 0)
        if (b.rows, b.checksum) != (rows, checksum) or rows != want:
            raise ClusterError(
                f"copy of {b.part.partition} (chunk {chunk} of {catalog}) from {src.name} to "
                f"{tgt.name} does not verify: the source has {rows:,} rows (checksum "
                f"{checksum}), the copy {b.rows:,} (checksum {b.checksum}), the czar counts "
                f"{want:,}; nothing was published: copy it again (from another replica if "
                "the source disagrees with the czar)"
            )


def attach_work(schema: str, chunk: int, built: list[Built]) -> Work:
    """The target's share of the publish: each new table becomes the chunk's partition."""

    def work(conn: psycopg.Connection) -> None:
        conn.execute("SET LOCAL lock_timeout = '10s'")
        for b in built:
            stale = conn.execute(
                "SELECT c.relispartition FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, b.part.partition),
            ).fetchone()
            if stale is not None:  # a copy no placement names (left by a lost worker)
                if stale[0]:
                    conn.execute(
                        f"ALTER TABLE {schema}.{b.part.parent} DETACH PARTITION"
                        f" {schema}.{b.part.partition}"
                    )
                checksums.forget(conn, schema, [b.part.partition])
                conn.execute(f"DROP TABLE {schema}.{b.part.partition}")
            conn.execute(f"ALTER TABLE {schema}.{b.temp} RENAME TO {b.part.partition}")
            _rename_indexes(conn, schema, b.temp, b.part.partition)
            conn.execute(
                f"ALTER TABLE {schema}.{b.part.parent} ATTACH PARTITION"
                f" {schema}.{b.part.partition} FOR VALUES IN ({int(chunk)})"
            )
        checksums.record(conn, schema, {b.part.partition: (b.hashed, *b.sum) for b in built})

    return work


def analyze(target: Instance, schema: str, partitions: list[str]) -> None:
    """Make the planner statistics of newly published partitions on ``target``.

    Statistics are a matter of speed, not of correctness, so this runs after the
    publish, off the path that restores replication; should it fail (the worker went
    away meanwhile), autovacuum's analyze of the new rows makes them later."""
    try:
        with connect(target, autocommit=True) as conn:
            conn.execute(f"SET default_statistics_target = {PARTITION_STATISTICS}")
            for partition in partitions:
                conn.execute(f"ANALYZE {schema}.{partition}")
    except (psycopg.Error, ClusterError) as exc:
        log.warning(
            "statistics of the partitions copied to %s not made (%s); autovacuum makes them",
            target.name,
            reason(exc),
        )


def _rename_indexes(conn: psycopg.Connection, schema: str, temp: str, partition: str) -> None:
    """Name the indexes of a copied partition after it (``<partition>_<column>_idx``)."""
    for (name,) in conn.execute(
        "SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass",
        (f"{schema}.{partition}",),
    ).fetchall():
        new = partition + name[len(temp) :]
        if name.startswith(f"{temp}_") and len(new.encode()) <= 63:
            conn.execute(f"ALTER INDEX {schema}.{name} RENAME TO {new}")


def check_source_work(schema: str, built: list[Built]) -> Work:
    """The source's share of the publish: the partitions copied are still the chunk's
    (a load that published meanwhile replaced them), and stay so until the commit."""

    def work(conn: psycopg.Connection) -> None:
        conn.execute("SET LOCAL lock_timeout = '10s'")
        for b in built:
            name = f"{schema}.{b.part.partition}"
            now = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()
            if now is None or now[0] is None or int(now[0]) != b.source_oid:
                raise ClusterError(
                    f"{name} changed on the source while it was copied (a load published?); "
                    "nothing was published: copy the chunk again"
                )
            conn.execute(f"LOCK TABLE {name} IN ACCESS SHARE MODE")
        # the checksums taken of the source in the copy's snapshot, equal to the copy's:
        # the partitions have not changed since (a load that appended in place would have
        # failed the czar's share of this commit)
        taken = {b.part.partition: (b.hashed, *b.sum) for b in built if not b.source_recorded}
        checksums.record(conn, schema, taken)

    return work


def reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
