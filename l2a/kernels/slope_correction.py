"""Slope (terrain illumination) correction: SRE -> FRE (pure numpy).

The irradiance on a flat surface is ``E_flat ∝ T_dir + T_dif`` (direct and diffuse
downward transmittances). On a tilted pixel (Dymond and Shepherd 1999; Sandmeier and
Itten 1997)::

    E_tilt ∝ T_dir * max(cos i, 0) / cos(theta_s) * lit + T_dif * V_d + (T_dir + T_dif) * rho_env * (1 - V_d)

with ``cos i = cos(theta_s) cos(beta) + sin(theta_s) sin(beta) cos(phi_s - aspect)`` the local
incidence, ``lit`` False in cast shadows, ``V_d`` the sky-view factor (default
``(1 + cos beta) / 2``) and the last term the light reflected by the surrounding terrain.
The SRE assumed ``E_flat``; the FRE is ``SRE * E_flat / E_tilt``. A flat pixel has
``E_tilt == E_flat`` (FRE == SRE). Pixels in cast shadow (SHD) or hidden faces (HID) are never
amplified (factor capped at 1); all factors are capped at ``max_factor``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_DEG = np.pi / 180.0


@dataclass(frozen=True)
class SlopeSettings:
    """Settings of the slope correction.

    Attributes
    ----------
    max_factor : float
        Largest allowed FRE/SRE ratio (unitless) on lit pixels.
    min_factor : float
        Smallest allowed FRE/SRE ratio.
    terrain_reflection : bool
        Include the irradiance reflected by the surrounding terrain.
    """

    max_factor: float = 3.0
    min_factor: float = 0.2
    terrain_reflection: bool = True


def cos_incidence(
    slope_deg: npt.ArrayLike, aspect_deg: npt.ArrayLike, sun_zenith: npt.ArrayLike, sun_azimuth: npt.ArrayLike
) -> np.ndarray:
    """Cosine of the local solar incidence angle on a slope (aspect = downslope direction, from north)."""
    b = np.asarray(slope_deg, dtype=np.float64) * _DEG
    a = np.asarray(aspect_deg, dtype=np.float64) * _DEG
    ts = np.asarray(sun_zenith, dtype=np.float64) * _DEG
    ps = np.asarray(sun_azimuth, dtype=np.float64) * _DEG
    return np.cos(ts) * np.cos(b) + np.sin(ts) * np.sin(b) * np.cos(ps - a)


def sky_view_from_slope(slope_deg: npt.ArrayLike) -> np.ndarray:
    """Isotropic sky-view factor of an unobstructed slope, ``(1 + cos beta) / 2``."""
    return 0.5 * (1.0 + np.cos(np.asarray(slope_deg, dtype=np.float64) * _DEG))


def slope_factor(
    cos_i: npt.ArrayLike,
    sun_zenith: npt.ArrayLike,
    t_down_dir: npt.ArrayLike,
    t_down_dif: npt.ArrayLike,
    sky_view: npt.ArrayLike,
    rho_env: npt.ArrayLike = 0.0,
    shadow: npt.ArrayLike = False,
    settings: SlopeSettings = SlopeSettings(),
) -> np.ndarray:
    """FRE/SRE ratio ``E_flat / E_tilt`` (see module docstring).

    Parameters
    ----------
    cos_i : cosine of the local incidence angle.
    sun_zenith : degrees.
    t_down_dir, t_down_dif : direct and diffuse downward transmittances.
    sky_view : sky-view factor (0..1).
    rho_env : environment reflectance (for the terrain-reflected irradiance).
    shadow : True on SHD or HID pixels (no direct irradiance, never amplified).
    """
    us = np.cos(np.asarray(sun_zenith, dtype=np.float64) * _DEG)
    td = np.asarray(t_down_dir, dtype=np.float64)
    tf = np.asarray(t_down_dif, dtype=np.float64)
    flat = td + tf
    return normalized_slope_factor(cos_i, td / (flat * us), tf / flat, sky_view, rho_env, shadow, settings)


def normalized_slope_factor(
    cos_i: npt.ArrayLike,
    direct_weight: npt.ArrayLike,
    diffuse_weight: npt.ArrayLike,
    sky_view: npt.ArrayLike,
    rho_env: npt.ArrayLike = 0.0,
    shadow: npt.ArrayLike = False,
    settings: SlopeSettings = SlopeSettings(),
) -> np.ndarray:
    """:func:`slope_factor` with the transmittances folded into two weights (fast path).

    ``direct_weight = T_dir / ((T_dir + T_dif) cos(theta_s))`` and
    ``diffuse_weight = T_dif / (T_dir + T_dif)``: smooth fields that can be computed at coarse
    resolution and interpolated. Computes in the dtype of ``cos_i`` (float32 stays float32).
    """
    ci = np.asarray(cos_i)
    vd = np.clip(np.asarray(sky_view, dtype=ci.dtype), 0.0, 1.0)
    sh = np.asarray(shadow, dtype=bool)
    tilt = np.where(sh, 0.0, np.asarray(direct_weight, dtype=ci.dtype) * np.maximum(ci, 0.0))
    tilt = tilt + np.asarray(diffuse_weight, dtype=ci.dtype) * vd
    if settings.terrain_reflection:
        tilt = tilt + np.nan_to_num(np.asarray(rho_env, dtype=ci.dtype)) * (1.0 - vd)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(tilt > 0, 1.0 / tilt, settings.max_factor)
    f = np.clip(f, settings.min_factor, settings.max_factor)
    return np.where(sh, np.minimum(f, 1.0), f).astype(ci.dtype, copy=False)
