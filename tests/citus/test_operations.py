"""Cluster operations on Citus go through Citus's own functions, so that Citus and
qserv_py agree: a node added (``worker add --local``, ``citus_add_node``) takes shards
from Citus's rebalancer while a stream of queries keeps returning the oracle's rows;
``worker drain`` empties a node with ``citus_drain_node``; ``worker remove`` unregisters
it with ``citus_remove_node``; ``replicate`` reports Citus's placements; what Citus cannot
do is refused with nothing changed. (The tests run in this order on the session's Citus
cluster, which ends with its two nodes again.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import make_conninfo

from qserv_py.api.app import create_app
from qserv_py.cli import main
from qserv_py.client import Client, connect
from qserv_py.cluster import citus
from qserv_py.cluster.db import connect as db_connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec, read_cluster_file
from qserv_py.config import Settings
from qserv_py.errors import ConfigError, UnknownWorker, WorkerOpError
from qserv_py.ops import citus_nodes, workers
from qserv_py.ops.status import cluster_status
from tests.catalogs import CATALOG
from tests.query.test_corpus import CASES, Case, compare

#: queries of several shapes run while shards move
STREAM = (
    "001_count_objects",
    "009_cone_contains",
    "022_objectid_lookup",
    "024_light_curve",
)
#: generous bound on waiting for Citus to reach a state (a hang fails, never a slow box)
PATIENCE_S = 300.0

Answers = list[tuple[Case, list[tuple]]]


def _answers(client: Client, oracle: psycopg.Connection) -> Answers:
    cases = [c for c in CASES if c.name in STREAM]
    assert len(cases) == len(STREAM)
    cur = oracle.cursor(binary=True)
    return [(c, cur.execute(client.plan(c.text, c.lang).oracle_sql).fetchall()) for c in cases]


def _check(client: Client, answers: Answers) -> None:
    for case, want in answers:
        got = [tuple(r.values()) for r in client.query(case.text, case.lang).to_pylist()]
        compare(got, want, ordered=case.ordered)


def _until(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {PATIENCE_S:.0f} s for {what}"
        time.sleep(0.05)


def _placements(spec: ClusterSpec) -> dict[str, int]:
    return {n.name: n.shards for n in citus_nodes.list_nodes(spec)}


def test_what_citus_cannot_do_is_refused_and_nothing_changes(
    citus_cluster: LocalCluster, citus_client: Client
) -> None:
    spec = citus_cluster.spec()
    before = _placements(spec)
    assert set(before) == {"worker1", "worker2"} and all(before.values())
    with pytest.raises(WorkerOpError, match="coordinator of cluster"):
        workers.drain_worker(spec, "coordinator")
    with pytest.raises(UnknownWorker, match="no Citus worker node 'worker9'"):
        workers.drain_worker(spec, "worker9")
    with pytest.raises(WorkerOpError, match=r"holds \d+ shards; move them away first"):
        workers.remove_worker(spec, "worker1")
    with pytest.raises(WorkerOpError, match="holds the only placement"):
        workers.remove_lost_worker(spec, "worker1")
    with pytest.raises(ConfigError, match="replication level 2: on Citus a catalog keeps"):
        citus_nodes.replicate(spec, level=2)
    # an operator's Citus tool marks worker2 as taking no shards: worker1 is the last
    # node that can hold them, so draining it is refused before Citus is asked
    [w2] = [n for n in citus_nodes.list_nodes(spec) if n.name == "worker2"]
    with db_connect(spec.coordinator, autocommit=True) as conn:
        conn.execute(
            "SELECT citus_set_node_property(%s, %s, 'shouldhaveshards', false)",
            (w2.host, w2.port),
        )
    assert citus_nodes.find_node(spec, "worker2").state == "draining"
    with pytest.raises(WorkerOpError, match="no other active Citus node can take"):
        workers.drain_worker(spec, "worker1")
    assert workers.activate_worker(spec, "worker2").state == "active"  # Citus's property
    assert citus_nodes.find_node(spec, f"{w2.host}:{w2.port}").should_have_shards
    assert _placements(spec) == before
    report = citus_nodes.replicate(spec, level=1)
    shards, fewest, level = report.catalogs[CATALOG]
    assert report.healthy and fewest == level == 1
    assert shards == sum(before.values())  # every shard of every distributed table


def test_queries_stay_exact_while_citus_moves_shards_to_a_new_node(
    citus_cluster: LocalCluster, citus_client: Client, oracle: psycopg.Connection
) -> None:
    """A node is added; Citus's rebalancer moves shards to it while a thread queries
    without pause. The move is held, deterministically, at two points until the thread
    has answered every query of the stream again at each, both after its copy to the new
    node: where it blocks writes, by a share lock on the shards' metadata
    (``lock_shard_metadata``, which a ``block_writes`` move takes exclusively; reads do
    not take it), and where it switches the placement, by a share lock on
    ``pg_dist_placement`` (which the switch writes). Then it ends. Every answer, before,
    during and after the move, is the oracle's."""
    answers = _answers(citus_client, oracle)
    root = str(citus_cluster.root)
    assert main(["--cluster", root, "worker", "add", "--local"]) == 0
    spec = citus_cluster.spec()
    assert [w.name for w in spec.citus_workers] == ["worker1", "worker2", "worker3"]
    before = _placements(spec)
    assert before["worker3"] == 0
    new_node = {w.name: w for w in spec.citus_workers}["worker3"]
    before_copy = db_connect(spec.coordinator)
    before_copy.execute(
        "SELECT lock_shard_metadata(5, array_agg(s.shardid)) FROM pg_dist_shard s"
        " JOIN pg_dist_partition t USING (logicalrelid)"
        " JOIN pg_class c ON c.oid = s.logicalrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND t.partmethod = 'h'",  # (the reference tables' copy
        # to the new node, the rebalance's first task, goes on)
        (CATALOG,),
    )
    before_switch = db_connect(spec.coordinator)

    results: list[tuple[int, list[tuple]]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def stream() -> None:
        client = connect(spec, default_catalog=CATALOG)
        i = 0
        try:
            while not stop.is_set():
                case = answers[i % len(answers)][0]
                rows = client.query(case.text, case.lang).to_pylist()
                results.append((i % len(answers), [tuple(r.values()) for r in rows]))
                i += 1
        except BaseException as exc:
            failures.append(exc)

    moved: list[citus_nodes.ShardMoveReport] = []

    def move() -> None:
        try:
            moved.append(citus_nodes.rebalance(spec))
        except BaseException as exc:
            failures.append(exc)

    def move_waits_for(lock: str) -> Callable[[], bool]:
        def waiting() -> bool:
            assert not failures, failures
            with db_connect(spec.coordinator, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_dist_background_task t"
                    " JOIN pg_stat_activity a ON a.pid = t.pid WHERE t.status = 'running'"
                    " AND t.command LIKE '%%citus_move_shard_placement%%'"
                    " AND a.wait_event_type = 'Lock' AND a.wait_event = %s",
                    (lock,),
                ).fetchone()
            return bool(row and row[0])

        return waiting

    def copied_rows() -> int:
        """Rows in the shard tables on the new node."""
        with db_connect(new_node, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables"
                " WHERE schemaname = %s",
                (CATALOG,),
            ).fetchall()
            total = 0
            for (table,) in tables:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                total += int(row[0]) if row else 0
            return total

    def stream_again(where: str) -> int:
        start = len(results)
        _until(
            f"every query of the stream answered {where}",
            lambda: bool(failures) or len(results) >= start + len(answers),
        )
        return len(results) - start

    querying = threading.Thread(target=stream)
    moving = threading.Thread(target=move)
    held = []
    querying.start()
    try:
        _until("a first answer", lambda: bool(results or failures))
        moving.start()
        _until("the move to wait for the shards' metadata lock", move_waits_for("advisory"))
        # Citus copies the shard group first, then blocks its writes: rows on the new
        # node, the placement not switched yet
        assert copied_rows() > 0 and _placements(spec)["worker3"] == 0
        held.append(stream_again("with the copy made, writes not blocked yet"))
        before_switch.execute("LOCK TABLE pg_dist_placement IN SHARE MODE")
        before_copy.rollback()
        _until("the move to wait to switch its placement", move_waits_for("relation"))
        assert copied_rows() > 0 and _placements(spec)["worker3"] == 0
        held.append(stream_again("with writes blocked, before the placement switch"))
    finally:
        before_copy.rollback()
        before_switch.rollback()
        moving.join(PATIENCE_S)
        stop.set()
        querying.join(PATIENCE_S)
        before_copy.close()
        before_switch.close()
    assert not failures, failures
    assert min(held) >= len(answers)
    assert not moving.is_alive() and moved and moved[0].moved >= 1
    after = _placements(citus_cluster.spec())
    assert all(after.values()) and sum(after.values()) == sum(before.values())
    for index, got in results:
        case, want = answers[index]
        compare(got, want, ordered=case.ordered)
    _check(connect(citus_cluster.spec(), default_catalog=CATALOG), answers)


def test_drain_and_remove_a_node_through_citus(
    citus_cluster: LocalCluster,
    citus_client: Client,
    oracle: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = _answers(citus_client, oracle)
    root = str(citus_cluster.root)
    spec = citus_cluster.spec()
    total = sum(_placements(spec).values())
    assert citus_nodes.find_node(spec, "worker3").shards >= 1
    worker3 = next(w for w in spec.citus_workers if w.name == "worker3")
    with db_connect(spec.coordinator, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s"
            " JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)"
            " JOIN pg_dist_partition t USING (logicalrelid)"
            " WHERE n.nodeport = %s AND t.partmethod = 'h' LIMIT 1",
            (citus_nodes.find_node(spec, "worker3").port,),
        ).fetchone()
    assert row
    # a query on worker3 still reads one shard when it is drained: Citus cannot drop that
    # old copy (its maintenance daemon neither) until the query ends
    reader = db_connect(worker3)
    reader.execute(f"SELECT 1 FROM {row[0]} LIMIT 0")
    capsys.readouterr()
    assert main(["--cluster", root, "worker", "drain", "worker3"]) == 0
    assert "shards moved by Citus" in capsys.readouterr().out
    node = citus_nodes.find_node(spec, "worker3")
    assert (node.shards, node.state, node.should_have_shards) == (0, "removable", False)
    assert sum(_placements(spec).values()) == total
    with db_connect(spec.coordinator, autocommit=True) as conn:  # Citus agrees: its
        plan = conn.execute(  # rebalancer would move nothing there
            "SELECT count(*) FROM get_rebalance_table_shards_plan() WHERE targetport = %s",
            (node.port,),
        ).fetchone()
    assert plan == (0,)
    assert main(["--cluster", root, "worker", "list", "--json"]) == 0
    assert '"state": "removable"' in capsys.readouterr().out
    removed: list[int] = []
    removing = threading.Thread(
        target=lambda: removed.append(
            main(["--cluster", root, "worker", "remove", "worker3", "--purge"])
        )
    )
    attempts: set[tuple] = set()

    def tried_twice() -> bool:
        attempts.update(
            watch.execute(
                "SELECT pid, query_start FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query ILIKE %s",
                (f"%DROP%{row[0]}%",),
            ).fetchall()
        )
        return len(attempts) >= 2

    with reader, db_connect(worker3, autocommit=True) as watch:
        removing.start()
        try:  # each try to drop the old copy the query reads waits 1 s for its lock, fails,
            # and `worker remove` tries again
            _until("Citus to try twice to drop the old copy the query reads", tried_twice)
            assert removing.is_alive()
        finally:
            reader.rollback()
            removing.join(PATIENCE_S)
    assert removed == [0]
    spec = citus_cluster.spec()
    assert [n.name for n in citus_nodes.list_nodes(spec)] == ["worker1", "worker2"]
    assert len(citus.active_workers(spec.coordinator)) == 2
    assert [w.name for w in read_cluster_file(Path(root)).citus_workers] == ["worker1", "worker2"]
    assert "worker3" not in [i.name for i in citus_cluster.instances()]
    assert not (citus_cluster.root / "worker3").exists()
    capsys.readouterr()
    assert main(["--cluster", root, "replicate"]) == 0
    assert f"  {CATALOG}: " in capsys.readouterr().out
    _check(connect(spec, default_catalog=CATALOG), answers)


def test_worker_add_dsn_joins_a_server_and_cluster_status_lists_the_nodes(
    citus_cluster: LocalCluster,
    citus_settings: Settings,
    citus_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`worker add DSN` joins an existing server (here a new local instance with Citus)
    with ``citus_add_node``; `cluster status` lists the Citus nodes and their shards."""
    root = str(citus_cluster.root)
    server = citus_cluster.add_worker_instance(citus_settings, _citus_node=True)
    try:
        spec = citus_cluster.spec()
        with pytest.raises(ConfigError, match="coordinator's database name"):
            citus_nodes.add(spec, make_conninfo(server.dsn, dbname="postgres"))
        capsys.readouterr()
        assert main(["--cluster", root, "worker", "add", server.dsn, "--name", server.name]) == 0
        assert f"added Citus worker node {server.name}" in capsys.readouterr().out
        spec = citus_cluster.spec()
        assert server.name in [w.name for w in spec.citus_workers]
        node = citus_nodes.find_node(spec, server.name)
        assert (node.state, node.shards) == ("active", 0)
        with pytest.raises(WorkerOpError, match=f"is Citus node {server.name} already"):
            citus_nodes.add(spec, server.dsn, name="again")
        by_name = {w.name: w for w in cluster_status(spec).workers}
        assert set(by_name) == {"coordinator", "worker1", "worker2", server.name}
        assert by_name["worker1"].chunks > 0 and by_name["worker2"].chunks > 0
        assert (by_name[server.name].state, by_name[server.name].chunks) == ("up", 0)
        # the REST API lists the nodes as `worker list` does
        token = "citus-admin-token"
        app = create_app(citus_settings.model_copy(update={"admin_token": token}), spec)
        with TestClient(app) as api:
            listed = api.get("/api/v1/admin/workers", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        nodes = {w["name"]: w for w in listed.json()}
        assert {"worker1", "worker2", server.name} <= set(nodes)
        assert nodes[server.name]["chunks"] == 0 and nodes["worker1"]["chunks"] > 0
    finally:
        main(["--cluster", root, "worker", "remove", server.name, "--purge"])
    assert [n.name for n in citus_nodes.list_nodes(citus_cluster.spec())] == [
        "worker1",
        "worker2",
    ]
