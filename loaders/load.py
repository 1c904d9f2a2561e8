"""Loading a table: check, lay out, place, stage, and (by default) publish.

1. *Pass 1* reads what the checks need (positions, and non-nullable columns whose
   Parquet statistics allow NULLs): every input error is raised before any row is
   written. For a director it also counts rows per pixel, which builds the catalog's
   layout on its first load.
2. *Placement*: chunks new to the catalog go to the workers holding the fewest rows,
   on ``replication`` distinct workers each.
3. *Pass 2* streams record batches: spatial index and chunk (a director's from its
   position, a child's from the director index, a match table's rows into the chunk of
   each director row they name: ``qserv_py.loaders.matches``), overlap rows for
   directors, binary COPY into staging on the workers that hold each chunk, committed every
   ``commit_rows`` rows and at the end of each file.
4. *Publish* (``qserv_py.loaders.publish``).

A load killed at any point can be resumed (:func:`resume`) or aborted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect, kept_sessions
from qserv_py.cluster.metadata import metadata_version
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import LoadError
from qserv_py.loaders import txn as txns
from qserv_py.loaders.inputs import (
    InputFile,
    check_values,
    needs_value_checks,
    plan_inputs,
    positions,
    read_batches,
    resolve_files,
)
from qserv_py.loaders.matches import MatchPlacer
from qserv_py.loaders.pgcopy import encode_batch
from qserv_py.loaders.placement import Placement
from qserv_py.loaders.staging import DIRINDEX_TYPES, StagingSession, WorkerPayload
from qserv_py.schema.ddl import dirindex_table
from qserv_py.schema.model import Catalog, Table, TableKind
from qserv_py.sky.healpix import ORDER, spatial_index
from qserv_py.sky.layout import (
    DEFAULT_MAX_ORDER,
    DEFAULT_MAX_ROWS_PER_CHUNK,
    DEFAULT_MIN_ORDER,
    Layout,
    PixelCounts,
)
from qserv_py.sky.overlap import overlap_targets

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class LoadOptions:
    publish: bool = True
    ignore_extra: bool = False
    #: workers per chunk; None: the catalog's level (``catalog create --replication``)
    replication: int | None = None
    max_rows_per_chunk: int = DEFAULT_MAX_ROWS_PER_CHUNK
    min_order: int = DEFAULT_MIN_ORDER
    max_order: int = DEFAULT_MAX_ORDER
    fixed_order: int | None = None
    batch_rows: int = 262_144
    commit_rows: int = 4_000_000
    #: child tables: rows whose director key is not in the director are placed by their
    #: own position (the table's qserv:ra_column / qserv:dec_column), as Qserv places
    #: them, instead of failing the load (the default)
    place_unknown_by_position: bool = False
    #: match tables: a key that no row of its director has is let through, the row placed
    #: by its other side only, instead of failing the load (the default)
    allow_unknown_match_keys: bool = False


@dataclass(frozen=True)
class LoadResult:
    txn: int
    state: str
    rows: int
    overlap_rows: int
    seconds: float


def load(
    spec: ClusterSpec,
    catalog_name: str,
    table_name: str,
    files: Sequence[str | Path],
    options: LoadOptions | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load Parquet ``files`` into ``catalog_name.table_name``."""
    with kept_sessions():  # a session per instance, not one per step
        return _load(spec, catalog_name, table_name, files, options, progress)


def _load(
    spec: ClusterSpec,
    catalog_name: str,
    table_name: str,
    files: Sequence[str | Path],
    options: LoadOptions | None,
    progress: Progress | None,
) -> LoadResult:
    options = options or LoadOptions()
    started = time.monotonic()
    with connect(spec.czar, autocommit=True) as czar:
        metadata_version(czar)
        catalog = get_catalog(czar, catalog_name)
        table = _table(catalog, table_name)
        options = _with_level(spec, czar, catalog, options)
        _check_options(spec, table, options)
        inputs = plan_inputs(table, resolve_files(files), ignore_extra=options.ignore_extra)
        counts = _survey(czar, catalog, table, inputs, options, progress)
        txn = txns.create_txn(czar, catalog.sql_name, table.sql_name, inputs, asdict(options))
        with txns.locked(czar, txn):
            _stage(spec, czar, catalog, table, txn, inputs, options, counts, progress)
    if options.publish:
        from qserv_py.loaders.publish import publish

        publish(spec, txn, progress=progress)
    return _result(spec, txn, started)


def resume(
    spec: ClusterSpec, txn: int, progress: Progress | None = None, *, force_publish: bool = False
) -> LoadResult:
    """Finish load ``txn``: stage what is not (all again if a restarted server lost its
    staging), then publish it if it was to be or being published, or ``force_publish``."""
    started = time.monotonic()
    with connect(spec.czar, autocommit=True) as czar:
        record = txns.get_txn(czar, txn)
        txns.require_state(
            record,
            "staging",
            "staged",
            "publishing",
            done="published" if force_publish else "resumed",
        )
        options = LoadOptions(**record.options)
        catalog = get_catalog(czar, record.catalog)
        table = catalog.table(record.table)
        publishing = record.state == "publishing"
        with txns.locked(czar, txn):
            if txns.restage_lost(spec, czar, table, record):
                record = txns.get_txn(czar, txn)
        if record.state == "staging":
            inputs = plan_inputs(
                table, [Path(f.path) for f in record.files], ignore_extra=options.ignore_extra
            )
            for f, planned in zip(record.files, inputs, strict=True):
                if planned.size != f.size:
                    raise LoadError(
                        f"load {txn}: {f.path} changed since the load began; abort the load "
                        "and start it again"
                    )
            with txns.locked(czar, txn):
                _stage(
                    spec, czar, catalog, table, txn, inputs, options, None, progress, resuming=True
                )
    if options.publish or force_publish or publishing:
        from qserv_py.loaders.publish import publish

        publish(spec, txn, progress=progress)
    return _result(spec, txn, started)


def _result(spec: ClusterSpec, txn: int, started: float) -> LoadResult:
    with connect(spec.czar, autocommit=True) as czar:
        record = txns.get_txn(czar, txn)
    return LoadResult(
        txn, record.state, record.rows, record.overlap_rows, time.monotonic() - started
    )


def _table(catalog: Catalog, name: str) -> Table:
    try:
        return catalog.table(name)
    except KeyError:
        known = ", ".join(t.name for t in catalog.tables)
        raise LoadError(
            f"catalog {catalog.name} has no table {name}; its tables: {known}"
        ) from None


def _with_level(
    spec: ClusterSpec, czar: psycopg.Connection, catalog: Catalog, options: LoadOptions
) -> LoadOptions:
    """``options`` with a replication level: the catalog's unless given (on Citus, 1:
    Citus writes every placement of a shard itself)."""
    if options.replication is not None:
        return options
    level = 1
    if spec.backend != "citus":
        row = czar.execute(
            "SELECT replication FROM qserv_meta.catalogs WHERE name = %s", (catalog.sql_name,)
        ).fetchone()
        level = int(row[0]) if row else 1
    return replace(options, replication=level)


def _check_options(spec: ClusterSpec, table: Table, options: LoadOptions) -> None:
    assert options.replication is not None  # (_with_level)
    if spec.backend == "citus" and options.replication != 1:
        raise LoadError(
            f"replication {options.replication}: on Citus a load writes every placement "
            "Citus keeps of each shard, and their number is the catalog's, set when it is "
            "created (`qserv-py catalog create --replication N`); load without "
            "--replication"
        )
    if not 1 <= options.replication <= len(spec.workers):
        raise LoadError(
            f"replication {options.replication} needs that many workers; the cluster has "
            f"{len(spec.workers)}"
        )
    if options.batch_rows < 1 or options.commit_rows < 1:
        raise LoadError("batch_rows and commit_rows must be positive")
    if options.allow_unknown_match_keys and table.kind is not TableKind.MATCH:
        raise LoadError(
            f"allow_unknown_match_keys applies to match tables; {table.name} is a "
            f"{table.kind.value} table: load without the option"
        )
    if options.place_unknown_by_position and not (
        table.kind is TableKind.CHILD and table.ra_column and table.dec_column
    ):
        raise LoadError(
            f"place_unknown_by_position places a child table's rows by their own position; "
            f"{table.name} is a {table.kind.value} table"
            + ("" if table.kind is not TableKind.CHILD else " without position columns")
            + ": declare them with qserv:ra_column and qserv:dec_column in the schema, or "
            "load without the option"
        )


# --- pass 1 ----------------------------------------------------------------------------------


def _survey(
    czar: psycopg.Connection,
    catalog: Catalog,
    table: Table,
    inputs: list[InputFile],
    options: LoadOptions,
    progress: Progress | None,
) -> PixelCounts | None:
    """Check the values of every file; for a director, count rows per pixel."""
    counts = None
    if table.kind is TableKind.DIRECTOR:
        counts = PixelCounts(max(options.max_order, _layout_max_order(czar, catalog)))
    elif table.kind is TableKind.CHILD and _stored_layout(czar, catalog) is None:
        raise LoadError(
            f"catalog {catalog.name} has no data yet: load its director table "
            f"{table.director} before {table.name}"
        )
    elif table.kind is TableKind.MATCH and _stored_layout(czar, catalog) is None:
        raise LoadError(
            f"catalog {catalog.name} has no data yet: load its director tables "
            f"{table.director} and {table.director2} before the match table {table.name}"
        )
    total = sum(f.rows for f in inputs)
    done = 0
    for file in inputs:
        columns = needs_value_checks(table, file)
        if not columns:
            done += file.rows
            continue
        for first, batch in read_batches(table, file, columns, options.batch_rows):
            check_values(table, file, first, batch)
            if counts is not None:
                assert table.ra_column and table.dec_column
                counts.add(
                    spatial_index(
                        positions(batch, table.ra_column), positions(batch, table.dec_column)
                    )
                )
            done += batch.num_rows
            if progress:
                progress("checking", done, total)
    return counts


def _stored_layout(czar: psycopg.Connection, catalog: Catalog) -> Layout | None:
    chunks = [
        r[0]
        for r in czar.execute(
            "SELECT chunk_id FROM qserv_meta.chunks WHERE catalog = %s", (catalog.sql_name,)
        )
    ]
    return Layout.from_chunks(chunks) if chunks else None


def _layout_max_order(czar: psycopg.Connection, catalog: Catalog) -> int:
    layout = _stored_layout(czar, catalog)
    return int(layout.orders.max()) if layout is not None else 0


def _ensure_layout(
    czar: psycopg.Connection,
    catalog: Catalog,
    txn: int,
    options: LoadOptions,
    counts: PixelCounts | None,
) -> Layout:
    """The catalog's layout; built from ``counts`` by its first director load."""
    with czar.transaction():
        czar.execute(
            "SELECT 1 FROM qserv_meta.catalogs WHERE name = %s FOR UPDATE", (catalog.sql_name,)
        )
        layout = _stored_layout(czar, catalog)
        if layout is not None:
            return layout
        assert counts is not None
        if options.fixed_order is not None:
            layout = Layout.fixed(options.fixed_order)
            params = {"kind": "fixed", "order": options.fixed_order}
        else:
            layout = Layout.adaptive(
                counts, options.max_rows_per_chunk, options.min_order, options.max_order
            )
            params = {
                "kind": "adaptive",
                "max_rows_per_chunk": options.max_rows_per_chunk,
                "min_order": options.min_order,
                "max_order": options.max_order,
            }
        with czar.cursor() as cur:
            cur.executemany(
                "INSERT INTO qserv_meta.chunks (catalog, chunk_id) VALUES (%s, %s)",
                [(catalog.sql_name, int(c)) for c in layout.uniq],
            )
        czar.execute(
            "UPDATE qserv_meta.catalogs SET layout = %s WHERE name = %s",
            (json.dumps({**params, "built_by": txn, "chunks": len(layout)}), catalog.sql_name),
        )
    return layout


# --- pass 2 ----------------------------------------------------------------------------------


def _stage(
    spec: ClusterSpec,
    czar: psycopg.Connection,
    catalog: Catalog,
    table: Table,
    txn: int,
    inputs: list[InputFile],
    options: LoadOptions,
    counts: PixelCounts | None,
    progress: Progress | None,
    *,
    resuming: bool = False,
) -> None:
    layout = _ensure_layout(czar, catalog, txn, options, counts) if table.partitioned else None
    placement = Placement.for_load(czar, spec, catalog.sql_name, txn, options.replication)
    if layout is not None and counts is not None:
        placement.place(czar, _rows_per_chunk(layout, counts))
    record = txns.get_txn(czar, txn)
    done_files = {f.file_no for f in record.files if f.done}
    total = sum(f.rows for f in inputs)
    staged = sum(f.rows for f in record.files if f.done)
    stager = _BatchStager(catalog, table, txn, layout, placement, czar)
    with StagingSession(spec, txn, catalog, table) as session:
        session.create_tables()
        if resuming:
            session.delete_files([f.file_no for f in record.files if not f.done])
        for file_no, file in enumerate(inputs):
            if file_no in done_files:
                continue
            since_commit = 0
            chunk_rows: dict[int, list[int]] = {}
            for _first, batch in read_batches(table, file, None, options.batch_rows):
                payloads, dirindex = stager.prepare(session, batch, file_no, chunk_rows)
                since_commit += batch.num_rows
                commit = since_commit >= options.commit_rows
                session.write(payloads, dirindex, commit=commit)
                if commit:
                    since_commit = 0
                staged += batch.num_rows
                if progress:
                    progress("staging", staged, total)
            session.write({w.name: WorkerPayload() for w in spec.workers}, commit=True)
            session.wait()
            _file_done(czar, txn, file_no, chunk_rows)
    stager.raise_unknown_keys(czar)
    txns.set_state(czar, txn, "staged")


def _rows_per_chunk(layout: Layout, counts: PixelCounts) -> dict[int, int]:
    """Rows of this load in each chunk (chunks are no finer than the counts' order)."""
    orders = layout.orders
    shift = 2 * (counts.order - orders)
    ipix = layout.lo >> (2 * (ORDER - orders))
    rows = counts.rows_in(ipix << shift, (ipix + 1) << shift)
    return {int(c): int(r) for c, r in zip(layout.uniq, rows, strict=True) if r}


def _file_done(
    czar: psycopg.Connection, txn: int, file_no: int, chunk_rows: dict[int, list[int]]
) -> None:
    with czar.transaction():
        with czar.cursor() as cur:
            cur.executemany(
                "INSERT INTO qserv_meta.load_chunks (txn, chunk_id, rows, overlap_rows)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (txn, chunk_id) DO UPDATE SET"
                " rows = load_chunks.rows + excluded.rows,"
                " overlap_rows = load_chunks.overlap_rows + excluded.overlap_rows",
                [(txn, c, r[0], r[1]) for c, r in chunk_rows.items()],
            )
        czar.execute(
            "UPDATE qserv_meta.load_files SET done = true WHERE txn = %s AND file_no = %s",
            (txn, file_no),
        )
        czar.execute(
            "UPDATE qserv_meta.load_txns SET updated_at = now(),"
            " rows = (SELECT coalesce(sum(rows), 0) FROM qserv_meta.load_chunks WHERE txn = %s),"
            " overlap_rows = (SELECT coalesce(sum(overlap_rows), 0) FROM qserv_meta.load_chunks"
            "   WHERE txn = %s) WHERE id = %s",
            (txn, txn, txn),
        )


class _BatchStager:
    """Turns record batches into per-worker COPY payloads."""

    def __init__(
        self,
        catalog: Catalog,
        table: Table,
        txn: int,
        layout: Layout | None,
        placement: Placement,
        czar: psycopg.Connection,
    ) -> None:
        self.catalog = catalog
        self.table = table
        self.txn = txn
        self.layout = layout
        self.placement = placement
        self.czar = czar
        self.unknown_count = 0
        self.unknown_examples: list[int] = []
        #: rows placed by their own position (unknown director key, the option set)
        self.by_position = 0
        self.place_by_position = bool(
            txns.get_txn(czar, txn).options.get("place_unknown_by_position")
        )
        if table.kind is TableKind.CHILD:
            assert table.director and table.director_key
            self.dirindex = dirindex_table(catalog.name, table.director)
        if table.kind is TableKind.MATCH:
            allow = bool(txns.get_txn(czar, txn).options.get("allow_unknown_match_keys"))
            self.matches = MatchPlacer(catalog, table, allow_unknown=allow)

    def prepare(
        self,
        session: StagingSession,
        batch: pa.Table,
        file_no: int,
        chunk_rows: dict[int, list[int]],
    ) -> tuple[dict[str, WorkerPayload], bytes]:
        n = batch.num_rows
        file_col = pa.array(np.full(n, file_no, dtype=np.int32))
        if not self.table.partitioned:  # replicated: every row to every worker
            data = encode_batch([*batch.columns, file_col], session.types)
            chunk_rows.setdefault(0, [0, 0])[0] += n
            return {w: WorkerPayload(rows=data) for w in self.placement.workers}, b""
        assert self.layout is not None
        dirindex = b""
        if self.table.kind is TableKind.MATCH:
            return self._prepare_match(session, batch, file_col, chunk_rows), b""
        if self.table.kind is TableKind.DIRECTOR:
            assert self.table.ra_column and self.table.dec_column and self.table.key_column
            ra = positions(batch, self.table.ra_column)
            dec = positions(batch, self.table.dec_column)
            index = spatial_index(ra, dec)
            chunk = self.layout.chunk_of(index)
            keys = batch.column(self.table.key_column.lower())
            dirindex = encode_batch(
                [keys, pa.array(chunk), pa.array(index), file_col], list(DIRINDEX_TYPES)
            )
        else:
            chunk, index, known = self._lookup(batch)
            if not known.all() and self.place_by_position:
                self._place_by_position(batch, chunk, index, known)
            elif not known.all():
                self._note_unknown(batch, known)
            if self.unknown_count:
                return {}, b""  # the load fails at the end; only keep counting
        columns = [*batch.columns, pa.array(index), pa.array(chunk), file_col]
        payloads = self._route(session, columns, chunk, overlap=False)
        self._count(chunk_rows, chunk, 0)
        if self.table.kind is TableKind.DIRECTOR:
            rows, targets = overlap_targets(
                self.layout, ra, dec, index, chunk, self.catalog.overlap_arcsec / 3600
            )
            if len(rows):
                self.placement.place_overlap(self.czar, np.unique(targets).tolist())
                take = pa.array(rows)
                o_columns = [c.take(take) for c in columns]
                o_columns[-2] = pa.array(targets)
                for worker, payload in self._route(
                    session, o_columns, targets, overlap=True
                ).items():
                    payloads.setdefault(worker, WorkerPayload()).overlap = payload.overlap
                    payloads[worker].new_overlap_chunks = payload.new_overlap_chunks
                self._count(chunk_rows, targets, 1)
        return payloads, dirindex

    def _prepare_match(
        self,
        session: StagingSession,
        batch: pa.Table,
        file_col: pa.Array,
        chunk_rows: dict[int, list[int]],
    ) -> dict[str, WorkerPayload]:
        """A match table's rows, each in the chunk of each director row it names."""
        placed = self.matches.place(self.czar, batch)
        if self.matches.failed:
            return {}  # the load fails at the end; only keep counting
        take = pa.array(placed.rows)
        columns = [
            *(c.take(take) for c in batch.columns),
            pa.array(placed.index),
            pa.array(placed.chunk),
            pa.array(placed.flags, pa.int16()),
            file_col.take(take),
        ]
        self._count(chunk_rows, placed.chunk, 0)
        return self._route(session, columns, placed.chunk, overlap=False)

    def _route(
        self, session: StagingSession, columns: list[pa.Array], chunk: np.ndarray, *, overlap: bool
    ) -> dict[str, WorkerPayload]:
        out: dict[str, WorkerPayload] = {}
        known = session.overlap_partitions if overlap else session.partitions
        for worker, mask in self.placement.masks(chunk):
            if not mask.any():
                continue
            selected = columns if mask.all() else [c.filter(pa.array(mask)) for c in columns]
            data = encode_batch(selected, session.types)
            new = sorted(set(np.unique(chunk[mask]).tolist()) - known[worker])
            known[worker].update(new)
            out[worker] = (
                WorkerPayload(overlap=data, new_overlap_chunks=new)
                if overlap
                else WorkerPayload(rows=data, new_chunks=new)
            )
        return out

    @staticmethod
    def _count(chunk_rows: dict[int, list[int]], chunk: np.ndarray, slot: int) -> None:
        uniq, counts = np.unique(chunk, return_counts=True)
        for c, k in zip(uniq.tolist(), counts.tolist(), strict=True):
            chunk_rows.setdefault(c, [0, 0])[slot] += k

    def _lookup(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk and spatial_index of each child row from the director index, and which
        rows have a known director key."""
        assert self.table.director_key
        column = batch.column(self.table.director_key.lower())
        keys = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
        rows = self.czar.execute(
            f"SELECT key, chunk_id, spatial_index FROM {self.dirindex}"
            " WHERE key = ANY(%s) ORDER BY key",
            (np.unique(keys).tolist(),),
        ).fetchall()
        found = np.array(rows, dtype=np.int64).reshape(-1, 3)
        if len(found) == 0:
            zeros = np.zeros(len(keys), dtype=np.int64)
            return zeros, zeros.copy(), np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(found[:, 0], keys), len(found) - 1)
        return found[pos, 1], found[pos, 2], found[pos, 0] == keys

    def _note_unknown(self, batch: pa.Table, known: np.ndarray) -> None:
        assert self.table.director_key
        column = batch.column(self.table.director_key.lower())
        keys = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
        self.unknown_count += int((~known).sum())
        missing = np.unique(keys[~known])[:5].tolist()
        self.unknown_examples = sorted({*self.unknown_examples, *missing})[:5]

    def _place_by_position(
        self, batch: pa.Table, chunk: np.ndarray, index: np.ndarray, known: np.ndarray
    ) -> None:
        """Chunk and spatial_index of the rows of unknown director key, from their own
        position (in place); their chunks get workers if they had none."""
        assert self.layout is not None and self.table.ra_column and self.table.dec_column
        unknown = ~known
        ra = positions(batch, self.table.ra_column)[unknown]
        dec = positions(batch, self.table.dec_column)[unknown]
        bad = ~(np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra <= 360) & (np.abs(dec) <= 90))
        if bad.any():
            message = (
                f"{int(bad.sum())} rows of {self.table.name} with an unknown "
                f"{self.table.director_key} have no position to place them by "
                f"({self.table.ra_column} in [0, 360], {self.table.dec_column} in [-90, 90]); "
                f"fix the input; nothing was published: abort the load "
                f"(`qserv-py txn abort {self.txn}`)"
            )
            txns.set_state(self.czar, self.txn, "failed", error=message)
            raise LoadError(message)
        own = spatial_index(ra, dec)
        chunks = self.layout.chunk_of(own)
        self.placement.place_overlap(self.czar, np.unique(chunks).tolist())
        chunk[unknown] = chunks
        index[unknown] = own
        self.by_position += int(unknown.sum())

    def raise_unknown_keys(self, czar: psycopg.Connection) -> None:
        if self.table.kind is TableKind.MATCH and self.matches.failed:
            message = (
                "; ".join(self.matches.problems())
                + f"; nothing was published: abort the load (`qserv-py txn abort {self.txn}`)"
            )
            txns.set_state(czar, self.txn, "failed", error=message)
            raise LoadError(message)
        if self.unknown_count:
            message = (
                f"{self.unknown_count} rows of {self.table.name} have a {self.table.director_key} "
                f"that is not in {self.table.director} "
                f"(e.g. {', '.join(map(str, self.unknown_examples))}); "
                f"load those {self.table.director} rows first or fix the input; nothing was "
                f"published: abort the load (`qserv-py txn abort {self.txn}`)"
            )
            txns.set_state(czar, self.txn, "failed", error=message)
            raise LoadError(message)
