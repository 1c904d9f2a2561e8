"""The replication controller on a real cluster: a worker declared lost has its copies
restored from the others, with the same query answers before, during and after; a
raised level copies every chunk once more; chunks with no live copy are named."""

from __future__ import annotations

from collections.abc import Callable

import qserv_py
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.ops.replicate import live_workers, replicate, under_replicated
from tests.ops.movement import QueryStream, answers, placement, set_state

Loader = Callable[[str, list[str], int], ClusterSpec]


def test_copies_of_a_lost_worker_are_restored(catalog: Loader) -> None:
    spec = catalog("rp1", ["worker1", "worker2", "worker3"], 2)
    client = qserv_py.connect(spec, default_catalog="rp1")
    healthy = answers(client, "rp1")
    lost = {c for c, ws in placement(spec, "rp1").items() if "worker3" in ws}
    assert lost and all(len(ws) == 2 for ws in placement(spec, "rp1").values())
    # as `worker remove worker3 --lost` leaves it: lost, its copies forgotten
    set_state(spec, "worker3", "lost")
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute(
            "DELETE FROM qserv_meta.placement WHERE catalog = 'rp1' AND worker = 'worker3'"
        )
    live = live_workers(spec)
    assert set(live) == {"worker1", "worker2"}
    under = under_replicated(spec, live, catalog="rp1")
    assert sorted(c for _, c, _, _ in under) == sorted(lost)
    assert {(have, want) for _, _, have, want in under} == {(1, 2)}
    assert answers(client, "rp1") == healthy

    stream = QueryStream(spec, "rp1", healthy)
    stream.start()
    try:
        report = replicate(spec, catalog="rp1")
    finally:
        stream.stop()

    assert (report.unrecoverable, report.short, report.failed) == ((), (), ())
    assert sorted(c.chunk for c in report.copies) == sorted(lost)
    assert under_replicated(spec, live_workers(spec), catalog="rp1") == []
    assert all(ws == {"worker1", "worker2"} for ws in placement(spec, "rp1").values())
    assert stream.runs > 0 and stream.errors == [] and stream.wrong == []
    assert answers(client, "rp1") == healthy
    # run twice: nothing left to do
    assert replicate(spec, catalog="rp1").copies == ()


def test_a_raised_level_and_chunks_with_no_live_copy(catalog: Loader) -> None:
    spec = catalog("rp2", ["worker1", "worker2"], 1)
    client = qserv_py.connect(spec, default_catalog="rp2")
    healthy = answers(client, "rp2")
    before = placement(spec, "rp2")
    only_on_2 = sorted(c for c, ws in before.items() if ws == {"worker2"})
    assert only_on_2

    set_state(spec, "worker2", "lost")
    report = replicate(spec, catalog="rp2")  # nothing to copy from: named, not raised
    assert report.unrecoverable == tuple(("rp2", c) for c in only_on_2)
    assert report.copies == () and not report.healthy
    set_state(spec, "worker2", "active")

    steps: list[tuple[str, int, int]] = []
    report = replicate(spec, catalog="rp2", level=2, progress=lambda *step: steps.append(step))

    assert report.healthy and len(report.copies) == len(before)
    assert steps[0] == ("replicating", 0, len(before))
    assert steps[-1] == ("replicating", len(before), len(before))
    after = placement(spec, "rp2")
    assert all(len(ws) == 2 and before[c] <= ws for c, ws in after.items())
    with connect(spec.czar, autocommit=True) as czar:
        level = czar.execute("SELECT replication FROM qserv_meta.catalogs WHERE name = 'rp2'")
        assert level.fetchone() == (2,)
    assert answers(client, "rp2") == healthy
