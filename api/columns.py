"""Result columns as the format writers take them, and whole-column text helpers.

:class:`Column` is one column of a result: its VOTable description (datatype, arraysize,
xtype, from the Arrow type; unit, UCD and description from the Arrow field metadata) and
its values made ready to write (timestamps and dates as ISO 8601 strings, small or
unsigned integers widened, ``large_string``/``large_binary`` throughout). The helpers
turn whole Arrow arrays into text and bytes (no Python loop over cells), for the VOTable
writer (:mod:`qserv_py.api.votable`) and the CSV, TSV and JSON ones
(:mod:`qserv_py.api.formats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: rows encoded at a time (bounds the size of the index arrays of the BINARY2 encoder)
CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class Column:
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
    def of(cls, field: pa.Field, data: pa.ChunkedArray) -> Column:
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
    if pa.types.is_list(kind) and pa.types.is_floating(kind.value_type):
        # ADQL geometry values: DALI point (ra, dec), circle (ra, dec, radius), polygon
        size = {"point": "2", "circle": "3"}.get(felis, "*")
        xtype = felis if felis in ("point", "circle", "polygon") else None
        return "double", size, xtype, values.cast(pa.list_(pa.float64()))
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


def float_text(
    values: pa.Array, *, nan: str, inf: str, minus_inf: str, integral_suffix: str = ""
) -> pa.Array:
    """Floats as text: Arrow's shortest round-trip formatting, ``integral_suffix`` after
    integral values (so that ``1.0`` stays a float for a reader that guesses types), NaN
    and infinities spelled as given; NULL stays NULL."""
    text = values.cast(pa.large_string())
    if integral_suffix:
        integral = pc.match_substring_regex(text, "^-?[0-9]+$")
        suffixed = pc.binary_join_element_wise(text, text_scalar(integral_suffix), text_scalar(""))
        text = pc.if_else(integral, suffixed, text)
    text = pc.if_else(pc.is_nan(values), text_scalar(nan), text)
    text = pc.if_else(pc.equal(values, np.inf), text_scalar(inf), text)
    return pc.if_else(pc.equal(values, -np.inf), text_scalar(minus_inf), text)


def text_scalar(value: str) -> pa.Scalar:
    """A ``large_string`` scalar (Arrow's string kernels want one type throughout)."""
    return pa.scalar(value, pa.large_string())


def list_text(values: pa.Array) -> pa.Array:
    """Lists of numbers as DALI writes arrays in text: the numbers separated by spaces."""
    return pa.array(
        [None if v is None else " ".join(repr(float(x)) for x in v) for v in values.to_pylist()],
        pa.large_string(),
    )


def hex_text(values: pa.Array) -> pa.Array:
    """Bytes as hexadecimal text (bytes columns are rare: a Python loop is fine)."""
    return pa.array([None if v is None else v.hex() for v in values.to_pylist()], pa.large_string())


def joined(text: pa.Array) -> bytes:
    """The concatenated bytes of a string array that has no NULLs."""
    text = text.cast(pa.large_string())
    if len(text) == 0:
        return b""
    offsets = np.frombuffer(text.buffers()[1], np.int64, len(text) + 1, text.offset * 8)
    start, stop = int(offsets[0]), int(offsets[-1])
    return text.buffers()[2].slice(start, stop - start).to_pybytes()


def chunks(columns: Sequence[Column], nrows: int) -> list[list[pa.Array]]:
    """The columns' values, CHUNK_ROWS rows at a time (zero-copy slices)."""
    return [
        [c.values.slice(start, CHUNK_ROWS) for c in columns]
        for start in range(0, nrows, CHUNK_ROWS)
    ]
