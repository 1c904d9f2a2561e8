"""Layouts and overlap, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from qserv_py.sky.healpix import (
    ORDER,
    angular_separation,
    index_range,
    neighbourhood_order,
    nuniq,
    order_ipix,
    spatial_index,
    unit_vectors,
)
from qserv_py.sky.layout import Layout, PixelCounts
from qserv_py.sky.overlap import overlap_targets

RNG = np.random.default_rng(7)


def _sky(n: int) -> tuple[np.ndarray, np.ndarray]:
    ra = RNG.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(RNG.uniform(-1, 1, n)))
    return ra, dec


def _clustered(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Half uniform, half in a dense band (an adaptive layout splits there)."""
    ra, dec = _sky(n)
    dec[: n // 2] = np.clip(RNG.normal(0, 3, n // 2), -90, 90)
    return ra, dec


def test_nuniq_round_trip() -> None:
    orders = RNG.integers(0, 30, 1000)
    ipix = (RNG.random(1000) * 12 * 4.0**orders).astype(np.int64)
    got_order, got_ipix = order_ipix(nuniq(orders, ipix))
    assert np.array_equal(got_order, orders) and np.array_equal(got_ipix, ipix)


def test_spatial_index_matches_reference() -> None:
    """The index agrees with healpy-independent geometry: the pixel centre is near the point."""
    ra, dec = _sky(10_000)
    idx = spatial_index(ra, dec)
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < 12 * 4**ORDER
    from cdshealpix import nested

    lon, lat = nested.healpix_to_lonlat(idx.astype(np.uint64), ORDER)
    sep = angular_separation(ra, dec, lon.deg, lat.deg)
    assert sep.max() < 1e-6  # order-29 pixels are ~0.4 mas


@pytest.mark.parametrize("max_rows", [500, 5_000])
def test_adaptive_layout_respects_max_rows(max_rows: int) -> None:
    ra, dec = _clustered(200_000)
    idx = spatial_index(ra, dec)
    counts = PixelCounts(10)
    for start in range(0, len(idx), 30_000):  # batch by batch
        counts.add(idx[start : start + 30_000])
    assert counts.total == len(idx)
    layout = Layout.adaptive(counts, max_rows_per_chunk=max_rows, min_order=1, max_order=10)
    chunk = layout.chunk_of(idx)
    order, ipix = order_ipix(chunk)
    assert np.array_equal(idx >> (2 * (ORDER - order)), ipix), "chunk = ancestor of the index"
    per_chunk = np.unique(chunk, return_counts=True)[1]
    chunk_orders = dict(zip(layout.uniq.tolist(), layout.orders.tolist(), strict=True))
    full = [c for c, n in zip(*np.unique(chunk, return_counts=True), strict=True) if n > max_rows]
    assert all(chunk_orders[c] == 10 for c in full), "only max_order chunks may exceed the limit"
    assert per_chunk.max() <= max_rows or full
    assert len(set(layout.orders.tolist())) > 1, "dense regions get smaller chunks"
    lo, hi = index_range(layout.uniq)
    assert np.array_equal(lo, layout.lo) and np.array_equal(hi, layout.hi)


@pytest.mark.parametrize("order", [8, 12])  # dense and sparse counting
def test_pixel_counts_batch_by_batch(order: int) -> None:
    ra, dec = _clustered(50_000)
    idx = spatial_index(ra, dec)
    counts = PixelCounts(order)
    for start in range(0, len(idx), 7_000):
        counts.add(idx[start : start + 7_000])
    want_pix, want_cnt = np.unique(idx >> (2 * (ORDER - order)), return_counts=True)
    assert np.array_equal(counts.pixels, want_pix) and np.array_equal(counts.counts, want_cnt)
    assert counts.total == len(idx)


def test_layout_tiles_the_sky() -> None:
    assert len(Layout.fixed(0)) == 12 and len(Layout.fixed(3)) == 768
    with pytest.raises(ValueError, match="do not tile the sky"):
        Layout.from_chunks([4, 5])
    with pytest.raises(ValueError, match="do not tile the sky"):
        Layout.from_chunks(np.concatenate([Layout.fixed(1).uniq, [nuniq(2, 0)]]))
    with pytest.raises(ValueError, match=r"outside 0\.\.29"):
        Layout.fixed(30)


def test_chunks_overlapping() -> None:
    layout = Layout.fixed(2)
    lo, hi = index_range(np.array([nuniq(1, 0), nuniq(3, 5)]))
    which, chunks = layout.chunks_overlapping(lo, hi)
    assert sorted(chunks[which == 0].tolist()) == [nuniq(2, k) for k in range(4)]
    assert chunks[which == 1].tolist() == [nuniq(2, 1)]


def _brute_force_pairs(ra: np.ndarray, dec: np.ndarray, radius: float) -> np.ndarray:
    """All pairs (i, j), i != j, closer than radius (via a grid on unit vectors)."""
    from scipy.spatial import cKDTree

    vec = unit_vectors(ra, dec)
    chord = 2 * np.sin(np.radians(radius) / 2)
    pairs = cKDTree(vec).query_pairs(chord * (1 + 1e-9), output_type="ndarray")
    keep = (
        angular_separation(ra[pairs[:, 0]], dec[pairs[:, 0]], ra[pairs[:, 1]], dec[pairs[:, 1]])
        <= radius
    )
    return pairs[keep]


@pytest.mark.parametrize(
    ("layout", "radius"),
    [
        (Layout.fixed(3), 1 / 60),
        (Layout.fixed(5), 0.05),
        (None, 1 / 60),  # adaptive, mixed orders
        (Layout.fixed(2), 1.0),
    ],
)
def test_overlap_complete(layout: Layout | None, radius: float) -> None:
    """Every pair closer than the radius but in different chunks is visible to both chunks."""
    n = 60_000
    ra, dec = _clustered(n)
    # crowd the poles, RA 0/360 and a base-pixel corner, where edges are tricky
    k = 3_000
    ra[:k] = RNG.uniform(0, 360, k)
    dec[:k] = 90 - RNG.uniform(0, 0.5, k)
    ra[k : 2 * k] = RNG.uniform(-0.3, 0.3, k) % 360
    ra[2 * k : 3 * k] = RNG.normal(45, 0.2, k) % 360
    dec[2 * k : 3 * k] = np.clip(RNG.normal(41.81, 0.2, k), -90, 90)
    idx = spatial_index(ra, dec)
    if layout is None:
        counts = PixelCounts(10)
        counts.add(idx)
        layout = Layout.adaptive(counts, max_rows_per_chunk=400, min_order=2, max_order=10)
        assert len(set(layout.orders.tolist())) > 2
    chunk = layout.chunk_of(idx)
    rows, targets = overlap_targets(layout, ra, dec, idx, chunk, radius)
    assert not np.any(targets == chunk[rows]), "never a row's own chunk"
    span = int(max(chunk.max(), targets.max(initial=0))) + 1

    def key(row: np.ndarray, target: np.ndarray) -> np.ndarray:  # (row, chunk) as one int
        return row.astype(np.int64) * span + target.astype(np.int64)

    visible = np.unique(key(rows, targets))
    pairs = _brute_force_pairs(ra, dec, radius)
    crossing = pairs[chunk[pairs[:, 0]] != chunk[pairs[:, 1]]]
    assert len(crossing) > 50, "the test must exercise chunk edges"
    i, j = crossing[:, 0], crossing[:, 1]
    seen = np.isin(key(i, chunk[j]), visible) & np.isin(key(j, chunk[i]), visible)
    missing = crossing[~seen].tolist()
    assert not missing, f"{len(missing)} pairs not visible, e.g. {missing[:3]}"
    # the superset stays close to the exact need: rows within r + R of another chunk
    exact_rows = len(set(crossing.ravel().tolist()))
    assert len(set(rows.tolist())) < 6 * exact_rows + 200


def test_neighbourhood_order() -> None:
    assert neighbourhood_order(1 / 60) == 11
    assert neighbourhood_order(1.0) == 5
    assert neighbourhood_order(100.0) == 0
    assert neighbourhood_order(0.0) == ORDER
