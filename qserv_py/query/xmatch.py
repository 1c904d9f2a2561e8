"""Cross-matches of an upload with a director table, and the partitioning of its targets.

A **cross-match** (:class:`CrossMatch`) joins an upload with a director table by a spatial
predicate with a constant radius r no larger than the catalog's overlap (:func:`spatial_join`,
:func:`check_radius`) — ``CONTAINS(POINT(o.ra, o.dec), CIRCLE(t.ra, t.dec, r)) = 1``
(either way round), ``DISTANCE(POINT(..), POINT(..)) < r`` or ``<= r``,
``scisql_angSep(...) < r``. The targets are partitioned like the catalog
(:func:`partition_targets`): a copy of a target in every chunk that can hold an object
within r of it, each copy with the ``spatial_index`` ranges of that chunk that can (one row
per copy and range). On a worker the copies of a chunk (``t.qserv_chunk``) join the
chunk's own rows (never its overlap) with ``o.spatial_index >= t.qserv_lo AND
o.spatial_index < t.qserv_hi`` (a btree probe; the ranges lie inside the chunk), then the
exact test. An object lies in one chunk and in at most one range of a target's copy there,
so every pair is found exactly once, and the merge just concatenates.

:mod:`qserv_py.query.uploads` finds the cross-matches of a query and plans their shipment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query import geometry as geo
from qserv_py.query.regions_ast import arguments, constant
from qserv_py.schema.model import TableKind
from qserv_py.sky.healpix import (
    ORDER,
    IntArray,
    ancestor,
    index_range,
    inside_ancestor,
    neighbourhood_order,
    neighbours,
    spatial_index,
)
from qserv_py.sky.layout import Layout

if TYPE_CHECKING:
    from qserv_py.query.analysis import Ref

#: a shipped target's ranges are coarsened while the objects expected in one of their
#: pixels stay below this. Measured (1″, 100k targets, 200k objects): 0.05 to 0.5 join
#: fastest; 4 takes 1.6×, 64 takes 9× as long (each candidate is a heap fetch and a
#: trigonometric test), and no coarsening 1.2× (4.5 probes per target instead of 1.04)
CANDIDATES_PER_PIXEL = 0.1
#: square degrees of an order-0 HEALPix pixel
ORDER0_AREA_DEG2 = 4 * math.pi * (180 / math.pi) ** 2 / 12


# --- cross-match detection ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CrossMatch:
    """An upload reference joined with a director table by distance."""

    alias: str  # of the upload in the query
    ra: str  # the upload's position columns
    dec: str
    radius: float  # degrees
    director: str  # alias of the director table
    conjunct: exp.Expression = field(repr=False)
    #: the catalog's layout, and each of its chunks' objects per square degree (in the
    #: layout's order)
    layout: Layout | None = field(default=None, repr=False)
    density: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    #: every result row has a match (an inner join): chunks without targets have none
    narrows: bool = True


def _upload_pair(ra: exp.Expression, dec: exp.Expression, uploads: Mapping[str, str]) -> str | None:
    if (
        isinstance(ra, exp.Column)
        and isinstance(dec, exp.Column)
        and ra.table in uploads
        and ra.table == dec.table
    ):
        return ra.table
    return None


def _director_pair(ra: exp.Expression, dec: exp.Expression, refs: Mapping[str, Ref]) -> str | None:
    if not (isinstance(ra, exp.Column) and isinstance(dec, exp.Column)):
        return None
    ref = refs.get(ra.table)
    if (
        ref is not None
        and ra.table == dec.table
        and ref.table.kind is TableKind.DIRECTOR
        and ra.name == ref.ra
        and dec.name == ref.dec
    ):
        return ref.alias
    return None


def spatial_join(
    conjunct: exp.Expression, uploads: Mapping[str, str], refs: Mapping[str, Ref]
) -> tuple[str, str, str, str, float] | None:
    """(upload alias, its ra column, its dec column, director alias, radius) of a
    cross-match predicate between an upload and a director table, else None."""
    pairs: tuple[list[exp.Expression], list[exp.Expression]] | None = None
    radius: float | None = None
    if isinstance(conjunct, geo.Contains):
        point, region = arguments(conjunct)
        if isinstance(point, geo.Point) and isinstance(region, geo.Circle):
            cargs = arguments(region)
            pairs, radius = (arguments(point), cargs[:2]), constant(cargs[2])
    else:
        distance, bound = None, None
        if isinstance(conjunct, (exp.LT, exp.LTE)):
            distance, bound = conjunct.this, conjunct.expression
        elif isinstance(conjunct, (exp.GT, exp.GTE)):
            distance, bound = conjunct.expression, conjunct.this
        if isinstance(distance, geo.Distance) and bound is not None:
            args = arguments(distance)
            pairs, radius = (args[:2], args[2:]), constant(bound)
    if pairs is None or radius is None or len(pairs[0]) != 2 or len(pairs[1]) != 2:
        return None
    for mine, theirs in (pairs, pairs[::-1]):
        upload = _upload_pair(mine[0], mine[1], uploads)
        director = _director_pair(theirs[0], theirs[1], refs)
        if upload is not None and director is not None:
            return upload, mine[0].name, mine[1].name, director, radius
    return None


def check_radius(radius: float, ref: Ref) -> None:
    """Refuse a cross-match radius larger than the catalog's overlap."""
    overlap = ref.catalog.overlap_arcsec
    if radius * 3600 > overlap:
        raise QueryRefused(
            f"the cross-match radius {radius * 3600:g}″ is larger than the overlap of catalog "
            f"{ref.catalog.name} ({overlap:g}″), the largest radius this catalog is "
            f"partitioned for; use a radius of at most {overlap:g}″"
        )


def density(layout: Layout, chunk_rows: Mapping[int, int]) -> npt.NDArray[np.float64]:
    """Objects per square degree of each chunk of ``layout`` (in its order)."""
    rows = np.array([chunk_rows.get(int(c), 0) for c in layout.uniq.tolist()], np.float64)
    area = ORDER0_AREA_DEG2 / 4.0 ** layout.orders.astype(np.float64)
    return rows / area


# --- partitioning the targets -------------------------------------------------------------


def partition_targets(
    ra: npt.ArrayLike,
    dec: npt.ArrayLike,
    radius_deg: float,
    layout: Layout,
    chunk_density: npt.NDArray[np.float64] | None = None,
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(row, chunk, lo, hi): each target's copies, with the spatial_index range
    ``[lo, hi)`` of that chunk holding every object of the chunk within ``radius_deg``.

    Targets are located at the order whose 3×3 pixel blocks hold every circle of the
    radius (:func:`~qserv_py.sky.healpix.neighbourhood_order`); each block pixel goes to
    the chunks it meets, cut to each chunk. Where a block pixel lies inside its chunk, it
    is widened to its ancestor at the coarsest order (not coarser than the chunk) whose
    pixels hold at most :data:`CANDIDATES_PER_PIXEL` objects at the chunk's density
    (``chunk_density``, objects per square degree in the layout's order): in sparse sky
    one btree probe then finds a target's candidates, instead of up to nine. A target's
    ranges in a chunk are disjoint, and merged where contiguous: an object is in at most
    one of them. Targets without a finite position, or with ``|dec| > 90``, get no copy
    (they match nothing). Rows come sorted by lo (so by chunk).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    empty = np.empty(0, np.int64)
    good = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if len(good) == 0 or radius_deg < 0:
        return empty, empty, empty, empty
    k = neighbourhood_order(radius_deg)
    own = ancestor(spatial_index(ra[good], dec[good]), k)
    coarse = None if chunk_density is None else widened_orders(layout, chunk_density, k)
    if coarse is not None:
        # most targets of sparse sky: the whole 3×3 block inside the own pixel's widened
        # ancestor, which lies in its chunk: one range, found without the block
        at = np.searchsorted(layout.lo, own << (2 * (ORDER - k)), side="right") - 1
        inside = inside_ancestor(own, k - coarse[at])
        if inside.any():
            width = 2 * (ORDER - coarse[at[inside]])
            lo = (own[inside] >> (2 * (k - coarse[at[inside]]))) << width
            parts = [
                (good[inside], layout.uniq[at[inside]], lo, lo + (np.int64(1) << width)),
                _partition_blocks(good[~inside], own[~inside], k, layout, coarse),
            ]
            rows, chunks, lo, hi = (np.concatenate(c) for c in zip(*parts, strict=True))
            by_lo = np.argsort(lo, kind="stable")
            return rows[by_lo], chunks[by_lo], lo[by_lo], hi[by_lo]
    return _partition_blocks(good, own, k, layout, coarse)


def widened_orders(layout: Layout, chunk_density: npt.NDArray[np.float64], k: int) -> IntArray:
    """The order each chunk's block pixels widen to: the coarsest (not coarser than the
    chunk, nor finer than ``k``) whose pixels hold at most CANDIDATES_PER_PIXEL objects
    at the chunk's density."""
    wanted = np.log(np.maximum(chunk_density, 1e-300) * ORDER0_AREA_DEG2)
    wanted = np.ceil((wanted - math.log(CANDIDATES_PER_PIXEL)) / math.log(4))
    return np.clip(wanted, layout.orders, k).astype(np.int64)


def _partition_blocks(
    good: IntArray, own: IntArray, k: int, layout: Layout, coarse: IntArray | None
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """:func:`partition_targets` of the targets ``good`` from their 3×3 blocks of
    order-``k`` pixels around ``own``; ``coarse``: the order each chunk's pixels widen
    to (None: not widened)."""
    empty = np.empty(0, np.int64)
    if len(good) == 0:
        return empty, empty, empty, empty
    block = neighbours(own, k)
    # a missing neighbour (8 at some base-pixel corners) is the own pixel again
    pixels = np.where(block >= 0, block, own[:, None])
    shift = 2 * (ORDER - k)
    lo = pixels << shift
    hi = lo + (np.int64(1) << shift)
    position = np.searchsorted(layout.lo, lo, side="right") - 1
    if np.any(hi > layout.hi[position]):  # chunks smaller than the block's pixels
        return _partition_fine(good, pixels.ravel(), k, layout)
    if coarse is not None:
        width = 2 * (ORDER - coarse[position])
        lo = (pixels >> (2 * (k - coarse[position]))) << width
        hi = lo + (np.int64(1) << width)
    # a block widened into one pixel (most, in sparse sky) is one range; the others: their
    # ranges by lo (so by chunk), the same one once, contiguous ones merged
    one = np.all(lo == lo[:, :1], axis=1)
    many = ~one
    lo_m, hi_m, pos_m = lo[many], hi[many], position[many]
    order = np.argsort(lo_m, axis=1)
    lo_m = np.take_along_axis(lo_m, order, axis=1)
    hi_m = np.take_along_axis(hi_m, order, axis=1)
    pos_m = np.take_along_axis(pos_m, order, axis=1)
    start = np.ones(lo_m.shape, dtype=bool)
    start[:, 1:] = (lo_m[:, 1:] != lo_m[:, :-1]) & (
        (lo_m[:, 1:] != hi_m[:, :-1]) | (pos_m[:, 1:] != pos_m[:, :-1])
    )
    first = np.flatnonzero(start.ravel())
    rows = np.concatenate([good[one], np.repeat(good[many], lo_m.shape[1])[first]])
    where = np.concatenate([position[one, 0], pos_m.ravel()[first]])
    out_lo = np.concatenate([lo[one, 0], lo_m.ravel()[first]])
    merged_hi = np.maximum.reduceat(hi_m.ravel(), first) if len(first) else first
    out_hi = np.concatenate([hi[one, 0], merged_hi])
    by_lo = np.argsort(out_lo, kind="stable")
    return rows[by_lo], layout.uniq[where[by_lo]], out_lo[by_lo], out_hi[by_lo]


def _partition_fine(
    rows: IntArray, pixels: IntArray, k: int, layout: Layout
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """:func:`partition_targets` where block pixels can be larger than chunks: each
    block pixel cut into the chunks it meets (``pixels`` is the blocks, raveled)."""
    rows = np.repeat(rows, len(pixels) // len(rows))
    shift = 2 * (ORDER - k)
    plo, phi = pixels << shift, (pixels + 1) << shift
    which, chunks = layout.chunks_overlapping(plo, phi)
    rows, plo, phi = rows[which], plo[which], phi[which]
    cut_lo, cut_hi = index_range(chunks)
    lo, hi = np.maximum(plo, cut_lo), np.minimum(phi, cut_hi)
    order = np.lexsort((lo, rows))
    rows, chunks, lo, hi = rows[order], chunks[order], lo[order], hi[order]
    new_range = (lo[1:] != lo[:-1]) & ((lo[1:] != hi[:-1]) | (chunks[1:] != chunks[:-1]))
    start = np.concatenate([[True], (rows[1:] != rows[:-1]) | new_range])
    first = np.flatnonzero(start)
    rows, chunks, lo = rows[first], chunks[first], lo[first]
    hi = np.maximum.reduceat(hi, first)
    by_lo = np.argsort(lo, kind="stable")
    return rows[by_lo], chunks[by_lo], lo[by_lo], hi[by_lo]
