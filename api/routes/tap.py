"""TAP synchronous queries: ``/tap/sync`` (GET and POST, DALI parameters)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from qserv_py.api import formats
from qserv_py.api.auth import ANONYMOUS_OPEN, Caller, require_user
from qserv_py.api.cancel import Cancel, run_cancellable
from qserv_py.api.deps import ParamsDep, ServiceDep, TapParams
from qserv_py.api.esatapplus import for_client
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
async def sync_get(request: Request, params: ParamsDep, service: ServiceDep) -> Response:
    answer = await run_cancellable(request, service.spec, lambda c: sync(params, service, c))
    return for_client(request, answer)


def engine_owner(route: str, caller: Caller) -> str:
    """The owner recorded with a query (``tap``, ``tap:<user>``; see api/auth.py)."""
    return route if caller.name is None else f"{route}:{caller.name}"


@router.post("/sync", summary="Run a query (form or multipart, with uploads), answer its result")
async def sync_post(request: Request, params: ParamsDep, service: ServiceDep) -> Response:
    answer = await run_cancellable(request, service.spec, lambda c: sync(params, service, c))
    return for_client(request, answer)


def sync(params: TapParams, service: Service, cancel: Cancel | None = None) -> Response:
    """A TAP sync request: DALI parameters in, the result (or a DALI error) out; the query
    is killed if its client goes away (``cancel``)."""
    text = query_text(params)
    fmt = formats.parse_format(params.get("responseformat") or params.get("format"))
    caller = cancel.caller if cancel is not None else ANONYMOUS_OPEN
    if params.all("upload"):
        require_user(service.settings, caller, "uploads")
    uploads = request_uploads(params, service.settings)
    outcome = service.run(
        text,
        language(params.get("lang")),
        maxrec=params.int("maxrec"),
        owner=engine_owner("tap", caller),
        uploads=uploads,
        partial=params.flag("partial"),
        on_start=cancel.on_start if cancel is not None else None,
    )
    if cancel is not None:
        cancel.rows = outcome.table.num_rows
    body = formats.render(outcome.table, fmt, truncated=outcome.truncated, info=outcome.info)
    name = f"qserv_{outcome.query_id}.{fmt.extension}"
    return Response(body, media_type=fmt.media_type, headers=formats.disposition(name))
