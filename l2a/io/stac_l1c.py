"""An L1C described by a STAC item, read through the same interface as a SAFE product.

What is read from the item
    - Band assets: keyed by band name (``B04``, ``B4``, ``b04``) or common name (``red``,
      ``nir08`` …), or identified by their ``eo:bands`` (``name`` / ``common_name``) or STAC 1.1
      ``bands``/``eo:common_name``. Other assets (TCI, previews, metadata) are ignored.
    - Grid: ``proj:code``/``proj:epsg``, ``proj:shape``, ``proj:transform`` of the asset,
      else of the item, else the file's own header.
    - Radiometry: ``raster:bands`` ``scale``/``offset``/``nodata`` of the asset when given;
      else ``s2:processing_baseline`` decides (``RADIO_ADD_OFFSET`` -1000 DN from 04.00, none
      before; ``QUANTIFICATION_VALUE`` 10000). Without either the item is refused: the offset
      cannot be guessed. DN 0 is no-data and 65535 saturated unless ``nodata`` says otherwise.
    - Time ``datetime``; platform ``platform`` (``sentinel-2a`` -> ``S2A``); tile
      ``s2:mgrs_tile``, or ``mgrs:*`` fields, or the id; orbit ``sat:relative_orbit``.
    - Angles: ``view:sun_azimuth`` and ``view:sun_elevation`` (or ``s2:mean_solar_zenith``/
      ``s2:mean_solar_azimuth``), ``view:incidence_angle`` and ``view:azimuth``.

Angles on a grid
    Items carry tile means only. The sun field is computed from time and place (NREL SPA on
    5 km nodes, like a SAFE sun grid) and, when the item gives the mean sun angles, shifted so
    that its value at the grid centre equals them (the item's time may be the datatake
    start, minutes before the tile). The view angles are the item's constants (nadir, 0 deg,
    when absent).

Pixels
    Exactly as :mod:`l2a.io.safe`: each dask task opens its band file and reads a window
    through :func:`l2a.io.safe_read.read_resampled` (JPEG2000 resolution levels / overviews
    for coarse grids), and reflectance is ``(DN + offset) / quantification``, so that a SAFE
    product and a STAC item pointing at its files give the same numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from l2a.errors import InputError
from l2a.io._array_product import NEAR_NADIR, computed_sun_grid, pixel_centres_lonlat
from l2a.io.l1c import AngleGrid, L1CMetadata, toa_attrs
from l2a.io.lazy import angle_chunk, blocked, quality_chunk, toa_chunk
from l2a.io.safe_read import DEFAULT_READ_SETTINGS, ReadSettings
from l2a.sensors.sentinel2 import BANDS, band
from l2a.sensors.solar import earth_sun_u, solar_irradiance, sun_angles

#: First processing baseline with ``RADIO_ADD_OFFSET`` = -1000 DN.
OFFSET_BASELINE: Final[str] = "04.00"
DEFAULT_QUANTIFICATION: Final[float] = 10000.0
DEFAULT_OFFSET_DN: Final[float] = -1000.0
_BY_COMMON: Final[dict[str, str]] = {b.common_name: b.name for b in BANDS}
_TILE_RE = re.compile(r"(?:^|[_T])(\d{1,2}[C-X][A-Z]{2})(?:_|$)")


@dataclass(frozen=True)
class StacBand:
    """One band asset of the item."""

    name: str
    href: str  # GDAL path
    shape: tuple[int, int]
    transform: Affine
    crs: str
    quantification: float
    offset: float  # DN added before dividing by quantification
    nodata: int
    saturated: int

    @property
    def extent(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f, self.shape[1] * t.a, self.shape[0] * -t.e)


def _band_of_asset(key: str, asset: Mapping[str, Any]) -> str | None:
    """Our band name for an asset, or None when it is not a spectral band."""
    candidates: list[str] = []
    for eb in asset.get("eo:bands") or []:
        candidates += [str(eb.get("name", "")), str(eb.get("common_name", ""))]
    for eb in asset.get("bands") or []:
        candidates += [str(eb.get("name", "")), str(eb.get("eo:common_name", ""))]
    candidates += [str(asset.get("eo:common_name", "")), key]
    for c in candidates:
        if not c:
            continue
        low = c.lower()
        if low in _BY_COMMON:
            return _BY_COMMON[low]
        try:
            return band(c).name
        except KeyError:
            continue
    return None


def _gdal_href(href: str) -> str:
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    if href.startswith("file://"):
        return href[7:]
    return href


def _platform(props: Mapping[str, Any], item_id: str) -> str:
    p = str(props.get("platform") or "")
    m = re.match(r"(?i)sentinel-?2([a-d])$", p)
    if m:
        return f"S2{m.group(1).upper()}"
    m = re.match(r"(S2[A-D])", item_id)
    return m.group(1) if m else (p.upper() or "S2A")


def _tile_id(props: Mapping[str, Any], item_id: str) -> str:
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"]).upper().removeprefix("T")
    if props.get("mgrs:utm_zone") and props.get("mgrs:latitude_band") and props.get("mgrs:grid_square"):
        return f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}".upper()
    m = _TILE_RE.search(item_id)
    return m.group(1).zfill(5) if m else ""


def _baseline(props: Mapping[str, Any]) -> str:
    b = props.get("s2:processing_baseline")
    if b is None:
        return ""
    text = str(b)
    m = re.match(r"^N?(\d{1,2})\.?(\d{2})$", text)
    return f"{int(m.group(1)):02d}.{m.group(2)}" if m else text


def _projection(asset: Mapping[str, Any], props: Mapping[str, Any]) -> tuple[str | None, tuple[int, int] | None, Affine | None]:
    def get(key: str) -> Any:
        return asset.get(key, props.get(key))

    crs = None
    if get("proj:code"):
        crs = str(get("proj:code"))
    elif get("proj:epsg"):
        crs = f"EPSG:{int(get('proj:epsg'))}"
    shape = tuple(int(v) for v in get("proj:shape")) if get("proj:shape") else None
    tr = None
    if get("proj:transform"):
        t = [float(v) for v in get("proj:transform")]
        tr = Affine(*t[:6])
    return crs, shape, tr  # type: ignore[return-value]


def _round_if_close(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < 1e-6 * max(1.0, abs(v)) else v


class StacL1CProduct:
    """An L1C product described by a STAC item. Implements :class:`l2a.io.l1c.L1CProduct`."""

    def __init__(self, item: Mapping[str, Any], source: str, base_dir: str | None, settings: ReadSettings) -> None:
        self._item = item
        self._source = source
        self._base = base_dir
        self.settings = settings
        self._props: Mapping[str, Any] = item.get("properties") or {}
        self._id = str(item.get("id") or "")
        if not self._props.get("datetime"):
            raise InputError(source, "STAC item without a datetime")
        try:
            self._time = datetime.fromisoformat(str(self._props["datetime"]).replace("Z", "+00:00"))
        except ValueError:
            raise InputError(source, f"unreadable datetime {self._props['datetime']!r}") from None
        self._bands = self._read_bands()
        if not self._bands:
            raise InputError(source, "no Sentinel-2 band asset (keys B01…B12/B8A, common names or eo:bands)")

    # ---- assets
    def _href(self, href: str) -> str:
        if "://" in href or href.startswith("/") or self._base is None:
            return _gdal_href(href)
        return str((Path(self._base) / href).resolve())

    def _read_bands(self) -> dict[str, StacBand]:
        props = self._props
        baseline = _baseline(props)
        out: dict[str, StacBand] = {}
        for key, asset in (self._item.get("assets") or {}).items():
            name = _band_of_asset(key, asset)
            if name is None or name in out:
                continue
            roles = asset.get("roles") or []
            if roles and not ({"data", "reflectance"} & set(roles)):
                continue
            href = self._href(str(asset.get("href", "")))
            crs, shape, tr = _projection(asset, props)
            if crs is None or shape is None or tr is None:
                crs, shape, tr = self._header(href, crs, shape, tr)
            rb = (asset.get("raster:bands") or [{}])[0]
            nodata = int(rb.get("nodata", 0) if rb.get("nodata") is not None else 0)
            if "scale" in rb or "offset" in rb:
                scale = float(rb.get("scale", 1.0))
                off = float(rb.get("offset", 0.0))
                quant = _round_if_close(1.0 / scale)
                offset = _round_if_close(off / scale)
            elif baseline:
                quant = DEFAULT_QUANTIFICATION
                offset = DEFAULT_OFFSET_DN if baseline >= OFFSET_BASELINE else 0.0
            else:
                raise InputError(
                    self._source,
                    f"band {name}: no raster:bands scale/offset and no s2:processing_baseline: the "
                    "radiometric offset (-1000 DN from baseline 04.00) cannot be known",
                )
            if abs(tr.b) > 0 or abs(tr.d) > 0 or tr.e >= 0:
                raise InputError(self._source, f"band {name}: rotated or south-up transform {tuple(tr)[:6]}")
            out[name] = StacBand(name, href, shape, tr, crs, quant, offset, nodata, 65535)
        return {b.name: out[b.name] for b in BANDS if b.name in out}

    def _header(
        self, href: str, crs: str | None, shape: tuple[int, int] | None, tr: Affine | None
    ) -> tuple[str, tuple[int, int], Affine]:
        import rasterio
        from rasterio.errors import RasterioError

        try:
            with rasterio.open(href) as src:
                epsg = src.crs.to_epsg() if src.crs else None
                return (
                    crs or (f"EPSG:{epsg}" if epsg else src.crs.to_wkt()),
                    shape or (src.height, src.width),
                    tr or src.transform,
                )
        except RasterioError as exc:
            raise InputError(href, f"cannot open the band file named by the STAC item: {exc}") from None

    # ---- protocol
    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._bands)

    def band_asset(self, name: str) -> StacBand:
        """The asset of band ``name``."""
        return self._bands[band(name).name]

    def _extent(self) -> tuple[float, float, float, float]:
        return next(iter(self._bands.values())).extent

    @property
    def crs(self) -> str:
        return next(iter(self._bands.values())).crs

    def geobox(self, resolution: float = 10) -> GeoBox:
        """Grid of the item's extent at ``resolution`` m (upper-left corner kept, ``ceil`` shape)."""
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution!r}")
        ulx, uly, w, h = self._extent()
        res = float(resolution)
        return GeoBox((math.ceil(h / res - 1e-9), math.ceil(w / res - 1e-9)), Affine(res, 0.0, ulx, 0.0, -res, uly), self.crs)

    def _mean_sun(self) -> tuple[float, float] | None:
        p = self._props
        if p.get("view:sun_elevation") is not None and p.get("view:sun_azimuth") is not None:
            return 90.0 - float(p["view:sun_elevation"]), float(p["view:sun_azimuth"]) % 360.0
        if p.get("s2:mean_solar_zenith") is not None and p.get("s2:mean_solar_azimuth") is not None:
            return float(p["s2:mean_solar_zenith"]), float(p["s2:mean_solar_azimuth"]) % 360.0
        return None

    def _view(self) -> tuple[float, float]:
        p = self._props
        z = p.get("view:incidence_angle")
        a = p.get("view:azimuth")
        return (
            float(z) if z is not None else NEAR_NADIR.zenith_deg,
            float(a) if a is not None else NEAR_NADIR.azimuth_deg,
        )

    @cached_property
    def sun_grid(self) -> AngleGrid:
        """Sun angles on 5 km nodes over the item's extent (see the module docstring)."""
        gb = self.geobox(10)
        grid = computed_sun_grid(self._time, gb)
        mean = self._mean_sun()
        if mean is None:
            return grid
        lon, lat = pixel_centres_lonlat(GeoBox((1, 1), Affine(gb.shape[1] * 10.0, 0, gb.affine.c, 0, -gb.shape[0] * 10.0, gb.affine.f), gb.crs))
        zc, ac = sun_angles(self._time, lon, lat)
        dz = mean[0] - float(zc.ravel()[0])
        da = ((mean[1] - float(ac.ravel()[0]) + 180.0) % 360.0) - 180.0
        return AngleGrid(grid.zenith + dz, (grid.azimuth + da) % 360.0, grid.geobox)

    @cached_property
    def metadata(self) -> L1CMetadata:
        platform = _platform(self._props, self._id)
        baseline = _baseline(self._props)
        sun = self.sun_grid
        mean = self._mean_sun()
        if mean is None:
            mean = (float(np.mean(sun.zenith)), float(np.rad2deg(np.arctan2(np.sin(np.deg2rad(sun.azimuth)).mean(), np.cos(np.deg2rad(sun.azimuth)).mean())) % 360))
        q = next(iter(self._bands.values())).quantification
        rel = self._props.get("sat:relative_orbit")
        cc = self._props.get("eo:cloud_cover")
        return L1CMetadata(
            product_id=self._id,
            platform=platform,
            sensing_time=self._time,
            tile_id=_tile_id(self._props, self._id),
            relative_orbit=int(rel) if rel is not None else None,
            baseline=baseline,
            quantification=q,
            radio_offsets={b: s.offset for b, s in self._bands.items()},
            solar_irradiance=solar_irradiance(platform),
            earth_sun_u=earth_sun_u(self._time),
            crs=self.crs,
            geoboxes={r: self.geobox(r) for r in (10, 20, 60)},
            sun=None,
            view={},
            mean_sun_zenith=mean[0],
            mean_sun_azimuth=mean[1],
            mean_view=dict.fromkeys(self._bands, self._view()),
            cloud_cover=float(cc) if cc is not None else None,
            nodata_value=next(iter(self._bands.values())).nodata,
            source=self._source,
            extra={
                "form": "STAC item",
                "hrefs": {b: s.href for b, s in self._bands.items()},
                "sun_angles": "computed from time and place" + (", shifted to the item's mean" if self._mean_sun() else ""),
                "view_angles": "item constants" if self._props.get("view:incidence_angle") is not None else "assumed nadir",
            },
        )

    def _select(self, bands: Sequence[str] | None) -> list[str]:
        if bands is None:
            return list(self._bands)
        names = [band(b).name for b in bands]
        missing = [b for b in names if b not in self._bands]
        if missing:
            raise InputError(self._source, f"bands {missing} not in the STAC item (has {', '.join(self._bands)})")
        return names

    def _placement(self, sb: StacBand, gb: GeoBox) -> tuple[float, float, float]:
        t, g = sb.transform, gb.affine
        return (t.f - g.f) / -t.e, (g.c - t.c) / t.a, g.a / t.a

    def toa(
        self,
        bands: Sequence[str] | None = None,
        resolution: float = 10,
        *,
        chunks: int | None = 2048,
    ) -> xr.Dataset:
        """Lazy TOA reflectance of ``bands`` on :meth:`geobox` ``(resolution)`` (NaN = no-data)."""
        names = self._select(bands)
        gb = self.geobox(resolution)
        chunk = int(chunks) if chunks else max(gb.shape)
        out = {}
        for name in names:
            sb = self._bands[name]
            row0, col0, step = self._placement(sb, gb)

            def args(r0: int, c0: int, h: int, w: int, sb: StacBand = sb, row0: float = row0,
                     col0: float = col0, step: float = step) -> tuple[Any, ...]:
                return (sb.href, sb.shape, row0 + r0 * step, col0 + c0 * step, step, (h, w), sb.nodata,
                        sb.offset, sb.quantification, self.settings)

            arr = blocked(toa_chunk, args, gb.shape, chunk, np.float32)
            out[name] = xr.DataArray(arr, dims=("y", "x"), attrs={
                "long_name": f"TOA reflectance {name}", "units": "1", "radio_add_offset": sb.offset,
                "quantification_value": sb.quantification, "source_file": sb.href})
        ds = xr.Dataset(out, coords=xr_coords(gb))
        ang = self.angles(gb, chunks=chunk)
        md = self.metadata
        ds.attrs.update(toa_attrs(md, resolution, ang))
        return ds

    def quality(self, bands: Sequence[str] | None = None, resolution: float = 10) -> xr.Dataset:
        """Boolean ``nodata`` (any band) and ``saturation_<band>`` on :meth:`geobox` ``(resolution)``."""
        import dask.array as da

        names = self._select(bands)
        gb = self.geobox(resolution)
        chunk = 2048
        nodata = None
        out: dict[str, xr.DataArray] = {}
        for name in names:
            sb = self._bands[name]
            row0, col0, step = self._placement(sb, gb)

            def args(r0: int, c0: int, h: int, w: int, sb: StacBand = sb, row0: float = row0,
                     col0: float = col0, step: float = step) -> tuple[Any, ...]:
                return (sb.href, sb.shape, row0 + r0 * step, col0 + c0 * step, step, (h, w), sb.nodata,
                        sb.saturated, self.settings)

            arr = blocked(quality_chunk, args, gb.shape, chunk, bool, lead=(2,))
            nodata = arr[0] if nodata is None else (nodata | arr[0])
            out[f"saturation_{name}"] = xr.DataArray(arr[1], dims=("y", "x"))
        if nodata is None:
            nodata = da.zeros(gb.shape, dtype=bool, chunks=chunk)
        return xr.Dataset({"nodata": xr.DataArray(nodata, dims=("y", "x")), **out}, coords=xr_coords(gb))

    def angles(self, geobox: GeoBox, chunks: int | None = 2048) -> xr.Dataset:
        """Sun (computed field, see module docstring) and view (item constants) angles, degrees."""
        grid = self.sun_grid
        chunk = int(chunks) if chunks else max(geobox.shape)
        if geobox.crs == grid.geobox.crs:
            g, t = grid.geobox.affine, geobox.affine
            ny, nx = geobox.shape
            row_pos = (t.f + (np.arange(ny) + 0.5) * t.e - g.f) / g.e - 0.5
            col_pos = (t.c + (np.arange(nx) + 0.5) * t.a - g.c) / g.a - 0.5

            def args(r0: int, c0: int, h: int, w: int) -> tuple[Any, ...]:
                return (grid.zenith, grid.azimuth, row_pos[r0 : r0 + h], col_pos[c0 : c0 + w])

            arr = blocked(angle_chunk, args, geobox.shape, chunk, np.float32, lead=(2,))
            sz, sa = arr[0], arr[1]
        else:
            from l2a.io._array_product import sun_angles_on_geobox

            sz, sa = sun_angles_on_geobox(self._time, geobox)
        vz, va = self._view()
        ds = xr.Dataset(
            {
                "sun_zenith": xr.DataArray(sz, dims=("y", "x")),
                "sun_azimuth": xr.DataArray(sa, dims=("y", "x")),
                "view_zenith": xr.DataArray(np.full(geobox.shape, vz, np.float32), dims=("y", "x")),
                "view_azimuth": xr.DataArray(np.full(geobox.shape, va, np.float32), dims=("y", "x")),
            },
            coords=xr_coords(geobox),
        )
        for v in ds.data_vars.values():
            v.attrs["units"] = "degree"
        return ds

    def __repr__(self) -> str:
        return f"StacL1CProduct({self._id!r}, bands={len(self._bands)})"


# --------------------------------------------------------------------------- opening
def open_stac_item(
    item_or_path: Any, *, settings: ReadSettings = DEFAULT_READ_SETTINGS
) -> StacL1CProduct:
    """Open an L1C described by a STAC item.

    Parameters
    ----------
    item_or_path
        A ``pystac.Item``, an item as a ``dict``, or the path/URL of an item JSON. Relative
        asset hrefs are resolved against the item's location.
    settings
        Resampling settings (as for SAFE products).

    Raises
    ------
    l2a.errors.InputError
        When the item cannot be read or lacks what is needed (bands, time, radiometry).
    """
    base: str | None = None
    source = ""
    if hasattr(item_or_path, "to_dict") and hasattr(item_or_path, "assets"):
        item = item_or_path.to_dict(include_self_link=True, transform_hrefs=False)
        self_href = item_or_path.get_self_href()
        # absolute hrefs for assets (pystac resolves relative ones against the self link)
        for key, asset in item_or_path.assets.items():
            item["assets"][key]["href"] = asset.get_absolute_href() or asset.href
        base = str(Path(self_href).parent) if self_href and "://" not in self_href else None
        source = self_href or f"STAC item {item.get('id')}"
    elif isinstance(item_or_path, Mapping):
        item = dict(item_or_path)
        source = f"STAC item {item.get('id')}"
    else:
        text = str(item_or_path)
        source = text
        if text.startswith(("http://", "https://")):
            import pystac

            try:
                return open_stac_item(pystac.Item.from_file(text), settings=settings)
            except Exception as exc:  # network or JSON problems, reported with the URL
                raise InputError(text, f"cannot read the STAC item: {exc}") from None
        path = Path(text)
        if not path.is_file():
            raise InputError(path, "no such STAC item file")
        try:
            item = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(path, f"not a readable STAC item JSON: {exc}") from None
        base = str(path.resolve().parent)
    if item.get("type") != "Feature" or "assets" not in item:
        raise InputError(source, "not a STAC item (type Feature with assets)")
    return StacL1CProduct(item, source, base, settings)
