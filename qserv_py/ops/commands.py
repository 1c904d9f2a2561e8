"""The cluster-operation commands of ``qserv-py``: ``worker``, ``replicate``, ``rebalance``.

Thin, as the rest of the CLI (:mod:`qserv_py.cli`, which registers them with
:func:`add_commands`): each parses its arguments, calls :mod:`qserv_py.ops`, prints the
progress on stderr and a summary (or ``--json``) on stdout. They work the same on a local
cluster directory and on a remote cluster file; only ``worker add --local`` and
``worker remove --purge`` need a local cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# the database and settings modules are imported where a command runs, not here: the
# parser is built on every ``qserv-py`` call (``--help`` included), which stays fast
if TYPE_CHECKING:
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.config import Settings

#: exit status of an operation that finished but could not restore everything
INCOMPLETE = 3


class _Progress:
    """Progress on stderr (stdout holds the result): a message per line, and chunk
    counts ``(phase, done, total)`` redrawn in place on a terminal, else at the end."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, *parts: object) -> None:
        phase, done, total = (*parts, None, None, None)[:3]
        if len(parts) == 3 and isinstance(done, int) and isinstance(total, int):
            if self.tty:
                print(f"\r{phase} {done}/{total} chunks", end="", file=sys.stderr, flush=True)
                self.drawn = done < total
                if not self.drawn:
                    print(file=sys.stderr)
            elif done == total:
                print(f"{phase} {done}/{total} chunks", file=sys.stderr, flush=True)
            return
        if self.drawn:
            print(file=sys.stderr)
            self.drawn = False
        print(" ".join(str(p) for p in parts), file=sys.stderr, flush=True)


def _local(settings: Settings) -> LocalCluster | None:
    from qserv_py.cluster.local import LocalCluster

    cluster = LocalCluster(Path(settings.cluster))
    return cluster if Path(settings.cluster).is_dir() and cluster.exists() else None


def _as_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_as_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _summary(report: Any) -> str:
    """A replication or rebalance report in a few lines."""
    lines = []
    if hasattr(report, "copies"):  # ReplicationReport
        lines.append(
            f"  {len(report.copies)} chunk copies made ({report.rows:,} rows) in "
            f"{report.seconds:.1f} s"
        )
        if report.unrecoverable:
            chunks = ", ".join(f"{c}:{k}" for c, k in report.unrecoverable)
            lines.append(f"  no live copy left (catalog:chunk), cannot be restored: {chunks}")
        if report.short:
            lines.append(
                f"  {len(report.short)} chunks stay below their level: too few live active "
                "workers lack them (add workers, or lower the level with --level)"
            )
        for catalog, chunk, why in report.failed:
            lines.append(f"  chunk {catalog}:{chunk} failed (tried again next time): {why}")
        if report.healthy:
            lines.append("  every chunk has its catalog's replication level")
        return "\n".join(lines)
    if hasattr(report, "moves"):  # RebalanceReport
        lines.append(
            f"  {len(report.moves)} chunk moves ({report.rows:,} rows) in {report.seconds:.1f} s"
        )
        lines.append(f"  {'WORKER':<12} {'ROWS BEFORE':>14} {'ROWS AFTER':>14}")
        for name in sorted(set(report.rows_before) | set(report.rows_after)):
            before, after = report.rows_before.get(name, 0), report.rows_after.get(name, 0)
            lines.append(f"  {name:<12} {before:>14,} {after:>14,}")
        for catalog, chunk, source, target, why in report.failed:
            lines.append(f"  move of {catalog}:{chunk} {source}->{target} failed: {why}")
        if report.pending_drops:
            lines.append(f"  {report.pending_drops} old copies are dropped later (by the next run)")
        return "\n".join(lines)
    if hasattr(report, "unavailable"):  # replication on Citus: its placements
        for name, (shards, fewest, level) in sorted(report.catalogs.items()):
            lines.append(
                f"  {name}: {shards} shards, the fewest placements of one {fewest}, level {level}"
            )
        for table, shard in report.unavailable:
            lines.append(f"  shard {shard} of {table}: no placement on an active node")
        if report.healthy:
            lines.append("  every shard has its catalog's level of placements on active nodes")
        return "\n".join(lines)
    if hasattr(report, "disagreements"):  # VerifyReport
        lines.append(
            f"  {report.chunks:,} chunks, {report.partitions:,} partition replicas compared; "
            f"{report.taken:,} checksums taken now ({report.rows_taken:,} rows), the others "
            f"recorded; {report.seconds:.1f} s"
        )
        for d in report.disagreements:
            sums = ", ".join(
                f"{w}: {r:,} rows, checksum {c}" for w, (r, c) in sorted(d.sums.items())
            )
            lines.append(
                f"  {d.catalog}:{d.chunk} {d.partition}: replicas disagree ({sums}; the czar "
                f"counts {d.czar_rows:,} rows)"
            )
        for catalog, chunk, worker, why in report.skipped:
            lines.append(f"  {catalog}:{chunk} on {worker} not compared: {why}")
        if report.disagreements:
            lines.append(
                "  a replica that disagrees with the others and the czar's count is not a good "
                "copy: docs/operations.md says how to replace it"
            )
        elif report.healthy:
            lines.append("  every replica holds the same rows as the others")
        return "\n".join(lines)
    if hasattr(report, "shards_before"):  # a drain or rebalance through Citus
        lines.append(f"  {report.moved} shards moved by Citus in {report.seconds:.1f} s")
        lines.append(f"  {'NODE':<21} {'SHARDS BEFORE':>14} {'SHARDS AFTER':>14}")
        for name in sorted(set(report.shards_before) | set(report.shards_after)):
            before, after = report.shards_before.get(name, 0), report.shards_after.get(name, 0)
            lines.append(f"  {name:<21} {before:>14,} {after:>14,}")
        return "\n".join(lines)
    return "\n".join(f"  {k}: {v}" for k, v in _as_json(report).items())


def _complete(report: Any) -> bool:
    return bool(getattr(report, "healthy", True)) and not getattr(report, "failed", ())


def _show(args: argparse.Namespace, title: str, report: Any) -> None:
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        print(f"{title}\n{_summary(report)}")


# --- worker ------------------------------------------------------------------------------


def cmd_worker_list(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.ops import workers

    spec = read_cluster_file(settings.cluster)
    found = workers.list_workers(spec)  # on Citus, Citus's nodes too
    if args.json:
        print(json.dumps([w.to_json() for w in found], indent=2))
        return 0
    print(f"{'NAME':<12} {'STATE':<12} {'CHUNKS':>7} {'ROWS':>14}  DSN")
    for w in found:
        note = "" if w.in_file else "  (not in the cluster file)"
        print(f"{w.name:<12} {w.state:<12} {w.chunks:>7} {w.rows:>14,}  {w.dsn}{note}")
    return 0


def cmd_worker_add(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.errors import ConfigError
    from qserv_py.ops import workers

    if (args.dsn is None) == (not args.local):
        raise ConfigError("give a worker's DSN, or --local to start a new local instance")
    if args.local:
        cluster = _local(settings)
        if cluster is None:
            raise ConfigError(
                f"--local needs a local cluster directory; {settings.cluster} is not one: "
                "give the new server's DSN instead"
            )
        if args.name:
            raise ConfigError("--name: a local instance is named workerN by the cluster")
        citus = cluster.backend == "citus"
        if citus:  # a Citus worker node (docs/citus.md)
            from qserv_py.ops import citus_nodes

            node = cluster.add_citus_node(settings)
            info = citus_nodes.as_worker_info(citus_nodes.find_node(cluster.spec(), node.name))
        else:
            info = workers.add_local_worker(cluster, settings, progress=_Progress())
    else:
        spec = read_cluster_file(settings.cluster)
        citus = spec.backend == "citus"
        if citus:  # an existing server joined with citus_add_node
            from qserv_py.ops import citus_nodes

            info = citus_nodes.as_worker_info(citus_nodes.add(spec, args.dsn, name=args.name))
        else:
            info = workers.add_worker(
                spec, args.dsn, settings, name=args.name, progress=_Progress()
            )
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
    elif citus:
        print(
            f"added Citus worker node {info.name} ({info.dsn}), holding no shards yet: move "
            "some there with `qserv-py rebalance`"
        )
    else:
        print(
            f"added worker {info.name} ({info.dsn}), active, holding no chunks yet: move some "
            "there with `qserv-py rebalance`"
        )
    return 0


def cmd_worker_drain(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.ops import workers

    spec = read_cluster_file(settings.cluster)
    report = workers.drain_worker(spec, args.name, progress=_Progress())
    title = f"drained worker {args.name}: remove it with `qserv-py worker remove {args.name}`"
    if not _complete(report):
        title = f"worker {args.name} is not empty yet: run `qserv-py worker drain` again"
    _show(args, title, report)
    return 0 if _complete(report) else INCOMPLETE


def cmd_worker_activate(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.ops import workers

    info = workers.activate_worker(read_cluster_file(settings.cluster), args.name)
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
    else:
        print(f"worker {info.name} is active: it takes new chunks (`qserv-py rebalance`)")
    return 0


def cmd_worker_remove(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.errors import ConfigError
    from qserv_py.ops import workers

    spec = read_cluster_file(settings.cluster)
    local = _local(settings)
    if args.purge and local is None:
        raise ConfigError(
            "--purge deletes a local instance's data directory; the database of a remote "
            "worker is never touched (drop it on its server)"
        )
    if not args.lost:
        info = workers.remove_worker(spec, args.name, local=local, purge=args.purge)
        if args.json:
            print(json.dumps(info.to_json(), indent=2))
        else:
            kept = "" if local is None or args.purge else f" (its data is kept in {local.root})"
            print(f"removed worker {info.name}{kept}")
        return 0
    report = workers.remove_lost_worker(spec, args.name, local=local, progress=_Progress())
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        print(f"worker {report.worker} declared lost: its {report.chunks} copies stop counting")
        if report.replication is not None:
            print(f"replication:\n{_summary(report.replication)}")
        if report.lost_chunks:
            chunks = ", ".join(f"{c}:{k}" for c, k in report.lost_chunks)
            print(
                f"LOST DATA: {len(report.lost_chunks)} chunks had no other copy (catalog:chunk): "
                f"{chunks}; queries reading them fail until they are loaded again"
            )
        if report.replication_error:
            print(f"not done: {report.replication_error}")
        print("removed it from the cluster" if report.removed else "it stays registered as lost")
    return INCOMPLETE if report.lost_chunks or report.replication_error else 0


# --- replicate and rebalance ------------------------------------------------------------------


def cmd_replicate(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.ops.replicate import replicate

    spec = read_cluster_file(settings.cluster)
    if spec.backend == "citus":  # Citus holds the placements (docs/citus.md)
        from qserv_py.ops import citus_nodes

        found = citus_nodes.replicate(spec, catalog=args.catalog, level=args.level)
        _show(args, "replication (Citus placements):", found)
        return 0 if found.healthy else INCOMPLETE
    report = replicate(spec, catalog=args.catalog, level=args.level, progress=_Progress())
    _show(args, "replication:", report)
    if not args.verify:
        return 0 if _complete(report) else INCOMPLETE
    from qserv_py.ops.checksums import verify
    from qserv_py.ops.replicate import live_workers

    checked = verify(spec, catalog=args.catalog, workers=live_workers(spec))
    _show(args, "replicas compared:", checked)
    return 0 if _complete(report) and checked.healthy else INCOMPLETE


def cmd_rebalance(args: argparse.Namespace, settings: Settings) -> int:
    from qserv_py.cluster.spec import read_cluster_file
    from qserv_py.ops.rebalance import rebalance

    spec = read_cluster_file(settings.cluster)
    if spec.backend == "citus":  # Citus's own rebalancer moves the shards (docs/citus.md)
        from qserv_py.ops import citus_nodes

        _show(args, "rebalance (Citus):", citus_nodes.rebalance(spec, progress=_Progress()))
        return 0
    report = rebalance(spec, catalog=args.catalog, progress=_Progress())
    _show(args, "rebalance:", report)
    return 0 if _complete(report) else INCOMPLETE


# --- the parser ---------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Register ``worker``, ``replicate`` and ``rebalance`` on the CLI's subparsers."""
    Handler = Callable[[argparse.Namespace, "Settings"], int]

    def command(parent: Any, name: str, handler: Handler, help_text: str) -> Any:
        p = parent.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="the result as JSON")
        p.set_defaults(handler=handler)
        return p

    worker = sub.add_parser("worker", help="add, drain, remove and list workers")
    wsub = worker.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(wsub, "list", cmd_worker_list, "every worker: state, chunks, rows")
    p = command(wsub, "add", cmd_worker_add, "add a PostgreSQL server (or a local instance)")
    p.add_argument("dsn", nargs="?", help="the new worker's database, e.g. postgresql://...")
    p.add_argument("--name", help="its name (default: workerN)")
    p.add_argument("--local", action="store_true", help="start a new instance of a local cluster")
    p = command(wsub, "drain", cmd_worker_drain, "move every chunk off a worker")
    p.add_argument("name")
    p = command(wsub, "activate", cmd_worker_activate, "take a drained worker back")
    p.add_argument("name")
    p = command(wsub, "remove", cmd_worker_remove, "remove a worker that holds no chunk")
    p.add_argument("name")
    p.add_argument(
        "--lost",
        action="store_true",
        help="its host is gone: forget its copies and copy its chunks again from the others",
    )
    p.add_argument("--purge", action="store_true", help="delete a local instance's data too")

    p = command(sub, "replicate", cmd_replicate, "copy chunks until each has its level")
    p.add_argument("--catalog", help="only this catalog")
    p.add_argument("--level", type=int, help="set the catalog's replication level first")
    p.add_argument(
        "--verify",
        action="store_true",
        help="then compare every chunk's replicas by checksum (takes those not recorded)",
    )
    p = command(sub, "rebalance", cmd_rebalance, "even out rows per worker (moves chunks)")
    p.add_argument("--catalog", help="only this catalog")
