"""Rows as PostgreSQL returns them (psycopg's Python values) into Arrow tables."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal

import pyarrow as pa
import pytest

from qserv_py.exec.arrow import to_table
from qserv_py.exec.plan import ResultColumn

UTC = dt.UTC
# oid: (Arrow type, two values as psycopg loads them)
SAMPLES = {
    21: (pa.int16(), [3, -4]),
    23: (pa.int32(), [70000, 0]),
    20: (pa.int64(), [1 << 40, -1]),
    700: (pa.float32(), [1.5, -0.25]),
    701: (pa.float64(), [1e300, 2.5]),
    16: (pa.bool_(), [True, False]),
    25: (pa.string(), ["text", "é"]),
    1042: (pa.string(), ["r", "g"]),
    1082: (pa.date32(), [dt.date(2024, 2, 29), dt.date(1970, 1, 1)]),
    1114: (pa.timestamp("us"), [dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.datetime(2000, 1, 1)]),
    1184: (
        pa.timestamp("us", tz="UTC"),
        [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), dt.datetime(2001, 1, 1, tzinfo=UTC)],
    ),
    17: (pa.binary(), [b"\x00\x01", b""]),
}


def test_every_type_with_nulls() -> None:
    oids = list(SAMPLES)
    names = [f"c{oid}" for oid in oids]
    rows = [
        tuple(SAMPLES[oid][1][0] for oid in oids),
        tuple(None for _ in oids),
        tuple(SAMPLES[oid][1][1] for oid in oids),
    ]
    table = to_table(rows, names, oids)
    assert table.schema == pa.schema(
        [pa.field(name, SAMPLES[oid][0]) for name, oid in zip(names, oids, strict=True)]
    )
    for name, oid in zip(names, oids, strict=True):
        first, second = SAMPLES[oid][1]
        assert table.column(name).to_pylist() == [first, None, second], name
    empty = to_table([], names, oids)
    assert empty.num_rows == 0 and empty.schema == table.schema


def test_values_converted_in_python() -> None:
    """numeric becomes float64; uuid, "char" and unknown types their text."""
    rows = [(Decimal("1.25"), "a", 7), (None, None, None)]
    table = to_table(rows, ["num", "ch", "other"], [1700, 18, 3904])
    assert table.schema.types == [pa.float64(), pa.string(), pa.string()]
    assert table.to_pylist() == [
        {"num": 1.25, "ch": "a", "other": "7"},
        {"num": None, "ch": None, "other": None},
    ]


def test_names_and_metadata_come_from_the_plan() -> None:
    rows = [(1, 2.0), (3, None)]
    first = (ResultColumn("n", unit="deg", ucd="pos"), ResultColumn("n", description="again"))
    table = to_table(rows, ["a", "b"], [20, 701], first)
    assert table.schema.names == ["n", "n"]  # repeated names are kept
    assert table.schema.field(0).metadata == {b"unit": b"deg", b"ucd": b"pos", b"description": b""}
    assert table.schema.field(1).metadata[b"description"] == b"again"
    assert table.column(0).to_pylist() == [1, 3] and table.column(1).to_pylist() == [2.0, None]
    # other columns of the same names and types get their own metadata
    other = (ResultColumn("x", unit="mag"), ResultColumn("y"))
    again = to_table(rows, ["a", "b"], [20, 701], other)
    assert again.schema.names == ["x", "y"]
    assert again.schema.field(0).metadata[b"unit"] == b"mag"
    with pytest.raises(ValueError, match="the result has 2 columns but the plan describes 1"):
        to_table(rows, ["a", "b"], [20, 701], other[:1])


def test_results_without_importing_pandas() -> None:
    """After ``skip_pandas_probe`` (the CLI's query command), building results does not
    import pandas (pyarrow would, to look for pandas inputs); ``to_pandas`` still can."""
    script = (
        "import sys\n"
        "from qserv_py.exec.arrow import skip_pandas_probe, to_table\n"
        "skip_pandas_probe()\n"
        "t = to_table([(1, 'a'), (2, None)], ['n', 's'], [20, 25])\n"
        "to_table([], ['n'], [20]).to_pylist()\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
        "assert t.to_pandas()['n'].tolist() == [1, 2]\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
