"""One thread of the process that acts when something takes too long.

A statement on a hung host (its processes stopped: the kernel still acknowledges the
packets and keepalives) or across some broken links waits forever: the client must give
up on its own. :func:`guard` shuts a session's socket (:func:`sever`) if a block runs past
its time, which makes the waiting thread fail at once as if the server had gone. Arming
costs a heap push, not a thread per statement.

A long statement is not a hung host, though: :func:`patient_guard` asks, once the time is
up, whether the server still answers a new session (on a thread of its own, so the
watchdog never waits on a probe), and only if it does not cuts the session; while it
answers, the block gets the same time again.
"""

from __future__ import annotations

import heapq
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import psycopg


def sever(conn: psycopg.Connection) -> None:
    """Shut a session's socket, whatever its thread is waiting for: a statement on a
    hung host or across a cut link then fails at once, as if the server had gone."""
    with suppress(OSError, psycopg.Error):
        fd = os.dup(conn.fileno())
        with socket.socket(fileno=fd) as sock:
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """Calls a function at its deadline unless disarmed first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, fn: Callable[[], None]) -> int:
        with self._cond:
            self._next += 1
            token = self._next
            self._armed[token] = fn
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="qserv-watchdog")
                self._thread.daemon = True
                self._thread.start()
            elif self._heap[0][1] == token:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # disarmed
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                fn = self._armed.pop(token)
            with suppress(Exception):
                fn()


_WATCHDOG = _Watchdog()


@contextmanager
def after(seconds: float, fn: Callable[[], None]) -> Iterator[None]:
    """Call ``fn`` (in the watchdog's thread) if the block runs longer than ``seconds``."""
    token = _WATCHDOG.arm(time.monotonic() + seconds, fn)
    try:
        yield
    finally:
        _WATCHDOG.disarm(token)


@contextmanager
def patient_guard(
    conn: psycopg.Connection,
    seconds: float,
    answers: Callable[[], bool],
    on_expiry: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Sever ``conn`` if the block runs longer than ``seconds`` and ``answers()`` (asked
    then) says its server no longer answers; ``on_expiry`` is called first. While the
    server answers, each further ``seconds`` are allowed: the statement is slow, not hung."""
    done = threading.Event()
    tokens: list[int] = []

    def arm() -> None:
        if not done.is_set():
            tokens.append(_WATCHDOG.arm(time.monotonic() + seconds, expire))

    def expire() -> None:
        threading.Thread(target=judge, name="qserv-deadline", daemon=True).start()

    def judge() -> None:
        alive = answers()
        if done.is_set():
            return
        if alive:
            arm()
            return
        if on_expiry is not None:
            on_expiry()
        sever(conn)

    arm()
    try:
        yield
    finally:
        done.set()
        for token in tokens:
            _WATCHDOG.disarm(token)


@contextmanager
def guard(conn: psycopg.Connection, seconds: float) -> Iterator[None]:
    """Sever ``conn`` if the block runs longer than ``seconds``."""
    with after(seconds, lambda: sever(conn)):
        yield
