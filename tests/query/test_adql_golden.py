"""Golden files of the ADQL 2.1 grammar check (qserv_py/query/adql_grammar.py).

``adql_golden/valid/<construct>.adql`` must parse and normalize; each
``adql_golden/invalid/<construct>[.<variant>].adql`` must be refused with a
:class:`QueryParseError` whose position and message are in the ``.expected`` sidecar
(``at: line:column`` and ``error: <a fragment of the message>``). Every construct has a
valid and an invalid file. Planning only: no catalog, no worker.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from sqlglot import exp

from qserv_py.errors import QueryParseError
from qserv_py.query import adql_grammar, adql_lexer
from qserv_py.query.normalize import normalize
from qserv_py.query.parse import parse

GOLDEN = Path(__file__).resolve().parent / "adql_golden"
VALID = sorted((GOLDEN / "valid").glob("*.adql"))
INVALID = sorted((GOLDEN / "invalid").glob("*.adql"))


def _construct(path: Path) -> str:
    return path.stem.split(".")[0]


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid(path: Path) -> None:
    tree = normalize(parse(path.read_text(), "adql"))
    assert isinstance(tree, (exp.Select, exp.SetOperation))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid(path: Path) -> None:
    expected = dict(
        line.split(": ", 1) for line in path.with_suffix(".expected").read_text().splitlines()
    )
    text = path.read_text()
    with pytest.raises(QueryParseError) as info:
        parse(text, "adql")
    error = info.value
    assert expected["error"] in str(error)
    line, column = (int(n) for n in expected["at"].split(":"))
    assert (error.line, error.column) == (line, column), str(error)


def test_every_construct_has_a_valid_and_an_invalid_file() -> None:
    valid = {_construct(p) for p in VALID}
    invalid = {_construct(p) for p in INVALID}
    assert valid == invalid and len(valid) >= 25


def test_other_languages_are_not_held_to_adql() -> None:
    """The grammar check is ADQL's: PostgreSQL keeps LIMIT, casts and its comparisons."""
    parse("SELECT ra::float8 FROM t WHERE ra IS DISTINCT FROM 1 LIMIT 5", "postgresql")
    parse("SELECT `ra` FROM t LIMIT 1, 5", "qserv")


def test_doctests() -> None:
    assert doctest.testmod(adql_grammar).failed == 0
    assert doctest.testmod(adql_lexer).failed == 0
