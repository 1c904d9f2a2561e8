"""Admin routes: the bearer token, and spooled loads (open, add files, publish, abort)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.api.routes.admin import spool_root
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.stats import catalog_stats
from qserv_py.config import Settings
from qserv_py.loaders.generate import generate_release

AUTH = {"Authorization": "Bearer test-admin-token"}
ADMIN = "/api/v1/admin"


@pytest.fixture(scope="module")
def small_release(work_dir: Path) -> Path:
    out = work_dir / "admin-release"
    generate_release(out, 400, sources_per_object=1, forced_per_object=3, visits=20, seed=5)
    return out


@pytest.fixture(scope="module")
def other_release(work_dir: Path) -> Path:
    """Objects 0..799: its ForcedSource rows name objects that small_release lacks."""
    out = work_dir / "admin-release-other"
    generate_release(out, 800, sources_per_object=1, forced_per_object=3, visits=20, seed=6)
    return out


def _files(folder: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (p.name, p.read_bytes(), "application/vnd.apache.parquet"))
        for p in sorted(folder.glob("*.parquet"))
    ]


def _count(api: TestClient, text: str) -> int:
    response = api.post("/api/v1/query", json={"query": text})
    assert response.status_code == 200, response.text
    return int(response.json()["rows"][0][0])


def _staging_tables(spec: ClusterSpec, txn: int) -> int:
    found = 0
    for instance in spec.instances:
        with connect(instance, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'qserv_stage'"
                " AND tablename LIKE %s",
                (f"s{txn}%",),
            ).fetchone()
            found += int(row[0]) if row else 0
    return found


# --- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic dGVzdC1hZG1pbi10b2tlbg=="},
        {"Authorization": "Bearer test-admin-token-and-more"},
    ],
)
def test_admin_routes_need_the_token(api: TestClient, headers: dict[str, str]) -> None:
    for method, path in (
        ("GET", "/loads"),
        ("POST", "/loads"),
        ("GET", "/txns"),
        ("POST", "/loads/0123456789ab/publish"),
    ):
        response = api.request(method, ADMIN + path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["message"]


def test_no_configured_token_refuses_everybody(api_settings: Settings, spec: ClusterSpec) -> None:
    settings = api_settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(settings, spec)) as test_client:
        response = test_client.get(f"{ADMIN}/loads", headers=AUTH)
    assert response.status_code == 401
    assert "no admin_token is configured" in response.json()["message"]


# --- loads -------------------------------------------------------------------------------------


def test_full_load_through_the_admin_routes(
    api: TestClient,
    spec: ClusterSpec,
    api_settings: Settings,
    make_catalog: Callable[[str], str],
    small_release: Path,
) -> None:
    make_catalog("adm_full")
    started = api.post(
        f"{ADMIN}/loads",
        headers=AUTH,
        json={"catalog": "adm_full", "table": "Object", "options": {"max_rows_per_chunk": 50}},
    )
    assert started.status_code == 201, started.text
    load = started.json()
    assert load["state"] == "open" and load["txn"] is None and load["files"] == []
    assert load["options"]["max_rows_per_chunk"] == 50
    files = _files(small_release / "Object")
    added = api.post(f"{ADMIN}/loads/{load['id']}/files", headers=AUTH, files=files)
    assert added.status_code == 200, added.text
    assert [f["name"] for f in added.json()["files"]] == [name for _, (name, _, _) in files]
    assert sum(f["rows"] for f in added.json()["files"]) == 400
    assert _count(api, "SELECT COUNT(*) FROM adm_full.Object") == 0  # nothing visible yet
    published = api.post(f"{ADMIN}/loads/{load['id']}/publish", headers=AUTH)
    assert published.status_code == 200, published.text
    body = published.json()
    assert body["state"] == "published" and body["txn_state"] == "published"
    assert body["rows"] == 400 and body["overlap_rows"] > 0
    assert _count(api, "SELECT COUNT(*) FROM adm_full.Object") == 400
    stats = {t.name: t for t in catalog_stats(spec, "adm_full").tables}
    assert stats["Object"].rows == 400 and stats["Object"].chunks > 1  # 50 rows per chunk
    # the spooled files are gone; publishing again answers the same load
    assert not (spool_root(api_settings) / load["id"] / "files").exists()
    again = api.post(f"{ADMIN}/loads/{load['id']}/publish", headers=AUTH)
    assert again.status_code == 200 and again.json()["txn"] == body["txn"]
    assert _count(api, "SELECT COUNT(*) FROM adm_full.Object") == 400

    # a child table, its files added in two calls
    child = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "adm_full", "table": "forcedsource"}
    ).json()
    assert child["table"] == "ForcedSource"
    whole = pq.read_table(small_release / "ForcedSource")
    pieces = []
    for i, half in enumerate(
        (whole.slice(0, whole.num_rows // 2), whole.slice(whole.num_rows // 2))
    ):
        sink = pa.BufferOutputStream()
        pq.write_table(half, sink)
        pieces.append([("files", (f"half{i}.parquet", bytes(sink.getvalue()), "x"))])
    for piece in pieces:
        response = api.post(f"{ADMIN}/loads/{child['id']}/files", headers=AUTH, files=piece)
        assert response.status_code == 200, response.text
    assert len(api.get(f"{ADMIN}/loads/{child['id']}", headers=AUTH).json()["files"]) == 2
    done = api.post(f"{ADMIN}/loads/{child['id']}/publish", headers=AUTH)
    assert done.status_code == 200, done.text
    forced = whole.num_rows
    assert done.json()["rows"] == forced
    assert _count(api, "SELECT COUNT(*) FROM adm_full.ForcedSource") == forced

    listed = {r["id"]: r for r in api.get(f"{ADMIN}/loads", headers=AUTH).json()}
    assert listed[load["id"]]["state"] == listed[child["id"]]["state"] == "published"
    txns = {t["id"]: t for t in api.get(f"{ADMIN}/txns?catalog=adm_full", headers=AUTH).json()}
    assert txns[body["txn"]]["state"] == "published" and txns[body["txn"]]["rows"] == 400
    assert txns[done.json()["txn"]]["files"] == 2
    refused = api.post(f"{ADMIN}/loads/{load['id']}/abort", headers=AUTH)
    assert refused.status_code == 409 and "published" in refused.json()["message"]


def test_abort_leaves_nothing(
    api: TestClient,
    spec: ClusterSpec,
    api_settings: Settings,
    make_catalog: Callable[[str], str],
    small_release: Path,
    other_release: Path,
) -> None:
    make_catalog("adm_abort")
    # a load aborted before it ran: its files go
    opened = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "adm_abort", "table": "Object"}
    ).json()
    api.post(
        f"{ADMIN}/loads/{opened['id']}/files", headers=AUTH, files=_files(small_release / "Object")
    )
    aborted = api.post(f"{ADMIN}/loads/{opened['id']}/abort", headers=AUTH)
    assert aborted.status_code == 200 and aborted.json()["state"] == "aborted"
    assert aborted.json()["txn"] is None
    assert not (spool_root(api_settings) / opened["id"] / "files").exists()
    late = api.post(f"{ADMIN}/loads/{opened['id']}/publish", headers=AUTH)
    assert late.status_code == 409 and "aborted" in late.json()["message"]
    assert _count(api, "SELECT COUNT(*) FROM adm_abort.Object") == 0

    # a load that failed while staging (unknown director keys), then aborted
    objects = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "adm_abort", "table": "Object"}
    ).json()
    api.post(
        f"{ADMIN}/loads/{objects['id']}/files", headers=AUTH, files=_files(small_release / "Object")
    )
    assert api.post(f"{ADMIN}/loads/{objects['id']}/publish", headers=AUTH).status_code == 200
    before = {t.name: t.rows for t in catalog_stats(spec, "adm_abort").tables}
    bad = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "adm_abort", "table": "ForcedSource"}
    ).json()
    api.post(
        f"{ADMIN}/loads/{bad['id']}/files",
        headers=AUTH,
        files=_files(other_release / "ForcedSource"),
    )
    failed = api.post(f"{ADMIN}/loads/{bad['id']}/publish", headers=AUTH)
    assert failed.status_code == 409, failed.text
    assert failed.json()["error"] == "LoadError" and "not in Object" in failed.json()["message"]
    record = api.get(f"{ADMIN}/loads/{bad['id']}", headers=AUTH).json()
    assert record["state"] == "failed" and record["txn"] is not None
    assert record["txn_state"] == "failed" and "not in Object" in record["error"]
    assert _staging_tables(spec, record["txn"]) > 0
    aborted = api.post(f"{ADMIN}/loads/{bad['id']}/abort", headers=AUTH)
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["state"] == "aborted" and aborted.json()["txn_state"] == "aborted"
    assert _staging_tables(spec, record["txn"]) == 0
    assert {t.name: t.rows for t in catalog_stats(spec, "adm_abort").tables} == before
    assert _count(api, "SELECT COUNT(*) FROM adm_abort.ForcedSource") == 0
    assert not (spool_root(api_settings) / bad["id"] / "files").exists()


def test_bad_files_are_refused_and_not_kept(
    api: TestClient,
    api_settings: Settings,
    make_catalog: Callable[[str], str],
    small_release: Path,
    tmp_path: Path,
) -> None:
    make_catalog("adm_bad")
    load = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "adm_bad", "table": "Object"}
    ).json()
    good = _files(small_release / "Object")[:1]
    junk = ("files", ("notes.parquet", b"this is not parquet", "text/plain"))
    response = api.post(f"{ADMIN}/loads/{load['id']}/files", headers=AUTH, files=[*good, junk])
    assert response.status_code == 400
    assert response.json()["error"] == "LoadInputError"
    assert "notes.parquet" in response.json()["message"]
    assert "load-spool" not in response.json()["message"]
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"objectId": [1, 2], "mystery": [1.0, 2.0]}), wrong)
    response = api.post(f"{ADMIN}/loads/{load['id']}/files", headers=AUTH, files=_files(tmp_path))
    assert response.status_code == 400 and "mystery" in response.json()["message"]
    record = api.get(f"{ADMIN}/loads/{load['id']}", headers=AUTH).json()
    assert record["files"] == [] and record["state"] == "open"
    assert list((spool_root(api_settings) / load["id"] / "files").iterdir()) == []
    empty = api.post(f"{ADMIN}/loads/{load['id']}/publish", headers=AUTH)
    assert empty.status_code == 400 and "no files" in empty.json()["message"]
    api.post(f"{ADMIN}/loads/{load['id']}/abort", headers=AUTH)


def test_load_errors(api: TestClient, make_catalog: Callable[[str], str]) -> None:
    make_catalog("adm_err")
    unknown_catalog = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "nosuch", "table": "Object"}
    )
    assert unknown_catalog.status_code == 404
    assert unknown_catalog.json()["error"] == "UnknownCatalog"
    unknown_table = api.post(
        f"{ADMIN}/loads", headers=AUTH, json={"catalog": "adm_err", "table": "Nope"}
    )
    assert unknown_table.status_code == 409 and "Object" in unknown_table.json()["message"]
    too_many = api.post(
        f"{ADMIN}/loads",
        headers=AUTH,
        json={"catalog": "adm_err", "table": "Object", "options": {"replication": 9}},
    )
    assert too_many.status_code == 409 and "replication 9" in too_many.json()["message"]
    bad_option = api.post(
        f"{ADMIN}/loads",
        headers=AUTH,
        json={"catalog": "adm_err", "table": "Object", "options": {"replication": 0}},
    )
    assert bad_option.status_code == 400
    missing = api.get(f"{ADMIN}/loads/0123456789ab", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "UnknownLoad"
    assert api.post(f"{ADMIN}/loads/0123456789ab/abort", headers=AUTH).status_code == 404
    assert api.get(f"{ADMIN}/loads/..%2Fetc", headers=AUTH).status_code in (400, 404)
