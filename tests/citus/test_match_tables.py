"""Match tables on the Citus backend: the catalog of tests/query/test_match_tables.py
(two directors, a match table, small chunks) as distributed tables, and a query of each
form compared with the same rows in plain tables of the oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from qserv_py.client import Client, connect
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.loaders.load import load
from qserv_py.schema import parse_catalog
from tests.query.test_corpus import compare
from tests.query.test_match_tables import SCHEMA, SMALL, THREE, _tables

NAME = "mtc"  # its own name: the oracle schema of the native test may be alive too


@pytest.fixture(scope="module")
def mtc(
    citus_spec: ClusterSpec,
    citus_settings: Settings,
    oracle: psycopg.Connection,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Client]:
    out: Path = tmp_path_factory.mktemp("mtc")
    tables = _tables()
    text = SCHEMA.replace("name: mt", f"name: {NAME}", 1)
    create_catalog(
        citus_spec,
        parse_catalog(text, NAME),
        text,
        citus_shard_count=citus_settings.citus_shard_count,
    )
    try:
        for name in ("Obj", "Ref", "RefMatch"):
            pq.write_table(tables[name.lower()], out / f"{name}.parquet")
            load(citus_spec, NAME, name, [out / f"{name}.parquet"], SMALL)
        oracle.execute(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")
        oracle.execute(f"CREATE SCHEMA {NAME}")
        oracle.execute(f"CREATE TABLE {NAME}.obj (objid bigint, ra float8, dec float8, mag float8)")
        oracle.execute(f"CREATE TABLE {NAME}.ref (refid bigint, ra float8, dec float8)")
        oracle.execute(f"CREATE TABLE {NAME}.refmatch (refid bigint, objid bigint, dist float8)")
        for name in ("obj", "ref", "refmatch"):
            table = tables[name]
            marks = ", ".join(["%s"] * table.num_columns)
            with oracle.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {NAME}.{name} VALUES ({marks})",
                    [tuple(r.values()) for r in table.to_pylist()],
                )
        yield connect(citus_spec, default_catalog=NAME)
    finally:
        drop_catalog(citus_spec, NAME)
        oracle.execute(f"DROP SCHEMA IF EXISTS {NAME} CASCADE")


QUERIES = [
    "SELECT refId, objId, dist FROM RefMatch",
    "SELECT refId FROM RefMatch WHERE objId IN (1001, 1002, 1361)",
    "SELECT o.objId, m.refId FROM Obj o LEFT JOIN RefMatch m ON m.objId = o.objId",
    f"SELECT r.refId, o.objId, m.dist FROM {THREE}",
    f"SELECT r.refId, o.objId FROM {THREE}"
    " WHERE CONTAINS(POINT(o.ra, o.dec), CIRCLE(10.1, -0.1, 0.08)) = 1",
]


@pytest.mark.parametrize("text", QUERIES, ids=[q[:60] for q in QUERIES])
def test_matches_oracle_on_citus(mtc: Client, oracle: psycopg.Connection, text: str) -> None:
    got = [tuple(r.values()) for r in mtc.query(text).to_pylist()]
    want = oracle.cursor(binary=True).execute(mtc.plan(text).oracle_sql).fetchall()
    compare(got, want, ordered=False)
    assert got
