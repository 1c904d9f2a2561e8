"""Crashing a local instance for real: SIGKILL of its postmaster, as the crash tests do."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.recovery import state

#: the longest the backends of a killed postmaster may take to notice it and exit
EXIT_TIMEOUT_S = 120.0


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def flush_wal(cluster: LocalCluster, name: str) -> None:
    """Make everything instance ``name`` has written to its WAL buffers so far durable
    (a switch to the next WAL file writes and flushes the current one; a checkpoint
    would also move the point where crash recovery starts)."""
    [inst] = [i for i in cluster.spec().instances if i.name == name]
    with connect(inst, autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")


def kill_postmaster(cluster: LocalCluster, name: str, *, wait: bool = True) -> list[int]:
    """SIGKILL the postmaster of instance ``name`` and wait until it has exited; its
    backends (returned) outlive it until they next wait (for their client, a lock): with
    ``wait``, until all of them have noticed and exited, rolling their transactions back,
    as they do."""
    [inst] = [i for i in cluster.instances() if i.name == name]
    pid = cluster.pid(inst)
    assert pid is not None, f"{name} is not running"
    backends = children(pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    # the signal is sent, not yet acted on: until the postmaster has exited (a zombie, or
    # reaped) it still counts as running, and a start at once would leave the instance be
    while state(pid) not in (None, "Z", "X"):
        assert time.monotonic() < deadline, f"the postmaster of {name} did not exit"
        time.sleep(0.01)
    while wait and [p for p in backends if state(p) not in (None, "Z", "X")]:
        assert time.monotonic() < deadline, f"backends of {name} still running: {backends}"
        time.sleep(0.02)
    return backends
