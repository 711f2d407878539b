"""Inputs of the atmospheric correction at coarse resolution: pressure, ozone, water vapour, AOT.

Pure numpy/scipy. The aerosol retrieval follows the multi-temporal + multi-spectral idea of
MACCS/MAJA (Hagolle et al. 2015, Remote Sensing 7:2668-2691): on a window of clear land
pixels around each coarse pixel, the AOT is the one that minimises

- a multi-temporal term: squared differences between today's surface reflectance
  (blue, green, red) and that of the last clear date stored in the composite, on pixels whose
  reference is recent (:attr:`AotSettings.mt_max_age_days`: the term assumes an unchanged
  surface, which phenology and the drifting sun zenith break within weeks), and
- a multi-spectral term over dark vegetation: squared departures from a blue-red relation
  ``rho_blue = slope * rho_red + offset`` (Levy et al. 2007 use 0.49 and 0.005),

then estimates from windows with too few usable pixels or far from their neighbours are
rejected, gaps are filled by harmonic interpolation (flagged) and the field is smoothed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from l2a.kernels.rt import AtmosphereTerms, inverse

#: Sea-level standard pressure (hPa).
P0_HPA: Final[float] = 1013.25


def pressure_from_altitude(altitude_m: npt.ArrayLike) -> np.ndarray:
    """Surface pressure (hPa) of the standard atmosphere at ``altitude_m`` metres.

    ``P = 1013.25 (1 - 2.25577e-5 h) ** 5.25588`` (ICAO standard atmosphere, troposphere).
    NaN altitudes give sea-level pressure.
    """
    h = np.nan_to_num(np.asarray(altitude_m, dtype=np.float64), nan=0.0)
    h = np.clip(h, -500.0, 11_000.0)
    return P0_HPA * (1.0 - 2.25577e-5 * h) ** 5.25588


def ozone_climatology(lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike, day_of_year: int) -> np.ndarray:
    """Total ozone column (cm-atm) from the van Heuklon (1979) climatological formula.

    ``O3 = 235 + (A + C sin(0.9865 (D + F)) + 20 sin(H (lon + I))) sin^2(beta lat)`` Dobson units
    with hemisphere-dependent constants (north: A=150, beta=1.28, C=40, F=-30, H=3,
    I=20 for east longitudes else 0; south: A=100, beta=1.5, C=30, F=152.625, H=2, I=-75).
    A coarse climatology (about +-30 DU); pass a measured value through the settings when one
    is available. Returned in cm-atm (DU / 1000).
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    north = lat >= 0
    a = np.where(north, 150.0, 100.0)
    beta = np.where(north, 1.28, 1.5)
    c = np.where(north, 40.0, 30.0)
    f = np.where(north, -30.0, 152.625)
    h = np.where(north, 3.0, 2.0)
    i = np.where(north, np.where(lon > 0, 20.0, 0.0), -75.0)
    d = float(day_of_year)
    s = np.sin
    rad = np.pi / 180.0
    du = 235.0 + (a + c * s(0.9865 * (d + f) * rad) + 20.0 * s(h * (lon + i) * rad)) * s(beta * lat * rad) ** 2
    return np.clip(du, 200.0, 500.0) / 1000.0


# --------------------------------------------------------------------------------------------
# water vapour


@dataclass(frozen=True)
class WaterVapourSettings:
    """Settings of the B9/B8A water-vapour retrieval.

    Attributes
    ----------
    min_reflectance_b8a : float
        Minimum TOA reflectance of B8A (unitless) for a valid retrieval; darker pixels
        (water, shadows) have a ratio dominated by path radiance.
    surface_ratio : float
        Assumed surface reflectance ratio B9/B8A (unitless; about 1 for vegetation and soils).
    max_water_vapour : float
        Upper bound of the retrieval (g/cm2).
    default_water_vapour : float
        Value used when no pixel of the scene gives a retrieval (g/cm2).
    """

    min_reflectance_b8a: float = 0.1
    surface_ratio: float = 1.0
    max_water_vapour: float = 8.0
    default_water_vapour: float = 2.0


def water_vapour_from_ratio(
    toa_b9: npt.ArrayLike,
    toa_b8a: npt.ArrayLike,
    air_mass: npt.ArrayLike,
    transmission_b9: Callable[[np.ndarray, np.ndarray], np.ndarray],
    transmission_b8a: Callable[[np.ndarray, np.ndarray], np.ndarray],
    settings: WaterVapourSettings = WaterVapourSettings(),
    iterations: int = 40,
) -> np.ndarray:
    """Column water vapour (g/cm2) from the B9/B8A TOA ratio; NaN where not retrievable.

    Solves ``toa_b9 / toa_b8a = surface_ratio * t9(u) / t8a(u)`` for ``u`` by bisection,
    with ``t*(air_mass, u)`` the model's two-way water-vapour transmissions (monotonic in ``u``).
    """
    b9 = np.asarray(toa_b9, dtype=np.float64)
    b8a = np.asarray(toa_b8a, dtype=np.float64)
    m = np.broadcast_to(np.asarray(air_mass, dtype=np.float64), b9.shape)
    valid = np.isfinite(b9) & np.isfinite(b8a) & (b8a >= settings.min_reflectance_b8a) & (b9 > 0)
    ratio = np.where(valid, b9 / np.where(valid, b8a, 1.0), 1.0) / settings.surface_ratio
    lo = np.zeros(b9.shape)
    hi = np.full(b9.shape, settings.max_water_vapour)

    def model_ratio(u: np.ndarray) -> np.ndarray:
        return transmission_b9(m, u) / transmission_b8a(m, u)

    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        too_wet = model_ratio(mid) < ratio  # model absorbs more than observed: less vapour
        hi = np.where(too_wet, mid, hi)
        lo = np.where(too_wet, lo, mid)
    u = 0.5 * (lo + hi)
    # a ratio beyond the model's range (above a dry atmosphere or below the maximum) is invalid
    valid &= (ratio <= model_ratio(np.zeros_like(u)) * 1.02) & (ratio >= model_ratio(hi * 0 + settings.max_water_vapour))
    return np.where(valid, u, np.nan)


# --------------------------------------------------------------------------------------------
# gap filling and smoothing


def fill_gaps(field: npt.ArrayLike, default: float) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN cells by harmonic (Laplace) interpolation of the valid ones.

    The filled values solve the discrete Laplace equation inside the gaps with the valid
    cells as boundary values (zero gradient at the grid edges): smooth, free of overshoot,
    exact for planes inside the grid. A field without any valid cell takes ``default``.

    Returns
    -------
    filled : float64 array without NaN.
    interpolated : bool array, True where the value was filled.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    f = np.asarray(field, dtype=np.float64)
    missing = ~np.isfinite(f)
    out = np.where(missing, 0.0, f)
    if not missing.any():
        return out, missing
    if missing.all():
        return np.full(f.shape, default), missing
    ny, nx = f.shape
    idx = -np.ones(f.shape, dtype=np.int64)
    idx[missing] = np.arange(int(missing.sum()))
    n = int(missing.sum())
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    rhs = np.zeros(n)
    diag = np.zeros(n)
    my, mx = np.nonzero(missing)
    me = idx[my, mx]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        yy, xx = my + dy, mx + dx
        inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        diag += inside
        yy_i, xx_i, me_i = yy[inside], xx[inside], me[inside]
        nb_missing = missing[yy_i, xx_i]
        rows.append(me_i[nb_missing])
        cols.append(idx[yy_i[nb_missing], xx_i[nb_missing]])
        vals.append(-np.ones(int(nb_missing.sum())))
        np.add.at(rhs, me_i[~nb_missing], out[yy_i[~nb_missing], xx_i[~nb_missing]])
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    out[missing] = spsolve(a, rhs)
    return out, missing


def smooth(field: npt.ArrayLike, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing (``sigma_px`` pixels, edges replicated) of a gap-free field."""
    f = np.asarray(field, dtype=np.float64)
    if sigma_px <= 0:
        return f.copy()
    return ndimage.gaussian_filter(f, sigma_px, mode="nearest")


def reject_outliers(field: npt.ArrayLike, size_px: int, max_deviation: float) -> np.ndarray:
    """NaN where a value departs from the median of its ``size_px`` neighbourhood by more than ``max_deviation``."""
    f = np.asarray(field, dtype=np.float64)
    if not np.isfinite(f).any():
        return f.copy()
    filled = np.where(np.isfinite(f), f, np.nanmedian(f))
    med = ndimage.median_filter(filled, size=max(int(size_px), 1), mode="nearest")
    return np.where(np.abs(f - med) > max_deviation, np.nan, f)


# --------------------------------------------------------------------------------------------
# aerosol optical thickness


@dataclass(frozen=True)
class AotSettings:
    """Settings of the aerosol optical thickness (AOT at 550 nm) retrieval at coarse resolution.

    Attributes
    ----------
    aot_candidates : tuple of float
        AOT values (unitless) at which the cost is evaluated; the minimum is refined by a
        parabola through its neighbours.
    window_px : int
        Side of the square window of coarse pixels whose costs are summed for one estimate
        (e.g. 5 x 240 m = 1.2 km … use larger windows on full tiles).
    min_pixels : int
        Minimum number of usable pixels in a window for a valid estimate.
    mt_bands : tuple of str
        Bands of the multi-temporal term.
    mt_weight : float
        Weight of the multi-temporal term.
    mt_max_change : float
        Pixels whose surface reflectance (at the default AOT) differs from the composite's by
        more than this (unitless, any MT band) are left out of the multi-temporal term
        (surface changes).
    mt_max_age_days : float
        Pixels whose composite reference is older than this (days) are left out of the
        multi-temporal term. The term assumes the surface did not change since the reference;
        over weeks it does, evenly enough to pass ``mt_max_change`` (on the Slovenia 2015
        series every band, SWIR included, darkens by about 20 % from 11 July to 30 August
        while the sun zenith goes from 27 to 39 degrees), and the term then pulls the AOT
        towards the value that hides the change. 30 days is six revisits of the
        two-satellite constellation: several cloudy dates in a row still leave a usable
        reference.
    ms_weight : float
        Weight of the multi-spectral (dark vegetation) term.
    dark_ndvi_min : float
        Minimum TOA NDVI (B08, B04) of a dark-vegetation pixel.
    dark_red_max : float
        Maximum TOA red (B04) reflectance of a dark-vegetation pixel.
    blue_red_slope, blue_red_offset : float
        Surface relation over dark vegetation ``rho_B02 = slope * rho_B04 + offset``.
    outlier_size_px : int
        Neighbourhood (coarse pixels) of the median used to reject outliers.
    outlier_max_deviation : float
        Maximum departure (AOT) from that median.
    smooth_sigma_px : float
        Gaussian width (coarse pixels) of the final smoothing.
    default_aot : float
        AOT used when no window of the scene gives an estimate.
    """

    aot_candidates: tuple[float, ...] = tuple(float(v) for v in np.round(np.arange(0.0, 1.2001, 0.02), 4))
    window_px: int = 5
    min_pixels: int = 3
    mt_bands: tuple[str, ...] = ("B02", "B03", "B04")
    mt_weight: float = 1.0
    mt_max_change: float = 0.05
    mt_max_age_days: float = 30.0
    ms_weight: float = 1.0
    dark_ndvi_min: float = 0.6
    dark_red_max: float = 0.08
    blue_red_slope: float = 0.49
    blue_red_offset: float = 0.005
    outlier_size_px: int = 5
    outlier_max_deviation: float = 0.15
    smooth_sigma_px: float = 1.0
    default_aot: float = 0.1


@dataclass(frozen=True)
class AotResult:
    """AOT retrieval at coarse resolution.

    Attributes
    ----------
    aot : float64 field, no NaN.
    interpolated : True where the value is not a direct estimate (IAB bit 1).
    raw : the estimates before outlier rejection, gap filling and smoothing (NaN = none).
    n_mt, n_ms : usable pixels per window for each term.
    """

    aot: np.ndarray
    interpolated: np.ndarray
    raw: np.ndarray
    n_mt: np.ndarray
    n_ms: np.ndarray


def surface_reflectance_curves(
    toa: Mapping[str, np.ndarray],
    terms_at: Callable[[str, float], AtmosphereTerms],
    candidates: tuple[float, ...],
) -> dict[str, np.ndarray]:
    """Surface reflectance of each band for each candidate AOT: ``{band: (K, H, W)}``."""
    return {
        b: np.stack([inverse(terms_at(b, tau), np.asarray(v, dtype=np.float64)) for tau in candidates])
        for b, v in toa.items()
    }


def _window_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sum over a ``size`` x ``size`` window of the last two axes (edges: reflect)."""
    size = max(int(size), 1)
    axes = (a.ndim - 2, a.ndim - 1)
    return ndimage.uniform_filter(a, size=size, axes=axes, mode="constant", cval=0.0) * float(size * size)


def estimate_aot(
    toa: Mapping[str, np.ndarray],
    usable: np.ndarray,
    terms_at: Callable[[str, float], AtmosphereTerms],
    composite_sre: Mapping[str, np.ndarray] | None = None,
    settings: AotSettings = AotSettings(),
    composite_age_days: np.ndarray | None = None,
) -> AotResult:
    """AOT at 550 nm on the coarse grid.

    Parameters
    ----------
    toa : TOA reflectance at coarse resolution of at least B02, B04, B08 and the MT bands.
    usable : clear, valid, land, snow-free pixels (bool, same shape).
    terms_at : ``terms_at(band, aot) -> AtmosphereTerms`` over the coarse grid (the caller
        binds geometry, pressure, water vapour and ozone).
    composite_sre : surface reflectance of the last clear date per band (NaN where none);
        ``None`` for a single-date (multi-spectral only) retrieval.
    settings : see :class:`AotSettings`.
    composite_age_days : days between today and the date of each pixel's composite
        reference (same shape; NaN where unknown: kept; negative for a later reference, as in
        BACKWARD mode). Pixels more than ``settings.mt_max_age_days`` away, before or after,
        are left out of the multi-temporal term. ``None``: no age limit (composites written
        before the reference dates were kept).
    """
    cands = tuple(settings.aot_candidates)
    k = len(cands)
    bands = {"B02", "B04"} | (set(settings.mt_bands) if composite_sre is not None else set())
    curves = surface_reflectance_curves({b: toa[b] for b in sorted(bands)}, terms_at, cands)
    shape = np.asarray(toa["B04"]).shape
    cost = np.zeros((k, *shape))

    # multi-spectral term over dark vegetation
    red = np.asarray(toa["B04"], dtype=np.float64)
    nir = np.asarray(toa["B08"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
    dark = usable & (ndvi >= settings.dark_ndvi_min) & (red <= settings.dark_red_max)
    dark &= np.all(np.isfinite(curves["B02"]) & np.isfinite(curves["B04"]), axis=0)
    resid = curves["B02"] - (settings.blue_red_slope * curves["B04"] + settings.blue_red_offset)
    cost += settings.ms_weight * np.where(dark, resid * resid, 0.0)
    n_ms = _window_sum(dark.astype(np.float64), settings.window_px)

    # multi-temporal term against the composite
    mt = np.zeros(shape, dtype=bool)
    if composite_sre is not None and settings.mt_weight > 0:
        mt = usable.copy()
        if composite_age_days is not None:
            # either way in time: BACKWARD mode runs dates in reverse, its references are later
            age = np.abs(np.asarray(composite_age_days, dtype=np.float64))
            mt &= ~(age > settings.mt_max_age_days)  # NaN (unknown) compares False: kept
        i_def = int(np.argmin(np.abs(np.asarray(cands) - settings.default_aot)))
        for b in settings.mt_bands:
            ref = np.asarray(composite_sre.get(b, np.full(shape, np.nan)), dtype=np.float64)
            mt &= np.isfinite(ref) & np.all(np.isfinite(curves[b]), axis=0)
            mt &= np.abs(curves[b][i_def] - np.nan_to_num(ref)) <= settings.mt_max_change
        for b in settings.mt_bands:
            ref = np.nan_to_num(np.asarray(composite_sre[b], dtype=np.float64))
            d = curves[b] - ref
            cost += settings.mt_weight * np.where(mt, d * d, 0.0) / len(settings.mt_bands)
    n_mt = _window_sum(mt.astype(np.float64), settings.window_px)

    wcost = _window_sum(cost, settings.window_px)
    i_min = np.argmin(wcost, axis=0)
    # parabolic refinement around the minimum
    cand = np.asarray(cands)
    i0 = np.clip(i_min, 1, k - 2)
    c_m = np.take_along_axis(wcost, (i0 - 1)[None], 0)[0]
    c_0 = np.take_along_axis(wcost, i0[None], 0)[0]
    c_p = np.take_along_axis(wcost, (i0 + 1)[None], 0)[0]
    den = c_m - 2 * c_0 + c_p
    step = cand[i0 + 1] - cand[i0]
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(den > 0, 0.5 * (c_m - c_p) / den, 0.0)
    refined = np.where((i_min == i0) & (np.abs(off) <= 1.0), cand[i0] + off * step, cand[i_min])
    enough = (n_ms + n_mt) >= settings.min_pixels
    raw = np.where(enough, np.clip(refined, cand[0], cand[-1]), np.nan)

    cleaned = reject_outliers(raw, settings.outlier_size_px, settings.outlier_max_deviation)
    filled, interpolated = fill_gaps(cleaned, settings.default_aot)
    aot = np.clip(smooth(filled, settings.smooth_sigma_px), cand[0], cand[-1])
    return AotResult(aot=aot, interpolated=interpolated, raw=raw, n_mt=n_mt, n_ms=n_ms)
