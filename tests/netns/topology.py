"""A multi-host topology on one machine: one Linux network namespace per host, each with
a veth pair to a bridge in the root namespace.

The test process stays in the root namespace and reaches each host at its own address
over the bridge, which has the first address of the subnet. The namespaces have no
default route: their traffic can reach nothing but the bridge's subnet.

Names carry the creating process's pid (``qsv<pid hex>g<n>``: bridge ``...br``, veth
``...h<i>`` on the bridge and ``...n<i>`` in the namespace, namespaces ``...-<host>``), so
parallel test sessions never collide, and leftovers of a crashed session (its pid gone)
are swept by the next one. The /24 subnet is chosen under a lock among the subnets that
no interface or route of the machine uses yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from qserv_py.cluster.local import Network

PREFIX = "qsv"
STATE_DIR = Path("/run/qserv-py-netns")  # a record per live topology: its owner's start time
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]+)g([0-9]+)(?:br|[hn][0-9]+|-.+)$")
_counter = itertools.count()


class NetnsError(RuntimeError):
    """A namespace, link or address could not be made or removed."""


@dataclass(frozen=True)
class Host:
    """One host of the topology."""

    name: str  # czar, worker1, ...
    netns: str  # its network namespace
    address: str  # its address on the bridge's subnet
    veth: str  # the host-side end of its link (on the bridge): down = a cut link
    peer: str  # the end inside the namespace


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (root namespace); NetnsError with its message if it fails."""
    result = subprocess.run(
        [_ip_binary(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _ip_binary() -> str:
    return shutil.which("ip") or "/usr/sbin/ip"


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (the tests run as an unprivileged user)"
    if not Path(_ip_binary()).exists():
        return "the `ip` command is missing (install iproute2)"
    if shutil.which("setpriv") is None:
        return "the `setpriv` command is missing (install util-linux)"
    probe = f"{PREFIX}{os.getpid():x}g{next(_counter)}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


class Topology:
    """Hosts ``names``, each in its own namespace, on one bridge; a context manager.

    ``close()`` removes everything it made (and kills any process left in its
    namespaces), also after a failure half-way through ``create()``.
    """

    def __init__(self, names: Sequence[str] = ("czar", "worker1", "worker2", "worker3")) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"host names repeat: {list(names)}")
        self.tag = f"{PREFIX}{os.getpid():x}g{next(_counter)}"
        self.bridge = f"{self.tag}br"
        self.names = tuple(names)
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}

    # --- addresses --------------------------------------------------------------------

    @property
    def gateway(self) -> str:
        """The bridge's address: where the test process's connections come from."""
        return str(self._subnet[1])

    @property
    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise NetnsError("the topology is not created yet")
        return self.subnet

    def address(self, name: str) -> str:
        return self.hosts[name].address

    def network(self) -> Network:
        """Where a LocalCluster's instances go (``LocalCluster.init(..., network=...)``)."""
        return Network(
            hosts={h.name: (h.address, h.netns) for h in self.hosts.values()},
            allow=str(self._subnet),
        )

    # --- life -------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        return self.create()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def create(self) -> Topology:
        """Make the bridge, the namespaces and their links; all or nothing."""
        sweep()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / self.tag).write_text(_start_time(os.getpid()))
        with _locked(STATE_DIR / ".lock"):
            self.subnet = _free_subnet(os.getpid())
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
        for name in self.names:
            self.add(name)

    def add(self, name: str) -> Host:
        """A new host ``name`` on the bridge (e.g. for a worker added to a running cluster)."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        i = len(self.hosts)
        if len(f"{self.tag}h{i}") > 15 or 10 + i > 254:  # IFNAMSIZ - 1; the /24
            raise NetnsError(f"topology {self.tag} has no room for a host #{i + 1}")
        host = Host(
            name, f"{self.tag}-{name}", str(self._subnet[10 + i]),
            f"{self.tag}h{i}", f"{self.tag}n{i}",
        )  # fmt: skip
        self.hosts[name] = host  # before making it: close() removes what exists by name
        ip("netns", "add", host.netns)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", host.peer,
           "netns", host.netns)  # fmt: skip
        ip("link", "set", host.veth, "master", self.bridge)
        ip("link", "set", host.veth, "up")
        ip("-n", host.netns, "link", "set", "lo", "up")
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.peer)
        ip("-n", host.netns, "link", "set", host.peer, "up")
        return host

    def close(self) -> list[int]:
        """Remove every namespace, link and the bridge; the pids it had to kill."""
        killed = _remove(self.tag)
        self.hosts.clear()
        return killed

    # --- inside a host ----------------------------------------------------------------

    def run(self, name: str, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (as root) inside host ``name``'s namespace; output captured."""
        return subprocess.run(
            [_ip_binary(), "netns", "exec", self.hosts[name].netns, *cmd],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def link_up(self, name: str) -> bool:
        """Whether host ``name``'s link to the bridge is up (not cut)."""
        out = ip("-o", "link", "show", "dev", self.hosts[name].veth).stdout
        return ",UP" in out or "<UP" in out


# --- removal ------------------------------------------------------------------------


def existing() -> dict[str, tuple[list[str], list[str]]]:
    """By topology tag, the namespaces and links of topologies that exist now."""
    spaces = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in ip("-o", "link", "show").stdout.splitlines()
    ]
    found: dict[str, tuple[list[str], list[str]]] = {}
    for group, names in enumerate((spaces, links)):
        for name in names:
            if m := _NAME.match(name):
                found.setdefault(f"{PREFIX}{m[1]}g{m[2]}", ([], []))[group].append(name)
    return found


def made_by(tag: str) -> tuple[list[str], list[str]]:
    """The namespaces and links of topology ``tag`` that exist now."""
    return existing().get(tag, ([], []))


def _remove(tag: str) -> list[int]:
    killed: list[int] = []
    spaces, links = made_by(tag)
    for space in spaces:
        pids = ip("netns", "pids", space, check=False).stdout.split()
        for pid in map(int, pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        ip("netns", "del", space, check=False)
    # the bridge last; a veth end vanishes with its peer, hence "check=False"
    for link in sorted(links, key=lambda x: x.endswith("br")):
        ip("link", "del", link, check=False)
    left = [x for group in made_by(tag) for x in group]
    (STATE_DIR / tag).unlink(missing_ok=True)
    if left:
        raise NetnsError(f"could not remove {left} (made by topology {tag})")
    return killed


def sweep() -> list[str]:
    """Remove what topologies of processes that are gone left behind; their tags."""
    stale = [tag for tag in existing() if not _owner_alive(tag)]
    for tag in stale:
        _remove(tag)
    return stale


def _owner_alive(tag: str) -> bool:
    pid = int(tag.removeprefix(PREFIX).split("g")[0], 16)
    started = _start_time(pid)
    if not started:
        return False
    record = STATE_DIR / tag
    if record.exists():  # the pid may have been reused since: compare the start time
        return record.read_text() == started
    # another process's topology that it has not recorded yet: leave it alone
    return pid != os.getpid()


def _start_time(pid: int) -> str:
    """A process's start time (clock ticks since boot), '' if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no address or route of the machine overlaps, near ``seed``."""
    used = [
        ipaddress.ip_network(word, strict=False)
        for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all"))
        for line in ip(*args).stdout.splitlines()
        for word in line.split()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", word)
    ]
    for step in range(1 << 16):
        index = (seed + step) % (1 << 16)
        candidate = ipaddress.IPv4Network(f"10.{index >> 8}.{index & 0xFF}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NetnsError("no free 10.x.y.0/24 subnet for a test topology")
