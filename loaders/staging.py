"""Staging: a load's rows on the workers, invisible to queries until publish.

On each worker a load ``N`` of a partitioned table stages into ``qserv_stage.sN`` (own
rows) and, for directors, ``qserv_stage.sN_o`` (overlap rows). Both are partitioned by
``chunk_id``, with one UNLOGGED partition ``sN_<chunk>`` / ``sN_o_<chunk>`` per chunk.
A replicated table stages into a plain UNLOGGED ``qserv_stage.sN`` on every worker. On
the czar, a director's keys stage into ``qserv_stage.sN_dirindex``. Every staged row
carries ``_file``, the number of its input file, so that a resumed load can delete what
an interrupted file left behind.

Rows travel as binary COPY, one statement per batch and worker, from a thread per
connection; the next batch is encoded while the previous one is being written.

UNLOGGED tables are created only by :func:`create_unlogged`, in a transaction of their
own that never waits for the client (see there): a transaction that created one and is
rolled back by a backend outliving its killed postmaster leaves a data directory that
crash recovery cannot start (docs/decisions.md, "Crash safety").
"""

from __future__ import annotations

import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.loaders.pgcopy import HEADER, TRAILER
from qserv_py.schema.ddl import overlap_table_name
from qserv_py.schema.model import CHUNK_ID, MATCH_FLAGS, SPATIAL_INDEX, Catalog, Table, TableKind

FILE_COLUMN = "_file"
DIRINDEX_COLUMNS = ("key", CHUNK_ID, SPATIAL_INDEX, FILE_COLUMN)
DIRINDEX_TYPES = ("bigint", "bigint", "bigint", "integer")


def create_unlogged(conn: psycopg.Connection, statements: list[str]) -> None:
    """Run ``statements``, which create UNLOGGED tables, in one transaction of their own.

    Whatever transaction ``conn`` has open is committed first. The statements go as one
    simple-query message in autocommit mode: the server runs them as one implicit
    transaction and commits it without waiting for the client in between. A backend
    notices that its postmaster died (SIGKILL) only while it waits, and then rolls back
    its transaction, which deletes the UNLOGGED tables' init forks but keeps their main
    forks, while the rollback's WAL record is never written: crash recovery then
    re-creates the init forks from the WAL and fails on the main forks ("could not
    create file ...: File exists"). A transaction that never waits is never rolled back
    that way. (Statements that lock a table in use must come before those that create
    storage, so that a lock wait happens before any table exists.)
    """
    if not statements:
        return
    conn.commit()
    conn.autocommit = True
    try:
        conn.execute("; ".join(statements))
    finally:
        conn.autocommit = False


def stage_name(txn: int, *, overlap: bool = False) -> str:
    return f"s{txn}_o" if overlap else f"s{txn}"


def stage_partition(txn: int, chunk: int, *, overlap: bool = False) -> str:
    return f"{stage_name(txn, overlap=overlap)}_{int(chunk)}"


def stage_columns(table: Table) -> tuple[list[str], list[str]]:
    """Column names and PostgreSQL types of a staging table, in COPY order."""
    names = [c.sql_ident for c in table.columns]
    types = [c.pg_type for c in table.columns]
    names += list(table.stored_extra)  # spatial_index, chunk_id (, match_flags)
    types += ["smallint" if n == MATCH_FLAGS else "bigint" for n in table.stored_extra]
    return [*names, FILE_COLUMN], [*types, "integer"]


@dataclass
class WorkerPayload:
    """What one batch sends to one worker."""

    rows: bytes = b""
    overlap: bytes = b""
    new_chunks: list[int] = field(default_factory=list)
    new_overlap_chunks: list[int] = field(default_factory=list)


class StagingSession:
    """Connections to the workers and the czar for staging one load."""

    def __init__(self, spec: ClusterSpec, txn: int, catalog: Catalog, table: Table) -> None:
        self.spec = spec
        self.txn = txn
        self.catalog = catalog
        self.table = table
        self.columns, self.types = stage_columns(table)
        self._conns: dict[str, psycopg.Connection] = {}
        self._pool = ThreadPoolExecutor(max_workers=len(spec.workers) + 1)
        self._pending: list[Future[None]] = []
        self.partitions: dict[str, set[int]] = {}
        self.overlap_partitions: dict[str, set[int]] = {}

    def __enter__(self) -> StagingSession:
        for inst in self.spec.instances:
            self._conns[inst.name] = connect(inst)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()
            for conn in self._conns.values():
                conn.close()

    @property
    def is_director(self) -> bool:
        return self.table.kind is TableKind.DIRECTOR

    def create_tables(self) -> None:
        """Create the staging tables (idempotent) and learn which partitions exist."""
        live = f"{self.catalog.sql_name}.{self.table.sql_name}"
        for worker in self.spec.workers:
            conn = self._conns[worker.name]
            parts = self._partitioned_ddl(live, overlap=False)
            if self.is_director:
                overlap = f"{self.catalog.sql_name}.{overlap_table_name(self.table)}"
                parts += self._partitioned_ddl(overlap, overlap=True)
            create_unlogged(conn, parts)
            self.partitions[worker.name] = self._existing(conn, overlap=False)
            self.overlap_partitions[worker.name] = self._existing(conn, overlap=True)
        if self.is_director:
            create_unlogged(
                self._conns[self.spec.czar.name],
                [
                    "CREATE UNLOGGED TABLE IF NOT EXISTS"
                    f" qserv_stage.{stage_name(self.txn)}_dirindex (key bigint NOT NULL,"
                    " chunk_id bigint NOT NULL, spatial_index bigint NOT NULL,"
                    f" {FILE_COLUMN} integer NOT NULL)"
                ],
            )

    def _partitioned_ddl(self, live: str, *, overlap: bool) -> list[str]:
        name = stage_name(self.txn, overlap=overlap)
        if not self.table.partitioned:
            return [
                f"CREATE UNLOGGED TABLE IF NOT EXISTS qserv_stage.{name}"
                f" (LIKE {live}, {FILE_COLUMN} integer NOT NULL)"
            ]
        return [
            f"CREATE TABLE IF NOT EXISTS qserv_stage.{name}"
            f" (LIKE {live}, {FILE_COLUMN} integer NOT NULL) PARTITION BY LIST ({CHUNK_ID})"
        ]

    def _existing(self, conn: psycopg.Connection, *, overlap: bool) -> set[int]:
        if not self.table.partitioned or (overlap and not self.is_director):
            return set()
        name = stage_name(self.txn, overlap=overlap)
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            (f"qserv_stage.{name}",),
        )
        pattern = re.compile(rf"^{name}_(\d+)$")
        return {int(m.group(1)) for (relname,) in rows if (m := pattern.match(relname))}

    def delete_files(self, file_nos: list[int]) -> None:
        """Remove what interrupted files left in staging (resume)."""
        if not file_nos:
            return
        names = [stage_name(self.txn)] + (
            [stage_name(self.txn, overlap=True)] if self.is_director else []
        )
        for worker in self.spec.workers:
            conn = self._conns[worker.name]
            for name in names:
                conn.execute(
                    f"DELETE FROM qserv_stage.{name} WHERE {FILE_COLUMN} = ANY(%s)", (file_nos,)
                )
            conn.commit()
        if self.is_director:
            czar = self._conns[self.spec.czar.name]
            czar.execute(
                f"DELETE FROM qserv_stage.{stage_name(self.txn)}_dirindex"
                f" WHERE {FILE_COLUMN} = ANY(%s)",
                (file_nos,),
            )
            czar.commit()

    def write(
        self, payloads: dict[str, WorkerPayload], dirindex: bytes = b"", *, commit: bool
    ) -> None:
        """Send one batch (after the previous one has been written)."""
        self.wait()
        for name, payload in payloads.items():
            self._pending.append(self._pool.submit(self._write_worker, name, payload, commit))
        if dirindex or commit:
            self._pending.append(self._pool.submit(self._write_czar, dirindex, commit))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = []
        for future in pending:
            try:
                future.result()
            except BaseException as exc:  # collect, then raise the first
                errors.append(exc)
        if errors:
            raise errors[0]

    def _write_worker(self, name: str, payload: WorkerPayload, commit: bool) -> None:
        conn = self._conns[name]
        # (commits the rows of this file written so far: a resume deletes them by _file)
        create_unlogged(
            conn,
            [
                "CREATE UNLOGGED TABLE"
                f" qserv_stage.{stage_partition(self.txn, chunk, overlap=overlap)}"
                f" PARTITION OF qserv_stage.{stage_name(self.txn, overlap=overlap)}"
                f" FOR VALUES IN ({int(chunk)})"
                for chunk, overlap in [(c, False) for c in payload.new_chunks]
                + [(c, True) for c in payload.new_overlap_chunks]
            ],
        )
        with conn.cursor() as cur:
            for data, overlap in ((payload.rows, False), (payload.overlap, True)):
                if data:
                    self._copy(
                        cur,
                        f"qserv_stage.{stage_name(self.txn, overlap=overlap)}",
                        self.columns,
                        data,
                    )
        if commit:
            conn.commit()

    def _write_czar(self, dirindex: bytes, commit: bool) -> None:
        conn = self._conns[self.spec.czar.name]
        if dirindex:
            with conn.cursor() as cur:
                self._copy(
                    cur,
                    f"qserv_stage.{stage_name(self.txn)}_dirindex",
                    list(DIRINDEX_COLUMNS),
                    dirindex,
                )
        if commit:
            conn.commit()

    @staticmethod
    def _copy(cur: psycopg.Cursor, target: str, columns: list[str], data: bytes) -> None:
        with cur.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(HEADER)
            copy.write(data)
            copy.write(TRAILER)


def lost_staging(
    spec: ClusterSpec, czar: psycopg.Connection, table: Table, txn: int
) -> list[tuple[str, int, int]]:
    """Instances that no longer hold what the czar recorded as staged there by the files
    marked done: (name, rows held, rows recorded) of each.

    Staging tables are UNLOGGED: a server that restarts after a crash empties them.
    """
    done = [
        r[0]
        for r in czar.execute(
            "SELECT file_no FROM qserv_meta.load_files WHERE txn = %s AND done", (txn,)
        )
    ]
    if table.partitioned:
        expected = dict(
            czar.execute(
                "SELECT w.name, coalesce(sum(c.rows), 0) FROM qserv_meta.workers w"
                " LEFT JOIN (SELECT chunk_id, worker FROM qserv_meta.load_placement WHERE txn = %s"
                "   UNION SELECT p.chunk_id, p.worker FROM qserv_meta.placement p"
                "   JOIN qserv_meta.load_txns t ON t.catalog = p.catalog AND t.id = %s) pl"
                "   ON pl.worker = w.name"
                " LEFT JOIN qserv_meta.load_chunks c ON c.txn = %s AND c.chunk_id = pl.chunk_id"
                " GROUP BY w.name",
                (txn, txn, txn),
            ).fetchall()
        )
    else:
        row = czar.execute("SELECT rows FROM qserv_meta.load_txns WHERE id = %s", (txn,)).fetchone()
        expected = {w.name: int(row[0]) if row else 0 for w in spec.workers}
    targets = [(w, stage_name(txn)) for w in spec.workers]
    if table.kind is TableKind.DIRECTOR:
        row = czar.execute(
            "SELECT coalesce(sum(rows), 0) FROM qserv_meta.load_chunks WHERE txn = %s", (txn,)
        ).fetchone()
        expected[spec.czar.name] = int(row[0]) if row else 0
        targets.append((spec.czar, f"{stage_name(txn)}_dirindex"))

    def held(target: tuple[Instance, str]) -> int:
        inst, name = target
        with connect(inst, autocommit=True) as conn:
            found = conn.execute(
                f"SELECT count(*) FROM qserv_stage.{name} WHERE {FILE_COLUMN} = ANY(%s)", (done,)
            ).fetchone()
        return int(found[0]) if found else 0

    counts = on_each(targets, held)  # (a connection each: at once, not one after another)
    return [
        (inst.name, n, int(expected.get(inst.name, 0)))
        for (inst, _), n in zip(targets, counts, strict=True)
        if n != int(expected.get(inst.name, 0))
    ]


#: staging partitions dropped in one statement
DROP_GROUP = 256


def drop_staging(spec: ClusterSpec, txn: int) -> None:
    """Drop every staging table of load ``txn`` on the workers and the czar."""

    parents = [f"s{int(txn)}{suffix}" for suffix in ("", "_o", "_dirindex")]
    names = ", ".join(f"qserv_stage.{p}" for p in parents)

    def drop(inst: Instance) -> None:
        with connect(inst, autocommit=True) as conn:
            # the partitions a few hundred at a time (one DROP of a parent with 10^4
            # partitions would need more locks than the server has), then the parents
            parts = [
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n"
                    " ON n.oid = p.relnamespace WHERE n.nspname = 'qserv_stage'"
                    " AND p.relname = ANY(%s)",
                    (parents,),
                )
            ]
            for i in range(0, len(parts), DROP_GROUP):
                group = ", ".join(f"qserv_stage.{p}" for p in parts[i : i + DROP_GROUP])
                conn.execute(f"DROP TABLE IF EXISTS {group}")
            conn.execute(f"DROP TABLE IF EXISTS {names} CASCADE")

    # one DROP per database: on Citus the czar and the worker are one (two would deadlock)
    on_each(list({inst.dsn: inst for inst in spec.instances}.values()), drop)
