"""Results as astropy and pandas tables, with their metadata.

A query's result (:meth:`qserv_py.client.Client.query`, or a Parquet file of the REST API
read with pyarrow) is an Arrow table whose fields carry ``unit``, ``ucd`` and
``description`` metadata. :func:`to_astropy` makes an astropy ``Table`` of it with units
(``astropy.units``), descriptions and UCDs (``column.meta["ucd"]``) — NULLs masked —
and :func:`to_pandas` a pandas ``DataFrame`` whose ``attrs`` keep the units, UCDs and
descriptions by column name. :func:`astropy_parquet_metadata` is the Parquet key-value
metadata astropy's own Parquet reader takes units and descriptions from, so that
``astropy.table.Table.read(file)`` of a result file has them too.

>>> import pyarrow as pa
>>> field = pa.field("ra", pa.float64(), metadata={b"unit": b"deg", b"ucd": b"pos.eq.ra"})
>>> t = to_astropy(pa.table([pa.array([1.5, None])], schema=pa.schema([field])))
>>> t["ra"].unit, t["ra"].meta["ucd"], t["ra"].mask.tolist()
(Unit("deg"), 'pos.eq.ra', [False, True])
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pandas
    from astropy.table import Table as AstropyTable
    from astropy.units import UnitBase

#: the keys of field metadata that describe a column
DESCRIBING = ("unit", "ucd", "description")


def field_metadata(field: pa.Field) -> dict[str, str]:
    """The ``unit``, ``ucd`` and ``description`` of a result field ('' when absent)."""
    meta = field.metadata or {}
    return {key: meta.get(key.encode(), b"").decode() for key in DESCRIBING}


def parse_unit(text: str) -> UnitBase | None:
    """The astropy unit of a unit string (VOUnit spelling first, then astropy's own); an
    unknown one is kept as an ``UnrecognizedUnit`` (its text is not lost); '' is None."""
    import astropy.units as u

    if not text.strip():
        return None
    for fmt in ("vounit", None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return u.Unit(text, format=fmt)
        except ValueError:
            continue
    return u.Unit(text, parse_strict="silent")


def numpy_values(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """A column's values as numpy (NULLs filled with a neutral value) and its NULL mask
    (None when nothing is NULL). Timestamps stay ``datetime64``; strings become ``str``,
    bytes ``bytes`` arrays; decimals floats."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    mask = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    kind = values.type
    if pa.types.is_decimal(kind):
        values, kind = values.cast(pa.float64()), pa.float64()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        filled = pc.fill_null(values, "").to_numpy(zero_copy_only=False)
        return filled.astype(str) if len(filled) else np.array([], str), mask
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        filled = pc.fill_null(values, b"").to_numpy(zero_copy_only=False)
        return filled.astype(bytes) if len(filled) else np.array([], bytes), mask
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            values = values.cast(pa.timestamp(kind.unit))
        return values.to_numpy(zero_copy_only=False), mask
    if pa.types.is_boolean(kind):
        return pc.fill_null(values, False).to_numpy(zero_copy_only=False), mask
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if mask is not None:
            values = pc.fill_null(values, pa.scalar(0, kind))
        return values.to_numpy(zero_copy_only=False), mask
    text = [None if v is None else str(v) for v in values.to_pylist()]
    return np.array(["" if v is None else v for v in text], str), mask


def to_astropy(table: pa.Table) -> AstropyTable:
    """An astropy ``Table`` of a result: each column with its unit, description and UCD
    (``meta["ucd"]``), NULLs masked; the table's ``meta`` has the result's schema
    metadata (``truncated``, ``query_id``, ...) as strings."""
    from astropy.table import Column, MaskedColumn, Table

    columns = []
    for field, data in zip(table.schema, table.columns, strict=True):
        values, mask = numpy_values(data)
        described = field_metadata(field)
        common: dict[str, Any] = dict(
            name=field.name,
            unit=parse_unit(described["unit"]),
            description=described["description"] or None,
            meta={"ucd": described["ucd"]} if described["ucd"] else {},
        )
        if mask is None:
            columns.append(Column(values, **common))
        else:
            columns.append(MaskedColumn(values, mask=mask, **common))
    meta = {
        k.decode(): v.decode()
        for k, v in (table.schema.metadata or {}).items()
        if not k.startswith((b"IVOA.", b"table", b"ARROW"))
    }
    return Table(columns, meta=meta)


def to_pandas(table: pa.Table) -> pandas.DataFrame:
    """A pandas ``DataFrame`` of a result (pandas must be installed); ``df.attrs`` holds
    ``units``, ``ucds`` and ``descriptions``, each a dict by column name (only the
    columns that have one), as pandas keeps no per-column metadata itself."""
    try:
        frame = table.to_pandas()
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "to_pandas needs pandas: pip install pandas (or use to_astropy)"
        ) from exc
    for key, attr in (("unit", "units"), ("ucd", "ucds"), ("description", "descriptions")):
        found = {f.name: field_metadata(f)[key] for f in table.schema}
        frame.attrs[attr] = {name: value for name, value in found.items() if value}
    return frame


def astropy_parquet_metadata(table: pa.Table) -> dict[bytes, bytes]:
    """Parquet key-value metadata for astropy's reader: ``table_meta_yaml`` (the ECSV-style
    header with each column's unit, description and UCD) and ``table::len::<name>`` for
    string and bytes columns (astropy's reader needs their width)."""
    from astropy.table import meta as astropy_meta

    header = to_astropy(table.slice(0, 0))
    metadata: dict[bytes, bytes] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            longest = pc.max(pc.utf8_length(column)).as_py()
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            longest = pc.max(pc.binary_length(column)).as_py()
        else:
            continue
        metadata[f"table::len::{field.name}".encode()] = str(max(1, longest or 0)).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yaml = "\n".join(astropy_meta.get_yaml_from_table(header))
    metadata[b"table_meta_yaml"] = yaml.encode()
    return metadata
