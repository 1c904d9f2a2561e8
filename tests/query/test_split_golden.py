"""Golden files of the split pass: tests/fixtures/split.sql and split__invalid.sql."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest
import sqlglot

from qserv_py.errors import QueryError
from qserv_py.query import split as split_module
from qserv_py.query.render import to_postgres
from qserv_py.query.split import PARTIALS, split

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _cases(name: str) -> list[tuple[str, str]]:
    text = (FIXTURES / name).read_text()
    blocks = re.split(r"^-- case: ", text, flags=re.M)[1:]
    return [(b.split("\n", 1)[0].strip(), b.split("\n", 1)[1]) for b in blocks]


GOLDEN = _cases("split.sql")
INVALID = _cases("split__invalid.sql")


@pytest.mark.parametrize(("title", "body"), GOLDEN, ids=[t for t, _ in GOLDEN])
def test_split_golden(title: str, body: str) -> None:
    query, rest = body.split("-- worker:\n")
    worker, merge = rest.split("-- merge:\n")
    parts = split(sqlglot.parse_one(query, read="postgres"))
    assert to_postgres(parts.worker) == worker.strip()
    assert to_postgres(parts.merge).replace(PARTIALS, "{partials}") == merge.strip()


@pytest.mark.parametrize(("message", "query"), INVALID, ids=[m for m, _ in INVALID])
def test_split_invalid(message: str, query: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        split(sqlglot.parse_one(query, read="postgres"))


def test_doctests() -> None:
    assert doctest.testmod(split_module).failed == 0


def test_files_are_not_empty() -> None:
    assert len(GOLDEN) >= 10 and len(INVALID) >= 5
