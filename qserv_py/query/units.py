"""Units: the IN_UNIT pass, and the unit of a computed result column.

IN_UNIT: ``IN_UNIT(column, 'unit')`` becomes ``(column * factor)``. The factor comes from
the column's unit in the catalog schema (astropy units, VOUnit spelling first). IN_UNIT
of an expression, of a column without a unit, to an unknown unit or to an incompatible
one is refused, saying which.

:func:`expression_unit` gives a computed column the unit that follows from its inputs
where that is unambiguous: DISTANCE is in degrees, AVG/MIN/MAX/SUM/ABS/ROUND/CAST of a
column keep its unit, a sum or difference of the same units keeps it (a bare number
added counts as that unit), a product or quotient of two columns with units gets the
composed unit, scisql's magnitudes are ``mag`` and its fluxes ``nJy``. Anything else —
a column times a number (``DISTANCE(...) * 3600`` is arcsec only by intent), unequal
units added, COUNT, an unknown function — has no unit rather than a wrong one.

>>> from qserv_py.query.geometry import InUnit
>>> node = InUnit(this=exp.column("ra"), unit=exp.Literal.string("arcsec"))
>>> _convert(node, "deg").sql()
'(ra * 3600.0)'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query import geometry as geo
from qserv_py.query.geometry import InUnit
from qserv_py.query.qualify import CatalogSet
from qserv_py.query.walk import find_all

if TYPE_CHECKING:  # astropy.units is imported where a unit is parsed: it is slow to import
    import astropy.units as u

#: set on the converted node: the unit its values are in (for the result's metadata)
UNIT_META = "qserv_unit"


def convert_units(tree: exp.Expression, *, catalogs: CatalogSet) -> exp.Expression:
    """Replace every IN_UNIT of ``tree`` (qualified: columns name their table alias)."""
    for node in find_all(tree, InUnit):

        def column_unit(column: exp.Column, node: exp.Expression = node) -> str:
            source = _table_of(node, column.table) if column.table else None
            if source is not None and source.args.get("db"):
                catalog = catalogs.catalogs.get(source.args["db"].name)
                if catalog is not None and catalog.has_table(source.name):
                    model = catalog.table(source.name)
                    if model.has_column(column.name):
                        return model.column(column.name).unit
            return ""

        value = node.this
        unit = expression_unit(value, column_unit)
        if not unit:
            what = (
                f"column {value.name} has no unit in the catalog schema"
                if isinstance(value, exp.Column)
                else f"the unit of {value.sql()} does not follow from its columns' units "
                "(its terms have no unit or different ones)"
            )
            raise QueryRefused(f"IN_UNIT: {what}, so it cannot be converted")
        node.replace(_convert(node, unit))
    return tree


def _table_of(node: exp.Expression, alias: str) -> exp.Table | None:
    """The table ``alias`` names in the nearest enclosing SELECT that defines it."""
    scope = node.parent_select
    while scope is not None:
        for table in scope.find_all(exp.Table):
            if table.alias_or_name == alias:
                return table
        scope = scope.parent_select if scope.parent is not None else None
    return None


def _parse_unit(text: str) -> u.UnitBase:
    import astropy.units as u

    for fmt in ("vounit", None):
        try:
            return u.Unit(text, format=fmt)
        except ValueError:
            continue
    raise QueryRefused(f"IN_UNIT: unknown unit {text!r}; use a VOUnit such as 'deg' or 'mJy'")


def _convert(node: InUnit, unit: str) -> exp.Expression:
    import astropy.units as u

    target = node.args["unit"].name.strip()
    try:
        factor = _parse_unit(unit).to(_parse_unit(target))
    except u.UnitConversionError:
        raise QueryRefused(
            f"IN_UNIT: cannot convert {node.this.sql()} from {unit} to {target}"
        ) from None
    value = node.this.copy()
    converted: exp.Expression = (
        exp.Paren(this=value)
        if factor == 1
        else exp.Paren(this=exp.Mul(this=value, expression=exp.Literal.number(repr(float(factor)))))
    )
    converted.meta[UNIT_META] = target
    return converted


#: functions whose value has the unit of their (first) argument
_SAME_UNIT: tuple[type[exp.Expression], ...] = (
    exp.Paren, exp.Neg, exp.Abs, exp.Avg, exp.Min, exp.Max, exp.Sum, exp.Round, exp.Floor,
    exp.Ceil, exp.Cast, exp.TryCast, exp.Stddev, exp.StddevPop, exp.StddevSamp,
)  # fmt: skip
#: functions with a unit of their own
_OWN_UNIT: dict[type[exp.Expression], str] = {
    geo.Distance: "deg",
    geo.NanojanskyToAbMag: "mag",
    geo.NanojanskyToAbMagSigma: "mag",
    geo.FluxToAbMag: "mag",
    geo.AbMagToNanojansky: "nJy",
}


def expression_unit(node: exp.Expression, column_unit: Callable[[exp.Column], str]) -> str:
    """The unit of the value of ``node`` ('' when none or not certain); ``column_unit``
    gives a column's unit from the catalog.

    >>> import sqlglot
    >>> units = {"flux": "nJy", "err": "nJy", "ra": "deg"}
    >>> def unit(text):
    ...     return expression_unit(sqlglot.parse_one(text), lambda c: units.get(c.name, ""))
    >>> unit("AVG(flux)"), unit("flux - err + 1"), unit("flux / err"), unit("ra * 3600")
    ('nJy', 'nJy', '', '')
    >>> unit("flux * ra"), unit("COUNT(*)"), unit("CASE WHEN ra > 1 THEN flux END")
    ('deg.nJy', '', 'nJy')
    """
    if node.meta.get(UNIT_META):
        return str(node.meta[UNIT_META])
    if isinstance(node, exp.Column):
        return column_unit(node)
    if isinstance(node, tuple(_OWN_UNIT)):
        return _OWN_UNIT[type(node)]
    if isinstance(node, _SAME_UNIT):
        return expression_unit(node.this, column_unit)
    if isinstance(node, exp.Add | exp.Sub):
        return _same([node.this, node.expression], column_unit, numbers_agree=True)
    if isinstance(node, exp.Mul | exp.Div):
        left = expression_unit(node.this, column_unit)
        right = expression_unit(node.expression, column_unit)
        if not left or not right:
            return ""
        return _compose(left, right, divide=isinstance(node, exp.Div))
    if isinstance(node, exp.Coalesce):
        return _same([node.this, *node.expressions], column_unit, numbers_agree=False)
    if isinstance(node, exp.Case):
        values = [i.args["true"] for i in node.args.get("ifs") or []]
        if node.args.get("default") is not None:
            values.append(node.args["default"])
        values = [v for v in values if not isinstance(v, exp.Null)]
        return _same(values, column_unit, numbers_agree=False)
    return ""


def _same(
    nodes: list[exp.Expression], column_unit: Callable[[exp.Column], str], *, numbers_agree: bool
) -> str:
    """The one unit all of ``nodes`` have ('' if they differ); with ``numbers_agree`` a
    bare number takes the unit of the others."""
    found = set()
    for node in nodes:
        if numbers_agree and isinstance(node, exp.Literal) and not node.is_string:
            continue
        found.add(expression_unit(node, column_unit))
    return found.pop() if len(found) == 1 else ""


def _compose(left: str, right: str, *, divide: bool) -> str:
    import astropy.units as u

    try:
        a, b = _parse_unit(left), _parse_unit(right)
    except QueryRefused:
        return ""
    unit = a / b if divide else a * b
    if unit.physical_type == "dimensionless" or unit == u.dimensionless_unscaled:
        return ""
    try:
        return str(unit.to_string("vounit"))
    except (ValueError, TypeError):
        return str(unit.to_string())
