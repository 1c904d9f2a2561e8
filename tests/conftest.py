"""Session fixtures: real PostgreSQL clusters, started once, stopped at the end.

Every postmaster a test starts is recorded; when the session ends, any still alive is a
failure (no server process of the test session may survive it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings, load_settings
from qserv_py.loaders.generate import generate_release
from qserv_py.schema import default_catalog_path, parse_catalog

# catalogs qt and qt2 with the query release, and the oracle: for tests/query and tests/api
pytest_plugins = ("tests.catalogs",)

_STARTED_PIDS: set[int] = set()

# the command lines the tests start run in processes of their own, as the tests expect
# (no fork server outliving the session: tests/test_forkserver.py turns it on to test it)
os.environ.setdefault("QSERV_PY_FORKSERVER", "off")


def record_pids(cluster: LocalCluster) -> None:
    """Remember the postmasters of ``cluster`` for the end-of-session check."""
    for inst in cluster.instances():
        pid = cluster.pid(inst)
        if pid is not None:
            _STARTED_PIDS.add(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not a running server
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except FileNotFoundError:
        return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    survivors = sorted(pid for pid in _STARTED_PIDS if alive(pid))
    if survivors:
        print(f"\nERROR: PostgreSQL servers started by the tests are still running: {survivors}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    """A directory the servers' OS user can enter (pytest's own tmp is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="qserv-py-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(work_dir: Path) -> Settings:
    return load_settings({"cluster": work_dir / "cluster", "shared_buffers": "64MB"})


@contextmanager
def running_cluster(settings: Settings, **init: Any) -> Iterator[LocalCluster]:
    """A new local cluster in ``settings.cluster`` (``init`` options as for
    :meth:`LocalCluster.init`), its postmasters recorded; destroyed after the block."""
    cluster = LocalCluster(settings.cluster)
    cluster.init(settings, **init)
    record_pids(cluster)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def local_cluster(settings: Settings) -> Iterator[LocalCluster]:
    """The session's cluster: a czar and two workers."""
    with running_cluster(settings) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def spec(local_cluster: LocalCluster) -> ClusterSpec:
    return local_cluster.spec()


@pytest.fixture(scope="session")
def release(work_dir: Path) -> Path:
    """A small dp02 release: 4,000 objects with their sources and forced sources."""
    out = work_dir / "release"
    generate_release(out, 4_000, sources_per_object=3, forced_per_object=5, seed=11)
    return out


def create_dp02_catalog(spec: ClusterSpec, name: str) -> str:
    """Create a dp02-shaped catalog named ``name`` (empty); its name."""
    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {name}", 1)
    create_catalog(spec, parse_catalog(text, name), text)
    return name


@pytest.fixture
def make_catalog(spec: ClusterSpec) -> Iterator[Callable[[str], str]]:
    """Create dp02-shaped catalogs under new names; dropped after the test."""
    made: list[str] = []

    def make(name: str) -> str:
        made.append(create_dp02_catalog(spec, name))
        return name

    yield make
    for name in made:
        drop_catalog(spec, name)
