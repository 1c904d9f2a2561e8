"""Connections to the cluster's databases: sessions kept for the length of a load."""

from __future__ import annotations

import psycopg

from qserv_py.cluster.db import connect, kept_sessions
from qserv_py.cluster.spec import ClusterSpec


def _pid(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid


def test_kept_sessions_are_reused_as_new(spec: ClusterSpec) -> None:
    """Inside ``kept_sessions`` a closed session comes back, its settings reset and its
    session locks released; one closed inside a transaction does not; after the block
    every session is closed."""
    worker = spec.workers[0]
    with kept_sessions():
        with connect(worker, autocommit=True) as conn:
            first = _pid(conn)
            conn.execute("SET work_mem = '7MB'")
            conn.execute("SELECT pg_advisory_lock(424242)")
        with connect(worker) as conn:  # not autocommit: the same session, as asked
            assert _pid(conn) == first and not conn.autocommit
            assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)
            held = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242"
            ).fetchone()
            assert held == (0,)
        conn = connect(worker)
        assert _pid(conn) == first
        conn.execute("SELECT 1")  # a transaction left open: the session is really closed
        conn.close()
        with connect(worker, autocommit=True) as other:
            assert _pid(other) != first
            kept = other
    assert kept.closed  # the block's end closes the sessions it kept
    with connect(worker, autocommit=True) as conn:
        assert conn is not kept
