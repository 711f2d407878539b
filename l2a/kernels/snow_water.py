"""Snow and water kernels (pure numpy/scipy).

References
----------
- MAJA default parameters (GIP_L2COMM "ALLSITES", github.com/olivierhagolle/MAJA_Parameters):
  snow NDSI > 0.4, red > 0.12, SWIR1 < 0.16, minimum cos(incidence) 0.20 for slope
  normalisation; water NDVI < 0.01 and red < 0.05, no water where slope > 0.15 (rad).
- Zhu Z., Woodcock C.E. (2012). Object-based cloud and cloud shadow detection in Landsat
  imagery. Remote Sensing of Environment 118:83-94 (Fmask water test:
  NDVI < 0.01 and NIR < 0.11, or NDVI < 0.1 and NIR < 0.05), which also keeps turbid water.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)``, NaN where the sum is not positive."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s = a + b
        return np.where(s > 0, (a - b) / np.where(s > 0, s, 1.0), np.nan).astype(np.float32)


def illumination_factor(
    slope_deg: np.ndarray,
    aspect_deg: np.ndarray,
    sun_zenith_deg: np.ndarray | float,
    sun_azimuth_deg: np.ndarray | float,
    min_cos_incidence: float,
) -> np.ndarray:
    """Direct-illumination factor of a slope: ``cos(i) / cos(theta_s)``.

    ``cos(i) = cos(s) cos(theta_s) + sin(s) sin(theta_s) cos(phi_s - aspect)``, floored at
    ``min_cos_incidence`` (MAJA ``Slope_Min_Cos_I``) so that shaded slopes are not blown up.
    ``aspect`` is the downslope direction, degrees clockwise from north.
    """
    s = np.deg2rad(np.nan_to_num(slope_deg, nan=0.0))
    a = np.deg2rad(np.nan_to_num(aspect_deg, nan=0.0))
    ts = np.deg2rad(sun_zenith_deg)
    ps = np.deg2rad(sun_azimuth_deg)
    cos_i = np.cos(s) * np.cos(ts) + np.sin(s) * np.sin(ts) * np.cos(ps - a)
    return (np.maximum(cos_i, min_cos_incidence) / np.cos(ts)).astype(np.float32)


def whiteness(blue: np.ndarray, green: np.ndarray, red: np.ndarray) -> np.ndarray:
    """Fmask whiteness: ``sum(|b - mean|) / mean`` over the visible bands (0 = grey/white)."""
    mean = (blue + green + red) / 3.0
    with np.errstate(invalid="ignore", divide="ignore"):
        w = (np.abs(blue - mean) + np.abs(green - mean) + np.abs(red - mean)) / mean
    return np.where(mean > 0, w, np.inf).astype(np.float32)


def snow_test(
    green: np.ndarray,
    red: np.ndarray,
    swir: np.ndarray,
    ndsi_threshold: float,
    red_threshold: float,
    swir_threshold: float,
    illumination: np.ndarray | None = None,
    nir: np.ndarray | None = None,
    nir_threshold: float = 0.0,
    blue: np.ndarray | None = None,
    max_whiteness: float = np.inf,
) -> np.ndarray:
    """Snow: high NDSI, bright in the red (and NIR when given), dark in the SWIR, white.

    ``blue`` enables the whiteness test (:func:`whiteness` < ``max_whiteness``).

    With ``illumination`` (see :func:`illumination_factor`) the red and SWIR reflectances are
    first normalised to a flat surface, so that snow on shaded slopes passes the red test.
    """
    ndsi = normalized_difference(green, swir)
    white = None if blue is None else whiteness(blue, green, red)  # ratio-invariant: before normalising
    if illumination is not None:
        red = red / illumination
        swir = swir / illumination
        nir = None if nir is None else nir / illumination
    with np.errstate(invalid="ignore"):
        snow = (ndsi > ndsi_threshold) & (red > red_threshold) & (swir < swir_threshold)
        if nir is not None:
            snow &= nir > nir_threshold
    if white is not None:
        snow &= white < max_whiteness
    return np.asarray(snow)


def snow_inside_clouds(snow: np.ndarray, cloud: np.ndarray, min_cloud_border_fraction: float) -> np.ndarray:
    """Snow patches that only exist inside cloud systems (to be put back as cloud).

    Ice clouds and cloud tops can pass the NDSI test.  A snow patch (8-connected component)
    whose outer border is cloud for at least ``min_cloud_border_fraction`` of its length is
    surrounded by cloud: it is a piece of the cloud, not of the ground.

    Returns
    -------
    ndarray of bool
        The snow pixels to turn back into cloud.
    """
    if not snow.any() or not cloud.any():
        return np.zeros_like(snow)
    eight = np.ones((3, 3), bool)
    labels, n = ndi.label(snow, structure=eight)
    grown = ndi.grey_dilation(labels, footprint=eight)
    border = (labels == 0) & (grown > 0)
    lb = grown[border]
    total = np.bincount(lb, minlength=n + 1)
    cloudy = np.bincount(lb, weights=cloud[border], minlength=n + 1)
    frac = cloudy / np.maximum(total, 1)
    inside = (frac >= min_cloud_border_fraction) & (total > 0)
    inside[0] = False
    return inside[labels]


def water_test(
    red: np.ndarray,
    nir: np.ndarray,
    ndvi_threshold: float,
    red_threshold: float,
    fmask_nir_high: float,
    fmask_ndvi_high: float,
    fmask_nir_low: float,
    slope_deg: np.ndarray | None = None,
    max_slope_deg: float = 90.0,
) -> np.ndarray:
    """Water from NDVI, red and NIR, never on steep slopes.

    Water where ``NDVI < ndvi_threshold`` and either ``red < red_threshold`` (MAJA, clear water)
    or ``NIR < fmask_nir_high`` (Fmask, also turbid water), or where ``NDVI < fmask_ndvi_high``
    and ``NIR < fmask_nir_low`` (Fmask, dark water with some vegetation signal); and, when a
    slope is given, ``slope <= max_slope_deg``.
    """
    ndvi = normalized_difference(nir, red)
    with np.errstate(invalid="ignore"):
        low = ndvi < ndvi_threshold
        water = (low & ((red < red_threshold) | (nir < fmask_nir_high))) | (
            (ndvi < fmask_ndvi_high) & (nir < fmask_nir_low)
        )
        if slope_deg is not None:
            water &= ~(slope_deg > max_slope_deg)
    return np.asarray(water)
