"""The geometry and photometry nodes of the query tree, and the values of constant ones.

:mod:`qserv_py.query.geometry` builds these nodes from the calls of a query (ADQL's
geometry, Qserv's ``scisql_*`` and ``qserv_areaspec_*``); :mod:`qserv_py.query.render`
writes each as the ``qserv.*`` SQL functions of sql/spatial.sql. Angles are in degrees
(the ellipse axes in arcsec, as scisql has them).

>>> number(exp.Add(this=exp.Literal.number(1), expression=exp.Literal.number(2)))
3.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from sqlglot import exp

from qserv_py.errors import QueryError, RegionError
from qserv_py.query import params
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


class RegionArea(exp.Expression, exp.Func):
    """AREA of a region whose arguments are not all constants, in square degrees: of a
    CIRCLE from its radius, of a POLYGON or BOX from its vertices on the sphere."""

    _sql_names: ClassVar[list[str]] = ["REGION_AREA"]
    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class PolygonCentroid(exp.Expression, exp.Func):
    """One coordinate (``index`` 1: ra, 2: dec) of the CENTROID of a POLYGON whose
    vertices are not all constants (as :func:`qserv_py.query.frames.polygon_centroid`)."""

    _sql_names: ClassVar[list[str]] = ["POLYGON_CENTROID"]
    arg_types: ClassVar[dict[str, bool]] = {"this": True, "index": True}


class RegionsIntersect(exp.Expression, exp.Func):
    """Do two regions (``this``, ``expression``: CIRCLE, POLYGON or BOX, not two CIRCLEs)
    share a point? Boolean once normalized, as Contains."""

    _sql_names: ClassVar[list[str]] = ["REGIONS_INTERSECT"]
    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}


class RegionWithin(exp.Expression, exp.Func):
    """Is the region ``this`` inside the region ``expression`` (ADQL's CONTAINS with a
    region first)? Boolean once normalized, as Contains."""

    _sql_names: ClassVar[list[str]] = ["REGION_WITHIN"]
    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}


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
    RegionArea,
    PolygonCentroid,
    RegionsIntersect,
    RegionWithin,
)
#: the predicates of points and regions (boolean once normalized; ADQL writes them 0/1)
PREDICATES = (Contains, RegionsIntersect, RegionWithin)


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


def literal(value: float) -> exp.Expression:
    """A number of the planner's as a literal (its full precision)."""
    return exp.Literal.number(repr(value))


def count_args(name: str, args: Args, *allowed: int) -> None:
    """QueryError unless ``name`` has one of the ``allowed`` numbers of arguments."""
    if len(args) not in allowed:
        counts = " or ".join(str(n) for n in allowed)
        raise QueryError(f"{name} takes {counts} arguments, got {len(args)}")
