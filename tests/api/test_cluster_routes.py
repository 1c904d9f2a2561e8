"""The cluster-operation routes (``/api/v1/admin/workers``, ``replicate``, ``rebalance``)
on a cluster of their own (a czar and two workers), with and without the admin token."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.config import Settings
from qserv_py.loaders.load import LoadOptions, load
from tests.conftest import create_dp02_catalog, record_pids

TOKEN = "cluster-routes-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUNT = "SELECT COUNT(*) AS n, SUM(objectId) AS s FROM rest.Object"


@pytest.fixture(scope="module")
def rest_settings(settings: Settings, work_dir: Path) -> Settings:
    return settings.model_copy(
        update=dict(
            cluster=work_dir / "rest-cluster",
            workers=2,
            admin_token=TOKEN,
            default_catalog="rest",
            results_dir=work_dir / "rest-results",
        )
    )


@pytest.fixture(scope="module")
def rest_cluster(rest_settings: Settings, release: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(rest_settings.cluster)
    cluster.init(rest_settings)
    record_pids(cluster)
    try:
        spec = cluster.spec()
        create_dp02_catalog(spec, "rest")
        options = LoadOptions(max_rows_per_chunk=500, min_order=2, max_order=8)
        for table in ("Object", "CcdVisit"):
            load(spec, "rest", table, [release / table], options)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def api(rest_cluster: LocalCluster, rest_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(rest_settings, rest_cluster.spec())) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _count(api: TestClient) -> object:
    response = api.post("/api/v1/query", json={"query": COUNT, "lang": "adql"})
    assert response.status_code == 200, response.text
    return response.json()["rows"]


ROUTES = (
    ("GET", "/api/v1/admin/workers"),
    ("POST", "/api/v1/admin/workers"),
    ("POST", "/api/v1/admin/workers/worker1/drain"),
    ("DELETE", "/api/v1/admin/workers/worker1"),
    ("POST", "/api/v1/admin/replicate"),
    ("POST", "/api/v1/admin/rebalance"),
)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_the_routes_need_the_token(api: TestClient, method: str, path: str) -> None:
    body = {"dsn": "postgresql://x@127.0.0.1:1/x"} if method == "POST" else None
    assert api.request(method, path, json=body).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert api.request(method, path, json=body, headers=wrong).status_code == 401


def test_mistakes_are_4xx_and_change_nothing(api: TestClient, rest_cluster: LocalCluster) -> None:
    file = rest_cluster.root / "cluster.toml"
    text = file.read_text()
    listed = api.get("/api/v1/admin/workers", headers=AUTH)
    assert listed.status_code == 200
    assert [(w["name"], w["state"]) for w in listed.json()] == [
        ("worker1", "active"),
        ("worker2", "active"),
    ]
    unreachable = {"dsn": f"postgresql://qserv:x@127.0.0.1:{_free_port()}/qserv", "name": "w3"}
    response = api.post("/api/v1/admin/workers", json=unreachable, headers=AUTH)
    assert response.status_code == 400 and "cannot connect" in response.json()["message"]
    response = api.post("/api/v1/admin/workers", json={"dsn": "host=x = ="}, headers=AUTH)
    assert response.status_code == 400 and "invalid DSN" in response.json()["message"]
    response = api.post("/api/v1/admin/workers/nobody/drain", headers=AUTH)
    assert response.status_code == 404 and "nobody" in response.json()["message"]
    assert api.delete("/api/v1/admin/workers/nobody", headers=AUTH).status_code == 404
    response = api.delete("/api/v1/admin/workers/worker1", headers=AUTH)
    assert response.status_code == 409 and "worker drain worker1" in response.json()["message"]
    response = api.post("/api/v1/admin/replicate", json={"level": 0}, headers=AUTH)
    assert response.status_code == 400
    response = api.post("/api/v1/admin/rebalance", json={"catalog": "nope"}, headers=AUTH)
    assert response.status_code == 404
    assert file.read_text() == text
    assert len(api.get("/api/v1/admin/workers", headers=AUTH).json()) == 2


def test_add_rebalance_drain_remove(
    api: TestClient, rest_cluster: LocalCluster, rest_settings: Settings
) -> None:
    before = _count(api)
    server = rest_cluster.add_worker_instance(rest_settings)  # a server, not a worker yet
    record_pids(rest_cluster)
    response = api.post(
        "/api/v1/admin/workers", json={"dsn": server.dsn, "name": "extra"}, headers=AUTH
    )
    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["state"]) == ("extra", "active")
    service = api.app.state.service  # type: ignore[attr-defined]
    assert "extra" in {w.name for w in service.spec.workers}
    with connect(service.spec.worker("extra"), autocommit=True) as conn:
        # TAP_SCHEMA (made by the service) is a replicated catalog: its rows were copied
        found = conn.execute("SELECT count(*) FROM tap_schema.columns").fetchone()
        assert found is not None and found[0] > 0

    response = api.post("/api/v1/admin/rebalance", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["moves"] and response.json()["rows_after"]["extra"] > 0
    assert _count(api) == before

    response = api.post("/api/v1/admin/workers/extra/drain", headers=AUTH)
    assert response.status_code == 200, response.text
    listed = {w["name"]: w for w in api.get("/api/v1/admin/workers", headers=AUTH).json()}
    assert listed["extra"]["chunks"] == 0 and listed["extra"]["state"] == "removable"
    assert _count(api) == before

    response = api.delete("/api/v1/admin/workers/extra", headers=AUTH)
    assert response.status_code == 200, response.text
    assert "extra" not in {w["name"] for w in api.get("/api/v1/admin/workers", headers=AUTH).json()}
    assert "extra" not in {w.name for w in service.spec.workers}
    assert _count(api) == before
    rest_cluster.remove_worker_instance(server.name, purge=True)

    response = api.post("/api/v1/admin/replicate", json={"catalog": "rest"}, headers=AUTH)
    assert response.status_code == 200 and response.json()["healthy"] is True
    response = api.post(
        "/api/v1/admin/replicate", json={"catalog": "rest", "verify": True}, headers=AUTH
    )
    checked = response.json()["verify"]
    assert response.status_code == 200 and checked["healthy"] is True, response.text
    assert checked["partitions"] > 0 and checked["disagreements"] == []


def test_the_replication_loop_lives_with_the_service(
    rest_cluster: LocalCluster, rest_settings: Settings
) -> None:
    from qserv_py.ops.loop import LOOP_LOCK

    def lock_held() -> bool:
        with connect(rest_cluster.spec().czar, autocommit=True) as czar:
            row = czar.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
                " AND granted",
                (LOOP_LOCK,),
            ).fetchone()
        return bool(row and row[0])

    off = create_app(rest_settings, rest_cluster.spec())
    with TestClient(off):
        assert not off.state.replication.running  # replication_interval_s = 0: off
    on = create_app(
        rest_settings.model_copy(update={"replication_interval_s": 0.05}), rest_cluster.spec()
    )
    with TestClient(on):
        loop = on.state.replication
        assert loop.running
        deadline = time.monotonic() + 60
        while not lock_held():  # its first pass took the lock
            assert time.monotonic() < deadline, "the loop made no pass in 60 s"
            time.sleep(0.05)
    deadline = time.monotonic() + 60  # stopped with the service; its lock goes with it
    while loop.running or lock_held():
        assert time.monotonic() < deadline, "the loop outlived the service"
        time.sleep(0.05)
