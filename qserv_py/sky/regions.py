"""Sky regions: which chunks and spatial_index ranges can hold matches, and the exact test.

Every region answers two questions (as LSDB's search classes do):

- *coarse*: :meth:`Region.index_ranges`, half-open order-29 spatial_index ranges that
  hold every point of the region (a superset: sorted, disjoint, at most ``max_ranges``),
  and :meth:`Region.chunks`, the layout chunks those ranges touch;
- *fine*: :meth:`Region.contains` (numpy) and :meth:`Region.sql_predicate` (SQL on the
  workers, with the ``qserv.*`` functions of sql/spatial.sql), which agree point by point.

The ranges come from cdshealpix's searches, which return every cell that overlaps the
region (and some that do not), run at a depth whose cells are a few times smaller than
the region, on the region grown by ~1e-10 rad so rounding cannot lose a cell; then the
closest ranges are merged until at most ``max_ranges`` remain. Two cdshealpix limits
shape this: ``cone_search`` loses cells for radii past ~150 deg, so a cone wider than a
hemisphere is given the whole sky (it holds at least half of it anyway); and its
``elliptical_cone_search`` ellipse is not ours, so an ellipse is covered by a 16-gon
drawn around it in the tangent plane (where great circles are straight lines).

Angles are in degrees. A region that makes no sense raises :class:`RegionError`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from qserv_py.errors import RegionError
from qserv_py.sky import polygon as poly
from qserv_py.sky.healpix import (
    ORDER,
    ORDER0_SIZE_DEG,
    FloatArray,
    IntArray,
    angular_separation,
    core,
    index_range,
    spatial_index,
)
from qserv_py.sky.layout import Layout

if TYPE_CHECKING:  # cdshealpix's wrappers and astropy are imported where they are used:
    # a cone needs neither (the compiled core), and their import is slow
    from astropy.coordinates import Latitude, Longitude

BoolArray = npt.NDArray[np.bool_]
#: one past the last order-29 index
FULL_SKY = 12 << (2 * ORDER)
SKY_DEG2 = 4 * math.pi * math.degrees(1) ** 2
#: how much the searched region is grown (degrees), so rounding cannot lose a cell
_GROW_DEG = math.degrees(1e-10)
#: searched cells are about this many times smaller than the region (sqrt of its area)
_CELLS_ACROSS = 8
#: ... but no more than about this many along its perimeter
_MAX_EDGE_CELLS = 20_000
#: sides of the polygon drawn around an ellipse to find its cells
_ELLIPSE_SIDES = 16


class Region(ABC):
    """A region of the sky: coarse spatial_index ranges and chunks, and the exact test."""

    @abstractmethod
    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        """Is each (ra, dec) in the region? (The same test as :meth:`sql_predicate`.)"""

    @abstractmethod
    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        """The exact test as an SQL boolean over the column expressions ``ra``, ``dec``
        (``index_column`` is used instead by regions defined on the index: RangeSet)."""

    @abstractmethod
    def area(self) -> float:
        """Area in square degrees."""

    @abstractmethod
    def _cover(self) -> tuple[IntArray, IntArray]:
        """Ranges [lo, hi) (any order, may overlap) holding every point of the region."""

    def index_ranges(self, max_ranges: int = 64) -> tuple[IntArray, IntArray]:
        """At most ``max_ranges`` sorted, disjoint, half-open spatial_index ranges
        [lo, hi) holding every point of the region."""
        if max_ranges < 1:
            raise ValueError(f"max_ranges must be at least 1, got {max_ranges}")
        return coarsen(*normalize(*self._cover()), max_ranges)

    def chunks(self, layout: Layout, max_ranges: int = 64) -> IntArray:
        """Sorted NUNIQ ids of the chunks of ``layout`` that can hold matches."""
        lo, hi = self.index_ranges(max_ranges)
        return np.unique(layout.chunks_overlapping(lo, hi)[1])

    def index_sql(self, column: str = "spatial_index", max_ranges: int = 64) -> str:
        """The coarse test as SQL: ``(column >= lo AND column < hi) OR ...``.

        >>> RangeSet([0, 100], [10, 200]).index_sql("s")
        '((s >= 0 AND s < 10) OR (s >= 100 AND s < 200))'
        """
        return ranges_sql(column, *self.index_ranges(max_ranges))


def normalize(lo: npt.ArrayLike, hi: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Ranges [lo, hi) sorted, with overlapping and touching ones merged, empty dropped.

    >>> list(zip(*(a.tolist() for a in normalize([5, 0, 3, 9], [8, 3, 4, 9]))))
    [(0, 4), (5, 8)]
    """
    lo_a, hi_a = np.asarray(lo, np.int64).ravel(), np.asarray(hi, np.int64).ravel()
    nonempty = hi_a > lo_a
    lo_a, hi_a = lo_a[nonempty], hi_a[nonempty]
    order = np.argsort(lo_a, kind="stable")
    lo_a, hi_a = lo_a[order], hi_a[order]
    if len(lo_a) == 0:
        return lo_a, hi_a
    reach = np.maximum.accumulate(hi_a)
    start = np.concatenate([[True], lo_a[1:] > reach[:-1]])
    end = np.concatenate([start[1:], [True]])
    return lo_a[start], reach[end]


def coarsen(lo: IntArray, hi: IntArray, max_ranges: int) -> tuple[IntArray, IntArray]:
    """Normalized ranges reduced to ``max_ranges`` by closing the smallest gaps (which
    adds the fewest indexes, i.e. the least area: order-29 cells have equal areas).

    >>> lo, hi = np.array([0, 10, 30, 33]), np.array([5, 20, 31, 40])
    >>> list(zip(*(a.tolist() for a in coarsen(lo, hi, 2))))
    [(0, 20), (30, 40)]
    """
    if len(lo) <= max_ranges:
        return lo, hi
    gaps = lo[1:] - hi[:-1]
    cut = np.sort(np.argsort(-gaps, kind="stable")[: max_ranges - 1])
    return lo[np.concatenate([[0], cut + 1])], hi[np.concatenate([cut, [len(hi) - 1]])]


def ranges_sql(column: str, lo: IntArray, hi: IntArray) -> str:
    if len(lo) == 0:
        return "FALSE"
    terms = [
        f"({column} >= {a} AND {column} < {b})"
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True)
    ]
    return "(" + " OR ".join(terms) + ")"


def _moc_ranges(ipix: npt.ArrayLike, depth: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """The order-29 ranges of cdshealpix's (ipix, depth) cells.

    >>> [r.tolist() for r in _moc_ranges([1, 0], [28, 0])] == [[4, 0], [8, 1 << 58]]
    True
    """
    cells = np.asarray(ipix, np.int64)
    shift = 2 * (ORDER - np.asarray(depth, np.int64))
    return cells << shift, (cells + 1) << shift


def _cone_cells(ra: float, dec: float, radius: float, depth: int) -> tuple[IntArray, IntArray]:
    """cdshealpix's cone search: (ipix, depth) of the cells covering the cone.

    Through its compiled core, with the arguments its ``nested.cone_search`` passes
    (radians; depth_delta 2, not flat): the wrapper builds astropy angles, which cost
    ~0.1 ms a cone — as much as the search. Should the core change, the wrapper is used
    (tests compare the two).
    """
    try:
        ipix, depth_, _ = core().cone_search(
            np.uint8(depth),
            np.uint8(2),
            np.float64(math.radians(ra % 360.0)),
            np.float64(math.radians(min(max(dec, -90.0), 90.0))),
            np.float64(math.radians(radius)),
            False,
        )
    except (AttributeError, TypeError):
        import astropy.units as u
        from cdshealpix import nested

        ipix, depth_, _ = nested.cone_search(_lon(ra), _lat(dec), radius * u.deg, depth)
    return ipix, depth_


def _depth(area_deg2: float, perimeter_deg: float) -> int:
    """Search depth: cells ~1/8 of the region's size, yet not too many along its edge."""
    cell = max(math.sqrt(max(area_deg2, 0.0)) / _CELLS_ACROSS, perimeter_deg / _MAX_EDGE_CELLS)
    if cell <= 0:
        return ORDER
    return max(0, min(ORDER, math.floor(math.log2(ORDER0_SIZE_DEG / cell))))


def _lon(deg: npt.ArrayLike) -> Longitude:
    import astropy.units as u
    from astropy.coordinates import Longitude

    return Longitude(np.asarray(deg, float), unit=u.deg)


def _lat(deg: npt.ArrayLike) -> Latitude:
    import astropy.units as u
    from astropy.coordinates import Latitude

    return Latitude(np.clip(np.asarray(deg, float), -90.0, 90.0), unit=u.deg)


def _set_floats(region: Region, *names: str) -> None:
    """Make these fields of a (frozen) region floats; RegionError unless finite numbers."""
    for name in names:
        value = getattr(region, name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            kind = type(region).__name__
            raise RegionError(f"{kind} {name} must be a finite number, got {value!r}")
        object.__setattr__(region, name, number)


def _check_dec(what: str, dec: float) -> None:
    if not -90 <= dec <= 90:
        raise RegionError(f"the {what} declination {dec!r} is outside -90..90 degrees")


@dataclass(frozen=True)
class Cone(Region):
    """Points within ``radius`` of (ra, dec): ``qserv.pt_in_circle`` (Vincenty).

    >>> c = Cone(10.0, 20.0, 1.0)
    >>> c.contains([10.0, 10.0], [20.9, 21.1]).tolist()
    [True, False]
    >>> c.sql_predicate("o.ra", "o.dec")
    'qserv.pt_in_circle(o.ra, o.dec, 10.0, 20.0, 1.0)'
    >>> Cone(0, 0, -1)
    Traceback (most recent call last):
    ...
    qserv_py.errors.RegionError: a cone radius must be between 0 and 180 degrees, got -1.0
    """

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        _set_floats(self, "ra", "dec", "radius")
        _check_dec("cone centre", self.dec)
        if not 0 <= self.radius <= 180:  # also refuses NaN
            raise RegionError(
                f"a cone radius must be between 0 and 180 degrees, got {self.radius!r}"
            )

    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        return np.asarray(angular_separation(ra, dec, self.ra, self.dec) <= self.radius)

    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        return f"qserv.pt_in_circle({ra}, {dec}, {self.ra!r}, {self.dec!r}, {self.radius!r})"

    def area(self) -> float:
        return SKY_DEG2 * (1 - math.cos(math.radians(self.radius))) / 2

    def _cover(self) -> tuple[IntArray, IntArray]:
        radius = self.radius * (1 + 1e-9) + _GROW_DEG
        if radius > 90:  # cdshealpix loses cells past ~150 deg; this is >= half the sky
            return np.array([0], np.int64), np.array([FULL_SKY], np.int64)
        depth = _depth(self.area(), 2 * math.pi * radius)
        return _moc_ranges(*_cone_cells(self.ra, self.dec, radius, depth))


@dataclass(frozen=True)
class LonLatBox(Region):
    """The box ``dec_min <= dec <= dec_max`` and RA from ``ra_min`` east to ``ra_max``:
    wrapping through 0 when ra_min > ra_max (after folding into [0, 360)), the full circle
    when ``ra_max - ra_min >= 360``. As scisql / ``qserv_areaspec_box`` and
    ``qserv.pt_in_box``; its edges are meridians and parallels (not all great circles).

    >>> b = LonLatBox(350, -5, 10, 5)
    >>> b.contains([355, 5, 20, 0], [0, 5, 0, 5.1]).tolist()
    [True, True, False, False]
    >>> b.sql_predicate("ra", "dec")
    'qserv.pt_in_box(ra, dec, 350.0, -5.0, 10.0, 5.0)'
    """

    ra_min: float
    dec_min: float
    ra_max: float
    dec_max: float

    def __post_init__(self) -> None:
        _set_floats(self, "ra_min", "dec_min", "ra_max", "dec_max")
        if not -90 <= self.dec_min <= self.dec_max <= 90:
            raise RegionError(
                f"a box needs -90 <= dec_min <= dec_max <= 90, got dec_min={self.dec_min!r}, "
                f"dec_max={self.dec_max!r}"
            )

    @property
    def full_circle(self) -> bool:
        return self.ra_max - self.ra_min >= 360

    @property
    def ra_span(self) -> float:
        """Degrees of RA covered, east from ra_min."""
        if self.full_circle:
            return 360.0
        return float((_ra_norm(self.ra_max) - _ra_norm(self.ra_min)) % 360)

    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        ra_a, dec_a = np.asarray(ra, float), np.asarray(dec, float)
        in_dec = (dec_a >= self.dec_min) & (dec_a <= self.dec_max)
        if self.full_circle:
            return np.asarray(in_dec)
        lo, hi, r = _ra_norm(self.ra_min), _ra_norm(self.ra_max), _ra_norm(ra_a)
        in_ra = ((r >= lo) & (r <= hi)) if lo <= hi else ((r >= lo) | (r <= hi))
        return np.asarray(in_dec & in_ra)

    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        args = ", ".join(repr(x) for x in (self.ra_min, self.dec_min, self.ra_max, self.dec_max))
        return f"qserv.pt_in_box({ra}, {dec}, {args})"

    def area(self) -> float:
        band = math.sin(math.radians(self.dec_max)) - math.sin(math.radians(self.dec_min))
        return SKY_DEG2 * band / 2 * self.ra_span / 360

    def _cover(self) -> tuple[IntArray, IntArray]:
        dec_min, dec_max = self.dec_min - _GROW_DEG, self.dec_max + _GROW_DEG
        widest = 0.0 if dec_min * dec_max <= 0 else min(abs(dec_min), abs(dec_max))
        perimeter = 2 * (dec_max - dec_min + self.ra_span * math.cos(math.radians(widest)))
        depth = _depth(self.area(), perimeter)
        zones: list[tuple[float, float]]
        if self.ra_span >= 359:
            # two halves: cdshealpix's zone with equal RA bounds is not the full circle
            zones = [(-_GROW_DEG, 180 + _GROW_DEG), (180 - _GROW_DEG, _GROW_DEG)]
        else:
            lo, hi = float(_ra_norm(self.ra_min)), float(_ra_norm(self.ra_max))
            zones = [(lo - _GROW_DEG, hi + _GROW_DEG)]
        from cdshealpix import nested

        cells = [
            nested.zone_search(_lon(lo), _lat(dec_min), _lon(hi), _lat(dec_max), depth)
            for lo, hi in zones
        ]
        ipix, d = (np.concatenate([c[i] for c in cells]) for i in (0, 1))
        return _moc_ranges(ipix, d)


def _ra_norm(ra: npt.ArrayLike) -> FloatArray:
    """RA folded into [0, 360) exactly as ``qserv.ra_norm``."""
    r = np.asarray(ra, float)
    return np.asarray(r - 360.0 * np.floor(r / 360.0))


@dataclass(frozen=True)
class Polygon(Region):
    """A convex spherical polygon with great-circle edges, vertices in either order.

    Not convex, fewer than 3 distinct vertices, all on one great circle, or a hemisphere
    or more: :class:`RegionError`, saying what to do.

    >>> p = Polygon(((350, -5), (10, -5), (10, 5), (350, 5)))
    >>> p.contains([0, 0, 20], [0, 5.1, 0]).tolist()
    [True, False, False]
    >>> p.sql_predicate("ra", "dec").count("cosd(dec) * cosd(ra)")  # one term per edge
    4
    >>> Polygon(((0, 0), (10, 0), (0, 0)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qserv_py.errors.RegionError: a polygon needs at least 3 distinct vertices, got 2; ...
    """

    vertices: tuple[tuple[float, float], ...]
    _vectors: FloatArray = field(init=False, repr=False, compare=False)
    _normals: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            verts = tuple((float(r), float(d)) for r, d in self.vertices)
        except (TypeError, ValueError) as exc:
            raise RegionError(
                f"polygon vertices must be (ra, dec) pairs of numbers, got {self.vertices!r}"
            ) from exc
        object.__setattr__(self, "vertices", verts)
        vectors, normals = poly.convex_polygon([r for r, _ in verts], [d for _, d in verts])
        object.__setattr__(self, "_vectors", vectors)
        object.__setattr__(self, "_normals", normals)

    @classmethod
    def from_vectors(cls, v: FloatArray) -> Polygon:
        ra, dec = poly.to_lonlat(v)
        return cls(tuple(zip(ra.tolist(), dec.tolist(), strict=True)))

    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        return poly.halfspaces_contain(self._normals, ra, dec)

    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        return poly.halfspaces_sql(self._normals, ra, dec)

    def area(self) -> float:
        return poly.area_sr(self._vectors) * math.degrees(1) ** 2

    def _cover(self) -> tuple[IntArray, IntArray]:
        depth = _depth(self.area(), math.degrees(poly.perimeter_rad(self._vectors)))
        from cdshealpix import nested

        ra, dec = poly.to_lonlat(poly.inflate(self._vectors))
        ipix, d, _ = nested.polygon_search(_lon(ra), _lat(dec), depth)
        return _moc_ranges(ipix, d)


@dataclass(frozen=True)
class Box(Region):
    """The ADQL BOX: centre (ra, dec) and full ``width`` and ``height``, in degrees.

    ADQL 2.1 (after STC 1.33, Box): a cross centred on the centre, its arms along the
    coordinate axes there, reaching half the width and half the height each way; the
    sides are great circles that cross the arms' ends at right angles. So the arms are
    great-circle arcs (the east-west one is not the parallel), the east and west sides
    are not meridians, and the box is the convex polygon of the four sides' great
    circles, which is how it is tested. It may hold a pole; centred on a pole, "north"
    is towards RA + 180 (the limit of the usual formulas). DaCHS instead joins the corners
    (ra ± w/2, dec ± h/2) with great circles: a different box off the equator.

    Width and height must be in (0, 180): a Cone or a LonLatBox covers larger areas.

    >>> b = Box(0, 89, 4, 4)
    >>> b.contains([123, 0, 180, 180], [90, 87.1, 89.5, 88.9]).tolist()
    [True, True, True, False]
    """

    ra: float
    dec: float
    width: float
    height: float
    polygon: Polygon = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _set_floats(self, "ra", "dec", "width", "height")
        _check_dec("box centre", self.dec)
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 0 < value < 180:
                raise RegionError(
                    f"an ADQL BOX {name} must be between 0 and 180 degrees (exclusive), got "
                    f"{value!r}; use a CIRCLE, or a qserv_areaspec_box, for larger areas"
                )
        corners = poly.box_corners(self.ra, self.dec, self.width, self.height)
        object.__setattr__(self, "polygon", Polygon.from_vectors(corners))

    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        return self.polygon.contains(ra, dec)

    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        return self.polygon.sql_predicate(ra, dec)

    def area(self) -> float:
        return self.polygon.area()

    def _cover(self) -> tuple[IntArray, IntArray]:
        return self.polygon._cover()


@dataclass(frozen=True)
class Ellipse(Region):
    """The ellipse ``qserv.pt_in_ellipse`` tests: in the tangent plane (gnomonic) at
    (ra, dec), semi-axes in arcsec, position angle of the major axis east of north.

    >>> e = Ellipse(10, 20, 3600, 1800, 90)
    >>> e.contains([10.9, 10.0], [20.0, 20.9]).tolist()
    [True, False]
    >>> e.sql_predicate("ra", "dec")
    'qserv.pt_in_ellipse(ra, dec, 10.0, 20.0, 3600.0, 1800.0, 90.0)'
    """

    ra: float
    dec: float
    semi_major_arcsec: float
    semi_minor_arcsec: float
    position_angle_deg: float

    def __post_init__(self) -> None:
        _set_floats(
            self, "ra", "dec", "semi_major_arcsec", "semi_minor_arcsec", "position_angle_deg"
        )
        _check_dec("ellipse centre", self.dec)
        if not 0 < self.semi_minor_arcsec <= self.semi_major_arcsec <= 90 * 3600:
            raise RegionError(
                "an ellipse needs 0 < semi_minor <= semi_major <= 324000 arcsec (90 degrees), "
                f"got semi_major={self.semi_major_arcsec!r}, semi_minor="
                f"{self.semi_minor_arcsec!r}; if they are the wrong way round, swap them and "
                "add 90 to the position angle"
            )

    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        a, b = self.semi_major_arcsec / 3600, self.semi_minor_arcsec / 3600
        return poly.in_ellipse(ra, dec, self.ra, self.dec, a, b, self.position_angle_deg)

    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        args = (self.semi_major_arcsec, self.semi_minor_arcsec, self.position_angle_deg)
        numbers = ", ".join(repr(x) for x in (self.ra, self.dec, *args))
        return f"qserv.pt_in_ellipse({ra}, {dec}, {numbers})"

    def _outline(self, sides: int, scale: float = 1.0) -> FloatArray:
        a, b = self.semi_major_arcsec / 3600, self.semi_minor_arcsec / 3600
        pa = self.position_angle_deg
        return poly.ellipse_outline(self.ra, self.dec, a, b, pa, sides, scale)

    def area(self) -> float:
        """Area (of an inscribed 1024-gon: relative error < 1e-5)."""
        return poly.area_sr(self._outline(1024)) * math.degrees(1) ** 2

    def _cover(self) -> tuple[IntArray, IntArray]:
        around = self._outline(_ELLIPSE_SIDES, 1 / math.cos(math.pi / _ELLIPSE_SIDES))
        return Polygon.from_vectors(around)._cover()


@dataclass(frozen=True, eq=False)
class RangeSet(Region):
    """Explicit half-open spatial_index ranges [lo, hi), e.g. from a MOC; normalized
    (sorted, merged). The exact test is membership of the point's order-29 index.

    >>> r = RangeSet.from_nuniq([4, 63])
    >>> list(zip(*(a.tolist() for a in r.index_ranges())))
    [(0, 288230376151711744), (3386706919782612992, 3458764513820540928)]
    >>> r.sql_predicate("ra", "dec", index_column="s")  # doctest: +NORMALIZE_WHITESPACE
    '(s BETWEEN 0 AND 288230376151711743
      OR s BETWEEN 3386706919782612992 AND 3458764513820540927)'
    """

    lo: IntArray
    hi: IntArray

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        if lo.shape != hi.shape or lo.ndim != 1:
            raise RegionError(
                f"range bounds must be two 1-d arrays of one length, got {lo.shape} and {hi.shape}"
            )
        if len(lo) and not (
            np.issubdtype(lo.dtype, np.integer) and np.issubdtype(hi.dtype, np.integer)
        ):
            raise RegionError("range bounds must be integers (order-29 spatial_index values)")
        if np.any(lo > hi) or np.any(lo < 0) or np.any(hi > FULL_SKY):
            raise RegionError(f"ranges need 0 <= lo <= hi <= {FULL_SKY} (order-29 indexes)")
        lo_n, hi_n = normalize(lo, hi)
        lo_n.flags.writeable = hi_n.flags.writeable = False
        object.__setattr__(self, "lo", lo_n)
        object.__setattr__(self, "hi", hi_n)

    @classmethod
    def from_nuniq(cls, uniq: npt.ArrayLike) -> RangeSet:
        """The ranges of these NUNIQ pixels (a MOC)."""
        lo, hi = index_range(np.asarray(uniq, np.int64))
        return cls(np.atleast_1d(lo), np.atleast_1d(hi))

    def contains(self, ra: npt.ArrayLike, dec: npt.ArrayLike) -> BoolArray:
        return self.contains_index(spatial_index(ra, dec))

    def contains_index(self, index: npt.ArrayLike) -> BoolArray:
        """Is each order-29 index in the ranges?"""
        idx = np.asarray(index, np.int64)
        if len(self.lo) == 0:
            return np.zeros(idx.shape, bool)
        pos = np.searchsorted(self.lo, idx, side="right") - 1
        return np.asarray((pos >= 0) & (idx < self.hi[np.maximum(pos, 0)]))

    def sql_predicate(self, ra: str, dec: str, *, index_column: str = "spatial_index") -> str:
        if len(self.lo) == 0:
            return "FALSE"
        terms = [
            f"{index_column} BETWEEN {a} AND {b - 1}"
            for a, b in zip(self.lo.tolist(), self.hi.tolist(), strict=True)
        ]
        return "(" + " OR ".join(terms) + ")"

    def area(self) -> float:
        return SKY_DEG2 * float((self.hi - self.lo).sum()) / FULL_SKY

    def _cover(self) -> tuple[IntArray, IntArray]:
        return self.lo, self.hi
