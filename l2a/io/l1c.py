"""The L1C contract: what every input form (SAFE, STAC item, array scene) provides.

The chain only ever sees an :class:`L1CProduct`; it never cares which form it was given.

Conventions
-----------
- Every raster grid is an :class:`odc.geo.geobox.GeoBox`.
- ``toa()`` returns an :class:`xarray.Dataset` with one ``float32`` variable per band
  (``B01`` … ``B12``, ``B8A``), dims ``("y", "x")``, TOA reflectance (unitless),
  NaN where the pixel is no-data; it is lazy (dask-backed) for file-backed forms.
  Its ``attrs`` hold ``datetime`` (ISO 8601 UTC string), ``platform``, ``tile_id``,
  ``sun_zenith`` and ``sun_azimuth`` (degrees, :class:`xarray.DataArray` on the same grid),
  and ``view_zenith``/``view_azimuth`` (degrees, mean over bands, DataArray or scalar).
  The grid is attached so that ``ds.odc.geobox`` works.
- ``quality()`` returns boolean ``nodata`` and ``saturation`` per band on the same grid.
- Angle grids (``AngleGrid``) carry their samples on a GeoBox whose *pixel centres* are the
  sample points (for SAFE: the 5 km nodes, the first one at the tile's upper-left corner).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox


@dataclass(frozen=True)
class AngleGrid:
    """Zenith and azimuth angles (degrees) sampled on a coarse grid.

    ``zenith`` and ``azimuth`` have the shape of ``geobox``; NaN marks samples outside
    the swath. Sample ``[i, j]`` is at the centre of pixel ``[i, j]`` of ``geobox``.
    """

    zenith: np.ndarray
    azimuth: np.ndarray
    geobox: GeoBox


@dataclass(frozen=True)
class L1CMetadata:
    """Parsed metadata of one L1C acquisition over one tile.

    Attributes
    ----------
    product_id : str
        Product name without ``.SAFE`` (or the scene / item id for other forms).
    platform : str
        ``"S2A"``, ``"S2B"``, ``"S2C"`` …
    sensing_time : datetime
        Timezone-aware UTC sensing time of the tile.
    tile_id : str
        MGRS tile id without the leading ``T`` (``"31TCJ"``); ``""`` when unknown.
    relative_orbit : int or None
    baseline : str
        Processing baseline, ``"05.10"``; ``""`` when unknown.
    quantification : float
        ``QUANTIFICATION_VALUE`` (10000).
    radio_offsets : Mapping[str, float]
        ``RADIO_ADD_OFFSET`` per band name (-1000 from baseline 04.00, 0 before).
    solar_irradiance : Mapping[str, float]
        Band solar irradiance, W m-2 µm-1.
    earth_sun_u : float or None
        Earth-Sun distance correction factor ``U`` of the metadata.
    crs : str
        ``"EPSG:326xx"``.
    geoboxes : Mapping[int, GeoBox]
        Native grids by resolution in metres (10, 20, 60 for SAFE).
    sun : AngleGrid or None
        Sun angle grid (None when the form has none: compute from time and place).
    view : Mapping[str, AngleGrid]
        Viewing angle grid per band, detectors merged.
    mean_sun_zenith, mean_sun_azimuth : float
        Degrees.
    mean_view : Mapping[str, tuple[float, float]]
        (zenith, azimuth) in degrees per band.
    cloud_cover : float or None
        Cloud cover (%) announced by the provider.
    nodata_value, saturated_value : int
        Special DN values.
    footprints : Mapping[str, str]
        Detector footprint file (or GML) per band, when present.
    quality_masks : Mapping[str, str]
        Quality mask file per band or kind, when present.
    source : str
        Where it was read from (path, URL, scene name).
    extra : dict
        Anything else of interest (datastrip id, orbit direction, product URI …).
    """

    product_id: str
    platform: str
    sensing_time: datetime
    tile_id: str
    relative_orbit: int | None
    baseline: str
    quantification: float
    radio_offsets: Mapping[str, float]
    solar_irradiance: Mapping[str, float]
    earth_sun_u: float | None
    crs: str
    geoboxes: Mapping[int, GeoBox]
    sun: AngleGrid | None
    view: Mapping[str, AngleGrid]
    mean_sun_zenith: float
    mean_sun_azimuth: float
    mean_view: Mapping[str, tuple[float, float]]
    cloud_cover: float | None = None
    nodata_value: int = 0
    saturated_value: int = 65535
    footprints: Mapping[str, str] = field(default_factory=dict)
    quality_masks: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class L1CProduct(Protocol):
    """What the chain needs from an L1C input, whatever its form."""

    @property
    def metadata(self) -> L1CMetadata: ...

    @property
    def bands(self) -> tuple[str, ...]:
        """Band names available in this product."""
        ...

    def geobox(self, resolution: float) -> GeoBox:
        """The tile grid at ``resolution`` metres (10, 20, 60 or coarse, e.g. 240)."""
        ...

    def toa(
        self,
        bands: Sequence[str] | None = None,
        resolution: float = 10,
        *,
        chunks: int | None = 2048,
    ) -> xr.Dataset:
        """Lazy TOA reflectance of ``bands`` (default: all) on ``geobox(resolution)``."""
        ...

    def quality(self, bands: Sequence[str] | None = None, resolution: float = 10) -> xr.Dataset:
        """Boolean ``nodata`` (any band) and ``saturation_<band>`` on ``geobox(resolution)``."""
        ...

    def angles(self, geobox: GeoBox) -> xr.Dataset:
        """``sun_zenith``, ``sun_azimuth``, ``view_zenith``, ``view_azimuth`` (degrees) on ``geobox``."""
        ...


def toa_attrs(
    md: L1CMetadata, resolution: float, angles: Mapping[str, Any] | xr.Dataset, **extra: Any
) -> dict[str, Any]:
    """The ``attrs`` every form puts on its ``toa()`` Dataset (the contract above).

    ``angles`` maps ``sun_zenith``, ``sun_azimuth``, ``view_zenith``, ``view_azimuth`` to
    DataArrays on the grid (or scalars); ``extra`` adds form-specific entries.
    """
    attrs: dict[str, Any] = {
        "datetime": md.sensing_time.isoformat().replace("+00:00", "Z"),
        "platform": md.platform,
        "tile_id": md.tile_id,
        "product_id": md.product_id,
        "baseline": md.baseline,
        "resolution": float(resolution),
    }
    attrs.update({k: angles[k] for k in ("sun_zenith", "sun_azimuth", "view_zenith", "view_azimuth")})
    attrs.update(extra)
    return attrs


def open_l1c(source: str | Path | Any, *, tile: str | None = None) -> L1CProduct:
    """Open an L1C product in any supported form.

    Parameters
    ----------
    source
        A SAFE folder, a SAFE ``.zip``, a ``pystac.Item`` or the path/URL of a STAC item
        JSON, or the name of an array scene (``"slovenia:2015-07-11"``, ``"betsiboka"``).
    tile
        Tile id to select in an old multi-tile (PDMC) product.

    Raises
    ------
    l2a.errors.InputError
        When the input cannot be read; the message names the file and the problem.
    """
    from l2a.io import dispatch

    return dispatch.open_any(source, tile=tile)
