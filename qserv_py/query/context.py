"""What the planner knows about the cluster: catalogs, layouts, placement, director
indexes. Read once from the czar and kept by a client; :meth:`refresh` re-reads it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import psycopg

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.query.qualify import CatalogSet
from qserv_py.schema.ddl import dirindex_table, overlap_table_name
from qserv_py.sky.layout import Layout


@dataclass
class CatalogState:
    layout: Layout | None
    #: chunk -> workers holding it (published data only)
    placement: dict[int, tuple[str, ...]]
    #: chunks with published rows, per table (sql name)
    chunks_with_rows: dict[str, frozenset[int]]
    rows: dict[str, int]
    #: published rows of each chunk, per table (sql name)
    chunk_rows: dict[str, dict[int, int]] = field(default_factory=dict)
    #: the chunks that have a partition, per table and overlap table (``catalog.table``):
    #: the worker SQL names partitions, and reads an empty relation for a missing one
    partitions: dict[str, frozenset[int]] = field(default_factory=dict)


@dataclass
class PlanContext:
    spec: ClusterSpec
    catalogs: CatalogSet
    states: dict[str, CatalogState] = field(default_factory=dict)
    _connection: psycopg.Connection | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: the context this one was derived from (its czar connection does the lookups)
    _base: PlanContext | None = field(default=None, repr=False)

    @classmethod
    def load(cls, spec: ClusterSpec, default_catalog: str | None = None) -> PlanContext:
        with connect(spec.czar, autocommit=True) as czar:
            names = [
                r[0] for r in czar.execute("SELECT name FROM qserv_meta.catalogs ORDER BY name")
            ]
            catalogs = {name: get_catalog(czar, name) for name in names}
            states = {name: _state(czar, name) for name in names}
        return cls(spec, CatalogSet(catalogs, default_catalog), states)

    def refresh(self) -> None:
        fresh = PlanContext.load(self.spec, self.catalogs.default)
        self.catalogs, self.states = fresh.catalogs, fresh.states

    def with_catalogs(self, catalogs: CatalogSet) -> PlanContext:
        """This context seeing other catalogs (a query's uploads besides the cluster's)."""
        return PlanContext(self.spec, catalogs, self.states, _base=self._base or self)

    def lookup_keys(self, catalog: str, director: str, keys: Iterable[int]) -> set[int]:
        """Chunks holding the given director keys (from the czar's director index)."""
        if self._base is not None:
            return self._base.lookup_keys(catalog, director, keys)
        values = sorted({int(k) for k in keys})
        if not values:
            return set()
        table = dirindex_table(catalog, director)
        args: tuple[object, ...]
        if len(values) == 1:  # a lookup: a prepared statement, no sort
            sql, args = f"SELECT chunk_id FROM {table} WHERE key = %s", (values[0],)
        else:
            sql, args = f"SELECT DISTINCT chunk_id FROM {table} WHERE key = ANY(%s)", (values,)
        with self._lock:
            try:
                rows = self._czar().execute(sql, args, prepare=True).fetchall()
            except psycopg.OperationalError:  # the czar restarted: reconnect once
                self._connection = None
                rows = self._czar().execute(sql, args, prepare=True).fetchall()
        return {int(r[0]) for r in rows}

    def _czar(self) -> psycopg.Connection:
        """One kept connection for director-index lookups (a new one costs ~8 ms)."""
        if self._connection is None or self._connection.closed:
            self._connection = connect(self.spec.czar, autocommit=True)
        return self._connection


def _state(czar: psycopg.Connection, catalog: str) -> CatalogState:
    chunks = [
        r[0]
        for r in czar.execute(
            "SELECT chunk_id FROM qserv_meta.chunks WHERE catalog = %s", (catalog,)
        )
    ]
    layout = Layout.from_chunks(np.array(chunks, dtype=np.int64)) if chunks else None
    placement: dict[int, list[str]] = {}
    for chunk, worker in czar.execute(
        "SELECT chunk_id, worker FROM qserv_meta.placement WHERE catalog = %s ORDER BY 1, 2",
        (catalog,),
    ):
        placement.setdefault(int(chunk), []).append(worker)
    with_rows: dict[str, set[int]] = {}
    rows: dict[str, int] = {}
    chunk_rows: dict[str, dict[int, int]] = {}
    with_overlap: dict[str, set[int]] = {}
    for table, chunk, n, overlap_rows in czar.execute(
        "SELECT table_name, chunk_id, rows, overlap_rows FROM qserv_meta.chunk_stats"
        " WHERE catalog = %s AND (rows > 0 OR overlap_rows > 0)",
        (catalog,),
    ):
        if overlap_rows > 0:
            with_overlap.setdefault(overlap_table_name(table), set()).add(int(chunk))
        if n <= 0:
            continue
        with_rows.setdefault(table, set()).add(int(chunk))
        rows[table] = rows.get(table, 0) + int(n)
        chunk_rows.setdefault(table, {})[int(chunk)] = int(n)
    partitions = {
        f"{catalog}.{table}": frozenset(chunks)
        for table, chunks in (*with_rows.items(), *with_overlap.items())
    }
    return CatalogState(
        layout,
        {c: tuple(ws) for c, ws in placement.items()},
        {t: frozenset(cs) for t, cs in with_rows.items()},
        rows,
        chunk_rows,
        partitions,
    )
