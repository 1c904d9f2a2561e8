"""A worker server SIGKILLed mid-stage and mid-publish: the cluster starts again by
itself, the load is resumed or aborted, and queries give exact results.

The tests run on a small cluster of their own (a czar and two workers), as they kill its
servers. Each kill happens at a point the load reports (its progress callback), after
the victim's WAL so far was made durable: then a transaction that created UNLOGGED
staging tables, rolled back by a backend outliving its postmaster, is certain to leave
a data directory that crash recovery cannot start (docs/decisions.md, "Crash safety").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.compute as pc
import pytest

import qserv_py
from qserv_py.cluster import recovery
from qserv_py.cluster.local import LocalCluster
from qserv_py.config import load_settings
from qserv_py.errors import QservError
from qserv_py.loaders.load import LoadOptions, load, resume
from qserv_py.loaders.publish import abort, publish
from qserv_py.loaders.txn import list_txns
from tests.conftest import create_dp02_catalog, record_pids, running_cluster
from tests.killing import flush_wal, kill_postmaster
from tests.loaders.conftest import read_table, worker_count
from tests.loaders.test_crash import _leftovers, _split

VICTIM = "worker1"
OPTIONS = LoadOptions(fixed_order=3, batch_rows=250)  # 4 batches per 1,000-row file


class Killed(Exception):
    """Raised by a progress callback once it has killed the victim."""


@pytest.fixture(scope="module")
def cluster(work_dir: Path) -> Iterator[LocalCluster]:
    root = work_dir / "crash-cluster"
    settings = load_settings({"cluster": root, "shared_buffers": "32MB", "workers": 2})
    with running_cluster(settings) as cluster:
        yield cluster


def _crash(cluster: LocalCluster) -> None:
    flush_wal(cluster, VICTIM)
    kill_postmaster(cluster, VICTIM)
    raise Killed


def _start_again(cluster: LocalCluster) -> None:
    """``cluster start`` brings the victim back, with no repair of its data directory."""
    [inst] = [i for i in cluster.instances() if i.name == VICTIM]
    logged = recovery.log_size(cluster.logfile(inst))
    cluster.start()
    record_pids(cluster)
    assert cluster.pid(inst) is not None
    assert not recovery.unlogged_conflict(cluster.logfile(inst), logged), (
        "crash recovery met an UNLOGGED table without its init fork"
    )


def _assert_exact(cluster: LocalCluster, cat: str, files: Path) -> None:
    objects = read_table(files)
    ids = objects.column("objectId")
    client = qserv_py.connect(cluster.spec())
    got = client.query(
        f"SELECT COUNT(*) AS n, SUM(objectId) AS s, MIN(objectId) AS lo, MAX(objectId) AS hi"
        f" FROM {cat}.Object"
    ).to_pylist()
    assert got == [
        {
            "n": objects.num_rows,
            "s": pc.sum(ids).as_py(),
            "lo": pc.min(ids).as_py(),
            "hi": pc.max(ids).as_py(),
        }
    ]


@pytest.mark.parametrize("then", ["resume", "abort"])
def test_worker_killed_mid_stage(
    cluster: LocalCluster, release: Path, tmp_path: Path, then: str
) -> None:
    spec = cluster.spec()
    cat = create_dp02_catalog(spec, f"wk_stage_{then}")
    total = _split(release, tmp_path / "Object", 4)

    def progress(phase: str, done: int, total_rows: int) -> None:
        # two files staged and committed, and two batches of the third written
        if phase == "staging" and done >= total // 2 + 2 * OPTIONS.batch_rows:
            _crash(cluster)

    with pytest.raises((Killed, psycopg.Error, QservError)):
        load(spec, cat, "Object", [tmp_path / "Object"], OPTIONS, progress=progress)
    _start_again(cluster)
    [record] = list_txns(spec, cat)
    assert record.state == "staging"
    assert sum(f.done for f in record.files) == 2
    assert worker_count(spec, f"{cat}.object") == 0, "nothing is visible"
    if then == "resume":
        # the victim lost what it had staged (UNLOGGED): resume stages all files again
        assert resume(spec, record.id).state == "published"
        _assert_exact(cluster, cat, tmp_path / "Object")
    else:
        abort(spec, record.id)
        assert worker_count(spec, f"{cat}.object") == 0
        assert [t.state for t in list_txns(spec, cat)] == ["aborted"]
    assert _leftovers(spec, cat, record.id) == 0


def test_worker_killed_mid_publish(cluster: LocalCluster, release: Path, tmp_path: Path) -> None:
    spec = cluster.spec()
    cat = create_dp02_catalog(spec, "wk_publish")
    _split(release, tmp_path / "Object", 2)
    staged = load(
        spec, cat, "Object", [tmp_path / "Object"], LoadOptions(fixed_order=3, publish=False)
    )

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "publishing":  # a worker has built its new partitions
            _crash(cluster)

    with pytest.raises((Killed, psycopg.Error, QservError)):
        publish(spec, staged.txn, progress=progress)
    _start_again(cluster)
    [record] = list_txns(spec, cat)
    assert record.state == "publishing"
    assert worker_count(spec, f"{cat}.object") == 0, "never half-visible"
    assert resume(spec, staged.txn).state == "published"
    _assert_exact(cluster, cat, tmp_path / "Object")
    assert _leftovers(spec, cat, staged.txn) == 0
