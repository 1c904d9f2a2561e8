"""The coordinate system argument of ADQL's POINT, CIRCLE, BOX and POLYGON.

ADQL 2.1 (§4.2.5) deprecates the argument and lets a service convert positions given in
another system. The catalog's positions are ICRS, so:

- ``''`` and ``'ICRS'`` (with any reference position after it, ``'ICRS GEOCENTER'``) mean
  the positions as they are;
- ``'GALACTIC'``, ``'FK5'``/``'J2000'`` (equinox J2000), ``'FK4'``/``'B1950'`` (equinox
  B1950) and ``'SUPER_GALACTIC'`` are accepted for **constant** positions, which are
  transformed to ICRS with astropy before planning (a circle keeps its radius, a polygon
  its great-circle edges through the transformed vertices: the transformations are
  rotations, up to FK4's E-terms of under 0.4″);
- such a system with positions from columns is refused: the columns hold ICRS positions,
  and ignoring the argument would answer a different question silently;
- any other system is refused, naming the ones accepted.

>>> frame_of("POINT", "ICRS GEOCENTER") is None, frame_of("POINT", "galactic")
(True, 'GALACTIC')
>>> [round(v, 4) for v in to_icrs("GALACTIC", [(0.0, 0.0)])[0]]
[266.405, -28.9362]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from qserv_py.errors import QueryRefused

#: accepted system names (upper case) → (astropy frame name, its equinox)
FRAMES: dict[str, tuple[str, str | None]] = {
    "GALACTIC": ("galactic", None),
    "GALACTIC_II": ("galactic", None),
    "SUPER_GALACTIC": ("supergalactic", None),
    "FK5": ("fk5", "J2000"),
    "J2000": ("fk5", "J2000"),
    "FK4": ("fk4", "B1950"),
    "B1950": ("fk4", "B1950"),
}


def frame_of(function: str, text: str) -> str | None:
    """The system a coordinate-system string names: None for ICRS (or ``''``), else the
    key of :data:`FRAMES`; QueryRefused for a system this service does not convert."""
    words = text.split()
    if not words or words[0].upper() in ("ICRS", "UNKNOWNFRAME"):
        return None
    key = words[0].upper()
    if key not in FRAMES:
        raise QueryRefused(
            f"{function}: the coordinate system {text!r} is not supported; positions are "
            "ICRS (write 'ICRS' or leave the argument out, as ADQL 2.1 deprecates it), or "
            f"give constant positions in one of {', '.join(sorted(FRAMES))} to have them "
            "converted"
        )
    return key


def to_icrs(frame: str, pairs: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``pairs`` of (longitude, latitude) in degrees in ``frame``, as ICRS (ra, dec)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    name, equinox = FRAMES[frame]
    options = {"equinox": equinox} if equinox else {}
    lon, lat = zip(*pairs, strict=True)
    icrs = SkyCoord(list(lon) * u.deg, list(lat) * u.deg, frame=name, **options).icrs
    return [
        (float(ra) % 360.0, float(dec)) for ra, dec in zip(icrs.ra.deg, icrs.dec.deg, strict=True)
    ]


def not_constant(function: str, text: str) -> QueryRefused:
    """The refusal of a non-ICRS system with positions that are not constants."""
    return QueryRefused(
        f"{function}: the coordinate system {text!r} is only accepted with constant "
        "positions, which are converted to ICRS; the catalog's columns hold ICRS positions, "
        "so write 'ICRS' (or leave the argument out) with them"
    )


def polygon_centroid(pairs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The centroid (ra, dec) of a convex spherical polygon: the direction of the sum of
    its fan triangles' unit-vector centroids, each weighted by the triangle's area.

    >>> [round(v, 6) for v in polygon_centroid([(-1, -1), (1, -1), (1, 1), (-1, 1)])]
    [0.0, 0.0]
    """
    import numpy as np

    ra, dec = np.radians(np.array(pairs, dtype=float)).T
    v = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    total = np.zeros(3)
    a = v[0]
    for b, c in itertools.pairwise(v[1:]):
        # spherical excess of triangle abc (Van Oosterom & Strackee)
        excess = 2 * np.arctan2(
            abs(np.dot(a, np.cross(b, c))), 1 + np.dot(a, b) + np.dot(b, c) + np.dot(c, a)
        )
        centre = a + b + c
        total += excess * centre / np.linalg.norm(centre)
    x, y, z = total / np.linalg.norm(total)
    return float(np.degrees(np.arctan2(y, x)) % 360.0), float(np.degrees(np.arcsin(z)))
