"""DEM preparation and terrain geometry (public facade).

- :func:`load_dem`: elevation of a DEM source (GeoTIFF, Copernicus DEM COG tiles, VRT, or a
  folder of tiles; any CRS) on a target :class:`~odc.geo.geobox.GeoBox`, averaging when
  coarsening and bilinear when refining (see :mod:`l2a.io.dem`).
- :func:`terrain`: slope, aspect and the terrain flags (SHD, HID, STL, TGS, sky-view
  factor) of an elevation grid for a sun/view geometry, as the "terrain dataset" of l2a.
- :func:`prepare_tile`: the GeoTIFFs of ``l2a dem prepare`` (elevation, slope and aspect at
  10 m, 20 m and the coarse resolution on a Sentinel-2 tile's grid), strip by strip so
  that memory stays bounded (about 0.5 GB of peak memory for a 10 m tile).

Missing DEM coverage raises :class:`~l2a.errors.MissingDataError`, unless the caller asks
for the sea-level fallback: uncovered pixels then get 0 m and are flagged (``dem_fallback``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from l2a.errors import InputError, MissingDataError
from l2a.io.dem import DemSettings, SourceRaster, grid_crs, read_source, resample_to_geobox
from l2a.kernels.terrain import TerrainSettings, slope_aspect, terrain_flags

__all__ = [
    "DemSettings",
    "TerrainSettings",
    "load_dem",
    "prepare_tile",
    "terrain",
]

#: Resolutions (metres) of the full-resolution grids written by :func:`prepare_tile`.
FULL_RESOLUTIONS: tuple[int, int] = (10, 20)


def _missing_message(source: str | Path, geobox: GeoBox, missing: npt.NDArray[np.bool_]) -> str:
    frac = float(missing.mean())
    rows, cols = np.nonzero(missing)
    t = geobox.transform
    x0, y0 = t * (float(cols.min()), float(rows.min()))
    x1, y1 = t * (float(cols.max()) + 1.0, float(rows.max()) + 1.0)
    return (
        f"the DEM {source} does not cover {100.0 * frac:.3g}% of the target grid "
        f"(uncovered pixels within x {min(x0, x1):.0f}..{max(x0, x1):.0f}, "
        f"y {min(y0, y1):.0f}..{max(y0, y1):.0f} in {geobox.crs}); add the missing DEM tiles "
        "or allow the sea-level fallback (sea_level_fallback=True, --sea-level-fallback)"
    )


def _resample(
    source: str | Path,
    src: SourceRaster | None,
    geobox: GeoBox,
    sea_level_fallback: bool,
    settings: DemSettings | None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Elevation on ``geobox`` and the fallback mask; raises when coverage is missing."""
    if src is None:
        values = np.full(geobox.shape, np.nan, dtype=np.float32)
        missing = np.ones(geobox.shape, dtype=np.float32)
    else:
        values, missing = resample_to_geobox(src, geobox, settings)
    flagged = missing > 0
    if flagged.any():
        if not sea_level_fallback:
            raise MissingDataError(_missing_message(source, geobox, flagged))
        # sub-pixels without data count as 0 m in the mean
        values = np.where(flagged, np.nan_to_num(values, nan=0.0) * (1.0 - missing), values).astype(
            np.float32
        )
    return values, flagged


def load_dem(
    source: str | Path,
    geobox: GeoBox,
    *,
    sea_level_fallback: bool = False,
    settings: DemSettings | None = None,
) -> xr.DataArray:
    """Elevation of a DEM source on a grid.

    Parameters
    ----------
    source : str or Path
        A GeoTIFF (e.g. a Copernicus DEM COG tile), a VRT, or a folder of tiles, any CRS.
    geobox : GeoBox
        Target grid.
    sea_level_fallback : bool
        Fill pixels the DEM does not cover with 0 m instead of failing.
    settings : DemSettings, optional

    Returns
    -------
    xarray.DataArray
        float32 ``elevation`` (metres) on ``geobox`` (``.odc.geobox`` works), with a boolean
        coordinate ``dem_fallback`` (True where the sea-level fallback filled the pixel, even
        partly) and ``attrs["dem_fallback_fraction"]``.

    Raises
    ------
    l2a.errors.MissingDataError
        The DEM does not cover the whole grid and ``sea_level_fallback`` is False; the message
        names the source, the uncovered fraction and the uncovered box.
    l2a.errors.InputError
        Unreadable source.
    """
    src = read_source(source, geobox, settings)
    values, flagged = _resample(source, src, geobox, sea_level_fallback, settings)
    da = wrap_xr(values, geobox, nodata=np.nan)
    da.name = "elevation"
    da.attrs.update(units="m", source=str(source), dem_fallback_fraction=float(flagged.mean()))
    return da.assign_coords(dem_fallback=(da.dims, flagged))


def _angle(
    value: float | xr.DataArray, shape: tuple[int, ...], name: str
) -> npt.NDArray[np.float64] | float:
    if isinstance(value, xr.DataArray):
        arr = np.asarray(value.values, dtype=np.float64)
        if arr.ndim == 0:
            return float(arr)
        if arr.shape != shape:
            raise InputError(
                name, f"angle grid of shape {arr.shape} does not match the elevation grid {shape}"
            )
        return arr
    return float(value)


def terrain(
    elevation: xr.DataArray,
    sun_zenith: float | xr.DataArray,
    sun_azimuth: float | xr.DataArray,
    view_zenith: float | xr.DataArray = 0.0,
    view_azimuth: float | xr.DataArray = 0.0,
    settings: TerrainSettings | None = None,
) -> xr.Dataset:
    """Terrain dataset of an elevation grid for a sun and view geometry.

    Parameters
    ----------
    elevation : xarray.DataArray
        Elevation (m) on a projected grid in metres (as returned by :func:`load_dem`); its
        ``dem_fallback`` coordinate, if any, is carried over.
    sun_zenith, sun_azimuth, view_zenith, view_azimuth : float or xarray.DataArray
        Degrees; azimuths clockwise from north, from the pixel towards the sun / sensor.
        Scalars or grids of the elevation's shape. Cast shadows use the mean sun direction.
    settings : TerrainSettings, optional
        Thresholds of the flags.

    Returns
    -------
    xarray.Dataset
        ``elevation``, ``slope``, ``aspect`` (float32, degrees), ``cast_shadow`` (SHD),
        ``hidden_faces`` (HID), ``sun_too_low`` (STL), ``tangent_sun`` (TGS),
        ``dem_fallback`` (bool) and ``sky_view`` (float32, 0.5 … 1) on the same grid.
    """
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

    geobox = elevation.odc.geobox
    if geobox is None or not isinstance(geobox, GeoBox):
        raise InputError(
            "elevation",
            "the elevation DataArray carries no grid: build it with load_dem or odc.geo wrap_xr",
        )
    if geobox.crs is None or geobox.crs.geographic:
        raise InputError(
            "elevation",
            f"terrain needs a projected grid in metres, got {geobox.crs}; load the DEM on a UTM grid",
        )
    z = np.asarray(elevation.values, dtype=np.float32)
    dx, dy = abs(geobox.resolution.x), abs(geobox.resolution.y)
    shape = z.shape
    out = terrain_flags(
        z,
        dx,
        dy,
        _angle(sun_zenith, shape, "sun_zenith"),
        _angle(sun_azimuth, shape, "sun_azimuth"),
        _angle(view_zenith, shape, "view_zenith"),
        _angle(view_azimuth, shape, "view_azimuth"),
        settings,
    )
    fallback = elevation.coords.get("dem_fallback")
    fb = (
        np.asarray(fallback.values, dtype=bool)
        if fallback is not None
        else np.zeros(shape, dtype=bool)
    )
    dims = elevation.dims
    variables = {
        "elevation": (dims, z),
        **{k: (dims, v) for k, v in out.items()},
        "dem_fallback": (dims, fb),
    }
    coords = {k: v for k, v in elevation.coords.items() if k != "dem_fallback"}
    ds = xr.Dataset(variables, coords=coords)
    units = {"elevation": "m", "slope": "degree", "aspect": "degree", "sky_view": "1"}
    for name, unit in units.items():
        if name in ds:
            ds[name].attrs["units"] = unit
    return ds


# --------------------------------------------------------------------------------------
# prepare_tile: GeoTIFFs on a tile's grids, strip by strip

_PROFILE = {
    "driver": "GTiff",
    "dtype": "float32",
    "count": 1,
    "nodata": np.nan,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "predictor": 3,
    "num_threads": "ALL_CPUS",
    "bigtiff": "IF_SAFER",
}
#: Target rows resampled and derived per strip (a multiple of the GeoTIFF block height, so
#: that each strip completes its blocks and GDAL can flush them).
_STRIP_ROWS = 256


def _write_level(
    source: str | Path,
    src: SourceRaster | None,
    geobox: GeoBox,
    res: int,
    out_dir: Path,
    sea_level_fallback: bool,
    settings: DemSettings | None,
) -> tuple[list[Path], float]:
    """Write elevation/slope/aspect of one resolution; returns the paths and the fallback fraction."""
    names = ("elevation", "slope", "aspect")
    finals = [out_dir / f"{n}_{res}m.tif" for n in names]
    temps = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in finals]
    nrows, ncols = geobox.shape
    cfg = settings or DemSettings()
    level_key = {"zstd": "zstd_level", "deflate": "zlevel"}.get(cfg.compression.lower())
    profile = {
        **_PROFILE,
        "compress": cfg.compression,
        **({level_key: cfg.compression_level} if level_key else {}),
        "width": ncols,
        "height": nrows,
        "crs": grid_crs(geobox).to_wkt(),
        "transform": geobox.transform,
    }
    dx, dy = abs(geobox.resolution.x), abs(geobox.resolution.y)
    n_fallback = 0
    fb_final = out_dir / f"dem_fallback_{res}m.tif"
    fb_temp = fb_final.with_name(f".{fb_final.name}.{os.getpid()}.tmp")
    try:
        with contextlib.ExitStack() as stack:
            dsts = [stack.enter_context(rasterio.open(t, "w", **profile)) for t in temps]
            fb_dst = None
            if sea_level_fallback:
                mask_profile = {**profile, "dtype": "uint8", "nodata": None, "predictor": 2}
                fb_dst = stack.enter_context(rasterio.open(fb_temp, "w", **mask_profile))
                fb_dst.set_band_description(1, "1 where the DEM was missing and 0 m was used")
            for r0 in range(0, nrows, _STRIP_ROWS):
                r1 = min(nrows, r0 + _STRIP_ROWS)
                h0, h1 = max(0, r0 - 1), min(nrows, r1 + 1)  # one halo row for Horn's kernel
                z, flagged = _resample(source, src, geobox[h0:h1, :], sea_level_fallback, settings)
                slope, aspect = slope_aspect(z, dx, dy)
                sl = slice(r0 - h0, r0 - h0 + (r1 - r0))
                window = rasterio.windows.Window(0, r0, ncols, r1 - r0)
                for dst, arr in zip(dsts, (z, slope, aspect), strict=True):
                    dst.write(arr[sl], 1, window=window)
                n_fallback += int(flagged[sl].sum())
                if fb_dst is not None:
                    fb_dst.write(flagged[sl].astype(np.uint8), 1, window=window)
            fraction = n_fallback / float(nrows * ncols)
            for dst, name in zip(dsts, names, strict=True):
                dst.update_tags(
                    L2A_DEM_SOURCE=str(source), L2A_DEM_FALLBACK_FRACTION=f"{fraction:.6f}"
                )
                dst.set_band_description(1, f"{name} ({'m' if name == 'elevation' else 'degrees'})")
        if n_fallback:
            temps.append(fb_temp)
            finals.append(fb_final)
        for t, f in zip(temps, finals, strict=True):
            os.replace(t, f)
    finally:
        for t in [*temps, fb_temp]:
            t.unlink(missing_ok=True)
    return finals, fraction


def prepare_tile(
    tile_id: str,
    source: str | Path,
    out_dir: str | Path,
    *,
    coarse_resolution: int = 240,
    sea_level_fallback: bool = False,
    resolutions: Sequence[int] | None = None,
    settings: DemSettings | None = None,
) -> list[Path]:
    """Write a tile's DEM products: ``elevation_<res>m.tif``, ``slope_<res>m.tif``, ``aspect_<res>m.tif``.

    Parameters
    ----------
    tile_id : str
        Sentinel-2 tile id (``T31TCJ`` or ``31TCJ``).
    source : str or Path
        DEM GeoTIFF, VRT or folder of tiles (any CRS).
    out_dir : str or Path
        Output folder (created if needed).
    coarse_resolution : int
        Coarse resolution, metres (240 by default).
    sea_level_fallback : bool
        Fill uncovered pixels with 0 m instead of failing; then ``dem_fallback_<res>m.tif``
        (uint8, 1 = filled) is written too for each resolution where it happened, and every
        file carries the tag ``L2A_DEM_FALLBACK_FRACTION``.
    resolutions : sequence of int, optional
        Override of the resolutions (default ``(10, 20, coarse_resolution)``).
    settings : DemSettings, optional

    Returns
    -------
    list of Path
        The files written, per resolution in the order given.

    Raises
    ------
    l2a.errors.MissingDataError
        The DEM does not cover the tile and ``sea_level_fallback`` is False (nothing is left
        behind: the coarse level, checked first, is cheap).
    l2a.errors.InputError
        Bad tile id or unreadable source.
    """
    from l2a.grid import tile_geobox

    if coarse_resolution <= 0:
        raise InputError(
            str(coarse_resolution), "the coarse resolution must be a positive number of metres"
        )
    res_list = (
        list(resolutions)
        if resolutions is not None
        else [*FULL_RESOLUTIONS, int(coarse_resolution)]
    )
    geoboxes = {res: tile_geobox(tile_id, res) for res in res_list}
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    # read the source once, over the footprint of the largest grid (the coarse one sticks out)
    widest = max(geoboxes.values(), key=lambda g: g.extent.area)
    src = read_source(source, widest, settings)
    if src is None and not sea_level_fallback:
        raise MissingDataError(
            f"the DEM {source} does not cover tile {tile_id} at all; give the right DEM tiles "
            "or allow the sea-level fallback (--sea-level-fallback)"
        )
    written: dict[int, list[Path]] = {}
    cache_mb = (settings or DemSettings()).gdal_cache_mb
    with rasterio.Env(GDAL_CACHEMAX=cache_mb * 2**20):
        for res in sorted(res_list, reverse=True):  # coarse first: a coverage error comes fast
            written[res], _ = _write_level(
                source, src, geoboxes[res], res, out, sea_level_fallback, settings
            )
    return [p for res in res_list for p in written[res]]
