"""Copying and moving one chunk between workers, on a real cluster: the copy is
identical to its source, an interrupted copy (its target session killed, its coordinator
killed) leaves nothing visible and the next attempt succeeds, a crashed move is finished
by a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import qserv_py
from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import ClusterError, WorkerOpError
from qserv_py.ops import copy, journal
from qserv_py.ops.chunks import copy_chunk, move_chunk, publish_move
from qserv_py.ops.copy import TEMP_PREFIX, chunk_parts
from tests.ops.movement import answers, load_catalog, partitions, placement

CATALOG = "mv1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec(ops_cluster: LocalCluster, release: Path) -> Iterator[ClusterSpec]:
    """Catalog mv1 on worker1 and worker2 (one copy of each chunk); worker3 holds none."""
    spec = ops_cluster.spec()
    load_catalog(spec, CATALOG, release, ["worker1", "worker2"], replication=1)
    yield spec
    drop_catalog(spec, CATALOG)


def _biggest_chunk(spec: ClusterSpec, worker: str, skip: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    with connect(spec.czar, autocommit=True) as czar:
        rows = czar.execute(
            "SELECT p.chunk_id FROM qserv_meta.placement p JOIN qserv_meta.chunk_stats s"
            " USING (catalog, chunk_id) WHERE p.catalog = %s AND p.worker = %s"
            " GROUP BY p.chunk_id ORDER BY sum(s.rows) DESC, p.chunk_id",
            (CATALOG, worker),
        ).fetchall()
    return next(int(r[0]) for r in rows if int(r[0]) not in skip)


def _describe(spec: ClusterSpec, worker: str, table: str) -> dict[str, object]:
    """Rows, physical order, indexes, constraint and statistics of one partition."""
    with connect(spec.worker(worker), autocommit=True) as conn:
        name = f"{CATALOG}.{table}"

        def one(sql: str, params: tuple[object, ...] = (name,)) -> object:
            row = conn.execute(sql, params).fetchone()
            return row[0] if row else None

        return {
            "rows": [r[0] for r in conn.execute(f"SELECT t::text FROM {name} t ORDER BY 1")],
            "sorted": one(
                "SELECT bool_and(s >= p) FROM (SELECT spatial_index s, lag(spatial_index)"
                f" OVER (ORDER BY ctid) p FROM {name}) x WHERE p IS NOT NULL",
                (),
            ),
            "indexes": sorted(
                r[0]
                for r in conn.execute(
                    "SELECT regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', '')"
                    " FROM pg_index WHERE indrelid = %s::regclass",
                    (name,),
                )
            ),
            "attached_indexes": one(
                "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid"
                " WHERE x.indrelid = %s::regclass"
            ),
            "check": one(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = %s::regclass AND contype = 'c'"
            ),
            "partition_of": one(
                "SELECT i.inhparent::regclass::text FROM pg_inherits i"
                " WHERE i.inhrelid = %s::regclass"
            ),
            "analysed": one(
                "SELECT count(*) > 0 FROM pg_stats WHERE schemaname || '.' || tablename = %s"
            ),
        }


def test_copy_is_identical_to_its_source(
    spec: ClusterSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as a big chunk is: indexes and checksums on several sessions
    monkeypatch.setattr(copy, "PARALLEL_ROWS", 1)
    chunk = _biggest_chunk(spec, "worker1")
    with connect(spec.czar, autocommit=True) as czar:
        parts = chunk_parts(journal.catalog_model(czar, CATALOG), chunk)
    held = partitions(spec, "worker1", CATALOG) & {p.partition for p in parts}
    assert {f"object_{chunk}", f"forcedsource_{chunk}"} <= held

    report = copy_chunk(spec, CATALOG, chunk, "worker1", "worker3")

    assert report.copied and report.tables == len(held) and report.rows > 0
    assert placement(spec, CATALOG)[chunk] == {"worker1", "worker3"}
    for table in sorted(held):
        source, target = _describe(spec, "worker1", table), _describe(spec, "worker3", table)
        assert target == source, table
        assert target["sorted"] and target["analysed"] and target["rows"]
        assert target["check"] == f"CHECK ((chunk_id = {chunk}))"
        assert target["attached_indexes"] == len(target["indexes"]) == 2  # type: ignore[arg-type]
    assert not [p for p in partitions(spec, "worker3", CATALOG) if p.startswith(TEMP_PREFIX)]
    with connect(spec.czar, autocommit=True) as czar:
        record = czar.execute(
            "SELECT state, rows, tables FROM qserv_meta.chunk_copies WHERE catalog = %s"
            " AND chunk_id = %s ORDER BY id DESC LIMIT 1",
            (CATALOG, chunk),
        ).fetchone()
    assert record == ("done", report.rows, report.tables)
    # again: the target holds it, nothing is done
    assert not copy_chunk(spec, CATALOG, chunk, "worker1", "worker3").copied
    with pytest.raises(WorkerOpError, match="does not hold chunk"):
        copy_chunk(spec, CATALOG, _biggest_chunk(spec, "worker2"), "worker1", "worker3")


@pytest.mark.parametrize("parallel_rows", [copy.PARALLEL_ROWS, 1])
def test_a_copy_changed_on_the_target_is_refused(
    spec: ClusterSpec, monkeypatch: pytest.MonkeyPatch, parallel_rows: int
) -> None:
    """The checksums are not a formality: a target that stores other rows than the
    source sent (here an event trigger gives every new copy table a row trigger that
    shifts spatial_index) fails verification, and nothing is published or left; also
    when the checksums are made on several sessions."""
    monkeypatch.setattr(copy, "PARALLEL_ROWS", parallel_rows)
    chunk = _biggest_chunk(spec, "worker2")
    before = placement(spec, CATALOG)[chunk]
    bend = [
        "CREATE FUNCTION public.qserv_test_bend() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.spatial_index := NEW.spatial_index + 1; RETURN NEW; END $$",
        "CREATE FUNCTION public.qserv_test_arm() RETURNS event_trigger LANGUAGE plpgsql AS"
        " $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM pg_event_trigger_ddl_commands()"
        " WHERE object_identity LIKE '%qserv_copy_%' LOOP EXECUTE format('CREATE TRIGGER"
        " bend BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.qserv_test_bend()',"
        " r.object_identity); END LOOP; END $$",
        "CREATE EVENT TRIGGER qserv_test_arm ON ddl_command_end WHEN TAG IN ('CREATE TABLE')"
        " EXECUTE FUNCTION public.qserv_test_arm()",
    ]
    with connect(spec.worker("worker3"), autocommit=True) as conn:
        for statement in bend:
            conn.execute(statement)
    try:
        with pytest.raises(ClusterError, match="does not verify") as refused:
            copy_chunk(spec, CATALOG, chunk, "worker2", "worker3")
    finally:
        with connect(spec.worker("worker3"), autocommit=True) as conn:
            conn.execute("DROP EVENT TRIGGER IF EXISTS qserv_test_arm")
            conn.execute("DROP FUNCTION IF EXISTS public.qserv_test_arm()")
            conn.execute("DROP FUNCTION IF EXISTS public.qserv_test_bend() CASCADE")
    assert "checksum" in str(refused.value) and "nothing was published" in str(refused.value)
    assert placement(spec, CATALOG)[chunk] == before
    assert not [p for p in partitions(spec, "worker3", CATALOG) if p.startswith(TEMP_PREFIX)]


def test_target_session_killed_mid_copy_leaves_nothing(spec: ClusterSpec) -> None:
    """The target's session is killed while it holds two copied partitions and waits to
    make the third (a lock on the third table's parent, held by the test, stops it
    there); then nothing is visible, and the next copy succeeds."""
    chunk = _biggest_chunk(spec, "worker2")
    client = qserv_py.connect(spec, default_catalog=CATALOG)
    healthy = answers(client, CATALOG)
    failure: list[BaseException] = []
    with connect(spec.worker("worker3")) as blocker, connect(spec.worker("worker3")) as admin:
        blocker.execute(f"LOCK TABLE {CATALOG}.source IN ACCESS EXCLUSIVE MODE")
        copying = threading.Thread(
            target=lambda: _catch(failure, copy_chunk, spec, CATALOG, chunk, "worker2", "worker3")
        )
        copying.start()
        pid = _wait_for(
            admin,
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'qserv_py:copy:%%'"
            " AND wait_event_type = 'Lock'",
        )
        copied = admin.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE %s AND relkind = 'r'",
            (f"{TEMP_PREFIX}%",),
        ).fetchone()
        assert copied == (0,)  # the new tables are not committed: nobody else sees them
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.commit()
        copying.join(timeout=60)
        blocker.rollback()
    assert len(failure) == 1 and isinstance(failure[0], ClusterError), failure
    assert "nothing of it is visible" in str(failure[0])
    assert placement(spec, CATALOG)[chunk] == {"worker2"}
    assert not {p for p in partitions(spec, "worker3", CATALOG) if p.endswith(f"_{chunk}")}
    assert not [p for p in partitions(spec, "worker3", CATALOG) if p.startswith(TEMP_PREFIX)]
    assert answers(client, CATALOG) == healthy

    report = copy_chunk(spec, CATALOG, chunk, "worker2", "worker3")
    assert report.copied and placement(spec, CATALOG)[chunk] == {"worker2", "worker3"}
    assert answers(client, CATALOG) == healthy


def test_coordinator_killed_before_publish_is_cleaned_and_retried(spec: ClusterSpec) -> None:
    """The copying process is SIGKILLed after the copy is built and verified, while its
    publish waits (for a lock on the czar held by the test): the unattached tables it
    left are invisible, and the next copy drops them and succeeds."""
    chunk = _biggest_chunk(spec, "worker1", skip=set(_on(spec, "worker3")))
    with connect(spec.czar) as blocker, connect(spec.czar, autocommit=True) as admin:
        blocker.execute("LOCK TABLE qserv_meta.load_txns IN EXCLUSIVE MODE")
        proc = _run_in_process(spec, "copy_chunk", chunk, "worker1", "worker3")
        try:
            _wait_for(
                admin,
                "SELECT pid FROM pg_locks WHERE relation = 'qserv_meta.load_txns'::regclass"
                " AND NOT granted",
            )
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        blocker.rollback()
        _wait_gone(spec, admin)
    left = [p for p in partitions(spec, "worker3", CATALOG) if p.startswith(TEMP_PREFIX)]
    assert left  # built, never attached
    assert placement(spec, CATALOG)[chunk] == {"worker1"}
    assert not {p for p in partitions(spec, "worker3", CATALOG) if p.endswith(f"_{chunk}")}

    report = copy_chunk(spec, CATALOG, chunk, "worker1", "worker3")

    assert report.copied and placement(spec, CATALOG)[chunk] == {"worker1", "worker3"}
    assert not [p for p in partitions(spec, "worker3", CATALOG) if p.startswith(TEMP_PREFIX)]
    with connect(spec.czar, autocommit=True) as czar:
        states = [
            r[0]
            for r in czar.execute(
                "SELECT state FROM qserv_meta.chunk_copies WHERE catalog = %s AND chunk_id = %s"
                " ORDER BY id",
                (CATALOG, chunk),
            )
        ]
    assert states == ["abandoned", "done"]


def test_move_and_a_crashed_move_resumed(spec: ClusterSpec) -> None:
    client = qserv_py.connect(spec, default_catalog=CATALOG)
    healthy = answers(client, CATALOG)
    chunk = _biggest_chunk(spec, "worker2", skip=set(_on(spec, "worker3")))
    report = move_chunk(spec, CATALOG, chunk, "worker2", "worker3", grace_s=0.1)
    assert report.copied and report.dropped
    assert placement(spec, CATALOG)[chunk] == {"worker3"}
    assert not {p for p in partitions(spec, "worker2", CATALOG) if p.endswith(f"_{chunk}")}
    assert answers(client, CATALOG) == healthy

    # a move whose process dies while it waits for queries to finish: resume drops the
    # old copy (it was published: the new placement stands)
    chunk = _biggest_chunk(spec, "worker1", skip=set(_on(spec, "worker3")))
    proc = _run_in_process(spec, "move_chunk", chunk, "worker1", "worker3", grace_s=600)
    try:
        with connect(spec.czar, autocommit=True) as admin:
            _wait_for(
                admin,
                "SELECT id FROM qserv_meta.chunk_copies WHERE state = 'published'"
                f" AND chunk_id = {chunk}",
            )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert placement(spec, CATALOG)[chunk] == {"worker3"}
    assert {p for p in partitions(spec, "worker1", CATALOG) if p.endswith(f"_{chunk}")}
    assert answers(client, CATALOG) == healthy

    assert journal.resume(spec, grace_s=0) == 1

    assert not {p for p in partitions(spec, "worker1", CATALOG) if p.endswith(f"_{chunk}")}
    assert answers(client, CATALOG) == healthy


def test_old_copy_outlives_the_queries_planned_before_the_move(spec: ClusterSpec) -> None:
    """A query planned before a move, held up on the source (a lock on another chunk's
    partition), keeps the old copy alive: the drop waits for it (up to the bound), and
    its answer is exact once it goes on."""
    client = qserv_py.connect(spec, default_catalog=CATALOG)
    text = f"SELECT COUNT(*) AS n, SUM(objectId) AS s FROM {CATALOG}.Object"
    healthy = client.query(text).to_pylist()
    on_1 = [c for c in _on(spec, "worker1") if c not in _on(spec, "worker3")]
    moved = _biggest_chunk(spec, "worker1", skip=set(_on(spec, "worker3")))
    held_up = next(c for c in on_1 if c != moved)
    answers_: list[object] = []
    with connect(spec.worker("worker1")) as blocker, connect(spec.czar, autocommit=True) as czar:
        blocker.execute(f"LOCK TABLE {CATALOG}.object_{held_up} IN ACCESS EXCLUSIVE MODE")
        query = threading.Thread(target=lambda: answers_.append(client.query(text).to_pylist()))
        query.start()
        _wait_for(czar, "SELECT id FROM qserv_meta.queries WHERE status = 'running'")
        report = publish_move(spec, CATALOG, moved, "worker1", "worker3")
        assert report.copy_id is not None and placement(spec, CATALOG)[moved] == {"worker3"}

        started = time.monotonic()
        journal.wait_for_queries(czar, [report.copy_id], grace_s=0, query_wait_s=1.5)
        assert time.monotonic() - started >= 1.5  # the query still runs: it waited it out

        blocker.rollback()
        query.join(timeout=60)
        assert answers_ == [healthy]  # read the old copy, still there
        _wait_for(
            czar,
            "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM qserv_meta.queries WHERE status = 'running')",
        )
        started = time.monotonic()
        journal.wait_for_queries(czar, [report.copy_id], grace_s=0, query_wait_s=60)
        assert time.monotonic() - started < 60  # none left: it did not wait for the bound
    assert journal.finish_moves(spec, [report.copy_id], grace_s=0) == [report.copy_id]
    assert not {p for p in partitions(spec, "worker1", CATALOG) if p.endswith(f"_{moved}")}
    assert client.query(text).to_pylist() == healthy


def _wait_gone(spec: ClusterSpec, czar) -> None:  # type: ignore[no-untyped-def]
    """Wait until the servers have ended the sessions of a killed coordinator (its chunk
    lock on the czar, its open transactions on the workers)."""
    _wait_for(
        czar,
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
        f" AND classid::bigint = {journal.LOCK_CLASS})",
    )
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            _wait_for(
                conn,
                "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity"
                " WHERE state LIKE 'idle in transaction%%' AND datname = current_database())",
            )


def _on(spec: ClusterSpec, worker: str) -> list[int]:
    return [c for c, ws in placement(spec, CATALOG).items() if worker in ws]


def _catch(failures: list[BaseException], fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except BaseException as exc:
        failures.append(exc)


def _wait_for(conn, sql: str, timeout_s: float = 60) -> int:  # type: ignore[no-untyped-def]
    """Poll ``sql`` until it returns a row (the state the test waits for); its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(sql).fetchone()
        conn.commit()
        if row is not None:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError(f"never reached: {sql}")


def _run_in_process(
    spec: ClusterSpec, fn: str, *args: object, **kwargs: object
) -> subprocess.Popen:
    code = (
        "import json, sys\n"
        "from qserv_py.cluster.spec import read_cluster_file\n"
        "from qserv_py.ops import chunks\n"
        "spec = read_cluster_file(sys.argv[1])\n"
        "args, kwargs = json.loads(sys.argv[2])\n"
        f"chunks.{fn}(spec, {CATALOG!r}, *args, **kwargs)\n"
    )
    assert spec.path is not None
    return subprocess.Popen(
        [sys.executable, "-c", code, str(spec.path), json.dumps([list(args), kwargs])],
        cwd=ROOT,
    )
