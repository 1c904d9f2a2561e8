"""The types pass: sqlglot's type annotation (its PostgreSQL rules), with the outermost
SELECT's plain catalog columns typed directly.

``SELECT *`` of a 41-column table is 41 projections ``alias.column AS name``. sqlglot's
annotator visits their ~200 nodes one by one (~0.7 ms) to give each column its schema
type, each alias its column's type and each identifier UNKNOWN. Here those projections
are set aside while sqlglot types the rest of the tree, then given exactly those types
from the same schema lookup. Only where nothing else reads them: the outermost SELECT,
without ORDER BY (whose alias references take the projections' types), each column of a
catalog table named once in its FROM. ``tests/query/test_types.py`` checks that every
node of every corpus query gets the type sqlglot gives it.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.typing import ExprMetadataType

from qserv_py.query.analysis import from_sources
from qserv_py.query.qualify import CatalogSet

#: the one UNKNOWN type of every identifier (names, never values); types are replaced,
#: never changed in place
UNKNOWN = exp.DType.UNKNOWN.into_expr()

#: sqlglot's PostgreSQL typing rules, except that identifiers share :data:`UNKNOWN`
#: instead of each getting a new one (~130 nodes fewer to build for SELECT * of Object)
TYPING: ExprMetadataType = {
    **Postgres.EXPRESSION_METADATA,
    exp.Identifier: {"returns": UNKNOWN},
}


def annotate(tree: exp.Expression, *, catalogs: CatalogSet) -> exp.Expression:
    """Set the type of every node of ``tree`` (qualified), as sqlglot's annotate_types."""
    schema = catalogs.schema()
    plain = _plain_projections(tree) if isinstance(tree, exp.Select) else []
    if not plain:
        return annotate_types(tree, schema=schema, expression_metadata=TYPING)
    projections = list(tree.expressions)
    aside = {id(alias) for alias, _, _ in plain}
    tree.set("expressions", [p for p in projections if id(p) not in aside])
    try:
        annotate_types(tree, schema=schema, expression_metadata=TYPING)
    finally:
        typed = iter(tree.expressions)  # the others, as the annotation left them
        tree.set("expressions", [p if id(p) in aside else next(typed) for p in projections])
    for alias, column, table in plain:
        kind = schema.get_column_type(table, column)
        column.type = kind
        alias.type = kind
        column.this.type = UNKNOWN
        column.args["table"].type = UNKNOWN
        alias.args["alias"].type = UNKNOWN
        if kind.args.get("nullable") is False:
            column.meta["nonnull"] = True
            alias.meta["nonnull"] = True
    return tree


def _plain_projections(select: exp.Select) -> list[tuple[exp.Alias, exp.Column, exp.Table]]:
    """The projections ``alias.column AS name`` of ``select`` over a catalog table that is
    the only FROM item of its alias, with their columns and tables."""
    if select.args.get("order") is not None:
        return []
    sources: dict[str, list[exp.Expression]] = {}
    for source in from_sources(select):
        sources.setdefault(source.alias_or_name, []).append(source)
    found = []
    for projection in select.expressions:
        if type(projection) is not exp.Alias:
            continue
        column = projection.this
        if (
            type(column) is not exp.Column
            or _given(projection) != {"this", "alias"}
            or _given(column) != {"this", "table"}
            or type(column.this) is not exp.Identifier
            or type(column.args["table"]) is not exp.Identifier
            or type(projection.args["alias"]) is not exp.Identifier
            or column.meta_get("dot_parts") is not None
            or any(type(v) is not str and type(v) is not bool for v in _leaves(projection))
        ):
            continue
        named = sources.get(column.table, [])
        if len(named) != 1:
            continue
        table = named[0]
        if (
            not isinstance(table, exp.Table)
            or table.args.get("db") is None
            or table.alias_column_names
            or table.args.get("pivots")
        ):
            continue
        found.append((projection, column, table))
    return found


def _given(node: exp.Expression) -> set[str]:
    return {k for k, v in node.args.items() if v is not None}


def _leaves(alias: exp.Alias) -> list[object]:
    """The values of the identifiers of ``alias.column AS name`` (strings, flags): no
    other node hides in them."""
    column = alias.this
    return [
        v
        for ident in (column.this, column.args["table"], alias.args["alias"])
        for v in ident.args.values()
        if v is not None
    ]
