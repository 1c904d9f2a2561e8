"""Parsing the three query languages: dialects, geometry nodes, and errors with a caret."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from qserv_py import errors
from qserv_py.errors import QueryError, QueryParseError
from qserv_py.query import geometry
from qserv_py.query.normalize import normalize
from qserv_py.query.parse import parse
from tests.query.test_normalize import FIXTURES, Case, read_cases

INVALID = read_cases(FIXTURES / "parse__invalid.sql")


def select(text: str, lang: str) -> exp.Select:
    tree = parse(text, lang)
    assert isinstance(tree, exp.Select)
    return tree


@pytest.mark.parametrize(
    "lang", ["adql", "ADQL", "ADQL-2.0", "adql-2.1", "PostgreSQL", "postgres", "pg", "Qserv"]
)
def test_language_names(lang: str) -> None:
    assert isinstance(parse("SELECT 1 AS x FROM t", lang), exp.Select)


def test_unknown_language() -> None:
    with pytest.raises(QueryError, match="unknown query language 'sql92'"):
        parse("SELECT 1", "sql92")


@pytest.mark.parametrize("case", INVALID, ids=[f"{c.lang}: {c.title}" for c in INVALID])
def test_invalid(case: Case) -> None:
    with pytest.raises(errors.QservError) as info:
        parse(case.query, case.lang)
    error = info.value
    assert type(error).__name__ == case.error
    assert case.message in str(error)
    if isinstance(error, QueryParseError):
        assert case.at is not None, "a syntax error case needs its '-- at: line:column'"
        assert (error.line, error.column) == case.at
        *_, source, caret = str(error).splitlines()
        assert caret.index("^") == source.index(source.strip()) + error.column - 1


def test_the_caret_is_under_the_offending_character() -> None:
    text = "SELECT ra\nFROM Object\nWHERE mag = = 20"
    with pytest.raises(QueryParseError) as info:
        parse(text, "adql")
    error = info.value
    assert (error.line, error.column) == (3, 13)
    message, source, caret = str(error).splitlines()
    assert message == "syntax error: expected an expression, got '=' (line 3, column 13)"
    assert source == "  WHERE mag = = 20"
    assert caret == "  " + " " * 12 + "^"
    assert text.splitlines()[error.line - 1][error.column - 1 :] == "= 20"


def test_the_caret_after_the_end() -> None:
    with pytest.raises(QueryParseError) as info:
        parse("SELECT ra FROM t WHERE ra >", "postgresql")
    assert info.value.column == len("SELECT ra FROM t WHERE ra >") + 1
    assert str(info.value).endswith(" " * 29 + "^")


def test_top_is_a_limit() -> None:
    tree = parse("SELECT DISTINCT TOP 7 ra FROM t ORDER BY ra OFFSET 3", "adql")
    assert tree.args["limit"].expression.name == "7"
    assert tree.args["offset"].expression.name == "3"
    assert tree.args["distinct"] is not None


def test_adql_and_qserv_parse_geometry_into_nodes() -> None:
    adql = parse(
        "SELECT 1 FROM t WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE(1, 2, 3)) = 1", "adql"
    )
    contains = adql.find(geometry.Contains)
    assert contains is not None
    assert isinstance(contains.args["point"], geometry.Point)
    qserv = parse("SELECT 1 FROM t WHERE scisql_s2PtInCircle(ra, decl, 1, 2, 3) = 1", "qserv")
    assert isinstance(qserv.find(geometry.Contains), geometry.Contains)
    assert isinstance(qserv.find(geometry.Circle), geometry.Circle)


def test_postgresql_leaves_geometry_to_normalize() -> None:
    tree = parse("SELECT scisql_angSep(a, b, c, d), point(a, b) FROM t", "postgresql")
    assert tree.find(geometry.Distance) is None
    names = {a.name.lower() for a in tree.find_all(exp.Anonymous)}
    assert names == {"scisql_angsep", "point"}


def test_a_malformed_geometry_call_is_left_for_normalize() -> None:
    tree = parse("SELECT 1 FROM t WHERE CONTAINS(POINT(ra), CIRCLE(1, 2, 3)) = 1", "qserv")
    assert {a.name for a in tree.find_all(exp.Anonymous)} == {"CONTAINS", "POINT"}
    with pytest.raises(QueryError, match="POINT takes 2 arguments, got 1"):
        normalize(tree)


def test_logarithms() -> None:
    assert isinstance(select("SELECT LOG(x) FROM t", "adql").selects[0], exp.Ln)
    assert isinstance(select("SELECT LOG(x)", "qserv").selects[0], exp.Ln)
    assert isinstance(select("SELECT LOG(x)", "postgresql").selects[0], exp.Log)


def test_identifiers_are_quoted_as_written() -> None:
    adql = select('SELECT "Mixed", plain FROM t', "adql")
    qserv = select("SELECT `Mixed`, plain FROM t", "qserv")
    for tree in (adql, qserv):
        mixed, plain = (c.this for c in tree.selects)
        assert (mixed.name, mixed.quoted) == ("Mixed", True)
        assert (plain.name, plain.quoted) == ("plain", False)


def test_the_dialects_are_registered_with_sqlglot() -> None:
    tree = sqlglot.parse_one("SELECT TOP 1 ra FROM t", read="adql")
    assert tree.sql("postgres") == "SELECT ra FROM t LIMIT 1"
    qserv = sqlglot.parse_one("SELECT scisql_fluxToAbMag(f)", read="qserv")
    assert isinstance(qserv.find(geometry.FluxToAbMag), geometry.FluxToAbMag)
