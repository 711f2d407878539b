"""The coarse-resolution core of the masks: all decisions of one date on the working grid (numpy only).

:func:`run_core` takes the working-grid arrays of one date (Rayleigh-corrected reflectances,
geometry, terrain) and the composite, and returns the coarse masks and the updated composite
arrays.  The xarray lift (:mod:`l2a.masks.detect`) prepares its inputs and refines the result at
full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from l2a.kernels import clouds as kc
from l2a.kernels import shadows as ks
from l2a.kernels import snow_water as ksw
from l2a.masks.settings import MaskSettings, Mode


@dataclass
class CoreInput:
    """Working-grid inputs of one date.

    Attributes
    ----------
    rc : dict of str to ndarray
        Rayleigh-corrected reflectance per band (B10 is kept as TOA), float32, NaN = no-data.
    valid : ndarray of bool
        Valid working pixels.
    sun_zenith, sun_azimuth, view_zenith, view_azimuth : float
        Scene-mean angles (degrees) for the shadow geometry.
    sun_zenith_map, sun_azimuth_map : ndarray or float
        Per-pixel sun angles (degrees) for the slope normalisation.
    pixel_size_m : float
        Working pixel size.
    date : str
        ISO 8601 UTC acquisition time.
    elevation, slope, aspect : ndarray or None
        Terrain on the working grid (m, degrees, degrees).
    """

    rc: dict[str, np.ndarray]
    valid: np.ndarray
    sun_zenith: float
    sun_azimuth: float
    view_zenith: float
    view_azimuth: float
    pixel_size_m: float
    date: str
    sun_zenith_map: np.ndarray | float = 0.0
    sun_azimuth_map: np.ndarray | float = 0.0
    elevation: np.ndarray | None = None
    slope: np.ndarray | None = None
    aspect: np.ndarray | None = None


@dataclass
class CoreResult:
    """Working-grid masks of one date (all boolean arrays on the working grid)."""

    mode: Mode
    threshold: np.ndarray
    multitemporal: np.ndarray
    cirrus: np.ndarray
    extension: np.ndarray
    shadow_inside: np.ndarray
    shadow_outside: np.ndarray
    snow: np.ndarray
    water: np.ndarray
    valid: np.ndarray
    reference_ok: np.ndarray
    variation_threshold: np.ndarray
    reference: dict[str, np.ndarray]
    skipped: list[str] = field(default_factory=list)
    shadow_altitude_m: list[float] = field(default_factory=list)

    @property
    def cloud_tests(self) -> np.ndarray:
        """Pixels flagged by any cloud test (no extension)."""
        return self.threshold | self.multitemporal | self.cirrus

    @property
    def cloud(self) -> np.ndarray:
        """All clouds: tests and extension."""
        return self.cloud_tests | self.extension


def _nir(rc: dict[str, np.ndarray]) -> np.ndarray:
    return rc["B8A"] if "B8A" in rc else rc["B08"]


def blue_band_of(rc: dict[str, np.ndarray], settings: MaskSettings) -> str:
    """The band used as blue (``settings.blue_band``, B02 when it is absent)."""
    return settings.blue_band if settings.blue_band in rc else "B02"


def shadow_shifts(inp: CoreInput, s: MaskSettings) -> tuple[list[tuple[int, int]], list[float]]:
    """Whole-pixel cloud->shadow displacements for the altitudes tried (duplicates removed)."""
    shifts: list[tuple[int, int]] = []
    alts: list[float] = []
    h = s.shadow_min_altitude_m
    while h <= s.shadow_max_altitude_m + 1e-6:
        dr, dc = ks.shadow_shift(h, inp.sun_zenith, inp.sun_azimuth, inp.view_zenith, inp.view_azimuth, inp.pixel_size_m)
        d = (round(dr), round(dc))
        if d != (0, 0) and (not shifts or d != shifts[-1]):
            shifts.append(d)
            alts.append(h)
        h += s.shadow_altitude_step_m
    return shifts, alts


def run_core(
    inp: CoreInput,
    reference: dict[str, np.ndarray] | None,
    reference_age_days: np.ndarray | None,
    settings: MaskSettings,
) -> CoreResult:
    """All coarse decisions of one date.

    Parameters
    ----------
    inp : CoreInput
        Working-grid inputs.
    reference : dict or None
        Composite reflectances (same bands as ``inp.rc``), or None for INIT.
    reference_age_days : ndarray or None
        Age of each composite pixel at this date (days, signed).
    settings : MaskSettings

    Returns
    -------
    CoreResult
    """
    s = settings
    rc = inp.rc
    valid = inp.valid
    skipped: list[str] = []
    mode = Mode.NOMINAL if reference is not None else Mode.INIT
    blue_name = blue_band_of(rc, s)
    if blue_name != s.blue_band:
        skipped.append(f"blue band {s.blue_band} missing: reflectance tests use B02")
    blue, red, green = rc[blue_name], rc[s.red_band], rc["B03"] if "B03" in rc else rc["B02"]
    nir, swir1, _swir2 = _nir(rc), rc["B11"], rc["B12"]
    shape = valid.shape

    # --- terrain -----------------------------------------------------------------
    illum = None
    if inp.slope is not None and inp.aspect is not None:
        illum = ksw.illumination_factor(inp.slope, inp.aspect, inp.sun_zenith_map, inp.sun_azimuth_map, s.min_cos_incidence)

    # --- water and snow --------------------------------------------------------------
    water = ksw.water_test(
        red, nir, s.water_ndvi_threshold, s.water_red_threshold, s.fmask_water_nir_high,
        s.fmask_water_ndvi_high, s.fmask_water_nir_low, inp.slope, s.water_max_slope_deg,
    ) & valid
    snow = ksw.snow_test(
        green, red, swir1, s.snow_ndsi_threshold, s.snow_red_threshold, s.snow_swir_threshold, illum,
        nir, s.snow_nir_threshold, rc["B02"], s.snow_max_whiteness,
    ) & valid & ~water

    # --- reference (composite) -------------------------------------------------------
    if reference is not None and reference_age_days is not None:
        ref_ok = np.isfinite(reference[blue_name]) & (np.abs(reference_age_days) <= s.max_age_days) & valid
        var_thr = kc.variation_threshold(reference_age_days, s.var_min_threshold, s.var_max_threshold, s.forgetting_days)
        ref = reference
    else:
        ref_ok = np.zeros(shape, bool)
        var_thr = np.full(shape, s.var_min_threshold, np.float32)
        ref = {}

    # --- mono-temporal threshold test ----------------------------------------------------
    thr = kc.threshold_test(blue, s.blue_threshold) & valid & ~snow
    if ref:
        with np.errstate(invalid="ignore"):
            stable = ref_ok & (blue - ref[blue_name] < var_thr)
        thr &= ~stable  # as bright as at the last clear date: a bright surface, not a cloud
        water_ref = ksw.water_test(
            ref[s.red_band], _nir(ref), s.water_ndvi_threshold, s.water_red_threshold,
            s.fmask_water_nir_high, s.fmask_water_ndvi_high, s.fmask_water_nir_low,
            inp.slope, s.water_max_slope_deg,
        ) & ref_ok
    else:
        water_ref = water
    thr |= water_ref & kc.water_cloud_test(rc[s.water_cloud_band], s.water_cloud_threshold) & valid & ~snow

    # --- multi-temporal test ----------------------------------------------------------------
    if ref:
        mt, _change = kc.multitemporal_test(blue, ref[blue_name], red, ref[s.red_band], var_thr, s.k_red_blue)
        mt &= ref_ok & ~snow
        if s.correlation_band in rc:
            corr = kc.local_correlation(rc[s.correlation_band], ref[s.correlation_band], s.correlation_radius_px, s.correlation_min_pixels)
            mt &= ~kc.correlation_guard(mt, corr, s.correlation_threshold, s.correlation_discarded_ratio)
        else:
            skipped.append(f"correlation guard: band {s.correlation_band} missing")
    else:
        mt = np.zeros(shape, bool)

    # --- cirrus ---------------------------------------------------------------------------------
    if "B10" in rc:
        alt = inp.elevation if inp.elevation is not None else 0.0
        cirrus = kc.cirrus_test(rc["B10"], kc.cirrus_threshold(alt, s.cirrus_offset, s.cirrus_gain_per_m)) & valid
        if inp.elevation is None:
            skipped.append("cirrus threshold at sea level (no DEM)")
    else:
        cirrus = np.zeros(shape, bool)
        skipped.append("cirrus: band B10 missing")

    # --- snow inside cloud systems is cloud ---------------------------------------------------
    back = ksw.snow_inside_clouds(snow, thr | mt | cirrus, s.snow_in_cloud_border_fraction)
    snow &= ~back
    thr |= back
    tests = thr | mt | cirrus

    # --- extension ------------------------------------------------------------------------------
    radius = round(s.cloud_extension_m / inp.pixel_size_m)
    extension = kc.dilate(tests, radius) & ~tests & valid

    # --- shadows ---------------------------------------------------------------------------------
    shadow_in = np.zeros(shape, bool)
    shadow_out = np.zeros(shape, bool)
    alts_used: list[float] = []
    sbands = [b for b in s.shadow_bands if b in rc]
    if not sbands:
        skipped.append(f"shadows: bands {', '.join(s.shadow_bands)} missing")
    else:
        cloud_all = tests | extension
        ratio: np.ndarray | None = None
        for b in sbands:
            if ref:
                rb = np.where(ref_ok, ks.darkening_ratio(rc[b], ref[b]), np.nan)
            else:
                clear_land = valid & ~cloud_all & ~water & ~snow & np.isfinite(rc[b])
                level = float(np.median(rc[b][clear_land])) if clear_land.sum() >= 10 else np.nan
                rb = ks.darkening_ratio(rc[b], level) if np.isfinite(level) else np.full(shape, np.nan)
            ratio = rb if ratio is None else np.fmax(ratio, rb)
        assert ratio is not None
        ratio = ratio.astype(np.float32)
        shifts, alts = shadow_shifts(inp, s)
        exclude = water | snow | ~valid
        shadow_in, best = ks.project_cloud_shadows(
            tests, ratio, shifts, s.shadow_max_ratio, s.shadow_min_footprint_fraction, exclude
        )
        shadow_in &= ~cloud_all
        alts_used = sorted({alts[k] for k in best[1:] if k >= 0})
        if ref and shifts:
            zone = ks.outside_shadow_zone(valid, shifts[-1])
            shadow_out = ks.outside_shadows(zone, ratio, s.outside_shadow_max_ratio, s.outside_shadow_min_pixels, exclude)
            shadow_out &= ~cloud_all & ~shadow_in
        elif not ref:
            skipped.append("shadows of clouds outside the image: need a composite (INIT)")

    water &= ~tests
    return CoreResult(
        mode=mode, threshold=thr, multitemporal=mt, cirrus=cirrus, extension=extension,
        shadow_inside=shadow_in, shadow_outside=shadow_out, snow=snow, water=water, valid=valid,
        reference_ok=ref_ok, variation_threshold=var_thr, reference=ref, skipped=skipped,
        shadow_altitude_m=alts_used,
    )


def update_reference(
    result: CoreResult, rc: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None,
    dates: np.ndarray | None, date_days: float,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """New composite arrays: clear pixels of this date replace the older ones.

    Clear means valid and neither cloud (tests or extension) nor shadow.  Snow and water are
    surfaces and do update the composite.
    """
    clear = result.valid & ~result.cloud & ~result.shadow_inside & ~result.shadow_outside
    shape = result.valid.shape
    new_ref: dict[str, np.ndarray] = {}
    for b, cur in rc.items():
        old = reference.get(b) if reference else None
        base = old.copy() if old is not None else np.full(shape, np.nan, np.float32)
        base[clear] = cur[clear]
        new_ref[b] = base.astype(np.float32, copy=False)
    new_dates = dates.copy() if dates is not None else np.full(shape, np.nan, np.float64)
    new_dates[clear] = date_days
    return new_ref, new_dates
