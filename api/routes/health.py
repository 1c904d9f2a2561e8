"""``GET /healthz``: is every database of the cluster reachable?

Each instance (the czar and every worker) gets a new connection and one statement, all at
once, each within a few seconds: the answer is 200 when all are up, 503 otherwise, with
each instance's state, round-trip time and server version either way.
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


class Health(BaseModel):
    status: str = Field(description="ok when every instance is up, else unavailable")
    instances: list[InstanceHealth]
    down: list[str] = Field(description="Names of the instances that are not reachable.")


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
    summary="The czar and every worker reachable?",
    response_model=Health,
    responses={503: {"model": Health, "description": "Some instance is not reachable."}},
)
def healthz(service: ServiceDep) -> JSONResponse:
    spec = service.spec
    targets = [(spec.czar, "czar"), *((w, "worker") for w in spec.workers)]
    found = on_each(targets, lambda target: probe(*target))
    down = [h.name for h in found if not h.up]
    health = Health(status="unavailable" if down else "ok", instances=found, down=down)
    return JSONResponse(health.model_dump(), status_code=503 if down else 200)
