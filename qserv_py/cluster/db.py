"""Connections to the cluster's databases, with failures translated into our errors."""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg

from qserv_py.cluster.spec import Instance
from qserv_py.errors import InstanceUnreachable

T = TypeVar("T")
Item = TypeVar("Item")


def connect(
    instance: Instance, *, autocommit: bool = False, timeout: float = 10
) -> psycopg.Connection:
    """A connection to ``instance``; InstanceUnreachable says which one and why."""
    try:
        return psycopg.connect(instance.dsn, autocommit=autocommit, connect_timeout=int(timeout))
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InstanceUnreachable(
            f"cannot connect to {instance.name} ({instance.public_dsn}): {reason}; is it "
            "running (`qserv-py cluster status`) and is the cluster file right?"
        ) from exc


def has_input(conn: psycopg.Connection) -> bool:
    """Whether the server has sent an idle session something (a notification, or the
    end of the connection), without waiting or a round trip."""
    poll = select.poll()
    poll.register(conn.fileno(), select.POLLIN)
    return bool(poll.poll(0))


def on_each(items: Sequence[Item], fn: Callable[[Item], T]) -> list[T]:
    """Run ``fn`` for every item (instance) concurrently; results in the items' order.

    The first exception (in the items' order) is raised after all have finished.
    """
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(len(items), 16)) as pool:
        futures = [pool.submit(fn, i) for i in items]
    return [f.result() for f in futures]
