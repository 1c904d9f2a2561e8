"""TAP_SCHEMA: described from the catalogs, kept on every worker, queryable in ADQL, and
rewritten when a catalog is created or dropped."""

from __future__ import annotations

import doctest
import logging

import pytest
import pyvo
from fastapi.testclient import TestClient

from qserv_py.api import tap_schema
from qserv_py.api.tap_schema import (
    TAP_SCHEMA,
    TAP_TABLES,
    TAP_UPLOAD,
    describe,
    refresh_tap_schema,
    tap_rows,
)
from qserv_py.client import Client
from qserv_py.cluster.catalogs import drop_catalog, list_catalogs
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.schema import default_catalog, parse_catalog
from tests.conftest import create_dp02_catalog

# --- the description (no cluster) --------------------------------------------------------


def test_docstring_examples() -> None:
    assert doctest.testmod(tap_schema).failed == 0


def test_describe_lists_what_a_query_can_reach() -> None:
    dp02 = default_catalog("dp02")
    schemas = describe([dp02])
    assert [s.name for s in schemas] == ["dp02", TAP_UPLOAD, TAP_SCHEMA]
    assert [s.index for s in schemas] == [0, 1, 2]
    assert schemas[1].tables == ()
    tables = {t.name: t for s in schemas for t in s.tables}
    assert list(tables)[:4] == ["dp02.Object", "dp02.Source", "dp02.ForcedSource", "dp02.CcdVisit"]
    assert {f"{TAP_SCHEMA}.{name}" for name in TAP_TABLES} <= set(tables)
    obj = tables["dp02.Object"]
    names = [c.name for c in obj.columns]
    assert names == [c.name for c in dp02.table("Object").columns]  # the loader's are hidden
    assert "spatial_index" not in names and "chunk_id" not in names
    assert [c.index for c in obj.columns] == list(range(1, len(names) + 1))
    ra = obj.columns[1]
    assert (ra.name, ra.unit, ra.ucd, ra.datatype, ra.arraysize) == (
        "coord_ra", "deg", "pos.eq.ra;meta.main", "double", None,
    )  # fmt: skip
    assert ra.principal and not ra.indexed and not ra.nullable and not ra.std
    band = tables["dp02.Source"].columns[5]
    assert (band.name, band.datatype, band.arraysize, band.size) == ("band", "char", "1", 1)
    # indexes: a director's key, a child's director key, a replicated table's primary key
    assert [c.name for c in obj.columns if c.indexed] == ["objectId"]
    assert [c.name for c in tables["dp02.ForcedSource"].columns if c.indexed] == ["objectId"]
    assert [c.name for c in tables["dp02.CcdVisit"].columns if c.indexed] == ["ccdVisitId"]
    assert all(c.std for c in tables["TAP_SCHEMA.columns"].columns)


def test_keys_link_children_to_their_director() -> None:
    tables = {t.name: t for s in describe([default_catalog("dp02")]) for t in s.tables}
    keys = {(k.from_table, k.target_table): k for t in tables.values() for k in t.keys}
    fs = keys[("dp02.ForcedSource", "dp02.Object")]
    assert fs.columns == (("objectId", "objectId"),)
    assert fs.key_id == "dp02.FK_ForcedSource_objectId_Object_objectId"
    assert keys[("dp02.Source", "dp02.CcdVisit")].columns == (("ccdVisitId", "ccdVisitId"),)
    assert keys[("TAP_SCHEMA.columns", "TAP_SCHEMA.tables")].columns == (
        ("table_name", "table_name"),
    )
    ids = [k.key_id for t in tables.values() for k in t.keys]
    assert len(ids) == len(set(ids))


def test_a_child_without_foreign_key_still_gets_its_director_key() -> None:
    text = (
        "name: tiny\n"
        "tables:\n"
        "- name: Obj\n  qserv:kind: director\n  qserv:ra_column: ra\n  qserv:dec_column: dec\n"
        '  primaryKey: "#Obj.id"\n'
        "  columns:\n"
        '  - {name: id, "@id": "#Obj.id", datatype: long}\n'
        "  - {name: ra, datatype: double}\n  - {name: dec, datatype: double}\n"
        "- name: Det\n  qserv:kind: child\n  qserv:director: Obj\n  qserv:director_key: obj\n"
        "  columns:\n  - {name: obj, datatype: long}\n  - {name: t, datatype: timestamp}\n"
    )
    schemas = describe([parse_catalog(text, "tiny")])
    det = next(t for s in schemas for t in s.tables if t.name == "tiny.Det")
    [key] = det.keys
    assert (key.key_id, key.target_table, key.columns) == (
        "tiny.Det_Obj",
        "tiny.Obj",
        (("obj", "id"),),
    )
    t = det.columns[1]
    assert (t.datatype, t.arraysize, t.xtype, t.size) == ("char", "*", "timestamp", None)


def test_rows_fit_the_tap_schema_tables() -> None:
    rows = tap_rows(describe([default_catalog("dp02")]))
    assert set(rows) == set(TAP_TABLES)
    for name, columns in TAP_TABLES.items():
        assert rows[name], name
        assert all(len(row) == len(columns) for row in rows[name]), name
    assert (TAP_UPLOAD, None, rows["schemas"][1][2], 1) == rows["schemas"][1]
    key_ids = {row[0] for row in rows["keys"]}
    assert {row[0] for row in rows["key_columns"]} == key_ids


# --- on the cluster ------------------------------------------------------------------------


def _query(api: TestClient, text: str) -> list[dict[str, object]]:
    """Rows of an ADQL query, through the service's own path (plan, workers, merge)."""
    outcome = api.app.state.service.run(text, "adql", maxrec=100_000)  # type: ignore[attr-defined]
    rows: list[dict[str, object]] = outcome.table.to_pylist()
    return rows


def test_columns_of_a_table_in_adql(api: TestClient) -> None:
    rows = _query(
        api,
        'SELECT column_name, datatype, arraysize, "size", unit, ucd, principal, indexed, std\n'
        "FROM TAP_SCHEMA.columns WHERE table_name = 'qt.Object' ORDER BY column_index",
    )
    client: Client = api.app.state.service.client  # type: ignore[attr-defined]
    model = client.context.catalogs.catalogs["qt"].table("Object")
    assert [r["column_name"] for r in rows] == [c.name for c in model.columns]
    first = rows[0]
    assert first == {
        "column_name": "objectId", "datatype": "long", "arraysize": None, "size": None,
        "unit": None, "ucd": "meta.id;meta.main", "principal": 1, "indexed": 1, "std": 0,
    }  # fmt: skip
    flux = next(r for r in rows if r["column_name"] == "g_psfFlux")
    assert (flux["unit"], flux["datatype"]) == ("nJy", "double")


def test_tap_schema_names_are_case_insensitive(api: TestClient) -> None:
    upper = _query(api, "SELECT table_name FROM TAP_SCHEMA.TABLES ORDER BY table_name")
    lower = _query(api, "SELECT table_name FROM tap_schema.tables ORDER BY table_name")
    assert upper == lower
    names = {r["table_name"] for r in upper}
    assert {"qt.Object", "qt.ForcedSource", "TAP_SCHEMA.columns", "TAP_SCHEMA.keys"} <= names


def test_schemas_keys_and_key_columns(api: TestClient) -> None:
    schemas = {r["schema_name"] for r in _query(api, "SELECT schema_name FROM TAP_SCHEMA.schemas")}
    assert {"qt", TAP_UPLOAD, TAP_SCHEMA} <= schemas
    pairs = _query(
        api,
        "SELECT k.from_table, k.target_table, c.from_column, c.target_column\n"
        "FROM TAP_SCHEMA.keys AS k JOIN TAP_SCHEMA.key_columns AS c ON c.key_id = k.key_id\n"
        "WHERE k.from_table = 'qt.ForcedSource'",
    )
    assert {
        "from_table": "qt.ForcedSource",
        "target_table": "qt.Object",
        "from_column": "objectId",
        "target_column": "objectId",
    } in pairs


def test_every_worker_has_the_same_rows(api: TestClient, spec: ClusterSpec) -> None:
    counts = []
    for worker in spec.workers:
        with connect(worker, autocommit=True) as conn:
            counts.append(
                [
                    conn.execute(f"SELECT count(*) FROM tap_schema.{name}").fetchone()
                    for name in TAP_TABLES
                ]
            )
    assert counts[0][2][0] > 100  # the columns of qt and of TAP_SCHEMA at least
    assert all(c == counts[0] for c in counts)


def test_pyvo_queries_tap_schema(tap_url: str) -> None:
    service = pyvo.dal.TAPService(tap_url)
    found = service.search(
        "SELECT column_name, unit, ucd FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'qt.ForcedSource' ORDER BY column_index"
    ).to_table()
    assert list(found["column_name"])[:2] == ["forcedSourceId", "objectId"]
    psf = list(found["column_name"]).index("psfFlux")
    assert found["unit"][psf] == "nJy"


def test_refreshed_when_a_catalog_is_created_and_dropped(
    api: TestClient, spec: ClusterSpec
) -> None:
    query = "SELECT table_name FROM TAP_SCHEMA.tables WHERE schema_name = 'tsnew'"
    assert _query(api, query) == []
    create_dp02_catalog(spec, "tsnew")
    try:
        names = {r["table_name"] for r in _query(api, query)}
        assert names == {"tsnew.Object", "tsnew.Source", "tsnew.ForcedSource", "tsnew.CcdVisit"}
        cols = _query(
            api, "SELECT COUNT(*) AS n FROM TAP_SCHEMA.columns WHERE table_name = 'tsnew.Object'"
        )
        assert cols[0]["n"] == len(default_catalog("dp02").table("Object").columns)
    finally:
        drop_catalog(spec, "tsnew")
    assert _query(api, query) == []
    assert _query(api, "SELECT key_id FROM TAP_SCHEMA.keys WHERE from_table LIKE 'tsnew.%'") == []


def test_a_failed_refresh_does_not_undo_the_catalog_change(
    api: TestClient, spec: ClusterSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """TAP_SCHEMA broken on one worker: the catalog is still made, the failure is logged."""
    worker = spec.workers[-1]
    with connect(worker, autocommit=True) as conn:
        conn.execute("ALTER TABLE tap_schema.keys RENAME TO keys_hidden")
    try:
        with caplog.at_level(logging.ERROR, logger="qserv_py.api.tap_schema"):
            create_dp02_catalog(spec, "tsbroken")
        assert "TAP_SCHEMA could not be refreshed" in caplog.text
        assert "tsbroken" in [c.name for c in list_catalogs(spec)]
    finally:
        with connect(worker, autocommit=True) as conn:
            conn.execute("ALTER TABLE tap_schema.keys_hidden RENAME TO keys")
        drop_catalog(spec, "tsbroken")
    names = {r["schema_name"] for r in _query(api, "SELECT schema_name FROM TAP_SCHEMA.schemas")}
    assert "tsbroken" not in names and "qt" in names


def test_made_again_from_a_changed_schema_file(api: TestClient, spec: ClusterSpec) -> None:
    """A TAP_SCHEMA made by another version of tap_schema.yaml is dropped and re-made."""
    with connect(spec.czar, autocommit=True) as czar:
        czar.execute(
            "UPDATE qserv_meta.catalogs SET schema_yaml = '# older' || chr(10) || schema_yaml"
            " WHERE name = 'tap_schema'"
        )
        created = czar.execute(
            "SELECT created_at FROM qserv_meta.catalogs WHERE name = 'tap_schema'"
        ).fetchone()
    assert refresh_tap_schema(spec, create=False)
    with connect(spec.czar, autocommit=True) as czar:
        row = czar.execute(
            "SELECT created_at, schema_yaml FROM qserv_meta.catalogs WHERE name = 'tap_schema'"
        ).fetchone()
    assert row is not None and created is not None
    assert row[0] > created[0] and not row[1].startswith("# older")
    assert _query(api, "SELECT COUNT(*) AS n FROM TAP_SCHEMA.tables WHERE schema_name = 'qt'") == [
        {"n": 4}
    ]
