"""Reading an uploaded VOTable's rows in C rather than cell by cell in Python.

astropy.io.votable converts each TABLEDATA cell, and each BINARY/BINARY2 row, in Python
(microseconds a cell: a 100,000-target list written by pyvo, which writes TABLEDATA,
took longer to read than the whole cross-match). Here astropy reads only the document's
metadata (its FIELDs, from the document with the rows cut out), and the rows are
decoded in C: TABLEDATA's ``<TR>``/``<TD>`` markup becomes a delimited text (``re.sub``
and ``bytes.replace``) that pyarrow's CSV reader parses into the FIELDs' types
(:func:`read_tabledata`); a BINARY or BINARY2 stream of fixed-size fields (astropy
writes strings at their longest length) is base64-decoded and read as a numpy record
array (:func:`read_binary`).

The result is the table astropy's reading gives (``uploads._read_votable``): the same
types, values (stripped of white space), NULLs (an empty cell of a number, the FIELD's
``VALUES null``, a float's NaN) and metadata. What this does not decode exactly —
entities or CDATA in the rows, attributes on ``TR``/``TD``, a line break inside a value,
arrays, a string longer than its ``arraysize``, a value that does not parse, more than
one TABLE — gives ``None``, and the caller reads the document with astropy as before (with its
errors and their positions).
"""

from __future__ import annotations

import base64
import io
import re
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

_OPEN = b"<TABLEDATA>"
_CLOSE = b"</TABLEDATA>"
_AFTER_TAG = re.compile(rb">\s+")
_BEFORE_TAG = re.compile(rb"\s+<")
_ARRAYSIZE = re.compile(r"(\d*)(\*?)")

#: VOTable datatype -> Arrow type a TABLEDATA cell is parsed as
_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "bit": pa.bool_(),
    "unsignedByte": pa.int16(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
}
_TRUE = ["T", "t", "true", "True", "TRUE", "1"]
_FALSE = ["F", "f", "false", "False", "FALSE", "0"]


def read_tabledata(data: bytes) -> tuple[Any, pa.Table] | None:
    """The first table's FIELDs (astropy's) and its rows as Arrow arrays of the FIELDs'
    types (columns named ``c0``, ``c1``, ...), or None when the document is not one this
    decodes exactly (see the module's docstring)."""
    start = data.find(_OPEN) + len(_OPEN)
    end = data.find(_CLOSE, start)
    if start < len(_OPEN) or end < 0:
        return None
    header = data[:start] + data[end:]  # (markup in the rows is refused by _delimited)
    if header.count(b"<TABLE") != 2 or header.count(b"<TABLEDATA") != 1:
        return None  # one TABLE, one TABLEDATA (b"<TABLE" is in both of their tags)
    fields = _fields(header)
    if fields is None:
        return None
    kinds = [_kind(field) for field in fields]
    if not fields or any(kind is None for kind in kinds):
        return None
    text = _delimited(data[start:end])
    if text is None:
        return None
    names = [f"c{i}" for i in range(len(fields))]
    if not text:
        return fields, pa.table([pa.array([], k) for k in kinds], names=names)
    try:
        table = pcsv.read_csv(
            io.BytesIO(text),
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(
                delimiter="\x1f", quote_char=False, escape_char=False, ignore_empty_lines=False
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict(zip(names, kinds, strict=True)),
                null_values=[""],
                strings_can_be_null=False,
                true_values=_TRUE,
                false_values=_FALSE,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    columns = []
    for field, column in zip(fields, table.columns, strict=True):
        array = _nulls(field, column.combine_chunks())
        if array is None:
            return None
        columns.append(array)
    return fields, pa.table(columns, names=names)


def _fields(header: bytes) -> list[Any] | None:
    """The FIELDs of the document's (first and only) table, read by astropy."""
    from astropy.io.votable import parse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = next(parse(io.BytesIO(header), verify="ignore").iter_tables(), None)
    except Exception:  # the caller's reading says what is wrong
        return None
    return None if table is None else list(table.fields)


def _kind(field: Any) -> pa.DataType | None:
    if field.datatype in ("char", "unicodeChar"):
        if _ARRAYSIZE.fullmatch(field.arraysize or "1") is None:
            return None  # an array of strings
        return pa.string()
    if field.arraysize not in (None, "1"):
        return None
    return _TYPES.get(field.datatype)


def _delimited(rows: bytes) -> bytes | None:
    """TABLEDATA's rows as lines of values separated by \\x1f (b"" for none), or None
    when they hold markup other than plain ``<TR><TD>value</TD>...</TR>``."""
    # astropy strips each value: so does this (and drops the white space between tags)
    rows = rows.strip()
    text = rows.translate(None, _WHITESPACE)
    if _next_to_tags_only(rows, len(rows) - len(text)):  # (the usual case: ~20x faster)
        rows = text
    else:
        rows = _BEFORE_TAG.sub(b"<", _AFTER_TAG.sub(b">", rows))
    del text
    rows = rows.replace(b"<TD/>", b"<TD></TD>")
    if not rows:
        return b""
    if any(c in rows for c in (b"&", b"\n", b"\r", b"\x1f")):
        return None  # entities, or characters that would break the lines
    if not (rows.startswith(b"<TR><TD>") and rows.endswith(b"</TD></TR>")):
        return None
    text = rows[8:-10].replace(b"</TD></TR><TR><TD>", b"\n")
    del rows
    text = text.replace(b"</TD><TD>", b"\x1f")
    return None if b"<" in text else text


_WHITESPACE = b" \t\n\r\x0b\x0c"


def _next_to_tags_only(rows: bytes, spaces: int) -> bool:
    """Is each run of white space in ``rows`` (stripped; ``spaces`` bytes of white space
    in all) after a ``>`` or before a ``<``? (Then deleting all white space strips each
    value, as astropy does, and keeps every value whole.)"""
    chars = np.frombuffer(rows, np.uint8)
    space = chars <= 32
    if np.count_nonzero(space) != spaces:
        return False  # control characters other than white space (not XML)
    changes = np.flatnonzero(space[1:] != space[:-1])  # runs: starts, ends, alternating
    before = chars[changes[0::2]]  # the character before each run
    after = chars[changes[1::2] + 1]  # the character after it
    return not ((before != ord(">")) & (after != ord("<"))).any()


def _nulls(field: Any, array: pa.Array) -> pa.Array | None:
    """``array`` as astropy reads it: NULL for the FIELD's null value and a float's NaN
    (an empty string stays one), strings stripped; None when a string does not fit its
    FIELD as astropy reads it."""
    if pa.types.is_string(array.type):
        size = _ARRAYSIZE.fullmatch(field.arraysize or "1")
        limit = int(size.group(1)) if size and size.group(1) else None
        if field.datatype == "char" and not pc.all(pc.string_is_ascii(array)).as_py():
            return None
        if limit is not None and len(array):
            longest = pc.max(pc.utf8_length(array)).as_py()
            if longest is not None and longest > limit:
                return None  # astropy truncates it (with a warning)
        return pc.utf8_trim_whitespace(array)
    null = getattr(field.values, "null", None)
    if null is not None and not pa.types.is_boolean(array.type):
        try:
            mask = pc.equal(array, pa.scalar(null).cast(array.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if pc.any(mask).as_py():  # (else no validity bitmap: it would count as bytes)
            array = pc.if_else(mask, pa.scalar(None, array.type), array)
    if pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
        nan = np.isnan(values)
        if nan.any():
            array = pa.array(values, mask=nan | np.asarray(array.is_null()), type=array.type)
    return array


_STREAM = re.compile(rb"<(BINARY2?)>\s*<STREAM\s+encoding=[\"']base64[\"']\s*>")
#: VOTable datatype -> numpy type of its (big-endian) binary value
_BINARY: dict[str, str] = {
    "unsignedByte": "u1",
    "short": ">i2",
    "int": ">i4",
    "long": ">i8",
    "float": ">f4",
    "double": ">f8",
    "boolean": "S1",
    "bit": "u1",  # one bit in a byte (see _binary_column)
}


def read_binary(data: bytes) -> tuple[Any, pa.Table] | None:
    """The first table's FIELDs (astropy's) and its rows, like :func:`read_tabledata`,
    for a BINARY or BINARY2 stream (inline, base64) of fixed-size fields; else None."""
    if data.count(b"<TABLE") != 1 or data.count(b"<STREAM") != 1:
        return None
    found = _STREAM.search(data)
    if found is None:
        return None
    start = found.end()
    end = data.find(b"</STREAM>", start)
    if end < 0:
        return None
    fields = _fields(data[:start] + data[end:])
    if not fields:
        return None
    nulls = (len(fields) + 7) // 8 if found.group(1) == b"BINARY2" else 0
    layout: list[tuple[str, str]] = [("nulls", f"{nulls}u1")] if nulls else []
    for i, field in enumerate(fields):
        kind = _binary_kind(field)
        if kind is None:
            return None
        layout.append((f"c{i}", kind))
    dtype = np.dtype(layout)
    raw = base64.b64decode(data[start:end])
    if len(raw) % dtype.itemsize:
        return None
    rows = np.frombuffer(raw, dtype)
    del raw
    columns = []
    for i, field in enumerate(fields):
        null = np.zeros(len(rows), bool)
        if nulls:
            null = (rows["nulls"][:, i // 8] >> (7 - i % 8)) & 1 == 1
        array = _binary_column(field, rows[f"c{i}"], null)
        if array is None:
            return None
        columns.append(array)
    return fields, pa.table(columns, names=[f"c{i}" for i in range(len(fields))])


def _binary_kind(field: Any) -> str | None:
    if field.datatype in ("char", "unicodeChar"):
        size = _ARRAYSIZE.fullmatch(field.arraysize or "1")
        if size is None or size.group(2) or not size.group(1):
            return None  # variable length: rows of different sizes
        width = int(size.group(1)) * (2 if field.datatype == "unicodeChar" else 1)
        return f"S{width}" if width else None
    if field.arraysize not in (None, "1"):
        return None
    return _BINARY.get(field.datatype)


def _binary_column(field: Any, values: np.ndarray, null: np.ndarray) -> pa.Array | None:
    """One column of binary rows as astropy reads it (NULL: the row's null flag, the
    FIELD's null value, a float's NaN, a boolean's ``?``)."""
    if field.datatype == "unicodeChar":  # UCS-2, big-endian, padded with NULs
        width = values.dtype.itemsize // 2
        codes = np.frombuffer(values.tobytes(), ">u2").reshape(len(values), width)
        if ((codes >= 0xD800) & (codes < 0xE000)).any():
            return None
        text = codes.astype("<u4").view(f"<U{width}").reshape(len(values))
        return pa.array(text, pa.string(), mask=null)
    if field.datatype == "char":
        if len(values) and (np.frombuffer(values.tobytes(), "u1") >= 0x80).any():
            return None  # not ASCII: astropy's reading of it is its own
        return pa.array(values, pa.binary(), mask=null).cast(pa.string())
    if field.datatype == "boolean":
        true = np.isin(values, [b"T", b"t", b"1"])
        null = null | ~(true | np.isin(values, [b"F", b"f", b"0"]))
        return pa.array(true, pa.bool_(), mask=null)
    if field.datatype == "bit":  # astropy writes and reads 0x08 (not the highest bit)
        return pa.array(values & 0x08 != 0, pa.bool_(), mask=null)
    native = values.astype(values.dtype.newbyteorder("="))
    kind = _TYPES[field.datatype]
    declared = getattr(field.values, "null", None)
    if declared is not None:
        try:
            null = null | (native == np.array(declared).astype(native.dtype))
        except (TypeError, ValueError, OverflowError):
            return None
    if native.dtype.kind == "f":
        null = null | np.isnan(native)
    return pa.array(native, mask=null if null.any() else None).cast(kind)
