"""PostgreSQL results as Arrow tables.

Rows are fetched in binary (so numbers are never formatted as text and parsed back) and
turned into Arrow columns typed from the columns' PostgreSQL types: int2/4/8 →
int16/32/64, float4/8 → float32/64, numeric → float64, bool → bool, text, varchar,
char(n) and name → string, timestamp(tz) → timestamp[us], date → date32, bytea → binary;
any other type → its Python text. NULLs stay nulls. Field names and metadata (unit, UCD,
description) come from the plan's result columns when it has them.

When no value needs converting in Python (the usual case), the row tuples become one
Arrow struct array in a single pass and the table is its fields: several times faster
than an array per column for small results, and twice as fast for large ones. The schema
of a result is cached per plan columns (a plan cache hands out the same columns again).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import pq

from qserv_py.exec.plan import ResultColumn

#: PostgreSQL type OID -> Arrow type (built-in types have fixed OIDs)
ARROW_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    18: pa.string(),  # "char"
    19: pa.string(),  # name
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    26: pa.int64(),  # oid
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),  # bpchar, char(n)
    1043: pa.string(),  # varchar
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1700: pa.float64(),  # numeric
    1021: pa.list_(pa.float32()),  # float4[]
    1022: pa.list_(pa.float64()),  # float8[]: ADQL geometry values (DALI point, ...)
    2950: pa.string(),  # uuid
}


def skip_pandas_probe() -> None:
    """Keep pyarrow from importing pandas to look for pandas inputs (0.3-2 s of a short
    command such as ``qserv-py query``; pyarrow has no switch for it). pyarrow looks,
    once, the first time it builds an array from Python objects; this makes that look
    fail at once (pandas not imported yet: nothing can be a pandas object). A conversion
    that needs pandas (``to_pandas``) still imports it then. Call it early, in a process
    that does not import pandas itself."""
    if "pandas" in sys.modules:
        return
    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([])  # pyarrow's first look for pandas
    finally:
        sys.meta_path.remove(blocker)


class _NoPandas:
    """An import finder that refuses pandas (while :func:`skip_pandas_probe` runs)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not imported to look for pandas inputs")


def arrow_type(oid: int) -> pa.DataType:
    """The Arrow type of a column of PostgreSQL type ``oid`` (string when unknown)."""
    return ARROW_TYPES.get(oid, pa.string())


def _to_float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def _converter(oid: int) -> Callable[[Any], Any] | None:
    """How a fetched Python value becomes an Arrow value (None: as it is)."""
    if oid == 1700:
        return _to_float
    if oid in ARROW_TYPES and oid not in (2950, 18):
        return None
    return _to_text


def field_metadata(column: ResultColumn) -> dict[bytes, bytes]:
    """A result column's metadata as Arrow field metadata (bytes keys and values)."""
    meta = {
        b"unit": column.unit.encode(),
        b"ucd": column.ucd.encode(),
        b"description": column.description.encode(),
    }
    if column.datatype:
        meta[b"datatype"] = column.datatype.encode()
    return meta


@dataclass(frozen=True)
class _Layout:
    """How rows of given column names and types become an Arrow table."""

    columns: Sequence[ResultColumn]  # kept: the cache is keyed by their id
    schema: pa.Schema
    converters: tuple[Callable[[Any], Any] | None, ...]
    #: the schema as one struct type, when no value needs converting
    struct: pa.StructType | None
    #: a table of no rows (tables are immutable: one serves every empty result)
    empty: pa.Table


_GUARD = ResultColumn("qserv_guard")  # the guard column of a size-limited statement
_with_guards: dict[int, tuple[Sequence[ResultColumn], tuple[ResultColumn, ...]]] = {}


def _with_guard(columns: Sequence[ResultColumn]) -> tuple[ResultColumn, ...]:
    """``columns`` and the guard column: the same tuple for the same columns (layouts
    are cached by the columns' identity)."""
    found = _with_guards.get(id(columns))
    if found is not None and found[0] is columns:
        return found[1]
    extended = (*columns, _GUARD)
    with _layouts_lock:
        if len(_with_guards) >= _LAYOUTS:
            _with_guards.clear()
        _with_guards[id(columns)] = (columns, extended)
    return extended


_LAYOUTS = 256  # cached layouts at most; more clear the cache
_layouts: dict[tuple[int, tuple[str, ...], tuple[int, ...]], _Layout] = {}
_layouts_lock = threading.Lock()


def _layout(
    names: tuple[str, ...], oids: tuple[int, ...], columns: Sequence[ResultColumn]
) -> _Layout:
    key = (id(columns), names, oids)
    found = _layouts.get(key)
    if found is not None and found.columns is columns:
        return found
    if columns and len(columns) != len(names):
        raise ValueError(
            f"the result has {len(names)} columns but the plan describes {len(columns)}: "
            f"{list(names)} vs {[c.name for c in columns]}"
        )
    fields = [
        pa.field(columns[i].name, arrow_type(oid), metadata=field_metadata(columns[i]))
        if columns
        else pa.field(name, arrow_type(oid))
        for i, (name, oid) in enumerate(zip(names, oids, strict=True))
    ]
    converters = tuple(_converter(oid) for oid in oids)
    direct = all(c is None for c in converters)
    schema = pa.schema(fields)
    empty = pa.Table.from_batches([], schema=schema)  # (empty_table() may import pandas)
    layout = _Layout(columns, schema, converters, pa.struct(fields) if direct else None, empty)
    with _layouts_lock:
        if len(_layouts) >= _LAYOUTS:
            _layouts.clear()
        _layouts[key] = layout
    return layout


def to_table(
    rows: Sequence[Sequence[Any]],
    names: Sequence[str],
    oids: Sequence[int],
    columns: Sequence[ResultColumn] = (),
    *,
    guarded: bool = False,
) -> pa.Table:
    """An Arrow table of ``rows`` (tuples) whose columns are named ``names`` with type
    ``oids``.

    When ``columns`` is given, it names the fields (one per column) and gives their
    metadata. ``guarded``: the last column is the (always NULL) guard of a result-size
    limit (:mod:`qserv_py.exec.limits`), left out of the table.
    """
    if guarded:
        table = to_table(rows, names, oids, _with_guard(columns) if columns else ())
        return table.remove_column(table.num_columns - 1)
    layout = _layout(tuple(names), tuple(oids), columns)
    if not rows:
        return layout.empty
    if layout.struct is not None:
        rows = rows if isinstance(rows, list) else list(rows)
        batch = pa.RecordBatch.from_struct_array(pa.array(rows, type=layout.struct))
        return pa.Table.from_batches([batch], schema=layout.schema)
    values = list(zip(*rows, strict=True))
    kinds = layout.schema.types
    arrays = [
        pa.array(column if convert is None else [convert(v) for v in column], type=kind)
        for column, convert, kind in zip(values, layout.converters, kinds, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=layout.schema)


def fetch_table(
    conn: psycopg.Connection,
    sql: str,
    params: Sequence[Any] | None = None,
    *,
    columns: Sequence[ResultColumn] = (),
    guarded: bool = False,
) -> pa.Table:
    """Run ``sql`` on ``conn``, fetching in binary, and return its rows as Arrow
    (``guarded``: without the last column, see :func:`to_table`)."""
    with conn.cursor(binary=True) as cur:
        cur.execute(sql, params)
        result = cur.pgresult
        if result is None or result.status != pq.ExecStatus.TUPLES_OK:
            raise ValueError("the statement returns no rows")
        encoding = conn.info.encoding
        fields = range(result.nfields)
        names = tuple((result.fname(i) or b"").decode(encoding) for i in fields)
        oids = tuple(result.ftype(i) for i in fields)
        rows = cur.fetchall()
    return to_table(rows, names, oids, columns, guarded=guarded)
