"""Atmospheric and terrain correction of one date: L1C TOA -> SRE, FRE, ATB, IAB.

:func:`correct` runs in two stages:

1. **Working (coarse) grid**, in memory: pressure from the DEM, ozone (setting or
   climatology), water vapour from B9/B8A, AOT from the multi-temporal + dark-vegetation cost
   (:mod:`l2a.kernels.atmosphere`), then per band the radiative-transfer terms
   (:class:`l2a.kernels.rt.RadiativeTransferModel`, SMAC by default), the environment
   reflectance over ``adjacency.radius_m`` and the coefficient fields of the full-resolution
   kernel. View angles are per band when the reader provides them (``angles(g, bands=[b])``,
   as the SAFE reader does), else the mean view angles. On a date without any usable pixel,
   AOT and water vapour default to the composite's previous values (flagged in IAB). The working grid is the one of the masks' composite when given, otherwise
   ``coarse_resolution_m`` limited so that the grid keeps ``min_coarse_pixels`` across
   (the rule of :class:`l2a.masks.settings.MaskSettings`).
2. **Full resolution** (10 m R1, 20 m R2), lazily with dask, block by block: the coefficient
   fields are interpolated bilinearly to each block, TOA is inverted and corrected for
   adjacency (SRE), then for slope (FRE) with the terrain of the DEM step.

Output (``xarray.Dataset``; MUSCATE encodings, see ``PRODUCT_FORMAT.md``):

- ``SRE_B2`` … ``SRE_B12``, ``FRE_B2`` …: int16, reflectance x 10000, no-data -10000;
  R1 bands on dims ``(y, x)`` (10 m grid), R2 bands on ``(y_r2, x_r2)`` (20 m grid);
- ``ATB_R1`` ``(atb, y, x)`` and ``ATB_R2`` ``(atb, y_r2, x_r2)``: uint8, ``atb`` =
  ``("water_vapour", "aot")``, water vapour = value / 20 g/cm2, AOT = value / 200;
- ``IAB_R1``, ``IAB_R2``: uint8, bit 0 water vapour interpolated, bit 1 AOT interpolated;
- on the working grid ``(y_c, x_c)``: float32 ``water_vapour`` (g/cm2), ``aot`` (550 nm),
  ``pressure`` (hPa), bool ``water_vapour_interpolated``, ``aot_interpolated``.

:func:`group` returns one resolution group (``"R1"``, ``"R2"``, ``"coarse"``) as a Dataset on
plain ``y``/``x`` dims with its grid attached (``ds.odc.geobox``), ready for writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import dask.array as da
import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from l2a.io.smac_coefs import DEFAULT_AEROSOL_MODEL, read_smac_coefficients
from l2a.kernels import adjacency as adj
from l2a.kernels import atmosphere as atm
from l2a.kernels import fullres
from l2a.kernels import slope_correction as slc
from l2a.kernels.clouds import dilate
from l2a.kernels.rt import AtmosphereTerms, RadiativeTransferModel, inverse
from l2a.kernels.smac import SmacModel
from l2a.masks.composite import to_days
from l2a.sensors.sentinel2 import BY_NAME, MUSCATE_R1, MUSCATE_R2

#: Scale of SRE/FRE integers (reflectance x 10000) and their no-data value.
REFLECTANCE_SCALE: Final[float] = 10000.0
REFLECTANCE_NODATA: Final[int] = -10000
#: ATB quantification: water vapour (g/cm2) = value / 20, AOT = value / 200.
ATB_WATER_VAPOUR_SCALE: Final[float] = 20.0
ATB_AOT_SCALE: Final[float] = 200.0
#: IAB bits.
IAB_WATER_VAPOUR_BIT: Final[int] = 0
IAB_AOT_BIT: Final[int] = 1

_ATMOSPHERE_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B08", "B8A", "B09")


@dataclass(frozen=True)
class CorrectionSettings:
    """Settings of :func:`correct`.

    Attributes
    ----------
    coarse_resolution_m : float
        Resolution (m) of the working grid when no composite gives one (240, MAJA's L2 coarse
        resolution).
    min_coarse_pixels : int
        The working grid keeps at least this many pixels across the smaller side of the scene
        (same rule as the masks: small scenes are worked on finer grids).
    aerosol_model : str
        Aerosol model of the SMAC coefficient files (``CONTINENTAL``).
    ozone_cm_atm : float or None
        Ozone column (cm-atm = Dobson units / 1000); ``None`` uses the van Heuklon (1979)
        climatology at the scene centre and date.
    default_pressure_hpa : float
        Surface pressure (hPa) when no DEM is given.
    water_vapour : WaterVapourSettings
    aot : AotSettings
    adjacency : AdjacencySettings
    slope : SlopeSettings
    water_vapour_smooth_px : float
        Gaussian smoothing (working pixels) of the gap-filled water-vapour field.
    chunks : int
        Dask chunk side (pixels) of the full-resolution arrays.
    bands : tuple of str
        Bands to produce (default: the 10 MUSCATE bands).
    aot_cloud_margin_m : float
        Pixels closer than this (m) to a cloud or a cloud shadow are left out of the AOT
        retrieval (as MAJA dilates its cloud mask there): cloud edges, thin undetected cloud
        and sub-pixel shadows there would bias the dark-pixel relation. 0 disables it.
    resolutions_m : tuple of float
        Pixel sizes (m) of the R1 and R2 outputs (MUSCATE: 10 and 20). Coarser values give a
        decimated product (a preview, or an input that is itself decimated, such as a whole
        tile at 900 m); the science is the same, the TOA is read at that size.
    """

    coarse_resolution_m: float = 240.0
    min_coarse_pixels: int = 50
    aerosol_model: str = DEFAULT_AEROSOL_MODEL
    ozone_cm_atm: float | None = None
    default_pressure_hpa: float = atm.P0_HPA
    water_vapour: atm.WaterVapourSettings = field(default_factory=atm.WaterVapourSettings)
    aot: atm.AotSettings = field(default_factory=atm.AotSettings)
    adjacency: adj.AdjacencySettings = field(default_factory=adj.AdjacencySettings)
    slope: slc.SlopeSettings = field(default_factory=slc.SlopeSettings)
    water_vapour_smooth_px: float = 1.0
    chunks: int = 2048
    bands: tuple[str, ...] = MUSCATE_R1 + MUSCATE_R2
    aot_cloud_margin_m: float = 480.0
    resolutions_m: tuple[float, float] = (10.0, 20.0)


DEFAULT_CORRECTION: Final[CorrectionSettings] = CorrectionSettings()


# ---------------------------------------------------------------------------------------------
# grid helpers


def _res(g: GeoBox) -> float:
    return float(abs(g.affine.a))


def working_geobox(l1c: Any, composite: Any, settings: CorrectionSettings) -> GeoBox:
    """The working grid: the composite's, else the coarse-resolution rule of the masks."""
    if composite is not None and getattr(composite, "geobox", None) is not None:
        gb: GeoBox = composite.geobox
        return gb
    g10: GeoBox = l1c.geobox(10)
    native = _res(g10)
    by_res = max(1, round(settings.coarse_resolution_m / native))
    by_size = max(1, min(g10.shape) // settings.min_coarse_pixels)
    factor = max(1, min(by_res, by_size))
    out: GeoBox = l1c.geobox(native * factor)
    return out


def axis_positions(fine: GeoBox, coarse: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """Fractional coarse pixel index (row, column) of every fine pixel centre (axis-aligned grids)."""
    tf, tc = fine.affine, coarse.affine
    ny, nx = fine.shape
    ys = tf.f + (np.arange(ny) + 0.5) * tf.e
    xs = tf.c + (np.arange(nx) + 0.5) * tf.a
    return (ys - tc.f) / tc.e - 0.5, (xs - tc.c) / tc.a - 0.5


def regrid_nearest(values: np.ndarray, src: GeoBox, dst: GeoBox) -> np.ndarray:
    """Nearest-neighbour resampling of a 2-D array between axis-aligned grids of one CRS."""
    py, px = axis_positions(dst, src)
    iy = np.clip(np.round(py).astype(np.int64), 0, src.shape[0] - 1)
    ix = np.clip(np.round(px).astype(np.int64), 0, src.shape[1] - 1)
    return np.asarray(values)[np.ix_(iy, ix)]


def regrid_mean(values: np.ndarray, src: GeoBox, dst: GeoBox) -> np.ndarray:
    """Mean of the source pixels whose centres fall in each destination pixel (NaN-aware).

    Destination pixels that receive no source centre take the nearest source value.
    """
    v = np.asarray(values, dtype=np.float64)
    if src.shape == dst.shape and src.affine == dst.affine:
        return v.copy()
    k = dst.affine.a / src.affine.a
    if (
        abs(k - round(k)) < 1e-9
        and round(k) >= 1
        and abs(dst.affine.e / src.affine.e - k) < 1e-9
        and abs(dst.affine.c - src.affine.c) < 1e-6 * abs(src.affine.a)
        and abs(dst.affine.f - src.affine.f) < 1e-6 * abs(src.affine.e)
    ):
        out = _block_mean(v, round(k), tuple(dst.shape))
        if out is not None:
            return out
    py, px = axis_positions(src, dst)
    iy = np.floor(py + 0.5).astype(np.int64)
    ix = np.floor(px + 0.5).astype(np.int64)
    oky = (iy >= 0) & (iy < dst.shape[0])
    okx = (ix >= 0) & (ix < dst.shape[1])
    rows, cols = np.meshgrid(np.where(oky, iy, 0), np.where(okx, ix, 0), indexing="ij")
    ok = np.isfinite(v) & oky[:, None] & okx[None, :]
    flat = (rows * dst.shape[1] + cols)[ok]
    n = dst.shape[0] * dst.shape[1]
    s = np.bincount(flat, weights=v[ok], minlength=n)
    c = np.bincount(flat, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s / c).reshape(dst.shape)
    empty = c.reshape(dst.shape) == 0
    if empty.any():
        out[empty] = regrid_nearest(v, src, dst)[empty]
    return out


def _block_mean(v: np.ndarray, k: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """NaN-aware mean over aligned ``k x k`` blocks; None when the shapes do not match that layout."""
    ny, nx = v.shape
    oy, ox = -(-ny // k), -(-nx // k)
    if (oy, ox) != tuple(shape):
        return None
    pad = np.full((oy * k, ox * k), np.nan)
    pad[:ny, :nx] = v
    ok = np.isfinite(pad)
    s = np.where(ok, pad, 0.0).reshape(oy, k, ox, k).sum(axis=(1, 3))
    c = ok.reshape(oy, k, ox, k).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _to_grid(da_: xr.DataArray, dst: GeoBox, how: str) -> np.ndarray:
    src = da_.odc.geobox
    vals = np.asarray(da_.values)
    if src is None or (tuple(src.shape) == tuple(dst.shape) and src.affine == dst.affine):
        if vals.shape != tuple(dst.shape):
            raise ValueError(f"{da_.name}: shape {vals.shape} does not match the working grid {dst.shape}")
        return vals
    if how == "mean":
        return regrid_mean(vals.astype(np.float64), src, dst)
    if how == "any":
        return regrid_mean(vals.astype(np.float64), src, dst) > 0
    if how == "all":
        return regrid_mean(vals.astype(np.float64), src, dst) >= 1
    return regrid_nearest(vals, src, dst)


def _finite(a: np.ndarray, default: float) -> np.ndarray:
    if np.isfinite(a).all():
        return np.asarray(a, dtype=np.float64)
    return atm.fill_gaps(a, default)[0]


# ---------------------------------------------------------------------------------------------
# coarse stage


@dataclass
class CoarseState:
    """Everything the full-resolution stage needs, on the working grid (numpy, float64)."""

    geobox: GeoBox
    sun_zenith: np.ndarray
    sun_azimuth: np.ndarray
    view_zenith: np.ndarray
    view_azimuth: np.ndarray
    pressure: np.ndarray
    ozone: float
    water_vapour: np.ndarray
    wv_interpolated: np.ndarray
    aot: np.ndarray
    aot_interpolated: np.ndarray
    aot_raw: np.ndarray
    terms: dict[str, AtmosphereTerms]
    sre: dict[str, np.ndarray]
    env: dict[str, np.ndarray]
    usable: np.ndarray
    clear: np.ndarray
    day: float = float("nan")


def _angles(l1c: Any, g: GeoBox) -> dict[str, np.ndarray]:
    ang = l1c.angles(g)
    out = {}
    for k, default in (("sun_zenith", 45.0), ("sun_azimuth", 180.0), ("view_zenith", 0.0), ("view_azimuth", 0.0)):
        v = np.broadcast_to(np.asarray(ang[k].values, dtype=np.float64), g.shape)
        out[k] = _finite(v, default)
    return out


def _band_views(l1c: Any, g: GeoBox, bands: list[str], mean_vz: np.ndarray, mean_va: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-band view zenith/azimuth on ``g`` when the reader gives them (``angles(g, bands=[b])``), else the mean."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for b in bands:
        try:
            ang = l1c.angles(g, bands=[b])
        except TypeError:  # the reader has no per-band view angles
            return {b: (mean_vz, mean_va) for b in bands}
        vz = np.broadcast_to(np.asarray(ang["view_zenith"].values, dtype=np.float64), g.shape)
        va = np.broadcast_to(np.asarray(ang["view_azimuth"].values, dtype=np.float64), g.shape)
        out[b] = (_finite(vz, float(np.mean(mean_vz))), _finite(va, float(np.mean(mean_va))))
    return out


def coarse_stage(
    l1c: Any,
    masks: xr.Dataset | None,
    composite: Any,
    terrain: xr.Dataset | None,
    model: RadiativeTransferModel,
    settings: CorrectionSettings,
) -> CoarseState:
    """Water vapour, AOT and per-band atmospheric terms on the working grid."""
    g = working_geobox(l1c, composite, settings)
    res = _res(g)
    bands = sorted(set(_ATMOSPHERE_BANDS) | set(settings.bands), key=lambda b: BY_NAME[b].band_id)
    toa_ds = l1c.toa(bands, res, chunks=None)
    toa_g = toa_ds.odc.geobox
    toa: dict[str, np.ndarray] = {}
    for b in bands:
        same = toa_g is None or (tuple(toa_g.shape) == tuple(g.shape) and toa_g.affine == g.affine)
        toa[b] = np.asarray(toa_ds[b].values if same else _to_grid(toa_ds[b], g, "mean"), dtype=np.float64)
    ang = _angles(l1c, g)
    sz, sa, vz, va = ang["sun_zenith"], ang["sun_azimuth"], ang["view_zenith"], ang["view_azimuth"]
    views = _band_views(l1c, g, bands, vz, va)
    valid = np.all([np.isfinite(toa[b]) for b in bands], axis=0)

    def mask(name: str, how: str) -> np.ndarray:
        if masks is None or name not in masks:
            return np.zeros(g.shape, dtype=bool)
        m = _to_grid(masks[name], g, how)
        return np.asarray(m, dtype=bool)

    if masks is not None and "valid" in masks:
        valid &= mask("valid", "all")
    cloud = mask("cloud", "any") | mask("cirrus", "any")
    shadow = mask("cloud_shadow", "any")
    water = mask("water", "any")
    snow = mask("snow", "any")
    clear = valid & ~cloud & ~shadow
    usable = clear & ~water & ~snow & ~dilate(cloud | shadow, int(np.ceil(settings.aot_cloud_margin_m / res - 1e-9)))

    # pressure and ozone
    if terrain is not None and "elevation" in terrain:
        elev = _to_grid(terrain["elevation"], g, "mean")
        pressure = atm.pressure_from_altitude(np.asarray(elev))
    else:
        pressure = np.full(g.shape, settings.default_pressure_hpa)
    if settings.ozone_cm_atm is not None:
        ozone = float(settings.ozone_cm_atm)
    else:
        from l2a.io._array_product import pixel_centres_lonlat

        lon, lat = pixel_centres_lonlat(g)
        doy = l1c.metadata.sensing_time.timetuple().tm_yday
        ozone = float(atm.ozone_climatology(float(np.mean(lat)), float(np.mean(lon)), doy))

    # water vapour
    us, uv = np.cos(np.radians(sz)), np.cos(np.radians(views["B09"][0]))
    air_mass = 1.0 / us + 1.0 / uv
    wv_raw = atm.water_vapour_from_ratio(
        np.where(clear, toa["B09"], np.nan),
        toa["B8A"],
        air_mass,
        lambda m, u: model.water_vapour_transmission("B09", m, u),
        lambda m, u: model.water_vapour_transmission("B8A", m, u),
        settings.water_vapour,
    )
    wv_default = settings.water_vapour.default_water_vapour
    previous_wv = getattr(composite, "extra", {}).get("water_vapour") if composite is not None else None
    if previous_wv is not None and np.isfinite(previous_wv).any():
        wv_default = float(np.nanmean(previous_wv))
    wv_filled, wv_interp = atm.fill_gaps(wv_raw, wv_default)
    wv = atm.smooth(wv_filled, settings.water_vapour_smooth_px)

    # aerosol
    def terms_at(band: str, tau: float | np.ndarray) -> AtmosphereTerms:
        bvz, bva = views[band]
        return model.terms(band, sz, bvz, sa - bva, pressure, tau, wv, ozone)

    comp_sre = _composite_sre(composite, g, settings.aot.mt_bands)
    today = to_days(l1c.metadata.sensing_time.isoformat())  # the composite's own day count
    comp_age = _composite_sre_age(composite, g, today) if comp_sre is not None else None
    aot_settings = settings.aot
    previous = getattr(composite, "extra", {}).get("aot") if composite is not None else None
    if previous is not None and np.isfinite(previous).any():
        # without any estimate today, the last date's AOT is a better guess than a constant
        aot_settings = replace(aot_settings, default_aot=float(np.nanmean(previous)))
    res_aot = atm.estimate_aot(toa, usable, terms_at, comp_sre, aot_settings, comp_age)

    # per-band terms, uniform-surface reflectance, environment and adjacency-corrected SRE
    terms: dict[str, AtmosphereTerms] = {}
    sre: dict[str, np.ndarray] = {}
    env: dict[str, np.ndarray] = {}
    for b in settings.bands:
        t = terms_at(b, res_aot.aot)
        terms[b] = t
        rho_u = inverse(t, toa[b])
        e = atm.fill_gaps(adj.environment_reflectance(rho_u, res, settings.adjacency.radius_m), 0.1)[0]
        env[b] = e
        sre[b] = adj.correct_adjacency(rho_u, e, t.t_up, t.t_up_dir, t.s) if settings.adjacency.enabled else rho_u
    return CoarseState(
        geobox=g,
        sun_zenith=sz,
        sun_azimuth=sa,
        view_zenith=vz,
        view_azimuth=va,
        pressure=pressure,
        ozone=ozone,
        water_vapour=wv,
        wv_interpolated=wv_interp,
        aot=res_aot.aot,
        aot_interpolated=res_aot.interpolated,
        aot_raw=res_aot.raw,
        terms=terms,
        sre=sre,
        env=env,
        usable=usable,
        clear=clear,
        day=today,
    )


def _composite_sre(composite: Any, g: GeoBox, bands: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    extra: Mapping[str, np.ndarray] | None = getattr(composite, "extra", None) if composite is not None else None
    if not extra or not all(f"sre_{b}" in extra for b in bands):
        return None
    cg = getattr(composite, "geobox", None)
    out = {}
    for b in bands:
        v = np.asarray(extra[f"sre_{b}"], dtype=np.float64)
        out[b] = v if cg is None or v.shape == tuple(g.shape) else regrid_nearest(v, cg, g)
    return out


def _composite_sre_age(composite: Any, g: GeoBox, today: float) -> np.ndarray | None:
    """Days from each pixel's surface-reflectance reference (``extra["sre_date"]``) to today
    (negative for a later reference, as in BACKWARD mode); ``None`` for composites written
    before the dates were kept."""
    extra: Mapping[str, np.ndarray] = getattr(composite, "extra", None) or {}
    if "sre_date" not in extra:
        return None
    d = np.asarray(extra["sre_date"], dtype=np.float64)
    cg = getattr(composite, "geobox", None)
    if cg is not None and d.shape != tuple(g.shape):
        d = regrid_nearest(d, cg, g)
    return today - d


def update_composite(composite: Any, state: CoarseState) -> Any:
    """Copy of ``composite`` with ``extra["sre_<band>"]`` refreshed on clear pixels (and
    ``extra["sre_date"]``, days since 1970 of that reference, there), plus AOT and water vapour."""
    if composite is None:
        return None
    new = composite.copy() if hasattr(composite, "copy") else composite
    extra = dict(getattr(new, "extra", {}) or {})
    for b, v in state.sre.items():
        key = f"sre_{b}"
        old = np.asarray(extra.get(key, np.full(state.geobox.shape, np.nan)), dtype=np.float32)
        if old.shape != tuple(state.geobox.shape):
            old = np.full(state.geobox.shape, np.nan, dtype=np.float32)
        extra[key] = np.where(state.clear & np.isfinite(v), v, old).astype(np.float32)
    refreshed = state.clear & np.all([np.isfinite(v) for v in state.sre.values()], axis=0)
    old_date = np.asarray(extra.get("sre_date", np.full(state.geobox.shape, np.nan)), dtype=np.float64)
    if old_date.shape != tuple(state.geobox.shape):
        old_date = np.full(state.geobox.shape, np.nan)
    extra["sre_date"] = np.where(refreshed, state.day, old_date)
    extra["aot"] = state.aot.astype(np.float32)
    extra["water_vapour"] = state.water_vapour.astype(np.float32)
    new.extra = extra
    return new


# ---------------------------------------------------------------------------------------------
# full-resolution stage


def _encode(r: np.ndarray) -> np.ndarray:
    out = np.rint(r * REFLECTANCE_SCALE)
    np.clip(out, REFLECTANCE_NODATA + 1, 32767, out=out)
    return np.where(np.isfinite(r), out, REFLECTANCE_NODATA).astype(np.int16)


def _coef_fields(b: str, st: CoarseState, with_adjacency: bool) -> dict[str, np.ndarray]:
    """Per-band coarse fields of the full-resolution kernel (float32, NaN-free)."""
    t = st.terms[b]
    f: dict[str, Any] = {}
    if with_adjacency:
        f["gain"], f["offset"] = adj.linear_coefficients(t.tg, t.rho_atm, t.t_down, t.t_up, t.t_up_dir, t.s, st.env[b])
    else:
        f |= {"inv_tg": 1.0 / t.tg, "rho_atm": t.rho_atm, "t_tot": t.t_down * t.t_up, "s": t.s}
    flat = t.t_down_dir + t.t_down_dif
    f["w_dir"] = t.t_down_dir / (flat * np.cos(np.radians(st.sun_zenith)))
    f["w_dif"] = t.t_down_dif / flat
    f["env"] = st.env[b]
    shape = st.geobox.shape
    return {
        k: np.ascontiguousarray(np.broadcast_to(_finite(np.asarray(v, dtype=np.float64), 0.0), shape), dtype=np.float32)
        for k, v in f.items()
    }


def _sun_fields(st: CoarseState) -> dict[str, np.ndarray]:
    z, a = np.radians(st.sun_zenith), np.radians(st.sun_azimuth)
    return {
        "cos_sz": np.cos(z).astype(np.float32),
        "sin_cos": (np.sin(z) * np.cos(a)).astype(np.float32),
        "sin_sin": (np.sin(z) * np.sin(a)).astype(np.float32),
    }


def _sub(pos: np.ndarray, n: int) -> tuple[int, int]:
    lo = int(np.clip(np.floor(pos.min()), 0, n - 1))
    hi = int(np.clip(np.floor(pos.max()) + 2, lo + 1, n))
    return lo, hi


def _block_kernel(
    toa: np.ndarray,
    *terrain_blocks: np.ndarray,
    coefs: list[dict[str, np.ndarray]],
    sun: dict[str, np.ndarray],
    pos_y: np.ndarray,
    pos_x: np.ndarray,
    with_adjacency: bool,
    slope_settings: slc.SlopeSettings,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """One block of one resolution group: ``toa`` (bands, y, x) -> int16 (SRE bands + FRE bands, y, x)."""
    assert block_info is not None
    _, (r0, r1), (c0, c1) = block_info[0]["array-location"]
    py, px = pos_y[r0:r1], pos_x[c0:c1]
    ny, nx = sun["cos_sz"].shape
    ly, hy = _sub(py, ny)
    lx, hx = _sub(px, nx)
    wy = fullres.bilinear_weights(py - ly, hy - ly)
    wx = fullres.bilinear_weights(px - lx, hx - lx)

    def up(field: np.ndarray) -> np.ndarray:
        return fullres.upsample(field[ly:hy, lx:hx], wy, wx)

    nb = toa.shape[0]
    out = np.empty((2 * nb, *toa.shape[1:]), dtype=np.int16)
    has_terrain = bool(terrain_blocks)
    if has_terrain:
        slope_deg, aspect_deg, shadow, sky = terrain_blocks
        slope = np.radians(np.nan_to_num(slope_deg.astype(np.float32)))
        aspect = np.radians(np.nan_to_num(aspect_deg.astype(np.float32)))
        sin_b = np.sin(slope)
        cos_b = np.cos(slope)
        sky = np.where(np.isfinite(sky), sky, 0.5 * (1.0 + cos_b)).astype(np.float32)
        cos_i = cos_b * up(sun["cos_sz"])
        cos_i += sin_b * np.cos(aspect) * up(sun["sin_cos"])
        cos_i += sin_b * np.sin(aspect) * up(sun["sin_sin"])
        lit_cos_i = np.maximum(cos_i, 0.0)
        lit_cos_i[shadow] = 0.0
        one_minus_sky = 1.0 - sky
    for i in range(nb):
        c = coefs[i]
        x = np.asarray(toa[i], dtype=np.float32)
        if with_adjacency:
            sre = fullres.linear(x, up(c["gain"]), up(c["offset"]))
        else:
            sre = fullres.invert_adjacency(x, up(c["inv_tg"]), up(c["rho_atm"]), up(c["t_tot"]), up(c["s"]))
        out[i] = _encode(sre)
        if not has_terrain:
            out[nb + i] = out[i]
            continue
        # E_tilt / E_flat = w_dir max(cos i, 0) [lit] + w_dif V_d + rho_env (1 - V_d)  (in place, float32)
        tilt = up(c["w_dir"])
        tilt *= lit_cos_i
        w_dif = up(c["w_dif"])
        w_dif *= sky
        tilt += w_dif
        if slope_settings.terrain_reflection:
            env = up(c["env"])
            env *= one_minus_sky
            tilt += env
        np.maximum(tilt, 1.0 / slope_settings.max_factor, out=tilt)
        np.minimum(tilt, 1.0 / slope_settings.min_factor, out=tilt)
        tilt[shadow] = np.maximum(tilt[shadow], 1.0)  # SHD/HID: never amplified
        sre /= tilt
        out[nb + i] = _encode(sre)
    return out


def _terrain_at(terrain: xr.Dataset, g: GeoBox, chunks: tuple[tuple[int, ...], ...]) -> list[da.Array]:
    """Terrain layers on ``g`` as dask arrays: slope, aspect (degrees), SHD|HID, sky view (NaN: from slope)."""
    tg = terrain.odc.geobox
    same = tuple(tg.shape) == tuple(g.shape) and tg.affine == g.affine

    def on_g(name: str, dtype: Any) -> da.Array:
        data = terrain[name].data
        if same:
            arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=chunks, name=False)
            return arr.astype(dtype).rechunk(chunks)
        py, px = axis_positions(g, tg)
        iy = np.clip(np.round(py).astype(np.int64), 0, tg.shape[0] - 1)
        ix = np.clip(np.round(px).astype(np.int64), 0, tg.shape[1] - 1)
        picked = terrain[name].isel(y=iy, x=ix).data
        arr = picked if isinstance(picked, da.Array) else da.from_array(np.asarray(picked), chunks=chunks, name=False)
        return arr.astype(dtype).rechunk(chunks)

    shadow = da.zeros(tuple(g.shape), dtype=bool, chunks=chunks)
    for name in ("cast_shadow", "hidden_faces"):
        if name in terrain:
            shadow = shadow | on_g(name, bool)
    sky = on_g("sky_view", np.float32) if "sky_view" in terrain else da.full(tuple(g.shape), np.nan, dtype=np.float32, chunks=chunks)
    return [on_g("slope", np.float32), on_g("aspect", np.float32), shadow, sky]


def _upsampled_field(values: np.ndarray, g: GeoBox, st: CoarseState, chunks: tuple[tuple[int, ...], ...], dtype: Any, nearest: bool) -> da.Array:
    pos_y, pos_x = axis_positions(g, st.geobox)
    src = np.asarray(values)

    def fn(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        (r0, r1), (c0, c1) = block_info[0]["array-location"]
        py, px = pos_y[r0:r1], pos_x[c0:c1]
        if nearest:
            iy = np.clip(np.round(py).astype(np.int64), 0, src.shape[0] - 1)
            ix = np.clip(np.round(px).astype(np.int64), 0, src.shape[1] - 1)
            return src[np.ix_(iy, ix)].astype(dtype)
        ly, hy = _sub(py, src.shape[0])
        lx, hx = _sub(px, src.shape[1])
        wy = fullres.bilinear_weights(py - ly, hy - ly)
        wx = fullres.bilinear_weights(px - lx, hx - lx)
        return fullres.upsample(src[ly:hy, lx:hx].astype(np.float32), wy, wx).astype(dtype)

    template = da.zeros(tuple(g.shape), dtype=np.uint8, chunks=chunks)
    return da.map_blocks(fn, template, dtype=dtype)


def _group_vars(
    l1c: Any,
    bands: tuple[str, ...],
    resolution: float,
    st: CoarseState,
    terrain: xr.Dataset | None,
    settings: CorrectionSettings,
    dims: tuple[str, str],
) -> tuple[dict[str, Any], GeoBox]:
    toa_ds = l1c.toa(list(bands), resolution, chunks=settings.chunks)
    g: GeoBox = toa_ds.odc.geobox
    pos_y, pos_x = axis_positions(g, st.geobox)
    arrays = []
    for b in bands:
        arr = toa_ds[b].data
        arrays.append(arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr), chunks=settings.chunks))
    stack = da.stack(arrays).rechunk({0: -1})
    chunks = stack.chunks[1:]
    terr = _terrain_at(terrain, g, chunks) if terrain is not None and "slope" in terrain else []
    nb = len(bands)
    both = da.map_blocks(
        _block_kernel,
        stack,
        *terr,
        chunks=((2 * nb,), *chunks),
        dtype=np.int16,
        coefs=[_coef_fields(b, st, settings.adjacency.enabled) for b in bands],
        sun=_sun_fields(st),
        pos_y=pos_y,
        pos_x=pos_x,
        with_adjacency=settings.adjacency.enabled,
        slope_settings=settings.slope,
    )
    variables: dict[str, Any] = {}
    for i, b in enumerate(bands):
        name = BY_NAME[b].muscate_name
        attrs = {"scale_factor": 1.0 / REFLECTANCE_SCALE, "nodata": REFLECTANCE_NODATA, "band": b}
        variables[f"SRE_{name}"] = (dims, both[i], {**attrs, "long_name": f"surface reflectance {b} (SRE)"})
        variables[f"FRE_{name}"] = (dims, both[nb + i], {**attrs, "long_name": f"flat reflectance {b} (FRE, slope corrected)"})
    wv = _upsampled_field(np.clip(st.water_vapour * ATB_WATER_VAPOUR_SCALE, 0, 255), g, st, chunks, np.float32, False)
    aot = _upsampled_field(np.clip(st.aot * ATB_AOT_SCALE, 0, 255), g, st, chunks, np.float32, False)
    atb = da.stack([da.clip(da.rint(wv), 0, 255).astype(np.uint8), da.clip(da.rint(aot), 0, 255).astype(np.uint8)])
    iab_c = (st.wv_interpolated.astype(np.uint8) << IAB_WATER_VAPOUR_BIT) | (
        st.aot_interpolated.astype(np.uint8) << IAB_AOT_BIT
    )
    iab = _upsampled_field(iab_c, g, st, chunks, np.uint8, True)
    return variables | {
        "_atb": (("atb", *dims), atb, {"scales": "water_vapour = value / 20 (g/cm2); aot = value / 200"}),
        "_iab": (dims, iab, {"flag_masks": "bit 0 water vapour interpolated; bit 1 AOT interpolated"}),
    }, g


def correct(
    l1c: Any,
    masks: xr.Dataset | None,
    composite: Any,
    terrain: xr.Dataset | None,
    settings: CorrectionSettings = DEFAULT_CORRECTION,
    *,
    model: RadiativeTransferModel | None = None,
) -> tuple[xr.Dataset, Any]:
    """Atmospheric, adjacency and slope correction of one L1C date.

    Parameters
    ----------
    l1c : l2a.io.l1c.L1CProduct
        The date to correct (its ``metadata.platform`` picks the SMAC coefficients).
    masks : xarray.Dataset or None
        Booleans ``cloud``, ``cloud_shadow``, ``snow``, ``water``, ``valid`` (and optionally
        ``cirrus``) on the working grid or any grid of the tile (resampled to the working grid).
    composite : l2a.masks.composite.Composite or None
        State of the tile; its ``extra["sre_<band>"]`` (surface reflectance of the last clear
        date) feeds the multi-temporal AOT term. ``None``: single-date retrieval.
    terrain : xarray.Dataset or None
        Output of :func:`l2a.dem.terrain` (``elevation``, ``slope``, ``aspect``,
        ``cast_shadow``, ``hidden_faces``, optional ``sky_view``). ``None``: flat terrain at
        sea level (FRE == SRE).
    settings : CorrectionSettings
    model : RadiativeTransferModel, optional
        Radiative-transfer model; default SMAC with the platform's coefficient files.

    Returns
    -------
    (xarray.Dataset, composite)
        The lazy L2A dataset described in the module docstring, and the updated composite
        (``None`` when ``composite`` is None).
    """
    import odc.geo.xr  # noqa: F401

    if model is None:
        model = SmacModel(read_smac_coefficients(l1c.metadata.platform, settings.aerosol_model))
    st = coarse_stage(l1c, masks, composite, terrain, model, settings)
    r1 = tuple(b for b in settings.bands if b in MUSCATE_R1)
    r2 = tuple(b for b in settings.bands if b not in MUSCATE_R1)
    variables: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    grids: dict[str, GeoBox] = {"coarse": st.geobox}
    res1, res2 = settings.resolutions_m
    for group_name, bands, res, dims in (("R1", r1, res1, ("y", "x")), ("R2", r2, res2, ("y_r2", "x_r2"))):
        if not bands:
            continue
        v, g = _group_vars(l1c, bands, res, st, terrain, settings, dims)
        v[f"ATB_{group_name}"] = v.pop("_atb")
        v[f"IAB_{group_name}"] = v.pop("_iab")
        variables |= v
        grids[group_name] = g
        c = xr_coords(g)
        coords[dims[0]] = c["y"].values
        coords[dims[1]] = c["x"].values
    cdims = ("y_c", "x_c")
    cc = xr_coords(st.geobox)
    coords["y_c"], coords["x_c"] = cc["y"].values, cc["x"].values
    coords["atb"] = ["water_vapour", "aot"]
    variables["water_vapour"] = (cdims, st.water_vapour.astype(np.float32), {"units": "g/cm2"})
    variables["aot"] = (cdims, st.aot.astype(np.float32), {"units": "1", "long_name": "aerosol optical thickness at 550 nm"})
    variables["pressure"] = (cdims, st.pressure.astype(np.float32), {"units": "hPa"})
    variables["water_vapour_interpolated"] = (cdims, st.wv_interpolated)
    variables["aot_interpolated"] = (cdims, st.aot_interpolated)
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update(
        {
            "platform": l1c.metadata.platform,
            "datetime": l1c.metadata.sensing_time.isoformat(),
            "ozone_cm_atm": st.ozone,
            "rt_model": type(model).__name__,
            "crs": str(st.geobox.crs),
            "aot_mean": float(np.mean(st.aot)),
            "water_vapour_mean": float(np.mean(st.water_vapour)),
        }
    )
    ds.attrs["_geoboxes"] = {k: (tuple(v.shape), tuple(v.affine)[:6]) for k, v in grids.items()}
    return ds, update_composite(composite, st)


def group(ds: xr.Dataset, name: str) -> xr.Dataset:
    """One group of :func:`correct`'s output on plain ``y``/``x`` dims with its grid attached.

    ``name``: ``"R1"`` (10 m: SRE/FRE of B2 B3 B4 B8, ATB_R1, IAB_R1), ``"R2"`` (20 m) or
    ``"coarse"`` (working-grid fields).
    """
    from affine import Affine
    from odc.geo.xr import assign_crs

    dims = {"R1": ("y", "x"), "R2": ("y_r2", "x_r2"), "coarse": ("y_c", "x_c")}[name]
    keep = [k for k, v in ds.data_vars.items() if v.dims[-2:] == dims]
    sub = ds[keep]
    if dims != ("y", "x"):
        sub = sub.drop_vars([c for c in ("y", "x") if c in sub.coords]).rename({dims[0]: "y", dims[1]: "x"})
    shape, aff = ds.attrs["_geoboxes"][name]
    g = GeoBox(shape, Affine(*aff), ds.attrs["crs"])
    sub = sub.assign_coords(xr_coords(g))
    sub.attrs = {k: v for k, v in ds.attrs.items() if k != "_geoboxes"}
    return assign_crs(sub, ds.attrs["crs"])
