"""Convex spherical polygons: validation, edge normals, area, and the exact test.

A convex polygon with great-circle edges is the intersection of the hemispheres
``n_i · p >= 0``, one per edge, with ``n_i`` the unit normal of edge i pointing inwards.
That makes the exact test a handful of dot products, in numpy and in SQL alike
(``nx*cosd(dec)*cosd(ra) + ny*cosd(dec)*sind(ra) + nz*sind(dec) >= 0``), with no function
call per row. :func:`convex_polygon` checks the vertices and computes the normals, taking
either vertex order; anything that is not one convex polygon inside a hemisphere is
refused with a :class:`RegionError` that says how to fix it.

The tangent plane (gnomonic projection) at a point maps great circles to straight
lines: :func:`box_corners` (the ADQL BOX) and :func:`ellipse_outline` (a polygon drawn
around an ellipse, to find its cells) rely on that.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from qserv_py.errors import RegionError
from qserv_py.sky.healpix import FloatArray, unit_vectors

#: two unit vectors closer than this (radians) are one vertex
SAME_POINT = 1e-12
#: a vertex closer than this (sine of the angle) to an edge's great circle lies on it
ON_CIRCLE = 1e-12
_SPLIT = "split it into convex polygons (each smaller than a hemisphere)"


def tangent_basis(ra: float, dec: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(centre, east, north) unit vectors at (ra, dec); at a pole, north points to ra + 180
    and east to ra + 90 (the limits of the usual formulas, as qserv.pt_in_ellipse uses)."""
    a, d = math.radians(ra), math.radians(dec)
    centre = unit_vectors(ra, dec)
    east = np.array([-math.sin(a), math.cos(a), 0.0])
    north = np.array([-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)])
    return centre, east, north


def to_lonlat(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(ra in [0, 360), dec) in degrees of vectors (n, 3), which need not be unit."""
    ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    dec = np.degrees(np.arctan2(v[:, 2], np.hypot(v[:, 0], v[:, 1])))
    return ra, dec


def _unit(v: FloatArray) -> FloatArray:
    return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True))


def convex_polygon(ra: npt.ArrayLike, dec: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(vertices, inward edge normals), both (n, 3) unit vectors, of the convex polygon
    with these vertices in degrees (either order; a closing repeat of the first vertex,
    repeated vertices and vertices in the middle of a straight edge are dropped).

    >>> v, n = convex_polygon([0, 10, 10, 0], [0, 0, 10, 10])
    >>> len(v), bool(np.all(n @ unit_vectors(5, 5) > 0))
    (4, True)
    >>> convex_polygon([0, 10, 0, 10], [0, 0, 10, 10])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qserv_py.errors.RegionError: the polygon is not convex: ... split it into convex polygons ...
    """
    ra_a, dec_a = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    if not (np.all(np.isfinite(ra_a)) and np.all(np.isfinite(dec_a))):
        raise RegionError("a polygon vertex is not a finite number")
    if np.any(np.abs(dec_a) > 90):
        raise RegionError("a polygon vertex has a declination outside -90..90 degrees")
    names = [
        f"vertex {i + 1} ({float(r)!r}, {float(d)!r})"
        for i, (r, d) in enumerate(zip(ra_a, dec_a, strict=True))
    ]
    verts = unit_vectors(ra_a, dec_a)
    keep = list(range(len(verts)))
    keep = _drop_repeats(verts, keep)
    if len(keep) < 3:
        raise RegionError(
            f"a polygon needs at least 3 distinct vertices, got {len(keep)}; give its "
            "corners in order (either direction)"
        )
    keep = _drop_straight(verts, keep, names)
    v = verts[keep]
    cross = _edge_normals(v, np.roll(v, -1, axis=0))
    length = np.linalg.norm(cross, axis=1)
    if np.any(length < SAME_POINT):  # not repeats (dropped above), so antipodes
        i = int(np.argmin(length))
        raise RegionError(
            f"{names[keep[i]]} and {names[keep[(i + 1) % len(keep)]]} are antipodal, so the "
            f"edge between them is undefined; add a vertex between them, or {_SPLIT}"
        )
    normals = cross / length[:, None]
    side = normals @ v.T  # side[i, k]: vertex k against edge i
    ends = np.arange(len(v))
    side[ends, ends] = side[ends, (ends + 1) % len(v)] = 0.0  # on the edge by construction
    orient = 1.0 if side.sum() >= 0 else -1.0
    normals *= orient
    side *= orient
    if np.any(side < -ON_CIRCLE):
        i, k = (int(x) for x in np.unravel_index(int(np.argmin(side)), side.shape))
        raise RegionError(
            f"the polygon is not convex: {names[keep[k]]} lies outside the edge from "
            f"{names[keep[i]]} to {names[keep[(i + 1) % len(keep)]]}, or its edges cross; " + _SPLIT
        )
    centre = _unit(v.sum(axis=0))
    if not np.all(v @ centre > ON_CIRCLE) or not np.all(normals @ centre > ON_CIRCLE):
        raise RegionError(f"the polygon spans a hemisphere or more; {_SPLIT}")
    if _turns(v, centre) > 1:
        raise RegionError(f"the polygon winds around its centre more than once; {_SPLIT}")
    return v, normals


def _drop_repeats(verts: FloatArray, keep: list[int]) -> list[int]:
    out: list[int] = []
    for k in keep:
        if not out or _sep(verts[out[-1]], verts[k]) > SAME_POINT:
            out.append(k)
    while len(out) > 1 and _sep(verts[out[0]], verts[out[-1]]) <= SAME_POINT:
        out.pop()
    return out


def _drop_straight(verts: FloatArray, keep: list[int], names: list[str]) -> list[int]:
    """Drop vertices in the middle of a straight (great-circle) run; refuse spikes."""
    v = verts[keep]
    cross = np.cross(v[0], v)
    normal = cross[int(np.argmax(np.linalg.norm(cross, axis=1)))]
    if np.all(np.abs(v @ normal) <= ON_CIRCLE * np.linalg.norm(normal)):
        raise RegionError(
            "all the polygon's vertices lie on one great circle, so it has no area; "
            "give at least 3 corners that are not on one great circle"
        )
    changed = True
    while changed and len(keep) >= 3:
        changed = False
        for j in range(len(keep)):
            a, b, c = (verts[keep[(j + d) % len(keep)]] for d in (-1, 0, 1))
            n1, n2 = _edge_normals(a, b), _edge_normals(b, c)
            l1, l2 = float(np.linalg.norm(n1)), float(np.linalg.norm(n2))
            if l1 == 0 or l2 == 0 or abs(float(np.dot(n1, c))) > ON_CIRCLE * l1:
                continue
            if float(np.dot(n1, n2)) < 0:
                raise RegionError(
                    f"the polygon folds back on itself at {names[keep[j]]}; give each "
                    f"corner once, in order, or {_SPLIT}"
                )
            merged = _edge_normals(a, c)
            if float(np.dot(merged, n1)) <= SAME_POINT * l1:
                continue  # a-b-c spans 180 degrees or more: b is needed
            del keep[j]
            changed = True
            break
    assert len(keep) >= 3  # not all on one great circle (checked above)
    return keep


def _edge_normals(a: FloatArray, b: FloatArray) -> FloatArray:
    """a × b, computed as a × (b - a): exact to ~1e-16 rad even for edges of 1e-9 rad."""
    return np.asarray(np.cross(a, b - a))


def _sep(a: FloatArray, b: FloatArray) -> float:
    return math.atan2(float(np.linalg.norm(np.cross(a, b))), float(np.dot(a, b)))


def _turns(v: FloatArray, centre: FloatArray) -> int:
    """How many times the vertices go round ``centre`` (as seen in its tangent plane)."""
    axis = np.array([0.0, 0.0, 1.0]) if abs(centre[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e = _unit(axis - (axis @ centre) * centre)
    n = np.cross(centre, e)
    angle = np.arctan2(v @ n, v @ e)
    step = (np.diff(np.append(angle, angle[0])) + np.pi) % (2 * np.pi) - np.pi
    return round(abs(float(step.sum())) / (2 * np.pi))


def perimeter_rad(v: FloatArray) -> float:
    """Length in radians of the closed path through the unit vectors ``v``."""
    return sum(_sep(a, b) for a, b in zip(v, np.roll(v, -1, axis=0), strict=True))


def box_corners(ra: float, dec: float, width: float, height: float) -> FloatArray:
    """Corners (unit vectors) of the ADQL BOX centred on (ra, dec): the side at the end of
    each arm (half the width east and west, half the height north and south, along great
    circles) is the great circle there at right angles to the arm."""
    c, e, n = tangent_basis(ra, dec)
    half_w, half_h = math.radians(width / 2), math.radians(height / 2)
    # inward normals of the sides east, north, west, south; each corner is where two meet
    sides = [
        math.sin(h) * c - math.cos(h) * arm
        for h, arm in ((half_w, e), (half_h, n), (half_w, -e), (half_h, -n))
    ]
    corners = np.array([np.cross(sides[i], sides[(i + 1) % 4]) for i in range(4)])
    return _unit(corners * np.sign(corners @ c)[:, None])


def ellipse_outline(
    ra: float, dec: float, a_deg: float, b_deg: float, pa_deg: float, sides: int, scale: float
) -> FloatArray:
    """Vertices (unit vectors) of a ``sides``-gon in the tangent plane at (ra, dec) around
    the ellipse with semi-axes a, b (tangent-plane degrees), major axis ``pa_deg`` east of
    north: inscribed for scale 1, circumscribed for scale 1 / cos(pi / sides)."""
    t = (np.arange(sides) + 0.5) * 2 * np.pi / sides
    x, y = math.radians(a_deg) * scale * np.cos(t), math.radians(b_deg) * scale * np.sin(t)
    sin_pa, cos_pa = math.sin(math.radians(pa_deg)), math.cos(math.radians(pa_deg))
    xi, eta = x * sin_pa - y * cos_pa, x * cos_pa + y * sin_pa  # major axis along (sin, cos)
    c, e, n = tangent_basis(ra, dec)
    return _unit(c + xi[:, None] * e + eta[:, None] * n)


def in_ellipse(
    ra: npt.ArrayLike,
    dec: npt.ArrayLike,
    ra0: float,
    dec0: float,
    a_deg: float,
    b_deg: float,
    pa_deg: float,
) -> npt.NDArray[np.bool_]:
    """``qserv.pt_in_ellipse``'s test, formula for formula (a, b in degrees here)."""
    r, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    r0, d0, pa = math.radians(ra0), math.radians(dec0), math.radians(pa_deg)
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(r - r0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.degrees(np.cos(d) * np.sin(r - r0) / cos_c)
        eta = np.degrees(
            (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(r - r0)) / cos_c
        )
        major = (xi * math.sin(pa) + eta * math.cos(pa)) / a_deg
        minor = (-xi * math.cos(pa) + eta * math.sin(pa)) / b_deg
        return np.asarray((cos_c > 0) & (major**2 + minor**2 <= 1))


def inflate(v: FloatArray, by: float = 1e-10) -> FloatArray:
    """The vertices moved outwards (radially in the tangent plane at their centre) by
    ``by`` radians plus a relative 1e-9, so a HEALPix search on them cannot lose a cell
    to rounding. The result contains the polygon: the tangent plane keeps edges straight."""
    centre = _unit(v.sum(axis=0))
    t = v / (v @ centre)[:, None] - centre
    size = np.linalg.norm(t, axis=1, keepdims=True)
    return _unit(centre + t * (1 + 1e-9) + t / size * by)


def area_sr(v: FloatArray) -> float:
    """Area in steradians of the convex polygon with unit vertices ``v`` (in order): the
    sum of the triangles (centre, v_i, v_i+1), each by Van Oosterom & Strackee's formula."""
    c = _unit(v.sum(axis=0))
    a, b = v, np.roll(v, -1, axis=0)
    num = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    den = 1 + a @ c + b @ c + np.einsum("ij,ij->i", a, b)
    return float(2 * np.arctan2(num, den).sum())


def halfspaces_contain(
    normals: FloatArray, ra: npt.ArrayLike, dec: npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    """Is each (ra, dec) on the inner side (>= 0) of every normal? (The SQL's formula.)"""
    p = unit_vectors(ra, dec)
    return np.asarray(np.all(p.reshape(-1, 3) @ normals.T >= 0, axis=1).reshape(np.shape(p)[:-1]))


def halfspaces_sql(normals: FloatArray, ra: str, dec: str) -> str:
    """SQL for :func:`halfspaces_contain`, with the normals as full-precision literals."""
    terms = [
        f"{nx!r} * cosd({dec}) * cosd({ra}) + {ny!r} * cosd({dec}) * sind({ra}) "
        f"+ {nz!r} * sind({dec}) >= 0"
        for nx, ny, nz in normals.tolist()
    ]
    return "(" + " AND ".join(terms) + ")"
