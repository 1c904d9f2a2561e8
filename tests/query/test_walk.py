"""The planner's walks visit the nodes sqlglot's walk visits, in the same order."""

from __future__ import annotations

import doctest

import pytest
from sqlglot import exp

from qserv_py.errors import QservError
from qserv_py.query import walk
from qserv_py.query.normalize import normalize
from qserv_py.query.parse import parse
from tests.query.test_corpus import CASES, Case


def test_doctests() -> None:
    result = doctest.testmod(walk)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_nodes_are_sqlglots_walk(case: Case) -> None:
    try:
        tree = normalize(parse(case.text, case.lang))
    except QservError:
        return  # refused before any walk of ours
    got = walk.nodes(tree)
    want = list(tree.walk())
    assert len(got) == len(want)
    assert all(a is b for a, b in zip(got, want, strict=True))
    found = walk.find_all(tree, exp.Column, exp.Literal)
    expected = list(tree.find_all(exp.Column, exp.Literal))
    assert [id(n) for n in found] == [id(n) for n in expected]
