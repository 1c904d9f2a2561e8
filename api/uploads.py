"""TAP uploads: the tables a request sends with ``UPLOAD=name,param:part`` (DALI, UPLOAD).

A query names an uploaded table ``TAP_UPLOAD.name``. The table is either a part of the
multipart/form-data POST, named by the ``param:`` URI (inline), or at an http(s) URL that
the service fetches (:mod:`qserv_py.api.upload_urls`); any other URI is refused.

An uploaded file may be a VOTable (any serialization), a Parquet file (VOParquet
metadata is used when present) or a CSV file with a header row. It becomes an Arrow
table of the types the query engine uses (bool, int16/32/64, float32/64, string,
timestamp[us], date32, binary), with lower-case column names and the unit, UCD and
description a file gives in the field metadata (``b"unit"``, ``b"ucd"``,
``b"description"``). Anything wrong is an :class:`~qserv_py.errors.UploadError` that
names the upload and says what to do.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from qserv_py.api.upload_urls import fetch_upload, is_url
from qserv_py.errors import UploadError
from qserv_py.exec import memory

if TYPE_CHECKING:  # FastAPI is not imported to read a file (``qserv-py query --upload``)
    from qserv_py.api.deps import TapParams
    from qserv_py.config import Settings

#: ADQL regular identifier (also what DALI allows as an upload name)
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

#: the VOParquet key that holds a file's VOTable metadata
VOPARQUET_CONTENT_KEY = b"IVOA.VOTable-Parquet.content"


@dataclass(frozen=True)
class Upload:
    """An uploaded table: ``name`` as the query writes it after ``TAP_UPLOAD.``
    (lower-case), and its rows."""

    name: str
    table: pa.Table


def parse_upload_param(values: list[str]) -> list[tuple[str, str]]:
    """The (name, URI) pairs of the UPLOAD values; a value may hold several pairs
    separated by ``;`` (TAP 1.0). Names are lower-cased, must be ADQL identifiers and must
    not repeat.

    >>> parse_upload_param(["t1,param:a;T2, param:b"])
    [('t1', 'param:a'), ('t2', 'param:b')]
    """
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for value in values:
        for item in value.split(";"):
            if not item.strip():
                continue
            name, comma, uri = (s.strip() for s in item.partition(","))
            if not comma or not name or not uri:
                raise UploadError(
                    f"UPLOAD={item.strip()!r} is not a name,URI pair; "
                    "write UPLOAD=name,param:part and send the table as the multipart part"
                )
            if not IDENTIFIER.match(name):
                raise UploadError(
                    f"UPLOAD table name {name!r} is not allowed: use letters, digits and "
                    "underscores, starting with a letter"
                )
            if name.lower() in seen:
                raise UploadError(
                    f"UPLOAD names the table {name.lower()!r} twice; give each upload its own name"
                )
            seen.add(name.lower())
            pairs.append((name.lower(), uri))
    return pairs


def request_uploads(params: TapParams, settings: Settings) -> dict[str, Upload]:
    """The uploaded tables of a request within the service's limits (``upload_max_bytes``
    and ``upload_max_rows`` on the decoded tables, ``upload_max_file_bytes`` on the files
    as sent; URLs fetched within ``upload_url_timeout_s``, from public addresses unless
    ``upload_url_allow_local``)."""
    return read_uploads(
        params,
        max_bytes=settings.upload_max_bytes,
        max_rows=settings.upload_max_rows,
        max_file_bytes=settings.upload_max_file_bytes,
        url_timeout_s=settings.upload_url_timeout_s,
        allow_local_urls=settings.upload_url_allow_local,
    )


def read_uploads(
    params: TapParams,
    *,
    max_bytes: int,
    max_rows: int,
    max_file_bytes: int | None = None,
    url_timeout_s: float = 60.0,
    allow_local_urls: bool = False,
) -> dict[str, Upload]:
    """The uploaded tables of a request, by name. ``max_bytes`` bounds the size of all
    the tables together as decoded (Arrow's buffers: what the engine holds and ships,
    not the size of a VOTable's XML), ``max_rows`` the rows of each table, and
    ``max_file_bytes`` (None: no bound here) the size of all uploaded files together
    (inline and fetched), before they are read. A refusal comes before anything is
    shipped to a worker."""
    pairs = parse_upload_param(params.all("upload"))
    parts: dict[str, str] = {}
    urls: dict[str, str] = {}
    for name, uri in pairs:
        if is_url(uri):
            urls[name] = uri.strip()
            continue
        scheme, colon, part = uri.partition(":")
        if not colon or scheme.lower() != "param":
            raise UploadError(
                f"upload {name!r}: the URI {uri!r} is not supported; send the table as a "
                f"part of a multipart/form-data POST (UPLOAD={name},param:<part name>) or "
                f"give an http(s) URL the service can fetch it from"
            )
        if part not in params.files:
            sent = ", ".join(repr(p) for p in sorted(params.files)) or "none"
            raise UploadError(
                f"upload {name!r}: the request has no multipart part named {part!r} "
                f"(parts sent: {sent}); POST the table as multipart/form-data with a "
                f"file part of that name"
            )
        parts[name] = part
    file_limit = max_file_bytes if max_file_bytes is not None else 1 << 62
    total = sum(len(params.files[part]) for part in set(parts.values()))
    if total > file_limit:
        raise UploadError(
            f"the uploaded files are {total:,} bytes; the limit is {file_limit:,} bytes "
            "(setting upload_max_file_bytes): upload fewer rows or columns, or send them "
            "in a compact format (VOTable BINARY2, Parquet)"
        )
    sources: dict[str, tuple[str, bytes]] = {
        name: (f"upload {name!r} (part {part!r})", params.files[part])
        for name, part in parts.items()
    }
    for name, url in urls.items():
        data = fetch_upload(
            name,
            url,
            max_bytes=file_limit - total,
            timeout_s=url_timeout_s,
            allow_local=allow_local_urls,
        )
        total += len(data)
        sources[name] = (f"upload {name!r} ({url})", data)
    uploads: dict[str, Upload] = {}
    decoded = 0
    for name, _uri in pairs:
        where, data = sources[name]
        table = read_table(data, where)
        memory.CEILING.check(where)
        if table.num_rows > max_rows:
            raise UploadError(
                f"{where} has {table.num_rows:,} rows; the limit is {max_rows:,} rows "
                "(setting upload_max_rows): upload fewer rows"
            )
        decoded += table.nbytes
        if decoded > max_bytes:
            raise UploadError(
                f"{where} ({table.num_rows:,} rows, {table.num_columns} columns) makes the "
                f"uploaded tables {decoded:,} bytes as decoded; the limit is {max_bytes:,} "
                "bytes (setting upload_max_bytes): upload fewer rows or columns"
            )
        uploads[name] = Upload(name, table)
    return uploads


def read_table(data: bytes, where: str) -> pa.Table:
    """The table in ``data``: a VOTable (any serialization), a Parquet file (starts with
    ``PAR1``), or else CSV with a header row (types inferred; an empty field is NULL).
    ``where`` names the upload in error messages."""
    if not data.strip():
        raise UploadError(f"{where} is empty; send a VOTable, Parquet or CSV file")
    if data.startswith(b"PAR1"):
        table = _read_parquet(data, where)
    elif data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        table = _read_votable(data, where)
    else:
        table = _read_csv(data, where)
    return _normalise(table, where)


# --- readers ---------------------------------------------------------------------------


def _read_votable(data: bytes, where: str) -> pa.Table:
    """The first table of a VOTable: its rows decoded in C when they can be
    (:mod:`qserv_py.api.upload_votable`, the same table faster), else read by astropy."""
    from astropy.io.votable import parse

    from qserv_py.api.upload_votable import read_binary, read_tabledata

    fast = read_tabledata(data) or read_binary(data)
    if fast is not None:
        fields, rows = fast
        columns = [
            _timestamps(c) if f.xtype == "timestamp" and pa.types.is_string(c.type) else c
            for f, c in zip(fields, rows.columns, strict=True)
        ]
        return _described(fields, columns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            document = parse(io.BytesIO(data), verify="ignore")
            vot = next(document.iter_tables(), None)
    except Exception as exc:  # astropy raises many kinds: the message is what matters
        raise UploadError(
            f"{where} is not a readable VOTable: {exc}; send a valid VOTable, "
            "a Parquet file or CSV with a header row"
        ) from None
    if vot is None:
        raise UploadError(f"{where} is a VOTable without a TABLE; send one with a table")
    arrays = [
        _votable_column(field, vot.array[vot.array.dtype.names[i]], where)
        for i, field in enumerate(vot.fields)
    ]
    return _described(vot.fields, arrays)


def _described(described: list[Any], arrays: list[Any]) -> pa.Table:
    """The table of ``arrays`` named, and with the unit, UCD and description, of the
    VOTable FIELDs ``described``."""
    fields = [
        pa.field(
            field.name,
            array.type,
            metadata={
                b"unit": str(field.unit or "").encode(),
                b"ucd": (field.ucd or "").encode(),
                b"description": (field.description or "").encode(),
            },
        )
        for field, array in zip(described, arrays, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


#: VOTable datatype -> Arrow type of a scalar column
_VOTABLE_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "bit": pa.bool_(),  # a single bit
    "unsignedByte": pa.int16(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
}


def _votable_column(field: Any, column: np.ndarray, where: str) -> pa.Array:
    mask = np.ma.getmaskarray(column)
    values = np.ma.getdata(column)
    if field.datatype in ("char", "unicodeChar"):
        if len(values.shape) > 1:
            raise _unsupported(where, field.name, f"{field.datatype} array {field.arraysize}")
        text = [None if m else _text(v) for v, m in zip(values.tolist(), mask, strict=True)]
        array = pa.array(text, pa.string())
        return _timestamps(array) if field.xtype == "timestamp" else array
    kind = _VOTABLE_TYPES.get(field.datatype)
    if kind is None or values.dtype == object or len(values.shape) > 1:
        what = field.datatype + (f"[{field.arraysize}]" if field.arraysize else "")
        raise _unsupported(where, field.name, what)
    return pa.array(values, mask=mask).cast(kind)


def _timestamps(text: pa.Array) -> pa.Array:
    """DALI timestamps as timestamps (UTC when they say a zone), an empty one NULL (astropy
    reads a NULL string as ""); as they are when they do not all parse."""
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    for kind in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:
            return pc.cast(text, kind)
        except pa.ArrowInvalid:
            pass
    return text


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_parquet(data: bytes, where: str) -> pa.Table:
    try:
        file = pq.ParquetFile(io.BytesIO(data))
        table = file.read()
    except Exception as exc:
        raise UploadError(f"{where} is not a readable Parquet file: {exc}") from None
    content = (file.metadata.metadata or {}).get(VOPARQUET_CONTENT_KEY)
    return _with_voparquet_metadata(table, content) if content else table


def _with_voparquet_metadata(table: pa.Table, content: bytes) -> pa.Table:
    """``table`` with the units, UCDs and descriptions of its VOParquet FIELDs (by
    position, as the convention says); unreadable metadata is ignored, as allowed."""
    from astropy.io.votable import parse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vot = next(parse(io.BytesIO(content), verify="ignore").iter_tables())
    except Exception:
        return table
    if len(vot.fields) != table.num_columns:
        return table
    fields = []
    for field, described in zip(table.schema, vot.fields, strict=True):
        meta = dict(field.metadata or {})
        for key, value in (
            (b"unit", described.unit),
            (b"ucd", described.ucd),
            (b"description", described.description),
        ):
            if value:
                meta[key] = str(value).encode()
        fields.append(field.with_metadata(meta))
    return table.cast(pa.schema(fields, table.schema.metadata))


def _read_csv(data: bytes, where: str) -> pa.Table:
    convert = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True)
    header = data[: data.find(b"\n") if b"\n" in data else len(data)]
    try:  # pyarrow checks the values' UTF-8, not the names'
        header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UploadError(
            f"{where} is neither a VOTable nor a Parquet file, and its CSV header row is not "
            f"UTF-8 text (byte {exc.start + 1}): send the file encoded as UTF-8"
        ) from None
    try:
        return pcsv.read_csv(io.BytesIO(data), convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise UploadError(
            f"{where} is neither a VOTable nor a Parquet file, and does not read as CSV "
            f"with a header row: {exc}"
        ) from None


# --- checks and types --------------------------------------------------------------------


def _unsupported(where: str, column: str, kind: object) -> UploadError:
    return UploadError(
        f"{where}: column {column!r} is of type {kind}, which uploads do not support; "
        "send numbers, booleans, strings or timestamps (one value a cell, no arrays)"
    )


def _normalise(table: pa.Table, where: str) -> pa.Table:
    """The table with lower-case identifier names and the engine's Arrow types."""
    if table.num_columns == 0:
        raise UploadError(f"{where} has no columns; send a table with at least one column")
    _check_names(table.column_names, where)
    arrays = []
    fields = []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = _engine_type(field.type)
        if kind is None:
            raise _unsupported(where, field.name, field.type)
        try:
            array = column.cast(kind) if column.type != kind else column
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UploadError(f"{where}: column {field.name!r}: {exc}") from None
        arrays.append(array)
        fields.append(pa.field(field.name.lower(), kind, metadata=_metadata(field)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _check_names(names: Iterable[str], where: str) -> None:
    seen: dict[str, str] = {}
    for name in names:
        if not IDENTIFIER.match(name):
            raise UploadError(
                f"{where}: column name {name!r} is not allowed: use letters, digits and "
                "underscores, starting with a letter"
            )
        if name.lower() in seen:
            raise UploadError(
                f"{where}: columns {seen[name.lower()]!r} and {name!r} have the same name "
                "(names are case-insensitive); rename one"
            )
        seen[name.lower()] = name


def _engine_type(kind: pa.DataType) -> pa.DataType | None:
    """The Arrow type the engine uses for a column of type ``kind`` (None: unsupported)."""
    if pa.types.is_dictionary(kind):
        return _engine_type(kind.value_type)
    if pa.types.is_boolean(kind) or kind in (pa.int16(), pa.int32(), pa.int64()):
        return kind
    if kind in (pa.int8(), pa.uint8()):
        return pa.int16()
    if kind == pa.uint16():
        return pa.int32()
    if kind in (pa.uint32(), pa.uint64()):
        return pa.int64()
    if kind in (pa.float16(), pa.float32()):
        return pa.float32()
    if kind == pa.float64() or pa.types.is_decimal(kind):
        return pa.float64()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_timestamp(kind):
        return pa.timestamp("us", tz="UTC" if kind.tz else None)
    if pa.types.is_date(kind):
        return pa.date32()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.binary()
    return None


def _metadata(field: pa.Field) -> dict[bytes, bytes]:
    meta = field.metadata or {}
    return {key: meta.get(key, b"") for key in (b"unit", b"ucd", b"description")}
