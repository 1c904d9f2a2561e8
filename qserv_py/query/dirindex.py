"""Director-index lookups for the planner: which chunks hold these director keys.

The index is a table on the czar (``qserv_dirindex.<catalog>__<director>``: key ->
chunk). A lookup asks it over one kept czar session: a round trip, about as long as the
worker statement of an id lookup itself. So a client that looks keys of one director up
again and again (a service answering lookups and light curves) copies that director's
index into memory once, if it has at most ``memory_keys`` keys (12 bytes each), and then
answers from there:

- the copy is made on the ``MEMORY_AFTER``-th lookup of the director, in a background
  thread (read in key order from one snapshot, ~0.4 s per million keys); lookups
  ask the czar until it is ready, and if it fails (logged) the czar is asked from then
  on;
- it belongs to one :class:`~qserv_py.query.context.PlanContext`, that is to one version
  of the published metadata: a load publishes its keys in the transaction that also
  changes the metadata, which makes the client read a new context (with no copy yet).
  A copy begun before such a change is only ever used by the old context.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import numpy as np
import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.schema.ddl import dirindex_table

#: keys of an index held in memory at most, by default (~120 MB)
MEMORY_KEYS = 10_000_000
#: the lookup of a director that starts copying its index into memory
MEMORY_AFTER = 3

log = logging.getLogger(__name__)

_BIGINTS = range(-(2**63), 2**63)  # keys are bigint: no other number is in an index
#: keys read from the czar at a time (16 bytes each, in two bytea values)
READ_KEYS = 1_000_000


class MemoryIndex:
    """A director index in memory: keys sorted, and each key's chunk."""

    def __init__(self, keys: np.ndarray, chunks: np.ndarray) -> None:
        if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
            raise ValueError("the keys of a director index copy are not strictly increasing")
        self.keys = keys.astype(np.int64)
        small = chunks.size == 0 or (chunks.min() >= 0 and chunks.max() < 2**31)
        self.chunks = chunks.astype(np.int32 if small else np.int64)

    @classmethod
    def read(cls, conn: psycopg.Connection, table: str) -> MemoryIndex:
        """The index ``table`` as one snapshot of it, read ``READ_KEYS`` keys at a time in
        key order, each batch as two binary strings of big-endian bigints (a binary COPY
        reaches Python a row at a time: nearly three times slower)."""
        keys: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        last = None
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            while True:
                row = conn.execute(
                    "SELECT string_agg(int8send(key), ''), string_agg(int8send(chunk_id), ''),"
                    f" max(key) FROM (SELECT key, chunk_id FROM {table}"
                    " WHERE %(last)s::bigint IS NULL OR key > %(last)s ORDER BY key"
                    f" LIMIT {READ_KEYS}) AS batch",
                    {"last": last},
                    binary=True,
                ).fetchone()
                if row is None or row[0] is None:
                    break
                keys.append(np.frombuffer(row[0], dtype=">i8"))
                chunks.append(np.frombuffer(row[1], dtype=">i8"))
                last = row[2]
        empty = np.empty(0, dtype=np.int64)
        return cls(np.concatenate(keys or [empty]), np.concatenate(chunks or [empty]))

    def lookup(self, keys: list[int]) -> set[int]:
        wanted = np.asarray(keys, dtype=np.int64)
        at = np.searchsorted(self.keys, wanted)
        found = at < self.keys.size
        found[found] &= self.keys[at[found]] == wanted[found]
        return {int(c) for c in self.chunks[at[found]]}


class DirectorIndexes:
    """The director-index lookups of one planning context (see the module's docstring).

    ``sizes`` gives a director's published rows (``(catalog, director)`` -> rows): its
    keys."""

    def __init__(
        self, spec: ClusterSpec, sizes: dict[tuple[str, str], int], memory_keys: int
    ) -> None:
        self.spec, self.sizes, self.memory_keys = spec, sizes, memory_keys
        self._connection: psycopg.Connection | None = None
        self._lock = threading.Lock()  # for the kept czar session, and the counts
        self._lookups: dict[str, int] = {}  # per index table: lookups so far
        self._memory: dict[str, MemoryIndex | None] = {}  # per table: copy (None: failed)

    def chunks(self, catalog: str, director: str, keys: Iterable[int]) -> set[int]:
        """Chunks holding the given director keys."""
        values = sorted({k for k in map(int, keys) if k in _BIGINTS})
        if not values:
            return set()
        table = dirindex_table(catalog, director)
        memory = self._memory.get(table)
        if memory is not None:
            return memory.lookup(values)
        if table not in self._memory:
            self._count(table, catalog, director)
        return self._ask_czar(table, values)

    def in_memory(self, catalog: str, director: str) -> bool:
        """Whether lookups of this director are answered from a copy in memory."""
        return self._memory.get(dirindex_table(catalog, director)) is not None

    def _count(self, table: str, catalog: str, director: str) -> None:
        """Count a lookup; start the copy into memory at the ``MEMORY_AFTER``-th one."""
        with self._lock:
            seen = self._lookups[table] = self._lookups.get(table, 0) + 1
        size = self.sizes.get((catalog, director.lower()), 0)
        if seen == MEMORY_AFTER and 0 < size <= self.memory_keys:
            thread = threading.Thread(
                target=self._copy, args=(table,), name=f"qserv-dirindex-{table}", daemon=True
            )
            thread.start()

    def _copy(self, table: str) -> None:
        try:
            with connect(self.spec.czar, autocommit=True) as conn:
                self._memory[table] = MemoryIndex.read(conn, table)
        except (psycopg.Error, ValueError) as exc:
            log.warning("director index %s stays on the czar: copying it failed: %s", table, exc)
            self._memory[table] = None

    def _ask_czar(self, table: str, values: list[int]) -> set[int]:
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
        """One kept connection for lookups (a new one costs ~8 ms)."""
        if self._connection is None or self._connection.closed:
            self._connection = connect(self.spec.czar, autocommit=True)
        return self._connection
