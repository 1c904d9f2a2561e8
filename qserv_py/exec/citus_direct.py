"""Reads straight from the shards on a Citus cluster: the worker SQL of a batch of chunks
sent to the worker node holding their shards, naming the shard tables, instead of one
statement the coordinator plans and routes (docs/decisions.md, "Citus: reads straight
to the shards").

A chunk lives in the shard whose hash range holds ``hashint8(chunk_id)`` (Citus hashes
the distribution column with PostgreSQL's own hash function, reproduced here); a
catalog's tables are colocated, so a chunk's shards of every table lie on one node.
:func:`route` turns a plan made for the coordinator into one for the worker nodes: the
chunks go to the node holding their shards (ordered by shard, so that a batch reads few
shards), and ``ExecPlan.shards`` names each chunk's shard tables; the native executor
then runs it as on native workers (batches, lanes per node, the merge on the czar).

Exactness while Citus moves shards. The shard map (shards, their placements, the nodes)
is read once per *placement version* — the number of placements, the highest placement
id and the node list, which every shard move, split or node change alters, as placement
ids are never reused — and cached. After a direct read, before its result counts,
:meth:`Direct.still_placed` reads the version again: unchanged, every shard was read
where Citus had it for the whole query (placements changed neither before nor during
it). Changed, or the read failed (a shard already dropped from its old node, a node
gone), the map is read again and the query answered through the coordinator, which is
exact during moves. Shapes the direct read does not serve (an upload's rows per chunk, a
query of reference tables only) keep the coordinator's route.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

from psycopg.conninfo import make_conninfo

from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.exec.plan import ExecPlan, partitioned_tables
from qserv_py.exec.pools import borrow, czar_pool

#: set False to send every query through the coordinator (bench/citus_backend.py compares)
ENABLED = True

#: the placement version: placements, the highest placement id, the nodes
_VERSION = (
    "(SELECT count(*) FROM pg_dist_placement), "
    "(SELECT coalesce(max(placementid), 0) FROM pg_dist_placement), "
    "(SELECT coalesce(string_agg(concat_ws(' ', nodeid, groupid, nodename, nodeport,"
    " isactive, noderole), ',' ORDER BY nodeid), '') FROM pg_dist_node)"
)
_MAP = (
    f"SELECT {_VERSION}, m.* FROM (SELECT ns.nspname, c.relname,"
    " s.shardminvalue::int, s.shardmaxvalue::int, shard_name(s.logicalrelid, s.shardid),"
    " n.nodename, n.nodeport FROM pg_dist_shard s"
    " JOIN pg_dist_partition t USING (logicalrelid)"
    " JOIN pg_class c ON c.oid = s.logicalrelid"
    " JOIN pg_namespace ns ON ns.oid = c.relnamespace"
    " JOIN pg_dist_placement p USING (shardid)"
    " JOIN pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' AND n.isactive"
    " WHERE t.partmethod = 'h' ORDER BY ns.nspname, c.relname, s.shardminvalue::int,"
    " p.placementid) AS m RIGHT JOIN (SELECT 1) AS one ON true"
)

#: the ending of a director's overlap table (qserv_py.schema.ddl.overlap_table_name)
_OVERLAP = "_overlap"
#: a partitioned table's placeholder in the worker SQL is ``schema.qserv_part__table``
#: (see qserv_py.exec.plan)
_PLACEHOLDER_PREFIX = "qserv_part__"

Version = tuple[int, int, str]
Node = tuple[str, int]


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def hashint8(value: int) -> int:
    """PostgreSQL's ``hashint8(value)`` (an int4): the hash Citus gives a bigint
    distribution column. (Jenkins' final mix of ``hash_uint32``, src/common/hashfn.c.)

    >>> hashint8(0), hashint8(1), hashint8(-1)
    (-272711505, -1905060026, 385747274)
    """
    lo, hi = value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF
    lo ^= hi if value >= 0 else (~hi & 0xFFFFFFFF)
    a = b = c = (0x9E3779B9 + 4 + 3923095) & 0xFFFFFFFF
    a = (a + lo) & 0xFFFFFFFF
    c ^= b
    c = (c - _rot(b, 14)) & 0xFFFFFFFF
    a ^= c
    a = (a - _rot(c, 11)) & 0xFFFFFFFF
    b ^= a
    b = (b - _rot(a, 25)) & 0xFFFFFFFF
    c ^= b
    c = (c - _rot(b, 16)) & 0xFFFFFFFF
    a ^= c
    a = (a - _rot(c, 4)) & 0xFFFFFFFF
    b ^= a
    b = (b - _rot(a, 14)) & 0xFFFFFFFF
    c ^= b
    c = (c - _rot(b, 24)) & 0xFFFFFFFF
    return c - (1 << 32) if c >= 1 << 31 else c


@dataclass(frozen=True)
class _Shards:
    """One distributed table's shards: hash range starts, and per shard its table's
    name on the node and the node."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    names: tuple[str, ...]
    nodes: tuple[Node, ...]

    def find(self, chunk: int) -> tuple[str, Node] | None:
        token = hashint8(chunk)
        i = bisect.bisect_right(self.starts, token) - 1
        if i < 0 or token > self.ends[i]:
            return None
        return self.names[i], self.nodes[i]


@dataclass(frozen=True)
class ShardMap:
    """Where Citus holds every distributed table's shards, at one placement version."""

    version: Version
    #: ``schema.table`` -> its shards
    tables: Mapping[str, _Shards]
    #: the cluster spec whose workers are the coordinator and the worker nodes
    spec: ClusterSpec
    #: a node (host, port) -> its worker's name in ``spec``
    names: Mapping[Node, str]


_maps: dict[tuple[int, str], tuple[ClusterSpec, ShardMap]] = {}
_lock = threading.Lock()


def _read_version(spec: ClusterSpec) -> Version:
    with borrow(czar_pool(spec)) as conn:
        row = conn.execute(f"SELECT {_VERSION}").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), str(row[2])


def _load(spec: ClusterSpec) -> ShardMap:
    """Read the shard map from the coordinator (one statement: one snapshot)."""
    with borrow(czar_pool(spec)) as conn:
        rows = conn.execute(_MAP).fetchall()
    version: Version = (int(rows[0][0]), int(rows[0][1]), str(rows[0][2]))
    found: dict[str, list[tuple[int, int, str, Node]]] = {}
    replicated: set[str] = set()
    for *_, schema, table, low, high, name, host, port in rows:
        if schema is None:
            continue  # no distributed table at all
        shards = found.setdefault(f"{schema}.{table}", [])
        if shards and shards[-1][0] == low:
            replicated.add(f"{schema}.{table}")  # a second placement of the same shard
            continue
        shards.append((int(low), int(high), str(name), (str(host), int(port))))
    # a table whose shards have several placements (a catalog created with --replication
    # 2 or more) is left out, so read through the coordinator, whose executor reads
    # another placement when a node fails: a direct read has no failover of its own
    tables = {
        t: _Shards(*(tuple(col) for col in zip(*s, strict=True)))  # type: ignore[arg-type]
        for t, s in found.items()
        if t not in replicated
    }
    nodes = sorted({n for s in tables.values() for n in s.nodes})
    return ShardMap(version, tables, *_direct_spec(spec, nodes))


def node_spec(spec: ClusterSpec, nodes: list[Node]) -> ClusterSpec:
    """``spec`` with the Citus worker nodes at ``nodes`` as workers beside the
    coordinator (see :func:`_direct_spec`)."""
    return _direct_spec(spec, nodes)[0]


def _direct_spec(spec: ClusterSpec, nodes: list[Node]) -> tuple[ClusterSpec, dict[Node, str]]:
    """``spec`` with the worker nodes as workers beside the coordinator: named as the
    cluster file names them (else ``host:port``), reached with their DSN there (else
    the coordinator's, with the node's host and port: Citus wants the same database and
    roles on every node)."""
    named = {
        (str(w.conninfo.get("host")), int(w.conninfo.get("port") or 5432)): w
        for w in spec.citus_workers
    }
    workers, names = list(spec.workers), {}
    for host, port in nodes:
        known = named.get((host, port))
        if known is None:
            dsn = make_conninfo(spec.coordinator.dsn, host=host, port=port)
            known = Instance(f"{host}:{port}", dsn)
        workers.append(known)
        names[(host, port)] = known.name
    return replace(spec, workers=tuple(workers)), names


def shard_map(spec: ClusterSpec, *, fresh: bool = False) -> ShardMap:
    """This process's shard map of ``spec`` (read again when ``fresh``)."""
    key = (id(spec), spec.czar.dsn)
    with _lock:
        known = _maps.get(key)
    if known is not None and known[0] is spec and not fresh:
        return known[1]
    loaded = _load(spec)
    with _lock:
        if len(_maps) >= 64:
            _maps.clear()
        _maps[key] = (spec, loaded)  # the spec is kept: its id stays
    return loaded


@dataclass(frozen=True)
class Direct:
    """A plan rewritten to read the shards on the worker nodes, and how to check that
    the placement it read is still Citus's."""

    spec: ClusterSpec
    plan: ExecPlan
    base: ClusterSpec
    version: Version

    def still_placed(self) -> bool:
        """Whether Citus's placements are those the plan read (no shard moved, split or
        dropped, no node changed since the map was read); if not, the map is read
        again for the next query."""
        if _read_version(self.base) == self.version:
            return True
        shard_map(self.base, fresh=True)
        return False


def route(spec: ClusterSpec, plan: ExecPlan, batch_chunks: int = 16) -> Direct | None:
    """``plan`` (made for the coordinator) as a plan for the worker nodes holding its
    chunks' shards; None where the coordinator's route is kept (docs/decisions.md,
    "Citus: reads straight to the shards"):

    - a plan of one batch (at most ``batch_chunks`` chunks: id lookups, light curves,
      cones) without planner settings: one statement Citus's router plans in about a
      millisecond, measured faster than the direct read with its placement check;
    - a table whose shards have several placements (read through the coordinator, which
      fails over between them);
    - direct reads disabled, no chunks, a query of reference tables only, a statement
      that reads its chunk list elsewhere (an upload's rows per chunk) or rewrites per
      chunk, a reference table named beside the partitioned ones, or a table whose
      shards are not found (not distributed, or a chunk's shards on different nodes).

    Plans with planner settings (the neighbour join's) always read directly: Citus does
    not pass a session's planner settings on to the shards' sessions."""
    if not ENABLED or spec.backend != "citus" or plan.replicated_worker is not None:
        return None
    if not plan.chunks or plan.per_chunk is not None or "{chunks}" in plan.worker_sql:
        return None
    if plan.total_chunks <= batch_chunks and not plan.worker_settings:
        return None
    tables = partitioned_tables(plan)
    if not tables or _names_other_tables(plan.worker_sql, tables):
        return None
    current = shard_map(spec)
    placed = _place(current, tables, plan)
    if placed is None and _read_version(spec) != current.version:
        # the map is older than a table or a shard (a catalog created, a node added or
        # removed since): read it again, else such a plan would never read directly
        current = shard_map(spec, fresh=True)
        placed = _place(current, tables, plan)
    if placed is None:
        return None
    by_node, names = placed
    chunks = {
        node: tuple(c for _, c in sorted(cs)) for node, cs in by_node.items()
    }  # by shard, then chunk
    whole: dict[str, frozenset[int]] = {}
    if plan.holders is not None and plan.catalog is not None:
        for table in tables:
            whole.update(_catalog_chunks(current, table, plan.catalog, plan.holders))
    direct = replace(
        plan,
        chunks=chunks,
        shards=names,
        shard_chunks=whole,
        catalog=None,
        holders=None,
        partitions={},
    )
    return Direct(current.spec, direct, spec, current.version)


#: (map, catalog placement, table) -> the table's shards -> the catalog's chunks in each
_whole: dict[tuple[int, int, str], tuple[object, object, dict[str, frozenset[int]]]] = {}


def _catalog_chunks(
    current: ShardMap, table: str, catalog: str, holders: Mapping[int, object]
) -> dict[str, frozenset[int]]:
    """Each shard of ``table`` -> every chunk of ``catalog`` (``holders``: its placement,
    chunk -> workers) whose hash falls in it: a statement reading all of them needs no
    ``chunk_id`` filter there. None for a table of another catalog, or an overlap table
    (a chunk with overlap rows only has no placement). Cached per map and placement."""
    shards = current.tables.get(table)
    if shards is None or table.split(".")[0] != catalog or table.endswith(_OVERLAP):
        return {}
    key = (id(current), id(holders), table)
    with _lock:
        known = _whole.get(key)
    if known is not None and known[0] is current and known[1] is holders:
        return known[2]
    per_shard: dict[str, set[int]] = {}
    for chunk in holders:
        hit = shards.find(chunk)
        if hit is not None:
            per_shard.setdefault(hit[0], set()).add(chunk)
    found = {name: frozenset(cs) for name, cs in per_shard.items()}
    with _lock:
        if len(_whole) >= 256:
            _whole.clear()
        _whole[key] = (current, holders, found)  # both kept: their ids stay
    return found


def _names_other_tables(template: str, tables: list[str]) -> bool:
    """Whether the worker SQL names a table of the catalogs other than by a partitioned
    table's placeholder (a reference table, which has no plain name on a node's shards:
    such a query keeps the coordinator's route)."""
    schemas = {t.split(".")[0] for t in tables}
    return any(_other_table(schema).search(template) for schema in schemas)


@functools.lru_cache(maxsize=256)
def _other_table(schema: str) -> re.Pattern[str]:
    """``schema.`` naming a table, a placeholder (``schema.qserv_part__…``) excepted: one
    pass over a long statement (a neighbour join's is kilobytes)."""
    return re.compile(
        rf'(?<![\w.])"?{re.escape(schema)}"?\s*\.(?!{_PLACEHOLDER_PREFIX})', re.IGNORECASE
    )


def _place(
    current: ShardMap, tables: list[str], plan: ExecPlan
) -> tuple[dict[str, list[tuple[str, int]]], dict[str, dict[int, str]]] | None:
    """Each chunk's node and shard tables; None if a table or a chunk's shard is not
    in the map, or a chunk's shards lie on different nodes."""
    found = [current.tables.get(t) for t in tables]
    if any(s is None for s in found):
        return None
    by_node: dict[str, list[tuple[str, int]]] = {}
    names: dict[str, dict[int, str]] = {t: {} for t in tables}
    for chunk in sorted(c for cs in plan.chunks.values() for c in cs):
        node: Node | None = None
        first = ""
        for table, shards in zip(tables, found, strict=True):
            assert shards is not None
            hit = shards.find(chunk)
            if hit is None or (node is not None and hit[1] != node):
                return None
            names[table][chunk], node = hit
            first = first or hit[0]
        assert node is not None
        by_node.setdefault(current.names[node], []).append((first, chunk))
    return by_node, names
