"""A small catalog whose columns are PostgreSQL reserved words (``offset``, ``order``,
``user``, ``end``; ``size`` too) and whose child table has its own position and rows of
unknown director key (issue 14): loaded, copied between workers and queried, against the
same rows in plain tables of the oracle database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qserv_py.client import Client, connect
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import LoadError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.loaders.publish import abort
from qserv_py.loaders.txn import list_txns
from qserv_py.ops.chunks import copy_chunk
from qserv_py.schema import parse_catalog
from tests.query.test_corpus import compare

NAME = "rw"
SCHEMA = """
name: rw
qserv:overlap: 30
tables:
- name: Obj
  "@id": "#Obj"
  primaryKey: "#Obj.objId"
  qserv:kind: director
  qserv:ra_column: ra
  qserv:dec_column: dec
  columns:
  - {name: objId, "@id": "#Obj.objId", datatype: long}
  - {name: ra, "@id": "#Obj.ra", datatype: double}
  - {name: dec, "@id": "#Obj.dec", datatype: double}
  - {name: offset, "@id": "#Obj.offset", datatype: double}
  - {name: order, "@id": "#Obj.order", datatype: int}
  - {name: size, "@id": "#Obj.size", datatype: float}
  - {name: user, "@id": "#Obj.user", datatype: string, length: 16}
- name: Src
  "@id": "#Src"
  primaryKey: "#Src.srcId"
  qserv:kind: child
  qserv:director: Obj
  qserv:director_key: objId
  qserv:ra_column: ra
  qserv:dec_column: dec
  columns:
  - {name: srcId, "@id": "#Src.srcId", datatype: long}
  - {name: objId, "@id": "#Src.objId", datatype: long}
  - {name: ra, "@id": "#Src.ra", datatype: double}
  - {name: dec, "@id": "#Src.dec", datatype: double}
  - {name: end, "@id": "#Src.end", datatype: double}
"""
ORPHAN_BASE = 9_000_000
#: an orphan far from every object: its chunk holds no director row
FAR = (200.0, 60.0)


def _tables(seed: int = 7) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    n = 400
    ra, dec = rng.uniform(10, 40, n), rng.uniform(-10, 10, n)
    obj = pa.table(
        {
            "objId": pa.array(np.arange(1, n + 1), pa.int64()),
            "ra": ra,
            "dec": dec,
            "offset": rng.normal(0, 1, n),
            "order": pa.array(rng.integers(0, 8, n), pa.int32()),
            "size": pa.array(rng.uniform(0, 5, n), pa.float32()),
            "user": [f"u{i % 5}" for i in range(n)],
        }
    )
    owner = rng.integers(1, n + 1, 760)
    orphans = 40
    s_ra = np.concatenate([ra[owner - 1] + rng.normal(0, 1e-4, 760), rng.uniform(10, 40, 39)])
    s_dec = np.concatenate([dec[owner - 1] + rng.normal(0, 1e-4, 760), rng.uniform(-10, 10, 39)])
    s_ra, s_dec = np.append(s_ra, FAR[0]), np.append(s_dec, FAR[1])
    src = pa.table(
        {
            "srcId": pa.array(np.arange(1, 800 + 1), pa.int64()),
            "objId": pa.array(
                np.concatenate([owner, ORPHAN_BASE + np.arange(orphans)]), pa.int64()
            ),
            "ra": s_ra,
            "dec": s_dec,
            "end": rng.uniform(0, 1, 800),
        }
    )
    return obj, src


@pytest.fixture(scope="module")
def rw(
    spec: ClusterSpec, oracle: psycopg.Connection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """Catalog ``rw`` on the cluster (small chunks) and schema ``rw`` on the oracle."""
    out: Path = tmp_path_factory.mktemp("rw")
    obj, src = _tables()
    pq.write_table(obj, out / "obj.parquet")
    pq.write_table(src, out / "src.parquet")
    create_catalog(spec, parse_catalog(SCHEMA, NAME), SCHEMA)
    small = LoadOptions(max_rows_per_chunk=40, min_order=3, max_order=9)
    load(spec, NAME, "Obj", [out / "obj.parquet"], small)
    oracle.execute(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")
    oracle.execute(f"CREATE SCHEMA {NAME}")
    oracle.execute(
        f'CREATE TABLE {NAME}.obj (objid bigint, ra float8, dec float8, "offset" float8,'
        ' "order" integer, size real, "user" varchar(16))'
    )
    oracle.execute(
        f'CREATE TABLE {NAME}.src (srcid bigint, objid bigint, ra float8, dec float8, "end" float8)'
    )
    for name, table in (("obj", obj), ("src", src)):
        marks = ", ".join(["%s"] * table.num_columns)
        with oracle.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {NAME}.{name} VALUES ({marks})",
                [tuple(r.values()) for r in table.to_pylist()],
            )
    yield connect(spec, default_catalog=NAME)
    drop_catalog(spec, NAME)
    oracle.execute(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")


@pytest.fixture(scope="module")
def loaded(rw: Client, spec: ClusterSpec, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """The child loaded: refused by default (unknown keys), then placed by position."""
    out = tmp_path_factory.mktemp("rw_src")
    pq.write_table(_tables()[1], out / "src.parquet")
    small = LoadOptions(max_rows_per_chunk=40, min_order=3, max_order=9)
    with pytest.raises(LoadError, match="40 rows of Src have a objId that is not in Obj"):
        load(spec, NAME, "Src", [out / "src.parquet"], small)
    for txn in list_txns(spec, NAME):
        if txn.state == "failed":
            abort(spec, txn.id)
    placed = LoadOptions(
        max_rows_per_chunk=40, min_order=3, max_order=9, place_unknown_by_position=True
    )
    result = load(spec, NAME, "Src", [out / "src.parquet"], placed)
    assert result.state == "published" and result.rows == 800
    return connect(spec, default_catalog=NAME)


QUERIES = [
    ("adql", 'SELECT objId, "offset", "order", "size", "user" FROM Obj WHERE "order" > 3'),
    ("qserv", "SELECT `order`, COUNT(*) AS n, SUM(`offset`) AS s FROM Obj GROUP BY `order`"),
    ("postgresql", 'SELECT "user", MAX(size) FROM rw.Obj GROUP BY "user"'),
    ("adql", 'SELECT TOP 5 objId, "order" FROM Obj ORDER BY "offset" DESC'),
    ("adql", 'SELECT "offset", "user" FROM Obj WHERE objId = 17'),
    ("adql", 'SELECT o.objId, s.srcId, s."end" FROM Obj o JOIN Src s ON o.objId = s.objId'),
    ("adql", "SELECT COUNT(*) FROM Src"),
    ("adql", f"SELECT srcId, ra, dec FROM Src WHERE objId = {ORPHAN_BASE + 3}"),
    ("adql", f"SELECT srcId FROM Src WHERE objId IN ({ORPHAN_BASE}, {ORPHAN_BASE + 39}, 5)"),
    ("qserv", "SELECT srcId, `end` FROM Src WHERE qserv_areaspec_box(15, -5, 25, 5)"),
    (
        "qserv",
        "SELECT o.objId, s.srcId FROM Obj o, Src s WHERE o.objId = s.objId"
        " AND qserv_areaspec_circle(20, 0, 3) = 1",
    ),
]


@pytest.mark.parametrize(("lang", "text"), QUERIES, ids=[q[1][:40] for q in QUERIES])
def test_matches_oracle(loaded: Client, oracle: psycopg.Connection, lang: str, text: str) -> None:
    got = [tuple(r.values()) for r in loaded.query(text, lang).to_pylist()]
    want = oracle.cursor(binary=True).execute(loaded.plan(text, lang).oracle_sql).fetchall()
    compare(got, want, ordered="ORDER BY" in text)
    assert got


def test_areaspec_filters_a_child_by_its_own_position(loaded: Client) -> None:
    sql = loaded.plan(
        "SELECT o.objId FROM Obj o JOIN Src s ON o.objId = s.objId"
        " WHERE qserv_areaspec_box(15, -5, 25, 5)",
        "qserv",
    ).oracle_sql
    assert "qserv.pt_in_box(o.ra, o.dec, 15, -5, 25, 5)" in sql
    assert "qserv.pt_in_box(s.ra, s.dec, 15, -5, 25, 5)" in sql


def test_the_far_orphan_has_a_chunk_of_its_own(loaded: Client) -> None:
    [row] = loaded.query("SELECT chunkId, srcId FROM Src WHERE ra > 100", "qserv").to_pylist()
    state = loaded.context.states[NAME]
    assert row["srcId"] == 800
    assert row["chunkId"] not in state.chunks_with_rows["obj"]
    assert "src" in state.placed_by_position


def test_chunk_copy_with_reserved_column_names(loaded: Client, spec: ClusterSpec) -> None:
    state = loaded.context.states[NAME]
    chunk = min(state.chunk_rows["obj"])
    [source] = state.placement[chunk]
    target = next(w.name for w in spec.workers if w.name != source)
    copy_chunk(spec, NAME, chunk, source, target)
    again = connect(spec, default_catalog=NAME)
    assert set(again.context.states[NAME].placement[chunk]) == {source, target}
    text = f'SELECT "order", "offset" FROM Obj WHERE chunkId = {chunk}'
    rows = again.query(text, "qserv").to_pylist()
    assert len(rows) == state.chunk_rows["obj"][chunk]
