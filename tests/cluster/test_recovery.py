"""``cluster start`` after a SIGKILLed postmaster: leftover backends, a zombie, and a
data directory that PostgreSQL's crash recovery cannot start by itself.

A small cluster of its own (a czar and one worker), as the tests kill its servers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from qserv_py.cluster import recovery
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.config import load_settings
from tests.conftest import record_pids, running_cluster
from tests.killing import flush_wal, kill_postmaster

VICTIM = "worker1"


@pytest.fixture(scope="module")
def cluster(work_dir: Path) -> Iterator[LocalCluster]:
    root = work_dir / "recovery-cluster"
    settings = load_settings({"cluster": root, "shared_buffers": "32MB", "workers": 1})
    with running_cluster(settings) as cluster:
        yield cluster


def _start(cluster: LocalCluster) -> bool:
    """Start the cluster; whether the victim's recovery met the unlogged-table failure."""
    [inst] = [i for i in cluster.instances() if i.name == VICTIM]
    logged = recovery.log_size(cluster.logfile(inst))
    cluster.start()
    record_pids(cluster)
    return recovery.unlogged_conflict(cluster.logfile(inst), logged)


def test_unlogged_table_of_a_rolled_back_transaction_is_repaired(cluster: LocalCluster) -> None:
    """PostgreSQL's own failure, made on purpose: a transaction creates and fills an
    UNLOGGED table, the WAL up to there is flushed, the postmaster is killed, and the
    backend rolls back on its way out."""
    worker = cluster.spec().worker(VICTIM)
    with closing(connect(worker)) as conn:  # (a transaction is open: it is never ended)
        conn.execute("CREATE UNLOGGED TABLE doomed AS SELECT g FROM generate_series(1, 1000) g")
        flush_wal(cluster, VICTIM)
        kill_postmaster(cluster, VICTIM)
    assert _start(cluster), "PostgreSQL alone could not start this data directory"
    with connect(worker, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('doomed')").fetchone() == (None,)
        conn.execute("CREATE UNLOGGED TABLE kept (x int)")  # the server works
        conn.execute("INSERT INTO kept VALUES (1)")
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)


def test_backends_left_running_are_ended(cluster: LocalCluster) -> None:
    """A backend busy in a statement never notices that its postmaster died; while it
    runs, the server cannot start (its shared memory is in use)."""
    worker = cluster.spec().worker(VICTIM)
    failure: list[BaseException] = []

    def busy() -> None:
        try:
            with connect(worker, autocommit=True) as conn:
                conn.execute("SELECT count(*) FROM generate_series(1, 10000000000)")
        except BaseException as exc:  # the connection ends with its backend
            failure.append(exc)

    thread = threading.Thread(target=busy)
    thread.start()
    with connect(worker, autocommit=True) as conn:
        while not conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%generate_series(1, 1%%'"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone()[0]:  # type: ignore[index]
            pass
    left = kill_postmaster(cluster, VICTIM, wait=False)
    datadir = cluster.datadir(next(i for i in cluster.instances() if i.name == VICTIM))
    assert recovery.server_processes(datadir, cluster.bindir / "postgres"), "a backend runs on"
    assert not _start(cluster)
    thread.join(timeout=120)
    assert failure and isinstance(failure[0], psycopg.OperationalError)
    assert not [p for p in left if recovery.state(p) not in (None, "Z", "X")]
    with connect(worker, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
