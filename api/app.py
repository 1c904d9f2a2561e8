"""The FastAPI application: TAP (sync, async/UWS, VOSI), REST, admin, health.

``create_app(settings)`` builds it; the lifespan opens the service (cluster, query client,
psycopg pools, the async job runner) and closes it. ``qserv-py serve`` runs it with uvicorn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from qserv_py.api import errors
from qserv_py.api.auth import Access
from qserv_py.api.esatapplus import EsaTapPlus
from qserv_py.api.routes import (
    admin,
    cluster,
    health,
    jobs,
    portal,
    query,
    sky,
    tap,
    vosi,
    xmatch,
)
from qserv_py.api.service import Service
from qserv_py.api.tap_schema import try_refresh_tap_schema
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings, load_settings
from qserv_py.ops.loop import ReplicationLoop


def create_app(settings: Settings | None = None, spec: ClusterSpec | None = None) -> FastAPI:
    """The service for ``settings`` (default: from the environment); ``spec`` overrides the
    cluster the settings name (tests)."""
    settings = settings if settings is not None else load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(settings, spec)
        app.state.service = service
        await run_in_threadpool(try_refresh_tap_schema, service.spec)  # TAP_SCHEMA up to date
        await jobs.start(app)
        # the replication controller, every replication_interval_s (0: off)
        loop = ReplicationLoop(lambda: cluster.fresh_spec(service), settings)
        app.state.replication = loop
        loop.start()
        try:
            yield
        finally:
            await run_in_threadpool(loop.stop)
            await jobs.stop(app)
            service.close()

    app = FastAPI(
        title="qserv_py",
        summary="A sharded SQL catalog database for survey astronomy: IVOA TAP, REST",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by the portal's routes, from local assets (no CDN)
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(Access)  # users, per-user limits, the access log (api/auth.py)
    app.add_middleware(EsaTapPlus)  # /esa/tap: TAP for astroquery's TapPlus (outermost)
    for module in (tap, jobs, vosi, query, admin, health):
        app.include_router(module.router)
    app.include_router(xmatch.router)
    app.include_router(cluster.router)  # cluster operations (admin)
    app.include_router(sky.router)  # chunk cells for sky maps
    portal.install(app)  # the portal at /, /tap, /docs, /redoc
    return app


#: the environment variable through which ``qserv-py serve --processes N`` hands its
#: settings (JSON) to each service process
SETTINGS_ENV = "QSERV_SERVE_SETTINGS"


def create_app_from_environment() -> FastAPI:
    """The app of one of several service processes (uvicorn's factory): the settings the
    ``serve`` command put in ``QSERV_SERVE_SETTINGS``."""
    import os

    return create_app(Settings.model_validate_json(os.environ[SETTINGS_ENV]))
