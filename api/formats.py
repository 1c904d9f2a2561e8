"""Result and error documents: VOTable (BINARY2, TABLEDATA), CSV, TSV, JSON, Parquet.

:func:`parse_format` reads a RESPONSEFORMAT value into a :class:`Format`; :func:`render`
turns an Arrow result table into the bytes of that format. Every format is produced by
whole-column Arrow/numpy operations (no Python loop over cells), so that a large result
renders in well under a second: the VOTable writer is our own (astropy's writes BINARY2
one cell at a time, ~10x slower), and the output is checked against astropy and pyvo in
the tests.

Conventions (see docs/service.md, "Output formats"):

- Column metadata comes from the Arrow field metadata (``unit``, ``ucd``,
  ``description``; ``datatype`` is the Felis type of a catalog column); the VOTable
  datatype comes from the Arrow type. Timestamps and dates are ISO 8601 strings
  (``char``, ``xtype="timestamp"``), booleans ``boolean``, strings ``char`` (or
  ``unicodeChar`` when a value is not ASCII), bytes ``unsignedByte`` arrays.
- NULL: the BINARY2 null mask; an empty cell in TABLEDATA, CSV and TSV; ``null`` in JSON.
  A NaN that is not NULL stays NaN (``NaN``) except in JSON, which has no NaN.
- Truncation (MAXREC, the service's limit): a ``QUERY_STATUS=OVERFLOW`` INFO after the
  TABLE (DALI 1.1 §5.4.1) in VOTable and in the VOParquet metadata, ``query_status`` in
  JSON; CSV and TSV cannot say it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qserv_py.errors import QueryRefused

VOTABLE_MEDIA = "application/x-votable+xml"
VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"  # VOTable 1.4 keeps the 1.3 namespace

#: the VOParquet key-value metadata (IVOA Note "Parquet in the VO" 1.0, §2.2)
VOPARQUET_VERSION_KEY = b"IVOA.VOTable-Parquet.version"
VOPARQUET_CONTENT_KEY = b"IVOA.VOTable-Parquet.content"

#: rows encoded at a time (bounds the size of the index arrays of the BINARY2 encoder)
CHUNK_ROWS = 65_536


# --- formats -------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """A result format: its name, the Content-Type answered, the extension of result files."""

    name: str
    media_type: str
    extension: str


VOTABLE = Format("votable", f"{VOTABLE_MEDIA};serialization=BINARY2", "xml")
VOTABLE_TD = Format("votable-td", f"{VOTABLE_MEDIA};serialization=TABLEDATA", "xml")
CSV = Format("csv", "text/csv;header=present", "csv")
TSV = Format("tsv", "text/tab-separated-values", "tsv")
JSON = Format("json", "application/json", "json")
PARQUET = Format("parquet", "application/vnd.apache.parquet", "parquet")
FORMATS = (VOTABLE, VOTABLE_TD, CSV, TSV, JSON, PARQUET)

#: the short forms of RESPONSEFORMAT (DALI, RESPONSEFORMAT; and the usual extra VOTable ones)
SHORT_FORMS: dict[str, Format] = {
    "votable": VOTABLE,
    "votable/b2": VOTABLE,
    "votable/binary2": VOTABLE,
    "votable/td": VOTABLE_TD,
    "votable/tabledata": VOTABLE_TD,
    "votabletd": VOTABLE_TD,
    "csv": CSV,
    "tsv": TSV,
    "json": JSON,
    "parquet": PARQUET,
}

#: media types accepted in RESPONSEFORMAT, and their format
MEDIA_TYPES: dict[str, Format] = {
    VOTABLE_MEDIA: VOTABLE,
    "text/xml": VOTABLE,
    "text/csv": CSV,
    "text/tab-separated-values": TSV,
    "application/json": JSON,
    "application/vnd.apache.parquet": PARQUET,
    "application/x-parquet": PARQUET,
}

#: ``serialization=`` of a VOTable media type. BINARY is answered with BINARY2 (the
#: document says so in its DATA element, and BINARY cannot carry integer NULLs).
SERIALIZATIONS = {"binary2": VOTABLE, "binary": VOTABLE, "tabledata": VOTABLE_TD}

ACCEPTED = (
    "votable, votable/td, csv, tsv, json, parquet, "
    "application/x-votable+xml[;serialization=BINARY2|TABLEDATA], text/xml, "
    "text/csv[;header=present], text/tab-separated-values, application/json, "
    "application/vnd.apache.parquet, application/x-parquet"
)


def parse_format(value: str | None) -> Format:
    """The format a RESPONSEFORMAT (or FORMAT) value asks for; VOTable BINARY2 by default.

    Case-insensitive; blanks around ``;`` and ``=`` do not matter. A request by media
    type is answered with that media type (DALI, RESPONSEFORMAT): ``text/xml`` gets ``text/xml``,
    ``application/x-parquet`` gets ``application/x-parquet``; a plain VOTable or CSV
    media type gets its parameterised form (``serialization=BINARY2``,
    ``header=present``).

    >>> parse_format("text/csv").media_type
    'text/csv;header=present'
    >>> parse_format("application/x-votable+xml; serialization=TABLEDATA").name
    'votable-td'
    """
    if value is None or not value.strip():
        return VOTABLE
    base, *rest = (part.strip() for part in value.strip().lower().split(";"))
    if not rest and base in SHORT_FORMS:
        return SHORT_FORMS[base]
    fmt = MEDIA_TYPES.get(base)
    if fmt is None:
        raise QueryRefused(f"RESPONSEFORMAT={value!r} is not supported; use one of: {ACCEPTED}")
    for param in rest:
        if not param:
            continue
        key, _, setting = (s.strip() for s in param.partition("="))
        if fmt in (VOTABLE, VOTABLE_TD) and key == "serialization" and setting in SERIALIZATIONS:
            fmt = SERIALIZATIONS[setting]
        elif not _harmless(fmt, key, setting):
            raise QueryRefused(
                f"RESPONSEFORMAT={value!r}: the media type parameter {param!r} is not "
                f"supported; use one of: {ACCEPTED}"
            )
    if base in ("text/xml", "application/x-parquet"):
        return replace(fmt, media_type=base)
    return fmt


def _harmless(fmt: Format, key: str, setting: str) -> bool:
    """A media type parameter that asks for what the format does anyway."""
    if key == "charset":
        return setting in ("utf-8", "utf8") and fmt is not PARQUET
    return fmt is CSV and key == "header" and setting == "present"


def render(
    table: pa.Table,
    fmt: Format,
    *,
    truncated: bool,
    info: Sequence[tuple[str, str]] = (),
) -> bytes:
    """``table`` in format ``fmt``; ``truncated`` says the result was cut (overflow), and
    ``info`` are extra (name, value) pairs for the VOTable INFO elements (VOTable and
    Parquet metadata) — JSON, CSV and TSV leave them out."""
    columns = [_Column.of(field, table.column(i)) for i, field in enumerate(table.schema)]
    if fmt.name == VOTABLE.name:
        data = _binary2_data(columns, table.num_rows)
        return _votable_document(columns, data, truncated, info)
    if fmt.name == VOTABLE_TD.name:
        data = _tabledata(columns, table.num_rows)
        return _votable_document(columns, data, truncated, info)
    if fmt.name == CSV.name:
        return _delimited(columns, table.num_rows, ",")
    if fmt.name == TSV.name:
        return _delimited(columns, table.num_rows, "\t")
    if fmt.name == JSON.name:
        return _json(columns, truncated)
    if fmt.name == PARQUET.name:
        return _parquet(table, columns, truncated, info)
    raise ValueError(f"unknown format {fmt.name!r}")


def error_document(message: str) -> bytes:
    """A DALI error: a VOTable whose results RESOURCE has ``QUERY_STATUS=ERROR``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        '  <RESOURCE type="results">\n'
        f'    <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "  </RESOURCE>\n"
        "</VOTABLE>\n"
    ).encode()


# --- columns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    """One result column: its VOTable description, and its values as the writers want
    them (timestamps and dates as ISO 8601 strings, small or unsigned integers widened,
    ``large_string``/``large_binary`` so that offsets never overflow)."""

    name: str
    datatype: str  # the VOTable datatype
    arraysize: str | None
    xtype: str | None
    unit: str
    ucd: str
    description: str
    values: pa.Array

    @classmethod
    def of(cls, field: pa.Field, data: pa.ChunkedArray) -> _Column:
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        values = data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
        datatype, arraysize, xtype, values = _votable_type(values, meta.get("datatype", ""))
        return cls(
            name=field.name,
            datatype=datatype,
            arraysize=arraysize,
            xtype=xtype,
            unit=meta.get("unit", ""),
            ucd=meta.get("ucd", ""),
            description=meta.get("description", ""),
            values=values,
        )


#: Arrow integer and float types -> (VOTable datatype, the Arrow type written)
_NUMBERS: dict[pa.DataType, tuple[str, pa.DataType]] = {
    pa.int8(): ("short", pa.int16()),
    pa.uint8(): ("unsignedByte", pa.uint8()),
    pa.int16(): ("short", pa.int16()),
    pa.uint16(): ("int", pa.int32()),
    pa.int32(): ("int", pa.int32()),
    pa.uint32(): ("long", pa.int64()),
    pa.int64(): ("long", pa.int64()),
    pa.uint64(): ("long", pa.int64()),
    pa.float16(): ("float", pa.float32()),
    pa.float32(): ("float", pa.float32()),
    pa.float64(): ("double", pa.float64()),
}


def _votable_type(values: pa.Array, felis: str) -> tuple[str, str | None, str | None, pa.Array]:
    """(datatype, arraysize, xtype, values to write) of a column."""
    kind = values.type
    if kind in _NUMBERS:
        datatype, written = _NUMBERS[kind]
        return datatype, None, None, values.cast(written)
    if pa.types.is_decimal(kind):
        return "double", None, None, values.cast(pa.float64())
    if pa.types.is_boolean(kind):
        return "boolean", None, None, values
    if pa.types.is_timestamp(kind):
        text = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
        return "char", "*", "timestamp", text.cast(pa.large_string())
    if pa.types.is_date(kind):
        return "char", "*", "timestamp", values.cast(pa.string()).cast(pa.large_string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "unsignedByte", "*", None, values.cast(pa.large_binary())
    if pa.types.is_fixed_size_binary(kind):
        return "unsignedByte", "*", None, values.cast(pa.binary()).cast(pa.large_binary())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = values.cast(pa.large_string())
    else:  # anything else the engine may give (it should not): its text
        try:
            text = values.cast(pa.large_string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            text = pa.array(
                [None if v is None else str(v) for v in values.to_pylist()], pa.large_string()
            )
    ascii_only = pc.all(pc.string_is_ascii(text)).as_py() is not False
    datatype = "unicodeChar" if felis == "unicode" or not ascii_only else "char"
    return datatype, "*", None, text


def _float_text(
    values: pa.Array, *, nan: str, inf: str, minus_inf: str, integral_suffix: str = ""
) -> pa.Array:
    """Floats as text: Arrow's shortest round-trip formatting, ``integral_suffix`` after
    integral values (so that ``1.0`` stays a float for a reader that guesses types), NaN
    and infinities spelled as given; NULL stays NULL."""
    text = values.cast(pa.large_string())
    if integral_suffix:
        integral = pc.match_substring_regex(text, "^-?[0-9]+$")
        suffixed = pc.binary_join_element_wise(text, _text(integral_suffix), _text(""))
        text = pc.if_else(integral, suffixed, text)
    text = pc.if_else(pc.is_nan(values), _text(nan), text)
    text = pc.if_else(pc.equal(values, np.inf), _text(inf), text)
    return pc.if_else(pc.equal(values, -np.inf), _text(minus_inf), text)


def _text(value: str) -> pa.Scalar:
    """A ``large_string`` scalar (Arrow's string kernels want one type throughout)."""
    return pa.scalar(value, pa.large_string())


def _hex(values: pa.Array) -> pa.Array:
    """Bytes as hexadecimal text (bytes columns are rare: a Python loop is fine)."""
    return pa.array([None if v is None else v.hex() for v in values.to_pylist()], pa.large_string())


def _joined(text: pa.Array) -> bytes:
    """The concatenated bytes of a string array that has no NULLs."""
    text = text.cast(pa.large_string())
    if len(text) == 0:
        return b""
    offsets = np.frombuffer(text.buffers()[1], np.int64, len(text) + 1, text.offset * 8)
    start, stop = int(offsets[0]), int(offsets[-1])
    return text.buffers()[2].slice(start, stop - start).to_pybytes()


def _chunks(columns: Sequence[_Column], nrows: int) -> list[list[pa.Array]]:
    """The columns' values, CHUNK_ROWS rows at a time (zero-copy slices)."""
    return [
        [c.values.slice(start, CHUNK_ROWS) for c in columns]
        for start in range(0, nrows, CHUNK_ROWS)
    ]


# --- VOTable -------------------------------------------------------------------------------

#: characters XML 1.0 does not allow (they are replaced by U+FFFD in TABLEDATA and metadata)
_NOT_XML = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x{fffe}\\x{ffff}]"
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return escape(_NOT_XML_RE.sub("\ufffd", text))


def _xml_attr(text: str) -> str:
    return quoteattr(_NOT_XML_RE.sub("\ufffd", text))


def _field_xml(column: _Column) -> str:
    attrs = [f"name={_xml_attr(column.name)}", f'datatype="{column.datatype}"']
    if column.arraysize:
        attrs.append(f'arraysize="{column.arraysize}"')
    if column.xtype:
        attrs.append(f'xtype="{column.xtype}"')
    if column.unit:
        attrs.append(f"unit={_xml_attr(column.unit)}")
    if column.ucd:
        attrs.append(f"ucd={_xml_attr(column.ucd)}")
    if not column.description:
        return f"<FIELD {' '.join(attrs)}/>"
    return (
        f"<FIELD {' '.join(attrs)}>"
        f"<DESCRIPTION>{_xml_text(column.description)}</DESCRIPTION></FIELD>"
    )


def _votable_document(
    columns: Sequence[_Column],
    data: bytes | None,
    truncated: bool,
    info: Sequence[tuple[str, str]],
) -> bytes:
    """A VOTable 1.4 document: one ``results`` RESOURCE with ``QUERY_STATUS=OK`` and the
    ``info`` INFOs before the TABLE, ``OVERFLOW`` after it when ``truncated``; ``data`` is
    the TABLE's DATA element (None: a DATA-less table, as VOParquet wants)."""
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}">',
        '<RESOURCE type="results">',
        '<INFO name="QUERY_STATUS" value="OK"/>',
        *(f"<INFO name={_xml_attr(name)} value={_xml_attr(value)}/>" for name, value in info),
        "<TABLE>",
        *(_field_xml(c) for c in columns),
        "",
    ]
    tail = ["</TABLE>"]
    if truncated:
        tail.append(
            '<INFO name="QUERY_STATUS" value="OVERFLOW">'
            "the result was cut at the row limit (MAXREC or the service's limit)</INFO>"
        )
    tail += ["</RESOURCE>", "</VOTABLE>", ""]
    return "\n".join(head).encode() + (data or b"") + "\n".join(tail).encode()


def _tabledata(columns: Sequence[_Column], nrows: int) -> bytes:
    """The TABLEDATA element: one TR per row, NULL as an empty TD."""
    rows = [b"<DATA><TABLEDATA>\n"]
    for chunk in _chunks(columns, nrows):
        cells = [_td_cells(c, values) for c, values in zip(columns, chunk, strict=True)]
        line = pc.binary_join_element_wise(*cells, _text("</TD><TD>"))
        row = pc.binary_join_element_wise(_text("<TR><TD>"), line, _text("</TD></TR>\n"), _text(""))
        rows.append(_joined(row))
    rows.append(b"</TABLEDATA></DATA>\n")
    return b"".join(rows)


def _td_cells(column: _Column, values: pa.Array) -> pa.Array:
    kind = values.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(values, _text("T"), _text("F"))
    elif pa.types.is_floating(kind):
        text = _float_text(values, nan="NaN", inf="+Inf", minus_inf="-Inf")
    elif pa.types.is_large_binary(kind):
        text = pa.array(
            [None if v is None else " ".join(map(str, v)) for v in values.to_pylist()],
            pa.large_string(),
        )
    elif pa.types.is_large_string(kind):
        text = values
        for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
            text = pc.replace_substring(text, old, new)
        text = pc.replace_substring_regex(text, _NOT_XML, "\ufffd")
    else:
        text = values.cast(pa.large_string())
    return pc.fill_null(text.cast(pa.large_string()), "")


#: numpy (big-endian) types of the fixed-size VOTable datatypes, and their NULL filler
_BINARY_TYPES: dict[str, tuple[str, float]] = {
    "unsignedByte": ("u1", 0),
    "short": (">i2", 0),
    "int": (">i4", 0),
    "long": (">i8", 0),
    "float": (">f4", np.nan),
    "double": (">f8", np.nan),
}


def _binary2_data(columns: Sequence[_Column], nrows: int) -> bytes:
    """The BINARY2 element: per row a null mask (bit i set: column i is NULL) then each
    cell, big-endian; variable-length cells are a 4-byte element count and the elements.
    Encoded a chunk of rows at a time with numpy, then base64 (76-character lines)."""
    raw = b"".join(_binary2_rows(columns, chunk) for chunk in _chunks(columns, nrows))
    return (
        b'<DATA><BINARY2><STREAM encoding="base64">\n'
        + base64.encodebytes(raw)
        + b"</STREAM></BINARY2></DATA>\n"
    )


#: a BINARY2 piece of every row: fixed-size (an (n, width) array of bytes), or variable
#: (the bytes of all rows, and the n + 1 offsets of each row's bytes in them)
_Piece = np.ndarray | tuple[np.ndarray, np.ndarray]


def _binary2_rows(columns: Sequence[_Column], chunk: Sequence[pa.Array]) -> bytes:
    n = len(chunk[0])
    nulls = np.column_stack([v.is_null().to_numpy(zero_copy_only=False) for v in chunk])
    pieces: list[_Piece] = [np.packbits(nulls, axis=1)]
    for column, values in zip(columns, chunk, strict=True):
        pieces += _binary2_pieces(column.datatype, values, n)
    return _assemble(pieces, n)


def _binary2_pieces(datatype: str, values: pa.Array, n: int) -> list[_Piece]:
    if datatype == "boolean":
        flags = pc.fill_null(values, False).to_numpy(zero_copy_only=False)
        return [np.where(flags, ord("T"), ord("F")).astype(np.uint8).reshape(n, 1)]
    if datatype in _BINARY_TYPES and not pa.types.is_large_binary(values.type):
        dtype, filler = _BINARY_TYPES[datatype]
        numbers = pc.fill_null(values, filler).to_numpy(zero_copy_only=False)
        return [numbers.astype(dtype).view(np.uint8).reshape(n, np.dtype(dtype).itemsize)]
    # variable-length: char / unsignedByte (one byte an element), unicodeChar (UTF-16)
    filled = pc.fill_null(values, "" if pa.types.is_large_string(values.type) else b"")
    offsets = np.frombuffer(filled.buffers()[1], np.int64, n + 1, filled.offset * 8)
    start, stop = int(offsets[0]), int(offsets[-1])
    payload = np.frombuffer(filled.buffers()[2], np.uint8, stop - start, start)
    offsets = offsets - start
    if datatype != "unicodeChar":
        counts = np.diff(offsets)
        return [_be_int32(counts), (payload, offsets)]
    # UTF-16 code units of each row, counted from its UTF-8 bytes: every byte that is
    # not a continuation byte starts a character, and 4-byte ones take two units
    units = ((payload & 0xC0) != 0x80).astype(np.int64) + (payload >= 0xF0)
    cumulative = np.concatenate(([0], np.cumsum(units)))
    counts = cumulative[offsets[1:]] - cumulative[offsets[:-1]]
    utf16 = np.frombuffer(payload.tobytes().decode("utf-8").encode("utf-16-be"), np.uint8)
    return [_be_int32(counts), (utf16, np.concatenate(([0], np.cumsum(counts * 2))))]


def _be_int32(counts: np.ndarray) -> np.ndarray:
    return counts.astype(">i4").view(np.uint8).reshape(len(counts), 4)


def _assemble(pieces: Sequence[_Piece], n: int) -> bytes:
    """The rows' bytes: the pieces of row 0, then of row 1, ... (scattered with numpy)."""
    merged: list[_Piece] = []
    for piece in pieces:  # neighbouring fixed-size pieces become one
        if isinstance(piece, np.ndarray) and merged and isinstance(merged[-1], np.ndarray):
            merged[-1] = np.hstack((merged[-1], piece))
        else:
            merged.append(piece)
    if len(merged) == 1 and isinstance(merged[0], np.ndarray):
        return merged[0].tobytes()
    lengths = np.zeros(n, np.int64)
    for piece in merged:
        lengths += piece.shape[1] if isinstance(piece, np.ndarray) else np.diff(piece[1])
    position = np.zeros(n, np.int64)  # where each row's next piece goes
    np.cumsum(lengths[:-1], out=position[1:])
    out = np.empty(int(lengths.sum()), np.uint8)
    for piece in merged:
        if isinstance(piece, np.ndarray):
            width = piece.shape[1]
            out[position[:, None] + np.arange(width)] = piece
            position += width
        else:
            payload, offsets = piece
            sizes = np.diff(offsets)
            out[np.repeat(position - offsets[:-1], sizes) + np.arange(len(payload))] = payload
            position += sizes
    return out.tobytes()


# --- CSV, TSV, JSON, Parquet -----------------------------------------------------------


def _delimited(columns: Sequence[_Column], nrows: int, delimiter: str) -> bytes:
    """CSV (RFC 4180: quoted when needed, CRLF) or TSV (IANA: tab, newline and backslash
    escaped as ``\\t``, ``\\n``, ``\\\\``; no quoting): a header row of names, then rows."""
    tsv = delimiter == "\t"
    end = "\n" if tsv else "\r\n"
    names = pa.array([c.name for c in columns], pa.large_string())
    header = _delimited_cells(names, tsv=tsv)
    lines = [delimiter.join(header.to_pylist()).encode() + end.encode()]
    for chunk in _chunks(columns, nrows):
        cells = [_text_cells(values, tsv=tsv) for values in chunk]
        line = pc.binary_join_element_wise(*cells, _text(delimiter))
        lines.append(_joined(pc.binary_join_element_wise(line, _text(end), _text(""))))
    return b"".join(line for line in lines)


def _delimited_cells(text: pa.Array, *, tsv: bool) -> pa.Array:
    """Strings made safe for a CSV or TSV cell."""
    if tsv:
        for old, new in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
            text = pc.replace_substring(text, old, new)
        return text
    needs = pc.match_substring_regex(text, '[",\r\n]|^\\s|\\s$')
    doubled = pc.replace_substring(text, '"', '""')
    quoted = pc.binary_join_element_wise(_text('"'), doubled, _text('"'), _text(""))
    return pc.if_else(needs, quoted, text)


def _text_cells(values: pa.Array, *, tsv: bool) -> pa.Array:
    """Values as the text of CSV/TSV cells; NULL is the empty string."""
    kind = values.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(values, _text("true"), _text("false"))
    elif pa.types.is_floating(kind):
        text = _float_text(values, nan="NaN", inf="inf", minus_inf="-inf", integral_suffix=".0")
    elif pa.types.is_large_binary(kind):
        text = _hex(values)
    elif pa.types.is_large_string(kind):
        text = _delimited_cells(values, tsv=tsv)
    else:
        text = values.cast(pa.large_string())
    return pc.fill_null(text.cast(pa.large_string()), "")


def _json(columns: Sequence[_Column], truncated: bool) -> bytes:
    """``{"metadata": [...], "data": [[...], ...], "query_status": "OK"|"OVERFLOW"}``."""
    metadata = [
        {
            "name": c.name,
            "datatype": c.datatype,
            "arraysize": c.arraysize,
            "xtype": c.xtype,
            "unit": c.unit,
            "ucd": c.ucd,
            "description": c.description,
        }
        for c in columns
    ]
    data = [_json_values(c.values) for c in columns]
    document = {
        "metadata": metadata,
        "data": [list(row) for row in zip(*data, strict=True)],
        "query_status": "OVERFLOW" if truncated else "OK",
    }
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _json_values(values: pa.Array) -> list[Any]:
    if pa.types.is_floating(values.type):  # JSON has no NaN or infinity: null
        values = pc.if_else(pc.is_finite(values), values, pa.scalar(None, values.type))
        if values.type == pa.float32():  # 0.1, not 0.10000000149011612
            values = values.cast(pa.string()).cast(pa.float64())
    elif pa.types.is_large_binary(values.type):
        values = _hex(values)
    return values.to_pylist()


def _parquet(
    table: pa.Table,
    columns: Sequence[_Column],
    truncated: bool,
    info: Sequence[tuple[str, str]],
) -> bytes:
    """VOParquet: the table as Parquet (Arrow types and field metadata kept), with the
    DATA-less VOTable of its FIELDs and INFOs in the file's key-value metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[VOPARQUET_VERSION_KEY] = b"1.0"
    metadata[VOPARQUET_CONTENT_KEY] = _votable_document(columns, None, truncated, info)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    return bytes(sink.getvalue().to_pybytes())
