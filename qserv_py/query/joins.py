"""Bracketed joins → flat joins, right after parsing.

ADQL (``<joined_table> ::= <left_paren> <joined_table> <right_paren>``) and SQL allow a
join in parentheses: ``FROM (Object AS o JOIN Source AS s ON ...)``. sqlglot reads it as
a subquery without a name holding a table with joins, which later passes took for a
derived table (and refused it with an empty name). Joins are left-associative, so a
bracketed join at the start of a FROM item means the same without its parentheses: it is
flattened, and its joins come before the ones that follow it. A bracketed join on the
right of a JOIN (``A LEFT JOIN (B JOIN C ON ...) ON ...``) would change meaning if moved,
and is refused with what to write instead.

>>> from qserv_py.query.parse import parse
>>> tree = parse("SELECT o.a FROM ((t AS o JOIN u ON o.a = u.a) JOIN v USING (a))", "adql")
>>> flatten_joins(tree).sql()
'SELECT o.a FROM t AS o JOIN u ON o.a = u.a JOIN v USING (a)'
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query.walk import find_all


def _bracketed(node: exp.Expr | None) -> bool:
    """A parenthesised join: a subquery without a name around a table with joins."""
    return (
        isinstance(node, exp.Subquery)
        and not node.alias
        and isinstance(node.this, (exp.Table, exp.Subquery))
        and (bool(node.this.args.get("joins")) or _bracketed(node.this))
    )


def _unwrap(node: exp.Subquery) -> tuple[exp.Expression, list[exp.Join]]:
    """The first table of a bracketed join and its joins, in order."""
    inner = node.this
    joins = list(inner.args.get("joins") or [])
    inner.set("joins", None)
    if _bracketed(inner):
        first, before = _unwrap(inner)
        return first, before + joins
    return inner, joins


def flatten_joins(tree: exp.Expression) -> exp.Expression:
    """``tree`` with every bracketed join flattened (in place; returned)."""
    for select in list(find_all(tree, exp.Select)):
        source = select.args.get("from_")
        if source is not None and _bracketed(source.this):
            first, joins = _unwrap(source.this)
            source.set("this", first)
            select.set("joins", joins + list(select.args.get("joins") or []))
        for join in select.args.get("joins") or []:
            if _bracketed(join.this):
                raise QueryRefused(
                    "a join in parentheses on the right of JOIN is not supported: write the "
                    "joins one after the other, as in FROM a JOIN b ON ... JOIN c ON ..."
                )
    return tree
