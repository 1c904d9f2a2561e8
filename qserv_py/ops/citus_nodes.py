"""Cluster operations on a Citus cluster, done by Citus's own functions so that Citus's
tools and qserv_py agree: list the worker nodes, drain one (``citus_drain_node``), take it
back (``citus_set_node_property(..., 'shouldhaveshards', true)``), remove it
(``citus_remove_node``), rebalance (``citus_rebalance_start``) and report replication.

On Citus, Citus owns placement: a shard (a group of whole chunks, with the shards
colocated with it, overlap tables included) lives on one node, moved by Citus with its
colocated shards. qserv_py's own placement map, chunk copies and two-phase publishes are
not used. ``pg_dist_node`` is the truth about the nodes; the cluster file's
``[[workers]]`` only names them (a node it does not name is called ``host:port``).

What Citus cannot do is refused before anything is changed, with what to do instead:
draining the last node that can hold shards, removing a node that still holds shards,
removing or draining the coordinator (it holds the czar metadata, not shards), and a
replication level above the catalog's (the number of placements Citus keeps of each shard
is fixed when the catalog is created, see docs/citus.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict

from qserv_py.cluster import citus
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import COORDINATOR, ClusterSpec, Instance
from qserv_py.errors import ConfigError, UnknownCatalog, UnknownWorker, WorkerOpError
from qserv_py.ops.clusterfile import workers_changed

if TYPE_CHECKING:
    from qserv_py.cluster.local import LocalCluster
    from qserv_py.ops.workers import LostReport, WorkerInfo

Progress = Callable[..., None]

#: shard moves block writes to the moving shard only (queries go on); the catalog's
#: tables need no replica identity, as logical replication would
TRANSFER_MODE = "block_writes"
#: how long `worker remove` waits for Citus to drop the old shard copies left on a drained
#: node (its maintenance daemon may be dropping them at that moment), retrying this often
CLEANUP_PATIENCE_S = 60.0
CLEANUP_RETRY_S = 0.5


@dataclass(frozen=True)
class CitusNode:
    """A Citus worker node as ``pg_dist_node`` records it, with the shards it holds."""

    name: str  # the cluster file's name, else host:port
    host: str
    port: int
    node_id: int
    active: bool
    should_have_shards: bool  # false: drained (or draining), gets no shards
    shards: int  # placements of distributed (hash) tables' shards

    @property
    def state(self) -> str:
        """active | draining (holds shards, gets none) | removable (drained) | inactive."""
        if not self.active:
            return "inactive"
        if self.should_have_shards:
            return "active"
        return "draining" if self.shards else "removable"


@dataclass(frozen=True)
class ShardMoveReport:
    """What a drain or a rebalance through Citus did: shards per node before and after."""

    operation: str
    shards_before: dict[str, int]
    shards_after: dict[str, int]
    seconds: float
    failed: tuple[str, ...] = ()

    @property
    def moved(self) -> int:
        """Shard placements that left a node (each moved with its colocated shards)."""
        return sum(
            max(0, n - self.shards_after.get(name, 0)) for name, n in self.shards_before.items()
        )


@dataclass(frozen=True)
class CitusReplicationReport:
    """Each catalog's shards and their live placements, as Citus holds them."""

    #: catalog -> (shards of its distributed tables, fewest placements of one, level)
    catalogs: dict[str, tuple[int, int, int]]
    #: (table, shard id) with no placement on an active node: unreadable until it is back
    unavailable: tuple[tuple[str, int], ...] = ()
    failed: tuple[str, ...] = field(default=())
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.unavailable and all(
            fewest >= level for _, fewest, level in self.catalogs.values()
        )


# --- nodes ---------------------------------------------------------------------------------


def list_nodes(spec: ClusterSpec) -> list[CitusNode]:
    """Every primary worker node of the Citus cluster (the coordinator excluded)."""
    names = {
        (str(w.conninfo.get("host")), int(w.conninfo.get("port") or 5432)): w.name
        for w in spec.citus_workers
    }
    with connect(spec.coordinator, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT n.nodename, n.nodeport, n.nodeid, n.isactive, n.shouldhaveshards,"
            " (SELECT count(*) FROM pg_dist_placement p"
            "  JOIN pg_dist_shard s USING (shardid)"
            "  JOIN pg_dist_partition t USING (logicalrelid)"
            "  WHERE p.groupid = n.groupid AND t.partmethod = 'h')"
            " FROM pg_dist_node n WHERE n.groupid <> 0 AND n.noderole = 'primary'"
            " ORDER BY n.nodeid"
        ).fetchall()
    return [
        CitusNode(
            names.get((str(host), int(port)), f"{host}:{port}"),
            str(host),
            int(port),
            int(node_id),
            bool(active),
            bool(should),
            int(shards),
        )
        for host, port, node_id, active, should, shards in rows
    ]


def find_node(spec: ClusterSpec, name: str) -> CitusNode:
    """Worker node ``name`` (a cluster-file name or ``host:port``); UnknownWorker if
    Citus has no such node, WorkerOpError for the coordinator."""
    if name == COORDINATOR:
        raise WorkerOpError(
            f"{COORDINATOR} is the Citus coordinator of cluster {spec.name}: it holds the czar "
            "metadata and no shards, so it is neither drained nor removed; name a worker node "
            "(`qserv-py worker list`)"
        )
    nodes = list_nodes(spec)
    for node in nodes:
        if name in (node.name, f"{node.host}:{node.port}"):
            return node
    known = ", ".join(n.name for n in nodes) or "none"
    raise UnknownWorker(
        f"no Citus worker node {name!r} in cluster {spec.name} (nodes: {known}); name a node "
        "by its name in the cluster file or as host:port"
    )


def _shards(spec: ClusterSpec) -> dict[str, int]:
    return {n.name: n.shards for n in list_nodes(spec)}


def drain(spec: ClusterSpec, name: str, progress: Progress | None = None) -> ShardMoveReport:
    """Move every shard off node ``name`` with ``citus_drain_node`` (which first marks it
    ``shouldhaveshards = false``: it then gets no shards until :func:`activate`). Queries
    go on meanwhile; writes to a moving shard wait for its move. Refused, with nothing
    changed, if no other active node can take the shards."""
    node = find_node(spec, name)
    others = [n for n in list_nodes(spec) if n.node_id != node.node_id]
    if not any(n.active and n.should_have_shards for n in others):
        raise WorkerOpError(
            f"cannot drain {node.name}: no other active Citus node can take its {node.shards} "
            "shards; add a node first (`qserv-py worker add`), then drain this one"
        )
    before = _shards(spec)
    started = time.monotonic()
    if progress:
        progress(f"draining {node.name} ({node.shards} shards) with citus_drain_node")
    with connect(spec.coordinator, autocommit=True) as conn:
        conn.execute(
            "SELECT citus_drain_node(%s, %s, shard_transfer_mode => %s)",
            (node.host, node.port, TRANSFER_MODE),
        )
    return ShardMoveReport(f"drain {node.name}", before, _shards(spec), time.monotonic() - started)


def activate(spec: ClusterSpec, name: str) -> CitusNode:
    """Let a drained node take shards again (from the next rebalance)."""
    node = find_node(spec, name)
    with connect(spec.coordinator, autocommit=True) as conn:
        conn.execute(
            "SELECT citus_set_node_property(%s, %s, 'shouldhaveshards', true)",
            (node.host, node.port),
        )
    return find_node(spec, name)


def add(spec: ClusterSpec, dsn: str, *, name: str | None = None) -> CitusNode:
    """Join an existing PostgreSQL server (its database named as the coordinator's, Citus
    installed and preloaded) to the Citus cluster as worker node ``name`` (default: the
    first free ``workerN``): the citus extension created there, the DSN's password
    recorded for the nodes to reach each other (``pg_dist_authinfo``), the read-only
    role's too, ``citus_add_node`` at the DSN's host and port, and the node in the
    cluster file's ``[[workers]]``. It holds no shards until ``rebalance``. If the
    cluster file cannot be written, the node is unregistered again."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"the new node's DSN is not valid: {exc}") from exc
    host, port = info.get("host"), int(info.get("port") or 5432)
    if not host or str(host).startswith("/"):
        raise ConfigError(
            "the new node's DSN must name its host (and port): the coordinator and the "
            "other nodes reach it there"
        )
    want = spec.coordinator.conninfo.get("dbname")
    if info.get("dbname") != want:
        raise ConfigError(
            f"the new node's DSN names database {info.get('dbname')!r}; Citus needs the "
            f"coordinator's database name on every node: use dbname={want}"
        )
    taken = {w.name for w in spec.citus_workers} | {COORDINATOR, "czar"}
    if name is None:
        name = next(f"worker{i}" for i in range(1, len(taken) + 2) if f"worker{i}" not in taken)
    elif name in taken:
        raise ConfigError(f"there is a worker named {name!r} already: choose another --name")
    for known in list_nodes(spec):
        if (known.host, known.port) == (str(host), port):
            raise WorkerOpError(f"{host}:{port} is Citus node {known.name} already")
    node = Instance(name, dsn)
    password = info.get("password")
    citus.add_node(
        spec,
        node,
        (str(host), port),
        user=str(info.get("user") or spec.coordinator.conninfo.get("user")),
        password=None if password is None else str(password),
    )
    if spec.path is not None:
        try:
            with workers_changed(spec, add=(name, dsn)):
                pass
        except BaseException:
            citus.remove_node(spec, (str(host), port))
            raise
    return find_node(replace(spec, citus_workers=(*spec.citus_workers, node)), name)


def _drop_old_copies(conn: psycopg.Connection, node: CitusNode) -> int:
    """Drop the old copies of shards moved off ``node`` (``pg_dist_cleanup`` records) and
    return how many are left after :data:`CLEANUP_PATIENCE_S`. Citus skips a record
    whose operation lock is held, which its maintenance daemon does while it drops the
    same copies, and a copy a running query still reads: both end, so a skip is retried."""
    deadline = time.monotonic() + CLEANUP_PATIENCE_S
    while True:
        conn.execute("CALL citus_cleanup_orphaned_resources()")
        row = conn.execute(
            "SELECT count(*) FROM pg_dist_cleanup c JOIN pg_dist_node n"
            " ON n.groupid = c.node_group_id WHERE n.nodeid = %s",
            (node.node_id,),
        ).fetchone()
        left = int(row[0]) if row else 0
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(CLEANUP_RETRY_S)


def remove(
    spec: ClusterSpec, name: str, *, local: LocalCluster | None = None, purge: bool = False
) -> CitusNode:
    """Unregister node ``name`` with ``citus_remove_node`` (it must hold no shards: drain
    it first), then leave it out of the cluster file; an instance of local cluster
    ``local`` is stopped (its data kept unless ``purge``). If the cluster file cannot be
    written, the node is registered again (``citus_add_node``)."""
    node = find_node(spec, name)
    if node.shards:
        raise WorkerOpError(
            f"Citus node {node.name} holds {node.shards} shards; move them away first with "
            f"`qserv-py worker drain {node.name}`, then remove it"
        )
    with connect(spec.coordinator, autocommit=True) as conn:
        # the old copies of shards moved off the node (Citus drops them later) go now: a
        # clean-up record left for a removed node makes Citus refuse every later move of
        # those shards ("the orphaned shard ... could not be cleaned up")
        left = _drop_old_copies(conn, node)
        if left:
            raise WorkerOpError(
                f"Citus node {node.name} still has {left} old shard copies that Citus could"
                f" not drop in {CLEANUP_PATIENCE_S:.0f} s (a query or a move is using them);"
                " try again shortly"
            )
        conn.execute("SELECT citus_remove_node(%s, %s)", (node.host, node.port))
    named = any(w.name == node.name for w in spec.citus_workers)
    if named and spec.path is not None:
        try:
            with workers_changed(spec, remove=node.name):
                pass
        except BaseException:
            with connect(spec.coordinator, autocommit=True) as conn:
                conn.execute("SELECT citus_add_node(%s, %s)", (node.host, node.port))
            raise
    if local is not None and named:
        local.remove_worker_instance(node.name, purge=purge)
    return node


def rebalance(
    spec: ClusterSpec, progress: Progress | None = None, *, transfer_mode: str = TRANSFER_MODE
) -> ShardMoveReport:
    """Even out shards across the nodes that should have shards, with Citus's rebalancer
    (:func:`qserv_py.cluster.citus.rebalance`), and move every shard off the nodes
    being drained."""
    before = _shards(spec)
    started = time.monotonic()
    if progress:
        progress("rebalancing with citus_rebalance_start")
    citus.rebalance(spec, transfer_mode=transfer_mode)
    return ShardMoveReport("rebalance", before, _shards(spec), time.monotonic() - started)


# --- replication ---------------------------------------------------------------------------


def replicate(
    spec: ClusterSpec, *, catalog: str | None = None, level: int | None = None
) -> CitusReplicationReport:
    """Report each catalog's shards and their placements as Citus holds them. A catalog's
    level is the number of placements Citus keeps of each of its shards, fixed when it was
    created (``catalog create --replication``: Citus's shard replication factor). With
    ``level`` (at most the catalog's), first every shard with fewer placements on active
    nodes than its catalog's level gets them back: Citus's ``replicate_table_shards``
    copies it, with its colocated shards, to nodes without one (writes to those shards
    wait while it copies; queries go on). A level above a catalog's is refused: Citus
    cannot add placements to a colocation group."""
    started = time.monotonic()
    name = catalog.lower() if catalog else None
    with connect(spec.coordinator, autocommit=True) as conn:
        found = [
            str(c)
            for (c,) in conn.execute(
                "SELECT name FROM qserv_meta.catalogs"
                " WHERE %s::text IS NULL OR name = %s ORDER BY name",
                (name, name),
            )
        ]
        if name is not None and not found:
            raise UnknownCatalog(f"no catalog {name!r} on the cluster (`qserv-py catalog list`)")
        factors = _factors(conn, found)
        if level is not None:
            _check_level(level, factors)
            _restore(conn, factors)
        rows = conn.execute(
            "SELECT n.nspname, c.relname, s.shardid,"
            " count(p.placementid) FILTER (WHERE d.isactive)"
            " FROM pg_dist_partition t JOIN pg_class c ON c.oid = t.logicalrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_dist_shard s ON s.logicalrelid = t.logicalrelid"
            " LEFT JOIN pg_dist_placement p ON p.shardid = s.shardid"
            " LEFT JOIN pg_dist_node d ON d.groupid = p.groupid AND d.noderole = 'primary'"
            " WHERE t.partmethod = 'h' AND n.nspname = ANY(%s)"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (found,),
        ).fetchall()
    shards: dict[str, list[int]] = {c: [] for c in found}
    unavailable = []
    for schema, table, shard, live in rows:
        shards[str(schema)].append(int(live))
        if not live:
            unavailable.append((f"{schema}.{table}", int(shard)))
    report = {c: (len(v), min(v, default=0), factors.get(c, (1, ""))[0]) for c, v in shards.items()}
    return CitusReplicationReport(report, tuple(unavailable), seconds=time.monotonic() - started)


def _factors(conn: psycopg.Connection, catalogs: list[str]) -> dict[str, tuple[int, str]]:
    """Each catalog's shard replication factor, and one of its distributed tables (those
    of a catalog share one colocation group); the czar metadata records the level."""
    rows = conn.execute(
        "SELECT n.nspname, max(g.replicationfactor), min(format('%%I.%%I', n.nspname,"
        " c.relname)) FROM pg_dist_partition t JOIN pg_class c ON c.oid = t.logicalrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_dist_colocation g ON g.colocationid = t.colocationid"
        " WHERE t.partmethod = 'h' AND n.nspname = ANY(%s) GROUP BY 1",
        (catalogs,),
    ).fetchall()
    factors = {str(c): (int(f), str(t)) for c, f, t in rows}
    for catalog, (factor, _) in factors.items():
        conn.execute(
            "UPDATE qserv_meta.catalogs SET replication = %s WHERE name = %s AND replication <> %s",
            (factor, catalog, factor),
        )
    return factors


def _check_level(level: int, factors: dict[str, tuple[int, str]]) -> None:
    """Refuse a level above a catalog's (or below 1)."""
    if level < 1:
        raise ConfigError(f"replication level {level}: a level is at least 1")
    above = {c: f for c, (f, _) in factors.items() if level > f}
    if above:
        named = ", ".join(f"{c} ({f})" for c, f in sorted(above.items()))
        raise ConfigError(
            f"replication level {level}: on Citus a catalog keeps the number of placements "
            f"of each shard it was created with, and {named} has fewer (Citus cannot add "
            "placements to a colocation group); create the catalog again with `qserv-py "
            f"catalog create --replication {level}` and load it, or ask for its own level"
        )


def _restore(conn: psycopg.Connection, factors: dict[str, tuple[int, str]]) -> None:
    """Give every shard its catalog's number of placements on active nodes again."""
    for catalog, (factor, table) in sorted(factors.items()):
        if factor < 2:
            continue
        try:
            conn.execute(
                "SELECT replicate_table_shards(%s::regclass, shard_replication_factor => %s,"
                " shard_transfer_mode => %s)",
                (table, factor, TRANSFER_MODE),
            )
        except psycopg.Error as exc:
            raise WorkerOpError(
                f"catalog {catalog}: Citus could not give each shard {factor} placements "
                f"({exc.diag.message_primary or exc}); each needs {factor} active nodes "
                "that take shards: add or activate nodes (`qserv-py worker add`, `worker "
                "activate`), then run `qserv-py replicate` again"
            ) from exc


def as_worker_info(node: CitusNode) -> WorkerInfo:
    """A node as :mod:`qserv_py.ops.workers` shows a worker (chunks: its shards)."""
    from qserv_py.ops.workers import WorkerInfo

    return WorkerInfo(
        node.name, f"host={node.host} port={node.port}", node.state, None, node.shards, 0, True
    )


def remove_lost(spec: ClusterSpec, name: str, *, local: LocalCluster | None = None) -> LostReport:
    """``worker remove --lost`` on Citus: node ``name``'s host is gone. If every shard
    placement it held has another on an active node (a catalog created with
    ``--replication`` 2 or more), Citus forgets it (``citus_disable_node``, then
    ``citus_remove_node``, which drops its placements), it leaves the cluster file, and
    each catalog's shards get their level back on the nodes left (:func:`_restore`; if
    they cannot, the report says why). A node holding the only placement of a shard is
    refused, with what to do instead."""
    from qserv_py.ops.workers import LostReport

    node = find_node(spec, name)
    with connect(spec.coordinator, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)"
            " WHERE n.nodeid = %s AND NOT EXISTS (SELECT 1 FROM pg_dist_placement q"
            " JOIN pg_dist_node m ON m.groupid = q.groupid AND m.noderole = 'primary'"
            " WHERE q.shardid = p.shardid AND m.nodeid <> n.nodeid AND m.isactive)",
            (node.node_id,),
        ).fetchone()
        alone = int(row[0]) if row else 0
        if alone:
            raise WorkerOpError(
                f"Citus node {node.name} holds the only placement of {alone} shards (their "
                "catalogs keep one placement of each shard: `catalog create --replication "
                "N` sets more), so it cannot be forgotten as lost: bring it back, or promote "
                "its PostgreSQL standby and point Citus at it (`SELECT citus_update_node("
                f"{node.node_id}, '<host>', <port>)`); if it is empty, remove it with "
                f"`qserv-py worker remove {node.name}`"
            )
        conn.execute(
            "SELECT citus_disable_node(%s, %s, synchronous => true)", (node.host, node.port)
        )
        conn.execute("SELECT citus_remove_node(%s, %s)", (node.host, node.port))
    named = any(w.name == node.name for w in spec.citus_workers)
    if named and spec.path is not None:
        with workers_changed(spec, remove=node.name):
            pass
    if local is not None and named:
        local.remove_worker_instance(node.name)
    error = None
    with connect(spec.coordinator, autocommit=True) as conn:
        catalogs = [str(c) for (c,) in conn.execute("SELECT name FROM qserv_meta.catalogs")]
        try:
            _restore(conn, _factors(conn, catalogs))
        except WorkerOpError as exc:
            error = str(exc)
    return LostReport(node.name, node.shards, [], None, error, True)
