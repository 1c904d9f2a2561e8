"""Load transactions as the czar records them.

A load moves through ``staging`` → ``staged`` → ``publishing`` → ``published``; it can be
``aborted`` at any point before it is published, and is ``failed`` when its input
turned out to be wrong while staging (it must then be aborted). While a process works
on a load, it holds a session advisory lock on the load's id on the czar, so that two
processes never work on one load.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.twophase import recover_in_doubt
from qserv_py.errors import LoadBusy, LoadError, UnknownLoad
from qserv_py.loaders.inputs import InputFile
from qserv_py.loaders.staging import lost_staging
from qserv_py.schema.model import Table

_LOCK_BASE = 0x4C4F_4144 << 20  # advisory lock keys of loads ("LOAD")


@dataclass(frozen=True)
class LoadFile:
    file_no: int
    path: str
    size: int
    rows: int
    done: bool


@dataclass(frozen=True)
class LoadTxn:
    id: int
    catalog: str
    table: str
    state: str
    rows: int
    overlap_rows: int
    options: dict[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    files: tuple[LoadFile, ...] = field(default=())


def create_txn(
    czar: psycopg.Connection,
    catalog: str,
    table: str,
    inputs: list[InputFile],
    options: dict[str, Any],
) -> int:
    with czar.transaction():
        row = czar.execute(
            "INSERT INTO qserv_meta.load_txns (catalog, table_name, state, files, options)"
            " VALUES (%s, %s, 'staging', %s, %s) RETURNING id",
            (catalog, table, [str(f.path) for f in inputs], json.dumps(options)),
        ).fetchone()
        assert row is not None
        txn = int(row[0])
        with czar.cursor() as cur:
            cur.executemany(
                "INSERT INTO qserv_meta.load_files (txn, file_no, path, size, rows)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(txn, i, str(f.path), f.size, f.rows) for i, f in enumerate(inputs)],
            )
    return txn


def get_txn(czar: psycopg.Connection, txn: int) -> LoadTxn:
    row = czar.execute(
        "SELECT id, catalog, table_name, state, rows, overlap_rows, options, error,"
        " created_at, updated_at FROM qserv_meta.load_txns WHERE id = %s",
        (txn,),
    ).fetchone()
    if row is None:
        raise UnknownLoad(f"no load {txn}; `qserv-py txn list` shows the loads")
    files = tuple(
        LoadFile(*r)
        for r in czar.execute(
            "SELECT file_no, path, size, rows, done FROM qserv_meta.load_files"
            " WHERE txn = %s ORDER BY file_no",
            (txn,),
        )
    )
    id_, catalog, table, state, rows, overlap_rows, options, error, created, updated = row
    return LoadTxn(
        id_, catalog, table, state, rows, overlap_rows, options, error, created, updated, files
    )


def list_txns(spec: ClusterSpec, catalog: str | None = None) -> list[LoadTxn]:
    with connect(spec.czar, autocommit=True) as czar:
        ids = [
            r[0]
            for r in czar.execute(
                "SELECT id FROM qserv_meta.load_txns WHERE %s::text IS NULL OR catalog = lower(%s)"
                " ORDER BY id",
                (catalog, catalog),
            )
        ]
        return [get_txn(czar, i) for i in ids]


def set_state(czar: psycopg.Connection, txn: int, state: str, *, error: str | None = None) -> None:
    czar.execute(
        "UPDATE qserv_meta.load_txns SET state = %s, error = %s, updated_at = now(),"
        " finished_at = CASE WHEN %s IN ('published', 'aborted') THEN now() END"
        " WHERE id = %s",
        (state, error, state, txn),
    )


@contextmanager
def locked(czar: psycopg.Connection, txn: int) -> Iterator[None]:
    """Hold the load's lock for the duration (``czar`` must be in autocommit mode)."""
    row = czar.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_BASE + txn,)).fetchone()
    if not (row and row[0]):
        raise LoadBusy(f"load {txn} is being worked on by another process; wait for it")
    try:
        yield
    finally:
        czar.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_BASE + txn,))


def require_state(load: LoadTxn, *states: str, done: str) -> None:
    """Refuse unless the load is in one of ``states``; ``done`` is the action's past
    participle ("published") for the message."""
    if load.state not in states:
        raise LoadError(
            f"load {load.id} ({load.catalog}.{load.table}) is {load.state}; it cannot be "
            f"{done}" + (" — abort it instead" if load.state == "failed" else "")
        )


def restage_lost(
    spec: ClusterSpec, czar: psycopg.Connection, table: Table, record: LoadTxn
) -> bool:
    """If a server lost staged rows (it restarted), mark every file of the load to be
    staged again; whether it did. A load being published is first settled: one whose
    publish was decided is left to finish."""
    if record.state == "publishing":
        recover_in_doubt(spec)
        if get_txn(czar, record.id).state != "publishing":
            return False
    if not lost_staging(spec, czar, table, record.id):
        return False
    with czar.transaction():
        czar.execute("DELETE FROM qserv_meta.load_chunks WHERE txn = %s", (record.id,))
        czar.execute("UPDATE qserv_meta.load_files SET done = false WHERE txn = %s", (record.id,))
        czar.execute(
            "UPDATE qserv_meta.load_txns SET rows = 0, overlap_rows = 0 WHERE id = %s",
            (record.id,),
        )
        set_state(czar, record.id, "staging")
    return True
