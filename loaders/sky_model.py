"""A model of the sky and the survey for synthetic data releases.

- **Positions** follow a three-part density in Galactic coordinates: a uniform
  (extragalactic and halo) part, an exponential disk in latitude and a Gaussian bulge at
  the Galactic centre, so objects crowd the plane and thin out toward the Galactic poles.
  Each part is sampled directly (no rejection on the density) and the parts are shuffled
  together. Two circles, like a survey's bright-star masks, hold no objects (:data:`MASKS`).
- **Photometry**: r magnitudes with dN/dm ∝ 10^(0.3 m) on [16, 27]; stellar or galaxy
  colours in ugrizy; fluxes in nJy (AB: ``flux = 10^((31.4 - mag)/2.5)``); errors from a
  sky term (a 5-sigma depth per band) and a 0.5 % floor, so S/N falls toward the faint
  end. Galaxies' PSF fluxes are a fraction of their CModel fluxes.
- **Variability**: a few per cent of objects have sinusoidal light curves.
- **Visits**: epochs over five years, bands, seeing, pointings and depths of CCD images.

Everything is vectorised numpy. The Galactic ↔ ICRS rotation is a constant matrix (as
astropy has it), applied without BLAS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Float32Array = npt.NDArray[np.float32]
Int8Array = npt.NDArray[np.int8]
F = TypeVar("F", np.float32, np.float64)

#: ICRS → Galactic rotation (``gal = ICRS_TO_GALACTIC @ icrs`` on unit vectors), as astropy
#: has it; its transpose is Galactic → ICRS.
ICRS_TO_GALACTIC = np.array(
    [
        [-0.05487565771259163, -0.8734370519556159, -0.48383507361671546],
        [0.4941094371927268, -0.4448297212232952, 0.7469821839866676],
        [-0.8676661375596576, -0.19807633727300053, 0.4559838136873016],
    ]
)
GALACTIC_TO_ICRS = ICRS_TO_GALACTIC.T.copy()

#: Share of objects in each density component: uniform, Galactic disk, Galactic bulge.
COMPONENT_WEIGHTS = (0.40, 0.45, 0.15)
ISOTROPIC, DISK, BULGE = 0, 1, 2
#: exponential scale height of the disk in Galactic latitude (degrees)
DISK_SCALE_DEG = 6.0
#: Gaussian width of the bulge around the Galactic centre (degrees)
BULGE_SIGMA_DEG = 7.0


@dataclass(frozen=True)
class Mask:
    """A circle of sky with no objects (a bright-star mask)."""

    name: str
    ra: float  # degrees, ICRS
    dec: float
    radius: float  # degrees


#: The empty patches: around Sirius, in the Galactic plane (b ≈ -8.9°), and around
#: Arcturus, near the north Galactic pole (b ≈ +69°).
MASKS = (
    Mask("Sirius", 101.2871553, -16.7161159, 3.0),
    Mask("Arcturus", 213.9153, 19.1824, 2.0),
)

BANDS = "ugrizy"
#: AB zero point of fluxes in nJy: mag = ZERO_POINT - 2.5 log10(flux)
ZERO_POINT = 31.4
MAG_MIN, MAG_MAX, MAG_SLOPE = 16.0, 27.0, 0.3
#: 5-sigma point-source depth of the coadds, per band
COADD_DEPTH = np.array([25.6, 26.9, 27.0, 26.5, 25.8, 24.8])
#: 5-sigma point-source depth of one 30 s visit in 0.7" seeing, per band
VISIT_DEPTH = np.array([23.5, 24.6, 24.3, 23.8, 23.2, 22.3])
#: relative flux error floor (calibration)
FLUX_ERROR_FLOOR = 0.005
# colours as mag_band - mag_r = OFFSET + SLOPE * t, t ~ N(0, 1) per object
_STAR_OFFSET = np.array([1.8, 0.6, 0.0, -0.25, -0.35, -0.40])
_STAR_SLOPE = np.array([1.0, 0.4, 0.0, -0.20, -0.30, -0.35])
_GALAXY_OFFSET = np.array([1.2, 0.5, 0.0, -0.35, -0.50, -0.60])
_GALAXY_SLOPE = np.array([0.6, 0.35, 0.0, -0.20, -0.30, -0.35])
_GALAXY_OFFSET32 = _GALAXY_OFFSET.astype(np.float32)
_GALAXY_SLOPE32 = _GALAXY_SLOPE.astype(np.float32)
_STAR_OFFSET_DIFF = (_STAR_OFFSET - _GALAXY_OFFSET).astype(np.float32)
_STAR_SLOPE_DIFF = (_STAR_SLOPE - _GALAXY_SLOPE).astype(np.float32)


def radec_to_vec(ra: npt.ArrayLike, dec: npt.ArrayLike) -> FloatArray:
    """Unit vectors, shape (3, n): rows x, y, z, of positions in degrees."""
    a = np.radians(np.asarray(ra, dtype=np.float64))
    d = np.radians(np.asarray(dec, dtype=np.float64))
    cd = np.cos(d)
    return np.stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)])


def vec_to_radec(vec: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(lon, lat) in degrees of unit vectors of shape (3, n); lon in [0, 360)."""
    lon = np.degrees(np.arctan2(vec[1], vec[0]))
    lon %= 360.0
    lon[lon >= 360.0] = 0.0  # -tiny % 360 rounds to 360
    lat = np.degrees(np.arcsin(np.clip(vec[2], -1.0, 1.0)))
    return lon, lat


def rotate(matrix: FloatArray, vec: FloatArray) -> FloatArray:
    """``matrix @ vec`` for vectors (3, n), without BLAS (whose threads spin on busy hosts)."""
    return np.stack([matrix[k, 0] * vec[0] + matrix[k, 1] * vec[1] + matrix[k, 2] * vec[2]
                     for k in range(3)])  # fmt: skip


def icrs_to_galactic(ra: npt.ArrayLike, dec: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Galactic (l, b) in degrees of ICRS (ra, dec) in degrees."""
    return vec_to_radec(rotate(ICRS_TO_GALACTIC, radec_to_vec(ra, dec)))


def galactic_to_icrs(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """ICRS (ra, dec) in degrees of Galactic (l, b) in degrees."""
    return vec_to_radec(rotate(GALACTIC_TO_ICRS, radec_to_vec(lon, lat)))


def in_masks(vec: FloatArray) -> BoolArray:
    """True for the unit vectors (3, n) that fall in one of :data:`MASKS`."""
    inside = np.zeros(vec.shape[1], dtype=bool)
    for mask in MASKS:
        c = radec_to_vec(mask.ra, mask.dec)
        inside |= c[0] * vec[0] + c[1] * vec[1] + c[2] * vec[2] > math.cos(
            math.radians(mask.radius)
        )
    return inside


def _collect(n: int, draw: Callable[[int], FloatArray]) -> FloatArray:
    """``n`` accepted draws from a rejection sampler ``draw(m)`` (≤ m along the last axis)."""
    parts: list[FloatArray] = []
    have = 0
    while have < n:
        got = draw(int((n - have) * 1.3) + 16)
        parts.append(got)
        have += got.shape[-1]
    return np.concatenate(parts, axis=-1)[..., :n]


def _unit_disk(rng: np.random.Generator, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``n`` points (x, y) uniform in the unit disk, and x² + y² (never 0)."""

    def draw(m: int) -> FloatArray:
        x, y = rng.uniform(-1.0, 1.0, (2, m))
        s = x * x + y * y
        keep = (s < 1.0) & (s > 1e-12)
        return np.stack([x[keep], y[keep], s[keep]])

    x, y, s = _collect(n, draw)
    return x, y, s


def _disk_latitudes(rng: np.random.Generator, n: int) -> FloatArray:
    """Galactic latitudes (radians) with density per unit area ∝ exp(-|b|/h)."""
    h = math.radians(DISK_SCALE_DEG)
    tail = -math.expm1(-(math.pi / 2) / h)

    def draw(m: int) -> FloatArray:
        b = -h * np.log1p(-rng.random(m) * tail)  # truncated exponential in |b|
        return b[rng.random(m) < np.cos(b)]  # area element: cos b

    b = _collect(n, draw)
    return np.where(rng.random(n) < 0.5, -b, b)


def _galactic_vectors(rng: np.random.Generator, counts: IntArray) -> FloatArray:
    """Galactic unit vectors (3, n): ``counts[c]`` from each component c, in that order."""
    n_iso, n_disk, n_bulge = (int(c) for c in counts)
    x, y, s = _unit_disk(rng, n_iso)  # Marsaglia (1972): uniform on the sphere
    f = 2.0 * np.sqrt(1.0 - s)
    iso = np.stack([x * f, y * f, 1.0 - 2.0 * s])
    x, y, s = _unit_disk(rng, n_disk)  # uniform longitude: (x, y) / sqrt(s)
    lat = _disk_latitudes(rng, n_disk)
    f = np.cos(lat) / np.sqrt(s)
    disk = np.stack([x * f, y * f, np.sin(lat)])
    y, z = rng.normal(0.0, math.radians(BULGE_SIGMA_DEG), (2, n_bulge))
    f = 1.0 / np.sqrt(1.0 + y * y + z * z)
    bulge = np.stack([f, y * f, z * f])
    return np.concatenate([iso, disk, bulge], axis=1)


def sample_positions(
    rng: np.random.Generator, n: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int8]]:
    """``n`` positions (ra, dec in degrees, ICRS) and the density component of each.

    Positions inside :data:`MASKS` are rejected and drawn again, so exactly ``n`` come back.
    """
    ras: list[FloatArray] = []
    decs: list[FloatArray] = []
    comps: list[npt.NDArray[np.int8]] = []
    have = 0
    while have < n:
        m = int((n - have) * 1.01) + 16
        counts = rng.multinomial(m, COMPONENT_WEIGHTS)
        vec = rotate(GALACTIC_TO_ICRS, _galactic_vectors(rng, counts))
        ra, dec = vec_to_radec(vec)
        # shuffle the components together, dropping what falls in a mask
        order = rng.permutation(m)
        order = order[~in_masks(vec)[order]]
        ras.append(ra[order])
        decs.append(dec[order])
        comps.append(np.repeat(np.arange(3, dtype=np.int8), counts)[order])
        have += len(order)
    return np.concatenate(ras)[:n], np.concatenate(decs)[:n], np.concatenate(comps)[:n]


def normal32(rng: np.random.Generator, shape: int | tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Standard normal float32 noise (Box-Muller: twice as fast as numpy's, tails to 5.7 sigma)."""
    size = int(np.prod(shape))
    half = (size + 1) // 2
    u = rng.random((2, half), dtype=np.float32)
    r = np.sqrt(np.float32(-2.0) * np.log1p(-u[0]))
    theta = u[1] * np.float32(2 * math.pi)
    out = np.empty((2, half), dtype=np.float32)
    np.multiply(r, np.cos(theta), out=out[0])
    np.multiply(r, np.sin(theta), out=out[1])
    return out.reshape(-1)[:size].reshape(shape)


def offset_positions(
    ra: FloatArray, dec: FloatArray, dx_deg: FloatArray, dy_deg: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Positions moved by small tangent-plane offsets (east, north) in degrees."""
    cosd = np.maximum(np.cos(np.radians(dec).astype(np.float32)), np.float32(1e-6))
    new_dec = dec + dy_deg
    # across a pole: reflect the latitude and turn the longitude by 180°
    over = np.abs(new_dec) > 90.0
    new_ra = ra + dx_deg / cosd
    new_dec = np.where(over, np.sign(new_dec) * 180.0 - new_dec, new_dec)
    new_ra = np.where(over, new_ra + 180.0, new_ra) % 360.0
    new_ra[new_ra >= 360.0] = 0.0
    return new_ra, new_dec


# -- skymap: tracts in rings of declination, 7 x 7 patches per tract --------------------

RING_DEG = 1.5
N_RINGS = 120
PATCHES_PER_SIDE = 7
_RING_CENTRES = -90.0 + RING_DEG * (np.arange(N_RINGS) + 0.5)
_TRACTS_PER_RING = np.maximum(1, np.floor(360.0 * np.cos(np.radians(_RING_CENTRES)) / RING_DEG))
_TRACTS_PER_RING = _TRACTS_PER_RING.astype(np.int64)
_RING_OFFSET = np.concatenate([[0], np.cumsum(_TRACTS_PER_RING)[:-1]])


def tract_patch(
    ra: FloatArray, dec: FloatArray
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Tract and patch of each position: rings of 1.5° in dec, cut in tracts of ~1.5° in ra."""
    yf = (dec + 90.0) / RING_DEG
    ring = np.clip(yf.astype(np.int64), 0, N_RINGS - 1)
    per = _TRACTS_PER_RING[ring]
    xf = ra / 360.0 * per
    col = np.minimum(xf.astype(np.int64), per - 1)
    tract = _RING_OFFSET[ring] + col
    px = np.clip(((xf - col) * PATCHES_PER_SIDE).astype(np.int64), 0, PATCHES_PER_SIDE - 1)
    py = np.clip(((yf - ring) * PATCHES_PER_SIDE).astype(np.int64), 0, PATCHES_PER_SIDE - 1)
    return tract.astype(np.int32), (py * PATCHES_PER_SIDE + px).astype(np.int32)


# -- photometry ---------------------------------------------------------------------------


_LN10_2_5 = math.log(10.0) / 2.5


def mag_to_flux(mag: npt.ArrayLike) -> FloatArray:
    """AB magnitude → flux in nJy."""
    return np.exp((ZERO_POINT - np.asarray(mag, dtype=np.float64)) * _LN10_2_5)


def _flux32(mag: Float32Array) -> Float32Array:
    """:func:`mag_to_flux` in float32."""
    return np.exp((np.float32(ZERO_POINT) - mag) * np.float32(_LN10_2_5))


def flux_to_mag(flux: npt.ArrayLike) -> FloatArray:
    """Flux in nJy → AB magnitude (NaN for flux ≤ 0)."""
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, ZERO_POINT - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def sample_r_magnitudes(rng: np.random.Generator, n: int) -> FloatArray:
    """r magnitudes with dN/dm ∝ 10^(0.3 m) on [16, 27] (inverse CDF)."""
    lo, hi = 10.0 ** (MAG_SLOPE * MAG_MIN), 10.0 ** (MAG_SLOPE * MAG_MAX)
    return np.log10(lo + rng.random(n) * (hi - lo)) / MAG_SLOPE


def r_magnitude_mean(fn: Callable[[FloatArray], FloatArray]) -> float:
    """Mean of ``fn(m)`` over the r-magnitude distribution (numerical integral)."""
    m = np.linspace(MAG_MIN, MAG_MAX, 20001)
    pdf = 10.0 ** (MAG_SLOPE * (m - MAG_MAX))
    return float(np.sum(fn(m) * pdf) / np.sum(pdf))


def star_probability(r_mag: FloatArray, component: npt.NDArray[np.int8]) -> FloatArray:
    """Chance that an object is a star: high in the disk and bulge, and when bright."""
    halo = 0.05 + 0.6 / (1.0 + np.exp(r_mag - 20.5))
    return np.where(component == ISOTROPIC, halo, 0.9)


def sky_sigma(depth_mag: npt.ArrayLike) -> FloatArray:
    """Flux error (nJy) of a faint point source where the 5-sigma depth is ``depth_mag``."""
    return mag_to_flux(depth_mag) / 5.0


def flux_error(flux: npt.NDArray[F], sky: npt.NDArray[F]) -> npt.NDArray[F]:
    """Flux error: sky noise plus the calibration floor (in the dtype of the inputs)."""
    return np.sqrt(sky * sky + (FLUX_ERROR_FLOOR * FLUX_ERROR_FLOOR) * (flux * flux))


@dataclass(frozen=True)
class Photometry:
    """Coadd photometry of a batch of objects; 2-d arrays are (band, object), float32."""

    star: BoolArray
    psf_true: Float32Array  # noise-free PSF flux
    psf_flux: Float32Array
    psf_err: Float32Array
    cmodel_flux: Float32Array
    cmodel_err: Float32Array
    extendedness: Float32Array  # 0 or 1, as measured (noisy when faint)


def sample_photometry(
    rng: np.random.Generator, r_mag: FloatArray, component: npt.NDArray[np.int8]
) -> Photometry:
    """Stars or galaxies with ugrizy colours, and their measured coadd fluxes.

    Galaxies have a half-light radius that shrinks toward the faint end, so their PSF flux
    is a fraction of their CModel (total) flux; the coadd depth varies by ±0.1 mag.
    Computed in float32 (7 digits are plenty, and half the memory traffic).
    """
    n = len(r_mag)
    f32 = np.float32
    star = rng.random(n) < star_probability(r_mag, component)
    t = normal32(rng, n)
    mag = (_GALAXY_OFFSET32[:, None] + _GALAXY_SLOPE32[:, None] * t) + r_mag.astype(f32)
    mag += star * (_STAR_OFFSET_DIFF[:, None] + _STAR_SLOPE_DIFF[:, None] * t)
    # colour scatter: uniform with a standard deviation of 0.05 mag
    mag += (rng.random((6, n), dtype=f32) - f32(0.5)) * f32(0.1732)
    flux = _flux32(mag)
    size = rng.lognormal(math.log(0.8), 0.4, n) * np.exp(-0.08 * math.log(10) * (r_mag - 20.0))
    psf_fraction = np.where(star, 1.0, 1.0 / (1.0 + (size / 0.5) ** 2)).astype(f32)
    psf_true = flux * psf_fraction
    depth = rng.normal(0.0, 0.1, n).astype(f32)
    sky = sky_sigma(COADD_DEPTH).astype(f32)[:, None] * _flux32(f32(ZERO_POINT) + depth)
    psf_err = flux_error(psf_true, sky)
    cmodel_err = flux_error(flux, sky)
    cmodel_err *= np.where(star, f32(1.02), 1.0 / np.sqrt(psf_fraction))
    psf = psf_true + psf_err * normal32(rng, (6, n))
    flux += cmodel_err * normal32(rng, (6, n))  # now the measured CModel flux
    # star/galaxy separation: a coin toss at low S/N
    snr2 = psf_true / psf_err
    snr2 *= snr2
    confused = rng.random((6, n), dtype=f32) * (f32(1.0) + snr2 / f32(25.0)) < f32(0.5)
    extended = (confused ^ ~star).astype(f32)
    return Photometry(star, psf_true, psf, psf_err, flux, cmodel_err, extended)


# -- variability -------------------------------------------------------------------------


@dataclass(frozen=True)
class Variability:
    """Sinusoidal light curves: flux · (1 + amplitude · sin(2π mjd / period + phase))."""

    variable: BoolArray
    amplitude: FloatArray  # 0 where not variable
    period: FloatArray  # days
    phase: FloatArray


def sample_variability(rng: np.random.Generator, star: BoolArray) -> Variability:
    """About 5 % of stars and 1 % of galaxies (AGN) vary, by 2-50 %, over 0.1-1000 days."""
    variable = rng.random(len(star)) < np.where(star, 0.05, 0.01)
    k = int(variable.sum())
    params = np.zeros((3, len(star)))
    params[:, variable] = [
        np.exp(rng.uniform(math.log(0.02), math.log(0.5), k)),
        np.exp(rng.uniform(math.log(0.1), math.log(1000.0), k)),
        rng.uniform(0.0, 2 * math.pi, k),
    ]
    return Variability(variable, params[0], params[1], params[2])


def epoch_flux(
    flux: Float32Array, var: Variability, obj: IntArray, band: Int8Array, mjd: FloatArray
) -> Float32Array:
    """``flux[band, obj]`` at epochs ``mjd``, with variability (a new array)."""
    out = flux[band, obj]
    v = var.variable[obj]
    if v.any():
        o = obj[v]
        phase = 2 * math.pi * mjd[v] / var.period[o] + var.phase[o]
        out[v] *= 1.0 + var.amplitude[o] * np.sin(phase)
    return out


# -- the survey's visits ------------------------------------------------------------------

MJD_START, SURVEY_DAYS = 60000.0, 5 * 365.25
#: share of visits in each of ugrizy
BAND_FREQUENCY = (0.07, 0.09, 0.22, 0.22, 0.20, 0.20)
#: detectors of each visit: the central raft, 3 x 3 CCDs 0.23° apart
DETECTORS = np.arange(90, 99)
_DETECTOR_XY = np.array([(x, y) for y in (-1, 0, 1) for x in (-1, 0, 1)], dtype=float) * 0.23


@dataclass(frozen=True)
class Ccds:
    """The CCD images of ``n`` visits: one entry per (visit, detector), in time order."""

    visit: IntArray  # 0 .. n-1
    detector: IntArray
    band: Int8Array
    mjd: FloatArray
    ra: FloatArray  # CCD centre
    dec: FloatArray
    rotation: FloatArray  # degrees
    seeing: FloatArray  # FWHM, arcsec
    zero_point: FloatArray
    sky: Float32Array  # flux error (nJy) of a faint point source


def sample_visits(rng: np.random.Generator, n: int) -> Ccds:
    """``n`` visits over five years from MJD 60000, each 30 s, pointed south of dec +30°."""
    # nights over five years; in each, visits between 0h and 8h UTC (night in Chile)
    mjd = np.sort(MJD_START + rng.integers(0, int(SURVEY_DAYS), n) + rng.uniform(0.0, 0.35, n))
    band = rng.choice(6, size=n, p=BAND_FREQUENCY).astype(np.int8)
    seeing = np.clip(rng.lognormal(math.log(0.8), 0.2, n), 0.5, 1.5)
    zero_point = ZERO_POINT + rng.normal(0.0, 0.03, n)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, math.sin(math.radians(30.0)), n)))
    rotation = rng.uniform(0.0, 360.0, n)

    d = len(DETECTORS)
    rep = np.repeat(np.arange(n), d)
    theta = np.radians(rotation[rep])
    gx, gy = np.tile(_DETECTOR_XY[:, 0], n), np.tile(_DETECTOR_XY[:, 1], n)
    dx = gx * np.cos(theta) - gy * np.sin(theta)
    dy = gx * np.sin(theta) + gy * np.cos(theta)
    ccd_ra, ccd_dec = offset_positions(ra[rep], dec[rep], dx, dy)
    ccd_seeing = np.clip(seeing[rep] * (1.0 + rng.normal(0.0, 0.02, n * d)), 0.5, 1.5)
    depth = VISIT_DEPTH[band[rep]] - 2.5 * np.log10(ccd_seeing / 0.7)
    return Ccds(
        visit=rep,
        detector=np.tile(DETECTORS, n),
        band=band[rep],
        mjd=mjd[rep],
        ra=ccd_ra,
        dec=ccd_dec,
        rotation=rotation[rep],
        seeing=ccd_seeing,
        zero_point=zero_point[rep] + rng.normal(0.0, 0.01, n * d),
        sky=sky_sigma(depth).astype(np.float32),
    )
