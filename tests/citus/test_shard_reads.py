"""Reads straight from the shards on Citus (qserv_py.exec.citus_direct): the worker SQL
goes to the worker nodes, naming the shard tables, and stays exact when Citus moves a
shard between the planning and the execution of a query — whether the shard's old copy
is still on its old node (the placement check notices) or already dropped (the read
fails) — the query is then answered through the coordinator."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from qserv_py.client import Client
from qserv_py.cluster.db import connect as db_connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.exec import citus_direct, tracking
from qserv_py.exec.dispatch import execute
from qserv_py.exec.plan import worker_sql
from tests.catalogs import CATALOG
from tests.query.test_corpus import CASES, compare

#: whole-catalog aggregates (of a director, and grouped of a child)
READS = ("001_count_objects", "004_group_by_band")
#: chunks a batch holds here: plans of more chunks than this read the shards directly
BATCH = 2
#: one-batch plans: through the coordinator (an id lookup, a light curve, a cone)
ROUTED = ("022_objectid_lookup", "024_light_curve", "009_cone_contains")


def _rows(table: object) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]  # type: ignore[attr-defined]


def _records(spec: ClusterSpec, after: int) -> list[tuple[str, str | None]]:
    """(status, error) of the queries recorded after query ``after``, in order."""
    tracking.flush()
    with db_connect(spec.czar, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, error FROM qserv_meta.queries WHERE id > %s ORDER BY id", (after,)
        ).fetchall()
    return [(str(s), e) for s, e in rows]


def _last_id(spec: ClusterSpec) -> int:
    tracking.flush()
    with db_connect(spec.czar, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM qserv_meta.queries").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def coordinator(citus_client: Client) -> Iterator[psycopg.Connection]:
    """The coordinator, with Citus's deferred drop of moved shards' old copies off (a
    test drops them itself); its old value back after the test."""
    with db_connect(citus_client.spec.coordinator, autocommit=True) as conn:
        conn.execute("CALL citus_cleanup_orphaned_resources()")
        conn.execute("ALTER SYSTEM SET citus.defer_shard_delete_interval = -1")
        conn.execute("SELECT pg_reload_conf()")
        try:
            yield conn
        finally:
            conn.execute("ALTER SYSTEM RESET citus.defer_shard_delete_interval")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CALL citus_cleanup_orphaned_resources()")


def test_hash_is_citus_hash(coordinator: psycopg.Connection) -> None:
    values = [0, 1, -1, 2**31, -(2**31) - 1, 2**62 + 12345, -(2**63)]
    values += list(range(16, 4 * 4**9, 997))  # NUNIQ chunk ids of orders 0-8
    (want,) = coordinator.execute(
        "SELECT array_agg(hashint8(v) ORDER BY n) FROM unnest(%s::bigint[])"
        " WITH ORDINALITY AS u(v, n)",
        (values,),
    ).fetchone()  # type: ignore[misc]
    assert [citus_direct.hashint8(v) for v in values] == want


def test_reads_go_to_the_nodes_and_equal_the_oracle(
    citus_client: Client, oracle: psycopg.Connection
) -> None:
    spec = citus_client.spec
    cur = oracle.cursor(binary=True)
    for case in [c for c in CASES if c.name in ROUTED]:
        assert citus_direct.route(spec, citus_client.plan(case.text, case.lang)) is None
    for case in [c for c in CASES if c.name in READS]:
        plan = citus_client.plan(case.text, case.lang)
        direct = citus_direct.route(spec, plan, BATCH)
        assert direct is not None, (case.name, plan.total_chunks)
        assert set(direct.plan.chunks) <= {w.name for w in spec.citus_workers}
        # a statement holding every chunk of the catalog in a shard reads it whole; one
        # holding some of them filters it by chunk_id
        assert direct.plan.shards is not None
        (table,) = direct.plan.shards
        shard_of = direct.plan.shards[table]
        for chunks in direct.plan.chunks.values():
            shards = {shard_of[c] for c in chunks}
            read_whole = [n for n in shards if direct.plan.shard_chunks.get(n, {0}) <= set(chunks)]
            text = worker_sql(direct.plan, chunks)
            assert read_whole and text.count("WHERE chunk_id") == len(shards) - len(read_whole)
            for chunk in chunks:  # alone, where its shard holds other chunks of the catalog
                alone = worker_sql(direct.plan, (chunk,))
                shared = direct.plan.shard_chunks.get(shard_of[chunk], {0}) != {chunk}
                assert ("WHERE chunk_id" in alone) == shared, alone
        start = _last_id(spec)
        got = _rows(execute(spec, plan, batch_chunks=BATCH).table)
        compare(got, cur.execute(plan.oracle_sql).fetchall(), ordered=case.ordered)
        # one record, completed: read on the nodes, not answered again by the coordinator
        assert _records(spec, start) == [("completed", None)]


def _move_group_of(conn: psycopg.Connection, chunk: int) -> tuple[str, int, str, int]:
    """Move the shard group holding ``chunk`` to the other node (its old copy kept
    until clean-up); the (from host, port, to host, port)."""
    row = conn.execute(
        "SELECT s.shardid, p.nodename, p.nodeport FROM pg_dist_shard s"
        " JOIN pg_dist_shard_placement p USING (shardid)"
        " WHERE s.logicalrelid = %s::regclass"
        " AND hashint8(%s) BETWEEN s.shardminvalue::int AND s.shardmaxvalue::int",
        (f"{CATALOG}.object", chunk),
    ).fetchone()
    assert row is not None
    shard, host, port = row
    other = conn.execute(
        "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND isactive"
        " AND (nodename, nodeport) <> (%s, %s) ORDER BY nodeid LIMIT 1",
        (host, port),
    ).fetchone()
    assert other is not None
    conn.execute(
        "SELECT citus_move_shard_placement(%s, %s, %s, %s, %s,"
        " shard_transfer_mode => 'block_writes')",
        (shard, host, port, other[0], other[1]),
    )
    return str(host), int(port), str(other[0]), int(other[1])


def test_a_shard_moved_after_planning_still_gives_exact_rows(
    citus_client: Client, oracle: psycopg.Connection, coordinator: psycopg.Connection
) -> None:
    spec = citus_client.spec
    [case] = [c for c in CASES if c.name == "001_count_objects"]
    plan = citus_client.plan(case.text, case.lang)
    want = oracle.cursor(binary=True).execute(plan.oracle_sql).fetchall()
    chunk = min(c for cs in plan.chunks.values() for c in cs)

    def run() -> list[tuple]:
        return _rows(execute(spec, plan, batch_chunks=BATCH).table)

    # the shard map is read (and cached) at planning time; then Citus moves a shard
    # group the plan reads, keeping its old copy: the read of the old copy is refused
    assert citus_direct.route(spec, plan, BATCH) is not None
    start = _last_id(spec)
    moved = _move_group_of(coordinator, chunk)
    compare(run(), want, ordered=False)
    records = _records(spec, start)
    assert [s for s, _ in records] == ["failed", "completed"], records
    assert "Citus moved shards" in (records[0][1] or "")
    # the map is read again: the next query reads the shards where they are now
    start = _last_id(spec)
    compare(run(), want, ordered=False)
    assert [s for s, _ in _records(spec, start)] == ["completed"]
    # moved back after planning, and the copy the plan names dropped: the read fails,
    # the query is answered through the coordinator
    direct = citus_direct.route(spec, plan, BATCH)
    assert direct is not None
    back = _move_group_of(coordinator, chunk)
    assert back[2:] == moved[:2]
    coordinator.execute("CALL citus_cleanup_orphaned_resources()")
    start = _last_id(spec)
    compare(run(), want, ordered=False)
    records = _records(spec, start)
    assert [s for s, _ in records] == ["failed", "completed"], records
    assert "does not exist" in (records[0][1] or ""), records


def test_neighbour_joins_match_chunks_on_citus(citus_client: Client) -> None:
    """A Citus statement reads several chunks of a shard: a near-neighbour join matches
    its sides' chunk_id there (native statements read one chunk each and do not)."""
    planned = citus_client.plan(
        "SELECT COUNT(*) FROM Object o1, Object o2 WHERE DISTANCE(POINT(o1.coord_ra, "
        "o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.005 AND o1.objectId <> o2.objectId"
    )
    assert "o1.chunk_id = o2.chunk_id" in planned.worker_sql
    assert "o1.qserv_cell = o2.qserv_cell2" in planned.worker_sql
