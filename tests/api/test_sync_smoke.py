"""The skeleton answers: a sync query and a DALI error."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_sync_error_is_a_dali_votable(api: TestClient) -> None:
    response = api.get("/tap/sync", params={"REQUEST": "doQuery", "LANG": "ADQL"})
    assert response.status_code == 400
    assert 'name="QUERY_STATUS" value="ERROR"' in response.text
    assert "QUERY is missing" in response.text


def test_unknown_table_names_it(api: TestClient) -> None:
    response = api.post(
        "/tap/sync", data={"request": "doQuery", "lang": "ADQL", "query": "SELECT * FROM Nope"}
    )
    assert response.status_code == 400, response.text
    assert "nope" in response.text.lower()
