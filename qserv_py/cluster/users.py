"""Users of a service with ``auth = token``: names, bearer tokens, admins, daily usage.

A user is added by ``qserv-py user add NAME [--admin]``, which prints the user's token
once; the czar keeps only its SHA-256 (``qserv_meta.users``, migration 009). A token is
32 random bytes (``secrets.token_urlsafe``), so a fast hash is enough: nobody can guess
one, and a leaked czar table gives no token back. The service finds the user of a
request by the hash of its ``Authorization: Bearer`` token (:func:`user_of_token`),
remembering answers for ``CACHE_S`` seconds so that a request costs no czar round trip;
a removed user's token stops working within that time.

Usage (bytes of results received per UTC day) is added after each query of a user
(:func:`add_usage`) and read before the next (:func:`usage_today`).

The per-user limits hold across all the service's processes (``http_processes``, or
several services on one czar), because they are counted on the czar: result bytes in
``qserv_meta.user_usage``, async jobs in ``qserv_meta.uws_jobs`` (counted and queued
under a per-user advisory lock, :func:`job_admission`), and queries running now as
*slots*: a running query of a user holds one of ``user_max_queries`` session advisory
locks of that user (:func:`take_query_slot`) on a czar session of its own, which
PostgreSQL releases when the query ends or its process dies.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import psycopg
from psycopg.errors import ForeignKeyViolation

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import ConfigError

#: how long a token's user (or its absence) is remembered, seconds
CACHE_S = 30.0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ConfigError(
            f"user name {name!r} is not allowed: 1 to 64 letters, digits and _ . @ -, "
            "starting with a letter or digit"
        )
    return name


def add_user(spec: ClusterSpec, name: str, *, admin: bool = False) -> str:
    """Add user ``name`` (or give an existing one a new token); its new token."""
    check_name(name)
    token = secrets.token_urlsafe(32)
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute(
            "INSERT INTO qserv_meta.users (name, token_hash, admin) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash,"
            " admin = excluded.admin",
            (name, token_hash(token), admin),
        )
    _forget()
    return token


def remove_user(spec: ClusterSpec, name: str) -> bool:
    """Remove user ``name``; whether there was one. Their jobs and queries stay."""
    with connect(spec.czar, autocommit=True) as czar:
        gone = czar.execute("DELETE FROM qserv_meta.users WHERE name = %s", (name,)).rowcount
    _forget()
    return gone > 0


def list_users(spec: ClusterSpec) -> list[tuple[User, str]]:
    """Every user, with when they were added (ISO time)."""
    with connect(spec.czar, autocommit=True) as czar:
        rows = czar.execute(
            "SELECT name, admin, created_at FROM qserv_meta.users ORDER BY name"
        ).fetchall()
    return [(User(name, admin), created.isoformat()) for name, admin, created in rows]


_cache: dict[bytes, tuple[float, User | None]] = {}
_cache_lock = threading.Lock()


def _forget() -> None:
    with _cache_lock:
        _cache.clear()


def user_of_token(spec: ClusterSpec, token: str) -> User | None:
    """The user whose token this is (None: nobody's)."""
    key = token_hash(token)
    now = time.monotonic()
    with _cache_lock:
        found = _cache.get(key)
    if found is not None and found[0] > now:
        return found[1]
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(
            "SELECT name, admin FROM qserv_meta.users WHERE token_hash = %s", (key,)
        ).fetchone()
    user = User(row[0], bool(row[1])) if row else None
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = (now + CACHE_S, user)
    return user


def add_usage(spec: ClusterSpec, name: str, result_bytes: int) -> None:
    """Count a query of ``name`` that returned ``result_bytes`` today."""
    # (a user removed meanwhile has no usage any more)
    with connect(spec.czar, autocommit=True) as czar, suppress(ForeignKeyViolation):
        czar.execute(
            "INSERT INTO qserv_meta.user_usage (name, day, result_bytes, queries)"
            " VALUES (%s, (now() AT TIME ZONE 'UTC')::date, %s, 1)"
            " ON CONFLICT (name, day) DO UPDATE SET"
            " result_bytes = user_usage.result_bytes + excluded.result_bytes,"
            " queries = user_usage.queries + 1",
            (name, result_bytes),
        )


def usage_today(spec: ClusterSpec, name: str) -> int:
    """Bytes of results ``name`` received today (UTC)."""
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(
            "SELECT result_bytes FROM qserv_meta.user_usage"
            " WHERE name = %s AND day = (now() AT TIME ZONE 'UTC')::date",
            (name,),
        ).fetchone()
    return int(row[0]) if row else 0


def lock_key(*parts: object) -> int:
    """A 64-bit advisory lock key (signed, as PostgreSQL's bigint) for ``parts``."""
    digest = hashlib.sha256(" ".join(["qserv_py", *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class QuerySlot:
    """One of a user's ``user_max_queries`` slots, held by a czar session of its own
    until :meth:`release` (or the end of the process)."""

    def __init__(self, conn: psycopg.Connection | None, slot: int) -> None:
        self._conn, self.slot = conn, slot

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the session's advisory lock goes with it
            self._conn = None


def take_query_slot(spec: ClusterSpec, name: str, limit: int) -> QuerySlot | None:
    """A free query slot of user ``name`` (of ``limit``; 0: no limit), or None when all
    are held (by this or any other process of the service)."""
    if not limit:
        return QuerySlot(None, -1)
    conn = connect(spec.czar, autocommit=True)
    try:
        for slot in range(limit):
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key("query slot", name, slot),)
            ).fetchone()
            if row and row[0]:
                return QuerySlot(conn, slot)
    except BaseException:
        conn.close()
        raise
    conn.close()
    return None


@contextmanager
def job_admission(spec: ClusterSpec, name: str) -> Iterator[int]:
    """Hold user ``name``'s job lock (every process waits for it) while a job of theirs is
    counted and queued: yields the number of their jobs QUEUED or EXECUTING now."""
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute("SELECT pg_advisory_lock(%s)", (lock_key("jobs", name),))
        try:
            row = czar.execute(
                "SELECT count(*) FROM qserv_meta.uws_jobs WHERE owner = %s"
                " AND phase IN ('QUEUED', 'EXECUTING')",
                (name,),
            ).fetchone()
            yield int(row[0]) if row else 0
        finally:
            czar.execute("SELECT pg_advisory_unlock(%s)", (lock_key("jobs", name),))
