"""The TAP service through pyvo, as astronomers reach it: sync queries with MAXREC
overflow, errors raised with the engine's message, every output format parsed by astropy
with units and UCDs, and many clients at once."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.io.votable import parse_single_table
from astropy.table import Table

from qserv_py.client import Client

CONE = (
    "SELECT objectId, coord_ra, coord_dec, g_psfFlux FROM Object "
    "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, 3)) = 1"
)


@pytest.fixture(scope="module")
def service(tap_url: str) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(tap_url)


def test_search_equals_the_python_api(service: pyvo.dal.TAPService, client: Client) -> None:
    query = CONE.format(ra=45, dec=0)
    got = service.search(query).to_table()
    expected = client.query(query)
    assert sorted(got["objectId"].tolist()) == sorted(expected.column("objectId").to_pylist())
    assert got["coord_ra"].unit == "deg"
    assert got["g_psfFlux"].unit == "nJy"
    assert service.search(query).getdesc("coord_ra").ucd == "pos.eq.ra;meta.main"


def test_run_sync_maxrec_overflow(service: pyvo.dal.TAPService) -> None:
    result = service.run_sync("SELECT objectId FROM Object", maxrec=7)
    assert len(result) == 7
    assert result.query_status == "OVERFLOW"
    full = service.run_sync("SELECT objectId FROM Object WHERE objectId < 0", maxrec=7)
    assert len(full) == 0 and full.query_status == "OK"


def test_failing_query_raises_with_our_message(service: pyvo.dal.TAPService) -> None:
    with pytest.raises(pyvo.dal.DALQueryError, match=r"no column .*coord_rra.*coord_ra"):
        service.search("SELECT coord_rra FROM Object")
    with pytest.raises(
        pyvo.dal.DALQueryError, match=r"the SELECT lists no columns.*line 1, column 8"
    ):
        service.search("SELECT FROM WHERE")
    with pytest.raises(pyvo.dal.DALQueryError, match="larger than the overlap"):
        service.search(
            "SELECT COUNT(*) FROM Object o1, Object o2 WHERE "
            "DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 1"
        )


@pytest.mark.parametrize("fmt", ["votable", "votable/td", "csv", "tsv", "json", "parquet"])
def test_every_format_parses_with_units(tap_url: str, client: Client, fmt: str) -> None:
    query = (
        "SELECT TOP 50 objectId, coord_ra, g_psfFlux, detect_isPrimary FROM Object "
        "ORDER BY objectId"
    )
    response = httpx.post(
        f"{tap_url}/sync",
        data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    expected = client.query(query).column("objectId").to_pylist()
    if fmt.startswith("votable"):
        table = parse_single_table(io.BytesIO(response.content)).to_table()
        assert table["coord_ra"].unit == "deg" and table["g_psfFlux"].unit == "nJy"
        assert table["coord_ra"].meta.get("ucd") or table["coord_ra"].info.meta
    elif fmt in ("csv", "tsv"):
        table = Table.read(response.text, format="ascii.csv" if fmt == "csv" else "ascii.tab")
    elif fmt == "json":
        body = response.json()
        units = {m["name"]: m["unit"] for m in body["metadata"]}
        assert units["coord_ra"] == "deg"
        assert [row[0] for row in body["data"]] == expected
        return
    else:
        arrow = pq.read_table(io.BytesIO(response.content))
        assert arrow.schema.field("coord_ra").metadata[b"unit"] == b"deg"
        assert arrow.column("objectId").to_pylist() == expected
        return
    assert [int(v) for v in table["objectId"]] == expected


def test_fifty_concurrent_sync_queries(service: pyvo.dal.TAPService, client: Client) -> None:
    centres = [(float(i * 7 % 360), float((i * 13) % 120 - 60)) for i in range(50)]

    def run(centre: tuple[float, float]) -> list[int]:
        table = service.search(CONE.format(ra=centre[0], dec=centre[1])).to_table()
        return sorted(int(v) for v in table["objectId"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        got = list(pool.map(run, centres))
    for centre, ids in zip(centres, got, strict=True):
        expected = client.query(CONE.format(ra=centre[0], dec=centre[1]))
        assert ids == sorted(expected.column("objectId").to_pylist())
