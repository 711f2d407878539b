"""The array scenes of the sample data as L1C products.

Two real Sentinel-2 L1C datasets come as reflectance arrays without SAFE metadata:

``slovenia:<YYYY-MM-DD>`` (``slovenia_T33_summer2015``)
    Five summer-2015 dates, 13 bands resampled to about 10 m by Sentinel Hub, 101 x 100 px,
    read from the per-date GeoTIFFs (EPSG:32633, true pixel size 9.995 x 9.997 m, treated as
    10 m nominal: a 240 m request gives 24 x 24 pixel blocks). Sensing times are the real
    ones (UTC, from the GeoTIFF ``DATE`` tag / ``manifest.json``); tile ``33TVL`` is the MGRS
    square computed from the coordinates; platform ``S2A`` (the only Sentinel-2 flying in
    2015). Reflectance = DN / 10000 (pre-2022 product, no offset).

``betsiboka`` (``s2cloudless_betsiboka``)
    One 856 x 512 px scene (rows x columns) of the Betsiboka estuary, Madagascar, stored
    without georeferencing. Its pixels are a Sentinel Hub WMS rendering on the WGS84 bbox
    lon 46.16..46.51, lat -16.15..-15.58 (about 73.2 m x 73.7 m pixels). The scene is put on
    a **UTM zone 38 S (EPSG:32738) grid** fitted to that bbox (edge midpoints projected), so
    that the chain can work in metres; the meridian convergence there (0.3-0.4 deg) makes
    that grid differ from the true geographic one by up to about 3 pixels (200 m) at the
    corners. The exact geographic grid is kept in ``metadata.extra["geographic_geobox"]``.
    Its date is unknown: the nominal time 2017-12-15T07:12:03Z (the Sentinel Hub example
    image of the same area, a different acquisition) is used, so its **sun angles are
    approximate** (right local time of a Sentinel-2 pass and right place, wrong day).

Both have no angle grids: sun angles are computed from time and place
(:mod:`l2a.sensors.solar`), the view is taken as nadir (:data:`l2a.io._array_product.NEAR_NADIR`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from l2a.errors import InputError, MissingDataError
from l2a.io._array_product import (
    NEAR_NADIR,
    ArrayL1CProduct,
    mgrs_tile_id,
    pixel_centres_lonlat,
    zoom_out,
)
from l2a.io.l1c import L1CMetadata
from l2a.paths import sample_data_dir
from l2a.sensors.sentinel2 import BAND_NAMES
from l2a.sensors.solar import earth_sun_u, solar_irradiance, sun_angles

SLOVENIA_DIR: Final[str] = "slovenia_T33_summer2015"
BETSIBOKA_DIR: Final[str] = "s2cloudless_betsiboka"
#: Dates of the Slovenia series (chronological).
SLOVENIA_DATES: Final[tuple[str, ...]] = ("2015-07-11", "2015-07-31", "2015-08-20", "2015-08-30", "2015-09-09")


@dataclass(frozen=True)
class BetsibokaGeometry:
    """Assumed georeferencing and time of the ``betsiboka`` scene (see the module docstring).

    Attributes
    ----------
    lon_min, lon_max, lat_min, lat_max : float
        WGS84 bbox (deg) of the Sentinel Hub rendering the array matches.
    shape : tuple[int, int]
        (rows, columns) of the array.
    epsg : int
        Projected CRS the scene is put on (UTM zone 38 S).
    nominal_time : str
        ISO 8601 UTC time used for the sun angles (the true date is unknown).
    platform : str
        Nominal platform.
    """

    lon_min: float = 46.16
    lon_max: float = 46.51
    lat_min: float = -16.15
    lat_max: float = -15.58
    shape: tuple[int, int] = (856, 512)
    epsg: int = 32738
    nominal_time: str = "2017-12-15T07:12:03+00:00"
    platform: str = "S2A"


BETSIBOKA: Final[BetsibokaGeometry] = BetsibokaGeometry()


def list_scenes() -> list[str]:
    """Names accepted by :func:`open_scene` (``slovenia:<date>`` for the 5 dates, ``betsiboka``)."""
    return [f"slovenia:{d}" for d in SLOVENIA_DATES] + ["betsiboka"]


def _folder(name: str) -> Path:
    root = sample_data_dir() / name
    if not root.is_dir():
        raise MissingDataError(
            f"sample data folder {root} not found: set L2A_SAMPLE_DATA to the folder of the shared "
            "Sentinel-2 sample data (default ../shared/data beside the checkout)"
        )
    return root


def open_scene(name: str) -> ArrayL1CProduct:
    """Open an array scene of the sample data as an :class:`~l2a.io.l1c.L1CProduct`.

    Parameters
    ----------
    name
        ``"slovenia:2015-07-11"`` (one of :func:`list_scenes`) or ``"betsiboka"``; a leading
        ``"scene:"`` is accepted.

    Raises
    ------
    l2a.errors.InputError
        For an unknown name (the message lists the known ones).
    l2a.errors.MissingDataError
        When the sample data are not installed.
    """
    key = name.strip().lower().removeprefix("scene:")
    if key == "betsiboka":
        return _open_betsiboka()
    if key.startswith("slovenia:") and key.split(":", 1)[1] in SLOVENIA_DATES:
        return _open_slovenia(key.split(":", 1)[1])
    raise InputError(name, f"unknown array scene; known scenes: {', '.join(list_scenes())}")


def _native_geoboxes(gbox: GeoBox, nominal: float) -> dict[int, GeoBox]:
    """The grids :meth:`ArrayL1CProduct.geobox` gives for 10, 20 and 60 m."""
    return {r: zoom_out(gbox, max(1, round(r / nominal))) for r in (10, 20, 60)}


# -- Slovenia ---------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _read_slovenia(date: str) -> tuple[dict[str, np.ndarray], GeoBox, datetime]:
    import rasterio

    folder = _folder(SLOVENIA_DIR)
    path = folder / f"2015summer_{date}.tif"
    if not path.is_file():
        raise MissingDataError(f"{path} not found (sample data incomplete)")
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32)
        descr = src.descriptions
        epsg = src.crs.to_epsg()
        gbox = GeoBox((src.height, src.width), src.transform, f"EPSG:{epsg}" if epsg else src.crs.to_wkt())
        tag = src.tags().get("DATE")
    manifest = json.loads((folder / "manifest.json").read_text())
    times = [s["date"] for s in manifest["scenes"]["L1C_13band_2015summer_5dates"]]
    match = [t for t in times if t.startswith(date)]
    stamp = tag or (match[0] if match else None)
    if not stamp:
        raise InputError(path, "no sensing time (DATE tag) and no entry in manifest.json")
    when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    names = [d if d else BAND_NAMES[i] for i, d in enumerate(descr)]
    return {b: data[i] for i, b in enumerate(names)}, gbox, when


def _open_slovenia(date: str) -> ArrayL1CProduct:
    bands, gbox, when = _read_slovenia(date)
    lon, lat = pixel_centres_lonlat(gbox)
    clon, clat = float(lon.mean()), float(lat.mean())
    zen, azi = sun_angles(when, clon, clat)
    platform = "S2A"
    md = L1CMetadata(
        product_id=f"slovenia:{date}",
        platform=platform,
        sensing_time=when,
        tile_id=mgrs_tile_id(clon, clat),
        relative_orbit=None,
        baseline="",
        quantification=10000.0,
        radio_offsets=dict.fromkeys(bands, 0.0),
        solar_irradiance=solar_irradiance(platform),
        earth_sun_u=earth_sun_u(when),
        crs=str(gbox.crs),
        geoboxes=_native_geoboxes(gbox, 10.0),
        sun=None,
        view={},
        mean_sun_zenith=float(zen),
        mean_sun_azimuth=float(azi),
        mean_view={b: (NEAR_NADIR.zenith_deg, NEAR_NADIR.azimuth_deg) for b in bands},
        cloud_cover=None,
        source=str(sample_data_dir() / SLOVENIA_DIR / f"2015summer_{date}.tif"),
        extra={
            "form": "array scene",
            "native_pixel_size_m": (abs(gbox.affine.a), abs(gbox.affine.e)),
            "center_lonlat": (clon, clat),
            "sun_angles": "computed from time and place (NREL SPA)",
            "view_angles": "assumed nadir",
        },
    )
    return ArrayL1CProduct(bands, gbox, md, nominal_resolution=10.0)


# -- Betsiboka --------------------------------------------------------------------------------


def betsiboka_geoboxes(geom: BetsibokaGeometry = BETSIBOKA) -> tuple[GeoBox, GeoBox]:
    """(UTM grid used, exact geographic grid) of the ``betsiboka`` scene."""
    rows, cols = geom.shape
    geo = GeoBox(
        (rows, cols),
        Affine((geom.lon_max - geom.lon_min) / cols, 0.0, geom.lon_min, 0.0,
               -(geom.lat_max - geom.lat_min) / rows, geom.lat_max),
        "EPSG:4326",
    )
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{geom.epsg}", always_xy=True)
    mid_lon = 0.5 * (geom.lon_min + geom.lon_max)
    mid_lat = 0.5 * (geom.lat_min + geom.lat_max)
    x0, _ = to_utm.transform(geom.lon_min, mid_lat)
    x1, _ = to_utm.transform(geom.lon_max, mid_lat)
    _, y0 = to_utm.transform(mid_lon, geom.lat_max)
    _, y1 = to_utm.transform(mid_lon, geom.lat_min)
    utm = GeoBox((rows, cols), Affine((x1 - x0) / cols, 0.0, x0, 0.0, -(y0 - y1) / rows, y0), f"EPSG:{geom.epsg}")
    return utm, geo


@lru_cache(maxsize=1)
def _read_betsiboka() -> np.ndarray:
    path = _folder(BETSIBOKA_DIR) / "input_arrays.npz"
    if not path.is_file():
        raise MissingDataError(f"{path} not found (sample data incomplete)")
    with np.load(path) as z:
        arr = np.asarray(z["s2_im"], dtype=np.float32)
    if arr.shape != (1, *BETSIBOKA.shape, 13):
        raise InputError(path, f"s2_im has shape {arr.shape}, expected (1, 856, 512, 13)")
    return arr[0]


def _open_betsiboka() -> ArrayL1CProduct:
    arr = _read_betsiboka()
    utm, geo = betsiboka_geoboxes()
    when = datetime.fromisoformat(BETSIBOKA.nominal_time)
    clon = 0.5 * (BETSIBOKA.lon_min + BETSIBOKA.lon_max)
    clat = 0.5 * (BETSIBOKA.lat_min + BETSIBOKA.lat_max)
    zen, azi = sun_angles(when, clon, clat)
    bands = {b: arr[..., i] for i, b in enumerate(BAND_NAMES)}
    nominal = 0.5 * (abs(utm.affine.a) + abs(utm.affine.e))
    md = L1CMetadata(
        product_id="betsiboka",
        platform=BETSIBOKA.platform,
        sensing_time=when,
        tile_id=mgrs_tile_id(clon, clat),
        relative_orbit=None,
        baseline="",
        quantification=10000.0,
        radio_offsets=dict.fromkeys(bands, 0.0),
        solar_irradiance=solar_irradiance(BETSIBOKA.platform),
        earth_sun_u=earth_sun_u(when),
        crs=f"EPSG:{BETSIBOKA.epsg}",
        geoboxes=_native_geoboxes(utm, nominal),
        sun=None,
        view={},
        mean_sun_zenith=float(zen),
        mean_sun_azimuth=float(azi),
        mean_view={b: (NEAR_NADIR.zenith_deg, NEAR_NADIR.azimuth_deg) for b in bands},
        cloud_cover=None,
        source=str(sample_data_dir() / BETSIBOKA_DIR / "input_arrays.npz"),
        extra={
            "form": "array scene",
            "geographic_geobox": geo,
            "native_pixel_size_m": (abs(utm.affine.a), abs(utm.affine.e)),
            "date_known": False,
            "sun_angles": "APPROXIMATE: computed for a nominal date (true date unknown)",
            "view_angles": "assumed nadir",
            "georeferencing": "UTM 38S grid fitted to the WGS84 bbox; up to ~3 px off at the corners",
        },
    )
    return ArrayL1CProduct(bands, utm, md, nominal_resolution=nominal)
