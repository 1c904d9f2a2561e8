"""The SQL functions of regions built from columns (sql/spatial.sql: AREA, CENTROID,
INTERSECTS and CONTAINS of two regions), on a real worker, against references that do
not share their formulas: the planner's own constant regions (qserv_py.sky.regions,
frames.polygon_centroid), distances to densely sampled edges, and planar convex
polygons in the gnomonic projection (where great-circle arcs are straight lines)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.query.frames import polygon_centroid
from qserv_py.sky import regions
from qserv_py.sky.polygon import tangent_basis

RNG = np.random.default_rng(20261207)
CASES = 100


@pytest.fixture(scope="module")
def db(spec: ClusterSpec) -> Iterator[psycopg.Connection]:
    with connect(spec.workers[0], autocommit=True) as conn:
        yield conn


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _lonlat(v: np.ndarray) -> np.ndarray:
    ra = np.degrees(np.arctan2(v[..., 1], v[..., 0])) % 360
    dec = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return np.stack([ra, dec], axis=-1)


def _centre() -> tuple[float, float]:
    """A random centre, often near a pole or RA 0."""
    kind = RNG.integers(4)
    dec = float(np.degrees(np.arcsin(RNG.uniform(-1, 1))))
    ra = float(RNG.uniform(0, 360))
    if kind == 0:
        dec = float(RNG.choice([-1, 1]) * RNG.uniform(80, 90))
    elif kind == 1:
        ra = float(RNG.uniform(-3, 3) % 360)
    return ra, dec


def _offset(ra: float, dec: float, dist: float, bearing: np.ndarray) -> np.ndarray:
    """Points ``dist`` degrees from (ra, dec) at ``bearing`` (degrees east of north)."""
    c, e, n = tangent_basis(ra, dec)
    d, b = np.radians(dist), np.radians(bearing)[:, None]
    return np.cos(d) * c + np.sin(d) * (np.cos(b) * n + np.sin(b) * e)


def _polygon(ra: float, dec: float, radius: float) -> np.ndarray:
    """A random convex polygon inscribed in the circle: (n, 2) vertices, either order."""
    bearings = np.sort(RNG.uniform(0, 360, RNG.integers(3, 8)))
    vertices = _lonlat(_offset(ra, dec, radius, bearings))
    return vertices[::-1] if RNG.integers(2) else vertices


def _valid(vertices: np.ndarray) -> bool:
    try:
        regions.Polygon(tuple(map(tuple, vertices)))
    except Exception:
        return False
    return True


def _arc(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Unit vectors at fractions ``t`` along the great-circle arc from a to b."""
    omega = np.arccos(np.clip(a @ b, -1, 1))
    t = t[:, None]
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def _dist(point: np.ndarray, many: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(many, point), axis=-1), many @ point))


def _edge_extremes(point: np.ndarray, vertices: np.ndarray) -> tuple[float, float]:
    """The least and greatest distance from ``point`` to the polygon's edges: sampled,
    then sampled again finely around each edge's best sample."""
    v = _unit(vertices[:, 0], vertices[:, 1])
    coarse = np.linspace(0, 1, 201)
    least, most = np.inf, -np.inf
    for a, b in zip(v, np.roll(v, -1, axis=0), strict=True):
        d = _dist(point, _arc(a, b, coarse))
        for i, pick in ((int(d.argmin()), min), (int(d.argmax()), max)):
            fine = np.linspace(coarse[max(i - 1, 0)], coarse[min(i + 1, 200)], 401)
            value = pick(_dist(point, _arc(a, b, fine)))
            least, most = (min(least, value), most) if pick is min else (least, max(most, value))
    return float(least), float(most)


def _rows(db: psycopg.Connection, expr: str, *columns: list) -> list:
    """``expr`` over rows of text columns t1, t2, ... (arrays as '{...}', numbers)."""
    names = ", ".join(f"t{i}" for i in range(1, len(columns) + 1))
    unnest = ", ".join("%s::text[]" for _ in columns)
    rows = db.execute(
        f"SELECT {expr} FROM unnest({unnest}) WITH ORDINALITY AS t({names}, k) ORDER BY k",
        [[str(v) for v in c] for c in columns],
    )
    return [r[0] for r in rows]


def _array(vertices: np.ndarray) -> str:
    return "{" + ",".join(repr(float(x)) for x in vertices.ravel()) + "}"


def _polygons(count: int) -> list[tuple[tuple[float, float], float, np.ndarray]]:
    out = []
    while len(out) < count:
        (ra, dec), radius = _centre(), float(RNG.uniform(0.2, 20))
        vertices = _polygon(ra, dec, radius)
        if _valid(vertices):
            out.append(((ra, dec), radius, vertices))
    return out


def test_area_and_centroid_equal_the_constant_regions(db: psycopg.Connection) -> None:
    polys = [p for _, _, p in _polygons(CASES)]
    got = _rows(db, "qserv.poly_area(t1::float8[])", [_array(p) for p in polys])
    want = [regions.Polygon(tuple(map(tuple, p))).area() for p in polys]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    got_c = _rows(db, "qserv.poly_centroid(t1::float8[])", [_array(p) for p in polys])
    for (ra, dec), p in zip(got_c, polys, strict=True):
        want_ra, want_dec = polygon_centroid([tuple(v) for v in p])
        assert _dist(_unit(np.array(ra), np.array(dec)), _unit(want_ra, want_dec)[None])[
            0
        ] == pytest.approx(0, abs=1e-9)
    assert _rows(db, "qserv.poly_area(t1::float8[])", ["{1,2,NULL,4,5,6}"]) == [None]


def test_box_polygon_equals_the_constant_box(db: psycopg.Connection) -> None:
    boxes = [(*_centre(), *RNG.uniform(0.1, 60, 2)) for _ in range(CASES)]
    columns = [[b[i] for b in boxes] for i in range(4)]
    got = _rows(db, "qserv.box_poly(t1::float8, t2::float8, t3::float8, t4::float8)", *columns)
    areas = _rows(
        db,
        "qserv.poly_area(qserv.box_poly(t1::float8, t2::float8, t3::float8, t4::float8))",
        *columns,
    )
    for box, corners, area in zip(boxes, got, areas, strict=True):
        want = regions.Box(*box)
        assert area == pytest.approx(want.area(), rel=1e-9)
        a = _unit(np.array(corners[::2]), np.array(corners[1::2]))
        b = _unit(*np.array(want.polygon.vertices).T)
        # the same corners (the constant polygon may start elsewhere or run the other way)
        assert np.abs(a @ b.T).max(axis=1).min() == pytest.approx(1, abs=1e-12)
    assert _rows(db, "qserv.box_poly(10, 20, t1::float8, 1)", ["180"]) == [None]


def test_distance_to_polygon_and_circle_relations(db: psycopg.Connection) -> None:
    cases = []
    for (ra, dec), radius, p in _polygons(CASES):
        bearing = RNG.uniform(0, 360, 1)
        far = float(RNG.uniform(0, 2.5 * radius))
        point = _lonlat(_offset(ra, dec, far, bearing))[0]
        boundary, farthest = _edge_extremes(_unit(point[0], point[1]), p)
        inside = bool(regions.Polygon(tuple(map(tuple, p))).contains([point[0]], [point[1]])[0])
        r = float(RNG.uniform(0.05, 1.5) * radius)
        cases.append((point, p, r, 0.0 if inside else boundary, inside, boundary, farthest))
    cols = [
        [c[0][0] for c in cases],
        [c[0][1] for c in cases],
        [_array(c[1]) for c in cases],
        [c[2] for c in cases],
    ]
    a = "t1::float8, t2::float8"
    dist = _rows(db, f"qserv.poly_dist({a}, t3::float8[])", *cols)
    # the sampled reference is above the exact distance by at most ~1e-6 degrees
    want = np.array([c[3] for c in cases])
    np.testing.assert_allclose(dist, want, rtol=1e-9, atol=2e-6)
    assert (np.array(dist) <= want + 1e-9).all()
    meets = _rows(db, f"qserv.circle_meets_poly({a}, t4::float8, t3::float8[])", *cols)
    within = _rows(db, f"qserv.circle_in_poly({a}, t4::float8, t3::float8[])", *cols)
    holds = _rows(db, f"qserv.poly_in_circle(t3::float8[], {a}, t4::float8)", *cols)
    checked = 0
    for c, m, w, h in zip(cases, meets, within, holds, strict=True):
        _, _, r, d, inside, boundary, farthest = c
        if min(abs(d - r), abs(boundary - r), abs(farthest - r)) < 1e-5:
            continue  # too near the edge for the sampled reference
        checked += 1
        assert m == (d <= r)
        assert w == (inside and boundary >= r)
        assert h == (farthest <= r)
    assert checked > CASES * 0.9 and any(within) and any(holds) and not all(meets)


def _gnomonic(vertices: np.ndarray, ra: float, dec: float) -> np.ndarray:
    c, e, n = tangent_basis(ra, dec)
    v = _unit(vertices[:, 0], vertices[:, 1])
    return np.stack([(v @ e) / (v @ c), (v @ n) / (v @ c)], axis=1)


def _separated(a: np.ndarray, b: np.ndarray) -> bool:
    """Two convex plane polygons are apart iff an edge normal separates them."""
    for poly in (a, b):
        for p, q in zip(poly, np.roll(poly, -1, axis=0), strict=True):
            axis = np.array([q[1] - p[1], p[0] - q[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return True
    return False


def test_polygon_pairs(db: psycopg.Connection) -> None:
    pairs = []
    while len(pairs) < CASES:
        (ra, dec), r1 = _centre(), float(RNG.uniform(0.5, 15))
        r2 = float(RNG.uniform(0.5, 15))
        apart = float(RNG.uniform(0, 1.3 * (r1 + r2)))
        ra2, dec2 = _lonlat(_offset(ra, dec, apart, RNG.uniform(0, 360, 1)))[0]
        p, q = _polygon(ra, dec, r1), _polygon(float(ra2), float(dec2), r2)
        if _valid(p) and _valid(q):
            pairs.append((p, q, _gnomonic(p, ra, dec), _gnomonic(q, ra, dec)))
    cols = [[_array(p) for p, *_ in pairs], [_array(q) for _, q, *_ in pairs]]
    meets = _rows(db, "qserv.polys_intersect(t1::float8[], t2::float8[])", *cols)
    within = _rows(db, "qserv.poly_in_poly(t1::float8[], t2::float8[])", *cols)
    for (_, _, gp, gq), m, w in zip(pairs, meets, within, strict=True):
        assert m == (not _separated(gp, gq))
        # in the plane: every vertex of p on the inner side of every edge of q
        cross = [
            (b - a)[0] * (gp - a)[:, 1] - (b - a)[1] * (gp - a)[:, 0]
            for a, b in zip(gq, np.roll(gq, -1, axis=0), strict=True)
        ]
        signs = np.sign(np.array(cross))
        assert w == bool((signs >= 0).all() or (signs <= 0).all())
    assert any(meets) and not all(meets) and any(within)
    nulls = _rows(db, "qserv.polys_intersect(t1::float8[], '{0,0,1,0,0,1}')", ["{0,0,NULL,0,0,1}"])
    assert nulls == [None]


def _sql_convex(db: psycopg.Connection, flat: list[float | None]) -> bool:
    """Whether qserv.convex_poly passes the vertex list (it returns it unchanged)."""
    try:
        got = db.execute("SELECT qserv.convex_poly(%s::float8[])", (flat,)).fetchone()
    except psycopg.errors.InvalidParameterValue as exc:
        assert "is not a convex polygon" in str(exc) and exc.diag.message_hint
        return False
    assert got == (flat,)
    return True


def test_polygons_of_columns_are_checked_as_constant_ones(db: psycopg.Connection) -> None:
    """qserv.convex_poly, the check of a POLYGON of columns, passes exactly the vertex
    lists the planner takes for a constant POLYGON (qserv_py.sky.polygon)."""
    lists: list[np.ndarray] = []
    for _ in range(CASES):
        ra, dec = _centre()
        convex = _polygon(ra, dec, float(RNG.uniform(0.01, 60)))
        lists.append(convex)
        lists.append(convex[RNG.permutation(len(convex))])  # often crossing edges
        lists.append(np.concatenate([convex, convex[:1]]))  # closed by a repeat
        lists.append(np.concatenate([convex, convex]))  # around twice
    ra, dec = _centre()
    star = _lonlat(_offset(ra, dec, 5.0, np.arange(0, 720, 144.0)))  # a pentagram
    big = _lonlat(_offset(ra, dec, 95.0, np.arange(0, 360, 90.0)))  # beyond a hemisphere
    lists += [star, big, np.array([[10.0, 0.0], [20.0, 0.0], [190.0, 0.0]])]
    passed = 0
    for vertices in lists:
        want = _valid(vertices)
        assert _sql_convex(db, [float(c) for c in vertices.ravel()]) == want, vertices.tolist()
        passed += want
    assert 0 < passed < len(lists)
    assert _sql_convex(db, [1.0, 2.0, None, 4.0, 5.0, 6.0])  # a NULL: the functions give NULL
    for bad in ([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 1.0, 0.0], [0.0, 95.0, 1.0, 0.0, 1.0, 1.0]):
        assert not _sql_convex(db, bad)
