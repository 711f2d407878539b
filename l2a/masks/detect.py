"""The xarray lift of the masks: :func:`detect` (one date) on a TOA dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords  # also registers the .odc accessor

from l2a.errors import InputError
from l2a.kernels import clouds as kc
from l2a.kernels import masks_grid as kg
from l2a.kernels import snow_water as ksw
from l2a.masks import bits
from l2a.masks.composite import Composite, to_days
from l2a.masks.core import CoreInput, CoreResult, blue_band_of, run_core, update_reference
from l2a.masks.settings import MaskSettings
from l2a.sensors.sentinel2 import BY_NAME

#: Bands every input must have.
REQUIRED_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
#: Bands used when present.
OPTIONAL_BANDS = ("B01", "B05", "B06", "B07", "B8A", "B09", "B10")


def working_factor(shape: tuple[int, int], native_m: float, settings: MaskSettings) -> int:
    """Integer zoom-out factor from the input grid to the working grid (documented rule).

    ``min(round(coarse_resolution / native), floor(min(shape) / min_coarse_pixels))``, at
    least 1: the coarse resolution when the input is large enough, else the coarsest grid that
    still has ``min_coarse_pixels`` pixels across the smaller side.
    """
    full = max(1, round(settings.coarse_resolution_m / native_m))
    fit = max(1, min(shape) // settings.min_coarse_pixels)
    return int(max(1, min(full, fit)))


@dataclass
class _Geometry:
    sza: np.ndarray
    saa: np.ndarray
    vza: np.ndarray
    vaa: np.ndarray


def _angle(toa: xr.Dataset, name: str, default: float | None, factor: int) -> np.ndarray:
    val = toa.attrs.get(name)
    if val is None:
        if default is None:
            raise InputError("toa", f"attribute {name!r} missing: give sun angles in degrees (scalar or DataArray)")
        val = default
    if isinstance(val, xr.DataArray):
        arr = np.asarray(val.values, dtype=np.float32)
        if arr.ndim == 0:
            return arr.reshape(1, 1)
        if arr.shape != (toa.sizes["y"], toa.sizes["x"]):
            raise InputError("toa", f"attribute {name!r} has shape {arr.shape}, expected the grid {toa.sizes['y'], toa.sizes['x']}")
        return kg.block_mean(arr, factor, 0.0)
    return np.asarray(float(val), dtype=np.float32).reshape(1, 1)


def _scalar(a: np.ndarray) -> float:
    v = a[np.isfinite(a)]
    return float(v.mean()) if v.size else 0.0


def _check(toa: xr.Dataset) -> GeoBox:
    if not isinstance(toa, xr.Dataset):
        raise InputError("toa", "expected an xarray.Dataset with one variable per band (B02, B03…)")
    missing = [b for b in REQUIRED_BANDS if b not in toa.data_vars]
    if missing:
        raise InputError("toa", f"bands {', '.join(missing)} missing: the masks need at least {', '.join(REQUIRED_BANDS)}")
    if "datetime" not in toa.attrs:
        raise InputError("toa", "attribute 'datetime' (ISO 8601 UTC) missing")
    gb = toa.odc.geobox
    if gb is None:
        raise InputError("toa", "dataset is not georeferenced (toa.odc.geobox is None): attach a CRS and transform")
    return gb


def _terrain(dem: xr.Dataset | None, gb: GeoBox, wshape: tuple[int, int], factor: int) -> dict[str, np.ndarray]:
    """Terrain layers: working-grid ``elevation``/``slope``/``aspect`` and full-grid MG2 booleans."""
    out: dict[str, np.ndarray] = {}
    if dem is None:
        return out
    for name in ("elevation", "slope", "aspect", *bits.MG2_TERRAIN):
        if name not in dem.data_vars:
            continue
        arr = np.asarray(dem[name].values)
        full = arr.shape == tuple(gb.shape)
        if not full and arr.shape != wshape:
            raise InputError("dem", f"{name} has shape {arr.shape}: give it on the input grid {tuple(gb.shape)} or the working grid {wshape}")
        if name in bits.MG2_TERRAIN:
            out[name] = arr.astype(bool) if full else kg.upsample(arr.astype(bool), factor, (int(gb.shape[0]), int(gb.shape[1])))
        elif name == "aspect" and full and factor > 1:
            rad = np.deg2rad(arr.astype(np.float32))
            s, c = kg.block_mean(np.sin(rad), factor, 0.0), kg.block_mean(np.cos(rad), factor, 0.0)
            out[name] = np.rad2deg(np.arctan2(s, c)) % 360.0
        else:
            out[name] = kg.block_mean(arr.astype(np.float32), factor, 0.0) if full else arr.astype(np.float32)
    return out


def detect(
    toa: xr.Dataset,
    composite: Composite | None = None,
    *,
    dem: xr.Dataset | None = None,
    settings: MaskSettings | None = None,
) -> tuple[xr.Dataset, Composite]:
    """Cloud, cirrus, cloud-shadow, snow and water masks of one date (MACCS/MAJA method).

    Parameters
    ----------
    toa : xarray.Dataset
        One float variable per band (``B01`` … ``B12``, ``B8A``; at least B02, B03, B04, B08,
        B11, B12), dims ``(y, x)``, TOA reflectance, NaN = no-data, georeferenced
        (``toa.odc.geobox``), attrs ``datetime`` (ISO 8601 UTC), ``sun_zenith``,
        ``sun_azimuth`` (degrees, scalars or DataArrays on the grid), optionally
        ``view_zenith``, ``view_azimuth`` (default nadir).
    composite : Composite, optional
        State left by the previous date of the same place; ``None`` means INIT.  A composite
        older than ``settings.reinit_gap_days`` also gives INIT.
    dem : xarray.Dataset, optional
        Terrain dataset (COMMON.md convention) on the input grid or the working grid:
        ``elevation`` (cirrus threshold, Rayleigh pressure), ``slope``/``aspect`` (slope-aware
        snow and water), booleans ``hidden_faces``/``cast_shadow``/``sun_too_low``/
        ``tangent_sun`` copied into MG2 bits 4-7.
    settings : MaskSettings, optional

    Returns
    -------
    masks : xarray.Dataset
        On the input grid: booleans ``cloud`` (all clouds, CLM bit 1), ``cirrus``,
        ``cloud_shadow`` (inside or outside), ``snow``, ``water``, ``valid``; uint8 ``clm`` and
        ``mg2`` (PRODUCT_FORMAT.md).  ``attrs``: ``mode``, ``working_resolution_m``,
        ``cloud_cover``/``snow_cover``/``water_cover``/``cloud_shadow_cover`` (% of valid
        pixels), ``cloud_cover_above_limit``, ``skipped`` (steps skipped and why), timings.
    composite : Composite
        Updated state for the next date.
    """
    s = settings or MaskSettings()
    t0 = time.perf_counter()
    gb = _check(toa)
    date = str(toa.attrs["datetime"])
    native = float(abs(gb.resolution.x))
    shape = (int(gb.shape[0]), int(gb.shape[1]))
    factor = working_factor(shape, native, s)
    wgb = gb.zoom_out(factor) if factor > 1 else gb
    wshape = (int(wgb.shape[0]), int(wgb.shape[1]))
    pixel = native * factor

    geo = _Geometry(
        _angle(toa, "sun_zenith", None, factor), _angle(toa, "sun_azimuth", None, factor),
        _angle(toa, "view_zenith", 0.0, factor), _angle(toa, "view_azimuth", 0.0, factor),
    )
    terrain = _terrain(dem, gb, wshape, factor)
    if "slope" in terrain and "aspect" in terrain:
        terrain["illumination"] = np.broadcast_to(
            ksw.illumination_factor(terrain["slope"], terrain["aspect"], geo.sza, geo.saa, s.min_cos_incidence), wshape
        )
    pressure = kc.pressure_ratio_from_altitude(terrain["elevation"]) if "elevation" in terrain else 1.0

    # --- coarsen and Rayleigh-correct ---------------------------------------------------------
    bands = [b for b in (*REQUIRED_BANDS, *OPTIONAL_BANDS) if b in toa.data_vars]
    full: dict[str, np.ndarray] = {}
    rc: dict[str, np.ndarray] = {}
    ray: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rel_az = geo.saa - geo.vaa
    for b in bands:
        arr = np.asarray(toa[b].values, dtype=np.float32)
        if arr.shape != shape:
            raise InputError("toa", f"band {b} has shape {arr.shape}, expected {shape}")
        if b in REQUIRED_BANDS:
            full[b] = arr  # only these are needed at full resolution
        w = kg.block_mean(arr, factor, s.min_valid_fraction)
        if b == "B10":
            rc[b] = w  # cirrus test on TOA
            continue
        tau = kc.rayleigh_optical_depth(BY_NAME[b].center_wavelength, pressure)
        rho_r, trans = kc.rayleigh_terms(tau, geo.sza, geo.vza, rel_az)
        inv_t = (1.0 / trans).astype(np.float32)
        f0 = (-rho_r * inv_t).astype(np.float32)
        ray[b] = (f0, inv_t)  # rho_rc = f0 + inv_t * toa
        rc[b] = (f0 + inv_t * w).astype(np.float32)
    valid_w = np.ones(wshape, bool)
    for b in REQUIRED_BANDS:
        valid_w &= np.isfinite(rc[b])

    # --- mode -----------------------------------------------------------------------------------
    reference = None
    age = None
    reason = "no composite"
    if composite is not None:
        if composite.geobox != wgb:
            raise InputError("composite", "composite grid differs from this scene's working grid: use the composite of the same tile and settings")
        gap = float(round(composite.gap_days(date)))  # whole days, as the planner counts
        if gap > s.reinit_gap_days:
            reason = f"gap of {gap:.0f} days > {s.reinit_gap_days:.0f}: re-INIT"
        else:
            reference = composite.reflectance
            age = composite.age_days(date)
            reason = ""
    inp = CoreInput(
        rc=rc, valid=valid_w, sun_zenith=_scalar(geo.sza), sun_azimuth=_scalar(geo.saa),
        view_zenith=_scalar(geo.vza), view_azimuth=_scalar(geo.vaa), pixel_size_m=pixel, date=date,
        sun_zenith_map=geo.sza, sun_azimuth_map=geo.saa, elevation=terrain.get("elevation"),
        slope=terrain.get("slope"), aspect=terrain.get("aspect"),
    )
    t1 = time.perf_counter()
    core = run_core(inp, reference, age, s)
    t2 = time.perf_counter()
    new_ref, new_dates = update_reference(
        core, rc, None if reference is None else composite.reflectance if composite else None,
        None if reference is None or composite is None else composite.dates, to_days(date),
    )
    extra = dict(composite.extra) if (composite is not None and reference is not None) else {}
    n_dates = composite.n_dates + 1 if (composite is not None and reference is not None) else 1
    new_comp = Composite(wgb, new_ref, new_dates, date, n_dates, {k: v.copy() for k, v in extra.items()})

    # --- full resolution ------------------------------------------------------------------------
    clm, mg2, valid = _to_full(core, full, ray, factor, shape, terrain, s, pixel, native)
    t3 = time.perf_counter()
    masks = _dataset(toa, gb, clm, mg2, valid)
    nvalid = max(int(valid.sum()), 1)

    def pct(var: str) -> float:
        return round(100.0 * float(masks[var].values.sum()) / nvalid, 3)

    cloud_cover = pct("cloud")
    masks.attrs.update(
        datetime=date,
        mode=core.mode.value,
        mode_reason=reason,
        working_resolution_m=pixel,
        working_factor=factor,
        blue_band=blue_band_of(rc, s),
        cloud_cover=cloud_cover,
        cloud_shadow_cover=pct("cloud_shadow"),
        snow_cover=pct("snow"),
        water_cover=pct("water"),
        cirrus_cover=pct("cirrus"),
        cloud_cover_above_limit=int(cloud_cover > s.max_cloud_percentage),
        shadow_altitudes_m=", ".join(f"{a:.0f}" for a in core.shadow_altitude_m),
        skipped="; ".join(core.skipped),
        time_prepare_s=round(t1 - t0, 4),
        time_core_s=round(t2 - t1, 4),
        time_full_resolution_s=round(t3 - t2, 4),
    )
    return masks, new_comp


#: Side of the tiles of the full-resolution refinement (bounded memory, cache-friendly).
STRIP_ROWS = 512


def _to_full(
    core: CoreResult, full: dict[str, np.ndarray], ray: dict[str, tuple[np.ndarray, np.ndarray]],
    factor: int, shape: tuple[int, int], terrain: dict[str, np.ndarray], s: MaskSettings,
    pixel: float, native: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse decisions -> full-resolution CLM/MG2 with cloud, snow and water edges refined.

    Dense and strip-wise: the full-resolution tests (threshold, multi-temporal against the
    coarse composite, snow, water) are evaluated with vectorised array operations, then used
    inside the edge zones (``refine_radius_px`` working pixels around each coarse boundary);
    outside them the coarse decision stands, except that the threshold test also adds small
    bright clouds anywhere.  Rayleigh terms at full resolution are the scene means (they vary
    by less than 0.002 in reflectance across a tile).  Cirrus and shadows stay coarse.
    """
    u8 = np.uint8
    tests = core.cloud_tests
    clm_w = (
        core.threshold.view(u8) << 2 | core.multitemporal.view(u8) << 3 | core.shadow_inside.view(u8) << 5
        | core.shadow_outside.view(u8) << 6 | core.cirrus.view(u8) << 7
    ).astype(u8)
    mg2_w = (core.water.view(u8) | core.snow.view(u8) << 2).astype(u8)
    clm = kg.upsample(clm_w, factor, shape)
    mg2 = kg.upsample(mg2_w, factor, shape)
    valid = np.isfinite(full[REQUIRED_BANDS[0]])
    for b in REQUIRED_BANDS[1:]:
        valid &= np.isfinite(full[b])
    if not (s.refine and factor > 1):
        return _finish(clm, mg2, valid, terrain, s, native)

    zone_c = kc.edge_zone(tests, s.refine_radius_px).view(u8)
    zone_s = kc.edge_zone(core.snow, s.refine_radius_px).view(u8)
    zone_w = kc.edge_zone(core.water, s.refine_radius_px).view(u8)
    has_ref = bool(core.reference) and "B02" in core.reference and s.red_band in core.reference
    coef = {b: (float(np.mean(ray[b][0])), float(np.mean(ray[b][1]))) for b in {"B02", "B03", "B04", "B08", "B11", s.red_band}}
    water_thr = (core.threshold & core.water).view(u8)
    slope_c = terrain.get("slope")
    illum_c = np.ascontiguousarray(terrain["illumination"]) if "illumination" in terrain else None
    rows_per = max(factor, (STRIP_ROWS // factor) * factor)
    keep_tests = u8(~(bits.CLM_THRESHOLD | bits.CLM_MULTITEMPORAL) & 0xFF)
    keep_sw = u8(~(bits.MG2_SNOW | bits.MG2_WATER) & 0xFF)
    tiles = [(r0, q0) for r0 in range(0, shape[0], rows_per) for q0 in range(0, shape[1], rows_per)]
    for r0, q0 in tiles:
        r1, q1 = min(shape[0], r0 + rows_per), min(shape[1], q0 + rows_per)
        c0, c1 = r0 // factor, -(-r1 // factor)
        k0, k1 = q0 // factor, -(-q1 // factor)
        sh = (r1 - r0, q1 - q0)

        def up(a: np.ndarray, c0: int = c0, c1: int = c1, k0: int = k0, k1: int = k1, sh: tuple[int, int] = sh) -> np.ndarray:
            return kg.upsample(a[c0:c1, k0:k1], factor, sh)

        def rc(b: str, r0: int = r0, r1: int = r1, q0: int = q0, q1: int = q1) -> np.ndarray:
            f0, g = coef[b]
            return full[b][r0:r1, q0:q1] * np.float32(g) + np.float32(f0)

        v = valid[r0:r1, q0:q1]
        clm_s, mg2_s = clm[r0:r1, q0:q1], mg2[r0:r1, q0:q1]
        in_c, in_s, in_w = (bool(z[c0:c1, k0:k1].any()) for z in (zone_c, zone_s, zone_w))
        snow_c, water_c = (mg2_s & u8(bits.MG2_SNOW)) != 0, (mg2_s & u8(bits.MG2_WATER)) != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            blue = rc("B02")
            snow, water = snow_c, water_c
            if in_s:
                snow_f = ksw.snow_test(rc("B03"), rc("B04"), rc("B11"), s.snow_ndsi_threshold, s.snow_red_threshold,
                                       s.snow_swir_threshold, up(illum_c) if illum_c is not None else None,
                                       rc("B08"), s.snow_nir_threshold, blue, s.snow_max_whiteness) & v
                snow = np.where(up(zone_s) != 0, snow_f, snow_c)
            if in_w:
                water_f = ksw.water_test(rc("B04"), rc("B08"), s.water_ndvi_threshold, s.water_red_threshold,
                                         s.fmask_water_nir_high, s.fmask_water_ndvi_high, s.fmask_water_nir_low,
                                         up(slope_c) if slope_c is not None else None, s.water_max_slope_deg) & v
                water = np.where(up(zone_w) != 0, water_f, water_c)
            thr = (blue > s.blue_threshold) & v & ~snow
            mt = None
            if has_ref and (in_c or thr.any()):
                ref_ok = up(core.reference_ok)
                vt = up(core.variation_threshold)
                d_blue = blue - up(core.reference["B02"])
                thr &= ~(ref_ok & (d_blue < vt))  # as bright as in the composite: a bright surface
                if in_c:
                    d_red = rc(s.red_band) - up(core.reference[s.red_band])
                    mt = ref_ok & v & ~snow & (d_blue > vt) & ~(d_red > s.k_red_blue * d_blue)
        thr_c = (clm_s & u8(bits.CLM_THRESHOLD)) != 0
        mt_c = (clm_s & u8(bits.CLM_MULTITEMPORAL)) != 0
        if in_c:
            zc = up(zone_c) != 0
            # full-res test inside the zone; outside, the coarse decision (and small bright clouds)
            thr_final = thr | (thr_c & ~zc) | (thr_c & (up(water_thr) != 0))
            mt_final = np.where(zc, mt, mt_c) if mt is not None else mt_c & ~zc
        else:
            thr_final, mt_final = thr | thr_c, mt_c
        clm_s &= keep_tests
        clm_s |= thr_final.view(u8) << 2
        clm_s |= mt_final.view(u8) << 3
        if in_s or in_w:
            cloud_now = (clm_s & u8(bits.CLM_TESTS)) != 0
            water_final = water & ~cloud_now
            snow_final = snow & ~cloud_now & ~water_final
            mg2_s &= keep_sw
            mg2_s |= water_final.view(u8)
            mg2_s |= snow_final.view(u8) << 2
    return _finish(clm, mg2, valid, terrain, s, native)


def _finish(
    clm: np.ndarray, mg2: np.ndarray, valid: np.ndarray, terrain: dict[str, np.ndarray], s: MaskSettings, native: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extension at full resolution, summary bits, terrain bits, no-data."""
    u8 = np.uint8
    radius = round(s.cloud_extension_m / native)
    tests_u8 = ((clm & u8(bits.CLM_TESTS)) != 0).view(u8)
    cl = tests_u8
    if radius > 0 and tests_u8.any():
        grown = kc.dilate_square(tests_u8.view(bool), radius).view(u8)
        clm |= (grown & (tests_u8 ^ u8(1)) & valid.view(u8)) << 4
        cl = grown  # tests or extension
    # shadows, snow and water never under clouds
    clm &= u8(0xFF) ^ (cl * u8(bits.CLM_SHADOWS))
    bits.finish_clm(clm)
    mg2 &= u8(0xFF) ^ (cl * u8(bits.MG2_SNOW | bits.MG2_WATER))
    bits.finish_mg2(mg2, clm)
    for name, bit in bits.MG2_TERRAIN.items():
        if name in terrain:
            mg2 |= terrain[name].view(u8) * u8(bit)
    v = valid.view(u8)
    clm *= v
    mg2 &= u8(0xF0) | (v * u8(0x0F))
    return clm, mg2, valid


def _dataset(toa: xr.Dataset, gb: GeoBox, clm: np.ndarray, mg2: np.ndarray, valid: np.ndarray) -> xr.Dataset:
    u8 = np.uint8
    coords = {k: toa.coords[k] for k in ("y", "x") if k in toa.coords}
    dims = ("y", "x")
    data: dict[str, Any] = {
        "cloud": (dims, (clm & u8(bits.CLM_ALL_CLOUDS)) != 0),
        "cirrus": (dims, (clm & u8(bits.CLM_CIRRUS)) != 0),
        "cloud_shadow": (dims, (clm & u8(bits.CLM_SHADOWS)) != 0),
        "snow": (dims, (mg2 & u8(bits.MG2_SNOW)) != 0),
        "water": (dims, (mg2 & u8(bits.MG2_WATER)) != 0),
        "valid": (dims, valid),
        "clm": (dims, clm, {"long_name": "cloud mask (MUSCATE CLM bits)", "flag_meanings": "; ".join(f"bit {k}: {v}" for k, v in bits.CLM_BIT_NAMES.items())}),
        "mg2": (dims, mg2, {"long_name": "geophysical mask (MUSCATE MG2 bits)", "flag_meanings": "; ".join(f"bit {k}: {v}" for k, v in bits.MG2_BIT_NAMES.items())}),
    }
    ds = xr.Dataset(data, coords=coords)
    if ds.odc.geobox is None or ds.odc.geobox != gb:
        ds = ds.odc.assign_crs(gb.crs) if gb.crs is not None else ds
    return ds


def to_resolution(masks: xr.Dataset, factor: int) -> xr.Dataset:
    """Masks on a grid ``factor`` times coarser (e.g. ``2``: R1 10 m -> R2 20 m).

    Conservative: a coarse pixel carries every CLM/MG2 bit set in any of its full-resolution
    pixels (bitwise OR over the block); ``valid`` is true where any pixel was valid.  The
    booleans are re-derived from the bits.
    """
    if factor == 1:
        return masks.copy()
    gb = masks.odc.geobox
    if gb is None:
        raise InputError("masks", "masks are not georeferenced")
    out_gb = gb.zoom_out(factor)
    u8 = np.uint8

    def block_or(a: np.ndarray) -> np.ndarray:
        h, w = a.shape
        p = np.pad(a, ((0, (-h) % factor), (0, (-w) % factor)))
        return np.bitwise_or.reduce(np.bitwise_or.reduce(p.reshape(p.shape[0] // factor, factor, -1, factor), axis=3), axis=1)

    clm = block_or(masks.clm.values).astype(u8)
    mg2 = block_or(masks.mg2.values).astype(u8)
    valid = kg.block_any(masks.valid.values, factor)
    tests = ((clm & u8(bits.CLM_TESTS)) != 0).view(u8)
    clm &= u8(0xFF) ^ (tests * u8(bits.CLM_EXTENSION))  # extension stays outside tested clouds
    cl = ((clm & u8(bits.CLM_TESTS | bits.CLM_EXTENSION)) != 0).view(u8)
    clm &= u8(0xFF) ^ (cl * u8(bits.CLM_SHADOWS))
    mg2 &= u8(0xFF) ^ (cl * u8(bits.MG2_SNOW | bits.MG2_WATER))
    bits.finish_clm(clm)
    bits.finish_mg2(mg2, clm)
    ds = _dataset(xr.Dataset(coords=xr_coords(out_gb)), out_gb, clm, mg2, valid)
    ds.attrs.update(masks.attrs)
    ds.attrs["resolution_factor"] = factor
    return ds
