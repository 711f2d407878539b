"""Shared pieces of the in-memory L1C forms (array scenes) and of readers without angle grids.

- :func:`block_mean`: exact block averaging of a 2-D array, NaN-aware, partial edge blocks kept.
- :func:`sun_angles_on_geobox`: sun zenith/azimuth on every pixel centre of a GeoBox, computed
  with :mod:`l2a.sensors.solar` (on a node lattice and interpolated for large grids).
- :func:`mgrs_tile_id`: MGRS 100 km square (Sentinel-2 tile id) containing a point.
- :class:`ArrayL1CProduct`: an :class:`~l2a.io.l1c.L1CProduct` over reflectance arrays that
  all share one grid (every band resampled to it by the data provider).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from pyproj import CRS, Transformer

from l2a.io.l1c import AngleGrid, L1CMetadata, toa_attrs
from l2a.sensors.sentinel2 import BAND_NAMES, band
from l2a.sensors.solar import sun_angles

#: Row letters of the MGRS 100 km squares (I and O skipped).
_MGRS_ROWS: Final[str] = "ABCDEFGHJKLMNPQRSTUV"
#: Column letter sets by UTM zone modulo 3 (1, 2, 0).
_MGRS_COLS: Final[dict[int, str]] = {1: "ABCDEFGH", 2: "JKLMNPQR", 0: "STUVWXYZ"}
#: Latitude band letters from 80 S, 8 degrees each (X is 12 degrees).
_MGRS_BANDS: Final[str] = "CDEFGHJKLMNPQRSTUVWXX"


@dataclass(frozen=True)
class SunGridSettings:
    """How sun angles are put on a grid.

    Attributes
    ----------
    max_direct_pixels : int
        Grids with at most this many pixels get the solar position at every pixel centre;
        larger grids get it on a node lattice and bilinear interpolation (the sun angles
        change by about 0.01 deg per km, so the interpolation error is negligible).
    node_spacing_m : float
        Spacing (m) of that lattice (5000 m, like the SAFE angle grids).
    """

    max_direct_pixels: int = 262_144
    node_spacing_m: float = 5000.0


DEFAULT_SUN_GRID: Final[SunGridSettings] = SunGridSettings()


def block_mean(a: np.ndarray, factor: int | tuple[int, int]) -> np.ndarray:
    """Exact block mean of a 2-D array by an integer ``factor`` (rows, columns).

    The output has ``ceil(shape / factor)`` pixels; a partial block at the bottom or right
    edge is the mean of the pixels it holds. NaN pixels are left out of the mean; a block
    without any finite pixel is NaN. Output is ``float32`` (sums in ``float64``).
    """
    fy, fx = (factor, factor) if isinstance(factor, int) else factor
    if fy < 1 or fx < 1:
        raise ValueError(f"block factor must be >= 1, got {factor!r}")
    if fy == 1 and fx == 1:
        return np.asarray(a, dtype=np.float32)
    ny, nx = a.shape
    oy, ox = -(-ny // fy), -(-nx // fx)
    padded = np.full((oy * fy, ox * fx), np.nan, dtype=np.float64)
    padded[:ny, :nx] = a
    valid = np.isfinite(padded)
    blocks = np.where(valid, padded, 0.0).reshape(oy, fy, ox, fx)
    total = blocks.sum(axis=(1, 3))
    count = valid.reshape(oy, fy, ox, fx).sum(axis=(1, 3))
    out = np.full((oy, ox), np.nan, dtype=np.float64)
    np.divide(total, count, out=out, where=count > 0)
    return out.astype(np.float32)


def zoom_out(geobox: GeoBox, factor: int) -> GeoBox:
    """``geobox`` with pixels ``factor`` times larger, same upper-left corner, ``ceil`` shape.

    Same result as ``GeoBox.zoom_out`` (whose affine ``*`` raises a PendingDeprecationWarning
    with affine >= 3.1, an error under our warning filters).
    """
    if factor == 1:
        return geobox
    ny, nx = geobox.shape
    return GeoBox((-(-ny // factor), -(-nx // factor)), geobox.affine @ Affine.scale(factor), geobox.crs)


def pixel_centres_lonlat(geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (deg) of every pixel centre of an axis-aligned ``geobox``."""
    tr = geobox.affine
    ny, nx = geobox.shape
    xs = tr.c + (np.arange(nx) + 0.5) * tr.a
    ys = tr.f + (np.arange(ny) + 0.5) * tr.e
    xx, yy = np.meshgrid(xs, ys)
    to_ll = Transformer.from_crs(CRS.from_user_input(str(geobox.crs)), "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xx, yy)
    return np.asarray(lon), np.asarray(lat)


def sun_angles_on_geobox(
    time: datetime | str, geobox: GeoBox, settings: SunGridSettings = DEFAULT_SUN_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Sun zenith and azimuth (deg, float32) at every pixel centre of ``geobox`` at ``time``.

    Small grids are computed pixel by pixel; larger ones on a lattice of nodes about
    ``settings.node_spacing_m`` apart (always including the first and last pixel centres),
    interpolated bilinearly (azimuth through its sine and cosine, so 0/360 is safe).
    """
    ny, nx = geobox.shape
    if ny * nx <= settings.max_direct_pixels:
        lon, lat = pixel_centres_lonlat(geobox)
        zen, azi = sun_angles(time, lon, lat)
        return zen.astype(np.float32), azi.astype(np.float32)
    from scipy.interpolate import RegularGridInterpolator

    res = max(abs(geobox.affine.a), abs(geobox.affine.e))
    step = max(1, int(settings.node_spacing_m // res))
    rows = np.unique(np.r_[np.arange(0, ny, step), ny - 1])
    cols = np.unique(np.r_[np.arange(0, nx, step), nx - 1])
    tr = geobox.affine
    xs = tr.c + (cols + 0.5) * tr.a
    ys = tr.f + (rows + 0.5) * tr.e
    xx, yy = np.meshgrid(xs, ys)
    to_ll = Transformer.from_crs(CRS.from_user_input(str(geobox.crs)), "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xx, yy)
    zen, azi = sun_angles(time, lon, lat)
    rad = np.deg2rad(azi)
    out_r, out_c = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    pts = np.stack([out_r.ravel(), out_c.ravel()], axis=-1).astype(np.float64)
    grids = {}
    for name, field in (("zen", zen), ("sin", np.sin(rad)), ("cos", np.cos(rad))):
        interp = RegularGridInterpolator((rows.astype(float), cols.astype(float)), field, method="linear")
        grids[name] = interp(pts).reshape(ny, nx)
    azimuth = np.mod(np.rad2deg(np.arctan2(grids["sin"], grids["cos"])), 360.0)
    return grids["zen"].astype(np.float32), azimuth.astype(np.float32)


def angle_node_geobox(geobox10: GeoBox, step_m: float = 5000.0) -> GeoBox:
    """Grid whose pixel centres are the angle-grid nodes: first node at the UL corner of
    ``geobox10``, ``step_m`` apart, enough nodes to reach (or pass) the far edges."""
    ny, nx = geobox10.shape
    tr = geobox10.affine
    ext_x, ext_y = nx * abs(tr.a), ny * abs(tr.e)
    n_c = math.ceil(ext_x / step_m - 1e-9) + 1
    n_r = math.ceil(ext_y / step_m - 1e-9) + 1
    return GeoBox((n_r, n_c), Affine(step_m, 0.0, tr.c - step_m / 2, 0.0, -step_m, tr.f + step_m / 2), geobox10.crs)


def node_xy(nodes: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    tr = nodes.affine
    ny, nx = nodes.shape
    xs = tr.c + (np.arange(nx) + 0.5) * tr.a
    ys = tr.f + (np.arange(ny) + 0.5) * tr.e
    return np.meshgrid(xs, ys)


def computed_sun_grid(time: datetime, geobox10: GeoBox, step_m: float = 5000.0) -> AngleGrid:
    """Sun angles (deg) at the 5 km nodes of ``geobox10`` from time and place."""
    nodes = angle_node_geobox(geobox10, step_m)
    xx, yy = node_xy(nodes)
    lon, lat = Transformer.from_crs(str(geobox10.crs), "EPSG:4326", always_xy=True).transform(xx, yy)
    zen, azi = sun_angles(time, lon, lat)
    return AngleGrid(zen, azi, nodes)


def mgrs_tile_id(lon: float, lat: float) -> str:
    """MGRS 100 km square (the Sentinel-2 tile id, e.g. ``"33TVL"``) that contains (lon, lat).

    Standard UTM zones (the Norway/Svalbard exceptions are ignored), valid between 80 S and
    84 N. Sentinel-2 tiles overlap their neighbours by 9.8 km: this is the square whose
    100 km cell holds the point, which the tile of the same name always covers.
    """
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"latitude {lat} outside the UTM/MGRS range 80 S..84 N")
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    east, north = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lon, lat)
    lat_band = _MGRS_BANDS[min(int((lat + 80.0) // 8.0), len(_MGRS_BANDS) - 1)]
    col = _MGRS_COLS[zone % 3][int(east // 100_000) - 1]
    row_offset = 0 if zone % 2 == 1 else 5
    row = _MGRS_ROWS[(int(north // 100_000) + row_offset) % 20]
    return f"{zone:02d}{lat_band}{col}{row}"


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 / UTM zone containing (lon, lat) (326zz north, 327zz south)."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class NearNadirView:
    """View geometry assumed for forms without viewing angles.

    Attributes
    ----------
    zenith_deg : float
        View zenith angle (deg). The true value is within 0..12 deg across the MSI swath;
        small areas are treated as seen from nadir (0 deg).
    azimuth_deg : float
        View azimuth (deg clockwise from north); meaningless at nadir, 0 by convention.
    """

    zenith_deg: float = 0.0
    azimuth_deg: float = 0.0


NEAR_NADIR: Final[NearNadirView] = NearNadirView()


def _geobox_dataarray(values: np.ndarray | object, geobox: GeoBox, name: str, chunks: int | None) -> xr.DataArray:
    """Wrap a 2-D array on ``geobox`` (optionally dask-chunked) with odc-geo coordinates."""
    data = values
    if chunks is not None:
        import dask.array as da

        data = da.from_array(np.asarray(values), chunks=(chunks, chunks))
    return xr.DataArray(data, dims=("y", "x"), coords=xr_coords(geobox), name=name)


class ArrayL1CProduct:
    """An L1C product held in memory: TOA reflectance arrays on one grid.

    Parameters
    ----------
    reflectance : Mapping[str, numpy.ndarray]
        ``float32`` TOA reflectance per band name, all of ``geobox.shape``; NaN is no-data.
    geobox : GeoBox
        The grid of every band (the native grid).
    metadata : L1CMetadata
        Filled by the caller (``sun=None``, ``view={}`` when no angle grid exists).
    nominal_resolution : float
        Nominal pixel size (m) of ``geobox`` used to turn a requested resolution into an
        integer block factor ``k = max(1, round(resolution / nominal_resolution))``.
    view : NearNadirView
        View geometry to report (constant over the scene).

    Notes
    -----
    ``geobox(resolution)`` is the native grid zoomed out by ``k``; requests finer than the
    native grid give the native grid. The pixel size of a coarse grid is exactly ``k`` times
    the native one (e.g. 24 x 9.995 m = 239.9 m for Slovenia): use ``ds.odc.geobox``, never
    the requested number, when the exact size matters. Coarse bands are exact block means
    (:func:`block_mean`, partial edge blocks kept).
    """

    def __init__(
        self,
        reflectance: Mapping[str, np.ndarray],
        geobox: GeoBox,
        metadata: L1CMetadata,
        *,
        nominal_resolution: float = 10.0,
        view: NearNadirView = NEAR_NADIR,
    ) -> None:
        for name, arr in reflectance.items():
            if arr.shape != tuple(geobox.shape):
                raise ValueError(f"band {name}: shape {arr.shape} differs from the grid {tuple(geobox.shape)}")
        order = [b for b in BAND_NAMES if b in reflectance]
        self._data = {b: np.asarray(reflectance[b], dtype=np.float32) for b in order}
        self._geobox = geobox
        self._metadata = metadata
        self._nominal = float(nominal_resolution)
        self._view = view
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._sun_cache: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}

    # -- protocol -----------------------------------------------------------------------
    @property
    def metadata(self) -> L1CMetadata:
        return self._metadata

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._data)

    def factor(self, resolution: float) -> int:
        """Integer block factor used for ``resolution`` metres."""
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution!r}")
        return max(1, round(float(resolution) / self._nominal))

    def geobox(self, resolution: float = 10) -> GeoBox:
        k = self.factor(resolution)
        return zoom_out(self._geobox, k)

    def _band(self, name: str, k: int) -> np.ndarray:
        key = (name, k)
        if key not in self._cache:
            self._cache[key] = block_mean(self._data[name], k)
        return self._cache[key]

    def _select(self, bands: Sequence[str] | None) -> list[str]:
        if bands is None:
            return list(self._data)
        names = [band(b).name for b in bands]
        missing = [b for b in names if b not in self._data]
        if missing:
            raise KeyError(f"bands {missing} not in this product (has {', '.join(self._data)})")
        return names

    def sun(self, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
        """Sun zenith and azimuth (deg) on ``geobox`` from the sensing time (cached)."""
        key = (tuple(geobox.shape), tuple(geobox.affine), str(geobox.crs))
        if key not in self._sun_cache:
            self._sun_cache[key] = sun_angles_on_geobox(self._metadata.sensing_time, geobox)
        return self._sun_cache[key]

    def angles(self, geobox: GeoBox) -> xr.Dataset:
        zen, azi = self.sun(geobox)
        vz = np.full(geobox.shape, self._view.zenith_deg, dtype=np.float32)
        va = np.full(geobox.shape, self._view.azimuth_deg, dtype=np.float32)
        ds = xr.Dataset(
            {
                "sun_zenith": _geobox_dataarray(zen, geobox, "sun_zenith", None),
                "sun_azimuth": _geobox_dataarray(azi, geobox, "sun_azimuth", None),
                "view_zenith": _geobox_dataarray(vz, geobox, "view_zenith", None),
                "view_azimuth": _geobox_dataarray(va, geobox, "view_azimuth", None),
            }
        )
        for v in ds.data_vars.values():
            v.attrs["units"] = "degree"
        ds.attrs["angles_source"] = "computed (NREL SPA) sun; constant near-nadir view"
        return ds

    def _common_attrs(self, geobox: GeoBox, resolution: float) -> dict[str, object]:
        ang = self.angles(geobox)
        angles = {
            "sun_zenith": ang["sun_zenith"],
            "sun_azimuth": ang["sun_azimuth"],
            "view_zenith": self._view.zenith_deg,
            "view_azimuth": self._view.azimuth_deg,
        }
        return toa_attrs(self._metadata, resolution, angles)

    def toa(
        self,
        bands: Sequence[str] | None = None,
        resolution: float = 10,
        *,
        chunks: int | None = 2048,
    ) -> xr.Dataset:
        names = self._select(bands)
        k = self.factor(resolution)
        gbox = self.geobox(resolution)
        data = {}
        for b in names:
            da_ = _geobox_dataarray(self._band(b, k).copy(), gbox, b, chunks)  # callers may write into it
            da_.attrs.update({"units": "1", "long_name": f"TOA reflectance {b}"})
            data[b] = da_
        ds = xr.Dataset(data, coords=xr_coords(gbox))
        ds.attrs.update(self._common_attrs(gbox, resolution))
        return ds

    def quality(self, bands: Sequence[str] | None = None, resolution: float = 10) -> xr.Dataset:
        names = self._select(bands)
        k = self.factor(resolution)
        gbox = self.geobox(resolution)
        nodata = np.zeros(gbox.shape, dtype=bool)
        for b in names:
            nodata |= ~np.isfinite(self._band(b, k))
        out = {"nodata": _geobox_dataarray(nodata, gbox, "nodata", None)}
        for b in names:
            # reflectance arrays carry no DN: saturation cannot be known, none is flagged
            out[f"saturation_{b}"] = _geobox_dataarray(np.zeros(gbox.shape, dtype=bool), gbox, b, None)
        return xr.Dataset(out, coords=xr_coords(gbox))
