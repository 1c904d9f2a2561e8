"""Arrow columns to PostgreSQL binary COPY data, a whole batch at a time.

The bulk loader streams Parquet record batches to the workers with binary COPY. At tens of
millions of rows there is no room for Python per row, so each batch is encoded with
vectorised numpy and pyarrow compute::

    with cur.copy("COPY t (objectid, ra, band) FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(HEADER)
        for batch in parquet_file.iter_batches():
            cp.write(encode_batch(batch.columns, ["bigint", "double precision", "char(1)"]))
        cp.write(TRAILER)

The format (PostgreSQL docs, COPY, "Binary Format"): an 11-byte signature, int32 flags and
int32 header-extension length; per tuple an int16 field count, then per field an int32
byte length (-1 for NULL) and the value in network byte order; an int16 -1 trailer.

Two encoders, chosen per batch:

- *fixed*: no nulls and only fixed-width types, so every tuple has the same size: one
  numpy structured array with big-endian fields, filled column by column.
- *general*: per slab of rows, the same structured array laid out for the widest tuple
  (null values and short strings padded), then a byte mask drops the padding in one
  compaction. Strings too long to pad are cut out and scattered into place with a
  repeat/arange index built from the Arrow offsets.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

HEADER: bytes = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER: bytes = struct.pack(">h", -1)

#: Rows the general encoder handles at a time: keeps its padded rows and masks in cache.
SLAB_ROWS = 1 << 16

_EPOCH_2000_US = 946_684_800_000_000  # PostgreSQL timestamps count from 2000-01-01
_MIN_TIMESTAMP_US = -211_813_488_000_000_000  # 4714-11-24 BC, PostgreSQL's earliest
_MAX_VALUE_BYTES = (1 << 30) - 1  # PostgreSQL's limit for one field
_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class _Target:
    """A PostgreSQL column type as the encoder needs it."""

    kind: str  # int | float | bool | timestamp | text | bytea
    wire: np.dtype | None = None  # big-endian dtype of fixed-width values
    max_chars: int | None = None  # char(n) / varchar(n)


def _fixed(kind: str, wire: str) -> _Target:
    return _Target(kind, np.dtype(wire))


_FIXED_TYPES = {
    **dict.fromkeys(("bigint", "int8"), _fixed("int", ">i8")),
    **dict.fromkeys(("integer", "int", "int4"), _fixed("int", ">i4")),
    **dict.fromkeys(("smallint", "int2"), _fixed("int", ">i2")),
    **dict.fromkeys(("double precision", "float8"), _fixed("float", ">f8")),
    **dict.fromkeys(("real", "float4"), _fixed("float", ">f4")),
    **dict.fromkeys(("boolean", "bool"), _fixed("bool", "u1")),
    **dict.fromkeys(("timestamp", "timestamp without time zone"), _fixed("timestamp", ">i8")),
    "text": _Target("text"),
    "bytea": _Target("bytea"),
}
_CHAR_RE = re.compile(r"(char|character|bpchar|varchar|character varying)(?:\s*\(\s*(\d+)\s*\))?")


def _target(pg_type: str) -> _Target | None:
    name = " ".join(pg_type.lower().split())
    if name in _FIXED_TYPES:
        return _FIXED_TYPES[name]
    m = _CHAR_RE.fullmatch(name)
    if m is None:
        return None
    if m[2] is not None:
        return _Target("text", max_chars=int(m[2]))
    # in SQL a bare char / character is char(1); bpchar and varchar are unbounded
    return _Target("text", max_chars=1 if m[1] in ("char", "character") else None)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    )


#: The Arrow (value) types each kind of column accepts; anything else has no safe conversion.
_ACCEPTS: dict[str, Callable[[pa.DataType], bool]] = {
    "int": _is_number,
    "float": _is_number,
    "bool": pa.types.is_boolean,
    "timestamp": pa.types.is_timestamp,
    "text": _is_text,
    "bytea": _is_binary,
}


@dataclass(frozen=True)
class _Fixed:
    """A fixed-width column: native-order values (garbage where null) and their wire type."""

    values: np.ndarray
    wire: np.dtype
    valid: np.ndarray | None  # None: no nulls

    def rows(self, start: int, stop: int) -> _Fixed:
        return _Fixed(self.values[start:stop], self.wire, _valid_rows(self.valid, start, stop))


@dataclass(frozen=True)
class _Var:
    """A variable-length column: each row's bytes are data[starts[i] : starts[i] + lens[i]]."""

    starts: np.ndarray  # int64
    lens: np.ndarray  # int64, 0 where null
    data: np.ndarray  # uint8, the whole Arrow data buffer
    valid: np.ndarray | None

    def rows(self, start: int, stop: int) -> _Var:
        valid = _valid_rows(self.valid, start, stop)
        return _Var(self.starts[start:stop], self.lens[start:stop], self.data, valid)


_Field = _Fixed | _Var


def _valid_rows(valid: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    if valid is None:
        return None
    part = valid[start:stop]
    return None if part.all() else part


def encode_batch(
    columns: Sequence[pa.Array | pa.ChunkedArray],
    pg_types: Sequence[str],
    *,
    names: Sequence[str] | None = None,
) -> bytes:
    """The binary COPY tuples (no header or trailer) of ``columns``, in this order.

    Arrow values are converted where no value can change: integers to wider integers or
    (exactly representable) to floats, integral floats to integers, float32 to double and
    double to real (rounded, but never overflowing), any string or binary encoding
    (dictionary, large, view), timestamps of any unit to microseconds (nanoseconds rounded;
    tz-aware ones as their UTC time). A bare ``char`` is char(1), as in SQL. Anything else
    raises ValueError naming the column (position, and ``names`` if given), both types
    and, for a bad value, its row: a char(n)/varchar(n) value over n characters, a NUL in
    text, an integer out of range. All checks run before any bytes are produced.
    """
    fields = _prepare(columns, pg_types, names)
    n = len(columns[0])
    if n == 0:
        return b""
    if all(isinstance(f, _Fixed) and f.valid is None for f in fields):
        return _encode_fixed(fields, n)
    return _encode_general(fields, n)


# --- conversion ---------------------------------------------------------------------------


def _prepare(
    columns: Sequence[pa.Array | pa.ChunkedArray],
    pg_types: Sequence[str],
    names: Sequence[str] | None = None,
) -> list[_Field]:
    """Each column converted to its target type and exposed as numpy arrays."""
    if len(columns) != len(pg_types):
        raise ValueError(f"{len(columns)} columns but {len(pg_types)} PostgreSQL types")
    if names is not None and len(names) != len(columns):
        raise ValueError(f"{len(columns)} columns but {len(names)} names")
    if not columns:
        raise ValueError("no columns to encode")
    if len(columns) > 1600:
        raise ValueError(f"{len(columns)} columns; PostgreSQL allows at most 1600")
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {[len(c) for c in columns]}")
    fields: list[_Field] = []
    for i, (column, pg_type) in enumerate(zip(columns, pg_types, strict=True)):
        label = f"column {i}" + (f" ({names[i]})" if names is not None else "")
        where = f"{label}: cannot load Arrow {column.type} into PostgreSQL {pg_type}"
        target = _target(pg_type)
        if target is None:
            raise ValueError(f"{label}: unsupported PostgreSQL type {pg_type!r}")
        value_type = column.type
        if pa.types.is_dictionary(value_type):
            value_type = value_type.value_type
        if not (pa.types.is_null(value_type) or _ACCEPTS[target.kind](value_type)):
            raise ValueError(f"{where}: no safe conversion")
        try:
            fields.append(_convert(column, value_type, target, where))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
    return fields


def _convert(
    column: pa.Array | pa.ChunkedArray, value_type: pa.DataType, target: _Target, where: str
) -> _Field:
    if target.kind == "text":
        return _var(_cast(column, pa.large_string()), target, where)
    if target.kind == "bytea":
        return _var(_cast(column, pa.large_binary()), target, where)
    assert target.wire is not None
    native = target.wire.newbyteorder("=")
    if target.kind == "int":
        arr = _cast(column, pa.from_numpy_dtype(native))  # Arrow checks range and fractions
        return _Fixed(_values(arr, native), target.wire, _validity(arr))
    if target.kind == "bool":
        arr = _cast(column, pa.bool_())
        bits = _bits(arr.buffers()[1], arr.offset, len(arr))
        return _Fixed(bits.view(np.uint8), target.wire, _validity(arr))
    if target.kind == "timestamp":
        t = value_type if pa.types.is_timestamp(value_type) else pa.timestamp("us")
        arr = _cast(column, t)
        valid = _validity(arr)
        return _Fixed(_timestamps(arr, valid, where), target.wire, valid)
    # float: from any float, or from integers that the float represents exactly
    is_int = pa.types.is_integer(value_type)
    same = value_type == pa.from_numpy_dtype(native)
    arr = _cast(column, value_type if is_int or same else pa.float64())
    valid = _validity(arr)
    source = _values(arr, np.dtype(arr.type.to_pandas_dtype()))
    if source.dtype == native:
        return _Fixed(source, target.wire, valid)
    with np.errstate(over="ignore", invalid="ignore"):
        values = source.astype(native)
    # float64 -> real: an overflow to ±inf would silently change the value
    bad = _inexact(source, values) if is_int else np.isinf(values) & np.isfinite(source)
    if valid is not None:
        bad &= valid
    if bad.any():
        row = int(np.argmax(bad))
        problem = f"has no exact {native} value" if is_int else f"overflows {native}"
        raise ValueError(f"{where}: row {row} ({source[row]}) {problem}")
    return _Fixed(values, target.wire, valid)


def _cast(column: pa.Array | pa.ChunkedArray, to: pa.DataType) -> pa.Array:
    """``column`` as one array of type ``to``; Arrow's safe cast rejects lossy values."""
    import pyarrow.compute as pc  # (here: slow to import)

    if column.type != to:
        column = pc.cast(column, to, safe=True)
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _bits(buffer: pa.Buffer | None, offset: int, n: int) -> np.ndarray:
    """An Arrow bitmap as one bool per row."""
    if n == 0 or buffer is None:
        return np.zeros(n, bool)
    raw = np.frombuffer(buffer, np.uint8)
    return np.unpackbits(raw, count=offset + n, bitorder="little")[offset:].view(bool)


def _validity(arr: pa.Array) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    return _bits(arr.buffers()[0], arr.offset, len(arr))


def _values(arr: pa.Array, dtype: np.dtype) -> np.ndarray:
    """The data buffer of a fixed-width array (zero copy; offset applied)."""
    if len(arr) == 0:
        return np.empty(0, dtype)
    data = np.frombuffer(arr.buffers()[1], dtype, count=arr.offset + len(arr))
    return data[arr.offset :]


def _inexact(ints: np.ndarray, floats: np.ndarray) -> np.ndarray:
    """Where converting integers to floats changed the value."""
    info = np.iinfo(ints.dtype)
    # [min, max + 1) in floats: both bounds are powers of two (or 0), so exact
    inside = (floats >= float(info.min)) & (floats < float(info.max) + 1.0)
    back = np.where(inside, floats, 0).astype(ints.dtype)
    return ~inside | (back != ints)


def _timestamps(arr: pa.Array, valid: np.ndarray | None, where: str) -> np.ndarray:
    """Microseconds since 2000-01-01 (nanoseconds rounded); tz-aware values as UTC."""
    raw = _values(arr, np.dtype(np.int64))
    if valid is not None:
        raw = np.where(valid, raw, 0)
    unit = arr.type.unit
    if unit == "ns":
        us = raw // 1000 + (raw % 1000 >= 500)
    else:
        scale = {"s": 1_000_000, "ms": 1000, "us": 1}[unit]
        low, high = -(-_MIN_TIMESTAMP_US // scale), _INT64_MAX // scale
        bad = (raw < low) | (raw > high)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{where}: row {row} ({raw[row]} {unit} since 1970) is outside PostgreSQL's range"
            )
        us = raw * scale
    return us - _EPOCH_2000_US


def _var(arr: pa.Array, target: _Target, where: str) -> _Var:
    """A large_string / large_binary array as starts, lengths and data; checks the values."""
    import pyarrow.compute as pc  # (here: slow to import)

    n = len(arr)
    valid = _validity(arr)
    bufs = arr.buffers()
    offsets = (
        np.frombuffer(bufs[1], np.int64, count=arr.offset + n + 1)[arr.offset :]
        if n
        else np.zeros(1, np.int64)
    )
    data = np.frombuffer(bufs[2], np.uint8) if n and bufs[2] is not None else np.zeros(0, np.uint8)
    starts, lens = offsets[:-1], np.diff(offsets)
    if valid is not None:
        lens = np.where(valid, lens, 0)
    longest = int(lens.max()) if n else 0
    if longest > _MAX_VALUE_BYTES:
        row = int(np.argmax(lens))
        raise ValueError(f"{where}: row {row} has {longest} bytes; PostgreSQL's limit is 1 GB")
    if target.kind == "text":
        _check_nul(offsets, lens, data, where)
        if target.max_chars is not None and longest > target.max_chars:
            chars = pc.utf8_length(arr).fill_null(0).to_numpy()
            if (chars > target.max_chars).any():
                row = int(np.argmax(chars > target.max_chars))
                raise ValueError(
                    f"{where}: row {row} ({arr[row].as_py()!r}) has {chars[row]} characters, "
                    f"more than {target.max_chars}"
                )
    return _Var(starts, lens, data, valid)


def _check_nul(offsets: np.ndarray, lens: np.ndarray, data: np.ndarray, where: str) -> None:
    """PostgreSQL text cannot hold NUL characters; say which row has one."""
    first = int(offsets[0])
    zeros = np.flatnonzero(data[first : int(offsets[-1])] == 0) + first
    if zeros.size == 0:
        return
    rows = np.searchsorted(offsets, zeros, side="right") - 1
    inside = zeros < offsets[rows] + lens[rows]  # not in a null row's leftover bytes
    if inside.any():
        row = int(rows[np.argmax(inside)])
        raise ValueError(f"{where}: row {row} contains a NUL character, which text cannot hold")


# --- encoding -----------------------------------------------------------------------------


def _encode_fixed(fields: Sequence[_Field], n: int) -> bytes:
    """Every tuple the same size: one structured array, filled column by column in slabs."""
    names: list[str] = ["count"]
    formats: list[Any] = [">i2"]
    for i, f in enumerate(fields):
        assert isinstance(f, _Fixed) and f.valid is None
        names += [f"l{i}", f"v{i}"]
        formats += [">i4", f.wire]
    dtype = np.dtype({"names": names, "formats": formats})
    slabs = []
    for start in range(0, n, SLAB_ROWS):  # slabs small enough to stay in cache
        slab = np.empty(min(SLAB_ROWS, n - start), dtype)
        slab["count"] = len(fields)
        for i, f in enumerate(fields):
            assert isinstance(f, _Fixed)
            slab[f"l{i}"] = f.wire.itemsize
            slab[f"v{i}"] = f.values[start : start + SLAB_ROWS]
        slabs.append(slab.view(np.uint8).data)
    return b"".join(slabs)


def _encode_general(fields: Sequence[_Field], n: int, *, pad_strings: bool | None = None) -> bytes:
    """Any columns, nulls allowed. ``pad_strings`` forces (True) or forbids (False) padding
    strings to their slab's longest; by default strings are padded when that at most
    doubles their bytes (plus 16 per row)."""
    slabs = []
    for start in range(0, n, SLAB_ROWS):
        stop = min(n, start + SLAB_ROWS)
        rows = [f.rows(start, stop) for f in fields]
        slabs.append(_encode_rows(rows, stop - start, pad_strings).data)
    return b"".join(slabs)


_Piece = tuple[np.ndarray, int | np.ndarray]  # bytes of every row, and each row's count


def _encode_rows(fields: Sequence[_Field], m: int, pad_strings: bool | None) -> np.ndarray:
    """The tuples of ``m`` rows: runs of fields between unpadded strings, then those strings,
    interleaved row by row."""
    runs: list[list[tuple[int, bool]]] = [[]]  # (field, with its value) per run
    cut: list[_Var] = []
    for i, f in enumerate(fields):
        padded = isinstance(f, _Fixed) or _pad(f, pad_strings)
        runs[-1].append((i, padded))
        if not padded:
            assert isinstance(f, _Var)
            cut.append(f)
            runs.append([])
    pieces: list[_Piece] = []
    for k, run in enumerate(runs):
        if run:
            pieces.append(_run(fields, run, m, count=len(fields) if k == 0 else None))
        if k < len(cut):
            pieces.append(_strings(cut[k]))
    if len(pieces) == 1:
        return pieces[0][0]
    return _interleave(pieces, m)


def _pad(f: _Var, pad_strings: bool | None) -> bool:
    if pad_strings is not None:
        return pad_strings
    m = len(f.lens)
    return m == 0 or int(f.lens.max()) * m <= 2 * int(f.lens.sum()) + 16 * m


def _run(
    fields: Sequence[_Field], run: list[tuple[int, bool]], m: int, count: int | None
) -> _Piece:
    """The bytes of a run of fields for ``m`` rows, padded to the widest then compacted."""
    names: list[str] = [] if count is None else ["count"]
    formats: list[Any] = [] if count is None else [">i2"]
    for i, with_value in run:
        f = fields[i]
        names.append(f"l{i}")
        formats.append(">i4")
        if isinstance(f, _Fixed):
            names.append(f"v{i}")
            formats.append(f.wire)
        elif with_value and (width := int(f.lens.max())):
            names.append(f"v{i}")
            formats.append((np.uint8, (width,)))
    dtype = np.dtype({"names": names, "formats": formats})
    layout = dtype.fields
    assert layout is not None
    rec = np.empty(m, dtype)
    if count is not None:
        rec["count"] = count
    drops: list[tuple[int, int, np.ndarray]] = []  # (byte offset, width, which bytes stay)
    row_len: int | np.ndarray = dtype.itemsize
    for i, with_value in run:
        f = fields[i]
        if isinstance(f, _Fixed):
            width = f.wire.itemsize
            rec[f"l{i}"] = width if f.valid is None else np.where(f.valid, width, -1)
            rec[f"v{i}"] = f.values
            if f.valid is not None:
                drops.append((layout[f"v{i}"][1], width, f.valid[:, None]))
                row_len = row_len - np.where(f.valid, 0, width)
            continue
        rec[f"l{i}"] = f.lens if f.valid is None else np.where(f.valid, f.lens, -1)
        if f"v{i}" in layout and with_value:
            width = layout[f"v{i}"][0].shape[0]
            at = f.starts[:, None] + np.arange(width)
            rec[f"v{i}"] = f.data[np.minimum(at, len(f.data) - 1, out=at)]
            if not (f.lens == width).all():
                keep = np.arange(width) < f.lens[:, None]
                drops.append((layout[f"v{i}"][1], width, keep))
                row_len = row_len - (width - f.lens)
    flat = rec.view(np.uint8)
    if not drops:
        return flat, row_len
    mask = np.ones((m, dtype.itemsize), bool)
    for offset, width, keep in drops:
        mask[:, offset : offset + width] = keep
    return flat[mask.ravel()], row_len


def _strings(f: _Var) -> _Piece:
    """The bytes of a variable-length column, row after row (null rows have none)."""
    total = int(f.lens.sum())
    if total == 0:
        return np.zeros(0, np.uint8), f.lens
    first = int(f.starts[0])
    if (f.starts == first + np.cumsum(f.lens) - f.lens).all():  # contiguous: a view
        return f.data[first : first + total], f.lens
    before = np.cumsum(f.lens) - f.lens
    return f.data[np.repeat(f.starts - before, f.lens) + np.arange(total)], f.lens


def _interleave(pieces: Sequence[_Piece], m: int) -> np.ndarray:
    """Row i of the result is row i of every piece in turn."""
    row_len = np.zeros(m, np.int64)
    for _, lens in pieces:
        row_len += lens
    ends = np.cumsum(row_len)
    out = np.empty(int(ends[-1]), np.uint8)
    cursor = ends - row_len
    for data, lens in pieces:
        if isinstance(lens, int):
            out[cursor[:, None] + np.arange(lens)] = data.reshape(m, lens)
        elif data.size:
            before = np.cumsum(lens) - lens
            out[np.repeat(cursor - before, lens) + np.arange(data.size)] = data
        cursor += lens
    return out
