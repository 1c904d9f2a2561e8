"""Who is calling, what they may do, and the access log.

With ``auth = none`` (the default) there are no users: every request may do everything
and sees everything, as a private service. With ``auth = token`` a request carries
``Authorization: Bearer <token>`` (tokens from ``qserv-py user add``, see
:mod:`qserv_py.cluster.users`) or is anonymous; a wrong token is refused (401), never
taken as anonymous. What an anonymous request may do is the setting
``anonymous_routes`` (by default: sync queries and metadata).

:class:`Access` is a pure ASGI middleware, so it sees every request (even one no route
matches) once: it finds the caller, refuses what the caller may not do by the route's
group (:func:`route_group`), applies the per-user limits (queries at once, result bytes
per day: both counted on the czar, so they hold across the service's processes; see
:mod:`qserv_py.cluster.users`), and writes one access-log line (JSON, logger
``qserv_py.access``) with the user, route, query id, status, rows, bytes and seconds.
Routes read the caller with :func:`caller_of` and check ownership with :func:`may_see`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.users import (
    QuerySlot,
    User,
    add_usage,
    job_admission,
    take_query_slot,
    usage_today,
    user_of_token,
)
from qserv_py.config import Settings
from qserv_py.errors import Forbidden, LimitExceeded, QservError
from qserv_py.exec import memory

access_log = logging.getLogger("qserv_py.access")
log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: the routes whose results count as a user's result bytes
_COUNTED = ("sync", "result")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a user, or nobody (``user`` None); ``open`` with auth = none."""

    user: User | None = None
    open: bool = True

    @property
    def name(self) -> str | None:
        return self.user.name if self.user else None

    @property
    def admin(self) -> bool:
        return self.open or (self.user is not None and self.user.admin)


ANONYMOUS_OPEN = Caller()


def caller_of(request: Request) -> Caller:
    """The caller of ``request`` (found by :class:`Access`)."""
    found = getattr(request.state, "caller", None)
    return found if isinstance(found, Caller) else ANONYMOUS_OPEN


def may_see(caller: Caller, owner: str | None) -> bool:
    """Whether ``caller`` may see (read, abort, delete, kill) what ``owner`` owns (None:
    an anonymous request's, which every caller may reach by its id)."""
    return caller.admin or owner is None or owner == caller.name


def check_owner(caller: Caller, owner: str | None, what: str) -> None:
    if not may_see(caller, owner):
        raise Forbidden(f"{what} belongs to another user")


def route_group(method: str, path: str) -> str:
    """The group of a route, as ``anonymous_routes`` names them (or ``admin``: routes
    with their own token, ``result``: an async job's result)."""
    if path.startswith("/tap/sync") or (path == "/api/v1/query" and method == "POST"):
        return "sync"
    if path.startswith("/tap/async"):
        return "result" if path.endswith("/results/result") else "async"
    if path.startswith("/api/v1/queries"):
        return "queries"
    if path.startswith("/api/v1/xmatch"):
        return "uploads"
    if path.startswith(("/api/v1/admin", "/api/v1/cluster", "/admin")):
        return "admin"
    return "metadata"


def needs_user(settings: Settings, caller: Caller, group: str) -> bool:
    """Whether ``caller`` lacks the user ``group`` needs."""
    if caller.open or caller.user is not None or group == "admin":
        return False
    if group == "result":
        group = "async"
    return group not in settings.anonymous_routes


#: the challenge of a 401: a bearer token, or (for clients that only do HTTP Basic when
#: challenged, such as TOPCAT) Basic with the token as the password
CHALLENGE = 'Bearer realm="qserv_py", Basic realm="qserv_py"'
#: the challenge a script in a browser gets (a request with ``X-Requested-With``, as the
#: portal sends): a Basic challenge there would open the browser's own login dialog
SCRIPT_CHALLENGE = b'Bearer realm="qserv_py"'


def unauthenticated(message: str) -> StarletteHTTPException:
    return StarletteHTTPException(401, message, headers={"WWW-Authenticate": CHALLENGE})


def token_of(header: str) -> str | None:
    """The token of an Authorization header: ``Bearer <token>``, or ``Basic`` with the
    token as the password (any user name, e.g. ``x-oauth-basic``); None if malformed."""
    kind, _, value = header.strip().partition(" ")
    value = value.strip()
    if kind.lower() == "bearer":
        return value or None
    if kind.lower() == "basic":
        try:
            _, colon, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None if colon else None
    return None


def require_user(settings: Settings, caller: Caller, what: str) -> None:
    """Refuse an anonymous ``what`` (e.g. uploads) unless ``anonymous_routes`` allows it."""
    if needs_user(settings, caller, what):
        raise unauthenticated(
            f"{what} need a user: send 'Authorization: Bearer <token>' (see docs/security.md)"
        )


def take_slot(settings: Settings, spec: ClusterSpec, name: str) -> QuerySlot:
    """One of user ``name``'s ``user_max_queries`` query slots, counted on the czar (so
    across all the service's processes), or LimitExceeded (429)."""
    limit = settings.user_max_queries
    slot = take_query_slot(spec, name, limit)
    if slot is None:
        raise LimitExceeded(
            f"user {name} already runs {limit} queries, the most at once "
            f"(setting user_max_queries = {limit}); wait for one to end"
        )
    return slot


@contextmanager
def job_limit(settings: Settings, spec: ClusterSpec, owner: str | None) -> Iterator[None]:
    """Queue a job of ``owner`` inside the block unless ``user_max_jobs`` of theirs are
    QUEUED or EXECUTING already (LimitExceeded, 429); counted under a lock on the czar,
    so that no two processes queue past the limit. ``owner`` None: no limit."""
    limit = settings.user_max_jobs
    if owner is None or not limit or settings.auth != "token":
        yield
        return
    with job_admission(spec, owner) as active:
        if active >= limit:
            raise LimitExceeded(
                f"user {owner} has {active} async jobs queued or executing, the most at once "
                f"(setting user_max_jobs = {limit}); wait for one to end or abort one"
            )
        yield


class Access:
    """The ASGI middleware described in the module's docstring."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        if not access_log.handlers and not logging.getLogger().handlers:
            # nothing configured logging (uvicorn sets up its own loggers only): the access
            # log goes to stderr, one JSON document a line
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            access_log.addHandler(handler)
            access_log.setLevel(logging.INFO)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        service = scope["app"].state.service
        settings: Settings = service.settings
        state = scope.setdefault("state", {})
        group = route_group(scope["method"], scope["path"])
        status, sent = 500, 0
        scripted = _header(scope, b"x-requested-with") is not None

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status == 401 and scripted:
                    message["headers"] = [
                        (k, SCRIPT_CHALLENGE if k.lower() == b"www-authenticate" else v)
                        for k, v in message.get("headers", ())
                    ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        caller: Caller = ANONYMOUS_OPEN
        slot: QuerySlot | None = None
        try:
            try:
                if group != "admin":  # (admin routes check their own token)
                    caller = await self._caller(scope, settings, service.spec)
                elif settings.auth == "token":
                    caller = Caller(None, open=False)
                state["caller"] = caller
                if needs_user(settings, caller, group):
                    raise unauthenticated(
                        f"this route ({group}) needs a user: send 'Authorization: Bearer "
                        "<token>' (tokens from `qserv-py user add`; see docs/security.md)"
                    )
                if caller.user is not None and group in _COUNTED:
                    await run_in_threadpool(self._check_bytes, settings, service.spec, caller)
                    if group == "sync":
                        slot = await run_in_threadpool(
                            take_slot, settings, service.spec, caller.user.name
                        )
            except (StarletteHTTPException, QservError) as exc:
                await self._refuse(scope, receive, counting_send, exc)
                return
            with memory.request_scope():  # memory granted to the request: until answered
                await self.app(scope, receive, counting_send)
        finally:
            if slot is not None:
                await run_in_threadpool(slot.release)
            if caller.user is not None and group in _COUNTED and status < 400 and sent:
                try:
                    await run_in_threadpool(add_usage, service.spec, caller.user.name, sent)
                except Exception as exc:  # never fail a request on its accounting
                    log.warning("cannot count the usage of %s: %s", caller.user.name, exc)
            if settings.access_log:
                self._log(scope, caller, state, status, sent, time.monotonic() - started)

    async def _caller(self, scope: Scope, settings: Settings, spec: ClusterSpec) -> Caller:
        if settings.auth != "token":
            return ANONYMOUS_OPEN
        header = _header(scope, b"authorization")
        if header is None:
            return Caller(None, open=False)
        token = token_of(header)
        if token is None:
            raise unauthenticated(
                "the Authorization header must be 'Bearer <token>' (or Basic with the token "
                "as the password)"
            )
        user = await run_in_threadpool(user_of_token, spec, token)
        if user is None:
            raise unauthenticated(
                "the bearer token is not valid (unknown, or its user was removed); ask the "
                "service's operator for one (`qserv-py user add`)"
            )
        return Caller(user, open=False)

    @staticmethod
    def _check_bytes(settings: Settings, spec: ClusterSpec, caller: Caller) -> None:
        limit = settings.user_max_result_bytes_per_day
        if not limit or caller.user is None:
            return
        used = usage_today(spec, caller.user.name)
        if used >= limit:
            raise LimitExceeded(
                f"user {caller.user.name} has received {used:,} bytes of results today "
                f"(UTC), the most a day (setting user_max_result_bytes_per_day = {limit:,}); "
                "try again tomorrow"
            )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        from qserv_py.api.errors import error_response

        request = Request(scope, receive)
        if isinstance(exc, StarletteHTTPException):
            response = error_response(request, exc.status_code, "NotAuthenticated", exc.detail)
            for name, value in (exc.headers or {}).items():
                response.headers[name] = value
        else:
            assert isinstance(exc, QservError)
            response = error_response(request, exc.http_status, type(exc).__name__, exc.message)
        await response(scope, receive, send)

    @staticmethod
    def _log(
        scope: Scope, caller: Caller, state: dict, status: int, sent: int, seconds: float
    ) -> None:
        client = scope.get("client")
        access_log.info(
            json.dumps(
                {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "client": client[0] if client else None,
                    "user": caller.name,
                    "method": scope["method"],
                    "route": scope["path"],
                    "query_id": state.get("query_id"),
                    "status": status,
                    "rows": state.get("rows"),
                    "bytes": sent,
                    "seconds": round(seconds, 6),
                }
            )
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
