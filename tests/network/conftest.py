"""A cluster across a real network: the czar and three workers, each in its own network
namespace on a bridge (tests/netns), holding catalog ``net`` (the session's small dp02
release) with every chunk on two workers.

Where namespaces cannot be made (not root, no ``ip``) the tests are skipped with the
reason; with ``QSERV_PY_REQUIRE_NETNS=1`` (CI) that is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import qserv_py
from qserv_py.client import Client
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import load_settings
from qserv_py.loaders.load import LoadOptions, load
from tests.conftest import create_dp02_catalog, record_pids, running_cluster
from tests.netns import Faults, Topology, unavailable

HOSTS = ("czar", "worker1", "worker2", "worker3")
CATALOG = "net"
TABLES = ("Object", "Source", "ForcedSource", "CcdVisit")


@pytest.fixture(scope="session")
def netns_ok() -> None:
    """Skip (or, with QSERV_PY_REQUIRE_NETNS=1, fail) where namespaces cannot be made."""
    reason = unavailable()
    if reason is not None:
        message = f"no multi-host topology here: {reason}"
        if os.environ.get("QSERV_PY_REQUIRE_NETNS") == "1":
            pytest.fail(f"{message} (QSERV_PY_REQUIRE_NETNS=1)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def topology(netns_ok: None) -> Iterator[Topology]:
    """The hosts czar, worker1..3: a namespace each, on one bridge; removed at the end."""
    with Topology(HOSTS) as topo:
        yield topo


@pytest.fixture(scope="session")
def net_cluster(topology: Topology, work_dir: Path) -> Iterator[LocalCluster]:
    """A local cluster whose instances run in the topology's hosts."""
    settings = load_settings(
        {"cluster": work_dir / "net-cluster", "shared_buffers": "32MB", "workers": 3}
    )
    with running_cluster(settings, network=topology.network()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def net_spec(net_cluster: LocalCluster) -> ClusterSpec:
    return net_cluster.spec()


@pytest.fixture(scope="session")
def net_catalog(net_spec: ClusterSpec, release: Path) -> Iterator[str]:
    """Catalog ``net``: the session's release in small chunks, each on two workers."""
    create_dp02_catalog(net_spec, CATALOG)
    options = LoadOptions(replication=2, max_rows_per_chunk=400, min_order=2, max_order=8)
    for table in TABLES:
        load(net_spec, CATALOG, table, [release / table], options)
    yield CATALOG
    drop_catalog(net_spec, CATALOG)


@pytest.fixture(scope="session")
def net_client(net_spec: ClusterSpec, net_catalog: str) -> Client:
    return qserv_py.connect(net_spec, default_catalog=net_catalog)


@pytest.fixture
def faults(net_cluster: LocalCluster, topology: Topology) -> Iterator[Faults]:
    """Fault injection into the session's network cluster; healed after the test."""
    injected = Faults(net_cluster, topology, on_start=record_pids)
    try:
        yield injected
    finally:
        injected.heal()
