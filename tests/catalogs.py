"""The differential-testing setup: the same release on the cluster (catalog ``qt``, small
chunks, many chunk edges; catalog ``qt2``, the same with every chunk on two workers) and on
the oracle (one unpartitioned PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from qserv_py.client import Client, connect
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect as db_connect
from qserv_py.cluster.metadata import spatial_sql
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.generate import generate_release
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch
from qserv_py.schema import default_catalog_path, parse_catalog

CATALOG = "qt"
REPLICATED = "qt2"  # the same release, loaded with replication 2
TABLES = ("Object", "Source", "ForcedSource", "CcdVisit")


@pytest.fixture(scope="session")
def query_release(work_dir: Path) -> Path:
    out = work_dir / "query-release"
    generate_release(out, 3_000, sources_per_object=2, forced_per_object=4, visits=60, seed=23)
    return out


def _load_catalog(spec: ClusterSpec, release: Path, name: str, options: LoadOptions) -> None:
    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {name}", 1)
    create_catalog(spec, parse_catalog(text, name), text)
    for table in TABLES:
        load(spec, name, table, [release / table], options)


@pytest.fixture(scope="session")
def client(spec: ClusterSpec, query_release: Path) -> Iterator[Client]:
    """Catalog qt on the cluster: adaptive chunks of at most 120 objects (many edges)."""
    options = LoadOptions(max_rows_per_chunk=120, min_order=2, max_order=9)
    _load_catalog(spec, query_release, CATALOG, options)
    yield connect(spec, default_catalog=CATALOG)
    drop_catalog(spec, CATALOG)


@pytest.fixture(scope="session")
def client2(spec: ClusterSpec, query_release: Path) -> Iterator[Client]:
    """Catalog qt2: the release of qt, in the same chunks, each held by two workers."""
    options = LoadOptions(replication=2, max_rows_per_chunk=120, min_order=2, max_order=9)
    _load_catalog(spec, query_release, REPLICATED, options)
    yield connect(spec, default_catalog=REPLICATED)
    drop_catalog(spec, REPLICATED)


@pytest.fixture(scope="session")
def oracle(spec: ClusterSpec, query_release: Path) -> Iterator[psycopg.Connection]:
    """The same rows in plain tables of one database (on the czar's server)."""
    with db_connect(spec.czar, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS oracle")
        admin.execute("CREATE DATABASE oracle")
    info = dict(spec.czar.conninfo, dbname="oracle")
    catalog = parse_catalog(
        default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {CATALOG}", 1),
        CATALOG,
    )
    conn = psycopg.connect(**info, autocommit=True)
    conn.execute(spatial_sql())
    conn.execute(f"CREATE SCHEMA {CATALOG}")
    for name in TABLES:
        table = catalog.table(name)
        columns = ", ".join(f"{c.sql_name} {c.pg_type}" for c in table.columns)
        conn.execute(f"CREATE TABLE {CATALOG}.{table.sql_name} ({columns})")
        types = [c.pg_type for c in table.columns]
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {CATALOG}.{table.sql_name} FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(HEADER)
            for path in sorted((query_release / name).glob("*.parquet")):
                data = pq.read_table(path)
                copy.write(encode_batch(data.columns, types))
            copy.write(TRAILER)
        conn.execute(f"ANALYZE {CATALOG}.{table.sql_name}")
    # the rows of qt2 are those of qt: a schema of views, for the plans of qt2
    conn.execute(f"CREATE SCHEMA {REPLICATED}")
    for name in TABLES:
        table_name = catalog.table(name).sql_name
        conn.execute(
            f"CREATE VIEW {REPLICATED}.{table_name} AS SELECT * FROM {CATALOG}.{table_name}"
        )
    yield conn
    conn.close()
    with db_connect(spec.czar, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS oracle WITH (FORCE)")
