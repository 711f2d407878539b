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

Cost (the common case is a native-resolution chunk): every call opens the file once (at the
JPEG2000 level it needs; the level count comes from the band header, see ``n_overviews``),
reads exactly the samples it needs (an aligned window decodes only its own JPEG2000 tiles:
keep chunk sizes multiples of the file's tile size, 1024 px for ESA 10 m bands, as the
default 2048 is), and :func:`read_toa` converts the uint16 DN in place into the float32 result
(:func:`dn_to_reflectance`: no float64, no full-size temporary). Averaging (coarser or
non-aligned grids) works in float32 (relative error ~1e-7, far below the 1e-4 quantization).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
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
    max_read_bytes : int
        Largest uint16 buffer (bytes) of one read when an aligned same-resolution window is
        converted to reflectance: a bigger window (e.g. a whole band as one chunk) is read in
        strips of whole JPEG2000 tile rows, each converted in place into the float32 result.
        Default 64 MiB.
    """

    min_valid_fraction: float = 0.5
    min_samples_per_pixel: int = 2
    erode_nodata_at_levels: bool = True
    max_read_bytes: int = 64 * 2**20


DEFAULT_READ_SETTINGS: Final[ReadSettings] = ReadSettings()

#: Grid positions (pixel units) closer than this to an integer are taken as integers (float noise
#: of ``(target origin - file origin) / pixel``), e.g. to recognise an aligned window.
GRID_TOLERANCE: Final[float] = 1e-6
#: Relative tolerance of float32 coverage sums against ``min_valid_fraction`` (float32 rounding).
COVERAGE_RTOL: Final[float] = 1e-6


def gdal_env() -> dict[str, str]:
    """GDAL options for a read: ``GDAL_NUM_THREADS`` (JPEG2000 tiles decoded in parallel).

    The environment variable ``GDAL_NUM_THREADS`` (``"ALL_CPUS"`` or a number) always wins.
    When it is unset: ``"1"`` inside a worker thread or a worker process (dask's threaded or
    process scheduler, dask.distributed: they already run one task per core), ``"ALL_CPUS"``
    in the main thread of the main process (a direct call, or dask's synchronous scheduler,
    where nothing else uses the other cores; GDAL's own default).
    """
    threads = os.environ.get("GDAL_NUM_THREADS")
    if threads is None:
        alone = threading.current_thread() is threading.main_thread() and multiprocessing.parent_process() is None
        threads = "ALL_CPUS" if alone else "1"
    return {"GDAL_NUM_THREADS": threads}


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
    ``[d*j - (d-1)/2, d*j + (d+1)/2)`` clipped to the image ``[0, n_full)``. float32 (the
    overlaps are sums of a few lengths, exact or within 1e-7 relative).
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
    return sparse.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(n_t, n_s), dtype=np.float32)


def source_window(
    t0: float, tstep: float, n_t: int, d: int, n_level: int, margin: int
) -> tuple[int, int]:
    """Range ``[first, stop)`` of level samples needed by target pixels (fine-pixel units).

    Sample ``j`` covers ``[d*j - (d-1)/2, d*j + (d+1)/2)``; the samples overlapping
    ``[t0, t0 + n_t*tstep)`` are ``floor((t0 + shift)/d) <= j < ceil((t0 + n_t*tstep + shift)/d)``
    (tight: an aligned full-resolution window reads exactly its pixels, so a chunk aligned on
    the JPEG2000 tiles decodes only its own tiles), widened by ``margin`` samples each side.
    """
    shift = (d - 1) / 2.0
    first = math.floor((t0 + shift) / d + GRID_TOLERANCE) - margin
    stop = math.ceil((t0 + n_t * tstep + shift) / d - GRID_TOLERANCE) + margin
    return max(0, first), min(n_level, max(0, stop))


def _is_integer(x: float, tol: float = GRID_TOLERANCE) -> bool:
    return abs(x - round(x)) <= tol


def replication_factor(step: float, row0: float, col0: float) -> int | None:
    """``k`` when the target is the source cut in ``k x k`` aligned sub-pixels (step ``1/k``), else None.

    ``k = 1`` is the aligned same-resolution case (a plain window copy).
    """
    if not 0 < step <= 1:
        return None
    k = round(1.0 / step)
    if k < 1 or not _is_integer(1.0 / step) or not (_is_integer(row0 * k) and _is_integer(col0 * k)):
        return None
    return k


@dataclass(frozen=True)
class _Read:
    """DN samples read for one target window (one file open)."""

    data: np.ndarray  # uint16 (the file's dtype) samples of the level read
    level: int
    r_first: int
    c_first: int


def _read_samples(
    path: str,
    full_shape: tuple[int, int],
    row0: float,
    col0: float,
    step: float,
    shape: tuple[int, int],
    settings: ReadSettings,
    n_overviews: int | None,
) -> _Read:
    """Open the band once (at the right JPEG2000 level) and read the samples the window needs."""
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        with rasterio.Env(**gdal_env()):
            level = 0
            if step > 1:
                if n_overviews is None:
                    with rasterio.open(path) as src:
                        n_overviews = len(src.overviews(1))
                level = choose_level(step, n_overviews, settings)
            d = 2**level
            nl_r = math.ceil(full_shape[0] / d)
            nl_c = math.ceil(full_shape[1] / d)
            margin = 1 if level > 0 and settings.erode_nodata_at_levels else 0
            r_first, r_stop = source_window(row0, step, shape[0], d, nl_r, margin)
            c_first, c_stop = source_window(col0, step, shape[1], d, nl_c, margin)
            h, w = r_stop - r_first, c_stop - c_first
            if h <= 0 or w <= 0:
                return _Read(np.zeros((0, 0), np.uint16), level, r_first, c_first)
            kw = {"overview_level": level - 1} if level > 0 else {}
            with rasterio.open(path, **kw) as src:
                if src.shape != (nl_r, nl_c):
                    raise InputError(
                        path, f"JPEG2000 level {level} has shape {src.shape}, expected {(nl_r, nl_c)}"
                    )
                data = src.read(1, window=Window(c_first, r_first, w, h))
    except RasterioError as exc:
        raise InputError(path, f"cannot read the JPEG2000 band (truncated or corrupt file?): {exc}") from None
    return _Read(data, level, r_first, c_first)


def _replicate(
    block: np.ndarray, first: tuple[int, int], pos: tuple[float, float], k: int, shape: tuple[int, int],
    fill: float | bool,
) -> np.ndarray:
    """Target window of an aligned ``k``-times finer grid from a source ``block`` (nearest sample).

    ``block`` starts at source pixel ``first``; ``pos`` is the target window's corner in source
    pixel units. Target pixels outside ``block`` get ``fill``. ``k = 1`` slices (a copy only
    when the window sticks out of the block).
    """
    idx = []
    for axis in (0, 1):
        start = round(pos[axis] * k)
        src = np.floor_divide(np.arange(start, start + shape[axis]), k) - first[axis]
        idx.append(src)
    ri, ci = idx
    inside_r = (ri >= 0) & (ri < block.shape[0])
    inside_c = (ci >= 0) & (ci < block.shape[1])
    if k == 1 and inside_r.all() and inside_c.all():
        return block[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1]
    out = np.full(shape, fill, dtype=block.dtype)
    rr, cc = np.flatnonzero(inside_r), np.flatnonzero(inside_c)
    if rr.size and cc.size:
        out[np.ix_(rr, cc)] = block[np.ix_(ri[rr], ci[cc])]
    return out


def _coarse_mean(
    rd: _Read,
    full_shape: tuple[int, int],
    row0: float,
    col0: float,
    step: float,
    shape: tuple[int, int],
    nodata: int,
    saturated: int | None,
    settings: ReadSettings,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Area-weighted mean (float32, NaN where no-data) of the samples, and any-saturated flags."""
    data, d = rd.data, 2**rd.level
    valid = data != nodata
    if rd.level > 0 and settings.erode_nodata_at_levels:
        valid &= ~ndimage.binary_dilation(~valid, structure=np.ones((3, 3), bool), border_value=0)
    wr = _weights_1d(row0, step, shape[0], d, data.shape[0], rd.r_first, full_shape[0])
    wc = _weights_1d(col0, step, shape[1], d, data.shape[1], rd.c_first, full_shape[1])

    def apply(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(wc @ np.asarray(wr @ a).T).T)

    vals = data.astype(np.float32)
    vals[~valid] = 0.0
    num = apply(vals)
    del vals
    den = apply(valid.astype(np.float32))
    # float32 sums: relative tolerance instead of the float64 absolute one
    ok = den >= settings.min_valid_fraction * step * step * (1 - COVERAGE_RTOL)
    ok &= den > 0
    np.divide(num, den, out=num, where=ok)
    num[~ok] = np.nan
    sat_out = None
    if saturated is not None:
        sat_out = apply((data == saturated).astype(np.float32)) > 0
    return num, sat_out


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
    n_overviews: int | None = None,
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
    n_overviews : int, optional
        Number of reduced JPEG2000 levels of the file (from its header); when given, the file
        is opened once, else once more to count them (coarse targets only).

    Returns
    -------
    mean : ndarray float32
        Mean DN of valid source samples (NaN where no-data); exact DN on aligned
        same-resolution and integer-ratio finer grids.
    valid : ndarray bool
    saturated : ndarray bool or None
        Any saturated sample contributes (None when ``saturated`` is None).
    """
    rd = _read_samples(path, full_shape, row0, col0, step, shape, settings, n_overviews)
    k = replication_factor(step, row0, col0) if rd.level == 0 else None
    if k is not None:
        dn = _replicate(rd.data, (rd.r_first, rd.c_first), (row0, col0), k, shape, nodata)
        mean = dn.astype(np.float32)
        mean[dn == nodata] = np.nan
        sat = None if saturated is None else dn == saturated
        return mean, dn != nodata, sat
    mean, sat = _coarse_mean(rd, full_shape, row0, col0, step, shape, nodata, saturated, settings)
    return mean, np.isfinite(mean), sat


def dn_to_reflectance(
    dn: np.ndarray, nodata: int, offset: float, quantification: float, out: np.ndarray | None = None
) -> np.ndarray:
    """``(DN + offset) / quantification`` as float32, NaN where ``DN == nodata``.

    Computed in float32 straight from the integer DN (the sum is exact below 2**24 and the
    division correctly rounded, so the result equals the float64 formula rounded to float32);
    writes into ``out`` (float32, same shape) when given.
    """
    if out is None:
        out = np.empty(dn.shape, np.float32)
    np.add(dn, np.float32(offset), out=out, dtype=np.float32)
    np.divide(out, np.float32(quantification), out=out)
    out[dn == nodata] = np.nan
    return out


def _read_direct_toa(
    path: str,
    full_shape: tuple[int, int],
    corner: tuple[int, int],
    shape: tuple[int, int],
    nodata: int,
    offset: float,
    quantification: float,
    settings: ReadSettings,
) -> np.ndarray:
    """Aligned same-resolution window: uint16 reads (whole JPEG2000 tile rows at a time) converted in place."""
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    r0, c0 = corner
    rs, re_ = max(r0, 0), min(r0 + shape[0], full_shape[0])
    cs, ce = max(c0, 0), min(c0 + shape[1], full_shape[1])
    inside = (rs, re_, cs, ce) == (r0, r0 + shape[0], c0, c0 + shape[1])
    out = np.empty(shape, np.float32) if inside else np.full(shape, np.nan, np.float32)
    if re_ <= rs or ce <= cs:
        return out
    try:
        with rasterio.Env(**gdal_env()), rasterio.open(path) as src:
            if src.shape != full_shape:
                raise InputError(path, f"band has shape {src.shape}, expected {full_shape}")
            bh = max(1, src.block_shapes[0][0])
            rows = max(1, settings.max_read_bytes // (2 * (ce - cs) * bh)) * bh  # whole tile rows
            a = rs
            while a < re_:
                b = min(re_, (a // bh) * bh + rows)  # strip ends on a tile-row boundary
                dn = src.read(1, window=Window(cs, a, ce - cs, b - a))
                dn_to_reflectance(dn, nodata, offset, quantification, out=out[a - r0 : b - r0, cs - c0 : ce - c0])
                a = b
    except RasterioError as exc:
        raise InputError(path, f"cannot read the JPEG2000 band (truncated or corrupt file?): {exc}") from None
    return out


def read_toa(
    path: str,
    *,
    full_shape: tuple[int, int],
    row0: float,
    col0: float,
    step: float,
    shape: tuple[int, int],
    nodata: int,
    offset: float,
    quantification: float,
    settings: ReadSettings = DEFAULT_READ_SETTINGS,
    n_overviews: int | None = None,
) -> np.ndarray:
    """TOA reflectance ``(DN + offset) / quantification`` (float32, NaN = no-data) on a target window.

    Same grid rules as :func:`read_resampled`. Aligned same-resolution windows (the common
    native read) open the file once, read exactly the window as uint16 and convert it in
    place into the float32 result: no float64 and no extra full-size copy. Aligned
    integer-ratio finer grids replicate the (converted) source pixels; other grids average in
    float32.
    """
    k = replication_factor(step, row0, col0)
    if k == 1:
        return _read_direct_toa(
            path, full_shape, (round(row0), round(col0)), shape, nodata, offset, quantification, settings
        )
    rd = _read_samples(path, full_shape, row0, col0, step, shape, settings, n_overviews)
    if k is not None:
        src = dn_to_reflectance(rd.data, nodata, offset, quantification)
        return _replicate(src, (rd.r_first, rd.c_first), (row0, col0), k, shape, np.nan)
    mean, _ = _coarse_mean(rd, full_shape, row0, col0, step, shape, nodata, None, settings)
    mean += np.float32(offset)
    mean /= np.float32(quantification)
    return mean


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
