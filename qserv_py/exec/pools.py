"""Connection pools of this process: one per worker (read-only role), one for the czar.

Pools (psycopg_pool) are cached per process: each keeps one idle session and at most
``WORKER_POOL_SIZE`` / ``CZAR_POOL_SIZE``, so they also bound how many statements a
process runs on an instance at once (more wait up to ``POOL_TIMEOUT_S``). Worker
sessions connect with the health view's short timeout and TCP keepalives
(:func:`qserv_py.ops.health.connect_options`); a wait for a session ends as soon as the
pool's own attempt to connect fails (a dead worker costs one connect timeout, never
``POOL_TIMEOUT_S``), and :func:`discard` drops a failed worker's pool (a new one is made
when the worker is used again). A lookup
(:func:`worker_pool`, :func:`czar_pool`) for a cluster spec seen before is one dict
access: no DSN is parsed on the query path. Pools close at exit, or with
:func:`close_pools`, after the hooks registered with :func:`before_close` (the query
tracker writes what it still holds).
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from qserv_py.cluster.db import has_input
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import InstanceUnreachable
from qserv_py.exec import watchdog
from qserv_py.ops.health import health

WORKER_POOL_SIZE = 16
CZAR_POOL_SIZE = 48
POOL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10
SETUP_TIMEOUT_S = 60.0  # the most a new session's setup statement may take
_LOOKUPS = 256  # cached (spec, instance) lookups at most; more clear the cache

_pools: dict[tuple[int, str, str], ConnectionPool] = {}
#: (pid, id(spec), role, worker name) -> (spec, pool): the spec is kept, so its id stays
_lookups: dict[tuple[int, int, str, str], tuple[ClusterSpec, ConnectionPool]] = {}
_pools_lock = threading.Lock()
_closing: list[Callable[[], None]] = []
#: conninfo -> (monotonic time, reason) of the last failed attempt of a pool to connect
_failures: dict[str, tuple[float, str]] = {}
WAIT_SLICE_S = 0.2  # a wait for a session looks at its pool's connect failures this often


class _Connection(psycopg.Connection):
    """A pooled session that records its pool's failed attempts to connect."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> _Connection:  # type: ignore[override]
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            text = str(exc).strip()
            _failures[conninfo] = (time.monotonic(), text.splitlines()[-1] if text else "")
            raise
        _failures.pop(conninfo, None)
        return conn


def _starting_with(first: psycopg.Connection) -> type[_Connection]:
    """A pool's connection class whose first ``connect`` returns ``first`` (the session
    :func:`_pool` made and set up to see that the instance answers): a new pool costs one
    connection and one setup, not two (a tenth of a second or more of a short process
    such as ``qserv-py query``)."""
    handed = [first]

    class _First(_Connection):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> _Connection:  # type: ignore[override]
            try:
                conn = handed.pop()  # atomic: the pool's threads may call this at once
            except IndexError:
                conn = None
            if conn is not None and not conn.closed:
                return conn  # type: ignore[return-value]
            return super().connect(conninfo, **kwargs)

    return _First


def _check(conn: psycopg.Connection) -> None:
    """Check a pooled session by a round trip only if the server has sent something (an
    idle session gets data only when the server hangs up); the pool replaces it if dead."""
    if has_input(conn):
        ConnectionPool.check_connection(conn)


def _pool(
    instance: Instance,
    setup: str,
    size: int,
    options: dict[str, Any] | None = None,
    setup_timeout_s: float = SETUP_TIMEOUT_S,
    answers: Callable[[], bool] | None = None,
) -> ConnectionPool:
    """The cached pool of ``instance``, running ``setup`` on each new session (its session
    cut if that takes longer than ``setup_timeout_s``: a hung host; with ``answers``, only
    if the instance then no longer answers a new session, else it is given the time
    again); ``options`` are libpq options of its sessions (default: a connect timeout of
    ``CONNECT_TIMEOUT_S``)."""
    key = (os.getpid(), instance.dsn, setup)  # a forked child makes its own
    with _pools_lock:
        pool = _pools.get(key)
    if pool is not None:
        return pool
    options = options or {"connect_timeout": CONNECT_TIMEOUT_S}
    timeout = int(options["connect_timeout"])

    def configure(conn: psycopg.Connection) -> None:
        try:
            if answers is None:
                with watchdog.guard(conn, setup_timeout_s):
                    conn.execute(setup)
            else:
                with watchdog.patient_guard(conn, setup_timeout_s, answers):
                    conn.execute(setup)
        except psycopg.Error as exc:  # a wait for a session (borrow) ends on it
            text = str(exc).strip()
            _failures[instance.dsn] = (time.monotonic(), text.splitlines()[-1] if text else "")
            raise

    kwargs = dict(autocommit=True, application_name="qserv_py", **options)
    first: psycopg.Connection | None = None
    try:  # one session first: fails fast, and says why; then it is the pool's first
        first = _Connection.connect(instance.dsn, **kwargs)
        configure(first)
    except psycopg.OperationalError as exc:
        if first is not None:
            first.close()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InstanceUnreachable(
            f"cannot connect to {instance.name} ({instance.public_dsn}): {reason}"
        ) from exc
    except psycopg.Error as exc:
        if first is not None:
            first.close()
        raise InstanceUnreachable(f"{instance.name}: cannot set up a session: {exc}") from exc
    handed = [first]

    def configure_new(conn: psycopg.Connection) -> None:
        if handed and conn is handed[0]:  # set up above
            handed.clear()
            return
        configure(conn)

    pool = ConnectionPool(
        instance.dsn,
        kwargs=kwargs,
        min_size=1,
        max_size=size,
        configure=configure_new,
        check=_check,
        name=f"qserv_py:{instance.name}",
        timeout=POOL_TIMEOUT_S,
        open=False,
        connection_class=_starting_with(first),
    )
    try:
        pool.open(wait=True, timeout=timeout)
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


_warm = [True]  # whether new worker sessions warm their relation cache (see set_warm)


def set_warm(enabled: bool) -> bool:
    """Whether this process's new worker sessions warm their relation cache (``_WARM``,
    the default); the setting it replaces. A process that runs one query and exits
    (``qserv-py query``) turns it off: that query opens the few partitions it reads,
    while the warm-up of every partition took 55-100 ms on a busy worker, before the
    query could start."""
    before, _warm[0] = _warm[0], enabled
    return before


def worker_pool(spec: ClusterSpec, name: str) -> ConnectionPool:
    """Sessions on worker ``name`` as the read-only role, their relation cache warm (see
    ``WARM_PARTITIONS_MAX``)."""

    def make() -> ConnectionPool:
        worker, setup = _reader(spec, name)
        view = health(spec)
        deadline = view.settings.batch_deadline_s
        answers = functools.partial(view.answers, name)  # slow setup (a loaded host) != hung
        return _pool(worker, setup, WORKER_POOL_SIZE, view.options, deadline, answers)

    return _cached(spec, "reader", name, make)


def _reader(spec: ClusterSpec, name: str, warm: bool | None = None) -> tuple[Instance, str]:
    """Worker ``name`` reached as the read-only role, and the setup of its sessions (with
    the warm-up if ``warm``, by default as :func:`set_warm` says)."""
    worker = spec.worker(name)
    warm = _warm[0] if warm is None else warm
    setup = "SET default_transaction_read_only = on" + (f"; {_WARM}" if warm else "")
    if spec.reader_password is not None:
        return worker.with_user(spec.reader_user, spec.reader_password), setup
    role = sql.Identifier(spec.reader_user).as_string()
    return worker, f"SET ROLE {role}; {setup}"


def discard(spec: ClusterSpec, name: str) -> None:
    """Forget worker ``name``'s read-only pool (it failed): its sessions are closed as
    they come back, and its attempts to reconnect stop; the next use makes a new pool."""
    found = []
    with _pools_lock:
        for warm in (True, False):  # made before or after a set_warm
            worker, setup = _reader(spec, name, warm)
            pool = _pools.pop((os.getpid(), worker.dsn, setup), None)
            if pool is not None:
                found.append(pool)
        for key in [k for k, (_, p) in _lookups.items() if any(p is f for f in found)]:
            del _lookups[key]
    for pool in found:  # closing waits for the pool's threads: not on the caller's time
        threading.Thread(target=pool.close, name="qserv-pool-close", daemon=True).start()


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
    started = time.monotonic()
    deadline = started + wait
    while True:
        try:
            conn = pool.getconn(max(min(WAIT_SLICE_S, deadline - time.monotonic()), 0.001))
            break
        except PoolClosed as exc:  # discarded meanwhile: its instance failed (see discard)
            raise InstanceUnreachable(
                f"{pool.name.removeprefix('qserv_py:')} failed while a session was awaited"
            ) from exc
        except PoolTimeout as exc:
            name = pool.name.removeprefix("qserv_py:")
            failed = _failures.get(str(pool.conninfo))
            if failed is not None and failed[0] >= started:
                raise InstanceUnreachable(f"cannot connect to {name}: {failed[1]}") from exc
            if time.monotonic() >= deadline:
                raise InstanceUnreachable(
                    f"no session on {name} within {wait:.3g} s: it is unreachable, or all "
                    f"{pool.max_size} sessions of this process are busy"
                ) from exc
    try:
        yield conn
    finally:
        pool.putconn(conn)
