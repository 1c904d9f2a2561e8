"""The planner's output for the key query shapes, on catalog ``qt`` (and ``qt2``, where
every chunk is on two workers): chunk sets, chunk predicates, joins and overlap."""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest

from qserv_py.client import Client
from qserv_py.exec.dispatch import worker_sql
from qserv_py.query.planner import plan
from qserv_py.sky import healpix
from qserv_py.sky.regions import Cone


def _chunks(client: Client, text: str, lang: str = "adql") -> set[int]:
    return {c for cs in client.plan(text, lang).chunks.values() for c in cs}


def _all_chunks(client: Client) -> set[int]:
    return set(client.context.states["qt"].chunks_with_rows["object"])


def test_every_partitioned_table_reads_its_chunk_partition(client: Client) -> None:
    text = (
        "SELECT COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId "
        "JOIN ForcedSource f ON f.objectId = s.objectId"
    )
    explain = client.explain(text)
    for table, alias in (("object", "o"), ("source", "s"), ("forcedsource", "f")):
        assert f"qt.qserv_part__{table} AS {alias}" in explain.worker_sql
    assert "ANY(" not in explain.worker_sql
    assert "o.chunk_id = s.chunk_id" in explain.worker_sql
    assert "f.chunk_id = s.chunk_id" in explain.worker_sql
    assert "SUM(p0)" in explain.merge_sql
    assert explain.chunks == len(_all_chunks(client))


def test_director_child_join_has_chunk_equality(client: Client) -> None:
    worker = client.explain(
        "SELECT o.objectId, f.psfFlux FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId"
    ).worker_sql
    assert "o.chunk_id = f.chunk_id" in worker
    assert worker.count("qserv_part__") == 2


def test_child_child_join_has_chunk_equality(client: Client) -> None:
    worker = client.explain(
        "SELECT COUNT(*) FROM Source s JOIN ForcedSource f ON s.objectId = f.objectId"
    ).worker_sql
    assert "s.chunk_id = f.chunk_id" in worker


def test_left_join_keeps_chunk_predicates_out_of_where(client: Client) -> None:
    worker = client.explain(
        "SELECT o.objectId, s.sourceId FROM Object o LEFT JOIN Source s ON o.objectId = s.objectId"
    ).worker_sql
    assert "LEFT JOIN qt.qserv_part__source AS s" in worker
    assert "ON o.objectid = s.objectid AND o.chunk_id = s.chunk_id" in worker
    assert " WHERE " not in worker


def test_statements_per_chunk_name_partitions_or_empty_relations(client: Client) -> None:
    planned = client.plan(
        "SELECT o.objectId, s.sourceId FROM Object o LEFT JOIN Source s ON o.objectId = s.objectId"
    )
    with_sources = sorted(planned.partitions["qt.source"])
    without = sorted(planned.partitions["qt.object"] - planned.partitions["qt.source"])
    assert with_sources and without, "the release has chunks with objects but no sources"
    one = worker_sql(planned, (with_sources[0],))
    assert (
        f"FROM qt.object_{with_sources[0]} AS o LEFT JOIN qt.source_{with_sources[0]} AS s" in one
    )
    empty = worker_sql(planned, (without[0],))
    assert "LEFT JOIN ONLY qt.source AS s" in empty
    both = worker_sql(planned, (with_sources[0], without[0]))
    assert both == f"({one}) UNION ALL ({empty})"
    assert "qserv_part__" not in worker_sql(planned, ())


def test_near_neighbour_reads_the_overlap(client: Client) -> None:
    planned = client.plan(
        "SELECT o1.objectId, o2.objectId FROM Object o1, Object o2 "
        "WHERE DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) "
        "< 0.005 AND o1.objectId <> o2.objectId"
    )
    # o2: the chunk's rows and its overlap, each with the key of its cell
    o2 = planned.worker_sql.split(" AS o1")[1].split(" AS o2")[0]
    assert (
        "FROM (SELECT * FROM qt.qserv_part__object UNION ALL "
        "SELECT * FROM qt.qserv_part__object_overlap) AS t"
    ) in o2
    assert "AS qserv_cell2" in o2
    # o1: the chunk's rows with the cells they reach, joined to o2's cell
    assert "FROM qt.qserv_part__object AS t" in planned.worker_sql.split(" AS o1")[0]
    assert "o1.qserv_cell = o2.qserv_cell2" in planned.worker_sql
    # each statement reads one chunk: no chunk_id test, and no chunk_id (a table's last
    # column) read on either side
    assert "chunk_id" not in planned.worker_sql
    assert "object_overlap" not in planned.worker_sql.split(" AS o2")[1]
    assert planned.concatenate
    # the cells are joined by hash, not sorted for a merge join (see neighbours)
    assert planned.worker_settings == (("enable_mergejoin", "off"),)
    assert client.plan("SELECT COUNT(*) FROM Object").worker_settings == ()


def test_cone_becomes_spatial_index_ranges(client: Client) -> None:
    text = (
        "SELECT objectId FROM Object "
        "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 3)) = 1"
    )
    planned = client.plan(text)
    cone = Cone(266.4, -28.9, 3)
    assert cone.index_sql("object.spatial_index") in planned.worker_sql
    # qserv.pt_in_circle(object.coord_ra, object.coord_dec, 266.4, -28.9, 3), written out
    assert "cosd((-28.9)::float8) * sind((266.4)::float8 - object.coord_ra::float8)" in (
        planned.worker_sql
    )
    assert "<= (3)::float8)" in planned.worker_sql and "qserv." not in planned.worker_sql
    assert "qserv.pt_in_circle(object.coord_ra, object.coord_dec, 266.4, -28.9, 3)" in (
        client.plan(text, oracle=True).oracle_sql
    )
    layout = client.context.states["qt"].layout
    assert layout is not None
    want = set(cone.chunks(layout).tolist()) & _all_chunks(client)
    assert 1 < len(want) < len(_all_chunks(client))
    assert _chunks(client, text) == want


def test_ra_wrap_cone_chunks_on_both_sides(client: Client) -> None:
    layout = client.context.states["qt"].layout
    assert layout is not None
    chunks = _chunks(
        client,
        "SELECT COUNT(*) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
        "CIRCLE(0, 0, 3)) = 1",
    )
    lo, hi = healpix.index_range(np.array(sorted(chunks)))
    # chunk centres on both sides of RA 0
    east = healpix.spatial_index(np.array([1.0]), np.array([0.0]))[0]
    west = healpix.spatial_index(np.array([359.0]), np.array([0.0]))[0]
    assert any(a <= east < b for a, b in zip(lo, hi, strict=True))
    assert any(a <= west < b for a, b in zip(lo, hi, strict=True))


def test_director_index_lookup_touches_only_the_keys_chunks(
    client: Client, oracle: psycopg.Connection
) -> None:
    keys = (1000000000007, 1000000001445, 1000000001446, 1000000002999)
    rows = oracle.execute(
        "SELECT coord_ra, coord_dec FROM qt.object WHERE objectid = ANY(%s)", (list(keys),)
    ).fetchall()
    layout = client.context.states["qt"].layout
    assert layout is not None
    index = healpix.spatial_index(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    want = set(layout.chunk_of(index).tolist())
    assert len(want) >= 3  # 1445 and 1446 are a pair across a chunk edge
    text = f"SELECT objectId FROM Object WHERE objectId IN {keys}"
    assert _chunks(client, text) == want
    child = f"SELECT COUNT(*) FROM ForcedSource WHERE objectId IN {keys}"
    assert _chunks(client, child) == want
    assert _chunks(client, "SELECT * FROM Object WHERE objectId = 12") == set()


def test_replicated_only_runs_once(client: Client) -> None:
    planned = client.plan("SELECT COUNT(*) FROM CcdVisit")
    assert planned.chunks == {}
    assert planned.replicated_worker is not None


def test_replication_two_spreads_chunks_over_both_workers(client: Client, client2: Client) -> None:
    text = "SELECT COUNT(*) FROM Object"
    one, two = client.plan(text), client2.plan(text)
    assert one.total_chunks == two.total_chunks
    placement = client2.context.states["qt2"].placement
    assert all(len(workers) == 2 for workers in placement.values())
    sizes = sorted(len(c) for c in two.chunks.values())
    assert len(sizes) == 2 and sizes[1] - sizes[0] <= 1


@pytest.mark.parametrize(
    "text",
    [
        "SELECT objectId, coord_ra, coord_dec FROM Object "
        "WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 266.4, -28.9, 0.5)) = 1",
    ],
)
def test_cone_plans_quickly(client: Client, text: str) -> None:
    ctx = client.context
    plan(text, "adql", ctx)  # warm up imports and caches
    best = min(_timed(lambda: plan(text, "adql", ctx)) for _ in range(5))
    assert best < 0.050, f"parse-to-plan took {best * 1000:.1f} ms"


def _timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def test_a_merge_that_only_names_columns_is_passed_through(client: Client) -> None:
    """Such a plan, answered by one worker, runs its worker SQL alone; its rows are those
    of the merge."""
    lookup = "SELECT objectId, coord_ra FROM Object WHERE objectId = {}"
    assert client.plan(lookup.format(1)).passthrough
    for text in (
        "SELECT objectId FROM Object WHERE objectId = 1 ORDER BY objectId",
        "SELECT DISTINCT objectId FROM Object WHERE objectId = 1",
        "SELECT TOP 1 objectId FROM Object WHERE objectId = 1",
        "SELECT COUNT(*) FROM Object WHERE objectId = 1",
    ):
        assert not client.plan(text).passthrough, text
    some = client.query("SELECT TOP 3 objectId FROM Object").column("objectId").to_pylist()
    for key in some:
        got = client.query(lookup.format(key))
        assert got.column_names == ["objectId", "coord_ra"]
        assert got.column("objectId").to_pylist() == [key]


def test_planning_keeps_no_query_alive(client: Client) -> None:
    """sqlglot's schema caches lookups by the Table node asked about: asked with a query's
    own nodes, it kept every planned tree (and grew with each plan)."""
    ctx = client.context
    schema = ctx.catalogs.schema()
    queries = [
        "SELECT * FROM Object WHERE objectId = {}",
        "SELECT o.objectId, f.psfFlux FROM Object o JOIN ForcedSource f"
        " ON o.objectId = f.objectId WHERE o.objectId = {}",
        "SELECT band, COUNT(*) FROM ForcedSource WHERE objectId > {} GROUP BY band",
    ]
    for text in queries:
        plan(text.format(1), "adql", ctx)
    caches = [c for c in vars(schema).values() if isinstance(c, dict)]
    sizes = [len(c) for c in caches]
    for i in range(2, 40):
        for text in queries:
            plan(text.format(i), "adql", ctx)
    assert [len(c) for c in caches] == sizes
