"""Row values inside a result column (found by bench/fuzz.py, issue 13): a CASE or
COALESCE of rows made a merge-table column of type record, which the czar refused
('has pseudo-type record') as a 500; now a 400 that says what to do. Rows compared
(``(a, b) = (1, 2)``, ``IN``) stay allowed."""

from __future__ import annotations

import pytest

from qserv_py.client import Client
from qserv_py.errors import QueryRefused


@pytest.mark.parametrize(
    "column",
    [
        "CASE WHEN coord_ra > 0 THEN (1, 2) END",
        "COALESCE((1, 2), (3, 4))",
        "max((coord_ra, 2))",
    ],
)
def test_a_row_value_in_a_result_column_is_refused(client: Client, column: str) -> None:
    with pytest.raises(QueryRefused, match="row value") as info:
        client.plan(f"SELECT {column} FROM Object LIMIT 2", "postgresql")
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    "text",
    [
        "SELECT objectId FROM Object ORDER BY (350, -10, 10, 15) LIMIT 2",
        "SELECT objectId FROM Object ORDER BY COALESCE((1, 2), (3, 4)) LIMIT 2",
        "SELECT COUNT(*) FROM Object GROUP BY (coord_ra, coord_dec)",
    ],
)
def test_a_row_value_as_a_sort_or_group_key_is_refused(client: Client, text: str) -> None:
    """(bench/fuzz.py: ``ORDER BY (350, -10, 10, 15)`` was the same 500, and the next
    request on its connection was dropped)"""
    with pytest.raises(QueryRefused, match="row value") as info:
        client.plan(text, "postgresql")
    assert info.value.http_status == 400


def test_compared_rows_run(client: Client) -> None:
    text = (
        "SELECT objectId, (objectId, 1) = (objectId, 1) AS same, "
        "(objectId, 2) IN ((objectId, 2)) AS listed FROM Object ORDER BY objectId LIMIT 2"
    )
    rows = client.query(text, "postgresql").to_pylist()
    assert len(rows) == 2 and all(r["same"] and r["listed"] for r in rows)
