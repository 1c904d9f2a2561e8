"""The ``qserv-py`` command: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from qserv_py.cluster.catalogs import create_catalog, drop_catalog, list_catalogs
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.metadata import initialize_cluster
from qserv_py.cluster.spec import ClusterSpec, cluster_file_path, read_cluster_file
from qserv_py.config import Settings, load_settings
from qserv_py.errors import QservError
from qserv_py.schema import default_catalog_path, load_catalog

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    flags = {
        "cluster": getattr(args, "cluster", None),
        "pg_bindir": getattr(args, "pg_bindir", None),
        "run_as": getattr(args, "run_as", None),
        "workers": getattr(args, "workers", None),
        "port": getattr(args, "port", None),
    }
    settings = load_settings(flags)
    file = cluster_file_path(settings.cluster)
    if file.exists() and file.suffix in (".toml", ".yaml", ".yml"):
        file_values = read_cluster_file(settings.cluster).settings
        if file_values:
            settings = load_settings(flags, file_values)
    return settings


def _spec(settings: Settings) -> ClusterSpec:
    return read_cluster_file(settings.cluster)


# --- cluster ------------------------------------------------------------------------------


def cmd_cluster_init(args: argparse.Namespace, settings: Settings) -> int:
    spec = LocalCluster(settings.cluster).init(settings)
    print(f"cluster {spec.name} ready in {settings.cluster}: czar + {len(spec.workers)} workers")
    return cmd_cluster_status(args, settings)


def cmd_cluster_start(args: argparse.Namespace, settings: Settings) -> int:
    cluster = LocalCluster(settings.cluster)
    cluster.start()
    initialize_cluster(cluster.spec(), settings)  # upgrades metadata, settles in-doubt txns
    return cmd_cluster_status(args, settings)


def cmd_cluster_stop(args: argparse.Namespace, settings: Settings) -> int:
    LocalCluster(settings.cluster).stop()
    print(f"stopped the cluster in {settings.cluster}")
    return 0


def cmd_cluster_status(args: argparse.Namespace, settings: Settings) -> int:
    rows = LocalCluster(settings.cluster).status()
    if getattr(args, "json", False):
        print(json.dumps([vars(r) for r in rows], indent=2))
    else:
        print(f"{'NAME':<10} {'ROLE':<7} {'PORT':>6} {'STATE':<5} {'PID':>8} {'VERSION':<8} DATA")
        for r in rows:
            print(
                f"{r.name:<10} {r.role:<7} {r.port:>6} {'up' if r.up else 'down':<5} "
                f"{r.pid or '-':>8} {r.version:<8} {_size(r.data_bytes)}"
            )
    return 0 if all(r.up for r in rows) else 3


def cmd_cluster_destroy(args: argparse.Namespace, settings: Settings) -> int:
    LocalCluster(settings.cluster).destroy()
    print(f"destroyed the cluster in {settings.cluster}")
    return 0


# --- metadata and catalogs ---------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    spec = _spec(settings)
    version = initialize_cluster(spec, settings)
    print(f"cluster {spec.name}: czar metadata at version {version}, {len(spec.workers)} workers")
    return 0


def _schema_file(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return default_catalog_path(name_or_path)


def cmd_catalog_create(args: argparse.Namespace, settings: Settings) -> int:
    path = _schema_file(args.schema)
    catalog = load_catalog(path)
    create_catalog(_spec(settings), catalog, path.read_text())
    print(f"created catalog {catalog.name} ({len(catalog.tables)} tables) on every worker")
    return 0


def cmd_catalog_drop(args: argparse.Namespace, settings: Settings) -> int:
    drop_catalog(_spec(settings), args.name)
    print(f"dropped catalog {args.name}")
    return 0


def cmd_catalog_list(args: argparse.Namespace, settings: Settings) -> int:
    for info in list_catalogs(_spec(settings)):
        tables = ", ".join(f"{name} ({kind})" for name, kind in info.tables)
        print(f"{info.name}: {tables}  [overlap {info.overlap_arcsec:g}″]")
    return 0


# --- the main job ---------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local cluster (creating it the first time) with the dp02 catalog."""
    cluster = LocalCluster(settings.cluster)
    if cluster.exists():
        cluster.start()
        initialize_cluster(cluster.spec(), settings)
    else:
        cluster.init(settings)
    spec = cluster.spec()
    if not any(info.name == "dp02" for info in list_catalogs(spec)):
        path = default_catalog_path("dp02")
        create_catalog(spec, load_catalog(path), path.read_text())
    cmd_cluster_status(args, settings)
    print()
    cmd_catalog_list(args, settings)
    print(f"\ncluster file: {cluster_file_path(settings.cluster)}")
    print(f"stop it with: qserv-py --cluster {settings.cluster} cluster stop")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1000
    return f"{n} B"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qserv-py", description="A sharded SQL catalog database for survey astronomy."
    )
    parser.add_argument(
        "--cluster",
        type=Path,
        help="local cluster directory or cluster file (env QSERV_CLUSTER)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = sub.add_parser("cluster", help="run a local cluster")
    csub = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("init", cmd_cluster_init, "create and start a local cluster"),
        ("start", cmd_cluster_start, "start every instance (idempotent)"),
        ("stop", cmd_cluster_stop, "stop every instance of the directory"),
        ("status", cmd_cluster_status, "show each instance"),
        ("destroy", cmd_cluster_destroy, "stop and delete the cluster and its data"),
    ):
        p = csub.add_parser(name, help=help_text)
        p.add_argument(
            "--dir",
            dest="cluster",
            type=Path,
            default=argparse.SUPPRESS,
            help="the cluster directory",
        )
        p.set_defaults(handler=handler)
        if name in ("init", "start", "status"):
            p.add_argument("--json", action="store_true", help="status as JSON")
        if name == "init":
            p.add_argument("--workers", type=int, help="number of workers (default 2)")
            p.add_argument("--pg-bindir", type=Path, help="PostgreSQL server binaries")
            p.add_argument("--port", type=int, help="first port (default: free ports)")
            p.add_argument("--run-as", help="OS user for the servers when run as root")

    p = sub.add_parser("init", help="set up (or upgrade) the cluster's metadata; safe to rerun")
    p.set_defaults(handler=cmd_init)

    catalog = sub.add_parser("catalog", help="create, drop and list catalogs")
    catsub = catalog.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = catsub.add_parser("create", help="create a catalog from a Felis schema on every worker")
    p.add_argument("schema", help="a Felis YAML file, or the name of a shipped schema (dp02)")
    p.set_defaults(handler=cmd_catalog_create)
    p = catsub.add_parser("drop", help="remove a catalog and its data everywhere")
    p.add_argument("name")
    p.set_defaults(handler=cmd_catalog_drop)
    p = catsub.add_parser("list", help="list catalogs")
    p.set_defaults(handler=cmd_catalog_list)

    p = sub.add_parser("up", help="the main job: start the local cluster with the dp02 catalog")
    p.add_argument(
        "--dir", dest="cluster", type=Path, default=argparse.SUPPRESS, help="the cluster directory"
    )
    p.add_argument("--workers", type=int, help="workers of a new cluster (default 2)")
    p.set_defaults(handler=cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, _settings(args))
    except QservError as exc:
        print(f"qserv-py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
