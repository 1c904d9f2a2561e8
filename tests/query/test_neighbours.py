"""Near-neighbour joins through the cell grid (qserv_py.query.neighbours) at the edges
where such joins break: pairs across RA 0/360, around both poles (and on them), across
chunk borders (small chunks), and a radius close to the overlap. Each result is
compared with brute force: every pair's separation, in numpy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qserv_py.client import Client, connect
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.query.neighbours import Cells
from tests.conftest import create_dp02_catalog

OVERLAP = 60.0  # arcsec, the catalog's default
SMALL = LoadOptions(max_rows_per_chunk=40, min_order=2, max_order=9)


def _positions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Clusters (a few arcmin across) at the edges, and a scattered background."""
    rng = np.random.default_rng(12)
    spots = [(0.0, 0.0), (0.0, 45.0), (0.0, -71.0), (180.0, 89.99), (0.0, -89.995)]
    ra, dec = [], []
    for ra0, dec0 in spots:  # 40 each: many pairs within an arcmin, across RA 0
        ra.append(ra0 + rng.uniform(-0.02, 0.02, 40) / max(np.cos(np.radians(dec0)), 0.01))
        dec.append(np.clip(dec0 + rng.uniform(-0.02, 0.02, 40), -90, 90))
    ra.append(rng.uniform(0, 360, 8))  # on the poles, and around them at every RA
    dec.append(np.array([90.0, 90.0, -90.0, 89.999, -89.999, 89.9995, 89.998, -89.9999]))
    rest = n - sum(len(a) for a in ra)
    centres = rng.integers(0, 30, rest)  # 30 clusters anywhere: chunk borders run through
    c_ra, c_dec = rng.uniform(0, 360, 30), np.degrees(np.arcsin(rng.uniform(-1, 1, 30)))
    ra.append(c_ra[centres] + rng.normal(0, 0.01, rest))
    dec.append(np.clip(c_dec[centres] + rng.normal(0, 0.01, rest), -90, 90))
    return np.concatenate(ra) % 360, np.concatenate(dec)


def _separation(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Degrees, as qserv.ang_sep (Vincenty's atan2 form)."""
    a1, d1, a2, d2 = (np.radians(x) for x in (ra1, dec1, ra2, dec2))
    da = a2 - a1
    num = np.hypot(
        np.cos(d2) * np.sin(da), np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(da)
    )
    return np.degrees(
        np.arctan2(num, np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(da))
    )


@pytest.fixture(scope="module")
def edges(
    spec: ClusterSpec, release: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Client, pa.Table]]:
    objects = pq.read_table(release / "Object").slice(0, 600)
    ra, dec = _positions(objects.num_rows)
    objects = objects.set_column(
        objects.schema.get_field_index("coord_ra"), "coord_ra", pa.array(ra)
    )
    objects = objects.set_column(
        objects.schema.get_field_index("coord_dec"), "coord_dec", pa.array(dec)
    )
    folder = tmp_path_factory.mktemp("nn-edges")
    pq.write_table(objects, folder / "part.parquet")
    name = create_dp02_catalog(spec, "qx_nn_edges")
    try:
        load(spec, name, "Object", [folder], SMALL)
        yield (
            connect(spec, default_catalog=name),
            objects.select(["objectId", "coord_ra", "coord_dec"]),
        )
    finally:
        drop_catalog(spec, name)


def _brute_force(objects: pa.Table, radius: float, inclusive: bool) -> set[tuple[int, int]]:
    ids = objects["objectId"].to_numpy()
    ra, dec = objects["coord_ra"].to_numpy(), objects["coord_dec"].to_numpy()
    i, j = np.triu_indices(len(ids), 1)
    sep = _separation(ra[i], dec[i], ra[j], dec[j])
    assert not np.any(np.abs(sep - radius) < 1e-11), "a pair on the radius: rounding decides"
    near = sep <= radius if inclusive else sep < radius
    pairs = {(int(ids[a]), int(ids[b])) for a, b in zip(i[near], j[near], strict=True)}
    return pairs | {(b, a) for a, b in pairs}


@pytest.mark.parametrize(
    ("radius_arcsec", "predicate"),
    [
        (
            54.0,
            "DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < {r}",
        ),
        (
            20.0,
            "CONTAINS(POINT(o2.coord_ra, o2.coord_dec), "
            "CIRCLE(o1.coord_ra, o1.coord_dec, {r})) = 1",
        ),
        (
            7.0,
            "DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) <= {r}",
        ),
    ],
)
def test_pairs_match_brute_force(
    edges: tuple[Client, pa.Table], radius_arcsec: float, predicate: str
) -> None:
    client, objects = edges
    radius = radius_arcsec / 3600
    text = (
        "SELECT o1.objectId AS a, o2.objectId AS b FROM Object o1, Object o2 "
        f"WHERE {predicate.format(r=radius)} AND o1.objectId <> o2.objectId"
    )
    assert "qserv_cell" in client.explain(text).worker_sql  # the cell join, not pair by pair
    result = client.query(text)
    got = list(zip(result["a"].to_pylist(), result["b"].to_pylist(), strict=True))
    assert len(got) == len(set(got))  # each pair once
    expected = _brute_force(objects, radius, "<=" in predicate)
    assert set(got) == expected
    assert len(expected) > 500  # the clusters make many pairs at every edge


def test_cells_reach_every_neighbour_at_the_edges() -> None:
    """The grid alone (numpy, as the SQL computes it): every pair within r shares a cell
    of o1's reach, for points at RA 0/360, at the poles and on zone edges."""
    cells = Cells.for_radius(30 / 3600)
    rng = np.random.default_rng(5)
    zone_edges = rng.integers(0, cells.zones, 50) * cells.h - 90
    dec1 = np.concatenate([rng.uniform(-90, 90, 3000), [90, -90, 89.99, -89.999], zone_edges])
    ra1 = np.concatenate([rng.uniform(-1, 1, len(dec1) - 54) % 360, rng.uniform(0, 360, 54)])
    # a neighbour at a random bearing, at 0.3 r to r
    bearing, dist = (
        rng.uniform(0, 2 * np.pi, len(ra1)),
        cells.radius * rng.uniform(0.3, 0.999, len(ra1)),
    )
    d1, b, s = np.radians(dec1), bearing, np.radians(dist)
    d2 = np.arcsin(np.sin(d1) * np.cos(s) + np.cos(d1) * np.sin(s) * np.cos(b))
    ra2 = (
        ra1
        + np.degrees(
            np.arctan2(np.sin(b) * np.sin(s) * np.cos(d1), np.cos(s) - np.sin(d1) * np.sin(d2))
        )
    ) % 360
    dec2 = np.degrees(d2)
    assert np.all(_separation(ra1, dec1, ra2, dec2) < cells.radius)
    for k in range(len(ra1)):
        assert _cell(cells, ra2[k], dec2[k]) in _reach(cells, ra1[k], dec1[k]), (
            ra1[k],
            dec1[k],
            ra2[k],
            dec2[k],
        )


def _zone(cells: Cells, dec: float) -> int:
    return int(min(max(np.floor((dec + 90) / cells.h), 0), cells.zones - 1))


def _buckets(cells: Cells, z: int) -> int:
    top = 90 if z >= cells.zones - 1 else abs((z + 1) * cells.h - 90)
    d = max(abs(z * cells.h - 90), top)
    if d + cells.h >= 90:
        return 1
    return int(max(np.floor((90 - d) * 360 / (8100 * np.sin(np.radians(cells.h)))), 1))


def _bucket(ra: float, n: int) -> int:
    return int(min(np.floor((ra - 360 * np.floor(ra / 360)) * n / 360), n - 1))


def _cell(cells: Cells, ra: float, dec: float) -> tuple[int, int]:
    z = _zone(cells, dec)
    return z, _bucket(ra, _buckets(cells, z))


def _reach(cells: Cells, ra: float, dec: float) -> set[tuple[int, int]]:
    r = cells.reach
    alpha = 180 if abs(dec) + r >= 90 else 8100 * np.sin(np.radians(r)) / (90 - abs(dec))
    out = set()
    for z in range(_zone(cells, dec - r), _zone(cells, dec + r) + 1):
        n = _buckets(cells, z)
        a = min(alpha, 360 / n)
        lo, hi = _bucket(ra - a, n), _bucket(ra + a, n)
        lo, count = (0, n) if n <= 3 else (lo, (hi - lo + n) % n + 1)
        out |= {(z, (lo + j) % n) for j in range(count)}
    return out
