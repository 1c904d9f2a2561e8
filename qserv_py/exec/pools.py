"""Connection pools of this process: one per worker (read-only role), one for the czar.

Pools (psycopg_pool) are cached per process: each keeps one idle session and at most
``WORKER_POOL_SIZE`` / ``CZAR_POOL_SIZE``, so they also bound how many statements a
process runs on an instance at once (more wait up to ``POOL_TIMEOUT_S``). A lookup
(:func:`worker_pool`, :func:`czar_pool`) for a cluster spec seen before is one dict
access: no DSN is parsed on the query path. Pools close at exit, or with
:func:`close_pools`, after the hooks registered with :func:`before_close` (the query
tracker writes what it still holds).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from qserv_py.cluster.db import connect, has_input
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import InstanceUnreachable

WORKER_POOL_SIZE = 16
CZAR_POOL_SIZE = 48
POOL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10
_LOOKUPS = 256  # cached (spec, instance) lookups at most; more clear the cache

_pools: dict[tuple[int, str, str], ConnectionPool] = {}
#: (pid, id(spec), role, worker name) -> (spec, pool): the spec is kept, so its id stays
_lookups: dict[tuple[int, int, str, str], tuple[ClusterSpec, ConnectionPool]] = {}
_pools_lock = threading.Lock()
_closing: list[Callable[[], None]] = []


def _check(conn: psycopg.Connection) -> None:
    """Check a pooled session by a round trip only if the server has sent something (an
    idle session gets data only when the server hangs up); the pool replaces it if dead."""
    if has_input(conn):
        ConnectionPool.check_connection(conn)


def _pool(instance: Instance, setup: str, size: int) -> ConnectionPool:
    """The cached pool of ``instance``, running ``setup`` on each new session."""
    key = (os.getpid(), instance.dsn, setup)  # a forked child makes its own
    with _pools_lock:
        pool = _pools.get(key)
    if pool is not None:
        return pool

    def configure(conn: psycopg.Connection) -> None:
        conn.execute(setup)

    try:  # one session first: fails fast, and says why
        with connect(instance, autocommit=True, timeout=CONNECT_TIMEOUT_S) as conn:
            configure(conn)
    except psycopg.Error as exc:
        raise InstanceUnreachable(f"{instance.name}: cannot set up a session: {exc}") from exc
    pool = ConnectionPool(
        instance.dsn,
        kwargs=dict(
            autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="qserv_py"
        ),
        min_size=1,
        max_size=size,
        configure=configure,
        check=_check,
        name=f"qserv_py:{instance.name}",
        timeout=POOL_TIMEOUT_S,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except PoolTimeout as exc:
        pool.close()
        raise InstanceUnreachable(f"cannot open sessions on {instance.name}") from exc
    with _pools_lock:
        existing = _pools.setdefault(key, pool)
    if existing is not pool:  # another thread was quicker
        pool.close()
    return existing


def _cached(
    spec: ClusterSpec, role: str, name: str, make: Callable[[], ConnectionPool]
) -> ConnectionPool:
    key = (os.getpid(), id(spec), role, name)
    found = _lookups.get(key)
    if found is not None and found[0] is spec:
        return found[1]
    pool = make()
    with _pools_lock:
        if len(_lookups) >= _LOOKUPS:
            _lookups.clear()
        _lookups[key] = (spec, pool)
    return pool


#: a new worker session plans a statement over each partitioned table it may read, if the
#: worker has at most this many partitions: PostgreSQL then opens every partition and its
#: indexes once, at connection time, instead of in the first query that reads each chunk
#: (~0.4 ms a partition: a cone on a chunk the session has not read took 1.04 ms, 0.65 ms
#: later). Its relation cache holds what long-lived sessions would hold anyway.
WARM_PARTITIONS_MAX = 5000
_WARM = f"""DO $$
DECLARE
    t regclass;
BEGIN
    IF (SELECT count(*) FROM pg_inherits) <= {WARM_PARTITIONS_MAX} THEN
        FOR t IN SELECT partrelid::regclass FROM pg_partitioned_table
                 WHERE has_table_privilege(partrelid, 'SELECT') LOOP
            EXECUTE format('EXPLAIN SELECT * FROM %s', t);
        END LOOP;
    END IF;
END $$"""


def worker_pool(spec: ClusterSpec, name: str) -> ConnectionPool:
    """Sessions on worker ``name`` as the read-only role, their relation cache warm (see
    ``WARM_PARTITIONS_MAX``)."""

    def make() -> ConnectionPool:
        worker = spec.worker(name)
        if spec.reader_password is not None:
            reader = worker.with_user(spec.reader_user, spec.reader_password)
            setup = f"SET default_transaction_read_only = on; {_WARM}"
            return _pool(reader, setup, WORKER_POOL_SIZE)
        role = sql.Identifier(spec.reader_user).as_string()
        setup = f"SET ROLE {role}; SET default_transaction_read_only = on; {_WARM}"
        return _pool(worker, setup, WORKER_POOL_SIZE)

    return _cached(spec, "reader", name, make)


def czar_pool(spec: ClusterSpec) -> ConnectionPool:
    """Sessions on the czar as the admin user. Their commits do not wait for the WAL flush:
    query records and merge tables need no durability."""
    return _cached(spec, "admin", "", lambda: admin_pool(spec.czar, CZAR_POOL_SIZE))


def admin_pool(instance: Instance, size: int = 8) -> ConnectionPool:
    """Sessions on ``instance`` as the admin user (shipping uploads to the workers); no
    durability wait, as for the czar's sessions."""
    return _pool(instance, "SET synchronous_commit = off", size)


def before_close(hook: Callable[[], None]) -> None:
    """Run ``hook`` first whenever this process's pools close (it may still use them)."""
    _closing.append(hook)


def close_pools() -> None:
    """Close every cached pool of this process (after the :func:`before_close` hooks)."""
    for hook in _closing:
        hook()
    with _pools_lock:
        pools = [p for k, p in _pools.items() if k[0] == os.getpid()]
        _pools.clear()
        _lookups.clear()
    for pool in pools:
        pool.close()


atexit.register(close_pools)


@contextmanager
def borrow(pool: ConnectionPool, wait: float = POOL_TIMEOUT_S) -> Iterator[psycopg.Connection]:
    """A session of ``pool`` for the block; InstanceUnreachable if none comes in ``wait`` s."""
    try:
        conn = pool.getconn(wait)
    except PoolTimeout as exc:
        raise InstanceUnreachable(
            f"no session on {pool.name.removeprefix('qserv_py:')} within {wait:.3g} s: it "
            f"is unreachable, or all {pool.max_size} sessions of this process are busy"
        ) from exc
    try:
        yield conn
    finally:
        pool.putconn(conn)
