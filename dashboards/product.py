"""What the product view shows of one STAC item, read from its COG overviews.

Only a downsampled array ever reaches the browser: :func:`read_overview` asks rasterio for an
``out_shape`` at most ``max_size`` pixels on a side, which GDAL serves from the COG's
internal overviews (no full-resolution decode).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

__all__ = ["MASK_CLASSES", "ProductOverview", "load_overview", "read_overview"]

#: Longest side (pixels) of the arrays sent to the browser.
MAX_SIZE: Final[int] = 512
#: Reflectance shown as white in the RGB view (as the quicklooks).
RGB_MAX_REFLECTANCE: Final[float] = 0.25
#: MG2 bit -> class name (PRODUCT_FORMAT.md), shown in the mask view.
MASK_CLASSES: Final[dict[int, str]] = {0: "water", 1: "cloud", 2: "snow", 3: "cloud shadow"}


@dataclass(frozen=True)
class ProductOverview:
    """Arrays and facts of one product at overview resolution.

    Attributes
    ----------
    item_id : str
    rgb : numpy.ndarray or None
        (rows, cols, 3) uint8 true-colour image from SRE red/green/blue.
    ndvi : numpy.ndarray or None
        float32 NDVI (NaN outside valid reflectance).
    classes : numpy.ndarray or None
        uint8 class per pixel: 0 clear land, 1 water, 2 cloud, 3 snow, 4 cloud shadow (MG2).
    aot, water_vapour : numpy.ndarray or None
        float32 maps from the ATB asset (unitless, g/cm2).
    bounds : tuple
        (left, bottom, right, top) in the product's CRS (metres).
    crs : str
    properties : dict
        The item's properties.
    assets : dict
        Asset key -> (title, href).
    """

    item_id: str
    rgb: np.ndarray | None
    ndvi: np.ndarray | None
    classes: np.ndarray | None
    aot: np.ndarray | None
    water_vapour: np.ndarray | None
    bounds: tuple[float, float, float, float]
    crs: str
    properties: dict[str, Any]
    assets: dict[str, tuple[str, str]]


def read_overview(href: str, max_size: int = MAX_SIZE, *, bands: list[int] | None = None,
                  resampling: str = "average") -> tuple[np.ndarray, Any, tuple[float, float, float, float]]:
    """Read a raster at most ``max_size`` pixels on a side (from its overviews).

    Returns (array (bands, rows, cols) in the file's dtype, CRS, bounds).
    """
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(href) as src:
        f = max(1, math.ceil(max(src.height, src.width) / max_size))
        shape = (len(bands) if bands else src.count, math.ceil(src.height / f), math.ceil(src.width / f))
        arr = src.read(bands, out_shape=shape, resampling=Resampling[resampling])
        return arr, src.crs, tuple(src.bounds)


def _scaled(asset: dict[str, Any], arr: np.ndarray, band: int = 0) -> np.ndarray:
    rb = (asset.get("raster:bands") or [{}])
    info = rb[band] if band < len(rb) else {}
    out = arr.astype(np.float32)
    nodata = info.get("nodata")
    if nodata is not None:
        out[arr == nodata] = np.nan
    return out * float(info.get("scale", 1.0)) + float(info.get("offset", 0.0))


def load_overview(item_path: str | Path, max_size: int = MAX_SIZE) -> ProductOverview:
    """Read what the product view shows of the item at ``item_path`` (its JSON file)."""
    path = Path(item_path)
    d = json.loads(path.read_text(encoding="utf-8"))
    assets: dict[str, Any] = d.get("assets", {})

    def href(key: str) -> str | None:
        a = assets.get(key)
        if not a:
            return None
        h = str(a["href"])
        return h if "://" in h or Path(h).is_absolute() else str((path.parent / h).resolve())

    bounds: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    crs = str(d.get("properties", {}).get("proj:code", ""))
    refl: dict[str, np.ndarray] = {}
    for common in ("red", "green", "blue", "nir"):
        h = href(f"sre_{common}")
        if h:
            arr, c, bounds = read_overview(h, max_size)
            refl[common] = _scaled(assets[f"sre_{common}"], arr[0])
            crs = str(c)
    rgb = None
    if all(k in refl for k in ("red", "green", "blue")):
        stack = np.stack([refl["red"], refl["green"], refl["blue"]], axis=-1)
        rgb = (np.clip(np.nan_to_num(stack) / RGB_MAX_REFLECTANCE, 0, 1) * 255 + 0.5).astype(np.uint8)
    ndvi = None
    if "red" in refl and "nir" in refl:
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = ((refl["nir"] - refl["red"]) / (refl["nir"] + refl["red"])).astype(np.float32)
    classes = None
    h = href("mg2")
    if h:
        arr, _, bounds = read_overview(h, max_size, resampling="nearest")
        m = arr[0]
        classes = np.zeros(m.shape, np.uint8)
        for value, bit in ((1, 0), (3, 2), (4, 3), (2, 1)):  # clouds drawn last (on top)
            classes[(m >> bit) & 1 == 1] = value
    aot = wv = None
    h = href("atb")
    if h:
        arr, _, _ = read_overview(h, max_size)
        wv = _scaled(assets["atb"], arr[0], 0)
        aot = _scaled(assets["atb"], arr[1], 1) if arr.shape[0] > 1 else None
    listed = {k: (str(a.get("title", k)), href(k) or "") for k, a in assets.items()}
    return ProductOverview(str(d.get("id", path.stem)), rgb, ndvi, classes, aot, wv, bounds, crs,
                           dict(d.get("properties", {})), listed)
