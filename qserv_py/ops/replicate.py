"""The replication controller: every chunk on as many live workers as its catalog wants.

A reconcile loop in the shape of Qserv's (FindAll → FixUp → Replicate): read the desired
state (each catalog's replication level) and the actual one (the placement, the workers'
states on the czar, their health now), then copy each under-replicated chunk, one
verified copy at a time (:func:`qserv_py.ops.chunks.copy_chunk`), from a live holder to
the live active worker that lacks it and holds the fewest rows. Every step is idempotent
and recorded, so the loop is safe to interrupt and to run again; it first settles what
an interrupted run left (:func:`qserv_py.ops.journal.resume`).

Copies on a worker that is down, or declared lost, do not count. A chunk with no live
copy at all cannot be healed now: it is reported, by name, not raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import ConfigError, QservError, UnknownCatalog
from qserv_py.ops import chunks, journal
from qserv_py.ops.chunks import CopyReport

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class ReplicationReport:
    """What a replication pass did and could not do."""

    copies: tuple[CopyReport, ...]
    #: (catalog, chunk) with no live copy left: nothing to copy from
    unrecoverable: tuple[tuple[str, int], ...]
    #: (catalog, chunk, copies, wanted) that lack a live active worker to copy to
    short: tuple[tuple[str, int, int, int], ...]
    #: (catalog, chunk, why) whose copy failed (tried again by the next pass)
    failed: tuple[tuple[str, int, str], ...]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.copies)

    @property
    def healthy(self) -> bool:
        return not (self.unrecoverable or self.short or self.failed)


UnderReplicated = tuple[str, int, int, int]  # catalog, chunk, live copies, wanted

_UNDER = """
WITH wanted AS (
    SELECT s.catalog, s.chunk_id FROM qserv_meta.chunk_stats s
    JOIN qserv_meta.tables t ON t.catalog = s.catalog AND t.name = s.table_name
    WHERE t.kind <> 'replicated' GROUP BY 1, 2 HAVING sum(s.rows + s.overlap_rows) > 0
    UNION SELECT catalog, chunk_id FROM qserv_meta.placement
), live AS (
    SELECT p.catalog, p.chunk_id, p.worker FROM qserv_meta.placement p
    JOIN qserv_meta.workers w ON w.name = p.worker
    WHERE w.state <> 'lost' AND p.worker = ANY(%(live)s)
)
SELECT w.catalog, w.chunk_id, count(l.worker) AS have, c.replication
FROM wanted w JOIN qserv_meta.catalogs c ON c.name = w.catalog
LEFT JOIN live l ON l.catalog = w.catalog AND l.chunk_id = w.chunk_id
WHERE %(catalog)s::text IS NULL OR w.catalog = %(catalog)s
GROUP BY w.catalog, w.chunk_id, c.replication
HAVING count(l.worker) < c.replication
ORDER BY w.catalog, w.chunk_id
"""


def under_replicated(
    czar: psycopg.Connection | ClusterSpec,
    live_workers: Iterable[str],
    *,
    catalog: str | None = None,
) -> list[UnderReplicated]:
    """Chunks with fewer copies on ``live_workers`` (not declared lost) than their
    catalog's replication level: (catalog, chunk, copies, wanted)."""
    if isinstance(czar, ClusterSpec):
        with connect(czar.czar, autocommit=True) as conn:
            return under_replicated(conn, live_workers, catalog=catalog)
    rows = czar.execute(
        _UNDER, {"live": list(live_workers), "catalog": catalog.lower() if catalog else None}
    ).fetchall()
    return [(str(c), int(k), int(h), int(w)) for c, k, h, w in rows]


def live_workers(spec: ClusterSpec) -> dict[str, str]:
    """The workers that answer now (up, or draining), with their state on the czar."""
    from qserv_py.ops.health import WorkerState, health

    seen = health(spec).check()
    with connect(spec.czar, autocommit=True) as czar:
        states: dict[str, str] = dict(
            czar.execute("SELECT name, state FROM qserv_meta.workers").fetchall()
        )
    return {
        name: str(states.get(name, "unknown"))
        for name, state in seen.items()
        if state in (WorkerState.UP, WorkerState.DRAINING) and states.get(name) != "lost"
    }


def worker_rows(czar: psycopg.Connection, catalog: str | None = None) -> dict[str, int]:
    """Rows of partitioned tables per worker (a chunk's rows count on each holder)."""
    return {
        str(w): int(n)
        for w, n in czar.execute(
            "SELECT p.worker, coalesce(sum(s.rows), 0) FROM qserv_meta.placement p"
            " JOIN qserv_meta.chunk_stats s ON s.catalog = p.catalog AND s.chunk_id = p.chunk_id"
            " JOIN qserv_meta.tables t ON t.catalog = s.catalog AND t.name = s.table_name"
            " WHERE t.kind <> 'replicated' AND (%s::text IS NULL OR p.catalog = %s)"
            " GROUP BY p.worker",
            (catalog, catalog),
        )
    }


def replicate(
    spec: ClusterSpec,
    *,
    catalog: str | None = None,
    level: int | None = None,
    progress: Progress | None = None,
) -> ReplicationReport:
    """Copy every chunk (of ``catalog``, or all) that has fewer live copies than its
    catalog's replication level; ``level`` first sets that level."""
    started = time.monotonic()
    name = catalog.lower() if catalog else None
    with connect(spec.czar, autocommit=True) as czar:
        _check_catalog(czar, name)
        if level is not None:
            _set_level(czar, name, level)
    journal.resume(spec)
    live = live_workers(spec)
    with connect(spec.czar, autocommit=True) as czar:
        todo = under_replicated(czar, live, catalog=name)
        holders = _holders(czar, [(c, k) for c, k, _, _ in todo])
        rows = worker_rows(czar)
        sizes = _chunk_rows(czar, [(c, k) for c, k, _, _ in todo])
    targets = [w for w, state in live.items() if state == "active"]
    copies: list[CopyReport] = []
    unrecoverable: list[tuple[str, int]] = []
    short: list[tuple[str, int, int, int]] = []
    failed: list[tuple[str, int, str]] = []
    for done, (cat, chunk, have, want) in enumerate(todo):
        if progress:
            progress("replicating", done, len(todo))
        held = holders.get((cat, chunk), set())
        sources = sorted((w for w in held if w in live), key=lambda w: (live[w] != "active", w))
        if not sources:
            unrecoverable.append((cat, chunk))
            continue
        for _ in range(want - have):
            free = [w for w in targets if w not in held]
            if not free:
                short.append((cat, chunk, len([w for w in held if w in live]), want))
                break
            target = min(free, key=lambda w: (rows.get(w, 0), w))
            try:
                report = chunks.copy_chunk(spec, cat, chunk, sources[0], target)
            except QservError as exc:
                log.warning("replicate: chunk %s of %s: %s", chunk, cat, exc)
                failed.append((cat, chunk, str(exc)))
                break
            copies.append(report)
            held.add(target)
            rows[target] = rows.get(target, 0) + sizes.get((cat, chunk), 0)
    if progress:
        progress("replicating", len(todo), len(todo))
    return ReplicationReport(
        tuple(copies), tuple(unrecoverable), tuple(short), tuple(failed), time.monotonic() - started
    )


def _check_catalog(czar: psycopg.Connection, catalog: str | None) -> None:
    if catalog is None:
        return
    if czar.execute("SELECT 1 FROM qserv_meta.catalogs WHERE name = %s", (catalog,)).fetchone():
        return
    raise UnknownCatalog(f"no catalog {catalog!r} on the cluster (`qserv-py catalog list`)")


def _set_level(czar: psycopg.Connection, catalog: str | None, level: int) -> None:
    usable = czar.execute(
        "SELECT count(*) FROM qserv_meta.workers WHERE state IN ('active', 'draining')"
    ).fetchone()
    workers = int(usable[0]) if usable else 0
    if not 1 <= level <= workers:
        raise ConfigError(
            f"replication level {level}: it must be between 1 and the {workers} workers "
            "that are active or draining; add workers first (`qserv-py worker add`)"
        )
    czar.execute(
        "UPDATE qserv_meta.catalogs SET replication = %s WHERE %s::text IS NULL OR name = %s",
        (level, catalog, catalog),
    )


def _holders(
    czar: psycopg.Connection, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], set[str]]:
    found: dict[tuple[str, int], set[str]] = {}
    if not keys:
        return found
    for cat, chunk, worker in czar.execute(
        "SELECT p.catalog, p.chunk_id, p.worker FROM qserv_meta.placement p"
        " JOIN unnest(%s::text[], %s::bigint[]) AS k(catalog, chunk_id) USING (catalog, chunk_id)",
        ([c for c, _ in keys], [k for _, k in keys]),
    ):
        found.setdefault((str(cat), int(chunk)), set()).add(str(worker))
    return found


def _chunk_rows(
    czar: psycopg.Connection, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    if not keys:
        return {}
    return {
        (str(c), int(k)): int(n)
        for c, k, n in czar.execute(
            "SELECT s.catalog, s.chunk_id, sum(s.rows) FROM qserv_meta.chunk_stats s"
            " JOIN unnest(%s::text[], %s::bigint[]) AS k(catalog, chunk_id)"
            " USING (catalog, chunk_id) GROUP BY 1, 2",
            ([c for c, _ in keys], [k for _, k in keys]),
        )
    }
