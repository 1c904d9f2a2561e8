"""The ``qserv-py`` command: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import errno
import json
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qserv_py.ops.commands import add_commands

# Each command imports what it uses (psycopg, pyarrow, pydantic settings, the cluster
# modules) when it runs: ``--help`` and a parse error stay instant, and a command pays
# only for its own imports.
if TYPE_CHECKING:
    import pyarrow as pa

    from qserv_py.cluster.spec import ClusterSpec
    from qserv_py.config import Settings
    from qserv_py.ops.status import ClusterStatus

Handler = Callable[[argparse.Namespace, "Settings"], int]


def _settings(args: argparse.Namespace) -> Settings:
    from qserv_py.cluster.spec import cluster_file_path, read_cluster_file
    from qserv_py.config import load_settings

    flags = {
        "cluster": getattr(args, "cluster", None),
        "pg_bindir": getattr(args, "pg_bindir", None),
        "run_as": getattr(args, "run_as", None),
        "workers": getattr(args, "workers", None),
        "port": getattr(args, "port", None),
        "backend": "citus" if getattr(args, "citus", False) else None,
    }
    settings = load_settings(flags)
    file = cluster_file_path(settings.cluster)
    if file.exists() and file.suffix in (".toml", ".yaml", ".yml"):
        file_values = read_cluster_file(settings.cluster).settings
        if file_values:
            settings = load_settings(flags, file_values)
    return settings


def _spec(settings: Settings) -> ClusterSpec:
    from qserv_py.cluster.spec import read_cluster_file

    return read_cluster_file(settings.cluster)


# --- cluster ------------------------------------------------------------------------------


def cmd_cluster_init(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.local import LocalCluster

    spec = LocalCluster(settings.cluster).init(settings)
    if spec.backend == "citus":
        print(
            f"Citus cluster {spec.name} ready in {settings.cluster}: coordinator (with the "
            f"czar metadata) + {len(spec.citus_workers)} worker nodes"
        )
    else:
        workers = len(spec.workers)
        print(f"cluster {spec.name} ready in {settings.cluster}: czar + {workers} workers")
    return cmd_cluster_status(args, settings)


def cmd_cluster_start(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.cluster.metadata import initialize_cluster

    cluster = LocalCluster(settings.cluster)
    cluster.start()
    initialize_cluster(cluster.spec(), settings)  # upgrades metadata, settles in-doubt txns
    return cmd_cluster_status(args, settings)


def cmd_cluster_stop(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.local import LocalCluster

    LocalCluster(settings.cluster).stop()
    print(f"stopped the cluster in {settings.cluster}")
    return 0


def cmd_cluster_status(args: argparse.Namespace, settings: Settings) -> int:
    """The local instances (for a local cluster), then every worker's health, what it
    holds, and the chunks lacking replicas now (any cluster)."""
    from dataclasses import asdict

    from qserv_py.cluster.local import LocalCluster
    from qserv_py.ops.status import cluster_status

    local = LocalCluster(settings.cluster)
    rows = local.status() if local.exists() else []
    spec = _spec(settings) if not rows or rows[0].up else None
    health = cluster_status(spec) if spec is not None else None
    if getattr(args, "json", False):
        shown: dict[str, object] = {"instances": [vars(r) for r in rows]}
        if health is not None:
            shown |= asdict(health) | {"status": health.status}
        print(json.dumps(shown, indent=2))
    else:
        if rows:
            head = f"{'NAME':<10} {'ROLE':<7} {'PORT':>6} {'STATE':<5} {'PID':>8} {'VERSION':<8}"
            print(f"{head} DATA")
        for r in rows:
            print(
                f"{r.name:<10} {r.role:<7} {r.port:>6} {'up' if r.up else 'down':<5} "
                f"{r.pid or '-':>8} {r.version:<8} {_size(r.data_bytes)}"
            )
        if health is not None:
            _print_health(health)
    ok = all(r.up for r in rows) and (health is None or health.healthy)
    return 0 if ok else 3


def _print_health(health: ClusterStatus) -> None:
    print(f"\n{'WORKER':<12} {'HEALTH':<9} {'ROLE':<10} {'CHUNKS':>7} {'ROWS':>14}  DETAIL")
    for w in health.workers:
        detail = w.error or (f"{w.latency_ms:.1f} ms" if w.latency_ms is not None else "")
        print(f"{w.name:<12} {w.state:<9} {w.role:<10} {w.chunks:>7} {w.rows:>14,}  {detail}")
    czar = "up" if health.czar_up else f"down ({health.czar_error})"
    print(
        f"czar: {czar}; chunks under-replicated: {health.under_replicated} "
        f"({health.unavailable} without a live replica); status: {health.status}"
    )
    for catalog, chunk, have, want in health.examples:
        print(f"  {catalog} chunk {chunk}: {have} live of {want}")


def cmd_cluster_destroy(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.local import LocalCluster

    LocalCluster(settings.cluster).destroy()
    print(f"destroyed the cluster in {settings.cluster}")
    return 0


# --- metadata and catalogs ---------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.metadata import initialize_cluster

    spec = _spec(settings)
    version = initialize_cluster(spec, settings)
    print(f"cluster {spec.name}: czar metadata at version {version}, {len(spec.workers)} workers")
    return 0


def _schema_file(name_or_path: str) -> Path:
    from qserv_py.schema import default_catalog_path

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return default_catalog_path(name_or_path)


def cmd_catalog_create(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.catalogs import create_catalog
    from qserv_py.schema import load_catalog

    path = _schema_file(args.schema)
    catalog = load_catalog(path)
    create_catalog(
        _spec(settings),
        catalog,
        path.read_text(),
        citus_shard_count=settings.citus_shard_count,
        replication=args.replication,
    )
    level = f", replication {args.replication}" if args.replication > 1 else ""
    print(f"created catalog {catalog.name} ({len(catalog.tables)} tables{level}) on every worker")
    return 0


def cmd_catalog_drop(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.catalogs import drop_catalog

    drop_catalog(_spec(settings), args.name)
    print(f"dropped catalog {args.name}")
    return 0


def cmd_catalog_list(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.catalogs import list_catalogs

    for info in list_catalogs(_spec(settings)):
        tables = ", ".join(f"{name} ({kind})" for name, kind in info.tables)
        print(f"{info.name}: {tables}  [overlap {info.overlap_arcsec:g}″]")
    return 0


def cmd_catalog_stats(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.stats import catalog_stats

    stats = catalog_stats(_spec(settings), args.name)
    print(f"{'TABLE':<16} {'KIND':<10} {'ROWS':>14} {'OVERLAP':>12} {'CHUNKS':>7}")
    for t in stats.tables:
        print(f"{t.name:<16} {t.kind:<10} {t.rows:>14,} {t.overlap_rows:>12,} {t.chunks:>7}")
    print(f"layout: {stats.layout_chunks} chunks {stats.layout or ''}")
    if args.chunks:
        print(f"\n{'CHUNK':>20} {'ORDER':>5} {'TABLE':<16} {'ROWS':>12} {'OVERLAP':>10}  WORKERS")
        for c in stats.chunks:
            print(
                f"{c.chunk_id:>20} {c.order:>5} {c.table:<16} {c.rows:>12,} {c.overlap_rows:>10,}"
                f"  {','.join(c.workers)}"
            )
    return 0


# --- loading ---------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.loaders.generate import generate_release

    counts = generate_release(
        args.out,
        args.objects,
        sources_per_object=args.sources_per_object,
        forced_per_object=args.forced_per_object,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    for table, rows in counts.items():
        print(f"{table:<14} {rows:>14,} rows  -> {args.out / table}")
    return 0


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.exec.arrow import skip_pandas_probe
    from qserv_py.loaders.load import LoadOptions, load
    from qserv_py.loaders.progress import ProgressLine

    skip_pandas_probe()

    options = LoadOptions(
        publish=not args.no_publish,
        ignore_extra=args.ignore_extra,
        replication=args.replication,
        max_rows_per_chunk=args.max_rows_per_chunk,
        min_order=args.min_order,
        max_order=args.max_order,
        fixed_order=args.order,
        place_unknown_by_position=args.place_unknown_by_position,
        allow_unknown_match_keys=args.allow_unknown_match_keys,
    )
    progress = ProgressLine()
    try:
        result = load(_spec(settings), args.catalog, args.table, args.files, options, progress)
    finally:
        progress.close()
    print(
        f"load {result.txn}: {result.rows:,} rows (+{result.overlap_rows:,} overlap) "
        f"{result.state} in {result.seconds:.1f} s"
    )
    return 0


def cmd_txn_list(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.loaders.txn import list_txns

    print(f"{'ID':>5} {'STATE':<10} {'TABLE':<24} {'ROWS':>14} {'FILES':>9} UPDATED")
    for t in list_txns(_spec(settings), args.catalog):
        done = sum(f.done for f in t.files)
        print(
            f"{t.id:>5} {t.state:<10} {t.catalog + '.' + t.table:<24} {t.rows:>14,} "
            f"{f'{done}/{len(t.files)}':>9} {t.updated_at:%Y-%m-%d %H:%M:%S}"
        )
        if t.error and args.verbose:
            print(f"      {t.error}")
    return 0


def cmd_txn_publish(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.loaders.load import resume

    result = resume(_spec(settings), args.id, force_publish=True)
    print(f"load {result.txn}: {result.state}")
    return 0


def cmd_txn_resume(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.loaders.load import resume

    result = resume(_spec(settings), args.id)
    print(f"load {result.txn}: {result.state}, {result.rows:,} rows")
    return 0


def cmd_txn_abort(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.loaders.publish import abort

    abort(_spec(settings), args.id)
    print(f"load {args.id}: aborted")
    return 0


# --- queries ---------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.client import connect
    from qserv_py.exec.arrow import skip_pandas_probe
    from qserv_py.exec.pools import set_warm

    skip_pandas_probe()
    client = connect(_spec(settings), default_catalog=args.catalog)
    uploads = _uploads(args.upload)
    if args.explain:
        print(client.explain(args.text, args.lang, uploads=uploads or None))
        return 0
    warm = set_warm(False)  # one query, then exit: no warm-up of every partition first
    try:
        table = client.query(
            args.text,
            args.lang,
            max_rows=args.max_rows,
            timeout_s=args.timeout,
            uploads=uploads or None,
        )
    finally:
        set_warm(warm)  # (main called in a longer process: its later pools warm up)
    _write_table(table, args.format, args.out)
    if (table.schema.metadata or {}).get(b"truncated") == b"true":
        print(f"qserv-py: the result was cut at {args.max_rows} rows", file=sys.stderr)
    return 0


def _uploads(items: list[str] | None) -> dict[str, pa.Table]:
    """``--upload NAME=FILE`` (VOTable, CSV or Parquet) → tables by name."""
    if not items:
        return {}
    from qserv_py.api.uploads import read_table
    from qserv_py.errors import ConfigError

    tables: dict[str, pa.Table] = {}
    for item in items or []:
        name, equals, path = (part.strip() for part in item.partition("="))
        if not equals or not name or not path:
            raise ConfigError(f"--upload {item!r}: write NAME=FILE (a VOTable, CSV or Parquet)")
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--upload {item!r}: {exc.strerror or exc}") from None
        tables[name.lower()] = read_table(data, f"upload {name!r} ({path})")
    return tables


def _write_table(table: pa.Table, fmt: str, out: Path | None) -> None:
    from qserv_py.errors import QservError

    if fmt == "parquet":
        import pyarrow.parquet as pq  # (each writer imported only when used)

        if out is None:
            raise QservError("--format parquet needs --out FILE")
        pq.write_table(table, out)
        return
    if fmt == "csv":
        import pyarrow.csv as pacsv

        target = str(out) if out else sys.stdout.buffer
        pacsv.write_csv(table, target)
        return
    # the table format is ours, not pandas' to_string: importing pandas took longer than
    # most queries
    json_text = fmt == "json"
    text = json.dumps(table.to_pylist(), default=str, indent=1) if json_text else _plain(table)
    if out:
        out.write_text(text + "\n")
    else:
        print(text)


def _plain(table: pa.Table) -> str:
    rows = [[str(v) for v in row.values()] for row in table.to_pylist()]
    names = table.column_names
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"({len(rows)} rows)")
    return "\n".join(lines)


def cmd_ps(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.exec.tracking import list_queries

    print(f"{'ID':>6} {'STATUS':<10} {'CHUNKS':>11} {'ELAPSED':>9}  QUERY")
    for q in list_queries(_spec(settings), active_only=not args.all):
        text = " ".join(q.text.split())
        print(
            f"{q.id:>6} {q.status:<10} {f'{q.chunks_done}/{q.chunks_total}':>11} "
            f"{q.elapsed:>8.1f}s  {text[:80]}"
        )
    return 0


def cmd_kill(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.exec.tracking import kill_query

    kill_query(_spec(settings), args.id)
    print(f"query {args.id}: killed")
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.users import add_user

    token = add_user(_spec(settings), args.name, admin=args.admin)
    print(f"user {args.name}{' (admin)' if args.admin else ''}: token (shown only now):")
    print(token)
    return 0


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.users import list_users

    for user, created in list_users(_spec(settings)):
        print(f"{user.name:<32} {'admin' if user.admin else 'user':<6} {created}")
    return 0


def cmd_user_remove(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.users import remove_user

    if not remove_user(_spec(settings), args.name):
        print(f"there is no user {args.name}", file=sys.stderr)
        return 1
    print(f"user {args.name}: removed (their token no longer works)")
    return 0


# --- the service and the main job ----------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve TAP, REST and admin routes over HTTP until interrupted."""
    settings = _service_settings(args, settings)
    sock = _bind(settings.host, settings.http_port)

    def ready(url: str) -> None:
        print(f"portal: {url}/", flush=True)
        print(f"qserv_py serves {settings.cluster} at {url}", flush=True)
        print(f"  TAP: {url}/tap   REST: {url}/api/v1   API docs: {url}/docs", flush=True)

    try:
        _serve(settings, sock, log_level=args.log_level, ready=ready)
    finally:
        sock.close()
    print("the service stopped", flush=True)
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start the local cluster (creating it the first time) with the dp02 catalog, loaded
    with a synthetic sample release the first time; then serve TAP on it until
    interrupted (unless ``--no-serve``). The cluster keeps running afterwards."""
    from qserv_py.cluster.catalogs import create_catalog, list_catalogs
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.cluster.metadata import initialize_cluster
    from qserv_py.cluster.spec import cluster_file_path
    from qserv_py.schema import default_catalog_path, load_catalog

    sock = None
    if not args.no_serve:  # a port in use stops us before the work on the cluster
        settings = _service_settings(args, settings)
        sock = _bind(settings.host, settings.http_port)
    try:
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
        _load_sample(spec, settings.cluster / "sample", args.objects)
        cmd_cluster_status(args, settings)
        print()
        cmd_catalog_list(args, settings)
        print(f"\ncluster file: {cluster_file_path(settings.cluster)}")
        stop = f"qserv-py --cluster {settings.cluster} cluster stop"
        if sock is None:
            print(f"stop it with: {stop}")
            return 0

        def ready(url: str) -> None:
            tap = f"{url}/tap"
            query = "SELECT TOP 5 objectId, coord_ra, coord_dec FROM dp02.Object"
            print(
                f"\nportal: {url}/\n"
                f"TAP service: {tap}\n"
                f"  REST API: {url}/api/v1   API docs: {url}/docs\n"
                "Query it from Python with pyvo:\n"
                f'  import pyvo; svc = pyvo.dal.TAPService("{tap}"); '
                f'print(svc.search("{query}").to_table())\n'
                "Ctrl-C stops the service; the cluster keeps running "
                f"(stop it with: {stop})",
                flush=True,
            )

        _serve(settings, sock, log_level=args.log_level, ready=ready)
        print(f"the service stopped; the cluster still runs (stop it with: {stop})", flush=True)
        return 0
    finally:
        if sock is not None:
            sock.close()


def _service_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with the service flags (--host, --http-port) applied."""
    from qserv_py.errors import ConfigError

    update = {
        name: value
        for name in ("host", "http_port", "http_processes")
        if (value := getattr(args, name, None)) is not None
    }
    if not 0 <= update.get("http_port", settings.http_port) <= 65535:
        raise ConfigError(f"--http-port {update['http_port']}: give a port from 0 to 65535")
    return settings.model_copy(update=update)


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the service (port 0: a free port)."""
    from qserv_py.errors import ConfigError, PortInUse

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc.strerror}; check --host") from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is in use by another process: stop that process, or "
                "choose another port with --http-port (or QSERV_HTTP_PORT)"
            ) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(
    settings: Settings, sock: socket.socket, *, log_level: str, ready: Callable[[str], None]
) -> None:
    """Run the service with uvicorn on ``sock`` until SIGINT or SIGTERM; ``ready(url)``
    is called once it answers requests."""
    import threading
    import time

    import uvicorn

    from qserv_py.api.app import create_app
    from qserv_py.errors import QservError

    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    url = settings.public_url or f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if settings.http_processes > 1:
        _serve_processes(settings, sock, log_level=log_level, ready=lambda: ready(url))
        return
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level=log_level, lifespan="on")
    )

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready(url.rstrip("/"))

    threading.Thread(target=announce, name="announce", daemon=True).start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again: with
    # this handler SIGTERM then ends the command as Ctrl-C does, not by killing it
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise QservError("the service did not start; see the messages above")


def _serve_processes(
    settings: Settings, sock: socket.socket, *, log_level: str, ready: Callable[[], None]
) -> None:
    """``settings.http_processes`` uvicorn processes on ``sock`` (uvicorn's supervisor
    restarts one that dies; SIGINT or SIGTERM stops them all)."""
    import os
    import threading
    import time
    import urllib.error
    import urllib.request

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from qserv_py.api.app import SETTINGS_ENV

    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    config = uvicorn.Config(
        "qserv_py.api.app:create_app_from_environment",
        factory=True,
        workers=settings.http_processes,
        log_level=log_level,
        lifespan="on",
    )
    host, port = sock.getsockname()[:2]
    probe = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/healthz"
    supervisor = Multiprocess(config, sockets=[sock])

    def announce() -> None:  # the service answers once a process is up
        while not supervisor.should_exit.is_set():
            try:
                urllib.request.urlopen(probe, timeout=2).close()
            except urllib.error.HTTPError:
                pass  # it answered (503: a worker is down)
            except OSError:
                time.sleep(0.1)
                continue
            ready()
            return

    threading.Thread(target=announce, name="announce", daemon=True).start()
    supervisor.run()


def _load_sample(spec: ClusterSpec, folder: Path, objects: int) -> None:
    """Generate and load the sample release into dp02, unless dp02 already has data."""
    from qserv_py.cluster.stats import catalog_stats
    from qserv_py.loaders.generate import generate_release
    from qserv_py.loaders.load import load
    from qserv_py.loaders.progress import ProgressLine

    if any(t.rows for t in catalog_stats(spec, "dp02").tables):
        return
    print(f"generating a sample release of {objects:,} objects in {folder} ...", flush=True)
    generate_release(folder, objects, sources_per_object=3, forced_per_object=10, overwrite=True)
    for table in ("Object", "Source", "ForcedSource", "CcdVisit"):
        progress = ProgressLine()
        try:
            result = load(spec, "dp02", table, [folder / table], progress=progress)
        finally:
            progress.close()
        print(f"loaded dp02.{table}: {result.rows:,} rows in {result.seconds:.1f} s", flush=True)


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
        ("status", cmd_cluster_status, "show each instance and each worker's health"),
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
            p.add_argument(
                "--citus",
                action="store_true",
                help="a Citus cluster: coordinator + worker nodes (needs Citus: docs/citus.md)",
            )

    p = sub.add_parser("init", help="set up (or upgrade) the cluster's metadata; safe to rerun")
    p.set_defaults(handler=cmd_init)

    catalog = sub.add_parser("catalog", help="create, drop and list catalogs")
    catsub = catalog.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = catsub.add_parser("create", help="create a catalog from a Felis schema on every worker")
    p.add_argument("schema", help="a Felis YAML file, or the name of a shipped schema (dp02)")
    p.add_argument(
        "--replication",
        type=int,
        default=1,
        help="copies of each chunk the catalog keeps (the replication loop's level; on "
        "Citus each shard's placements, fixed here)",
    )
    p.set_defaults(handler=cmd_catalog_create)
    p = catsub.add_parser("drop", help="remove a catalog and its data everywhere")
    p.add_argument("name")
    p.set_defaults(handler=cmd_catalog_drop)
    p = catsub.add_parser("list", help="list catalogs")
    p.set_defaults(handler=cmd_catalog_list)
    p = catsub.add_parser("stats", help="rows, overlap rows and chunks per table")
    p.add_argument("name")
    p.add_argument("--chunks", action="store_true", help="also each chunk's rows and workers")
    p.set_defaults(handler=cmd_catalog_stats)

    p = sub.add_parser("generate", help="write a synthetic dp02 data release as Parquet")
    p.add_argument("--objects", type=int, required=True)
    p.add_argument("--sources-per-object", type=float, default=5)
    p.add_argument("--forced-per-object", type=float, default=10)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace tables already in --out")
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser("load", help="bulk-load Parquet files into a table (stage, then publish)")
    p.add_argument("catalog")
    p.add_argument("table")
    p.add_argument("files", nargs="+", help="Parquet files, directories or glob patterns")
    p.add_argument("--no-publish", action="store_true", help="stage only; publish with `txn`")
    p.add_argument("--ignore-extra", action="store_true", help="skip columns not in the table")
    p.add_argument(
        "--replication",
        type=int,
        default=None,
        help="workers per chunk (default: the catalog's level, 1 unless set)",
    )
    p.add_argument("--max-rows-per-chunk", type=int, default=1_000_000)
    p.add_argument("--min-order", type=int, default=1, help="coarsest chunk order (default 1)")
    p.add_argument("--max-order", type=int, default=10, help="finest chunk order (default 10)")
    p.add_argument("--order", type=int, help="one fixed chunk order instead of adaptive")
    p.add_argument(
        "--place-unknown-by-position",
        action="store_true",
        help="child tables: place rows whose director key is unknown by their own position "
        "(qserv:ra_column/dec_column), as Qserv does, instead of refusing the load",
    )
    p.add_argument(
        "--allow-unknown-match-keys",
        action="store_true",
        help="match tables: place a row naming a director key that is not loaded by its "
        "other side only, instead of refusing the load",
    )
    p.set_defaults(handler=cmd_load)

    txn = sub.add_parser("txn", help="load transactions: list, publish, resume, abort")
    tsub = txn.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tsub.add_parser("list", help="list loads")
    p.add_argument("catalog", nargs="?")
    p.add_argument("-v", "--verbose", action="store_true", help="show errors")
    p.set_defaults(handler=cmd_txn_list)
    for name, handler, help_text in (
        ("publish", cmd_txn_publish, "finish staging if need be, then publish"),
        ("resume", cmd_txn_resume, "finish an interrupted load as it was started"),
        ("abort", cmd_txn_abort, "drop what a load staged"),
    ):
        p = tsub.add_parser(name, help=help_text)
        p.add_argument("id", type=int)
        p.set_defaults(handler=handler)

    p = sub.add_parser("query", help="run a query (ADQL by default)")
    p.add_argument("text", help="the query")
    p.add_argument("--lang", default="adql", choices=["adql", "postgresql", "qserv"])
    p.add_argument("--format", default="table", choices=["table", "csv", "json", "parquet"])
    p.add_argument("--out", type=Path, help="write the result to this file")
    p.add_argument("--explain", action="store_true", help="show the plan instead of running it")
    p.add_argument("--max-rows", type=int, help="cut the result at this many rows")
    p.add_argument("--timeout", type=float, help="seconds before the query is cancelled")
    p.add_argument("--catalog", default="dp02", help="where bare table names are looked up")
    p.add_argument(
        "--upload",
        action="append",
        metavar="NAME=FILE",
        help="a table the query reads as TAP_UPLOAD.NAME (VOTable, CSV or Parquet; repeatable)",
    )
    p.set_defaults(handler=cmd_query)
    p = sub.add_parser("ps", help="list running queries")
    p.add_argument("--all", action="store_true", help="also finished queries")
    p.set_defaults(handler=cmd_ps)
    p = sub.add_parser("kill", help="kill a running query (and its worker statements)")
    p.add_argument("id", type=int)
    p.set_defaults(handler=cmd_kill)

    users = sub.add_parser("user", help="users of a service with auth = token")
    usub = users.add_subparsers(dest="user_command", required=True)
    p = usub.add_parser("add", help="add a user (or give one a new token); prints the token once")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="sees and kills everybody's work")
    p.set_defaults(handler=cmd_user_add)
    p = usub.add_parser("list", help="list users")
    p.set_defaults(handler=cmd_user_list)
    p = usub.add_parser("remove", help="remove a user (their jobs and queries stay)")
    p.add_argument("name")
    p.set_defaults(handler=cmd_user_remove)

    add_commands(sub)  # worker, replicate, rebalance (qserv_py.ops.commands)

    p = sub.add_parser("serve", help="serve TAP, REST and admin routes over HTTP")
    _service_options(p, log_level="info")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "up", help="the main job: start the local cluster with the dp02 catalog, serve TAP"
    )
    p.add_argument(
        "--dir", dest="cluster", type=Path, default=argparse.SUPPRESS, help="the cluster directory"
    )
    p.add_argument("--workers", type=int, help="workers of a new cluster (default 2)")
    p.add_argument(
        "--objects", type=int, default=100_000, help="objects of the sample release (default 100k)"
    )
    p.add_argument("--no-serve", action="store_true", help="start and load the cluster, then exit")
    _service_options(p, log_level="warning")
    p.set_defaults(handler=cmd_up)
    return parser


def _service_options(p: argparse.ArgumentParser, *, log_level: str) -> None:
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; env QSERV_HOST)")
    p.add_argument(
        "--http-port", type=int, help="port (default 8080, 0: a free one; env QSERV_HTTP_PORT)"
    )
    p.add_argument(
        "--processes",
        dest="http_processes",
        type=int,
        help="service processes sharing the port (default 1; one per core serves the most "
        "queries at once; env QSERV_HTTP_PROCESSES)",
    )
    p.add_argument(
        "--log-level",
        default=log_level,
        choices=["critical", "error", "warning", "info", "debug"],
        help=f"uvicorn's log level (default {log_level}; info logs every request)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the command line: `query` and `load` run warm (qserv_py.forkserver)
        from qserv_py.forkserver import forward

        served = forward(sys.argv[1:])
        if served is not None:
            return served
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    import psycopg

    from qserv_py.errors import QservError

    try:
        return handler(args, _settings(args))
    except QservError as exc:
        print(f"qserv-py: error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:  # not translated where it happened: still say it plainly
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(
            f"qserv-py: error: the database said: {message}; run `qserv-py init` if the "
            "cluster was made by an older qserv_py, else please report this",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
