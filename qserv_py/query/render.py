"""Canonical tree → PostgreSQL text: sqlglot's PostgreSQL generator, plus a generator
function for each node of :mod:`qserv_py.query.geometry` writing the ``qserv.*`` SQL
functions of sql/spatial.sql.

Angular distance is symmetric, so the reversed cone ``Contains(Point(constants),
Circle(columns, r))`` is written like the usual one, with the columns first. An ADQL BOX
is written as its polygon: its corners when constant, else ``qserv.box_poly``. AreaSpec
and IN_UNIT are resolved by the planner (the director table, the column units) and must
not get here.
User comments are never written: only SQL generated from the tree reaches a worker.

>>> from sqlglot import exp
>>> from qserv_py.query import geometry as geo
>>> distance = geo.Distance(ra1=exp.column("ra"), dec1=exp.column("dec"),
...                         ra2=exp.Literal.number(1), dec2=exp.Literal.number(2))
>>> to_postgres(distance)
'qserv.ang_sep(ra, dec, 1, 2)'

For the workers (``written_out``), distances and circles between columns and numbers
(every cone, cross-match and neighbour join) are written as the functions' bodies, which
PostgreSQL would otherwise parse again at each call site (see :func:`_ang_sep`):

>>> to_postgres(distance, written_out=True)[:50]
'atan2d(sqrt((cosd((2)::float8) * sind((1)::float8 '
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ErrorLevel, UnsupportedError
from sqlglot.generators.postgres import PostgresGenerator

from qserv_py.errors import QservError, QueryRefused
from qserv_py.query import geometry as geo
from qserv_py.sky import regions


def _constant(*nodes: exp.Expression) -> bool:
    return all(geo.number(n) is not None for n in nodes)


def _call(name: str) -> Callable[[PostgresGenerator, exp.Func], str]:
    """A node written as ``qserv.<name>(its arguments in order)``."""

    def sql(self: PostgresGenerator, e: exp.Func) -> str:
        return self.func(f"qserv.{name}", *(e.args.get(k) for k in e.arg_types), normalize=False)

    return sql


#: the body of ``qserv.ang_sep`` (sql/spatial.sql) with its parameters named
_ANG_SEP = (
    "atan2d(sqrt((cosd({d2}) * sind({r2} - {r1})) ^ 2"
    " + (cosd({d1}) * sind({d2}) - sind({d1}) * cosd({d2}) * cosd({r2} - {r1})) ^ 2),"
    " sind({d1}) * sind({d2}) + cosd({d1}) * cosd({d2}) * cosd({r2} - {r1}))"
)


def _simple(node: exp.Expression | None) -> bool:
    """A column or a number: cheap to write (and evaluate) more than once, never volatile.
    Decided by the nodes' kinds, not their values (the plan cache tracks which literals'
    values planning reads: a cone's centre is filled in, not pinned)."""
    if isinstance(node, exp.Literal):
        return not node.is_string
    if isinstance(node, (exp.Paren, exp.Neg)):
        return _simple(node.this)
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        return _simple(node.this) and _simple(node.expression) and not node.find(exp.Column)
    return isinstance(node, exp.Column)


def _parenthesized(self: PostgresGenerator, node: exp.Expression) -> str:
    """A column as it is, a number in parentheses (``(-2)::float8``, not ``-(2::float8)``)."""
    text = self.sql(node)
    return text if isinstance(node, exp.Column) else f"({text})"


def _ang_sep(self: PostgresGenerator, r1: Any, d1: Any, r2: Any, d2: Any) -> str | None:
    """``qserv.ang_sep(r1, d1, r2, d2)`` written out, as PostgreSQL inlines it, when its
    arguments are columns and numbers; None otherwise (then the function is called).

    PostgreSQL inlines a SQL function by parsing its body again at every call site: a
    cross-match's 16-chunk statement has two calls per branch, and written out it plans
    in 1.7–5.8 ms instead of 7.8–12.5 ms (the same rows). Each argument is cast to double
    precision as the call would (a numeric constant is not computed in numeric, a real
    column not in real)."""
    args = (r1, d1, r2, d2)
    if not all(_simple(a) for a in args):
        return None
    r1, d1, r2, d2 = (f"{_parenthesized(self, a)}::float8" for a in args)
    return _ANG_SEP.format(r1=r1, d1=d1, r2=r2, d2=d2)


def _distance_written(self: PostgresGenerator, e: geo.Distance) -> str:
    args = [e.args.get(k) for k in e.arg_types]
    return _ang_sep(self, *args) or self.func("qserv.ang_sep", *args, normalize=False)


def _circle_args(e: geo.Contains) -> list[Any] | None:
    """(ra, dec, ra0, dec0, r) of a CONTAINS(POINT, CIRCLE), the columns first; else None."""
    point, region = e.args["point"], e.args["region"]
    if not isinstance(region, geo.Circle):
        return None
    x, y = point.args["ra"], point.args["dec"]
    ra, dec, radius = (region.args[k] for k in region.arg_types)
    if _constant(x, y) and not _constant(ra, dec):
        x, y, ra, dec = ra, dec, x, y
    return [x, y, ra, dec, radius]


def _contains_written(self: PostgresGenerator, e: geo.Contains) -> str:
    """As :func:`_contains_sql`, a circle written as ``qserv.pt_in_circle``'s body."""
    args = _circle_args(e)
    if args is not None and (written := _ang_sep(self, *args[:4])) is not None:
        return f"({written} <= ({self.sql(args[4])})::float8)"
    return _contains_sql(self, e)


def _contains_sql(self: PostgresGenerator, e: geo.Contains) -> str:
    point, region = e.args["point"], e.args["region"]
    x, y = point.args["ra"], point.args["dec"]
    args = [region.args.get(k) for k in region.arg_types]
    if (circle := _circle_args(e)) is not None:
        return self.func("qserv.pt_in_circle", *circle, normalize=False)
    if isinstance(region, geo.LonLatBox):
        return self.func("qserv.pt_in_box", x, y, *args, normalize=False)
    if isinstance(region, geo.Ellipse):
        return self.func("qserv.pt_in_ellipse", x, y, *args, normalize=False)
    if isinstance(region, (geo.Polygon, geo.AdqlBox)):
        poly = vertices_sql(self, region)
        return f"qserv.pt_in_cpoly({self.sql(x)}, {self.sql(y)}, {poly})"
    raise QservError(f"internal error: no SQL for CONTAINS with {type(region).__name__}")


def vertices_sql(self: PostgresGenerator, region: exp.Expression, *, checked: bool = True) -> str:
    """A POLYGON's or BOX's vertices as a ``float8[]`` (ra1, dec1, ra2, dec2, ...): a BOX of
    constants as the polygon of its corners, one of columns by ``qserv.box_poly``. The
    vertices of a POLYGON of columns pass ``qserv.convex_poly`` when ``checked`` (the
    planner checks constant ones; sciSQL's s2PtInCPoly takes any list, as sciSQL does)."""
    if isinstance(region, geo.Polygon):
        array = f"ARRAY[{self.format_args(*region.expressions)}]::float8[]"
        constant = geo.numbers(region.expressions) is not None
        if not checked or constant or isinstance(region, geo.S2CPolygon):
            return array
        return f"qserv.convex_poly({array})"
    if not isinstance(region, geo.AdqlBox):
        raise QservError(f"internal error: {type(region).__name__} has no vertices")
    args = [region.args.get(k) for k in region.arg_types]
    values = geo.numbers(args)
    if values is None:
        return self.func("qserv.box_poly", *args, normalize=False)
    box = regions.Box(*values)
    corners = [exp.Literal.number(float(c)) for v in box.polygon.vertices for c in v]
    return f"ARRAY[{self.format_args(*corners)}]::float8[]"


def _circle(self: PostgresGenerator, circle: exp.Expression) -> str:
    return self.format_args(*(circle.args[k] for k in ("ra", "dec", "radius")))


def _area_sql(self: PostgresGenerator, e: geo.RegionArea) -> str:
    shape = e.this
    if isinstance(shape, geo.Circle):
        return self.func("qserv.circle_area", shape.args["radius"], normalize=False)
    return f"qserv.poly_area({vertices_sql(self, shape)})"


def _centroid_sql(self: PostgresGenerator, e: geo.PolygonCentroid) -> str:
    return f"(qserv.poly_centroid({vertices_sql(self, e.this)}))[{self.sql(e.args['index'])}]"


def _intersect_sql(self: PostgresGenerator, e: geo.RegionsIntersect) -> str:
    a, b = e.this, e.expression  # a CIRCLE, if any, first (region_functions)
    if isinstance(a, geo.Circle):
        return f"qserv.circle_meets_poly({_circle(self, a)}, {vertices_sql(self, b)})"
    return f"qserv.polys_intersect({vertices_sql(self, a)}, {vertices_sql(self, b)})"


def _within_sql(self: PostgresGenerator, e: geo.RegionWithin) -> str:
    inner, outer = e.this, e.expression
    if isinstance(inner, geo.Circle) and isinstance(outer, geo.Circle):
        return f"qserv.circle_in_circle({_circle(self, inner)}, {_circle(self, outer)})"
    if isinstance(inner, geo.Circle):
        return f"qserv.circle_in_poly({_circle(self, inner)}, {vertices_sql(self, outer)})"
    if isinstance(outer, geo.Circle):
        return f"qserv.poly_in_circle({vertices_sql(self, inner)}, {_circle(self, outer)})"
    return f"qserv.poly_in_poly({vertices_sql(self, inner)}, {vertices_sql(self, outer)})"


class IndexRanges(exp.Expression):
    """``column`` in any of the half-open ``ranges`` [lo, hi): the spatial_index predicate
    of a region. One node holding the planner's numbers (not user text), written as
    ``(c >= lo AND c < hi) OR ...``: a cone's 64 ranges as 256 nodes cost milliseconds
    to build, copy and walk in every pass."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "ranges": True}


def _index_ranges_sql(self: PostgresGenerator, e: IndexRanges) -> str:
    return index_ranges_sql(self.sql(e.this), e.args["ranges"])


def index_ranges_sql(column: str, ranges: Sequence[tuple[int, int]]) -> str:
    """``column`` in any of the half-open ``ranges``, as SQL."""
    if not ranges:
        return "FALSE"
    return " OR ".join(f"({column} >= {lo} AND {column} < {hi})" for lo, hi in ranges)


def _not_here(why: str) -> Callable[[PostgresGenerator, exp.Expression], str]:
    def sql(self: PostgresGenerator, e: exp.Expression) -> str:
        raise QservError(f"internal error: {e.sql()} reached the SQL writer; {why}")

    return sql


_POSITIONS = "positions and regions are only written inside CONTAINS or as result values"


def _array_sql(self: PostgresGenerator, e: exp.Func) -> str:
    """A POINT, CIRCLE or POLYGON as a result value: its numbers as a ``float8[]`` (DALI
    point: ra, dec; circle: ra, dec, radius; polygon: ra1, dec1, ...). A BOX is the
    polygon of its corners."""
    if isinstance(e, (geo.Polygon, geo.AdqlBox)):
        return vertices_sql(self, e, checked=False)
    return f"ARRAY[{self.format_args(*(e.args[k] for k in e.arg_types))}]::float8[]"


TRANSFORMS: dict[type[exp.Expr], Callable[..., str]] = {
    IndexRanges: _index_ranges_sql,
    geo.Contains: _contains_sql,
    geo.Distance: _call("ang_sep"),
    geo.NanojanskyToAbMag: _call("nanojansky_to_abmag"),
    geo.NanojanskyToAbMagSigma: _call("nanojansky_to_abmag_sigma"),
    geo.FluxToAbMag: _call("flux_to_abmag"),
    geo.AbMagToNanojansky: _call("abmag_to_nanojansky"),
    geo.AreaSpec: _not_here("the planner turns qserv_areaspec_* into restrictions"),
    geo.InUnit: _not_here("the planner converts IN_UNIT, knowing the column units"),
    geo.Point: _array_sql,
    geo.Circle: _array_sql,
    geo.Polygon: _array_sql,
    geo.AdqlBox: _array_sql,
    geo.RegionArea: _area_sql,
    geo.PolygonCentroid: _centroid_sql,
    geo.RegionsIntersect: _intersect_sql,
    geo.RegionWithin: _within_sql,
    geo.LonLatBox: _not_here(_POSITIONS),
    geo.Ellipse: _not_here(_POSITIONS),
}


#: PostgreSQL's reserved key words (Appendix C: "reserved" and "reserved (can be function
#: or type)"): as a table, column or alias name they must be quoted
_PG_RESERVED_WORDS = """
    all analyse analyze and any array as asc asymmetric both case cast check collate column
    constraint create current_catalog current_date current_role current_time
    current_timestamp current_user default deferrable desc distinct do else end except false
    fetch for foreign from grant group having in initially intersect into lateral leading
    limit localtime localtimestamp not null offset on only or order placing primary
    references returning select session_user some symmetric table then to trailing true
    union unique user using variadic when where window with authorization binary collation
    concurrently cross current_schema freeze full ilike inner is isnull join left like
    natural notnull outer overlaps right similar tablesample verbose
"""
PG_RESERVED = frozenset(_PG_RESERVED_WORDS.split())
#: a name PostgreSQL reads unquoted as itself
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


class QservPostgresGenerator(PostgresGenerator):
    """PostgreSQL, with the geometry and photometry nodes as ``qserv.*`` functions.

    Every name that needs quoting is quoted, whatever the tree says: a reserved word
    (an alias ``order``, a WITH query named ``select``) and a name PostgreSQL would not
    read unquoted (a backtick, a space, a capital letter of a delimited name). Quoting a
    lower-case name changes nothing else: PostgreSQL folds unquoted names to lower case.

    >>> to_postgres(exp.select(exp.column("a", table="order")).from_("x"))
    'SELECT "order".a FROM x'
    """

    TRANSFORMS: ClassVar[dict[type[exp.Expr], Callable[..., str]]] = {
        **PostgresGenerator.TRANSFORMS,
        **TRANSFORMS,
    }

    def identifier_sql(self, expression: exp.Identifier) -> str:
        name = expression.name
        if not expression.quoted and (name in PG_RESERVED or not _PLAIN_NAME.fullmatch(name)):
            expression = exp.Identifier(this=name.lower(), quoted=True)
        return super().identifier_sql(expression)


class QservPostgres(Postgres):
    """PostgreSQL as qserv_py writes it for the workers and the czar."""

    Generator = QservPostgresGenerator


class _WrittenOutGenerator(QservPostgresGenerator):
    TRANSFORMS: ClassVar[dict[type[exp.Expr], Callable[..., str]]] = {
        **QservPostgresGenerator.TRANSFORMS,
        geo.Distance: _distance_written,
        geo.Contains: _contains_written,
    }


class _WrittenOut(QservPostgres):
    """:class:`QservPostgres` with distances and circles written out (:func:`_ang_sep`)."""

    Generator = _WrittenOutGenerator


class _DisplayGenerator(QservPostgresGenerator):
    TRANSFORMS: ClassVar[dict[type[exp.Expr], Callable[..., str]]] = {
        k: v for k, v in QservPostgresGenerator.TRANSFORMS.items() if k not in geo.NODES
    }


class _Display(Postgres):
    Generator = _DisplayGenerator


def to_postgres(
    tree: exp.Expression, *, pretty: bool = False, copy: bool = True, written_out: bool = False
) -> str:
    """PostgreSQL text of a canonical tree (QueryRefused if it cannot be written).

    Generation may rewrite the tree (e.g. MySQL's decimal division), so it works on a
    copy unless ``copy=False``: for a tree that is not used after it is written.
    ``written_out``: distances and circles of columns and numbers as the SQL functions'
    bodies (:func:`_ang_sep`), for the workers; the oracle's SQL calls the functions, so
    the differential tests compare the two."""
    options: dict[str, Any] = {"comments": False, "unsupported_level": ErrorLevel.RAISE}
    dialect = _WrittenOut() if written_out else QservPostgres()
    try:
        return dialect.generate(tree, copy=copy, pretty=pretty, **options)
    except UnsupportedError as exc:
        raise QueryRefused(f"the query cannot be written for PostgreSQL: {exc}") from exc


def display(tree: exp.Expression, *, pretty: bool = False) -> str:
    """The canonical tree as text — PostgreSQL, with the geometry nodes written as
    themselves (POINT, CIRCLE, ADQL_BOX, LONLAT_BOX, CONTAINS, AREASPEC, ...) — for golden
    files, logs and messages.

    >>> from qserv_py.query.normalize import normalize
    >>> from qserv_py.query.parse import parse
    >>> display(normalize(parse("SELECT * FROM t WHERE qserv_areaspec_box(0, 0, 1, 1)", "qserv")))
    'SELECT * FROM t WHERE AREASPEC(LONLAT_BOX(0, 0, 1, 1))'
    """
    return _Display().generate(tree, pretty=pretty, comments=False)
