"""A catalog's chunks on the sky, for density and coverage maps:
``GET /api/v1/catalogs/{name}/chunks``.

Each chunk is a HEALPix cell (nested scheme, NUNIQ id): the answer gives its order and
pixel, the rows of the catalog's director tables in it (from the chunk statistics the czar
keeps in ``qserv_meta.chunk_stats``: nothing is counted at request time), its area, and its
boundary as a polygon of (ra, dec) vertices, so that a client can draw the catalog's density
in any projection without HEALPix code of its own. The director tables' position columns
come with it, for writing spatial constraints.
"""

from __future__ import annotations

import math

import numpy as np
from cdshealpix.nested import vertices
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from qserv_py.api.deps import ServiceDep
from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.schema.model import TableKind
from qserv_py.sky.healpix import order_ipix

router = APIRouter(prefix="/api/v1", tags=["REST"])

#: square degrees of the whole sphere
SPHERE_DEG2 = 4 * math.pi * (180 / math.pi) ** 2


class Director(BaseModel):
    table: str
    ra: str = Field(description="Its right ascension column (degrees).")
    dec: str = Field(description="Its declination column (degrees).")


class ChunkCell(BaseModel):
    id: int = Field(description="The chunk: the NUNIQ id of its HEALPix cell, 4·4^order + ipix.")
    order: int
    ipix: int
    rows: int = Field(description="Rows of the director tables in the chunk (no overlap).")
    area_deg2: float
    vertices: list[tuple[float, float]] = Field(
        description="The cell's boundary, (ra, dec) in degrees, counter-clockwise."
    )


class ChunkMap(BaseModel):
    catalog: str
    overlap_arcsec: float
    directors: list[Director]
    chunks: list[ChunkCell]


@router.get(
    "/catalogs/{name}/chunks",
    summary="A catalog's chunks as sky cells: rows, area and boundary of each",
    responses={404: {"description": "There is no such catalog."}},
)
def chunk_map(
    name: str,
    service: ServiceDep,
    step: int = Query(
        default=2, ge=1, le=8, description="Vertices per cell edge in the boundary polygons."
    ),
) -> ChunkMap:
    with connect(service.spec.czar, autocommit=True) as czar:
        catalog = get_catalog(czar, name)
        directors = [t for t in catalog.tables if t.kind is TableKind.DIRECTOR]
        rows = {
            int(chunk): int(count)
            for chunk, count in czar.execute(
                "SELECT chunk_id, sum(rows) FROM qserv_meta.chunk_stats"
                " WHERE catalog = %s AND table_name = ANY(%s) AND chunk_id > 0"
                " GROUP BY chunk_id HAVING sum(rows) > 0",
                (catalog.sql_name, [t.sql_name for t in directors]),
            )
        }
    return ChunkMap(
        catalog=catalog.name,
        overlap_arcsec=catalog.overlap_arcsec,
        directors=[
            Director(table=f"{catalog.name}.{t.name}", ra=t.ra_column, dec=t.dec_column)
            for t in directors
            if t.ra_column and t.dec_column
        ],
        chunks=cells(rows, step),
    )


def cells(rows: dict[int, int], step: int) -> list[ChunkCell]:
    """The cells of chunks (NUNIQ id → rows), with their boundaries, ordered by id.

    >>> [(c.order, c.ipix, len(c.vertices)) for c in cells({4: 5, 4 * 4 + 3: 1}, 1)]
    [(0, 0, 4), (1, 3, 4)]
    """
    ids = np.asarray(sorted(rows), dtype=np.int64)
    if not len(ids):
        return []
    orders, pixels = order_ipix(ids)
    found: list[ChunkCell] = []
    for order in np.unique(orders).tolist():
        at = orders == order
        lon, lat = vertices(pixels[at].astype(np.uint64), int(order), step=step)
        area = SPHERE_DEG2 / (12 * 4**order)
        for chunk, ipix, ras, decs in zip(
            ids[at].tolist(), pixels[at].tolist(), lon.deg, lat.deg, strict=True
        ):
            corners = zip(ras.tolist(), decs.tolist(), strict=True)
            points = [(round(r, 5), round(d, 5)) for r, d in corners]
            cell = ChunkCell(
                id=chunk, order=int(order), ipix=ipix, rows=rows[chunk], area_deg2=area,
                vertices=points,
            )  # fmt: skip
            found.append(cell)
    return sorted(found, key=lambda c: c.id)
