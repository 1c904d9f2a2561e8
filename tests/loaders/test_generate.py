"""The synthetic release generator: schema, reproducibility, integrity and realism."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord

from qserv_py.loaders import sky_model
from qserv_py.loaders.generate import (
    ARROW_TYPES,
    DEFAULT_ROWS_PER_FILE,
    TABLES,
    arrow_schema,
    generate_release,
)
from qserv_py.schema import default_catalog

SMALL: dict[str, Any] = {
    "sources_per_object": 3,
    "forced_per_object": 4,
    "seed": 5,
    "batch_rows": 2000,
    "rows_per_file": 4000,
}
POSITIONS = [
    ("Object", "coord_ra", "coord_dec"),
    ("Source", "coord_ra", "coord_dec"),
    ("ForcedSource", "coord_ra", "coord_dec"),
    ("CcdVisit", "ra", "decl"),
]


def read(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("part-*.parquet")))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """5,000 objects in batches of 2,000 rows, a new file every 4,000 rows."""
    out = tmp_path_factory.mktemp("gen") / "release"
    return out, generate_release(out, 5000, **SMALL)


@pytest.fixture(scope="module")
def tables(small: tuple[Path, dict[str, int]]) -> dict[str, pa.Table]:
    return {name: read(small[0] / name) for name in TABLES}


@pytest.fixture(scope="module")
def sky_objects(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """200,000 objects, no children: enough for densities and magnitude counts."""
    out = tmp_path_factory.mktemp("gen") / "sky"
    generate_release(out, 200_000, sources_per_object=0, forced_per_object=0, seed=3)
    return read(out / "Object")


# -- schema and files ---------------------------------------------------------------------


def test_schema_matches_dp02(tables: dict[str, pa.Table]) -> None:
    catalog = default_catalog("dp02")
    for name in TABLES:
        table = catalog.table(name)
        got = tables[name].schema
        assert got.names == [c.name for c in table.columns]
        for col in table.columns:
            field = got.field(col.name)
            assert field.type == ARROW_TYPES[col.datatype], (name, col.name)
            assert field.nullable == col.nullable, (name, col.name)
            if not col.nullable:
                assert tables[name].column(col.name).null_count == 0, (name, col.name)
        assert got.equals(arrow_schema(table))


def test_some_nullable_values_are_null(tables: dict[str, pa.Table]) -> None:
    for name, column in [
        ("Object", "u_psfFlux"),
        ("Object", "r_cModelFlux"),
        ("Object", "refExtendedness"),
        ("Source", "psfFlux"),
        ("ForcedSource", "psfFlux"),
        ("ForcedSource", "psfDiffFlux"),
    ]:
        nulls = tables[name].column(column).null_count
        assert 0 < nulls < 0.05 * tables[name].num_rows, (name, column)


def test_counts_are_rows_written(
    small: tuple[Path, dict[str, int]], tables: dict[str, pa.Table]
) -> None:
    _, counts = small
    assert counts == {name: tables[name].num_rows for name in TABLES}
    assert counts["Object"] == 5000
    assert counts["CcdVisit"] == 50 * 9  # default visits for 5,000 objects: 50
    # Poisson around the requested means
    assert abs(counts["ForcedSource"] / 5000 - 4) < 0.2
    assert abs(counts["Source"] / 5000 - 3) < 0.3


def test_files_and_row_groups(small: tuple[Path, dict[str, int]]) -> None:
    out, counts = small
    for name in ("Object", "ForcedSource"):
        files = sorted((out / name).glob("*.parquet"))
        assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(files))]
        sizes = [
            pq.ParquetFile(f).metadata.row_group(i).num_rows
            for f in files
            for i in range(pq.ParquetFile(f).metadata.num_row_groups)
        ]
        assert sum(sizes) == counts[name]
        assert all(s == 2000 for s in sizes[:-1]) and 0 < sizes[-1] <= 2000
        assert all(pq.ParquetFile(f).metadata.num_rows <= 4000 for f in files)
        assert len(files) == math.ceil(counts[name] / 4000)
    assert DEFAULT_ROWS_PER_FILE >= 1_000_000


def test_reproducible_by_seed(tmp_path: Path, small: tuple[Path, dict[str, int]]) -> None:
    first, _ = small
    again = tmp_path / "again"
    generate_release(again, 5000, **SMALL)
    files = sorted(p.relative_to(first) for p in first.rglob("*.parquet"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.parquet"))
    for rel in files:
        assert (first / rel).read_bytes() == (again / rel).read_bytes(), rel

    other = tmp_path / "other"
    generate_release(other, 5000, **{**SMALL, "seed": 6})
    for name in TABLES:
        part = Path(name) / "part-00000.parquet"
        assert (first / part).read_bytes() != (other / part).read_bytes(), name


def test_empty_child_tables_still_have_a_file(tmp_path: Path) -> None:
    counts = generate_release(tmp_path / "r", 10, sources_per_object=0, forced_per_object=0)
    assert counts["Source"] == counts["ForcedSource"] == 0
    assert counts["Object"] == 10
    for name in ("Source", "ForcedSource"):
        table = read(tmp_path / "r" / name)
        assert table.num_rows == 0
        assert table.schema.names == [c.name for c in default_catalog("dp02").table(name).columns]


# -- ids and references -------------------------------------------------------------------


def test_ids_are_unique(tables: dict[str, pa.Table]) -> None:
    for name, key in [
        ("Object", "objectId"),
        ("Source", "sourceId"),
        ("ForcedSource", "forcedSourceId"),
        ("CcdVisit", "ccdVisitId"),
    ]:
        ids = tables[name].column(key).to_numpy()
        assert len(np.unique(ids)) == len(ids), name
        assert ids.min() > 0


def test_referential_integrity(tables: dict[str, pa.Table]) -> None:
    objects = tables["Object"].column("objectId").to_numpy()
    ccd = tables["CcdVisit"]
    for name in ("Source", "ForcedSource"):
        child = tables[name]
        assert np.isin(child.column("objectId").to_numpy(), objects).all(), name
        assert np.isin(child.column("ccdVisitId").to_numpy(), ccd.column("ccdVisitId")).all()
        # the band of each row is its visit's
        joined = child.select(["ccdVisitId", "band"]).join(
            ccd.select(["ccdVisitId", "band"]), "ccdVisitId", right_suffix="_visit"
        )
        assert pc.all(pc.equal(joined["band"], joined["band_visit"])).as_py(), name

    parents = tables["Object"].column("parentObjectId").to_numpy()
    children = parents != 0
    assert 0.005 < children.mean() < 0.1
    assert np.isin(parents[children], objects).all()
    assert (parents[children] < objects[children]).all()  # an earlier object
    is_parent = np.isin(objects, parents[children])
    primary = tables["Object"].column("detect_isPrimary").to_numpy(zero_copy_only=False)
    assert not primary[is_parent].any()
    assert primary.mean() > 0.9


def test_forced_sources_sit_on_their_objects(tables: dict[str, pa.Table]) -> None:
    obj = tables["Object"].select(["objectId", "coord_ra", "coord_dec"])
    # sources scatter by ~seeing / S/N (at most 1" rms); forced sources do not
    for name, tolerance in (("ForcedSource", 0.0), ("Source", 6.0 / 3600)):
        joined = (
            tables[name]
            .select(["objectId", "coord_ra", "coord_dec"])
            .join(obj, "objectId", right_suffix="_obj")
        )
        sep = _separation(
            *(
                joined[c].to_numpy()
                for c in ("coord_ra", "coord_dec", "coord_ra_obj", "coord_dec_obj")
            )
        )
        assert sep.max() <= tolerance + 1e-9, name
        assert np.median(sep) <= tolerance / 10, name


def test_visits(tables: dict[str, pa.Table]) -> None:
    ccd = tables["CcdVisit"].to_pydict()
    mjd = np.array(ccd["expMidptMJD"])
    order = np.argsort(ccd["visitId"], kind="stable")
    assert (np.diff(mjd[order]) >= 0).all()
    assert mjd.min() >= 60000 and mjd.max() < 60000 + 5 * 365.25 + 1
    assert set(ccd["expTime"]) == {30.0}
    assert min(ccd["seeing"]) >= 0.5 and max(ccd["seeing"]) <= 1.5
    assert all(abs(z - 31.4) < 0.3 for z in ccd["zeroPoint"])
    assert set(ccd["band"]) <= set("ugrizy")
    assert len(set(ccd["visitId"])) == 50


# -- the sky --------------------------------------------------------------------------------


def test_positions_in_range(tables: dict[str, pa.Table]) -> None:
    for name, ra, dec in POSITIONS:
        r = tables[name].column(ra).to_numpy()
        d = tables[name].column(dec).to_numpy()
        assert ((r >= 0) & (r < 360)).all(), name
        assert ((d >= -90) & (d <= 90)).all(), name


def test_rotation_matches_astropy() -> None:
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 1000), np.degrees(np.arcsin(rng.uniform(-1, 1, 1000)))
    gal = SkyCoord(ra * u.deg, dec * u.deg).galactic
    lon, lat = sky_model.icrs_to_galactic(ra, dec)
    assert np.abs(lat - gal.b.deg).max() < 1e-8
    assert _separation(lon, lat, gal.l.deg, gal.b.deg).max() < 1e-8
    back_ra, back_dec = sky_model.galactic_to_icrs(lon, lat)
    assert _separation(back_ra, back_dec, ra, dec).max() < 1e-8


def test_denser_toward_the_galactic_plane(sky_objects: pa.Table) -> None:
    coords = SkyCoord(
        sky_objects["coord_ra"].to_numpy() * u.deg, sky_objects["coord_dec"].to_numpy() * u.deg
    )
    b = np.abs(coords.galactic.b.deg)
    # objects per unit area: the area of |b| < x is proportional to sin x
    plane = (b < 10).sum() / math.sin(math.radians(10))
    poles = (b > 60).sum() / (1 - math.sin(math.radians(60)))
    assert plane > 4 * poles
    # and the bulge: denser toward the Galactic centre than the anticentre
    lon = coords.galactic.l.deg
    centre = ((b < 10) & ((lon < 20) | (lon > 340))).sum()
    anticentre = ((b < 10) & (np.abs(lon - 180) < 20)).sum()
    assert centre > 2 * anticentre


def test_masks_are_empty(sky_objects: pa.Table) -> None:
    ra, dec = sky_objects["coord_ra"].to_numpy(), sky_objects["coord_dec"].to_numpy()
    for mask in sky_model.MASKS:
        sep = _separation(ra, dec, mask.ra, mask.dec)
        assert sep.min() > mask.radius, mask.name
        # a hole, not a sparse region: the ring around it holds objects
        ring = ((sep > mask.radius) & (sep < mask.radius + 3)).sum()
        assert ring > 10, mask.name


def test_magnitude_counts_rise_toward_the_faint_end(sky_objects: pa.Table) -> None:
    mag = sky_model.flux_to_mag(sky_objects["r_cModelFlux"].to_numpy(zero_copy_only=False))
    counts, _ = np.histogram(mag[np.isfinite(mag)], bins=np.arange(17.0, 27.0))
    assert (np.diff(counts) > 0).all(), counts
    assert counts[-1] > 30 * counts[0]


def test_signal_to_noise_falls_toward_the_faint_end(sky_objects: pa.Table) -> None:
    flux = sky_objects["r_psfFlux"].to_numpy(zero_copy_only=False)
    err = sky_objects["r_psfFluxErr"].to_numpy(zero_copy_only=False)
    pos_err = sky_objects["coord_raErr"].to_numpy(zero_copy_only=False)
    mag = sky_model.flux_to_mag(flux)
    bins = np.arange(17.0, 27.0)
    which = np.digitize(mag, bins)
    snr = [np.nanmedian(flux[which == i] / err[which == i]) for i in range(1, len(bins))]
    position = [np.nanmedian(pos_err[which == i]) for i in range(1, len(bins))]
    assert (np.diff(snr) < 0).all(), snr
    assert snr[0] > 100 and snr[-1] < 20
    # position errors: a 5 mas floor when bright, then growing
    assert all(b >= 0.99 * a for a, b in itertools.pairwise(position)), position
    assert position[-1] > 5 * position[0]
    assert np.nanmin(err) > 0


def test_galaxies_are_extended(sky_objects: pa.Table) -> None:
    t = sky_objects.to_pydict()
    ext = np.array(t["refExtendedness"], dtype=float)
    psf = np.array(t["r_psfFlux"], dtype=float)
    cmodel = np.array(t["r_cModelFlux"], dtype=float)
    bright = sky_model.flux_to_mag(psf) < 22
    ratio = cmodel / psf
    assert np.nanmedian(ratio[bright & (ext == 1)]) > 1.3
    assert abs(np.nanmedian(ratio[bright & (ext == 0)]) - 1) < 0.02
    assert set(np.unique(ext[np.isfinite(ext)])) == {0.0, 1.0}
    assert set(t["refBand"]) <= set("ugrizy")


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objects": 0}, "objects"),
        ({"objects": -5}, "objects"),
        ({"objects": 2.5}, "objects"),
        ({"objects": True}, "objects"),
        ({"sources_per_object": -1}, "sources_per_object"),
        ({"forced_per_object": -0.5}, "forced_per_object"),
        ({"forced_per_object": float("nan")}, "forced_per_object"),
        ({"visits": 0}, "visits"),
        ({"seed": -1}, "seed"),
        ({"batch_rows": 0}, "batch_rows"),
        ({"compression": "zip"}, "compression"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, Any] = {"objects": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_release(tmp_path / "r", **args)
    assert not (tmp_path / "r").exists()


def test_refuses_a_non_empty_directory_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r"
    generate_release(out, 3000, forced_per_object=1, rows_per_file=1000, batch_rows=1000)
    assert len(list((out / "Object").glob("*.parquet"))) == 3
    (out / "README").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_release(out, 100)
    counts = generate_release(out, 100, overwrite=True)
    assert [p.name for p in (out / "Object").iterdir()] == ["part-00000.parquet"]
    assert read(out / "Object").num_rows == counts["Object"] == 100
    assert (out / "README").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        generate_release(tmp_path / "file", 10)


def test_an_error_leaves_nothing_behind(tmp_path: Path) -> None:
    def fail(table: str, rows: int) -> None:
        if table == "Source":
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        generate_release(tmp_path / "r", 1000, progress=fail)
    assert not (tmp_path / "r").exists()


def test_progress(tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []
    counts = generate_release(
        tmp_path / "r", 2500, batch_rows=1000, progress=lambda t, n: seen.append((t, n))
    )
    objects = [n for t, n in seen if t == "Object"]
    assert objects == [1000, 2000, 2500]
    for name in TABLES:
        assert [n for t, n in seen if t == name][-1] == counts[name]


def _separation(ra1: object, dec1: object, ra2: object, dec2: object) -> np.ndarray:
    """Angular distance in degrees (haversine)."""
    r1, d1, r2, d2 = (np.radians(np.asarray(x, dtype=float)) for x in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))
