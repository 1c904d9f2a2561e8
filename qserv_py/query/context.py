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
from qserv_py.schema.ddl import dirindex_table
from qserv_py.sky.layout import Layout


@dataclass
class CatalogState:
    layout: Layout | None
    #: chunk -> workers holding it (published data only)
    placement: dict[int, tuple[str, ...]]
    #: chunks with published rows, per table (sql name)
    chunks_with_rows: dict[str, frozenset[int]]
    rows: dict[str, int]


@dataclass
class PlanContext:
    spec: ClusterSpec
    catalogs: CatalogSet
    states: dict[str, CatalogState] = field(default_factory=dict)
    _connection: psycopg.Connection | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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

    def lookup_keys(self, catalog: str, director: str, keys: Iterable[int]) -> set[int]:
        """Chunks holding the given director keys (from the czar's director index)."""
        values = sorted({int(k) for k in keys})
        if not values:
            return set()
        sql = (
            f"SELECT DISTINCT chunk_id FROM {dirindex_table(catalog, director)} WHERE key = ANY(%s)"
        )
        with self._lock:
            try:
                rows = self._czar().execute(sql, (values,)).fetchall()
            except psycopg.OperationalError:  # the czar restarted: reconnect once
                self._connection = None
                rows = self._czar().execute(sql, (values,)).fetchall()
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
    for table, chunk, n in czar.execute(
        "SELECT table_name, chunk_id, rows FROM qserv_meta.chunk_stats"
        " WHERE catalog = %s AND rows > 0",
        (catalog,),
    ):
        with_rows.setdefault(table, set()).add(int(chunk))
        rows[table] = rows.get(table, 0) + int(n)
    return CatalogState(
        layout,
        {c: tuple(ws) for c, ws in placement.items()},
        {t: frozenset(cs) for t, cs in with_rows.items()},
        rows,
    )
