"""AREA, CENTROID, and CONTAINS / INTERSECTS of two regions, for constant regions and
for regions built from columns.

A region whose arguments are all constants is measured here, in Python (the planner
writes the number); one built from columns becomes a node of
:mod:`qserv_py.query.geometry_nodes` that :mod:`qserv_py.query.render` writes as a
``qserv.*`` SQL function of sql/spatial.sql, evaluated row by row on the workers (and on
the oracle, which has the same functions):

- AREA of a CIRCLE (from its radius), of a POLYGON or BOX (the spherical polygon of its
  vertices: the sum of its angles - (n - 2)π, computed as the sum of the signed areas
  of the triangles from the vertices' centre to each edge, which is the same number for
  a simple polygon and needs no angle at a vertex), in square degrees;
- CENTROID of a POLYGON: the area-weighted centre of its fan triangles, as
  :func:`qserv_py.query.frames.polygon_centroid` computes it for constants;
- INTERSECTS of a CIRCLE and a POLYGON or BOX (the distance from the centre to the
  polygon is at most the radius), of two polygons (a vertex of one in the other, or two
  edges crossing as great-circle arcs);
- CONTAINS of a region in a region: a circle in a circle (the centres' distance plus
  the inner radius at most the outer one), a circle in a polygon (the centre at least
  the radius inside every edge's great circle), a polygon in a circle (no point of the
  polygon nearer the antipode of the centre than 180° - radius), a polygon in a polygon
  (all its vertices in the other: the outer one is convex).

Polygons are convex (ADQL's POLYGON is, with great-circle edges), in either orientation.

>>> from qserv_py.query.geometry import build
>>> from qserv_py.query.render import to_postgres
>>> ra, dec, one = exp.column("ra"), exp.column("dec"), exp.Literal.number(1)
>>> to_postgres(build("AREA", [build("CIRCLE", [ra, dec, exp.column("r")])]))
'qserv.circle_area(r)'
>>> to_postgres(build("AREA", [build("BOX", [one, one, one, one])]))
'0.9999746164392791'
>>> to_postgres(build("AREA", [build("BOX", [ra, dec, one, one])]))
'qserv.poly_area(qserv.box_poly(ra, dec, 1, 1))'
"""

from __future__ import annotations

from sqlglot import exp

from qserv_py.errors import QueryError, QueryRefused
from qserv_py.query import frames, params
from qserv_py.query.geometry_nodes import (
    AdqlBox,
    Args,
    Circle,
    Point,
    Polygon,
    PolygonCentroid,
    RegionArea,
    RegionsIntersect,
    RegionWithin,
    adql_name,
    count_args,
    literal,
    number,
    numbers,
    region_of,
)
from qserv_py.sky import regions

#: the regions these functions take (the scisql ones never reach them)
SHAPES = (Circle, Polygon, AdqlBox)


def not_geometry(name: str, node: exp.Expression) -> QueryError:
    """The error for a function of geometry given something else."""
    if isinstance(node, exp.Column):
        return QueryRefused(
            f"{name}({node.sql()}): geometry-valued columns are not supported (the catalog's "
            "positions are ra and dec columns); use POINT(ra, dec), CIRCLE, BOX or POLYGON"
        )
    return QueryError(f"{name} takes a POINT or a region, got {node.sql()}")


def build_area(args: Args) -> exp.Expression:
    """AREA in square degrees: a number for a POINT (0) and a constant region, else a
    RegionArea node computed by the workers."""
    count_args("AREA", args, 1)
    shape = args[0]
    if isinstance(shape, Point):
        return exp.Literal.number(0)
    if isinstance(shape, Circle) and (radius := number(shape.args["radius"])) is not None:
        with params.restrictor_scope(validation=True):
            return literal(regions.Cone(0.0, 0.0, radius).area())
    if isinstance(shape, SHAPES):
        with params.restrictor_scope(validation=True):
            region = region_of(shape)
        return RegionArea(this=shape) if region is None else literal(region.area())
    raise not_geometry("AREA", shape)


def build_centroid(args: Args) -> exp.Expression:
    """CENTROID: a POINT itself, the centre of a CIRCLE or BOX, and of a POLYGON the
    direction of the sum of its fan triangles' centres weighted by their areas (computed
    here for constant vertices, by the workers for vertices from columns)."""
    count_args("CENTROID", args, 1)
    shape = args[0]
    if isinstance(shape, Point):
        return shape
    if isinstance(shape, (Circle, AdqlBox)):
        return Point(ra=shape.args["ra"], dec=shape.args["dec"])
    if isinstance(shape, Polygon):
        values = numbers(shape.expressions)
        if values is None:
            return Point(
                ra=PolygonCentroid(this=shape, index=exp.Literal.number(1)),
                dec=PolygonCentroid(this=shape.copy(), index=exp.Literal.number(2)),
            )
        ra, dec = frames.polygon_centroid(list(zip(values[::2], values[1::2], strict=True)))
        return Point(ra=literal(ra), dec=literal(dec))
    raise not_geometry("CENTROID", shape)


def region_within(inner: exp.Expression, outer: exp.Expression) -> exp.Expression:
    """``CONTAINS(inner, outer)`` with a region first: is ``inner`` inside ``outer``?"""
    if isinstance(inner, SHAPES) and isinstance(outer, SHAPES):
        return RegionWithin(this=inner, expression=outer)
    if isinstance(inner, SHAPES) and isinstance(outer, Point):
        raise QueryRefused(
            f"CONTAINS({adql_name(inner)}, POINT) is not supported: a region is never inside "
            "a point; to test whether the point is in the region, write "
            f"CONTAINS(POINT(...), {adql_name(inner)}(...))"
        )
    raise QueryError(
        "CONTAINS takes a POINT or a region (CIRCLE, BOX or POLYGON) and then a region, "
        f"got {inner.sql()} and {outer.sql()}"
    )


def regions_intersect(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """``INTERSECTS(a, b)`` of two regions other than two CIRCLEs (a CIRCLE comes first)."""
    if isinstance(a, SHAPES) and isinstance(b, SHAPES):
        if isinstance(b, Circle):
            a, b = b, a
        return RegionsIntersect(this=a, expression=b)
    raise QueryRefused(
        f"INTERSECTS of {a.sql()} and {b.sql()} is not supported: it takes a POINT or a "
        "region (CIRCLE, BOX or POLYGON) on each side"
    )
