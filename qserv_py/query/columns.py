"""The result's columns: names as the user expects them (schema spelling, function names
for expressions, unique) and their metadata (unit, UCD, description, datatype; a computed
column the unit that follows from its inputs, :func:`~qserv_py.query.units.expression_unit`).
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.exec.plan import ResultColumn
from qserv_py.query.chunking import PARTITION
from qserv_py.query.context import PlanContext
from qserv_py.query.geometry import Circle, Point
from qserv_py.query.normalize import VALUE_GEOMETRY
from qserv_py.query.units import expression_unit
from qserv_py.query.walk import find_all
from qserv_py.schema.model import Table


def result_columns(
    select: exp.Select, ctx: PlanContext, names: list[str]
) -> tuple[ResultColumn, ...]:
    out = []
    models: dict[str, Table | None] = {}

    def unit_of(column: exp.Column) -> str:
        model = _source_model(select, ctx, column.table, models) if column.table else None
        return model.column(column.name).unit if model and model.has_column(column.name) else ""

    for projection, name in zip(select.expressions, names, strict=True):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        col = None
        if isinstance(inner, exp.Column) and inner.table:
            model = _source_model(select, ctx, inner.table, models)
            if model is not None and model.has_column(inner.name):
                col = model.column(inner.name)
        if isinstance(inner, VALUE_GEOMETRY):
            kind = "point" if isinstance(inner, Point) else "circle"
            if not isinstance(inner, (Point, Circle)):
                kind = "polygon"
            out.append(ResultColumn(name, "deg", datatype=kind))
        elif col is None:
            out.append(ResultColumn(name, expression_unit(inner, unit_of)))
        else:
            out.append(
                ResultColumn(
                    name if not name.startswith("_col") else col.name,
                    col.unit,
                    col.ucd,
                    col.description,
                    col.datatype,
                )
            )
    return tuple(out)


def _source_table(select: exp.Select, alias: str) -> exp.Table | None:
    """The catalog table an alias of ``select`` names (the map is built once per query:
    one walk of the tree per result column made SELECT * of a wide table slow)."""
    tables = select.meta.get("qserv_tables")
    if tables is None:
        tables = {t.alias_or_name: t for t in find_all(select, exp.Table) if t.args.get("db")}
        select.meta["qserv_tables"] = tables
    return tables.get(alias)


def _source_model(
    select: exp.Select, ctx: PlanContext, alias: str, models: dict[str, Table | None]
) -> Table | None:
    """The catalog's model of the table an alias of ``select`` names; ``models`` keeps
    those found (once per alias, not per result column)."""
    if alias not in models:
        source = _source_table(select, alias)
        models[alias] = (
            None
            if source is None
            else ctx.catalogs.catalogs[source.args["db"].name].table(
                source.name.removeprefix(PARTITION)
            )
        )
    return models[alias]


def display_names(select: exp.Select, ctx: PlanContext) -> None:
    """Name each result column as the user expects: a column by its schema spelling, an
    unnamed expression by its function (as PostgreSQL does: count, avg), unique."""
    seen: dict[str, int] = {}
    renamed: dict[str, str] = {}
    models: dict[str, Table | None] = {}
    for projection in select.expressions:
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        alias = projection.alias_or_name
        name = alias
        if isinstance(inner, exp.Column) and inner.table and alias == inner.name:
            model = _source_model(select, ctx, inner.table, models)
            if model is not None and model.has_column(alias):
                name = model.column(alias).name
        elif alias.startswith("_col_"):
            name = _expression_name(inner)
        folded = name.lower()
        count = seen.get(folded, 0)
        seen[folded] = count + 1
        if count:
            name = f"{name}_{count + 1}"
            folded = name.lower()
        if name != alias:
            renamed.setdefault(alias, name)
        quoted = name != folded
        if isinstance(projection, exp.Alias):
            current = projection.args.get("alias")
            if not (
                isinstance(current, exp.Identifier)
                and current.this == name
                and current.args.get("quoted") is quoted
            ):
                projection.set("alias", exp.to_identifier(name, quoted=quoted))
        else:
            projection.replace(exp.alias_(inner.copy(), name, quoted=quoted))
    # ORDER BY may name a projection by its alias (qualify writes it so): follow the rename
    order = select.args.get("order")
    for item in order.expressions if order is not None else []:
        key = item.this
        if isinstance(key, exp.Column) and not key.table and key.name in renamed:
            new = renamed[key.name]
            key.set("this", exp.to_identifier(new, quoted=new != new.lower()))


def _expression_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return "expr"
