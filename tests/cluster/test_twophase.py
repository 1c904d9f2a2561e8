"""Two-phase commits across the cluster, and recovery of in-doubt transactions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.twophase import GID_PREFIX, commit_two_phase, recover_in_doubt
from qserv_py.errors import ClusterError


@pytest.fixture
def probe(spec: ClusterSpec) -> Iterator[ClusterSpec]:
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.probe (tag text)")
    yield spec
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            conn.execute("DROP TABLE public.probe")


def _tags(spec: ClusterSpec) -> list[set[str]]:
    out = []
    for worker in spec.workers:
        with connect(worker) as conn:
            out.append({r[0] for r in conn.execute("SELECT tag FROM public.probe")})
    return out


def _insert(tag: str):  # type: ignore[no-untyped-def]
    return lambda conn: conn.execute("INSERT INTO public.probe VALUES (%s)", (tag,))


def test_commit_everywhere(probe: ClusterSpec) -> None:
    commit_two_phase(probe, {w.name: _insert("a") for w in probe.workers}, label="test")
    assert _tags(probe) == [{"a"}] * len(probe.workers)


def test_failure_rolls_back_everywhere(probe: ClusterSpec) -> None:
    def boom(conn: psycopg.Connection) -> None:
        conn.execute("INSERT INTO public.no_such_table VALUES (1)")

    work = {w.name: _insert("b") for w in probe.workers}
    work[probe.workers[-1].name] = boom
    with pytest.raises(psycopg.errors.UndefinedTable):
        commit_two_phase(probe, work, label="test")
    assert _tags(probe) == [set()] * len(probe.workers)
    with connect(probe.czar) as czar:
        assert czar.execute("SELECT count(*) FROM qserv_meta.twophase_decisions").fetchone() == (0,)


def _prepare(spec: ClusterSpec, gid: str, tag: str) -> None:
    """What a coordinator that died after PREPARE leaves on every worker."""
    for worker in spec.workers:
        conn = connect(worker)
        conn.tpc_begin(gid)
        conn.execute("INSERT INTO public.probe VALUES (%s)", (tag,))
        conn.tpc_prepare()
        conn.close()


def test_recover_in_doubt(probe: ClusterSpec) -> None:
    decided, undecided, busy = (f"{GID_PREFIX}test:{uuid.uuid4().hex}" for _ in range(3))
    _prepare(probe, decided, "decided")
    _prepare(probe, undecided, "undecided")
    _prepare(probe, busy, "busy")
    with connect(probe.czar, autocommit=True) as czar:
        czar.execute("INSERT INTO qserv_meta.twophase_decisions (gid) VALUES (%s)", (decided,))
    # a live coordinator holds the lock of its gid: recovery must leave that one alone
    with connect(probe.czar, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (busy,))
        done = recover_in_doubt(probe)
        assert {(r.gid, r.committed) for r in done} == {(decided, True), (undecided, False)}
        assert len(done) == 2 * len(probe.workers)
        assert _tags(probe) == [{"decided"}] * len(probe.workers)
    done = recover_in_doubt(probe)  # the coordinator is gone now, undecided: roll back
    assert {(r.gid, r.committed) for r in done} == {(busy, False)}
    assert _tags(probe) == [{"decided"}] * len(probe.workers)
    for worker in probe.workers:
        with connect(worker) as conn:
            assert conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)


def test_every_worker_refuses_a_worker_it_does_not_know(probe: ClusterSpec) -> None:
    """A change for every worker fails, changing nothing, when the czar knows a worker the
    caller's cluster file does not (one added by another process meanwhile)."""
    with connect(probe.czar, autocommit=True) as czar:
        czar.execute("INSERT INTO qserv_meta.workers (name, dsn) VALUES ('newcomer', 'x')")
    try:
        with pytest.raises(ClusterError, match="newcomer"):
            commit_two_phase(
                probe,
                {w.name: _insert("late") for w in probe.workers},
                label="test",
                every_worker=True,
            )
        assert all("late" not in tags for tags in _tags(probe))
        with connect(probe.czar, autocommit=True) as czar:
            czar.execute("UPDATE qserv_meta.workers SET state = 'lost' WHERE name = 'newcomer'")
        commit_two_phase(  # a worker declared lost does not count
            probe, {w.name: _insert("now") for w in probe.workers}, label="t", every_worker=True
        )
        assert all("now" in tags for tags in _tags(probe))
    finally:
        with connect(probe.czar, autocommit=True) as czar:
            czar.execute("DELETE FROM qserv_meta.workers WHERE name = 'newcomer'")
