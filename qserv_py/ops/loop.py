"""The service's replication loop: the controller run every ``replication_interval_s``.

Each pass (:meth:`ReplicationLoop.run_once`):

1. runs only in the process holding the loop's advisory lock on the czar (a session
   lock, taken by the first service process to try and kept while it lives), so a
   cluster served by several processes or hosts runs one controller at a time;
2. declares lost every worker that has been down for more than
   ``worker_lost_after_s`` (unless that is 0), as ``qserv-py worker remove NAME --lost``
   does but keeping it registered (state ``lost``) and in the cluster file, for the
   operator to remove or bring back; never while no worker at all answers (then the
   trouble is more likely this host's network than the workers);
3. calls :func:`qserv_py.ops.replicate.replicate`, which copies every chunk with fewer
   live copies than its catalog's level;
4. when that had nothing to copy, compares replicas by checksum
   (:func:`qserv_py.ops.checksums.verify`), taking at most ``verify_rows_per_pass`` rows'
   checksums: the recorded checksums spare later copies a scan of their source, and
   replicas that disagree are logged as errors.

The loop thread stops with the service (:meth:`stop`); a copy it was making is settled
by the next pass of whichever process holds the lock then.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import QservError
from qserv_py.ops.checksums import verify
from qserv_py.ops.health import WorkerState, health
from qserv_py.ops.replicate import ReplicationReport, live_workers, replicate
from qserv_py.ops.workers import declare_lost

log = logging.getLogger(__name__)

#: advisory lock key of the replication loop on the czar ("QSRL")
LOOP_LOCK = 0x5153_524C


class ReplicationLoop:
    """The replication loop of one service process; ``spec_of()`` gives the cluster as
    the service knows it now (it follows workers added and removed)."""

    def __init__(self, spec_of: Callable[[], ClusterSpec], settings: Settings) -> None:
        self.spec_of = spec_of
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_conn: psycopg.Connection | None = None
        self._leader = False

    # --- the thread ------------------------------------------------------------------

    def start(self) -> bool:
        """Start the thread if the loop is on (``replication_interval_s`` > 0)."""
        if self.settings.replication_interval_s <= 0 or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="qserv-replication", daemon=True)
        self._thread.start()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop the loop; the lock goes with its session. A pass still copying after
        ``wait_s`` finishes its copy on its own (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        if not self.running:
            self._release()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.replication_interval_s):
            try:
                self.run_once()
            except Exception:  # never let the loop die of one bad pass
                log.exception("the replication pass failed; trying again next time")
        self._release()

    # --- one pass ----------------------------------------------------------------------

    def run_once(self, *, now: float | None = None) -> ReplicationReport | None:
        """One pass; None if another process holds the loop (see the module)."""
        spec = self.spec_of()
        if not self.is_leader(spec):
            return None
        lost = self.declare_lost_workers(spec, now=now)
        if lost:
            log.warning("declared lost (down too long): %s", ", ".join(lost))
        report = replicate(spec)
        if not report.copies and report.healthy and self.settings.verify_rows_per_pass:
            checked = verify(
                spec, max_rows=self.settings.verify_rows_per_pass, workers=live_workers(spec)
            )
            if checked.taken:
                log.info(
                    "replication pass: %d checksums taken (%d rows); replicas that disagree: %d",
                    checked.taken, checked.rows_taken, len(checked.disagreements),
                )  # fmt: skip
        if report.copies or not report.healthy:
            log.info(
                "replication pass: %d copies, %d rows; no live copy: %d chunks; below "
                "level for lack of workers: %d; failed: %d",
                len(report.copies), report.rows, len(report.unrecoverable),
                len(report.short), len(report.failed),
            )  # fmt: skip
        return report

    def is_leader(self, spec: ClusterSpec) -> bool:
        """Whether this process holds the loop's lock (taken now if free)."""
        try:
            if self._lock_conn is None or self._lock_conn.closed:
                self._lock_conn = connect(spec.czar, autocommit=True, timeout=5)
                self._leader = False
            if self._leader:
                self._lock_conn.execute("SELECT 1")  # still ours while the session lives
            else:
                row = self._lock_conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (LOOP_LOCK,)
                ).fetchone()
                self._leader = bool(row and row[0])
        except (psycopg.Error, QservError) as exc:  # the czar restarted: the lock is gone
            log.warning("replication loop: the czar cannot be reached: %s", exc)
            self._release()
        return self._leader

    def declare_lost_workers(self, spec: ClusterSpec, *, now: float | None = None) -> list[str]:
        """Declare lost the workers down longer than ``worker_lost_after_s`` at ``now``
        (default: the time now); their names."""
        after = self.settings.worker_lost_after_s
        if after <= 0:
            return []
        view = health(spec)
        states = view.check()
        if not any(s is not WorkerState.DOWN for s in states.values()):
            return []  # nothing answers: this host's network, more likely than every worker
        with connect(spec.czar, autocommit=True) as czar:
            recorded: dict[str, str] = dict(
                czar.execute("SELECT name, state FROM qserv_meta.workers").fetchall()
            )
        moment = time.time() if now is None else now
        lost = []
        for worker in view.snapshot():
            if (
                worker.state is WorkerState.DOWN
                and moment - worker.since > after
                and recorded.get(worker.name) not in (None, "lost")
            ):
                declare_lost(spec, worker.name)
                lost.append(worker.name)
        return lost

    def _release(self) -> None:
        conn, leader = self._lock_conn, self._leader
        self._lock_conn, self._leader = None, False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                if leader and not conn.broken:  # at once: a closed session's backend
                    # ends (and drops its locks) a moment after the close returns
                    conn.execute("SELECT pg_advisory_unlock(%s)", (LOOP_LOCK,))
                conn.close()  # ends the session: the lock is released with it
