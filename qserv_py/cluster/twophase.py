"""Atomic changes across the cluster: two-phase commit with the czar as coordinator.

The protocol (presumed abort):

1. Do the work on every worker inside a transaction with a global id (gid), and the
   czar's share of the work in an ordinary transaction that also records the gid in
   ``qserv_meta.twophase_decisions``. The coordinator holds a session advisory lock on the
   gid on the czar from start to end.
2. ``PREPARE TRANSACTION`` on every worker. Any failure so far rolls everything back.
3. Commit the czar's transaction: this is the decision.
4. ``COMMIT PREPARED`` on every worker.

If the coordinator dies, a prepared transaction is left in doubt on some workers;
:func:`recover_in_doubt` settles it: commit if the decision row exists, else roll back,
skipping gids whose advisory lock is still held (their coordinator is alive).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import ClusterError

GID_PREFIX = "qserv_py:"
Work = Callable[[psycopg.Connection], None]


def commit_two_phase(
    spec: ClusterSpec,
    worker_work: Mapping[str, Work],
    czar_work: Work | None = None,
    *,
    label: str,
    every_worker: bool = False,
) -> str:
    """Run ``worker_work[name]`` on each named worker and ``czar_work`` on the czar, atomically.

    ``every_worker``: the change must reach every worker the czar knows (not declared
    lost): a worker added meanwhile (``qserv-py worker add``, by another process) makes
    it fail before the decision, and an add waits for the decision (a SHARE lock on
    ``qserv_meta.workers``), so no worker can miss a catalog or a load.

    Returns the gid. Raises what the work raised (after rolling everything back).

    On Citus (czar and sole worker: the coordinator's database) the work is one ordinary
    transaction there instead (:func:`qserv_py.cluster.citus.commit_on_coordinator`).
    """
    if spec.backend == "citus":
        from qserv_py.cluster.citus import commit_on_coordinator

        return commit_on_coordinator(spec, worker_work, czar_work, label=label)
    gid = f"{GID_PREFIX}{label}:{uuid.uuid4().hex}"
    czar = connect(spec.czar)
    conns: dict[str, psycopg.Connection] = {}
    prepared: list[psycopg.Connection] = []
    try:
        czar.execute("SELECT pg_advisory_lock(hashtext(%s))", (gid,))
        czar.commit()
        for name in worker_work:
            conns[name] = connect(spec.worker(name))

        def begin(name: str | None) -> None:
            if name is None:
                assert czar_work is not None
                czar_work(czar)
            else:
                conns[name].tpc_begin(gid)
                worker_work[name](conns[name])

        # all at once, the czar's share too: a publish's inserts take a while each (the
        # czar's into the director index as long as a worker's)
        on_each([*worker_work, *([None] if czar_work is not None else [])], begin)
        if every_worker:
            _check_every_worker(czar, set(worker_work), label)
        czar.execute("INSERT INTO qserv_meta.twophase_decisions (gid) VALUES (%s)", (gid,))
        for conn in conns.values():
            conn.tpc_prepare()
            prepared.append(conn)
    except BaseException:
        for conn in conns.values():
            _quietly(conn.tpc_rollback if conn in prepared else conn.rollback)
        _quietly(czar.rollback)
        _release(czar, gid)
        for conn in conns.values():
            conn.close()
        raise
    czar.commit()  # the decision
    for conn in conns.values():
        conn.tpc_commit()
        conn.close()
    czar.execute("DELETE FROM qserv_meta.twophase_decisions WHERE gid = %s", (gid,))
    czar.commit()
    _release(czar, gid)
    return gid


def _check_every_worker(czar: psycopg.Connection, named: set[str], label: str) -> None:
    czar.execute("LOCK TABLE qserv_meta.workers IN SHARE MODE")
    known = {
        r[0] for r in czar.execute("SELECT name FROM qserv_meta.workers WHERE state <> 'lost'")
    }
    if missing := sorted(known - named):
        raise ClusterError(
            f"{label}: the czar has workers this process does not know ({', '.join(missing)}: "
            "added meanwhile?); nothing was changed: run it again (the cluster file is read "
            "again)"
        )


def _release(czar: psycopg.Connection, gid: str) -> None:
    try:
        czar.execute("SELECT pg_advisory_unlock(hashtext(%s))", (gid,))
        czar.commit()
    finally:
        czar.close()


def _quietly(fn: Callable[[], object]) -> None:
    with contextlib.suppress(psycopg.Error):
        fn()


@dataclass(frozen=True)
class Resolution:
    worker: str
    gid: str
    committed: bool


def recover_in_doubt(spec: ClusterSpec) -> list[Resolution]:
    """Settle prepared transactions left by dead coordinators; return what was done."""
    done: list[Resolution] = []
    with connect(spec.czar, autocommit=True) as czar:
        for worker in spec.workers:
            done.extend(_recover_worker(czar, worker))
        czar.execute(
            "DELETE FROM qserv_meta.twophase_decisions WHERE decided_at < now() - interval '1 day'"
        )
    return done


def _recover_worker(czar: psycopg.Connection, worker: Instance) -> list[Resolution]:
    done = []
    with connect(worker, autocommit=True) as conn:
        gids = [
            row[0]
            for row in conn.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s AND database = "
                "current_database()",
                (GID_PREFIX + "%",),
            )
        ]
        for gid in gids:
            locked = czar.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (gid,)).fetchone()
            if not (locked and locked[0]):
                continue  # its coordinator is still at work
            try:
                decided = czar.execute(
                    "SELECT 1 FROM qserv_meta.twophase_decisions WHERE gid = %s", (gid,)
                ).fetchone()
                verb = "COMMIT PREPARED {}" if decided else "ROLLBACK PREPARED {}"
                conn.execute(sql.SQL(verb).format(sql.Literal(gid)))
                done.append(Resolution(worker.name, gid, bool(decided)))
            finally:
                czar.execute("SELECT pg_advisory_unlock(hashtext(%s))", (gid,))
    return done
