"""Bridges between the query tree and the sky: constant values, geometry node arguments,
and the :mod:`qserv_py.sky.regions` region a constant geometry node describes."""

from __future__ import annotations

from sqlglot import exp

from qserv_py.query import geometry as geo
from qserv_py.query import params
from qserv_py.sky.regions import Box, Cone, Ellipse, LonLatBox, Polygon, Region


def arguments(node: exp.Expression) -> list[exp.Expression]:
    """A node's arguments in declaration order, lists flattened."""
    out: list[exp.Expression] = []
    for key in type(node).arg_types:
        value = node.args.get(key)
        if isinstance(value, list):
            out.extend(value)
        elif isinstance(value, exp.Expression):
            out.append(value)
    return out


#: integers up to this size are exact as floats
_EXACT = 2**53


def constant(node: exp.Expression) -> float | None:
    """The value of a constant numeric expression (literals, signs, arithmetic), else None.

    >>> import sqlglot
    >>> constant(sqlglot.parse_one("-(1 + 2) * 3 / 60.0"))
    -0.15
    """
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(params.text(node))
    if isinstance(node, exp.Paren):
        return constant(node.this)
    if isinstance(node, exp.Neg):
        value = constant(node.this)
        return None if value is None else -value
    if isinstance(node, exp.Cast):
        return constant(node.this)
    ops = {
        exp.Add: float.__add__,
        exp.Sub: float.__sub__,
        exp.Mul: float.__mul__,
        exp.Div: float.__truediv__,
    }
    for kind, op in ops.items():
        if isinstance(node, kind):
            a, b = constant(node.this), constant(node.expression)
            if a is None or b is None or (kind is exp.Div and b == 0):
                return None
            return op(a, b)
    return None


def integer_constant(node: exp.Expression) -> int | None:
    """The exact value of an integer constant, else None: an integer literal (with signs
    and parentheses) read as the integer it spells (a 64-bit id is beyond a float's 53
    bits), or another constant expression whose value is an integer a float holds
    exactly.

    >>> import sqlglot
    >>> integer_constant(sqlglot.parse_one("-(1651589610221862935)"))
    -1651589610221862935
    >>> integer_constant(sqlglot.parse_one("1651589610221862935 + 0")) is None
    True
    >>> integer_constant(sqlglot.parse_one("1e3")), integer_constant(sqlglot.parse_one("2.5"))
    (1000, None)
    """
    if isinstance(node, exp.Paren):
        return integer_constant(node.this)
    if isinstance(node, exp.Neg):
        value = integer_constant(node.this)
        return None if value is None else -value
    if isinstance(node, exp.Literal) and not node.is_string:
        text = params.text(node)
        if text.isdigit():
            return int(text)
    number = constant(node)
    if number is None or not number.is_integer() or abs(number) > _EXACT:
        return None
    return int(number)


def region_of(node: exp.Expression) -> Region | None:
    """The region a geometry node with constant arguments describes (else None)."""
    values = [constant(a) for a in arguments(node)]
    if any(v is None for v in values):
        return None
    v: list[float] = [float(x) for x in values if x is not None]
    if isinstance(node, geo.Circle):
        return Cone(*v)
    if isinstance(node, geo.LonLatBox):
        return LonLatBox(*v)
    if isinstance(node, geo.AdqlBox):
        return Box(*v)
    if isinstance(node, geo.Ellipse):
        return Ellipse(*v)
    if isinstance(node, geo.S2CPolygon):
        return geo.s2cpoly_region(v)
    if isinstance(node, geo.Polygon):
        return Polygon(tuple(zip(v[0::2], v[1::2], strict=True)))
    return None
