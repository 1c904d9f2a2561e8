"""Query records on the czar: create, progress, finish, list, kill.

Every query that :func:`qserv_py.exec.dispatch.execute` runs has a row in
``qserv_meta.queries``. The sessions it uses are recorded in ``qserv_meta.query_backends``
and carry ``application_name = 'qserv_py:q<id>'`` while they work for it, so that
:func:`kill_query`, from any process, can cancel exactly those statements. A killed
query's own process notices at its next status check (after each batch), or at once when
its statements are cancelled under it.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass

import psycopg

from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import QservError, QueryError

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "killed")
CZAR = "czar"  # the name query_backends uses for the czar's own sessions


def application_name(query_id: int) -> str:
    """The application_name of a session while it works for query ``query_id``."""
    return f"qserv_py:q{query_id}"


@dataclass(frozen=True)
class QueryInfo:
    """A query as ``list_queries`` shows it."""

    id: int
    owner: str
    lang: str
    text: str
    status: str
    chunks_done: int
    chunks_total: int
    #: seconds from start (or submission) to finish, or to now while it runs
    elapsed: float
    rows: int | None
    truncated: bool
    error: str | None


# --- used by execution, on a czar connection in autocommit mode -----------------------


def create_query(
    conn: psycopg.Connection, *, text: str, lang: str, owner: str, chunks_total: int
) -> int:
    """Record a new running query; its id."""
    row = conn.execute(
        "INSERT INTO qserv_meta.queries (owner, lang, text, status, chunks_total, started_at)"
        " VALUES (%s, %s, %s, 'running', %s, now()) RETURNING id",
        (owner, lang, text, chunks_total),
    ).fetchone()
    assert row is not None
    return int(row[0])


def register_backend(conn: psycopg.Connection, query_id: int, worker: str, pid: int) -> str:
    """Record that session ``pid`` on ``worker`` works for the query; the query's status.

    Nothing is recorded unless the query is running (a kill may have come first).
    """
    row = conn.execute(
        "WITH q AS (SELECT status FROM qserv_meta.queries WHERE id = %(id)s),"
        " ins AS (INSERT INTO qserv_meta.query_backends (query_id, worker, pid)"
        "  SELECT %(id)s, %(worker)s, %(pid)s FROM q WHERE status = 'running'"
        "  ON CONFLICT DO NOTHING)"
        " SELECT status FROM q",
        {"id": query_id, "worker": worker, "pid": pid},
    ).fetchone()
    return str(row[0]) if row else "unknown"


def add_progress(conn: psycopg.Connection, query_id: int, chunks: int) -> str:
    """Count ``chunks`` more chunks done; the query's status (``killed`` after a kill)."""
    row = conn.execute(
        "UPDATE qserv_meta.queries SET chunks_done = chunks_done + %s WHERE id = %s"
        " RETURNING status",
        (chunks, query_id),
    ).fetchone()
    return str(row[0]) if row else "unknown"


def query_status(conn: psycopg.Connection, query_id: int) -> str:
    row = conn.execute("SELECT status FROM qserv_meta.queries WHERE id = %s", (query_id,))
    found = row.fetchone()
    return str(found[0]) if found else "unknown"


def finish_query(
    conn: psycopg.Connection,
    query_id: int,
    status: str,
    *,
    rows: int | None = None,
    truncated: bool = False,
    error: str | None = None,
) -> str:
    """Record the end of a running query; the status it ends with.

    A query killed meanwhile stays ``killed`` (and that is returned).
    """
    assert status in FINAL
    row = conn.execute(
        "WITH gone AS (DELETE FROM qserv_meta.query_backends WHERE query_id = %(id)s),"
        " done AS (UPDATE qserv_meta.queries SET status = %(status)s, rows = %(rows)s,"
        "  truncated = %(truncated)s, error = %(error)s, finished_at = now()"
        "  WHERE id = %(id)s AND status IN ('queued', 'running') RETURNING status)"
        " SELECT coalesce((SELECT status FROM done),"
        "  (SELECT status FROM qserv_meta.queries WHERE id = %(id)s))",
        {"id": query_id, "status": status, "rows": rows, "truncated": truncated, "error": error},
    ).fetchone()
    return str(row[0]) if row and row[0] else "unknown"


# --- for users and operators ------------------------------------------------------------

_INFO = (
    "SELECT id, owner, lang, text, status, chunks_done, chunks_total,"
    " extract(epoch FROM coalesce(finished_at, now()) - coalesce(started_at, submitted_at)),"
    " rows, truncated, error FROM qserv_meta.queries"
)


def _info(row: tuple) -> QueryInfo:
    return QueryInfo(
        id=row[0],
        owner=row[1],
        lang=row[2],
        text=row[3],
        status=row[4],
        chunks_done=row[5],
        chunks_total=row[6],
        elapsed=float(row[7] or 0.0),
        rows=row[8],
        truncated=row[9],
        error=row[10],
    )


def list_queries(
    spec: ClusterSpec, *, active_only: bool = True, limit: int = 100
) -> list[QueryInfo]:
    """The newest queries first: the running ones, or (``active_only=False``) all."""
    where = " WHERE status IN ('queued', 'running')" if active_only else ""
    with connect(spec.czar, autocommit=True) as czar:
        rows = czar.execute(f"{_INFO}{where} ORDER BY id DESC LIMIT %s", (limit,)).fetchall()
    return [_info(r) for r in rows]


def get_query(spec: ClusterSpec, query_id: int) -> QueryInfo:
    """One query's record; QueryError if there is none."""
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(f"{_INFO} WHERE id = %s", (query_id,)).fetchone()
    if row is None:
        raise QueryError(f"there is no query {query_id}; see `qserv-py query list`")
    return _info(row)


def kill_query(spec: ClusterSpec, query_id: int, *, reason: str = "killed on request") -> None:
    """Mark a running query killed and cancel its statements on the workers and the czar.

    Works from any process. An unknown or finished query is a QueryError.
    """
    with connect(spec.czar, autocommit=True) as czar:
        killed = czar.execute(
            "UPDATE qserv_meta.queries SET status = 'killed', error = %s, finished_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING id",
            (reason, query_id),
        ).fetchone()
        if killed is None:
            status = query_status(czar, query_id)
            if status == "unknown":
                raise QueryError(f"there is no query {query_id}; see `qserv-py query list`")
            raise QueryError(f"query {query_id} has already finished ({status}); nothing to kill")
        backends = czar.execute(
            "SELECT worker, array_agg(pid) FROM qserv_meta.query_backends"
            " WHERE query_id = %s GROUP BY worker",
            (query_id,),
        ).fetchall()
    targets: list[tuple[Instance, list[int]]] = []
    for name, pids in backends:
        try:
            targets.append((spec.czar if name == CZAR else spec.worker(name), list(pids)))
        except KeyError:
            log.warning("query %s: worker %s is no longer in the cluster", query_id, name)

    def cancel(target: tuple[Instance, list[int]]) -> None:
        instance, pids = target
        try:
            with connect(instance, autocommit=True) as conn:
                cancel_backends(conn, query_id, pids)
        except (QservError, psycopg.Error) as exc:
            # a worker we cannot reach runs nothing for us any more
            log.warning("query %s: cannot cancel on %s: %s", query_id, instance.name, exc)

    on_each(targets, cancel)
    # the merge table goes too (its process may have died; if not, it fails at once)
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute("SET lock_timeout = '2s'")
        with suppress(psycopg.errors.LockNotAvailable):  # in use: its process drops it
            czar.execute(f"DROP TABLE IF EXISTS qserv_result.q{int(query_id)}")


def cancel_backends(conn: psycopg.Connection, query_id: int, pids: list[int]) -> int:
    """Cancel the statements of ``pids`` that still work for the query; how many."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
        " WHERE pid = ANY(%s) AND application_name = %s",
        (pids, application_name(query_id)),
    ).fetchone()
    return int(row[0]) if row else 0
