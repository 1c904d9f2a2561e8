"""TAP uploads in queries: ``UPLOAD=t,param:t`` with a VOTable, CSV or Parquet part, read
as ``TAP_UPLOAD.t``, sync (HTTP and pyvo) and async (pyvo); bad uploads answer errors that
say what to fix; nothing stays on the workers."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.io.votable import from_table, parse_single_table
from astropy.table import Table
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.exec.uploads import upload_tables
from tests.query.test_corpus import compare
from tests.query.test_uploads import edge_targets

XMATCH = (
    "SELECT t.id, o.objectId, DISTANCE(POINT(t.ra, t.dec), POINT(o.coord_ra, o.coord_dec)) "
    "AS d FROM TAP_UPLOAD.t AS t JOIN Object AS o "
    "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 30.0 / 3600)) = 1"
)


@pytest.fixture(scope="module")
def targets(client: Client, oracle: psycopg.Connection) -> pa.Table:
    rows = oracle.execute("SELECT objectid, coord_ra, coord_dec FROM qt.object").fetchall()
    ids, ra, dec = (np.array(c) for c in zip(*rows, strict=True))
    objects = pa.table({"objectid": ids.astype(np.int64), "ra": ra, "dec": dec})
    table = edge_targets(client, objects, 30 / 3600, seed=33)
    finite = pc.fill_null(pc.is_finite(table.column("ra")), False)
    return table.filter(finite).select(["id", "ra", "dec"])


@pytest.fixture(scope="module")
def expected(client: Client, targets: pa.Table) -> list[tuple]:
    """The Python API's answer (tests/query/test_uploads.py holds it to the oracle)."""
    return [tuple(r.values()) for r in client.query(XMATCH, uploads={"t": targets}).to_pylist()]


def votable_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    from_table(Table(table.to_pydict())).to_xml(out)
    return out.getvalue()


def encoded(table: pa.Table, kind: str) -> bytes:
    if kind == "votable":
        return votable_bytes(table)
    out = io.BytesIO()
    if kind == "csv":
        pcsv.write_csv(table, out)
    else:
        pq.write_table(table, out)
    return out.getvalue()


def rows_of(content: bytes) -> list[tuple]:
    table = parse_single_table(io.BytesIO(content)).to_table()
    return [tuple(row) for row in zip(*(table[c].tolist() for c in table.colnames), strict=True)]


@pytest.mark.parametrize("kind", ["votable", "csv", "parquet"])
def test_sync_post_with_upload(
    api: TestClient, spec: ClusterSpec, targets: pa.Table, expected: list[tuple], kind: str
) -> None:
    response = api.post(
        "/tap/sync",
        data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": XMATCH, "UPLOAD": "t,param:tgt"},
        files={"tgt": ("targets", encoded(targets, kind), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    compare(rows_of(response.content), expected, ordered=False)
    assert all(not tables for tables in upload_tables(spec).values())


def test_id_join_upload(api: TestClient, client: Client) -> None:
    ids = client.query("SELECT TOP 50 objectId FROM Object").column("objectId")
    wanted = pa.table({"oid": ids})
    query = "SELECT o.objectId, o.coord_ra FROM TAP_UPLOAD.w w JOIN Object o ON o.objectId = w.oid"
    response = api.post(
        "/tap/sync",
        data={"QUERY": query, "UPLOAD": "w,param:w"},
        files={"w": ("w.parquet", encoded(wanted, "parquet"))},
    )
    assert response.status_code == 200, response.text
    assert sorted(r[0] for r in rows_of(response.content)) == sorted(ids.to_pylist())


@pytest.fixture(scope="module")
def tap(tap_url: str) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(tap_url)


def test_pyvo_sync_uploads(
    tap: pyvo.dal.TAPService, targets: pa.Table, expected: list[tuple]
) -> None:
    upload = Table(targets.to_pydict())
    for result in (
        tap.run_sync(XMATCH, uploads={"t": upload}),
        tap.search(XMATCH, uploads={"t": upload}),
    ):
        table = result.to_table()
        got = [tuple(r) for r in zip(table["id"], table["objectId"], table["d"], strict=True)]
        compare(got, expected, ordered=False)


def test_pyvo_async_upload(
    tap: pyvo.dal.TAPService, targets: pa.Table, expected: list[tuple]
) -> None:
    result = tap.run_async(XMATCH, uploads={"t": Table(targets.to_pydict())}).to_table()
    got = [tuple(r) for r in zip(result["id"], result["objectId"], result["d"], strict=True)]
    compare(got, expected, ordered=False)


def test_bad_uploads(api: TestClient, targets: pa.Table) -> None:
    def error(**kwargs: object) -> str:
        response = api.post("/tap/sync", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, response.text
        assert 'value="ERROR"' in response.text
        return response.text

    part = {"tgt": ("targets", encoded(targets, "parquet"))}
    missing = error(data={"QUERY": XMATCH, "UPLOAD": "t,param:other"}, files=part)
    assert "no multipart part named" in missing and "other" in missing
    unused = error(data={"QUERY": "SELECT * FROM TAP_UPLOAD.t"})
    assert "this query has no uploads" in unused
    typo = error(data={"QUERY": "SELECT * FROM TAP_UPLOAD.tt", "UPLOAD": "t,param:tgt"}, files=part)
    assert "did you mean t" in typo
    column = error(
        data={"QUERY": "SELECT t.rra FROM TAP_UPLOAD.t AS t", "UPLOAD": "t,param:tgt"}, files=part
    )
    assert "did you mean ra" in column
    far = XMATCH.replace("30.0 / 3600", "90.0 / 3600")
    assert "larger than the overlap" in error(
        data={"QUERY": far, "UPLOAD": "t,param:tgt"}, files=part
    )


@pytest.fixture(scope="module")
def small_api(api_settings: Settings, spec: ClusterSpec, client: Client) -> Iterator[TestClient]:
    """The service with small upload limits."""
    settings = api_settings.model_copy(update=dict(upload_max_rows=10, upload_max_bytes=50_000))
    with TestClient(create_app(settings, spec)) as test_client:
        yield test_client


def test_upload_limits(small_api: TestClient, targets: pa.Table) -> None:
    query = "SELECT COUNT(*) FROM TAP_UPLOAD.t"
    response = small_api.post(
        "/tap/sync",
        data={"QUERY": query, "UPLOAD": "t,param:t"},
        files={"t": ("t.csv", encoded(targets.slice(0, 11), "csv"))},
    )
    assert response.status_code == 400
    assert "11 rows; the limit is 10 rows" in response.text
    big = pa.table({"id": pa.array(range(10)), "note": pa.array(["x" * 6000] * 10)})
    response = small_api.post(
        "/tap/sync",
        data={"QUERY": query, "UPLOAD": "t,param:t"},
        files={"t": ("t.csv", encoded(big, "csv"))},
    )
    assert response.status_code == 400  # 60,000 bytes of text (and offsets) decoded
    assert "the limit is 50,000 bytes (setting upload_max_bytes)" in response.text
    response = small_api.post(
        "/tap/sync",
        data={"QUERY": query, "UPLOAD": "t,param:t"},
        files={"t": ("t.csv", encoded(targets.slice(0, 10), "csv"))},
    )
    assert response.status_code == 200, response.text
    assert rows_of(response.content) == [(10,)]


def test_upload_limit_counts_the_decoded_table(small_api: TestClient, targets: pa.Table) -> None:
    """upload_max_bytes (here 50,000) counts the decoded table, not the XML: 10 rows in
    over 60,000 bytes of VOTable are taken (test_upload_limits: 10 rows holding 60,000
    bytes of text are refused)."""
    query = "SELECT COUNT(*) FROM TAP_UPLOAD.t"
    xml = votable_bytes(targets.slice(0, 10))
    padded = xml.replace(b"<TABLEDATA>", b"<TABLEDATA>" + b"\n " * 30_000, 1)
    assert len(padded) > 60_000
    response = small_api.post(
        "/tap/sync",
        data={"QUERY": query, "UPLOAD": "t,param:t"},
        files={"t": ("t.xml", padded)},
    )
    assert response.status_code == 200, response.text
    assert rows_of(response.content) == [(10,)]
