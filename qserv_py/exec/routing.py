"""Which worker reads each chunk of a running query: live holders only, another one when
a worker fails.

The planner gives each chunk to the least-loaded of its holders (``ExecPlan.chunks``).
:class:`Router` keeps that wherever the worker is usable (up, or draining) in this
process's health view (:mod:`qserv_py.ops.health`) — no round trip in the common case —
and moves the chunks of any other worker, and later those of a worker that fails during
the query, to another holder: their holders are read from the czar's placement then, so
that a chunk copied or moved since the plan was made is found where it is now. A
suspect worker is tried only when no usable one holds the chunk; a down worker is
probed once more before its chunks are given up. A chunk without a live holder makes the
query fail with :class:`~qserv_py.errors.ChunksUnavailable` (naming the chunks and the
workers that hold them), or, for a partial query, is left out and reported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import ChunksUnavailable, QueryError
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.pools import borrow, czar_pool
from qserv_py.ops.health import HealthView, WorkerState, health

SHOWN = 10  # chunks an error names at most


class Router:
    """The routing of one query's chunks; thread-safe."""

    def __init__(self, spec: ClusterSpec, plan: ExecPlan, *, partial: bool = False) -> None:
        self.spec, self.plan, self.partial = spec, plan, partial
        self.view: HealthView = health(spec)
        #: workers that failed during this query: never used again by it
        self.failed: set[str] = set()
        #: chunks given up (partial queries only)
        self.missing: set[int] = set()
        self._holders: dict[int, tuple[str, ...]] = {}
        self._load: dict[str, int] = {w: len(cs) for w, cs in plan.chunks.items()}
        self._lock = threading.Lock()

    @property
    def can_move(self) -> bool:
        """Whether chunks can move to other holders (a plan made by the planner names its
        catalog; one made by hand does not, and runs where it says)."""
        return self.plan.catalog is not None

    def initial(self) -> dict[str, tuple[int, ...]]:
        """The plan's chunks per worker, with unusable workers' chunks moved elsewhere."""
        plan = self.plan
        moved = [c for w, cs in plan.chunks.items() if not self.view.usable(w) for c in cs]
        if not moved or not self.can_move:
            return plan.chunks
        kept = {w: list(cs) for w, cs in plan.chunks.items() if self.view.usable(w)}
        for worker, chunks in self.reassign(moved, ()).items():
            kept.setdefault(worker, []).extend(chunks)
        return {w: tuple(sorted(cs)) for w, cs in kept.items() if cs}

    def replicated(self) -> str:
        """A worker for a query of replicated tables only (every worker holds them)."""
        chosen = self.plan.replicated_worker
        if chosen is not None and self.view.usable(chosen) and chosen not in self.failed:
            return chosen
        names = [w.name for w in self.spec.workers if w.name not in self.failed]
        for wanted in (self.view.usable, lambda n: self.view.state(n) is WorkerState.SUSPECT):
            found = [n for n in names if wanted(n)]
            if found:
                return found[0]
        up = [n for n, s in self.view.check(names).items() if s is not WorkerState.DOWN]
        if up:
            return up[0]
        every = [w.name for w in self.spec.workers]
        raise ChunksUnavailable(
            f"no worker is reachable ({self._down(every)}); bring one back "
            "(`qserv-py cluster status`)",
            chunks=(),
            workers=tuple(every),
        )

    def fail(self, worker: str, reason: str) -> None:
        """``worker`` failed for this query (and is suspect for the process)."""
        with self._lock:
            self.failed.add(worker)
        self.view.failed(worker, reason)

    def reassign(
        self, chunks: Iterable[int], exclude: Iterable[str], *, moved: bool = False
    ) -> dict[str, list[int]]:
        """Other holders for ``chunks``, none in ``exclude`` or failed in this query: each
        chunk to the holder with the fewest chunks of this query. Chunks without a live
        holder are left out of a partial query; else ChunksUnavailable. The holders are
        the plan's (a worker failed), or the czar's now (``moved``: a chunk left its
        worker since the plan was made, or the plan's holders are all gone)."""
        chunks = sorted(set(chunks))
        skip = set(exclude)
        holders = self._holders_of(chunks, skip, fresh=moved)
        out: dict[str, list[int]] = {}
        lost: list[int] = []
        probed: dict[str, WorkerState] = {}
        with self._lock:
            skip |= self.failed
        for chunk in chunks:
            candidates = [w for w in holders.get(chunk, ()) if w not in skip]
            best = self._choose(candidates, probed)
            if best is None:
                lost.append(chunk)
                continue
            with self._lock:
                self._load[best] = self._load.get(best, 0) + 1
            out.setdefault(best, []).append(chunk)
        if lost:
            self._give_up(lost, holders)
        return out

    def _choose(self, candidates: list[str], probed: dict[str, WorkerState]) -> str | None:
        """The usable candidate with the least load; else a suspect one; else a down one
        that answers a probe now."""
        usable = [w for w in candidates if self.view.usable(w)]
        if not usable:
            usable = [w for w in candidates if self.view.state(w) is WorkerState.SUSPECT]
        if not usable:
            unknown = [w for w in candidates if w not in probed]
            if unknown:
                probed.update(self.view.check(unknown))
            usable = [
                w for w in candidates if probed.get(w) in (WorkerState.UP, WorkerState.DRAINING)
            ]
        if not usable:
            return None
        with self._lock:
            return min(usable, key=lambda w: (self._load.get(w, 0), w))

    def _give_up(self, lost: list[int], holders: dict[int, tuple[str, ...]]) -> None:
        with self._lock:
            self.missing.update(lost)
        if self.partial:
            return
        workers = sorted({w for c in lost for w in holders.get(c, ())})
        shown = ", ".join(map(str, lost[:SHOWN])) + (
            f" and {len(lost) - SHOWN} more" if len(lost) > SHOWN else ""
        )
        held = f"held by {self._down(workers)}" if workers else "held by no worker"
        raise ChunksUnavailable(
            f"chunks {shown} of catalog {self.plan.catalog} have no live replica ({held}); "
            "bring the workers back or restore the replicas (`qserv-py cluster status`, "
            "`qserv-py replicate`), or ask for a partial result (partial=true)",
            chunks=tuple(lost),
            workers=tuple(workers),
        )

    def _down(self, workers: Iterable[str]) -> str:
        states = {h.name: h for h in self.view.snapshot()}
        parts = []
        for name in workers:
            found = states.get(name)
            why = f": {found.error}" if found is not None and found.error else ""
            state = (
                "failed in this query"
                if name in self.failed
                else (found.state if found is not None else "unknown")
            )
            parts.append(f"{name} ({state}{why})")
        return ", ".join(parts)

    def _holders_of(
        self, chunks: list[int], skip: set[str], *, fresh: bool
    ) -> dict[int, tuple[str, ...]]:
        """The plan's holders of ``chunks`` when each has one outside ``skip`` and this
        query's failed workers; else (or ``fresh``) the czar's."""
        known = self.plan.holders
        if known is not None and not fresh:
            with self._lock:
                skip = skip | self.failed
            found = {c: known.get(c, ()) for c in chunks}
            if all(any(w not in skip for w in ws) for ws in found.values()):
                return found
        return self._read_holders(chunks, fresh=fresh)

    def _read_holders(self, chunks: list[int], *, fresh: bool) -> dict[int, tuple[str, ...]]:
        """The chunks' holders now, from the czar (workers declared lost left out)."""
        if self.plan.catalog is None:
            raise QueryError("the plan names no catalog: its chunks cannot move to a replica")
        wanted = [c for c in chunks if fresh or c not in self._holders]
        if wanted:
            with borrow(czar_pool(self.spec)) as czar:
                rows = czar.execute(
                    "SELECT p.chunk_id, array_agg(p.worker ORDER BY p.worker)"
                    " FROM qserv_meta.placement p JOIN qserv_meta.workers w ON w.name = p.worker"
                    " WHERE p.catalog = %s AND p.chunk_id = ANY(%s) AND w.state <> 'lost'"
                    " GROUP BY p.chunk_id",
                    (self.plan.catalog, wanted),
                ).fetchall()
            known = {w.name for w in self.spec.workers}
            with self._lock:
                for chunk in wanted:
                    self._holders[chunk] = ()
                for chunk, names in rows:
                    self._holders[int(chunk)] = tuple(n for n in names if n in known)
        return {c: self._holders.get(c, ()) for c in chunks}
