"""Speed of the binary COPY encoder (loaders/pgcopy.py) against Arrow's CSV writer.

A typical object table: objectId, ra, dec, six fluxes (float64), one float32, one bool and
a char(1) band with some nulls. Run: ``.venv/bin/python bench/pgcopy_encode.py [rows]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from qserv_py.loaders import pgcopy

REPEATS = 5


def make_table(n: int) -> tuple[pa.Table, list[str]]:
    rng = np.random.default_rng(7)
    columns: dict[str, pa.Array] = {
        "objectid": pa.array(np.arange(n, dtype=np.int64) + (1 << 40)),
        "ra": pa.array(rng.uniform(0, 360, n)),
        "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, n)))),
    }
    types = ["bigint", "double precision", "double precision"]
    for band in "ugrizy":
        columns[f"{band}_flux"] = pa.array(rng.lognormal(3, 2, n))
        types.append("double precision")
    columns["extendedness"] = pa.array(rng.random(n).astype(np.float32))
    columns["is_primary"] = pa.array(rng.random(n) < 0.9)
    bands = np.array(list("ugrizy"), dtype=object)[rng.integers(0, 6, n)]
    columns["band"] = pa.array(bands, pa.string(), mask=rng.random(n) < 0.05)
    types += ["real", "boolean", "char(1)"]
    return pa.table(columns), types


def best(fn: Callable[[], int]) -> tuple[float, int]:
    """The best wall time of a few runs, and the bytes produced."""
    times, size = [], 0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - t0)
    return min(times), size


def report(label: str, n: int, seconds: float, size: int) -> None:
    print(
        f"{label:<52} {seconds * 1e3:8.1f} ms {size / seconds / 1e6:8.0f} MB/s "
        f"{n / seconds / 1e6:6.2f} M rows/s  ({size / 1e6:.0f} MB)"
    )


def csv_bytes(table: pa.Table) -> int:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().size


def main(n: int) -> None:
    table, types = make_table(n)
    columns = table.columns
    fixed_cols, fixed_types = columns[:-1], types[:-1]  # no nulls, all fixed width
    fields = pgcopy._prepare(fixed_cols, fixed_types)
    print(
        f"{n} rows, {table.num_columns} columns, pyarrow {pa.__version__}, numpy {np.__version__}"
    )
    runs: list[tuple[str, Callable[[], int]]] = [
        (
            "fixed path (11 fixed-width columns, no nulls)",
            lambda: len(pgcopy._encode_fixed(fields, n)),
        ),
        ("general path, same 11 columns", lambda: len(pgcopy._encode_general(fields, n))),
        (
            "encode_batch, all 12 columns (general path)",
            lambda: len(pgcopy.encode_batch(columns, types)),
        ),
        (
            "  same, band not padded (scatter path)",
            lambda: len(
                pgcopy._encode_general(pgcopy._prepare(columns, types), n, pad_strings=False)
            ),
        ),
        ("pyarrow.csv.write_csv, all 12 columns", lambda: csv_bytes(table)),
    ]
    for label, fn in runs:
        report(label, n, *best(fn))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)
