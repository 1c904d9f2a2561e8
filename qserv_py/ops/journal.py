"""The czar's journal of chunk copies and moves (``qserv_meta.chunk_copies``, migration
008): the chunk locks their coordinators hold, and the settling of what a coordinator
that stopped left behind.

A copy is recorded ``copying`` before anything is built on its target; a copy found so
whose chunk lock is free was interrupted: what it built (unattached tables) is dropped
and it is recorded ``abandoned``. A move recorded ``published`` waits for the queries
planned before its publish, then its old copy is dropped and it is ``done``
(:func:`finish_moves`). :func:`resume` settles both kinds; every operation on a chunk
first settles what concerns it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import psycopg
from psycopg import errors as pg_errors

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.cluster.twophase import recover_in_doubt
from qserv_py.errors import ClusterError, WorkerOpError
from qserv_py.ops import checksums
from qserv_py.ops import copy as chunk_copy
from qserv_py.ops.copy import chunk_parts
from qserv_py.schema.felis import parse_catalog
from qserv_py.schema.model import Catalog

log = logging.getLogger(__name__)

#: how long a DETACH or DROP of an old copy waits for a lock before it is tried again
DROP_LOCK_TIMEOUT = "2s"

#: seconds a move waits after its publish for clients to hear of the new placement
GRACE_S = 3.0
#: at most this long a move waits for queries planned before its publish to end
QUERY_WAIT_S = 300.0
LOCK_CLASS = 0x51435059  # advisory lock namespace of chunk operations ("QCPY")


@dataclass(frozen=True)
class Record:
    id: int
    catalog: str
    chunk: int
    source: str
    target: str
    move: bool
    state: str


_SELECT = "SELECT id, catalog, chunk_id, source, target, move, state FROM qserv_meta.chunk_copies"


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


def record_copy(
    czar: psycopg.Connection, catalog: str, chunk: int, source: str, target: str, move: bool
) -> int:
    row = czar.execute(
        "INSERT INTO qserv_meta.chunk_copies (catalog, chunk_id, source, target, move)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (catalog, chunk, source, target, move),
    ).fetchone()
    assert row is not None
    return int(row[0])


def unfinished(
    czar: psycopg.Connection, catalog: str | None = None, chunk: int | None = None
) -> list[Record]:
    where = " WHERE state IN ('copying', 'published')"
    args: list[object] = []
    if catalog is not None:
        where += " AND catalog = %s AND chunk_id = %s"
        args += [catalog, chunk]
    return [Record(*r) for r in czar.execute(_SELECT + where + " ORDER BY id", args)]


def settle(
    spec: ClusterSpec, czar: psycopg.Connection, catalog: Catalog, record: Record, target: str
) -> None:
    """An unfinished copy of the chunk about to be copied to ``target`` (we hold the
    chunk's lock: its coordinator died). Drop what it built; finish a move whose old copy
    is on ``target`` (a copy back there must not meet it)."""
    if record.state == "copying":
        cleaned = abandon(spec, czar, catalog, record.id, record.target, None)
        if not cleaned and record.target == target:
            raise WorkerOpError(
                f"copy {record.id} of chunk {record.chunk} of {record.catalog} to "
                f"{target} was interrupted and what it built there cannot be dropped yet "
                "(an in-doubt transaction? `qserv-py cluster status`); try again later"
            )
    elif record.source == target:
        wait_for_queries(czar, [record.id], GRACE_S, QUERY_WAIT_S)
        if not _finish(spec, czar, catalog, record):
            raise WorkerOpError(
                f"the old copy of chunk {record.chunk} of {record.catalog} on {target} (move "
                f"{record.id}) cannot be dropped yet; try again later"
            )


def abandon(
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
            for r in unfinished(czar)
            if r.state == "published" and (wanted is None or r.id in wanted)
        ]
        if not records:
            return []
        wait_for_queries(czar, [r.id for r in records], grace_s, query_wait_s)
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


def wait_for_queries(
    czar: psycopg.Connection, ids: list[int], grace_s: float, query_wait_s: float
) -> None:
    """Wait until no query can still read the old copies of the moves ``ids``.

    First ``grace_s`` after the latest publish: a client plans on the old placement until
    the czar's NOTIFY reaches it, and the tracker records a query as running only once it
    has run a moment. Then until every query recorded running that started before now
    (planned on the old placement or not) has ended, at most ``query_wait_s``; a query
    recorded running for longer than that already is taken for one whose process died.
    """
    row = czar.execute(
        "SELECT max(published_at), extract(epoch FROM now() - max(published_at))"
        " FROM qserv_meta.chunk_copies WHERE id = ANY(%s)",
        (ids,),
    ).fetchone()
    if row is None or row[0] is None:
        return
    age = float(row[1] or 0)
    if age < grace_s:
        time.sleep(grace_s - age)
    deadline = time.monotonic() + query_wait_s
    cutoff = czar.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    while True:
        running = czar.execute(
            "SELECT count(*) FROM qserv_meta.queries WHERE status = 'running'"
            " AND started_at < %s AND started_at > %s - %s * interval '1 second'",
            (cutoff, cutoff, query_wait_s),
        ).fetchone()
        if not running or not running[0]:
            return
        if time.monotonic() >= deadline:
            log.warning(
                "%s queries that may read the old copies of moved chunks still run after "
                "%s s; dropping those copies anyway (a statement still reading one delays "
                "its drop)",
                running[0],
                query_wait_s,
            )
            return
        time.sleep(0.2)


def _finish(spec: ClusterSpec, czar: psycopg.Connection, catalog: Catalog, record: Record) -> bool:
    """Drop a published move's old copy and record it done; False if its source cannot
    be reached now (a later resume finishes it)."""
    row = czar.execute(
        "SELECT state FROM qserv_meta.workers WHERE name = %s", (record.source,)
    ).fetchone()
    note = None
    if row is None or row[0] == "lost" or record.source not in {w.name for w in spec.workers}:
        note = f"{record.source} is gone (declared lost or removed): its old copy was not dropped"
    else:
        try:
            drop_partitions(spec.worker(record.source), catalog, record.chunk)
        except (ClusterError, psycopg.Error) as exc:
            log.warning(
                "move %s: the old copy on %s is not dropped yet: %s", record.id, record.source, exc
            )
            return False
    czar.execute(
        "UPDATE qserv_meta.chunk_copies SET state = 'done', finished_at = now(), error = %s"
        " WHERE id = %s",
        (note, record.id),
    )
    return True


def resume(
    spec: ClusterSpec, *, grace_s: float = GRACE_S, query_wait_s: float = QUERY_WAIT_S
) -> int:
    """Settle the copies and moves whose coordinators stopped: first the two-phase commits
    they left in doubt on the reachable workers (a publish's prepared transaction keeps its
    tables locked), then drop what unfinished copies built, and finish published moves.
    How many records it settled."""
    _recover_in_doubt(spec)
    settled = 0
    with connect(spec.czar, autocommit=True) as czar:
        for record in unfinished(czar):
            if record.state != "copying":
                continue
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(chunk_lock(czar, record.catalog, record.chunk))
                except WorkerOpError:
                    continue
                catalog = catalog_model(czar, record.catalog)
                settled += abandon(spec, czar, catalog, record.id, record.target, None)
    return settled + len(finish_moves(spec, grace_s=grace_s, query_wait_s=query_wait_s))


def _recover_in_doubt(spec: ClusterSpec) -> None:
    from qserv_py.ops.health import WorkerState, health

    seen = health(spec).check()
    up = tuple(
        w for w in spec.workers if seen.get(w.name) in (WorkerState.UP, WorkerState.DRAINING)
    )
    try:
        recover_in_doubt(replace(spec, workers=up))
    except (ClusterError, psycopg.Error) as exc:  # a worker that just went away
        log.warning("in-doubt transactions not settled yet: %s", exc)


def drop_partitions(
    worker: Instance, catalog: Catalog, chunk: int, *, attempts: int = 30, pause_s: float = 1.0
) -> int:
    """Detach and drop every partition of ``chunk`` on ``worker``; how many it dropped.

    ``DETACH … CONCURRENTLY`` does not block queries of the other chunks (a plain detach
    locks the whole table); ``DROP`` waits for the statements still reading the old
    partition. Each waits at most ``DROP_LOCK_TIMEOUT`` at a time, ``attempts`` times.
    """
    schema = catalog.sql_name
    parts = chunk_parts(catalog, chunk)
    dropped = 0
    with connect(worker, autocommit=True, timeout=3) as conn:
        conn.execute("SELECT set_config('application_name', 'qserv_py:drop', false)")
        conn.execute(f"SET lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        for part in parts:
            name = f"{schema}.{part.partition}"
            for attempt in range(attempts):
                try:
                    state = conn.execute(
                        "SELECT c.relispartition, coalesce(i.inhdetachpending, false)"
                        " FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid"
                        " WHERE c.oid = to_regclass(%s)",
                        (name,),
                    ).fetchone()
                    if state is None:
                        break
                    parent = f"{schema}.{part.parent}"
                    if state[1]:  # an earlier concurrent detach was interrupted
                        conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {name} FINALIZE")
                    elif state[0]:
                        conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {name} CONCURRENTLY")
                    checksums.forget(conn, schema, [part.partition])
                    conn.execute(f"DROP TABLE {name}")
                    dropped += 1
                    break
                except (pg_errors.LockNotAvailable, pg_errors.ObjectInUse) as exc:
                    if attempt + 1 == attempts:
                        raise ClusterError(
                            f"could not drop {name} on {worker.name}: {chunk_copy.reason(exc)}"
                            f" (queries hold it; tried {attempts} times); run the operation again"
                            " later to finish the move"
                        ) from exc
                    time.sleep(pause_s)
    return dropped
