"""Sky regions against brute force, independent references, and a real PostgreSQL.

The coarse answer (index ranges, chunks) must hold every point the exact test accepts:
checked on uniform points, points concentrated on the region, and points bisected onto
its edge to the last bit. The exact test must agree with astropy-based references and,
point by point, with its SQL on a worker.
"""

from __future__ import annotations

import doctest
import math
import re
from collections.abc import Callable, Iterator

import astropy.units as u
import numpy as np
import psycopg
import pytest
from astropy.coordinates import SkyCoord

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QservError, RegionError
from qserv_py.sky import polygon as polygon_module
from qserv_py.sky import regions as regions_module
from qserv_py.sky.healpix import nuniq, spatial_index, unit_vectors
from qserv_py.sky.layout import Layout
from qserv_py.sky.regions import (
    FULL_SKY,
    SKY_DEG2,
    Box,
    Cone,
    Ellipse,
    LonLatBox,
    Polygon,
    RangeSet,
    Region,
    coarsen,
    normalize,
)

RNG = np.random.default_rng(20260317)
ARCSEC = 1 / 3600

# (region, centre and radius of a cap holding it, where test points are concentrated)
CASES: dict[str, tuple[Region, tuple[float, float, float]]] = {
    "cone-0.1arcsec-ra0": (Cone(0.00001, 0.0, 0.1 * ARCSEC), (0.0, 0.0, 0.2 * ARCSEC)),
    "cone-1arcmin-pole": (Cone(0.0, 89.99, 1 / 60), (0.0, 89.99, 0.02)),
    "cone-1deg-ra0": (Cone(359.5, 30.0, 1.0), (359.5, 30.0, 1.2)),
    "cone-5deg-north-pole": (Cone(123.0, 88.0, 5.0), (123.0, 88.0, 5.5)),
    "cone-south-pole": (Cone(0.0, -90.0, 2.0), (0.0, -90.0, 2.5)),
    "cone-90deg": (Cone(10.0, 20.0, 90.0), (10.0, 20.0, 100.0)),
    "cone-120deg": (Cone(200.0, -40.0, 120.0), (200.0, -40.0, 130.0)),
    "cone-180deg": (Cone(0.0, 0.0, 180.0), (0.0, 0.0, 180.0)),
    "lonlat-ra0": (LonLatBox(350, -5, 10, 5), (0.0, 0.0, 12.0)),
    "lonlat-plain": (LonLatBox(10, -5, 20, 5), (15.0, 0.0, 9.0)),
    "lonlat-north-cap": (LonLatBox(0, 80, 360, 90), (0.0, 90.0, 11.0)),
    "lonlat-south-pole-wedge": (LonLatBox(-10, -90, 10, -80), (0.0, -90.0, 11.0)),
    "lonlat-band": (LonLatBox(0, -1, 360, 1), (0.0, 0.0, 180.0)),
    "lonlat-wide-wrap": (LonLatBox(30, 20, 10, 25), (200.0, 22.5, 180.0)),
    "lonlat-tiny": (LonLatBox(100, 10, 100.001, 10.001), (100.0005, 10.0005, 0.002)),
    "box-equator": (Box(0, 0, 10, 10), (0.0, 0.0, 8.0)),
    "box-ra0": (Box(359.5, 10, 2, 1), (359.5, 10.0, 1.5)),
    "box-holding-pole": (Box(0, 89, 4, 4), (0.0, 89.0, 3.0)),
    "box-on-south-pole": (Box(180, -90, 10, 20), (180.0, -90.0, 12.0)),
    "box-large": (Box(10, 10, 170, 170), (10.0, 10.0, 125.0)),
    "box-1arcsec": (Box(0.0, 0.0, ARCSEC, ARCSEC), (0.0, 0.0, ARCSEC)),
    "polygon-north-pole": (
        Polygon(((0, 80), (90, 80), (180, 80), (270, 80))),
        (0.0, 90.0, 12.0),
    ),
    "polygon-north-pole-clockwise": (
        Polygon(((270, 80), (180, 80), (90, 80), (0, 80))),
        (0.0, 90.0, 12.0),
    ),
    "polygon-south-pole-big": (
        Polygon(((0, -1), (120, -1), (240, -1))),
        (0.0, -90.0, 92.0),
    ),
    "polygon-ra0": (Polygon(((350, -5), (10, -5), (15, 5), (355, 8))), (0.0, 0.0, 14.0)),
    "polygon-tiny": (
        Polygon(((10.0, 10.0), (10.0001, 10.0), (10.00005, 10.0001))),
        (10.00005, 10.00005, 0.0002),
    ),
    "ellipse": (Ellipse(10, 20, 3600, 1800, 30), (10.0, 20.0, 1.2)),
    "ellipse-pole": (Ellipse(0, 89.9, 1800, 600, 45), (0.0, 89.9, 0.6)),
    "ellipse-ra0": (Ellipse(359.99, -30, 36, 12, 170), (359.99, -30.0, 0.015)),
    "ellipse-large": (Ellipse(50, 50, 300000, 100000, 45), (50.0, 50.0, 75.0)),
    "ellipse-0.1arcsec": (Ellipse(0.0, 0.0, 0.1, 0.05, 0), (0.0, 0.0, 0.2 * ARCSEC)),
    "ranges": (
        RangeSet(
            np.array([3 << 56, 12345678901234567, 100 << 50]),
            np.array([(3 << 56) + (1 << 50), 12345678901234999, 101 << 50]),
        ),
        (0.0, 0.0, 180.0),
    ),
    "ranges-moc": (RangeSet.from_nuniq([4 * 4**3 + 5, 4 * 4**6 + 40000]), (0.0, 0.0, 180.0)),
}
# mid-sized, compact regions: their ranges must not be much larger than they are
COMPACT = [
    "cone-1deg-ra0",
    "cone-5deg-north-pole",
    "lonlat-ra0",
    "lonlat-plain",
    "lonlat-north-cap",
    "box-equator",
    "box-holding-pole",
    "polygon-north-pole",
    "polygon-ra0",
    "ellipse",
    "cone-0.1arcsec-ra0",
    "ellipse-0.1arcsec",
]


def _lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360
    dec = np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))
    return ra, dec


def _uniform(n: int) -> np.ndarray:
    v = RNG.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _in_cap(ra: float, dec: float, radius: float, n: int) -> np.ndarray:
    """Unit vectors uniform in the cap of ``radius`` degrees around (ra, dec)."""
    c = unit_vectors(ra, dec)
    z = RNG.uniform(math.cos(math.radians(radius)), 1, n)
    phi = RNG.uniform(0, 2 * np.pi, n)
    a = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0.0, 0.0], c)
    a /= np.linalg.norm(a)
    b = np.cross(c, a)
    s = np.sqrt(1 - z * z)[:, None]
    return z[:, None] * c + s * (np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * b)


def _on_edge(region: Region, v: np.ndarray, steps: int, n: int = 10000) -> np.ndarray:
    """Pairs of points bisected towards the region's edge: inside ones, then outside ones."""
    inside = region.contains(*_lonlat(v))
    p, q = v[inside][:n].copy(), v[~inside][:n].copy()
    m = min(len(p), len(q))
    p, q = p[:m], q[:m]
    for _ in range(steps):
        mid = p + q
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        ok = region.contains(*_lonlat(mid))
        p[ok], q[~ok] = mid[ok], mid[~ok]
    return np.concatenate([p, q])


UNIFORM = _uniform(200_000)
UNIFORM_LONLAT = _lonlat(UNIFORM)
UNIFORM_INDEX = spatial_index(*UNIFORM_LONLAT)


def _test_points(name: str, edge_steps: int = 60) -> tuple[np.ndarray, np.ndarray]:
    region, (ra, dec, radius) = CASES[name]
    near = _in_cap(ra, dec, radius, 50_000)
    extra = [
        unit_vectors(ra, dec)[None, :],
        unit_vectors([0, 0, 0, 90, 180, 270], [90, -90, 0, 0, 0, 0]),
    ]
    v = np.concatenate(
        [near, _on_edge(region, np.concatenate([near, UNIFORM]), edge_steps), *extra]
    )
    return _lonlat(v)


def _inside_ranges(index: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(lo, index, side="right") - 1
    return (pos >= 0) & (index < hi[np.maximum(pos, 0)])


@pytest.fixture(scope="module", params=["fixed3", "mixed2-4"])
def layout(request: pytest.FixtureRequest) -> Layout:
    if request.param == "fixed3":
        return Layout.fixed(3)
    # order 2, with every third pixel (and those at the poles and RA 0) split to order 4
    chunks = []
    for ipix in range(12 * 4**2):
        if ipix % 3 == 0 or ipix in (0, 15, 176, 191):
            chunks += nuniq(4, np.arange(16 * ipix, 16 * ipix + 16)).tolist()
        else:
            chunks.append(int(nuniq(2, ipix)))
    return Layout.from_chunks(chunks)


# --- the coarse answer holds every match --------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_ranges_and_chunks_hold_every_match(name: str, layout: Layout) -> None:
    region = CASES[name][0]
    ra, dec = _test_points(name)
    ra, dec = np.concatenate([ra, UNIFORM_LONLAT[0]]), np.concatenate([dec, UNIFORM_LONLAT[1]])
    inside = region.contains(ra, dec)
    assert inside.sum() > 100
    index = spatial_index(ra[inside], dec[inside])
    for max_ranges in (64, 5, 1):
        lo, hi = region.index_ranges(max_ranges)
        assert 1 <= len(lo) <= max_ranges
        assert lo.dtype == hi.dtype == np.int64
        assert np.all(lo < hi) and np.all(lo[1:] > hi[:-1])  # sorted, disjoint, merged
        assert lo[0] >= 0 and hi[-1] <= FULL_SKY
        assert _inside_ranges(index, lo, hi).all()
        chunks = region.chunks(layout, max_ranges)
        assert np.all(np.diff(chunks) > 0)
        assert np.isin(layout.chunk_of(index), chunks).all()


@pytest.mark.parametrize("name", COMPACT)
def test_ranges_are_not_loose(name: str) -> None:
    region = CASES[name][0]
    lo, hi = region.index_ranges()
    covered = SKY_DEG2 * float((hi - lo).sum()) / FULL_SKY
    assert region.area() <= covered < 4 * region.area() + 1e-6


def test_whole_sky_and_wide_cones() -> None:
    """cdshealpix's cone search loses cells past ~150 deg: wider cones get the whole sky."""
    for region in (Cone(10, 20, 179.0), Cone(0, 0, 180), LonLatBox(0, -90, 360, 90)):
        lo, hi = region.index_ranges()
        assert (lo.tolist(), hi.tolist()) == ([0], [FULL_SKY])
    assert len(Cone(10, 20, 179).chunks(Layout.fixed(1))) == 48


def test_region_areas() -> None:
    assert Cone(0, 0, 180).area() == pytest.approx(SKY_DEG2)
    assert Cone(0, 0, 90).area() == pytest.approx(SKY_DEG2 / 2)
    assert LonLatBox(0, 0, 360, 90).area() == pytest.approx(SKY_DEG2 / 2)
    assert LonLatBox(350, -90, 10, 90).area() == pytest.approx(SKY_DEG2 * 20 / 360)
    # an octant: three right angles
    assert Polygon(((0, 0), (90, 0), (0, 90))).area() == pytest.approx(SKY_DEG2 / 8)
    # small: flat geometry
    assert Box(30, 0, 0.1, 0.2).area() == pytest.approx(0.02, rel=1e-5)
    assert Ellipse(0, 40, 36, 18, 0).area() == pytest.approx(math.pi * 0.01 * 0.005, rel=1e-5)
    assert RangeSet.from_nuniq([4]).area() == pytest.approx(SKY_DEG2 / 12)


def test_normalize_and_coarsen() -> None:
    lo = RNG.integers(0, 10**6, 500)
    hi = lo + RNG.integers(0, 2000, 500)
    nlo, nhi = normalize(lo, hi)
    assert np.all(nlo[1:] > nhi[:-1])
    points = RNG.integers(0, 10**6 + 2000, 20_000)
    in_any = ((points[:, None] >= lo) & (points[:, None] < hi)).any(axis=1)
    assert np.array_equal(_inside_ranges(points, nlo, nhi), in_any)
    for k in (1, 7, 50):
        clo, chi = coarsen(nlo, nhi, k)
        assert len(clo) == k
        assert _inside_ranges(points[in_any], clo, chi).all()
        # closing the k-1 largest gaps is the least that k ranges can add
        gaps = np.sort(nlo[1:] - nhi[:-1])
        assert (chi - clo).sum() == (nhi - nlo).sum() + gaps[: len(gaps) - (k - 1)].sum()


# --- the exact test against independent references ----------------------------------------


@pytest.mark.parametrize(
    "cone",
    [Cone(0.00001, 0, 0.1 * ARCSEC), Cone(359.5, 30, 1), Cone(123, 88, 5), Cone(10, 20, 90)],
)
def test_cone_against_astropy(cone: Cone) -> None:
    v = np.concatenate([_in_cap(cone.ra, cone.dec, cone.radius * 1.5, 20_000), UNIFORM[:20_000]])
    ra, dec = _lonlat(v)
    sep = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(cone.ra * u.deg, cone.dec * u.deg))
    want = sep.deg <= cone.radius
    clear = np.abs(sep.deg - cone.radius) > 1e-9 * max(cone.radius, 1e-3)
    assert np.array_equal(cone.contains(ra, dec)[clear], want[clear])
    assert want.sum() > 1000


@pytest.mark.parametrize(
    "box",
    [
        LonLatBox(350, -5, 10, 5),
        LonLatBox(10, -5, 20, 5),
        LonLatBox(30, 20, 10, 25),
        LonLatBox(-10, -90, 10, -80),
        LonLatBox(0, 80, 360, 90),
        LonLatBox(-400, 0, -390, 10),
        LonLatBox(10, 0, 370, 10),
    ],
)
def test_lonlat_box_by_hand(box: LonLatBox) -> None:
    ra, dec = UNIFORM_LONLAT
    ra = ra + 360 * RNG.integers(-2, 3, len(ra))  # any turn of RA
    east_of_min = (ra - box.ra_min) % 360  # degrees east of ra_min
    span = 360 if box.ra_max - box.ra_min >= 360 else (box.ra_max - box.ra_min) % 360
    want = (dec >= box.dec_min) & (dec <= box.dec_max) & (east_of_min <= span)
    assert want.sum() > 50
    assert np.array_equal(box.contains(ra, dec), want)
    # the edges are in
    assert box.contains([box.ra_min, box.ra_max], [box.dec_min, box.dec_max]).all()


def _offset(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, ...]:
    """(lon, lat) in radians in astropy's offset frame at (ra0, dec0): lat north, lon east."""
    frame = SkyCoord(ra0 * u.deg, dec0 * u.deg).skyoffset_frame()
    off = SkyCoord(ra * u.deg, dec * u.deg).transform_to(frame)
    return off.lon.rad, off.lat.rad


@pytest.mark.parametrize(
    "args", [(0, 0, 10, 10), (359.5, 10, 2, 1), (40, 60, 30, 8), (200, -75, 5, 20)]
)
def test_adql_box_against_its_definition(args: tuple[float, float, float, float]) -> None:
    """ADQL BOX: arms along great circles from the centre, sides at right angles to them.

    In the offset frame at the centre the east and west sides are the meridians
    lon = ±w/2, and the north side is the great circle through (0, h/2) perpendicular to
    lon = 0, i.e. tan(lat) = tan(h/2) cos(lon).
    """
    ra0, dec0, w, h = args
    box = Box(*args)
    ra, dec = _lonlat(np.concatenate([_in_cap(ra0, dec0, max(w, h), 30_000), UNIFORM[:10_000]]))
    lon, lat = _offset(ra, dec, ra0, dec0)
    half_w, half_h = math.radians(w / 2), math.radians(h / 2)
    east_west = half_w - np.abs(lon)
    north_south = math.tan(half_h) * np.cos(lon) - np.abs(np.tan(lat))
    want = (east_west >= 0) & (north_south >= 0) & (np.abs(lon) < np.pi / 2)
    clear = (np.abs(east_west) > 1e-9) & (np.abs(north_south) > 1e-9)
    assert want.sum() > 1000
    assert np.array_equal(box.contains(ra, dec)[clear], want[clear])


def test_adql_box_is_not_a_coordinate_box() -> None:
    """At dec 60 the east arm of a 10-degree box reaches RA ~10, not 5 (DaCHS's corners)."""
    box = Box(0, 60, 10, 10)
    assert box.contains([8.0, 0.0, 0.0], [60.0, 64.99, 55.01]).tolist() == [True, True, True]
    assert box.contains([0.0, 0.0, 12.0], [65.01, 54.99, 60.0]).tolist() == [False] * 3
    # a box holding the pole, and one centred on it (north is towards RA + 180 there)
    polar = Box(0, 89, 4, 4)
    assert polar.contains([0, 77, 180], [90, 89.9, 88.9]).tolist() == [True, True, False]
    centred = Box(0, 90, 4, 2)  # width along RA 90/270, height along RA 180/0
    assert centred.contains([90, 270, 0, 180], [88.1, 88.1, 89.1, 89.1]).tolist() == [True] * 4
    assert centred.contains([0, 180, 90], [88.9, 88.9, 87.9]).tolist() == [False] * 3


@pytest.mark.parametrize(
    "args",
    [(10, 20, 3600, 1800, 30), (359.99, -30, 36, 12, 170), (50, 50, 300000, 100000, 45)],
)
def test_ellipse_against_gnomonic_offsets(args: tuple[float, ...]) -> None:
    ra0, dec0, a, b, pa = args
    ellipse = Ellipse(*args)
    size = math.degrees(math.atan(math.radians(a / 3600))) * 1.3
    ra, dec = _lonlat(_in_cap(ra0, dec0, size, 30_000))
    lon, lat = _offset(ra, dec, ra0, dec0)
    xi, eta = np.tan(lon), np.tan(lat) / np.cos(lon)  # gnomonic, radians
    s, c = math.sin(math.radians(pa)), math.cos(math.radians(pa))
    a_r, b_r = math.radians(a / 3600), math.radians(b / 3600)
    level = ((xi * s + eta * c) / a_r) ** 2 + ((-xi * c + eta * s) / b_r) ** 2
    want = (level <= 1) & (np.abs(lon) < np.pi / 2)
    clear = np.abs(level - 1) > 1e-9
    assert want.sum() > 1000
    assert np.array_equal(ellipse.contains(ra, dec)[clear], want[clear])


@pytest.mark.parametrize("centre", [(0.0, 0.0), (359.9, 40.0), (77.0, 90.0), (0.0, -89.0)])
def test_regular_polygon_between_its_circles(centre: tuple[float, float]) -> None:
    """Vertices at ``radius`` from the centre: in inside the inscribed circle, out outside."""
    ra0, dec0 = centre
    sides, radius = 9, 3.0
    c = unit_vectors(ra0, dec0)
    east = np.cross([0.0, 0.0, 1.0], c) if abs(dec0) < 80 else np.cross([1.0, 0.0, 0.0], c)
    east /= np.linalg.norm(east)
    up = np.cross(c, east)
    theta = 2 * np.pi * np.arange(sides) / sides
    r = math.radians(radius)
    v = math.cos(r) * c + math.sin(r) * (
        np.cos(theta)[:, None] * east + np.sin(theta)[:, None] * up
    )
    corners = tuple(zip(*(x.tolist() for x in _lonlat(v)), strict=True))
    inscribed = math.degrees(math.atan(math.tan(r) * math.cos(math.pi / sides)))
    ra, dec = _lonlat(_in_cap(ra0, dec0, 2 * radius, 20_000))
    sep = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra0 * u.deg, dec0 * u.deg)).deg
    for order in (corners, corners[::-1], corners[3:] + corners[:3]):
        got = Polygon(order).contains(ra, dec)
        assert got[sep < inscribed * (1 - 1e-9)].all()
        assert not got[sep > radius * (1 + 1e-9)].any()
        assert got.sum() > 1000


def test_polygon_vertex_order_and_cleanup() -> None:
    square = ((0, 0), (10, 0), (10, 10), (0, 10))
    ra, dec = UNIFORM_LONLAT
    want = Polygon(square).contains(ra, dec)
    assert want.sum() > 100
    for same in (
        square[::-1],
        (*square, (0, 0)),  # closed
        ((0, 0), (0, 0), (5, 0), (10, 0), (10, 10), (0, 10)),  # repeat, vertex mid-edge
        ((360, 0), (10, 0), (370, 10), (-360, 10)),  # any turn of RA
    ):
        assert np.array_equal(Polygon(same).contains(ra, dec), want)
    assert Box(0, 0, 10, 10) == Box(0, 0, 10, 10)  # frozen, comparable, hashable
    assert len({Polygon(square), Polygon(square), Cone(1, 2, 3)}) == 2


# --- refusals --------------------------------------------------------------------------


ERRORS: list[tuple[Callable[[], object], str]] = [
    (lambda: Cone(0, 0, -1), "a cone radius must be between 0 and 180 degrees, got -1.0"),
    (lambda: Cone(0, 0, 181), "a cone radius must be between 0 and 180 degrees, got 181.0"),
    (lambda: Cone(0, 91, 1), "the cone centre declination 91.0 is outside -90..90 degrees"),
    (lambda: Cone(math.nan, 0, 1), "Cone ra must be a finite number, got nan"),
    (lambda: Cone(0, 0, "x"), "Cone radius must be a finite number, got 'x'"),  # type: ignore[arg-type]
    (
        lambda: LonLatBox(0, 10, 10, 5),
        "a box needs -90 <= dec_min <= dec_max <= 90, got dec_min=10.0, dec_max=5.0",
    ),
    (
        lambda: LonLatBox(0, -91, 10, 5),
        "a box needs -90 <= dec_min <= dec_max <= 90, got dec_min=-91.0, dec_max=5.0",
    ),
    (lambda: LonLatBox(0, 0, math.inf, 5), "LonLatBox ra_max must be a finite number, got inf"),
    (
        lambda: Box(0, 0, 0, 1),
        "an ADQL BOX width must be between 0 and 180 degrees (exclusive), got 0.0; use a "
        "CIRCLE, or a qserv_areaspec_box, for larger areas",
    ),
    (
        lambda: Box(0, 0, 10, 180),
        "an ADQL BOX height must be between 0 and 180 degrees (exclusive), got 180.0; use a "
        "CIRCLE, or a qserv_areaspec_box, for larger areas",
    ),
    (lambda: Box(0, -95, 1, 1), "the box centre declination -95.0 is outside -90..90 degrees"),
    (
        lambda: Polygon(((0, 0), (0, 0), (1, 1))),
        "a polygon needs at least 3 distinct vertices, got 2; give its corners in order "
        "(either direction)",
    ),
    (
        lambda: Polygon(()),
        "a polygon needs at least 3 distinct vertices, got 0; give its corners in order "
        "(either direction)",
    ),
    (
        lambda: Polygon(((0, 0), (10, 0), (20, 0), (30, 0))),
        "all the polygon's vertices lie on one great circle, so it has no area; give at "
        "least 3 corners that are not on one great circle",
    ),
    (
        lambda: Polygon(((0, 0), (10, 0), (5, 0), (5, 5))),
        "the polygon folds back on itself at vertex 2 (10.0, 0.0); give each corner once, "
        "in order, or split it into convex polygons (each smaller than a hemisphere)",
    ),
    (
        lambda: Polygon(((0, 0), (10, 0), (5, 2), (10, 10), (0, 10))),
        "the polygon is not convex: vertex 4 (10.0, 10.0) lies outside the edge from vertex "
        "2 (10.0, 0.0) to vertex 3 (5.0, 2.0), or its edges cross; split it into convex "
        "polygons (each smaller than a hemisphere)",
    ),
    (
        lambda: Polygon(((0, 0), (10, 0), (0, 10), (10, 10))),  # a bow tie
        "the polygon is not convex: vertex 1 (0.0, 0.0) lies outside the edge from vertex "
        "3 (0.0, 10.0) to vertex 4 (10.0, 10.0), or its edges cross; split it into convex "
        "polygons (each smaller than a hemisphere)",
    ),
    (
        lambda: Polygon(((0, 0), (180, 0), (90, 45), (0, 45))),
        "vertex 1 (0.0, 0.0) and vertex 2 (180.0, 0.0) are antipodal, so the edge between "
        "them is undefined; add a vertex between them, or split it into convex polygons "
        "(each smaller than a hemisphere)",
    ),
    (
        lambda: Polygon(((0, 0), (90, 0), (180, 0), (0, 90))),  # a quarter of the sky
        "the polygon spans a hemisphere or more; split it into convex polygons (each "
        "smaller than a hemisphere)",
    ),
    (
        lambda: Polygon(((0, 0), (10, 0), (5, 8), (0, 0), (10, 0), (5, 8))),
        "the polygon winds around its centre more than once; split it into convex polygons "
        "(each smaller than a hemisphere)",
    ),
    (
        lambda: Polygon(((0, 0), (10, 95), (5, 5))),
        "a polygon vertex has a declination outside -90..90 degrees",
    ),
    (lambda: Polygon(((0, 0), (10, math.nan), (5, 5))), "a polygon vertex is not a finite number"),
    (
        lambda: Polygon(((0, 0, 1), (1, 1))),  # type: ignore[arg-type]
        "polygon vertices must be (ra, dec) pairs of numbers, got ((0, 0, 1), (1, 1))",
    ),
    (
        lambda: Ellipse(0, 0, 10, 20, 0),
        "an ellipse needs 0 < semi_minor <= semi_major <= 324000 arcsec (90 degrees), got "
        "semi_major=10.0, semi_minor=20.0; if they are the wrong way round, swap them and "
        "add 90 to the position angle",
    ),
    (
        lambda: Ellipse(0, 0, 10, 0, 0),
        "an ellipse needs 0 < semi_minor <= semi_major <= 324000 arcsec (90 degrees), got "
        "semi_major=10.0, semi_minor=0.0; if they are the wrong way round, swap them and "
        "add 90 to the position angle",
    ),
    (
        lambda: Ellipse(0, 0, 400000, 10, 0),
        "an ellipse needs 0 < semi_minor <= semi_major <= 324000 arcsec (90 degrees), got "
        "semi_major=400000.0, semi_minor=10.0; if they are the wrong way round, swap them "
        "and add 90 to the position angle",
    ),
    (
        lambda: Ellipse(0, 0, 10, 5, math.nan),
        "Ellipse position_angle_deg must be a finite number, got nan",
    ),
    (
        lambda: RangeSet(np.array([5]), np.array([3])),
        f"ranges need 0 <= lo <= hi <= {FULL_SKY} (order-29 indexes)",
    ),
    (
        lambda: RangeSet(np.array([0]), np.array([FULL_SKY + 1])),
        f"ranges need 0 <= lo <= hi <= {FULL_SKY} (order-29 indexes)",
    ),
    (
        lambda: RangeSet(np.array([0, 1]), np.array([3])),
        "range bounds must be two 1-d arrays of one length, got (2,) and (1,)",
    ),
    (
        lambda: RangeSet(np.array([0.5]), np.array([3.0])),
        "range bounds must be integers (order-29 spatial_index values)",
    ),
]


@pytest.mark.parametrize(("make", "message"), ERRORS)
def test_region_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(RegionError, match=f"^{re.escape(message)}$") as info:
        make()
    assert info.value.http_status == 400
    assert isinstance(info.value, QservError)


def test_max_ranges_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_ranges must be at least 1, got 0"):
        Cone(0, 0, 1).index_ranges(0)


def test_doctests() -> None:
    for module in (regions_module, polygon_module):
        assert doctest.testmod(module).failed == 0


# --- SQL on a real worker ------------------------------------------------------------


@pytest.fixture(scope="module")
def db(spec: ClusterSpec) -> Iterator[psycopg.Connection]:
    with connect(spec.workers[0], autocommit=True) as conn:
        yield conn


def _evaluate(
    db: psycopg.Connection, expr: str, ra: np.ndarray, dec: np.ndarray, index: np.ndarray
) -> np.ndarray:
    """``expr`` over the rows (ra, dec, spatial_index) of the arrays, in order."""
    rows = db.execute(
        f"SELECT {expr} FROM unnest(%s::float8[], %s::float8[], %s::int8[])"
        " WITH ORDINALITY AS t(ra, dec, spatial_index, n) ORDER BY n",
        [ra.tolist(), dec.tolist(), index.tolist()],
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=bool)


def _clear_of_edge(region: Region, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Points whose test does not change when moved by 1e-11 degrees."""
    at = region.contains(ra, dec)
    clear = np.ones(len(ra), bool)
    for dra, ddec in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = region.contains(ra + dra * 1e-11, np.clip(dec + ddec * 1e-11, -90, 90))
        clear &= moved == at
    return clear


@pytest.mark.parametrize("name", CASES)
def test_sql_predicate_agrees_with_contains(db: psycopg.Connection, name: str) -> None:
    region = CASES[name][0]
    # edge points bisected to ~1e-6 of the region's size: close, but clear of rounding
    ra, dec = _test_points(name, edge_steps=20)
    ra = np.concatenate([ra[::4], UNIFORM_LONLAT[0][:10_000]])
    dec = np.concatenate([dec[::4], UNIFORM_LONLAT[1][:10_000]])
    index = spatial_index(ra, dec)
    want = region.contains(ra, dec)
    assert 0 < want.sum() < len(want) or isinstance(region, Cone)
    got = _evaluate(db, region.sql_predicate("ra", "dec"), ra, dec, index)
    # rounding may decide points within ~1e-13 deg of the edge either way
    clear = _clear_of_edge(region, ra, dec)
    assert clear.mean() > 0.9
    differ = (got != want) & clear
    assert not differ.any(), f"{differ.sum()} of {len(want)} points differ"
    # the coarse predicate is the ranges, bounds included and excluded exactly
    lo, hi = region.index_ranges(16)
    bounds = np.concatenate([lo, hi, lo - 1, hi - 1])
    bounds = bounds[(bounds >= 0) & (bounds < FULL_SKY)]
    index = np.concatenate([index, bounds])
    zeros = np.zeros(len(index))
    coarse = _evaluate(db, region.index_sql("spatial_index", 16), zeros, zeros, index)
    assert np.array_equal(coarse, _inside_ranges(index, lo, hi))
    assert coarse[: len(want)][want].all()


def test_range_set_sql_uses_the_index_column(db: psycopg.Connection) -> None:
    ranges = CASES["ranges"][0]
    assert isinstance(ranges, RangeSet)
    index = np.concatenate(
        [UNIFORM_INDEX[:20_000], ranges.lo, ranges.hi, ranges.lo - 1, ranges.hi - 1]
    )
    zeros = np.zeros(len(index))
    got = _evaluate(
        db, ranges.sql_predicate("ra", "dec", index_column="t.spatial_index"), zeros, zeros, index
    )
    assert np.array_equal(got, ranges.contains_index(index))
    assert got.sum() >= len(ranges.lo) * 2
    empty = RangeSet(np.array([], np.int64), np.array([], np.int64))
    assert empty.sql_predicate("r", "d") == empty.index_sql() == "FALSE"
    assert len(empty.chunks(Layout.fixed(2))) == 0
    assert not empty.contains_index(index).any()


def test_cone_cells_are_those_of_the_public_cone_search() -> None:
    """The cone search through cdshealpix's core gives the cells its wrapper gives."""
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    from qserv_py.sky.regions import _cone_cells

    rng = np.random.default_rng(3)
    cones = [(0.0, 90.0, 1.0), (359.9, -89.99, 0.5), (-10.0, 0.0, 2.0), (370.0, 45.0, 0.01)]
    cones += [(rng.uniform(0, 360), rng.uniform(-90, 90), rng.uniform(1e-4, 30)) for _ in range(50)]
    for ra, dec, radius in cones:
        # deep orders for small cones only: a 20° cone at order 19 is millions of cells
        depth = int(rng.integers(3, 20 if radius < 1 else 14))
        got = _cone_cells(ra, dec, radius, depth)
        want = nested.cone_search(
            Longitude(ra, unit=u.deg), Latitude(dec, unit=u.deg), radius * u.deg, depth
        )
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
