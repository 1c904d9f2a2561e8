"""The cluster's state as an operator reads it: each worker's health, what it holds, and
how many chunks lack replicas right now.

One function, :func:`cluster_status`, feeds ``qserv-py cluster status``, ``GET /healthz``
and ``GET /api/v1/cluster``: the workers are probed now (this process's health view,
:mod:`qserv_py.ops.health`), the rest is read from the czar's placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QservError
from qserv_py.ops.health import WorkerState, health
from qserv_py.ops.replicate import under_replicated, worker_rows


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    #: up | suspect | down | draining, as this process sees it now
    state: str
    #: active | draining | removable | lost, as the czar records it
    role: str
    #: chunks held (all catalogs) and rows of partitioned tables held
    chunks: int
    rows: int
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClusterStatus:
    czar_up: bool
    czar_error: str | None
    workers: list[WorkerStatus]
    #: chunks whose live replicas are fewer than their catalog's replication level
    under_replicated: int
    #: of those, chunks with no live replica at all (queries of them fail or are partial)
    unavailable: int
    #: (catalog, chunk, live copies, wanted) of the first few under-replicated chunks
    examples: list[tuple[str, int, int, int]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """The czar and every worker up (or draining), and every chunk fully replicated."""
        return (
            self.czar_up
            and self.under_replicated == 0
            and all(w.state in (WorkerState.UP, WorkerState.DRAINING) for w in self.workers)
        )

    @property
    def status(self) -> str:
        """ok | degraded (some worker down or chunk under-replicated, every chunk still
        answerable) | unavailable (the czar is down, or some chunk has no live replica)."""
        if not self.czar_up or self.unavailable:
            return "unavailable"
        return "ok" if self.healthy else "degraded"


EXAMPLES = 20


def cluster_status(spec: ClusterSpec) -> ClusterStatus:
    """Probe the workers now and read the placement (see the module's docstring)."""
    view = health(spec)
    states = view.check()
    found = {h.name: h for h in view.snapshot()}
    live = [n for n, s in states.items() if s in (WorkerState.UP, WorkerState.DRAINING)]
    try:
        with connect(spec.czar, autocommit=True, timeout=view.options["connect_timeout"]) as czar:
            roles: dict[str, str] = dict(
                czar.execute("SELECT name, state FROM qserv_meta.workers").fetchall()
            )
            chunks: dict[str, int] = dict(
                czar.execute(
                    "SELECT worker, count(*) FROM qserv_meta.placement GROUP BY worker"
                ).fetchall()
            )
            rows = worker_rows(czar)
            lacking = under_replicated(czar, live)
    except (QservError, psycopg.Error) as exc:
        return ClusterStatus(
            False,
            str(exc),
            [
                WorkerStatus(n, str(s), "?", 0, 0, found[n].latency_ms, found[n].error)
                for n, s in states.items()
            ],
            0,
            0,
        )
    workers = [
        WorkerStatus(
            name,
            str(state),
            str(roles.get(name, "unregistered")),
            int(chunks.get(name, 0)),
            int(rows.get(name, 0)),
            found[name].latency_ms,
            found[name].error,
        )
        for name, state in states.items()
    ]
    if spec.backend == "citus":
        workers += _citus_nodes(spec)
    return ClusterStatus(
        True,
        None,
        workers,
        len(lacking),
        sum(1 for _, _, have, _ in lacking if have == 0),
        lacking[:EXAMPLES],
    )


def _citus_nodes(spec: ClusterSpec) -> list[WorkerStatus]:
    """The Citus worker nodes (``pg_dist_node``), probed now: role is Citus's state of
    the node (active, draining, removable, inactive), chunks the shard placements it
    holds (rows are not counted on Citus)."""
    from qserv_py.exec.citus_direct import node_spec
    from qserv_py.ops.citus_nodes import list_nodes

    try:
        nodes = list_nodes(spec)
    except (QservError, psycopg.Error) as exc:
        return [WorkerStatus("citus nodes", "unknown", "?", 0, 0, None, str(exc))]
    view = health(node_spec(spec, [(n.host, n.port) for n in nodes]))
    states = view.check()
    found = {h.name: h for h in view.snapshot()}
    out = []
    for node in nodes:
        state = states.get(node.name, WorkerState.DOWN)
        if not node.active:
            state = WorkerState.DOWN
        seen = found.get(node.name)
        out.append(
            WorkerStatus(
                node.name,
                str(state),
                node.state,
                node.shards,
                0,
                seen.latency_ms if seen else None,
                seen.error if seen else None,
            )
        )
    return out
