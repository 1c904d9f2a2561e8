"""Fixtures for loading tests: a small synthetic release, and fresh dp02-shaped catalogs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.generate import generate_release
from qserv_py.schema import default_catalog_path, parse_catalog


@pytest.fixture(scope="session")
def release(work_dir: Path) -> Path:
    """A small dp02 release: 4,000 objects with their sources and forced sources."""
    out = work_dir / "release"
    generate_release(out, 4_000, sources_per_object=3, forced_per_object=5, seed=11)
    return out


def read_table(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))


@pytest.fixture
def make_catalog(spec: ClusterSpec) -> Iterator[Callable[[str], str]]:
    """Create dp02-shaped catalogs under new names; dropped after the test."""
    made: list[str] = []

    def make(name: str) -> str:
        text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {name}", 1)
        create_catalog(spec, parse_catalog(text, name), text)
        made.append(name)
        return name

    yield make
    for name in made:
        drop_catalog(spec, name)


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
