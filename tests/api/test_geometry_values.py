"""ADQL geometry as result values: POINT, CIRCLE and POLYGON in the select list are DALI
``double`` arrays with xtype point (2), circle (3) and polygon (*) in VOTable (BINARY2 and
TABLEDATA), space-separated numbers in CSV, arrays in JSON, typed arrays in ECSV and
FITS. The rows themselves are compared with the oracle by
tests/queries/285_adql_geometry_values.sql."""

from __future__ import annotations

import io

import pytest
from astropy.io.votable import parse_single_table
from fastapi.testclient import TestClient

QUERY = (
    "SELECT TOP 2 objectId, POINT(coord_ra, coord_dec) AS p, CIRCLE(coord_ra, coord_dec, 0.5) "
    "AS c, POLYGON(10, 20, 11, 20, 10, 21) AS poly FROM Object ORDER BY objectId"
)
REFERENCE = "SELECT TOP 2 objectId, coord_ra, coord_dec FROM Object ORDER BY objectId"


def _sync(api: TestClient, query: str, fmt: str) -> bytes:
    response = api.get("/tap/sync", params={"QUERY": query, "RESPONSEFORMAT": fmt})
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("fmt", ["votable", "votable/td"])
def test_votable_fields_are_dali_geometry(api: TestClient, fmt: str) -> None:
    votable = parse_single_table(io.BytesIO(_sync(api, QUERY, fmt)))
    fields = {f.name: f for f in votable.fields}
    assert [(fields[n].datatype, fields[n].arraysize, fields[n].xtype) for n in ["p", "c"]] == [
        ("double", "2", "point"),
        ("double", "3", "circle"),
    ]
    assert (fields["poly"].datatype, fields["poly"].arraysize) == ("double", "*")
    assert fields["poly"].xtype == "polygon"
    table = votable.to_table()
    reference = parse_single_table(io.BytesIO(_sync(api, REFERENCE, fmt))).to_table()
    for row, ref in zip(table, reference, strict=True):
        assert list(row["p"]) == [ref["coord_ra"], ref["coord_dec"]]
        assert list(row["c"]) == [ref["coord_ra"], ref["coord_dec"], 0.5]
        assert list(row["poly"]) == [10, 20, 11, 20, 10, 21]


def test_text_formats(api: TestClient) -> None:
    csv = _sync(api, QUERY, "csv").decode().splitlines()
    assert csv[0] == "objectId,p,c,poly"
    assert csv[1].endswith(",10.0 20.0 11.0 20.0 10.0 21.0")
    rows = api.get(
        "/tap/sync", params={"QUERY": QUERY, "RESPONSEFORMAT": "application/json"}
    ).json()
    meta = {m["name"]: m for m in rows["metadata"]}
    assert meta["p"]["xtype"] == "point" and meta["poly"]["arraysize"] == "*"
    assert rows["data"][0][3] == [10, 20, 11, 20, 10, 21]


def test_ecsv_and_fits_hold_typed_arrays(api: TestClient) -> None:
    from astropy.table import Table

    ecsv = _sync(api, QUERY, "ecsv").decode()
    assert "subtype: float64[2]" in ecsv and "subtype: float64[null]" in ecsv
    for table in (
        Table.read(ecsv, format="ascii.ecsv"),
        Table.read(io.BytesIO(_sync(api, QUERY, "fits")), format="fits"),
    ):
        assert table["p"].shape == (2, 2) and table["c"].shape == (2, 3)
        assert list(table["poly"][0]) == [10, 20, 11, 20, 10, 21]
        assert table["c"][0][2] == 0.5
    assert Table.read(ecsv, format="ascii.ecsv")["p"].meta["xtype"] == "point"
