"""``GET /healthz`` (can the service answer?) and ``GET /api/v1/cluster`` (the
cluster's state for operators).

``/healthz`` gives each instance (the czar and every worker) a new connection and one
statement, all at once, each within a few seconds, and reads the placement: 200 when
every chunk has a live replica and the czar is up (``ok``, or ``degraded`` when a worker
is down or a chunk lacks replicas but every query can still be answered), 503 otherwise
(``unavailable``), with each instance's state, round-trip time and server version, each
worker's health, role, chunks and rows, and the count of under-replicated chunks.
``/api/v1/cluster`` is the same cluster state (:func:`qserv_py.ops.status.cluster_status`),
always 200.
"""

from __future__ import annotations

import time

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from qserv_py.api.deps import ServiceDep
from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.spec import Instance
from qserv_py.errors import QservError
from qserv_py.ops.status import ClusterStatus, cluster_status

router = APIRouter(tags=["health"])

#: seconds a probe may take to connect
PROBE_TIMEOUT_S = 3


class InstanceHealth(BaseModel):
    name: str
    role: str = Field(description="czar or worker")
    up: bool
    latency_ms: float | None = Field(description="Connect and one statement, milliseconds.")
    version: str | None = Field(description="The PostgreSQL server version.")
    error: str | None = None


class WorkerHealth(BaseModel):
    name: str
    state: str = Field(description="up, suspect, down or draining (probed now)")
    role: str = Field(description="active, draining, removable or lost (on the czar)")
    chunks: int = Field(description="Chunks it holds (all catalogs).")
    rows: int = Field(description="Rows of partitioned tables it holds.")
    latency_ms: float | None = None
    error: str | None = None


class Cluster(BaseModel):
    status: str = Field(
        description="ok; degraded (a worker down or a chunk under-replicated, every chunk "
        "still answerable); unavailable (the czar down, or a chunk with no live replica)"
    )
    czar_up: bool
    czar_error: str | None = None
    workers: list[WorkerHealth]
    under_replicated: int = Field(description="Chunks with fewer live replicas than wanted.")
    unavailable: int = Field(description="Chunks with no live replica at all.")
    examples: list[tuple[str, int, int, int]] = Field(
        description="(catalog, chunk, live replicas, wanted) of some under-replicated chunks."
    )


class Health(BaseModel):
    status: str = Field(description="ok, degraded (answers every query) or unavailable")
    instances: list[InstanceHealth]
    down: list[str] = Field(description="Names of the instances that are not reachable.")
    workers: list[WorkerHealth]
    under_replicated: int = Field(description="Chunks with fewer live replicas than wanted.")
    unavailable_chunks: int = Field(description="Chunks with no live replica at all.")


def _cluster(found: ClusterStatus) -> Cluster:
    return Cluster(
        status=found.status,
        czar_up=found.czar_up,
        czar_error=found.czar_error,
        workers=[WorkerHealth(**vars(w)) for w in found.workers],
        under_replicated=found.under_replicated,
        unavailable=found.unavailable,
        examples=found.examples,
    )


def probe(instance: Instance, role: str) -> InstanceHealth:
    started = time.perf_counter()
    try:
        with connect(instance, autocommit=True, timeout=PROBE_TIMEOUT_S) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = str(row[0]) if row else None
    except (QservError, psycopg.Error) as exc:
        return InstanceHealth(
            name=instance.name, role=role, up=False, latency_ms=None, version=None, error=str(exc)
        )
    latency = (time.perf_counter() - started) * 1000
    return InstanceHealth(
        name=instance.name, role=role, up=True, latency_ms=round(latency, 2), version=version
    )


@router.get(
    "/healthz",
    summary="Can the service answer every query? Each instance and worker's state",
    response_model=Health,
    responses={503: {"model": Health, "description": "Some chunk cannot be answered."}},
)
def healthz(service: ServiceDep) -> JSONResponse:
    spec = service.spec
    targets = [(spec.czar, "czar"), *((w, "worker") for w in spec.workers)]
    found = on_each(targets, lambda target: probe(*target))
    down = [h.name for h in found if not h.up]
    state = cluster_status(spec)
    status = "unavailable" if not found[0].up else state.status
    health = Health(
        status=status,
        instances=found,
        down=down,
        workers=[WorkerHealth(**vars(w)) for w in state.workers],
        under_replicated=state.under_replicated,
        unavailable_chunks=state.unavailable,
    )
    return JSONResponse(health.model_dump(), status_code=503 if status == "unavailable" else 200)


@router.get(
    "/api/v1/cluster",
    summary="The cluster's state: each worker's health, role, chunks and rows; replication",
    response_model=Cluster,
)
def cluster(service: ServiceDep) -> Cluster:
    return _cluster(cluster_status(service.spec))
