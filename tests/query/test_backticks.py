"""Backticks (issue 13: one passed through to the worker SQL, which PostgreSQL rejected
as a worker error): Qserv SQL reads them as quoted names and the worker SQL quotes in
PostgreSQL's way; ADQL and PostgreSQL refuse them at their place."""

from __future__ import annotations

import pytest

from qserv_py.client import Client
from qserv_py.errors import QueryParseError


def test_backticks_are_names_in_qserv_sql_and_errors_elsewhere(client: Client) -> None:
    planned = client.plan("SELECT `coord_ra` FROM Object LIMIT 1", "qserv")
    assert "`" not in planned.worker_sql and "coord_ra" in planned.worker_sql
    assert client.query("SELECT `coord_ra` FROM Object LIMIT 1", "qserv").num_rows == 1
    for lang, text in (
        ("adql", "SELECT TOP 1 `coord_ra` FROM Object"),
        ("postgresql", "SELECT `coord_ra` FROM Object LIMIT 1"),
    ):
        with pytest.raises(QueryParseError) as info:
            client.plan(text, lang)
        assert info.value.http_status == 400 and "`" in str(info.value)
