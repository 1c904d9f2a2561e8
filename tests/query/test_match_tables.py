"""Match tables (``qserv:kind: match``, issue 14): a small catalog of two directors (Obj,
Ref) and the match table relating them, loaded with small chunks so that many matches
straddle a chunk edge (stored twice, once with each side's chunk); queries of the match
table alone, joined to one director, and director ⋈ match ⋈ director, each compared with
the same rows in plain tables of the oracle database. Loads naming unknown keys, or pairs
farther apart than the overlap, are refused and leave nothing behind."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qserv_py.cli import main
from qserv_py.client import Client, connect
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect as db_connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import LoadError, QueryError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.loaders.publish import abort
from qserv_py.loaders.txn import list_txns
from qserv_py.ops.chunks import copy_chunk
from qserv_py.query import matches
from qserv_py.query.cache import PlanCache
from qserv_py.query.planner import plan
from qserv_py.schema import parse_catalog
from qserv_py.sky.healpix import angular_separation
from tests.query.test_corpus import compare
from tests.query.test_plan_cache import _same

NAME = "mt"
SCHEMA = """
name: mt
qserv:overlap: 30
tables:
- name: Obj
  primaryKey: "#Obj.objId"
  qserv:kind: director
  qserv:ra_column: ra
  qserv:dec_column: dec
  columns:
  - {name: objId, "@id": "#Obj.objId", datatype: long}
  - {name: ra, datatype: double}
  - {name: dec, datatype: double}
  - {name: mag, datatype: double}
- name: Ref
  primaryKey: "#Ref.refId"
  qserv:kind: director
  qserv:ra_column: ra
  qserv:dec_column: dec
  columns:
  - {name: refId, "@id": "#Ref.refId", datatype: long}
  - {name: ra, datatype: double}
  - {name: dec, datatype: double}
- name: RefMatch
  qserv:kind: match
  qserv:director1: Ref
  qserv:director_key1: refId
  qserv:director2: Obj
  qserv:director_key2: objId
  columns:
  - {name: refId, datatype: long}
  - {name: objId, datatype: long}
  - {name: dist, datatype: double}
- name: Loose
  qserv:kind: match
  qserv:director1: Ref
  qserv:director_key1: refId
  qserv:director2: Obj
  qserv:director_key2: objId
  columns:
  - {name: refId, datatype: long}
  - {name: objId, datatype: long}
"""
RADIUS = 25 / 3600  # matches are pairs closer than this (the overlap is 30″)
SMALL = LoadOptions(max_rows_per_chunk=20, min_order=3, max_order=10)


def _tables(seed: int = 5) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    n_obj, n_ref = 400, 300
    ra, dec = rng.uniform(10, 10.5, n_obj), rng.uniform(-0.25, 0.25, n_obj)
    # close pairs of objects: a reference object then matches both (N-to-M)
    ra[360:], dec[360:] = ra[:40] + rng.uniform(-3e-3, 3e-3, 40), dec[:40] + 2e-3
    near = rng.choice(n_obj, 260, replace=False)
    r_ra = np.concatenate([ra[near] + rng.normal(0, 2e-3, 260), rng.uniform(10, 10.5, 40)])
    r_dec = np.concatenate([dec[near] + rng.normal(0, 2e-3, 260), rng.uniform(-0.25, 0.25, 40)])
    sep = angular_separation(r_ra[:, None], r_dec[:, None], ra[None, :], dec[None, :])
    ref_i, obj_i = np.nonzero(sep < RADIUS)
    lonely_refs = np.setdiff1d(np.arange(n_ref), ref_i)
    lonely_objs = np.setdiff1d(np.arange(n_obj), obj_i)[:25]
    ref_id = [*(ref_i + 1).tolist(), *(lonely_refs + 1).tolist(), *[None] * len(lonely_objs)]
    obj_id = [*(obj_i + 1001).tolist(), *[None] * len(lonely_refs), *(lonely_objs + 1001).tolist()]
    dist = [*(sep[ref_i, obj_i] * 3600).tolist(), *[None] * (len(lonely_refs) + len(lonely_objs))]
    return {
        "obj": pa.table(
            {
                "objId": pa.array(np.arange(1001, 1001 + n_obj), pa.int64()),
                "ra": ra,
                "dec": dec,
                "mag": rng.uniform(15, 25, n_obj),
            }
        ),
        "ref": pa.table(
            {"refId": pa.array(np.arange(1, n_ref + 1), pa.int64()), "ra": r_ra, "dec": r_dec}
        ),
        "refmatch": pa.table(
            {
                "refId": pa.array(ref_id, pa.int64()),
                "objId": pa.array(obj_id, pa.int64()),
                "dist": pa.array(dist, pa.float64()),
            }
        ),
        # keys no director row has (99999, 88888) are let through by the option
        "loose": pa.table(
            {
                "refId": pa.array([*(ref_i[:4] + 1).tolist(), 99_999, None], pa.int64()),
                "objId": pa.array([*(obj_i[:3] + 1001).tolist(), 88_888, 1001, 1003], pa.int64()),
            }
        ),
    }


def _staged(spec: ClusterSpec, txn: int) -> int:
    """Staging tables of load ``txn`` left on the workers."""
    found = 0
    for worker in spec.workers:
        with db_connect(worker, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'qserv_stage'"
                " AND tablename LIKE %s",
                (f"s{txn}%",),
            ).fetchone()
            found += int(row[0]) if row else 0
    return found


def _refused(spec: ClusterSpec, path: Path, words: list[str]) -> None:
    """The load of ``path`` into RefMatch is refused with ``words``; once aborted, nothing
    of it is left."""
    with pytest.raises(LoadError) as info:
        load(spec, NAME, "RefMatch", [path], SMALL)
    for word in words:
        assert word in str(info.value)
    [failed] = [t for t in list_txns(spec, NAME) if t.state == "failed"]
    abort(spec, failed.id)
    assert _staged(spec, failed.id) == 0
    count = connect(spec, default_catalog=NAME).query("SELECT COUNT(*) AS n FROM RefMatch")
    assert count.to_pylist() == [{"n": 0}]


@pytest.fixture(scope="module")
def mt(
    spec: ClusterSpec, oracle: psycopg.Connection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """Catalog ``mt`` on the cluster and schema ``mt`` on the oracle."""
    out: Path = tmp_path_factory.mktemp("mt")
    tables = _tables()
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    create_catalog(spec, parse_catalog(SCHEMA, NAME), SCHEMA)
    try:
        load(spec, NAME, "Obj", [out / "obj.parquet"], SMALL)
        load(spec, NAME, "Ref", [out / "ref.parquet"], SMALL)
        # an unknown key, and a pair farther apart than the overlap: refused
        bad = tables["refmatch"].slice(0, 3)
        pq.write_table(
            pa.concat_tables([bad, pa.table({"refId": [7], "objId": [5555], "dist": [0.0]})]),
            out / "unknown.parquet",
        )
        _refused(
            spec, out / "unknown.parquet", ["1 rows of RefMatch have a objId that is not in Obj"]
        )
        ref, obj = tables["ref"], tables["obj"]
        sep = angular_separation(ref["ra"][0], ref["dec"][0], obj["ra"], obj["dec"])
        far = pa.table({"refId": [1], "objId": [1001 + int(np.argmax(sep))]})
        pq.write_table(far.append_column("dist", pa.array([0.0])), out / "far.parquet")
        _refused(spec, out / "far.parquet", ["farther apart than the overlap", "30″"])
        result = load(spec, NAME, "RefMatch", [out / "refmatch.parquet"], SMALL)
        # matches straddling a chunk edge are stored twice (15 of them)
        assert result.state == "published"
        assert result.rows - tables["refmatch"].num_rows >= 10
        with pytest.raises(LoadError, match="a objId that is not in Obj"):
            load(spec, NAME, "Loose", [out / "loose.parquet"], SMALL)
        for txn in list_txns(spec, NAME):
            if txn.state == "failed":
                abort(spec, txn.id)
        # the option, through the CLI
        cli = ["--cluster", str(spec.path), "load", NAME, "Loose", str(out / "loose.parquet")]
        assert main([*cli, "--allow-unknown-match-keys"]) == 0
        oracle.execute(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")
        oracle.execute(f"CREATE SCHEMA {NAME}")
        oracle.execute(f"CREATE TABLE {NAME}.obj (objid bigint, ra float8, dec float8, mag float8)")
        oracle.execute(f"CREATE TABLE {NAME}.ref (refid bigint, ra float8, dec float8)")
        oracle.execute(f"CREATE TABLE {NAME}.refmatch (refid bigint, objid bigint, dist float8)")
        oracle.execute(f"CREATE TABLE {NAME}.loose (refid bigint, objid bigint)")
        for name, table in tables.items():
            marks = ", ".join(["%s"] * table.num_columns)
            with oracle.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {NAME}.{name} VALUES ({marks})",
                    [tuple(r.values()) for r in table.to_pylist()],
                )
        yield connect(spec, default_catalog=NAME)
    finally:
        drop_catalog(spec, NAME)
        oracle.execute(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")


THREE = "Ref r JOIN RefMatch m ON m.refId = r.refId JOIN Obj o ON o.objId = m.objId"
QUERIES = [
    # the match table alone
    "SELECT refId, objId, dist FROM RefMatch",
    "SELECT COUNT(*) AS n, COUNT(refId) AS r, COUNT(objId) AS o, SUM(dist) AS d FROM RefMatch",
    "SELECT refId, dist FROM RefMatch WHERE objId IN (1001, 1002, 1003, 1361, 1362)",
    "SELECT objId FROM RefMatch WHERE refId = 3 OR refId = 4",
    "SELECT refId, objId FROM Loose",
    # joined to one director
    "SELECT r.refId, r.ra, m.objId FROM Ref r JOIN RefMatch m ON m.refId = r.refId"
    " WHERE CONTAINS(POINT(r.ra, r.dec), CIRCLE(10.25, 0, 0.1)) = 1",
    "SELECT o.objId, o.mag, m.refId FROM RefMatch m JOIN Obj o ON o.objId = m.objId"
    " WHERE o.objId IN (1001, 1040, 1200, 1361)",
    "SELECT o.objId, m.refId FROM Obj o LEFT JOIN RefMatch m ON m.objId = o.objId",
    "SELECT l.refId, o.objId FROM Loose l JOIN Obj o ON o.objId = l.objId",
    # director ⋈ match ⋈ director
    f"SELECT r.refId, o.objId, m.dist, o.mag, r.ra FROM {THREE}",
    f"SELECT r.refId, o.objId FROM {THREE}"
    " WHERE CONTAINS(POINT(o.ra, o.dec), CIRCLE(10.1, -0.1, 0.08)) = 1",
    f"SELECT r.refId, o.objId FROM {THREE}"
    " WHERE CONTAINS(POINT(r.ra, r.dec), CIRCLE(10.4, 0.1, 0.08)) = 1",
    f"SELECT o.objId, r.refId, m.dist FROM {THREE} WHERE o.objId IN (1001, 1002, 1361, 1362)",
    f"SELECT r.refId, o.objId FROM {THREE} WHERE m.refId IN (5, 6, 7)",
    f"SELECT COUNT(*) AS n, AVG(m.dist) AS d, MAX(o.mag - 10) AS x FROM {THREE}",
    # Loose joins Obj: the Obj side is the anchor, Ref is read with its overlap
    f"SELECT r.refId, o.objId, l.refId AS lref FROM {THREE} JOIN Loose l ON l.objId = o.objId",
    "SELECT r.refId, m.objId, o.mag FROM Ref r LEFT JOIN RefMatch m ON m.refId = r.refId"
    " LEFT JOIN Obj o ON o.objId = m.objId",
    "SELECT o.objId, m.refId, r.ra FROM Obj o LEFT JOIN RefMatch m ON m.objId = o.objId"
    " LEFT JOIN Ref r ON r.refId = m.refId WHERE o.objId < 1200",
]  # fmt: skip


#: as Qserv users write it: joins in WHERE, an areaspec (it restricts both directors)
QSERV = (
    "SELECT m.refId, m.objId, scisql_angSep(r.ra, r.dec, o.ra, o.dec) * 3600 AS sep"
    " FROM Ref r, RefMatch m, Obj o WHERE r.refId = m.refId AND o.objId = m.objId"
    " AND qserv_areaspec_box(10.1, -0.1, 10.3, 0.1)"
)


@pytest.mark.parametrize(
    ("lang", "text"),
    [("adql", q) for q in QUERIES] + [("qserv", QSERV)],
    ids=[q[:60] for q in [*QUERIES, QSERV]],
)
def test_matches_oracle(mt: Client, oracle: psycopg.Connection, lang: str, text: str) -> None:
    got = [tuple(r.values()) for r in mt.query(text, lang).to_pylist()]
    want = oracle.cursor(binary=True).execute(mt.plan(text, lang).oracle_sql).fetchall()
    compare(got, want, ordered=False)
    assert got


def test_the_plan_cache_gives_the_planners_plans(mt: Client) -> None:
    """Key lookups on a match table are filled in from a template (the chunk of the new
    key); a join through it with an overlap side is planned with its numbers pinned."""
    cache, ctx = PlanCache(), mt.context
    shapes = (
        "SELECT dist FROM RefMatch WHERE objId = {k}",
        "SELECT m.dist, r.ra FROM RefMatch m JOIN Ref r ON r.refId = m.refId WHERE m.refId = {k}",
        f"SELECT o.mag FROM {THREE} WHERE o.objId = {{k}}",
    )
    for shape in shapes:
        for key in (1001, 1002, 1003, 1004):
            text = shape.format(k=key if "objId" in shape else key - 1000)
            _same(cache.plan(text, "adql", ctx), plan(text, "adql", ctx, oracle=False), text)
    assert cache.hits >= 4


def test_id_lookups_read_one_chunk(mt: Client) -> None:
    for text in (
        "SELECT refId FROM RefMatch WHERE objId = 1040",
        "SELECT dist FROM RefMatch WHERE refId = 9",
        f"SELECT o.mag FROM {THREE} WHERE r.refId = 9",
        f"SELECT r.ra FROM {THREE} WHERE o.objId = 1040",
    ):
        chunks = mt.plan(text, "adql").chunks
        assert sum(len(c) for c in chunks.values()) == 1, text


def test_worker_sql_stays_chunk_local(mt: Client) -> None:
    """The far director is read from the chunk and its overlap, joined on chunk_id; a
    match table alone reads one copy of each row."""
    plan = mt.plan(f"SELECT r.refId, o.objId FROM {THREE}", "adql")
    assert "obj_overlap" in plan.worker_sql and "ref_overlap" not in plan.worker_sql
    assert "m.chunk_id" in plan.worker_sql and "match_flags" not in plan.worker_sql
    alone = mt.plan("SELECT refId FROM RefMatch", "adql").worker_sql
    assert "match_flags & 4) <> 0" in alone


def test_refused_joins(mt: Client) -> None:
    with pytest.raises(QueryError, match="one director with its overlap"):
        mt.query(
            f"SELECT r.refId FROM {THREE} JOIN Obj o2 ON 1 = CONTAINS(POINT(o2.ra, o2.dec),"
            " CIRCLE(o.ra, o.dec, 0.001))"
        )
    with pytest.raises(QueryError, match="only supported in the outermost SELECT"):
        mt.query(f"SELECT COUNT(*) AS n FROM (SELECT r.refId FROM {THREE}) AS t")
    with pytest.raises(QueryError, match="must be its director table alone"):
        mt.query(
            f"SELECT r.refId FROM {THREE} JOIN Loose l ON l.objId = o.objId"
            " JOIN Loose l2 ON l2.refId = r.refId"
        )
    with pytest.raises(QueryError, match="keeps the rows of the match table RefMatch"):
        mt.query("SELECT m.refId, o.mag FROM RefMatch m LEFT JOIN Obj o ON o.objId = m.objId")
    with pytest.raises(QueryError, match="a join of two match tables"):
        mt.query("SELECT m.dist FROM RefMatch m JOIN Loose l ON l.refId = m.refId")
    with pytest.raises(QueryError, match="outer joins in an order"):
        mt.query(
            "SELECT o.objId FROM Obj o FULL JOIN RefMatch m ON m.objId = o.objId"
            " FULL JOIN Ref r ON r.refId = m.refId"
        )


def test_doctests() -> None:
    assert doctest.testmod(matches).failed == 0


def test_chunk_copy_keeps_the_copies_and_their_flags(mt: Client, spec: ClusterSpec) -> None:
    """A chunk copied to another worker holds the same match rows with the same flags
    (``match_flags`` is a column of the workers' tables, copied like chunk_id)."""
    state = mt.context.states[NAME]
    rows = state.chunk_rows["refmatch"]
    chunk = max(rows, key=lambda c: (rows[c], c))
    [source] = state.placement[chunk]
    target = next(w.name for w in spec.workers if w.name != source)
    copy_chunk(spec, NAME, chunk, source, target)
    held = []
    for name in (source, target):
        worker = next(w for w in spec.workers if w.name == name)
        with db_connect(worker, autocommit=True) as conn:
            held.append(
                conn.execute(
                    f"SELECT refid, objid, match_flags FROM {NAME}.refmatch"
                    " WHERE chunk_id = %s ORDER BY 1, 2, 3",
                    (chunk,),
                ).fetchall()
            )
    assert held[0] == held[1] and len(held[0]) == rows[chunk]
    assert all(flags & 3 for _, _, flags in held[0])  # each copy placed by a side
