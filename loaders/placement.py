"""Chunk placement: which workers hold each chunk.

A chunk's placement is fixed by the first load that puts rows in it. It goes to the
``replication`` distinct workers that hold the fewest rows so far; chunks are taken
from the largest down, which balances rows across workers. A chunk that receives only
overlap rows is placed on the workers holding the fewest chunks. New chunks go only to
*active* workers (never to one being drained, removable or lost: ``qserv_meta.workers.state``);
rows of a chunk placed before go to every worker holding it. Placements planned by a load
are recorded in ``qserv_meta.load_placement``, and become ``qserv_meta.placement`` when it
publishes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import LoadError


class Placement:
    def __init__(
        self,
        workers: list[str],
        replication: int,
        chunk_workers: dict[int, tuple[str, ...]],
        rows: dict[str, int],
        catalog: str,
        txn: int,
        active: list[str] | None = None,
    ) -> None:
        self.workers = workers
        #: the workers that may receive new chunks (default: all)
        self.active = list(workers) if active is None else active
        self.replication = replication
        self.chunk_workers = chunk_workers
        self.rows = rows
        self.catalog = catalog
        self.txn = txn
        self._arrays: dict[str, np.ndarray] | None = None

    @classmethod
    def for_load(
        cls, czar: psycopg.Connection, spec: ClusterSpec, catalog: str, txn: int, replication: int
    ) -> Placement:
        """The catalog's published placement plus what load ``txn`` planned so far; new
        chunks will go to the active workers of ``spec``."""
        chunk_workers: dict[int, list[str]] = {}
        for chunk, worker in czar.execute(
            "SELECT chunk_id, worker FROM qserv_meta.placement WHERE catalog = %s"
            " UNION SELECT chunk_id, worker FROM qserv_meta.load_placement WHERE txn = %s"
            " ORDER BY 1, 2",
            (catalog, txn),
        ):
            chunk_workers.setdefault(chunk, []).append(worker)
        active = _active_workers(czar, spec)
        if len(active) < replication:
            raise LoadError(
                f"replication {replication} needs {replication} active workers; the cluster "
                f"has {len(active)} ({', '.join(active) or 'none'}; see `qserv-py worker list`)"
            )
        rows = dict.fromkeys((w.name for w in spec.workers), 0)
        for worker, total in czar.execute(
            "SELECT p.worker, sum(s.rows) FROM qserv_meta.placement p JOIN qserv_meta.chunk_stats s"
            " ON s.catalog = p.catalog AND s.chunk_id = p.chunk_id WHERE p.catalog = %s"
            " GROUP BY p.worker",
            (catalog,),
        ):
            if worker in rows:
                rows[worker] = int(total)
        return cls(
            [w.name for w in spec.workers],
            replication,
            {c: tuple(ws) for c, ws in chunk_workers.items()},
            rows,
            catalog,
            txn,
            active,
        )

    def place(self, czar: psycopg.Connection, chunk_rows: dict[int, int]) -> None:
        """Place the chunks of ``chunk_rows`` that have no placement, balancing rows."""
        new = sorted(
            (c for c in chunk_rows if c not in self.chunk_workers),
            key=lambda c: (-chunk_rows[c], c),
        )
        for chunk in new:
            chosen = tuple(sorted(self.active, key=lambda w: (self.rows[w], w))[: self.replication])
            self.chunk_workers[chunk] = chosen
            for worker in chosen:
                self.rows[worker] += chunk_rows[chunk]
        self._record(czar, new)

    def place_overlap(self, czar: psycopg.Connection, chunks: list[int]) -> None:
        """Place chunks that only receive overlap rows, balancing the number of chunks."""
        new = [c for c in chunks if c not in self.chunk_workers]
        if not new:
            return
        held = {w: 0 for w in self.workers}
        for ws in self.chunk_workers.values():
            for w in ws:
                held[w] = held.get(w, 0) + 1
        for chunk in new:
            chosen = tuple(sorted(self.active, key=lambda w: (held[w], w))[: self.replication])
            self.chunk_workers[chunk] = chosen
            for w in chosen:
                held[w] += 1
        self._record(czar, new)

    def _record(self, czar: psycopg.Connection, chunks: list[int]) -> None:
        self._arrays = None
        if not chunks:
            return
        with czar.transaction(), czar.cursor() as cur:
            cur.executemany(
                "INSERT INTO qserv_meta.load_placement (txn, chunk_id, worker) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(self.txn, c, w) for c in chunks for w in self.chunk_workers[c]],
            )

    def masks(self, chunk: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """For each worker, which of the rows (by chunk) it must receive."""
        if self._arrays is None:
            per: dict[str, list[int]] = {w: [] for w in self.workers}
            for c, ws in self.chunk_workers.items():
                for w in ws:
                    per.setdefault(w, []).append(c)
            self._arrays = {w: np.array(sorted(cs), dtype=np.int64) for w, cs in per.items()}
        covered = np.zeros(len(chunk), dtype=bool)
        out = []
        for worker in self.workers:
            mask = np.isin(chunk, self._arrays.get(worker, np.empty(0, np.int64)))
            covered |= mask
            out.append((worker, mask))
        if not covered.all():
            missing = np.unique(chunk[~covered])[:5].tolist()
            raise LoadError(
                f"chunks {missing} of catalog {self.catalog} have no workers; was their "
                "director data published? (`qserv-py txn list`)"
            )
        yield from out


def _active_workers(czar: psycopg.Connection, spec: ClusterSpec) -> list[str]:
    """The workers of ``spec`` that may receive new chunks, in the cluster file's order."""
    states: dict[str, str] = dict(
        czar.execute("SELECT name, state FROM qserv_meta.workers").fetchall()
    )
    return [w.name for w in spec.workers if states.get(w.name, "active") == "active"]
