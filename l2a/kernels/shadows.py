"""Cloud-shadow kernels: geometric projection of clouds and darkening tests (pure numpy/scipy).

Method (after Hagolle et al. 2010 and MAJA; Zhu & Woodcock 2012 use the same geometry): a cloud
seen at apparent position ``p`` at altitude ``h`` casts its shadow at
``p + h * (tan(theta_s) * u_away_from_sun - tan(theta_v) * u_away_from_satellite)``.  For each
cloud (connected component) we try altitudes ``h`` over a range, and keep the one whose
projected footprint darkens most against a reference (the composite); shadow pixels are those of
that footprint that are darker than a ratio threshold.  Shadows of clouds outside the image can
only fall in a band along the sun-facing edge; there, strongly darkened pixels are flagged apart.

Angles follow the Sentinel-2 convention: zenith from vertical, azimuth clockwise from north,
sun azimuth = direction *to* the sun, view azimuth = direction from the pixel *to* the satellite.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def shadow_shift(
    altitude_m: float,
    sun_zenith_deg: float,
    sun_azimuth_deg: float,
    view_zenith_deg: float,
    view_azimuth_deg: float,
    pixel_size_m: float,
) -> tuple[float, float]:
    """Displacement (rows, columns) in pixels from an observed cloud to its shadow.

    Parameters
    ----------
    altitude_m : float
        Cloud altitude above the ground (m).
    sun_zenith_deg, sun_azimuth_deg, view_zenith_deg, view_azimuth_deg : float
        Scene geometry in degrees.
    pixel_size_m : float
        Pixel size of the grid (m); rows grow southwards, columns eastwards.

    Returns
    -------
    (d_row, d_col) : tuple of float
    """
    ts, ps = np.deg2rad(sun_zenith_deg), np.deg2rad(sun_azimuth_deg)
    tv, pv = np.deg2rad(view_zenith_deg), np.deg2rad(view_azimuth_deg)
    # ground displacement (east, north) in metres
    east = altitude_m * (-np.tan(ts) * np.sin(ps) + np.tan(tv) * np.sin(pv))
    north = altitude_m * (-np.tan(ts) * np.cos(ps) + np.tan(tv) * np.cos(pv))
    return float(-north / pixel_size_m), float(east / pixel_size_m)


def shift_array(a: np.ndarray, d_row: int, d_col: int, fill: float | int | bool = 0) -> np.ndarray:
    """Shift ``a`` by whole pixels (``out[i + d_row, j + d_col] = a[i, j]``), filling with ``fill``."""
    out = np.full_like(a, fill)
    h, w = a.shape
    if abs(d_row) >= h or abs(d_col) >= w:
        return out
    src_r = slice(max(0, -d_row), min(h, h - d_row))
    dst_r = slice(max(0, d_row), min(h, h + d_row))
    src_c = slice(max(0, -d_col), min(w, w - d_col))
    dst_c = slice(max(0, d_col), min(w, w + d_col))
    out[dst_r, dst_c] = a[src_r, src_c]
    return out


def darkening_ratio(current: np.ndarray, reference: np.ndarray | float, floor: float = 1e-3) -> np.ndarray:
    """Ratio of the current reflectance to the reference (1 = unchanged, < 1 = darker).

    ``floor`` (reflectance) keeps near-zero references (water) from blowing the ratio up.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return (current / np.maximum(reference, floor)).astype(np.float32)


def project_cloud_shadows(
    cloud: np.ndarray,
    ratio: np.ndarray,
    shifts: list[tuple[int, int]],
    max_ratio: float,
    min_footprint_fraction: float,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shadows of the clouds inside the image, by projection over a range of cloud altitudes.

    Parameters
    ----------
    cloud : ndarray of bool
        Cloud mask (each 8-connected component is one cloud with one altitude).
    ratio : ndarray of float
        Darkening ratio against the reference (NaN where unknown), see :func:`darkening_ratio`.
    shifts : list of (int, int)
        Pixel displacement cloud -> shadow for each candidate altitude (see :func:`shadow_shift`).
    max_ratio : float
        A pixel of the chosen footprint is shadow when its ratio is below this (MAJA
        ``Proj_Shad_Darkening_Max`` 0.8).
    min_footprint_fraction : float
        An altitude is eligible for a cloud only if at least this fraction of the cloud's
        projected footprint lands on usable pixels (inside the image, not cloud, ratio known).
    exclude : ndarray of bool, optional
        Pixels that can never be shadow (e.g. water, whose darkness says nothing).

    Returns
    -------
    shadow : ndarray of bool
        Cloud-shadow pixels.
    best_index : ndarray of int
        Index into ``shifts`` of the altitude chosen per cloud label (-1: none); entry 0 is the
        background.
    """
    shadow = np.zeros(cloud.shape, dtype=bool)
    labels, n = ndi.label(cloud, structure=np.ones((3, 3), bool))
    best = np.full(n + 1, -1, dtype=np.int64)
    if n == 0 or not shifts:
        return shadow, best
    usable = ~cloud & np.isfinite(ratio)
    if exclude is not None:
        usable &= ~exclude
    ratio0 = np.where(usable, ratio, 0.0).astype(np.float64)
    size = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    mean = np.full((len(shifts), n + 1), np.inf)
    for k, (dr, dc) in enumerate(shifts):
        lab = shift_array(labels, dr, dc)
        sel = (lab > 0) & usable
        lv = lab[sel]
        cnt = np.bincount(lv, minlength=n + 1).astype(np.float64)
        tot = np.bincount(lv, weights=ratio0[sel], minlength=n + 1)
        ok = cnt >= np.maximum(1.0, min_footprint_fraction * size)
        mean[k, ok] = tot[ok] / cnt[ok]
    best = np.where(np.isfinite(mean.min(axis=0)), mean.argmin(axis=0), -1)
    best[0] = -1
    for k, (dr, dc) in enumerate(shifts):
        chosen = best == k
        if not chosen[1:].any():
            continue
        lab = shift_array(labels, dr, dc)
        with np.errstate(invalid="ignore"):
            shadow |= chosen[lab] & usable & (ratio < max_ratio)
    return shadow, best


def outside_shadow_zone(inside: np.ndarray, max_shift: tuple[int, int]) -> np.ndarray:
    """Pixels that a cloud outside ``inside`` (image/data footprint) could shade.

    A pixel ``p`` can be shaded by a cloud outside the image when ``p - shift(h)`` leaves the
    footprint for some altitude up to the maximum; the footprint being (nearly) convex, it is
    enough to test the maximum altitude.
    """
    dr, dc = max_shift
    # source of p at the maximum altitude is p - shift: shift the footprint forward
    source_inside = shift_array(inside, dr, dc, fill=False)
    return inside & ~source_inside


def outside_shadows(
    zone: np.ndarray,
    ratio: np.ndarray,
    max_ratio: float,
    min_pixels: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Shadows of clouds outside the image: strongly darkened pixels in ``zone``.

    Components smaller than ``min_pixels`` are dropped (isolated dark pixels are not shadows).
    """
    with np.errstate(invalid="ignore"):
        cand = zone & (ratio < max_ratio)
    if exclude is not None:
        cand &= ~exclude
    if min_pixels > 1 and cand.any():
        labels, n = ndi.label(cand, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_pixels
        keep[0] = False
        cand = keep[labels]
    return cand
