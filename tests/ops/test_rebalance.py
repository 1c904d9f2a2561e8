"""Rebalance and drain on a real cluster, with a stream of queries running meanwhile
that must see no error and no wrong row."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from pathlib import Path

import pytest

import qserv_py
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import WorkerOpError
from qserv_py.ops import rebalance as rebalance_module
from qserv_py.ops.copy import TEMP_PREFIX
from qserv_py.ops.rebalance import TOLERANCE, drain, plan_moves, rebalance
from qserv_py.ops.workers import add_local_worker, remove_worker
from tests.ops.movement import (
    QueryStream,
    answers,
    load_catalog,
    partitions,
    placement,
    worker_rows,
)

Loader = Callable[[str, list[str], int], ClusterSpec]


def _chunks_held(spec: ClusterSpec, worker: str, catalog: str) -> set[int]:
    """Chunks of which ``worker`` has partitions (no copy-in-progress tables)."""
    names = partitions(spec, worker, catalog)
    assert not [n for n in names if n.startswith(TEMP_PREFIX)]
    return {int(n.rsplit("_", 1)[1]) for n in names}


def test_rebalance_evens_rows_onto_a_new_worker(catalog: Loader) -> None:
    spec = catalog("rb1", ["worker1", "worker2"], 1)  # worker3 came later: empty
    client = qserv_py.connect(spec, default_catalog="rb1")
    healthy = answers(client, "rb1")
    assert worker_rows(spec, "rb1")["worker3"] == 0

    stream = QueryStream(spec, "rb1", healthy)
    stream.start()
    steps: list[tuple[str, int, int]] = []
    try:
        report = rebalance(spec, catalog="rb1", progress=lambda *step: steps.append(step))
    finally:
        stream.stop()
    assert steps[-1] == ("moving", len(report.moves), len(report.moves))

    assert report.moves and report.failed == () and report.pending_drops == 0
    rows = worker_rows(spec, "rb1")
    mean = sum(rows.values()) / len(rows)
    assert all(abs(n - mean) <= TOLERANCE * mean for n in rows.values()), rows
    assert dict(report.rows_after) == rows
    held = placement(spec, "rb1")
    assert all(len(ws) == 1 for ws in held.values())
    for worker in ("worker1", "worker2", "worker3"):  # old copies dropped, nothing else
        assert _chunks_held(spec, worker, "rb1") == {c for c, ws in held.items() if worker in ws}
    assert stream.runs > 0 and stream.errors == [] and stream.wrong == []
    assert answers(client, "rb1") == healthy
    assert rebalance(spec, catalog="rb1").moves == ()  # even already


def test_drain_empties_a_worker(
    ops_cluster: LocalCluster, ops_settings: Settings, release: Path
) -> None:
    """A worker added for the test (so that it holds this catalog's chunks only) is
    drained while queries run, then removed."""
    add_local_worker(ops_cluster, ops_settings)
    spec = ops_cluster.spec()
    new = spec.workers[-1].name
    try:
        # fewer, bigger chunks than the other tests': a dozen moves show the drain as well
        load_catalog(
            spec,
            "dr1",
            release,
            ["worker1", "worker2", new],
            2,
            max_rows_per_chunk=1500,
            min_order=0,
        )
        client = qserv_py.connect(spec, default_catalog="dr1")
        healthy = answers(client, "dr1")
        before = placement(spec, "dr1")
        assert any(new in ws for ws in before.values())

        stream = QueryStream(spec, "dr1", healthy)
        stream.start()
        try:
            report = drain(spec, new)
        finally:
            stream.stop()

        assert report.failed == () and report.pending_drops == 0
        assert len(report.moves) == sum(new in ws for ws in before.values())
        assert all(m.catalog == "dr1" and m.source == new for m in report.moves)
        after = placement(spec, "dr1")
        assert set(after) == set(before)
        assert all(len(ws) == 2 and new not in ws for ws in after.values())
        assert _chunks_held(spec, new, "dr1") == set()
        with connect(spec.czar, autocommit=True) as czar:
            left = czar.execute(
                "SELECT count(*) FROM qserv_meta.placement WHERE worker = %s", (new,)
            )
            assert left.fetchone() == (0,)
            state = czar.execute("SELECT state FROM qserv_meta.workers WHERE name = %s", (new,))
            assert state.fetchone() == ("removable",)
        assert stream.runs > 0 and stream.errors == [] and stream.wrong == []
        assert answers(client, "dr1") == healthy
    finally:
        drop_catalog(spec, "dr1")
        remove_worker(ops_cluster.spec(), new, local=ops_cluster, purge=True)
    # a drain that cannot keep a chunk's copies refuses before it moves anything
    with pytest.raises(WorkerOpError, match="every other active worker"):
        plan_moves({("c", 1): {"a", "b"}}, {("c", 1): 5}, ["b"], ["a"])


def test_plan_moves_even_out_and_never_stack_copies() -> None:
    holders = {("c", i): {"a"} for i in range(10)} | {("c", 10 + i): {"a", "b"} for i in range(4)}
    sizes = {key: 100 + key[1] for key in holders}
    moves = plan_moves(holders, sizes, ["a", "b", "c"])
    rows = dict.fromkeys("abc", 0)
    after = {k: set(v) for k, v in holders.items()}
    for cat, chunk, source, target in moves:
        assert target not in after[(cat, chunk)]
        after[(cat, chunk)] = (after[(cat, chunk)] - {source}) | {target}
    for key, ws in after.items():
        for w in ws:
            rows[w] += sizes[key]
    mean = sum(rows.values()) / 3
    assert all(abs(n - mean) <= TOLERANCE * mean for n in rows.values()), rows
    assert len({(c, k) for c, k, _, _ in moves}) == len(moves)  # no chunk moved twice


def test_doctests() -> None:
    assert doctest.testmod(rebalance_module).failed == 0
