"""The binary COPY encoder: round trips through a real worker, a per-row reference encoder,
every safe conversion and every refusal."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders import pgcopy
from qserv_py.loaders.pgcopy import HEADER, TRAILER, encode_batch

RNG = np.random.default_rng(20261123)
EPOCH_2000 = dt.datetime(2000, 1, 1)

#: One column of each type, and its random (Arrow) values.
TYPES = [
    "bigint",
    "integer",
    "smallint",
    "double precision",
    "real",
    "boolean",
    "char(1)",
    "char(4)",
    "varchar(12)",
    "varchar",
    "text",
    "bytea",
    "timestamp",
]

STRINGS = [
    "",
    "a",
    "é",
    "🔭",
    "Ωmega",
    "ab c",
    "x" * 12,
    "日本語テキスト",
    "tab\tand\nnewline",
    "'\"\\",
]


@pytest.fixture(scope="module")
def db(spec: ClusterSpec) -> Iterator[psycopg.Connection]:
    with connect(spec.workers[0]) as conn:
        yield conn


def _random_column(pg_type: str, n: int, nulls: float = 0.15) -> pa.Array:
    """n random values of ``pg_type`` (as the canonical Arrow type), with edge values."""
    mask = RNG.random(n) < nulls
    if pg_type in ("bigint", "integer", "smallint"):
        return pa.array(_random_ints(pg_type, n), mask=mask)
    if pg_type in ("double precision", "real"):
        return pa.array(_random_floats(pg_type, n), mask=mask)
    if pg_type == "boolean":
        return pa.array(RNG.random(n) < 0.5, mask=mask)
    if pg_type == "timestamp":
        low, high = -62_135_596_800_000_000, 253_402_214_399_999_999  # years 1 to 9999
        micro = RNG.integers(low, high, n)
        micro[:3] = [low, high, 0]
        return pa.array(micro, pa.timestamp("us"), mask=mask)
    if pg_type == "bytea":
        blobs = [RNG.bytes(int(k)) for k in RNG.integers(0, 40, n)]
        blobs[:2] = [b"", b"\x00\xff\x00"]
        return pa.array(blobs, pa.binary(), mask=mask)
    return pa.array(_random_strings(pg_type, n), pa.string(), mask=mask)


def _random_ints(pg_type: str, n: int) -> np.ndarray:
    dtype = np.dtype({"bigint": "int64", "integer": "int32", "smallint": "int16"}[pg_type])
    info = np.iinfo(dtype)
    values = RNG.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    values[:4] = [info.min, info.max, 0, -1]
    return values


def _random_floats(pg_type: str, n: int) -> np.ndarray:
    dtype = np.float64 if pg_type == "double precision" else np.float32
    values = (RNG.normal(size=n) * 10.0 ** RNG.integers(-30, 30, n)).astype(dtype)
    info = np.finfo(dtype)
    edges = [np.nan, np.inf, -np.inf, 0.0, -0.0, info.max, info.tiny, info.smallest_subnormal]
    values[: len(edges)] = np.array(edges, dtype)
    return values


def _random_strings(pg_type: str, n: int) -> list[str]:
    width = {"char(1)": 1, "char(4)": 4, "varchar(12)": 12}.get(pg_type)
    pool = [s for s in STRINGS if width is None or len(s) <= width]
    if width == 1:
        pool += list("ugrizy")
    values = [pool[k] for k in RNG.integers(0, len(pool), n)]
    if pg_type == "text":  # some long values, so the unpadded (scatter) path runs too
        values[::50] = ["long ✓ " * int(k) for k in RNG.integers(100, 400, len(values[::50]))]
    return values


def _expected(value: Any, pg_type: str) -> Any:
    """What PostgreSQL gives back for ``value`` (char(n) is blank-padded)."""
    if value is not None and pg_type.startswith("char("):
        return value.ljust(int(pg_type[5:-1]))
    return value


def _comparable(value: Any) -> Any:
    """Floats by their bits, so NaN equals NaN and -0.0 differs from 0.0."""
    return struct.pack(">d", value) if isinstance(value, float) else value


def _roundtrip(
    conn: psycopg.Connection, columns: Sequence[pa.Array | pa.ChunkedArray], types: Sequence[str]
) -> list[tuple[Any, ...]]:
    """COPY the columns into a temporary table and read them back in order (binary)."""
    n = len(columns[0])
    rid = pa.array(np.arange(n, dtype=np.int64))
    defs = ", ".join(f"c{i} {t}" for i, t in enumerate(types))
    names = ", ".join(f"c{i}" for i in range(len(types)))
    with conn.transaction(force_rollback=True), conn.cursor(binary=True) as cur:
        cur.execute(f"CREATE TEMP TABLE t (rid bigint, {defs})")
        with cur.copy(f"COPY t (rid, {names}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(HEADER)
            cp.write(encode_batch([rid, *columns], ["bigint", *types]))
            cp.write(TRAILER)
        cur.execute(f"SELECT {names} FROM t ORDER BY rid")
        return cur.fetchall()


def _assert_rows(
    rows: list[tuple[Any, ...]], columns: Sequence[pa.Array | pa.ChunkedArray], types: Sequence[str]
) -> None:
    assert len(rows) == len(columns[0])
    for i, (column, pg_type) in enumerate(zip(columns, types, strict=True)):
        got = [_comparable(r[i]) for r in rows]
        want = [_comparable(_expected(v, pg_type)) for v in column.to_pylist()]
        assert got == want, f"column {i} ({pg_type})"


def _reference(columns: Sequence[pa.Array | pa.ChunkedArray], types: Sequence[str]) -> bytes:
    """Binary COPY tuples, one Python value at a time: slow and obviously right."""
    out = bytearray()
    for row in zip(*(c.to_pylist() for c in columns), strict=True):
        out += struct.pack(">h", len(row))
        for value, pg_type in zip(row, types, strict=True):
            if value is None:
                out += struct.pack(">i", -1)
                continue
            if isinstance(value, str):
                data = value.encode()
            elif isinstance(value, bytes):
                data = value
            elif isinstance(value, dt.datetime):
                data = struct.pack(">q", (value - EPOCH_2000) // dt.timedelta(microseconds=1))
            else:
                fmt = {"bigint": "q", "integer": "i", "smallint": "h", "double precision": "d"}
                data = struct.pack(">" + {**fmt, "real": "f", "boolean": "?"}[pg_type], value)
            out += struct.pack(">i", len(data)) + data
    return bytes(out)


# --- the format -----------------------------------------------------------------------------


def test_header_and_trailer() -> None:
    assert b"PGCOPY\n\xff\r\n\x00" + bytes(8) == HEADER
    assert len(HEADER) == 19
    assert TRAILER == b"\xff\xff"


def test_one_row_by_hand() -> None:
    got = encode_batch(
        [pa.array([7]), pa.array([None], pa.float64()), pa.array(["é"])],
        ["bigint", "double precision", "text"],
    )
    assert got == (
        b"\x00\x03"
        + b"\x00\x00\x00\x08"
        + (7).to_bytes(8, "big")
        + b"\xff\xff\xff\xff"
        + b"\x00\x00\x00\x02\xc3\xa9"
    )


def test_empty_batch() -> None:
    assert (
        encode_batch([pa.array([], pa.int64()), pa.array([], pa.string())], ["bigint", "text"])
        == b""
    )


# --- round trips through PostgreSQL ----------------------------------------------------------


def test_roundtrip_every_type(db: psycopg.Connection) -> None:
    columns = [_random_column(t, 3000) for t in TYPES]
    _assert_rows(_roundtrip(db, columns, TYPES), columns, TYPES)


def test_roundtrip_across_slabs(db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgcopy, "SLAB_ROWS", 257)
    columns = [_random_column(t, 2000) for t in TYPES]
    _assert_rows(_roundtrip(db, columns, TYPES), columns, TYPES)


def test_roundtrip_fixed_width_no_nulls(db: psycopg.Connection) -> None:
    """The fast path's output, as PostgreSQL reads it."""
    types = ["bigint", "integer", "smallint", "double precision", "real", "boolean", "timestamp"]
    columns = [_random_column(t, 3000, nulls=0) for t in types]
    _assert_rows(_roundtrip(db, columns, types), columns, types)


def test_roundtrip_all_nulls_and_null_type(db: psycopg.Connection) -> None:
    columns = [pa.array([None] * 5, t) for t in (pa.int64(), pa.string(), pa.float32())]
    columns.append(pa.nulls(5))
    types = ["bigint", "text", "real", "timestamp"]
    assert _roundtrip(db, columns, types) == [(None,) * 4] * 5


def test_roundtrip_converted_inputs(db: psycopg.Connection) -> None:
    """Inputs that need converting, as PostgreSQL reads them."""
    words = pa.array(["u", None, "g", "é", "u"])
    large = words.cast(pa.large_string())
    unix = dt.datetime(1970, 1, 1)
    second = dt.timedelta(seconds=1)
    given_and_wanted = [
        (pa.array([1, -2, None, 2**31 - 1, 0], pa.int32()), "bigint", [1, -2, None, 2**31 - 1, 0]),
        (
            pa.array([1.5, None, np.nan, -np.inf, 3e38], pa.float32()),
            "double precision",
            [1.5, None, np.nan, -np.inf, float(np.float32(3e38))],
        ),
        (
            pa.array([2**60, -(2**53) - 2, 0, None, 7]),
            "double precision",
            [2.0**60, -(2.0**53) - 2, 0.0, None, 7.0],
        ),
        (words.dictionary_encode(), "char(1)", words.to_pylist()),
        (pa.chunked_array([large[:2], large[2:]]), "text", words.to_pylist()),
        (
            pa.array([0, 1, None, -1, 86_400], pa.timestamp("s", tz="Europe/Paris")),
            "timestamp",
            [unix, unix + second, None, unix - second, unix + 86_400 * second],
        ),
        (
            pa.array([b"", b"\x00", None, b"ab", b"\xff"], pa.large_binary()),
            "bytea",
            [b"", b"\x00", None, b"ab", b"\xff"],
        ),
    ]
    columns = [g for g, _, _ in given_and_wanted]
    types = [t for _, t, _ in given_and_wanted]
    rows = _roundtrip(db, columns, types)
    for i, (_, _, wanted) in enumerate(given_and_wanted):
        assert [_comparable(r[i]) for r in rows] == [_comparable(v) for v in wanted], types[i]


# --- against the reference encoder --------------------------------------------------------------


def test_matches_reference_encoder() -> None:
    columns = [_random_column(t, 2000) for t in TYPES]
    assert encode_batch(columns, TYPES) == _reference(columns, TYPES)


@pytest.mark.parametrize("pad_strings", [True, False, None])
def test_general_path_string_layouts(pad_strings: bool | None) -> None:
    """Strings padded and compacted, or cut out and scattered: the same bytes."""
    types = ["text", "double precision", "char(4)", "bytea", "text"]
    columns = [_random_column(t, 1500) for t in types]
    fields = pgcopy._prepare(columns, types)
    got = pgcopy._encode_general(fields, 1500, pad_strings=pad_strings)
    assert got == _reference(columns, types)


def test_fast_and_general_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    types = ["bigint", "integer", "smallint", "double precision", "real", "boolean", "timestamp"]
    columns = [_random_column(t, 1000, nulls=0) for t in types]
    fields = pgcopy._prepare(columns, types)
    fast = pgcopy._encode_fixed(fields, 1000)
    assert fast == pgcopy._encode_general(fields, 1000) == _reference(columns, types)
    assert len(fast) == 1000 * (2 + 7 * 4 + 8 + 4 + 2 + 8 + 4 + 1 + 8)
    monkeypatch.setattr(pgcopy, "SLAB_ROWS", 33)
    assert pgcopy._encode_fixed(fields, 1000) == fast == pgcopy._encode_general(fields, 1000)


def test_strings_with_bytes_behind_nulls() -> None:
    """Arrow lets a null slot cover data bytes (even a NUL); they must not leak out."""
    data = pa.py_buffer(b"ab\x00cdXYZ")
    offsets = pa.py_buffer(np.array([0, 2, 4, 5, 8], np.int32).tobytes())
    validity = pa.py_buffer(bytes([0b1101]))
    arr = pa.StringArray.from_buffers(4, offsets, data, validity)
    assert arr.to_pylist() == ["ab", None, "d", "XYZ"]
    for pad in (True, False):
        got = pgcopy._encode_general(pgcopy._prepare([arr], ["text"]), 4, pad_strings=pad)
        assert got == _reference([arr], ["text"])


# --- layouts of the Arrow input -------------------------------------------------------------------


@pytest.mark.parametrize("pg_type", TYPES)
def test_sliced_arrays(pg_type: str) -> None:
    """A non-zero offset (bit offsets too, for booleans and validity)."""
    whole = _random_column(pg_type, 300)
    for start, stop in [(3, 200), (1, 2), (299, 300), (8, 8 + 64)]:
        part = whole.slice(start, stop - start)
        assert part.offset == start
        copy = pa.array(part.to_pylist(), part.type)
        assert encode_batch([part], [pg_type]) == encode_batch([copy], [pg_type])
        assert encode_batch([part], [pg_type]) == _reference([copy], [pg_type])


@pytest.mark.parametrize("pg_type", TYPES)
def test_chunked_arrays(pg_type: str) -> None:
    whole = _random_column(pg_type, 300)
    chunked = pa.chunked_array([whole[:0], whole[:100], whole[100:101], whole[101:]], whole.type)
    assert encode_batch([chunked], [pg_type]) == encode_batch([whole], [pg_type])
    single = pa.chunked_array([whole])
    assert encode_batch([single], [pg_type]) == encode_batch([whole], [pg_type])


def test_dictionary_arrays() -> None:
    words = pa.array(["r", None, "é", "r", "", "🔭"])
    plain = encode_batch([words], ["varchar(3)"])
    assert encode_batch([words.dictionary_encode()], ["varchar(3)"]) == plain
    assert encode_batch([words.dictionary_encode().slice(2)], ["text"]) == encode_batch(
        [words.slice(2)], ["text"]
    )
    # chunks with different dictionaries
    chunked = pa.chunked_array([words[:3].dictionary_encode(), words[3:].dictionary_encode()])
    assert encode_batch([chunked], ["varchar(3)"]) == plain
    ints = pa.array([5, None, 5, 7], pa.int16()).dictionary_encode()
    assert encode_batch([ints], ["bigint"]) == encode_batch([pa.array([5, None, 5, 7])], ["bigint"])


# --- conversions ----------------------------------------------------------------------------------


def _same_as(given: pa.Array | pa.ChunkedArray, canonical: pa.Array, pg_type: str) -> None:
    assert encode_batch([given], [pg_type]) == encode_batch([canonical], [pg_type])


@pytest.mark.parametrize(
    ("given", "pg_type", "canonical"),
    [
        (pa.array([1, None, -(2**31)], pa.int32()), "bigint", pa.array([1, None, -(2**31)])),
        (pa.array([1, 255], pa.uint8()), "smallint", pa.array([1, 255], pa.int16())),
        (pa.array([2**63 - 1], pa.uint64()), "bigint", pa.array([2**63 - 1])),
        (pa.array([-128, 7], pa.int8()), "integer", pa.array([-128, 7], pa.int32())),
        (pa.array([3, None], pa.int64()), "smallint", pa.array([3, None], pa.int16())),
        (pa.array([2.0, -0.0, None]), "bigint", pa.array([2, 0, None])),
        (pa.array([1.5, np.nan], pa.float32()), "double precision", pa.array([1.5, np.nan])),
        (pa.array([0.5], pa.float16()), "double precision", pa.array([0.5])),
        (
            pa.array([2**60, -(2**62), 3, None]),
            "double precision",
            pa.array([2.0**60, -(2.0**62), 3.0, None]),
        ),
        (pa.array([2**64 - 2**11], pa.uint64()), "double precision", pa.array([2.0**64 - 2**11])),
        (pa.array([2**24, -7], pa.int32()), "real", pa.array([2.0**24, -7.0], pa.float32())),
        (pa.array([0.1, np.inf, np.nan]), "real", pa.array([0.1, np.inf, np.nan], pa.float32())),
        (pa.array(["ab", None], pa.large_string()), "varchar(2)", pa.array(["ab", None])),
        (pa.array(["é", ""], pa.string_view()), "char(1)", pa.array(["é", ""])),
        (pa.array(["abc"]), "bpchar", pa.array(["abc"])),
        (pa.array(["abc"]), "character varying(3)", pa.array(["abc"])),
        (pa.array([b"ab", b"\x00\x01"], pa.binary(2)), "bytea", pa.array([b"ab", b"\x00\x01"])),
        (pa.array([True, None], pa.bool_()), "bool", pa.array([True, None])),
        (pa.nulls(2), "char(1)", pa.array([None, None], pa.string())),
        (pa.nulls(2), "double precision", pa.array([None, None], pa.float64())),
    ],
    ids=lambda x: str(x.type) if isinstance(x, pa.Array) else None,
)
def test_conversions(given: pa.Array, pg_type: str, canonical: pa.Array) -> None:
    _same_as(given, canonical, pg_type)


@pytest.mark.parametrize(
    ("unit", "scale"), [("s", 1_000_000), ("ms", 1000), ("us", 1), ("ns", None)]
)
def test_timestamp_units(unit: str, scale: int | None) -> None:
    raw = [7, 1, -1, None, 1_700_000_000]
    given = pa.array(raw, pa.timestamp(unit))
    micro: list[int | None]
    if scale is None:  # nanoseconds: rounded to the nearest microsecond, half up
        given = pa.array([7000, 1500, 1499, -1500, -1501, None, 10**18], pa.timestamp("ns"))
        micro = [7, 2, 1, -1, -2, None, 10**15]
    else:
        micro = [None if v is None else v * scale for v in raw]
    _same_as(given, pa.array(micro, pa.timestamp("us")), "timestamp")
    wire = encode_batch([given], ["timestamp"])
    first = struct.unpack(">q", wire[6:14])[0]
    assert first == 7 * (scale or 1) - 946_684_800_000_000  # microseconds since 2000-01-01


def test_timestamp_with_time_zone_is_loaded_as_utc() -> None:
    utc = pa.array([0, 3600], pa.timestamp("s"))
    for tz in ("UTC", "Europe/Paris", "-05:00"):
        _same_as(utc.cast(pa.timestamp("s", tz=tz)), utc, "timestamp")


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "pg_type", "reason"),
    [
        (pa.array(["1"]), "bigint", "no safe conversion"),
        (pa.array([True]), "integer", "no safe conversion"),
        (pa.array([1]), "boolean", "no safe conversion"),
        (pa.array([1]), "text", "no safe conversion"),
        (pa.array([b"a"]), "text", "no safe conversion"),
        (pa.array(["a"]), "bytea", "no safe conversion"),
        (pa.array([1.0]), "timestamp", "no safe conversion"),
        (pa.array([1], pa.timestamp("s")), "bigint", "no safe conversion"),
        (pa.array([1.0, 2.5]), "bigint", "truncated"),
        (pa.array([np.nan]), "bigint", "truncated"),
        (pa.array([1e19]), "bigint", ""),
        (pa.array([2**31]), "integer", "not in range"),
        (pa.array([-40_000], pa.int32()), "smallint", "not in range"),
        (pa.array([2**63], pa.uint64()), "bigint", "not in range"),
        (pa.array([0, 2**53 + 1]), "double precision", "row 1 (9007199254740993)"),
        (pa.array([2**24 + 1], pa.int32()), "real", "no exact float32 value"),
        (pa.array([None, 1e300]), "real", "row 1 (1e+300) overflows float32"),
        (pa.array(["ab"]), "char", "row 0 ('ab') has 2 characters, more than 1"),
        (pa.array(["u", None, "éé"]), "char(1)", "row 2 ('éé') has 2 characters, more than 1"),
        (pa.array(["abcd"]).dictionary_encode(), "varchar(3)", "more than 3"),
        (pa.array(["ok", "a\x00b"]), "text", "row 1 contains a NUL character"),
        (pa.array([-(2**62)], pa.timestamp("s")), "timestamp", "outside PostgreSQL's range"),
    ],
)
def test_refusals(given: pa.Array, pg_type: str, reason: str) -> None:
    ok = pa.array([1] * len(given))
    with pytest.raises(ValueError) as info:
        encode_batch([ok, given], ["bigint", pg_type], names=["id", "col"])
    message = str(info.value)
    assert message.startswith(f"column 1 (col): cannot load Arrow {given.type} into PostgreSQL")
    assert pg_type in message
    assert reason in message


def test_refusal_without_names() -> None:
    with pytest.raises(
        ValueError, match=r"^column 0: cannot load Arrow string into PostgreSQL bigint"
    ):
        encode_batch([pa.array(["x"])], ["bigint"])


def test_bad_calls() -> None:
    with pytest.raises(ValueError, match="unsupported PostgreSQL type 'json'"):
        encode_batch([pa.array([1])], ["json"])
    with pytest.raises(ValueError, match="2 columns but 1 PostgreSQL types"):
        encode_batch([pa.array([1]), pa.array([2])], ["bigint"])
    with pytest.raises(ValueError, match="different lengths"):
        encode_batch([pa.array([1]), pa.array([2, 3])], ["bigint", "bigint"])
    with pytest.raises(ValueError, match="no columns"):
        encode_batch([], [])
