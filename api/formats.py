"""Result and error documents: VOTable (BINARY2, TABLEDATA), CSV, TSV, JSON, Parquet,
FITS and ECSV.

:func:`parse_format` reads a RESPONSEFORMAT value into a :class:`Format`; :func:`render`
turns an Arrow result table into the bytes of that format. This module holds the formats,
their parsing, and the CSV, TSV, JSON and Parquet writers; the VOTable writer is
:mod:`qserv_py.api.votable`, the FITS and ECSV ones (astropy's)
:mod:`qserv_py.api.astropy_formats`, and the columns as the writers take them
:mod:`qserv_py.api.columns`. Every format is produced by whole-column Arrow/numpy
operations (no Python loop over cells), so that a large result renders in well under a
second; the output is checked against astropy and pyvo in the tests.

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

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qserv_py.api.astropy_formats import ecsv_bytes, fits_bytes
from qserv_py.api.columns import (
    Column,
    chunks,
    float_text,
    hex_text,
    joined,
    list_text,
    text_scalar,
)
from qserv_py.api.votable import VOTABLE_NS, binary2_data, tabledata, votable_document
from qserv_py.errors import QueryRefused
from qserv_py.tables import astropy_parquet_metadata

VOTABLE_MEDIA = "application/x-votable+xml"

#: the VOParquet key-value metadata (IVOA Note "Parquet in the VO" 1.0, §2.2)
VOPARQUET_VERSION_KEY = b"IVOA.VOTable-Parquet.version"
VOPARQUET_CONTENT_KEY = b"IVOA.VOTable-Parquet.content"


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
FITS = Format("fits", "application/fits", "fits")
ECSV = Format("ecsv", "text/x-ecsv", "ecsv")
FORMATS = (VOTABLE, VOTABLE_TD, CSV, TSV, JSON, PARQUET, FITS, ECSV)

#: the short forms of RESPONSEFORMAT (DALI, RESPONSEFORMAT; and the usual extra VOTable ones)
SHORT_FORMS: dict[str, Format] = {
    "votable": VOTABLE,
    "votable/b2": VOTABLE,
    "votable/binary2": VOTABLE,
    "votable/td": VOTABLE_TD,
    "votable/tabledata": VOTABLE_TD,
    "votabletd": VOTABLE_TD,
    "votable_plain": VOTABLE_TD,  # astroquery TapPlus's name (ESA TAP+)
    "csv": CSV,
    "tsv": TSV,
    "json": JSON,
    "parquet": PARQUET,
    "fits": FITS,
    "ecsv": ECSV,
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
    "application/fits": FITS,
    "image/fits": FITS,
    "application/x-fits-bintable": FITS,
    "text/x-ecsv": ECSV,
    "text/ecsv": ECSV,
}

#: ``serialization=`` of a VOTable media type. BINARY is answered with BINARY2 (the
#: document says so in its DATA element, and BINARY cannot carry integer NULLs).
SERIALIZATIONS = {"binary2": VOTABLE, "binary": VOTABLE, "tabledata": VOTABLE_TD}

ACCEPTED = (
    "votable, votable/td, votable_plain, csv, tsv, json, parquet, fits, ecsv, "
    "application/x-votable+xml[;serialization=BINARY2|TABLEDATA], text/xml, "
    "text/csv[;header=present], text/tab-separated-values, application/json, "
    "application/vnd.apache.parquet, application/x-parquet, application/fits, text/x-ecsv"
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
        return setting in ("utf-8", "utf8") and fmt not in (PARQUET, FITS)
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
    columns = [Column.of(field, table.column(i)) for i, field in enumerate(table.schema)]
    if fmt.name == VOTABLE.name:
        data = binary2_data(columns, table.num_rows)
        return votable_document(columns, data, truncated, info)
    if fmt.name == VOTABLE_TD.name:
        data = tabledata(columns, table.num_rows)
        return votable_document(columns, data, truncated, info)
    if fmt.name == CSV.name:
        return _delimited(columns, table.num_rows, ",")
    if fmt.name == TSV.name:
        return _delimited(columns, table.num_rows, "\t")
    if fmt.name == JSON.name:
        return _json(columns, truncated)
    if fmt.name == PARQUET.name:
        return _parquet(table, columns, truncated, info)
    if fmt.name == FITS.name:
        return fits_bytes(table, truncated=truncated)
    if fmt.name == ECSV.name:
        return ecsv_bytes(table, truncated=truncated, info=info)
    raise ValueError(f"unknown format {fmt.name!r}")


def disposition(name: str) -> dict[str, str]:
    """The ``Content-Disposition`` header that names a result file (``inline``: a browser
    shows it; a client saving it takes the name — astroquery's TapPlus does, with
    ``dump_to_file``, so that the file has the extension of its format)."""
    return {"Content-Disposition": f'inline; filename="{name}"'}


def error_document(message: str) -> bytes:
    """A DALI error: a VOTable whose results RESOURCE has ``QUERY_STATUS=ERROR``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}">\n'
        '  <RESOURCE type="results">\n'
        f'    <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "  </RESOURCE>\n"
        "</VOTABLE>\n"
    ).encode()


# --- CSV, TSV, JSON, Parquet -----------------------------------------------------------


def _delimited(columns: Sequence[Column], nrows: int, delimiter: str) -> bytes:
    """CSV (RFC 4180: quoted when needed, CRLF) or TSV (IANA: tab, newline and backslash
    escaped as ``\\t``, ``\\n``, ``\\\\``; no quoting): a header row of names, then rows."""
    tsv = delimiter == "\t"
    end = "\n" if tsv else "\r\n"
    names = pa.array([c.name for c in columns], pa.large_string())
    header = _delimited_cells(names, tsv=tsv)
    lines = [delimiter.join(header.to_pylist()).encode() + end.encode()]
    for chunk in chunks(columns, nrows):
        cells = [_text_cells(values, tsv=tsv) for values in chunk]
        line = pc.binary_join_element_wise(*cells, text_scalar(delimiter))
        lines.append(joined(pc.binary_join_element_wise(line, text_scalar(end), text_scalar(""))))
    return b"".join(line for line in lines)


def _delimited_cells(text: pa.Array, *, tsv: bool) -> pa.Array:
    """Strings made safe for a CSV or TSV cell."""
    if tsv:
        for old, new in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
            text = pc.replace_substring(text, old, new)
        return text
    needs = pc.match_substring_regex(text, '[",\r\n]|^\\s|\\s$')
    doubled = pc.replace_substring(text, '"', '""')
    quoted = pc.binary_join_element_wise(
        text_scalar('"'), doubled, text_scalar('"'), text_scalar("")
    )
    return pc.if_else(needs, quoted, text)


def _text_cells(values: pa.Array, *, tsv: bool) -> pa.Array:
    """Values as the text of CSV/TSV cells; NULL is the empty string."""
    kind = values.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(values, text_scalar("true"), text_scalar("false"))
    elif pa.types.is_floating(kind):
        text = float_text(values, nan="NaN", inf="inf", minus_inf="-inf", integral_suffix=".0")
    elif pa.types.is_large_binary(kind):
        text = hex_text(values)
    elif pa.types.is_list(kind):  # geometry values, as DALI writes them: "ra dec"
        text = list_text(values)
    elif pa.types.is_large_string(kind):
        text = _delimited_cells(values, tsv=tsv)
    else:
        text = values.cast(pa.large_string())
    return pc.fill_null(text.cast(pa.large_string()), "")


def _json(columns: Sequence[Column], truncated: bool) -> bytes:
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
        values = hex_text(values)
    return values.to_pylist()


def _parquet(
    table: pa.Table,
    columns: Sequence[Column],
    truncated: bool,
    info: Sequence[tuple[str, str]],
) -> bytes:
    """VOParquet: the table as Parquet (Arrow types and field metadata kept), with the
    DATA-less VOTable of its FIELDs and INFOs in the file's key-value metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[VOPARQUET_VERSION_KEY] = b"1.0"
    metadata[VOPARQUET_CONTENT_KEY] = votable_document(columns, None, truncated, info)
    metadata.update(astropy_parquet_metadata(table))  # units for astropy's Table.read
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    return bytes(sink.getvalue().to_pybytes())
