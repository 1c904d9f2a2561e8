"""A slow link: a TCP proxy that delays the bytes of each direction by a one-way delay.

This kernel has no netem qdisc, so latency comes from here: every chunk read from one
side is written to the other ``delay`` seconds later, in order, without holding back the
chunks behind it (a pipe with latency, not with less bandwidth). The proxy runs an
asyncio loop in one thread of the test process (root namespace); ``close()`` ends every
connection and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from types import TracebackType

from psycopg.conninfo import make_conninfo

from qserv_py.cluster.spec import ClusterSpec, Instance

CHUNK = 65_536


class DelayProxy:
    """Listens on ``listen`` (an ephemeral port) and forwards to ``target`` with ``delay``
    seconds added to each direction; ``delay`` may be changed while it runs."""

    def __init__(
        self, target: tuple[str, int], *, delay: float = 0.05, listen: str = "127.0.0.1"
    ) -> None:
        self.target = target
        self.delay = delay
        self.listen = listen
        self.address: tuple[str, int] = (listen, 0)  # known once started
        self.connections = 0  # accepted so far
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> DelayProxy:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"delay-proxy-{self.target[0]}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._error is not None:
            self._thread.join()
            raise OSError(f"the delay proxy cannot listen on {self.listen}: {self._error}")
        return self

    def close(self) -> None:
        """Stop listening, end every connection, and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    # --- inside the proxy's thread ----------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # reported by start() if it happens before ready
            self._error = exc
        finally:
            ready.set()
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.listen, 0)
        self.address = server.sockets[0].getsockname()[:2]
        ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        writers = [client_w]
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
            writers.append(server_w)
            pipes = [
                asyncio.create_task(self._pipe(client_r, server_w)),
                asyncio.create_task(self._pipe(server_r, client_w)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except OSError:
            pass  # the target refused, or a side reset: the other side sees its end
        finally:
            for writer in writers:
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()
            self._tasks.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy ``src`` to ``dst``, each chunk ``delay`` seconds after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                data = await src.read(CHUNK)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


def spec_through(spec: ClusterSpec, worker: str, proxy: DelayProxy) -> ClusterSpec:
    """``spec`` with worker ``worker`` reached through ``proxy`` (a slow link).

    The result names no cluster file, so a client keeps it (it would otherwise read the
    file again when the workers change).
    """
    host, port = proxy.address
    workers = tuple(
        Instance(w.name, make_conninfo(w.dsn, host=host, port=port)) if w.name == worker else w
        for w in spec.workers
    )
    if workers == spec.workers:
        raise KeyError(f"no worker {worker!r} in cluster {spec.name}")
    return dataclasses.replace(spec, workers=workers, path=None)


def target_of(instance: Instance) -> tuple[str, int]:
    """The (host, port) that ``instance``'s DSN names."""
    info = instance.conninfo
    return str(info["host"]), int(info.get("port", 5432))
