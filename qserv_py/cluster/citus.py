"""Citus as qserv_py's worker cluster: finding Citus in a PostgreSQL installation, joining a
local cluster's nodes into one Citus cluster, a catalog's tables as distributed tables, and
the one-transaction commit that replaces qserv_py's own two-phase commit on Citus.

On Citus the czar metadata lives in the coordinator's database and the coordinator is
qserv_py's one worker (``ClusterSpec.backend == "citus"``): qserv_py sends its worker SQL
to the coordinator, which Citus routes to the shards. One transaction on the coordinator
then covers both a change to the distributed tables (Citus commits its nodes' shares with
its own two-phase commit) and the czar metadata, which qserv_py's two-phase commit could
not: Citus refuses ``PREPARE TRANSACTION`` on a transaction that spans its nodes.

Citus itself is not part of qserv_py: it is installed from Citus's own packages or images
(``docs/citus.md``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import ClusterError
from qserv_py.schema.model import CHUNK_ID, Catalog, TableKind

LIBRARY = "citus.so"
CONTROL = "citus.control"
HOW_TO_GET = (
    "install Citus for this PostgreSQL from Citus's own packages (or run its Docker "
    "images) as docs/citus.md says, or name binaries that have it with --pg-bindir"
)

#: server settings every node of a local Citus cluster gets (over the native ones):
#: Citus must be preloaded; shard moves (rebalance, drain) may use logical replication;
#: the rebalancer's background tasks start within half a second (Citus's default: 5 s)
SERVER_SETTINGS: dict[str, str | int] = {
    "shared_preload_libraries": "citus",
    "wal_level": "logical",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "citus.background_task_queue_interval": "500ms",
}

Work = Callable[[psycopg.Connection], None]


# --- finding Citus -------------------------------------------------------------------------


def _pg_config(bindir: Path, option: str) -> Path | None:
    exe = bindir / "pg_config"
    if not exe.is_file():
        return None
    out = subprocess.run([str(exe), f"--{option}"], capture_output=True, text=True)
    value = out.stdout.strip()
    return Path(value) if out.returncode == 0 and value else None


def library_dirs(bindir: Path) -> list[Path]:
    """Where the server of ``bindir`` loads extension libraries from (pkglibdir)."""
    found = [d for d in [_pg_config(bindir, "pkglibdir")] if d is not None]
    found += [bindir.parent / "lib", bindir.parent / "lib" / "postgresql"]
    return list(dict.fromkeys(found))


def extension_dirs(bindir: Path) -> list[Path]:
    """Where the server of ``bindir`` finds extension control files."""
    share = _pg_config(bindir, "sharedir")
    found = [share / "extension"] if share is not None else []
    found += [
        bindir.parent / "share" / "extension",
        bindir.parent / "share" / "postgresql" / "extension",
    ]
    return list(dict.fromkeys(found))


def citus_problem(bindir: Path) -> str | None:
    """Why the PostgreSQL of ``bindir`` cannot run Citus, or None if it can."""
    libs = library_dirs(bindir)
    if not any((d / LIBRARY).is_file() for d in libs):
        return f"no {LIBRARY} in {', '.join(map(str, libs))}"
    exts = extension_dirs(bindir)
    if not any((d / CONTROL).is_file() for d in exts):
        return f"no {CONTROL} in {', '.join(map(str, exts))}"
    return None


def require_citus(bindir: Path) -> None:
    """Refuse binaries without Citus, saying where it is missing and how to get it."""
    problem = citus_problem(bindir)
    if problem is not None:
        raise ClusterError(
            f"the PostgreSQL binaries in {bindir} have no Citus ({problem}); {HOW_TO_GET}"
        )


# --- a local cluster's nodes ---------------------------------------------------------------


def join_nodes(
    coordinator: Instance,
    coordinator_address: tuple[str, int],
    workers: Sequence[tuple[Instance, tuple[str, int]]],
    *,
    user: str,
    password: str,
) -> None:
    """Create the citus extension on every node and register the workers (and the
    coordinator's own address) on the coordinator with ``citus_add_node``.

    Nodes reach each other with ``user``'s password, recorded in ``pg_dist_authinfo`` of
    every node (node 0: any node)."""
    for node in (coordinator, *(w for w, _ in workers)):
        _prepare_node(node, user, password)
    with connect(coordinator, autocommit=True) as conn:
        conn.execute("SELECT citus_set_coordinator_host(%s, %s)", coordinator_address)
        for _, (host, port) in workers:
            conn.execute("SELECT citus_add_node(%s, %s)", (host, port))


def allow_role(nodes: Sequence[Instance], role: str, password: str) -> None:
    """Let the coordinator and the nodes reach each other as ``role`` (the read-only
    role's queries fan out as that role) with its password, in ``pg_dist_authinfo``."""
    for node in nodes:
        with connect(node, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, %s, %s)"
                " ON CONFLICT (rolename, nodeid) DO UPDATE SET authinfo = excluded.authinfo",
                (role, f"password={password}"),
            )


def _prepare_node(node: Instance, user: str, password: str | None) -> None:
    """The citus extension on ``node``, and ``user``'s password for reaching the nodes
    (none given: the node's own authentication, e.g. a .pgpass, is left as it is)."""
    with connect(node, autocommit=True) as conn:
        _create_extension(conn, node)
        if password is None:
            return
        conn.execute(
            "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo)"
            " VALUES (0, %s, %s) ON CONFLICT DO NOTHING",
            (user, f"password={password}"),
        )


def _create_extension(conn: psycopg.Connection, node: Instance) -> None:
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
    except psycopg.Error as exc:
        raise ClusterError(
            f"{node.name} ({node.public_dsn}) cannot create the citus extension: "
            f"{exc.diag.message_primary or exc}; the server needs Citus installed and "
            f"shared_preload_libraries = 'citus'; {HOW_TO_GET}"
        ) from exc


def add_node(
    spec: ClusterSpec,
    node: Instance,
    address: tuple[str, int],
    *,
    user: str,
    password: str | None,
) -> None:
    """Join a new, empty PostgreSQL database (same name as the coordinator's) to Citus
    cluster ``spec`` as a worker node: the extension, the passwords of ``user`` and of
    the read-only role, and ``citus_add_node`` on the coordinator (which copies the
    reference tables and Citus's metadata to it)."""
    _prepare_node(node, user, password)
    with connect(spec.coordinator, autocommit=True) as conn:
        conn.execute("SELECT citus_add_node(%s, %s)", address)
    if spec.reader_password is not None:  # the role reached the node with citus_add_node
        allow_role([node], spec.reader_user, spec.reader_password)


def remove_node(spec: ClusterSpec, address: tuple[str, int]) -> None:
    """Unregister the worker node at ``address`` (it must hold no shards)."""
    with connect(spec.coordinator, autocommit=True) as conn:
        conn.execute("SELECT citus_remove_node(%s, %s)", address)


#: how Citus copies a moving shard: ``block_writes`` (writes to the shard wait for its
#: move; no replica identity needed) or ``force_logical`` (logical replication: writes go
#: on; the catalogs' tables are insert-only, so they need no replica identity either)
TRANSFER_MODES = ("block_writes", "force_logical")


def rebalance(spec: ClusterSpec, *, transfer_mode: str = "block_writes") -> int:
    """Move shards (groups of whole chunks, with the shards colocated with them) so that
    every worker node holds its share, with Citus's rebalancer, and wait for the end;
    how many background tasks (shard moves and their clean-ups) it ran, 0 if none.
    Queries go on during the moves (see ``TRANSFER_MODES`` for writes)."""
    if transfer_mode not in TRANSFER_MODES:
        raise ClusterError(
            f"shard transfer mode {transfer_mode!r}: use one of {', '.join(TRANSFER_MODES)}"
        )
    with connect(spec.coordinator, autocommit=True) as conn:
        started = conn.execute(
            "SELECT citus_rebalance_start(shard_transfer_mode => %s)", (transfer_mode,)
        ).fetchone()
        if started is None or started[0] is None:
            return 0  # nothing to move
        conn.execute("SELECT citus_rebalance_wait()")
        row = conn.execute(
            "SELECT state::text, count(t.task_id) FROM pg_dist_background_job j"
            " LEFT JOIN pg_dist_background_task t USING (job_id)"
            " WHERE j.job_id = %s GROUP BY j.state",
            (started[0],),
        ).fetchone()
    if row is None or row[0] != "finished":
        raise ClusterError(
            f"the Citus rebalance (job {started[0]}) ended {row[0] if row else 'unknown'}; "
            "see citus_rebalance_status() on the coordinator"
        )
    return int(row[1])


def shards_per_node(coordinator: Instance, table: str) -> dict[int, int]:
    """Worker node port -> how many shards of ``table`` (``schema.name``) it holds."""
    with connect(coordinator, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT p.nodeport, count(*) FROM pg_dist_shard_placement p"
            " JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = %s::regclass"
            " GROUP BY p.nodeport",
            (table,),
        ).fetchall()
    return {int(port): int(n) for port, n in rows}


def active_workers(coordinator: Instance) -> list[tuple[str, int]]:
    """(host, port) of the worker nodes the coordinator routes to."""
    with connect(coordinator, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT node_name, node_port FROM citus_get_active_worker_nodes()"
            " ORDER BY node_name, node_port"
        ).fetchall()
    return [(str(host), int(port)) for host, port in rows]


# --- catalogs ------------------------------------------------------------------------------


def distribute_ddl(catalog: Catalog, shard_count: int, replication: int = 1) -> list[str]:
    """Statements making the (plain, just created) tables of ``catalog`` Citus tables,
    in one transaction.

    Partitioned tables (directors, their overlap tables, children) become tables
    hash-distributed on ``chunk_id`` with ``shard_count`` shards, all in the default
    colocation group (same shard count, replication factor and column type): a chunk is
    never split across shards, and a chunk's rows of every table, overlap included, lie in
    the same shard on the same nodes, so joins on ``chunk_id`` equality run on the shards.
    A shard holds several chunks; an index on ``chunk_id`` finds a chunk's rows inside it.
    With ``replication`` above 1 each shard has that many placements on distinct nodes
    (``citus.shard_replication_factor``: Citus writes all of them and reads another when
    a node fails). Replicated tables become reference tables (a copy on every node). See
    docs/decisions.md.
    """
    from qserv_py.schema.ddl import index_name, overlap_table_name

    if not 1 <= shard_count <= 64000:
        raise ClusterError(f"citus shard count {shard_count} must be between 1 and 64000")
    schema = catalog.sql_name
    statements = [f"SET LOCAL citus.shard_replication_factor = {int(replication)}"]
    for table in catalog.tables:
        names = [table.sql_name]
        if table.kind is TableKind.DIRECTOR:
            names.append(overlap_table_name(table))
        for name in names:
            if table.partitioned:
                statements += [
                    f"CREATE INDEX {index_name(name, CHUNK_ID)} ON {schema}.{name} ({CHUNK_ID})",
                    sql_call(
                        "create_distributed_table", f"{schema}.{name}", CHUNK_ID,
                        shard_count=shard_count,
                    ),
                ]  # fmt: skip
            else:
                statements.append(sql_call("create_reference_table", f"{schema}.{name}"))
    return statements


def sql_call(function: str, *args: str, **named: int) -> str:
    """``SELECT function('arg', ..., name => n)`` with the arguments quoted as literals.

    >>> sql_call("create_distributed_table", "dp02.object", "chunk_id", shard_count=8)
    "SELECT create_distributed_table('dp02.object', 'chunk_id', shard_count => 8)"
    """
    parts = [sql.Literal(a).as_string(None) for a in args]
    parts += [f"{k} => {int(v)}" for k, v in named.items()]
    return f"SELECT {function}({', '.join(parts)})"


def distribution(coordinator: Instance, schema: str) -> list[tuple[str, str, int | None]]:
    """(table, method, colocation id) of the Citus tables in ``schema``: method ``hash``
    for a distributed table, ``reference`` for a reference table."""
    with connect(coordinator, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, CASE p.partmethod WHEN 'h' THEN 'hash' WHEN 'n' THEN"
            " 'reference' ELSE p.partmethod::text END, p.colocationid"
            " FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"
            " ORDER BY c.relname",
            (schema,),
        ).fetchall()
    return [(str(t), str(m), c) for t, m, c in rows]


# --- atomic changes ------------------------------------------------------------------------


def commit_on_coordinator(
    spec: ClusterSpec, worker_work: Mapping[str, Work], czar_work: Work | None, *, label: str
) -> str:
    """What :func:`qserv_py.cluster.twophase.commit_two_phase` does, on a Citus cluster:
    the workers' share (on the coordinator, qserv_py's one worker) and the czar's share in
    one transaction of the coordinator's database, which is the decision. Returns ``label``.
    """
    unknown = set(worker_work) - {w.name for w in spec.workers}
    if unknown:
        raise ClusterError(
            f"{label}: no worker {', '.join(sorted(unknown))} on Citus cluster {spec.name}"
        )
    with connect(spec.coordinator) as conn:
        # several Citus DDL commands in one transaction must not mix parallel and
        # sequential shard access
        conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        for work in worker_work.values():
            work(conn)
        if czar_work is not None:
            czar_work(conn)
        conn.commit()
    return label
