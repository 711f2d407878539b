"""Windowed, resolution-aware reading of one JPEG2000 band, and angle-grid interpolation.

Everything here is plain functions on plain arguments, so that dask tasks that call them
pickle (each task opens its file itself).

Resampling a band file onto a target grid (same CRS, axis-aligned) is one separable,
area-weighted linear operator:

- same pixel size and aligned grids: a direct windowed read;
- a finer target (e.g. a 20 m band at 10 m): each target pixel takes the value of the source
  pixel it falls in (nearest, i.e. pixel replication for integer ratios; area-weighted mix for
  non-integer ratios);
- a coarser target (e.g. 240 m): the band is read through a JPEG2000 resolution level
  (``overview_level``) at least two times finer than the target, never at full resolution,
  and those samples are averaged with exact overlap weights. A JPEG2000 level-``L`` sample
  ``j`` is a low-pass of the full-resolution pixels centred on pixel ``j * 2**L``
  (not on the centre of the ``2**L`` block), so the weights use that true footprint: no
  half-pixel shift. No-data samples (DN 0), and samples next to them (blended by the wavelet
  filter), get no weight; a target pixel is no-data when less than
  :attr:`ReadSettings.min_valid_fraction` of its area has valid samples.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage, sparse

from l2a.errors import InputError


@dataclass(frozen=True)
class ReadSettings:
    """Settings of band reading.

    Attributes
    ----------
    min_valid_fraction : float
        Coarse (or non-aligned) target pixel is no-data when less than this fraction
        (0..1) of its area is covered by valid source samples. Default 0.5.
    min_samples_per_pixel : int
        When coarsening, read the JPEG2000 resolution level that gives at least this many
        samples per target pixel along each axis (2: e.g. a 240 m target from a 60 m band is
        averaged from the 120 m level). Default 2.
    erode_nodata_at_levels : bool
        At a reduced JPEG2000 level, also drop the samples next to no-data samples (their
        value mixes valid and no-data pixels through the wavelet filter). Default True.
    """

    min_valid_fraction: float = 0.5
    min_samples_per_pixel: int = 2
    erode_nodata_at_levels: bool = True


DEFAULT_READ_SETTINGS: Final[ReadSettings] = ReadSettings()


def gdal_env() -> dict[str, str]:
    """GDAL options for a read: ``GDAL_NUM_THREADS`` from the environment (default ``"1"``)."""
    return {"GDAL_NUM_THREADS": os.environ.get("GDAL_NUM_THREADS", "1")}


def choose_level(ratio: float, n_overviews: int, settings: ReadSettings) -> int:
    """JPEG2000 level (0 = full resolution) to read for a target/source pixel-size ``ratio``."""
    level = 0
    while level < n_overviews and 2 ** (level + 1) * settings.min_samples_per_pixel <= ratio + 1e-9:
        level += 1
    return level


def _weights_1d(
    t0: float, tstep: float, n_t: int, d: int, n_s: int, s_first: int, n_full: int
) -> sparse.csr_matrix:
    """Overlap lengths between target intervals and level-``d`` source samples (fine-pixel units).

    Target pixel ``i`` covers ``[t0 + i*tstep, t0 + (i+1)*tstep)`` in full-resolution pixel
    units; source sample ``j`` (column ``j - s_first`` of the window read) covers
    ``[d*j - (d-1)/2, d*j + (d+1)/2)`` clipped to the image ``[0, n_full)``.
    """
    shift = (d - 1) / 2.0
    rows, cols, vals = [], [], []
    for i in range(n_t):
        a = t0 + i * tstep
        b = a + tstep
        j_lo = max(s_first, math.floor((a + shift) / d))
        j_hi = min(s_first + n_s - 1, math.ceil((b + shift) / d))
        for j in range(j_lo, j_hi + 1):
            lo = max(d * j - shift, 0.0)
            hi = min(d * j - shift + d, float(n_full))
            w = min(b, hi) - max(a, lo)
            if w > 1e-12:
                rows.append(i)
                cols.append(j - s_first)
                vals.append(w)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_t, n_s))


def source_window(
    t0: float, tstep: float, n_t: int, d: int, n_level: int, margin: int
) -> tuple[int, int]:
    """Range ``[first, stop)`` of level samples needed by target pixels (fine-pixel units)."""
    shift = (d - 1) / 2.0
    first = math.floor((t0 + shift) / d) - margin
    stop = math.ceil((t0 + n_t * tstep + shift) / d) + 1 + margin
    return max(0, first), min(n_level, max(0, stop))


def read_resampled(
    path: str,
    *,
    full_shape: tuple[int, int],
    row0: float,
    col0: float,
    step: float,
    shape: tuple[int, int],
    nodata: int,
    saturated: int | None = None,
    settings: ReadSettings = DEFAULT_READ_SETTINGS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a band file onto a target window.

    Parameters
    ----------
    path : str
        GDAL path of the band (``/vsizip/...`` works).
    full_shape : (int, int)
        Shape of the file at full resolution.
    row0, col0 : float
        Position of the target window's upper-left corner in full-resolution pixel units.
    step : float
        Target pixel size over source pixel size.
    shape : (int, int)
        Target window shape.
    nodata, saturated : int
        Special DN values.

    Returns
    -------
    mean : ndarray float64
        Mean DN of valid source samples (NaN where no-data).
    valid : ndarray bool
    saturated : ndarray bool or None
        Any saturated sample contributes (None when ``saturated`` is None).
    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        with rasterio.Env(**gdal_env()):
            with rasterio.open(path) as src:
                n_ovr = len(src.overviews(1))
            level = choose_level(step, n_ovr, settings) if step > 1 else 0
            d = 2**level
            nl_r = math.ceil(full_shape[0] / d)
            nl_c = math.ceil(full_shape[1] / d)
            margin = 1 if level > 0 and settings.erode_nodata_at_levels else 0
            r_first, r_stop = source_window(row0, step, shape[0], d, nl_r, margin)
            c_first, c_stop = source_window(col0, step, shape[1], d, nl_c, margin)
            out_shape = (r_stop - r_first, c_stop - c_first)
            if out_shape[0] <= 0 or out_shape[1] <= 0:
                data = np.zeros((0, 0), dtype=np.float64)
            else:
                kw = {"overview_level": level - 1} if level > 0 else {}
                with rasterio.open(path, **kw) as src:
                    if src.shape != (nl_r, nl_c):
                        raise InputError(
                            path, f"JPEG2000 level {level} has shape {src.shape}, expected {(nl_r, nl_c)}"
                        )
                    data = src.read(
                        1, window=Window(c_first, r_first, out_shape[1], out_shape[0])
                    ).astype(np.float64)
    except RasterioError as exc:
        raise InputError(path, f"cannot read the JPEG2000 band (truncated or corrupt file?): {exc}") from None
    # aligned, same resolution: direct copy
    if level == 0 and step == 1 and float(row0).is_integer() and float(col0).is_integer() and min(row0, col0) >= 0:
        out = np.full(shape, np.nan)
        sat = np.zeros(shape, bool) if saturated is not None else None
        rr, cc = int(row0) - r_first, int(col0) - c_first
        h = max(0, min(shape[0], data.shape[0] - rr))
        w = max(0, min(shape[1], data.shape[1] - cc))
        block = data[rr : rr + h, cc : cc + w]
        out[:h, :w] = np.where(block == nodata, np.nan, block)
        if sat is not None:
            sat[:h, :w] = block == saturated
        return out, np.isfinite(out), sat
    valid = data != nodata
    if level > 0 and settings.erode_nodata_at_levels:
        valid &= ~ndimage.binary_dilation(~valid, structure=np.ones((3, 3), bool), border_value=0)
    wr = _weights_1d(row0, step, shape[0], d, data.shape[0], r_first, full_shape[0])
    wc = _weights_1d(col0, step, shape[1], d, data.shape[1], c_first, full_shape[1])
    vals = np.where(valid, data, 0.0)
    num = (wc @ (wr @ vals).T).T
    den = (wc @ (wr @ valid.astype(np.float64)).T).T
    area = step * step
    ok = den >= settings.min_valid_fraction * area - 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok & (den > 0), num / np.where(den > 0, den, 1.0), np.nan)
    sat_out = None
    if saturated is not None:
        s = (data == saturated).astype(np.float64)
        sat_out = (wc @ (wr @ s).T).T > 0
    return mean, np.isfinite(mean), sat_out


# --------------------------------------------------------------------------- angle grids
def fill_nan_nearest(grid: np.ndarray) -> np.ndarray:
    """Replace NaN nodes (outside the swath) by the nearest valid node; all-NaN stays NaN."""
    bad = ~np.isfinite(grid)
    if not bad.any() or bad.all():
        return grid.copy()
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return grid[tuple(idx)]


def bilinear_weights(pos: np.ndarray, n: int) -> sparse.csr_matrix:
    """Sparse (len(pos), n) bilinear interpolation weights at fractional node positions ``pos``.

    Positions outside ``[0, n-1]`` are clamped (constant extrapolation at the border).
    """
    p = np.clip(np.asarray(pos, dtype=np.float64), 0.0, n - 1.0)
    i0 = np.minimum(np.floor(p).astype(np.int64), max(n - 2, 0))
    f = p - i0
    rows = np.arange(len(p))
    if n == 1:
        return sparse.csr_matrix((np.ones(len(p)), (rows, np.zeros(len(p), int))), shape=(len(p), 1))
    data = np.concatenate([1.0 - f, f])
    return sparse.csr_matrix(
        (data, (np.concatenate([rows, rows]), np.concatenate([i0, i0 + 1]))), shape=(len(p), n)
    )


def interp_angles(
    zenith: np.ndarray,
    azimuth: np.ndarray,
    row_pos: np.ndarray,
    col_pos: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of an angle grid at fractional node positions (separable).

    NaN nodes (swath edges) are first filled with the nearest valid node; azimuth is
    interpolated through its sine and cosine. Returns float32 (zenith, azimuth) in degrees,
    azimuth in [0, 360).
    """
    wr = bilinear_weights(row_pos, zenith.shape[0])
    wc = bilinear_weights(col_pos, zenith.shape[1])

    def apply(g: np.ndarray) -> np.ndarray:
        return np.asarray((wc @ (wr @ g).T).T)

    z = apply(fill_nan_nearest(zenith))
    a = np.deg2rad(fill_nan_nearest(azimuth))
    az = np.rad2deg(np.arctan2(apply(np.sin(a)), apply(np.cos(a)))) % 360.0
    return z.astype(np.float32), az.astype(np.float32)
