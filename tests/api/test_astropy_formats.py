"""FITS and ECSV results, Parquet read by astropy, and results in astropy and pandas with
their units, UCDs and descriptions (qserv_py.tables)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table
from fastapi.testclient import TestClient

from qserv_py.client import Client
from qserv_py.tables import to_astropy, to_pandas

QUERY = (
    "SELECT TOP 20 objectId, coord_ra, r_psfFlux, refBand, detect_isPrimary,"
    " CASE WHEN MOD(objectId, 2) = 0 THEN objectId END AS even_id,"
    " CASE WHEN MOD(objectId, 2) = 0 THEN r_psfFlux END AS even_flux,"
    " CASE WHEN MOD(objectId, 2) = 0 THEN refBand END AS even_band"
    " FROM qt.Object ORDER BY objectId"
)
UPLOADED = "name,seen,mag\nVéga,2024-01-02T03:04:05,0.03\nplain,,1.5\n"


def _sync(api: TestClient, fmt: str, query: str = QUERY) -> bytes:
    response = api.post("/tap/sync", data={"QUERY": query, "RESPONSEFORMAT": fmt})
    assert response.status_code == 200, response.text
    return response.content


def _read(content: bytes, fmt: str) -> Table:
    if fmt == "ecsv":
        return Table.read(content.decode(), format="ascii.ecsv")
    return Table.read(io.BytesIO(content), format={"votable": "votable"}.get(fmt, fmt))


def _text(column: object) -> list[object]:
    """Cell values comparable across readers: bytes and str alike; NULL as None, and an
    empty string too (astropy's VOTable reader does not mask NULL strings)."""
    mask = np.ma.getmaskarray(column)
    values = [v.decode() if isinstance(v, bytes) else v for v in np.ma.getdata(column).tolist()]
    return [None if m or v == "" else v for v, m in zip(values, mask, strict=True)]


@pytest.mark.parametrize(("fmt", "media"), [("fits", "application/fits"), ("ecsv", "text/x-ecsv")])
def test_fits_and_ecsv_hold_what_the_votable_holds(api: TestClient, fmt: str, media: str) -> None:
    reference = _read(_sync(api, "votable"), "votable")
    response = api.post("/tap/sync", data={"QUERY": QUERY, "RESPONSEFORMAT": media})
    assert response.status_code == 200 and response.headers["content-type"].startswith(media)
    got = _read(response.content, fmt)
    assert got.colnames == reference.colnames
    for name in reference.colnames:
        assert _text(got[name]) == _text(reference[name]), name
        assert got[name].unit == reference[name].unit, name
    assert any(v is None for v in _text(got["even_id"]))  # NULL integers stay NULL
    assert any(v is None for v in _text(got["even_band"]))
    if fmt == "ecsv":
        assert got["coord_ra"].meta["ucd"] == reference["coord_ra"].meta["ucd"]
        assert got["coord_ra"].description == reference["coord_ra"].description
        assert got.meta["QUERY_STATUS"] == "OK"
    else:
        header = fits.getheader(io.BytesIO(response.content), 1)
        i = reference.colnames.index("coord_ra") + 1
        assert header[f"TUCD{i}"] == reference["coord_ra"].meta["ucd"]
        assert header[f"TCOMM{i}"] == reference["coord_ra"].description
        assert header[f"TUNIT{i}"] == "deg" and header["OVERFLOW"] is False


@pytest.mark.parametrize("fmt", ["fits", "ecsv"])
def test_timestamps_text_and_nulls_of_an_upload(api: TestClient, fmt: str) -> None:
    response = api.post(
        "/tap/sync",
        data={"QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:p", "RESPONSEFORMAT": fmt},
        files={"p": ("t.csv", UPLOADED.encode())},
    )
    assert response.status_code == 200, response.text
    got = _read(response.content, fmt)
    assert _text(got["name"]) == ["Véga", "plain"]  # FITS: UTF-8 bytes
    assert _text(got["seen"])[0].startswith("2024-01-02T03:04:05")
    assert _text(got["seen"])[1] is None
    assert _text(got["mag"]) == [0.03, 1.5]


def test_maxrec_overflow_is_said(api: TestClient) -> None:
    for fmt in ("fits", "ecsv"):
        response = api.post(
            "/tap/sync", data={"QUERY": QUERY, "RESPONSEFORMAT": fmt, "MAXREC": "3"}
        )
        assert response.status_code == 200, response.text
        assert len(_read(response.content, fmt)) == 3
        if fmt == "fits":
            assert fits.getheader(io.BytesIO(response.content), 1)["OVERFLOW"] is True
        else:
            assert _read(response.content, fmt).meta["QUERY_STATUS"] == "OVERFLOW"


def test_rest_parquet_reads_into_astropy_with_units(api: TestClient) -> None:
    pytest.importorskip("pandas")  # astropy's Parquet reader needs it
    response = api.post("/api/v1/query", json={"query": QUERY, "format": "parquet"})
    assert response.status_code == 200, response.text
    got = Table.read(io.BytesIO(response.content), format="parquet")
    reference = _read(_sync(api, "votable"), "votable")
    assert got.colnames == reference.colnames
    assert str(got["coord_ra"].unit) == "deg"
    assert got["coord_ra"].meta["ucd"] == reference["coord_ra"].meta["ucd"]
    assert got["refBand"].description == reference["refBand"].description
    assert _text(got["refBand"]) == _text(reference["refBand"])


def test_client_results_convert_with_their_metadata(client: Client) -> None:
    result = client.query(QUERY)
    table = to_astropy(result)
    assert str(table["coord_ra"].unit) == "deg" and table["coord_ra"].meta["ucd"]
    assert table["coord_ra"].description
    assert table["even_id"].mask.tolist() == [i % 2 == 1 for i in table["objectId"]]
    assert table["objectId"].unit is None
    pandas = pytest.importorskip("pandas")
    frame = to_pandas(result)
    assert isinstance(frame, pandas.DataFrame) and list(frame.columns) == result.column_names
    assert frame.attrs["units"]["coord_ra"] == "deg" and "objectId" not in frame.attrs["units"]
    assert frame.attrs["ucds"]["coord_ra"] == table["coord_ra"].meta["ucd"]


def test_to_astropy_of_every_engine_type() -> None:
    table = pa.table(
        {
            "t": pa.array([0, None], pa.timestamp("us")),
            "d": pa.array([1, None], pa.date32()),
            "b": pa.array([True, None]),
            "x": pa.array([b"\x01", None]),
            "s": pa.array(["é", None]),
            "i": pa.array([1, None], pa.int16()),
        }
    )
    got = to_astropy(table)
    assert got["t"][0] == np.datetime64("1970-01-01T00:00:00")
    assert got["t"].mask.tolist() == [False, True]
    assert _text(got["s"]) == ["é", None]
    assert _text(got["x"]) == ["\x01", None] and _text(got["i"]) == [1, None]
    assert _text(got["b"]) == [True, None] and got["d"].mask.tolist() == [False, True]


def test_fits_keeps_null_booleans_null() -> None:
    """astropy writes a NULL FITS logical as true: such a column goes as 1/0/NULL."""
    from qserv_py.api.formats import FITS, render

    table = pa.table({"b": pa.array([True, None, False]), "c": pa.array([True, False, True])})
    got = Table.read(io.BytesIO(render(table, FITS, truncated=False)), format="fits")
    assert _text(got["b"]) == [1, None, 0] and _text(got["c"]) == [True, False, True]
