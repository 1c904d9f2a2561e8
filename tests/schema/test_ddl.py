"""Worker DDL generated from catalogs (its execution on PostgreSQL is tested elsewhere)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from qserv_py.errors import ConfigError
from qserv_py.schema import (
    Catalog,
    Column,
    Table,
    TableKind,
    ddl,
    default_catalog,
    felis,
    load_catalog,
    model,
)
from qserv_py.schema.ddl import (
    create_catalog_ddl,
    drop_catalog_ddl,
    index_name,
    overlap_table_name,
)

SCHEMAS = Path(__file__).parent.parent / "fixtures" / "schemas"


@pytest.fixture(scope="module")
def dp02() -> Catalog:
    return default_catalog()


@pytest.fixture(scope="module")
def statements(dp02: Catalog) -> list[str]:
    return create_catalog_ddl(dp02, "qserv_reader")


def _create_table(statements: list[str], name: str) -> str:
    found = [s for s in statements if s.startswith(f"CREATE TABLE {name} (")]
    assert len(found) == 1, name
    return found[0]


def _column_names(create_table: str) -> list[str]:
    body = create_table[create_table.index("(\n") + 2 : create_table.rindex("\n)")]
    return [line.split()[0] for line in body.splitlines()]


def test_statement_order_and_tables(statements: list[str]) -> None:
    assert statements[0] == "CREATE SCHEMA dp02"
    tables = [s.split()[2] for s in statements if s.startswith("CREATE TABLE")]
    assert tables == [
        "dp02.object",
        "dp02.object_overlap",
        "dp02.source",
        "dp02.forcedsource",
        "dp02.ccdvisit",
    ]
    assert statements[-3:] == [
        "GRANT USAGE ON SCHEMA dp02 TO qserv_reader",
        "GRANT SELECT ON ALL TABLES IN SCHEMA dp02 TO qserv_reader",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA dp02 GRANT SELECT ON TABLES TO qserv_reader",
    ]


def test_partitioned_tables(dp02: Catalog, statements: list[str]) -> None:
    for table in dp02.tables:
        if not table.partitioned:
            continue
        sql = _create_table(statements, f"dp02.{table.sql_name}")
        assert sql.endswith(") PARTITION BY LIST (chunk_id)")
        assert _column_names(sql) == [
            *(c.sql_name for c in table.columns),
            "spatial_index",
            "chunk_id",
        ]
        assert "    spatial_index bigint NOT NULL," in sql
        assert "    chunk_id bigint NOT NULL\n" in sql
        assert "PRIMARY KEY" not in sql


def test_column_types_and_nullability(statements: list[str]) -> None:
    obj = _create_table(statements, "dp02.object")
    assert "    objectid bigint NOT NULL,\n" in obj
    assert "    coord_ra double precision NOT NULL,\n" in obj
    assert "    coord_raerr real,\n" in obj
    assert "    refband char(1),\n" in obj
    assert "    detect_isprimary boolean,\n" in obj
    source = _create_table(statements, "dp02.source")
    assert "    objectid bigint NOT NULL,\n" in source  # the director key places rows


def test_overlap_only_for_directors(dp02: Catalog, statements: list[str]) -> None:
    overlaps = [s.split()[2] for s in statements if re.match(r"CREATE TABLE \S+_overlap ", s)]
    assert overlaps == ["dp02.object_overlap"]
    obj = _create_table(statements, "dp02.object")
    overlap = _create_table(statements, "dp02.object_overlap")
    assert overlap == obj.replace("dp02.object ", "dp02.object_overlap ")


def test_indexes(statements: list[str]) -> None:
    indexes = [s for s in statements if s.startswith("CREATE INDEX")]
    assert indexes == [
        "CREATE INDEX object_spatial_index_idx ON dp02.object (spatial_index)",
        "CREATE INDEX object_objectid_idx ON dp02.object (objectid)",
        "CREATE INDEX object_overlap_spatial_index_idx ON dp02.object_overlap (spatial_index)",
        "CREATE INDEX object_overlap_objectid_idx ON dp02.object_overlap (objectid)",
        "CREATE INDEX source_spatial_index_idx ON dp02.source (spatial_index)",
        "CREATE INDEX source_objectid_idx ON dp02.source (objectid)",
        "CREATE INDEX forcedsource_spatial_index_idx ON dp02.forcedsource (spatial_index)",
        "CREATE INDEX forcedsource_objectid_idx ON dp02.forcedsource (objectid)",
    ]


def test_replicated_table(dp02: Catalog, statements: list[str]) -> None:
    sql = _create_table(statements, "dp02.ccdvisit")
    assert "PARTITION" not in sql and "spatial_index" not in sql and "chunk_id" not in sql
    assert sql.endswith("    PRIMARY KEY (ccdvisitid)\n)")
    assert _column_names(sql)[:-1] == [c.sql_name for c in dp02.table("CcdVisit").columns]
    assert "    ccdvisitid bigint NOT NULL,\n" in sql


def test_identifiers_are_lower_case(dp02: Catalog, statements: list[str]) -> None:
    mixed = {c.name for t in dp02.tables for c in t.columns if c.name != c.sql_name}
    assert "objectId" in mixed
    for statement in statements:
        assert not any(re.search(rf"\b{name}\b", statement) for name in mixed), statement


def test_sdm_style_catalog() -> None:
    statements = create_catalog_ddl(load_catalog(SCHEMAS / "sdm_style.yaml"), "reader")
    patches = _create_table(statements, "dp02_dc2_catalogs.coaddpatches")
    assert "PRIMARY KEY (lsst_tract, lsst_patch)" in patches
    assert "    s_region char(512) NOT NULL,\n" in patches
    assert (
        "CREATE INDEX forcedsource_objectid_idx ON dp02_dc2_catalogs.forcedsource (objectid)"
        in (statements)
    )


def test_drop_catalog() -> None:
    assert drop_catalog_ddl("dp02") == ["DROP SCHEMA IF EXISTS dp02 CASCADE"]
    with pytest.raises(ValueError, match="not a valid identifier"):
        drop_catalog_ddl("dp02; DROP TABLE x")


def test_overlap_table_name(dp02: Catalog) -> None:
    assert overlap_table_name(dp02.table("Object")) == "object_overlap"
    assert overlap_table_name("ForcedSource") == "forcedsource_overlap"


def test_long_index_names_fit_and_stay_distinct() -> None:
    table = "t" * 55 + "_overlap"
    a, b = index_name(table, "a" * 55), index_name(table, "a" * 54 + "b")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert a.startswith("t" * 40) and a.endswith("_idx")


def _director(name: str, key: str) -> Table:
    columns = (Column(key, "long"), Column("ra", "double"), Column("decl", "double"))
    return Table(name, TableKind.DIRECTOR, columns, (key,), ra_column="ra", dec_column="decl")


def test_clashing_index_names_are_made_distinct() -> None:
    # a_b.c and a.b_c would both give a_b_c_idx
    catalog = Catalog("cat", (_director("a_b", "c"), _director("a", "b_c")))
    names = [s.split()[2] for s in create_catalog_ddl(catalog, "r") if s.startswith("CREATE INDEX")]
    assert len(names) == 8 and len(set(names)) == 8
    assert "a_b_c_idx" in names


def test_bad_reader_role_and_bad_identifiers() -> None:
    with pytest.raises(ConfigError, match="reader role"):
        create_catalog_ddl(default_catalog(), "reader; DROP SCHEMA dp02")
    catalog = Catalog("cat", (_director("obj", "id); DROP TABLE x; --"),))
    with pytest.raises(ValueError, match="cannot use"):
        create_catalog_ddl(catalog, "reader")


@pytest.mark.parametrize("module", [ddl, felis, model], ids=lambda m: m.__name__)
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]
