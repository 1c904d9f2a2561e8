"""Faults injected for real into a local cluster: a killed postmaster, a hung host
(SIGSTOP of the postmaster and all its children), a cut link (its veth down), a narrow
link (a tbf qdisc on both ends of its veth; latency comes from tests.netns.proxy).

:class:`Faults` remembers what it did, and :meth:`Faults.heal` undoes all of it (links
up, processes continued, killed instances started again), so a session's cluster is
healthy again for the next test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from qserv_py.cluster.local import LocalCluster, LocalInstance
from tests.netns.topology import NetnsError, Topology, ip

WAIT_S = 60.0  # the longest a fault may take to show (a process to die): not a margin


class Faults:
    """Fault injection into ``cluster`` (whose instances live in ``topology``'s hosts)."""

    def __init__(
        self,
        cluster: LocalCluster,
        topology: Topology | None = None,
        *,
        on_start: Callable[[LocalCluster], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.topology = topology
        self.on_start = on_start  # called after heal() restarted instances (record pids)
        self.stopped: dict[str, list[int]] = {}  # hung instance → the pids stopped
        self.cut_links: set[str] = set()
        self.throttled: set[str] = set()
        self.killed: dict[str, list[int]] = {}  # killed instance → its processes then

    def instance(self, name: str) -> LocalInstance:
        for inst in self.cluster.instances():
            if inst.name == name:
                return inst
        raise KeyError(f"no instance {name!r} in {self.cluster.root}")

    def postmaster(self, name: str) -> int:
        """The running postmaster's pid of instance ``name`` (from postmaster.pid)."""
        pid = self.cluster.pid(self.instance(name))
        if pid is None:
            raise RuntimeError(f"{name} is not running (no live pid in its postmaster.pid)")
        return pid

    # --- a killed server --------------------------------------------------------------

    def kill(self, name: str) -> int:
        """SIGKILL the postmaster of ``name`` and wait until it is gone; its pid.

        Its backends notice the postmaster's death and exit on their own.
        """
        pid = self.postmaster(name)
        self.killed[name] = [pid, *descendants(pid)]
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), f"postmaster {pid} of {name} to die")
        return pid

    # --- a hung host ------------------------------------------------------------------

    def hang(self, name: str) -> list[int]:
        """SIGSTOP the postmaster of ``name`` and every process below it, and wait until
        all are stopped; their pids."""
        if name in self.stopped:
            raise RuntimeError(f"{name} is already hung")
        root = self.postmaster(name)
        os.kill(root, signal.SIGSTOP)  # first: a stopped postmaster forks no more children
        _wait(lambda: state(root) in _HELD, f"postmaster {root} to stop")
        pids = [root, *descendants(root)]
        self.stopped[name] = pids
        for pid in pids[1:]:
            _signal(pid, signal.SIGSTOP)
        _wait(lambda: all(state(p) in _HELD for p in pids), f"the processes of {name} to stop")
        return pids

    def resume(self, name: str) -> None:
        """SIGCONT what :meth:`hang` stopped, and wait until none is stopped."""
        pids = self.stopped.pop(name)
        for pid in reversed(pids):
            _signal(pid, signal.SIGCONT)
        _wait(lambda: not any(state(p) == "T" for p in pids), f"the processes of {name} to go on")

    @contextmanager
    def hung(self, name: str) -> Iterator[list[int]]:
        pids = self.hang(name)
        try:
            yield pids
        finally:
            self.resume(name)

    # --- a cut link -------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """Take host ``name``'s link down: the host runs on, but nothing reaches it."""
        veth = self._topology.hosts[name].veth
        self.cut_links.add(name)
        ip("link", "set", veth, "down")

    def restore(self, name: str) -> None:
        """Bring host ``name``'s link up, and wait until its server accepts a connection
        again (the port forwarding and the neighbour entries settle after the link does)."""
        ip("link", "set", self._topology.hosts[name].veth, "up")
        self.cut_links.discard(name)
        inst = self.instance(name)
        _wait(lambda: _accepts(inst.host, inst.port), f"{name} to be reachable again")

    @contextmanager
    def link_cut(self, name: str) -> Iterator[None]:
        self.cut(name)
        try:
            yield
        finally:
            self.restore(name)

    # --- a narrow link -----------------------------------------------------------------

    def throttle(self, name: str, rate: str = "8mbit") -> None:
        """Limit host ``name``'s link to ``rate`` (tc units) in each direction."""
        host = self._topology.hosts[name]
        self.throttled.add(name)
        for where in ((), ("-n", host.netns)):
            dev = host.peer if where else host.veth
            _tc(*where, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                "burst", "32kb", "latency", "10s")  # fmt: skip

    def unthrottle(self, name: str) -> None:
        host = self._topology.hosts[name]
        for where in ((), ("-n", host.netns)):
            dev = host.peer if where else host.veth
            _tc(*where, "qdisc", "del", "dev", dev, "root")
        self.throttled.discard(name)

    @property
    def _topology(self) -> Topology:
        if self.topology is None:
            raise RuntimeError("a link cut needs a Topology (the cluster runs on loopback)")
        return self.topology

    # --- undo -------------------------------------------------------------------------

    def heal(self) -> None:
        """Undo every fault: links up, hung processes continued, killed instances started."""
        for name in list(self.cut_links):
            self.restore(name)
        for name in list(self.throttled):
            self.unthrottle(name)
        for name in list(self.stopped):
            self.resume(name)
        if self.killed:
            # a new postmaster cannot start while the old one's backends hold its shared
            # memory (they exit once they notice its death), nor while the old pid exists,
            # even as a zombie that init has not reaped yet
            old = [(group[0], group[1:]) for group in self.killed.values()]
            _wait(
                lambda: all(state(pm) == "gone" and not any(map(_alive, rest)) for pm, rest in old),
                f"the processes of killed {sorted(self.killed)} to be gone (and reaped)",
            )
            self.cluster.start()
            self.killed.clear()
            if self.on_start is not None:
                self.on_start(self.cluster)


def _accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted within a second."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first, then theirs), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(0), [])
        found.extend(below)
        todo.extend(below)
    return found


def _tc(*args: str) -> None:
    tc = shutil.which("tc") or "/usr/sbin/tc"
    result = subprocess.run([tc, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise NetnsError(f"`tc {' '.join(args)}` failed: {result.stderr.strip()}")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited in between
        os.kill(pid, sig)


_HELD = ("T", "t", "Z", "gone")  # stopped (or traced), or no longer running at all


def state(pid: int) -> str:
    """A process's state letter from /proc (R, S, D, T, Z, ...), "gone" if it is."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def _alive(pid: int) -> bool:
    return state(pid) not in ("Z", "gone")


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {WAIT_S:.0f} s for {what}")
        time.sleep(0.05)
