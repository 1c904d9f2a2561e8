"""Overlap: which other chunks need a copy of each director row.

A row at p must be visible (as an overlap row) to every chunk B other than its own that
comes within the overlap radius r of p: then every pair of rows closer than r is found
by a chunk-local join in the chunk of either row.

Candidates come from the HEALPix neighbourhood: at the order returned by
:func:`~qserv_py.sky.healpix.neighbourhood_order`, the 3×3 block of pixels around p
holds the whole circle of radius r around p. Each block pixel that meets another chunk
is then split into its 16 sub-pixels two orders down, and a sub-pixel counts only if its
centre lies within r + R of p, where R bounds the distance from a sub-pixel's centre to
its boundary: 1.1 × the mean pixel size; the measured maximum is 1.044×, at the
elongated polar pixels. The rows copied are a superset of those within r of a chunk
(about r + R, instead of the ~3.4 r of the bare block). The superset never misses a
pair and costs little storage. Joins test the exact distance and take each pair from
its own chunk, so extra overlap rows never change results.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from qserv_py.sky.healpix import (
    ORDER,
    IntArray,
    ancestor,
    inside_ancestor,
    mean_pixel_size_deg,
    neighbourhood_order,
    neighbours,
    pixel_centres,
    unit_vectors,
)
from qserv_py.sky.layout import Layout

REFINE_ORDERS = 2
#: bound on (distance from a pixel's centre to its boundary) / (mean pixel size)
CENTRE_TO_EDGE = 1.1


def overlap_targets(
    layout: Layout,
    ra: npt.ArrayLike,
    dec: npt.ArrayLike,
    index: IntArray,
    chunk: IntArray,
    radius_deg: float,
) -> tuple[IntArray, IntArray]:
    """(row, chunk) pairs, each row to be copied into that chunk's overlap.

    ``index`` is each row's spatial_index and ``chunk`` its own chunk. Pairs are
    unique, ordered by row, and never name a row's own chunk.
    """
    index = np.asarray(index, dtype=np.int64)
    chunk = np.asarray(chunk, dtype=np.int64)
    if len(index) == 0 or radius_deg <= 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = neighbourhood_order(radius_deg)
    rows, pixels = _candidates(layout, index, chunk, order)
    if len(rows) == 0:
        return rows, pixels
    fine = min(order + REFINE_ORDERS, ORDER)
    per = 4 ** (fine - order)
    sub = ((pixels << (2 * (fine - order)))[:, None] + np.arange(per, dtype=np.int64)).ravel()
    sub_rows = np.repeat(rows, per)
    centres = unit_vectors(*pixel_centres(sub, fine))
    points = unit_vectors(
        np.asarray(ra, np.float64)[sub_rows], np.asarray(dec, np.float64)[sub_rows]
    )
    reach = math.radians(radius_deg + CENTRE_TO_EDGE * mean_pixel_size_deg(fine))
    near = np.einsum("ij,ij->i", centres, points) >= math.cos(min(reach, math.pi))
    sub, sub_rows = sub[near], sub_rows[near]
    shift = 2 * (ORDER - fine)
    which, touched = layout.chunks_overlapping(sub << shift, (sub + 1) << shift)
    rows = sub_rows[which]
    foreign = touched != chunk[rows]
    return _unique_pairs(rows[foreign], touched[foreign])


def _candidates(
    layout: Layout, index: IntArray, chunk: IntArray, order: int
) -> tuple[IntArray, IntArray]:
    """(row, block pixel at ``order``) pairs where the pixel meets another chunk."""
    shift = 2 * (ORDER - order)
    own = ancestor(index, order)
    # a row whose block lies inside its own chunk (most: all but a band along the chunk's
    # edges) has no candidate: its block is not made
    orders = layout.orders[np.searchsorted(layout.lo, index, side="right") - 1]
    edge = np.flatnonzero(~inside_ancestor(own, order - orders))
    block = neighbours(own[edge], order)
    rows_out: list[IntArray] = []
    pixels_out: list[IntArray] = []
    for j in range(block.shape[1]):
        pixel = block[:, j]
        valid = np.flatnonzero(pixel >= 0)
        which, touched = layout.chunks_overlapping(
            pixel[valid] << shift, (pixel[valid] + 1) << shift
        )
        rows = edge[valid[which]]
        foreign = touched != chunk[rows]
        rows_out.append(rows[foreign])
        pixels_out.append(pixel[valid][which][foreign])
    return _unique_pairs(np.concatenate(rows_out), np.concatenate(pixels_out))


def _unique_pairs(a: IntArray, b: IntArray) -> tuple[IntArray, IntArray]:
    if len(a) == 0:
        return a, b
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]
