"""Copying and moving a chunk between workers: copy → verify → publish → drain → drop.

Each step is recorded on the czar (``qserv_meta.chunk_copies``, migration 008), so a
crash is resumed or cleaned by the next operation (:func:`resume`):

1. *copy* and *verify* (:func:`qserv_py.ops.copy.build`): the source's partitions of
   the chunk stream into new, unattached tables of the target, checked against the
   source (row counts, checksums) and the czar (row counts). The record says
   ``copying``; a copy whose coordinator died leaves only unattached tables, which
   :func:`resume` drops.
2. *publish*, in one two-phase commit: the target attaches the new tables as the
   chunk's partitions, the source confirms the partitions copied are still its own, and
   the czar adds the target to the placement (a move also removes the source) and
   records the copy ``done`` (a move: ``published``). Clients re-plan at once (the
   placement's version changed, and the czar notified them).
3. *drain* (moves): wait ``grace_s`` for clients to hear of the change, then for every
   query recorded running that started before the publish (at most ``query_wait_s``).
4. *drop* (moves): the source's partitions are detached and dropped
   (:func:`qserv_py.ops.copy.drop_partitions`; the drop also waits for statements
   still reading them); the record says ``done``.

The coordinator holds an advisory lock on the chunk on the czar throughout, so two
processes never work on one chunk, and a record whose lock is free belongs to a crashed
coordinator.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.twophase import commit_two_phase
from qserv_py.errors import ClusterError, UnknownWorker, WorkerOpError
from qserv_py.ops import copy as chunk_copy
from qserv_py.schema.felis import parse_catalog
from qserv_py.schema.model import Catalog, TableKind

log = logging.getLogger(__name__)

#: seconds a move waits after its publish for clients to hear of the new placement
GRACE_S = 3.0
#: at most this long a move waits for queries planned before its publish to end
QUERY_WAIT_S = 300.0
LOCK_CLASS = 0x51435059  # advisory lock namespace of chunk operations ("QCPY")


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
    #: a move whose old copy is dropped (False: it is dropped by a later resume)
    dropped: bool = False
    copy_id: int | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Record:
    id: int
    catalog: str
    chunk: int
    source: str
    target: str
    move: bool
    state: str


_RECORD = "SELECT id, catalog, chunk_id, source, target, move, state FROM qserv_meta.chunk_copies"


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
    return _with(report, dropped=report.copy_id in finished)


def publish_move(
    spec: ClusterSpec, catalog: str, chunk: int, source: str, target: str
) -> CopyReport:
    """The copy, verify and publish steps of a move; :func:`finish_moves` drops the old
    copy (several moves can then share one wait for queries)."""
    return _transfer(spec, catalog, chunk, source, target, move=True)


def _with(report: CopyReport, **changes: object) -> CopyReport:
    from dataclasses import replace

    return replace(report, **changes)  # type: ignore[arg-type]


def catalog_model(czar: psycopg.Connection, name: str) -> Catalog:
    """The catalog ``name`` as registered on the czar (parsed once per schema text: a
    replication pass asks for it per chunk)."""
    row = czar.execute(
        "SELECT schema_yaml, spelling FROM qserv_meta.catalogs WHERE name = lower(%s)", (name,)
    ).fetchone()
    if row is None:
        return get_catalog(czar, name)  # raises UnknownCatalog, naming the known ones
    return _parsed(str(row[0]), str(row[1]))


@functools.lru_cache(maxsize=16)
def _parsed(text: str, spelling: str) -> Catalog:
    return parse_catalog(text, f"catalog {spelling}")


@contextlib.contextmanager
def chunk_lock(czar: psycopg.Connection, catalog: str, chunk: int) -> Iterator[None]:
    """Hold the chunk's advisory lock on ``czar`` (autocommit); WorkerOpError if another
    process holds it."""
    key = f"{catalog}:{int(chunk)}"
    got = czar.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, key)
    ).fetchone()
    if not (got and got[0]):
        raise WorkerOpError(
            f"chunk {chunk} of {catalog} is being copied or moved by another process; wait "
            "for it to finish (qserv_meta.chunk_copies shows it)"
        )
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            czar.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, key))


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
                    for r in _unfinished(czar, name, chunk)
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
            for record in _unfinished(czar, name, chunk):
                _settle(spec, czar, catalog, record)
            if target in holders:  # both hold it: a move only drops the source's copy
                return _publish_drop_only(czar, catalog, chunk, source, target, started)
            _check_workers(spec, czar, source, target)
            _check_no_load(czar, name)
            copy_id = _record(czar, name, chunk, source, target, move)
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
                        conn, copy_id, name, chunk, source, target, move, len(built), rows
                    ),
                    label=f"copy:{copy_id}",
                )
            except BaseException as exc:
                _abandon(spec, czar, catalog, copy_id, target, exc)
                raise
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


def _record(
    czar: psycopg.Connection, catalog: str, chunk: int, source: str, target: str, move: bool
) -> int:
    row = czar.execute(
        "INSERT INTO qserv_meta.chunk_copies (catalog, chunk_id, source, target, move)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (catalog, chunk, source, target, move),
    ).fetchone()
    assert row is not None
    return int(row[0])


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
) -> None:
    """The czar's share of the publish (in the two-phase commit's transaction)."""
    conn.execute("LOCK TABLE qserv_meta.load_txns IN SHARE MODE")  # no load starts meanwhile
    _check_no_load(conn, catalog)
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


def _unfinished(
    czar: psycopg.Connection, catalog: str | None = None, chunk: int | None = None
) -> list[_Record]:
    where = " WHERE state IN ('copying', 'published')"
    args: list[object] = []
    if catalog is not None:
        where += " AND catalog = %s AND chunk_id = %s"
        args += [catalog, chunk]
    return [_Record(*r) for r in czar.execute(_RECORD + where + " ORDER BY id", args)]


def _settle(spec: ClusterSpec, czar: psycopg.Connection, catalog: Catalog, record: _Record) -> None:
    """An unfinished copy of a chunk whose lock we hold: its coordinator died. Drop what
    it built, or finish its move."""
    if record.state == "copying":
        if not _abandon(spec, czar, catalog, record.id, record.target, None):
            raise WorkerOpError(
                f"copy {record.id} of chunk {record.chunk} of {record.catalog} to "
                f"{record.target} was interrupted and what it built there cannot be dropped "
                "yet (is the worker up? an in-doubt transaction?); try again later"
            )
    else:
        _wait_for_queries(czar, [record.id], GRACE_S, QUERY_WAIT_S)
        _finish(spec, czar, catalog, record)


def _abandon(
    spec: ClusterSpec,
    czar: psycopg.Connection,
    catalog: Catalog,
    copy_id: int,
    target: str,
    error: BaseException | None,
) -> bool:
    """Drop what copy ``copy_id`` built on ``target`` and record it abandoned; False if
    the target cannot be reached (the record stays, to be cleaned later)."""
    with contextlib.suppress(psycopg.Error):
        row = czar.execute(
            "SELECT state FROM qserv_meta.chunk_copies WHERE id = %s", (copy_id,)
        ).fetchone()
        if row is None or row[0] != "copying":
            return True  # published after all (its commit was decided), or settled
    try:
        with connect(spec.worker(target), autocommit=True, timeout=5) as conn:
            chunk_copy.drop_leftovers(conn, catalog.sql_name, copy_id)
    except (KeyError, ClusterError, psycopg.Error) as exc:
        log.warning("copy %s: cannot clean its tables on %s yet: %s", copy_id, target, exc)
        if not isinstance(exc, KeyError):
            return False
    with contextlib.suppress(psycopg.Error):
        czar.execute(
            "UPDATE qserv_meta.chunk_copies SET state = 'abandoned', finished_at = now(),"
            " error = %s WHERE id = %s AND state = 'copying'",
            (str(error) if error is not None else "its coordinator stopped", copy_id),
        )
    return True


def finish_moves(
    spec: ClusterSpec,
    ids: Iterable[int] | None = None,
    *,
    grace_s: float = GRACE_S,
    query_wait_s: float = QUERY_WAIT_S,
) -> list[int]:
    """Drop the old copies of published moves (``ids``, or all whose coordinator is gone)
    once the queries planned before them have ended; the ids finished."""
    wanted = None if ids is None else set(ids)
    with connect(spec.czar, autocommit=True) as czar:
        records = [
            r
            for r in _unfinished(czar)
            if r.state == "published" and (wanted is None or r.id in wanted)
        ]
        if not records:
            return []
        _wait_for_queries(czar, [r.id for r in records], grace_s, query_wait_s)
        done = []
        for record in records:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(chunk_lock(czar, record.catalog, record.chunk))
                except WorkerOpError:
                    continue  # its coordinator is at work
                if _finish(spec, czar, catalog_model(czar, record.catalog), record):
                    done.append(record.id)
        return done


def _wait_for_queries(
    czar: psycopg.Connection, ids: list[int], grace_s: float, query_wait_s: float
) -> None:
    """Wait ``grace_s`` after the latest of the publishes ``ids`` (clients hear of the
    change by NOTIFY, and a query younger than the tracker's delay is not yet recorded),
    then until no query recorded running started before it (at most ``query_wait_s``)."""
    row = czar.execute(
        "SELECT max(published_at), extract(epoch FROM now() - max(published_at))"
        " FROM qserv_meta.chunk_copies WHERE id = ANY(%s)",
        (ids,),
    ).fetchone()
    assert row is not None
    published, age = row[0], float(row[1] or 0)
    if published is None:
        return
    if age < grace_s:
        time.sleep(grace_s - age)
    deadline = time.monotonic() + query_wait_s
    while True:
        running = czar.execute(
            "SELECT count(*) FROM qserv_meta.queries WHERE status = 'running' AND started_at < %s",
            (published,),
        ).fetchone()
        if not running or not running[0]:
            return
        if time.monotonic() >= deadline:
            log.warning(
                "%s queries planned before a chunk move still run after %s s; dropping the "
                "old copies anyway (a statement still reading one delays its drop)",
                running[0],
                query_wait_s,
            )
            return
        time.sleep(0.2)


def _finish(spec: ClusterSpec, czar: psycopg.Connection, catalog: Catalog, record: _Record) -> bool:
    """Drop a published move's old copy and record it done; False if its source cannot
    be reached now (a later resume finishes it)."""
    try:
        worker = spec.worker(record.source)
    except KeyError:
        worker = None  # removed from the cluster: nothing left to drop
    if worker is not None:
        try:
            chunk_copy.drop_partitions(worker, catalog, record.chunk)
        except (ClusterError, psycopg.Error) as exc:
            log.warning(
                "move %s: the old copy on %s is not dropped yet: %s", record.id, record.source, exc
            )
            return False
    czar.execute(
        "UPDATE qserv_meta.chunk_copies SET state = 'done', finished_at = now() WHERE id = %s",
        (record.id,),
    )
    return True


def resume(
    spec: ClusterSpec, *, grace_s: float = GRACE_S, query_wait_s: float = QUERY_WAIT_S
) -> int:
    """Settle the copies and moves whose coordinators stopped: drop what unfinished copies
    built, finish published moves. How many records it settled."""
    settled = 0
    with connect(spec.czar, autocommit=True) as czar:
        for record in _unfinished(czar):
            if record.state != "copying":
                continue
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(chunk_lock(czar, record.catalog, record.chunk))
                except WorkerOpError:
                    continue
                catalog = catalog_model(czar, record.catalog)
                settled += _abandon(spec, czar, catalog, record.id, record.target, None)
    return settled + len(finish_moves(spec, grace_s=grace_s, query_wait_s=query_wait_s))
