"""Connections to the cluster's databases: sessions kept for the length of a load, and
the COPY reader that relays rows between servers."""

from __future__ import annotations

import os
import signal

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from qserv_py.cluster import db
from qserv_py.cluster.db import connect, copy_out, kept_sessions
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


ROWS_SQL = (
    "SELECT g, g * 0.5 AS half, repeat('x', g % 97) AS pad, CASE WHEN g % 7 = 0 THEN NULL"
    " ELSE g END AS sometimes FROM generate_series(1, 20000) AS g"
)


#: rows made one by one (generate_series would first make all of them): unless it is
#: cancelled, this copy runs for many minutes
ENDLESS = (
    "COPY (WITH RECURSIVE r(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM r)"
    " SELECT g FROM r LIMIT 10000000000) TO STDOUT"
)


def _iterated(conn: psycopg.Connection, statement: str) -> bytes:
    """The bytes of ``statement`` through psycopg's own Copy iterator."""
    out = bytearray()
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for data in copy:
            out += data
    return bytes(out)


def test_copy_out_hands_on_the_bytes_psycopg_reads(spec: ClusterSpec) -> None:
    """``copy_out`` passes on exactly the bytes of psycopg's Copy iterator, in pieces of
    about the size asked, and counts the rows; the session is idle afterwards."""
    statement = f"COPY ({ROWS_SQL}) TO STDOUT (FORMAT BINARY)"
    with connect(spec.workers[0], autocommit=True) as conn:
        pieces: list[bytes] = []
        rows = copy_out(conn, statement, lambda b: pieces.append(bytes(b)), size=4096)
        assert rows == 20000
        assert b"".join(pieces) == _iterated(conn, statement)
        assert len(pieces) > 10 and all(len(p) >= 4096 for p in pieces[:-1])
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with connect(spec.workers[0]) as conn:  # inside a transaction too, and it stays open
        conn.execute("SELECT 1")
        assert copy_out(conn, "COPY (SELECT 1) TO STDOUT", lambda b: None) == 1
        assert conn.info.transaction_status == TransactionStatus.INTRANS


def test_copy_out_raises_the_servers_errors(spec: ClusterSpec) -> None:
    """A statement that fails raises psycopg's error of its SQLSTATE, before or during
    the copy, and the session can be used again; a session outside any transaction that
    is not autocommit is refused (it would run outside the transaction its user expects)."""
    with connect(spec.workers[0], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            copy_out(conn, "COPY (SELECT * FROM no_such_table) TO STDOUT", lambda b: None)
        failing = "COPY (SELECT 1 / (g - 15000) FROM generate_series(1, 20000) g) TO STDOUT"
        got: list[int] = []
        with pytest.raises(psycopg.errors.DivisionByZero):
            copy_out(conn, failing, lambda b: got.append(len(b)), size=1024)
        assert got  # rows before the failure had been handed on
        with pytest.raises(psycopg.ProgrammingError, match="not a COPY"):
            copy_out(conn, "SELECT 1", lambda b: None)
        assert conn.execute("SELECT 2").fetchone() == (2,)
    with connect(spec.workers[0]) as conn, pytest.raises(psycopg.ProgrammingError):
        copy_out(conn, "COPY (SELECT 1) TO STDOUT", lambda b: None)


def test_copy_out_cancels_when_its_reader_fails(spec: ClusterSpec) -> None:
    """If ``write`` raises, the copy is cancelled on the server and read to its end: the
    same session answers the next statement at once."""

    class Full(Exception):
        pass

    def write(buffer: bytearray) -> None:
        raise Full

    with connect(spec.workers[0], autocommit=True) as conn:
        with pytest.raises(Full):
            copy_out(conn, ENDLESS, write, size=1024)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_copy_out_closes_a_session_whose_server_does_not_end_the_copy(
    spec: ClusterSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If ``write`` raises while the server is hung (its backend stopped), the cancel
    cannot end the copy: after ``ABANDON_S`` the session is closed instead of being left
    mid-copy (or waited on for ever)."""

    class Full(Exception):
        pass

    backend: list[int] = []

    def write(buffer: bytearray) -> None:
        os.kill(backend[0], signal.SIGSTOP)
        raise Full

    monkeypatch.setattr(db, "ABANDON_S", 1.0)
    with connect(spec.workers[0], autocommit=True) as conn:
        backend.append(conn.info.backend_pid)
        try:
            with pytest.raises(Full):
                copy_out(conn, ENDLESS, write, size=1024)
            assert conn.closed
        finally:
            os.kill(backend[0], signal.SIGCONT)
