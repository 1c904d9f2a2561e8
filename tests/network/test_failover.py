"""Queries survive the loss of a worker: real faults on the namespaced cluster.

Catalog ``net`` has every chunk on two of the three workers. For each fault — a SIGKILLed
postmaster, a cut link, a hung host (SIGSTOP of every process), a slow link (a delaying
proxy) — a scan is hit while it runs (the fault is injected after its first batch), then
every query shape runs with the fault in place: each answer must equal the healthy
cluster's, none duplicated, none missing. With replication 1 (catalog ``net1``) a lost
worker fails the query with the chunks named, ``partial`` answers from the others, and
the worker is used again once it is back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from qserv_py.client import Client
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import ChunksUnavailable
from qserv_py.exec import pools
from qserv_py.exec.pools import close_pools
from qserv_py.exec.uploads import execute as run_plan
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.ops.health import WorkerState, health
from tests.conftest import create_dp02_catalog
from tests.netns import DelayProxy, Faults
from tests.netns.proxy import spec_through, target_of
from tests.query.test_corpus import compare

#: short enough that a hung host costs a test seconds, long enough for a healthy batch
SETTINGS = {"batch_deadline_s": 8.0, "health_probe_interval_s": 1.0}
VICTIM = "worker2"


@pytest.fixture(scope="module")
def fo_spec(net_spec: ClusterSpec, net_catalog: str) -> Iterator[ClusterSpec]:
    spec = dataclasses.replace(net_spec, settings={**net_spec.settings, **SETTINGS})
    yield spec
    close_pools()


@pytest.fixture(scope="module")
def fo_client(fo_spec: ClusterSpec) -> Client:
    return Client(fo_spec, "net")


@pytest.fixture(scope="module")
def objects(fo_client: Client) -> pa.Table:
    return fo_client.query("SELECT objectId, coord_ra, coord_dec FROM Object ORDER BY objectId")


Shape = tuple[str, dict[str, pa.Table] | None]


@pytest.fixture(scope="module")
def shapes(objects: pa.Table) -> dict[str, Shape]:
    """Every query shape, written for the catalog's data."""
    ids = objects.column("objectId").to_numpy()
    ra = objects.column("coord_ra").to_numpy()
    dec = objects.column("coord_dec").to_numpy()
    pick = np.linspace(0, len(ids) - 1, 40).astype(int)
    centre = int(pick[7])
    rng = np.random.default_rng(3)
    chosen = rng.choice(len(ids), 300, replace=False)
    targets = pa.table(
        {
            "id": np.arange(300, dtype=np.int64),
            "ra": (ra[chosen] + rng.normal(0, 1 / 3600, 300)) % 360,
            "dec": np.clip(dec[chosen] + rng.normal(0, 1 / 3600, 300), -90, 90),
        }
    )
    some = ", ".join(str(int(i)) for i in ids[pick])
    few = ", ".join(str(int(i)) for i in ids[pick[::8]])
    return {
        "cone": (
            "SELECT objectId, coord_ra, coord_dec FROM Object WHERE CONTAINS(POINT("
            f"coord_ra, coord_dec), CIRCLE({ra[centre]}, {dec[centre]}, 20)) = 1",
            None,
        ),
        "lookup": (
            f"SELECT objectId, coord_ra, refBand FROM Object WHERE objectId IN ({some})",
            None,
        ),
        "light curve": (
            "SELECT f.objectId, f.forcedSourceId, f.psfFlux FROM Object AS o JOIN ForcedSource"
            f" AS f ON o.objectId = f.objectId WHERE o.objectId IN ({few})",
            None,
        ),
        "scan": (
            "SELECT refBand, COUNT(*) AS n, AVG(r_psfFlux) AS mean_r, SUM(coord_dec) AS s"
            " FROM Object GROUP BY refBand",
            None,
        ),
        "neighbours": (
            "SELECT COUNT(*) FROM Object o1, Object o2 WHERE DISTANCE(POINT(o1.coord_ra,"
            " o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.015"
            " AND o1.objectId <> o2.objectId",
            None,
        ),
        "cross-match": (
            "SELECT t.id, o.objectId FROM TAP_UPLOAD.t AS t JOIN Object AS o ON "
            "CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 5 / 3600.0)) = 1",
            {"t": targets},
        ),
        "replicated": ("SELECT COUNT(*), MIN(ccdVisitId) FROM CcdVisit", None),
    }


def rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


@pytest.fixture(scope="module")
def healthy(fo_client: Client, shapes: dict[str, Shape]) -> dict[str, list[tuple]]:
    """Each shape's answer on the healthy cluster."""
    return {name: rows(fo_client.query(text, uploads=up)) for name, (text, up) in shapes.items()}


def run_all(client: Client, shapes: dict[str, Shape], healthy: dict[str, list[tuple]]) -> None:
    for name, (text, up) in shapes.items():
        got = rows(client.query(text, uploads=up))
        assert got, name
        compare(got, healthy[name], ordered=False)


def hit_midway(
    client: Client, shape: Shape, want: list[tuple], inject: Callable[[], object]
) -> bool:
    """Run ``shape`` in batches of one chunk, the fault injected once the first batch is
    in; False (nothing run) if the victim holds too few of its chunks for that."""
    text, up = shape
    planned = client.plan(text, uploads=up, oracle=False)
    if len(planned.chunks.get(VICTIM, ())) < 3:
        return False
    done: list[bool] = []

    def progress(chunks: int, total: int) -> None:
        if not done:
            done.append(True)
            inject()

    result = run_plan(
        client.spec, planned, uploads=up, batch_chunks=1, per_worker=1, on_progress=progress
    )
    assert done and not result.missing_chunks
    compare(rows(result.table), want, ordered=False)
    return True


@pytest.mark.parametrize("fault", ["kill", "cut", "hang"])
def test_queries_survive_a_lost_worker(
    fault: str,
    faults: Faults,
    fo_client: Client,
    shapes: dict[str, Shape],
    healthy: dict[str, list[tuple]],
) -> None:
    inject = {"kill": faults.kill, "cut": faults.cut, "hang": faults.hang}[fault]
    view = health(fo_client.spec)
    hit = []
    for name, shape in shapes.items():  # the fault strikes while each shape runs
        if hit_midway(fo_client, shape, healthy[name], lambda: inject(VICTIM)):
            hit.append(name)
            faults.heal()
            assert view.check([VICTIM]) == {VICTIM: WorkerState.UP}
    assert {"cone", "scan", "neighbours", "cross-match"} <= set(hit)
    inject(VICTIM)
    run_all(fo_client, shapes, healthy)  # the fault in place: the others answer for it
    assert view.state(VICTIM) in (WorkerState.SUSPECT, WorkerState.DOWN)
    faults.heal()
    assert view.check([VICTIM]) == {VICTIM: WorkerState.UP}
    run_all(fo_client, shapes, healthy)  # back in use, no failed query


def test_queries_across_a_slow_link(
    fo_spec: ClusterSpec, shapes: dict[str, Shape], healthy: dict[str, list[tuple]]
) -> None:
    with DelayProxy(target_of(fo_spec.worker(VICTIM)), delay=0.03) as proxy:
        slow = dataclasses.replace(spec_through(fo_spec, VICTIM, proxy), settings=fo_spec.settings)
        try:
            run_all(Client(slow, "net"), shapes, healthy)
            assert proxy.connections > 0
        finally:
            pools.discard(slow, VICTIM)


# --- replication 1: no replica to fail over to ------------------------------------------------


@pytest.fixture(scope="module")
def single(fo_spec: ClusterSpec, release: Path) -> Iterator[Client]:
    """Catalog ``net1``: the release with one copy of each chunk."""
    create_dp02_catalog(fo_spec, "net1")
    options = LoadOptions(replication=1, max_rows_per_chunk=400, min_order=2, max_order=8)
    load(fo_spec, "net1", "Object", [release / "Object"], options)
    yield Client(fo_spec, "net1")
    drop_catalog(fo_spec, "net1")


def test_lost_chunks_are_named_or_left_out(faults: Faults, single: Client) -> None:
    text = "SELECT objectId, coord_ra FROM Object"
    full = rows(single.query(text))
    victims = set(single.plan(text, oracle=False).chunks.get(VICTIM, ()))
    assert victims
    faults.kill(VICTIM)
    with pytest.raises(ChunksUnavailable) as err:
        single.query(text)
    assert VICTIM in str(err.value) and set(err.value.chunks) == victims
    assert "partial" in str(err.value)
    part = single.query(text, partial=True)
    meta = part.schema.metadata
    assert meta[b"incomplete"] == b"true"
    assert {int(c) for c in meta[b"missing_chunks"].split(b",")} == victims
    got = rows(part)
    assert 0 < len(got) < len(full) and set(got) < set(full)
    faults.heal()
    again = single.query(text, partial=True)  # the worker is used again at once
    assert again.schema.metadata[b"incomplete"] == b"false"
    compare(rows(again), full, ordered=False)


# --- TAP: async jobs and sync queries with a worker gone ---------------------------------------


def test_tap_jobs_survive_a_lost_worker(
    faults: Faults,
    fo_spec: ClusterSpec,
    settings: Settings,
    work_dir: Path,
    shapes: dict[str, Shape],
    healthy: dict[str, list[tuple]],
) -> None:
    import io
    import xml.etree.ElementTree as ET

    from astropy.io.votable import parse_single_table
    from fastapi.testclient import TestClient

    from qserv_py.api.app import create_app

    service = settings.model_copy(
        update={"default_catalog": "net", "results_dir": work_dir / "net-results"}
    )
    text = shapes["scan"][0]
    with TestClient(create_app(service, fo_spec)) as api:
        faults.kill(VICTIM)
        created = api.post(
            "/tap/async",
            data={"QUERY": text, "LANG": "ADQL", "PHASE": "RUN"},
            follow_redirects=False,
        )
        assert created.status_code == 303, created.text
        job = created.headers["location"].rsplit("/", 1)[1]
        phase = ""
        for _ in range(600):  # each a long poll (WAIT) of up to 10 s: not a time margin
            doc = ET.fromstring(api.get(f"/tap/async/{job}", params={"WAIT": "10"}).content)
            phase = doc.findtext("{http://www.ivoa.net/xml/UWS/v1.0}phase") or ""
            if phase in ("COMPLETED", "ERROR", "ABORTED"):
                break
        assert phase == "COMPLETED", api.get(f"/tap/async/{job}/error").text
        result = api.get(f"/tap/async/{job}/results/result")
        table = parse_single_table(io.BytesIO(result.content)).to_table()
        got = [tuple(row) for row in table.as_array().tolist()]
        compare(got, healthy["scan"], ordered=False)
        sync = api.post("/tap/sync", data={"QUERY": text, "LANG": "ADQL"})
        assert sync.status_code == 200, sync.text
        assert b'name="QUERY_INCOMPLETE"' not in sync.content
