"""The science portal and the human-readable pages: ``/``, ``/portal/…``, ``/tap``, ``/docs``,
``/redoc``.

The portal is a build-free page (HTML, CSS, ES modules under ``api/portal/``, with its few
libraries vendored in ``api/portal/vendor/``) that talks to the service only through the
public TAP and REST APIs. Everything a browser loads comes from this service: the OpenAPI
pages use the vendored Swagger UI and ReDoc instead of a CDN, so they work offline.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from qserv_py.api.auth import caller_of
from qserv_py.api.deps import ServiceDep

#: the portal's static files (installed as package data of ``qserv_py.api``)
PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
#: where they are served
PORTAL_URL = "/portal"

router = APIRouter(include_in_schema=False)
#: the one REST route of the portal's: what a client needs before it signs in
rest = APIRouter(prefix="/api/v1", tags=["REST"])


class AccessInfo(BaseModel):
    auth: Literal["none", "token"] = Field(
        description="none: no users, every request may do everything; token: users send "
        "'Authorization: Bearer <token>'."
    )
    anonymous_routes: list[str] = Field(
        description="With auth = token, what a request without a token may use."
    )
    user: str | None = Field(description="The user of the request's token, or null.")
    admin: bool = Field(description="Whether the request may see every user's work.")


@rest.get("/access", summary="How the service authenticates, and who the caller is")
def access(request: Request, service: ServiceDep) -> AccessInfo:
    """Before signing in, a client (the portal) learns whether the service has users, so
    that it need not be refused to find out; with a token, whose it is."""
    settings = service.settings
    caller = caller_of(request)
    return AccessInfo(
        auth=settings.auth,
        anonymous_routes=list(settings.anonymous_routes),
        user=caller.name,
        admin=caller.admin,
    )


def _base(request: Request) -> str:
    """The service's root path (non-empty behind a proxy that mounts it under a prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/", response_class=FileResponse)
def index() -> FileResponse:
    """The portal's page."""
    return FileResponse(PORTAL_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/favicon.ico", response_class=FileResponse)
def favicon() -> FileResponse:
    return FileResponse(PORTAL_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """The OpenAPI explorer, from the vendored Swagger UI."""
    base = _base(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=f"{request.app.title} — API",
        swagger_js_url=f"{base}{PORTAL_URL}/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{PORTAL_URL}/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{base}{PORTAL_URL}/favicon.svg",
        # no badge from the public validator service: nothing leaves the service
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """The OpenAPI reference, from the vendored ReDoc (no web fonts)."""
    base = _base(request)
    return get_redoc_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=f"{request.app.title} — API reference",
        redoc_js_url=f"{base}{PORTAL_URL}/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{base}{PORTAL_URL}/favicon.svg",
        with_google_fonts=False,
    )


#: the TAP service's resources, for its landing page: (path, what it is)
TAP_RESOURCES = (
    ("sync", "synchronous queries (GET or POST: QUERY, LANG, MAXREC, RESPONSEFORMAT, UPLOAD)"),
    ("async", "asynchronous queries (UWS jobs)"),
    ("capabilities", "VOSI capabilities (TAPRegExt)"),
    ("availability", "VOSI availability"),
    ("tables", "VOSI tables: the catalogs, tables and columns"),
    ("examples", "DALI examples: queries to start from"),
)


@router.get("/tap", response_class=HTMLResponse)
def tap_landing(request: Request) -> HTMLResponse:
    """What ``/tap`` is, for a person who opens it in a browser: the TAP resources, the
    portal, and how to reach the service from pyvo or TOPCAT."""
    base = _base(request)
    url = str(request.url_for("tap_landing"))
    items = "\n".join(
        f'<li><a href="{base}/tap/{path}"><code>/tap/{path}</code></a> — {escape(what)}</li>'
        for path, what in TAP_RESOURCES
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qserv_py TAP service</title>
<link rel="icon" href="{base}{PORTAL_URL}/favicon.svg">
<link rel="stylesheet" href="{base}{PORTAL_URL}/portal.css"></head>
<body class="landing"><main>
<h1>qserv_py TAP service</h1>
<p>This is the base URL of an IVOA TAP 1.1 service. Query it from the
<a href="{base}/">portal</a>, from pyvo
(<code>pyvo.dal.TAPService("{escape(url)}")</code>) or TOPCAT.</p>
<ul>
{items}
</ul>
<p>The REST API and its reference: <a href="{base}/docs">/docs</a>,
<a href="{base}/redoc">/redoc</a>.</p>
</main></body></html>
"""
    return HTMLResponse(page)


def install(app: FastAPI) -> None:
    """Serve the portal on ``app``: its routes and its static files.

    ``app`` must be created with ``docs_url=None, redoc_url=None``: these pages replace
    FastAPI's, which load their scripts from a CDN."""
    app.include_router(router)
    app.include_router(rest)
    app.mount(PORTAL_URL, StaticFiles(directory=PORTAL_DIR), name="portal")
