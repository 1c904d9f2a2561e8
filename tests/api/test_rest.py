"""The REST API: queries in JSON, Arrow and Parquet; catalogs; query tracking and kill;
health; the OpenAPI document."""

from __future__ import annotations

import dataclasses
import io
import math
import socket
import threading
import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.api.routes.query import moc_ascii
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.cluster.stats import catalog_stats
from qserv_py.config import Settings
from qserv_py.errors import QservError
from qserv_py.sky.healpix import order_ipix
from tests.api.conftest import Served
from tests.exec.test_dispatch import busy_sessions

QUERY = (
    "SELECT TOP 40 objectId, coord_ra, coord_dec, g_psfFlux, detect_isPrimary FROM Object "
    "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(40, 5, 20)) = 1 ORDER BY objectId"
)
#: a chunk-local join that runs for tens of seconds on catalog qt (each objectId's 4
#: forced sources, joined six ways)
SLOW = (
    "SELECT COUNT(*) FROM ForcedSource f1 JOIN ForcedSource f2 ON f1.objectId = f2.objectId "
    "JOIN ForcedSource f3 ON f3.objectId = f1.objectId "
    "JOIN ForcedSource f4 ON f4.objectId = f1.objectId "
    "JOIN ForcedSource f5 ON f5.objectId = f1.objectId "
    "JOIN ForcedSource f6 ON f6.objectId = f1.objectId"
)


def _plain(table: pa.Table) -> pa.Table:
    """The table without schema-level metadata (query id, truncated), fields kept."""
    return table.replace_schema_metadata(None)


def _json_rows(table: pa.Table) -> list[list[object]]:
    rows = [list(r.values()) for r in table.to_pylist()]
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in r] for r in rows]


# --- POST /api/v1/query ------------------------------------------------------------------------


def test_json_answer_equals_the_client_result(api: TestClient, client: Client) -> None:
    expected = client.query(QUERY)
    response = api.post("/api/v1/query", json={"query": QUERY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert [c["name"] for c in body["columns"]] == expected.column_names
    for column, field in zip(body["columns"], expected.schema, strict=True):
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        assert column["unit"] == meta["unit"] and column["ucd"] == meta["ucd"]
        assert column["description"] == meta["description"] and column["datatype"]
    assert body["columns"][1]["unit"] == "deg" and body["columns"][0]["datatype"] == "long"
    assert body["rows"] == _json_rows(expected) and len(body["rows"]) == 40
    assert body["truncated"] is False and body["query_id"] > 0 and body["seconds"] > 0


def test_nan_becomes_null_in_json(api: TestClient) -> None:
    text = "SELECT objectId, CAST('NaN' AS DOUBLE PRECISION) AS x FROM Object LIMIT 3"
    response = api.post("/api/v1/query", json={"query": text, "lang": "postgresql"})
    assert response.status_code == 200, response.text
    assert "NaN" not in response.text
    assert [row[1] for row in response.json()["rows"]] == [None, None, None]


@pytest.mark.parametrize(
    ("request_format", "accept"),
    [
        ("arrow", None),
        ("parquet", None),
        (None, "application/vnd.apache.arrow.stream"),
        (None, "text/html;q=0.9, application/vnd.apache.parquet"),
    ],
)
def test_arrow_and_parquet_answers_equal_the_client_result(
    api: TestClient, client: Client, request_format: str | None, accept: str | None
) -> None:
    expected = client.query(QUERY)
    body: dict[str, object] = {"query": QUERY}
    if request_format:
        body["format"] = request_format
    headers = {"Accept": accept} if accept else {}
    response = api.post("/api/v1/query", json=body, headers=headers)
    assert response.status_code == 200, response.text
    kind = request_format or ("arrow" if "arrow" in (accept or "") else "parquet")
    if kind == "arrow":
        assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(response.content).read_all()
    else:
        assert response.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(response.content))
    assert _plain(table).equals(_plain(expected), check_metadata=True)
    assert table.schema.field("coord_ra").metadata[b"unit"] == b"deg"
    assert table.schema.metadata[b"truncated"] == b"false"
    assert table.schema.metadata[b"query_id"] == response.headers["x-query-id"].encode()
    assert response.headers["x-truncated"] == "false"


def test_format_in_the_body_wins_over_accept(api: TestClient) -> None:
    response = api.post(
        "/api/v1/query",
        json={"query": "SELECT COUNT(*) FROM Object", "format": "json"},
        headers={"Accept": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 200
    assert response.json()["rows"] == [[3000]]


def test_maxrec_truncates(api: TestClient, client: Client) -> None:
    text = "SELECT objectId FROM Object ORDER BY objectId"
    response = api.post("/api/v1/query", json={"query": text, "maxrec": 7})
    body = response.json()
    assert body["truncated"] is True and len(body["rows"]) == 7
    assert body["rows"] == [[v] for v in client.query(text)["objectId"].to_pylist()[:7]]
    whole = api.post("/api/v1/query", json={"query": text, "maxrec": 3000}).json()
    assert whole["truncated"] is False and len(whole["rows"]) == 3000
    # no maxrec: the service's default (5,000 in the tests) applies
    big = api.post("/api/v1/query", json={"query": "SELECT objectId FROM ForcedSource"}).json()
    assert big["truncated"] is True and len(big["rows"]) == 5000
    arrow = api.post("/api/v1/query", json={"query": text, "maxrec": 2, "format": "arrow"})
    assert arrow.headers["x-truncated"] == "true"
    assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 2


def test_bad_query_is_400_json_with_the_engine_message(api: TestClient, client: Client) -> None:
    text = "SELECT nosuchcolumn FROM Object"
    with pytest.raises(QservError) as raised:
        client.query(text)
    response = api.post("/api/v1/query", json={"query": text})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": type(raised.value).__name__, "message": str(raised.value)}
    parse = api.post("/api/v1/query", json={"query": "SELECT FROM WHERE"})
    assert parse.status_code == 400 and parse.json()["error"] == "QueryParseError"


@pytest.mark.parametrize(
    "body",
    [{}, {"query": ""}, {"query": "SELECT 1", "lang": "cobol"}, {"query": "x", "maxrec": -1}],
)
def test_invalid_request_body_is_400(api: TestClient, body: dict[str, object]) -> None:
    response = api.post("/api/v1/query", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "BadRequest"


def test_other_languages(api: TestClient) -> None:
    for lang, text in (
        ("postgresql", "SELECT count(*) FROM qt.object LIMIT 1"),
        ("qserv", "SELECT COUNT(*) FROM qt.Object"),
    ):
        response = api.post("/api/v1/query", json={"query": text, "lang": lang})
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [[3000]]


# --- catalogs ----------------------------------------------------------------------------------


def _cells(moc: str, order: int) -> set[int]:
    """The pixels at ``order`` that a MOC in the ASCII serialisation covers."""
    out: set[int] = set()
    for part in moc.split():
        level_text, _, items = part.partition("/")
        level = int(level_text)
        for item in filter(None, items.split(",")):
            first, _, last = item.partition("-")
            for ipix in range(int(first), int(last or first) + 1):
                shift = 2 * (order - level)
                out.update(range(ipix << shift, (ipix + 1) << shift))
    return out


def test_moc_of_random_layouts_covers_exactly_their_cells() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        # a random set of disjoint cells: split random cells of order 0 down a few times
        cells = [(0, p) for p in range(12)]
        for _ in range(int(rng.integers(0, 40))):
            order, ipix = cells.pop(int(rng.integers(len(cells))))
            if order < 5:
                cells += [(order + 1, 4 * ipix + i) for i in range(4)]
            else:
                cells.append((order, ipix))
        keep = [c for c in cells if rng.random() < 0.6]
        uniq = [4 * 4**o + p for o, p in keep]
        moc, fraction, finest = moc_ascii(uniq)
        expected: set[int] = set()
        for o, p in keep:
            expected.update(range(p << 2 * (5 - o), (p + 1) << 2 * (5 - o)))
        assert _cells(moc, 5) == expected
        assert fraction == pytest.approx(len(expected) / (12 * 4**5))
        assert finest == (max(o for o, _ in keep) if keep else None)
        for part in moc.split():  # normalised: never four siblings of one parent
            level = int(part.partition("/")[0])
            pixels = _cells(part, level)
            assert level == 0 or not any(
                all(4 * (p >> 2) + i in pixels for i in range(4)) for p in pixels
            )


def test_catalogs(api: TestClient, spec: ClusterSpec) -> None:
    response = api.get("/api/v1/catalogs")
    assert response.status_code == 200, response.text
    by_name = {c["name"]: c for c in response.json()}
    qt = by_name["qt"]
    assert qt == api.get("/api/v1/catalogs/qt").json()
    stats = catalog_stats(spec, "qt")
    tables = {t["name"]: t for t in qt["tables"]}
    assert list(tables) == [t.name for t in stats.tables]
    for t in stats.tables:
        assert (tables[t.name]["rows"], tables[t.name]["chunks"]) == (t.rows, t.chunks)
        assert tables[t.name]["kind"] == t.kind
    assert tables["Object"]["rows"] == 3000 and tables["Object"]["overlap_rows"] > 0
    ra = next(c for c in tables["Object"]["columns"] if c["name"] == "coord_ra")
    assert ra["unit"] == "deg" and ra["ucd"].startswith("pos.eq.ra") and ra["datatype"] == "double"
    coverage = qt["coverage"]
    chunks = {c.chunk_id for c in stats.chunks if c.rows > 0}
    assert coverage["chunks"] == len(chunks)
    finest = int(max(order_ipix(np.array(sorted(chunks)))[0]))
    assert coverage["max_order"] == finest
    expected: set[int] = set()
    for order, ipix in zip(*order_ipix(np.array(sorted(chunks))), strict=True):
        shift = 2 * (finest - int(order))
        expected.update(range(int(ipix) << shift, (int(ipix) + 1) << shift))
    assert _cells(coverage["moc"], finest) == expected
    assert coverage["sky_fraction"] == pytest.approx(len(expected) / (12 * 4**finest))


def test_unknown_catalog_is_404(api: TestClient) -> None:
    response = api.get("/api/v1/catalogs/nosuch")
    assert response.status_code == 404
    assert response.json()["error"] == "UnknownCatalog" and "qt" in response.json()["message"]


# --- queries -----------------------------------------------------------------------------------


def test_list_and_get_queries(api: TestClient) -> None:
    text = "SELECT COUNT(*) FROM Object WHERE coord_dec > 10"
    done = api.post("/api/v1/query", json={"query": text}).json()
    listed = api.get("/api/v1/queries", params={"limit": 50}).json()
    ours = next(q for q in listed if q["id"] == done["query_id"])
    assert ours["text"] == text and ours["status"] == "completed" and ours["owner"] == "rest"
    assert ours["rows"] == 1 and ours["chunks_done"] == ours["chunks_total"] > 0
    assert [q["id"] for q in listed] == sorted((q["id"] for q in listed), reverse=True)
    assert api.get(f"/api/v1/queries/{done['query_id']}").json() == ours
    completed = api.get("/api/v1/queries", params={"status": "completed", "limit": 5}).json()
    assert 0 < len(completed) <= 5 and {q["status"] for q in completed} == {"completed"}
    running = api.get("/api/v1/queries", params={"status": "running"}).json()
    assert all(q["status"] == "running" for q in running)
    assert api.get("/api/v1/queries", params={"status": "bogus"}).status_code == 400


def test_unknown_and_finished_queries(api: TestClient) -> None:
    missing = api.get("/api/v1/queries/987654321")
    assert missing.status_code == 404 and missing.json()["error"] == "UnknownQuery"
    assert api.delete("/api/v1/queries/987654321").status_code == 404
    done = api.post("/api/v1/query", json={"query": "SELECT COUNT(*) FROM Object"}).json()
    again = api.delete(f"/api/v1/queries/{done['query_id']}")
    assert again.status_code == 409 and "already finished (completed)" in again.json()["message"]


def test_kill_a_running_query(served: Served, spec: ClusterSpec) -> None:
    answer: dict[str, httpx.Response] = {}

    def run() -> None:
        answer["r"] = httpx.post(f"{served.url}/api/v1/query", json={"query": SLOW}, timeout=300)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline:
            running = httpx.get(
                f"{served.url}/api/v1/queries", params={"status": "running"}, timeout=120
            )
            found = next((q for q in running.json() if q["text"] == SLOW), None)
            time.sleep(0.1)
        assert found is not None, "the slow query never showed as running"
        while busy_sessions(spec, found["id"]) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert busy_sessions(spec, found["id"]) > 0, "no worker statement ran"
        started = time.monotonic()
        killed = httpx.delete(f"{served.url}/api/v1/queries/{found['id']}", timeout=120)
        assert killed.status_code == 200, killed.text
        assert killed.json()["status"] == "killed"
        thread.join(60)
        assert not thread.is_alive() and time.monotonic() - started < 30
    finally:
        thread.join(300)
    response = answer["r"]
    assert response.status_code == 409 and response.json()["error"] == "QueryKilled"
    assert busy_sessions(spec, found["id"]) == 0
    record = httpx.get(f"{served.url}/api/v1/queries/{found['id']}", timeout=120).json()
    assert record["status"] == "killed" and "killed on request" in record["error"]


# --- health ------------------------------------------------------------------------------------


def test_healthz_all_up(api: TestClient, spec: ClusterSpec) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert body["under_replicated"] == 0 and body["unavailable_chunks"] == 0
    assert [(w["name"], w["state"], w["role"]) for w in body["workers"]] == [
        (w.name, "up", "active") for w in spec.workers
    ]
    names = [i["name"] for i in body["instances"]]
    assert names == [spec.czar.name, *(w.name for w in spec.workers)]
    assert [i["role"] for i in body["instances"]] == ["czar"] + ["worker"] * len(spec.workers)
    for instance in body["instances"]:
        assert instance["up"] and instance["latency_ms"] > 0
        assert instance["version"][:2].isdigit()


def test_healthz_names_an_unreachable_worker(api_settings: Settings, spec: ClusterSpec) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ghost = Instance("ghost", f"host=127.0.0.1 port={port} dbname=x user=x password=x")
    broken = dataclasses.replace(spec, workers=(*spec.workers, ghost))
    with TestClient(create_app(api_settings, broken)) as test_client:
        response = test_client.get("/healthz")
    # a worker that holds no chunk is down: every query can still be answered
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["down"] == ["ghost"]
    down = next(i for i in body["instances"] if i["name"] == "ghost")
    assert not down["up"] and down["latency_ms"] is None and "ghost" in down["error"]
    ghost = next(w for w in body["workers"] if w["name"] == "ghost")
    assert ghost["state"] == "down" and ghost["role"] == "unregistered" and ghost["chunks"] == 0


# --- documentation -----------------------------------------------------------------------------


def test_openapi_and_docs(api: TestClient) -> None:
    document = api.get("/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    for path in (
        "/api/v1/query",
        "/api/v1/catalogs",
        "/api/v1/catalogs/{name}",
        "/api/v1/queries",
        "/api/v1/queries/{query_id}",
        "/healthz",
        "/api/v1/cluster",
        "/api/v1/admin/loads",
        "/api/v1/admin/loads/{load_id}/files",
    ):
        assert path in spec["paths"], path
    request = spec["components"]["schemas"]["QueryRequest"]
    assert set(request["properties"]) == {"query", "lang", "maxrec", "format", "partial"}
    content = spec["paths"]["/api/v1/query"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "application/vnd.apache.arrow.stream"} <= set(content)
    assert "delete" in spec["paths"]["/api/v1/queries/{query_id}"]
    assert spec["paths"]["/api/v1/admin/loads"]["get"]["security"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
