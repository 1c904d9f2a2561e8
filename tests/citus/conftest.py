"""A local Citus cluster (coordinator + two worker nodes) for the tests of this folder,
started once per session when the PostgreSQL binaries have Citus; otherwise every test
that needs it is skipped with the reason (``-ra`` shows it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qserv_py.client import Client, connect
from qserv_py.cluster import binaries
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.citus import citus_problem
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings, load_settings
from qserv_py.errors import NoPostgresBinaries
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.schema import default_catalog_path, parse_catalog
from tests.catalogs import CATALOG, TABLES
from tests.conftest import record_pids


@pytest.fixture(scope="session")
def citus_settings(work_dir: Path) -> Settings:
    try:
        bindir = binaries.find_bindir(None)
    except NoPostgresBinaries as exc:
        pytest.skip(f"no PostgreSQL binaries: {exc}")
    problem = citus_problem(bindir)
    if problem is not None:
        pytest.skip(
            f"Citus tests need Citus in the PostgreSQL binaries {bindir} ({problem}); "
            "see docs/citus.md"
        )
    return load_settings(
        {
            "cluster": work_dir / "citus",
            "pg_bindir": bindir,
            "backend": "citus",
            "workers": 2,
            "citus_shard_count": 4,
            "shared_buffers": "32MB",
        }
    )


@pytest.fixture(scope="session")
def citus_cluster(citus_settings: Settings) -> Iterator[LocalCluster]:
    """The session's Citus cluster: a coordinator (with the czar metadata) and two nodes."""
    cluster = LocalCluster(citus_settings.cluster)
    cluster.init(citus_settings)
    record_pids(cluster)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def citus_spec(citus_cluster: LocalCluster) -> ClusterSpec:
    return citus_cluster.spec()


@pytest.fixture(scope="session")
def citus_client(
    citus_spec: ClusterSpec, citus_settings: Settings, query_release: Path
) -> Iterator[Client]:
    """Catalog qt on the Citus cluster, loaded as on native workers (many small chunks)."""
    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {CATALOG}", 1)
    create_catalog(
        citus_spec,
        parse_catalog(text, CATALOG),
        text,
        citus_shard_count=citus_settings.citus_shard_count,
    )
    options = LoadOptions(max_rows_per_chunk=120, min_order=2, max_order=9)
    for table in TABLES:
        load(citus_spec, CATALOG, table, [query_release / table], options)
    yield connect(citus_spec, default_catalog=CATALOG)
    drop_catalog(citus_spec, CATALOG)
