"""Evening out rows across the workers, and emptying a worker before it leaves.

:func:`rebalance` plans chunk moves from the fullest to the emptiest live active
workers until every one holds within ``tolerance`` (10 %) of the mean rows (a chunk's
rows count on each worker holding a copy; never two copies of a chunk on one worker;
the biggest useful move first), and moves every chunk off draining workers.
:func:`drain` marks a worker draining (it gets no new chunks and still answers for what
it holds), moves all its chunks away, keeping each chunk's number of copies, and marks
it removable. Moves run one after another (copy, verify, publish); their old copies
are dropped in batches, each after one wait for the queries planned before
(:func:`qserv_py.ops.journal.finish_moves`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QservError, UnknownWorker, WorkerOpError
from qserv_py.ops import chunks, journal
from qserv_py.ops.chunks import CopyReport
from qserv_py.ops.copy import chunk_parts
from qserv_py.ops.replicate import live_workers

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)
Key = tuple[str, int]  # (catalog, chunk)
Move = tuple[str, int, str, str]  # catalog, chunk, source, target

#: rows per worker within this fraction of the mean count as even
TOLERANCE = 0.10
#: old copies are dropped after every this many moves (one wait for queries each)
DROP_BATCH = 16


@dataclass(frozen=True)
class RebalanceReport:
    """What a rebalance or a drain did."""

    moves: tuple[CopyReport, ...]
    rows_before: Mapping[str, int]
    rows_after: Mapping[str, int]  # as planned: the moves that failed did not happen
    #: (catalog, chunk, source, target, why) of the moves that failed
    failed: tuple[tuple[str, int, str, str, str], ...]
    #: moves whose old copy is not dropped yet (a later run drops it)
    pending_drops: int
    seconds: float

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.moves)


def plan_moves(
    holders: Mapping[Key, set[str]],
    sizes: Mapping[Key, int],
    targets: Sequence[str],
    leaving: Sequence[str] = (),
    tolerance: float = TOLERANCE,
) -> list[Move]:
    """Moves that empty the ``leaving`` workers and even the rows of the ``targets``.

    >>> plan_moves({("c", 1): {"a"}, ("c", 2): {"a"}}, {("c", 1): 10, ("c", 2): 10}, ["a", "b"])
    [('c', 1, 'a', 'b')]
    """
    held = {k: set(v) for k, v in holders.items()}
    rows = dict.fromkeys(targets, 0)
    for key, ws in held.items():
        for w in ws:
            if w in rows:
                rows[w] += sizes.get(key, 0)
    moves: list[Move] = []
    moved: set[Key] = set()

    def move(key: Key, source: str, target: str) -> None:
        moves.append((key[0], key[1], source, target))
        held[key].discard(source)
        held[key].add(target)
        moved.add(key)
        if source in rows:
            rows[source] -= sizes.get(key, 0)
        rows[target] += sizes.get(key, 0)

    for worker in leaving:  # every chunk leaves, the biggest first, to the emptiest
        for key in sorted(
            (k for k, ws in held.items() if worker in ws), key=lambda k: -sizes.get(k, 0)
        ):
            free = [t for t in targets if t not in held[key]]
            if not free:
                raise WorkerOpError(
                    f"chunk {key[1]} of {key[0]} cannot leave {worker}: every other active "
                    f"worker ({', '.join(targets) or 'none'}) holds it already; add a worker "
                    "(`qserv-py worker add`) or lower the catalog's replication level"
                )
            move(key, worker, min(free, key=lambda t: (rows[t], t)))
    if not targets:
        return moves
    mean = sum(rows.values()) / len(targets)
    for _ in range(len(held) * 2):
        if all(abs(r - mean) <= tolerance * mean for r in rows.values()):
            break
        best = _best_move(held, sizes, rows, mean, moved)
        if best is None:
            break
        move(*best)
    return moves


def _best_move(
    held: Mapping[Key, set[str]],
    sizes: Mapping[Key, int],
    rows: Mapping[str, int],
    mean: float,
    moved: set[Key],
) -> tuple[Key, str, str] | None:
    """The move between the fullest and emptiest workers (trying the next pairs when it
    has none) that best lowers the larger deviation of the two from the mean."""
    by_rows = sorted(rows, key=lambda w: (rows[w], w))
    for full in reversed(by_rows):
        for empty in by_rows:
            if rows[full] <= rows[empty]:
                break
            now = max(abs(rows[full] - mean), abs(rows[empty] - mean))
            best: tuple[float, int, Key] | None = None
            for key, ws in held.items():
                size = sizes.get(key, 0)
                if full not in ws or empty in ws or key in moved or size <= 0:
                    continue
                after = max(abs(rows[full] - size - mean), abs(rows[empty] + size - mean))
                if after < now and (best is None or (after, -size) < best[:2]):
                    best = (after, -size, key)
            if best is not None:
                return best[2], full, empty
    return None


def rebalance(
    spec: ClusterSpec, *, catalog: str | None = None, progress: Progress | None = None
) -> RebalanceReport:
    """Move chunks (of ``catalog``, or all) until the live active workers hold rows
    within 10 % of even, and move every chunk off the draining workers."""
    journal.resume(spec)
    live = live_workers(spec)
    targets = sorted(w for w, s in live.items() if s == "active")
    leaving = sorted(w for w, s in live.items() if s == "draining")
    name = catalog.lower() if catalog else None
    with connect(spec.czar, autocommit=True) as czar:
        if name is not None:
            journal.catalog_model(czar, name)  # UnknownCatalog if there is none
        holders, sizes = _placement(czar, name)
    return _run(spec, plan_moves(holders, sizes, targets, leaving), holders, sizes, progress)


def drain(spec: ClusterSpec, worker: str, progress: Progress | None = None) -> RebalanceReport:
    """Mark ``worker`` draining, move every chunk it holds to other live active workers
    (keeping each chunk's copies), drop its copies, then mark it removable."""
    try:
        spec.worker(worker)
    except KeyError:
        raise UnknownWorker(f"no worker {worker!r} in the cluster file") from None
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(
            "SELECT state FROM qserv_meta.workers WHERE name = %s", (worker,)
        ).fetchone()
        if row is None:
            raise UnknownWorker(f"worker {worker!r} is not registered on the czar")
        if row[0] == "lost":
            raise WorkerOpError(
                f"{worker} was declared lost: its copies no longer count and cannot be moved; "
                "`qserv-py replicate` restores them from the other replicas"
            )
        czar.execute(
            "UPDATE qserv_meta.workers SET state = 'draining', state_since = now()"
            " WHERE name = %s AND state IN ('active', 'removable')",
            (worker,),
        )
    journal.resume(spec)
    live = live_workers(spec)
    if worker not in live:
        raise WorkerOpError(
            f"{worker} does not answer, so its chunks cannot be copied from it; if it is gone "
            f"for good, declare it lost (`qserv-py worker remove {worker} --lost`) and run "
            "`qserv-py replicate`"
        )
    targets = sorted(w for w, s in live.items() if s == "active" and w != worker)
    with connect(spec.czar, autocommit=True) as czar:
        holders, sizes = _placement(czar, None)
    mine = {k: ws for k, ws in holders.items() if worker in ws}
    report = _run(spec, plan_moves(mine, sizes, targets, [worker]), holders, sizes, progress)
    if not report.failed and not report.pending_drops and _empty(spec, worker):
        with connect(spec.czar, autocommit=True) as czar:
            czar.execute(
                "UPDATE qserv_meta.workers SET state = 'removable', state_since = now()"
                " WHERE name = %s AND state = 'draining'",
                (worker,),
            )
    return report


def _placement(
    czar: psycopg.Connection, catalog: str | None
) -> tuple[dict[Key, set[str]], dict[Key, int]]:
    holders: dict[Key, set[str]] = {}
    for cat, chunk, worker in czar.execute(
        "SELECT catalog, chunk_id, worker FROM qserv_meta.placement"
        " WHERE %s::text IS NULL OR catalog = %s",
        (catalog, catalog),
    ):
        holders.setdefault((str(cat), int(chunk)), set()).add(str(worker))
    sizes = {
        (str(c), int(k)): int(n)
        for c, k, n in czar.execute(
            "SELECT s.catalog, s.chunk_id, sum(s.rows) FROM qserv_meta.chunk_stats s"
            " JOIN qserv_meta.tables t ON t.catalog = s.catalog AND t.name = s.table_name"
            " WHERE t.kind <> 'replicated' AND (%s::text IS NULL OR s.catalog = %s)"
            " GROUP BY 1, 2",
            (catalog, catalog),
        )
    }
    return holders, sizes


def _run(
    spec: ClusterSpec,
    moves: list[Move],
    holders: Mapping[Key, set[str]],
    sizes: Mapping[Key, int],
    progress: Progress | None,
) -> RebalanceReport:
    started = time.monotonic()
    before = _rows(holders, sizes)
    done: list[CopyReport] = []
    failed: list[tuple[str, int, str, str, str]] = []
    unfinished: list[int] = []
    after = {k: set(v) for k, v in holders.items()}
    for n, (cat, chunk, source, target) in enumerate(moves):
        if progress:
            progress("moving", n, len(moves))
        try:
            report = chunks.publish_move(spec, cat, chunk, source, target)
        except QservError as exc:
            log.warning("move of chunk %s of %s to %s failed: %s", chunk, cat, target, exc)
            failed.append((cat, chunk, source, target, str(exc)))
            continue
        after[(cat, chunk)].discard(source)
        after[(cat, chunk)].add(target)
        done.append(report)
        if report.copy_id is not None:
            unfinished.append(report.copy_id)
        if len(unfinished) >= DROP_BATCH:
            unfinished = _drop(spec, unfinished)
    unfinished = _drop(spec, unfinished)
    if progress:
        progress("moving", len(moves), len(moves))
    return RebalanceReport(
        tuple(done),
        before,
        _rows(after, sizes),
        tuple(failed),
        len(unfinished),
        time.monotonic() - started,
    )


def _drop(spec: ClusterSpec, ids: list[int]) -> list[int]:
    """Finish the moves ``ids``; those left unfinished."""
    if not ids:
        return []
    finished = set(journal.finish_moves(spec, ids))
    return [i for i in ids if i not in finished]


def _rows(holders: Mapping[Key, set[str]], sizes: Mapping[Key, int]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for key, ws in holders.items():
        for w in ws:
            rows[w] = rows.get(w, 0) + sizes.get(key, 0)
    return rows


def _empty(spec: ClusterSpec, worker: str) -> bool:
    """``worker`` holds no chunk: no placement names it, no chunk partition is left."""
    with connect(spec.czar, autocommit=True) as czar:
        if czar.execute(
            "SELECT 1 FROM qserv_meta.placement WHERE worker = %s LIMIT 1", (worker,)
        ).fetchone():
            return False
        names = [r[0] for r in czar.execute("SELECT name FROM qserv_meta.catalogs")]
        catalogs = [journal.catalog_model(czar, n) for n in names]
    with connect(spec.worker(worker), autocommit=True) as conn:
        for catalog in catalogs:
            parents = {p.parent for p in chunk_parts(catalog, 0)}
            left = conn.execute(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
                " JOIN pg_namespace n ON n.oid = p.relnamespace"
                " WHERE n.nspname = %s AND p.relname = ANY(%s)",
                (catalog.sql_name, sorted(parents)),
            ).fetchone()
            if left and left[0]:
                return False
    return True
