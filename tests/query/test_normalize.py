"""The normalize pass (golden files) and the PostgreSQL the canonical tree renders to."""

from __future__ import annotations

import doctest
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import sqlglot
from sqlglot import exp

from qserv_py import errors
from qserv_py.errors import QservError
from qserv_py.query import (
    booleans,
    dialects,
    geometry,
    geometry_nodes,
    normalize,
    parse,
    region_functions,
    render,
    units,
)
from qserv_py.query.normalize import normalize as normalize_tree
from qserv_py.query.parse import parse as parse_text
from qserv_py.query.render import display, to_postgres
from qserv_py.sky import regions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPATIAL_SQL = Path(__file__).resolve().parents[2] / "sql" / "spatial.sql"
_HEADER = re.compile(r"^-- (adql|adql-2\.[01]|postgresql|postgres|pg|qserv): (.+)$", re.I | re.M)


@dataclass(frozen=True)
class Case:
    """One case of a golden file: the language, its title, the query and what to expect."""

    lang: str
    title: str
    query: str
    expected: str = ""
    error: str = ""
    message: str = ""
    at: tuple[int, int] | None = None


def read_cases(path: Path) -> list[Case]:
    """The cases of a golden file (format: see the top of each file)."""
    text = path.read_text()
    heads = list(_HEADER.finditer(text))
    cases = []
    for head, nxt in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end() : nxt.start() if nxt else len(text)].strip("\n")
        query, _, expected = body.partition("\n-- expected:\n")
        fields: dict[str, str] = {}
        lines = query.splitlines()
        while lines and (m := re.match(r"-- (error|at): (.+)$", lines[0])):
            fields[m.group(1)] = m.group(2)
            lines.pop(0)
        error, _, message = fields.get("error", "").partition(": ")
        line, _, column = fields.get("at", "").partition(":")
        cases.append(
            Case(
                lang=head.group(1),
                title=head.group(2),
                query="\n".join(lines).strip(),
                expected=expected.strip(),
                error=error,
                message=message,
                at=(int(line), int(column)) if column else None,
            )
        )
    return cases


def squeeze(sql: str) -> str:
    """SQL with runs of whitespace as one space, none inside parentheses' edges."""
    return re.sub(r"\( | \)", lambda m: m.group(0).strip(), " ".join(sql.split()))


PAIRS = read_cases(FIXTURES / "normalize.sql")
INVALID = read_cases(FIXTURES / "normalize__invalid.sql")
_ids = [f"{c.lang}: {c.title}" for c in PAIRS]


def canonical(case: Case) -> exp.Expression:
    return normalize_tree(parse_text(case.query, case.lang))


def test_the_golden_file_covers_the_three_languages() -> None:
    assert len(PAIRS) >= 60
    assert all(c.expected for c in PAIRS)
    langs = {c.lang.lower() for c in PAIRS}
    assert {"adql", "postgresql", "qserv"} <= langs


@pytest.mark.parametrize("case", PAIRS, ids=_ids)
def test_golden(case: Case) -> None:
    assert squeeze(display(canonical(case))) == squeeze(case.expected)


@pytest.mark.parametrize("case", PAIRS, ids=_ids)
def test_rendered_sql_parses_as_postgres(case: Case) -> None:
    tree = canonical(case)
    if tree.find(geometry.AreaSpec, geometry.InUnit):
        with pytest.raises(QservError, match="internal error"):
            to_postgres(tree)
        return
    sql = to_postgres(tree)
    again = sqlglot.parse_one(sql, read="postgres")
    assert isinstance(again, exp.Query)
    leftover = re.search(r"\b(POINT|CIRCLE|POLYGON|CONTAINS|DISTANCE|_BOX|ELLIPSE)\(", sql)
    assert leftover is None, sql


@pytest.mark.parametrize("case", PAIRS, ids=_ids)
def test_normalize_is_idempotent(case: Case) -> None:
    once = canonical(case)
    assert display(normalize_tree(once)) == display(once)


def test_normalize_leaves_its_input_alone() -> None:
    tree = parse_text(
        "SELECT Ra FROM T WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3)) = 1", "adql"
    )
    before = repr(tree)
    normalize_tree(tree)
    assert repr(tree) == before


@pytest.mark.parametrize("case", INVALID, ids=[f"{c.lang}: {c.title}" for c in INVALID])
def test_invalid(case: Case) -> None:
    with pytest.raises(errors.QservError) as info:
        canonical(case)
    assert type(info.value).__name__ == case.error
    assert case.message in str(info.value)


@pytest.mark.parametrize(
    "module",
    [
        normalize,
        geometry,
        geometry_nodes,
        region_functions,
        render,
        parse,
        dialects,
        booleans,
        units,
    ],
)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- rendering --------------------------------------------------------------------------


def pg(query: str, lang: str = "adql") -> str:
    return to_postgres(normalize_tree(parse_text(query, lang)))


def test_both_cone_forms_are_one_function_with_the_columns_first() -> None:
    usual = pg("SELECT ra FROM t WHERE CONTAINS(POINT(ra, dec), CIRCLE(62, -37, 0.1)) = 1")
    reversed_ = pg("SELECT ra FROM t WHERE CONTAINS(POINT(62, -37), CIRCLE(ra, dec, 0.1)) = 1")
    assert usual == reversed_ == "SELECT ra FROM t WHERE qserv.pt_in_circle(ra, dec, 62, -37, 0.1)"


def test_a_join_cone_keeps_its_order() -> None:
    sql = pg("SELECT 1 FROM a, b WHERE CONTAINS(POINT(a.ra, a.dec), CIRCLE(b.ra, b.dec, 0.01)) = 1")
    assert "qserv.pt_in_circle(a.ra, a.dec, b.ra, b.dec, 0.01)" in sql


def test_an_adql_box_is_its_polygon() -> None:
    sql = pg("SELECT ra FROM t WHERE CONTAINS(POINT(ra, dec), BOX(10, 20, 1, 2)) = 1")
    found = re.search(r"qserv\.pt_in_cpoly\(ra, dec, ARRAY\[(.*)\]::float8\[\]\)", sql)
    assert found is not None, sql
    numbers = [float(x) for x in found.group(1).split(",")]
    corners = [c for v in regions.Box(10, 20, 1, 2).polygon.vertices for c in v]
    assert numbers == pytest.approx(corners)
    assert len(numbers) == 8


def test_a_box_on_columns_is_its_polygon_computed_by_the_workers() -> None:
    sql = pg("SELECT 1 FROM a, b WHERE CONTAINS(POINT(a.ra, a.dec), BOX(b.ra, b.dec, 1, 1)) = 1")
    assert "qserv.pt_in_cpoly(a.ra, a.dec, qserv.box_poly(b.ra, b.dec, 1, 1))" in sql


def test_regions_of_columns() -> None:
    poly = "POLYGON(ra, dec, ra + 1, dec, ra, dec + 1)"
    sql = pg(
        f"SELECT AREA({poly}) AS a, AREA(CIRCLE(ra, dec, r)) AS d, COORD1(CENTROID({poly})) AS c "
        f"FROM t WHERE INTERSECTS(CIRCLE(ra, dec, 1), {poly}) = 1 "
        f"AND INTERSECTS({poly}, BOX(1, 2, 3, 4)) = 0 AND CONTAINS({poly}, CIRCLE(1, 2, 3)) = 1"
    )
    array = "qserv.convex_poly(ARRAY[ra, dec, ra + 1, dec, ra, dec + 1]::float8[])"
    assert f"qserv.poly_area({array}) AS a" in sql
    assert "qserv.circle_area(r) AS d" in sql
    assert f"(qserv.poly_centroid({array}))[1] AS c" in sql
    assert f"qserv.circle_meets_poly(ra, dec, 1, {array})" in sql
    assert f"NOT qserv.polys_intersect({array}, ARRAY[" in sql
    assert f"qserv.poly_in_circle({array}, 1, 2, 3)" in sql


def test_polygons_and_regions_of_scisql() -> None:
    sql = pg(
        "SELECT 1 FROM t WHERE scisql_s2PtInCPoly(ra, decl, 0, 0, 1, 0, 0, 1) = 1 "
        "AND scisql_s2PtInBox(ra, decl, 350, -5, 10, 5) = 1 "
        "AND scisql_s2PtInEllipse(ra, decl, 1, 2, 3600, 1800, 30) = 1",
        "qserv",
    )
    assert "qserv.pt_in_cpoly(ra, decl, ARRAY[0, 0, 1, 0, 0, 1]::float8[])" in sql
    assert "qserv.pt_in_box(ra, decl, 350, -5, 10, 5)" in sql
    assert "qserv.pt_in_ellipse(ra, decl, 1, 2, 3600, 1800, 30)" in sql


def test_photometry_and_distance() -> None:
    sql = pg(
        "SELECT scisql_nanojanskyToAbMag(f), scisql_nanojanskyToAbMagSigma(f, s), "
        "scisql_fluxToAbMag(f), scisql_abMagToNanojansky(m), DISTANCE(POINT(a, b), POINT(c, d)) "
        "FROM t"
    )
    assert sql == (
        "SELECT qserv.nanojansky_to_abmag(f), qserv.nanojansky_to_abmag_sigma(f, s), "
        "qserv.flux_to_abmag(f), qserv.abmag_to_nanojansky(m), qserv.ang_sep(a, b, c, d) FROM t"
    )


def test_every_function_written_is_in_spatial_sql() -> None:
    defined = set(re.findall(r"CREATE OR REPLACE FUNCTION qserv\.(\w+)\(", SPATIAL_SQL.read_text()))
    used: set[str] = set()
    for case in PAIRS:
        tree = canonical(case)
        if not tree.find(geometry.AreaSpec, geometry.InUnit):
            used |= set(re.findall(r"qserv\.(\w+)\(", to_postgres(tree)))
    assert used
    assert used <= defined


def test_user_comments_are_not_written() -> None:
    sql = pg("SELECT ra /* ; DROP TABLE x; */ FROM t -- a note\n", "postgresql")
    assert sql == "SELECT ra FROM t"


def test_areaspec_does_not_reach_the_writer() -> None:
    tree = normalize_tree(
        parse_text("SELECT 1 FROM t WHERE qserv_areaspec_box(0, 0, 1, 1)", "qserv")
    )
    spec = tree.find(geometry.AreaSpec)
    assert spec is not None and isinstance(spec.this, geometry.LonLatBox)
    with pytest.raises(QservError, match="internal error: AREASPEC"):
        to_postgres(tree)


def test_pretty_output() -> None:
    tree = normalize_tree(parse_text("SELECT a, b FROM t WHERE a > 1", "adql"))
    assert to_postgres(tree, pretty=True).splitlines()[0] == "SELECT"


def test_canonical_nodes() -> None:
    tree = normalize_tree(
        parse_text("SELECT 1 FROM t WHERE CONTAINS(POINT(ra, dec), CIRCLE(1, 2, 3)) = 1", "adql")
    )
    contains = tree.find(geometry.Contains)
    assert isinstance(contains, geometry.Contains)
    assert isinstance(contains.parent, exp.Where)
    point, circle = contains.args["point"], contains.args["region"]
    assert isinstance(point, geometry.Point) and point.args["ra"].name == "ra"
    assert isinstance(circle, geometry.Circle)
    assert [geometry.number(circle.args[k]) for k in ("ra", "dec", "radius")] == [1, 2, 3]
