"""Hostile and careless input over HTTP (issue 13): each finding answered 400 with a DALI
error document (TAP) or JSON (REST) that says what is wrong, never 500 or 502, and the
keep-alive connection serves the next request."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests.api.conftest import Served

DEEP = "SELECT " + "(" * 60 + "1" + ")" * 60 + " FROM Object"


def _sync(api: TestClient, query: str, lang: str = "ADQL", **extra: object) -> httpx.Response:
    data = {"REQUEST": "doQuery", "LANG": lang, "QUERY": query, **extra}
    return api.post("/tap/sync", data=data)


def _dali_error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert 'name="QUERY_STATUS" value="ERROR"' in response.text
    return response.text


def test_each_finding_is_a_400_with_a_dali_error(api: TestClient) -> None:
    findings = {
        DEEP: "max_query_nesting",
        "SELECT 'a\x00b' FROM Object": "NUL character",
        "SELECT TOP 10 FROM Object": "lists no columns",
        "SELECT TOP 3 1e FROM Object": "is not a number",
        "WITH t AS (SELECT coord_ra AS a, coord_dec AS A FROM Object) SELECT TOP 2 a FROM t": (
            "names column a twice"
        ),
    }
    for query, says in findings.items():
        assert says in _dali_error(_sync(api, query))
    row = _sync(api, "SELECT (coord_ra, coord_dec) FROM qt.Object LIMIT 3", "PostgreSQL")
    assert "row value" in _dali_error(row)


def test_sql_errors_postgresql_reports_are_400_with_its_message(api: TestClient) -> None:
    cases = {
        "SELECT 1/0 FROM qt.Object": ("division by zero", "22012"),
        "SELECT coord_ra - 'x'::text FROM qt.Object LIMIT 1": ("operator does not exist", "42883"),
        # within the planning limits, too deep for PostgreSQL's own stack (class 54)
        f"SELECT '{'[' * 400_000}{']' * 400_000}'::jsonb FROM qt.Object LIMIT 1": (
            "stack depth limit exceeded",
            "54001",
        ),
    }
    for query, (message, sqlstate) in cases.items():
        text = _dali_error(_sync(api, query, "PostgreSQL"))
        assert message in text and f"SQLSTATE {sqlstate}" in text
    rest = api.post(
        "/api/v1/query", json={"query": "SELECT 1/0 FROM qt.Object", "lang": "postgresql"}
    )
    assert rest.status_code == 400
    assert rest.json()["error"] == "QuerySqlError"
    assert "division by zero" in rest.json()["message"]


def test_reserved_word_names_run(api: TestClient) -> None:
    query = (
        'WITH "order" AS (SELECT coord_ra AS "group" FROM Object) SELECT TOP 2 "group" FROM "order"'
    )
    response = _sync(api, query, FORMAT="csv")
    assert response.status_code == 200, response.text
    assert response.text.splitlines()[0] == "group"
    assert len(response.text.splitlines()) == 3


def test_bad_values_in_urls_forms_and_uploads(api: TestClient) -> None:
    assert "NUL" in _dali_error(api.get("/tap/async/ab%00c"))
    # a form field over starlette's 1 MiB part limit reaches the planner, which names its
    # own setting
    long_query = "SELECT coord_ra FROM qt.Object WHERE " + " OR ".join(["coord_ra = 1"] * 160_000)
    assert "max_query_chars" in _dali_error(_sync(api, long_query))
    assert _dali_error(api.post("/tap/async", data={"QUERY": "SELECT 1", "RUNID": "a\x00b"}))
    csv = b"a\xff,b\n1,2\n"
    upload = api.post(
        "/tap/sync",
        data={
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "QUERY": "SELECT * FROM TAP_UPLOAD.t",
            "UPLOAD": "t,param:t",
        },
        files={"t": ("t.csv", csv, "text/csv")},
    )
    assert "not UTF-8" in _dali_error(upload)
    wide = ",".join(f"c{i}" for i in range(1_700)) + "\n" + ",".join(["1"] * 1_700) + "\n"
    too_wide = api.post(
        "/tap/sync",
        data={
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "QUERY": "SELECT TOP 1 c1 FROM TAP_UPLOAD.t",
            "UPLOAD": "t,param:t",
        },
        files={"t": ("t.csv", wide.encode(), "text/csv")},
    )
    message = _dali_error(too_wide)
    assert "1600 columns" in message and "the upload t cannot be stored" in message


def test_a_multipart_body_without_boundary_is_a_400(api: TestClient) -> None:
    """Found by the schemathesis run: Starlette's MultiPartException was a 500."""
    for path in ("/tap/sync", "/tap/async", "/api/v1/xmatch"):
        response = api.post(path, content=b"x", headers={"content-type": "multipart/form-data"})
        assert response.status_code == 400, response.text
        assert "invalid form body" in response.text


def test_keep_alive_connection_survives_an_error(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as http:
        data = {"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "csv"}
        bad = http.post("/tap/sync", data={**data, "QUERY": DEEP})
        assert bad.status_code == 400
        first = bad.extensions["network_stream"]
        good = http.post("/tap/sync", data={**data, "QUERY": "SELECT TOP 1 objectId FROM Object"})
        assert good.status_code == 200
        assert good.extensions["network_stream"] is first  # the same connection
