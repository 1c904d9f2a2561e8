"""A local Citus cluster (coordinator + two worker nodes) for the tests of this folder,
started once per session when the PostgreSQL binaries have Citus; otherwise every test
that needs it is skipped with the reason (``-ra`` shows it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qserv_py.cluster import binaries
from qserv_py.cluster.citus import citus_problem
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings, load_settings
from qserv_py.errors import NoPostgresBinaries
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
