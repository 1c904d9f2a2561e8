"""The boolean pass: ADQL has no boolean literals, so TAP clients compare boolean columns
with 1 and 0 (``detect_isPrimary = 1``). PostgreSQL refuses ``boolean = integer``; this
pass writes such a comparison with TRUE or FALSE. It runs after type annotation.

>>> from sqlglot import parse_one
>>> from sqlglot.optimizer.annotate_types import annotate_types
>>> tree = annotate_types(parse_one("SELECT * FROM t WHERE t.p = 1 AND 0 <> t.p"),
...                       schema={"t": {"p": "boolean"}})
>>> compare_booleans(tree).sql("postgres")
'SELECT * FROM t WHERE t.p = TRUE AND FALSE <> t.p'
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.query.walk import find_all

_COMPARISONS = (exp.EQ, exp.NEQ)


def compare_booleans(tree: exp.Expression) -> exp.Expression:
    """Replace the 0 or 1 compared with a boolean column by FALSE or TRUE."""
    for node in find_all(tree, *_COMPARISONS):
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            if (
                isinstance(side, exp.Column)
                and side.type is not None
                and side.type.this is exp.DataType.Type.BOOLEAN
                and isinstance(other, exp.Literal)
                and not other.is_string
                and other.this in ("0", "1")
            ):
                other.replace(exp.Boolean(this=other.this == "1"))
    return tree
