"""The IN_UNIT pass: ``IN_UNIT(column, 'unit')`` becomes ``(column * factor)``.

The factor comes from the column's unit in the catalog schema (astropy units, VOUnit
spelling first). IN_UNIT of an expression, of a column without a unit, to an unknown unit
or to an incompatible one is refused, saying which.

>>> from qserv_py.query.geometry import InUnit
>>> node = InUnit(this=exp.column("ra"), unit=exp.Literal.string("arcsec"))
>>> _convert(node, "deg").sql()
'(ra * 3600.0)'
"""

from __future__ import annotations

import astropy.units as u
from sqlglot import exp

from qserv_py.errors import QueryRefused
from qserv_py.query.geometry import InUnit
from qserv_py.query.qualify import CatalogSet
from qserv_py.query.walk import find_all

#: set on the converted node: the unit its values are in (for the result's metadata)
UNIT_META = "qserv_unit"


def convert_units(tree: exp.Expression, *, catalogs: CatalogSet) -> exp.Expression:
    """Replace every IN_UNIT of ``tree`` (qualified: columns name their table alias)."""
    for node in find_all(tree, InUnit):
        column = node.this
        if not isinstance(column, exp.Column) or not column.table:
            raise QueryRefused(
                f"IN_UNIT({node.this.sql()}, ...) needs a catalog column (whose unit is known), "
                "not an expression; convert the column, then compute"
            )
        source = _table_of(node, column.table)
        unit = ""
        if source is not None and source.args.get("db"):
            catalog = catalogs.catalogs.get(source.args["db"].name)
            if catalog is not None and catalog.has_table(source.name):
                model = catalog.table(source.name)
                if model.has_column(column.name):
                    unit = model.column(column.name).unit
        if not unit:
            raise QueryRefused(
                f"IN_UNIT: column {column.name} has no unit in the catalog schema, so it "
                "cannot be converted"
            )
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
    for fmt in ("vounit", None):
        try:
            return u.Unit(text, format=fmt)
        except ValueError:
            continue
    raise QueryRefused(f"IN_UNIT: unknown unit {text!r}; use a VOUnit such as 'deg' or 'mJy'")


def _convert(node: InUnit, unit: str) -> exp.Expression:
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
