"""Adding a worker to, or removing one from, a cluster file, in the format it was written.

The file is read as data (TOML or YAML), its ``workers`` list changed, checked as a
cluster file, and written back in its own format, atomically (a temporary file renamed
over it), keeping its mode and owner. Comments of the file are not kept.

:func:`workers_changed` is a context manager: the file is written on entry, and put
back as it was if the block raises, so a worker is never half-added to (or half-removed
from) the file and the czar.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w
import yaml

from qserv_py.cluster.spec import ClusterSpec, cluster_file_path, parse_cluster
from qserv_py.errors import ClusterFileError


def _is_yaml(file: Path) -> bool:
    return file.suffix in (".yaml", ".yml")


def _read(file: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = file.read_text()
    except OSError as exc:
        raise ClusterFileError(file, f"cannot be read: {exc.strerror or exc}") from exc
    data = yaml.safe_load(text) if _is_yaml(file) else tomllib.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("workers"), list):
        raise ClusterFileError(file, "has no `workers` list")
    return text, data


def _dump(file: Path, data: dict[str, Any]) -> str:
    if _is_yaml(file):
        return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    return tomli_w.dumps(data)


def _write(file: Path, text: str) -> None:
    """Replace ``file`` by ``text`` atomically, with the old file's mode and owner."""
    info = file.stat()
    tmp = file.with_name(f".{file.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, info.st_mode & 0o777)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chown(tmp, info.st_uid, info.st_gid)
        tmp.replace(file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def workers_changed(
    spec: ClusterSpec, *, add: tuple[str, str] | None = None, remove: str | None = None
) -> Iterator[ClusterSpec]:
    """Write ``spec``'s cluster file with worker ``add`` = (name, dsn) added or worker
    ``remove`` left out; yield the new spec; if the block raises, write the old file back.
    """
    if spec.path is None:
        raise ClusterFileError("(none)", "the cluster was not read from a file; cannot change it")
    file = cluster_file_path(spec.path)
    old_text, data = _read(file)
    workers: list[dict[str, Any]] = []
    for i, entry in enumerate(data.get("workers", []), 1):  # named as parse_cluster does
        workers.append({"name": f"worker{i}", **entry} if isinstance(entry, dict) else entry)
    if remove is not None:
        workers = [w for w in workers if w.get("name") != remove]
    if add is not None:
        workers.append({"name": add[0], "dsn": add[1]})
    data["workers"] = workers
    new_spec = parse_cluster(data, file)  # refuses what would not be a cluster file
    _write(file, _dump(file, data))
    try:
        yield new_spec
    except BaseException:
        _write(file, old_text)
        raise
