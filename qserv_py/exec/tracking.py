"""Query records on the czar: tags, progress, list, get, kill.

Every query that :func:`qserv_py.exec.dispatch.execute` runs gets a row in
``qserv_meta.queries``, written by this process's tracker (:mod:`qserv_py.exec.tracker`,
in the background for a short query). The sessions it uses while its row says ``running``
are recorded in ``qserv_meta.query_backends``, and each statement run for it starts with
its tag, the comment ``/* qserv_py:q<id> */`` (:func:`tag`), so that :func:`kill_query`,
from any process, can cancel exactly those statements (``pg_stat_activity.query`` starts
with the tag). A killed query's own process notices at its next status check (after each
batch, or when a session is registered), or at once when its statements are cancelled.

:func:`list_queries`, :func:`get_query` and :func:`kill_query` first write what this
process's tracker holds (:func:`~qserv_py.exec.tracker.flush`), so that they see its
queries. The tracker's ``Query``, ``start``, ``flush``, ``query_status`` and ``FINAL`` are
importable from here too.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass

import psycopg

from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import QservError, QueryError
from qserv_py.exec.tracker import FINAL as FINAL
from qserv_py.exec.tracker import Query as Query
from qserv_py.exec.tracker import flush, query_status
from qserv_py.exec.tracker import start as start

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
CZAR = "czar"  # the name query_backends uses for the czar's own sessions


def tag(query_id: int) -> str:
    """The comment each statement run for query ``query_id`` starts with: a kill cancels a
    recorded session only while ``pg_stat_activity.query`` starts with it (a pooled
    session that moved on runs another statement). No round trip to name the session."""
    return f"/* qserv_py:q{int(query_id)} */ "


#: the sessions of ``pg_stat_activity`` running a statement of a query (parameter: tag)
WORKS_FOR = "state = 'active' AND starts_with(query, %s)"


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


# --- used by execution -------------------------------------------------------------------


def create_query(
    conn: psycopg.Connection, *, text: str, lang: str, owner: str, chunks_total: int
) -> int:
    """Record a new running query of no process (the tests' orphans); its id."""
    row = conn.execute(
        "INSERT INTO qserv_meta.queries (owner, lang, text, status, chunks_total, started_at)"
        " VALUES (%s, %s, %s, 'running', %s, now()) RETURNING id",
        (owner, lang, text, chunks_total),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_progress(conn: psycopg.Connection, query_id: int, chunks: int) -> str:
    """Count ``chunks`` more chunks done; the query's status (``killed`` after a kill)."""
    row = conn.execute(
        "UPDATE qserv_meta.queries SET chunks_done = chunks_done + %s WHERE id = %s"
        " RETURNING status",
        (chunks, query_id),
    ).fetchone()
    return str(row[0]) if row else "unknown"


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


def user_owners(user: str | None) -> tuple[str, list[object]]:
    """The condition on ``qserv_meta.queries`` (and its parameters) of the queries of
    service user ``user`` (None: of anonymous requests): those of its sync requests
    (owner ``tap:<user>``, ``rest:<user>``, or ``tap``/``rest`` when anonymous) and of
    its async jobs (``uws:<job>`` of a job the user owns)."""
    if user is None:
        return (
            "(owner IN ('tap', 'rest') OR (owner LIKE 'uws:%%' AND substr(owner, 5) IN"
            " (SELECT id FROM qserv_meta.uws_jobs WHERE owner IS NULL)))",
            [],
        )
    return (
        "(owner IN ('tap:' || %s, 'rest:' || %s) OR (owner LIKE 'uws:%%' AND substr(owner, 5)"
        " IN (SELECT id FROM qserv_meta.uws_jobs WHERE owner = %s)))",
        [user, user, user],
    )


def list_queries(
    spec: ClusterSpec,
    *,
    active_only: bool = True,
    limit: int = 100,
    of_user: tuple[str | None] | None = None,
) -> list[QueryInfo]:
    """The newest queries first (by id): the running ones, or (``active_only=False``)
    all; ``of_user=(name,)``: only those of a service user (:func:`user_owners`). Those
    of this process are written first (:func:`flush`)."""
    flush()
    conditions, args = [], []
    if active_only:
        conditions.append("status IN ('queued', 'running')")
    if of_user is not None:
        condition, params = user_owners(of_user[0])
        conditions.append(condition)
        args.extend(params)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    with connect(spec.czar, autocommit=True) as czar:
        rows = czar.execute(
            f"{_INFO}{where} ORDER BY id DESC LIMIT %s", (*args, limit)
        ).fetchall()
    return [_info(r) for r in rows]


def query_user(spec: ClusterSpec, owner: str) -> tuple[bool, str | None]:
    """Whose query a query of ``owner`` is: (True, user) for a service user's (None: an
    anonymous request's), (False, None) for one of no service request (CLI, Python)."""
    kind, _, name = owner.partition(":")
    if kind in ("tap", "rest"):
        return True, name or None
    if kind == "uws" and name:
        with connect(spec.czar, autocommit=True) as czar:
            row = czar.execute(
                "SELECT owner FROM qserv_meta.uws_jobs WHERE id = %s", (name,)
            ).fetchone()
        return (True, row[0]) if row else (False, None)
    return False, None


def get_query(spec: ClusterSpec, query_id: int) -> QueryInfo:
    """One query's record; QueryError if there is none."""
    flush()
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(f"{_INFO} WHERE id = %s", (query_id,)).fetchone()
    if row is None:
        raise QueryError(f"there is no query {query_id}; see `qserv-py query list`")
    return _info(row)


def kill_query(spec: ClusterSpec, query_id: int, *, reason: str = "killed on request") -> None:
    """Mark a running query killed and cancel its statements on the workers and the czar.

    Works from any process. An unknown or finished query is a QueryError.
    """
    flush()  # a query of this process may have no record yet
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
            targets.append((spec.czar if name == CZAR else _instance(spec, name), list(pids)))
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


def _instance(spec: ClusterSpec, name: str) -> Instance:
    """Worker ``name``, or a Citus worker node (a query reads shards there straight)."""
    for instance in (*spec.workers, *spec.citus_workers):
        if instance.name == name:
            return instance
    raise KeyError(name)


def cancel_backends(conn: psycopg.Connection, query_id: int, pids: list[int]) -> int:
    """Cancel the statements of ``pids`` that still work for the query; how many."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
        f" WHERE pid = ANY(%s) AND {WORKS_FOR}",
        (pids, tag(query_id)),
    ).fetchone()
    return int(row[0]) if row else 0
