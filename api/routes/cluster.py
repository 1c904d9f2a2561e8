"""Cluster operations over HTTP (``/api/v1/admin``), behind the admin token.

- ``GET /workers``: every worker, its state, chunks and rows;
- ``POST /workers`` ``{"dsn": ..., "name": ...}``: add a PostgreSQL server as a worker
  (all or nothing: see :mod:`qserv_py.ops.workers`); 201 and the worker;
- ``POST /workers/{name}/drain``: move every chunk off a worker (then it is removable);
- ``POST /workers/{name}/activate``: take a draining or removable worker back;
- ``DELETE /workers/{name}``: remove a worker that holds no chunk; ``?lost=true``: its
  host is gone, its chunks are copied again from the other replicas;
- ``POST /replicate`` ``{"catalog": ..., "level": ..., "verify": ...}``: bring chunks to
  their level (and compare their replicas by checksum);
- ``POST /rebalance`` ``{"catalog": ...}``: even out rows across the workers.

Each runs within its request (a drain or a rebalance of a big catalog takes minutes:
give the HTTP client a long timeout, or run the CLI). A user mistake answers 4xx: an
unknown worker 404, a state that refuses the operation 409, a bad or unreachable DSN
400, each with what to do. After a change of the workers the service follows at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from qserv_py.api.deps import ServiceDep
from qserv_py.api.routes.admin import require_admin
from qserv_py.api.service import Service
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec, read_cluster_file
from qserv_py.ops import workers

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["cluster"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"description": "No admin token, or a wrong one."},
        404: {"description": "No such worker or catalog."},
        409: {"description": "The worker's state (or the cluster's) refuses the operation."},
    },
)


class NewWorker(BaseModel):
    dsn: str = Field(
        description="libpq DSN of the new worker's database, with its password "
        "(postgresql://user:password@host:5432/dbname)."
    )
    name: str | None = Field(default=None, description="Its name (default: workerN).")


class ReplicateRequest(BaseModel):
    catalog: str | None = Field(default=None, description="Only this catalog.")
    level: int | None = Field(
        default=None, ge=1, description="Set the catalog's (or every catalog's) level first."
    )
    verify: bool = Field(
        default=False,
        description="Then compare every chunk's replicas by checksum (as `qserv-py replicate "
        "--verify`): the answer's `verify` names the partitions whose replicas disagree.",
    )


class RebalanceRequest(BaseModel):
    catalog: str | None = Field(default=None, description="Only this catalog.")


def fresh_spec(service: Service) -> ClusterSpec:
    """The cluster as the service knows it, after reading any change of the czar's
    metadata (a worker added or removed by another process)."""
    service.client.context  # noqa: B018 (reads the change, follows the cluster file)
    return service.spec


def _changed(service: Service) -> None:
    """The workers changed here: the service takes the new cluster file now."""
    path = service.spec.path
    if path is not None:
        service.client.follow(read_cluster_file(path))


def _local(service: Service) -> LocalCluster | None:
    path = Path(service.settings.cluster)
    cluster = LocalCluster(path)
    spec_path = service.spec.path
    if not (path.is_dir() and cluster.exists() and spec_path is not None):
        return None
    return cluster if spec_path.resolve() == (path / "cluster.toml").resolve() else None


def _report(report: Any) -> dict[str, Any]:
    data: dict[str, Any] = jsonable_encoder(report)
    for name in ("rows", "healthy"):
        if hasattr(report, name):
            data[name] = getattr(report, name)
    return data


@router.get("/workers", summary="Every worker: state, chunks, rows")
def get_workers(service: ServiceDep) -> list[dict[str, Any]]:
    return [w.to_json() for w in workers.list_workers(fresh_spec(service))]


@router.post("/workers", status_code=201, summary="Add a PostgreSQL server as a worker")
def post_worker(body: NewWorker, service: ServiceDep) -> dict[str, Any]:
    spec = fresh_spec(service)
    info = workers.add_worker(spec, body.dsn, service.settings, name=body.name)
    _changed(service)
    return info.to_json()


@router.post("/workers/{name}/drain", summary="Move every chunk off a worker")
def drain_worker(name: str, service: ServiceDep) -> dict[str, Any]:
    return _report(workers.drain_worker(fresh_spec(service), name))


@router.post("/workers/{name}/activate", summary="Take a drained worker back into service")
def activate_worker(name: str, service: ServiceDep) -> dict[str, Any]:
    return workers.activate_worker(fresh_spec(service), name).to_json()


@router.delete("/workers/{name}", summary="Remove a worker (lost=true: its host is gone)")
def delete_worker(name: str, service: ServiceDep, lost: bool = False) -> dict[str, Any]:
    spec = fresh_spec(service)
    if lost:
        report = workers.remove_lost_worker(spec, name, local=_local(service))
        _changed(service)
        data = _report(report)
        if report.replication is not None:
            data["replication"] = _report(report.replication)
        return data
    info = workers.remove_worker(spec, name, local=_local(service))
    _changed(service)
    return info.to_json()


@router.post("/replicate", summary="Copy chunks until each has its catalog's level")
async def post_replicate(
    service: ServiceDep, body: ReplicateRequest | None = None
) -> dict[str, Any]:
    from qserv_py.ops import citus_nodes
    from qserv_py.ops.replicate import replicate

    request = body or ReplicateRequest()
    spec = await run_in_threadpool(fresh_spec, service)
    run = citus_nodes.replicate if spec.backend == "citus" else replicate  # Citus's placements
    report = await run_in_threadpool(
        lambda: run(spec, catalog=request.catalog, level=request.level)
    )
    data = _report(report)
    if request.verify and spec.backend != "citus":
        from qserv_py.ops.checksums import verify
        from qserv_py.ops.replicate import live_workers

        checked = await run_in_threadpool(
            lambda: verify(spec, catalog=request.catalog, workers=live_workers(spec))
        )
        data["verify"] = _report(checked)
    return data


@router.post("/rebalance", summary="Even out rows across the live workers")
async def post_rebalance(
    service: ServiceDep, body: RebalanceRequest | None = None
) -> dict[str, Any]:
    from qserv_py.ops import citus_nodes
    from qserv_py.ops.rebalance import rebalance

    request = body or RebalanceRequest()
    spec = await run_in_threadpool(fresh_spec, service)
    if spec.backend == "citus":  # Citus's rebalancer moves the shards (docs/citus.md)
        return _report(await run_in_threadpool(citus_nodes.rebalance, spec))
    return _report(await run_in_threadpool(lambda: rebalance(spec, catalog=request.catalog)))
