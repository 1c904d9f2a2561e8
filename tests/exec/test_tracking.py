"""Query records: listing, and killing running queries from another thread or process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QueryError, QueryKilled, QuerySqlError, QueryTimeout
from qserv_py.exec.dispatch import QueryResult, close_pools, execute
from qserv_py.exec.plan import ExecPlan
from qserv_py.exec.pools import WORKER_POOL_SIZE, worker_pool
from qserv_py.exec.tracking import (
    QueryInfo,
    create_query,
    flush,
    get_query,
    kill_query,
    list_queries,
)
from tests.exec.test_dispatch import SLEEP, busy_sessions, merge_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _pools() -> Iterator[None]:
    """Close this process's cached pools after the module (they hold idle sessions)."""
    yield
    close_pools()


class Background:
    """``execute`` running in a thread; its result or error once it ends."""

    def __init__(self, spec: ClusterSpec, plan: ExecPlan, **options: object) -> None:
        self.text = f"background {uuid.uuid4()}"
        self.result: QueryResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = execute(spec, plan, text=self.text, **options)  # type: ignore[arg-type]
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def wait_until(self, spec: ClusterSpec, ready: Callable[[QueryInfo], bool]) -> QueryInfo:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = [q for q in list_queries(spec) if q.text == self.text]
            if found and ready(found[0]):
                return found[0]
            assert self.thread.is_alive(), self.error
            time.sleep(0.05)
        raise AssertionError(f"{self.text} never got ready")

    def join(self, seconds: float) -> None:
        self.thread.join(seconds)
        assert not self.thread.is_alive(), "the query did not stop"


@pytest.fixture
def workers(spec: ClusterSpec) -> Iterator[list[str]]:
    yield [w.name for w in spec.workers]


def slow_plan(workers: list[str], seconds: float = 60) -> ExecPlan:
    return ExecPlan(
        SLEEP % seconds,
        "SELECT count(*) AS n FROM {partials}",
        {workers[0]: (1, 2), workers[1]: (3,)},
    )


def test_list_shows_running_then_finished(spec: ClusterSpec, workers: list[str]) -> None:
    job = Background(spec, slow_plan(workers, 1.5), batch_chunks=1, per_worker=1)
    info = job.wait_until(spec, lambda q: q.chunks_done >= 1)
    assert info.status == "running" and info.chunks_total == 3 and info.rows is None
    assert 0 < info.elapsed < 10 and info.error is None
    job.join(10)
    assert job.result is not None and job.result.table.column("n").to_pylist() == [3]
    assert all(q.text != job.text for q in list_queries(spec))
    done = [q for q in list_queries(spec, active_only=False) if q.text == job.text]
    assert len(done) == 1 and done[0].status == "completed" and done[0].chunks_done == 3
    assert done[0].elapsed >= 3  # two batches of 1.5 s one after the other on workers[0]
    assert get_query(spec, done[0].id) == done[0]
    assert len(list_queries(spec, active_only=False, limit=1)) == 1  # this one at least


def test_kill_from_another_thread(spec: ClusterSpec, workers: list[str]) -> None:
    job = Background(spec, slow_plan(workers), batch_chunks=1)
    info = job.wait_until(spec, lambda q: busy_sessions(spec, q.id) == 3)
    started = time.monotonic()
    kill_query(spec, info.id)
    job.join(10)
    assert time.monotonic() - started < 5
    assert isinstance(job.error, QueryKilled), job.error
    assert busy_sessions(spec, info.id) == 0
    after = get_query(spec, info.id)
    assert after.status == "killed" and after.error == "killed on request"
    assert f"q{info.id}" not in merge_tables(spec)
    with pytest.raises(QueryError, match=r"already finished \(killed\)"):
        kill_query(spec, info.id)


def test_kill_from_another_process_during_the_merge(spec: ClusterSpec, workers: list[str]) -> None:
    plan = ExecPlan(  # two workers: the general path, with a merge on the czar
        SLEEP % 0,
        "SELECT count(*) AS n FROM {partials}, pg_sleep(60)",
        {workers[0]: (1,), workers[1]: (2,)},
    )
    job = Background(spec, plan)
    info = job.wait_until(spec, lambda q: q.chunks_done == 2)
    time.sleep(0.3)  # into the merge
    assert spec.path is not None
    code = (
        "import sys; from pathlib import Path; from qserv_py.cluster.spec import "
        "read_cluster_file; from qserv_py.exec.tracking import kill_query; "
        "kill_query(read_cluster_file(Path(sys.argv[1])), int(sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", code, str(spec.path), str(info.id)], check=True, cwd=ROOT)
    job.join(10)
    assert isinstance(job.error, QueryKilled), job.error
    assert get_query(spec, info.id).status == "killed"
    assert f"q{info.id}" not in merge_tables(spec)


def test_kill_a_single_batch_query(spec: ClusterSpec, workers: list[str]) -> None:
    """One worker, one batch: the direct path (merge over the worker SQL on the worker)."""
    plan = ExecPlan(SLEEP % 60, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
    job = Background(spec, plan)
    info = job.wait_until(spec, lambda q: busy_sessions(spec, q.id) == 1)
    assert info.chunks_total == 1 and info.chunks_done == 0
    kill_query(spec, info.id)
    job.join(10)
    assert isinstance(job.error, QueryKilled), job.error
    assert get_query(spec, info.id).status == "killed"
    assert busy_sessions(spec, info.id) == 0


def test_kill_errors(spec: ClusterSpec, workers: list[str]) -> None:
    with pytest.raises(QueryError, match="there is no query 987654321"):
        kill_query(spec, 987654321)
    done = execute(spec, slow_plan(workers, 0))
    with pytest.raises(QueryError, match=rf"query {done.query_id} has already finished"):
        kill_query(spec, done.query_id)
    with pytest.raises(QueryError, match="there is no query"):
        get_query(spec, 987654321)


def test_kill_cleans_up_after_a_dead_process(spec: ClusterSpec) -> None:
    """A query whose process died stays running until killed; the kill drops its table."""
    with connect(spec.czar, autocommit=True) as czar:
        query_id = create_query(czar, text="orphan", lang="sql", owner="", chunks_total=4)
        czar.execute(f"CREATE UNLOGGED TABLE qserv_result.q{query_id} (x int)")
    assert [q.status for q in list_queries(spec) if q.id == query_id] == ["running"]
    kill_query(spec, query_id)
    assert get_query(spec, query_id).status == "killed"
    assert f"q{query_id}" not in merge_tables(spec)


def _czar_record(spec: ClusterSpec, query_id: int) -> tuple | None:
    """The query's row as the czar has it now (no flush of this process's tracker)."""
    with connect(spec.czar, autocommit=True) as czar:
        return czar.execute(
            "SELECT status, rows, chunks_done, text, submitted_at <= started_at,"
            " started_at <= finished_at, finished_at <= now() FROM qserv_meta.queries"
            " WHERE id = %s",
            (query_id,),
        ).fetchone()


def test_a_short_query_is_recorded_after_it_ends(spec: ClusterSpec, workers: list[str]) -> None:
    """A single-batch query shorter than TRACK_AFTER_S: its record is written afterwards,
    in the background (and at once by flush)."""
    plan = ExecPlan(SLEEP % 0, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
    text = f"short {uuid.uuid4()}"
    first = execute(spec, plan, text=text, owner="me", lang="sql")
    assert first.table.column("n").to_pylist() == [1]
    deadline = time.monotonic() + 10
    while (row := _czar_record(spec, first.query_id)) is None:  # the tracker writes it
        assert time.monotonic() < deadline, "the record was never written"
        time.sleep(0.01)
    assert row == ("completed", 1, 1, text, True, True, True)
    info = get_query(spec, first.query_id)
    assert (info.status, info.owner, info.lang, info.rows, info.error) == (
        "completed", "me", "sql", 1, None,
    )  # fmt: skip
    assert (info.chunks_done, info.chunks_total) == (1, 1) and 0 <= info.elapsed < 5
    # ids come from this process's block: unique and increasing
    later = [execute(spec, plan, text=text).query_id for _ in range(3)]
    assert sorted(set(later)) == later and later[0] > first.query_id
    assert flush()
    assert [_czar_record(spec, i)[0] for i in later] == ["completed"] * 3  # type: ignore[index]


def test_failures_of_single_batch_queries_are_recorded(
    spec: ClusterSpec, workers: list[str]
) -> None:
    plan = ExecPlan(
        "SELECT 1 / (c - c) AS x FROM unnest({chunks}) AS c",
        "SELECT * FROM {partials}",
        {workers[0]: (1,)},
    )
    text = f"failing {uuid.uuid4()}"
    with pytest.raises(QuerySqlError) as caught:  # the query's error (400), not the worker's
        execute(spec, plan, text=text)
    assert str(caught.value).startswith(
        f"the query failed in PostgreSQL on worker {workers[0]}: division by zero"
    )
    [info] = [q for q in list_queries(spec, active_only=False) if q.text == text]
    assert info.status == "failed" and info.error == str(caught.value)
    # a timeout: the worker statement's limit, set for this query only
    text = f"slow {uuid.uuid4()}"
    sleepy = ExecPlan(SLEEP % 20, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
    with pytest.raises(QueryTimeout, match="time limit"):
        execute(spec, sleepy, text=text, timeout_s=1)
    [info] = [q for q in list_queries(spec, active_only=False) if q.text == text]
    assert info.status == "failed" and "time limit" in (info.error or "")
    assert busy_sessions(spec, info.id) == 0
    # every pooled session had its limit set to 1 s; a query without one is not cut
    quick = ExecPlan(SLEEP % 0, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
    for _ in range(WORKER_POOL_SIZE + 2):
        execute(spec, quick, timeout_s=1)
    slow = ExecPlan(SLEEP % 1.3, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
    assert execute(spec, slow).table.column("n").to_pylist() == [1]


def test_kill_a_single_batch_query_from_another_process(
    spec: ClusterSpec, workers: list[str]
) -> None:
    """Its record, written by the tracker while it runs, is seen and killed elsewhere."""
    plan = ExecPlan(SLEEP % 60, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
    job = Background(spec, plan)
    code = (
        "import sys, time; from pathlib import Path; from qserv_py.cluster.spec import "
        "read_cluster_file; from qserv_py.exec.tracking import kill_query, list_queries\n"
        "spec = read_cluster_file(Path(sys.argv[1]))\n"
        "for _ in range(200):\n"
        "    found = [q for q in list_queries(spec) if q.text == sys.argv[2]]\n"
        "    if found: break\n"
        "    time.sleep(0.05)\n"
        "kill_query(spec, found[0].id); print(found[0].id)"
    )
    assert spec.path is not None
    done = subprocess.run(
        [sys.executable, "-c", code, str(spec.path), job.text],
        check=True, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    query_id = int(done.stdout)
    job.join(10)
    assert isinstance(job.error, QueryKilled), job.error
    assert get_query(spec, query_id).status == "killed"
    assert busy_sessions(spec, query_id) == 0


def test_a_session_taken_after_a_kill_is_cancelled(spec: ClusterSpec, workers: list[str]) -> None:
    """A running record without sessions (all were busy), killed; the session the query
    then gets is registered by the tracker, which finds the kill and cancels it."""
    pool = worker_pool(spec, workers[0])
    held = [pool.getconn() for _ in range(WORKER_POOL_SIZE)]
    try:
        plan = ExecPlan(SLEEP % 60, "SELECT count(*) AS n FROM {partials}", {workers[0]: (1,)})
        job = Background(spec, plan)
        info = job.wait_until(spec, lambda q: True)
        kill_query(spec, info.id)
        assert job.thread.is_alive()  # still waiting for a session
    finally:
        for conn in held:
            pool.putconn(conn)
    started = time.monotonic()
    job.join(10)
    assert isinstance(job.error, QueryKilled), job.error
    assert time.monotonic() - started < 5
    assert get_query(spec, info.id).status == "killed"
    assert busy_sessions(spec, info.id) == 0
