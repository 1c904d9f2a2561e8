"""Result formats: every format renders a table with NULLs of every type and metadata,
and astropy, pyvo and pyarrow read back the values, the NULLs and the metadata."""

from __future__ import annotations

import base64
import doctest
import io
import json
import math
import re
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io.votable import parse
from astropy.table import Table
from pyvo.dal.tap import TAPResults

from qserv_py.api import columns, formats
from qserv_py.api.formats import (
    CSV,
    JSON,
    PARQUET,
    TSV,
    VOTABLE,
    VOTABLE_TD,
    Format,
    parse_format,
    render,
)
from qserv_py.errors import QueryRefused


def meta(unit: str = "", ucd: str = "", description: str = "", datatype: str = "") -> dict:
    out = {b"unit": unit.encode(), b"ucd": ucd.encode(), b"description": description.encode()}
    if datatype:
        out[b"datatype"] = datatype.encode()
    return out


T0 = 1_577_836_800_123_456  # 2020-01-01T00:00:00.123456 in microseconds

#: name -> (Arrow array, field metadata, the values astropy should read; None = NULL)
COLUMNS: dict[str, tuple[pa.Array, dict, list[Any]]] = {
    "objectId": (
        pa.array([1, None, -(2**62)], pa.int64()),
        meta("", "meta.id;meta.main", "Object identifier", "long"),
        [1, None, -(2**62)],
    ),
    "ra": (
        pa.array([0.1, None, 359.99999999999994], pa.float64()),
        meta("deg", "pos.eq.ra", 'Right ascension <ICRS> & "J2000"', "double"),
        [0.1, None, 359.99999999999994],
    ),
    "mag": (
        pa.array([21.5, None, 1.0], pa.float32()),
        meta("mag", "phot.mag", "A magnitude", "float"),
        [21.5, None, 1.0],
    ),
    "flux": (pa.array([1e-300, None, 1e300]), meta("nJy"), [1e-300, None, 1e300]),
    "nobs": (pa.array([None, 7, 32767], pa.int16()), meta(), [None, 7, 32767]),
    "n32": (pa.array([-(2**31), None, 5], pa.int32()), meta(), [-(2**31), None, 5]),
    "good": (pa.array([True, None, False]), meta(ucd="meta.code"), [True, None, False]),
    "name": (
        pa.array(["a<b>&c", None, 'x,y"z']),
        meta(description="A name"),
        ["a<b>&c", None, 'x,y"z'],
    ),
    "label": (pa.array(["δ Cep", "", None]), meta(datatype="unicode"), ["δ Cep", "", None]),
    "obs_time": (
        pa.array([T0, None, 0], pa.timestamp("us")),
        meta(description="When"),
        ["2020-01-01T00:00:00.123456", None, "1970-01-01T00:00:00.000000"],
    ),
    "computed": (pa.array([2.5, 3.5, None]), meta(), [2.5, 3.5, None]),
}


def sample() -> pa.Table:
    fields = [pa.field(n, a.type, metadata=m) for n, (a, m, _) in COLUMNS.items()]
    return pa.Table.from_arrays([a for a, _, _ in COLUMNS.values()], schema=pa.schema(fields))


def read_votable(body: bytes) -> Any:
    """Parse strictly: any astropy warning (a spec violation) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(io.BytesIO(body), verify="exception")


def same(got: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return isinstance(got, float) and got == pytest.approx(expected, rel=1e-7)
    return bool(got == expected)


# --- parse_format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "media_type"),
    [
        (None, VOTABLE, VOTABLE.media_type),
        ("", VOTABLE, VOTABLE.media_type),
        ("votable", VOTABLE, VOTABLE.media_type),
        ("VOTable", VOTABLE, VOTABLE.media_type),
        ("votable/b2", VOTABLE, VOTABLE.media_type),
        ("votable/binary2", VOTABLE, VOTABLE.media_type),
        ("votable/td", VOTABLE_TD, VOTABLE_TD.media_type),
        ("votabletd", VOTABLE_TD, VOTABLE_TD.media_type),
        ("application/x-votable+xml", VOTABLE, VOTABLE.media_type),
        ("application/x-votable+xml;serialization=BINARY2", VOTABLE, VOTABLE.media_type),
        ("application/x-votable+xml; serialization = binary", VOTABLE, VOTABLE.media_type),
        ("Application/X-VOTable+XML ;serialization=TABLEDATA", VOTABLE_TD, None),
        ("text/xml", VOTABLE, "text/xml"),
        ("text/xml;serialization=tabledata", VOTABLE_TD, "text/xml"),
        ("csv", CSV, "text/csv;header=present"),
        ("text/csv", CSV, "text/csv;header=present"),
        ("text/csv;header=present", CSV, "text/csv;header=present"),
        ("text/csv; charset=UTF-8", CSV, "text/csv;header=present"),
        ("tsv", TSV, "text/tab-separated-values"),
        ("text/tab-separated-values", TSV, "text/tab-separated-values"),
        ("json", JSON, "application/json"),
        ("application/json", JSON, "application/json"),
        ("parquet", PARQUET, "application/vnd.apache.parquet"),
        ("application/vnd.apache.parquet", PARQUET, "application/vnd.apache.parquet"),
        ("application/x-parquet", PARQUET, "application/x-parquet"),
    ],
)
def test_parse_format_accepts(value: str | None, expected: Format, media_type: str | None) -> None:
    fmt = parse_format(value)
    assert (fmt.name, fmt.extension) == (expected.name, expected.extension)
    assert fmt.media_type == (media_type or expected.media_type)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("hdf5", "'hdf5' is not supported"),
        ("image/png", "is not supported"),
        ("text/html", "is not supported"),
        ("votable/td;serialization=binary2", "is not supported"),
        ("application/x-votable+xml;serialization=FITS", "'serialization=fits'"),
        ("text/csv;header=absent", "'header=absent'"),
        ("application/json;charset=latin-1", "'charset=latin-1'"),
    ],
)
def test_parse_format_refuses(value: str, said: str) -> None:
    with pytest.raises(QueryRefused) as caught:
        parse_format(value)
    assert said in caught.value.message
    assert value in caught.value.message
    assert "application/x-votable+xml" in caught.value.message  # lists the accepted ones
    assert caught.value.http_status == 400


def test_docstring_examples() -> None:
    assert doctest.testmod(formats).failed == 0


# --- VOTable ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [VOTABLE, VOTABLE_TD])
def test_votable_values_nulls_and_metadata(fmt: Format) -> None:
    body = render(sample(), fmt, truncated=False, info=[("standardID", "ivo://ivoa.net/std/TAP")])
    assert (b"<BINARY2>" in body) == (fmt is VOTABLE)
    vot = read_votable(body)
    table = vot.get_first_table()
    got = table.to_table()
    assert got.colnames == list(COLUMNS)
    for name, (_, m, expected) in COLUMNS.items():
        column = got[name]
        field = table.get_field_by_id_or_name(name)
        assert str(field.unit or "") == m[b"unit"].decode()
        assert (field.ucd or "") == m[b"ucd"].decode()
        assert (field.description or "") == m[b"description"].decode()
        mask = np.ma.getmaskarray(column)
        for i, want in enumerate(expected):
            if want is None:
                # astropy reads NULL strings as "" (it ignores their BINARY2 null bits,
                # astropy issue 8995: see test_binary2_null_mask_of_strings), and
                # TABLEDATA cannot tell a NULL string from "" (both <TD></TD>)
                if field.datatype in ("char", "unicodeChar"):
                    assert column[i] == ""
                else:
                    assert mask[i], (name, i)
            else:
                assert not mask[i], (name, i)
                assert same(column[i].item() if hasattr(column[i], "item") else column[i], want)
    infos = [(i.name, i.value) for i in vot.resources[0].infos]
    assert infos == [("QUERY_STATUS", "OK"), ("standardID", "ivo://ivoa.net/std/TAP")]


def test_votable_field_types() -> None:
    table = read_votable(render(sample(), VOTABLE, truncated=False)).get_first_table()
    types = {f.name: (f.datatype, f.arraysize, f.xtype) for f in table.fields}
    assert types == {
        "objectId": ("long", None, None),
        "ra": ("double", None, None),
        "mag": ("float", None, None),
        "flux": ("double", None, None),
        "nobs": ("short", None, None),
        "n32": ("int", None, None),
        "good": ("boolean", None, None),
        "name": ("char", "*", None),
        "label": ("unicodeChar", "*", None),
        "obs_time": ("char", "*", "timestamp"),
        "computed": ("double", None, None),
    }


@pytest.mark.parametrize("fmt", [VOTABLE, VOTABLE_TD])
def test_votable_overflow_info_after_the_table(fmt: Format) -> None:
    body = render(sample(), fmt, truncated=True).decode()
    ok = body.index('<INFO name="QUERY_STATUS" value="OK"/>')
    overflow = body.index('<INFO name="QUERY_STATUS" value="OVERFLOW"')
    assert ok < body.index("<TABLE>") < body.index("</TABLE>") < overflow
    assert overflow < body.index("</RESOURCE>")
    vot = read_votable(body.encode())
    assert [i.value for i in vot.resources[0].infos] == ["OK", "OVERFLOW"]
    assert "OVERFLOW" not in render(sample(), fmt, truncated=False).decode()


def test_pyvo_reads_the_votable() -> None:
    results = TAPResults(read_votable(render(sample(), VOTABLE, truncated=True)))
    assert results.query_status == "OVERFLOW"
    assert len(results) == 3
    table = results.to_table()
    assert str(table["ra"].unit) == "deg"
    assert str(table["flux"].unit) == "nJy"
    assert results.getdesc("ra").ucd == "pos.eq.ra"
    assert table["objectId"][2] == -(2**62)
    assert TAPResults(read_votable(render(sample(), VOTABLE, truncated=False))).query_status == "OK"


def test_unicode_strings_outside_the_bmp() -> None:
    words = ["𝄞 clef", "plain", None, "ünïcödé", ""]
    table = pa.table({"w": pa.array(words)})
    for fmt in (VOTABLE, VOTABLE_TD):
        got = read_votable(render(table, fmt, truncated=False)).get_first_table().to_table()
        assert list(got["w"][:2]) == words[:2]
        assert got["w"][3] == words[3]


def test_binary2_null_mask_of_strings() -> None:
    table = pa.table({"s": pa.array(["ab", None, ""]), "u": pa.array([None, "é", None])})
    body = render(table, VOTABLE, truncated=False).decode()
    stream = re.search(r'<STREAM encoding="base64">(.*)</STREAM>', body, re.S)
    assert stream is not None
    assert base64.b64decode(stream.group(1)) == (
        b"\x40"
        + b"\0\0\0\2ab"
        + b"\0\0\0\0"  # u NULL: bit 1
        + b"\x80"
        + b"\0\0\0\0"
        + b"\0\0\0\1\x00\xe9"  # s NULL: bit 0; u is UTF-16
        + b"\x40"
        + b"\0\0\0\0"
        + b"\0\0\0\0"  # s is "", u NULL
    )


def test_xml_hostile_text_and_names() -> None:
    table = pa.table({'a"b<c>': pa.array(["\x01bell & <tag>", "ok"])})
    for fmt in (VOTABLE, VOTABLE_TD):
        body = render(table, fmt, truncated=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # W03: astropy makes an ID of the odd name
            got = parse(io.BytesIO(body)).get_first_table()
        assert got.fields[0].name == 'a"b<c>'
        assert got.array[1][0] == "ok"
        # BINARY2 carries any character; TABLEDATA replaces those XML does not allow
        assert got.array[0][0] == ("\x01" if fmt is VOTABLE else "\ufffd") + "bell & <tag>"


def test_empty_result() -> None:
    empty = sample().slice(0, 0)
    for fmt in (VOTABLE, VOTABLE_TD):
        got = read_votable(render(empty, fmt, truncated=False)).get_first_table()
        assert len(got.array) == 0
        assert [f.name for f in got.fields] == list(COLUMNS)
    assert render(empty, CSV, truncated=False).decode() == ",".join(COLUMNS) + "\r\n"
    assert json.loads(render(empty, JSON, truncated=True))["data"] == []


def test_binary2_of_many_rows_matches_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random data over several encoding chunks, every type, ~10% NULLs."""
    monkeypatch.setattr(columns, "CHUNK_ROWS", 1000)
    rng = np.random.default_rng(7)
    n = columns.CHUNK_ROWS * 5 + 17

    def nulls() -> np.ndarray:
        return rng.random(n) < 0.1

    words = np.array(["", "a", "ab", "ünï", "longer string with spaces", "δ"], dtype=object)
    table = pa.table(
        {
            "d": pa.array(rng.normal(size=n), mask=nulls()),
            "f": pa.array(rng.normal(size=n).astype(np.float32), mask=nulls()),
            "i": pa.array(rng.integers(-(2**40), 2**40, n), mask=nulls()),
            "s": pa.array(rng.integers(-(2**15), 2**15, n).astype(np.int16), mask=nulls()),
            "b": pa.array(rng.random(n) < 0.5, mask=nulls()),
            "w": pa.array(words[rng.integers(0, len(words), n)], pa.string(), mask=nulls()),
            "a": pa.array(words[rng.integers(0, 4, n)].astype(str), pa.string()),
        }
    )
    got = read_votable(render(table, VOTABLE, truncated=False)).get_first_table().to_table()
    assert len(got) == n
    for name in table.column_names:
        want = table.column(name)
        valid = ~want.is_null().to_numpy(zero_copy_only=False)
        mask = np.ma.getmaskarray(got[name])
        if name in ("w", "a"):  # strings: astropy does not mask them; NULL reads as ""
            expected = np.array(want.fill_null("").to_pylist(), dtype=object)
            assert list(np.asarray(got[name], dtype=object)) == list(expected)
            continue
        assert (mask == ~valid).all(), name
        values = np.ma.getdata(got[name])[valid]
        assert (values == want.drop_null().to_numpy()).all(), name


# --- CSV, TSV, JSON, Parquet ---------------------------------------------------------------


def test_csv_reads_back_with_astropy() -> None:
    body = render(sample(), CSV, truncated=True)
    assert body.startswith(",".join(COLUMNS).encode() + b"\r\n")
    got = Table.read(io.BytesIO(body), format="ascii.csv")
    assert got.colnames == list(COLUMNS)
    assert got["ra"][0] == 0.1 and got["ra"][2] == 359.99999999999994  # full precision
    assert got["flux"][0] == 1e-300
    assert got["mag"].dtype.kind == "f"  # 1.0 is written "1.0", not "1"
    assert got["objectId"][2] == -(2**62)
    assert got["name"][0] == "a<b>&c" and got["name"][2] == 'x,y"z'
    assert got["obs_time"][0] == "2020-01-01T00:00:00.123456"
    for name, (_, _, expected) in COLUMNS.items():
        mask = np.ma.getmaskarray(got[name])
        for i, want in enumerate(expected):
            if want is None:
                assert mask[i], (name, i)


def test_csv_lines() -> None:
    lines = render(sample(), CSV, truncated=False).decode().split("\r\n")
    assert lines[1] == (
        "1,0.1,21.5,1e-300,,-2147483648,true,a<b>&c,δ Cep,2020-01-01T00:00:00.123456,2.5"
    )
    assert lines[2] == ",,,,7,,,,,,3.5"
    assert lines[3].endswith(',"x,y""z",,1970-01-01T00:00:00.000000,')
    assert lines[4] == ""


def test_csv_special_floats() -> None:
    table = pa.table({"x": pa.array([math.nan, math.inf, -math.inf, None, -0.0, 3.0])})
    body = render(table, CSV, truncated=False).decode()
    assert body == "x\r\nNaN\r\ninf\r\n-inf\r\n\r\n-0.0\r\n3.0\r\n"
    assert [float(v) for v in body.split()[1:4]][1:] == [math.inf, -math.inf]


def test_tsv_escapes_tabs_and_newlines() -> None:
    table = pa.table(
        {"a\tb": pa.array(["x\ty", "line\nbreak\r", "back\\slash", None]), "n": [1, 2, 3, 4]}
    )
    lines = render(table, TSV, truncated=False).decode().split("\n")
    assert lines == ["a\\tb\tn", "x\\ty\t1", "line\\nbreak\\r\t2", "back\\\\slash\t3", "\t4", ""]


def test_json_shape() -> None:
    doc = json.loads(render(sample(), JSON, truncated=True))
    assert set(doc) == {"metadata", "data", "query_status"}
    assert doc["query_status"] == "OVERFLOW"
    assert json.loads(render(sample(), JSON, truncated=False))["query_status"] == "OK"
    assert [m["name"] for m in doc["metadata"]] == list(COLUMNS)
    ra = doc["metadata"][1]
    assert ra == {
        "name": "ra",
        "datatype": "double",
        "arraysize": None,
        "xtype": None,
        "unit": "deg",
        "ucd": "pos.eq.ra",
        "description": 'Right ascension <ICRS> & "J2000"',
    }
    assert doc["metadata"][9]["xtype"] == "timestamp"
    by_column = list(zip(*doc["data"], strict=True))
    for (_, _, expected), got in zip(COLUMNS.values(), by_column, strict=True):
        assert list(got) == expected
    assert doc["data"][0][2] == 21.5 and doc["data"][0][1] == 0.1


def test_json_nan_and_infinity_are_null() -> None:
    table = pa.table(
        {"x": pa.array([math.nan, math.inf, 1.5]), "y": pa.array([0.1, None, 2], pa.float32())}
    )
    doc = json.loads(render(table, JSON, truncated=False))
    assert doc["data"] == [[None, 0.1], [None, None], [1.5, 2.0]]


def test_parquet_is_voparquet() -> None:
    body = render(
        sample(), PARQUET, truncated=True, info=[("standardID", "ivo://ivoa.net/std/TAP")]
    )
    assert body[:4] == b"PAR1"
    file = pq.ParquetFile(io.BytesIO(body))
    kv = file.metadata.metadata
    assert kv[b"IVOA.VOTable-Parquet.version"] == b"1.0"
    vot = read_votable(kv[b"IVOA.VOTable-Parquet.content"])
    described = vot.get_first_table()
    assert [f.name for f in described.fields] == list(COLUMNS)
    assert str(described.get_field_by_id_or_name("ra").unit) == "deg"
    assert described.get_field_by_id_or_name("ra").ucd == "pos.eq.ra"
    assert described.get_field_by_id_or_name("mag").description == "A magnitude"
    assert [(i.name, i.value) for i in vot.resources[0].infos] == [
        ("QUERY_STATUS", "OK"),
        ("standardID", "ivo://ivoa.net/std/TAP"),
        ("QUERY_STATUS", "OVERFLOW"),
    ]
    assert b"<DATA>" not in kv[b"IVOA.VOTable-Parquet.content"]  # a DATA-less TABLE
    data = file.read()
    assert data.schema.field("ra").metadata[b"unit"] == b"deg"
    assert data.schema.field("obs_time").type == pa.timestamp("us")  # native types kept
    assert data.drop_columns([]).to_pylist() == sample().to_pylist()


def test_every_format_renders_all_rows_of_several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "CHUNK_ROWS", 1000)
    n = 4_321
    table = pa.table(
        {"x": np.arange(n, dtype=np.float64), "s": pa.array([str(i) for i in range(n)])}
    )
    row_counts = {
        VOTABLE: lambda b: len(read_votable(b).get_first_table().array),
        VOTABLE_TD: lambda b: len(read_votable(b).get_first_table().array),
        CSV: lambda b: len(b.decode().split("\r\n")) - 2,
        TSV: lambda b: len(b.decode().split("\n")) - 2,
        JSON: lambda b: len(json.loads(b)["data"]),
        PARQUET: lambda b: pq.read_table(io.BytesIO(b)).num_rows,
    }
    for fmt, count in row_counts.items():
        assert count(render(table, fmt, truncated=False)) == n, fmt.name


def test_every_format_has_its_own_extension() -> None:
    assert {f.extension for f in formats.FORMATS} == {
        "xml", "csv", "tsv", "json", "parquet", "fits", "ecsv",
    }  # fmt: skip
    assert re.fullmatch(r"[a-z/+.-]+(;[a-z]+=[A-Z0-9a-z]+)?", VOTABLE.media_type)
