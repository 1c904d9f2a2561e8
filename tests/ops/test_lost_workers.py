"""A worker whose host is gone (its postmaster SIGKILLed, for real): ``worker remove
--lost`` and the service's replication loop bring every chunk back to its level from the
other replicas, and queries answer as before."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import qserv_py
from qserv_py.cli import main
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import QservError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.ops.loop import ReplicationLoop
from qserv_py.ops.rebalance import rebalance
from qserv_py.ops.replicate import live_workers, under_replicated
from qserv_py.ops.workers import (
    add_local_worker,
    remove_lost_worker,
    remove_worker,
    worker_info,
)
from tests.conftest import create_dp02_catalog, record_pids
from tests.killing import kill_postmaster
from tests.ops.conftest import OPS_CATALOG
from tests.ops.test_workers import QUERIES


def _answers(client: qserv_py.Client) -> list[list[dict]]:
    return [client.query(q).to_pylist() for q in QUERIES]


def _kill(cluster: LocalCluster, name: str) -> None:
    """SIGKILL the instance's postmaster: the host is gone, its port refuses."""
    kill_postmaster(cluster, name, wait=False)


def _copies(spec: ClusterSpec) -> dict[int, int]:
    """Copies of each chunk of the catalog (chunks with rows)."""
    with connect(spec.czar, autocommit=True) as czar:
        return dict(
            czar.execute(
                "SELECT s.chunk_id, (SELECT count(*) FROM qserv_meta.placement p"
                "  WHERE p.catalog = s.catalog AND p.chunk_id = s.chunk_id)"
                " FROM qserv_meta.chunk_stats s WHERE s.catalog = %s AND s.table_name = 'object'"
                " AND s.rows > 0",
                (OPS_CATALOG,),
            ).fetchall()
        )


def _under(spec: ClusterSpec) -> list:
    with connect(spec.czar, autocommit=True) as czar:
        return under_replicated(czar, live_workers(spec))


def _holding_worker(cluster: LocalCluster, settings: Settings) -> str:
    """A new worker that holds chunks (added, then the catalog rebalanced)."""
    name = add_local_worker(cluster, settings).name
    record_pids(cluster)
    rebalance(cluster.spec(), catalog=OPS_CATALOG)
    assert worker_info(cluster.spec(), name).chunks > 0
    return name


def test_remove_lost(
    ops_cluster: LocalCluster,
    ops_spec: ClusterSpec,
    ops_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = qserv_py.connect(ops_spec, default_catalog=OPS_CATALOG)
    before = _answers(client)
    name = _holding_worker(ops_cluster, ops_settings)
    held = worker_info(ops_cluster.spec(), name).chunks
    assert _answers(client) == before
    _kill(ops_cluster, name)
    capsys.readouterr()
    code = main(["--cluster", str(ops_cluster.root), "worker", "remove", name, "--lost", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert (report["chunks"], report["lost_chunks"], report["removed"]) == (held, [], True)
    assert report["replication"]["copies"] and not report["replication"]["unrecoverable"]
    spec = ops_cluster.spec()
    assert name not in {w.name for w in spec.workers}
    assert name not in {i.name for i in ops_cluster.instances()}
    assert set(_copies(spec).values()) == {2} and _under(spec) == []
    assert _answers(client) == before
    capsys.readouterr()
    assert main(["--cluster", str(ops_cluster.root), "replicate", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["copies"] == [] and again["unrecoverable"] == []  # nothing left to do


def test_the_loop_declares_a_worker_down_too_long_lost(
    ops_cluster: LocalCluster, ops_spec: ClusterSpec, ops_settings: Settings
) -> None:
    client = qserv_py.connect(ops_spec, default_catalog=OPS_CATALOG)
    before = _answers(client)
    name = _holding_worker(ops_cluster, ops_settings)
    spec = ops_cluster.spec()
    _kill(ops_cluster, name)
    settings = ops_settings.model_copy(update={"worker_lost_after_s": 3600.0})
    first, second = ReplicationLoop(lambda: spec, settings), ReplicationLoop(lambda: spec, settings)
    try:
        assert first.is_leader(spec) and not second.is_leader(spec)
        assert second.run_once() is None  # another process runs the loop
        assert first.declare_lost_workers(spec) == []  # down for less than an hour
        report = first.run_once(now=time.time() + 7200)  # ... and two hours later
        assert report is not None and report.healthy and report.copies
        with connect(spec.czar, autocommit=True) as czar:
            state = czar.execute(
                "SELECT state FROM qserv_meta.workers WHERE name = %s", (name,)
            ).fetchone()
        assert state == ("lost",) and worker_info(spec, name).chunks == 0
        assert set(_copies(spec).values()) == {2} and _under(spec) == []
        first.stop()
        assert second.is_leader(spec)  # the lock went with the first loop's session
    finally:
        first.stop()
        second.stop()
    remove_worker(spec, name, local=ops_cluster)  # lost, holding nothing: it can go
    assert name not in {w.name for w in ops_cluster.spec().workers}
    assert _answers(client) == before


def test_chunks_without_another_copy_are_named_lost(
    ops_cluster: LocalCluster, ops_spec: ClusterSpec, ops_settings: Settings, release: Path
) -> None:
    """Level 1: the chunks a lost worker held alone are gone, and said so."""
    create_dp02_catalog(ops_spec, "solo")
    try:
        load(ops_spec, "solo", "Object", [release / "Object"], LoadOptions(max_rows_per_chunk=400))
        name = add_local_worker(ops_cluster, ops_settings).name
        record_pids(ops_cluster)
        rebalance(ops_cluster.spec(), catalog="solo")
        with connect(ops_spec.czar, autocommit=True) as czar:
            alone = czar.execute(
                "SELECT catalog, chunk_id FROM qserv_meta.placement WHERE worker = %s"
                " AND catalog = 'solo' ORDER BY 1, 2",
                (name,),
            ).fetchall()
        assert alone
        _kill(ops_cluster, name)
        report = remove_lost_worker(ops_cluster.spec(), name, local=ops_cluster)
        assert report.lost_chunks == [(c, int(k)) for c, k in alone] and report.removed
        assert report.replication is not None
        assert sorted(report.replication.unrecoverable) == report.lost_chunks
        client = qserv_py.connect(ops_cluster.spec(), default_catalog="solo")
        with pytest.raises(QservError, match=str(alone[0][1])):
            client.query("SELECT COUNT(*) FROM solo.Object")
    finally:
        drop_catalog(ops_cluster.spec(), "solo")
