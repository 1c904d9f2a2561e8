"""The one exception handler: every error a route raises becomes a proper response.

TAP routes (``/tap/...``) answer a DALI error VOTable with ``QUERY_STATUS=ERROR``; the
others answer JSON ``{"error": type, "message": ...}``. A :class:`QservError` keeps its
HTTP status; anything else is logged with its stack trace and answered 500 with a short
message (the trace never reaches the client).
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Receive, Scope, Send

from qserv_py.api.formats import VOTABLE_MEDIA, error_document
from qserv_py.errors import QservError

log = logging.getLogger(__name__)


def error_response(request: Request, status: int, kind: str, message: str) -> Response:
    if request.url.path.startswith("/tap"):
        return Response(error_document(message), status_code=status, media_type=VOTABLE_MEDIA)
    return JSONResponse({"error": kind, "message": message}, status_code=status)


class RefuseNulInUrl:
    """ASGI middleware: a URL whose path or query holds a NUL character (``%00``) is
    answered 400 before any route sees it: no database text may hold one (a job id
    ``/tap/async/a%00b`` would otherwise fail in the czar's driver)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            response = error_response(
                Request(scope),
                400,
                "BadRequest",
                "the URL holds a NUL character (%00), which no name, id or value may hold",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (and the check of URLs for NUL characters)."""
    app.add_middleware(RefuseNulInUrl)

    @app.exception_handler(QservError)
    async def qserv_error(request: Request, exc: QservError) -> Response:
        return error_response(request, exc.http_status, type(exc).__name__, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return error_response(request, 400, "BadRequest", f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(request, exc.status_code, "HTTPError", str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(MultiPartException)
    async def bad_form(request: Request, exc: MultiPartException) -> Response:
        return error_response(request, 400, "BadRequest", f"invalid form body: {exc.message}")

    @app.exception_handler(psycopg.DataError)
    async def bad_value(request: Request, exc: psycopg.DataError) -> Response:
        # domain code translates the workers' errors: a raw DataError here is a value of
        # the request that the czar refused (a NUL character in a RUNID, ...)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return error_response(request, 400, "BadRequest", f"a value of the request: {text}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "InternalError", f"internal error ({type(exc).__name__}); see the log"
        )
