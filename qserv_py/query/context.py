"""What the planner knows about the cluster: catalogs, layouts, placement, director
indexes. Read once from the czar and kept by a client, which reads a new one when the
metadata changed (``qserv_py.client``)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import psycopg

from qserv_py.cluster.catalogs import get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.query.dirindex import MEMORY_KEYS, DirectorIndexes
from qserv_py.query.guard import PlanLimits
from qserv_py.query.qualify import CatalogSet
from qserv_py.schema.ddl import overlap_table_name
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
    #: child tables (sql names) with rows placed by their own position (a load with
    #: place_unknown_by_position), and match tables loaded with allow_unknown_match_keys:
    #: their director keys are not all in the director index
    placed_by_position: frozenset[str] = frozenset()


@dataclass
class PlanContext:
    spec: ClusterSpec
    catalogs: CatalogSet
    states: dict[str, CatalogState] = field(default_factory=dict)
    #: director indexes of at most this many keys are copied into memory when used often
    memory_keys: int = MEMORY_KEYS
    #: the context this one was derived from (its director indexes do the lookups)
    _base: PlanContext | None = field(default=None, repr=False)
    #: the planning limits (text length, terms, nesting, depth: qserv_py.query.guard)
    limits: PlanLimits = field(default_factory=PlanLimits)

    @classmethod
    def load(
        cls,
        spec: ClusterSpec,
        default_catalog: str | None = None,
        memory_keys: int = MEMORY_KEYS,
        limits: PlanLimits | None = None,
        czar: psycopg.Connection | None = None,
    ) -> PlanContext:
        """The context read from the czar: on ``czar`` (an autocommit session the caller
        has open: a short process then connects once less), else on a new session."""
        with nullcontext(czar) if czar is not None else connect(spec.czar, autocommit=True) as conn:
            names = [
                r[0] for r in conn.execute("SELECT name FROM qserv_meta.catalogs ORDER BY name")
            ]
            catalogs = {name: get_catalog(conn, name) for name in names}
            states = {name: _state(conn, name) for name in names}
        return cls(
            spec,
            CatalogSet(catalogs, default_catalog),
            states,
            memory_keys,
            limits=limits if limits is not None else PlanLimits(),
        )

    @cached_property
    def director_indexes(self) -> DirectorIndexes:
        sizes = {(c, t): n for c, state in self.states.items() for t, n in state.rows.items()}
        return DirectorIndexes(self.spec, sizes, self.memory_keys)

    def with_catalogs(self, catalogs: CatalogSet) -> PlanContext:
        """This context seeing other catalogs (a query's uploads besides the cluster's)."""
        base = self._base or self
        return PlanContext(
            self.spec, catalogs, self.states, self.memory_keys, _base=base, limits=self.limits
        )

    def lookup_keys(self, catalog: str, director: str, keys: Iterable[int]) -> set[int]:
        """Chunks holding the given director keys (the director's index: on the czar, or
        a copy in memory, see :mod:`qserv_py.query.dirindex`)."""
        return (self._base or self).director_indexes.chunks(catalog, director, keys)


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
    by_position = czar.execute(
        "SELECT DISTINCT table_name FROM qserv_meta.load_txns WHERE catalog = %s"
        " AND state = 'published' AND ((options ->> 'place_unknown_by_position')::boolean"
        " OR (options ->> 'allow_unknown_match_keys')::boolean)",
        (catalog,),
    ).fetchall()
    return CatalogState(
        layout,
        {c: tuple(ws) for c, ws in placement.items()},
        {t: frozenset(cs) for t, cs in with_rows.items()},
        rows,
        chunk_rows,
        partitions,
        frozenset(r[0] for r in by_position),
    )
