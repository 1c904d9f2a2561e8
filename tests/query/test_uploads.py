"""Uploads in queries (``TAP_UPLOAD.name``) and cross-matches, against the oracle.

The oracle runs the plan's ``oracle_sql`` (the query as one database would run it) with
each upload in a plain table ``tap_upload.<name>``. Targets are placed where bugs live:
just inside and just outside the radius of objects across chunk edges, across RA 0/360,
at the poles, and without a position.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial import cKDTree

from qserv_py.cli import main
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import (
    QueryError,
    QueryRefused,
    QuerySqlError,
    UnknownName,
    UploadError,
)
from qserv_py.exec import uploads as shipping
from qserv_py.exec.plan import worker_sql
from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch
from qserv_py.query.planner import plan as plan_query
from qserv_py.query.uploads import CHUNK, UploadPlan, upload_table
from qserv_py.query.xmatch import (
    _partition_blocks,
    density,
    partition_targets,
    widened_orders,
)
from qserv_py.sky.healpix import (
    ORDER,
    ancestor,
    angular_separation,
    inside_ancestor,
    neighbourhood_order,
    spatial_index,
)
from qserv_py.sky.layout import Layout, PixelCounts
from tests.query.test_corpus import compare

ARCSEC = 1 / 3600


# --- partitioning targets, against brute force ------------------------------------------------


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)


@pytest.fixture(scope="module")
def sky() -> tuple[np.ndarray, np.ndarray, Layout, np.ndarray]:
    """60k objects: a dense clump, the poles, RA 0; an adaptive layout of small chunks."""
    rng = np.random.default_rng(5)
    n = 60_000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    clump = slice(0, n // 2)
    ra[clump] = rng.normal(10, 1, n // 2) % 360
    dec[clump] = rng.normal(-30, 1, n // 2)
    ra[-400:], dec[-400:] = rng.uniform(0, 360, 400), rng.uniform(89.6, 90, 400)
    ra[-800:-400], dec[-800:-400] = rng.uniform(0, 360, 400), rng.uniform(-90, -89.6, 400)
    ra[-1200:-800], dec[-1200:-800] = rng.uniform(-0.3, 0.3, 400) % 360, rng.uniform(-3, 3, 400)
    counts = PixelCounts(9)
    counts.add(spatial_index(ra, dec))
    layout = Layout.adaptive(counts, max_rows_per_chunk=200, min_order=2, max_order=9)
    return ra, dec, layout, spatial_index(ra, dec)


@pytest.mark.parametrize("radius", [0.5 * ARCSEC, 60 * ARCSEC, 0.3, 1.5])
@pytest.mark.parametrize("with_density", [True, False])
def test_partition_finds_every_pair_once(
    sky: tuple[np.ndarray, np.ndarray, Layout, np.ndarray], radius: float, with_density: bool
) -> None:
    ra, dec, layout, index = sky
    chunk_of = layout.chunk_of(index)
    chunks, counts = np.unique(chunk_of, return_counts=True)
    dens = density(layout, dict(zip(chunks.tolist(), counts.tolist(), strict=True)))
    rng = np.random.default_rng(int(radius * 1e6) + with_density)
    m = 1500 if radius < 0.1 else 300
    pick = rng.integers(0, len(ra), m)
    tra = (ra[pick] + rng.uniform(-radius, radius, m) * 3) % 360
    tdec = np.clip(dec[pick] + rng.uniform(-radius, radius, m), -90, 90)
    tdec[:20] = 90.0
    tra[20:25] = np.nan
    rows, chunk, lo, hi = partition_targets(
        tra, tdec, radius, layout, dens if with_density else None
    )
    assert np.all(np.diff(lo) >= 0), "rows come sorted by range"
    assert not np.isin(rows, np.arange(20, 25)).any(), "no copy of a target without position"
    tree = cKDTree(_unit(ra, dec))
    chord = 2 * math.sin(math.radians(radius) / 2) * 1.001
    near = tree.query_ball_point(_unit(np.nan_to_num(tra, nan=0.0), tdec), chord)
    order = np.argsort(rows, kind="stable")
    first = np.searchsorted(rows[order], np.arange(m))
    last = np.searchsorted(rows[order], np.arange(m), side="right")
    pairs = 0
    for t in range(m):
        found = np.asarray(near[t], dtype=np.int64)
        if len(found) == 0 or not np.isfinite(tra[t]):
            continue
        found = found[angular_separation(tra[t], tdec[t], ra[found], dec[found]) <= radius]
        mine = order[first[t] : last[t]]
        o_chunk, o_index = chunk_of[found][:, None], index[found][:, None]
        hits = (chunk[mine] == o_chunk) & (lo[mine] <= o_index) & (o_index < hi[mine])
        copies = hits.sum(axis=1)
        assert np.all(copies == 1), f"target {t}: objects found {copies.tolist()} times"
        pairs += len(found)
    assert pairs > 100


@pytest.mark.parametrize("radius", [0.5 * ARCSEC, ARCSEC, 60 * ARCSEC, 0.3])
def test_targets_inside_their_widened_pixel_take_the_short_way(
    sky: tuple[np.ndarray, np.ndarray, Layout, np.ndarray], radius: float
) -> None:
    """A target whose 3×3 block lies inside its widened pixel gets that pixel's range
    without its block being made: the same copies as every target's block gives."""
    _, _, layout, index = sky
    chunk_of = layout.chunk_of(index)
    chunks, counts = np.unique(chunk_of, return_counts=True)
    dens = density(layout, dict(zip(chunks.tolist(), counts.tolist(), strict=True)))
    rng = np.random.default_rng(17)
    n = 20_000
    tra = np.concatenate([rng.uniform(0, 360, n), rng.normal(10, 1, n) % 360])
    tdec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.normal(-30, 1, n)])
    tra[:10], tdec[:10] = 0.0, np.linspace(-90, 90, 10)  # RA 0, the poles
    got = partition_targets(tra, tdec, radius, layout, dens)
    k = neighbourhood_order(radius)
    own = ancestor(spatial_index(tra, tdec), k)
    coarse = widened_orders(layout, dens, k)
    blocks = _partition_blocks(np.arange(len(tra)), own, k, layout, coarse)
    assert sorted(zip(*(a.tolist() for a in got), strict=True)) == sorted(
        zip(*(a.tolist() for a in blocks), strict=True)
    )
    assert np.all(np.diff(got[2]) >= 0)
    at = np.searchsorted(layout.lo, own << (2 * (ORDER - k)), side="right") - 1
    short = inside_ancestor(own, k - coarse[at]).mean()
    assert short > 0.5 if radius <= ARCSEC else short < 0.5  # the short way is taken


def test_sparse_targets_get_one_range(
    sky: tuple[np.ndarray, np.ndarray, Layout, np.ndarray],
) -> None:
    """In sparse sky a 1″ target needs about one btree probe, not nine."""
    _, _, layout, index = sky
    chunk_of = layout.chunk_of(index)
    chunks, counts = np.unique(chunk_of, return_counts=True)
    dens = density(layout, dict(zip(chunks.tolist(), counts.tolist(), strict=True)))
    rng = np.random.default_rng(3)
    tra, tdec = rng.uniform(100, 200, 2000), rng.uniform(30, 60, 2000)  # far from the clump
    rows = partition_targets(tra, tdec, ARCSEC, layout, dens)[0]
    assert len(rows) < 1.2 * 2000
    assert len(partition_targets(tra, tdec, ARCSEC, layout, None)[0]) > 3 * 2000


# --- the model of an upload ---------------------------------------------------------------------


def test_upload_table_model() -> None:
    schema = pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("ra", pa.float64(), metadata={b"unit": b"deg", b"ucd": b"pos.eq.ra"}),
            pa.field("name", pa.string()),
            pa.field("day", pa.date32()),
        ]
    )
    table = upload_table("t", schema)
    assert [c.pg_type for c in table.columns] == ["bigint", "double precision", "text", "timestamp"]
    assert table.column("ra").unit == "deg" and table.column("ra").ucd == "pos.eq.ra"
    with pytest.raises(UploadError, match="reserved word"):
        upload_table("t", pa.schema([pa.field("order", pa.int64())]))
    with pytest.raises(UploadError, match="qserv_"):
        upload_table("t", pa.schema([pa.field("qserv_chunk", pa.int64())]))
    with pytest.raises(UploadError, match="cannot use"):
        upload_table("t", pa.schema([pa.field("v", pa.list_(pa.float64()))]))


# --- on the cluster, against the oracle --------------------------------------------------------


@pytest.fixture(scope="module")
def objects(oracle: psycopg.Connection) -> pa.Table:
    rows = oracle.execute(
        "SELECT objectid, coord_ra, coord_dec FROM qt.object ORDER BY objectid"
    ).fetchall()
    ids, ra, dec = (np.array(c) for c in zip(*rows, strict=True))
    return pa.table({"objectid": ids.astype(np.int64), "ra": ra, "dec": dec})


def _offset(
    ra: np.ndarray, dec: np.ndarray, distance: np.ndarray, bearing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The points ``distance`` degrees from (ra, dec) toward ``bearing`` (from north)."""
    d, b = np.radians(distance), np.radians(bearing)
    r0, d0 = np.radians(ra), np.radians(dec)
    d1 = np.arcsin(np.sin(d0) * np.cos(d) + np.cos(d0) * np.sin(d) * np.cos(b))
    r1 = r0 + np.arctan2(np.sin(b) * np.sin(d) * np.cos(d0), np.cos(d) - np.sin(d0) * np.sin(d1))
    return np.degrees(r1) % 360, np.degrees(d1)


def edge_targets(client: Client, objects: pa.Table, radius: float, seed: int = 0) -> pa.Table:
    """Targets just inside (0.98 r) and just outside (1.02 r) the radius of objects, in
    the chunk next to the object's when there is one; on objects; across RA 0/360;
    at and near the poles; without a position."""
    rng = np.random.default_rng(seed)
    layout = client.context.states["qt"].layout
    assert layout is not None
    ra = objects.column("ra").to_numpy()
    dec = objects.column("dec").to_numpy()
    own = layout.chunk_of(spatial_index(ra, dec))
    tra, tdec, labels = [], [], []

    def add(kind: str, r: np.ndarray, d: np.ndarray) -> None:
        tra.append(r)
        tdec.append(d)
        labels.extend(f"{kind}{i}" for i in range(len(r)))

    for kind, factor in (("in", 0.98), ("out", 1.02)):
        for bearing in range(0, 360, 45):
            b = np.full(len(ra), float(bearing))
            r2, d2 = _offset(ra, dec, np.full(len(ra), factor * radius), b)
            across = np.flatnonzero(layout.chunk_of(spatial_index(r2, d2)) != own)
            take = rng.permutation(across)[:60]
            add(kind, r2[take], d2[take])
    pick = rng.integers(0, len(ra), 40)
    add("on", ra[pick], dec[pick])
    wrap = np.argsort(np.minimum(ra, 360 - ra))[:10]  # the objects nearest RA 0
    for bearing in (90.0, 270.0):
        r2, d2 = _offset(ra[wrap], dec[wrap], np.full(10, 0.9 * radius), np.full(10, bearing))
        add("wrap", r2, d2)
    add(
        "pole",
        np.array([0.0, 359.9999999, 0.0, 123.0, 10.0, 300.0]),
        np.array([0.0, 0.0, 90.0, -90.0, 89.9999, -89.9999]),
    )
    add("none", np.array([np.nan, 1.0]), np.array([1.0, 1.0]))
    ra_all, dec_all = np.concatenate(tra), np.concatenate(tdec)
    null = np.array([label == "none1" for label in labels])
    return pa.table(
        {
            "id": pa.array(np.arange(len(ra_all), dtype=np.int64)),
            "ra": pa.array(ra_all, mask=null),
            "dec": pa.array(dec_all),
            "label": pa.array(labels),
        }
    )


def matching(targets: pa.Table) -> int:
    """How many of :func:`edge_targets` have an object within the radius, at least."""
    return sum(
        1 for label in targets.column("label").to_pylist() if label[:2] in ("in", "on", "wr")
    )


def to_oracle(oracle: psycopg.Connection, name: str, table: pa.Table) -> None:
    """The upload as a plain table ``tap_upload.<name>`` of the oracle."""
    model = upload_table(name, table.schema)
    oracle.execute("CREATE SCHEMA IF NOT EXISTS tap_upload")
    oracle.execute(f"DROP TABLE IF EXISTS tap_upload.{name}")
    columns = ", ".join(f"{c.sql_name} {c.pg_type}" for c in model.columns)
    oracle.execute(f"CREATE TABLE tap_upload.{name} ({columns})")
    with (
        oracle.cursor() as cur,
        cur.copy(f"COPY tap_upload.{name} FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(HEADER)
        copy.write(encode_batch(table.columns, [c.pg_type for c in model.columns]))
        copy.write(TRAILER)


def check(
    client: Client,
    oracle: psycopg.Connection,
    text: str,
    uploads: dict[str, pa.Table],
    lang: str = "adql",
    *,
    xmatch: bool | None = None,
) -> list[tuple]:
    """The query on the cluster equals the oracle's answer (as multisets); the rows."""
    for name, table in uploads.items():
        to_oracle(oracle, name, table)
    planned = client.plan(text, lang, uploads=uploads)
    if xmatch is not None:
        assert isinstance(planned, UploadPlan)
        assert any(u.xmatch is not None for u in planned.uploads) is xmatch
        assert ("qserv_lo" in planned.worker_sql) is xmatch
    result = client.query(text, lang, uploads=uploads)
    got = [tuple(row.values()) for row in result.to_pylist()]
    want = oracle.cursor(binary=True).execute(planned.oracle_sql).fetchall()
    compare(got, want, ordered=False)
    return got


XMATCH_FORMS = [
    (
        "adql",
        "SELECT t.id, t.label, o.objectId FROM TAP_UPLOAD.t AS t JOIN Object AS o "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, {r})) = 1",
    ),
    (
        "adql",
        "SELECT t.id, o.objectId, DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) "
        "AS d FROM Object o, TAP_UPLOAD.t t "
        "WHERE 1 = CONTAINS(POINT(t.ra, t.dec), CIRCLE(o.coord_ra, o.coord_dec, {r}))",
    ),
    (
        "adql",
        "SELECT t.*, o.objectId, o.coord_ra FROM TAP_UPLOAD.t t JOIN Object o "
        "ON DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) < {r}",
    ),
    (
        "adql",
        "SELECT o.objectId, t.id FROM Object o JOIN TAP_UPLOAD.t t "
        "ON DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(t.ra, t.dec)) <= {r} "
        "WHERE o.coord_dec > -60",
    ),
    (
        "qserv",
        "SELECT t.id, o.objectId FROM Object o, TAP_UPLOAD.t t "
        "WHERE scisql_angSep(o.coord_ra, o.coord_dec, t.ra, t.dec) < {r}",
    ),
    (
        "adql",
        "SELECT t.id, o.objectId FROM TAP_UPLOAD.t t JOIN Object o "
        "ON {r} > DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec))",
    ),
]


@pytest.mark.parametrize("radius_arcsec", [1.0, 10.0, 60.0])
@pytest.mark.parametrize("form", range(len(XMATCH_FORMS)))
def test_cross_match_equals_oracle(
    client: Client,
    oracle: psycopg.Connection,
    objects: pa.Table,
    form: int,
    radius_arcsec: float,
) -> None:
    lang, text = XMATCH_FORMS[form]
    targets = edge_targets(client, objects, radius_arcsec * ARCSEC, seed=form)
    rows = check(
        client,
        oracle,
        text.format(r=f"{radius_arcsec:g} / 3600.0"),
        {"t": targets},
        lang,
        xmatch=True,
    )
    assert len(rows) >= matching(targets)


def test_cross_match_replicated_catalog(
    client2: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    """Catalog qt2: every chunk on two workers, each read once."""
    targets = edge_targets(client2, objects, 30 * ARCSEC, seed=9)
    text = (
        "SELECT t.id, o.objectId FROM TAP_UPLOAD.t t JOIN qt2.Object o "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 30.0 / 3600)) = 1"
    )
    assert len(check(client2, oracle, text, {"t": targets}, xmatch=True)) >= matching(targets)


def test_cross_match_aggregates_per_target(
    client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    targets = edge_targets(client, objects, 60 * ARCSEC, seed=3)
    text = (
        "SELECT t.id, COUNT(*) AS n, MIN(DISTANCE(POINT(t.ra, t.dec), "
        "POINT(o.coord_ra, o.coord_dec))) AS nearest "
        "FROM TAP_UPLOAD.t t JOIN Object o "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 1.0 / 60)) = 1 "
        "GROUP BY t.id"
    )
    check(client, oracle, text, {"t": targets}, xmatch=True)
    total = "SELECT COUNT(*) " + text[text.index("FROM") : text.index("GROUP BY")]
    check(client, oracle, total, {"t": targets}, xmatch=True)


def test_cross_match_with_a_cone_and_a_child(
    client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    """Other restrictors still apply; a child table joins the matched objects."""
    targets = edge_targets(client, objects, 20 * ARCSEC, seed=4)
    text = (
        "SELECT t.id, o.objectId, f.forcedSourceId FROM TAP_UPLOAD.t t "
        "JOIN Object o ON CONTAINS(POINT(o.coord_ra, o.coord_dec), "
        "CIRCLE(t.ra, t.dec, 20.0 / 3600)) = 1 "
        "JOIN ForcedSource f ON f.objectId = o.objectId "
        "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(0, 0, 100)) = 1"
    )
    check(client, oracle, text, {"t": targets}, xmatch=True)


def test_object_preserving_outer_join(
    client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    """Object LEFT JOIN targets: every object once, with its targets or NULL."""
    targets = edge_targets(client, objects, 60 * ARCSEC, seed=6)
    text = (
        "SELECT o.objectId, t.id FROM Object o LEFT JOIN TAP_UPLOAD.t t "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 1.0 / 60)) = 1"
    )
    rows = check(client, oracle, text, {"t": targets}, xmatch=True)
    assert len({r[0] for r in rows}) == objects.num_rows


def test_target_preserving_outer_join_is_refused(client: Client, objects: pa.Table) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    with pytest.raises(QueryRefused, match="outer join"):
        client.plan(
            "SELECT t.id, o.objectId FROM TAP_UPLOAD.t t LEFT JOIN Object o "
            "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 0.001)) = 1",
            uploads={"t": targets},
        )


def test_radius_larger_than_the_overlap_is_refused(client: Client, objects: pa.Table) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    with pytest.raises(QueryRefused) as err:
        client.plan(
            "SELECT t.id, o.objectId FROM TAP_UPLOAD.t t JOIN Object o "
            "ON DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) < 61.0 / 3600",
            uploads={"t": targets},
        )
    message = str(err.value)
    assert "61″ is larger than the overlap" in message
    assert "at most 60″" in message


def test_join_by_id_reads_only_their_chunks(
    client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    ids = objects.column("objectid").to_numpy()[::97]
    wanted = pa.table({"oid": pa.array(np.append(ids, [-1, 12345678901]), pa.int64())})
    text = (
        "SELECT t.oid, o.objectId, o.coord_ra, f.psfFlux FROM TAP_UPLOAD.wanted t "
        "JOIN Object o ON o.objectId = t.oid JOIN ForcedSource f ON f.objectId = o.objectId"
    )
    rows = check(client, oracle, text, {"wanted": wanted}, xmatch=False)
    found = {r[0] for r in rows}  # objects without forced sources are not there
    assert found <= set(ids.tolist()) and len(found) > len(ids) // 2
    planned = client.plan(text, uploads={"wanted": wanted})
    everything = len(client.context.states["qt"].chunks_with_rows["object"])
    assert 0 < planned.total_chunks <= len(ids) < everything


def test_upload_alone_and_in_subqueries(
    client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    ids = pa.table({"oid": objects.column("objectid").slice(0, 300)})
    uploads = {"t": targets, "ids": ids}
    check(client, oracle, "SELECT COUNT(*), MAX(ra) FROM TAP_UPLOAD.t", uploads)
    check(client, oracle, "SELECT * FROM TAP_UPLOAD.t WHERE dec > 10", uploads)
    check(
        client,
        oracle,
        "SELECT o.objectId, o.coord_dec FROM Object o "
        "WHERE o.objectId IN (SELECT i.oid FROM TAP_UPLOAD.ids i)",
        uploads,
        xmatch=False,
    )
    check(
        client,
        oracle,
        "SELECT id FROM TAP_UPLOAD.t WHERE dec > 0 UNION SELECT id FROM TAP_UPLOAD.t "
        "WHERE ra > 100",
        uploads,
    )
    check(
        client,
        oracle,
        "WITH x AS (SELECT * FROM TAP_UPLOAD.ids) "
        "SELECT COUNT(*) FROM Object o JOIN x ON x.oid = o.objectId",
        uploads,
    )
    rows = check(client, oracle, "SELECT 'tap_upload.t' AS s, t.id FROM TAP_UPLOAD.t t", uploads)
    assert {r[0] for r in rows} == {"tap_upload.t"}
    check(
        client,
        oracle,
        "SELECT COUNT(*) FROM Object o JOIN TAP_UPLOAD.ids i ON i.oid = o.objectId "
        "JOIN TAP_UPLOAD.t t ON CONTAINS(POINT(o.coord_ra, o.coord_dec), "
        "CIRCLE(t.ra, t.dec, 1.0 / 3600)) = 1",
        uploads,
        xmatch=True,
    )


def test_result_columns_keep_upload_metadata(client: Client, objects: pa.Table) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    ra = pa.field("ra", pa.float64(), metadata={b"unit": b"deg", b"ucd": b"pos.eq.ra;meta.main"})
    targets = targets.set_column(1, ra, targets.column("ra"))
    result = client.query("SELECT TOP 3 t.ra, t.label FROM TAP_UPLOAD.t t", uploads={"t": targets})
    field = result.schema.field("ra")
    assert field.metadata[b"unit"] == b"deg"
    assert field.metadata[b"ucd"] == b"pos.eq.ra;meta.main"


def test_unknown_names(client: Client, objects: pa.Table) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    with pytest.raises(UnknownName, match="did you mean label"):
        client.plan("SELECT t.labell FROM TAP_UPLOAD.t t", uploads={"t": targets})
    with pytest.raises(UnknownName, match="did you mean t"):
        client.plan("SELECT * FROM TAP_UPLOAD.tt", uploads={"t": targets})
    with pytest.raises(UnknownName, match="this query has no uploads"):
        client.plan("SELECT * FROM TAP_UPLOAD.t")
    with pytest.raises(UnknownName, match=r"TAP_UPLOAD\.t"):
        client.plan("SELECT * FROM t", uploads={"t": targets})


def test_plan_from_schemas_then_run_with_data(
    client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    targets = edge_targets(client, objects, 10 * ARCSEC, seed=8)
    text = XMATCH_FORMS[0][1].format(r="10.0 / 3600")
    planned = client.plan(text, uploads={"t": targets.schema})
    assert isinstance(planned, UploadPlan) and not planned.shipments
    with pytest.raises(QueryError, match="its data was not given"):
        shipping.execute(client.spec, planned)
    result = shipping.execute(client.spec, planned, uploads={"t": targets}).table
    to_oracle(oracle, "t", targets)
    want = oracle.execute(planned.oracle_sql).fetchall()
    compare([tuple(r.values()) for r in result.to_pylist()], want, ordered=False)


CACHED_SHAPES = [
    XMATCH_FORMS[0][1].format(r="10.0 / 3600"),  # a cross-match: narrows the chunks
    "SELECT o.objectId, t.id FROM Object o LEFT JOIN TAP_UPLOAD.t t "  # does not narrow
    "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 10.0 / 3600)) = 1",
    "SELECT t.oid, o.objectId FROM TAP_UPLOAD.ids t JOIN Object o ON o.objectId = t.oid",
    "SELECT COUNT(*) FROM Object o JOIN TAP_UPLOAD.ids i ON i.oid = o.objectId "
    "JOIN TAP_UPLOAD.t t ON CONTAINS(POINT(o.coord_ra, o.coord_dec), "
    "CIRCLE(t.ra, t.dec, 1.0 / 3600)) = 1",
    "SELECT COUNT(*), MAX(ra) FROM TAP_UPLOAD.t",
]


@pytest.mark.parametrize("shape", range(len(CACHED_SHAPES)))
def test_a_shape_is_planned_once_then_given_each_upload(
    client: Client, objects: pa.Table, shape: int
) -> None:
    """The plan cache plans an upload query from its uploads' schemas once; with each
    new upload's data that plan is the planner's plan from that data: the same SQL, the
    same chunks on the same workers, the same rows to ship."""
    client = Client(client.spec, default_catalog="qt")  # (its own plan cache)
    text = CACHED_SHAPES[shape]
    ids = objects.column("objectid").to_numpy()
    for seed in range(3):
        targets = edge_targets(client, objects, 10 * ARCSEC, seed=seed)
        wanted = pa.table({"oid": pa.array(np.append(ids[seed::89], [-1]), pa.int64())})
        uploads = {"t": targets, "ids": wanted}
        cached = client.plan(text, uploads=uploads, oracle=False)
        planned = plan_query(text, "adql", client.context, uploads, oracle=False)
        assert isinstance(cached, UploadPlan) and isinstance(planned, UploadPlan)
        assert cached.worker_sql == planned.worker_sql
        assert cached.merge_sql == planned.merge_sql
        assert cached.chunks == planned.chunks
        assert cached.shipments.keys() == planned.shipments.keys()
        for token, rows in planned.shipments.items():  # (repr: NaN equals NaN)
            assert cached.shipments[token].schema == rows.schema
            assert repr(cached.shipments[token].to_pydict()) == repr(rows.to_pydict())
    assert (client.plans.misses, client.plans.hits) == (1, 2)
    other = pa.table({"id": pa.array([1], pa.int32()), "ra": [1.0], "dec": [2.0], "label": ["x"]})
    if "ids" not in text:
        client.plan(text, uploads={"t": other, "ids": wanted}, oracle=False)
        assert client.plans.misses == 2  # another schema: planned again


def test_tables_are_dropped(client: Client, spec: ClusterSpec, objects: pa.Table) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    text = XMATCH_FORMS[0][1].format(r="1.0 / 3600")
    client.query(text, uploads={"t": targets})
    assert all(not tables for tables in shipping.upload_tables(spec).values())
    failing = (
        "SELECT t.id / (t.id - t.id) FROM TAP_UPLOAD.t t JOIN Object o "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 0.01)) = 1"
    )
    with pytest.raises(QuerySqlError, match="division by zero"):
        client.query(failing, uploads={"t": targets})
    assert all(not tables for tables in shipping.upload_tables(spec).values())


@pytest.mark.parametrize("inline", [True, False])
def test_inline_and_shipped_uploads_agree(
    client: Client,
    spec: ClusterSpec,
    oracle: psycopg.Connection,
    objects: pa.Table,
    monkeypatch: pytest.MonkeyPatch,
    inline: bool,
) -> None:
    """Small uploads are written into the worker SQL, larger ones shipped as tables: the
    same answers (a cross-match's rows of each chunk; a whole upload in a subquery), and
    a cross-match cut by ``max_rows`` (its batches gathered without a merge table) says
    so."""
    monkeypatch.setattr(shipping, "INLINE_ROWS", shipping.INLINE_ROWS if inline else 0)
    targets = edge_targets(client, objects, 10 * ARCSEC, seed=5)
    ids = pa.table({"oid": objects.column("objectid").slice(0, 50)})
    text = XMATCH_FORMS[0][1].format(r="10.0 / 3600")
    rows = check(client, oracle, text, {"t": targets}, xmatch=True)
    check(
        client,
        oracle,
        "SELECT o.objectId FROM Object o WHERE o.objectId IN (SELECT i.oid FROM TAP_UPLOAD.ids i)",
        {"ids": ids},
        xmatch=False,
    )
    cut = client.query(text, uploads={"t": targets}, max_rows=3)
    assert cut.num_rows == 3 < len(rows)
    assert cut.schema.metadata[b"truncated"] == b"true"
    assert all(not tables for tables in shipping.upload_tables(spec).values())


def test_small_cross_matches_probe_the_parent(client: Client, objects: pa.Table) -> None:
    """An inline inner cross-match, in each form it is written, reads its director's
    partitioned parent once per target copy: one statement per batch, not a branch per
    chunk, naming the batch's partitions so that one gone fails it. (Their rows equal the
    oracle's: test_cross_match_equals_oracle.)"""
    targets = edge_targets(client, objects, ARCSEC)
    for lang, text in XMATCH_FORMS:
        planned = client.plan(text.format(r="1.0 / 3600"), lang, uploads={"t": targets})
        assert isinstance(planned, UploadPlan)
        inline = shipping._inline(client.spec, planned, planned.shipments, 16)
        assert inline is not None
        chunks = next(iter(planned.chunks.values()))
        statement = worker_sql(inline, chunks[:3])
        assert "LATERAL (SELECT * FROM qt.object AS o WHERE" in statement, text
        assert "UNION ALL" not in statement and "qserv_part__" not in statement
        present = ",".join(f"qt.object_{c}" for c in chunks[:3])
        assert f"'{{{present}}}'::regclass[] IS NOT NULL" in statement


def test_a_probe_finds_its_partition_gone(
    client: Client,
    client2: Client,
    spec: ClusterSpec,
    oracle: psycopg.Connection,
    objects: pa.Table,
) -> None:
    """A chunk's partition gone from the worker that a probing statement reads it on (it
    moved away meanwhile) fails the statement as naming it would: the batch runs again on
    the chunk's other holder, and no match of that chunk is lost."""
    targets = edge_targets(client, objects, 30 * ARCSEC, seed=9)  # qt2's chunks are qt's
    text = (
        "SELECT t.id, o.objectId FROM TAP_UPLOAD.t t JOIN qt2.Object o "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 30.0 / 3600)) = 1"
    )
    planned = client2.plan(text, uploads={"t": targets})
    layout = client2.context.states["qt2"].layout
    assert layout is not None
    matched = set(client2.query(text, uploads={"t": targets}).column("objectId").to_pylist())
    own = layout.chunk_of(
        spatial_index(objects.column("ra").to_numpy(), objects.column("dec").to_numpy())
    )
    where = dict(zip(objects.column("objectid").to_pylist(), own.tolist(), strict=True))
    worker, chunk = next(
        (w, c) for w, cs in planned.chunks.items() for c in cs
        if any(where[i] == c for i in matched)
    )  # fmt: skip
    with psycopg.connect(spec.worker(worker).dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE qt2.object DETACH PARTITION qt2.object_{chunk}")
        conn.execute(f"ALTER TABLE qt2.object_{chunk} RENAME TO object_{chunk}_away")
        try:
            check(client2, oracle, text, {"t": targets}, xmatch=True)
        finally:
            conn.execute(f"ALTER TABLE qt2.object_{chunk}_away RENAME TO object_{chunk}")
            conn.execute(
                f"ALTER TABLE qt2.object ATTACH PARTITION qt2.object_{chunk}"
                f" FOR VALUES IN ({chunk})"
            )


def test_sweep_drops_old_leftovers(spec: ClusterSpec, client: Client) -> None:
    old = "u1000_abcdef0123_0"
    fresh = f"u{int(time.time())}_abcdef0123_0"
    worker = spec.workers[0]
    with psycopg.connect(worker.dsn, autocommit=True) as conn:
        for name in (old, fresh):
            conn.execute(f"CREATE TABLE IF NOT EXISTS qserv_upload.{name} (x int)")
    try:
        assert shipping.sweep(spec) == 1
        assert shipping.upload_tables(spec)[worker.name] == [fresh]
    finally:
        with psycopg.connect(worker.dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS qserv_upload.{old}, qserv_upload.{fresh}")


def test_worker_sql_joins_on_chunk_and_ranges(client: Client, objects: pa.Table) -> None:
    targets = edge_targets(client, objects, ARCSEC)
    planned = client.plan(XMATCH_FORMS[0][1].format(r="1.0 / 3600"), uploads={"t": targets})
    assert isinstance(planned, UploadPlan)
    sql = planned.worker_sql
    assert "t.qserv_chunk = ANY(" in sql
    assert "o.spatial_index >= t.qserv_lo" in sql and "o.spatial_index < t.qserv_hi" in sql
    assert "qserv_upload.upload__t__1 AS t" in sql
    assert "object_overlap" not in sql
    (use,) = planned.uploads
    shipped = planned.shipments[use.token]
    assert set(shipped.column(CHUNK).to_pylist()) == {
        c for cs in planned.chunks.values() for c in cs
    }


def test_cli_upload(
    client: Client,
    spec: ClusterSpec,
    objects: pa.Table,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    targets = edge_targets(client, objects, 10 * ARCSEC, seed=12).select(["id", "ra", "dec"])
    path = tmp_path / "targets.parquet"
    pq.write_table(targets, path)
    text = XMATCH_FORMS[0][1].replace("t.label, ", "").format(r="10.0 / 3600")
    want = client.query(text, uploads={"t": targets}).to_pylist()
    args = ["--cluster", str(spec.path), "query", text, "--catalog", "qt", "--format", "json"]
    assert main([*args, "--upload", f"t={path}"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert sorted(map(str, got)) == sorted(map(str, want)) and got
    assert main([*args, "--upload", "t"]) != 0
    assert "NAME=FILE" in capsys.readouterr().err


def test_targets_far_from_every_object(client: Client, spec: ClusterSpec) -> None:
    """Targets at the poles read only the chunks there; no targets, no chunk: empty
    results (and zero counts), nothing left behind."""
    lonely = pa.table({"id": [1, 2], "ra": [0.0, 180.0], "dec": [89.99999, -89.99999]})
    text = XMATCH_FORMS[0][1].replace("t.label, ", "").format(r="1.0 / 3600")
    count = "SELECT COUNT(*) AS n " + text[text.index("FROM") :]
    for targets in (lonely, lonely.slice(0, 0)):
        assert client.plan(text, uploads={"t": targets}).total_chunks <= 2 * 4
        assert client.query(text, uploads={"t": targets}).num_rows == 0
        assert client.query(count, uploads={"t": targets}).to_pylist() == [{"n": 0}]
    assert client.plan(text, uploads={"t": lonely.slice(0, 0)}).total_chunks == 0
    assert all(not tables for tables in shipping.upload_tables(spec).values())
