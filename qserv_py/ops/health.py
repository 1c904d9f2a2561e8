"""This process's view of the workers: up, suspect, down or draining.

Every process that plans queries (a client, the service, the CLI) keeps one view per
cluster (:func:`health`). Execution reports what it sees: a failed connection, or a
statement that died with its server, marks the worker *suspect* at once
(:meth:`HealthView.failed`). A background thread probes every worker each
``health_probe_interval_s`` — a new connection within ``worker_connect_timeout_s`` and
one statement — and at once after a failure: a worker that answers is *up* again, one
that does not is *down*. The same thread reads the workers' states on the czar: a worker
being drained is *draining* (it still answers for the chunks it holds); a worker
declared lost is *down*.

Routing (:mod:`qserv_py.exec.routing`) sends chunk batches to usable workers (up or
draining), tries a suspect worker only when no usable one holds a chunk, and never
sends to a down worker: with no usable holder left it probes the down ones once more
(a worker that came back is used again at once), then gives up on the chunk.

Sessions use short connect timeouts and TCP keepalives (:func:`connect_options`), so a
dead host or a cut link is seen within seconds, never by waiting for a pool slot.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import psycopg

from qserv_py.cluster.db import on_each
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.config import Settings, load_settings
from qserv_py.errors import QservError

log = logging.getLogger(__name__)

#: a probe thread whose view has not been used for this long stops (a later use
#: starts it again): processes that touched many clusters, like a test session, do not
#: go on probing clusters that are gone
IDLE_STOP_S = 120.0


class WorkerState(StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"
    DRAINING = "draining"


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    state: WorkerState
    #: when it entered this state (seconds since the epoch)
    since: float
    #: why it is suspect or down
    error: str | None = None
    #: the last probe's connect and round trip, milliseconds
    latency_ms: float | None = None


def connect_options(connect_timeout_s: int) -> dict[str, Any]:
    """libpq options of every worker session: a short connect timeout, and keepalives
    that find a dead peer of an idle or waiting session in ~5 s; ``tcp_user_timeout``
    does the same for data sent and never acknowledged (a cut link)."""
    return {
        "connect_timeout": connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": 2,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": 5000,
    }


class HealthView:
    """The health of the workers of one cluster, as this process sees it."""

    def __init__(self, spec: ClusterSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.options = connect_options(settings.worker_connect_timeout_s)
        now = time.time()
        self._lock = threading.Lock()
        self._health = {w.name: WorkerHealth(w.name, WorkerState.UP, now) for w in spec.workers}
        #: states recorded on the czar ('draining', 'lost', ...), by worker
        self._roles: dict[str, str] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._used = time.monotonic()

    # --- what execution asks and tells ------------------------------------------------

    def state(self, name: str) -> WorkerState:
        self._touch()
        found = self._health.get(name)
        return found.state if found is not None else WorkerState.DOWN

    def usable(self, name: str) -> bool:
        """Up or draining: batches may go there."""
        return self.state(name) in (WorkerState.UP, WorkerState.DRAINING)

    def failed(self, name: str, reason: str) -> None:
        """Execution saw ``name`` fail: suspect now; the probe decides soon."""
        with self._lock:
            found = self._health.get(name)
            if found is not None and found.state is not WorkerState.DOWN:
                self._health[name] = WorkerHealth(name, WorkerState.SUSPECT, time.time(), reason)
        log.warning("worker %s is suspect: %s", name, reason)
        self._touch()
        self._wake.set()

    def check(self, names: Iterable[str] | None = None) -> dict[str, WorkerState]:
        """Probe the workers (all, or ``names``) now, concurrently; their states."""
        wanted = [w for w in self.spec.workers if names is None or w.name in set(names)]
        self._probe(wanted)
        return {w.name: self.state(w.name) for w in wanted}

    def answers(self, name: str) -> bool:
        """Probe worker ``name`` now: whether its server answers a new session (a
        statement of it past the batch deadline is then slow, not hung)."""
        return self.check([name]).get(name) is not WorkerState.DOWN

    def snapshot(self) -> list[WorkerHealth]:
        """Every worker's health, in the cluster file's order."""
        self._touch()
        with self._lock:
            return [self._health[w.name] for w in self.spec.workers if w.name in self._health]

    # --- probing -----------------------------------------------------------------------

    def _probe(self, workers: list[Instance]) -> None:
        results = on_each(workers, self._probe_one)
        roles = self._read_roles()
        now = time.time()
        with self._lock:
            if roles is not None:
                self._roles = roles
            for worker, (error, latency) in zip(workers, results, strict=True):
                old = self._health.get(worker.name)
                role = self._roles.get(worker.name, "active")
                if error is not None or role == "lost":
                    state = WorkerState.DOWN
                    error = error or "declared lost on the czar"
                elif role == "draining":
                    state = WorkerState.DRAINING
                else:
                    state = WorkerState.UP
                if old is None or old.state is not state:
                    if state is WorkerState.UP and old is not None:
                        log.info("worker %s is up again", worker.name)
                    elif state is WorkerState.DOWN:
                        log.warning("worker %s is down: %s", worker.name, error)
                    self._health[worker.name] = WorkerHealth(
                        worker.name, state, now, error, latency
                    )
                else:
                    self._health[worker.name] = replace(old, error=error, latency_ms=latency)

    def _probe_one(self, worker: Instance) -> tuple[str | None, float | None]:
        started = time.perf_counter()
        try:
            with psycopg.connect(worker.dsn, autocommit=True, **self.options) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return _reason(exc), None
        return None, round((time.perf_counter() - started) * 1000, 2)

    def _read_roles(self) -> dict[str, str] | None:
        """The workers' states on the czar (None if it cannot be read now)."""
        try:
            with psycopg.connect(self.spec.czar.dsn, autocommit=True, **self.options) as conn:
                return dict(conn.execute("SELECT name, state FROM qserv_meta.workers").fetchall())
        except psycopg.Error:
            return None  # an old czar without states, or the czar is restarting

    def _touch(self) -> None:
        self._used = time.monotonic()
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="qserv-health", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        interval = self.settings.health_probe_interval_s
        while time.monotonic() - self._used < IDLE_STOP_S:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._probe(list(self.spec.workers))
            except Exception as exc:  # never let the probe thread die of a surprise
                if isinstance(exc, RuntimeError) and "interpreter shutdown" in str(exc):
                    return  # the process is exiting: thread pools take no more work
                log.exception("probing the workers failed")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


_views: dict[tuple[int, str, tuple[str, ...], str], HealthView] = {}
_views_lock = threading.Lock()
_by_spec: dict[int, tuple[ClusterSpec, HealthView, int]] = {}


def health(spec: ClusterSpec) -> HealthView:
    """This process's view of ``spec``'s workers (one per process, czar, set of workers
    and settings: a worker added or removed makes a new view, which starts with every
    worker up)."""
    known = _by_spec.get(id(spec))
    if known is not None and known[0] is spec and known[2] == os.getpid():
        return known[1]  # the common case: one dict lookup
    settings = repr(sorted(spec.settings.items()))  # its [settings] may set the timeouts
    key = (os.getpid(), spec.czar.dsn, tuple(w.dsn for w in spec.workers), settings)
    view = _views.get(key)
    if view is None:
        with _views_lock:
            view = _views.get(key)
            if view is None:
                view = _views[key] = HealthView(spec, _settings(spec))
    with _views_lock:
        if len(_by_spec) >= 256:
            _by_spec.clear()
        _by_spec[id(spec)] = (spec, view, os.getpid())  # the spec is kept: its id stays
    return view


def _settings(spec: ClusterSpec) -> Settings:
    try:
        return load_settings(file_values=spec.settings)
    except QservError:
        return Settings()
