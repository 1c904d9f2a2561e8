"""ADQL functions of regions built from columns, end to end on the cluster: the workers'
answer for a row equals the planner's answer for the same region written with the
row's numbers as constants, and two SQL paths that must agree do (a CIRCLE of radius 0
intersects a polygon exactly where CONTAINS puts its centre). The rows are compared with
the oracle by tests/queries/274 and 288-291."""

from __future__ import annotations

import math

import pytest

from qserv_py.client import Client
from qserv_py.errors import QuerySqlError

TRIANGLE = "{ra}, {dec}, {ra} + 1, {dec}, {ra}, {dec} + 1"
CONSTANT = "SELECT TOP 1 AREA(POLYGON({p})) AS a, CENTROID(POLYGON({p})) AS c FROM Object"


def _rows(client: Client, query: str) -> list[dict]:
    return client.query(query).to_pylist()


def test_columns_and_constants_agree(client: Client) -> None:
    columns = TRIANGLE.format(ra="coord_ra", dec="coord_dec")
    rows = _rows(
        client,
        f"SELECT TOP 3 coord_ra, coord_dec, AREA(POLYGON({columns})) AS a, "
        f"CENTROID(POLYGON({columns})) AS c, AREA(BOX(coord_ra, coord_dec, 2, 1)) AS b "
        "FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(60, 30, 10)) = 1 "
        "ORDER BY objectId",
    )
    assert len(rows) == 3
    for row in rows:
        ra, dec = row["coord_ra"], row["coord_dec"]
        constants = TRIANGLE.format(ra=repr(ra), dec=repr(dec))
        (want,) = _rows(client, CONSTANT.format(p=constants))
        assert math.isclose(row["a"], want["a"], rel_tol=1e-9)
        assert all(
            math.isclose(g, w, rel_tol=1e-9) for g, w in zip(row["c"], want["c"], strict=True)
        )
        (box,) = _rows(client, f"SELECT TOP 1 AREA(BOX({ra!r}, {dec!r}, 2, 1)) AS b FROM Object")
        assert math.isclose(row["b"], box["b"], rel_tol=1e-9)


def test_a_circle_of_radius_zero_is_its_centre(client: Client) -> None:
    polygon = "POLYGON(260, -35, 270, -35, 265, -25)"
    (row,) = _rows(
        client,
        "SELECT COUNT(*) AS n, "
        f"SUM(CONTAINS(POINT(coord_ra, coord_dec), {polygon})) AS inside, "
        f"SUM(INTERSECTS(CIRCLE(coord_ra, coord_dec, 0), {polygon})) AS zero, "
        f"SUM(INTERSECTS(CIRCLE(coord_ra, coord_dec, 2), {polygon})) AS near, "
        f"SUM(CONTAINS(CIRCLE(coord_ra, coord_dec, 0.5), {polygon})) AS within "
        "FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(265, -30, 12)) = 1",
    )
    assert 0 < row["within"] < row["inside"] == row["zero"] < row["near"] < row["n"], row


def test_a_polygon_of_columns_that_is_not_convex_is_refused(client: Client) -> None:
    """A vertex list of columns that bounds no convex polygon (here a bow tie: its edges
    cross) is refused, naming the row's vertices, as a constant one is; never answered
    as the intersection of its edges' half-spheres."""
    corners = ("coord_ra, coord_dec", "coord_ra + 1, coord_dec")
    corners += ("coord_ra + 1, coord_dec + 1", "coord_ra, coord_dec + 1")
    bow_tie = ", ".join(corners[i] for i in (0, 2, 1, 3))
    cone = "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(60, 30, 10)) = 1"
    for use in (
        f"SELECT TOP 3 AREA(POLYGON({bow_tie})) AS a FROM Object WHERE {cone}",
        f"SELECT COUNT(*) FROM Object WHERE {cone} AND "
        f"CONTAINS(POINT(60, 30), POLYGON({bow_tie})) = 1",
    ):
        with pytest.raises(QuerySqlError, match="is not a convex polygon: vertex") as refused:
            client.query(use)
        assert "SQLSTATE 22023" in str(refused.value)
    # the same corners in order are answered; a vertex list given as the result value is
    # only listed, never checked
    square = ", ".join(corners)
    (row,) = _rows(
        client,
        f"SELECT TOP 1 AREA(POLYGON({square})) AS a, POLYGON({bow_tie}) AS p FROM Object"
        f" WHERE {cone}",
    )
    assert row["a"] > 0 and len(row["p"]) == 8


def test_a_disc_of_columns_in_a_constant_region_reads_its_chunks(client: Client) -> None:
    """CONTAINS(CIRCLE(ra, dec, r), region) with constants for r >= 0 and the region
    reads the region's chunks, as CONTAINS(POINT(ra, dec), region) does; a radius of
    columns (possibly negative, no disc) reads them all."""
    region = "POLYGON(260, -35, 270, -35, 265, -25)"
    point = client.plan(
        f"SELECT objectId FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), {region}) = 1"
    )
    every = client.plan("SELECT objectId FROM Object")
    disc = "CIRCLE(coord_ra, coord_dec, {r})"
    within = f"SELECT objectId FROM Object WHERE CONTAINS({disc}, {region}) = 1"
    assert 0 < point.total_chunks < every.total_chunks
    assert client.plan(within.format(r=0.25)).total_chunks == point.total_chunks
    assert client.plan(within.format(r="coord_dec / 100")).total_chunks == every.total_chunks
    assert client.plan(within.format(r=-1)).total_chunks == every.total_chunks
    rows = _rows(client, within.format(r=0.25) + " ORDER BY objectId")
    assert rows  # and tests/queries/293-294 hold the rows to the oracle's
