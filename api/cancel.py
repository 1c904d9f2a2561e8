"""Cancel a synchronous query when its client goes away.

The engine is synchronous, so a query runs in a thread of the pool while the event loop
waits for it. :func:`run_cancellable` waits for two things at once: the thread, and the
ASGI ``http.disconnect`` message of the request (the server sends it when the client
closes the connection; once the body is read, nothing else arrives). If the client goes
first, the query is killed as ``DELETE /api/v1/queries/{id}`` kills one
(:func:`qserv_py.exec.tracking.kill_query`: its statements on the workers and the czar
are cancelled); a query still being planned is stopped as soon as it gets its id.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from qserv_py.api.auth import ANONYMOUS_OPEN, Caller, caller_of
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QservError, QueryKilled
from qserv_py.exec.tracking import kill_query

log = logging.getLogger(__name__)

T = TypeVar("T")

GONE = "its client closed the connection"


class Cancel:
    """Links a running query to whoever may cancel it: ``on_start`` is given to the engine
    (it learns the query's id), ``cancel()`` kills the query, now or when it starts."""

    def __init__(self, spec: ClusterSpec, caller: Caller = ANONYMOUS_OPEN) -> None:
        self.spec, self.caller = spec, caller
        self.query_id: int | None = None
        self.rows: int | None = None  # the result's, for the access log
        self.cancelled = False
        self._lock = threading.Lock()

    def on_start(self, query_id: int) -> None:
        with self._lock:
            self.query_id = query_id
            if self.cancelled:
                raise QueryKilled(f"query {query_id} was killed: {GONE}")

    def cancel(self) -> None:
        """Kill the query (blocking: run it in a thread)."""
        with self._lock:
            self.cancelled = True
            query_id = self.query_id
        if query_id is None:
            return  # still planning: on_start stops it
        try:
            kill_query(self.spec, query_id, reason=f"killed: {GONE}")
            log.info("query %s killed: %s", query_id, GONE)
        except QservError:
            pass  # it finished meanwhile


async def disconnected(request: Request) -> None:
    """Return when the client of ``request`` has gone (its body already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_cancellable(request: Request, spec: ClusterSpec, work: Callable[[Cancel], T]) -> T:
    """``work(cancel)`` in a thread; its query is killed if the client disconnects first."""
    cancel = Cancel(spec, caller_of(request))
    task = asyncio.ensure_future(run_in_threadpool(work, cancel))
    watcher = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await run_in_threadpool(cancel.cancel)
        return await task
    finally:
        watcher.cancel()
        request.state.query_id, request.state.rows = cancel.query_id, cancel.rows
