"""astroquery's TapPlus (the client of astroquery.gaia and astroquery.esa) against the
served cluster at /esa/tap: its table list, and results saved with dump_to_file under
the name it reports, in every format (api/esatapplus.py)."""

from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import pytest
from astropy.table import Table

from tests.api.conftest import Served

tap_core = pytest.importorskip("astroquery.utils.tap.core")

QUERY = "SELECT TOP 4 objectId, coord_ra, coord_dec FROM qt.Object ORDER BY objectId"


@pytest.fixture(scope="module")
def tapplus(served: Served) -> object:
    return tap_core.TapPlus(url=f"{served.url}/esa/tap", verbose=False)


def test_load_tables(tapplus: object, served: Served) -> None:
    tables = {t.get_qualified_name(): t for t in tapplus.load_tables()}  # type: ignore[attr-defined]
    obj = tables["qt.Object"]
    columns = {c.name: c for c in obj.columns}
    assert {"objectId", "coord_ra", "coord_dec"} <= set(columns)
    assert int(columns["coord_ra"].flags) & 1 and int(columns["coord_dec"].flags) & 2
    assert int(columns["objectId"].flags) & 16  # the primary key
    assert columns["coord_ra"].unit == "deg"
    # the standard /tap/tables stays VOSI-valid: no ESA attributes there
    standard = tap_core.TapPlus(url=f"{served.url}/tap", verbose=False)
    with pytest.raises(KeyError, match="esatapplus:flags"):
        standard.load_tables()


@pytest.mark.parametrize(
    "output_format", ["votable", "votable_plain", "csv", "json", "fits", "ecsv"]
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dump_to_file_writes_the_file_it_reports(
    tapplus: object, output_format: str, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    launch = tapplus.launch_job if mode == "sync" else tapplus.launch_job_async  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = launch(QUERY, dump_to_file=True, output_format=output_format)
        results = job.get_results()
    saved = Path(job.outputFile)
    assert saved.is_file(), f"reported {saved}, wrote {sorted(p.name for p in tmp_path.iterdir())}"
    assert len(results) == 4 and list(results["objectId"]) == sorted(results["objectId"])
    compressed = saved.read_bytes()[:2] == b"\x1f\x8b"
    assert compressed == saved.name.endswith(".gz")  # the name says what the file holds
    assert compressed == (output_format in ("votable", "fits", "ecsv"))  # as TapPlus expects
    if output_format in ("fits", "ecsv"):
        assert saved.name.removesuffix(".gz").endswith(f".{output_format}")
        data = gzip.decompress(saved.read_bytes())
        kind = "fits" if output_format == "fits" else "ascii.ecsv"
        table = Table.read(io.BytesIO(data) if kind == "fits" else data.decode(), format=kind)
        assert str(table["coord_ra"].unit) == "deg"


def test_sync_output_file_named_by_the_user(
    tapplus: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = tapplus.launch_job(  # type: ignore[attr-defined]
            QUERY, dump_to_file=True, output_format="votable", output_file="mine.vot"
        )
    assert job.outputFile == "mine.vot.gz" and Path("mine.vot.gz").is_file()
    assert len(Table.read("mine.vot.gz", format="votable")) == 4
