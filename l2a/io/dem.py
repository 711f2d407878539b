"""DEM sources and their resampling onto a target grid.

Sources: one GeoTIFF (a Copernicus DEM COG tile or any other), a VRT (anything GDAL opens),
or a folder of tiles (searched recursively for ``*.tif``, ``*.tiff``, ``*.vrt``). Only the
tiles that intersect the target are opened for reading; Copernicus DEM tiles are recognised
by their file name and not even opened when they do not intersect. Any CRS.

Resampling onto a target :class:`~odc.geo.geobox.GeoBox`, per target pixel size ``T`` and
source pixel size ``S`` (metres; for a geographic source, metres at the centre of the
footprint):

- ``T <= S`` (refining): bilinear interpolation at the target pixel centres (GDAL warper,
  near-exact coordinate transformation: ``DemSettings.warp_tolerance``).
- ``T > S`` (coarsening): bilinear interpolation onto a fine grid that splits each target
  pixel into ``k x k`` sub-pixels (``k = ceil(T / S)``, so the fine grid is at least as fine
  as the source), then the exact mean of each ``k x k`` block. GDAL's own ``average`` across a
  reprojection only approximates the target footprint (about 1 cm of error on a plane);
  this scheme keeps a plane a plane (the sub-pixel centres are symmetric around the target
  centre) and keeps errors below a few millimetres.
- When the source and the target share their CRS and the target pixel is an exact multiple
  ``k`` of the source pixel on the same lattice, the target value is the exact mean of the
  ``k x k`` source pixels (no interpolation at all; the mean of the field is preserved).

Pixel centres line up exactly: GDAL maps pixel centres to pixel centres, and the fine grid
shares the target's corner. The work goes in strips of target rows so that at most
``DemSettings.max_block_pixels`` fine pixels are in memory at once; the source window that
covers the target (plus a margin) is read once (about 64 MB of float32 for a Sentinel-2
tile from the 30 m Copernicus DEM).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.merge
import rasterio.warp
import rasterio.windows
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from l2a.errors import InputError
from l2a.kernels.terrain import block_mean

#: File name of a Copernicus DEM COG tile: resolution code, south-west corner.
_COPERNICUS_NAME: Final = re.compile(
    r"Copernicus_DSM_COG_\d+_(?P<ns>[NS])(?P<lat>\d{2})_\d{2}_(?P<ew>[EW])(?P<lon>\d{3})_\d{2}_DEM",
    re.IGNORECASE,
)
_SUFFIXES: Final = (".tif", ".tiff", ".vrt")
#: Metres per degree of latitude (mean), used only to pick the sub-pixel factor.
_M_PER_DEG: Final[float] = 111_320.0


@dataclass(frozen=True)
class DemSettings:
    """How DEMs are read and resampled.

    Attributes
    ----------
    warp_tolerance : float
        Maximum error, in pixels, that GDAL's approximate coordinate transformer may make.
        GDAL's default (0.125) costs about 5 mm on a 35 degree plane sampled at 11 m (the
        error grows with the slope); 0.001 (default) costs no measurable time and keeps
        that error near 1 mm; 0 is exact and about ten times slower.
    max_block_pixels : int
        Most fine-grid pixels resampled at once (bounds memory: 4 bytes each, plus
        temporaries). Default 2**23 (32 MB of float32).
    margin_pixels : int
        Source pixels read around the target footprint (room for the bilinear kernel).
    num_threads : int
        Threads of the GDAL warper.
    gdal_cache_mb : int
        GDAL block cache (MB) while writing products; GDAL's default (5 % of the RAM) lets
        dirty blocks pile up.
    compression : str
        GeoTIFF compression of the written products: ``"zstd"`` (default: about twice as
        fast as deflate for the same size) or ``"deflate"`` for old GDAL readers.
    compression_level : int
        ZSTD/DEFLATE level (1 = fastest).
    """

    warp_tolerance: float = 0.001
    max_block_pixels: int = 2**23
    margin_pixels: int = 3
    num_threads: int = 2
    gdal_cache_mb: int = 128
    compression: str = "zstd"
    compression_level: int = 1


@dataclass(frozen=True)
class SourceRaster:
    """A DEM window in memory.

    Attributes
    ----------
    data : ndarray float32
        Elevation, metres, NaN where the source has no data.
    transform : affine.Affine
        Pixel-corner transform of ``data``.
    crs : pyproj.CRS
    label : str
        What it was read from (for messages).
    """

    data: npt.NDArray[np.float32]
    transform: Affine
    crs: CRS
    label: str

    @cached_property
    def has_nodata(self) -> bool:
        """Whether ``data`` holds NaN (GDAL's warper is about twice as fast without a nodata value)."""
        return bool(np.isnan(self.data).any())


def find_dem_files(source: str | Path) -> list[Path]:
    """The raster files of a DEM source (a file, or a folder searched recursively).

    Raises
    ------
    l2a.errors.InputError
        The path does not exist, or the folder holds no ``.tif``/``.tiff``/``.vrt``.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
        if not files:
            raise InputError(path, "no DEM file (*.tif, *.tiff, *.vrt) in this folder")
        return files
    if path.is_file():
        return [path]
    raise InputError(path, "DEM source not found: give a GeoTIFF, a VRT or a folder of tiles")


def footprint_bounds(
    geobox: GeoBox, crs: CRS, points_per_side: int = 64
) -> tuple[float, float, float, float]:
    """Bounds (left, bottom, right, top) of a grid's outline transformed to ``crs``.

    The outline is densified (``points_per_side`` points per edge) so that curved edges in
    the other CRS are covered.
    """
    left, bottom, right, top = geobox.boundingbox
    t = np.linspace(0.0, 1.0, points_per_side)
    xs = np.concatenate(
        [
            left + (right - left) * t,
            np.full_like(t, right),
            right - (right - left) * t,
            np.full_like(t, left),
        ]
    )
    ys = np.concatenate(
        [
            np.full_like(t, top),
            top - (top - bottom) * t,
            np.full_like(t, bottom),
            bottom + (top - bottom) * t,
        ]
    )
    tr = Transformer.from_crs(grid_crs(geobox), crs, always_xy=True)
    px, py = tr.transform(xs, ys)
    return float(np.min(px)), float(np.min(py)), float(np.max(px)), float(np.max(py))


def grid_crs(geobox: GeoBox) -> CRS:
    """The pyproj CRS of a grid (InputError when the grid has none)."""
    if geobox.crs is None:
        raise InputError("geobox", "the target grid has no CRS")
    return CRS.from_user_input(geobox.crs.to_wkt())


def _intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _copernicus_bounds(path: Path) -> tuple[float, float, float, float] | None:
    """Lon/lat bounds of a Copernicus DEM tile from its name (1 degree, half-pixel slack)."""
    m = _COPERNICUS_NAME.search(path.name)
    if m is None:
        return None
    lat = int(m["lat"]) * (1 if m["ns"].upper() == "N" else -1)
    lon = int(m["lon"]) * (1 if m["ew"].upper() == "E" else -1)
    slack = 0.01
    return lon - slack, lat - slack, lon + 1 + slack, lat + 1 + slack


def _open(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise InputError(path, f"cannot be read as a raster ({exc})") from None


def read_source(
    source: str | Path, geobox: GeoBox, settings: DemSettings | None = None
) -> SourceRaster | None:
    """Read the part of a DEM source that covers ``geobox`` (plus a margin).

    Parameters
    ----------
    source : str or Path
        GeoTIFF, VRT, or folder of tiles.
    geobox : GeoBox
        Target grid (only its footprint matters here).
    settings : DemSettings, optional

    Returns
    -------
    SourceRaster or None
        None when no file of the source intersects the target.

    Raises
    ------
    l2a.errors.InputError
        Unreadable file, several CRSs in one folder, no georeferencing.
    """
    cfg = settings or DemSettings()
    files = find_dem_files(source)
    wgs84 = CRS.from_epsg(4326)
    fp_ll = footprint_bounds(geobox, wgs84)
    hits: list[Path] = []
    crs: CRS | None = None
    for path in files:
        quick = _copernicus_bounds(path)
        if quick is not None and not _intersects(quick, fp_ll):
            continue
        with _open(path) as ds:
            if ds.crs is None:
                raise InputError(path, "the DEM has no CRS: give it one (e.g. gdal_edit.py -a_srs)")
            ds_crs = CRS.from_user_input(ds.crs.to_wkt())
            if not _intersects(tuple(ds.bounds), footprint_bounds(geobox, ds_crs)):
                continue
            if crs is not None and not ds_crs.equals(crs):
                raise InputError(
                    path, f"its CRS differs from that of {hits[0]}: a DEM folder must hold one CRS"
                )
            crs = ds_crs
        hits.append(path)
    if not hits or crs is None:
        return None
    label = str(hits[0]) if len(hits) == 1 else f"{Path(source)} ({len(hits)} tiles)"
    fp = footprint_bounds(geobox, crs)
    try:
        if len(hits) == 1:
            return _read_window(hits[0], fp, crs, cfg, label)
        return _read_mosaic(hits, fp, crs, cfg, label)
    except RasterioError as exc:
        raise InputError(label, f"reading the DEM failed ({exc})") from None


def _read_window(
    path: Path, fp: tuple[float, float, float, float], crs: CRS, cfg: DemSettings, label: str
) -> SourceRaster | None:
    with _open(path) as ds:
        win = rasterio.windows.from_bounds(*fp, transform=ds.transform)
        m = cfg.margin_pixels
        col0 = max(0, math.floor(win.col_off) - m)
        row0 = max(0, math.floor(win.row_off) - m)
        col1 = min(ds.width, math.ceil(win.col_off + win.width) + m)
        row1 = min(ds.height, math.ceil(win.row_off + win.height) + m)
        if col1 <= col0 or row1 <= row0:
            return None
        window = rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)
        band = ds.read(1, window=window, masked=True)
        data = np.ma.filled(band.astype(np.float32), np.nan)
        return SourceRaster(data, ds.window_transform(window), crs, label)


def _read_mosaic(
    paths: list[Path], fp: tuple[float, float, float, float], crs: CRS, cfg: DemSettings, label: str
) -> SourceRaster:
    """Mosaic of several tiles on the finest tile's lattice (exact copy for aligned tiles)."""
    transforms = []
    for p in paths:
        with _open(p) as ds:
            transforms.append(ds.transform)
    rt = min(transforms, key=lambda t: abs(t.a * t.e))
    rx, ry = abs(rt.a), abs(rt.e)
    m = cfg.margin_pixels
    left = rt.c + (math.floor((fp[0] - rt.c) / rx) - m) * rx
    right = rt.c + (math.ceil((fp[2] - rt.c) / rx) + m) * rx
    top = rt.f - (math.floor((rt.f - fp[3]) / ry) - m) * ry
    bottom = rt.f - (math.ceil((rt.f - fp[1]) / ry) + m) * ry
    # tiles off the reference lattice or at another resolution (Copernicus DEM tiles above
    # 50 degrees of latitude have wider columns) are read bilinearly onto it
    data, transform = rasterio.merge.merge(
        [str(p) for p in paths],
        bounds=(left, bottom, right, top),
        res=(rx, ry),
        nodata=np.nan,
        dtype="float32",
        resampling=Resampling.bilinear,
    )
    return SourceRaster(np.asarray(data[0], dtype=np.float32), transform, crs, label)


def pixel_metres(transform: Affine, crs: CRS, shape: tuple[int, int]) -> float:
    """Smaller pixel side of a grid in metres (at the grid centre for geographic CRSs)."""
    rx, ry = math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)
    if crs.is_geographic:
        rows, cols = shape
        _, lat = transform * (cols / 2.0, rows / 2.0)
        return min(rx * _M_PER_DEG * max(math.cos(math.radians(lat)), 1e-3), ry * _M_PER_DEG)
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return min(rx, ry) * unit


def source_pixel_metres(src: SourceRaster) -> float:
    """Smaller pixel side of the source, in metres (at the window centre for geographic CRSs)."""
    return pixel_metres(src.transform, src.crs, src.data.shape)


def _aligned_factor(src: SourceRaster, geobox: GeoBox) -> tuple[int, int, int] | None:
    """(k, row_offset, col_offset) when the target lattice is an exact k-multiple of the source's."""
    if not grid_crs(geobox).equals(src.crs):
        return None
    s, g = src.transform, geobox.transform
    if s.b or s.d or g.b or g.d or s.a <= 0 or s.e >= 0:
        return None
    kx, ky = g.a / s.a, g.e / s.e
    k = round(kx)
    if k < 1 or abs(kx - k) > 1e-9 * k or abs(ky - k) > 1e-9 * k:
        return None
    col, row = (g.c - s.c) / s.a, (g.f - s.f) / s.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return k, round(row), round(col)


def _row_strips(nrows: int, rows_per_strip: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, nrows, rows_per_strip):
        yield r0, min(nrows, r0 + rows_per_strip)


def resample_to_geobox(
    src: SourceRaster, geobox: GeoBox, settings: DemSettings | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Resample a DEM window onto a grid (see the module docstring for the method).

    Parameters
    ----------
    src : SourceRaster
    geobox : GeoBox
        Target grid (any CRS, axis-aligned).
    settings : DemSettings, optional

    Returns
    -------
    elevation : ndarray float32 (rows, cols)
        Mean of the covered sub-pixels, metres; NaN where none is covered.
    missing : ndarray float32 (rows, cols)
        Fraction of each target pixel (its sub-pixels) that the source does not cover, 0 … 1.
    """
    cfg = settings or DemSettings()
    nrows, ncols = geobox.shape
    out = np.full((nrows, ncols), np.nan, dtype=np.float32)
    missing = np.ones((nrows, ncols), dtype=np.float32)
    aligned = _aligned_factor(src, geobox)
    if aligned is not None:
        _block_mean_aligned(src.data, aligned, out, missing)
        return out, missing
    target_m = pixel_metres(geobox.transform, grid_crs(geobox), (geobox.shape[0], geobox.shape[1]))
    k = max(1, math.ceil(target_m / source_pixel_metres(src) - 1e-6))
    rows_per_strip = max(1, cfg.max_block_pixels // max(1, ncols * k * k))
    src_crs = rasterio.crs.CRS.from_wkt(src.crs.to_wkt())
    dst_crs = rasterio.crs.CRS.from_wkt(grid_crs(geobox).to_wkt())
    for r0, r1 in _row_strips(nrows, rows_per_strip):
        g = geobox.transform * Affine.translation(0, r0) * Affine.scale(1.0 / k)
        fine = np.full(((r1 - r0) * k, ncols * k), np.nan, dtype=np.float32)
        # pixels the source does not reach keep their NaN (the destination is not re-initialised)
        nodata = {"src_nodata": np.nan, "dst_nodata": np.nan} if src.has_nodata else {}
        rasterio.warp.reproject(
            src.data,
            fine,
            src_transform=src.transform,
            src_crs=src_crs,
            dst_transform=g,
            dst_crs=dst_crs,
            resampling=Resampling.bilinear,
            tolerance=cfg.warp_tolerance,
            num_threads=cfg.num_threads,
            init_dest_nodata=False,
            **nodata,
        )
        if k == 1:
            out[r0:r1] = fine
            missing[r0:r1] = np.isnan(fine)
        else:
            out[r0:r1] = block_mean(fine, k)
            missing[r0:r1] = block_mean(np.isnan(fine).astype(np.float32), k)
    return out, missing


def _block_mean_aligned(
    data: npt.NDArray[np.float32],
    aligned: tuple[int, int, int],
    out: npt.NDArray[np.float32],
    missing: npt.NDArray[np.float32],
) -> None:
    """Exact k x k means of a source on the target's lattice (source offset ``row0, col0``)."""
    k, row0, col0 = aligned
    nrows, ncols = out.shape
    sr, sc = data.shape
    # target pixels fully or partly inside the source window; the rest stays missing
    buf = np.full((nrows * k, ncols * k), np.nan, dtype=np.float32)
    r_lo, c_lo = max(0, row0), max(0, col0)
    r_hi, c_hi = min(sr, row0 + nrows * k), min(sc, col0 + ncols * k)
    if r_hi > r_lo and c_hi > c_lo:
        buf[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = data[r_lo:r_hi, c_lo:c_hi]
    if k == 1:
        out[:] = buf
        missing[:] = np.isnan(buf)
    else:
        out[:] = block_mean(buf, k)
        missing[:] = block_mean(np.isnan(buf).astype(np.float32), k)
