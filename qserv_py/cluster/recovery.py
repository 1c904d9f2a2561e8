"""Starting a local instance whose server was killed: what is cleared up first.

A SIGKILLed postmaster leaves three things that would stop ``pg_ctl start``:

* the postmaster itself, a zombie until its parent (init: pg_ctl detaches it) reaps
  it; PostgreSQL refuses to start while the pid in ``postmaster.pid`` exists;
* its backends, which outlive it until they next wait, still attached to its shared
  memory ("pre-existing shared memory block is still in use");
* a data directory that crash recovery cannot start: an UNLOGGED table created by a
  transaction that a backend rolled back after its postmaster died has lost its init
  fork but kept its main fork, while the rollback never reached the WAL; recovery
  re-creates the init fork from the WAL, then fails to copy it over the main fork
  (``could not create file "base/...": File exists``). Our own code no longer makes
  such tables (``loaders.staging.create_unlogged``), but a directory damaged before,
  or by another client's UNLOGGED table, is repaired: :func:`reset_unlogged` applies
  PostgreSQL's own rule for unlogged relations after a crash (every fork but the init
  fork is discarded, the main fork is then copied from the init fork), which the
  failed recovery could not finish, and the start is tried again.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from qserv_py.errors import ClusterError

#: how long the backends of a killed postmaster get to exit after SIGKILL
ORPHAN_EXIT_S = 30.0
_CONFLICT = re.compile(r'FATAL:  could not create file "[^"]+": File exists')
_RELFILE = re.compile(r"^(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$")


def state(pid: int) -> str | None:
    """The state letter of process ``pid`` (R, S, Z, ...), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def server_processes(datadir: Path, postgres: Path) -> list[int]:
    """Live processes of the ``postgres`` binary working in ``datadir``: a server chdirs
    to its data directory, and so do all of its backends."""
    target, binary = os.path.realpath(datadir), os.path.realpath(postgres)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") != target or os.readlink(entry / "exe") != binary:
                continue
        except OSError:
            continue
        if state(int(entry.name)) not in (None, "Z", "X"):
            found.append(int(entry.name))
    return found


def clear_dead_server(datadir: Path, postgres: Path) -> None:
    """Before starting ``datadir``'s server, whose postmaster is not running: end the
    backends it left (SIGKILL: a backend that exits cleanly rolls its transaction back,
    which is what damages unlogged tables), and remove a ``postmaster.pid`` that names
    a zombie."""
    if not Path("/proc/self/stat").exists():
        return  # not Linux: pg_ctl reports what is in the way
    orphans = server_processes(datadir, postgres)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + ORPHAN_EXIT_S
    while left := [p for p in orphans if state(p) not in (None, "Z", "X")]:
        if time.monotonic() > deadline:
            raise ClusterError(
                f"processes {left} of the killed server of {datadir} did not exit after "
                "SIGKILL; the server cannot start until they have"
            )
        time.sleep(0.05)
    pidfile = datadir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    if state(pid) in ("Z", "X"):
        pidfile.unlink(missing_ok=True)


def log_size(logfile: Path) -> int:
    try:
        return logfile.stat().st_size
    except FileNotFoundError:
        return 0


def unlogged_conflict(logfile: Path, offset: int) -> bool:
    """Whether the server logged the unlogged-table recovery failure after ``offset``."""
    try:
        with logfile.open("rb") as f:
            f.seek(offset)
            return _CONFLICT.search(f.read().decode(errors="replace")) is not None
    except FileNotFoundError:
        return False


def reset_unlogged(datadir: Path) -> list[Path]:
    """Remove every fork but the init fork of each unlogged relation of a stopped,
    crashed server (the files removed): what PostgreSQL's crash recovery does itself
    before replaying the WAL, done again after the replay re-created init forks."""
    removed: list[Path] = []
    for dbdir in [*datadir.glob("base/*"), *datadir.glob("pg_tblspc/*/*/*")]:
        files: dict[str, list[Path]] = {}
        unlogged: set[str] = set()
        for path in dbdir.iterdir():
            match = _RELFILE.match(path.name)
            if match is None:
                continue
            node, fork = match.group(1), match.group(2)
            if fork == "init":
                unlogged.add(node)
            else:
                files.setdefault(node, []).append(path)
        for node in sorted(unlogged):
            for path in files.get(node, []):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
