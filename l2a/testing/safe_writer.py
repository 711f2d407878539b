"""Write valid Sentinel-2 L1C SAFE products from arrays (for tests, demos and benchmarks).

The product follows the genuine compact SAFE layout (baselines 02.04 … 05.10, modelled on
the N05.10 products of ``alcd_toulouse_T31TCJ`` and the N02.0x files of ``s2_metadata_only``)::

    S2A_MSIL1C_<datatake start>_N0510_R<orbit>_T<tile>_<generation time>.SAFE/
        MTD_MSIL1C.xml           product metadata (QUANTIFICATION_VALUE, RADIO_ADD_OFFSET
                                 from baseline 04.00, U, SOLAR_IRRADIANCE, special values …)
        manifest.safe            XFDU manifest (every file with size and SHA3-256)
        GRANULE/L1C_T<tile>_A<abs orbit>_<datastrip start>/
            MTD_TL.xml           tile metadata: geoposition 10/20/60 m, 5 km sun grid,
                                 per-band per-detector viewing grids, mean angles
            IMG_DATA/T<tile>_<datatake start>_<band>.jp2   lossless JPEG2000
            QI_DATA/MSK_DETFOO_<band>.jp2   detector footprints (baseline >= 04.00)
        DATASTRIP/DS_<centre>_<generation time>_S<datastrip start>/

What differs from an ESA product, on purpose
    The grid may be a crop of the tile (``Size``/``Geoposition`` give the crop; the angle
    grids start at the crop's upper-left corner, as a reader positions them from the
    geoposition). The processing centre code is ``L2AT`` (our writer), not an ESA centre.
    Not written: TCI, MSK_QUALIT/MSK_CLASSI, PVI, INSPIRE.xml, HTML, rep_info, DATASTRIP
    metadata, AUX_DATA, spectral response curves (only wavelengths), physical gains.

Angles
    Sun angles are computed from time and place (NREL SPA, :mod:`l2a.sensors.solar`) on the
    5 km nodes unless given. Viewing angles come from :class:`ViewModel` (a straight ground
    track, flat-Earth view zenith ``atan(d / altitude)``, 12 detectors across a 290 km swath;
    each detector's grid has values on its strip plus one node of overlap, NaN elsewhere, as
    in genuine files) unless given per band.

JPEG2000
    Written by GDAL's JP2OpenJPEG driver, ``REVERSIBLE=YES`` and ``QUALITY=100`` (lossless
    5/3 wavelet), 1024 x 1024 tiles and up to 6 resolution levels (like ESA's files), so that
    a 1/8 resolution read decodes only the coarse levels.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from xml.etree import ElementTree as ET

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from l2a.errors import InputError
from l2a.io._array_product import angle_node_geobox, computed_sun_grid, node_xy
from l2a.io.l1c import AngleGrid
from l2a.sensors.sentinel2 import BANDS, BY_NAME, Band, band
from l2a.sensors.solar import earth_sun_u, solar_irradiance

#: Namespaces of the genuine files (PSD 14, used by baselines 02.04 … 05.10 product metadata).
NS_PRODUCT: Final[str] = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd"
NS_TILE: Final[str] = "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-1C_Tile_Metadata.xsd"
NS_XSI: Final[str] = "http://www.w3.org/2001/XMLSchema-instance"
#: Processing centre written in identifiers: marks the product as made by this writer.
CENTRE: Final[str] = "L2AT"
#: First baseline with RADIO_ADD_OFFSET.
OFFSET_BASELINE: Final[str] = "04.00"
#: Offset (DN) written from :data:`OFFSET_BASELINE` on.
RADIO_ADD_OFFSET: Final[int] = -1000
NODATA_DN: Final[int] = 0
SATURATED_DN: Final[int] = 65535
#: Default generation time after the sensing time (deterministic product names).
GENERATION_DELAY: Final[timedelta] = timedelta(hours=2)

_SPACECRAFT: Final[dict[str, str]] = {"S2A": "Sentinel-2A", "S2B": "Sentinel-2B", "S2C": "Sentinel-2C", "S2D": "Sentinel-2D"}
_NSSDC: Final[dict[str, str]] = {"S2A": "2015-028A", "S2B": "2017-013A", "S2C": "2024-157A", "S2D": "0000-000A"}


@dataclass(frozen=True)
class Jp2Settings:
    """JPEG2000 encoding of the bands (GDAL JP2OpenJPEG creation options).

    Attributes
    ----------
    block : int
        Tile size in pixels (ESA: 1024).
    max_resolutions : int
        Most resolution levels (full + reductions by 2); fewer for small images so that the
        coarsest level of a tile keeps at least one pixel. ESA products have 6.
    codeblock : int
        Code-block size (pixels).
    threads : int
        Encoder threads (``NUM_THREADS``).
    """

    block: int = 1024
    max_resolutions: int = 6
    codeblock: int = 64
    threads: int = 1


DEFAULT_JP2: Final[Jp2Settings] = Jp2Settings()


@dataclass(frozen=True)
class ViewModel:
    """Synthetic viewing geometry for products written without viewing angle grids.

    Attributes
    ----------
    altitude_m : float
        Orbit altitude (m), 786 km for Sentinel-2.
    track_offset_m : float
        Ground track position: this far west (m, negative: east) of the grid centre, measured
        across track. 40 km puts the grid in the eastern half of the swath.
    heading_deg : float
        Ground track heading (deg clockwise from north); about 192 for the descending
        daytime pass at mid-latitudes.
    swath_m : float
        Swath width (m), 290 km.
    n_detectors : int
        Detector modules across the swath (12), numbered 1 … 12 from the left of the track.
    grid_step_m : float
        Spacing of the angle grid nodes (m), 5 km like ESA's.
    """

    altitude_m: float = 786_000.0
    track_offset_m: float = 40_000.0
    heading_deg: float = 192.0
    swath_m: float = 290_000.0
    n_detectors: int = 12
    grid_step_m: float = 5000.0


DEFAULT_VIEW: Final[ViewModel] = ViewModel()


@dataclass(frozen=True)
class DetectorGrid:
    """Viewing angles of one detector on the angle grid (NaN outside the detector's strip)."""

    detector_id: int
    zenith: np.ndarray
    azimuth: np.ndarray


# ------------------------------------------------------------------------------------ helpers
def model_view_grids(geobox10: GeoBox, model: ViewModel = DEFAULT_VIEW) -> list[DetectorGrid]:
    """Per-detector viewing angles on the angle nodes of ``geobox10`` (see :class:`ViewModel`)."""
    nodes = angle_node_geobox(geobox10, model.grid_step_m)
    xx, yy = node_xy(nodes)
    ny, nx = geobox10.shape
    tr = geobox10.affine
    cx, cy = tr.c + nx * tr.a / 2, tr.f + ny * tr.e / 2
    h = math.radians(model.heading_deg)
    right = np.array([math.cos(h), -math.sin(h)])  # unit vector to the right of the motion
    x0, y0 = cx - model.track_offset_m * right[0], cy - model.track_offset_m * right[1]
    s = (xx - x0) * right[0] + (yy - y0) * right[1]  # signed across-track distance (m)
    zen = np.degrees(np.arctan(np.abs(s) / model.altitude_m))
    # direction from the ground point towards the satellite: across track, towards the track
    azi = np.where(s > 0, model.heading_deg - 90.0, model.heading_deg + 90.0) % 360.0
    width = model.swath_m / model.n_detectors
    det = np.floor((s + model.swath_m / 2) / width).astype(int) + 1
    inside = np.abs(s) <= model.swath_m / 2
    out = []
    for d in range(1, model.n_detectors + 1):
        mask = inside & (det == d)
        if not mask.any():
            continue
        grown = mask.copy()  # one node of overlap with the neighbours, like genuine grids
        grown[1:, :] |= mask[:-1, :]
        grown[:-1, :] |= mask[1:, :]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        grown &= inside
        out.append(DetectorGrid(d, np.where(grown, zen, np.nan), np.where(grown, azi, np.nan)))
    return out


def merged_view(grids: Sequence[DetectorGrid]) -> tuple[np.ndarray, np.ndarray]:
    """Detectors merged node by node (mean zenith, circular mean azimuth; NaN where none)."""
    z = np.stack([g.zenith for g in grids])
    a = np.deg2rad(np.stack([g.azimuth for g in grids]))
    ok = np.isfinite(z)
    n = ok.sum(axis=0)
    zs = np.where(ok, z, 0.0).sum(axis=0)
    sa = np.where(ok, np.sin(a), 0.0).sum(axis=0)
    ca = np.where(ok, np.cos(a), 0.0).sum(axis=0)
    zm = np.full(n.shape, np.nan)
    np.divide(zs, n, out=zm, where=n > 0)
    am = np.where(n > 0, np.rad2deg(np.arctan2(sa, ca)) % 360.0, np.nan)
    return zm, am


def has_offset(baseline: str) -> bool:
    """True when products of ``baseline`` carry ``RADIO_ADD_OFFSET`` (from 04.00)."""
    return baseline >= OFFSET_BASELINE


def reflectance_to_dn(reflectance: np.ndarray, baseline: str, quantification: float = 10000.0) -> np.ndarray:
    """TOA reflectance -> uint16 DN of ``baseline``: ``DN = round(rho * Q - offset)``.

    NaN becomes the no-data DN 0; valid pixels are clipped to 1 … 65534 (so that a valid
    pixel is never read back as no-data or saturated). Reflectance below ``offset / Q``
    (-0.1 from baseline 04.00, 0 before) is clipped.
    """
    offset = RADIO_ADD_OFFSET if has_offset(baseline) else 0
    r = np.asarray(reflectance, dtype=np.float64)
    valid = np.isfinite(r)
    dn = np.rint(np.where(valid, r, 0.0) * quantification - offset)
    dn = np.clip(dn, 1, SATURATED_DN - 1)
    return np.where(valid, dn, NODATA_DN).astype(np.uint16)


#: A reference pass of each orbital phase: (tile sensing time, tile centre latitude, relative
#: orbit, absolute orbit), from the genuine N05.10 products of ``alcd_toulouse_T31TCJ``.
_ORBIT_REFS: Final[dict[str, tuple[str, float, int, int]]] = {
    "S2A": ("2024-01-20T10:58:50.500329+00:00", 43.74, 51, 44807),
    "S2B": ("2024-03-05T10:58:54.168722+00:00", 43.74, 51, 36542),
}
#: Orbital period (s): 143 orbits in the 10-day repeat cycle.
ORBIT_PERIOD_S: Final[float] = 10 * 86400 / 143


def estimate_orbits(time: datetime, lat: float, platform: str = "S2A") -> tuple[int, int]:
    """Estimate (relative, absolute) orbit of a descending daytime pass over latitude ``lat``.

    Counts orbital periods since a reference pass (``_ORBIT_REFS``), correcting for the time
    the satellite takes from the reference latitude to ``lat``. Relative orbits are shared by
    all platforms (S2B/S2D fly half a cycle from S2A/S2C). Checked against the genuine
    products of the sample data (all baselines, both hemispheres, S2A and S2B): exact. The
    absolute orbit is exact for S2A and S2B only near the reference epochs (manoeuvres).
    """
    key = "S2B" if platform.upper() in ("S2B", "S2D") else "S2A"
    t_ref, lat_ref, rel_ref, abs_ref = _ORBIT_REFS[key]
    k = round((time.timestamp() - datetime.fromisoformat(t_ref).timestamp()) / ORBIT_PERIOD_S - (lat_ref - lat) / 360.0)
    return (rel_ref - 1 + k) % 143 + 1, max(1, abs_ref + k)


def _fmt_time(t: datetime, frac: int = 3) -> str:
    t = t.astimezone(UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        base += "." + f"{t.microsecond:06d}"[:frac]
    return base + "Z"


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def _fmt_values(a: np.ndarray) -> list[str]:
    return [" ".join("NaN" if not np.isfinite(v) else f"{v:.7g}" for v in row) for row in a]


def _sub(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def _values_block(parent: ET.Element, tag: str, values: np.ndarray, step: float) -> None:
    el = _sub(parent, tag)
    _sub(el, "COL_STEP", f"{step:g}", unit="m")
    _sub(el, "ROW_STEP", f"{step:g}", unit="m")
    vl = _sub(el, "Values_List")
    for row in _fmt_values(values):
        _sub(vl, "VALUES", row)


def _write_xml(root: ET.Element, path: Path) -> None:
    ET.indent(root, space="  ")
    data = ET.tostring(root, encoding="UTF-8", xml_declaration=False)
    path.write_bytes(b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + data + b"\n")


def _at_centre(grid: AngleGrid, geobox10: GeoBox) -> tuple[float, float]:
    """Bilinear value of an angle grid at the centre of ``geobox10`` (the image-area mean of a
    smooth field; ESA's Mean_Sun_Angle is the mean over the image)."""
    ny, nx = geobox10.shape
    g, t = grid.geobox.affine, geobox10.affine
    pos = ((t.f - ny * 5.0 - g.f) / g.e - 0.5, (t.c + nx * 5.0 - g.c) / g.a - 0.5)
    r0, c0 = (min(math.floor(p), max(n - 2, 0)) for p, n in zip(pos, grid.zenith.shape, strict=True))
    fr, fc = pos[0] - r0, pos[1] - c0
    r1, c1 = min(r0 + 1, grid.zenith.shape[0] - 1), min(c0 + 1, grid.zenith.shape[1] - 1)

    def interp(a: np.ndarray) -> float:
        return float((a[r0, c0] * (1 - fc) + a[r0, c1] * fc) * (1 - fr) + (a[r1, c0] * (1 - fc) + a[r1, c1] * fc) * fr)

    rad = np.deg2rad(grid.azimuth)
    azi = float(np.rad2deg(np.arctan2(interp(np.sin(rad)), interp(np.cos(rad)))) % 360.0)
    return interp(grid.zenith), azi


def _circmean(a: np.ndarray) -> float:
    r = np.deg2rad(a[np.isfinite(a)])
    return float(np.rad2deg(np.arctan2(np.sin(r).mean(), np.cos(r).mean())) % 360.0)


def band_geobox(geobox10: GeoBox, resolution: int) -> GeoBox:
    """Grid of a band at ``resolution`` m: same UL corner as ``geobox10``, ``ceil`` shape."""
    k = resolution // 10
    ny, nx = geobox10.shape
    tr = geobox10.affine
    return GeoBox((-(-ny // k), -(-nx // k)), Affine(float(resolution), 0.0, tr.c, 0.0, -float(resolution), tr.f), geobox10.crs)


def write_jp2(path: Path, data: np.ndarray, geobox: GeoBox, settings: Jp2Settings = DEFAULT_JP2) -> None:
    """Write one band as lossless, tiled, multi-resolution JPEG2000 (GDAL JP2OpenJPEG)."""
    import rasterio

    ny, nx = data.shape
    smallest = min(settings.block, nx, ny)
    levels = max(1, min(settings.max_resolutions, math.floor(math.log2(max(smallest, 1))) + 1))
    opts = {
        "QUALITY": "100",
        "REVERSIBLE": "YES",
        "RESOLUTIONS": str(levels),
        "BLOCKXSIZE": str(settings.block),  # GDAL clamps it to the image (blocks < 32 px are refused)
        "BLOCKYSIZE": str(settings.block),
        "CODEBLOCK_WIDTH": str(settings.codeblock),
        "CODEBLOCK_HEIGHT": str(settings.codeblock),
        "PROGRESSION": "LRCP",
        "YCC": "NO",
        "NUM_THREADS": str(settings.threads),
    }
    profile = {
        "driver": "JP2OpenJPEG",
        "width": nx,
        "height": ny,
        "count": 1,
        "dtype": data.dtype.name,
        "crs": str(geobox.crs),
        "transform": geobox.affine,
    }
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **profile, **opts) as dst:
        dst.write(data, 1)


# ------------------------------------------------------------------------------------ writer
def product_name(
    platform: str, datatake_start: datetime, baseline: str, relative_orbit: int, tile_id: str, generation_time: datetime
) -> str:
    """Genuine compact product name, e.g. ``S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244``."""
    return (
        f"{platform}_MSIL1C_{_stamp(datatake_start)}_N{baseline.replace('.', '')}_R{relative_orbit:03d}"
        f"_T{tile_id}_{_stamp(generation_time)}"
    )


def write_safe(
    out_dir: str | Path,
    dn: Mapping[str, np.ndarray],
    geobox10: GeoBox,
    sensing_time: datetime,
    *,
    tile_id: str,
    platform: str = "S2A",
    baseline: str = "05.10",
    relative_orbit: int | None = None,
    absolute_orbit: int | None = None,
    datatake_start: datetime | None = None,
    generation_time: datetime | None = None,
    sun: AngleGrid | None = None,
    view: Mapping[str, Sequence[DetectorGrid]] | None = None,
    view_model: ViewModel = DEFAULT_VIEW,
    quantification: int = 10000,
    cloud_cover: float = 0.0,
    jp2: Jp2Settings = DEFAULT_JP2,
    overwrite: bool = False,
) -> Path:
    """Write a Sentinel-2 L1C SAFE product.

    Parameters
    ----------
    out_dir
        Folder receiving ``<product name>.SAFE``.
    dn
        ``uint16`` DN per band name (any subset of the 13 bands), each at the band's native
        resolution: the shape of :func:`band_geobox` ``(geobox10, res)``. 0 is no-data,
        65535 saturated.
    geobox10
        The 10 m grid (UTM of the tile, 10 m pixels). It may be a crop of the tile; put its
        corner on the tile's 60 m lattice so that the 20/60 m grids are the tile's too.
    sensing_time
        Tile sensing time (``SENSING_TIME`` of ``MTD_TL.xml``), timezone-aware or UTC.
    tile_id
        ``"33TVL"`` (a leading ``T`` is accepted).
    platform, baseline
        ``"S2A"`` …; processing baseline ``"NN.NN"``: from ``"04.00"`` the product carries
        ``RADIO_ADD_OFFSET = -1000`` (give DN accordingly: see
        :func:`write_safe_from_reflectance`).
    relative_orbit, absolute_orbit
        Default: :func:`estimate_orbits` from the time and the grid's latitude.
    datatake_start
        Datatake sensing start (product name, ``PRODUCT_START_TIME``, ``U``); default
        ``sensing_time``.
    generation_time
        Default ``sensing_time`` + 2 h (deterministic, like ESA's typical delay).
    sun
        Sun angle grid; default computed from time and place on the 5 km nodes.
    view
        Per band, the per-detector grids on the angle nodes; default :func:`model_view_grids`.
    quantification, cloud_cover
        ``QUANTIFICATION_VALUE``; ``Cloud_Coverage_Assessment`` (%).
    jp2
        JPEG2000 settings.
    overwrite
        Replace an existing product of the same name (else InputError).

    Returns
    -------
    Path
        The ``.SAFE`` folder (written under a temporary name and renamed into place).
    """
    out_dir = Path(out_dir)
    tile_id = tile_id.upper().removeprefix("T")
    if len(baseline) != 5 or baseline[2] != "." or not baseline.replace(".", "").isdigit():
        raise InputError(baseline, "baseline must look like '05.10'")
    if platform not in _SPACECRAFT:
        raise InputError(platform, f"unknown platform; expected one of {', '.join(_SPACECRAFT)}")
    if abs(geobox10.affine.a - 10) > 1e-9 or abs(geobox10.affine.e + 10) > 1e-9:
        raise InputError(str(geobox10.affine), "geobox10 must have 10 m pixels, north up")
    if not dn:
        raise InputError(str(out_dir), "no band to write")
    arrays: dict[str, np.ndarray] = {}
    for name, arr in dn.items():
        b = band(name)
        expect = tuple(band_geobox(geobox10, b.resolution).shape)
        a = np.asarray(arr)
        if a.shape != expect:
            raise InputError(name, f"band {b.name} has shape {a.shape}; at {b.resolution} m it must be {expect}")
        if a.dtype != np.uint16:
            raise InputError(name, f"band {b.name} must be uint16 DN, got {a.dtype}")
        arrays[b.name] = a
    when = sensing_time if sensing_time.tzinfo else sensing_time.replace(tzinfo=UTC)
    start = datatake_start or when
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    gen = generation_time or (when + GENERATION_DELAY)
    gen = gen if gen.tzinfo else gen.replace(tzinfo=UTC)
    ny, nx = geobox10.shape
    tr = geobox10.affine
    to_ll = Transformer.from_crs(str(geobox10.crs), "EPSG:4326", always_xy=True)
    _, clat = to_ll.transform(tr.c + nx * 5.0, tr.f - ny * 5.0)
    est_rel, est_abs = estimate_orbits(when, clat, platform)
    rel = relative_orbit if relative_orbit is not None else est_rel
    absolute = absolute_orbit if absolute_orbit is not None else est_abs
    sun_grid = sun or computed_sun_grid(when, geobox10)
    views = view or {b: model_view_grids(geobox10, view_model) for b in arrays}
    missing_view = [b for b in arrays if b not in views]
    if missing_view:
        raise InputError(str(out_dir), f"view angle grids missing for {missing_view}")

    name = product_name(platform, start, baseline, rel, tile_id, gen)
    final = out_dir / f"{name}.SAFE"
    if final.exists() and not overwrite:
        raise InputError(final, "product exists already (pass overwrite=True to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        ds_start = start
        granule = f"L1C_T{tile_id}_A{absolute:06d}_{_stamp(ds_start)}"
        gdir = tmp / "GRANULE" / granule
        (gdir / "IMG_DATA").mkdir(parents=True)
        (gdir / "QI_DATA").mkdir()
        (gdir / "AUX_DATA").mkdir()
        ds_dir = f"DS_{CENTRE}_{_stamp(gen)}_S{_stamp(ds_start)}"
        (tmp / "DATASTRIP" / ds_dir / "QI_DATA").mkdir(parents=True)
        nb = baseline
        granule_id = f"{platform}_OPER_MSI_L1C_TL_{CENTRE}_{_stamp(gen)}_A{absolute:06d}_T{tile_id}_N{nb}"
        datastrip_id = f"{platform}_OPER_MSI_L1C_DS_{CENTRE}_{_stamp(gen)}_S{_stamp(ds_start)}_N{nb}"
        stem = f"T{tile_id}_{_stamp(start)}"
        image_files = []
        masks = []
        for b in BANDS:
            if b.name not in arrays:
                continue
            gb = band_geobox(geobox10, b.resolution)
            write_jp2(gdir / "IMG_DATA" / f"{stem}_{b.name}.jp2", arrays[b.name], gb, jp2)
            image_files.append(f"GRANULE/{granule}/IMG_DATA/{stem}_{b.name}")
            if has_offset(baseline):
                det = _detector_raster(views[b.name], geobox10, gb, view_model.grid_step_m)
                write_jp2(gdir / "QI_DATA" / f"MSK_DETFOO_{b.name}.jp2", det, gb, jp2)
                masks.append((b, f"GRANULE/{granule}/QI_DATA/MSK_DETFOO_{b.name}.jp2"))
        _write_tile_metadata(
            gdir / "MTD_TL.xml", geobox10=geobox10, tile_id=tile_id, granule_id=granule_id,
            datastrip_id=datastrip_id, sensing_time=when, gen=gen, sun=sun_grid, views=views,
            bands=list(arrays), masks=masks, cloud_cover=cloud_cover,
        )
        footprint = [to_ll.transform(x, y) for x, y in (
            (tr.c, tr.f), (tr.c + nx * 10.0, tr.f), (tr.c + nx * 10.0, tr.f - ny * 10.0), (tr.c, tr.f - ny * 10.0), (tr.c, tr.f)
        )]
        _write_product_metadata(
            tmp / "MTD_MSIL1C.xml", name=name, platform=platform, baseline=baseline, start=start, gen=gen,
            rel=rel, granule_id=granule_id, datastrip_id=datastrip_id, image_files=image_files,
            quantification=quantification, footprint=footprint, cloud_cover=cloud_cover,
        )
        _write_manifest(tmp, name=name, platform=platform, start=start, gen=gen, rel=rel, absolute=absolute, footprint=footprint)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_safe_from_reflectance(
    out_dir: str | Path,
    reflectance: Mapping[str, np.ndarray],
    geobox10: GeoBox,
    sensing_time: datetime,
    *,
    tile_id: str,
    baseline: str = "05.10",
    quantification: int = 10000,
    **kwargs: object,
) -> Path:
    """:func:`write_safe` from TOA reflectance (NaN = no-data), converted with the baseline's
    offset by :func:`reflectance_to_dn` (quantisation: 1 / ``quantification``)."""
    dn = {b: reflectance_to_dn(r, baseline, quantification) for b, r in reflectance.items()}
    return write_safe(
        out_dir, dn, geobox10, sensing_time, tile_id=tile_id, baseline=baseline,
        quantification=quantification, **kwargs,  # type: ignore[arg-type]
    )


def _detector_raster(grids: Sequence[DetectorGrid], geobox10: GeoBox, gb: GeoBox, step: float) -> np.ndarray:
    """Detector id per pixel of ``gb`` (nearest angle node whose detector has data), uint8."""
    ny, nx = gb.shape
    res = gb.affine.a
    # pixel centre -> nearest node index (nodes at UL + k * step)
    rows = np.clip(np.rint((np.arange(ny) + 0.5) * res / step).astype(int), 0, grids[0].zenith.shape[0] - 1)
    cols = np.clip(np.rint((np.arange(nx) + 0.5) * res / step).astype(int), 0, grids[0].zenith.shape[1] - 1)
    node_det = np.zeros(grids[0].zenith.shape, dtype=np.uint8)
    # a node shared by two detectors (overlap) goes to the one whose strip it belongs to:
    # the later detector only fills nodes still free
    for g in grids:
        node_det = np.where((node_det == 0) & np.isfinite(g.zenith), np.uint8(g.detector_id), node_det)
    return node_det[np.ix_(rows, cols)].astype(np.uint8)


def _write_tile_metadata(
    path: Path, *, geobox10: GeoBox, tile_id: str, granule_id: str, datastrip_id: str, sensing_time: datetime,
    gen: datetime, sun: AngleGrid, views: Mapping[str, Sequence[DetectorGrid]], bands: list[str],
    masks: list[tuple[Band, str]], cloud_cover: float,
) -> None:
    ET.register_namespace("n1", NS_TILE)
    ET.register_namespace("xsi", NS_XSI)
    root = ET.Element(f"{{{NS_TILE}}}Level-1C_Tile_ID", {f"{{{NS_XSI}}}schemaLocation": NS_TILE})
    gi = _sub(root, f"{{{NS_TILE}}}General_Info")
    _sub(gi, "TILE_ID", granule_id, metadataLevel="Brief")
    _sub(gi, "DATASTRIP_ID", datastrip_id, metadataLevel="Standard")
    _sub(gi, "DOWNLINK_PRIORITY", "NOMINAL", metadataLevel="Standard")
    _sub(gi, "SENSING_TIME", _fmt_time(sensing_time, 6), metadataLevel="Standard")
    ai = _sub(gi, "Archiving_Info", metadataLevel="Expertise")
    _sub(ai, "ARCHIVING_CENTRE", CENTRE)
    _sub(ai, "ARCHIVING_TIME", _fmt_time(gen, 6))
    geo = _sub(root, f"{{{NS_TILE}}}Geometric_Info")
    tg = _sub(geo, "Tile_Geocoding", metadataLevel="Brief")
    epsg = geobox10.crs.epsg if geobox10.crs is not None else None
    zone = (epsg or 0) % 100
    hemi = "N" if (epsg or 0) < 32700 else "S"
    _sub(tg, "HORIZONTAL_CS_NAME", f"WGS84 / UTM zone {zone}{hemi}")
    _sub(tg, "HORIZONTAL_CS_CODE", f"EPSG:{epsg}")
    for r in (10, 20, 60):
        gb = band_geobox(geobox10, r)
        size = _sub(tg, "Size", resolution=str(r))
        _sub(size, "NROWS", gb.shape[0])
        _sub(size, "NCOLS", gb.shape[1])
    for r in (10, 20, 60):
        gp = _sub(tg, "Geoposition", resolution=str(r))
        _sub(gp, "ULX", f"{geobox10.affine.c:.10g}")
        _sub(gp, "ULY", f"{geobox10.affine.f:.10g}")
        _sub(gp, "XDIM", r)
        _sub(gp, "YDIM", -r)
    ta = _sub(geo, "Tile_Angles", metadataLevel="Standard")
    sg = _sub(ta, "Sun_Angles_Grid")
    step = abs(sun.geobox.affine.a)
    _values_block(sg, "Zenith", sun.zenith, step)
    _values_block(sg, "Azimuth", sun.azimuth, step)
    ms = _sub(ta, "Mean_Sun_Angle")
    mz, ma = _at_centre(sun, geobox10)
    _sub(ms, "ZENITH_ANGLE", repr(mz), unit="deg")
    _sub(ms, "AZIMUTH_ANGLE", repr(ma), unit="deg")
    for name in bands:
        bid = BY_NAME[name].band_id
        for g in views[name]:
            vg = _sub(ta, "Viewing_Incidence_Angles_Grids", bandId=str(bid), detectorId=str(g.detector_id))
            _values_block(vg, "Zenith", g.zenith, step)
            _values_block(vg, "Azimuth", g.azimuth, step)
    mvl = _sub(ta, "Mean_Viewing_Incidence_Angle_List")
    for name in bands:
        zm, am = merged_view(views[name])
        mv = _sub(mvl, "Mean_Viewing_Incidence_Angle", bandId=str(BY_NAME[name].band_id))
        _sub(mv, "ZENITH_ANGLE", repr(float(np.nanmean(zm))), unit="deg")
        _sub(mv, "AZIMUTH_ANGLE", repr(_circmean(am)), unit="deg")
    qi = _sub(root, f"{{{NS_TILE}}}Quality_Indicators_Info", metadataLevel="Standard")
    ic = _sub(qi, "Image_Content_QI")
    _sub(ic, "CLOUDY_PIXEL_PERCENTAGE", f"{cloud_cover:g}")
    _sub(ic, "DEGRADED_MSI_DATA_PERCENTAGE", "0")
    _sub(ic, "SNOW_PIXEL_PERCENTAGE", "0")
    if masks:
        pl = _sub(qi, "Pixel_Level_QI", geometry="FULL_RESOLUTION")
        for b, f in masks:
            _sub(pl, "MASK_FILENAME", f, bandId=str(b.band_id), type="MSK_DETFOO")
    _write_xml(root, path)


def _write_product_metadata(
    path: Path, *, name: str, platform: str, baseline: str, start: datetime, gen: datetime, rel: int,
    granule_id: str, datastrip_id: str, image_files: list[str], quantification: int,
    footprint: list[tuple[float, float]], cloud_cover: float,
) -> None:
    ET.register_namespace("n1", NS_PRODUCT)
    ET.register_namespace("xsi", NS_XSI)
    root = ET.Element(f"{{{NS_PRODUCT}}}Level-1C_User_Product", {f"{{{NS_XSI}}}schemaLocation": NS_PRODUCT})
    gi = _sub(root, f"{{{NS_PRODUCT}}}General_Info")
    pi = _sub(gi, "Product_Info")
    _sub(pi, "PRODUCT_START_TIME", _fmt_time(start))
    _sub(pi, "PRODUCT_STOP_TIME", _fmt_time(start))
    _sub(pi, "PRODUCT_URI", f"{name}.SAFE")
    _sub(pi, "PROCESSING_LEVEL", "Level-1C")
    _sub(pi, "PRODUCT_TYPE", "S2MSI1C")
    _sub(pi, "PROCESSING_BASELINE", baseline)
    _sub(pi, "PRODUCT_DOI", "Not applicable")
    _sub(pi, "GENERATION_TIME", _fmt_time(gen, 6))
    _sub(pi, "PREVIEW_IMAGE_URL", "Not applicable")
    _sub(pi, "PREVIEW_GEO_INFO", "Not applicable")
    dt = _sub(pi, "Datatake", datatakeIdentifier=f"G{platform}_{_stamp(start)}_000000_N{baseline}")
    _sub(dt, "SPACECRAFT_NAME", _SPACECRAFT[platform])
    _sub(dt, "DATATAKE_TYPE", "INS-NOBS")
    _sub(dt, "DATATAKE_SENSING_START", _fmt_time(start))
    _sub(dt, "SENSING_ORBIT_NUMBER", rel)
    _sub(dt, "SENSING_ORBIT_DIRECTION", "DESCENDING")
    qo = _sub(pi, "Query_Options", completeSingleTile="true")
    _sub(qo, "PRODUCT_FORMAT", "SAFE_COMPACT")
    po = _sub(pi, "Product_Organisation")
    gl = _sub(po, "Granule_List")
    gr = _sub(gl, "Granule", datastripIdentifier=datastrip_id, granuleIdentifier=granule_id, imageFormat="JPEG2000")
    for f in image_files:
        _sub(gr, "IMAGE_FILE", f)
    pic = _sub(gi, "Product_Image_Characteristics")
    for text, index in (("NODATA", NODATA_DN), ("SATURATED", SATURATED_DN)):
        sv = _sub(pic, "Special_Values")
        _sub(sv, "SPECIAL_VALUE_TEXT", text)
        _sub(sv, "SPECIAL_VALUE_INDEX", index)
    ido = _sub(pic, "Image_Display_Order")
    _sub(ido, "RED_CHANNEL", 3)
    _sub(ido, "GREEN_CHANNEL", 2)
    _sub(ido, "BLUE_CHANNEL", 1)
    _sub(pic, "QUANTIFICATION_VALUE", quantification, unit="none")
    if has_offset(baseline):
        rol = _sub(pic, "Radiometric_Offset_List")
        for b in BANDS:
            _sub(rol, "RADIO_ADD_OFFSET", RADIO_ADD_OFFSET, band_id=str(b.band_id))
    rc = _sub(pic, "Reflectance_Conversion")
    _sub(rc, "U", repr(earth_sun_u(start)))
    sil = _sub(rc, "Solar_Irradiance_List")
    irr = solar_irradiance(platform)
    for b in BANDS:
        _sub(sil, "SOLAR_IRRADIANCE", f"{irr[b.name]:g}", bandId=str(b.band_id), unit="W/m²/µm")
    spl = _sub(pic, "Spectral_Information_List")
    for b in BANDS:
        si = _sub(spl, "Spectral_Information", bandId=str(b.band_id), physicalBand=b.muscate_name)
        _sub(si, "RESOLUTION", b.resolution)
        wl = _sub(si, "Wavelength")
        c_nm, w_nm = b.center_wavelength * 1000, b.full_width_half_max * 1000
        _sub(wl, "MIN", f"{c_nm - w_nm / 2:.0f}", unit="nm")
        _sub(wl, "MAX", f"{c_nm + w_nm / 2:.0f}", unit="nm")
        _sub(wl, "CENTRAL", f"{c_nm:.1f}", unit="nm")
    geo = _sub(root, f"{{{NS_PRODUCT}}}Geometric_Info")
    pf = _sub(geo, "Product_Footprint")
    pf2 = _sub(pf, "Product_Footprint")
    gf = _sub(pf2, "Global_Footprint")
    _sub(gf, "EXT_POS_LIST", " ".join(f"{lat!r} {lon!r}" for lon, lat in footprint) + " ")
    _sub(pf, "RASTER_CS_TYPE", "POINT")
    _sub(pf, "PIXEL_ORIGIN", 1)
    crs = _sub(geo, "Coordinate_Reference_System")
    _sub(crs, "GEO_TABLES", "EPSG", version="1")
    _sub(crs, "HORIZONTAL_CS_TYPE", "GEOGRAPHIC")
    aux = _sub(root, f"{{{NS_PRODUCT}}}Auxiliary_Data_Info")
    _sub(aux, "GIPP_List")
    _sub(aux, "PRODUCTION_DEM_TYPE", "none (synthetic product written by l2a.testing)")
    _sub(aux, "IERS_BULLETIN_FILENAME", "none")
    _sub(aux, "GRI_List")
    _sub(aux, "ECMWF_DATA_REF", "none")
    qii = _sub(root, f"{{{NS_PRODUCT}}}Quality_Indicators_Info")
    _sub(qii, "Cloud_Coverage_Assessment", f"{cloud_cover:g}")
    _sub(qii, "Snow_Coverage_Assessment", "0.0")
    tqa = _sub(qii, "Technical_Quality_Assessment")
    _sub(tqa, "DEGRADED_ANC_DATA_PERCENTAGE", "0.0")
    _sub(tqa, "DEGRADED_MSI_DATA_PERCENTAGE", "0")
    qcc = _sub(qii, "Quality_Control_Checks")
    qis = _sub(qcc, "Quality_Inspections")
    for check in ("FORMAT_CORRECTNESS", "GENERAL_QUALITY", "GEOMETRIC_QUALITY", "RADIOMETRIC_QUALITY", "SENSOR_QUALITY"):
        _sub(qis, "quality_check", "PASSED", checkType=check)
    _sub(qcc, "Failed_Inspections")
    _write_xml(root, path)


NS_XFDU: Final[str] = "urn:ccsds:schema:xfdu:1"
NS_SAFE: Final[str] = "http://www.esa.int/safe/sentinel/1.1"
NS_GML: Final[str] = "http://www.opengis.net/gml"


def _write_manifest(
    root_dir: Path, *, name: str, platform: str, start: datetime, gen: datetime, rel: int, absolute: int,
    footprint: list[tuple[float, float]],
) -> None:
    """XFDU ``manifest.safe`` listing every file with its size and SHA3-256."""
    ET.register_namespace("xfdu", NS_XFDU)
    ET.register_namespace("safe", NS_SAFE)
    ET.register_namespace("gml", NS_GML)
    x, s = f"{{{NS_XFDU}}}", f"{{{NS_SAFE}}}"
    root = ET.Element(f"{x}XFDU", version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l1c_user_product")
    ipm = _sub(root, "informationPackageMap")
    top = _sub(ipm, f"{x}contentUnit", dmdID="acquisitionPeriod platform", pdiID="processing",
               textInfo="SENTINEL-2 MSI Level-1C User Product", unitType="Product_Level-1C")
    files = sorted(p for p in root_dir.rglob("*") if p.is_file())
    ids = []
    for i, p in enumerate(files, 1):
        rel_path = p.relative_to(root_dir).as_posix()
        oid = "S2_Level-1C_Product_Metadata" if rel_path == "MTD_MSIL1C.xml" else f"DataObject_{i:04d}"
        ids.append((oid, rel_path, p))
        cu = _sub(top, f"{x}contentUnit", ID=f"Unit_{i:04d}", unitType="Data Unit")
        _sub(cu, "dataObjectPointer", dataObjectID=oid)
    ms = _sub(root, "metadataSection")

    def wrap(oid: str, info: str, cat: str = "DMD", cls: str = "DESCRIPTION") -> ET.Element:
        mo = _sub(ms, "metadataObject", ID=oid, category=cat, classification=cls)
        mw = _sub(mo, "metadataWrap", mimeType="text/xml", textInfo=info, vocabularyName="Sentinel-SAFE")
        return _sub(mw, "xmlData")

    ap = _sub(wrap("acquisitionPeriod", "Acquisition Period"), f"{s}acquisitionPeriod")
    _sub(ap, f"{s}startTime", _fmt_time(start))
    orb = _sub(wrap("measurementOrbitReference", "Orbit Reference"), f"{s}orbitReference")
    _sub(orb, f"{s}orbitNumber", f"{absolute:06d}", groundTrackDirection="descending", type="start")
    _sub(orb, f"{s}relativeOrbitNumber", f"{rel:03d}", type="start")
    pl = _sub(wrap("platform", "Platform Description"), f"{s}platform")
    _sub(pl, f"{s}nssdcIdentifier", _NSSDC.get(platform, ""))
    _sub(pl, f"{s}familyName", "SENTINEL")
    _sub(pl, f"{s}number", platform[2:])
    ins = _sub(pl, f"{s}instrument")
    _sub(ins, f"{s}familyName", "Multi-Spectral Instrument", abbreviation="MSI")
    _sub(wrap("processing", "Processing", "PDI", "PROVENANCE"), f"{s}processing",
         name="Generation of Level-1C User Product (l2a.testing.safe_writer)", start=_fmt_time(gen, 6))
    fs = _sub(wrap("measurementFrameSet", "Frame Set"), f"{s}frameSet")
    fp = _sub(fs, f"{s}footPrint", srsName="http://www.opengis.net/gml/srs/epsg.xml#4326")
    _sub(fp, f"{{{NS_GML}}}coordinates", " ".join(f"{lat!r} {lon!r}" for lon, lat in footprint) + " ")
    dos = _sub(root, "dataObjectSection")
    for oid, rel_path, p in ids:
        do = _sub(dos, "dataObject", ID=oid)
        mime = "text/xml" if rel_path.endswith(".xml") else "application/octet-stream"
        bs = _sub(do, "byteStream", mimeType=mime, size=str(p.stat().st_size))
        _sub(bs, "fileLocation", href=f"./{rel_path}", locatorType="URL")
        _sub(bs, "checksum", hashlib.sha3_256(p.read_bytes()).hexdigest().upper(), checksumName="SHA3-256")
    _write_xml(root, root_dir / "manifest.safe")


# ------------------------------------------------------------------------------------ other forms
def zip_safe(safe_dir: str | Path, out: str | Path | None = None) -> Path:
    """Zip a ``.SAFE`` folder the way the archives deliver it: ``<name>.zip`` holding ``<name>.SAFE/``.

    Written to a temporary name and renamed into place; stored uncompressed (``ZIP_STORED``,
    the JPEG2000 files do not shrink) so that GDAL reads members in place.
    """
    import zipfile

    src = Path(safe_dir)
    dest = Path(out) if out is not None else src.with_name(src.name.removesuffix(".SAFE") + ".zip")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for p in sorted(src.rglob("*")):
                arc = f"{src.name}/{p.relative_to(src).as_posix()}"
                if p.is_dir():
                    zf.writestr(arc + "/", b"")
                else:
                    zf.write(p, arc)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def safe_stac_item(safe_dir: str | Path, *, raster_bands: bool = True) -> Any:
    """A STAC item (``pystac.Item``) describing a SAFE L1C product's bands, for tests and demos.

    One asset per band, keyed by its common name (``blue``, ``nir08`` …), href = the
    JPEG2000 file, with ``eo:bands``, ``proj:code`` **and** ``proj:epsg`` (stackstac 0.5 reads
    only the latter), ``proj:shape``/``proj:transform`` of the band's own grid, and, when
    ``raster_bands``, ``raster:bands`` scale 1/Q and offset RADIO_ADD_OFFSET/Q (else only
    ``s2:processing_baseline`` tells the offset). Properties: ``platform``, ``s2:mgrs_tile``,
    ``s2:processing_baseline``, ``sat:relative_orbit``, ``view:sun_elevation``/``view:sun_azimuth``
    (tile means), ``view:incidence_angle``/``view:azimuth`` (mean over bands), ``eo:cloud_cover``.
    """
    import pystac

    from l2a.io.safe import open_safe

    product = open_safe(safe_dir)
    md = product.metadata
    gb10 = md.geoboxes[min(md.geoboxes)]
    to_ll = Transformer.from_crs(md.crs, "EPSG:4326", always_xy=True)
    ulx, uly = gb10.affine.c, gb10.affine.f
    lrx, lry = ulx + gb10.shape[1] * gb10.affine.a, uly + gb10.shape[0] * gb10.affine.e
    ring = [list(to_ll.transform(x, y)) for x, y in ((ulx, uly), (lrx, uly), (lrx, lry), (ulx, lry), (ulx, uly))]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    epsg = int(md.crs.split(":")[1])
    vz = float(np.mean([v[0] for v in md.mean_view.values()])) if md.mean_view else 0.0
    va = _circmean(np.array([v[1] for v in md.mean_view.values()])) if md.mean_view else 0.0
    item = pystac.Item(
        id=md.product_id,
        geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=[min(lons), min(lats), max(lons), max(lats)],
        datetime=md.sensing_time,
        properties={
            "platform": _SPACECRAFT.get(md.platform, md.platform).lower(),
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "s2:mgrs_tile": md.tile_id,
            "s2:processing_baseline": md.baseline,
            "sat:relative_orbit": md.relative_orbit,
            "eo:cloud_cover": md.cloud_cover if md.cloud_cover is not None else 0.0,
            "view:sun_elevation": 90.0 - md.mean_sun_zenith,
            "view:sun_azimuth": md.mean_sun_azimuth,
            "view:incidence_angle": vz,
            "view:azimuth": va,
        },
        stac_extensions=[
            "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
        ],
    )
    for name in product.bands:
        b = BY_NAME[name]
        gb = band_geobox(gb10, b.resolution)
        extra: dict[str, Any] = {
            "eo:bands": [{"name": name, "common_name": b.common_name, "center_wavelength": b.center_wavelength,
                          "full_width_half_max": b.full_width_half_max}],
            "proj:code": md.crs,
            "proj:epsg": epsg,
            "proj:shape": list(gb.shape),
            "proj:transform": list(gb.affine)[:6],
            "gsd": float(b.resolution),
        }
        if raster_bands:
            extra["raster:bands"] = [{
                "nodata": md.nodata_value, "data_type": "uint16", "spatial_resolution": float(b.resolution),
                "scale": 1.0 / md.quantification, "offset": md.radio_offsets.get(name, 0.0) / md.quantification,
            }]
        path = product.band_file(name).path
        item.add_asset(b.common_name, pystac.Asset(
            href=path if path.startswith("/vsi") else str(Path(path).resolve()), media_type="image/jp2", roles=["data", "reflectance"],
            title=f"{name} TOA reflectance DN", extra_fields=extra,
        ))
    return item
