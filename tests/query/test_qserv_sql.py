"""Qserv SQL as Qserv runs it (issue 14): ``qserv_areaspec_*`` on every partitioned table,
MySQL semantics of the Qserv dialect, sciSQL's polygon. The differential corpus
(tests/queries) holds the same features against the oracle; here, what the oracle cannot
tell: the restrictions that Qserv adds, and the answers MySQL gives."""

from __future__ import annotations

import psycopg
import pytest

from qserv_py.client import Client
from qserv_py.errors import QueryError

NN = (
    "SELECT COUNT(*) FROM Object o1, Object o2 "
    "WHERE scisql_angSep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016 "
    "AND o1.objectId <> o2.objectId AND {spec}"
)
BOX = "qserv_areaspec_box(0, -30, 60, 0)"
PAIRS = (
    "SELECT count(*) FROM qt.object o1, qt.object o2"
    " WHERE qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016"
    " AND o1.objectid <> o2.objectid AND qserv.pt_in_box(o1.coord_ra, o1.coord_dec, {box})"
)


def test_areaspec_restricts_both_sides_of_a_near_neighbour_join(
    client: Client, oracle: psycopg.Connection
) -> None:
    """Qserv adds the region for every chunked table of FROM: a pair counts only if both
    objects are in the box. The box's edge is put between the two objects of a close pair,
    so that restricting o1 alone would count more pairs."""
    pair = oracle.execute(
        "SELECT o1.coord_ra, o2.coord_ra, o2.coord_dec FROM qt.object o1, qt.object o2"
        " WHERE qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016"
        " AND o2.coord_ra > o1.coord_ra AND o2.coord_ra < 300"
        " ORDER BY o2.coord_ra - o1.coord_ra DESC LIMIT 1"
    ).fetchone()
    assert pair is not None
    ra1, ra2, dec = pair
    box = f"{(ra1 + ra2) / 2!r}, {dec - 5!r}, {ra2 + 20!r}, {dec + 5!r}"
    got = client.query(NN.format(spec=f"qserv_areaspec_box({box})"), "qserv").to_pylist()[0]
    both = oracle.execute(
        PAIRS.format(box=box) + f" AND qserv.pt_in_box(o2.coord_ra, o2.coord_dec, {box})"
    ).fetchone()
    first_only = oracle.execute(PAIRS.format(box=box)).fetchone()
    assert both is not None and first_only is not None
    assert list(got.values()) == [both[0]]
    assert first_only[0] > both[0]


@pytest.mark.parametrize(
    "restriction",
    [BOX, f"{BOX} = 1", f"1 = {BOX}", f"({BOX}) = 1", f"o1.objectId > 0 AND 1 = {BOX}"],
)
def test_areaspec_compared_with_one(client: Client, restriction: str) -> None:
    oracle_sql = client.plan(NN.format(spec=restriction), "qserv").oracle_sql
    assert oracle_sql.count("qserv.pt_in_box(o1.coord_ra, o1.coord_dec, 0, -30, 60, 0)") == 1
    assert oracle_sql.count("qserv.pt_in_box(o2.coord_ra, o2.coord_dec, 0, -30, 60, 0)") == 1


def test_areaspec_on_a_child_alone_needs_a_position(client: Client) -> None:
    with pytest.raises(QueryError, match="needs a partitioned table with position columns"):
        client.plan(f"SELECT COUNT(*) FROM ForcedSource WHERE {BOX}", "qserv")
    with pytest.raises(QueryError, match="AND term of a WHERE clause"):
        client.plan(f"SELECT COUNT(*) FROM Object WHERE {BOX} = 0", "qserv")
