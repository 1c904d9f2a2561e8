"""The types pass gives every node the type sqlglot's annotate_types gives it."""

from __future__ import annotations

import pytest
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

from qserv_py.client import Client
from qserv_py.errors import QservError
from qserv_py.query.check import check_allowed
from qserv_py.query.normalize import normalize
from qserv_py.query.parse import parse
from qserv_py.query.qualify import qualify
from qserv_py.query.types import TYPING, _plain_projections, annotate
from qserv_py.query.units import convert_units
from qserv_py.query.walk import nodes
from tests.query.test_corpus import CASES, Case

EXTRA = [
    Case("star", "SELECT * FROM Object"),
    Case("star_join", "SELECT * FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId"),
    Case("order", "SELECT objectId, coord_ra AS r FROM Object ORDER BY r"),
    Case("same_alias", "SELECT o.objectId FROM Object o, (SELECT 1 AS x) o2", "postgresql"),
    Case("boolean", "SELECT detect_isPrimary FROM Object WHERE detect_isPrimary = 1"),
    Case("units", "SELECT IN_UNIT(coord_ra, 'arcsec') AS a, coord_dec FROM Object"),
]


def _tree(case: Case, client: Client) -> exp.Expression | None:
    try:
        tree = qualify(normalize(parse(case.text, case.lang)), catalogs=client.context.catalogs)
        check_allowed(tree)
        return convert_units(tree, catalogs=client.context.catalogs)
    except QservError:
        return None


def _described(node: exp.Expr) -> tuple[object, ...]:
    kind = node.type
    return (type(node).__name__, repr(kind), node.meta_get("nonnull"))


@pytest.mark.parametrize("case", [*CASES, *EXTRA], ids=[c.name for c in [*CASES, *EXTRA]])
def test_types_are_sqlglots(case: Case, client: Client) -> None:
    ours, theirs = _tree(case, client), _tree(case, client)
    if ours is None or theirs is None:
        return
    annotate(ours, catalogs=client.context.catalogs)
    annotate_types(theirs, schema=client.context.catalogs.schema(), expression_metadata=TYPING)
    assert [_described(n) for n in nodes(ours)] == [_described(n) for n in nodes(theirs)]


def test_star_projections_are_typed_directly(client: Client) -> None:
    tree = _tree(Case("star", "SELECT * FROM Object"), client)
    assert isinstance(tree, exp.Select)
    assert len(_plain_projections(tree)) == len(tree.expressions) > 40
