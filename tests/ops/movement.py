"""Helpers of the data-movement tests (copies, moves, replication, rebalance, drain):
catalogs loaded onto some workers only, what a worker holds, and a stream of queries
checked against the healthy answers while chunks move."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import qserv_py
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.load import LoadOptions, load
from tests.conftest import create_dp02_catalog

PARTITIONED = ("Object", "Source", "ForcedSource")

# exact answers only (no float sums, whose last digits depend on the order of addition)
QUERIES = (
    "SELECT COUNT(*) AS n, SUM(objectId) AS s FROM {c}.Object",
    "SELECT COUNT(*) AS n, SUM(forcedSourceId) AS s FROM {c}.ForcedSource",
    "SELECT objectId FROM {c}.Object"
    " WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(40, 5, 20)) = 1 ORDER BY objectId",
    "SELECT o.objectId, COUNT(*) AS n FROM {c}.Object o JOIN {c}.Source s"
    " ON s.objectId = o.objectId WHERE o.objectId < 3000 GROUP BY o.objectId"
    " ORDER BY o.objectId",
    "SELECT COUNT(*) AS n FROM {c}.Object o1, {c}.Object o2 WHERE"
    " DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.015"
    " AND o1.objectId <> o2.objectId",
)


def load_catalog(
    spec: ClusterSpec,
    name: str,
    release: Path,
    workers: list[str],
    replication: int,
    **layout: int,
) -> None:
    """Catalog ``name`` with its partitioned tables on ``workers`` only, as if the other
    workers had been added since (meanwhile the czar counts them lost, so a publish does
    not wait for them), and its replicated table on all; ``layout`` overrides the chunk
    layout's options (max_rows_per_chunk, min_order, max_order)."""
    create_dp02_catalog(spec, name)
    some = dataclasses.replace(spec, workers=tuple(w for w in spec.workers if w.name in workers))
    options = LoadOptions(
        replication=replication,
        **{"max_rows_per_chunk": 400, "min_order": 1, "max_order": 8, **layout},  # type: ignore[arg-type]
    )
    others = [w.name for w in spec.workers if w.name not in workers]
    with connect(spec.czar, autocommit=True) as czar:
        states = dict(czar.execute("SELECT name, state FROM qserv_meta.workers").fetchall())
    try:
        for worker in others:
            set_state(spec, worker, "lost")
        for table in PARTITIONED:
            load(some, name, table, [release / table], options)
    finally:
        for worker in others:
            set_state(spec, worker, states[worker])
    load(spec, name, "CcdVisit", [release / "CcdVisit"], options)


def answers(client: qserv_py.Client, catalog: str) -> list[list[dict]]:
    return [client.query(q.format(c=catalog)).to_pylist() for q in QUERIES]


def placement(spec: ClusterSpec, catalog: str) -> dict[int, set[str]]:
    with connect(spec.czar, autocommit=True) as czar:
        found: dict[int, set[str]] = {}
        for chunk, worker in czar.execute(
            "SELECT chunk_id, worker FROM qserv_meta.placement WHERE catalog = %s", (catalog,)
        ):
            found.setdefault(int(chunk), set()).add(worker)
        return found


def worker_rows(spec: ClusterSpec, catalog: str) -> dict[str, int]:
    """Rows of the catalog's partitioned tables per worker, counted on the workers."""
    rows = {}
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            row = conn.execute(
                "SELECT " + " + ".join(f"(SELECT count(*) FROM {catalog}.{t})" for t in PARTITIONED)
            ).fetchone()
            rows[worker.name] = int(row[0]) if row else 0
    return rows


def partitions(spec: ClusterSpec, worker: str, catalog: str) -> set[str]:
    """The chunk partitions ``worker`` holds of ``catalog`` (attached or not)."""
    with connect(spec.worker(worker), autocommit=True) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname ~ '_[0-9]+$'",
                (catalog,),
            )
        }


def set_state(spec: ClusterSpec, worker: str, state: str) -> None:
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute(
            "UPDATE qserv_meta.workers SET state = %s, state_since = now() WHERE name = %s",
            (state, worker),
        )


class QueryStream(threading.Thread):
    """Runs the test queries over and over in its own client until stopped, recording
    every error and every answer that differs from ``healthy``."""

    def __init__(self, spec: ClusterSpec, catalog: str, healthy: list[list[dict]]) -> None:
        super().__init__(daemon=True)
        self.spec, self.catalog, self.healthy = spec, catalog, healthy
        self.stopping = threading.Event()
        self.runs = 0
        self.errors: list[str] = []
        self.wrong: list[str] = []

    def run(self) -> None:
        client = qserv_py.connect(self.spec, default_catalog=self.catalog)
        while not self.stopping.is_set():
            for query, healthy in zip(QUERIES, self.healthy, strict=True):
                text = query.format(c=self.catalog)
                try:
                    got = client.query(text).to_pylist()
                except Exception as exc:  # every failure is a finding
                    self.errors.append(f"{text}: {exc!r}")
                    continue
                finally:
                    self.runs += 1
                if got != healthy:
                    self.wrong.append(f"{text}: {len(got)} rows, not {len(healthy)}")

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=120)
        assert not self.is_alive(), "the query stream did not stop"
