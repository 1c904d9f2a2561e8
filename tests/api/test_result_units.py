"""Units of computed result columns: what follows from the inputs where unambiguous
(qserv_py.query.units.expression_unit), in the plan and in the served VOTable."""

from __future__ import annotations

import io

import pytest
from astropy.io.votable import parse_single_table
from fastapi.testclient import TestClient

from qserv_py.client import Client

P1 = "POINT('ICRS', o.coord_ra, o.coord_dec)"


@pytest.mark.parametrize(
    ("select", "unit"),
    [
        (f"DISTANCE({P1}, POINT('ICRS', 10.0, 20.0))", "deg"),
        ("AVG(o.r_psfFlux)", "nJy"),
        ("MAX(o.r_psfFlux) - MIN(o.r_psfFlux)", "nJy"),
        ("ROUND(o.coord_ra, 2)", "deg"),
        ("o.r_psfFlux / o.r_psfFluxErr", ""),  # dimensionless
        ("o.coord_ra * o.coord_dec", "deg**2"),
        ("o.coord_ra * 3600", ""),  # arcsec only by intent: no unit rather than a wrong one
        ("o.coord_ra + o.r_psfFlux", ""),
        ("COUNT(*)", ""),
        ("scisql_nanojanskyToAbMag(o.r_psfFlux)", "mag"),
        ("IN_UNIT(o.coord_ra, 'arcsec')", "arcsec"),
    ],
)
def test_computed_column_units(client: Client, select: str, unit: str) -> None:
    plan = client.plan(f"SELECT {select} AS v FROM Object AS o")
    assert plan.columns[0].unit == unit


def test_units_reach_the_votable(client: Client, api: TestClient) -> None:
    query = (
        f"SELECT TOP 3 o.objectId, DISTANCE({P1}, POINT('ICRS', 10.0, 20.0)) AS dist"
        " FROM Object AS o ORDER BY dist"
    )
    response = api.get("/tap/sync", params={"QUERY": query})
    table = parse_single_table(io.BytesIO(response.content)).to_table()
    assert str(table["dist"].unit) == "deg" and table["objectId"].unit is None
    grouped = client.query(
        "SELECT refBand, AVG(r_psfFlux) AS mean_flux FROM Object GROUP BY refBand"
    )
    assert grouped.schema.field("mean_flux").metadata[b"unit"] == b"nJy"
