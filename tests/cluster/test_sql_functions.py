"""The SQL functions of sql/spatial.sql, on a real worker, against numpy references."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec

RNG = np.random.default_rng(20261123)


@pytest.fixture(scope="module")
def db(spec: ClusterSpec) -> Iterator[psycopg.Connection]:
    with connect(spec.workers[0], autocommit=True) as conn:
        yield conn


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _sep(ra1, dec1, ra2, dec2):  # type: ignore[no-untyped-def]
    """Angular separation by atan2 of cross and dot products (accurate at all angles)."""
    a, b = _unit(ra1, dec1), _unit(ra2, dec2)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(-1)))


def _random_points(n: int) -> tuple[np.ndarray, np.ndarray]:
    ra = RNG.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(RNG.uniform(-1, 1, n)))
    return ra, dec


def _column(db: psycopg.Connection, expr: str, *arrays: np.ndarray) -> list:
    """Evaluate ``expr`` over rows of arrays a1, a2, ... (double precision)."""
    cols = ", ".join(f"a{i}" for i in range(1, len(arrays) + 1))
    unnest = ", ".join("%s::float8[]" for _ in arrays)
    rows = db.execute(
        f"SELECT {expr} FROM unnest({unnest}) WITH ORDINALITY AS t({cols}, n) ORDER BY n",
        [a.tolist() for a in arrays],
    )
    return [r[0] for r in rows]


def test_ang_sep(db: psycopg.Connection) -> None:
    ra1, dec1 = _random_points(2000)
    # near pairs (down to milliarcseconds) and far ones
    offset = 10 ** RNG.uniform(-7, 2, 2000)
    ra2 = (ra1 + offset * RNG.choice([-1, 1], 2000)) % 360
    dec2 = np.clip(dec1 + offset * RNG.uniform(-1, 1, 2000), -90, 90)
    got = np.array(_column(db, "qserv.ang_sep(a1, a2, a3, a4)", ra1, dec1, ra2, dec2))
    want = _sep(ra1, dec1, ra2, dec2)
    near = want < 1
    np.testing.assert_allclose(got[near], want[near], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(got[~near], want[~near], atol=1e-7)
    assert db.execute("SELECT qserv.ang_sep(359.9, 0, 0.1, 0)").fetchone()[0] == pytest.approx(0.2)
    assert db.execute("SELECT qserv.ang_sep(0, 90, 123, 90)").fetchone()[0] == pytest.approx(0)
    assert db.execute("SELECT qserv.ang_sep(NULL, 0, 0, 0)").fetchone()[0] is None


def test_pt_in_circle(db: psycopg.Connection) -> None:
    ra, dec = _random_points(5000)
    for ra0, dec0, r in (
        (0.0, 0.0, 5.0),
        (359.0, 45.0, 3.0),
        (10.0, 89.0, 2.0),
        (0.0, -90.0, 90.0),
    ):
        got = _column(db, f"qserv.pt_in_circle(a1, a2, {ra0}, {dec0}, {r})", ra, dec)
        want = _sep(ra, dec, np.full_like(ra, ra0), np.full_like(dec, dec0)) <= r
        assert got == want.tolist()


@pytest.mark.parametrize(
    "box", [(10, -5, 20, 5), (350, -10, 10, 10), (0, 80, 360, 90), (-10, -1, 10, 1)]
)
def test_pt_in_box(db: psycopg.Connection, box: tuple[float, ...]) -> None:
    ra_min, dec_min, ra_max, dec_max = box
    ra, dec = _random_points(5000)
    got = _column(db, f"qserv.pt_in_box(a1, a2, {ra_min}, {dec_min}, {ra_max}, {dec_max})", ra, dec)
    lo, hi = ra_min % 360, ra_max % 360
    if ra_max - ra_min >= 360:
        in_ra = np.ones_like(ra, bool)
    elif lo <= hi:
        in_ra = (ra >= lo) & (ra <= hi)
    else:
        in_ra = (ra >= lo) | (ra <= hi)
    want = in_ra & (dec >= dec_min) & (dec <= dec_max)
    assert want.sum() > 0
    assert got == want.tolist()


@pytest.mark.parametrize("centre", [(0.0, 0.0), (359.5, 10.0), (120.0, 88.0), (200.0, -60.0)])
def test_pt_in_cpoly(db: psycopg.Connection, centre: tuple[float, float]) -> None:
    """Regular polygons: inside the inscribed circle is in, outside the circumcircle is out."""
    ra0, dec0 = centre
    n, radius = 7, 5.0
    # vertices at `radius` from the centre, by rotating a point about the centre's axis
    c = _unit(np.array(ra0), np.array(dec0))
    north = np.array([0.0, 0.0, 1.0])
    east = np.cross(north, c)
    east = east / np.linalg.norm(east)
    up = np.cross(c, east)
    verts = []
    for k in range(n):
        theta = 2 * np.pi * k / n
        v = np.cos(np.radians(radius)) * c + np.sin(np.radians(radius)) * (
            np.cos(theta) * east + np.sin(theta) * up
        )
        verts += [
            float(np.degrees(np.arctan2(v[1], v[0])) % 360),
            float(np.degrees(np.arcsin(v[2]))),
        ]
    inradius = np.degrees(np.arctan(np.tan(np.radians(radius)) * np.cos(np.pi / n)))
    ra, dec = _random_points(20000)
    near = _sep(ra, dec, np.full_like(ra, ra0), np.full_like(dec, dec0))
    # also points close to the centre (the random ones rarely are)
    got = np.array(_column(db, f"qserv.pt_in_cpoly(a1, a2, ARRAY{verts}::float8[])", ra, dec))
    assert got[near < inradius * 0.999].all()
    assert not got[near > radius * 1.001].any()
    assert (near < inradius).sum() > 0
    # either orientation
    reversed_verts = [x for i in range(n - 1, -1, -1) for x in verts[2 * i : 2 * i + 2]]
    again = _column(db, f"qserv.pt_in_cpoly(a1, a2, ARRAY{reversed_verts}::float8[])", ra, dec)
    assert again == got.tolist()


def test_pt_in_ellipse(db: psycopg.Connection) -> None:
    def inside(ra: float, dec: float, pa: float) -> bool:
        return db.execute(
            "SELECT qserv.pt_in_ellipse(%s, %s, 10, 20, 36, 18, %s)", (ra, dec, pa)
        ).fetchone()[0]

    a, b = 36 / 3600, 18 / 3600  # semi-axes in degrees; pa = 0: major axis north
    cos_dec = np.cos(np.radians(20))
    assert inside(10, 20 + 0.95 * a, 0) and not inside(10, 20 + 1.05 * a, 0)
    assert inside(10 + 0.95 * b / cos_dec, 20, 0) and not inside(10 + 1.05 * b / cos_dec, 20, 0)
    # rotated by 90: major axis east
    assert inside(10 + 0.95 * a / cos_dec, 20, 90) and not inside(10, 20 + 0.95 * a, 90)
    assert not inside(190, -20, 0)  # the antipode is not inside


def test_photometry(db: psycopg.Connection) -> None:
    row = db.execute(
        "SELECT qserv.nanojansky_to_abmag(3631e9), qserv.nanojansky_to_abmag(1),"
        " qserv.nanojansky_to_abmag(0), qserv.nanojansky_to_abmag(-5),"
        " qserv.abmag_to_nanojansky(qserv.nanojansky_to_abmag(1234.5)),"
        " qserv.nanojansky_to_abmag_sigma(100, 10), qserv.flux_to_abmag(3631e-23),"
        " qserv.nanojansky_to_abmag_sigma(0, 1)"
    ).fetchone()
    assert row[0] == pytest.approx(0, abs=1e-12)
    assert row[1] == pytest.approx(-2.5 * np.log10(1e-9 / 3631))
    assert row[2] is None and row[3] is None
    assert row[4] == pytest.approx(1234.5)
    assert row[5] == pytest.approx(2.5 / np.log(10) * 0.1)
    assert row[6] == pytest.approx(-2.5 * np.log10(3631e-23) - 48.6)
    assert row[7] is None
