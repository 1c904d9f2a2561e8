"""Catalog create/drop on every worker, atomically, with the read-only role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from qserv_py.cli import main
from qserv_py.cluster.catalogs import create_catalog, drop_catalog, list_catalogs
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import CatalogError, CatalogExists, UnknownCatalog
from qserv_py.schema import default_catalog, default_catalog_path, load_catalog

PARTITIONED = {"object", "object_overlap", "source", "forcedsource"}


@pytest.fixture(scope="module")
def dp02(spec: ClusterSpec) -> Iterator[ClusterSpec]:
    path = default_catalog_path("dp02")
    create_catalog(spec, default_catalog("dp02"), path.read_text())
    yield spec
    drop_catalog(spec, "dp02")


def _relations(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
        (schema,),
    )
    return dict(rows.fetchall())


def test_tables_on_every_worker(dp02: ClusterSpec) -> None:
    for worker in dp02.workers:
        with connect(worker) as conn:
            relations = _relations(conn, "dp02")
            assert relations == {**dict.fromkeys(PARTITIONED, "p"), "ccdvisit": "r"}
            for table in PARTITIONED:
                key = conn.execute(
                    "SELECT pg_get_partkeydef(%s::regclass)", (f"dp02.{table}",)
                ).fetchone()
                assert key == ("LIST (chunk_id)",)
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = 'dp02.object'::regclass"
                    " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
                )
            ]
            assert columns[:3] == ["objectid", "coord_ra", "coord_dec"]
            assert columns[-2:] == ["spatial_index", "chunk_id"]
            assert len(columns) == 11 + 6 * 5 + 2
            indexed = {
                r[0]
                for r in conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'dp02'"
                    " AND tablename = 'forcedsource'"
                )
            }
            assert any("(spatial_index)" in d for d in indexed)
            assert any("(objectid)" in d for d in indexed)
            pk = conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'dp02.ccdvisit'::regclass AND contype = 'p'"
            ).fetchone()
            assert pk == ("PRIMARY KEY (ccdvisitid)",)
            functions = {
                r[0]
                for r in conn.execute(
                    "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE nspname = 'qserv'"
                )
            }
            assert {"ang_sep", "pt_in_circle", "pt_in_box", "pt_in_cpoly"} <= functions


def test_czar_metadata(dp02: ClusterSpec) -> None:
    [info] = [c for c in list_catalogs(dp02) if c.name == "dp02"]
    assert info.tables == (
        ("Object", "director"),
        ("Source", "child"),
        ("ForcedSource", "child"),
        ("CcdVisit", "replicated"),
    )
    with connect(dp02.czar) as czar:
        row = czar.execute(
            "SELECT spelling, unit, ucd, pg_type FROM qserv_meta.columns"
            " WHERE catalog = 'dp02' AND table_name = 'object' AND name = 'g_psfflux'"
        ).fetchone()
        assert row == ("g_psfFlux", "nJy", row[2], "double precision")
        assert row[2].startswith("phot.flux")
        kinds = czar.execute(
            "SELECT director, director_key FROM qserv_meta.tables"
            " WHERE catalog = 'dp02' AND name = 'forcedsource'"
        ).fetchone()
        assert kinds == ("object", "objectid")


def test_reader_role_is_read_only(dp02: ClusterSpec) -> None:
    worker = dp02.workers[0].with_user(dp02.reader_user, dp02.reader_password)
    with connect(worker, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM dp02.object").fetchone() == (0,)
        row = conn.execute("SELECT qserv.ang_sep(0, 0, 1, 0)").fetchone()
        assert row is not None and row[0] == pytest.approx(1.0)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO dp02.ccdvisit (ccdvisitid) VALUES (1)")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE public.sneaky (x int)")
        conn.execute("SET default_transaction_read_only = off")  # even so: no privilege
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO dp02.ccdvisit (ccdvisitid) VALUES (1)")


def test_create_twice_and_drop_unknown(dp02: ClusterSpec) -> None:
    with pytest.raises(CatalogExists, match="catalog dp02 exists already; drop it first"):
        create_catalog(dp02, default_catalog("dp02"), "")
    # other catalogs of the session (qt, TAP_SCHEMA) may be listed too, in any order
    with pytest.raises(UnknownCatalog, match=r"no catalog nosuch; known catalogs: .*\bdp02\b"):
        drop_catalog(dp02, "nosuch")


def test_create_is_atomic(spec: ClusterSpec, tmp_path: Path) -> None:
    """A worker that fails its share leaves no trace of the catalog anywhere."""
    schema = default_catalog_path("dp02").read_text().replace("name: dp02", "name: clash", 1)
    (tmp_path / "clash.yaml").write_text(schema)
    catalog = load_catalog(tmp_path / "clash.yaml")
    assert catalog.name == "clash"
    last = spec.workers[-1]
    with connect(last, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA clash")
    try:
        with pytest.raises(CatalogError, match="already has a schema clash"):
            create_catalog(spec, catalog, schema)
        for worker in spec.workers[:-1]:
            with connect(worker) as conn:
                assert _relations(conn, "clash") == {}
                assert (
                    conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'clash'").fetchone()
                    is None
                )
        with connect(spec.czar) as czar:
            assert (
                czar.execute("SELECT 1 FROM qserv_meta.catalogs WHERE name = 'clash'").fetchone()
                is None
            )
            assert czar.execute(
                "SELECT count(*) FROM qserv_meta.twophase_decisions"
            ).fetchone() == (0,)
        for worker in spec.workers:
            with connect(worker) as conn:
                assert conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
    finally:
        with connect(last, autocommit=True) as conn:
            conn.execute("DROP SCHEMA clash")


def test_drop_removes_everywhere(
    spec: ClusterSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = default_catalog_path("dp02").read_text().replace("name: dp02", "name: dropme", 1)
    (tmp_path / "dropme.yaml").write_text(schema)
    cluster = ["--cluster", str(spec.path)]
    assert main([*cluster, "catalog", "create", str(tmp_path / "dropme.yaml")]) == 0
    for worker in spec.workers:
        with connect(worker) as conn:
            assert set(_relations(conn, "dropme")) == PARTITIONED | {"ccdvisit"}
    assert main([*cluster, "catalog", "drop", "DropMe"]) == 0  # names fold case
    assert "dropped catalog DropMe" in capsys.readouterr().out
    for worker in spec.workers:
        with connect(worker) as conn:
            assert (
                conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'dropme'").fetchone()
                is None
            )
    with connect(spec.czar) as czar:
        for table in ("catalogs", "tables", "columns"):
            name_col = "name" if table == "catalogs" else "catalog"
            count = czar.execute(
                f"SELECT count(*) FROM qserv_meta.{table} WHERE {name_col} = 'dropme'"
            ).fetchone()
            assert count == (0,)


def test_bad_schema_through_cli(
    spec: ClusterSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ntables:\n- name: T\n  qserv:kind: replicated\n  columns:\n"
        "  - {name: x, datatype: quaternion}\n"
    )
    assert main(["--cluster", str(spec.path), "catalog", "create", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "table T" in err and "column x" in err and "quaternion" in err
    with connect(spec.czar) as czar:
        assert (
            czar.execute("SELECT 1 FROM qserv_meta.catalogs WHERE name = 'bad'").fetchone() is None
        )
