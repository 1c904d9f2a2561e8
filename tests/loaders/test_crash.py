"""Loads killed (SIGKILL) mid-stage and mid-publish: never half-visible, never duplicated,
and they can be resumed or aborted."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from qserv_py.cli import main
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import LoadError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.loaders.publish import publish
from qserv_py.loaders.txn import list_txns
from qserv_py.schema.ddl import dirindex_table
from tests.loaders.conftest import read_table, worker_count, worker_rows


def _split(release: Path, out: Path, files: int) -> int:
    objects = read_table(release / "Object")
    out.mkdir()
    step = -(-objects.num_rows // files)
    for i in range(files):
        pq.write_table(objects.slice(i * step, step), out / f"part-{i:03d}.parquet")
    return objects.num_rows


def _cli(spec: ClusterSpec, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "qserv_py.cli", "--cluster", str(spec.path), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(
    spec: ClusterSpec, sql: str, proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    with connect(spec.czar, autocommit=True) as czar:
        while time.monotonic() < deadline:
            row = czar.execute(sql).fetchone()
            if row and row[0]:
                return
            assert proc.poll() is None, (
                f"the load ended first: {proc.stderr.read() if proc.stderr else ''}"
            )
            time.sleep(0.005)
    raise AssertionError(f"timed out waiting for: {sql}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=30)


def _only_txn(spec: ClusterSpec, catalog: str) -> int:
    [txn] = list_txns(spec, catalog)
    return txn.id


def _leftovers(spec: ClusterSpec, catalog: str, txn: int) -> int:
    """Staging tables, unattached partition builds and prepared transactions left over."""
    total = 0
    for inst in spec.instances:
        with connect(inst) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND ((n.nspname = 'qserv_stage' AND c.relname ~ %s)"
                " OR (n.nspname = %s AND c.relname ~ %s AND NOT c.relispartition))",
                (rf"^s{txn}(_|$)", catalog, rf"^n{txn}_"),
            ).fetchone()
            prepared = conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()
            total += (row[0] if row else 0) + (prepared[0] if prepared else 0)
    return total


@pytest.mark.parametrize("then", ["resume", "abort"])
def test_killed_while_staging(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path, then: str
) -> None:
    cat = make_catalog(f"ld_kill_{then}")
    total = _split(release, tmp_path / "Object", 40)
    proc = _cli(
        spec,
        "load",
        cat,
        "Object",
        str(tmp_path / "Object"),
        "--max-rows-per-chunk",
        "100",
        "--min-order",
        "2",
    )
    _wait_for(
        spec,
        "SELECT count(*) >= 3 FROM qserv_meta.load_files f JOIN qserv_meta.load_txns t"
        f" ON t.id = f.txn WHERE t.catalog = '{cat}' AND f.done",
        proc,
    )
    _kill(proc)
    txn = _only_txn(spec, cat)
    assert [t.state for t in list_txns(spec, cat)] == ["staging"]
    assert worker_count(spec, f"{cat}.object") == 0, "nothing is visible"
    assert main(["--cluster", str(spec.path), "txn", then, str(txn)]) == 0
    if then == "resume":
        assert worker_count(spec, f"{cat}.object") == total
        ids = [r[0] for r in worker_rows(spec, f"SELECT objectid FROM {cat}.object")]
        assert len(set(ids)) == total, "never duplicated"
        with connect(spec.czar) as czar:
            assert czar.execute(
                f"SELECT count(*) FROM {dirindex_table(cat, 'Object')}"
            ).fetchone() == (total,)
    else:
        assert worker_count(spec, f"{cat}.object") == 0
        assert [t.state for t in list_txns(spec, cat)] == ["aborted"]
    assert _leftovers(spec, cat, txn) == 0


def test_killed_while_publishing(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    cat = make_catalog("ld_kill_publish")
    staged = load(
        spec, cat, "Object", [release / "Object"], LoadOptions(publish=False, fixed_order=3)
    )
    total = staged.rows
    interrupted = 0
    for delay in (0.0, 0.2, 0.5):  # kill at several points of the publish
        proc = _cli(spec, "txn", "publish", str(staged.txn))
        _wait_for(
            spec,
            f"SELECT state = 'publishing' FROM qserv_meta.load_txns WHERE id = {staged.txn}",
            proc,
        )
        time.sleep(delay)
        if proc.poll() is not None:
            break
        _kill(proc)
        visible = worker_count(spec, f"{cat}.object")
        assert visible in (0, total), "never half-visible"
        if visible == total:
            break
        interrupted += 1
    assert interrupted >= 1, "the test must kill a publish before it completes"
    assert main(["--cluster", str(spec.path), "txn", "publish", str(staged.txn)]) == 0
    assert worker_count(spec, f"{cat}.object") == total
    ids = [r[0] for r in worker_rows(spec, f"SELECT objectid FROM {cat}.object")]
    assert len(set(ids)) == len(ids) == total
    assert [t.state for t in list_txns(spec, cat)] == ["published"]
    assert _leftovers(spec, cat, staged.txn) == 0


def test_staging_lost_by_a_worker_restart_is_staged_again(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str]
) -> None:
    """UNLOGGED staging is emptied when a worker restarts: publish must notice, and a
    resume stages the load again."""
    cat = make_catalog("ld_lost_stage")
    staged = load(spec, cat, "Object", [release / "Object"], LoadOptions(publish=False))
    with connect(spec.workers[0], autocommit=True) as conn:
        conn.execute(f"TRUNCATE qserv_stage.s{staged.txn}")  # what crash recovery does
    with pytest.raises(LoadError, match="did that server restart"):
        publish(spec, staged.txn)
    assert worker_count(spec, f"{cat}.object") == 0, "nothing was published"
    [record] = list_txns(spec, cat)
    assert record.state == "staged" and "txn resume" in (record.error or "")
    # (`txn publish` resumes the load: it stages the lost rows again, then publishes)
    assert main(["--cluster", str(spec.path), "txn", "publish", str(staged.txn)]) == 0
    assert worker_count(spec, f"{cat}.object") == staged.rows
    ids = [r[0] for r in worker_rows(spec, f"SELECT objectid FROM {cat}.object")]
    assert len(set(ids)) == len(ids) == staged.rows
    assert _leftovers(spec, cat, staged.txn) == 0
