"""Cluster-operation fixtures: a cluster of its own (a czar and three workers), so that
adding, draining and removing workers never touches the session cluster, with a
dp02-shaped catalog ``ops`` loaded at replication 2."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.loaders.load import LoadOptions, load
from tests.conftest import create_dp02_catalog, running_cluster
from tests.ops.movement import load_catalog, set_state

OPS_CATALOG = "ops"
TABLES = ("Object", "Source", "ForcedSource", "CcdVisit")


@pytest.fixture(scope="session")
def ops_settings(settings: Settings, work_dir: Path) -> Settings:
    return settings.model_copy(update={"cluster": work_dir / "ops-cluster", "workers": 3})


@pytest.fixture(scope="session")
def ops_cluster(ops_settings: Settings) -> Iterator[LocalCluster]:
    """A czar and three workers, destroyed at the end of the session."""
    with running_cluster(ops_settings) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def ops_spec(ops_cluster: LocalCluster, release: Path) -> ClusterSpec:
    """The cluster's spec, with catalog ``ops`` (the session's release, small chunks,
    every chunk on two workers)."""
    spec = ops_cluster.spec()
    create_dp02_catalog(spec, OPS_CATALOG)
    options = LoadOptions(replication=2, max_rows_per_chunk=400, min_order=2, max_order=8)
    for table in TABLES:
        load(spec, OPS_CATALOG, table, [release / table], options)
    return spec


Loader = Callable[[str, list[str], int], ClusterSpec]


@pytest.fixture
def catalog(ops_cluster: LocalCluster, release: Path) -> Iterator[Loader]:
    """Load a catalog onto some workers; dropped, and every worker active, afterwards."""
    spec = ops_cluster.spec()
    made: list[str] = []

    def make(name: str, workers: list[str], replication: int) -> ClusterSpec:
        load_catalog(spec, name, release, workers, replication)
        made.append(name)
        return spec

    yield make
    for worker in spec.workers:
        set_state(spec, worker.name, "active")
    for name in made:
        drop_catalog(spec, name)
