"""The README's main job: `qserv-py up` creates, starts and loads a local cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from qserv_py.cli import main
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.stats import catalog_stats
from tests.conftest import alive, record_pids


def test_up_twice_then_destroy(work_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = work_dir / "main-job"
    args = ["up", "--dir", str(root), "--objects", "1500"]
    cluster = LocalCluster(root)
    try:
        assert main(args) == 0
        record_pids(cluster)
        out = capsys.readouterr().out
        assert "loaded dp02.Object: 1,500 rows" in out and "loaded dp02.CcdVisit" in out
        stats = {t.name: t.rows for t in catalog_stats(cluster.spec(), "dp02").tables}
        assert stats["Object"] == 1500 and stats["ForcedSource"] > 1500 * 5
        assert main(args) == 0  # again: starts what is stopped, loads nothing twice
        assert "loaded dp02" not in capsys.readouterr().out
        assert {t.name: t.rows for t in catalog_stats(cluster.spec(), "dp02").tables} == stats
        pids = [cluster.pid(i) for i in cluster.instances()]
    finally:
        cluster.destroy()
    assert not any(alive(p) for p in pids if p)
