"""TAP synchronous queries: ``/tap/sync`` (GET and POST, DALI parameters)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from qserv_py.api import formats
from qserv_py.api.deps import ParamsDep, ServiceDep, TapParams
from qserv_py.api.service import Service, language
from qserv_py.api.uploads import request_uploads
from qserv_py.errors import QueryRefused

router = APIRouter(prefix="/tap", tags=["TAP"])


def query_text(params: TapParams) -> str:
    """The QUERY of a doQuery request (REQUEST may be left out, as TAP 1.1 allows)."""
    request = params.get("request")
    if request is not None and request.strip().lower() != "doquery":
        raise QueryRefused(f"REQUEST={request!r} is not supported; use REQUEST=doQuery")
    text = params.get("query")
    if text is None or not text.strip():
        raise QueryRefused("QUERY is missing: give the query text in the QUERY parameter")
    return text


@router.get("/sync", summary="Run a query (parameters in the URL), answer its result")
def sync_get(params: ParamsDep, service: ServiceDep) -> Response:
    return sync(params, service)


@router.post("/sync", summary="Run a query (form or multipart, with uploads), answer its result")
def sync_post(params: ParamsDep, service: ServiceDep) -> Response:
    return sync(params, service)


def sync(params: TapParams, service: Service) -> Response:
    """A TAP sync request: DALI parameters in, the result (or a DALI error) out."""
    text = query_text(params)
    fmt = formats.parse_format(params.get("responseformat") or params.get("format"))
    uploads = request_uploads(params, service.settings)
    outcome = service.run(
        text,
        language(params.get("lang")),
        maxrec=params.int("maxrec"),
        owner="tap",
        uploads=uploads,
        partial=params.flag("partial"),
    )
    body = formats.render(outcome.table, fmt, truncated=outcome.truncated, info=outcome.info)
    return Response(body, media_type=fmt.media_type)
