"""Recorded checksums (qserv_py.ops.checksums): copies record them on both sides and read
the source's instead of taking it again, a record a copy disagrees with is taken again, a
load that appends in place forgets the records of what it changes, and ``verify``
compares replicas and finds one that holds other rows."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qserv_py.cli import main
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import ClusterError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.ops import chunks
from qserv_py.ops.checksums import verify
from qserv_py.ops.chunks import copy_chunk
from qserv_py.ops.loop import ReplicationLoop
from tests.loaders.conftest import read_table
from tests.ops.conftest import Loader
from tests.ops.movement import placement


def _records(spec: ClusterSpec, worker: str, catalog: str) -> dict[str, tuple[int, int]]:
    """partition → (rows, checksum) that ``worker`` has recorded of ``catalog``."""
    with connect(spec.worker(worker), autocommit=True) as conn:
        return {
            str(name): (int(rows), int(checksum))
            for name, rows, checksum in conn.execute(
                "SELECT r.relname, c.rows, c.checksum FROM qserv.checksums c"
                " JOIN pg_class r ON r.oid = c.relation"
                " JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = %s",
                (catalog,),
            )
        }


def _one_chunk(spec: ClusterSpec, catalog: str, worker: str) -> int:
    return min(chunk for chunk, holders in placement(spec, catalog).items() if worker in holders)


def test_a_copy_records_both_sides_and_reads_the_source_record(
    catalog: Loader, caplog: pytest.LogCaptureFixture
) -> None:
    spec = catalog("ck_copy", ["worker1"], 1)
    chunk = _one_chunk(spec, "ck_copy", "worker1")
    assert not _records(spec, "worker1", "ck_copy")  # a load records nothing

    copy_chunk(spec, "ck_copy", chunk, "worker1", "worker3")
    source, target = _records(spec, "worker1", "ck_copy"), _records(spec, "worker3", "ck_copy")
    assert source == target and source and all(name.endswith(f"_{chunk}") for name in source)
    assert all(rows > 0 for rows, _ in source.values())

    # a wrong record is not believed: the copy takes the source's again, and corrects it
    with connect(spec.worker("worker3"), autocommit=True) as conn:
        conn.execute("UPDATE qserv.checksums SET checksum = checksum + 1")
    with caplog.at_level(logging.WARNING, logger="qserv_py.ops.copy"):
        report = copy_chunk(spec, "ck_copy", chunk, "worker3", "worker2")
    assert report.copied and placement(spec, "ck_copy")[chunk] == {"worker1", "worker2", "worker3"}
    assert "disagree with their copy; taking them again" in caplog.text
    assert _records(spec, "worker3", "ck_copy") == source == _records(spec, "worker2", "ck_copy")


def test_verify_compares_replicas_and_finds_one_that_differs(
    catalog: Loader, ops_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = catalog("ck_verify", ["worker1", "worker2"], 2)
    first = verify(spec, catalog="ck_verify")
    assert first.healthy and first.taken > 0 and first.rows_taken > 0
    assert first.partitions == first.taken  # each partition replica compared once
    again = verify(spec, catalog="ck_verify")
    assert again.healthy and again.taken == 0 and again.partitions == first.partitions

    # a bounded pass takes some and stops; the next takes the rest
    with connect(spec.worker("worker2"), autocommit=True) as conn:
        conn.execute("DELETE FROM qserv.checksums")
    bounded = verify(spec, catalog="ck_verify", max_rows=1)
    assert 0 < bounded.taken < first.taken / 2 and not bounded.disagreements
    rest = verify(spec, catalog="ck_verify")
    assert rest.taken + bounded.taken == first.taken / 2 and rest.healthy

    # one replica's row changed behind qserv_py's back (and its record gone with it)
    chunk = _one_chunk(spec, "ck_verify", "worker2")
    with connect(spec.worker("worker2"), autocommit=True) as conn:
        conn.execute(
            f"UPDATE ck_verify.object_{chunk} SET coord_ra = coord_ra + 1e-9"
            f" WHERE objectid = (SELECT min(objectid) FROM ck_verify.object_{chunk})"
        )
        conn.execute("DELETE FROM qserv.checksums")
    found = verify(spec, catalog="ck_verify")
    assert [(d.chunk, d.partition) for d in found.disagreements] == [(chunk, f"object_{chunk}")]
    (bad,) = found.disagreements
    assert set(bad.sums) == {"worker1", "worker2"} and len(set(bad.sums.values())) == 2
    assert {rows for rows, _ in bad.sums.values()} == {bad.czar_rows}

    # the command line says so, and exits non-zero
    code = main(
        ["--cluster", str(ops_cluster.root), "replicate", "--verify", "--catalog", "ck_verify"]
    )
    out = capsys.readouterr().out
    assert code != 0 and f"ck_verify:{chunk} object_{chunk}: replicas disagree" in out


def test_an_append_in_place_forgets_what_it_changes(
    catalog: Loader, release: Path, tmp_path: Path
) -> None:
    spec = catalog("ck_append", ["worker1", "worker2"], 2)
    assert verify(spec, catalog="ck_append").healthy
    before = _records(spec, "worker1", "ck_append")
    # three new objects where the catalog has rows already (appended in place)
    objects = read_table(release / "Object").slice(0, 3)
    objects = objects.set_column(0, "objectId", pa.array(np.arange(3, dtype=np.int64) + 10**15))
    pq.write_table(objects, tmp_path / "more.parquet")
    options = LoadOptions(replication=2, max_rows_per_chunk=400, min_order=1, max_order=8)
    load(spec, "ck_append", "Object", [tmp_path / "more.parquet"], options)

    after = _records(spec, "worker1", "ck_append")
    changed = set(before) - set(after)
    assert changed and all(name.startswith("object_") for name in changed)
    assert {k: before[k] for k in after} == after  # the others are kept, unchanged
    checked = verify(spec, catalog="ck_append")
    assert checked.healthy and checked.taken == 2 * len(changed)
    grown = _records(spec, "worker1", "ck_append")
    own = [k for k in changed if "_overlap_" not in k]
    assert sum(grown[k][0] - before[k][0] for k in own) == 3


def test_a_copy_does_not_publish_across_a_load(
    catalog: Loader, release: Path, tmp_path: Path
) -> None:
    """A load that began and published while a chunk was copied may have appended rows to
    the source's partitions after the copy's snapshot: the czar's share of the copy's
    publish refuses it (and the whole publish with it)."""
    spec = catalog("ck_race", ["worker1"], 1)
    chunk = _one_chunk(spec, "ck_race", "worker1")
    with connect(spec.czar, autocommit=True) as czar:
        began = chunks._last_load(czar, "ck_race")  # as the copy reads it when it begins
    objects = read_table(release / "Object").slice(0, 2)
    objects = objects.set_column(0, "objectId", pa.array(np.arange(2, dtype=np.int64) + 10**15))
    pq.write_table(objects, tmp_path / "more.parquet")
    options = LoadOptions(replication=1, max_rows_per_chunk=400, min_order=1, max_order=8)
    load(spec, "ck_race", "Object", [tmp_path / "more.parquet"], options)
    with connect(spec.czar) as czar, pytest.raises(ClusterError, match="ran while chunk"):
        chunks._publish_czar(czar, 0, "ck_race", chunk, "worker1", "worker3", False, 1, 1, began)
    with connect(spec.czar, autocommit=True) as czar:  # the next copy begins after it: fine
        assert chunks._last_load(czar, "ck_race") > began
    assert copy_chunk(spec, "ck_race", chunk, "worker1", "worker3").copied


def test_a_loop_pass_with_nothing_to_copy_verifies_within_its_share(
    catalog: Loader, ops_settings: Settings
) -> None:
    # (named to come first: a pass's share goes to the catalogs in name order)
    spec = catalog("aloop", ["worker1", "worker2"], 2)
    before = {w: _records(spec, w, "aloop") for w in ("worker1", "worker2")}
    assert before == {"worker1": {}, "worker2": {}}
    off = ReplicationLoop(lambda: spec, ops_settings.model_copy(update={"verify_rows_per_pass": 0}))
    share = ReplicationLoop(
        lambda: spec, ops_settings.model_copy(update={"verify_rows_per_pass": 1})
    )
    try:
        report = off.run_once()
        assert report is not None and report.healthy and not report.copies
        assert not _records(spec, "worker1", "aloop")  # 0: the loop takes none
        off.stop()
        assert share.run_once() is not None
        first = {w: _records(spec, w, "aloop") for w in ("worker1", "worker2")}
        assert 0 < sum(map(len, first.values())) < 6  # a chunk's replicas, not the catalog's
        share.run_once()
        second = {w: _records(spec, w, "aloop") for w in ("worker1", "worker2")}
        assert sum(map(len, second.values())) > sum(map(len, first.values()))
    finally:
        off.stop()
        share.stop()
