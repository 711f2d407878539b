"""Cloud kernels of the multi-temporal MACCS/MAJA method (pure numpy/scipy).

Every function works on plain 2-D ``numpy`` arrays on one grid (the coarse working grid of
the mask core, or the full-resolution grid for the edge refinement). Thresholds are passed in
as arguments; their documented defaults live in :class:`l2a.masks.MaskSettings`.

References
----------
- Hagolle O., Huc M., Villa Pascual D., Dedieu G. (2010). A multi-temporal method for cloud
  detection, applied to FORMOSAT-2, VENµS, LANDSAT and SENTINEL-2 images. Remote Sensing of
  Environment 114:1747-1755 (multi-temporal blue test, red/blue surface-change guard,
  local-correlation guard, threshold growing with the age of the reference).
- MAJA default processing parameters (GIP_L2COMM, "ALLSITES", published in
  github.com/olivierhagolle/MAJA_Parameters): blue band B1, mono-temporal blue threshold
  0.22, variation threshold 0.025..0.070 doubled after 30 days, K_Red_Blue 1.5,
  correlation band B2 with radius 3, threshold 0.80, minimum 15 pixels and discarded ratio
  20 %, cirrus threshold 0.015 + 2e-5 x altitude (m), cloud dilation radius 1 pixel,
  reflectance threshold over water 0.08 in B12.
- Bodhaine B.A., Wood N.B., Dutton E.G., Slusser J.R. (1999). On Rayleigh optical depth
  calculations. Journal of Atmospheric and Oceanic Technology 16:1854-1861.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Standard sea-level pressure (hPa) of the Bodhaine et al. (1999) formula.
STANDARD_PRESSURE_HPA = 1013.25
#: Scale height (m) used to turn an altitude into a pressure ratio, exp(-z / H).
PRESSURE_SCALE_HEIGHT_M = 8430.0


def rayleigh_optical_depth(wavelength_um: float, pressure_ratio: float | np.ndarray = 1.0) -> float | np.ndarray:
    """Rayleigh optical depth (Bodhaine et al. 1999, eq. 30), scaled by pressure.

    Parameters
    ----------
    wavelength_um : float
        Wavelength in micrometres.
    pressure_ratio : float or ndarray
        Surface pressure over 1013.25 hPa (1 at sea level).

    Returns
    -------
    float or ndarray
        Vertical Rayleigh optical depth (unitless); 0.236 at 0.443 µm at sea level.
    """
    lam2 = wavelength_um * wavelength_um
    tau = 0.0021520 * (1.0455996 - 341.29061 / lam2 - 0.90230850 * lam2) / (
        1.0 + 0.0027059889 / lam2 - 85.968563 * lam2
    )
    return tau * pressure_ratio


def pressure_ratio_from_altitude(altitude_m: float | np.ndarray) -> float | np.ndarray:
    """Pressure over standard pressure for an altitude (isothermal atmosphere, 8.43 km scale height)."""
    return np.exp(-np.asarray(altitude_m, dtype=np.float64) / PRESSURE_SCALE_HEIGHT_M)


def rayleigh_correct(
    toa: np.ndarray,
    tau: float | np.ndarray,
    sun_zenith_deg: float | np.ndarray,
    view_zenith_deg: float | np.ndarray,
    relative_azimuth_deg: float | np.ndarray,
) -> np.ndarray:
    """First-order Rayleigh correction of a TOA reflectance.

    ``rho_rc = (rho_toa - rho_R) / (T_s * T_v)`` with the single-scattering Rayleigh reflectance
    ``rho_R = tau * P(Theta) / (4 mu_s mu_v)``, ``P = 3/4 (1 + cos^2 Theta)`` and the total
    (direct + diffuse) transmissions ``T = exp(-tau / (2 mu))``.  Good enough for cloud tests
    (the atmospheric correction proper is another step).

    Parameters
    ----------
    toa : ndarray
        TOA reflectance (unitless).
    tau : float or ndarray
        Rayleigh optical depth (see :func:`rayleigh_optical_depth`).
    sun_zenith_deg, view_zenith_deg : float or ndarray
        Zenith angles in degrees.
    relative_azimuth_deg : float or ndarray
        Sun azimuth minus view azimuth, degrees.

    Returns
    -------
    ndarray
        Rayleigh-corrected reflectance, float32, NaN where ``toa`` is NaN.
    """
    rho_r, trans = rayleigh_terms(tau, sun_zenith_deg, view_zenith_deg, relative_azimuth_deg)
    return ((toa - rho_r) / trans).astype(np.float32)


def rayleigh_terms(
    tau: float | np.ndarray,
    sun_zenith_deg: float | np.ndarray,
    view_zenith_deg: float | np.ndarray,
    relative_azimuth_deg: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rayleigh reflectance ``rho_R`` and two-way transmission ``T_s T_v`` of :func:`rayleigh_correct`."""
    ts = np.deg2rad(sun_zenith_deg)
    tv = np.deg2rad(view_zenith_deg)
    mus = np.cos(ts)
    muv = np.cos(tv)
    cos_scat = -mus * muv - np.sin(ts) * np.sin(tv) * np.cos(np.deg2rad(relative_azimuth_deg))
    phase = 0.75 * (1.0 + cos_scat * cos_scat)
    rho_r = tau * phase / (4.0 * mus * muv)
    trans = np.exp(-0.5 * tau / mus) * np.exp(-0.5 * tau / muv)
    return np.asarray(rho_r, np.float32), np.asarray(trans, np.float32)


def threshold_test(blue_rc: np.ndarray, threshold: float) -> np.ndarray:
    """Mono-temporal reflectance threshold test: cloudy where the Rayleigh-corrected blue > ``threshold``.

    NaN (no-data) is never cloudy.
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(blue_rc > threshold)


def variation_threshold(
    age_days: np.ndarray, min_threshold: float, max_threshold: float, forgetting_days: float
) -> np.ndarray:
    """Threshold of the multi-temporal test, growing with the age of the reference.

    ``min_threshold * (1 + age / forgetting_days)`` (doubled after ``forgetting_days``), capped at
    ``max_threshold`` (Hagolle et al. 2010; MAJA ``Min/Max_Threshold_Var_Blue`` and
    ``Cloud_Forgetting_Duration``).  Ages are absolute values in days (the backward mode uses
    references from later dates).
    """
    age = np.abs(np.asarray(age_days, dtype=np.float32))
    return np.minimum(min_threshold * (1.0 + age / forgetting_days), max_threshold).astype(np.float32)


def multitemporal_test(
    blue_rc: np.ndarray,
    blue_ref: np.ndarray,
    red_rc: np.ndarray,
    red_ref: np.ndarray,
    threshold: np.ndarray | float,
    k_red_blue: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-temporal reflectance-variation test with the surface-change guard.

    A pixel is a candidate cloud when its blue rises above the reference (the composite) by
    more than ``threshold``.  It is *not* a cloud when the red rises much more than the blue
    (``d_red > k_red_blue * d_blue``): that is a surface change (harvest, bare soil), clouds
    brighten blue at least as much as red.

    Returns
    -------
    cloud, surface_change : ndarray of bool
        Pixels flagged by the test, and candidates rejected by the surface-change guard.
        Pixels whose reference is NaN are never flagged.
    """
    with np.errstate(invalid="ignore"):
        d_blue = blue_rc - blue_ref
        d_red = red_rc - red_ref
        candidate = d_blue > threshold
        change = candidate & (d_red > k_red_blue * d_blue)
    return candidate & ~change, change


def local_correlation(
    a: np.ndarray, b: np.ndarray, radius: int, min_pixels: int
) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` in a ``(2 radius + 1)^2`` moving window.

    Only pixels where both are finite count; windows with fewer than ``min_pixels`` such pixels
    give NaN (so do flat windows).  Computed with box filters (O(n), independent of radius).
    """
    ok = np.isfinite(a) & np.isfinite(b)
    size = 2 * radius + 1
    w = ok.astype(np.float64)
    a0 = np.where(ok, a, 0.0).astype(np.float64)
    b0 = np.where(ok, b, 0.0).astype(np.float64)

    def box(x: np.ndarray) -> np.ndarray:
        return np.asarray(ndi.uniform_filter(x, size=size, mode="constant")) * (size * size)

    n = box(w)
    sa, sb = box(a0), box(b0)
    saa, sbb, sab = box(a0 * a0), box(b0 * b0), box(a0 * b0)
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.maximum(n, 1.0)
        cov = sab / nn - (sa / nn) * (sb / nn)
        va = saa / nn - (sa / nn) ** 2
        vb = sbb / nn - (sb / nn) ** 2
        den = np.sqrt(np.maximum(va, 0.0) * np.maximum(vb, 0.0))
        r = np.where((n >= min_pixels - 0.5) & (den > 1e-12), cov / np.where(den > 0, den, 1.0), np.nan)
    return r.astype(np.float32)


def correlation_guard(
    cloud: np.ndarray,
    correlation: np.ndarray,
    threshold: float,
    discarded_ratio_min: float,
) -> np.ndarray:
    """Remove from each cloud the pixels whose texture stays correlated with the reference.

    Clouds smooth the texture of the surface: a pixel whose local pattern stays correlated with
    the composite (``correlation > threshold``) is not a cloud.  As in MAJA, the evidence is
    weighed per cloud (connected component): the correlated pixels of a cloud are removed only
    when they are at least ``discarded_ratio_min`` (a fraction, 0..1) of that cloud, so that a
    few chance correlations inside a real cloud do not punch holes in it.

    Returns
    -------
    ndarray of bool
        Pixels to remove from ``cloud``.
    """
    with np.errstate(invalid="ignore"):
        corr = cloud & (correlation > threshold)
    if not corr.any():
        return np.zeros_like(cloud)
    labels, n = ndi.label(cloud)
    total = np.bincount(labels.ravel(), minlength=n + 1)
    hits = np.bincount(labels.ravel(), weights=corr.ravel(), minlength=n + 1)
    ratio = hits / np.maximum(total, 1)
    significant = ratio >= discarded_ratio_min
    significant[0] = False
    return corr & significant[labels]


def cirrus_threshold(altitude_m: np.ndarray | float, offset: float, gain_per_m: float) -> np.ndarray:
    """Altitude-adapted threshold of the 1.38 µm cirrus test (``offset + gain * altitude``).

    Above high ground there is less water vapour to absorb the surface signal at 1.38 µm, so
    the threshold rises with altitude (MAJA ``Cirrus_Mask_Threshold_Offset/Gain``).
    """
    return (offset + gain_per_m * np.maximum(np.asarray(altitude_m, dtype=np.float32), 0.0)).astype(np.float32)


def cirrus_test(b10: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Cirrus where the B10 (1.38 µm) TOA reflectance exceeds the threshold; NaN is never cirrus."""
    with np.errstate(invalid="ignore"):
        return np.asarray(b10 > threshold)


def water_cloud_test(swir: np.ndarray, threshold: float) -> np.ndarray:
    """Cloud test over water: water is black in the SWIR, clouds are not (MAJA B12 > 0.08)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(swir > threshold)


def disk(radius: int) -> np.ndarray:
    """Boolean disk structuring element of ``radius`` pixels."""
    r = max(int(radius), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return np.asarray(yy * yy + xx * xx <= r * r + r)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` pixels (0 returns a copy)."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    return np.asarray(ndi.binary_dilation(mask, structure=disk(radius)))


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a disk of ``radius`` pixels; the outside of the array counts as set."""
    if radius <= 0:
        return mask.copy()
    return np.asarray(ndi.binary_erosion(mask, structure=disk(radius), border_value=1))


def edge_zone(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` pixels of the boundary of ``mask`` (both sides)."""
    if not mask.any():
        return np.zeros_like(mask)
    return dilate(mask, radius) & ~erode(mask, radius)


def remove_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop connected components (8-connectivity) smaller than ``min_pixels``."""
    if min_pixels <= 1 or not mask.any():
        return mask.copy()
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def _window_or(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """OR over a centred window of ``2 radius + 1`` pixels along ``axis`` (doubling, O(n log r))."""
    length = 2 * radius + 1
    n = a.shape[axis]

    def sl(start: int, stop: int) -> tuple[slice, ...]:
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(start, stop)
        return tuple(idx)

    # pad so that the window [i - r, i + r] is always inside
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius, radius)
    p = np.pad(a, pad)
    out = np.zeros_like(a)
    power = p.copy()  # OR over windows of 2**k starting at each index
    width, k_off = 1, 0
    remaining = length
    while remaining:
        if remaining & 1:
            out |= power[sl(k_off, k_off + n)]
            k_off += width
        remaining >>= 1
        if remaining:
            m = power.shape[axis] - width
            power = power[sl(0, m)] | power[sl(width, width + m)]
            width *= 2
    return out


def dilate_square(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a ``(2 radius + 1)^2`` square (separable, fast on large grids)."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    m = mask.astype(bool)
    return _window_or(_window_or(m, radius, 0), radius, 1)
