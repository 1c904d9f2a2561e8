"""TAP_SCHEMA: the service's table metadata (IVOA TAP 1.1 §4), queryable in ADQL.

TAP_SCHEMA is a catalog like any other, of replicated tables (``schemas``, ``tables``,
``columns``, ``keys``, ``key_columns``; see ``qserv_py/schema/tap_schema.yaml``), so
``SELECT * FROM TAP_SCHEMA.columns WHERE table_name = 'dp02.Object'`` is planned and run
as any query over replicated tables is: whole, on one worker.

:func:`describe` turns catalog models into the metadata a user can query — the tables
and columns of the catalog schema files, never the loader's ``spatial_index`` and
``chunk_id`` (the planner does not let a query reach them). The VOSI ``/tap/tables``
document is rendered from the same description, so the two never disagree.
:func:`refresh_tap_schema` rewrites the rows on every worker in one two-phase commit; the
service calls it when it starts, and creating or dropping a catalog calls it too.

Names are those a query uses: a table is ``catalog.table`` as the catalog spells it
(``dp02.Object``); a column is its schema-file spelling, delimited when ADQL needs it
(TAP 1.1 §4.3: TAP_SCHEMA's own ``"size"``). Datatypes are VOTable's.

>>> from qserv_py.schema import default_catalog
>>> [schema] = [s for s in describe([default_catalog("dp02")]) if s.name == "dp02"]
>>> obj = schema.tables[0]
>>> obj.name, [c.name for c in obj.columns[:3]], obj.columns[0].indexed
('dp02.Object', ['objectId', 'coord_ra', 'coord_dec'], True)
>>> [(k.from_table, k.target_table, k.columns) for k in schema.tables[1].keys][0]
('dp02.Source', 'dp02.Object', (('objectId', 'objectId'),))
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg

from qserv_py.cluster.catalogs import create_catalog, drop_catalog, get_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.twophase import commit_two_phase
from qserv_py.errors import CatalogError
from qserv_py.query.reserved import adql_name
from qserv_py.schema.felis import default_catalog_path, parse_catalog
from qserv_py.schema.model import Catalog, Column, Table, TableKind

log = logging.getLogger(__name__)

#: the schema (catalog) that holds the metadata, as TAP names it
TAP_SCHEMA = "TAP_SCHEMA"
#: the schema uploaded tables are named in during one query (``TAP_UPLOAD.targets``)
TAP_UPLOAD = "TAP_UPLOAD"
TAP_UPLOAD_DESCRIPTION = (
    "Tables uploaded with a query (TAP UPLOAD=name,uri): the query names each one "
    "TAP_UPLOAD.name. They exist only while that query runs."
)
#: the advisory lock (on the czar) that one refresh at a time holds
REFRESH_LOCK = "qserv_py:tap-schema-refresh"
#: TAP_SCHEMA's tables and their columns, in the order rows are written
TAP_TABLES: dict[str, tuple[str, ...]] = {
    "schemas": ("schema_name", "utype", "description", "schema_index"),
    "tables": ("schema_name", "table_name", "table_type", "utype", "description", "table_index"),
    "columns": (
        "table_name", "column_name", "datatype", "arraysize", "xtype", "size", "description",
        "utype", "unit", "ucd", "indexed", "principal", "std", "column_index",
    ),
    "keys": ("key_id", "from_table", "target_table", "description", "utype"),
    "key_columns": ("key_id", "from_column", "target_column"),
}  # fmt: skip


@dataclass(frozen=True)
class ColumnMeta:
    name: str
    description: str
    unit: str
    ucd: str
    #: VOTable datatype, arraysize (None for scalars) and DALI xtype
    datatype: str
    arraysize: str | None
    xtype: str | None
    #: legacy TAP 1.0 length: the number in ``arraysize``, if any
    size: int | None
    principal: bool
    indexed: bool
    primary: bool
    nullable: bool
    std: bool
    #: position in the table, from 1
    index: int


@dataclass(frozen=True)
class KeyMeta:
    key_id: str
    from_table: str
    target_table: str
    description: str
    #: (from_column, target_column) pairs
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableMeta:
    schema: str
    #: qualified, as a query writes it: ``dp02.Object``
    name: str
    description: str
    index: int
    columns: tuple[ColumnMeta, ...]
    keys: tuple[KeyMeta, ...]
    #: rows published, where known
    nrows: int | None = None
    table_type: str = "table"


@dataclass(frozen=True)
class SchemaMeta:
    name: str
    description: str
    index: int
    tables: tuple[TableMeta, ...]

    def table(self, name: str) -> TableMeta | None:
        return next((t for t in self.tables if t.name.lower() == name.lower()), None)


def tap_schema_catalog() -> tuple[Catalog, str]:
    """The TAP_SCHEMA catalog model and its Felis text (shipped with qserv_py)."""
    text = default_catalog_path("tap_schema").read_text(encoding="utf-8")
    return parse_catalog(text, "tap_schema.yaml"), text


def is_tap_schema(name: str) -> bool:
    return name.lower() == TAP_SCHEMA.lower()


def describe(
    catalogs: Iterable[Catalog], nrows: Mapping[tuple[str, str], int] | None = None
) -> tuple[SchemaMeta, ...]:
    """The metadata of ``catalogs`` (by name), then of TAP_UPLOAD and TAP_SCHEMA itself.

    ``nrows`` maps (catalog, table) sql names to published row counts, where known.
    A catalog named TAP_SCHEMA among ``catalogs`` is replaced by the shipped model.
    """
    users = sorted((c for c in catalogs if not is_tap_schema(c.name)), key=lambda c: c.sql_name)
    schemas = [_schema(cat, i, nrows or {}, std=False) for i, cat in enumerate(users)]
    schemas.append(SchemaMeta(TAP_UPLOAD, TAP_UPLOAD_DESCRIPTION, len(schemas), ()))
    schemas.append(_schema(tap_schema_catalog()[0], len(schemas), nrows or {}, std=True))
    return tuple(schemas)


def find_table(schemas: Iterable[SchemaMeta], name: str) -> TableMeta | None:
    """The table named ``name`` (``schema.table``, any case), or None."""
    return next((t for s in schemas if (t := s.table(name)) is not None), None)


def _schema(
    catalog: Catalog, index: int, nrows: Mapping[tuple[str, str], int], *, std: bool
) -> SchemaMeta:
    tables = tuple(
        TableMeta(
            schema=catalog.name,
            name=f"{catalog.name}.{table.name}",
            description=table.description,
            index=i,
            columns=tuple(
                _column(table, col, j, std=std) for j, col in enumerate(table.columns, 1)
            ),
            keys=_keys(catalog, table),
            nrows=nrows.get((catalog.sql_name, table.sql_name)),
        )
        for i, table in enumerate(catalog.tables)
    )
    return SchemaMeta(catalog.name, catalog.description, index, tables)


def _indexed(table: Table) -> set[str]:
    """The columns (sql names) that lead an index on the workers (see schema/ddl.py)."""
    if table.kind is TableKind.DIRECTOR:
        keys = [table.key_column]
    elif table.kind is TableKind.CHILD:
        keys = [table.director_key]
    elif table.kind is TableKind.MATCH:
        keys = [table.director_key, table.director_key2]
    else:
        keys = list(table.primary_key[:1])
    return {k.lower() for k in keys if k}


def _column(table: Table, col: Column, index: int, *, std: bool) -> ColumnMeta:
    arraysize = col.arraysize
    digits = arraysize.rstrip("*") if arraysize else ""
    return ColumnMeta(
        name=adql_name(col.name),
        description=col.description,
        unit=col.unit,
        ucd=col.ucd,
        datatype=col.votable_datatype,
        arraysize=arraysize,
        xtype="timestamp" if col.datatype == "timestamp" else None,
        size=int(digits) if digits.isdigit() else None,
        principal=col.principal,
        indexed=col.sql_name in _indexed(table),
        primary=col.name in table.primary_key,
        nullable=col.nullable,
        std=std,
        index=index,
    )


def _keys(catalog: Catalog, table: Table) -> tuple[KeyMeta, ...]:
    """The table's foreign keys, and its link to its director (a child table's rows
    belong to the director row with the same key; a match table links to both of its
    directors) unless a foreign key says it already."""
    keys = [
        KeyMeta(
            key_id=f"{catalog.name}.{fk.name}",
            from_table=f"{catalog.name}.{table.name}",
            target_table=f"{catalog.name}.{catalog.table(fk.referenced_table).name}",
            description=f"Joins {table.name} to {catalog.table(fk.referenced_table).name} on "
            + ", ".join(
                f"{a} = {b}" for a, b in zip(fk.columns, fk.referenced_columns, strict=True)
            )
            + ".",
            columns=tuple(
                (adql_name(a), adql_name(b))
                for a, b in zip(fk.columns, fk.referenced_columns, strict=True)
            ),
        )
        for fk in table.foreign_keys
    ]
    links: list[tuple[str, str, str, str]] = []  # (director, key column, key id, text)
    if table.kind is TableKind.CHILD and table.director and table.director_key:
        text = f"The {table.director} each {table.name} row belongs to."
        links.append((table.director, table.director_key, table.director, text))
    if table.kind is TableKind.MATCH:  # a match table: both directors it relates
        for side, key in table.match_sides:
            text = f"The {side} row that {key} of each {table.name} row names."
            links.append((side, key, key, text))
    for name, column, suffix, text in links:
        linked = catalog.table(name)
        pair = (adql_name(column), adql_name(linked.key_column or ""))
        target = f"{catalog.name}.{linked.name}"
        if not any(k.target_table == target and pair in k.columns for k in keys):
            keys.append(
                KeyMeta(
                    key_id=f"{catalog.name}.{table.name}_{suffix}",
                    from_table=f"{catalog.name}.{table.name}",
                    target_table=target,
                    description=text,
                    columns=(pair,),
                )
            )
    return tuple(keys)


def tap_rows(schemas: Iterable[SchemaMeta]) -> dict[str, list[tuple[object, ...]]]:
    """The rows of each TAP_SCHEMA table (columns as in :data:`TAP_TABLES`)."""
    rows: dict[str, list[tuple[object, ...]]] = {name: [] for name in TAP_TABLES}
    for schema in schemas:
        rows["schemas"].append((schema.name, None, schema.description or None, schema.index))
        for table in schema.tables:
            rows["tables"].append(
                (
                    schema.name,
                    table.name,
                    table.table_type,
                    None,
                    table.description or None,
                    table.index,
                )
            )
            for c in table.columns:
                rows["columns"].append(
                    (
                        table.name, c.name, c.datatype, c.arraysize, c.xtype, c.size,
                        c.description or None, None, c.unit or None, c.ucd or None,
                        int(c.indexed), int(c.principal), int(c.std), c.index,
                    )
                )  # fmt: skip
            for key in table.keys:
                rows["keys"].append(
                    (key.key_id, key.from_table, key.target_table, key.description or None, None)
                )
                rows["key_columns"].extend((key.key_id, a, b) for a, b in key.columns)
    return rows


# --- on the cluster ---------------------------------------------------------------------


def refresh_tap_schema(spec: ClusterSpec, *, create: bool = True) -> bool:
    """Rewrite TAP_SCHEMA's rows on every worker from the catalogs on the czar.

    Creates the TAP_SCHEMA catalog first if the cluster has none (unless ``create`` is
    false: then nothing is done and False returned), and re-creates it if it was made
    from another version of ``tap_schema.yaml``. All workers change in one two-phase
    commit, so every worker answers TAP_SCHEMA queries alike. Refreshes run one at a time
    (an advisory lock on the czar), each reading the catalogs once it holds the lock, so
    the last one to run has seen every catalog change committed before it.
    """
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute("SELECT pg_advisory_lock(hashtext(%s))", (REFRESH_LOCK,))
        try:
            return _refresh(spec, czar, create=create)
        finally:
            czar.execute("SELECT pg_advisory_unlock(hashtext(%s))", (REFRESH_LOCK,))


def _refresh(spec: ClusterSpec, czar: psycopg.Connection, *, create: bool) -> bool:
    model, text = tap_schema_catalog()
    found = czar.execute(
        "SELECT schema_yaml FROM qserv_meta.catalogs WHERE name = %s", (model.sql_name,)
    ).fetchone()
    if found is None and not create:
        return False
    if found is not None and found[0] != text:
        log.info("TAP_SCHEMA was made from another tap_schema.yaml: re-creating it")
        drop_catalog(spec, TAP_SCHEMA)
        found = None
    if found is None:
        try:
            create_catalog(spec, model, text)
        except CatalogError:
            if not _registered(czar, model.sql_name):
                raise
            # another process (a second service starting) made it meanwhile
    names = czar.execute(
        "SELECT name FROM qserv_meta.catalogs WHERE name <> %s ORDER BY name", (model.sql_name,)
    ).fetchall()
    rows = tap_rows(describe(get_catalog(czar, name) for (name,) in names))
    schema = model.sql_name

    def on_worker(conn: psycopg.Connection) -> None:
        tables = ", ".join(f"{schema}.{name}" for name in TAP_TABLES)
        # readers go on reading the old rows until the commit
        conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        for name in reversed(TAP_TABLES):
            conn.execute(f"DELETE FROM {schema}.{name}")
        with conn.cursor() as cur:
            for name, columns in TAP_TABLES.items():
                with cur.copy(f"COPY {schema}.{name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows[name]:
                        copy.write_row(row)

    commit_two_phase(
        spec, {w.name: on_worker for w in spec.workers}, label="tap-schema", every_worker=True
    )
    return True


def _registered(czar: psycopg.Connection, name: str) -> bool:
    found = czar.execute("SELECT 1 FROM qserv_meta.catalogs WHERE name = %s", (name,))
    return found.fetchone() is not None


def try_refresh_tap_schema(spec: ClusterSpec, *, create: bool = True) -> bool:
    """:func:`refresh_tap_schema`, logging a failure instead of raising it (a catalog
    change or the service's start must not fail because TAP_SCHEMA could not follow)."""
    try:
        return refresh_tap_schema(spec, create=create)
    except Exception:
        log.exception("TAP_SCHEMA could not be refreshed; it may list stale catalogs")
        return False
