"""Helpers for loading tests (fixtures `release`, `make_catalog`: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec


def read_table(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))


def worker_rows(spec: ClusterSpec, sql: str) -> list[tuple]:
    """The rows of ``sql`` from every worker, concatenated."""
    out: list[tuple] = []
    for worker in spec.workers:
        with connect(worker) as conn:
            out.extend(conn.execute(sql).fetchall())
    return out


def worker_count(spec: ClusterSpec, table: str) -> int:
    return sum(r[0] for r in worker_rows(spec, f"SELECT count(*) FROM {table}"))


def as_int(values: list) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)
