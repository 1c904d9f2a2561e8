"""Hostile and careless query text (issue 13): every finding gets a qserv_py error that
says what is wrong, never a RecursionError, a worker's syntax error or an empty SELECT;
the planning limits name their setting; long AND / OR chains and IN lists plan in time
linear in their length (the trees stay shallow)."""

from __future__ import annotations

import dataclasses

import pytest

from qserv_py.client import Client
from qserv_py.errors import QservError, QueryLimitExceeded, QueryParseError, QueryRefused
from qserv_py.query.guard import PlanLimits, depth
from qserv_py.query.parse import parse
from qserv_py.query.planner import plan


def _refused(client: Client, text: str, lang: str = "adql") -> QservError:
    with pytest.raises(QservError) as info:
        client.plan(text, lang)
    assert info.value.http_status == 400
    return info.value


def test_deep_parentheses_are_a_limit_not_a_recursion_error(client: Client) -> None:
    for text in (
        "SELECT " + "(" * 60 + "1" + ")" * 60 + " FROM Object",
        "SELECT coord_ra FROM Object WHERE objectId = " + "(" * 300 + "1" + ")" * 300,
        "SELECT " + "abs(" * 80 + "coord_ra" + ")" * 80 + " FROM Object",
    ):
        error = _refused(client, text)
        assert isinstance(error, QueryLimitExceeded)
        assert "max_query_nesting" in str(error)
    # nesting within the limit plans
    client.plan("SELECT " + "(" * 20 + "coord_ra" + ")" * 20 + " FROM Object")


def test_nul_characters_are_refused_with_their_place(client: Client) -> None:
    error = _refused(client, "SELECT 'a\x00b' FROM Object")
    assert isinstance(error, QueryParseError)
    assert (error.line, error.column) == (1, 10)
    assert "NUL" in str(error)


@pytest.mark.parametrize("number", ["1e", "1e+", "0x1F", "1_000", "2abc"])
def test_numbers_postgresql_rejects_are_syntax_errors(client: Client, number: str) -> None:
    error = _refused(client, f"SELECT coord_ra FROM Object WHERE coord_ra > {number}")
    assert isinstance(error, QueryParseError)
    assert "is not a number" in str(error)
    client.plan("SELECT coord_ra FROM Object WHERE coord_ra > 1e1 AND coord_dec < .5e-1")


def test_select_without_columns_and_row_values_are_refused(client: Client) -> None:
    assert "lists no columns" in str(_refused(client, "SELECT TOP 10 FROM Object"))
    for text in (
        "SELECT (coord_ra, coord_dec) FROM qt.Object LIMIT 3",
        "SELECT ((coord_ra, coord_dec)) AS p FROM qt.Object LIMIT 3",
    ):
        error = _refused(client, text, "postgresql")
        assert isinstance(error, QueryRefused) and "row value" in str(error)


def test_a_table_name_as_a_value_is_refused(client: Client) -> None:
    """PostgreSQL reads it as the whole row, of a composite type the czar's merge table
    cannot have (the fuzzer found a 500: schema "qt" does not exist)."""
    error = _refused(client, "SELECT o FROM qt.Object o LIMIT 1", "postgresql")
    assert "names a table, not a column" in str(error)
    client.plan("SELECT o.coord_ra AS o FROM qt.Object o ORDER BY o LIMIT 1", "postgresql")


def test_duplicate_cte_column_names_are_refused(client: Client) -> None:
    for text, lang in (
        ("WITH t(a, a) AS (SELECT coord_ra, coord_dec FROM Object) SELECT a FROM t", "postgresql"),
        ("WITH t AS (SELECT coord_ra AS a, coord_dec AS A FROM Object) SELECT a FROM t", "adql"),
    ):  # ADQL's WITH takes no column list
        assert "names column a twice" in str(_refused(client, text, lang))
    # a delimited name differs from the folded one
    client.plan('WITH t AS (SELECT coord_ra AS a, coord_dec AS "A" FROM Object) SELECT a FROM t')


def test_reserved_words_are_quoted_in_generated_sql(client: Client) -> None:
    cte = client.plan(
        'WITH "order" AS (SELECT coord_ra AS "group" FROM Object) SELECT TOP 2 "group" FROM "order"'
    )
    assert 'AS "order"' in cte.worker_sql and '"order"."group"' in cte.worker_sql
    join = client.plan(
        'SELECT TOP 2 o.coord_ra FROM Object AS o JOIN ForcedSource AS "select" '
        'ON o.objectId = "select".objectId'
    )
    assert '"select".chunk_id' in join.worker_sql
    assert " select." not in join.worker_sql


def test_planning_limits_name_their_setting(client: Client) -> None:
    cases = {
        "max_query_chars": (
            PlanLimits(max_chars=200),
            "SELECT coord_ra FROM Object WHERE " + "coord_ra > 1 AND " * 20 + "1=1",
        ),
        "max_query_terms": (
            PlanLimits(max_terms=40),
            "SELECT objectId FROM Object WHERE objectId IN ("
            + ", ".join(str(i) for i in range(30))
            + ")",
        ),
        "max_query_depth": (
            PlanLimits(max_depth=25),
            "SELECT " + " + ".join(["coord_ra"] * 30) + " FROM Object",
        ),
    }
    for setting, (limits, text) in cases.items():
        with pytest.raises(QueryLimitExceeded) as info:
            plan(text, "adql", dataclasses.replace(client.context, limits=limits), oracle=False)
        assert info.value.setting == setting
        assert setting in str(info.value)
        assert info.value.http_status == 400
        plan(text, "adql", client.context, oracle=False)  # within the default limits


def test_long_or_chains_are_balanced(client: Client) -> None:
    """The parser builds an OR chain as deep as it is long: every column's walk up to
    its SELECT then cost the chain's length (4,000 ORs planned in 40 s). Balanced, the
    depth is logarithmic, and the plan reads the same keys."""
    ors = " OR ".join(f"objectId = {i}" for i in range(4_000))
    tree = parse(f"SELECT objectId FROM Object WHERE {ors}", "adql")
    assert depth(tree) < 30
    ids = client.query("SELECT TOP 300 objectId FROM Object").column(0).to_pylist()
    ored = " OR ".join(f"objectId = {i}" for i in ids)
    counted = client.query(f"SELECT COUNT(*) FROM Object WHERE {ored}")
    assert counted.column(0)[0].as_py() == len(set(ids))
    ins = ", ".join(str(i) for i in range(20_000))
    assert depth(parse(f"SELECT objectId FROM Object WHERE objectId IN ({ins})", "adql")) < 12
