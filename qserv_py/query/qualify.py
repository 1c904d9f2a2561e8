"""The qualify pass: every table and column resolved against the catalog schemas.

Tables may be written with or without their catalog (``dp02.Object`` or ``Object``),
in any case unless delimited. After this pass every table reference is
``catalog.table AS alias``, ``SELECT *`` is expanded (the loader's own columns
``spatial_index`` and ``chunk_id`` are neither shown nor reachable), and every column
names its table alias. An unknown name is an :class:`~qserv_py.errors.UnknownName`
that lists the closest known names.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify as sqlglot_qualify
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.schema import MappingSchema

from qserv_py.errors import UnknownName
from qserv_py.query.walk import find_all
from qserv_py.schema.model import Catalog, Column, Table

#: the catalog name of a query's uploaded tables (ADQL's ``TAP_UPLOAD.name``); only ever
#: reached by that qualified name
UPLOADS = "tap_upload"


@dataclass(frozen=True)
class CatalogSet:
    """The catalogs a query may read, by lower-case name."""

    catalogs: dict[str, Catalog]
    #: where a table named without its catalog is looked up first
    default: str | None = None
    _schema: list[MappingSchema] = field(default_factory=list, compare=False, repr=False)

    def resolve(self, name: str, catalog: str | None) -> tuple[Catalog, Table]:
        """The (catalog, table) a query's table name means."""
        if catalog is not None and catalog.lower() == UPLOADS:
            return self._upload(name)
        if catalog is None and self.default is not None:
            cat = self.catalogs.get(self.default.lower())
            if cat is not None and cat.has_table(name):
                return cat, cat.table(name)
        if catalog is not None:
            cat = self.catalogs.get(catalog.lower())
            if cat is None:
                names = [c.name for c in self.catalogs.values()]
                raise UnknownName(f"no catalog {catalog}{_suggest(catalog, names)}")
            if not cat.has_table(name):
                known = [t.name for t in cat.tables]
                raise UnknownName(f"no table {catalog}.{name}{_suggest(name, known)}")
            return cat, cat.table(name)
        searched = [c for key, c in self.catalogs.items() if key != UPLOADS]
        found = [(c, c.table(name)) for c in searched if c.has_table(name)]
        if len(found) == 1:
            return found[0]
        if found:
            where = ", ".join(f"{c.name}.{t.name}" for c, t in found)
            raise UnknownName(f"table {name} is in several catalogs ({where}); name one of them")
        known = [t.name for c in searched for t in c.tables]
        if UPLOADS in self.catalogs and self.catalogs[UPLOADS].has_table(name):
            raise UnknownName(f"no table {name}; the uploaded table is TAP_UPLOAD.{name}")
        raise UnknownName(f"no table {name}{_suggest(name, known)}")

    def _upload(self, name: str) -> tuple[Catalog, Table]:
        uploads = self.catalogs.get(UPLOADS)
        if uploads is None:
            raise UnknownName(
                f"no uploaded table TAP_UPLOAD.{name}: this query has no uploads; upload the "
                f"table with the query (TAP: UPLOAD={name},param:{name} and the file in a part "
                f"named {name}; Python: uploads={{'{name}': table}})"
            )
        if not uploads.has_table(name):
            known = [t.name for t in uploads.tables]
            raise UnknownName(f"no uploaded table TAP_UPLOAD.{name}{_suggest(name, known)}")
        return uploads, uploads.table(name)

    def schema(self) -> MappingSchema:
        """sqlglot's view: catalog -> table -> column -> type (users' columns only); built
        once (the passes only read it)."""
        if not self._schema:
            self._schema.append(self._build_schema())
        return self._schema[0]

    def _build_schema(self) -> MappingSchema:
        mapping: dict[str, object] = {
            cat.sql_name: {
                t.sql_name: {c.sql_name: _sqlglot_type(c) for c in t.columns} for t in cat.tables
            }
            for cat in self.catalogs.values()
        }
        return _CatalogSchema(mapping)


class _CatalogSchema(MappingSchema):
    """The catalog schema, answering column types from a dict: sqlglot's lookup
    normalises the table expression on every call (a SELECT * of 41 columns cost ~5 ms of
    type annotation).

    sqlglot caches its lookups by the ``Table`` node asked about. A query's own nodes
    would stay in those caches for good, and once a later pass renames them (chunk
    partitions) they no longer match: one entry more per query, each later lookup
    comparing against them all (planning ~1 ms slower per thousand queries, and every
    tree kept alive). So lookups are made with one detached ``Table`` per table name."""

    def __init__(self, mapping: dict[str, object]) -> None:
        super().__init__(mapping, dialect="postgres", normalize=False)
        self._types: dict[tuple[str, str, str, str], exp.DataType] = {}
        self._tables: dict[tuple[str, str, str], exp.Table] = {}

    def _detached(self, table: exp.Table | str) -> exp.Table | str:
        """The schema's own ``Table`` node of the same name as ``table``."""
        if not isinstance(table, exp.Table):
            return table
        key = (table.text("catalog"), table.text("db"), table.name)
        found = self._tables.get(key)
        if found is None:
            found = self._tables[key] = exp.table_(key[2], key[1] or None, key[0] or None)
        return found

    def find(
        self, table: exp.Table, raise_on_missing: bool = True, ensure_data_types: bool = False
    ) -> Any | None:
        return super().find(self._detached(table), raise_on_missing, ensure_data_types)  # type: ignore[arg-type]

    def column_names(
        self,
        table: exp.Table | str,
        only_visible: bool = False,
        dialect: object = None,
        normalize: bool | None = None,
    ) -> list[str]:
        return super().column_names(self._detached(table), only_visible, dialect, normalize)  # type: ignore[arg-type]

    def has_column(
        self,
        table: exp.Table | str,
        column: exp.Column | str,
        dialect: object = None,
        normalize: bool | None = None,
    ) -> bool:
        return super().has_column(self._detached(table), column, dialect, normalize)  # type: ignore[arg-type]

    def get_column_type(
        self,
        table: exp.Table | str,
        column: exp.Column | str,
        dialect: object = None,
        normalize: bool | None = None,
    ) -> exp.DataType:
        if not isinstance(table, exp.Table) or dialect is not None or normalize is not None:
            return super().get_column_type(self._detached(table), column, dialect, normalize)  # type: ignore[arg-type]
        name = column if isinstance(column, str) else column.name
        key = (table.text("catalog"), table.text("db"), table.name, name)
        found = self._types.get(key)
        if found is None:
            found = self._types[key] = super().get_column_type(self._detached(table), column)
        return found


def _sqlglot_type(column: Column) -> str:
    return column.pg_type.replace("double precision", "double")


def _suggest(name: str, known: list[str]) -> str:
    known = list(dict.fromkeys(known))  # a table of several catalogs is suggested once
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=3, cutoff=0.5)
    spelled = [next(k for k in known if k.lower() == c) for c in close]
    if spelled:
        return f"; did you mean {', '.join(spelled)}?"
    return f"; known: {', '.join(sorted(known)[:12])}" if known else ""


def qualify(tree: exp.Expression, *, catalogs: CatalogSet) -> exp.Expression:
    """Resolve tables and columns of ``tree`` (modified in place and returned)."""
    ctes = {cte.alias_or_name.lower() for cte in find_all(tree, exp.CTE)}
    for node in find_all(tree, exp.Table, exp.Column):
        if node.args.get("catalog"):  # catalog.schema.table: no level above schemas here
            raise UnknownName(
                f"{node.sql()}: names here have no part before the catalog (the catalogs "
                "are the schemas), so write catalog.table or catalog.table.column, as in "
                "qt.Object.objectId"
            )
    for table in find_all(tree, exp.Table):
        if not table.args.get("db") and table.name.lower() in ctes:
            continue
        db = table.args.get("db")
        cat, model = catalogs.resolve(table.name, db.name if db else None)
        table.set("db", exp.to_identifier(cat.sql_name))
        table.set("this", exp.to_identifier(model.sql_name))
        table.set("catalog", None)
    _delimited_columns(tree, catalogs)
    try:
        return sqlglot_qualify(
            tree,
            schema=catalogs.schema(),
            dialect="postgres",
            quote_identifiers=False,
            validate_qualify_columns=True,
            identify=False,
        )
    except OptimizeError as exc:
        raise _unknown_column(tree, catalogs, str(exc)) from None


def _delimited_columns(tree: exp.Expression, catalogs: CatalogSet) -> None:
    """A delimited column name spelled as in the schema (``"objectId"``, MySQL's
    `` `objectId` ``) means that column: its SQL name is the lower-cased one."""
    names: dict[str, str] = {}
    for table in find_all(tree, exp.Table):
        if table.args.get("db"):
            model = catalogs.catalogs[table.args["db"].name].table(table.name)
            names.update((c.name, c.sql_name) for c in model.columns)
    for column in find_all(tree, exp.Column):
        ident = column.this
        if isinstance(ident, exp.Identifier) and ident.quoted and ident.name in names:
            column.set("this", exp.to_identifier(names[ident.name]))


def _unknown_column(tree: exp.Expression, catalogs: CatalogSet, message: str) -> UnknownName:
    match = re.search(
        r"[Cc]olumn '?([^'\s]+)'? could not be resolved|[Uu]nknown column: (\S+)", message
    )
    if not match:
        return UnknownName(f"cannot resolve the query's columns: {message}")
    name = (match.group(1) or match.group(2)).strip("'\"")
    stray = _stray_qualifier(tree, name)
    if stray is not None:
        return stray
    known: list[str] = []
    holders: list[str] = []
    tables: list[str] = []
    for scope in traverse_scope(tree):
        for alias, source in scope.sources.items():
            if isinstance(source, exp.Table) and source.args.get("db"):
                model = catalogs.catalogs[source.args["db"].name].table(source.name)
                tables.append(model.name)
                known.extend(c.name for c in model.columns)
                if model.has_column(name):
                    holders.append(f"{model.name} ({alias}.{model.column(name).name})")
    if len(holders) > 1:
        return UnknownName(
            f"column {name} is ambiguous: it is in {' and '.join(holders)}; qualify it with "
            "its table's name or alias"
        )
    where = f" in {', '.join(dict.fromkeys(tables))}" if tables else ""
    return UnknownName(f"no column {name}{where}{_suggest(name, known)}")


def _stray_qualifier(tree: exp.Expression, name: str) -> UnknownName | None:
    """The error for ``x.name`` where no table of the query is called ``x``."""
    scopes = list(traverse_scope(tree))
    aliases = {alias.lower() for scope in scopes for alias in scope.sources}
    for column in find_all(tree, exp.Column):
        qualifier = column.table
        if column.name.lower() == name.lower() and qualifier and qualifier.lower() not in aliases:
            names = ", ".join(sorted({a for scope in scopes for a in scope.sources})) or "none"
            return UnknownName(
                f"{qualifier}.{column.name}: {qualifier} is not a table or alias of the FROM "
                f"clause (those are: {names}); qualify the column with one of them"
            )
    return None
