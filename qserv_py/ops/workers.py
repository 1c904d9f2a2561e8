"""Workers coming and going: list, add (a remote server, or a new local instance), remove,
and remove a worker whose host is gone (``--lost``).

Adding is all or nothing. The new server is checked (version, prepared transactions, a
database that holds no catalog yet), set up (SQL functions, the read-only role), given
every registered catalog's tables and every replicated table's rows (binary COPY from a
live worker, counted on both sides), all in one transaction there; only then is it
registered on the czar as *active* and written into the cluster file, with the czar's
transaction committed last (the file is put back if it fails). A failure at any step
leaves the czar and the cluster file as they were, and drops what was made on the server.
The new worker holds no chunk until ``rebalance`` or ``replicate`` moves some there.

Removing needs a worker that holds no chunk (drain it first). Removing a *lost* worker
deletes its placements (its copies no longer count), marks it lost, and lets the
replication controller copy every chunk it held from the remaining replicas; chunks that
had no other copy are reported as lost data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.metadata import check_server, install_common, metadata_version
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.config import Settings
from qserv_py.errors import BadWorker, ClusterError, QservError, UnknownWorker, WorkerOpError
from qserv_py.ops.clusterfile import workers_changed
from qserv_py.schema.ddl import create_catalog_ddl
from qserv_py.schema.felis import parse_catalog
from qserv_py.schema.model import Catalog, TableKind

if TYPE_CHECKING:
    from qserv_py.ops.replicate import ReplicationReport

Progress = Callable[[str], None]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the czar records it, with what it holds."""

    name: str
    dsn: str  # without password
    state: str  # active | draining | removable | lost | unregistered (in the file only)
    state_since: datetime | None
    chunks: int  # chunk copies it holds (all catalogs)
    rows: int  # rows of those chunks (all tables)
    in_file: bool  # named by the cluster file

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state_since"] = self.state_since.isoformat() if self.state_since else None
        return data


@dataclass(frozen=True)
class LostReport:
    """What ``worker remove --lost`` did."""

    worker: str
    #: (catalog, chunk) copies the worker held
    chunks: int
    #: (catalog, chunk) whose only copy it held: their rows are gone
    lost_chunks: list[tuple[str, int]] = field(default_factory=list)
    replication: ReplicationReport | None = None
    #: why the controller could not restore every chunk's level (None: it did)
    replication_error: str | None = None
    removed: bool = False  # forgotten by the czar and the cluster file


def list_workers(spec: ClusterSpec) -> list[WorkerInfo]:
    """Every worker the czar or the cluster file knows, by name; on Citus, then Citus's
    worker nodes (``pg_dist_node``, with the shards each holds)."""
    with connect(spec.czar, autocommit=True) as czar:
        metadata_version(czar)
        rows = czar.execute(
            "SELECT w.name, w.dsn, w.state, w.state_since,"
            " (SELECT count(*) FROM qserv_meta.placement p WHERE p.worker = w.name),"
            " (SELECT coalesce(sum(s.rows), 0) FROM qserv_meta.placement p"
            "  JOIN qserv_meta.chunk_stats s ON s.catalog = p.catalog AND s.chunk_id = p.chunk_id"
            "  WHERE p.worker = w.name)"
            " FROM qserv_meta.workers w ORDER BY w.name"
        ).fetchall()
    in_file = {w.name for w in spec.workers}
    found = [
        WorkerInfo(name, dsn, state, since, int(chunks), int(rows), name in in_file)
        for name, dsn, state, since, chunks, rows in rows
    ]
    known = {w.name for w in found}
    found += [
        WorkerInfo(w.name, w.public_dsn, "unregistered", None, 0, 0, True)
        for w in spec.workers
        if w.name not in known
    ]
    found.sort(key=lambda w: w.name)
    if spec.backend == "citus":  # qserv_py's one worker (the coordinator), then the nodes
        from qserv_py.ops import citus_nodes

        found += [citus_nodes.as_worker_info(n) for n in citus_nodes.list_nodes(spec)]
    return found


def worker_info(spec: ClusterSpec, name: str) -> WorkerInfo:
    """One worker; UnknownWorker (404) if neither the czar nor the file knows it."""
    for info in list_workers(spec):
        if info.name == name:
            return info
    known = ", ".join(w.name for w in list_workers(spec)) or "none"
    raise UnknownWorker(f"no worker {name!r} in cluster {spec.name} (workers: {known})")


# --- adding --------------------------------------------------------------------------------


def add_worker(
    spec: ClusterSpec,
    dsn: str,
    settings: Settings,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> WorkerInfo:
    """Make the PostgreSQL database of ``dsn`` a new active worker (see the module)."""
    say = progress or (lambda _: None)
    with connect(spec.czar, autocommit=True) as czar:
        metadata_version(czar)
        registered = {r[0] for r in czar.execute("SELECT name FROM qserv_meta.workers")}
        name = name or _new_name(registered | {w.name for w in spec.workers})
        instance = _checked_instance(name, dsn, spec, registered)
        _refuse_unfinished_loads(czar)
        catalogs, fingerprint = _catalogs(czar)
    say(f"checking {name} ({instance.public_dsn})")
    try:
        conn = connect(instance, autocommit=True, timeout=10)
    except ClusterError as exc:
        raise BadWorker(f"cannot add worker {name}: {exc}") from exc
    made = False
    try:
        try:
            check_server(conn, instance, needs_2pc=True)
        except ClusterError as exc:
            raise BadWorker(f"cannot add worker {name}: {exc}") from exc
        _refuse_used_database(conn, name, catalogs)
        install_common(conn, spec, settings)
        say(f"creating {len(catalogs)} catalogs on {name}")
        made = True
        with conn.transaction():
            for catalog in catalogs:
                for statement in create_catalog_ddl(catalog, spec.reader_user):
                    conn.execute(statement)
            _copy_replicated(spec, conn, name, catalogs, say)
        say(f"registering {name} on the czar and in {spec.path}")
        spec = _register(spec, instance, fingerprint)
    except BaseException:
        if made:
            _drop_catalogs(conn, catalogs)
        raise
    finally:
        conn.close()
    return worker_info(spec, name)


def add_local_worker(
    cluster: LocalCluster, settings: Settings, *, progress: Progress | None = None
) -> WorkerInfo:
    """Start a new instance of local cluster ``cluster`` and add it as a worker; on
    failure the instance is stopped and its data directory deleted."""
    say = progress or (lambda _: None)
    say(f"starting a new instance in {cluster.root}")
    instance = cluster.add_worker_instance(settings)
    try:
        return add_worker(
            cluster.spec(), instance.dsn, settings, name=instance.name, progress=progress
        )
    except BaseException:
        cluster.remove_worker_instance(instance.name, purge=True)
        raise


def _new_name(taken: set[str]) -> str:
    n = 1
    while f"worker{n}" in taken:
        n += 1
    return f"worker{n}"


def _checked_instance(name: str, dsn: str, spec: ClusterSpec, registered: set[str]) -> Instance:
    if not _NAME.match(name) or name == "czar":
        raise BadWorker(
            f"bad worker name {name!r}: use letters, digits, _ and -, starting with a letter"
        )
    if name in registered or name in {w.name for w in spec.workers}:
        raise WorkerOpError(f"cluster {spec.name} has a worker {name!r} already; choose another")
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise BadWorker(f"cannot add worker {name}: invalid DSN: {exc}") from exc
    if not info.get("dbname"):
        raise BadWorker(
            f"cannot add worker {name}: the DSN must name a database (dbname), e.g. "
            "postgresql://qserv:secret@host:5432/qserv"
        )
    return Instance(name, dsn)


def _catalogs(czar: psycopg.Connection) -> tuple[list[Catalog], tuple[Any, ...]]:
    """The registered catalogs, and a fingerprint of what a new worker must copy."""
    found = czar.execute("SELECT name, schema_yaml FROM qserv_meta.catalogs ORDER BY name")
    catalogs = [parse_catalog(text, f"catalog {name}") for name, text in found.fetchall()]
    return catalogs, _fingerprint(czar)


def _fingerprint(czar: psycopg.Connection) -> tuple[Any, ...]:
    row = czar.execute(
        "SELECT (SELECT string_agg(name || ':' || created_at, ',' ORDER BY name)"
        "        FROM qserv_meta.catalogs),"
        " (SELECT max(finished_at) FROM qserv_meta.load_txns WHERE state = 'published'),"
        " (SELECT max(id) FROM qserv_meta.load_txns)"
    ).fetchone()
    return tuple(row) if row else ()


def _refuse_unfinished_loads(czar: psycopg.Connection) -> None:
    """A load stages its rows on the workers it knew; it could not publish to a new one."""
    row = czar.execute(
        "SELECT array_agg(id ORDER BY id) FROM qserv_meta.load_txns"
        " WHERE state IN ('staging', 'staged', 'publishing', 'failed')"
    ).fetchone()
    if row and row[0]:
        loads = ", ".join(str(i) for i in row[0])
        raise WorkerOpError(
            f"loads {loads} are not finished (their rows are staged on the current workers); "
            "publish or abort them first (`qserv-py txn list`), then add the worker"
        )


def _refuse_used_database(conn: psycopg.Connection, name: str, catalogs: list[Catalog]) -> None:
    schemas = [c.sql_name for c in catalogs]
    used = conn.execute(
        "SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace WHERE nspname = ANY(%s)",
        (schemas,),
    ).fetchone()
    if used and used[0]:
        raise BadWorker(
            f"cannot add worker {name}: its database {conn.info.dbname} already holds "
            f"catalogs {', '.join(used[0])} (a worker of this or another cluster?); give "
            "an empty database, or drop those schemas there first"
        )


def _copy_replicated(
    spec: ClusterSpec, target: psycopg.Connection, name: str, catalogs: list[Catalog], say: Progress
) -> None:
    """Copy every replicated table's rows from a live worker, in one snapshot there."""
    tables = [(c, t) for c in catalogs for t in c.tables_of_kind(TableKind.REPLICATED)]
    if not tables:
        return
    source = _live_worker(spec)
    source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot
    source.read_only = True
    with source:
        for catalog, table in tables:
            ident = sql.Identifier(catalog.sql_name, table.sql_name)
            columns = sql.SQL(", ").join(sql.Identifier(c.sql_name) for c in table.columns)
            out = sql.SQL("COPY {} ({}) TO STDOUT (FORMAT BINARY)").format(ident, columns)
            into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(ident, columns)
            with source.cursor().copy(out) as reading, target.cursor().copy(into) as writing:
                for data in reading:
                    writing.write(data)
            count = sql.SQL("SELECT count(*) FROM {}").format(ident)
            have, got = source.execute(count).fetchone(), target.execute(count).fetchone()
            if have != got:
                raise ClusterError(
                    f"copying {catalog.name}.{table.name} to {name}: {got} rows arrived of "
                    f"{have}; nothing was added, try again"
                )
            say(f"copied {catalog.name}.{table.name}: {have[0] if have else 0:,} rows")


def _live_worker(spec: ClusterSpec) -> psycopg.Connection:
    problems = []
    for worker in spec.workers:
        try:
            return connect(worker, timeout=5)
        except ClusterError as exc:
            problems.append(str(exc))
    raise ClusterError(
        "no worker answers, so the replicated tables cannot be copied to a new one: "
        + "; ".join(problems)
    )


def _register(spec: ClusterSpec, instance: Instance, fingerprint: tuple[Any, ...]) -> ClusterSpec:
    """Register ``instance`` on the czar and in the cluster file, both or neither; the
    cluster's new spec."""
    with connect(spec.czar) as czar:
        czar.execute("LOCK TABLE qserv_meta.workers IN SHARE ROW EXCLUSIVE MODE")
        if _fingerprint(czar) != fingerprint:
            raise WorkerOpError(
                f"a catalog was created or dropped, or a load started or published, while "
                f"{instance.name} was being set up; nothing was added: run the same command "
                "again"
            )
        try:
            czar.execute(
                "INSERT INTO qserv_meta.workers (name, dsn, state) VALUES (%s, %s, 'active')",
                (instance.name, instance.public_dsn),
            )
        except psycopg.errors.UniqueViolation:
            raise WorkerOpError(
                f"another worker named {instance.name} was added meanwhile; nothing was added: "
                "run the command again (with another --name)"
            ) from None
        with workers_changed(spec, add=(instance.name, instance.dsn)) as new:
            czar.commit()
    return new


def _drop_catalogs(conn: psycopg.Connection, catalogs: list[Catalog]) -> None:
    """Undo a failed add on the new server (it holds nothing anybody uses)."""
    try:
        conn.rollback()
        conn.autocommit = True
        for catalog in catalogs:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(catalog.sql_name))
            )
    except psycopg.Error:
        pass  # the server went away: it was never registered


# --- removing --------------------------------------------------------------------------------


def remove_worker(
    spec: ClusterSpec, name: str, *, local: LocalCluster | None = None, purge: bool = False
) -> WorkerInfo:
    """Forget worker ``name`` (it must hold no chunk): on the czar and in the cluster file;
    an instance of local cluster ``local`` is stopped (its data kept unless ``purge``).
    On Citus, a worker node is removed with ``citus_remove_node``
    (:func:`qserv_py.ops.citus_nodes.remove`)."""
    if spec.backend == "citus":
        from qserv_py.ops import citus_nodes

        return citus_nodes.as_worker_info(citus_nodes.remove(spec, name, local=local, purge=purge))
    info = worker_info(spec, name)
    if info.chunks:
        raise WorkerOpError(
            f"worker {name} holds {info.chunks} chunks ({info.rows:,} rows); move them away "
            f"first with `qserv-py worker drain {name}`, then remove it (or, if its host is "
            f"gone, `qserv-py worker remove {name} --lost`)"
        )
    _forget(spec, name)
    if local is not None:
        local.remove_worker_instance(name, purge=purge)
    return info


def _forget(spec: ClusterSpec, name: str) -> None:
    """Delete worker ``name`` on the czar and in the cluster file, both or neither."""
    if len(spec.workers) <= 1 and any(w.name == name for w in spec.workers):
        raise WorkerOpError(f"{name} is the last worker of cluster {spec.name}; add another first")
    with connect(spec.czar) as czar:
        czar.execute("SELECT 1 FROM qserv_meta.workers WHERE name = %s FOR UPDATE", (name,))
        busy = czar.execute(
            "SELECT (SELECT count(*) FROM qserv_meta.placement WHERE worker = %s),"
            " (SELECT array_agg(DISTINCT l.txn) FROM qserv_meta.load_placement l"
            "  JOIN qserv_meta.load_txns t ON t.id = l.txn WHERE l.worker = %s)",
            (name, name),
        ).fetchone()
        if busy and busy[0]:
            raise WorkerOpError(f"worker {name} holds {busy[0]} chunks again; drain it first")
        if busy and busy[1]:
            loads = ", ".join(str(t) for t in busy[1])
            raise WorkerOpError(
                f"loads {loads} placed chunks on worker {name}; publish or abort them first "
                f"(`qserv-py txn list`)"
            )
        if _copies_running(czar, name):
            raise WorkerOpError(
                f"chunk copies to or from worker {name} are running; wait for them to finish"
            )
        czar.execute("DELETE FROM qserv_meta.workers WHERE name = %s", (name,))
        if any(w.name == name for w in spec.workers):
            with workers_changed(spec, remove=name):
                czar.commit()
        else:
            czar.commit()


def _copies_running(czar: psycopg.Connection, name: str) -> bool:
    row = czar.execute("SELECT to_regclass('qserv_meta.chunk_copies')").fetchone()
    if row is None or row[0] is None:
        return False
    found = czar.execute(
        "SELECT 1 FROM qserv_meta.chunk_copies WHERE state IN ('copying', 'published')"
        " AND %s IN (source, target) LIMIT 1",
        (name,),
    ).fetchone()
    return found is not None


def declare_lost(spec: ClusterSpec, name: str) -> tuple[int, list[tuple[str, int]]]:
    """Mark worker ``name`` lost and delete its placements, in one transaction: (copies
    it held, the chunks whose only copy it held)."""
    worker_info(spec, name)
    with connect(spec.czar) as czar:
        lost = czar.execute(
            "SELECT p.catalog, p.chunk_id FROM qserv_meta.placement p WHERE p.worker = %s"
            " AND NOT EXISTS (SELECT 1 FROM qserv_meta.placement q WHERE q.catalog = p.catalog"
            "   AND q.chunk_id = p.chunk_id AND q.worker <> p.worker)"
            " ORDER BY 1, 2",
            (name,),
        ).fetchall()
        czar.execute(
            "UPDATE qserv_meta.workers SET state = 'lost', state_since = now()"
            " WHERE name = %s AND state <> 'lost'",
            (name,),
        )
        held = czar.execute("DELETE FROM qserv_meta.placement WHERE worker = %s", (name,))
        czar.commit()
    return held.rowcount, [(c, int(k)) for c, k in lost]


def remove_lost_worker(
    spec: ClusterSpec,
    name: str,
    *,
    local: LocalCluster | None = None,
    progress: Callable[..., None] | None = None,
) -> LostReport:
    """Worker ``name``'s host is gone: its copies stop counting, the controller copies its
    chunks again from the other replicas, then the worker is forgotten. Run again if it
    was interrupted."""
    from qserv_py.ops.replicate import replicate

    if spec.backend == "citus":
        from qserv_py.ops import citus_nodes

        return citus_nodes.remove_lost(spec, name, local=local)
    held, lost = declare_lost(spec, name)
    rest = dataclasses.replace(spec, workers=tuple(w for w in spec.workers if w.name != name))
    report, error = None, None
    try:
        report = replicate(rest, progress=progress)
    except QservError as exc:  # e.g. too few workers left for the level
        error = str(exc)
    removed = False
    try:
        _forget(spec, name)
        removed = True
    except QservError as exc:  # a load or copy still names it: it stays registered as lost
        error = f"{error}; " if error else ""
        error += f"{name} stays registered as lost: {exc}"
    if removed and local is not None:
        local.remove_worker_instance(name)
    return LostReport(name, held, lost, report, error, removed)


def activate_worker(spec: ClusterSpec, name: str) -> WorkerInfo:
    """Take a draining or removable worker back into service (it gets new chunks again);
    on Citus, a node gets shards again (:func:`qserv_py.ops.citus_nodes.activate`)."""
    if spec.backend == "citus":
        from qserv_py.ops import citus_nodes

        return citus_nodes.as_worker_info(citus_nodes.activate(spec, name))
    info = worker_info(spec, name)
    if info.state == "lost":
        raise WorkerOpError(
            f"worker {name} was declared lost: its copies were forgotten, so its data cannot "
            f"count again; remove it (`qserv-py worker remove {name}`), drop its catalogs' "
            "schemas on its server, and add it again as a new worker"
        )
    if info.state == "unregistered":
        raise WorkerOpError(f"worker {name} is not registered on the czar; run `qserv-py init`")
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute(
            "UPDATE qserv_meta.workers SET state = 'active', state_since = now()"
            " WHERE name = %s AND state IN ('draining', 'removable')",
            (name,),
        )
    return worker_info(spec, name)


def drain_worker(spec: ClusterSpec, name: str, progress: Callable[..., None] | None = None) -> Any:
    """Move every chunk off worker ``name`` (then it is *removable*); on Citus, every
    shard off a node with ``citus_drain_node`` (:func:`qserv_py.ops.citus_nodes.drain`)."""
    from qserv_py.ops.rebalance import drain

    if spec.backend == "citus":
        from qserv_py.ops import citus_nodes

        return citus_nodes.drain(spec, name, progress=progress)
    info = worker_info(spec, name)
    if info.state in ("lost", "unregistered"):
        raise WorkerOpError(
            f"worker {name} is {info.state}: nothing can be copied from it; remove it with "
            f"`qserv-py worker remove {name}" + (" --lost`" if info.state == "lost" else "`")
        )
    return drain(spec, name, progress=progress)
