"""The cluster file: which databases make up a cluster.

A cluster is a czar database plus worker databases, each named by a libpq DSN. The same
file describes a remote cluster (written by an operator, TOML or YAML) and a local one
(``DIR/cluster.toml``, written by ``cluster init``), so everything above this module works
the same on both::

    name = "survey"
    [czar]
    dsn = "postgresql://qserv:secret@czar.example.org:5432/qserv_czar"
    [[workers]]
    name = "worker1"
    dsn = "postgresql://qserv:secret@w1.example.org:5432/qserv"
    [reader]                      # read-only role for query execution (optional)
    user = "qserv_reader"
    password = "another-secret"
    [settings]                    # any setting of qserv_py.config.Settings (optional)
    statement_timeout_s = 600

A Citus cluster names its coordinator instead (see ``docs/citus.md``): the czar metadata
lives in the coordinator's database, and qserv_py sends its worker SQL to the coordinator,
which Citus routes to the shards; ``[[workers]]`` then optionally names the Citus worker
nodes (for reading shards directly)::

    backend = "citus"
    [coordinator]
    dsn = "postgresql://qserv:secret@coord.example.org:5432/qserv"
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import tomli_w
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from qserv_py.errors import ClusterFileError

CLUSTER_FILE = "cluster.toml"
BACKENDS = ("native", "citus")
#: the name under which a Citus coordinator is qserv_py's one worker
COORDINATOR = "coordinator"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Instance:
    """One PostgreSQL database of the cluster."""

    name: str
    dsn: str

    @property
    def conninfo(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn)

    @property
    def public_dsn(self) -> str:
        """The DSN without its password, for display and metadata."""
        info = {k: v for k, v in self.conninfo.items() if k != "password"}
        return make_conninfo(**info)

    def with_user(self, user: str, password: str | None) -> Instance:
        """The same database, reached as another role."""
        info = dict(self.conninfo, user=user)
        if password is None:
            info.pop("password", None)
        else:
            info["password"] = password
        return Instance(self.name, make_conninfo(**info))


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    czar: Instance
    workers: tuple[Instance, ...]
    reader_user: str = "qserv_reader"
    reader_password: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: "native" (PostgreSQL workers) or "citus" (czar and sole worker: the coordinator)
    backend: str = "native"
    #: the Citus worker nodes (backend "citus" only; optional in a cluster file)
    citus_workers: tuple[Instance, ...] = ()

    @property
    def instances(self) -> tuple[Instance, ...]:
        # on Citus: the coordinator's database twice, as the czar and as the one worker
        return (self.czar, *self.workers)

    @property
    def coordinator(self) -> Instance:
        """The Citus coordinator (backend "citus" only)."""
        if self.backend != "citus":
            raise ValueError(f"cluster {self.name} is not a Citus cluster")
        return self.czar

    def worker(self, name: str) -> Instance:
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.backend == "citus":
            data["backend"] = "citus"
            data["coordinator"] = {"dsn": self.czar.dsn}
            if self.citus_workers:
                data["workers"] = [{"name": w.name, "dsn": w.dsn} for w in self.citus_workers]
        else:
            data["czar"] = {"dsn": self.czar.dsn}
            data["workers"] = [{"name": w.name, "dsn": w.dsn} for w in self.workers]
        data["reader"] = {"user": self.reader_user}
        if self.reader_password is not None:
            data["reader"]["password"] = self.reader_password
        if self.settings:
            data["settings"] = dict(self.settings)
        return data


def cluster_file_path(path: Path) -> Path:
    """The cluster file of ``path``: the file itself, or ``DIR/cluster.toml``."""
    return path / CLUSTER_FILE if path.is_dir() else path


def read_cluster_file(path: Path) -> ClusterSpec:
    """Read a cluster file (``.toml``, ``.yaml``/``.yml``) or a local cluster directory."""
    file = cluster_file_path(Path(path))
    if not file.exists():
        problem = "does not exist"
        if file.name == CLUSTER_FILE:
            problem += (
                f"; {file.parent} holds no cluster: create one with "
                f"`qserv-py cluster init --dir {file.parent}`, or name a cluster file"
            )
        raise ClusterFileError(file, problem)
    text = file.read_text()
    kind = "yaml" if file.suffix in (".yaml", ".yml") else "toml"
    try:
        data = yaml.safe_load(text) if kind == "yaml" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ClusterFileError(file, f"is not valid {kind}: {exc}") from exc
    return parse_cluster(data, file)


def parse_cluster(data: Any, file: Path) -> ClusterSpec:
    if not isinstance(data, dict):
        raise ClusterFileError(file, "must be a mapping with `czar` and `workers`")
    known = ("name", "backend", "czar", "coordinator", "workers", "reader", "settings")
    unknown = set(data) - set(known)
    if unknown:
        raise ClusterFileError(file, f"unknown keys {sorted(unknown)}; known: {', '.join(known)}")
    backend = data.get("backend", "native")
    if backend not in BACKENDS:
        raise ClusterFileError(
            file, f"backend {backend!r} is not known; say `backend = \"native\"` or \"citus\""
        )
    if backend == "citus":
        if "czar" in data:
            raise ClusterFileError(
                file, "a Citus cluster keeps the czar metadata on its coordinator: name only "
                '`[coordinator]` with `dsn = "postgresql://..."`, not `[czar]`'
            )  # fmt: skip
        czar = data.get("coordinator")
        if not isinstance(czar, dict) or not isinstance(czar.get("dsn"), str):
            raise ClusterFileError(
                file, 'backend "citus" needs `[coordinator]` with `dsn = "postgresql://..."`'
            )
    else:
        if "coordinator" in data:
            raise ClusterFileError(
                file, '`[coordinator]` belongs to a Citus cluster: add `backend = "citus"`, '
                "or name the czar with `[czar]`"
            )  # fmt: skip
        czar = data.get("czar")
        if not isinstance(czar, dict) or not isinstance(czar.get("dsn"), str):
            raise ClusterFileError(file, 'needs `[czar]` with `dsn = "postgresql://..."`')
    workers = data.get("workers", [] if backend == "citus" else None)
    if not isinstance(workers, list) or (not workers and backend == "native"):
        raise ClusterFileError(file, "needs at least one `[[workers]]` with `name` and `dsn`")
    instances: list[Instance] = []
    for i, entry in enumerate(workers, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("dsn"), str):
            raise ClusterFileError(file, f"worker #{i} needs a `dsn`")
        name = str(entry.get("name", f"worker{i}"))
        if not _NAME.match(name) or name in ("czar", COORDINATOR):
            raise ClusterFileError(file, f"worker #{i}: bad name {name!r} (letters, digits, _ -)")
        instances.append(Instance(name, _checked_dsn(entry["dsn"], file, name)))
    names = [w.name for w in instances]
    if len(set(names)) != len(names):
        raise ClusterFileError(file, f"worker names repeat: {names}")
    reader = data.get("reader", {})
    if not isinstance(reader, dict):
        raise ClusterFileError(file, "`reader` must be a mapping with `user` and `password`")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ClusterFileError(file, "`settings` must be a mapping")
    czar_instance = Instance("czar", _checked_dsn(czar["dsn"], file, "czar"))
    citus = backend == "citus"
    return ClusterSpec(
        name=str(data.get("name", file.stem)),
        czar=czar_instance,
        workers=(Instance(COORDINATOR, czar_instance.dsn),) if citus else tuple(instances),
        backend=backend,
        citus_workers=tuple(instances) if citus else (),
        reader_user=str(reader.get("user", "qserv_reader")),
        reader_password=reader.get("password"),
        settings=settings,
        path=file,
    )


def _checked_dsn(dsn: str, file: Path, who: str) -> str:
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ClusterFileError(file, f"{who}: invalid dsn: {exc}") from exc
    if "dbname" not in info:
        raise ClusterFileError(file, f"{who}: the dsn must name a database (dbname)")
    return dsn


def write_cluster_file(spec: ClusterSpec, file: Path) -> None:
    """Write ``spec`` as TOML, readable by its owner only (it holds passwords)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        tomli_w.dump(spec.to_dict(), out)
    tmp.replace(file)
