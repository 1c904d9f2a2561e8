"""Copying and moving a chunk between workers: copy → verify → publish → drain → drop.

Each step is recorded on the czar (``qserv_meta.chunk_copies``, migration 008), so a
crash is resumed or cleaned by the next operation (:func:`qserv_py.ops.journal.resume`):

1. *copy* and *verify* (:func:`qserv_py.ops.copy.build`): the source's partitions of
   the chunk stream into new, unattached tables of the target, checked against the
   source (row counts, checksums) and the czar (row counts). The record says
   ``copying``; a copy whose coordinator died leaves only unattached tables, which
   :func:`qserv_py.ops.journal.resume` drops.
2. *publish*, in one two-phase commit: the target attaches the new tables as the
   chunk's partitions, the source confirms the partitions copied are still its own, and
   the czar adds the target to the placement (a move also removes the source) and
   records the copy ``done`` (a move: ``published``). Clients re-plan at once (the
   placement's version changed, and the czar notified them). Then the target analyses
   the new partitions (planner statistics: speed, not correctness).
3. *drain* (moves): wait ``grace_s`` for clients to hear of the change, then for every
   query recorded running that started before that (at most ``query_wait_s``).
4. *drop* (moves): the source's partitions are detached and dropped
   (:func:`qserv_py.ops.journal.drop_partitions`; the drop also waits for statements
   still reading them); the record says ``done``.

The coordinator holds an advisory lock on the chunk on the czar throughout, so two
processes never work on one chunk, and a record whose lock is free belongs to a crashed
coordinator.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.twophase import commit_two_phase
from qserv_py.errors import ClusterError, UnknownWorker, WorkerOpError
from qserv_py.ops import copy as chunk_copy
from qserv_py.ops.journal import (
    GRACE_S,
    QUERY_WAIT_S,
    abandon,
    catalog_model,
    chunk_lock,
    finish_moves,
    record_copy,
    settle,
    unfinished,
)
from qserv_py.schema.model import Catalog, TableKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopyReport:
    """What one copy or move did."""

    catalog: str
    chunk: int
    source: str
    target: str
    move: bool
    #: False: nothing to do (the target already held the chunk)
    copied: bool
    tables: int = 0  # partitions copied
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    #: seconds until the copy was published (replication restored; the new partitions'
    #: statistics are made after that, within ``seconds``)
    published_s: float = 0.0
    #: a move whose old copy is dropped (False: it is dropped by a later resume)
    dropped: bool = False
    copy_id: int | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def copy_chunk(spec: ClusterSpec, catalog: str, chunk: int, source: str, target: str) -> CopyReport:
    """Copy ``chunk`` of ``catalog`` from worker ``source`` to ``target`` (a new replica).

    A no-op if the target holds it already. Raises WorkerOpError if a worker may not take
    part (not live, not active, the chunk is busy), ClusterError if the copy failed; then
    nothing of it is visible and it can be run again.
    """
    return _transfer(spec, catalog, chunk, source, target, move=False)


def move_chunk(
    spec: ClusterSpec,
    catalog: str,
    chunk: int,
    source: str,
    target: str,
    *,
    grace_s: float = GRACE_S,
    query_wait_s: float = QUERY_WAIT_S,
) -> CopyReport:
    """Move ``chunk`` of ``catalog`` from ``source`` to ``target``: copy, verify, publish
    (the placement gains the target and loses the source at once), let the queries planned
    before finish, drop the source's copy."""
    report = publish_move(spec, catalog, chunk, source, target)
    if report.copy_id is None:
        return report
    finished = finish_moves(spec, [report.copy_id], grace_s=grace_s, query_wait_s=query_wait_s)
    return replace(report, dropped=report.copy_id in finished)


def publish_move(
    spec: ClusterSpec, catalog: str, chunk: int, source: str, target: str
) -> CopyReport:
    """The copy, verify and publish steps of a move; :func:`finish_moves` drops the old
    copy (several moves can then share one wait for queries)."""
    return _transfer(spec, catalog, chunk, source, target, move=True)


def _transfer(
    spec: ClusterSpec, catalog_name: str, chunk: int, source: str, target: str, *, move: bool
) -> CopyReport:
    started = time.monotonic()
    for name in (source, target):
        _instance(spec, name)
    if source == target:
        raise WorkerOpError(f"cannot copy chunk {chunk} from {source} to itself")
    with connect(spec.czar, autocommit=True) as czar:
        catalog = catalog_model(czar, catalog_name)
        name = catalog.sql_name
        with chunk_lock(czar, name, chunk):
            holders = _holders(czar, name, chunk)
            if target in holders and (not move or source not in holders):  # done already
                pending = [
                    r.id
                    for r in unfinished(czar, name, chunk)
                    if r.state == "published" and (r.source, r.target) == (source, target)
                ]  # a move published whose old copy is still to drop
                return CopyReport(
                    name,
                    chunk,
                    source,
                    target,
                    move,
                    copied=False,
                    copy_id=next(iter(pending), None),
                )
            if source not in holders:
                raise WorkerOpError(
                    f"{source} does not hold chunk {chunk} of {name} (holders: "
                    f"{', '.join(sorted(holders)) or 'none'}); copy it from a holder"
                )
            for record in unfinished(czar, name, chunk):
                settle(spec, czar, catalog, record, target)
            _check_workers(spec, czar, source, target)
            if target in holders:  # both hold it: a move only drops the source's copy
                return _publish_drop_only(czar, catalog, chunk, source, target, started)
            _check_no_load(czar, name)
            last_load = _last_load(czar, name)
            copy_id = record_copy(czar, name, chunk, source, target, move)
            try:
                built = chunk_copy.build(
                    spec.worker(source),
                    spec.worker(target),
                    catalog,
                    chunk,
                    copy_id,
                    _expected(czar, catalog, chunk),
                )
                rows = sum(b.rows for b in built)
                commit_two_phase(
                    spec,
                    {
                        target: chunk_copy.attach_work(name, chunk, built),
                        source: chunk_copy.check_source_work(name, built),
                    },
                    lambda conn: _publish_czar(
                        conn,
                        copy_id,
                        name,
                        chunk,
                        source,
                        target,
                        move,
                        len(built),
                        rows,
                        last_load,
                    ),
                    label=f"copy:{copy_id}",
                )
            except BaseException as exc:
                abandon(spec, czar, catalog, copy_id, target, exc)
                raise
            published = time.monotonic() - started
            chunk_copy.analyze(spec.worker(target), name, [b.part.partition for b in built])
    return CopyReport(
        name,
        chunk,
        source,
        target,
        move,
        copied=True,
        tables=len(built),
        rows=rows,
        bytes=sum(b.bytes for b in built),
        seconds=time.monotonic() - started,
        published_s=published,
        copy_id=copy_id if move else None,
    )


def _instance(spec: ClusterSpec, name: str) -> None:
    try:
        spec.worker(name)
    except KeyError:
        raise UnknownWorker(
            f"no worker {name!r} in the cluster file (workers: "
            f"{', '.join(w.name for w in spec.workers)})"
        ) from None


def _holders(czar: psycopg.Connection, catalog: str, chunk: int) -> set[str]:
    return {
        r[0]
        for r in czar.execute(
            "SELECT worker FROM qserv_meta.placement WHERE catalog = %s AND chunk_id = %s",
            (catalog, chunk),
        )
    }


def _check_workers(spec: ClusterSpec, czar: psycopg.Connection, source: str, target: str) -> None:
    """The target is active and up; the source is live (up, or draining)."""
    from qserv_py.ops.health import WorkerState, health

    states: dict[str, str] = dict(
        czar.execute(
            "SELECT name, state FROM qserv_meta.workers WHERE name = ANY(%s)", ([source, target],)
        ).fetchall()
    )
    rules: tuple[tuple[str, tuple[str, ...]], ...] = (
        (target, ("active",)),
        (source, ("active", "draining")),
    )
    for name, allowed in rules:
        if states.get(name, "") not in allowed:
            role = "a copy's target" if name == target else "a copy's source"
            raise WorkerOpError(
                f"{name} is {states.get(name, 'not registered on the czar')}: it cannot be "
                f"{role} (it must be {' or '.join(allowed)})"
            )
    seen = health(spec).check([source, target])
    for name in (source, target):
        if seen.get(name) not in (WorkerState.UP, WorkerState.DRAINING):
            raise WorkerOpError(
                f"{name} is {seen.get(name, 'unknown')}: a copy needs both workers up; "
                "check it (`qserv-py cluster status`) and try again"
            )


def _check_no_load(czar: psycopg.Connection, catalog: str) -> None:
    """A load in progress routes its rows by the placement it read: no copy meanwhile."""
    row = czar.execute(
        "SELECT id, state FROM qserv_meta.load_txns WHERE catalog = %s"
        " AND state IN ('staging', 'staged', 'publishing') ORDER BY id LIMIT 1",
        (catalog,),
    ).fetchone()
    if row is not None:
        raise WorkerOpError(
            f"load {row[0]} of catalog {catalog} is {row[1]}: its rows go by the placement it "
            f"read, so no chunk of {catalog} is copied meanwhile; publish or abort it "
            f"(`qserv-py txn resume {row[0]}` / `qserv-py txn abort {row[0]}`), then try again"
        )


def _expected(
    czar: psycopg.Connection, catalog: Catalog, chunk: int
) -> dict[tuple[str, bool], int]:
    """The czar's row counts of the chunk, per (table, overlap)."""
    counts: dict[tuple[str, bool], int] = {}
    directors = {t.sql_name for t in catalog.tables_of_kind(TableKind.DIRECTOR)}
    for table, rows, overlap in czar.execute(
        "SELECT table_name, rows, overlap_rows FROM qserv_meta.chunk_stats"
        " WHERE catalog = %s AND chunk_id = %s",
        (catalog.sql_name, chunk),
    ):
        if table not in {t.sql_name for t in catalog.tables if t.partitioned}:
            continue
        counts[(table, False)] = int(rows)
        if table in directors:
            counts[(table, True)] = int(overlap)
    return counts


def _last_load(czar: psycopg.Connection, catalog: str) -> int:
    row = czar.execute(
        "SELECT coalesce(max(id), 0) FROM qserv_meta.load_txns WHERE catalog = %s", (catalog,)
    ).fetchone()
    return int(row[0]) if row else 0


def _publish_czar(
    conn: psycopg.Connection,
    copy_id: int,
    catalog: str,
    chunk: int,
    source: str,
    target: str,
    move: bool,
    tables: int,
    rows: int,
    last_load: int,
) -> None:
    """The czar's share of the publish (in the two-phase commit's transaction);
    ``last_load``: the newest load of the catalog when the copy began."""
    conn.execute("LOCK TABLE qserv_meta.load_txns IN SHARE MODE")  # no load starts meanwhile
    _check_no_load(conn, catalog)
    since = _last_load(conn, catalog)
    if since > last_load:  # begun and published during the copy: it may have added rows
        raise ClusterError(  # to the source's partitions (appended in place) after its snapshot
            f"load {since} of {catalog} ran while chunk {chunk} was copied; nothing was "
            "published: copy the chunk again"
        )
    state = "published" if move else "done"
    row = conn.execute(
        "UPDATE qserv_meta.chunk_copies SET state = %s, published_at = now(),"
        " finished_at = CASE WHEN %s THEN NULL ELSE now() END, tables = %s, rows = %s"
        " WHERE id = %s AND state = 'copying' RETURNING id",
        (state, move, tables, rows, copy_id),
    ).fetchone()
    if row is None:
        raise ClusterError(f"copy {copy_id} was abandoned meanwhile; nothing was published")
    conn.execute(
        "INSERT INTO qserv_meta.placement (catalog, chunk_id, worker) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (catalog, chunk, target),
    )
    if move:
        conn.execute(
            "DELETE FROM qserv_meta.placement WHERE catalog = %s AND chunk_id = %s AND worker = %s",
            (catalog, chunk, source),
        )


def _publish_drop_only(
    czar: psycopg.Connection, catalog: Catalog, chunk: int, source: str, target: str, started: float
) -> CopyReport:
    """A move to a worker that holds the chunk already: the source only lets it go."""
    name = catalog.sql_name
    with czar.transaction():
        row = czar.execute(
            "INSERT INTO qserv_meta.chunk_copies (catalog, chunk_id, source, target, move,"
            " state, published_at) VALUES (%s, %s, %s, %s, true, 'published', now())"
            " RETURNING id",
            (name, chunk, source, target),
        ).fetchone()
        assert row is not None
        czar.execute(
            "DELETE FROM qserv_meta.placement WHERE catalog = %s AND chunk_id = %s AND worker = %s",
            (name, chunk, source),
        )
    return CopyReport(
        name,
        chunk,
        source,
        target,
        True,
        copied=False,
        seconds=time.monotonic() - started,
        copy_id=int(row[0]),
    )
