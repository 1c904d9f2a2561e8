"""Creating and dropping catalogs across the cluster, atomically.

A catalog's tables are created on every worker and registered in the czar metadata in
one two-phase commit: either every worker and the czar have it, or none does.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from qserv_py.cluster.db import connect
from qserv_py.cluster.metadata import metadata_version
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.twophase import commit_two_phase
from qserv_py.errors import CatalogError, CatalogExists, UnknownCatalog
from qserv_py.schema.ddl import (
    create_catalog_ddl,
    create_dirindex_ddl,
    dirindex_table,
    drop_catalog_ddl,
)
from qserv_py.schema.felis import parse_catalog
from qserv_py.schema.model import Catalog, TableKind

#: staging tables of a load on a worker or the czar (see qserv_py.loaders.staging)
STAGING_SUFFIXES = ("", "_o", "_dirindex")


@dataclass(frozen=True)
class CatalogInfo:
    name: str
    description: str
    overlap_arcsec: float
    tables: tuple[tuple[str, str], ...]  # (spelling, kind)


def list_catalogs(spec: ClusterSpec) -> list[CatalogInfo]:
    with connect(spec.czar, autocommit=True) as czar:
        metadata_version(czar)
        rows = czar.execute(
            "SELECT c.spelling, c.description, c.overlap_arcsec,"
            " coalesce(array_agg(t.spelling ORDER BY t.ordinal)"
            "   FILTER (WHERE t.name IS NOT NULL), '{}'),"
            " coalesce(array_agg(t.kind ORDER BY t.ordinal)"
            "   FILTER (WHERE t.name IS NOT NULL), '{}')"
            " FROM qserv_meta.catalogs c LEFT JOIN qserv_meta.tables t ON t.catalog = c.name"
            " GROUP BY c.name ORDER BY c.name"
        ).fetchall()
    return [
        CatalogInfo(name, desc, overlap, tuple(zip(tables, kinds, strict=True)))
        for name, desc, overlap, tables, kinds in rows
    ]


def get_catalog(czar: psycopg.Connection, name: str) -> Catalog:
    """The catalog model of ``name`` as registered on the czar."""
    row = czar.execute(
        "SELECT schema_yaml, spelling FROM qserv_meta.catalogs WHERE name = lower(%s)", (name,)
    ).fetchone()
    if row is None:
        known = [r[0] for r in czar.execute("SELECT spelling FROM qserv_meta.catalogs")]
        raise UnknownCatalog(f"no catalog {name}; known catalogs: {', '.join(known) or '(none)'}")
    return parse_catalog(row[0], f"catalog {row[1]}")


def create_catalog(
    spec: ClusterSpec,
    catalog: Catalog,
    schema_text: str,
    *,
    citus_shard_count: int = 32,
    replication: int = 1,
) -> None:
    """Create ``catalog`` on every worker and register it on the czar, with the
    replication level ``replication`` (each chunk on that many workers: the level the
    replication loop keeps; loads may place more copies).

    On Citus its partitioned tables are distributed tables of ``citus_shard_count`` shards
    with ``replication`` placements each (Citus's shard replication, fixed here: Citus
    writes every placement and reads another when a node fails), and its replicated
    tables reference tables (:func:`qserv_py.cluster.citus.distribute_ddl`).
    """
    nodes = _replica_holders(spec)
    if not 1 <= replication <= nodes:
        where = "Citus worker nodes" if spec.backend == "citus" else "workers"
        raise CatalogError(
            f"replication {replication}: each chunk needs that many {where}, and the "
            f"cluster has {nodes}; choose a level from 1 to {nodes}, or add {where} first "
            "(`qserv-py worker add`)"
        )
    for table in catalog.tables_of_kind(TableKind.DIRECTOR):
        assert table.key_column is not None
        if table.column(table.key_column).datatype not in ("byte", "short", "int", "long"):
            raise CatalogError(
                f"director table {table.name}: its key {table.key_column} must be an integer "
                "column (the director index maps integer keys to chunks)"
            )
    with connect(spec.czar, autocommit=True) as czar:
        metadata_version(czar)
        if czar.execute(
            "SELECT 1 FROM qserv_meta.catalogs WHERE name = %s", (catalog.sql_name,)
        ).fetchone():
            raise CatalogExists(
                f"catalog {catalog.name} exists already; drop it first "
                f"(`qserv-py catalog drop {catalog.name}`) or choose another name"
            )
    if spec.backend == "citus":
        from qserv_py.cluster.citus import distribute_ddl

        statements = create_catalog_ddl(catalog, spec.reader_user, list_partitions=False)
        statements += distribute_ddl(catalog, citus_shard_count, replication)
    else:
        statements = create_catalog_ddl(catalog, spec.reader_user)

    def on_worker(conn: psycopg.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    try:
        commit_two_phase(
            spec,
            {w.name: on_worker for w in spec.workers},
            lambda czar: _register(czar, catalog, schema_text, replication),
            label=f"catalog-create:{catalog.sql_name}",
            every_worker=True,
        )
    except psycopg.errors.DuplicateSchema as exc:
        raise CatalogError(
            f"a worker already has a schema {catalog.sql_name} that the czar does not know "
            f"({exc.diag.message_primary}); drop that schema on the worker or choose another "
            "catalog name"
        ) from exc
    _tap_schema_follows(spec, catalog.sql_name)


def drop_catalog(spec: ClusterSpec, name: str) -> None:
    """Remove catalog ``name`` (its tables and data) from every worker and the czar."""
    with connect(spec.czar, autocommit=True) as czar:
        metadata_version(czar)
        catalog = get_catalog(czar, name)
        loads = [
            r[0]
            for r in czar.execute(
                "SELECT id FROM qserv_meta.load_txns WHERE catalog = %s", (catalog.sql_name,)
            )
        ]
    sql_name = catalog.sql_name
    staging = [
        f"DROP TABLE IF EXISTS qserv_stage.s{i}{x} CASCADE" for i in loads for x in STAGING_SUFFIXES
    ]
    statements = drop_catalog_ddl(sql_name) + staging

    def on_worker(conn: psycopg.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    def on_czar(czar: psycopg.Connection) -> None:
        for table in catalog.tables_of_kind(TableKind.DIRECTOR):
            czar.execute(f"DROP TABLE IF EXISTS {dirindex_table(sql_name, table.name)}")
        for statement in staging:
            czar.execute(statement)
        czar.execute("DELETE FROM qserv_meta.catalogs WHERE name = %s", (sql_name,))

    commit_two_phase(
        spec,
        {w.name: on_worker for w in spec.workers},
        on_czar,
        label=f"catalog-drop:{sql_name}",
        every_worker=True,
    )
    _tap_schema_follows(spec, sql_name)


def _replica_holders(spec: ClusterSpec) -> int:
    """How many servers can hold a copy of a chunk: the workers, or on Citus the active
    worker nodes."""
    if spec.backend != "citus":
        return len(spec.workers)
    from qserv_py.cluster.citus import active_workers

    return len(active_workers(spec.coordinator))


def _register(
    czar: psycopg.Connection, catalog: Catalog, schema_text: str, replication: int
) -> None:
    for statement in create_dirindex_ddl(catalog):
        czar.execute(statement)
    czar.execute(
        "INSERT INTO qserv_meta.catalogs (name, spelling, description, overlap_arcsec,"
        " schema_yaml, replication) VALUES (%s, %s, %s, %s, %s, %s)",
        (
            catalog.sql_name, catalog.name, catalog.description, catalog.overlap_arcsec,
            schema_text, replication,
        ),
    )  # fmt: skip
    for ordinal, table in enumerate(catalog.tables, 1):
        czar.execute(
            "INSERT INTO qserv_meta.tables (catalog, name, spelling, ordinal, kind, description,"
            " key_column, ra_column, dec_column, director, director_key)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                catalog.sql_name, table.sql_name, table.name, ordinal, table.kind.value,
                table.description, _lower(table.key_column), _lower(table.ra_column),
                _lower(table.dec_column), _lower(table.director), _lower(table.director_key),
            ),
        )  # fmt: skip
        with czar.cursor() as cur:
            cur.executemany(
                "INSERT INTO qserv_meta.columns (catalog, table_name, name, spelling, ordinal,"
                " datatype, length, pg_type, nullable, unit, ucd, description, principal)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        catalog.sql_name,
                        table.sql_name,
                        col.sql_name,
                        col.name,
                        i,
                        col.datatype,
                        col.length,
                        col.pg_type,
                        col.nullable,
                        col.unit,
                        col.ucd,
                        col.description,
                        col.principal,
                    )
                    for i, col in enumerate(table.columns, 1)
                ],
            )


def _tap_schema_follows(spec: ClusterSpec, changed: str) -> None:
    """Rewrite TAP_SCHEMA after catalog ``changed`` was created or dropped, if the cluster
    has TAP_SCHEMA (the service makes it). A failure is logged, never undoes the change."""
    if changed == "tap_schema":
        return
    from qserv_py.api.tap_schema import try_refresh_tap_schema  # the API describes catalogs

    try_refresh_tap_schema(spec, create=False)


def _lower(name: str | None) -> str | None:
    return name.lower() if name is not None else None
