"""The one exception handler: every error a route raises becomes a proper response.

TAP routes (``/tap/...``) answer a DALI error VOTable with ``QUERY_STATUS=ERROR``; the
others answer JSON ``{"error": type, "message": ...}``. A :class:`QservError` keeps its
HTTP status; anything else is logged with its stack trace and answered 500 with a short
message (the trace never reaches the client).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from qserv_py.api.formats import VOTABLE_MEDIA, error_document
from qserv_py.errors import QservError

log = logging.getLogger(__name__)


def error_response(request: Request, status: int, kind: str, message: str) -> Response:
    if request.url.path.startswith("/tap"):
        return Response(error_document(message), status_code=status, media_type=VOTABLE_MEDIA)
    return JSONResponse({"error": kind, "message": message}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "InternalError", f"internal error ({type(exc).__name__}); see the log"
        )
