"""The local cluster's lifecycle and its errors, on real PostgreSQL instances."""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

import pytest

from qserv_py.cli import main
from qserv_py.cluster.binaries import find_bindir
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.config import Settings, load_settings
from qserv_py.errors import (
    ClusterDirInUse,
    ClusterError,
    HalfInitialisedCluster,
    NoPostgresBinaries,
    NotACluster,
    PortInUse,
)
from tests.conftest import alive, record_pids


@pytest.fixture
def one_worker(work_dir: Path, request: pytest.FixtureRequest) -> Settings:
    return load_settings(
        {"cluster": work_dir / request.node.name, "workers": 1, "shared_buffers": "32MB"}
    )


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_lifecycle(one_worker: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    root = one_worker.cluster
    cluster = LocalCluster(root)
    spec = cluster.init(one_worker)
    record_pids(cluster)
    assert [i.name for i in spec.instances] == ["czar", "worker1"]
    pids = {i.name: cluster.pid(i) for i in cluster.instances()}
    assert all(pids.values())
    for pid in pids.values():
        assert _uid_of(pid) != 0, "PostgreSQL must not run as root"

    cluster.start()  # idempotent: nothing restarts
    cluster.start()
    assert {i.name: cluster.pid(i) for i in cluster.instances()} == pids

    status = cluster.status()
    assert [(s.name, s.role, s.up) for s in status] == [
        ("czar", "czar", True),
        ("worker1", "worker", True),
    ]
    assert all(s.version[0].isdigit() and s.data_bytes > 1_000_000 for s in status)
    ports = {s.port for s in status}
    assert len(ports) == 2

    # status through the CLI, as JSON
    assert main(["cluster", "status", "--dir", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["up"]) for s in shown["instances"]] == [
        ("czar", True),
        ("worker1", True),
    ]
    assert shown["czar_up"] and shown["status"] == "ok"
    assert [(w["name"], w["state"], w["role"]) for w in shown["workers"]] == [
        ("worker1", "up", "active")
    ]

    cluster.stop()
    assert not any(s.up for s in cluster.status())
    assert not any(alive(pid) for pid in pids.values() if pid)
    assert main(["cluster", "status", "--dir", str(root)]) == 3  # not all up

    assert main(["cluster", "start", "--dir", str(root)]) == 0
    record_pids(cluster)
    assert all(s.up for s in cluster.status())
    with connect(cluster.spec().czar) as conn:  # data survived the restart
        row = conn.execute("SELECT max(version) FROM qserv_meta.schema_version").fetchone()
        assert row is not None and row[0] >= 1

    running = [cluster.pid(i) for i in cluster.instances()]
    assert main(["cluster", "destroy", "--dir", str(root)]) == 0
    assert not root.exists()
    assert not any(alive(pid) for pid in running if pid)


def test_init_refuses_a_used_directory(
    spec: object, settings: Settings, work_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ClusterDirInUse, match=r"already holds a cluster \(running: czar"):
        LocalCluster(settings.cluster).init(settings)
    # through the CLI: a clear message, exit 1, no traceback
    assert main(["cluster", "init", "--dir", str(settings.cluster)]) == 1
    assert "already holds a cluster" in capsys.readouterr().err

    foreign = work_dir / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ClusterDirInUse, match="not empty and holds no qserv_py cluster"):
        LocalCluster(foreign).init(settings)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_half_initialised_directory(one_worker: Settings) -> None:
    cluster = LocalCluster(one_worker.cluster)
    cluster.init(one_worker)
    record_pids(cluster)
    cluster.stop()
    # what a killed `cluster init` leaves: the state file still says initialising
    state = tomllib.loads(cluster.state_file.read_text())
    cluster.state_file.write_text(
        cluster.state_file.read_text().replace('"ready"', '"initialising"')
    )
    assert state["state"] == "ready"
    with pytest.raises(HalfInitialisedCluster, match=r"init did not finish.*cluster destroy"):
        cluster.start()
    with pytest.raises(HalfInitialisedCluster):
        cluster.init(one_worker)
    cluster.destroy()
    assert not one_worker.cluster.exists()


def test_port_taken(one_worker: Settings) -> None:
    cluster = LocalCluster(one_worker.cluster)
    cluster.init(one_worker)
    record_pids(cluster)
    cluster.stop()
    worker = cluster.instances()[1]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", worker.port))
        squatter.listen()
        with pytest.raises(PortInUse, match=f"port {worker.port} of worker1 is taken"):
            cluster.start()
    cluster.destroy()
    assert not one_worker.cluster.exists()


def test_explicit_port_taken(one_worker: Settings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = one_worker.model_copy(update={"port": port})
        with pytest.raises(PortInUse, match=f"port {port} is taken"):
            LocalCluster(settings.cluster).init(settings)
    assert not settings.cluster.exists(), "a failed init leaves nothing behind"


def test_no_binaries(
    tmp_path: Path, one_worker: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(NoPostgresBinaries, match="lacks postgres, initdb, pg_ctl"):
        find_bindir(tmp_path)
    code = main(["cluster", "init", "--dir", str(one_worker.cluster), "--pg-bindir", str(tmp_path)])
    assert code == 1
    assert "lacks postgres" in capsys.readouterr().err
    assert not one_worker.cluster.exists()


def test_not_a_cluster(work_dir: Path) -> None:
    with pytest.raises(NotACluster, match="holds no qserv_py cluster"):
        LocalCluster(work_dir / "nothing-here").start()
    with pytest.raises(NotACluster):
        LocalCluster(work_dir / "nothing-here").destroy()


def test_directory_the_server_user_cannot_enter(one_worker: Settings, work_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the servers to another user")
    private = work_dir / "private"
    private.mkdir(mode=0o700)
    settings = one_worker.model_copy(update={"cluster": private / "c"})
    with pytest.raises(ClusterError, match=r"cannot enter .*private.*put the cluster elsewhere"):
        LocalCluster(settings.cluster).init(settings)
    assert not settings.cluster.exists()
