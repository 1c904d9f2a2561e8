"""Geometry and photometry nodes of the query tree, and the calls that build them.

ADQL's geometry (POINT, CIRCLE, BOX, POLYGON, CONTAINS, INTERSECTS, DISTANCE, COORD1,
COORD2, COORDSYS), IN_UNIT, Qserv's ``scisql_*`` functions and ``qserv_areaspec_*``
restrictors all become the few nodes below, whatever the query language. Angles are in
degrees (the ellipse axes in arcsec, as scisql has them).

:data:`FUNCTIONS` maps each call name (upper case) to a builder ``args -> node``; the
Adql and Qserv parsers use them directly, and normalize applies them to the anonymous
calls other parsers (PostgreSQL's) leave. A builder checks what can be checked without
context — argument counts, the coordinate frame, regions given by constants (through
:mod:`qserv_py.sky.regions`, so the messages are the same) — and raises
:class:`QueryError` or :class:`QueryRefused`.

>>> build("contains", [build("POINT", [exp.column("ra"), exp.column("dec")]),
...                    build("circle", [exp.Literal.number(10), exp.Literal.number(20),
...                                     exp.Literal.number(1)])]).sql()
'CONTAINS(POINT(ra, dec), CIRCLE(10, 20, 1))'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

from sqlglot import exp

from qserv_py.errors import QueryError, QueryRefused, RegionError
from qserv_py.query import frames, params
from qserv_py.sky import regions

Args = Sequence[exp.Expression]


class Point(exp.Expression, exp.Func):
    """A sky position: ``POINT(ra, dec)``."""

    arg_types: ClassVar[dict[str, bool]] = {"ra": True, "dec": True}


class Region(exp.Expression, exp.Func):
    """Base of the region nodes (only ever the second argument of Contains, or in AreaSpec)."""


class Circle(Region):
    """A cone: centre and radius."""

    arg_types: ClassVar[dict[str, bool]] = {"ra": True, "dec": True, "radius": True}


class AdqlBox(Region):
    """The ADQL BOX: centre, full width and height (great-circle sides; regions.Box)."""

    _sql_names: ClassVar[list[str]] = ["ADQL_BOX"]
    arg_types: ClassVar[dict[str, bool]] = {"ra": True, "dec": True, "width": True, "height": True}


class LonLatBox(Region):
    """The scisql / ``qserv_areaspec_box`` box between two meridians and two parallels."""

    _sql_names: ClassVar[list[str]] = ["LONLAT_BOX"]
    arg_types: ClassVar[dict[str, bool]] = {
        "ra_min": True,
        "dec_min": True,
        "ra_max": True,
        "dec_max": True,
    }


class Polygon(Region):
    """A convex polygon: ``expressions`` holds ra1, dec1, ra2, dec2, ..."""

    arg_types: ClassVar[dict[str, bool]] = {"expressions": True}
    is_var_len_args = True


class S2CPolygon(Polygon):
    """sciSQL's ``scisql_s2PtInCPoly`` vertex list. Its rows are those sciSQL returns (see
    ``qserv.pt_in_cpoly``): for a convex polygon, the polygon (a restrictor like any
    other); for a vertex list that is not one (not convex, a hemisphere or more,
    degenerate), sciSQL still answers, with the intersection of the edges' half-spheres
    as it orients them, and so does qserv_py: that region chooses no chunks (all are
    read) and only the row test applies."""

    _sql_names: ClassVar[list[str]] = ["S2CPOLY"]


class Ellipse(Region):
    """scisql's ellipse: centre, semi-axes in arcsec, position angle in degrees."""

    arg_types: ClassVar[dict[str, bool]] = {
        "ra": True,
        "dec": True,
        "semi_major_arcsec": True,
        "semi_minor_arcsec": True,
        "pa_deg": True,
    }


class Contains(exp.Expression, exp.Func):
    """Is ``point`` in ``region``? Boolean once normalized (ADQL's CONTAINS is 0/1)."""

    arg_types: ClassVar[dict[str, bool]] = {"point": True, "region": True}


class Distance(exp.Expression, exp.Func):
    """Angular distance between (ra1, dec1) and (ra2, dec2), in degrees."""

    arg_types: ClassVar[dict[str, bool]] = {"ra1": True, "dec1": True, "ra2": True, "dec2": True}


class AreaSpec(exp.Expression, exp.Func):
    """``qserv_areaspec_*``: restricts the query's director table to the region ``this``."""

    _sql_names: ClassVar[list[str]] = ["AREASPEC"]
    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class InUnit(exp.Expression, exp.Func):
    """ADQL IN_UNIT(this, 'unit'): converted by the planner, which knows column units."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "unit": True}


class NanojanskyToAbMag(exp.Expression, exp.Func):
    _sql_names: ClassVar[list[str]] = ["NANOJANSKY_TO_ABMAG"]


class NanojanskyToAbMagSigma(exp.Expression, exp.Func):
    _sql_names: ClassVar[list[str]] = ["NANOJANSKY_TO_ABMAG_SIGMA"]
    arg_types: ClassVar[dict[str, bool]] = {"this": True, "sigma": True}


class FluxToAbMag(exp.Expression, exp.Func):
    _sql_names: ClassVar[list[str]] = ["FLUX_TO_ABMAG"]


class AbMagToNanojansky(exp.Expression, exp.Func):
    _sql_names: ClassVar[list[str]] = ["ABMAG_TO_NANOJANSKY"]


REGIONS = (Circle, AdqlBox, LonLatBox, Polygon, Ellipse)
NODES: tuple[type[exp.Func], ...] = (
    Point,
    *REGIONS,
    Contains,
    Distance,
    AreaSpec,
    InUnit,
    NanojanskyToAbMag,
    NanojanskyToAbMagSigma,
    FluxToAbMag,
    AbMagToNanojansky,
)


def adql_name(node: exp.Func) -> str:
    """The name a user wrote for a node's kind (ADQL's where there is one)."""
    if isinstance(node, (AdqlBox, LonLatBox)):
        return "BOX"
    return node.sql_name()


def number(node: exp.Expression | None) -> float | None:
    """The value of a constant numeric expression (literals, + - * /, parentheses), or None.

    >>> number(exp.Neg(this=exp.Literal.number(2))), number(exp.column("ra"))
    (-2.0, None)
    """
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(params.text(node))
        except ValueError:
            return None
    if isinstance(node, exp.Paren):
        return number(node.this)
    if isinstance(node, exp.Neg):
        value = number(node.this)
        return None if value is None else -value
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        a, b = number(node.this), number(node.expression)
        if a is None or b is None:
            return None
        if isinstance(node, exp.Add):
            return a + b
        if isinstance(node, exp.Sub):
            return a - b
        if isinstance(node, exp.Mul):
            return a * b
        return a / b if b else None
    return None


def numbers(nodes: Sequence[exp.Expression | None]) -> list[float] | None:
    """The values of constant expressions, or None unless all are constant."""
    values = []
    for node in nodes:
        value = number(node)
        if value is None or not math.isfinite(value):
            return None
        values.append(value)
    return values


def region_of(node: Region) -> regions.Region | None:
    """The sky region of a region node whose arguments are all constants, else None.

    Raises :class:`QueryError` (with the region's own message) if it is invalid.
    """
    args = (
        node.expressions
        if isinstance(node, Polygon)
        else [node.args.get(k) for k in node.arg_types]
    )
    values = numbers(args)
    if values is None:
        return None
    if isinstance(node, S2CPolygon):
        return s2cpoly_region(values)
    try:
        if isinstance(node, Circle):
            return regions.Cone(*values)
        if isinstance(node, AdqlBox):
            return regions.Box(*values)
        if isinstance(node, LonLatBox):
            return regions.LonLatBox(*values)
        if isinstance(node, Ellipse):
            return regions.Ellipse(*values)
        pairs = tuple(zip(values[::2], values[1::2], strict=True))
        return regions.Polygon(pairs)
    except RegionError as exc:
        raise QueryError(f"{adql_name(node)}: {exc.message}") from exc


def s2cpoly_region(values: list[float]) -> regions.Region | None:
    """The region of a constant sciSQL vertex list: the convex polygon, or None (no chunk
    restriction) for a list that is not a convex polygon, which sciSQL answers anyway.
    Declinations outside -90..90 are refused (sciSQL returns NULL for every row)."""
    decs = values[1::2]
    if any(abs(d) > 90 for d in decs):
        raise QueryError(
            "scisql_s2PtInCPoly: a vertex has a declination outside -90..90 degrees "
            "(sciSQL would return NULL for every row)"
        )
    try:
        return regions.Polygon(tuple(zip(values[::2], decs, strict=True)))
    except RegionError:
        return None


# --- builders ---------------------------------------------------------------------------


def _count(name: str, args: Args, *allowed: int) -> None:
    if len(args) not in allowed:
        counts = " or ".join(str(n) for n in allowed)
        raise QueryError(f"{name} takes {counts} arguments, got {len(args)}")


def _frame(name: str, args: Args) -> tuple[str | None, str, Args]:
    """(the system other than ICRS, its text, the other arguments) of a constructor's
    arguments (:mod:`qserv_py.query.frames`)."""
    if args and isinstance(args[0], exp.Literal) and args[0].is_string:
        return frames.frame_of(name, args[0].name), args[0].name, args[1:]
    return None, "", args


def _without_frame(name: str, args: Args) -> Args:
    """``args`` without a leading coordinate-system string; constant positions in another
    system (``ra, dec`` pairs from the first argument on) converted to ICRS."""
    frame, text, rest = _frame(name, args)
    if frame is None:
        return rest
    pairs = len(rest) // 2 if name == "POLYGON" else 1
    values = numbers(rest[: 2 * pairs])
    if values is None or len(rest) < 2:
        raise frames.not_constant(name, text)
    converted = frames.to_icrs(frame, list(zip(values[::2], values[1::2], strict=True)))
    return [*(_literal(c) for pair in converted for c in pair), *rest[2 * pairs :]]


def _literal(value: float) -> exp.Expression:
    return exp.Literal.number(repr(value))


def _point(name: str, node: exp.Expression) -> Point:
    if isinstance(node, exp.Column):
        raise QueryRefused(
            f"{name} needs POINT(ra, dec) here, got the column {node.sql()}: point-valued "
            "columns are not supported (positions are ra and dec columns); write "
            "POINT(ra_column, dec_column)"
        )
    if not isinstance(node, Point):
        raise QueryError(
            f"{name} needs POINT(ra, dec) here, got {node.sql()}; "
            "point-valued columns are not supported, write POINT(ra_column, dec_column)"
        )
    return node


def _checked(node: Region) -> Region:
    with params.restrictor_scope(validation=True):
        region_of(node)
    return node


def _build_point(args: Args) -> exp.Expression:
    _count("POINT", _frame("POINT", args)[2], 2)
    if any(isinstance(a, exp.Null) for a in args):
        raise QueryError(
            f"POINT({', '.join(a.sql() for a in args)}): a coordinate is the constant NULL, "
            "so the point is NULL and no row can match it; give numbers or columns"
        )
    args = _without_frame("POINT", args)
    return Point(ra=args[0], dec=args[1])


def _build_circle(args: Args) -> exp.Expression:
    args = _without_frame("CIRCLE", args)
    if len(args) == 2:
        centre = _point("CIRCLE(centre, radius)", args[0])
        return _checked(Circle(ra=centre.args["ra"], dec=centre.args["dec"], radius=args[1]))
    _count("CIRCLE", args, 2, 3)
    return _checked(Circle.from_arg_list(args))


def _build_box(args: Args) -> exp.Expression:
    frame, text, rest = _frame("BOX", args)
    if frame is not None:  # its sides follow the other system: a polygon of its corners
        values = numbers(rest)
        if values is None or len(values) != 4:
            raise frames.not_constant("BOX", text)
        with params.restrictor_scope(validation=True):
            box = _checked(AdqlBox.from_arg_list([_literal(v) for v in values]))
        corners = region_of(box).polygon.vertices  # type: ignore[union-attr]
        pairs = frames.to_icrs(frame, list(corners))
        return _checked(Polygon(expressions=[_literal(c) for pair in pairs for c in pair]))
    args = rest
    if len(args) == 3:
        centre = _point("BOX(centre, width, height)", args[0])
        ra, dec = centre.args["ra"], centre.args["dec"]
        return _checked(AdqlBox(ra=ra, dec=dec, width=args[1], height=args[2]))
    _count("BOX", args, 3, 4)
    return _checked(AdqlBox.from_arg_list(args))


def _build_polygon(args: Args) -> exp.Expression:
    if _frame("POLYGON", args)[0] is not None and any(isinstance(a, Point) for a in args):
        raise frames.not_constant("POLYGON (with POINT vertices)", args[0].name)
    args = _without_frame("POLYGON", args)
    if args and all(isinstance(a, Point) for a in args):
        args = [c for a in args for c in (a.args["ra"], a.args["dec"])]
    elif any(isinstance(a, Point) for a in args):
        raise QueryError("POLYGON takes either POINTs or numbers (ra1, dec1, ...), not both")
    if len(args) < 6 or len(args) % 2:
        raise QueryError(
            f"POLYGON needs at least 3 vertices as ra, dec pairs, got {len(args)} numbers"
        )
    return _checked(Polygon(expressions=list(args)))


def _build_contains(args: Args) -> exp.Expression:
    _count("CONTAINS", args, 2)
    point, region = args
    if isinstance(point, Point) and isinstance(region, REGIONS):
        return Contains(point=point, region=region)
    if isinstance(point, REGIONS) and isinstance(region, (Point, *REGIONS)):
        raise QueryRefused(
            "CONTAINS(region, ...) is not supported: the first argument must be a POINT, "
            "as in CONTAINS(POINT(ra, dec), CIRCLE(ra0, dec0, radius))"
        )
    if isinstance(point, Point) and isinstance(region, Point):
        raise QueryRefused("CONTAINS(POINT, POINT) is not supported; compare with DISTANCE")
    if isinstance(region, exp.Column):
        raise QueryRefused(
            f"CONTAINS: {region.sql()} is a column, and region-valued columns are not "
            "supported (the catalog's positions are points); give the region as CIRCLE, BOX "
            "or POLYGON"
        )
    raise QueryError(
        "CONTAINS takes a POINT and a region (CIRCLE, BOX or POLYGON), "
        f"got {point.sql()} and {region.sql()}"
    )


def _build_intersects(args: Args) -> exp.Expression:
    _count("INTERSECTS", args, 2)
    a, b = args
    if isinstance(a, REGIONS) and isinstance(b, Point):
        a, b = b, a
    if isinstance(a, Point) and isinstance(b, REGIONS):
        return Contains(point=a, region=b)
    if isinstance(a, Circle) and isinstance(b, Circle):
        # two discs meet where their centres are at most the sum of the radii apart
        if numbers([a.args["ra"], a.args["dec"]]) is not None:
            a, b = b, a
        radius = exp.Add(this=b.args["radius"].copy(), expression=a.args["radius"].copy())
        centre = Point(ra=a.args["ra"], dec=a.args["dec"])
        disc = Circle(ra=b.args["ra"], dec=b.args["dec"], radius=radius)
        return Contains(point=centre, region=disc)
    if isinstance(a, REGIONS) and isinstance(b, REGIONS):
        raise QueryRefused(
            f"INTERSECTS of two regions ({adql_name(a)}, {adql_name(b)}) is not supported "
            "unless both are CIRCLEs: one argument must be a POINT or both CIRCLEs, as in "
            "INTERSECTS(POINT(ra, dec), POLYGON(...)) or INTERSECTS(CIRCLE(ra, dec, r), "
            "CIRCLE(...))"
        )
    raise QueryRefused(
        "INTERSECTS needs a POINT and a region (CIRCLE, BOX or POLYGON), "
        f"got {a.sql()} and {b.sql()}"
    )


def _build_distance(args: Args) -> exp.Expression:
    if len(args) == 2:
        p, q = (_point("DISTANCE", a) for a in args)
        return Distance(ra1=p.args["ra"], dec1=p.args["dec"], ra2=q.args["ra"], dec2=q.args["dec"])
    _count("DISTANCE", args, 2, 4)
    return Distance.from_arg_list(args)


def _build_coord(key: str, name: str) -> Callable[[Args], exp.Expression]:
    def build(args: Args) -> exp.Expression:
        _count(name, args, 1)
        return _point(name, args[0]).args[key]

    return build


def _build_area(args: Args) -> exp.Expression:
    """AREA in square degrees: of a constant region, a CIRCLE of constant radius, a POINT."""
    _count("AREA", args, 1)
    shape = args[0]
    if isinstance(shape, Point):
        return exp.Literal.number(0)
    if isinstance(shape, Circle) and (radius := number(shape.args["radius"])) is not None:
        with params.restrictor_scope(validation=True):
            return _literal(regions.Cone(0.0, 0.0, radius).area())
    if isinstance(shape, REGIONS):
        with params.restrictor_scope(validation=True):
            region = region_of(shape)
        if region is not None:
            return _literal(region.area())
        raise QueryRefused(
            f"AREA({shape.sql()}): the area of a region that depends on columns is only "
            "computed for a CIRCLE of constant radius"
        )
    raise _not_geometry("AREA", shape)


def _build_centroid(args: Args) -> exp.Expression:
    """CENTROID: a POINT itself, the centre of a CIRCLE or BOX, and of a constant
    POLYGON the direction of the sum of its triangles' areas times their centroids."""
    _count("CENTROID", args, 1)
    shape = args[0]
    if isinstance(shape, Point):
        return shape
    if isinstance(shape, (Circle, AdqlBox)):
        return Point(ra=shape.args["ra"], dec=shape.args["dec"])
    if isinstance(shape, Polygon):
        values = numbers(shape.expressions)
        if values is None:
            raise QueryRefused(
                f"CENTROID({shape.sql()}): the centroid of a POLYGON is computed for "
                "constant vertices only"
            )
        ra, dec = frames.polygon_centroid(list(zip(values[::2], values[1::2], strict=True)))
        return Point(ra=_literal(ra), dec=_literal(dec))
    raise _not_geometry("CENTROID", shape)


def _build_region(args: Args) -> exp.Expression:
    raise QueryRefused(
        "REGION (an STC-S string) is not supported: write the region as CIRCLE, BOX or POLYGON"
    )


def _not_geometry(name: str, node: exp.Expression) -> QueryError:
    if isinstance(node, exp.Column):
        return QueryRefused(
            f"{name}({node.sql()}): geometry-valued columns are not supported (the catalog's "
            "positions are ra and dec columns); use POINT(ra, dec), CIRCLE, BOX or POLYGON"
        )
    return QueryError(f"{name} takes a POINT or a region, got {node.sql()}")


def _build_coordsys(args: Args) -> exp.Expression:
    _count("COORDSYS", args, 1)
    if not isinstance(args[0], (Point, *REGIONS)):
        raise QueryError(f"COORDSYS takes a POINT or a region, got {args[0].sql()}")
    return exp.Literal.string("ICRS")


def _build_in_unit(args: Args) -> exp.Expression:
    _count("IN_UNIT", args, 2)
    unit = args[1]
    if not (isinstance(unit, exp.Literal) and unit.is_string and unit.name.strip()):
        raise QueryError(f"IN_UNIT needs a unit string such as 'deg', got {unit.sql()}")
    return InUnit(this=args[0], unit=unit)


def _fixed(name: str, make: Callable[[Args], exp.Expression], n: int) -> Callable:
    def build(args: Args) -> exp.Expression:
        _count(name, args, n)
        return make(args)

    return build


def _pt_in(name: str, region: type[Region], n: int) -> Callable[[Args], exp.Expression]:
    def build(args: Args) -> exp.Expression:
        _count(name, args, n)
        shape = _checked(region.from_arg_list(args[2:]))
        return Contains(point=Point(ra=args[0], dec=args[1]), region=shape)

    return build


def _pt_in_cpoly(args: Args) -> exp.Expression:
    if len(args) < 8 or len(args) % 2:
        raise QueryError(
            "scisql_s2PtInCPoly takes ra, dec and at least 3 vertices as ra, dec pairs, "
            f"got {len(args)} arguments"
        )
    shape = _checked(S2CPolygon(expressions=list(args[2:])))
    return Contains(point=Point(ra=args[0], dec=args[1]), region=shape)


def _areaspec(name: str, region: type[Region], n: int | None) -> Callable:
    def build(args: Args) -> exp.Expression:
        if n is None:
            if len(args) < 6 or len(args) % 2:
                raise QueryError(f"{name} takes at least 3 vertices as ra, dec pairs")
            shape: Region = Polygon(expressions=list(args))
        else:
            _count(name, args, n)
            shape = region.from_arg_list(args)
        with params.restrictor_scope(validation=True):
            constant = region_of(shape) is not None
        if not constant:
            raise QueryError(f"{name} takes numbers only, got {', '.join(a.sql() for a in args)}")
        return AreaSpec(this=shape)

    return build


FUNCTIONS: dict[str, Callable[[Args], exp.Expression]] = {
    "POINT": _build_point,
    "CIRCLE": _build_circle,
    "BOX": _build_box,
    "POLYGON": _build_polygon,
    "CONTAINS": _build_contains,
    "INTERSECTS": _build_intersects,
    "DISTANCE": _build_distance,
    "COORD1": _build_coord("ra", "COORD1"),
    "COORD2": _build_coord("dec", "COORD2"),
    "COORDSYS": _build_coordsys,
    "AREA": _build_area,
    "CENTROID": _build_centroid,
    "REGION": _build_region,
    "IN_UNIT": _build_in_unit,
    "SCISQL_ANGSEP": _fixed("scisql_angSep", Distance.from_arg_list, 4),
    "SCISQL_S2PTINCIRCLE": _pt_in("scisql_s2PtInCircle", Circle, 5),
    "SCISQL_S2PTINBOX": _pt_in("scisql_s2PtInBox", LonLatBox, 6),
    "SCISQL_S2PTINELLIPSE": _pt_in("scisql_s2PtInEllipse", Ellipse, 7),
    "SCISQL_S2PTINCPOLY": _pt_in_cpoly,
    "SCISQL_NANOJANSKYTOABMAG": _fixed(
        "scisql_nanojanskyToAbMag", NanojanskyToAbMag.from_arg_list, 1
    ),
    "SCISQL_NANOJANSKYTOABMAGSIGMA": _fixed(
        "scisql_nanojanskyToAbMagSigma", NanojanskyToAbMagSigma.from_arg_list, 2
    ),
    "SCISQL_FLUXTOABMAG": _fixed("scisql_fluxToAbMag", FluxToAbMag.from_arg_list, 1),
    "SCISQL_ABMAGTONANOJANSKY": _fixed(
        "scisql_abMagToNanojansky", AbMagToNanojansky.from_arg_list, 1
    ),
    "QSERV_AREASPEC_BOX": _areaspec("qserv_areaspec_box", LonLatBox, 4),
    "QSERV_AREASPEC_CIRCLE": _areaspec("qserv_areaspec_circle", Circle, 3),
    "QSERV_AREASPEC_ELLIPSE": _areaspec("qserv_areaspec_ellipse", Ellipse, 5),
    "QSERV_AREASPEC_POLY": _areaspec("qserv_areaspec_poly", Polygon, None),
}


def build(name: str, args: Args) -> exp.Expression:
    """The node for the call ``name(args)`` (any case); QueryError if it is malformed."""
    return FUNCTIONS[name.upper()](list(args))


def lenient(name: str) -> Callable[[list[exp.Expression]], exp.Expression]:
    """A parser builder: the node, or the anonymous call if the call is malformed (so the
    parse goes on, and normalize raises the error when it builds the node again)."""

    def builder(args: list[exp.Expression]) -> exp.Expression:
        try:
            return build(name, args)
        except QueryError:
            return exp.Anonymous(this=name, expressions=args)

    return builder


PARSER_FUNCTIONS = {name: lenient(name) for name in FUNCTIONS}
