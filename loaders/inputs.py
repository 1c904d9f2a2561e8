"""The input of a load: Parquet files matched to a table, and checked before any row is
written.

Columns are matched to the schema by name, case-insensitively. Every problem is an
:class:`~qserv_py.errors.LoadInputError` that names the file, the column and, for
values, the row (counted from 0 within the file):

- a missing non-nullable column (missing nullable columns load as NULL);
- an unknown column, unless ``ignore_extra``;
- a type that cannot be converted to the column's datatype;
- a NULL in a non-nullable column;
- a director position that is not finite, or out of range (RA outside [0, 360], Dec
  outside [-90, 90]).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qserv_py.errors import LoadInputError
from qserv_py.schema.model import CHUNK_ID, SPATIAL_INDEX, Column, Table, TableKind

_INTEGER = ("byte", "short", "int", "long")
_FLOAT = ("float", "double")
_STRING = ("char", "string", "unicode", "text")


@dataclass(frozen=True)
class InputFile:
    path: Path
    size: int
    rows: int
    #: table column sql_name -> Parquet column name (absent: the column loads as NULL)
    columns: dict[str, str]


def resolve_files(specs: Sequence[str | Path]) -> list[Path]:
    """Parquet files named by ``specs``: files, directories (searched recursively for
    ``*.parquet``) and glob patterns; each file once, in a stable order."""
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
            if not files:
                raise LoadInputError(f"{path}: the directory holds no *.parquet files")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(text):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not files:
                raise LoadInputError(f"{text}: no file matches this pattern")
            found.extend(files)
        else:
            raise LoadInputError(f"{path}: no such file or directory")
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    if not unique:
        raise LoadInputError("no input files given")
    return list(unique)


def plan_inputs(table: Table, paths: Sequence[Path], *, ignore_extra: bool) -> list[InputFile]:
    """Match each file's columns to ``table``; schema-level errors are raised here."""
    return [_plan_file(table, path, ignore_extra) for path in paths]


def _plan_file(table: Table, path: Path, ignore_extra: bool) -> InputFile:
    try:
        meta = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LoadInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    schema = meta.schema_arrow
    by_name: dict[str, str] = {}
    for name in schema.names:
        folded = name.lower()
        if folded in by_name:
            raise LoadInputError(
                f"{path}: columns {by_name[folded]!r} and {name!r} differ only in case; "
                "rename one of them"
            )
        by_name[folded] = name
    known = {c.sql_name for c in table.columns}
    extra = [by_name[n] for n in by_name if n not in known]
    if extra and not ignore_extra:
        reserved = [n for n in extra if n.lower() in (SPATIAL_INDEX, CHUNK_ID)]
        hint = (
            f" ({', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} computed by the "
            "loader)"
            if reserved
            else ""
        )
        raise LoadInputError(
            f"{path}: column{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
            f"{'are' if len(extra) > 1 else 'is'} not in table {table.name}{hint}; remove "
            "them, or pass --ignore-extra to skip them"
        )
    columns: dict[str, str] = {}
    for col in table.columns:
        source = by_name.get(col.sql_name)
        if source is None:
            if not col.nullable:
                raise LoadInputError(
                    f"{path}: column {col.name} (non-nullable) is missing; table "
                    f"{table.name} needs it"
                )
            continue
        arrow_type = schema.field(source).type
        if not _convertible(arrow_type, col):
            raise LoadInputError(
                f"{path}: column {source} is {arrow_type}, which cannot be converted to "
                f"{col.datatype} (column {col.name} of {table.name})"
            )
        columns[col.sql_name] = source
    return InputFile(path, path.stat().st_size, meta.metadata.num_rows, columns)


def _convertible(arrow_type: pa.DataType, col: Column) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_null(arrow_type):
        return col.nullable
    kind = col.datatype
    if kind in _INTEGER:
        return pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type)
    if kind in _FLOAT:
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    if kind == "boolean":
        return pa.types.is_boolean(arrow_type)
    if kind in _STRING:
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if kind == "binary":
        return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
    if kind == "timestamp":
        return pa.types.is_timestamp(arrow_type)
    return False


def read_batches(
    table: Table, file: InputFile, columns: Sequence[str] | None = None, batch_rows: int = 262_144
) -> Iterator[tuple[int, pa.Table]]:
    """(first row number, batch) of ``file``, its columns renamed to the table's sql
    names (``columns``: which ones; default all), missing nullable columns as NULLs."""
    wanted = [c for c in table.columns if columns is None or c.sql_name in columns]
    sources = [file.columns[c.sql_name] for c in wanted if c.sql_name in file.columns]
    # one row group at a time, without read-ahead: memory is bounded by the row group,
    # not by the file (pre_buffer would read ahead through the whole file)
    parquet = pq.ParquetFile(file.path, pre_buffer=False)
    first = 0
    batches = (
        batch
        for group in range(parquet.metadata.num_row_groups)
        for batch in parquet.iter_batches(
            batch_size=batch_rows, row_groups=[group], columns=sources, use_threads=True
        )
    )
    for batch in batches:
        arrays = []
        for col in wanted:
            source = file.columns.get(col.sql_name)
            arrays.append(batch.column(source) if source is not None else pa.nulls(batch.num_rows))
        yield first, pa.table(arrays, names=[c.sql_name for c in wanted])
        first += batch.num_rows


def check_values(table: Table, file: InputFile, first_row: int, batch: pa.Table) -> None:
    """Value checks of one batch (columns by sql name): NULLs and positions."""
    for col in table.columns:
        if col.nullable or col.sql_name not in batch.column_names:
            continue
        values = batch.column(col.sql_name)
        if values.null_count:
            row = int(np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False))[0])
            raise LoadInputError(
                f"{file.path}: column {file.columns[col.sql_name]}, row {first_row + row}: "
                f"NULL in non-nullable column {col.name}; fix the input or make the column "
                "nullable in the schema"
            )
    if table.kind is TableKind.DIRECTOR:
        assert table.ra_column is not None and table.dec_column is not None
        for name, low, high in ((table.ra_column, 0.0, 360.0), (table.dec_column, -90.0, 90.0)):
            values = positions(batch, name)
            bad = ~np.isfinite(values) | (values < low) | (values > high)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise LoadInputError(
                    f"{file.path}: column {file.columns[name.lower()]}, row {first_row + row}: "
                    f"position {float(values[row])!r} is not in [{low:g}, {high:g}]"
                    + (" (normalise RA into [0, 360))" if high == 360.0 else "")
                )


def positions(batch: pa.Table, name: str) -> np.ndarray:
    """A position column as float64 numpy (NaN for NULL)."""
    values = batch.column(name.lower())
    return np.asarray(
        pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def needs_value_checks(table: Table, file: InputFile) -> list[str]:
    """The columns of ``file`` whose values must be read for the checks: positions, and
    non-nullable columns whose Parquet statistics do not rule out NULLs."""
    meta = pq.ParquetFile(file.path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    out = []
    for col in table.columns:
        source = file.columns.get(col.sql_name)
        if source is None:
            continue
        if table.kind is TableKind.DIRECTOR and col.sql_name in (
            (table.ra_column or "").lower(),
            (table.dec_column or "").lower(),
        ):
            out.append(col.sql_name)
            continue
        if col.nullable:
            continue
        if source not in names:  # nested or renamed: read it
            out.append(col.sql_name)
            continue
        index = names.index(source)
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count or stats.null_count > 0:
                out.append(col.sql_name)
                break
    return out
