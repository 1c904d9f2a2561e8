"""The Python API: ``qserv_py.connect(cluster).query(text)`` → a pyarrow Table.

>>> import qserv_py                                            # doctest: +SKIP
>>> client = qserv_py.connect("/var/lib/qserv_py/cluster")     # doctest: +SKIP
>>> client.query("SELECT COUNT(*) FROM dp02.Object")           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pyarrow as pa

from qserv_py.cluster.db import connect as db_connect
from qserv_py.cluster.db import has_input
from qserv_py.cluster.spec import ClusterSpec, read_cluster_file
from qserv_py.errors import QservError
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.uploads import execute
from qserv_py.query.cache import PlanCache
from qserv_py.query.context import PlanContext
from qserv_py.query.dirindex import MEMORY_KEYS
from qserv_py.query.guard import PlanLimits
from qserv_py.query.planner import plan

log = logging.getLogger(__name__)

NOTIFYING = 6  # the czar metadata version from which changes are notified
OPERATIONS = 7  # ... from which the placement has a version (qserv_py.ops)


@dataclass(frozen=True)
class Explain:
    chunks: int
    chunks_per_worker: dict[str, int]
    worker_sql: str
    merge_sql: str
    oracle_sql: str
    estimated_rows: int | None

    def __str__(self) -> str:
        workers = ", ".join(f"{w}: {n}" for w, n in self.chunks_per_worker.items()) or "none"
        return (
            f"chunks: {self.chunks} ({workers})\n"
            f"worker SQL:\n  {self.worker_sql}\n"
            f"merge SQL:\n  {self.merge_sql}\n"
            f"as one database would run it:\n  {self.oracle_sql}"
        )


class Client:
    """A connection to a cluster for queries; plans against the czar's metadata, which it
    re-reads whenever a catalog, a load or the workers changed. When the czar's workers
    are not the cluster file's (a worker was added or removed since it was read), the
    file is read again: queries go only to workers the file names."""

    def __init__(
        self,
        spec: ClusterSpec,
        default_catalog: str | None = None,
        *,
        director_index_memory_keys: int = MEMORY_KEYS,
        limits: PlanLimits | None = None,
    ) -> None:
        self.spec = spec
        #: the planning limits (qserv_py.query.guard; the service's come from its settings)
        self.limits = limits if limits is not None else PlanLimits()
        self.default_catalog = default_catalog
        #: director indexes of at most this many keys are looked up in memory once used
        #: often (see qserv_py.query.dirindex); 0: always on the czar
        self.director_index_memory_keys = director_index_memory_keys
        self._context: PlanContext | None = None
        self._version: tuple[object, ...] | None = None  # of the metadata in _context
        self._seen: tuple[object, ...] = ()  # the version last read
        self._czar: psycopg.Connection | None = None  # LISTENs on qserv_meta
        self._czar_dsn = ""  # of the czar that _czar is connected to
        self._changed = True  # the czar notified a change since the version was read
        self._listening = False  # the czar notifies changes (else: read at every plan)
        self._placement_versioned = False  # the czar counts placement changes
        self._lock = threading.Lock()
        #: plans of query shapes seen before (see qserv_py.query.cache)
        self.plans = PlanCache()

    @property
    def context(self) -> PlanContext:
        version = self._metadata_version()
        context = self._context
        if context is None or version != self._version:
            self._follow_workers(version[-1] if version else None)
            context = self._load_context(version)
        return context

    def _load_context(self, version: tuple[object, ...]) -> PlanContext:
        """The metadata of ``version``, read on the kept czar session (one connection less
        for a short process) under the lock that keeps its other uses away (a thread that
        waited for it finds the context read); on a new session if that one is of
        another czar (the cluster file changed) or broke meanwhile."""
        args = (self.spec, self.default_catalog, self.director_index_memory_keys, self.limits)
        with self._lock:
            if self._context is not None and self._version == version:
                return self._context
            context = None
            conn = self._czar
            if conn is not None and not conn.closed and self._czar_dsn == self.spec.czar.dsn:
                with suppress(psycopg.OperationalError):  # the czar restarted: a new one below
                    context = PlanContext.load(*args, czar=conn)
            if context is None:
                context = PlanContext.load(*args)
            self._context, self._version = context, version
            return context

    def _follow_workers(self, czar_workers: object) -> None:
        """Read the cluster file again if the czar's workers are not the spec's."""
        names = set(czar_workers) if isinstance(czar_workers, list) else None
        if names is None or names == {w.name for w in self.spec.workers} or not self.spec.path:
            return
        try:
            spec = read_cluster_file(self.spec.path)
        except QservError as exc:  # keep planning with the workers known so far
            log.warning("cannot read the cluster file again: %s", exc)
            return
        self.follow(spec)

    def follow(self, spec: ClusterSpec) -> None:
        """Plan and run on ``spec`` from now on (the cluster file read again after a worker
        was added or removed)."""
        if spec.workers != self.spec.workers or spec.czar != self.spec.czar:
            self.spec = spec
            self._context = None

    def _metadata_version(self) -> tuple[object, ...]:
        """A cheap fingerprint of the catalogs and published loads.

        One kept connection LISTENs on channel ``qserv_meta``, which the czar notifies at
        the commit of any change of the metadata the planner reads (migration 006). The
        fingerprint is read again only after a notification, on first use, or when the
        connection broke; else this only polls the socket (no round trip). A czar whose
        metadata predates the notifications is asked at every plan.
        """
        with self._lock:
            try:
                return self._read_version()
            except psycopg.OperationalError:  # the czar restarted: reconnect once
                if self._czar is not None:
                    self._czar.close()
                self._czar = None
                return self._read_version()

    def _read_version(self) -> tuple[object, ...]:
        conn = self._czar
        if conn is None or conn.closed:
            conn = self._czar = db_connect(self.spec.czar, autocommit=True)
            self._czar_dsn = self.spec.czar.dsn
            conn.add_notify_handler(self._notified)  # those that come with a result
            conn.execute("LISTEN qserv_meta")
            row = conn.execute("SELECT max(version) FROM qserv_meta.schema_version").fetchone()
            self._listening = row is not None and (row[0] or 0) >= NOTIFYING
            self._placement_versioned = row is not None and (row[0] or 0) >= OPERATIONS
            self._changed = True  # nothing was heard while not listening
        else:
            if has_input(conn):  # notifications, or the server hung up: read it again
                conn.pgconn.consume_input()  # OperationalError if the connection broke
                while conn.pgconn.notifies() is not None:
                    pass
                self._changed = True
        if self._changed or not self._listening:
            self._changed = False  # before reading: a change committed meanwhile notifies
            row = conn.execute(
                "SELECT (SELECT count(*) FROM qserv_meta.catalogs),"
                " (SELECT max(created_at) FROM qserv_meta.catalogs),"
                " (SELECT count(*) FROM qserv_meta.load_txns WHERE state = 'published'),"
                " (SELECT max(finished_at) FROM qserv_meta.load_txns WHERE state = 'published')"
                + (
                    ", (SELECT version FROM qserv_meta.placement_version)"
                    if self._placement_versioned
                    else ""
                )
                + ", (SELECT array_agg(name ORDER BY name) FROM qserv_meta.workers)"
            ).fetchone()
            self._seen = tuple(row) if row else ()
        return self._seen

    def _notified(self, _: psycopg.Notify) -> None:
        self._changed = True

    def plan(
        self,
        text: str,
        lang: str = "adql",
        *,
        uploads: Mapping[str, pa.Table | pa.Schema] | None = None,
        oracle: bool = True,
    ) -> ExecPlan:
        """The plan of ``text``; ``uploads`` are the tables (or schemas) it reads as
        ``TAP_UPLOAD.<name>``; ``oracle=False`` skips writing ``oracle_sql``, and lets a
        query shape seen before (with uploads of the same schemas) be planned from the
        plan cache."""
        if oracle:
            return plan(text, lang, self.context, uploads, oracle=True)
        if uploads:
            return self.plans.plan_uploads(text, lang, self.context, uploads)
        return self.plans.plan(text, lang, self.context)

    def query(
        self,
        text: str,
        lang: str = "adql",
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        owner: str = "",
        uploads: Mapping[str, pa.Table] | None = None,
        partial: bool = False,
    ) -> pa.Table:
        """Run ``text``; the result's schema metadata says ``truncated`` when ``max_rows``
        cut it (and ``query_id``). ``uploads`` are Arrow tables the query reads as
        ``TAP_UPLOAD.<name>`` (a cross-match of targets with a director table, a join by
        id, ...), shipped to the workers for the query only. With ``partial``, chunks
        that no live worker holds are left out instead of failing the query: the metadata
        then says ``incomplete`` and lists ``missing_chunks``."""
        planned = self.plan(text, lang, uploads=uploads, oracle=False)
        result = execute(
            self.spec,  # after planning: the spec the plan was made on
            planned,
            text=text,
            lang=lang,
            owner=owner,
            timeout_s=timeout_s,
            max_rows=max_rows,
            partial=partial,
        )
        metadata = dict(result.table.schema.metadata or {})
        metadata[b"truncated"] = b"true" if result.truncated else b"false"
        metadata[b"query_id"] = str(result.query_id).encode()
        metadata[b"incomplete"] = b"true" if result.missing_chunks else b"false"
        if result.missing_chunks:
            metadata[b"missing_chunks"] = ",".join(map(str, result.missing_chunks)).encode()
        return result.table.replace_schema_metadata(metadata)

    def explain(
        self,
        text: str,
        lang: str = "adql",
        *,
        uploads: Mapping[str, pa.Table | pa.Schema] | None = None,
    ) -> Explain:
        planned = self.plan(text, lang, uploads=uploads)
        return Explain(
            planned.total_chunks,
            {w: len(c) for w, c in planned.chunks.items()},
            planned.worker_sql,
            planned.merge_sql,
            planned.oracle_sql,
            planned.estimated_rows,
        )


def connect(cluster: str | Path | ClusterSpec, default_catalog: str | None = None) -> Client:
    """A client for the cluster of a cluster file or local cluster directory; tables
    named without a catalog are looked up in ``default_catalog`` first."""
    spec = cluster if isinstance(cluster, ClusterSpec) else read_cluster_file(Path(cluster))
    return Client(spec, default_catalog)
