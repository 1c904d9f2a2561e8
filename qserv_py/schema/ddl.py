"""DDL that creates a catalog's tables on a worker: pure functions returning SQL strings.

On a worker every catalog is a schema. A partitioned (director, child or match) table is a
parent table partitioned ``BY LIST (chunk_id)``, with the catalog's columns in file order
plus ``spatial_index`` and ``chunk_id`` (and ``match_flags`` for a match table); the chunk
partitions are attached by the loader. A director also gets an overlap table of the same
shape (``<table>_overlap``) for the copies of rows near each chunk's edge. A replicated
table is a plain table. Indexes made on a parent table are made on every partition
attached to it.

Identifiers come from a parsed catalog, so they are valid, unquoted and lower-cased here;
each one is checked again, so a hand-built model cannot smuggle SQL into a statement.
"""

from __future__ import annotations

import hashlib

from qserv_py.errors import ConfigError
from qserv_py.schema.model import (
    CHUNK_ID,
    MATCH_FLAGS,
    SPATIAL_INDEX,
    Catalog,
    Column,
    Table,
    TableKind,
    identifier_problem,
    sql_identifier,
)

#: PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
PG_MAX_IDENTIFIER_BYTES = 63


def create_catalog_ddl(
    catalog: Catalog, reader_role: str, *, list_partitions: bool = True
) -> list[str]:
    """Statements creating ``catalog``'s schema and tables, readable by ``reader_role``.

    ``list_partitions=False`` makes the partitioned tables plain tables (on Citus they
    become distributed tables: :func:`qserv_py.cluster.citus.distribute_ddl`).
    """
    if identifier_problem(reader_role) is not None:
        raise ConfigError(
            f"reader role {reader_role!r}: {identifier_problem(reader_role)}; "
            "name a role with letters, digits and _"
        )
    schema = _ident(catalog.name)
    role = reader_role.lower()
    names = _IndexNames(catalog)
    statements = [f"CREATE SCHEMA {schema}"]
    for table in catalog.tables:
        if table.partitioned:
            statements += _partitioned_table(
                schema, table, table.sql_name, names, list_partitions
            )
            if table.kind is TableKind.DIRECTOR:
                overlap = overlap_table_name(table)
                statements += _partitioned_table(schema, table, overlap, names, list_partitions)
        else:
            statements.append(_replicated_table(schema, table))
    statements += [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
    ]
    return statements


def drop_catalog_ddl(catalog_name: str) -> list[str]:
    """Statements dropping a catalog's schema with everything in it.

    >>> drop_catalog_ddl("DP02")
    ['DROP SCHEMA IF EXISTS dp02 CASCADE']
    """
    return [f"DROP SCHEMA IF EXISTS {_ident(catalog_name)} CASCADE"]


def overlap_table_name(table: Table | str) -> str:
    """The name of a director table's overlap table.

    >>> overlap_table_name("Object")
    'object_overlap'
    """
    name = table if isinstance(table, str) else table.name
    return f"{_ident(name)}_overlap"


def index_name(table: str, column: str) -> str:
    """The name of the index on ``column`` of ``table``: ``<table>_<column>_idx``.

    Names longer than PostgreSQL allows are cut, and a hash of the full name keeps them
    distinct.

    >>> index_name("Object", "coord_ra")
    'object_coord_ra_idx'
    >>> name = index_name("object_overlap", "x" * 60)
    >>> len(name), name.startswith("object_overlap_xxx"), name.endswith("_idx")
    (63, True, True)
    """
    full = f"{table}_{column}".lower()
    if len(full) + len("_idx") <= PG_MAX_IDENTIFIER_BYTES:
        return f"{full}_idx"
    return _hashed(full)


def _hashed(full: str) -> str:
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    keep = PG_MAX_IDENTIFIER_BYTES - len(digest) - len("__idx")
    return f"{full[:keep]}_{digest}_idx"


class _IndexNames:
    """Index names unique among the relations of one schema (tables and indexes share a
    namespace: table ``a_b`` column ``c`` and table ``a`` column ``b_c`` would clash)."""

    def __init__(self, catalog: Catalog) -> None:
        self.used = {t.sql_name for t in catalog.tables}
        self.used |= {overlap_table_name(t) for t in catalog.tables_of_kind(TableKind.DIRECTOR)}
        self.used |= {f"{t.sql_name}_pkey" for t in catalog.tables}

    def __call__(self, table: str, column: str) -> str:
        name = index_name(table, column)
        if name in self.used:
            name = _hashed(f"{table}_{column}")
        self.used.add(name)
        return name


def _partitioned_table(
    schema: str, table: Table, name: str, index: _IndexNames, list_partitions: bool = True
) -> list[str]:
    """The parent table ``name`` (``table`` or its overlap table) and its indexes."""
    columns = [_column(c) for c in table.columns]
    columns += [f"{SPATIAL_INDEX} bigint NOT NULL", f"{CHUNK_ID} bigint NOT NULL"]
    if table.kind is TableKind.MATCH:
        columns.append(f"{MATCH_FLAGS} smallint NOT NULL")
    key = table.key_column if table.kind is TableKind.DIRECTOR else table.director_key
    indexed = [SPATIAL_INDEX] + ([key.lower()] if key else [])
    if table.director_key2:  # a match table: both keys are looked up and joined on
        indexed.append(table.director_key2.lower())
    return [
        f"CREATE TABLE {schema}.{name} (\n    " + ",\n    ".join(columns) + "\n)"
        + (f" PARTITION BY LIST ({CHUNK_ID})" if list_partitions else ""),
        *(
            f"CREATE INDEX {index(name, col)} ON {schema}.{name} ({sql_identifier(col)})"
            for col in indexed
        ),
    ]


def _replicated_table(schema: str, table: Table) -> str:
    items = [_column(c) for c in table.columns]
    if table.primary_key:
        items.append(f"PRIMARY KEY ({', '.join(sql_identifier(c) for c in table.primary_key)})")
    return f"CREATE TABLE {schema}.{table.sql_name} (\n    " + ",\n    ".join(items) + "\n)"


def _column(column: Column) -> str:
    """A column definition.

    >>> _column(Column("coord_RA", "double", nullable=False))
    'coord_ra double precision NOT NULL'
    >>> _column(Column("band", "char", length=1))
    'band char(1)'
    """
    null = "" if column.nullable else " NOT NULL"
    if identifier_problem(column.name, column=True) is not None:
        raise ValueError(f"cannot use {column.name!r} in generated SQL")
    return f"{column.sql_ident} {column.pg_type}{null}"


def _ident(name: str) -> str:
    """``name`` for unquoted use in SQL (lower-cased); ValueError if it is not safe."""
    problem = identifier_problem(name)
    if problem is not None:
        raise ValueError(f"cannot use {name!r} in generated SQL: {problem}")
    return name.lower()


def partition_name(table: Table | str, chunk: int, *, overlap: bool = False) -> str:
    """The name (in the catalog's schema) of a table's partition holding one chunk.

    >>> partition_name("Object", 1234), partition_name("Object", 1234, overlap=True)
    ('object_1234', 'object_overlap_1234')
    """
    base = _ident(table if isinstance(table, str) else table.name)
    if overlap:
        base += "_overlap"
    if len(base) > 40:
        base = f"{base[:31]}_{hashlib.sha1(base.encode()).hexdigest()[:8]}"
    return f"{base}_{int(chunk)}"


def dirindex_table(catalog: str, table: str) -> str:
    """The czar table (schema-qualified) holding a director's index: key -> chunk.

    >>> dirindex_table("dp02", "Object")
    'qserv_dirindex.dp02__object'
    """
    name = f"{_ident(catalog)}__{_ident(table)}"
    if len(name) > PG_MAX_IDENTIFIER_BYTES:
        name = f"{name[:50]}_{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return f"qserv_dirindex.{name}"


def create_dirindex_ddl(catalog: Catalog) -> list[str]:
    """Czar statements creating the director index of each director table."""
    return [
        f"CREATE TABLE {dirindex_table(catalog.name, t.name)} ("
        "key bigint PRIMARY KEY, chunk_id bigint NOT NULL, spatial_index bigint NOT NULL)"
        for t in catalog.tables_of_kind(TableKind.DIRECTOR)
    ]
