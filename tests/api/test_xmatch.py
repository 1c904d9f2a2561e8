"""``POST /api/v1/xmatch``: all pairs and best matches equal the oracle's, from JSON and
multipart targets, in JSON, VOTable and Parquet; bad requests say what is wrong."""

from __future__ import annotations

import io

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from astropy.io.votable import parse_single_table
from fastapi.testclient import TestClient

from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.exec.uploads import upload_tables
from tests.query.test_corpus import compare
from tests.query.test_uploads import edge_targets, to_oracle

RADIUS = 40.0  # arcsec


@pytest.fixture(scope="module")
def targets(client: Client, oracle: psycopg.Connection) -> pa.Table:
    rows = oracle.execute("SELECT objectid, coord_ra, coord_dec FROM qt.object").fetchall()
    ids, ra, dec = (np.array(c) for c in zip(*rows, strict=True))
    objects = pa.table({"objectid": ids.astype(np.int64), "ra": ra, "dec": dec})
    table = edge_targets(client, objects, RADIUS / 3600, seed=21)
    finite = pc.fill_null(pc.is_finite(table.column("ra")), False)  # JSON has no NaN
    return table.filter(finite).select(["id", "ra", "dec"])


def oracle_pairs(oracle: psycopg.Connection, targets: pa.Table, *, best: bool) -> list[tuple]:
    """(target id, objectId, distance in arcsec) on the oracle, as the endpoint defines it."""
    with_row = targets.append_column("target_row", pa.array(range(targets.num_rows), pa.int64()))
    to_oracle(oracle, "xm", with_row)
    pairs = (
        "SELECT t.id, t.target_row, o.objectid, "
        "qserv.ang_sep(t.ra, t.dec, o.coord_ra, o.coord_dec) * 3600 AS distance "
        "FROM tap_upload.xm t JOIN qt.object o "
        f"ON qserv.pt_in_circle(o.coord_ra, o.coord_dec, t.ra, t.dec, {RADIUS / 3600!r})"
    )
    if best:
        pairs = (
            f"SELECT DISTINCT ON (target_row) * FROM ({pairs}) p "
            "ORDER BY target_row, distance, objectid"
        )
    return [(r[0], r[2], r[3]) for r in oracle.execute(pairs).fetchall()]


def rows_of(document: dict) -> list[tuple]:
    names = [c["name"] for c in document["metadata"]]
    at = {n: i for i, n in enumerate(names)}
    return [(r[at["id"]], r[at["objectId"]], r[at["distance"]]) for r in document["data"]]


@pytest.mark.parametrize("best", [False, True])
def test_json_equals_oracle(
    api: TestClient, targets: pa.Table, oracle: psycopg.Connection, best: bool
) -> None:
    body = {
        "targets": {name: targets.column(name).to_pylist() for name in targets.column_names},
        "radius": RADIUS,
        "best": best,
    }
    response = api.post("/api/v1/xmatch", json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    names = [c["name"] for c in document["metadata"]]
    assert names == [
        "id",
        "ra",
        "dec",
        "target_row",
        "objectId",
        "coord_ra",
        "coord_dec",
        "distance",
    ]
    got = rows_of(document)
    want = oracle_pairs(oracle, targets, best=best)
    compare(got, want, ordered=False)
    assert len(got) > 100
    if best:
        assert len({g[0] for g in got}) == len(got), "one row per target"
    rows = [r[names.index("target_row")] for r in document["data"]]
    assert rows == sorted(rows), "ordered by target"


def test_best_is_the_nearest_of_several(api: TestClient, oracle: psycopg.Connection) -> None:
    """Targets on objects that have neighbours within the radius: each finds itself."""
    close = oracle.execute(
        "SELECT a.objectid, a.coord_ra, a.coord_dec, b.objectid, b.coord_ra, b.coord_dec "
        "FROM qt.object a JOIN qt.object b ON b.objectid = a.objectid + 1 "
        "WHERE qserv.ang_sep(a.coord_ra, a.coord_dec, b.coord_ra, b.coord_dec) < 2 / 3600.0 "
        "ORDER BY a.objectid LIMIT 20"
    ).fetchall()
    assert len(close) >= 10
    ids, ra, dec = [], [], []
    for row in close:
        for k in (0, 3):
            ids.append(row[k])
            ra.append(row[k + 1])
            dec.append(row[k + 2])
    body = {"targets": {"id": ids, "ra": ra, "dec": dec}, "radius": 5, "best": True}
    response = api.post("/api/v1/xmatch", json=body)
    assert response.status_code == 200, response.text
    got = rows_of(response.json())
    assert sorted((g[0], g[1]) for g in got) == sorted((i, i) for i in ids)
    everything = api.post("/api/v1/xmatch", json=dict(body, best=False)).json()
    assert len(everything["data"]) >= 2 * len(ids)


@pytest.mark.parametrize("fmt", ["votable", "parquet", "csv"])
def test_multipart_targets_and_formats(
    api: TestClient, targets: pa.Table, oracle: psycopg.Connection, fmt: str
) -> None:
    renamed = targets.rename_columns(["src", "RAJ2000", "DEJ2000"])
    buffer = io.BytesIO()
    pcsv.write_csv(renamed, buffer)
    response = api.post(
        "/api/v1/xmatch",
        files={"targets": ("targets.csv", buffer.getvalue(), "text/csv")},
        data={
            "radius": str(RADIUS),
            "ra": "RAJ2000",
            "dec": "DEJ2000",
            "table": "qt.Object",
            "columns": "objectId,g_psfFlux",
            "best": "true",
            "format": fmt,
        },
    )
    assert response.status_code == 200, response.text
    if fmt == "votable":
        votable = parse_single_table(io.BytesIO(response.content))
        table = votable.to_table()
        got = list(zip(table["src"], table["objectId"], table["distance"], strict=True))
        assert table["g_psfFlux"].unit == "nJy"
        separation = votable.get_field_by_id_or_name("distance")
        assert (separation.unit, separation.ucd) == ("arcsec", "pos.angDistance")
    elif fmt == "parquet":
        result = pq.read_table(io.BytesIO(response.content))
        got = list(
            zip(
                *(result.column(n).to_pylist() for n in ("src", "objectId", "distance")),
                strict=True,
            )
        )
        assert result.schema.field("g_psfFlux").metadata[b"unit"] == b"nJy"
    else:
        result = pcsv.read_csv(io.BytesIO(response.content))
        got = list(
            zip(
                *(result.column(n).to_pylist() for n in ("src", "objectId", "distance")),
                strict=True,
            )
        )
    compare(
        [(int(a), int(b), float(c)) for a, b, c in got],
        oracle_pairs(oracle, targets, best=True),
        ordered=False,
    )


def test_bad_requests(api: TestClient, spec: ClusterSpec) -> None:
    targets = {"id": [1], "ra": [10.0], "dec": [20.0]}

    def error(body: dict) -> str:
        response = api.post("/api/v1/xmatch", json=body)
        assert response.status_code == 400, response.text
        return str(response.json()["message"])

    assert "larger than the overlap" in error({"targets": targets, "radius": 61})
    assert "radius is missing" in error({"targets": targets})
    assert "no column ra2" in error({"targets": targets, "radius": 1, "ra": "ra2"})
    assert "child table" in error({"targets": targets, "radius": 1, "table": "ForcedSource"})
    assert "no column nope" in error({"targets": targets, "radius": 1, "columns": ["nope"]})
    assert "unknown parameters" in error({"targets": targets, "radius": 1, "radiu": 2})
    assert "a table" in error({"targets": [1, 2], "radius": 1})
    response = api.post("/api/v1/xmatch", data={"radius": "1"})
    assert response.status_code == 400 and "targets are missing" in response.text
    assert all(not tables for tables in upload_tables(spec).values())
