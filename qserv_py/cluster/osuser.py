"""Running commands as the OS user that owns a local cluster's servers.

PostgreSQL refuses to run as root. When qserv-py runs as root, the servers run as an
unprivileged user (``postgres`` where it exists, else a system user ``qserv`` that is
created), and the cluster directory belongs to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qserv_py.errors import ClusterError, ConfigError

DEFAULT_USERS = ("postgres", "qserv")


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def current_user() -> OsUser:
    entry = pwd.getpwuid(os.geteuid())
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _lookup(name: str) -> OsUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def server_user(requested: str | None) -> OsUser:
    """The user to run servers as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        if requested and requested != current_user().name:
            raise ConfigError(
                f"run_as={requested!r} needs root; the servers run as {current_user().name}"
            )
        return current_user()
    if requested:
        user = _lookup(requested)
        if user is None:
            raise ConfigError(f"run_as user {requested!r} does not exist; create it or omit it")
        if user.uid == 0:
            raise ConfigError("run_as must not be root: PostgreSQL refuses to run as root")
        return user
    for name in DEFAULT_USERS:
        user = _lookup(name)
        if user is not None:
            return user
    return _create_system_user(DEFAULT_USERS[-1])


def _create_system_user(name: str) -> OsUser:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", shell, name],
        capture_output=True,
        text=True,
    )
    user = _lookup(name)
    if user is None:
        raise ClusterError(
            f"could not create the system user {name!r} to run PostgreSQL as "
            f"(PostgreSQL refuses root): {result.stderr.strip()}; create an unprivileged "
            "user and pass --run-as USER"
        )
    return user


def run_as(
    user: OsUser,
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    netns: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as ``user`` with a clean C-locale environment; output is captured.

    With ``netns``, the command runs in that network namespace (``ip netns exec``, which
    needs root; the user is then taken on inside it with ``setpriv``).
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "LANG": "C",
        "HOME": str(cwd) if cwd else "/",
    }
    other = not user.is_current
    if netns is not None:
        cmd = [*_in_netns(netns, user if other else None), *cmd]
        other = False
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        user=user.uid if other else None,
        group=user.gid if other else None,
        extra_groups=[] if other else None,
    )


def _in_netns(netns: str, user: OsUser | None) -> list[str]:
    """The prefix that runs a command in network namespace ``netns`` (as ``user``)."""
    tools = {name: shutil.which(name) or f"/usr/sbin/{name}" for name in ("ip", "setpriv")}
    missing = [name for name, path in tools.items() if not Path(path).exists()]
    if missing:
        raise ClusterError(
            f"running an instance in network namespace {netns!r} needs {' and '.join(missing)} "
            "(packages iproute2, util-linux)"
        )
    prefix = [tools["ip"], "netns", "exec", netns]
    if user is not None:
        prefix += [tools["setpriv"], f"--reuid={user.uid}", f"--regid={user.gid}",
                   "--clear-groups", "--"]  # fmt: skip
    return prefix


def give_to(user: OsUser, path: Path) -> None:
    """Make ``user`` own ``path`` and everything below it (no-op when it is us)."""
    if user.is_current:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


def unreachable_ancestor(user: OsUser, path: Path) -> Path | None:
    """The first ancestor of ``path`` that ``user`` cannot enter, if any."""
    if user.is_current or user.uid == 0:
        return None
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid == user.uid:
            mode_ok = st.st_mode & 0o100
        elif st.st_gid == user.gid:
            mode_ok = st.st_mode & 0o010
        else:
            mode_ok = st.st_mode & 0o001
        if not mode_ok:
            return parent
    return None
