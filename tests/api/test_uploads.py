"""TAP uploads: VOTable, Parquet and CSV files become Arrow tables of the engine's types,
with their metadata; every refusal says which upload, what is wrong and what to do."""

from __future__ import annotations

import doctest
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io.votable import from_table
from astropy.table import MaskedColumn, Table

from qserv_py.api import upload_votable, uploads
from qserv_py.api.deps import TapParams
from qserv_py.api.formats import PARQUET, VOTABLE, VOTABLE_TD, render
from qserv_py.api.uploads import Upload, parse_upload_param, read_table, read_uploads
from qserv_py.errors import UploadError

T0 = 1_577_836_800_123_456  # 2020-01-01T00:00:00.123456 in microseconds


def meta(unit: str = "", ucd: str = "", description: str = "") -> dict[bytes, bytes]:
    return {b"unit": unit.encode(), b"ucd": ucd.encode(), b"description": description.encode()}


def result_table() -> pa.Table:
    """A table as the engine makes it: every type, NULLs, metadata."""
    fields = [
        pa.field("ID", pa.int64(), metadata=meta(ucd="meta.id", description="identifier")),
        pa.field("ra", pa.float64(), metadata=meta("deg", "pos.eq.ra", "right ascension")),
        pa.field("mag", pa.float32(), metadata=meta("mag", "phot.mag")),
        pa.field("n", pa.int16(), metadata=meta()),
        pa.field("k", pa.int32(), metadata=meta()),
        pa.field("ok", pa.bool_(), metadata=meta()),
        pa.field("name", pa.string(), metadata=meta(description="a name")),
        pa.field("seen", pa.timestamp("us"), metadata=meta()),
    ]
    arrays = [
        pa.array([1, None, 3], pa.int64()),
        pa.array([10.5, 20.25, None]),
        pa.array([None, 1.5, 2.5], pa.float32()),
        pa.array([1, 2, None], pa.int16()),
        pa.array([None, 5, 6], pa.int32()),
        pa.array([True, None, False]),
        pa.array(["x", "δ y", "z"]),
        pa.array([T0, None, 0], pa.timestamp("us")),
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def params(upload: str | list[str], **files: bytes) -> TapParams:
    p = TapParams()
    for value in [upload] if isinstance(upload, str) else upload:
        p.add("UPLOAD", value)
    p.files.update(files)
    return p


def refusal(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(UploadError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.http_status == 400
    return caught.value.message


# --- the UPLOAD parameter ------------------------------------------------------------------


def test_parse_upload_param() -> None:
    assert parse_upload_param(["t1,param:a;t2,param:b"]) == [("t1", "param:a"), ("t2", "param:b")]
    assert parse_upload_param(["Mine , param:x", "other,param:y;"]) == [
        ("mine", "param:x"),
        ("other", "param:y"),
    ]
    assert parse_upload_param([]) == []


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (["t1"], "'t1' is not a name,URI pair"),
        (["t1,"], "is not a name,URI pair"),
        ([",param:a"], "is not a name,URI pair"),
        (["1t,param:a"], "table name '1t' is not allowed"),
        (["my-table,param:a"], "'my-table' is not allowed"),
        (["t,param:a", "T,param:b"], "names the table 't' twice"),
    ],
)
def test_parse_upload_param_refuses(values: list[str], said: str) -> None:
    assert said in refusal(parse_upload_param, values)


def test_docstring_examples() -> None:
    assert doctest.testmod(uploads).failed == 0


# --- reading files -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [VOTABLE, VOTABLE_TD, PARQUET])
def test_our_own_results_read_back(fmt: object) -> None:
    """A result of this service, uploaded again, keeps its values, NULLs and metadata."""
    original = result_table()
    table = read_table(render(original, fmt, truncated=False), "upload 't'")  # type: ignore[arg-type]
    assert table.column_names == [n.lower() for n in original.column_names]
    assert [f.type for f in table.schema] == [f.type for f in original.schema]
    for name in ("id", "ra", "mag", "n", "k", "ok", "seen"):
        assert (
            table.column(name).to_pylist() == original.column(name.replace("id", "ID")).to_pylist()
        )
    assert table.column("name").to_pylist() == ["x", "δ y", "z"]
    ra = table.schema.field("ra").metadata
    assert ra == meta("deg", "pos.eq.ra", "right ascension")
    assert table.schema.field("id").metadata[b"ucd"] == b"meta.id"
    assert table.schema.field("name").metadata[b"description"] == b"a name"


def test_votable_written_by_astropy() -> None:
    source = Table()
    source["a"] = MaskedColumn([1, 2, 3], mask=[False, True, False], dtype=np.int32, unit="s")
    source["b"] = MaskedColumn([0.5, 1.5, 2.5], mask=[True, False, False])
    source["c"] = ["u", "v", "w"]
    source["u8"] = np.array([1, 2, 255], dtype=np.uint8)
    source["flag"] = [True, False, True]
    for serialization in ("tabledata", "binary", "binary2"):
        votable = from_table(source)
        votable.get_first_table().format = serialization
        votable.get_first_table().fields[0].values.null = -999  # BINARY needs a NULL value
        out = io.BytesIO()
        votable.to_xml(out)
        table = read_table(out.getvalue(), "upload 'x'")
        assert table.column("a").to_pylist() == [1, None, 3], serialization
        assert table.column("a").type == pa.int32()
        assert table.schema.field("a").metadata[b"unit"] == b"s"
        assert table.column("b").to_pylist() == [None, 1.5, 2.5], serialization
        assert table.column("c").to_pylist() == ["u", "v", "w"]
        assert table.column("u8").type == pa.int16()  # no unsigned types in the engine
        assert table.column("u8").to_pylist() == [1, 2, 255]
        assert table.column("flag").to_pylist() == [True, False, True]


def test_csv() -> None:
    data = b'ID,Ra,name,flag,when\n1,10.5,x,true,2020-01-01T00:00:00\n2,,,false,\n3,1e300,"a,b",,\n'
    table = read_table(data, "upload 'c'")
    assert table.column_names == ["id", "ra", "name", "flag", "when"]
    assert table.column("id").type == pa.int64()
    assert table.column("ra").to_pylist() == [10.5, None, 1e300]
    assert table.column("name").to_pylist() == ["x", None, "a,b"]
    assert table.column("flag").to_pylist() == [True, False, None]
    assert table.column("when").type == pa.timestamp("us")
    assert table.schema.field("ra").metadata == meta()


def test_csv_all_empty_column_is_text() -> None:
    table = read_table(b"a,b\n1,\n2,\n", "upload 'c'")
    assert table.column("b").type == pa.string()
    assert table.column("b").to_pylist() == [None, None]


def test_parquet_without_voparquet_metadata() -> None:
    sink = io.BytesIO()
    source = pa.table(
        {
            "X": pa.array([1, 2], pa.uint8()),
            "t": pa.array([T0 * 1000, None], pa.timestamp("ns", tz="Europe/Paris")),
            "d": pa.array(["a", "b"]).dictionary_encode(),
        }
    )
    pq.write_table(source, sink)
    table = read_table(sink.getvalue(), "upload 'p'")
    assert table.schema.field("x").type == pa.int16()
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert table.column("t").cast(pa.int64()).to_pylist() == [T0, None]
    assert table.column("d").to_pylist() == ["a", "b"]


# --- refusals ------------------------------------------------------------------------------


def test_refuses_what_it_cannot_read() -> None:
    assert "is empty" in refusal(read_table, b"  \n", "upload 't'")
    said = refusal(read_table, b"<VOTABLE><nonsense", "upload 't' (part 'p')")
    assert said.startswith("upload 't' (part 'p') is not a readable VOTable")
    said = refusal(read_table, b"PAR1garbage", "upload 't'")
    assert "is not a readable Parquet file" in said
    said = refusal(read_table, b"a,b\n1,2,3\n", "upload 't'")
    assert "does not read as CSV with a header row" in said
    vot = b'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE/></VOTABLE>'
    assert "without a TABLE" in refusal(read_table, vot, "upload 't'")


@pytest.mark.parametrize(
    ("csv", "said"),
    [
        (b"ok,1bad\n1,2\n", "column name '1bad' is not allowed"),
        (b"a b,c\n1,2\n", "column name 'a b' is not allowed"),
        (b"Mag,mag\n1,2\n", "columns 'Mag' and 'mag' have the same name"),
    ],
)
def test_refuses_bad_column_names(csv: bytes, said: str) -> None:
    message = refusal(read_table, csv, "upload 't'")
    assert message.startswith("upload 't': ")
    assert said in message


def test_refuses_array_columns() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1], "vec": pa.array([[1.0, 2.0]])}), sink)
    said = refusal(read_table, sink.getvalue(), "upload 't'")
    assert "column 'vec' is of type list<" in said
    assert "no arrays" in said
    source = Table({"v": np.zeros((2, 3))})
    out = io.BytesIO()
    from_table(source).to_xml(out)
    assert "column 'v' is of type double[3]" in refusal(read_table, out.getvalue(), "upload 't'")


def test_refuses_a_table_without_columns() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({}), sink)
    assert "has no columns" in refusal(read_table, sink.getvalue(), "upload 't'")


# --- read_uploads ----------------------------------------------------------------------------


def test_read_uploads() -> None:
    vot = render(result_table(), VOTABLE, truncated=False)
    got = read_uploads(
        params(["Stars,param:s1", "more,param:m"], s1=vot, m=b"a\n1\n2\n"),
        max_bytes=10**6,
        max_rows=10,
    )
    assert list(got) == ["stars", "more"]
    assert isinstance(got["stars"], Upload)
    assert got["stars"].name == "stars"
    assert got["stars"].table.num_rows == 3
    assert got["more"].table.column("a").to_pylist() == [1, 2]
    assert read_uploads(TapParams(), max_bytes=0, max_rows=0) == {}


def test_read_uploads_refusals() -> None:
    said = refusal(read_uploads, params("t,vos://x/y"), max_bytes=10, max_rows=10)
    assert "upload 't': the URI 'vos://x/y' is not supported" in said
    assert "multipart/form-data" in said and "UPLOAD=t,param:" in said and "http(s)" in said
    said = refusal(read_uploads, params("t,param:p", q=b"a\n1\n"), max_bytes=10, max_rows=10)
    assert "upload 't': the request has no multipart part named 'p' (parts sent: 'q')" in said
    data = b"a\n" + b"1\n" * 20
    said = refusal(
        read_uploads, params("t,param:p", p=data), max_bytes=1000, max_rows=100, max_file_bytes=10
    )
    assert f"the uploaded files are {len(data)} bytes; the limit is 10 bytes" in said
    assert "(setting upload_max_file_bytes)" in said
    said = refusal(read_uploads, params("t,param:p", p=data), max_bytes=100, max_rows=100)
    assert "upload 't' (part 'p') (20 rows, 1 columns)" in said  # 20 int64 values
    assert "160 bytes as decoded; the limit is 100 bytes (setting upload_max_bytes)" in said
    said = refusal(read_uploads, params("t,param:p", p=data), max_bytes=1000, max_rows=5)
    assert "upload 't' (part 'p') has 20 rows; the limit is 5 rows" in said
    said = refusal(
        read_uploads, params(["t,param:p", "T,param:p"], p=data), max_bytes=1000, max_rows=50
    )
    assert "twice" in said


def test_the_byte_limit_counts_every_part_once() -> None:
    data = b"a\n1\n"
    sent = params(["t,param:p", "u,param:p"], p=data)
    got = read_uploads(sent, max_bytes=100, max_rows=10, max_file_bytes=len(data))
    assert set(got) == {"t", "u"}
    with pytest.raises(UploadError, match="the limit is 7 bytes"):
        read_uploads(
            params(["t,param:p", "u,param:q"], p=data, q=data),
            max_bytes=100,
            max_rows=10,
            max_file_bytes=7,
        )


# --- VOTable rows decoded in C (api/upload_votable.py) and the decoded byte limit -----------


def votable_of(source: Table, serialization: str) -> bytes:
    votable = from_table(source)
    votable.get_first_table().format = serialization
    votable.get_first_table().fields[0].values.null = -999  # BINARY needs a NULL value
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()


def astropy_only(xml: bytes) -> bytes:
    """The same document with a second, empty TABLE: the C decoders leave it to astropy,
    which reads the first table (the service's reading before them)."""
    return xml.replace(b"</TABLE>", b"</TABLE><TABLE/>", 1)


def decoded_in_c(xml: bytes) -> bool:
    return (upload_votable.read_tabledata(xml) or upload_votable.read_binary(xml)) is not None


def test_tabledata_binary_and_binary2_give_identical_tables() -> None:
    """TABLEDATA (pyvo's), BINARY and BINARY2, decoded in C, give the table astropy's
    reading gives, and the same table for each: values, NULLs, types and metadata."""
    rng = np.random.default_rng(5)
    n = 500
    source = Table()
    source["id"] = MaskedColumn(np.arange(n, dtype=np.int32), mask=np.arange(n) % 7 == 0)
    source["ra"] = MaskedColumn(rng.uniform(0, 360, n), mask=np.arange(n) % 5 == 0, unit="deg")
    source["mag"] = np.where(np.arange(n) % 3 == 0, np.nan, rng.normal(20, 2, n)).astype("f4")
    source["big"] = rng.integers(-(2**62), 2**62, n)
    source["u8"] = rng.integers(0, 256, n).astype(np.uint8)
    source["ok"] = rng.random(n) < 0.5
    source["name"] = [["", "a b", "δ x", "id 7", "q"][i % 5] for i in range(n)]
    source["ascii"] = [["", "a b", "xyz"][i % 3] for i in range(n)]
    source["ra"].description = "right ascension"
    tables = {}
    for serialization in ("tabledata", "binary", "binary2"):
        xml = votable_of(source, serialization)
        assert decoded_in_c(xml), serialization
        assert not decoded_in_c(astropy_only(xml))
        tables[serialization] = read_table(xml, "upload 't'")
        by_astropy = read_table(astropy_only(xml), "upload 't'")
        assert tables[serialization].equals(by_astropy, check_metadata=True), serialization
    assert tables["tabledata"].equals(tables["binary2"], check_metadata=True)
    assert tables["binary"].equals(tables["binary2"], check_metadata=True)
    b2 = tables["binary2"]
    assert b2.num_rows == n
    assert b2.column("id").null_count == len(range(0, n, 7))
    assert b2.column("mag").null_count == len(range(0, n, 3))  # NaN is NULL, as astropy reads
    assert b2.column("name").to_pylist()[:5] == ["", "a b", "δ x", "id 7", "q"]
    assert b2.schema.field("ra").metadata[b"unit"] == b"deg"
    assert b2.schema.field("ra").metadata[b"description"] == b"right ascension"
    kinds = [pa.int32(), pa.float64(), pa.float32(), pa.int64(), pa.int16(), pa.bool_()]
    assert [f.type for f in b2.schema] == [*kinds, pa.string(), pa.string()]


TABLEDATA = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>
<FIELD name="s" datatype="char" arraysize="*"/><FIELD name="x" datatype="double"/>
<FIELD name="i" datatype="int"><VALUES null="-1"/></FIELD><FIELD name="b" datatype="boolean"/>
<FIELD name="t" datatype="char" arraysize="*" xtype="timestamp"/>
<DATA><TABLEDATA>
<TR><TD></TD><TD>NaN</TD><TD/><TD>T</TD><TD>2020-01-01T00:00:00</TD></TR>
<TR><TD>  a b  </TD><TD> 1.5 </TD><TD>-1</TD><TD>false</TD><TD></TD></TR>
<TR>
  <TD>   </TD>
  <TD>-Inf</TD><TD>7</TD><TD></TD><TD>2020-01-02T03:04:05.5</TD>
</TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"""


def test_tabledata_as_astropy_reads_it() -> None:
    """Values stripped, an empty string kept, NaN / the null value / an empty cell NULL."""
    assert upload_votable.read_tabledata(TABLEDATA) is not None
    table = read_table(TABLEDATA, "upload 't'")
    assert table.column("s").to_pylist() == ["", "a b", ""]
    assert table.column("x").to_pylist() == [None, 1.5, -np.inf]
    assert table.column("i").to_pylist() == [None, None, 7]
    assert table.column("b").to_pylist() == [True, False, None]
    assert table.column("t").type == pa.timestamp("us")
    assert table.column("t").cast(pa.int64()).to_pylist()[1:] == [None, 1_577_934_245_500_000]
    assert read_table(TABLEDATA, "upload 't'").equals(read_table(astropy_only(TABLEDATA), "t"))
    # what the C decoder does not take is read by astropy, as before: hex, entities
    odd = TABLEDATA.replace(b"<TD>7</TD>", b"<TD>0x10</TD>").replace(b" a b ", b"a&amp;b")
    assert upload_votable.read_tabledata(odd) is None
    table = read_table(odd, "upload 't'")
    assert table.column("i").to_pylist() == [None, None, 16]
    assert table.column("s").to_pylist() == ["", "a&b", ""]


def test_the_byte_limit_counts_the_decoded_tables() -> None:
    """A VOTable whose XML is over upload_max_bytes but whose table is within it is taken;
    a table over it is refused naming the setting."""
    n = 2000
    source = Table({"ra": np.linspace(0, 10, n), "dec": np.linspace(-5, 5, n)})
    xml = votable_of(source, "tabledata")
    decoded = 2 * 8 * n  # two doubles a row, no NULLs
    assert len(xml) > 3 * decoded
    got = read_uploads(params("t,param:p", p=xml), max_bytes=decoded, max_rows=n)
    assert got["t"].table.nbytes == decoded
    assert got["t"].table.column("dec").to_pylist()[-1] == 5.0
    said = refusal(read_uploads, params("t,param:p", p=xml), max_bytes=decoded - 1, max_rows=n)
    assert f"{decoded:,} bytes as decoded; the limit is {decoded - 1:,} bytes" in said
    assert "(setting upload_max_bytes)" in said
