"""Qserv SQL as Qserv runs it (issue 14): ``qserv_areaspec_*`` on every partitioned table,
MySQL semantics of the Qserv dialect, sciSQL's polygon. The differential corpus
(tests/queries) holds the same features against the oracle; here, what the oracle cannot
tell: the restrictions that Qserv adds, and the answers MySQL gives."""

from __future__ import annotations

import doctest

import numpy as np
import psycopg
import pytest

from qserv_py.client import Client
from qserv_py.errors import QueryError
from qserv_py.query import mysql

NN = (
    "SELECT COUNT(*) FROM Object o1, Object o2 "
    "WHERE scisql_angSep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016 "
    "AND o1.objectId <> o2.objectId AND {spec}"
)
BOX = "qserv_areaspec_box(0, -30, 60, 0)"
PAIRS = (
    "SELECT count(*) FROM qt.object o1, qt.object o2"
    " WHERE abs(o1.coord_dec - o2.coord_dec) < 0.016"  # cheap first: 9M pairs
    " AND qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016"
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
        " WHERE abs(o1.coord_dec - o2.coord_dec) < 0.016"  # cheap first: 9M pairs
        " AND qserv.ang_sep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016"
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


def _scisql_pt_in_cpoly(ra: np.ndarray, dec: np.ndarray, verts: list[float]) -> np.ndarray:
    """sciSQL's test, from its source (geometry.c: scisql_s2cpoly_init, scisql_s2cpoly_cv3):
    edge normals v[i] x v[i+1], all flipped if the vertex sum is on the negative side of
    the first one; in when on the non-negative side of every edge."""
    v = _unit(np.array(verts[::2]), np.array(verts[1::2]))
    edges = np.cross(v, np.roll(v, -1, axis=0))
    if v.sum(axis=0) @ edges[0] < 0:
        edges = -edges
    return np.all(_unit(ra, dec) @ edges.T >= 0, axis=1)


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


#: a concave pentagon (the vertex (30, -25) points inwards), and a self-crossing "bow tie"
CONCAVE = [10, -45, 50, -45, 50, -5, 30, -25, 10, -5]
BOW_TIE = [10, -45, 50, -5, 50, -45, 10, -5]


@pytest.mark.parametrize("verts", [CONCAVE, BOW_TIE], ids=["concave", "bow-tie"])
def test_non_convex_cpoly_answers_as_scisql(
    client: Client, oracle: psycopg.Connection, verts: list[float]
) -> None:
    args = ", ".join(str(x) for x in verts)
    text = f"SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(coord_ra, coord_dec, {args}) = 1"
    got = {r["objectId"] for r in client.query(text, "qserv").to_pylist()}
    rows = oracle.execute("SELECT objectid, coord_ra, coord_dec FROM qt.object").fetchall()
    ids = np.array([r[0] for r in rows])
    inside = _scisql_pt_in_cpoly(
        np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), verts
    )
    assert got == set(ids[inside].tolist())
    if verts is CONCAVE:  # the kernel: fewer than in the polygon's bounding box, not none
        box = oracle.execute(
            "SELECT count(*) FROM qt.object"
            " WHERE qserv.pt_in_box(coord_ra, coord_dec, 10, -45, 50, -5)"
        ).fetchone()
        assert box is not None and 0 < len(got) < box[0]


def test_cpoly_shape_seen_convex_then_not(client: Client, oracle: psycopg.Connection) -> None:
    """The plan cache: a template made from convex lists, then filled with a concave one."""
    shape = "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCPoly(coord_ra, coord_dec, {}) = 1"
    rows = oracle.execute("SELECT coord_ra, coord_dec FROM qt.object").fetchall()
    ra, dec = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    convex = [10, -45, 50, -45, 50, -5, 30, -4, 10, -5]
    for verts in (convex, convex, convex, CONCAVE):
        got = client.query(shape.format(", ".join(str(x) for x in verts)), "qserv")
        assert list(got.to_pylist()[0].values()) == [int(_scisql_pt_in_cpoly(ra, dec, verts).sum())]


# --- MySQL semantics -----------------------------------------------------------------------


def _rows(client: Client, text: str) -> list[tuple]:
    return [tuple(r.values()) for r in client.query(text, "qserv").to_pylist()]


def test_nulls_sort_as_the_smallest_value(client: Client) -> None:
    up = _rows(client, "SELECT objectId, u_psfFlux FROM Object ORDER BY u_psfFlux LIMIT 3")
    down = _rows(client, "SELECT objectId, u_psfFlux FROM Object ORDER BY u_psfFlux DESC LIMIT 3")
    assert [r[1] for r in up] == [None, None, None]
    assert None not in [r[1] for r in down]


def test_mysql_arithmetic_and_functions(client: Client) -> None:
    """The values MySQL gives (checked by hand against MySQL's documented rules)."""
    [row] = _rows(
        client,
        "SELECT (tract - tract + 7) / 2, (tract - tract + 1) / 3, (tract - tract + 1.5) / 3,"
        " 7 DIV 2, -7 DIV 2, 7.9 DIV 2, 5.5 % 2, 7 % 0, 7 DIV 0,"
        " HEX(255), HEX(-1), HEX('abc'), HEX(2.5), tract * 1000000000, 2.0E0 / 4"
        " FROM Object ORDER BY objectId LIMIT 1",
    )
    values = [float(v) if hasattr(v, "as_tuple") else v for v in row]
    assert values[:3] == [3.5, 0.3333, 0.5]  # decimal, 4 more digits than the dividend
    [constant] = _rows(client, "SELECT 1 / 3 FROM Object ORDER BY objectId LIMIT 1")
    assert constant[0] == pytest.approx(1 / 3, rel=1e-12)  # constants keep their value
    assert values[3:9] == [3, -3, 3, 1.5, None, None]
    assert values[9:13] == ["FF", "FFFFFFFFFFFFFFFF", "616263", "3"]
    assert values[13] > 2**31 and values[14] == 0.5


def test_like_on_a_number_compares_its_text(client: Client, oracle: psycopg.Connection) -> None:
    got = _rows(client, "SELECT objectId FROM Object WHERE objectId LIKE '%17'")
    want = oracle.execute("SELECT objectid FROM qt.object WHERE objectid::text LIKE '%17'")
    assert sorted(got) == sorted(want.fetchall()) and got


def test_show_columns(client: Client) -> None:
    rows = _rows(client, "SHOW COLUMNS FROM Object")
    assert rows[0] == ("objectId", "bigint", "NO", "PRI", None, "")
    assert len(rows) == len(client.context.catalogs.catalogs["qt"].table("Object").columns)
    assert ("refBand", "char(1)", "YES", "", None, "") in rows or any(
        r[0] == "refBand" for r in rows
    )
    like = _rows(client, "SHOW COLUMNS FROM qt.Object LIKE 'COORD\\_%'")
    assert [r[0] for r in like] == [r[0] for r in rows if r[0].lower().startswith("coord_")]
    with pytest.raises(QueryError, match="SHOW TABLES is not supported"):
        client.query("SHOW TABLES", "qserv")


def test_chunk_id_pseudo_columns(client: Client) -> None:
    state = client.context.states["qt"]
    per_chunk = _rows(client, "SELECT chunkId, COUNT(*) AS n FROM Object GROUP BY chunkId")
    assert dict(per_chunk) == state.chunk_rows["object"]
    sub = _rows(
        client,
        "SELECT o.chunkId, o.subChunkId, s.chunkId FROM Object o JOIN Source s"
        " ON o.objectId = s.objectId WHERE o.objectId < 1000000000100",
    )
    assert sub and all(c == sc and 0 <= s < 64 for c, s, sc in sub)
    with pytest.raises(QueryError, match="qualify it"):
        client.query(
            "SELECT chunkId FROM Object o JOIN Source s ON o.objectId = s.objectId", "qserv"
        )


@pytest.mark.parametrize(
    "call", ["FORMAT(u_psfFlux, 2)", "BIT_COUNT(objectId)", "SUBSTRING_INDEX(refBand, 'x', 1)"]
)
def test_untranslated_mysql_functions_are_refused(client: Client, call: str) -> None:
    name = call.split("(")[0]
    with pytest.raises(QueryError, match=f"function {name}") as err:
        client.plan(f"SELECT {call} FROM Object", "qserv")
    assert err.value.http_status == 400


def test_doctests() -> None:
    result = doctest.testmod(mysql, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
