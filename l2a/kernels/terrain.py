"""Terrain geometry from a DEM: slope, aspect, cast shadows, hidden faces, grazing sun.

Pure numpy/scipy (no I/O, no xarray, no dask). Conventions, used everywhere in l2a:

- arrays are north-up rasters: row index grows southwards, column index eastwards;
- ``dx``, ``dy`` are the (positive) pixel sizes in metres along columns and rows;
- elevation in metres, NaN where unknown;
- angles in degrees; azimuths clockwise from north and, for the sun and the sensor, the
  direction *from the pixel towards* the sun or the sensor (the Sentinel-2 metadata
  convention);
- ``aspect`` is the direction the slope faces (the downslope direction), clockwise from
  north; flat pixels get aspect 0 (irrelevant there, since every formula multiplies it by
  ``sin(slope) = 0``).

The local incidence angle ``i`` of a direction (zenith ``θ``, azimuth ``φ``) on a facet
(slope ``s``, aspect ``A``) follows from the facet normal::

    cos i = cos θ cos s + sin θ sin s cos(φ - A)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]

#: Stand-in for "no terrain known" in the horizon sweep (finite, so that 0 * value stays 0).
_NO_TERRAIN: Final[float] = -1.0e30

# Horn (1981) 3x3 weights are separable: a central difference along one axis times a
# [1, 2, 1] smoothing along the other (``ndimage.correlate1d`` applies them without flip).
_DIFF: Final = np.array([-1.0, 0.0, 1.0])
_SMOOTH: Final = np.array([1.0, 2.0, 1.0])


@dataclass(frozen=True)
class TerrainSettings:
    """Thresholds of the terrain flags.

    Attributes
    ----------
    min_sun_elevation : float
        Degrees. Below this sun elevation (above the horizontal plane) every pixel is flagged
        sun too low (STL): the slope correction is meaningless. Default 5.
    grazing_incidence : float
        Degrees. A pixel whose local sun incidence angle exceeds this is flagged STL (the
        direct term ``cos i / cos θs`` of the slope correction is too small to invert).
        Default 85.
    tangent_band : float
        Degrees. A pixel whose local sun incidence angle lies within this many degrees of
        90 (the sun grazes the facet) is flagged tangent sun (TGS). Default 3.
    hidden_incidence : float
        Degrees. A pixel whose local *view* incidence angle exceeds this faces away from the
        sensor and is flagged hidden face (HID). Default 90.
    shadow_tolerance : float
        Metres. A pixel is in cast shadow (SHD) only if the terrain towards the sun rises
        above its line of sight to the sun by more than this. Default 0.01.
    compute_sky_view : bool
        Whether :func:`terrain_flags` also returns the sky-view factor. Default True.
    sky_view_method : str
        ``"slope"`` (default): ``(1 + cos s) / 2``, the facet's own tilt only, any grid size.
        ``"horizon"``: horizons searched in ``sky_view_directions`` directions up to
        ``sky_view_max_distance`` (Dozier and Marks 1990); meant for coarse grids (it costs
        directions x steps passes over the grid).
    sky_view_directions : int
        Number of azimuths of the horizon search. Default 16.
    sky_view_max_distance : float
        Metres. Farthest terrain that may raise the horizon. Default 5000.
    """

    min_sun_elevation: float = 5.0
    grazing_incidence: float = 85.0
    tangent_band: float = 3.0
    hidden_incidence: float = 90.0
    shadow_tolerance: float = 0.01
    compute_sky_view: bool = True
    sky_view_method: str = "slope"
    sky_view_directions: int = 16
    sky_view_max_distance: float = 5000.0


def horn_gradient(z: FloatArray, dx: float, dy: float) -> tuple[FloatArray, FloatArray]:
    """Elevation gradient by Horn's (1981) 3x3 method.

    Edges are handled by linear extrapolation (odd reflection), so that a plane keeps its
    exact gradient up to the border.

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation, metres; NaN propagates to the neighbouring pixels.
    dx, dy : float
        Pixel size along columns (east) and rows (south), metres.

    Returns
    -------
    dz_de, dz_dn : ndarray
        Gradient towards the east and towards the north (m/m); float32 for float32 input,
        float64 otherwise.
    """
    zz = np.asarray(z)
    if zz.ndim != 2 or min(zz.shape) < 2:
        raise ValueError(
            f"elevation must be a 2-D array of at least 2x2 pixels, got shape {zz.shape}"
        )
    dtype = np.float32 if zz.dtype == np.float32 else np.float64
    padded = np.pad(zz.astype(dtype, copy=False), 1, mode="reflect", reflect_type="odd")
    across = ndimage.correlate1d(padded, _DIFF, axis=1, mode="nearest")
    de = ndimage.correlate1d(across, _SMOOTH, axis=0, mode="nearest")[1:-1, 1:-1]
    down = ndimage.correlate1d(padded, _DIFF, axis=0, mode="nearest")
    ds = ndimage.correlate1d(down, _SMOOTH, axis=1, mode="nearest")[1:-1, 1:-1]
    de /= dtype(8.0 * dx)
    ds /= dtype(-8.0 * dy)
    return de, ds


def slope_aspect(z: FloatArray, dx: float, dy: float) -> tuple[FloatArray, FloatArray]:
    """Slope and aspect (degrees) by Horn's method.

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation, metres.
    dx, dy : float
        Pixel size along columns and rows, metres.

    Returns
    -------
    slope : ndarray float32
        Degrees from the horizontal, 0 … 90.
    aspect : ndarray float32
        Degrees clockwise from north, 0 … 360, direction the slope faces (downslope); 0 where
        the slope is exactly 0.
    """
    de, dn = horn_gradient(z, dx, dy)
    slope = np.degrees(np.arctan(np.hypot(de, dn)))
    aspect = np.degrees(np.arctan2(-de, -dn))
    aspect[aspect < 0] += 360.0
    aspect[aspect >= 360.0] -= 360.0
    aspect[(de == 0.0) & (dn == 0.0)] = 0.0
    missing = np.isnan(np.asarray(z))
    slope[missing] = np.nan
    aspect[np.isnan(slope)] = np.nan
    return slope.astype(np.float32, copy=False), aspect.astype(np.float32, copy=False)


def cos_incidence(
    slope: FloatArray,
    aspect: FloatArray,
    zenith: FloatArray | float,
    azimuth: FloatArray | float,
) -> FloatArray:
    """Cosine of the local incidence angle of a direction on each facet.

    Parameters
    ----------
    slope, aspect : ndarray
        Facet slope and aspect, degrees (aspect = downslope direction, clockwise from north).
    zenith, azimuth : float or ndarray
        Zenith angle and azimuth (from the pixel towards the sun or sensor), degrees.

    Returns
    -------
    ndarray
        ``cos i``; negative where the facet turns its back to the direction.
    """
    s = np.radians(slope)
    t = np.radians(zenith)
    rel = np.radians(np.asarray(azimuth) - np.asarray(aspect))
    rel = np.cos(rel, out=rel) if isinstance(rel, np.ndarray) else np.cos(rel)
    return np.cos(t) * np.cos(s) + np.sin(t) * np.sin(s) * rel


def sky_view_factor(slope: FloatArray) -> FloatArray:
    """Isotropic sky-view factor of a tilted facet, ``(1 + cos s) / 2``.

    This counts the part of the sky hemisphere hidden by the facet's own tilt only, not
    distant horizons (the usual approximation of slope corrections, e.g. Dymond and Shepherd
    1999); it is 1 on flat ground and 0.5 on a vertical wall.

    Parameters
    ----------
    slope : ndarray
        Degrees.

    Returns
    -------
    ndarray float32
        Fraction of the diffuse sky irradiance seen, 0.5 … 1.
    """
    return ((1.0 + np.cos(np.radians(slope))) / 2.0).astype(np.float32)


def horizon_sky_view(
    z: FloatArray,
    dx: float,
    dy: float,
    slope: FloatArray,
    aspect: FloatArray,
    *,
    directions: int = 16,
    max_distance: float = 5000.0,
) -> FloatArray:
    """Sky-view factor from terrain horizons (Dozier and Marks 1990, cosine-weighted).

    For each of ``directions`` azimuths ``φ``, the horizon elevation ``γ`` is the steepest
    angle to the terrain within ``max_distance`` (sampled at the nearest pixel, one pixel
    apart near the pixel and geometrically farther apart beyond ten pixels), never below the
    facet's own plane nor below the horizontal. With ``H = 90° - γ``::

        V = mean over φ of [cos s sin² H + sin s cos(φ - A) (H - sin H cos H)]

    which is ``(1 + cos s) / 2`` when nothing but the facet hides the sky, and ``cos γ0`` at
    the floor of an infinitely long canyon whose walls rise ``γ0`` across it.

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation, metres (NaN: no obstruction, NaN result).
    dx, dy : float
        Pixel size along columns and rows, metres.
    slope, aspect : ndarray
        Degrees (from :func:`slope_aspect`).
    directions : int
        Number of azimuths.
    max_distance : float
        Metres.

    Returns
    -------
    ndarray float32
        Fraction of the diffuse sky irradiance the facet receives, 0 … 1.
    """
    zz = np.asarray(z, dtype=np.float64)
    nrow, ncol = zz.shape
    s = np.radians(np.asarray(slope, dtype=np.float64))
    a = np.radians(np.asarray(aspect, dtype=np.float64))
    cos_s, sin_s, tan_s = np.cos(s), np.sin(s), np.tan(s)
    total = np.zeros_like(zz)
    for k in range(directions):
        phi = 2.0 * np.pi * k / directions
        ue, un = np.sin(phi), np.cos(phi)
        step = 1.0 / max(abs(ue) / dx, abs(un) / dy)
        n_steps = max(1, int(max_distance / step))
        tan_h = np.full_like(zz, -np.inf)
        for n in _horizon_steps(n_steps):
            dist = n * step
            dc, dr = round(n * step * ue / dx), round(-n * step * un / dy)
            if abs(dr) >= nrow or abs(dc) >= ncol:
                break
            shifted = np.full_like(zz, np.nan)
            shifted[max(0, -dr) : nrow - max(0, dr), max(0, -dc) : ncol - max(0, dc)] = zz[
                max(0, dr) : nrow - max(0, -dr), max(0, dc) : ncol - max(0, -dc)
            ]
            np.fmax(tan_h, (shifted - zz) / dist, out=tan_h)
        cos_rel = np.cos(phi - a)
        tan_facet = -tan_s * cos_rel  # rise of the facet's own plane towards φ
        # sky ends at the terrain, at the facet's own plane, and at the horizontal (what lies
        # below it is ground, as for the unobstructed (1 + cos s) / 2)
        gamma = np.arctan(np.fmax(np.fmax(tan_h, tan_facet), 0.0))
        h = np.pi / 2.0 - gamma
        total += cos_s * np.sin(h) ** 2 + sin_s * cos_rel * (h - np.sin(h) * np.cos(h))
    out = total / directions
    out[~np.isfinite(zz)] = np.nan
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _horizon_steps(n_steps: int) -> list[int]:
    """Pixel steps of the horizon search: 1..10, then growing by 15 % up to ``n_steps``."""
    steps = list(range(1, min(n_steps, 10) + 1))
    n = 10.0
    while n < n_steps:
        n = min(float(n_steps), n * 1.15)
        if round(n) > steps[-1]:
            steps.append(round(n))
    return steps


def cast_shadow(
    z: FloatArray,
    dx: float,
    dy: float,
    sun_zenith: float,
    sun_azimuth: float,
    *,
    tolerance: float = 0.01,
) -> BoolArray:
    """Pixels that do not see the sun because terrain towards the sun blocks it.

    A horizon sweep along the light direction, O(rows x cols): light travels horizontally
    along ``-azimuth`` while it descends by ``tan(elevation)`` per metre. With ``τ`` a
    coordinate along the rays, a pixel ``p`` is shadowed when some pixel ``q`` upstream on
    its ray has ``z_q + τ_q tan e > z_p + τ_p tan e`` (+ tolerance). The sweep walks the
    raster one column (or row, whichever the rays cross fastest) at a time and carries the
    running maximum of ``z + τ tan e`` along the rays, interpolated linearly between the two
    pixels the ray passes between. Self-shadowed facets (facing away from the sun more
    steeply than the sun is high) are in shadow too. Terrain outside the raster is unknown
    and casts no shadow: prepare the DEM with a margin if that matters.

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation, metres; NaN pixels neither cast nor receive shadow.
    dx, dy : float
        Pixel size along columns and rows, metres.
    sun_zenith, sun_azimuth : float
        Degrees (azimuth from the pixel towards the sun, clockwise from north).
    tolerance : float
        Metres by which the blocking terrain must exceed the line of sight.

    Returns
    -------
    ndarray bool
    """
    elevation = 90.0 - float(sun_zenith)
    zz = np.asarray(z)
    if elevation <= 0.0:
        return np.ones(zz.shape, dtype=bool)
    tan_e = np.tan(np.radians(elevation))
    az = np.radians(float(sun_azimuth))
    # light travel direction, in pixels per metre along columns (east) and rows (south)
    dcol = -np.sin(az) / dx
    drow = np.cos(az) / dy
    valid = np.isfinite(zz)
    work = np.where(valid, zz, _NO_TERRAIN).astype(np.float32, copy=False)  # columns -> float64
    transposed = abs(drow) > abs(dcol)
    if transposed:  # sweep along rows: swap the roles of rows and columns
        work = work.T
        dcol, drow = drow, dcol
    flip_cols = dcol < 0
    if flip_cols:
        work = work[:, ::-1]
    step_m = 1.0 / abs(dcol)  # horizontal metres along the ray per column
    shift = drow / abs(dcol)  # rows moved per column, |shift| <= 1
    shadow = _sweep(work, shift, step_m * tan_e, tolerance)
    if flip_cols:
        shadow = shadow[:, ::-1]
    if transposed:
        shadow = shadow.T
    return shadow & valid


def _sweep(work: FloatArray, shift: float, rise_per_col: float, tolerance: float) -> BoolArray:
    """Horizon sweep over columns, light moving to increasing columns and ``shift`` rows per column."""
    nrow, ncol = work.shape
    # the ray through (r, j) came through row r - shift of column j - 1
    src = np.arange(nrow, dtype=np.float64) - shift
    k0 = np.floor(src).astype(np.intp)
    frac = src - k0
    i0 = np.clip(k0, 0, nrow - 1)
    i1 = np.clip(k0 + 1, 0, nrow - 1)
    w0 = np.where((k0 >= 0) & (k0 < nrow), 1.0 - frac, 0.0)
    w1 = np.where((k0 + 1 >= 0) & (k0 + 1 < nrow), frac, 0.0)
    outside = (w0 + w1) < 1.0 - 1e-12
    shadow = np.zeros((nrow, ncol), dtype=bool)
    horizon = np.full(nrow, _NO_TERRAIN)
    for j in range(1, ncol):
        prev_h = work[:, j - 1].astype(np.float64) + (j - 1) * rise_per_col
        m = np.maximum(horizon, prev_h)
        horizon = w0 * m[i0] + w1 * m[i1]
        horizon[outside] = _NO_TERRAIN
        horizon = np.maximum(horizon, _NO_TERRAIN)
        shadow[:, j] = horizon > work[:, j].astype(np.float64) + j * rise_per_col + tolerance
    return shadow


def terrain_flags(
    z: FloatArray,
    dx: float,
    dy: float,
    sun_zenith: FloatArray | float,
    sun_azimuth: FloatArray | float,
    view_zenith: FloatArray | float = 0.0,
    view_azimuth: FloatArray | float = 0.0,
    settings: TerrainSettings | None = None,
) -> dict[str, FloatArray | BoolArray]:
    """Slope, aspect and the terrain flags SHD, HID, STL, TGS (and the sky-view factor).

    Parameters
    ----------
    z : ndarray (rows, cols)
        Elevation, metres.
    dx, dy : float
        Pixel size along columns and rows, metres.
    sun_zenith, sun_azimuth, view_zenith, view_azimuth : float or ndarray
        Degrees, scalars or arrays of the raster's shape. The cast-shadow sweep uses the
        mean sun direction (it varies by about a degree over a tile); the incidence-based
        flags use the per-pixel angles.
    settings : TerrainSettings, optional

    Returns
    -------
    dict
        ``slope``, ``aspect`` (float32, degrees), ``cast_shadow``, ``hidden_faces``,
        ``sun_too_low``, ``tangent_sun`` (bool) and, if asked for, ``sky_view`` (float32).
    """
    cfg = settings or TerrainSettings()
    slope, aspect = slope_aspect(z, dx, dy)
    # float32 and scalars kept scalar: a 10 m tile is 120 M pixels
    sz, sa, vz, va = (
        _angle_array(v, slope.shape, name)
        for v, name in (
            (sun_zenith, "sun_zenith"),
            (sun_azimuth, "sun_azimuth"),
            (view_zenith, "view_zenith"),
            (view_azimuth, "view_azimuth"),
        )
    )
    cos_i_sun = cos_incidence(slope, aspect, sz, sa)
    cos_i_view = cos_incidence(slope, aspect, vz, va)
    known = np.isfinite(slope)
    mean_zenith = float(np.nanmean(sz))
    mean_azimuth = _mean_azimuth(sa)
    # angle thresholds as cosine thresholds (no arccos over the whole grid)
    tangent = np.sin(np.radians(cfg.tangent_band))
    out: dict[str, FloatArray | BoolArray] = {
        "slope": slope,
        "aspect": aspect,
        "cast_shadow": cast_shadow(
            z, dx, dy, mean_zenith, mean_azimuth, tolerance=cfg.shadow_tolerance
        ),
        "hidden_faces": known & (cos_i_view < np.cos(np.radians(cfg.hidden_incidence))),
        "sun_too_low": known
        & (
            ((90.0 - sz) < cfg.min_sun_elevation)
            | (cos_i_sun < np.cos(np.radians(cfg.grazing_incidence)))
        ),
        "tangent_sun": known & (np.abs(cos_i_sun) <= tangent),
    }
    if cfg.compute_sky_view and cfg.sky_view_method == "horizon":
        out["sky_view"] = horizon_sky_view(
            z,
            dx,
            dy,
            slope,
            aspect,
            directions=cfg.sky_view_directions,
            max_distance=cfg.sky_view_max_distance,
        )
    elif cfg.compute_sky_view:
        if cfg.sky_view_method != "slope":
            raise ValueError(
                f"sky_view_method must be 'slope' or 'horizon', got {cfg.sky_view_method!r}"
            )
        out["sky_view"] = sky_view_factor(slope)
    return out


def _angle_array(value: FloatArray | float, shape: tuple[int, ...], name: str) -> FloatArray:
    """An angle as a float32 scalar (0-d) or an array of ``shape``."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected a scalar or {shape}")
    return arr


def _mean_azimuth(azimuth: FloatArray) -> float:
    """Circular mean of azimuths, degrees."""
    a = np.radians(azimuth)
    return float(np.degrees(np.arctan2(np.nanmean(np.sin(a)), np.nanmean(np.cos(a)))) % 360.0)


def block_mean(values: FloatArray, factor: int) -> FloatArray:
    """Mean of ``factor x factor`` blocks, ignoring NaN (NaN where a block has no value).

    Parameters
    ----------
    values : ndarray (rows, cols)
        Both dimensions multiples of ``factor``.
    factor : int

    Returns
    -------
    ndarray (rows // factor, cols // factor), float64
    """
    v = np.asarray(values, dtype=np.float64)
    r, c = v.shape
    if r % factor or c % factor:
        raise ValueError(f"shape {v.shape} is not a multiple of the block factor {factor}")
    blocks = v.reshape(r // factor, factor, c // factor, factor)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=(1, 3))
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
