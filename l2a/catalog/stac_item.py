"""STAC item of a MUSCATE L2A product (``PRODUCT_FORMAT.md`` "STAC item").

:func:`make_item` builds a :class:`pystac.Item` (STAC 1.1) from a
:class:`~l2a.io.muscate.ProductResult`:

- properties: ``datetime``, ``platform``, ``constellation``, ``instruments``, ``eo:cloud_cover``
  (from our mask), ``l2a:snow_cover``, ``l2a:water_cover``, ``l2a:cloud_shadow_cover``,
  ``l2a:cirrus_cover``, ``l2a:valid_cover`` (% of the tile), ``l2a:product_name``,
  ``l2a:reflectance`` (false for reflectance-less products), ``l2a:mode``, ``l2a:aot_mean``,
  ``l2a:water_vapour_mean``, ``proj:code`` **and** ``proj:epsg`` (projection extension v1.2.0,
  see below), ``grid:code`` (``MGRS-31TCJ``), ``view:sun_azimuth``, ``view:sun_elevation``,
  ``view:incidence_angle``, ``view:azimuth`` (means), ``sat:relative_orbit``,
  ``processing:level`` ``L2A``, ``processing:software`` ``{"l2a": version}``,
  ``processing:datetime``, ``s2:processing_baseline`` of the input;
- assets, keyed by STAC common name: ``sre_blue`` … ``sre_swir22``, ``fre_*`` (roles ``data``,
  ``reflectance``); ``atb`` (10 m) and ``atb_r2`` (20 m); masks ``clm``, ``mg2``, ``sat``,
  ``edg``, ``iab`` (10 m) and ``clm_r2`` … (20 m) with ``classification:bitfields``;
  ``dfp``/``dtf_*`` when present; ``thumbnail`` (quicklook, roles ``thumbnail``,
  ``overview``); ``metadata`` (MTD_ALL.xml). Every raster asset carries ``proj:shape``,
  ``proj:transform``, ``raster:bands`` and (reflectance) ``eo:bands``; every asset
  ``file:size`` and ``file:checksum`` (multihash: ``1220`` + SHA-256 hex);
- links: ``derived_from`` (the L1C), ``license``.

Reflectance assets load directly with ``odc.stac.load`` (raw int16 values, ``nodata`` -10000 in
``attrs``) and ``stackstac.stack(..., dtype="int16", fill_value=np.int16(-10000),
rescale=False)``; with ``rescale=True`` stackstac applies ``raster:bands`` scale (0.0001).

Projection: the items declare the projection extension **v1.2.0**, which introduced ``proj:code``
and only *deprecated* ``proj:epsg``, so an item carrying both is valid; stackstac 0.5 reads only
``proj:epsg``, odc-stac reads either. The item JSON as written (files of the static catalog, the
server's responses, ``pystac_client``'s ``items_as_dicts()``) therefore loads as is with both.

What pystac 1.15 does on *reading*: ``Item.from_file``, ``Item.from_dict`` (``migrate=True`` is the
default), ``Catalog.get_items`` and ``pystac_client``'s ``ItemSearch.items()`` run pystac's
projection migration, which rewrites the declared v1.2.0 schema URI to v2.0.0 and **pops**
``proj:epsg`` (keeping ``proj:code``). Items obtained that way are still fine for odc-stac but
no longer for stackstac 0.5: pass them through :func:`for_stackstac` first (or hand stackstac the
raw dicts, or read with ``Item.from_dict(d, migrate=False)``). Items made here by
:func:`make_item` are never migrated and need no shim.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pystac

from l2a._version import __version__
from l2a.io.muscate import (
    ATB_AOT_SCALE,
    ATB_WATER_VAPOUR_SCALE,
    GROUPS,
    REFLECTANCE_NODATA,
    REFLECTANCE_SCALE,
    ProductFile,
    ProductResult,
    _iso,
)
from l2a.sensors.sentinel2 import BY_NAME

#: Collection of our L2A products.
COLLECTION_ID: Final[str] = "sentinel2-l2a-l2a"
COG_MEDIA_TYPE: Final[str] = "image/tiff; application=geotiff; profile=cloud-optimized"

#: Projection extension v1.2.0: has ``proj:code`` and still allows (deprecated) ``proj:epsg``.
PROJECTION_V1_2: Final[str] = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
#: Projection extension v2.0.0 (pystac's migration target; ``proj:epsg`` removed).
PROJECTION_V2_0: Final[str] = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"

#: Extension schemas the items declare.
EXTENSIONS: Final[dict[str, str]] = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": PROJECTION_V1_2,
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "grid": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "s2": "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
}

#: eo v1.1.0 knows ``rededge`` only (``rededge1``-``3`` are STAC 1.1 band names): the asset keys
#: keep ``rededge1``…, ``eo:bands`` says ``rededge`` (as Earth Search and stactools do).
_EO_COMMON_NAME: Final[dict[str, str]] = {"rededge1": "rededge", "rededge2": "rededge", "rededge3": "rededge"}

#: Multihash prefix of SHA2-256 (code 0x12, digest length 0x20), as the file extension says.
SHA256_MULTIHASH_PREFIX: Final[str] = "1220"

_CLM_BITS: Final = (
    ("all_clouds_and_shadows", "all clouds and shadows"), ("all_clouds", "all clouds (OR of the cloud tests)"),
    ("threshold", "reflectance threshold test"), ("multitemporal", "multi-temporal reflectance variation test"),
    ("extension", "extension (dilation)"), ("shadows_inside", "shadows of clouds inside the image"),
    ("shadows_outside", "shadows of clouds outside the image"), ("cirrus", "cirrus"),
)
_MG2_BITS: Final = (
    ("water", "water"), ("all_clouds", "all clouds"), ("snow", "snow"), ("cloud_shadows", "cloud shadows (inside or outside)"),
    ("hidden_faces", "hidden faces (HID)"), ("topographic_shadows", "topographic shadows (SHD)"),
    ("sun_too_low", "sun too low (STL)"), ("tangent_sun", "tangent sun (TGS)"),
)
_IAB_BITS: Final = (("water_vapour_interpolated", "water vapour interpolated"), ("aot_interpolated", "AOT interpolated"))
_EDG_BITS: Final = (("edge", "no-data / edge of the image"),)


@dataclass(frozen=True)
class ItemSettings:
    """How items are written.

    Attributes
    ----------
    collection : str
        Collection id (``sentinel2-l2a-l2a``).
    href_base : str or None
        URL (or folder) prefix of the products: asset href = ``href_base/<name>/<file>``;
        ``None`` uses the absolute local paths.
    license_href : str
        Target of the ``license`` link (the Copernicus Sentinel data terms).
    license : str
        SPDX id or ``other``.
    collection_href : str
        Target of the ``collection`` link (the layout of :class:`l2a.catalog.static.StaticCatalog`,
        which rewrites it anyway).
    include_fre : bool
        Add the FRE assets when the product has them.
    """

    collection: str = COLLECTION_ID
    href_base: str | None = None
    license_href: str = "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice"
    license: str = "other"
    include_fre: bool = True
    collection_href: str = "../collection.json"


DEFAULT_ITEM: Final[ItemSettings] = ItemSettings()


def multihash_sha256(hex_digest: str) -> str:
    """``file:checksum`` of a SHA-256 hex digest (multihash, hex encoded)."""
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
        raise ValueError(f"not a SHA-256 hex digest: {hex_digest!r}")
    return SHA256_MULTIHASH_PREFIX + hex_digest


def _bitfields(bits: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "offset": i, "length": 1, "name": name, "description": text,
            "classes": [{"value": 0, "name": f"not_{name}", "description": f"not {text}"},
                        {"value": 1, "name": name, "description": text}],
        }
        for i, (name, text) in enumerate(bits)
    ]


def _sat_bits(group: str) -> list[tuple[str, str]]:
    return [(f"{BY_NAME[b].muscate_name.lower()}_saturated", f"band {b} saturated in the L1C") for b in GROUPS[group][0]]


def _href(result: ProductResult, f: ProductFile, settings: ItemSettings) -> str:
    if settings.href_base is None:
        return str((result.path / f.path).resolve())
    return f"{settings.href_base.rstrip('/')}/{result.name}/{f.path}"


def _common(result: ProductResult, f: ProductFile, settings: ItemSettings) -> dict[str, Any]:
    d: dict[str, Any] = {"file:size": int(f.size), "file:checksum": multihash_sha256(f.sha256)}
    if f.shape is not None and f.transform is not None:
        d["proj:shape"] = [int(x) for x in f.shape]
        d["proj:transform"] = [float(x) for x in f.transform[:6]]
    return d


def _resolution(f: ProductFile) -> float | None:
    return abs(float(f.transform[0])) if f.transform else None


def _asset_key(f: ProductFile) -> str | None:
    if f.kind in ("SRE", "FRE") and f.band:
        return f"{f.kind.lower()}_{BY_NAME[f.band].common_name}"
    if f.kind in ("QKL",):
        return "thumbnail"
    if f.kind == "MTD":
        return "metadata"
    base = f.kind.lower()
    stem = Path(f.path).stem
    if f.kind in ("DFP", "DTF"):
        tail = stem.split(f"_{f.kind}_", 1)[-1].lower().replace("-", "_")
        return f"{base}_{tail}"
    if f.group == "R1":
        return base
    if f.group:
        return f"{base}_{f.group.lower()}"
    return None


def _asset(result: ProductResult, f: ProductFile, settings: ItemSettings) -> pystac.Asset:
    extra = _common(result, f, settings)
    res = _resolution(f)
    href = _href(result, f, settings)
    if f.kind in ("SRE", "FRE") and f.band:
        band = BY_NAME[f.band]
        extra["raster:bands"] = [{"data_type": "int16", "nodata": REFLECTANCE_NODATA, "scale": 1.0 / REFLECTANCE_SCALE,
                                  "offset": 0.0, "spatial_resolution": res}]
        extra["eo:bands"] = [{"name": band.name, "common_name": _EO_COMMON_NAME.get(band.common_name, band.common_name),
                              "center_wavelength": band.center_wavelength, "full_width_half_max": band.full_width_half_max}]
        what = "surface reflectance" if f.kind == "SRE" else "flat surface reflectance (slope corrected)"
        return pystac.Asset(href, f"{f.kind} {band.name} ({band.common_name}) {what}, x10000", None, COG_MEDIA_TYPE,
                            ["data", "reflectance"], extra)
    if f.kind == "ATB":
        extra["raster:bands"] = [
            {"data_type": "uint8", "scale": 1.0 / ATB_WATER_VAPOUR_SCALE, "offset": 0.0, "unit": "g/cm2",
             "spatial_resolution": res, "description": "water vapour content"},
            {"data_type": "uint8", "scale": 1.0 / ATB_AOT_SCALE, "offset": 0.0, "spatial_resolution": res,
             "description": "aerosol optical thickness at 550 nm"},
        ]
        return pystac.Asset(href, f"water vapour and AOT ({f.group})", "band 1 water vapour = value / 20 g/cm2; band 2 AOT = value / 200",
                            COG_MEDIA_TYPE, ["data"], extra)
    if f.kind in ("CLM", "MG2", "SAT", "EDG", "IAB", "DFP", "DTF"):
        bits = {"CLM": _CLM_BITS, "MG2": _MG2_BITS, "IAB": _IAB_BITS, "EDG": _EDG_BITS}.get(f.kind)
        if f.kind == "SAT" and f.group in GROUPS:
            bits = tuple(_sat_bits(f.group))
        elif f.kind == "DTF" and f.group in GROUPS:
            det = Path(f.path).stem.rsplit("-D", 1)[-1]
            bits = tuple((f"{BY_NAME[b].muscate_name.lower()}_detector_{det}", f"band {b} observed by detector {det}")
                         for b in GROUPS[f.group][0])
        extra["raster:bands"] = [{"data_type": f.dtype or "uint8", "spatial_resolution": res}]
        if bits:
            extra["classification:bitfields"] = _bitfields(bits)
        roles = {"CLM": ["data", "cloud", "cloud-shadow"], "MG2": ["data", "water-mask", "snow-ice"]}.get(f.kind, ["data", "quality"])
        titles = {"CLM": "cloud mask", "MG2": "geophysical mask", "SAT": "saturation", "EDG": "edge / no-data",
                  "IAB": "interpolated water vapour / AOT", "DFP": "defective pixels", "DTF": "detector footprint"}
        return pystac.Asset(href, f"{titles[f.kind]} ({f.group})", None, COG_MEDIA_TYPE, roles, extra)
    if f.kind == "QKL":
        return pystac.Asset(href, "quicklook (mask outlines: clouds green, snow pink, water blue, shadows yellow)", None,
                            pystac.MediaType.JPEG, ["thumbnail", "overview"], extra)
    if f.kind == "MTD":
        return pystac.Asset(href, "MUSCATE metadata (MTD_ALL.xml)", None, pystac.MediaType.XML, ["metadata"], extra)
    return pystac.Asset(href, f.path, None, None, ["data"], extra)


def footprint_lonlat(gb: Any, points_per_edge: int = 16) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon (lon/lat, counter-clockwise) of a grid's outline, densified, and its bbox."""
    from pyproj import Transformer

    x0, y1, x1, y0 = (float(v) for v in gb.boundingbox)  # left, bottom, right, top
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y1), y1 + (y0 - y1) * t, np.full_like(t, y0), y0 - (y0 - y1) * t])
    tr = Transformer.from_crs(gb.crs.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(xs, ys)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    bbox = [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def make_item(
    result: ProductResult,
    *,
    l1c_href: str | None = None,
    settings: ItemSettings = DEFAULT_ITEM,
) -> pystac.Item:
    """The STAC item of a written product.

    Parameters
    ----------
    result : ProductResult
        From :func:`l2a.io.muscate.write_product` or :func:`l2a.io.muscate.read_product`.
    l1c_href : str, optional
        Target of the ``derived_from`` link (the L1C item or product); default the L1C source
        recorded in the product metadata.
    settings : ItemSettings
    """
    info = result.info
    grp = "R1" if "R1" in info.grids else next(iter(info.grids))
    geometry, bbox = footprint_lonlat(info.geobox(grp))
    c = info.covers
    props: dict[str, Any] = {
        "platform": f"sentinel-2{info.platform[-1].lower()}",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": round(float(c.get("cloud", 0.0)), 4),
        "l2a:snow_cover": round(float(c.get("snow", 0.0)), 4),
        "l2a:water_cover": round(float(c.get("water", 0.0)), 4),
        "l2a:cloud_shadow_cover": round(float(c.get("cloud_shadow", 0.0)), 4),
        "l2a:product_name": info.name,
        "l2a:reflectance": bool(info.reflectance),
        "proj:code": f"EPSG:{info.epsg}",
        "proj:epsg": int(info.epsg),  # deprecated in projection v1.2.0 but valid; stackstac 0.5 reads it
        "grid:code": f"MGRS-{info.tile_id}",
        "view:sun_azimuth": float(info.sun_azimuth),
        "view:sun_elevation": 90.0 - float(info.sun_zenith),
        "view:incidence_angle": float(info.view_zenith),
        "view:azimuth": float(info.view_azimuth),
        "processing:level": "L2A",
        "processing:software": {"l2a": info.software.split()[-1] if info.software else __version__},
        "processing:datetime": _iso(info.processing_time),
        "license": settings.license,
    }
    for k in ("cirrus", "valid"):
        if k in c:
            props[f"l2a:{k}_cover"] = round(float(c[k]), 4)
    if info.mode:
        props["l2a:mode"] = info.mode
    if info.aot_mean is not None:
        props["l2a:aot_mean"] = float(info.aot_mean)
    if info.water_vapour_mean is not None:
        props["l2a:water_vapour_mean"] = float(info.water_vapour_mean)
    if info.relative_orbit is not None:
        props["sat:relative_orbit"] = int(info.relative_orbit)
    if info.baseline:
        props["s2:processing_baseline"] = info.baseline
    item = pystac.Item(
        id=info.name, geometry=geometry, bbox=bbox, datetime=info.sensing_time, properties=props,
        collection=settings.collection,
    )
    used = {"eo", "proj", "raster", "file", "view", "grid", "processing"}
    if "sat:relative_orbit" in props:
        used.add("sat")
    if "s2:processing_baseline" in props:
        used.add("s2")
    for f in result.files:
        if f.kind == "FRE" and not settings.include_fre:
            continue
        key = _asset_key(f)
        if key is None:
            continue
        a = _asset(result, f, settings)
        if "classification:bitfields" in a.extra_fields:
            used.add("classification")
        item.add_asset(key, a)
    item.stac_extensions = [EXTENSIONS[k] for k in EXTENSIONS if k in used]
    src = l1c_href or info.l1c_source
    if src:
        item.add_link(pystac.Link("derived_from", src, title=info.l1c_id or None))
    item.add_link(pystac.Link("collection", settings.collection_href, media_type="application/json"))
    item.add_link(pystac.Link("license", settings.license_href, media_type="text/html", title="Copernicus Sentinel data terms"))
    return item


def for_stackstac(items: Iterable[pystac.Item | dict[str, Any]]) -> list[dict[str, Any]]:
    """Item dicts that stackstac 0.5 can place: ``proj:epsg`` restored from ``proj:code``.

    Needed only for items that went through pystac's reader (``Item.from_file``,
    ``Item.from_dict`` with its default ``migrate=True``, ``Catalog.get_items``,
    ``pystac_client`` ``ItemSearch.items()``): pystac 1.15 migrates them to projection v2.0.0 and
    drops ``proj:epsg``, the only CRS field stackstac 0.5 reads. Items from :func:`make_item` and
    raw item JSON (``json.load``, ``items_as_dicts()``) already carry it and pass unchanged.

    Properties and assets get ``proj:epsg`` where they have an ``EPSG:`` ``proj:code`` and no
    ``proj:epsg``; when something was added, a declared projection v2.0.0 schema is set back to
    v1.2.0 so the dict stays valid. Pass the result to ``stackstac.stack``.
    """
    out = []
    for it in items:
        d = it.to_dict(transform_hrefs=False) if isinstance(it, pystac.Item) else dict(it)
        d["properties"] = dict(d.get("properties", {}))
        d["assets"] = {k: dict(a) for k, a in d.get("assets", {}).items()}
        added = False
        for obj in (d["properties"], *d["assets"].values()):
            code = obj.get("proj:code")
            if "proj:epsg" not in obj and isinstance(code, str) and code.upper().startswith("EPSG:"):
                obj["proj:epsg"] = int(code.split(":", 1)[1])
                added = True
        if added:
            d["stac_extensions"] = [PROJECTION_V1_2 if u == PROJECTION_V2_0 else u for u in d.get("stac_extensions", [])]
        out.append(d)
    return out


def _local_path(href: str, base: Path | None) -> Path | None:
    if href.startswith("file://"):
        return Path(href[7:])
    if "://" in href:
        return None
    p = Path(href)
    return p if p.is_absolute() or base is None else (base / p)


def verify_item(item: pystac.Item, *, base: str | Path | None = None) -> list[str]:
    """Re-check the size and ``file:checksum`` of every local asset; returns the problems (empty: all good).

    ``base`` resolves relative hrefs (default: the item's own folder when it has a self link).
    Remote assets (``http(s)://``) are reported as not checked.
    """
    problems: list[str] = []
    if base is None and item.get_self_href():
        base = Path(str(item.get_self_href())).parent
    b = Path(base) if base is not None else None
    for key, a in item.assets.items():
        checksum = a.extra_fields.get("file:checksum")
        if checksum is None:
            continue
        path = _local_path(a.href, b)
        if path is None:
            problems.append(f"{key}: {a.href} is remote, not checked")
            continue
        if not path.is_file():
            problems.append(f"{key}: {path} is missing")
            continue
        size = a.extra_fields.get("file:size")
        if size is not None and path.stat().st_size != int(size):
            problems.append(f"{key}: {path} has {path.stat().st_size} bytes, the item says {size}")
            continue
        if not str(checksum).startswith(SHA256_MULTIHASH_PREFIX):
            problems.append(f"{key}: unsupported checksum {checksum!r} (only sha2-256 multihash)")
            continue
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while blk := fh.read(1 << 20):
                h.update(blk)
        if SHA256_MULTIHASH_PREFIX + h.hexdigest() != checksum:
            problems.append(f"{key}: {path} checksum differs from the item")
    return problems


__all__ = ["COLLECTION_ID", "DEFAULT_ITEM", "EXTENSIONS", "PROJECTION_V1_2", "PROJECTION_V2_0", "ItemSettings", "footprint_lonlat", "for_stackstac", "make_item", "multihash_sha256", "verify_item"]
