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

from collections.abc import Callable

from sqlglot import exp

from qserv_py.errors import QueryError, QueryRefused
from qserv_py.query import frames, params
from qserv_py.query.geometry_nodes import (
    NODES,
    PREDICATES,
    REGIONS,
    AbMagToNanojansky,
    AdqlBox,
    AreaSpec,
    Args,
    Circle,
    Contains,
    Distance,
    Ellipse,
    FluxToAbMag,
    InUnit,
    LonLatBox,
    NanojanskyToAbMag,
    NanojanskyToAbMagSigma,
    Point,
    Polygon,
    PolygonCentroid,
    Region,
    RegionArea,
    RegionsIntersect,
    RegionWithin,
    S2CPolygon,
    adql_name,
    count_args,
    literal,
    number,
    numbers,
    region_of,
    s2cpoly_region,
)
from qserv_py.query.region_functions import (
    build_area,
    build_centroid,
    region_within,
    regions_intersect,
)

__all__ = [
    "FUNCTIONS",
    "NODES",
    "PARSER_FUNCTIONS",
    "PREDICATES",
    "REGIONS",
    "AbMagToNanojansky",
    "AdqlBox",
    "AreaSpec",
    "Circle",
    "Contains",
    "Distance",
    "Ellipse",
    "FluxToAbMag",
    "InUnit",
    "LonLatBox",
    "NanojanskyToAbMag",
    "NanojanskyToAbMagSigma",
    "Point",
    "Polygon",
    "PolygonCentroid",
    "Region",
    "RegionArea",
    "RegionWithin",
    "RegionsIntersect",
    "S2CPolygon",
    "adql_name",
    "build",
    "number",
    "numbers",
    "region_of",
    "s2cpoly_region",
]


# --- builders ---------------------------------------------------------------------------


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
    return [*(literal(c) for pair in converted for c in pair), *rest[2 * pairs :]]


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
    count_args("POINT", _frame("POINT", args)[2], 2)
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
    count_args("CIRCLE", args, 2, 3)
    return _checked(Circle.from_arg_list(args))


def _build_box(args: Args) -> exp.Expression:
    frame, text, rest = _frame("BOX", args)
    if frame is not None:  # its sides follow the other system: a polygon of its corners
        values = numbers(rest)
        if values is None or len(values) != 4:
            raise frames.not_constant("BOX", text)
        with params.restrictor_scope(validation=True):
            box = _checked(AdqlBox.from_arg_list([literal(v) for v in values]))
        corners = region_of(box).polygon.vertices  # type: ignore[union-attr]
        pairs = frames.to_icrs(frame, list(corners))
        return _checked(Polygon(expressions=[literal(c) for pair in pairs for c in pair]))
    args = rest
    if len(args) == 3:
        centre = _point("BOX(centre, width, height)", args[0])
        ra, dec = centre.args["ra"], centre.args["dec"]
        return _checked(AdqlBox(ra=ra, dec=dec, width=args[1], height=args[2]))
    count_args("BOX", args, 3, 4)
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
    count_args("CONTAINS", args, 2)
    point, region = args
    if isinstance(point, Point) and isinstance(region, REGIONS):
        return Contains(point=point, region=region)
    if isinstance(point, REGIONS) and isinstance(region, (Point, *REGIONS)):
        return region_within(point, region)
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
    count_args("INTERSECTS", args, 2)
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
        return regions_intersect(a, b)
    raise QueryRefused(
        "INTERSECTS needs a POINT and a region (CIRCLE, BOX or POLYGON), "
        f"got {a.sql()} and {b.sql()}"
    )


def _build_distance(args: Args) -> exp.Expression:
    if len(args) == 2:
        p, q = (_point("DISTANCE", a) for a in args)
        return Distance(ra1=p.args["ra"], dec1=p.args["dec"], ra2=q.args["ra"], dec2=q.args["dec"])
    count_args("DISTANCE", args, 2, 4)
    return Distance.from_arg_list(args)


def _build_coord(key: str, name: str) -> Callable[[Args], exp.Expression]:
    def build(args: Args) -> exp.Expression:
        count_args(name, args, 1)
        return _point(name, args[0]).args[key]

    return build


def _build_region(args: Args) -> exp.Expression:
    raise QueryRefused(
        "REGION (an STC-S string) is not supported: write the region as CIRCLE, BOX or POLYGON"
    )


def _build_coordsys(args: Args) -> exp.Expression:
    count_args("COORDSYS", args, 1)
    if not isinstance(args[0], (Point, *REGIONS)):
        raise QueryError(f"COORDSYS takes a POINT or a region, got {args[0].sql()}")
    return exp.Literal.string("ICRS")


def _build_in_unit(args: Args) -> exp.Expression:
    count_args("IN_UNIT", args, 2)
    unit = args[1]
    if not (isinstance(unit, exp.Literal) and unit.is_string and unit.name.strip()):
        raise QueryError(f"IN_UNIT needs a unit string such as 'deg', got {unit.sql()}")
    return InUnit(this=args[0], unit=unit)


def _fixed(name: str, make: Callable[[Args], exp.Expression], n: int) -> Callable:
    def build(args: Args) -> exp.Expression:
        count_args(name, args, n)
        return make(args)

    return build


def _pt_in(name: str, region: type[Region], n: int) -> Callable[[Args], exp.Expression]:
    def build(args: Args) -> exp.Expression:
        count_args(name, args, n)
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
            count_args(name, args, n)
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
    "AREA": build_area,
    "CENTROID": build_centroid,
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
