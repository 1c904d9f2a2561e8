"""The memory ceiling of a service process (setting ``service_max_memory_mb``).

A process holds a result while it fetches and renders it (libpq's buffer, Arrow, the
rendered answer) and an upload while it parses and ships it, so what a query may cost
is known before it runs: its byte limit (``result_max_bytes_*``, or an upload's size)
times :data:`RESULT_FACTOR` / :data:`UPLOAD_FACTOR`. Each query and each upload asks
:data:`CEILING` for a *grant* before it accumulates anything:

- the headroom is the ceiling minus the process's resident memory now (``/proc``)
  minus what the grants still running hold;
- a result may take at most half of that headroom: its byte limit is lowered to fit
  (the servers then stop a larger result, :mod:`qserv_py.exec.limits`), so a busy
  process gives its later queries smaller limits rather than running out of memory;
- an upload needs its whole size times the factor, or it is refused;
- with less than :data:`MIN_GRANT` bytes to give, a result waits (up to
  :data:`WAIT_S`) for the grants running now to be given back, as it would wait for a
  worker session: fifty small queries at once on a process whose first queries took
  large grants are queued, not refused. It is refused with
  :class:`~qserv_py.errors.ServiceMemoryFull` (503: try again later) when nothing is
  held that could free room (the process's own memory is the problem) or at the end of
  the wait.

A grant is held until the request's answer is sent (:func:`request_scope`, entered by
the service's middleware and the async job runner), else until its ``with`` block ends.
Where rows or uploads have been accumulated, :func:`check` compares the resident
memory with the ceiling once more.

>>> Ceiling(1000 << 20, rss=lambda: 200 << 20).headroom()
838860800
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from qserv_py.errors import ServiceMemoryFull

#: bytes of process memory a result may cost per byte of its rows (sizes as PostgreSQL
#: stores them): libpq's buffer and Arrow ~2x, rendering 3-14x more (measured: a VOTable
#: of one long text value costs 14x its length; JSON of numbers ~6x)
RESULT_FACTOR = 20
#: bytes of process memory an upload may cost per byte of its file (the bytes, the
#: parsed table: ~4x for CSV, the rows shipped to the workers)
UPLOAD_FACTOR = 8
#: the smallest grant worth running a query with, bytes of rows
MIN_GRANT = 1 << 20
#: the longest a result waits for the grants held by other queries to be given back, s
WAIT_S = 300.0
SETTING = "service_max_memory_mb"

_PAGE = os.sysconf("SC_PAGE_SIZE")
_scope: contextvars.ContextVar[ExitStack | None] = contextvars.ContextVar(
    "qserv_memory_scope", default=None
)


def resident_bytes() -> int:
    """The resident memory (RSS) of this process, bytes (one read of /proc/self/statm)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):  # no /proc: nothing to compare with
        return 0


def machine_bytes() -> int:
    """The memory of the machine (or of the cgroup the process runs in, if smaller)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def ceiling_bytes(setting_mb: int | None) -> int:
    """The ceiling a setting means: MB, or (None) half of the machine's memory."""
    return setting_mb << 20 if setting_mb is not None else machine_bytes() // 2


class Ceiling:
    """The memory ceiling of this process and the grants it has given."""

    def __init__(self, limit: int, rss: Callable[[], int] = resident_bytes) -> None:
        self.limit = limit
        self._rss = rss
        self._held = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def configure(self, limit: int) -> None:
        with self._lock:
            self.limit = limit

    def headroom(self) -> int:
        return self.limit - self._rss() - self._held

    def _full(self, what: str) -> ServiceMemoryFull:
        mb = 1 << 20
        return ServiceMemoryFull(
            f"the service process has no memory to spare for {what}: it uses "
            f"{self._rss() // mb:,} MB and holds {self._held // mb:,} MB for the queries "
            f"and uploads running now, under its ceiling of {self.limit // mb:,} MB "
            f"(setting {SETTING}); try again when fewer queries run, or ask for less"
        )

    def _take(self, amount: int) -> None:
        with self._lock:
            self._held += amount

    def _give_back(self, amount: int) -> None:
        with self._lock:
            self._held -= amount
            self._freed.notify_all()

    @contextmanager
    def result(self, max_bytes: int, what: str = "a query's result") -> Iterator[int]:
        """Grant a result of at most ``max_bytes`` (its setting's limit) what memory there
        is: yields the byte limit to run it with (``max_bytes`` or less)."""
        deadline = time.monotonic() + WAIT_S
        with self._lock:
            while True:
                room = (self.limit - self._rss() - self._held) // (2 * RESULT_FACTOR)
                granted = min(max_bytes, room)
                if granted >= min(max_bytes, MIN_GRANT):
                    break
                left = deadline - time.monotonic()
                if self._held <= 0 or left <= 0:  # nothing running could free room
                    raise self._full(what)
                self._freed.wait(min(left, 1.0))
            self._held += granted * RESULT_FACTOR
        with _held_until_answered(self, granted * RESULT_FACTOR):
            yield granted

    @contextmanager
    def upload(self, size: int, what: str = "an upload") -> Iterator[None]:
        """Grant an upload of ``size`` bytes, or refuse it."""
        need = size * UPLOAD_FACTOR
        with self._lock:
            if size > MIN_GRANT and need > self.limit - self._rss() - self._held:
                raise self._full(f"{what} of {size:,} bytes")
            self._held += need
        with _held_until_answered(self, need):
            yield

    def check(self, what: str) -> None:
        """Refuse to go on with ``what`` if the process is past its ceiling already."""
        if self._rss() > self.limit:
            raise self._full(what)


@contextmanager
def _held_until_answered(ceiling: Ceiling, amount: int) -> Iterator[None]:
    """Give ``amount`` back when the enclosing request scope ends (or, outside of one,
    when the block ends)."""
    stack = _scope.get()
    if stack is None:
        try:
            yield
        finally:
            ceiling._give_back(amount)
        return
    stack.callback(ceiling._give_back, amount)
    yield


@contextmanager
def request_scope() -> Iterator[None]:
    """Grants taken inside are held until this block ends (the answer has been sent)."""
    with ExitStack() as stack:
        token = _scope.set(stack)
        try:
            yield
        finally:
            _scope.reset(token)


#: the ceiling of this process (``configure``d by the service from its settings)
CEILING = Ceiling(ceiling_bytes(None))


def configure(setting_mb: int | None) -> None:
    CEILING.configure(ceiling_bytes(setting_mb))
