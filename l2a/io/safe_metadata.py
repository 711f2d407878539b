"""Parsers of the Sentinel-2 SAFE metadata: product (``MTD_MSIL1C.xml``) and tile (``MTD_TL.xml``).

Both parsers take the XML *bytes* (so that the files can come from a folder or a zip) and
the path to name in errors. XML is parsed with :mod:`defusedxml`: DTDs, entity declarations
and external references are refused, and every refusal or syntax error becomes one
:class:`l2a.errors.InputError` naming the file.

They follow the genuine files of every processing baseline in the sample data (N02.04 …
N05.10), the old multi-tile (PDMC) names (``S2A_OPER_MTD_SAFL1C_*.xml``,
``S2A_OPER_MTD_L1C_TL_*.xml``) and, for the tile geocoding and angles, the L2A tile
metadata too (same structure).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from affine import Affine
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from odc.geo.geobox import GeoBox

from l2a.errors import InputError
from l2a.io.l1c import AngleGrid
from l2a.sensors.sentinel2 import BY_ID

#: Processing baselines this parser knows, as (lowest, highest) inclusive, ``"MM.mm"``.
#: Outside this range the radiometric convention (offset or not) is not known for sure.
KNOWN_BASELINES: Final[tuple[str, str]] = ("02.00", "05.99")
#: First baseline with ``RADIO_ADD_OFFSET`` (-1000 DN), January 2022.
OFFSET_BASELINE: Final[str] = "04.00"

_BASELINE_RE = re.compile(r"^\d{2}\.\d{2}$")


# --------------------------------------------------------------------------- XML helpers
def parse_xml(data: bytes, path: str | Path) -> Element:
    """Parse ``data`` safely (no DTD, no entities, no external references).

    Raises
    ------
    l2a.errors.InputError
        For malformed XML, or XML that declares a DTD/entities or references external files.
    """
    if not data.strip():
        raise InputError(path, "empty XML file")
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InputError(
            path,
            f"refused unsafe XML ({type(exc).__name__}: {exc}); genuine Sentinel-2 metadata has "
            "no DTD, entity or external reference",
        ) from None
    except ParseError as exc:
        raise InputError(path, f"malformed XML ({exc}); the file is corrupt or truncated") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _iter(root: Element, name: str) -> Iterator[Element]:
    for el in root.iter():
        if _local(el.tag) == name:
            yield el


def _first(root: Element, name: str) -> Element | None:
    return next(_iter(root, name), None)


def _text(root: Element, name: str) -> str | None:
    el = _first(root, name)
    if el is None or el.text is None:
        return None
    return el.text.strip()


def _child(el: Element, name: str) -> Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _float(value: str | None, path: str | Path, what: str) -> float:
    if value is None:
        raise InputError(path, f"missing {what}")
    try:
        return float(value)
    except ValueError:
        raise InputError(path, f"{what} is not a number: {value!r}") from None


def _time(value: str | None, path: str | Path, what: str) -> datetime:
    if not value:
        raise InputError(path, f"missing {what}")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(path, f"{what} is not an ISO 8601 time: {value!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _band_name(band_id: str | None, path: str | Path) -> str:
    try:
        return BY_ID[int(band_id or "")].name
    except (ValueError, KeyError):
        raise InputError(path, f"unknown band id {band_id!r}") from None


def check_baseline(baseline: str, path: str | Path) -> str:
    """Return ``baseline`` if it is a known processing baseline, else raise InputError."""
    lo, hi = KNOWN_BASELINES
    if not _BASELINE_RE.match(baseline or ""):
        raise InputError(path, f"processing baseline {baseline!r} is not of the form 'NN.NN'")
    if not lo <= baseline <= hi:
        raise InputError(
            path,
            f"unknown processing baseline {baseline} (this reader knows {lo} to {hi}); its "
            "radiometric convention cannot be trusted: update l2a",
        )
    return baseline


# --------------------------------------------------------------------------- product level
@dataclass(frozen=True)
class ProductInfo:
    """What the product-level metadata (``MTD_MSIL1C.xml`` or ``MTD_MSIL2A.xml``) says."""

    level: str  # "L1C" or "L2A"
    product_uri: str
    product_type: str
    baseline: str
    spacecraft: str  # "Sentinel-2A"
    platform: str  # "S2A"
    start_time: datetime
    relative_orbit: int | None
    orbit_direction: str
    product_format: str  # "SAFE_COMPACT" or "SAFE"
    quantification: float
    offsets: Mapping[str, float]  # per band name, {} when the file has none
    solar_irradiance: Mapping[str, float]
    earth_sun_u: float | None
    nodata_value: int
    saturated_value: int
    cloud_cover: float | None
    granules: tuple[tuple[str, tuple[str, ...]], ...]  # (granule identifier, image files/ids)
    datastrip_id: str
    generation_time: str


def parse_product_metadata(data: bytes, path: str | Path, *, check: bool = True) -> ProductInfo:
    """Parse product-level metadata.

    Parameters
    ----------
    data : bytes
        The XML.
    path : str or Path
        File named in errors.
    check : bool
        Check the processing baseline against :data:`KNOWN_BASELINES`.
    """
    root = parse_xml(data, path)
    root_name = _local(root.tag)
    if "Level-1C" in root_name:
        level = "L1C"
    elif "Level-2A" in root_name:
        level = "L2A"
    else:
        raise InputError(path, f"not Sentinel-2 product metadata (root element {root_name!r})")
    baseline = _text(root, "PROCESSING_BASELINE") or ""
    if check:
        check_baseline(baseline, path)
    spacecraft = _text(root, "SPACECRAFT_NAME") or ""
    m = re.match(r"Sentinel-2([A-Z])$", spacecraft)
    platform = f"S2{m.group(1)}" if m else spacecraft
    orbit = _text(root, "SENSING_ORBIT_NUMBER")

    if level == "L1C":
        quant = _float(_text(root, "QUANTIFICATION_VALUE"), path, "QUANTIFICATION_VALUE")
        offset_tag = "RADIO_ADD_OFFSET"
    else:
        quant = _float(_text(root, "BOA_QUANTIFICATION_VALUE"), path, "BOA_QUANTIFICATION_VALUE")
        offset_tag = "BOA_ADD_OFFSET"
    offsets = {
        _band_name(el.get("band_id"), path): _float(el.text, path, offset_tag) for el in _iter(root, offset_tag)
    }
    if check and level == "L1C" and baseline >= OFFSET_BASELINE and len(offsets) != len(BY_ID):
        raise InputError(
            path, f"baseline {baseline} product without the 13 RADIO_ADD_OFFSET values ({len(offsets)} found)"
        )
    irr = {
        _band_name(el.get("bandId"), path): _float(el.text, path, "SOLAR_IRRADIANCE")
        for el in _iter(root, "SOLAR_IRRADIANCE")
    }
    u_text = _text(root, "U")
    special: dict[str, int] = {}
    for el in _iter(root, "Special_Values"):
        name, index = _text(el, "SPECIAL_VALUE_TEXT"), _text(el, "SPECIAL_VALUE_INDEX")
        if name and index is not None:
            special[name] = int(float(index))
    cc = _text(root, "Cloud_Coverage_Assessment") or _text(root, "Cloud_Coverage_Assessment".upper())
    granules = []
    for el in root.iter():
        if _local(el.tag) in ("Granule", "Granules"):
            files = tuple((c.text or "").strip() for c in el if _local(c.tag) in ("IMAGE_FILE", "IMAGE_ID"))
            granules.append((el.get("granuleIdentifier", ""), files))
    ds = next((el.get("datastripIdentifier", "") for el in root.iter() if el.get("datastripIdentifier")), "")
    return ProductInfo(
        level=level,
        product_uri=_text(root, "PRODUCT_URI") or "",
        product_type=_text(root, "PRODUCT_TYPE") or "",
        baseline=baseline,
        spacecraft=spacecraft,
        platform=platform,
        start_time=_time(_text(root, "PRODUCT_START_TIME"), path, "PRODUCT_START_TIME"),
        relative_orbit=int(orbit) if orbit else None,
        orbit_direction=_text(root, "SENSING_ORBIT_DIRECTION") or "",
        product_format=_text(root, "PRODUCT_FORMAT") or "",
        quantification=quant,
        offsets=offsets,
        solar_irradiance=irr,
        earth_sun_u=float(u_text) if u_text else None,
        nodata_value=special.get("NODATA", 0),
        saturated_value=special.get("SATURATED", 65535),
        cloud_cover=float(cc) if cc else None,
        granules=tuple(granules),
        datastrip_id=ds,
        generation_time=_text(root, "GENERATION_TIME") or "",
    )


# --------------------------------------------------------------------------- tile level
@dataclass(frozen=True)
class TileInfo:
    """What the tile-level metadata (``MTD_TL.xml``) says."""

    tile_id: str  # "31TCJ"
    granule_id: str  # TILE_ID
    datastrip_id: str
    sensing_time: datetime
    crs: str
    geoboxes: Mapping[int, GeoBox]
    sun: AngleGrid | None
    view: Mapping[str, AngleGrid]
    view_detectors: Mapping[str, tuple[int, ...]]
    mean_sun_zenith: float
    mean_sun_azimuth: float
    mean_view: Mapping[str, tuple[float, float]]
    masks: tuple[tuple[str, str, str], ...]  # (type, band name or "", file name as written)
    cloudy_pixel_percentage: float | None
    extra: dict[str, Any] = field(default_factory=dict)


def _values_list(el: Element | None, path: str | Path, what: str) -> np.ndarray:
    if el is None:
        raise InputError(path, f"missing {what}")
    vl = _child(el, "Values_List")
    if vl is None:
        raise InputError(path, f"missing Values_List in {what}")
    rows = []
    for v in vl:
        try:
            rows.append([float(x) for x in (v.text or "").split()])
        except ValueError:
            raise InputError(path, f"non-numeric value in {what}") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise InputError(path, f"ragged or empty angle grid in {what}")
    return np.asarray(rows, dtype=np.float64)


def _step(el: Element, path: str | Path, what: str) -> tuple[float, float]:
    col = _float(_text(el, "COL_STEP"), path, f"COL_STEP of {what}")
    row = _float(_text(el, "ROW_STEP"), path, f"ROW_STEP of {what}")
    return col, row


def angle_geobox(ulx: float, uly: float, shape: tuple[int, int], step: tuple[float, float], crs: str) -> GeoBox:
    """GeoBox whose pixel centres are the nodes of an angle grid whose first node is (ulx, uly)."""
    col, row = step
    return GeoBox(shape, Affine(col, 0.0, ulx - col / 2, 0.0, -row, uly + row / 2), crs)


def _merge_detectors(zen: list[np.ndarray], azi: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-detector grids: mean zenith and circular-mean azimuth where any detector has data."""
    z = np.stack(zen)
    a = np.deg2rad(np.stack(azi))
    ok = np.isfinite(z) & np.isfinite(a)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        zm = np.where(ok, z, 0.0).sum(axis=0) / n
        s = np.where(ok, np.sin(a), 0.0).sum(axis=0)
        c = np.where(ok, np.cos(a), 0.0).sum(axis=0)
    am = np.rad2deg(np.arctan2(s, c)) % 360.0
    zm[n == 0] = np.nan
    am[n == 0] = np.nan
    return zm, am


def parse_tile_metadata(data: bytes, path: str | Path) -> TileInfo:
    """Parse tile-level metadata (L1C or L2A ``MTD_TL.xml``, PDMC ``*_MTD_L1C_TL_*.xml``)."""
    root = parse_xml(data, path)
    if "Tile_ID" not in _local(root.tag):
        raise InputError(path, f"not Sentinel-2 tile metadata (root element {_local(root.tag)!r})")
    granule_id = _text(root, "TILE_ID") or ""
    m = re.search(r"_T(\d{2}[A-Z]{3})_", granule_id + "_")
    if not m:
        raise InputError(path, f"cannot read the tile id from TILE_ID {granule_id!r}")
    tile_id = m.group(1)
    geo = _first(root, "Tile_Geocoding")
    if geo is None:
        raise InputError(path, "missing Tile_Geocoding")
    crs = _text(geo, "HORIZONTAL_CS_CODE") or ""
    if not re.match(r"^EPSG:\d+$", crs):
        raise InputError(path, f"unexpected HORIZONTAL_CS_CODE {crs!r}")
    sizes: dict[int, tuple[int, int]] = {}
    pos: dict[int, tuple[float, float, float, float]] = {}
    for el in geo:
        res = el.get("resolution")
        if res is None:
            continue
        r = int(res)
        if _local(el.tag) == "Size":
            sizes[r] = (
                int(_float(_text(el, "NROWS"), path, "NROWS")),
                int(_float(_text(el, "NCOLS"), path, "NCOLS")),
            )
        elif _local(el.tag) == "Geoposition":
            pos[r] = tuple(  # type: ignore[assignment]
                _float(_text(el, k), path, f"{k} ({r} m)") for k in ("ULX", "ULY", "XDIM", "YDIM")
            )
    geoboxes = {}
    for r in sorted(set(sizes) & set(pos)):
        ulx, uly, xdim, ydim = pos[r]
        geoboxes[r] = GeoBox(sizes[r], Affine(xdim, 0.0, ulx, 0.0, ydim, uly), crs)
    if not geoboxes:
        raise InputError(path, "Tile_Geocoding has no Size/Geoposition")
    ulx, uly = pos[min(pos)][:2]

    sun = None
    mean_sz = mean_sa = math.nan
    view: dict[str, AngleGrid] = {}
    detectors: dict[str, tuple[int, ...]] = {}
    mean_view: dict[str, tuple[float, float]] = {}
    angles = _first(root, "Tile_Angles")
    if angles is not None:
        sg = _child(angles, "Sun_Angles_Grid")
        if sg is not None:
            zen_el, azi_el = _child(sg, "Zenith"), _child(sg, "Azimuth")
            z = _values_list(zen_el, path, "Sun_Angles_Grid/Zenith")
            a = _values_list(azi_el, path, "Sun_Angles_Grid/Azimuth")
            if z.shape != a.shape:
                raise InputError(path, "sun zenith and azimuth grids differ in shape")
            assert zen_el is not None
            step = _step(zen_el, path, "sun grid")
            if min(step) > 0:
                sun = AngleGrid(z, a, angle_geobox(ulx, uly, z.shape, step, crs))
        ms = _child(angles, "Mean_Sun_Angle")
        if ms is not None:
            mean_sz = _float(_text(ms, "ZENITH_ANGLE"), path, "mean sun ZENITH_ANGLE")
            mean_sa = _float(_text(ms, "AZIMUTH_ANGLE"), path, "mean sun AZIMUTH_ANGLE")
        per_band: dict[str, list[tuple[int, np.ndarray, np.ndarray, tuple[float, float]]]] = {}
        for vg in angles:
            if _local(vg.tag) != "Viewing_Incidence_Angles_Grids":
                continue
            band = _band_name(vg.get("bandId"), path)
            zen_el = _child(vg, "Zenith")
            z = _values_list(zen_el, path, f"viewing zenith grid of {band}")
            a = _values_list(_child(vg, "Azimuth"), path, f"viewing azimuth grid of {band}")
            if z.shape != a.shape:
                raise InputError(path, f"viewing zenith and azimuth grids of {band} differ in shape")
            assert zen_el is not None
            step = _step(zen_el, path, f"view grid of {band}")
            if min(step) <= 0:
                continue  # degenerate placeholder grid (seen in trimmed test fixtures)
            per_band.setdefault(band, []).append((int(vg.get("detectorId", "0")), z, a, step))
        for band, items in per_band.items():
            shapes = {it[1].shape for it in items}
            if len(shapes) != 1:
                raise InputError(path, f"viewing angle grids of {band} differ in shape")
            zm, am = _merge_detectors([it[1] for it in items], [it[2] for it in items])
            view[band] = AngleGrid(zm, am, angle_geobox(ulx, uly, zm.shape, items[0][3], crs))
            detectors[band] = tuple(sorted(it[0] for it in items))
        mvl = _child(angles, "Mean_Viewing_Incidence_Angle_List")
        if mvl is not None:
            for el in mvl:
                band = _band_name(el.get("bandId"), path)
                mean_view[band] = (
                    _float(_text(el, "ZENITH_ANGLE"), path, f"mean view zenith of {band}"),
                    _float(_text(el, "AZIMUTH_ANGLE"), path, f"mean view azimuth of {band}"),
                )
    masks = []
    for el in _iter(root, "MASK_FILENAME"):
        bid = el.get("bandId")
        masks.append((el.get("type", ""), _band_name(bid, path) if bid is not None else "", (el.text or "").strip()))
    cpp = _text(root, "CLOUDY_PIXEL_PERCENTAGE")
    return TileInfo(
        tile_id=tile_id,
        granule_id=granule_id,
        datastrip_id=_text(root, "DATASTRIP_ID") or "",
        sensing_time=_time(_text(root, "SENSING_TIME"), path, "SENSING_TIME"),
        crs=crs,
        geoboxes=geoboxes,
        sun=sun,
        view=view,
        view_detectors=detectors,
        mean_sun_zenith=mean_sz,
        mean_sun_azimuth=mean_sa,
        mean_view=mean_view,
        masks=tuple(masks),
        cloudy_pixel_percentage=float(cpp) if cpp else None,
        extra={"pvi": _text(root, "PVI_FILENAME") or ""},
    )
