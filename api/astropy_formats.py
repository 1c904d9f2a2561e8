"""Result formats that astropy writes: FITS binary tables and ECSV.

Both start from :func:`qserv_py.tables.to_astropy` (units, descriptions, UCDs, NULLs
masked), then adapt what the format cannot hold:

- **FITS** (``application/fits``): a primary HDU and one BINTABLE. Units are ``TUNITn``
  (as written, also when not FITS-standard); descriptions ``TCOMMn`` and UCDs ``TUCDn``
  (the keywords STILTS/TOPCAT read and write). NULL integers get a ``TNULLn``, NULL
  floats are NaN, NULL strings empty; a boolean column with NULLs is written as a short
  integer column (1, 0, NULL), as astropy writes a NULL logical as true. Timestamps and
  dates are ISO 8601 strings (as in the VOTable), strings that are not ASCII their UTF-8
  bytes (FITS text is ASCII).
  ``OVERFLOW = T`` in the table header when the result was truncated (MAXREC).
- **ECSV** 1.0 (``text/x-ecsv``): the YAML header keeps units, descriptions and UCDs
  (``meta: {ucd: ...}``) and the column types; NULL is an empty field. The table's meta
  has ``QUERY_STATUS`` (``OK`` or ``OVERFLOW``).

In both, an ADQL geometry value (DALI point, circle, polygon) is an array of doubles with
``xtype`` in the column's meta: a point or circle a vector of 2 or 3 (NULL masked; in
ECSV ``subtype: float64[2]``), a polygon a variable-length array (ECSV
``float64[null]``, FITS a ``P`` array; a NULL polygon is empty).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qserv_py.tables import to_astropy

if TYPE_CHECKING:
    from astropy.table import Table

#: FITS header values are ASCII: other characters of a description or UCD become '?'
_ASCII = "ascii"


def _plain_table(table: pa.Table, *, null_booleans: bool = True) -> Table:
    """The astropy table of a result, with timestamps and dates as ISO 8601 strings;
    without ``null_booleans``, a boolean column with NULLs becomes a short integer column
    (1, 0, NULL): astropy writes a NULL FITS logical as true."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
        elif pa.types.is_date(field.type):
            column = column.cast(pa.string())
        elif pa.types.is_boolean(field.type) and column.null_count and not null_booleans:
            column = column.cast(pa.int16())
        columns.append(column)
    fields = [
        pa.field(f.name, c.type, metadata=f.metadata)
        for f, c in zip(table.schema, columns, strict=True)
    ]
    result = to_astropy(pa.Table.from_arrays(columns, schema=pa.schema(fields)))
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_list(field.type) and pa.types.is_floating(field.type.value_type):
            _typed_array(result, field, column)
    return result


#: DALI geometry values of fixed length (a polygon's length varies)
_FIXED = {"point": 2, "circle": 3}


def _typed_array(result: Table, field: pa.Field, values: pa.ChunkedArray) -> None:
    """Replace the text column of a geometry value (a list of doubles: DALI point,
    circle, polygon) by a typed array column, with its xtype in ``meta``: a point or
    circle a fixed-length vector (NULL masked), a polygon a variable-length one (NULL
    an empty array)."""
    from astropy.table import Column, MaskedColumn

    old = result[field.name]
    xtype = ((field.metadata or {}).get(b"datatype") or b"").decode()
    rows = values.to_pylist()
    meta = dict(old.meta)
    if xtype in ("point", "circle", "polygon"):
        meta["xtype"] = xtype
    common = dict(name=field.name, unit=old.unit, description=old.description, meta=meta)
    size = _FIXED.get(xtype)
    if size is not None and all(r is None or len(r) == size for r in rows):
        data = np.array([[np.nan] * size if r is None else r for r in rows], float)
        mask = np.array([[r is None] * size for r in rows], bool).reshape(len(rows), size)
        column: Column = MaskedColumn(data.reshape(len(rows), size), mask=mask, **common)
    else:
        data = np.empty(len(rows), object)
        for i, r in enumerate(rows):
            data[i] = np.array([] if r is None else r, float)
        column = Column(data, **common)
    result.replace_column(field.name, column)


def fits_bytes(table: pa.Table, *, truncated: bool) -> bytes:
    """The result as a FITS file: an empty primary HDU, then the BINTABLE."""
    from astropy.io import fits
    from astropy.table import Column, MaskedColumn

    result = _plain_table(table, null_booleans=False)
    for name in result.colnames:
        column = result[name]
        if column.dtype.kind == "U" and not all(str(v).isascii() for v in np.asarray(column)):
            kind = MaskedColumn if hasattr(column, "mask") else Column
            extra = {"mask": column.mask} if hasattr(column, "mask") else {}
            encoded = np.char.encode(np.asarray(column), "utf-8")
            result.replace_column(
                name,
                kind(
                    encoded,
                    name=name,
                    unit=column.unit,
                    description=column.description,
                    meta=column.meta,
                    **extra,
                ),
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-standard units are written as they are
        hdu = fits.table_to_hdu(result)
        for i, name in enumerate(result.colnames, 1):
            column = result[name]
            if column.description:
                hdu.header[f"TCOMM{i}"] = _ascii(column.description)
            if column.meta.get("ucd"):
                hdu.header[f"TUCD{i}"] = _ascii(column.meta["ucd"])
        hdu.header["OVERFLOW"] = (truncated, "result truncated at MAXREC or the limit")
        out = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out.getvalue()


def ecsv_bytes(table: pa.Table, *, truncated: bool, info: Sequence[tuple[str, str]]) -> bytes:
    """The result as ECSV (UTF-8)."""
    result = _plain_table(table)
    result.meta.clear()
    result.meta["QUERY_STATUS"] = "OVERFLOW" if truncated else "OK"
    for key, value in info:
        result.meta[key] = value
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result.write(out, format="ascii.ecsv")
    return out.getvalue().encode()


def _ascii(text: str) -> str:
    return text.encode(_ASCII, "replace").decode(_ASCII).replace("\n", " ")
