"""Synthetic data releases of the ``dp02`` catalog, for tests, benchmarks and demos.

:func:`generate_release` writes Parquet files, one directory per table::

    out/Object/part-00000.parquet ...   out/Source/...   out/ForcedSource/...
    out/CcdVisit/part-00000.parquet

with the columns, spellings, types and nullability of ``qserv_py/schema/dp02.yaml``.

- **Reproducible**: the same arguments give byte-identical files. Each batch of objects
  draws from its own generators, keyed by ``(seed, batch number)``; row groups hold
  exactly ``batch_rows`` rows (the last of a table fewer); a new file starts every
  ``rows_per_file`` rows (rounded up to whole row groups).
- **Bounded memory**: objects are made ``batch_rows`` at a time, and each batch's sources
  and forced sources in slices of about ``batch_rows`` rows, written at once (on one
  thread per table, while the next rows are made).
- **Realistic**: sky density, masks, photometry, variability and visits come from
  :mod:`.sky_model`. Fluxes are computed in float32 and stored as the schema's doubles.
- **Ids**: ``objectId = 10^12 + n``, ``sourceId = 2·10^12 + n``,
  ``forcedSourceId = 3·10^12 + n`` (n counts from 0 in the order written),
  ``visitId = 200000 + n`` in time order and ``ccdVisitId = 1000·visitId + detector``.
  About 2 % of objects are deblended parents (not primary) of the 1-3 objects after them.
- **Children**: each object has Poisson(``forced_per_object``) forced sources and
  Poisson(λ) sources, λ proportional to a detection probability that falls past r ≈ 24,
  scaled so that its mean is ``sources_per_object``. Each is on a CCD visit drawn at
  random (pointings are not matched to positions); its band and epoch are the visit's.
"""

from __future__ import annotations

import math
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from qserv_py.loaders import sky_model as sky
from qserv_py.schema import Table, default_catalog

TABLES = ("Object", "Source", "ForcedSource", "CcdVisit")
OBJECT_ID_BASE = 1_000_000_000_000
SOURCE_ID_BASE = 2_000_000_000_000
FORCED_SOURCE_ID_BASE = 3_000_000_000_000
VISIT_ID_BASE = 200_000
#: share of objects with each reference band (ugrizy)
REF_BAND_FREQUENCY = (0.01, 0.02, 0.08, 0.85, 0.03, 0.01)
DEFAULT_ROWS_PER_FILE = 2_000_000
COMPRESSIONS = {"zstd", "snappy", "lz4", "gzip", "brotli", "none"}

ARROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "string": pa.string(),
    "unicode": pa.string(),
    "text": pa.string(),
}
_ID_BASE = {"Source": SOURCE_ID_BASE, "ForcedSource": FORCED_SOURCE_ID_BASE}
_BAND_NAMES = pa.array(list(sky.BANDS))
#: columns with few distinct values: dictionary-encoded in Parquet
_DICTIONARY_COLUMNS = {"band", "refBand", "tract", "patch", "parentObjectId", "ccdVisitId",
                       "refExtendedness", *(f"{b}_extendedness" for b in sky.BANDS)}  # fmt: skip

Progress = Callable[[str, int], None]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of a catalog table: names, types and nullability from Felis."""
    fields = []
    for col in table.columns:
        if col.datatype not in ARROW_TYPES:
            raise ValueError(f"{table.name}.{col.name}: no Arrow type for {col.datatype!r}")
        fields.append(pa.field(col.name, ARROW_TYPES[col.datatype], nullable=col.nullable))
    return pa.schema(fields)


def default_visits(objects: int) -> int:
    """Visits when none are asked for: one per 100 objects, between 50 and 2000."""
    return max(50, min(2000, objects // 100))


def generate_release(
    out: Path,
    objects: int,
    *,
    sources_per_object: float = 5,
    forced_per_object: float = 10,
    visits: int | None = None,
    seed: int = 0,
    batch_rows: int = 250_000,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    compression: str = "zstd",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write a synthetic dp02 release under ``out``; return the rows written per table.

    ``progress(table, rows_so_far)`` is called after each batch. With ``overwrite``, the
    table directories already in ``out`` are replaced (other files there stay). On an
    error, the table directories written so far are removed.
    """
    out = Path(out)
    n_visits = default_visits(objects) if visits is None else visits
    _check_arguments(
        out, overwrite, compression, objects=objects, visits=n_visits, batch_rows=batch_rows,
        rows_per_file=rows_per_file, sources_per_object=sources_per_object,
        forced_per_object=forced_per_object, seed=seed,
    )  # fmt: skip
    catalog = default_catalog("dp02")
    schemas = {name: arrow_schema(catalog.table(name)) for name in TABLES}
    created = not out.exists()
    for name in TABLES:
        shutil.rmtree(out / name, ignore_errors=True)
    report = progress or (lambda table, rows: None)
    rows = dict.fromkeys(TABLES, 0)
    writers: dict[str, _PartWriter] = {}
    pipeline = _WritePipeline(limit=400 * batch_rows)  # about 1.5 batches of objects
    try:
        for name in TABLES:
            writers[name] = _PartWriter(
                out / name, schemas[name], batch_rows, rows_per_file, compression
            )

        def emit(name: str, table: pa.Table) -> None:
            pipeline.submit(name, writers[name].write, table, nbytes=table.nbytes)
            rows[name] += table.num_rows

        ccds = sky.sample_visits(_rng(seed, 0), n_visits)
        emit("CcdVisit", _ccd_visit_table(ccds, schemas["CcdVisit"]))
        report("CcdVisit", rows["CcdVisit"])
        source_rate = sources_per_object / _DETECT_MEAN
        for batch, start in enumerate(range(0, objects, batch_rows)):
            n = min(batch_rows, objects - start)
            obj_rng, src_rng, fs_rng = _rng(seed, 1, batch).spawn(3)
            table, truth = _object_batch(obj_rng, OBJECT_ID_BASE + start, n, schemas["Object"])
            emit("Object", table)
            report("Object", rows["Object"])
            for name, rng, rate, make in (
                ("Source", src_rng, source_rate * _detect_weight(truth.r_mag), _sources),
                ("ForcedSource", fs_rng, np.full(n, float(forced_per_object)), _forced_sources),
            ):
                # slices of objects with about batch_rows children each
                step = max(1, int(batch_rows / max(1.0, float(rate.mean()))))
                for a in range(0, n, step):
                    b = min(n, a + step)
                    obj = np.repeat(np.arange(a, b), rng.poisson(rate[a:b]))
                    first_id = _ID_BASE[name] + rows[name]
                    emit(name, make(rng, truth, ccds, obj, first_id, schemas[name]))
                report(name, rows[name])
            del table, truth  # before the next batch is made
        for name, writer in writers.items():
            pipeline.submit(name, writer.close)
        pipeline.finish()
    except BaseException:
        pipeline.cancel()
        for writer in writers.values():
            writer.abort()
        for name in TABLES:
            shutil.rmtree(out / name, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    return {name: writers[name].rows for name in TABLES}


def _check_arguments(out: Path, overwrite: bool, compression: str, **values: object) -> None:
    """Raise ValueError, before anything is written, for arguments that cannot work."""
    for name, value in values.items():
        if name.endswith("_per_object"):
            if not isinstance(value, Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, not {value!r}")
        elif not isinstance(value, Integral) or isinstance(value, bool):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        elif value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be ≥ {0 if name == 'seed' else 1}, not {value!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(COMPRESSIONS)}, not {compression!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"{out} is not empty: choose a new directory, or overwrite (--overwrite) to "
            "replace the tables in it"
        )


def _rng(seed: int, *key: int) -> np.random.Generator:
    """The generator for one part of the release: independent of the others and of timing."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _detect_weight(r_mag: FloatArray) -> FloatArray:
    """Relative chance of detecting an object on one visit (some noise peaks when faint)."""
    return 0.03 + 0.97 / (1.0 + np.exp((r_mag - 24.0) / 0.4))


_DETECT_MEAN = sky.r_magnitude_mean(_detect_weight)


def _sparse_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> BoolArray:
    """A mask with about a fraction ``p`` of True (cheap for small ``p``)."""
    mask = np.zeros(shape, dtype=bool)
    flat = mask.reshape(-1)
    flat[rng.integers(0, flat.size, rng.binomial(flat.size, p))] = True
    return mask


def _column(values: npt.ArrayLike, type_: pa.DataType, null: BoolArray | None = None) -> pa.Array:
    """An Arrow array from numpy values, with nulls where ``null`` is true."""
    mask = null if null is not None and null.any() else None
    return pa.array(np.asarray(values), type=type_, mask=mask)


def _bands(index: npt.NDArray[np.integer]) -> pa.Array:
    return _BAND_NAMES.take(pa.array(index))


def _table(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.Table:
    """The columns in the schema's order; an error names any the generator does not make."""
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise ValueError(f"the generator makes no values for columns {missing}")
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


def _ccd_visit_table(ccds: sky.Ccds, schema: pa.Schema) -> pa.Table:
    visit_id = VISIT_ID_BASE + ccds.visit
    f32 = pa.float32()
    columns = {
        "ccdVisitId": _column(visit_id * 1000 + ccds.detector, pa.int64()),
        "visitId": _column(visit_id, pa.int64()),
        "detector": _column(ccds.detector, pa.int32()),
        "band": _bands(ccds.band),
        "expMidptMJD": _column(ccds.mjd, pa.float64()),
        "expTime": _column(np.full(len(visit_id), 30.0, dtype=np.float32), f32),
        "zeroPoint": _column(ccds.zero_point.astype(np.float32), f32),
        "seeing": _column(ccds.seeing.astype(np.float32), f32),
        "ra": _column(ccds.ra, pa.float64()),
        "decl": _column(ccds.dec, pa.float64()),
        "skyRotation": _column(ccds.rotation.astype(np.float32), f32),
    }
    return _table(schema, columns)


def _ccd_visit_ids(ccds: sky.Ccds, index: IntArray) -> IntArray:
    return (VISIT_ID_BASE + ccds.visit[index]) * 1000 + ccds.detector[index]


# -- Object -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Truth:
    """What child rows need to know of each object of a batch."""

    object_id: IntArray
    ra: FloatArray
    dec: FloatArray
    r_mag: FloatArray
    psf_flux: sky.Float32Array  # (6, n), noise-free
    psf_err: sky.Float32Array  # (6, n), coadd errors
    variability: sky.Variability


def _object_batch(
    rng: np.random.Generator, first_id: int, n: int, schema: pa.Schema
) -> tuple[pa.Table, _Truth]:
    object_id = first_id + np.arange(n, dtype=np.int64)
    ra, dec, component = sky.sample_positions(rng, n)
    r_mag = sky.sample_r_magnitudes(rng, n)
    ph = sky.sample_photometry(rng, r_mag, component)
    psf_null = _sparse_mask(rng, (6, n), 0.003)
    psf_null[0] |= _sparse_mask(rng, (n,), 0.007)  # u is the band most often missing
    cmodel_null = psf_null | _sparse_mask(rng, (6, n), 0.002)

    ref = rng.choice(6, size=n, p=REF_BAND_FREQUENCY)
    cols = np.arange(n)
    snr = ph.psf_true[ref, cols] / ph.psf_err[ref, cols]
    pos_err = np.minimum(1.0, np.sqrt((0.8 / snr) ** 2 + 0.005**2)) / 3600.0  # degrees
    ra_err = pos_err * (1.0 + 0.05 * sky.normal32(rng, n))
    dec_err = pos_err * (1.0 + 0.05 * sky.normal32(rng, n))

    # deblending: ~2 % of objects are parents; the 1-3 objects after each are its children,
    # placed within a few arcsec of it (unless that lands in a mask)
    is_parent = rng.random(n) < 0.02
    n_children = rng.integers(1, 4, n)
    last_parent = np.maximum.accumulate(np.where(is_parent, cols, -1))
    before = np.concatenate([[-1], last_parent[:-1]])
    is_child = ~is_parent & (before >= 0)
    is_child &= cols - before <= n_children[np.maximum(before, 0)]
    child, parent = cols[is_child], before[is_child]
    off = rng.normal(0.0, 1.5 / 3600.0, (2, len(child)))
    cra, cdec = sky.offset_positions(ra[parent], dec[parent], off[0], off[1])
    ok = ~sky.in_masks(sky.radec_to_vec(cra, cdec))
    child, parent = child[ok], parent[ok]
    ra[child], dec[child] = cra[ok], cdec[ok]
    parent_id = np.zeros(n, dtype=np.int64)
    parent_id[child] = object_id[parent]
    primary = ~_sparse_mask(rng, (n,), 0.015)  # the rest: in the outer region of a patch
    primary[parent] = False
    tract, patch = sky.tract_patch(ra, dec)

    f32, f64 = pa.float32(), pa.float64()
    columns = {
        "objectId": _column(object_id, pa.int64()),
        "coord_ra": _column(ra, f64),
        "coord_dec": _column(dec, f64),
        "coord_raErr": _column(ra_err, f32, psf_null[ref, cols]),
        "coord_decErr": _column(dec_err, f32, psf_null[ref, cols]),
        "parentObjectId": _column(parent_id, pa.int64()),
        "tract": _column(tract, pa.int32()),
        "patch": _column(patch, pa.int32()),
        "detect_isPrimary": _column(primary, pa.bool_()),
        "refExtendedness": _column(ph.extendedness[ref, cols], f32, cmodel_null[ref, cols]),
        "refBand": _bands(ref),
    }
    for i, b in enumerate(sky.BANDS):
        columns[f"{b}_psfFlux"] = _column(ph.psf_flux[i], f64, psf_null[i])
        columns[f"{b}_psfFluxErr"] = _column(ph.psf_err[i], f64, psf_null[i])
        columns[f"{b}_cModelFlux"] = _column(ph.cmodel_flux[i], f64, cmodel_null[i])
        columns[f"{b}_cModelFluxErr"] = _column(ph.cmodel_err[i], f64, cmodel_null[i])
        columns[f"{b}_extendedness"] = _column(ph.extendedness[i], f32, cmodel_null[i])
    variability = sky.sample_variability(rng, ph.star)
    truth = _Truth(object_id, ra, dec, r_mag, ph.psf_true, ph.psf_err, variability)
    return _table(schema, columns), truth


# -- Source and ForcedSource ------------------------------------------------------------


def _epochs(
    rng: np.random.Generator, truth: _Truth, ccds: sky.Ccds, obj: IntArray
) -> tuple[int, IntArray, IntArray, FloatArray, FloatArray]:
    """A random CCD visit for each of ``obj``: (count, ccd, band, true flux, flux error)."""
    m = len(obj)
    ccd = rng.integers(0, len(ccds.visit), m)
    band = ccds.band[ccd]
    true = sky.epoch_flux(truth.psf_flux, truth.variability, obj, band, ccds.mjd[ccd])
    return m, ccd, band, true, sky.flux_error(true, ccds.sky[ccd])


def _sources(
    rng: np.random.Generator, truth: _Truth, ccds: sky.Ccds, obj: IntArray, first_id: int,
    schema: pa.Schema,
) -> pa.Table:  # fmt: skip
    """Detections of objects ``obj`` (batch indexes) on random CCD visits."""
    m, ccd, band, true, err = _epochs(rng, truth, ccds, obj)
    flux = true + err * sky.normal32(rng, m)
    # centroid scatter: ~seeing / S/N, 10 mas floor, at most 1"
    snr = np.maximum(true / err, 1e-3)
    sigma = np.minimum(1.0, np.sqrt((0.6 * ccds.seeing[ccd] / snr) ** 2 + 0.01**2)) / 3600.0
    off = sky.normal32(rng, (2, m)) * sigma
    ra, dec = sky.offset_positions(truth.ra[obj], truth.dec[obj], off[0], off[1])
    null = _sparse_mask(rng, (m,), 0.002)
    columns = {
        "sourceId": _column(first_id + np.arange(m, dtype=np.int64), pa.int64()),
        "objectId": _column(truth.object_id[obj], pa.int64()),
        "ccdVisitId": _column(_ccd_visit_ids(ccds, ccd), pa.int64()),
        "coord_ra": _column(ra, pa.float64()),
        "coord_dec": _column(dec, pa.float64()),
        "band": _bands(band),
        "psfFlux": _column(flux, pa.float64(), null),
        "psfFluxErr": _column(err, pa.float64(), null),
        "detect_isPrimary": _column(~_sparse_mask(rng, (m,), 0.03), pa.bool_()),
    }
    return _table(schema, columns)


def _forced_sources(
    rng: np.random.Generator, truth: _Truth, ccds: sky.Ccds, obj: IntArray, first_id: int,
    schema: pa.Schema,
) -> pa.Table:  # fmt: skip
    """Forced photometry of objects ``obj`` (batch indexes) on random CCD visits."""
    m, ccd, band, true, err = _epochs(rng, truth, ccds, obj)
    noise = sky.normal32(rng, (2, m))
    flux = true + err * noise[0]
    # the template: the object's coadd flux, with the coadd's noise
    template_err = truth.psf_err[band, obj]
    template = truth.psf_flux[band, obj] + template_err * noise[1]
    flux_null = _sparse_mask(rng, (m,), 0.003)
    diff_null = _sparse_mask(rng, (m,), 0.003)
    f64 = pa.float64()
    columns = {
        "forcedSourceId": _column(first_id + np.arange(m, dtype=np.int64), pa.int64()),
        "objectId": _column(truth.object_id[obj], pa.int64()),
        "ccdVisitId": _column(_ccd_visit_ids(ccds, ccd), pa.int64()),
        "band": _bands(band),
        "coord_ra": _column(truth.ra[obj], f64),
        "coord_dec": _column(truth.dec[obj], f64),
        "psfFlux": _column(flux, f64, flux_null),
        "psfFluxErr": _column(err, f64, flux_null),
        "psfDiffFlux": _column(flux - template, f64, diff_null),
        "psfDiffFluxErr": _column(np.sqrt(err * err + template_err * template_err), f64, diff_null),
    }
    return _table(schema, columns)


# -- Parquet output ---------------------------------------------------------------------


class _PartWriter:
    """Writes one table as ``part-NNNNN.parquet`` files of fixed-size row groups.

    Rows are buffered until a full row group is there, so row-group boundaries do not
    depend on how the rows arrived. Floats are byte-stream split: with zstd, that makes
    files smaller and faster to write.
    """

    def __init__(self, directory: Path, schema: pa.Schema, group_rows: int,
                 rows_per_file: int, compression: str) -> None:  # fmt: skip
        self.directory = directory
        self.schema = schema
        self.group_rows = group_rows
        self.groups_per_file = -(-rows_per_file // group_rows)
        self.compression = compression
        self.rows = 0  # written to files
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._groups_in_file = 0
        self._files = 0
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.group_rows:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)
        if self._files == 0:
            self._open()  # an empty table still gets a file, with its schema
        self._close_file()

    def abort(self) -> None:
        self._pending = []
        self._close_file()

    def _flush(self, final: bool) -> None:
        data = pa.concat_tables(self._pending) if self._pending else self.schema.empty_table()
        start = 0
        while data.num_rows - start >= self.group_rows or (final and start < data.num_rows):
            k = min(self.group_rows, data.num_rows - start)
            if self._writer is None or self._groups_in_file >= self.groups_per_file:
                self._open()
            assert self._writer is not None
            self._writer.write_table(data.slice(start, k), row_group_size=self.group_rows)
            self._groups_in_file += 1
            self.rows += k
            start += k
        self._pending = [data.slice(start)] if start < data.num_rows else []
        self._pending_rows = data.num_rows - start

    def _open(self) -> None:
        self._close_file()
        floats = [f.name for f in self.schema if pa.types.is_floating(f.type)]
        self._writer = pq.ParquetWriter(
            self.directory / f"part-{self._files:05d}.parquet",
            self.schema,
            compression=self.compression,
            use_dictionary=[n for n in self.schema.names if n in _DICTIONARY_COLUMNS],
            use_byte_stream_split=[n for n in floats if n not in _DICTIONARY_COLUMNS],
        )
        self._files += 1
        self._groups_in_file = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _WritePipeline:
    """Runs each table's writes on a thread of its own, in order, while the caller makes
    the next rows (Parquet encoding releases the GIL); at most ``limit`` bytes wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._bytes = 0

    def submit(self, key: str, fn: Callable[..., None], *args: object, nbytes: int = 0) -> None:
        while self._pending and self._bytes + nbytes > self.limit:
            self._wait_one()
        if key not in self._pools:
            self._pools[key] = ThreadPoolExecutor(1, thread_name_prefix=f"generate-{key}")
        self._pending.append((self._pools[key].submit(fn, *args), nbytes))
        self._bytes += nbytes

    def finish(self) -> None:
        """Wait for every write; raise the first error."""
        while self._pending:
            self._wait_one()
        for pool in self._pools.values():
            pool.shutdown()

    def cancel(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def _wait_one(self) -> None:
        future, nbytes = self._pending.popleft()
        self._bytes -= nbytes
        future.result()
