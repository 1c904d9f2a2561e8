"""Running hand-written plans on the test cluster: results, limits, types, errors, timeouts."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from psycopg.conninfo import make_conninfo

from qserv_py.cluster.catalogs import drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.errors import InstanceUnreachable, QuerySqlError, QueryTimeout
from qserv_py.exec import tracking
from qserv_py.exec.dispatch import close_pools, execute
from qserv_py.exec.plan import ExecPlan, ResultColumn
from qserv_py.exec.tracking import QueryInfo, list_queries
from qserv_py.loaders.load import LoadOptions, load
from tests.conftest import create_dp02_catalog
from tests.loaders.conftest import read_table, worker_rows

SMALL = LoadOptions(max_rows_per_chunk=150, min_order=2, max_order=8)
SLEEP = "SELECT c AS chunk FROM unnest({chunks}) AS c, pg_sleep(%s)"


@pytest.fixture(scope="module", autouse=True)
def _pools() -> Iterator[None]:
    """Close this process's cached pools after the module (they hold idle sessions)."""
    yield
    close_pools()


@pytest.fixture(scope="module")
def cat(spec: ClusterSpec, release: Path) -> Iterator[str]:
    """A dp02 catalog holding the release's Object and CcdVisit tables."""
    name = create_dp02_catalog(spec, "ex_dispatch")
    try:
        for table in ("Object", "CcdVisit"):
            load(spec, name, table, [release / table], SMALL)
        yield name
    finally:
        drop_catalog(spec, name)


@pytest.fixture(scope="module")
def chunks(spec: ClusterSpec, cat: str) -> dict[str, tuple[int, ...]]:
    """Worker -> the catalog's chunks there."""
    with connect(spec.czar) as czar:
        rows = czar.execute(
            "SELECT worker, array_agg(chunk_id ORDER BY chunk_id) FROM qserv_meta.placement"
            " WHERE catalog = %s GROUP BY worker",
            (cat,),
        ).fetchall()
    return {w: tuple(c) for w, c in rows}


def record(spec: ClusterSpec, text: str) -> QueryInfo:
    """The newest recorded query with this text."""
    found = [q for q in list_queries(spec, active_only=False, limit=50) if q.text == text]
    assert found, text
    return found[0]


def merge_tables(spec: ClusterSpec) -> list[str]:
    with connect(spec.czar) as czar:
        rows = czar.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'qserv_result'"
        ).fetchall()
    return [r[0] for r in rows]


def busy_sessions(spec: ClusterSpec, query_id: int) -> int:
    """Statements still running for the query anywhere."""
    return sum(
        r[0]
        for r in worker_rows(
            spec,
            "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle'"
            f" AND starts_with(query, '{tracking.tag(query_id)}')",
        )
    )


def test_count_matches_the_total(
    spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]], release: Path
) -> None:
    plan = ExecPlan(
        worker_sql=f"SELECT count(*) AS n FROM {cat}.object WHERE chunk_id = ANY({{chunks}})",
        merge_sql="SELECT sum(n)::bigint AS n FROM {partials}",
        chunks=chunks,
    )
    seen: list[tuple[int, int]] = []
    text = f"count {uuid.uuid4()}"
    result = execute(
        spec, plan, text=text, lang="sql", owner="me", batch_chunks=4, on_progress=
        lambda d, t: seen.append((d, t)),
    )  # fmt: skip
    total = plan.total_chunks
    assert result.table.column("n").to_pylist() == [read_table(release / "Object").num_rows]
    assert result.table.schema.field("n").type == pa.int64()
    assert result.chunks == total and not result.truncated
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == sum(-(-len(c) // 4) for c in chunks.values())
    info = record(spec, text)
    assert (info.id, info.status, info.chunks_done, info.chunks_total) == (
        result.query_id, "completed", total, total,
    )  # fmt: skip
    assert (info.rows, info.owner, info.lang, info.error) == (1, "me", "sql", None)
    assert f"q{result.query_id}" not in merge_tables(spec)


def test_order_by_limit(spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]]) -> None:
    plan = ExecPlan(
        worker_sql=f"SELECT objectid, coord_ra FROM {cat}.object WHERE chunk_id = ANY({{chunks}})"
        " ORDER BY coord_ra DESC, objectid LIMIT 7",
        merge_sql="SELECT objectid, coord_ra FROM {partials} ORDER BY coord_ra DESC, objectid"
        " LIMIT 7",
        chunks=chunks,
        limit=7,
    )
    result = execute(spec, plan, batch_chunks=3, per_worker=3)
    every = worker_rows(spec, f"SELECT objectid, coord_ra FROM {cat}.object")
    expected = sorted(every, key=lambda r: (-r[1], r[0]))[:7]
    assert list(zip(*result.table.to_pydict().values(), strict=True)) == expected


def test_concatenate_with_limit_stops_early(
    spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]]
) -> None:
    plan = ExecPlan(
        worker_sql=f"SELECT objectid FROM {cat}.object WHERE chunk_id = ANY({{chunks}}) LIMIT 5",
        merge_sql="SELECT objectid FROM {partials} LIMIT 5",
        chunks=chunks,
        limit=5,
        concatenate=True,
    )
    text = f"early {uuid.uuid4()}"
    result = execute(spec, plan, text=text, batch_chunks=1, per_worker=1)
    assert result.table.num_rows == 5
    total = plan.total_chunks
    assert total > 20
    assert result.chunks == record(spec, text).chunks_done < total // 2
    # without the early stop every batch runs
    full = execute(spec, ExecPlan(**{**plan.__dict__, "concatenate": False}), batch_chunks=1)
    assert full.table.num_rows == 5 and full.chunks == total


def test_max_rows_overflow(spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]]) -> None:
    plan = ExecPlan(
        worker_sql=f"SELECT objectid FROM {cat}.object WHERE chunk_id = ANY({{chunks}})",
        merge_sql="SELECT objectid FROM {partials} ORDER BY objectid",
        chunks=chunks,
    )
    text = f"overflow {uuid.uuid4()}"
    cut = execute(spec, plan, text=text, max_rows=100)
    every = sorted(r[0] for r in worker_rows(spec, f"SELECT objectid FROM {cat}.object"))
    assert cut.truncated and cut.table.column(0).to_pylist() == every[:100]
    info = record(spec, text)
    assert info.truncated and info.rows == 100
    whole = execute(spec, plan, max_rows=len(every))
    assert not whole.truncated and whole.table.num_rows == len(every)
    assert execute(spec, plan).table.num_rows == len(every)


def test_arrow_types_nulls_and_metadata(
    spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]]
) -> None:
    worker_sql = (
        "SELECT objectid, coord_ra, coord_raerr, detect_isprimary, refband,"
        " 'tract ' || tract AS label, CASE WHEN objectid % 3 = 0 THEN NULL ELSE coord_dec END"
        " AS maybe, round(coord_ra::numeric, 3) AS num, 7::smallint AS small, tract"
        f" FROM {cat}.object WHERE chunk_id = ANY({{chunks}})"
    )
    plan = ExecPlan(worker_sql, "SELECT * FROM {partials} ORDER BY objectid", chunks)
    table = execute(spec, plan).table
    expected = {
        "objectid": pa.int64(), "coord_ra": pa.float64(), "coord_raerr": pa.float32(),
        "detect_isprimary": pa.bool_(), "refband": pa.string(), "label": pa.string(),
        "maybe": pa.float64(), "num": pa.float64(), "small": pa.int16(), "tract": pa.int32(),
    }  # fmt: skip
    assert {f.name: f.type for f in table.schema} == expected
    raw = sorted(worker_rows(spec, f"SELECT objectid, coord_dec, refband, tract FROM {cat}.object"))
    ids = table.column("objectid").to_pylist()
    assert ids == [r[0] for r in raw]
    assert table.column("maybe").null_count == sum(1 for i in ids if i % 3 == 0) > 0
    assert table.column("maybe").to_pylist() == [None if r[0] % 3 == 0 else r[1] for r in raw]
    assert table.column("refband").to_pylist() == [r[2] for r in raw]
    assert table.column("label").to_pylist() == [f"tract {r[3]}" for r in raw]
    ra = table.column("coord_ra").to_pylist()
    assert table.column("num").to_pylist() == pytest.approx([round(x, 3) for x in ra], abs=1e-9)
    # a NULL-only column keeps its type; names and metadata come from the plan
    columns = (
        ResultColumn("objectId", ucd="meta.id;meta.main", description="Object id"),
        ResultColumn("ra", unit="deg", ucd="pos.eq.ra", datatype="double"),
        ResultColumn("nothing"),
    )
    plan = ExecPlan(
        f"SELECT objectid, coord_ra, NULL::real AS nothing FROM {cat}.object"
        " WHERE chunk_id = ANY({chunks})",
        "SELECT * FROM {partials} ORDER BY objectid LIMIT 3",
        chunks,
        columns=columns,
    )
    table = execute(spec, plan).table
    assert table.schema.names == ["objectId", "ra", "nothing"]
    assert table.column("nothing").type == pa.float32() and table.column("nothing").null_count == 3
    ra_field = table.schema.field("ra")
    assert ra_field.metadata == {
        b"unit": b"deg",
        b"ucd": b"pos.eq.ra",
        b"description": b"",
        b"datatype": b"double",
    }
    assert table.schema.field("objectId").metadata[b"description"] == b"Object id"


def test_worker_error_names_the_worker(
    spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]]
) -> None:
    bad_worker = sorted(chunks)[-1]
    bad_chunk = chunks[bad_worker][0]
    plan = ExecPlan(
        f"SELECT objectid / (chunk_id - {bad_chunk})::int AS x FROM {cat}.object"
        " WHERE chunk_id = ANY({chunks})",
        "SELECT count(*) FROM {partials}",
        chunks,
    )
    text = f"error {uuid.uuid4()}"
    with pytest.raises(QuerySqlError) as caught:  # the query's error, not the worker's
        execute(spec, plan, text=text, batch_chunks=2)
    message = str(caught.value)
    assert message.startswith(f"the query failed in PostgreSQL on worker {bad_worker}: division")
    assert caught.value.http_status == 400 and caught.value.sqlstate == "22012"
    info = record(spec, text)
    assert info.status == "failed" and info.error == message
    assert f"q{info.id}" not in merge_tables(spec)
    assert busy_sessions(spec, info.id) == 0
    # an error in the SQL itself, found when the columns are learnt
    with pytest.raises(QuerySqlError, match=r"on worker \w+: column \"nope\" does not exist"):
        execute(spec, ExecPlan(f"SELECT nope FROM {cat}.object", "SELECT 1", chunks))


def test_timeout(spec: ClusterSpec) -> None:
    names = [w.name for w in spec.workers]
    plan = ExecPlan(
        SLEEP % 20, "SELECT count(*) FROM {partials}", {names[0]: (1, 2), names[1]: (3,)}
    )
    text = f"timeout {uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="time limit"):
        execute(spec, plan, text=text, timeout_s=1)
    assert time.monotonic() - started < 8
    info = record(spec, text)
    assert info.status == "failed" and "time limit" in (info.error or "")
    assert busy_sessions(spec, info.id) == 0
    assert f"q{info.id}" not in merge_tables(spec)
    # the whole execution is bounded too, not only each statement
    many = {names[0]: tuple(range(1, 9))}
    plan = ExecPlan(SLEEP % 0.4, "SELECT count(*) FROM {partials}", many)
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        execute(spec, plan, timeout_s=1, batch_chunks=1, per_worker=1)
    assert time.monotonic() - started < 3


def test_replicated_only(spec: ClusterSpec, cat: str, release: Path) -> None:
    plan = ExecPlan(
        f"SELECT count(*) AS n, {{chunks}} AS chunks FROM {cat}.ccdvisit",
        "SELECT n, cardinality(chunks) AS c FROM {partials}",
        replicated_worker=spec.workers[-1].name,
    )
    result = execute(spec, plan)
    assert result.table.to_pylist() == [{"n": read_table(release / "CcdVisit").num_rows, "c": 0}]
    assert result.chunks == 0


def test_no_chunks(spec: ClusterSpec, cat: str) -> None:
    plan = ExecPlan(
        f"SELECT count(*) AS n FROM {cat}.object WHERE chunk_id = ANY({{chunks}})",
        "SELECT coalesce(sum(n), 0)::bigint AS n FROM {partials}",
    )
    result = execute(spec, plan)
    assert result.table.column("n").to_pylist() == [0] and result.chunks == 0


def test_concurrent_executions(
    spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]]
) -> None:
    ids = [r[0] for r in worker_rows(spec, f"SELECT objectid FROM {cat}.object")]
    expected = {k: sum(1 for i in ids if i % 8 == k) for k in range(8)}
    got: dict[int, int] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        plan = ExecPlan(
            f"SELECT count(*) AS n FROM {cat}.object WHERE chunk_id = ANY({{chunks}})"
            f" AND objectid % 8 = {k}",
            "SELECT sum(n)::bigint AS n FROM {partials}",
            chunks,
        )
        try:
            got[k] = execute(spec, plan, batch_chunks=3).table.column("n")[0].as_py()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected


@pytest.mark.parametrize("password", [True, False])
def test_workers_are_read_as_the_reader_role(spec: ClusterSpec, password: bool) -> None:
    """With a reader password the role logs in; without, the admin session SETs ROLE."""
    use = spec if password else dataclasses.replace(spec, reader_password=None)
    plan = ExecPlan(
        "SELECT current_user::text AS who, current_setting('transaction_read_only') AS ro",
        "SELECT * FROM {partials}",
        replicated_worker=spec.workers[0].name,
    )
    assert execute(use, plan).table.to_pylist() == [{"who": spec.reader_user, "ro": "on"}]


def test_unreachable_worker(spec: ClusterSpec) -> None:
    dsn = make_conninfo(spec.workers[0].dsn, port=1)  # nothing listens there
    dead = Instance(spec.workers[0].name, dsn)
    broken = dataclasses.replace(spec, workers=(dead, *spec.workers[1:]))
    plan = ExecPlan(SLEEP % 0, "SELECT count(*) FROM {partials}", {dead.name: (1,)})
    text = f"unreachable {uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(InstanceUnreachable, match=f"cannot connect to {dead.name}"):
        execute(broken, plan, text=text)
    assert time.monotonic() - started < 5
    info = record(spec, text)
    assert info.status == "failed" and f"cannot connect to {dead.name}" in (info.error or "")


@pytest.mark.parametrize("batch_chunks", [1, 1000], ids=["batches", "one statement"])
def test_a_slow_statement_on_a_live_worker_is_not_given_up(
    spec: ClusterSpec, cat: str, chunks: dict[str, tuple[int, ...]], batch_chunks: int
) -> None:
    """Past the batch deadline a worker that still answers a new session is slow, not
    hung: its statement goes on (each batch here sleeps for three deadlines)."""
    from qserv_py.ops.health import WorkerState, health

    patient = dataclasses.replace(spec, settings={**spec.settings, "batch_deadline_s": 0.5})
    worker = sorted(chunks)[0]
    some = {worker: chunks[worker][:2]}
    plan = ExecPlan(
        f"SELECT count(*) AS n FROM {cat}.object, pg_sleep(1.5)"
        " WHERE chunk_id = ANY({chunks})",
        "SELECT sum(n)::bigint AS n FROM {partials}",
        some,
    )
    got = execute(patient, plan, batch_chunks=batch_chunks).table.column("n")[0].as_py()
    with connect(spec.worker(worker)) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {cat}.object WHERE chunk_id = ANY(%s)", (list(some[worker]),)
        ).fetchone()
    assert row is not None and got == row[0] > 0
    assert health(patient).state(worker) is WorkerState.UP


def test_worker_settings_hold_for_their_plan_only(
    spec: ClusterSpec, chunks: dict[str, tuple[int, ...]]
) -> None:
    """A plan's planner settings reach its worker statements, and the pooled sessions
    lose them before the next plan runs there."""
    sql = "SELECT DISTINCT current_setting('enable_mergejoin') AS m FROM unnest({chunks}) AS c"
    plan = ExecPlan(worker_sql=sql, merge_sql="SELECT DISTINCT m FROM {partials}", chunks=chunks)
    tuned = dataclasses.replace(plan, worker_settings=(("enable_mergejoin", "off"),))
    for run, want in ((tuned, "off"), (plan, "on"), (tuned, "off"), (plan, "on")):
        assert execute(spec, run, per_worker=1).table.column("m").to_pylist() == [want]
