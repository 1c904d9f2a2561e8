"""HEALPix basics: the order-29 spatial index, NUNIQ chunk ids, index ranges.

Every partitioned row carries ``spatial_index``, its order-29 nested HEALPix index (as
HATS' ``_healpix_29``). A pixel (order k, ipix) holds exactly the order-29 indexes
``[ipix << 2(29-k), (ipix + 1) << 2(29-k))``, so "which chunk" is a top-bits question
and every region becomes ranges of spatial_index.

Chunks are pixels named by their NUNIQ id ``4·4^k + ipix``.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ORDER = 29
#: mean pixel size at order 0, in degrees (sqrt of 4π/12 steradians)
ORDER0_SIZE_DEG = math.degrees(math.sqrt(4 * math.pi / 12))

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def spatial_index(ra: npt.ArrayLike, dec: npt.ArrayLike) -> IntArray:
    """Order-29 nested HEALPix index of each (ra, dec) in degrees (vectorised).

    >>> spatial_index([0.0, 45.0], [0.0, 90.0]).tolist()
    [1369094286720630784, 288230376151711743]
    """
    return pixel_of(ra, dec, ORDER)


def pixel_of(ra: npt.ArrayLike, dec: npt.ArrayLike, order: int) -> IntArray:
    """Nested pixel index at ``order`` of each (ra, dec) in degrees.

    >>> pixel_of([0.0, 360.0, 359.999999, -0.000001, 45.0], [0, 0, 0, 0, 90], 3).tolist()
    [304, 304, 293, 293, 63]
    """
    ra_a = np.asarray(ra, dtype=np.float64)
    dec_a = np.asarray(dec, dtype=np.float64)
    if not (np.all(np.isfinite(ra_a)) and np.all(np.abs(dec_a) <= 90.0)):
        from astropy import units as u  # its errors for NaN, infinities, |dec| > 90
        from astropy.coordinates import Latitude, Longitude
        from cdshealpix import nested

        lon, lat = Longitude(ra_a, unit=u.deg), Latitude(dec_a, unit=u.deg)
        return nested.lonlat_to_healpix(lon, lat, order, num_threads=0).astype(np.int64)
    lon, lat = np.broadcast_arrays(np.radians(np.mod(ra_a, 360.0)), np.radians(dec_a))
    lon, lat = np.atleast_1d(lon).astype(np.float64), np.atleast_1d(lat).astype(np.float64)
    ipix = np.empty(lon.shape, dtype=np.uint64)
    dx, dy = np.empty(lon.shape), np.empty(lon.shape)
    core().lonlat_to_healpix(
        np.full(lon.shape, order, np.uint8), lon, lat, ipix, dx, dy, np.uint16(0)
    )
    return ipix.astype(np.int64)


def pixel_centres(ipix: IntArray, order: int) -> tuple[FloatArray, FloatArray]:
    """(ra, dec) in degrees of the centres of nested pixels ``ipix`` at ``order``.

    >>> [round(float(v[0]), 6) for v in pixel_centres(np.array([0]), 0)]
    [45.0, 41.810315]
    """
    pixels = np.atleast_1d(np.asarray(ipix)).astype(np.uint64)
    lon, lat = np.empty(pixels.shape), np.empty(pixels.shape)
    depth = np.full(pixels.shape, order, np.uint8)
    core().healpix_to_lonlat(depth, pixels, 0.5, 0.5, lon, lat, np.uint16(0))
    return np.degrees(lon), np.degrees(lat)


@functools.cache
def core() -> Any:
    """cdshealpix's compiled core (its Rust functions), loaded without the package's
    Python wrappers, which import astropy to take astropy angles: that import was most
    of a ``qserv-py query``'s start. Once loaded, ``import cdshealpix`` finds it."""
    name = "cdshealpix.cdshealpix"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("cdshealpix")
    folders = package.submodule_search_locations if package else None
    found = [p for f in folders or () for p in Path(f).glob("cdshealpix*.so")]
    if not found:  # another layout: through the package
        from cdshealpix import cdshealpix as module

        return module
    loader = importlib.machinery.ExtensionFileLoader(name, str(found[0]))
    spec = importlib.util.spec_from_file_location(name, found[0], loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


def nuniq(order: int | IntArray, ipix: int | IntArray) -> IntArray:
    """NUNIQ id of pixel ``ipix`` at ``order``.

    >>> int(nuniq(0, 0)), int(nuniq(1, 47)), int(nuniq(29, 0))
    (4, 63, 1152921504606846976)
    """
    order_arr = np.asarray(order, dtype=np.int64)
    return np.asarray((np.int64(4) << (2 * order_arr)) + np.asarray(ipix, dtype=np.int64))


def order_ipix(uniq: int | IntArray) -> tuple[IntArray, IntArray]:
    """(order, ipix) of NUNIQ ids.

    >>> [a.tolist() for a in order_ipix(np.array([4, 63, 1152921504606846976]))]
    [[0, 1, 29], [0, 47, 0]]
    """
    u_arr = np.asarray(uniq, dtype=np.int64)
    # order = floor(log2(uniq / 4) / 2), exact for every id up to order 29
    order = (_bit_length(u_arr) - 3) // 2
    return order, u_arr - (np.int64(4) << (2 * order))


def _bit_length(values: IntArray) -> IntArray:
    out = np.zeros(values.shape, dtype=np.int64)
    v = values.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << shift)
        out[big] += shift
        v[big] >>= shift
    return out + (v > 0)


def index_range(uniq: int | IntArray) -> tuple[IntArray, IntArray]:
    """The half-open spatial_index range [lo, hi) of each NUNIQ pixel.

    >>> [int(x) for x in index_range(4)]
    [0, 288230376151711744]
    """
    order, ipix = order_ipix(uniq)
    shift = 2 * (ORDER - order)
    return ipix << shift, (ipix + 1) << shift


def ancestor(index: IntArray, order: int) -> IntArray:
    """The pixel at ``order`` containing each order-29 index."""
    return np.asarray(index, dtype=np.int64) >> (2 * (ORDER - order))


def mean_pixel_size_deg(order: int) -> float:
    return ORDER0_SIZE_DEG / 2**order


def neighbourhood_order(radius_deg: float) -> int:
    """The finest order whose 3×3 pixel blocks surely hold every circle of this radius.

    A point's pixel and its (up to 8) neighbours cover everything within 0.70 mean
    pixel sizes of the point (measured over random points, poles and base-pixel
    corners); 0.6 leaves a margin. Capped to [0, 29].

    >>> neighbourhood_order(1 / 60)
    11
    """
    if radius_deg <= 0:
        return ORDER
    order = math.floor(math.log2(0.6 * ORDER0_SIZE_DEG / radius_deg))
    return max(0, min(ORDER, order))


def neighbours(pixels: IntArray, order: int) -> IntArray:
    """Each pixel and its neighbours at ``order``: shape (n, 9), -1 where there is none."""
    if len(pixels) == 0:
        return np.empty((0, 9), dtype=np.int64)
    ipix = np.atleast_1d(np.asarray(pixels, dtype=np.uint64))
    out = np.zeros((*ipix.shape, 9), dtype=np.int64)
    core().neighbours(order, ipix, out, np.uint16(0))
    return out


def unit_vectors(ra: npt.ArrayLike, dec: npt.ArrayLike) -> FloatArray:
    """Unit vectors (n, 3) of (ra, dec) in degrees."""
    ra_r = np.radians(np.asarray(ra, dtype=np.float64))
    dec_r = np.radians(np.asarray(dec, dtype=np.float64))
    cos_dec = np.cos(dec_r)
    return np.stack([cos_dec * np.cos(ra_r), cos_dec * np.sin(ra_r), np.sin(dec_r)], axis=-1)


def angular_separation(
    ra1: npt.ArrayLike, dec1: npt.ArrayLike, ra2: npt.ArrayLike, dec2: npt.ArrayLike
) -> FloatArray:
    """Angular separation in degrees (the same Vincenty formula as ``qserv.ang_sep``)."""
    ra1, dec1, ra2, dec2 = (
        np.radians(np.asarray(x, dtype=np.float64)) for x in (ra1, dec1, ra2, dec2)
    )
    dra = ra2 - ra1
    num = np.hypot(
        np.cos(dec2) * np.sin(dra),
        np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra),
    )
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den))


def inside_ancestor(pixels: IntArray, levels: IntArray) -> npt.NDArray[np.bool_]:
    """Whether each pixel lies off the border of its ancestor ``levels`` orders coarser
    (nested scheme: its x and y inside the ancestor neither first nor last), so that all
    its 8 neighbours share that ancestor. False where ``levels`` < 2."""
    levels = np.asarray(levels, dtype=np.int64)
    shifts = np.clip(levels, 0, ORDER)
    sub = (pixels & ((np.int64(1) << (2 * shifts)) - 1)).astype(np.uint64)
    last = (np.int64(1) << shifts) - 1
    x, y = _even_bits(sub), _even_bits(sub >> np.uint64(1))
    return (levels >= 2) & (x > 0) & (x < last) & (y > 0) & (y < last)


def _even_bits(v: npt.NDArray[np.uint64]) -> IntArray:
    """The even bits of each value, packed (the x of a nested sub-index)."""
    v = v & np.uint64(0x5555555555555555)
    for shift, mask in (
        (1, 0x3333333333333333),
        (2, 0x0F0F0F0F0F0F0F0F),
        (4, 0x00FF00FF00FF00FF),
        (8, 0x0000FFFF0000FFFF),
        (16, 0x00000000FFFFFFFF),
    ):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v.astype(np.int64)
