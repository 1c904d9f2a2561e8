"""Row counts of a catalog's published data, per table and per chunk (from the czar)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.sky.healpix import order_ipix


@dataclass(frozen=True)
class TableStats:
    name: str
    kind: str
    rows: int
    overlap_rows: int
    chunks: int


@dataclass(frozen=True)
class ChunkStats:
    chunk_id: int
    order: int
    table: str
    rows: int
    overlap_rows: int
    workers: tuple[str, ...]


@dataclass(frozen=True)
class CatalogStats:
    name: str
    tables: tuple[TableStats, ...]
    chunks: tuple[ChunkStats, ...]
    layout: dict[str, Any] | None
    layout_chunks: int


def catalog_stats(spec: ClusterSpec, name: str) -> CatalogStats:
    with connect(spec.czar, autocommit=True) as czar:
        catalog = get_catalog(czar, name)
        per_table = {
            t: (int(r), int(o), int(c))
            for t, r, o, c in czar.execute(
                "SELECT table_name, sum(rows), sum(overlap_rows), count(*) FILTER (WHERE rows > 0)"
                " FROM qserv_meta.chunk_stats WHERE catalog = %s GROUP BY table_name",
                (catalog.sql_name,),
            )
        }
        chunks = [
            ChunkStats(chunk, int(order_ipix(chunk)[0]), table, rows, overlap, tuple(workers or ()))
            for chunk, table, rows, overlap, workers in czar.execute(
                "SELECT s.chunk_id, s.table_name, s.rows, s.overlap_rows,"
                " (SELECT array_agg(worker ORDER BY worker) FROM qserv_meta.placement p"
                "   WHERE p.catalog = s.catalog AND p.chunk_id = s.chunk_id)"
                " FROM qserv_meta.chunk_stats s WHERE s.catalog = %s ORDER BY 1, 2",
                (catalog.sql_name,),
            )
            if chunk > 0  # replicated tables count under chunk 0
        ]
        layout_row = czar.execute(
            "SELECT layout, (SELECT count(*) FROM qserv_meta.chunks WHERE catalog = %s)"
            " FROM qserv_meta.catalogs WHERE name = %s",
            (catalog.sql_name, catalog.sql_name),
        ).fetchone()
    assert layout_row is not None
    tables = tuple(
        TableStats(t.name, t.kind.value, *per_table.get(t.sql_name, (0, 0, 0)))
        for t in catalog.tables
    )
    return CatalogStats(catalog.name, tables, tuple(chunks), layout_row[0], int(layout_row[1]))
