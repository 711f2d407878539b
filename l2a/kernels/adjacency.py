"""Adjacency effect: environment reflectance and its correction (pure numpy/scipy).

A pixel of reflectance ``rho_p`` in an environment of mean reflectance ``rho_e`` is seen at
the top of the atmosphere as (Tanré et al. 1981; 6S)::

    rho_toa = tg * (rho_atm + T_down * (rho_p * T_up_dir + rho_e * T_up_dif) / (1 - S * rho_e))

The uniform-surface inversion gives ``rho_u`` with ``T_down T_up rho_u / (1 - S rho_u)`` equal
to the bracketed term, so the pixel's own reflectance is::

    rho_p = [T_up * rho_u * (1 - S rho_e) / (1 - S rho_u) - T_up_dif * rho_e] / T_up_dir
          = m1 * rho_u / (1 - S rho_u) - m0

with ``m1 = T_up (1 - S rho_e) / T_up_dir`` and ``m0 = rho_e T_up_dif / T_up_dir``. A
uniform scene (``rho_u == rho_e``) is left unchanged.

Since ``rho_u / (1 - S rho_u) = y / (T_down T_up)`` with ``y = rho_toa / tg - rho_atm``, the
pixel reflectance is *linear* in the TOA reflectance once ``rho_e`` is known::

    rho_p = gain * rho_toa - offset,  gain = m1 / (tg T_down T_up),  offset = m1 rho_atm / (T_down T_up) + m0

which is what the full-resolution kernel applies (:func:`linear_coefficients`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage


@dataclass(frozen=True)
class AdjacencySettings:
    """Settings of the adjacency correction.

    Attributes
    ----------
    radius_m : float
        Half-side (m) of the square window over which the environment reflectance is
        averaged (about 1 km).
    enabled : bool
        When False, SRE is the uniform-surface inversion.
    """

    radius_m: float = 1000.0
    enabled: bool = True


def environment_reflectance(rho: npt.ArrayLike, pixel_size_m: float, radius_m: float) -> np.ndarray:
    """Mean reflectance of a ``2 radius_m`` square window around each pixel, NaN-aware.

    NaN pixels (no-data) carry no weight; a pixel whose whole window is NaN gets NaN.
    """
    r = np.asarray(rho, dtype=np.float64)
    size = max(round(2.0 * radius_m / float(pixel_size_m)) | 1, 1)
    ok = np.isfinite(r)
    w = ndimage.uniform_filter(ok.astype(np.float64), size=size, mode="reflect")
    v = ndimage.uniform_filter(np.where(ok, r, 0.0), size=size, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w > 1e-9, v / w, np.nan)


def adjacency_coefficients(
    rho_env: npt.ArrayLike, t_up: npt.ArrayLike, t_up_dir: npt.ArrayLike, s: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """``(m1, m0)`` of the module docstring (computed at coarse resolution, then interpolated)."""
    e = np.asarray(rho_env, dtype=np.float64)
    tu = np.asarray(t_up, dtype=np.float64)
    td = np.asarray(t_up_dir, dtype=np.float64)
    sa = np.asarray(s, dtype=np.float64)
    m1 = tu * (1.0 - sa * e) / td
    m0 = e * (tu - td) / td
    return m1, m0


def correct_adjacency(
    rho_uniform: npt.ArrayLike,
    rho_env: npt.ArrayLike,
    t_up: npt.ArrayLike,
    t_up_dir: npt.ArrayLike,
    s: npt.ArrayLike,
) -> np.ndarray:
    """Pixel reflectance from the uniform-surface reflectance and the environment reflectance."""
    m1, m0 = adjacency_coefficients(rho_env, t_up, t_up_dir, s)
    u = np.asarray(rho_uniform, dtype=np.float64)
    return m1 * u / (1.0 - np.asarray(s) * u) - m0


def add_adjacency(
    rho_pixel: npt.ArrayLike,
    rho_env: npt.ArrayLike,
    t_up: npt.ArrayLike,
    t_up_dir: npt.ArrayLike,
    s: npt.ArrayLike,
) -> np.ndarray:
    """Inverse of :func:`correct_adjacency`: the uniform-surface reflectance that the pixel mimics."""
    m1, m0 = adjacency_coefficients(rho_env, t_up, t_up_dir, s)
    q = (np.asarray(rho_pixel, dtype=np.float64) + m0) / m1  # = u / (1 - s u)
    return q / (1.0 + np.asarray(s) * q)


def linear_coefficients(
    tg: npt.ArrayLike,
    rho_atm: npt.ArrayLike,
    t_down: npt.ArrayLike,
    t_up: npt.ArrayLike,
    t_up_dir: npt.ArrayLike,
    s: npt.ArrayLike,
    rho_env: npt.ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """``(gain, offset)`` with ``rho_pixel = gain * rho_toa - offset`` (module docstring)."""
    m1, m0 = adjacency_coefficients(rho_env, t_up, t_up_dir, s)
    tt = np.asarray(t_down, dtype=np.float64) * np.asarray(t_up, dtype=np.float64)
    gain = m1 / (np.asarray(tg, dtype=np.float64) * tt)
    offset = m1 * np.asarray(rho_atm, dtype=np.float64) / tt + m0
    return gain, offset
