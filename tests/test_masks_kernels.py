"""Kernels of the masks (pure numpy) on constructed cases and small real crops."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from l2a.kernels import clouds as kc
from l2a.kernels import masks_grid as kg
from l2a.kernels import shadows as ks
from l2a.kernels import snow_water as ksw
from l2a.masks import MaskSettings

S = MaskSettings()


# --- Rayleigh ----------------------------------------------------------------------------------

def test_rayleigh_optical_depth_published_values() -> None:
    # Bodhaine et al. 1999 / Hansen & Travis 1974: about 0.236 at 443 nm, 0.0155 at 865 nm
    assert kc.rayleigh_optical_depth(0.443) == pytest.approx(0.236, abs=0.004)
    assert kc.rayleigh_optical_depth(0.865) == pytest.approx(0.0155, abs=0.001)
    # half the pressure, half the optical depth
    assert kc.rayleigh_optical_depth(0.49, 0.5) == pytest.approx(0.5 * kc.rayleigh_optical_depth(0.49))
    assert kc.pressure_ratio_from_altitude(8430.0) == pytest.approx(np.exp(-1.0))


def test_rayleigh_correct_inverts_the_forward_model() -> None:
    tau = kc.rayleigh_optical_depth(0.443)
    rho_r, trans = kc.rayleigh_terms(tau, 40.0, 5.0, 120.0)
    surface = np.array([0.0, 0.05, 0.3], np.float32)
    toa = rho_r + trans * surface
    assert np.allclose(kc.rayleigh_correct(toa, tau, 40.0, 5.0, 120.0), surface, atol=1e-6)
    # more atmosphere at low sun: more Rayleigh reflectance
    assert kc.rayleigh_terms(tau, 60.0, 0.0, 0.0)[0] > kc.rayleigh_terms(tau, 20.0, 0.0, 0.0)[0]
    assert np.isnan(kc.rayleigh_correct(np.array([np.nan]), tau, 30.0, 0.0, 0.0))[0]


# --- reflectance tests ----------------------------------------------------------------------------

def test_variation_threshold_grows_with_age_and_is_capped() -> None:
    thr = kc.variation_threshold(np.array([0.0, 30.0, -30.0, 200.0]), 0.025, 0.07, 30.0)
    assert thr == pytest.approx([0.025, 0.05, 0.05, 0.07])


def test_multitemporal_test_constructed() -> None:
    ref = np.full(4, 0.05, np.float32)
    blue = np.array([0.15, 0.08, 0.06, 0.2], np.float32)
    red = np.array([0.15, 0.30, 0.06, 0.2], np.float32)
    ref_blue = ref.copy()
    ref_blue[3] = np.nan
    cloud, change = kc.multitemporal_test(blue, ref_blue, red, ref, 0.025, 1.5)
    assert cloud.tolist() == [True, False, False, False]  # cloud, surface change, too small, no ref
    assert change.tolist() == [False, True, False, False]


def test_threshold_test_ignores_nan() -> None:
    assert kc.threshold_test(np.array([0.3, 0.1, np.nan]), 0.22).tolist() == [True, False, False]


def test_local_correlation() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((40, 40)).astype(np.float32)
    r = kc.local_correlation(a, 2.0 * a + 0.1, 3, 15)
    assert np.nanmin(r) == pytest.approx(1.0, abs=1e-4)
    r2 = kc.local_correlation(a, rng.random((40, 40)).astype(np.float32), 3, 15)
    assert abs(float(np.nanmean(r2))) < 0.1
    flat = kc.local_correlation(np.ones((20, 20), np.float32), a[:20, :20], 3, 15)
    assert np.isnan(flat).all()
    holes = a.copy()
    holes[:, :] = np.nan
    assert np.isnan(kc.local_correlation(holes, a, 3, 15)).all()


def test_correlation_guard_per_cloud() -> None:
    cloud = np.zeros((10, 30), bool)
    cloud[2:8, 2:8] = True  # 36 px
    cloud[2:8, 20:26] = True
    corr = np.zeros((10, 30), np.float32)
    corr[2:5, 2:8] = 0.95  # half of the first cloud correlated
    corr[2, 20] = 0.95  # one pixel of the second (< 20 %)
    removed = kc.correlation_guard(cloud, corr, 0.8, 0.2)
    assert removed[2:5, 2:8].all() and removed.sum() == 18


def test_cirrus_threshold_rises_with_altitude() -> None:
    thr = kc.cirrus_threshold(np.array([0.0, 1000.0, 3000.0]), S.cirrus_offset, S.cirrus_gain_per_m)
    assert thr == pytest.approx([0.015, 0.035, 0.075])
    assert kc.cirrus_test(np.array([0.02, 0.02]), thr[:2]).tolist() == [True, False]


def test_morphology_helpers() -> None:
    m = np.zeros((11, 11), bool)
    m[5, 5] = True
    assert kc.dilate(m, 2).sum() == 21  # disk of radius 2 (r*r + r rule)
    assert kc.erode(kc.dilate(m, 2), 2).sum() == 1
    zone = kc.edge_zone(kc.dilate(m, 3), 1)
    assert not zone[5, 5] and zone[5, 8] and zone[5, 9]
    small = np.zeros((6, 6), bool)
    small[0, 0] = True
    small[3:6, 3:6] = True
    assert kc.remove_small(small, 2).sum() == 9


# --- shadows -----------------------------------------------------------------------------------------

def test_shadow_shift_geometry() -> None:
    # sun due south at 45 deg, nadir view: the shadow of a 1000 m cloud is 1000 m north
    assert ks.shadow_shift(1000.0, 45.0, 180.0, 0.0, 0.0, 100.0) == pytest.approx((-10.0, 0.0), abs=1e-9)
    # sun due east: shadow to the west
    assert ks.shadow_shift(1000.0, 45.0, 90.0, 0.0, 0.0, 100.0) == pytest.approx((0.0, -10.0), abs=1e-9)
    # satellite to the east: the cloud appears shifted west, so its shadow is further east of it
    dr, dc = ks.shadow_shift(1000.0, 45.0, 90.0, 45.0, 90.0, 100.0)
    assert (dr, dc) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_shift_array() -> None:
    a = np.arange(12).reshape(3, 4)
    b = ks.shift_array(a, 1, -1)
    assert b[1, 0] == a[0, 1] and b[0].sum() == 0 and (b[:, 3] == 0).all()
    assert not ks.shift_array(a, 5, 0).any()


def test_project_cloud_shadows_finds_the_altitude() -> None:
    shape = (200, 200)
    cloud = np.zeros(shape, bool)
    cloud[140:155, 140:155] = True
    shifts = [(round(ks.shadow_shift(h, 50.0, 135.0, 0.0, 0.0, 60.0)[0]), round(ks.shadow_shift(h, 50.0, 135.0, 0.0, 0.0, 60.0)[1])) for h in np.arange(250.0, 8001.0, 250.0)]
    true_k = 11  # 3000 m
    ratio = np.ones(shape, np.float32)
    dr, dc = shifts[true_k]
    ratio[140 + dr : 155 + dr, 140 + dc : 155 + dc] = 0.4
    shadow, best = ks.project_cloud_shadows(cloud, ratio, shifts, 0.8, 0.25)
    assert best[1] == true_k
    truth = np.zeros(shape, bool)
    truth[140 + dr : 155 + dr, 140 + dc : 155 + dc] = True
    assert (shadow == truth).all()


def test_outside_shadow_zone_is_on_the_sun_side() -> None:
    inside = np.ones((50, 50), bool)
    zone = ks.outside_shadow_zone(inside, (-10, 0))  # shadows fall north: clouds from the south edge
    assert zone[45:, :].all() and not zone[:40, :].any()
    ratio = np.ones((50, 50), np.float32)
    ratio[46:49, 10:13] = 0.3
    ratio[46, 30] = 0.3
    out = ks.outside_shadows(zone, ratio, 0.5, 4)
    assert out.sum() == 9


# --- snow and water -------------------------------------------------------------------------------------

def _snow(g: float, r: float, sw: float, nir: float, b: float, illum: np.ndarray | None = None) -> bool:
    a = np.array
    res = ksw.snow_test(a([g]), a([r]), a([sw]), S.snow_ndsi_threshold, S.snow_red_threshold,
                        S.snow_swir_threshold, illum, a([nir]), S.snow_nir_threshold, a([b]), S.snow_max_whiteness)
    return bool(res[0])


def test_snow_test_spectra() -> None:
    assert _snow(0.75, 0.72, 0.05, 0.65, 0.78)  # fresh snow
    assert not _snow(0.55, 0.55, 0.35, 0.6, 0.55)  # water cloud: bright SWIR
    assert not _snow(0.15, 0.25, 0.03, 0.15, 0.125)  # red sediment-laden water (Betsiboka)
    assert not _snow(0.06, 0.05, 0.01, 0.02, 0.07)  # clear water
    # snow on a shaded slope: too dark flat, found once normalised by the illumination
    assert not _snow(0.12, 0.10, 0.01, 0.09, 0.13)
    assert _snow(0.12, 0.10, 0.01, 0.09, 0.13, np.array([0.4], np.float32))


def test_illumination_factor() -> None:
    f = ksw.illumination_factor(np.array([0.0, 30.0, 30.0]), np.array([0.0, 180.0, 0.0]), 40.0, 180.0, 0.2)
    assert f[0] == pytest.approx(1.0)
    assert f[1] > 1.0 > f[2]  # facing the sun brighter, facing away darker
    assert ksw.illumination_factor(np.array([80.0]), np.array([0.0]), 70.0, 180.0, 0.2)[0] == pytest.approx(0.2 / np.cos(np.deg2rad(70.0)))


def test_snow_inside_clouds() -> None:
    snow = np.zeros((30, 30), bool)
    cloud = np.zeros((30, 30), bool)
    snow[5:9, 5:9] = True
    cloud[3:11, 3:11] = True
    cloud[5:9, 5:9] = False  # ring of cloud around the first patch
    snow[20:25, 20:25] = True  # a patch on open ground
    back = ksw.snow_inside_clouds(snow, cloud, 0.8)
    assert back[5:9, 5:9].all() and not back[20:25, 20:25].any()


def test_water_test() -> None:
    red = np.array([0.03, 0.05, 0.10, 0.03, 0.03])
    nir = np.array([0.01, 0.30, 0.08, 0.01, 0.01])
    slope = np.array([0.0, 0.0, 0.0, 30.0, np.nan])
    w = ksw.water_test(red, nir, S.water_ndvi_threshold, S.water_red_threshold, S.fmask_water_nir_high,
                       S.fmask_water_ndvi_high, S.fmask_water_nir_low, slope, S.water_max_slope_deg)
    assert w.tolist() == [True, False, True, False, True]  # water, vegetation, turbid, steep, unknown slope


# --- grids ------------------------------------------------------------------------------------------

def test_block_mean_and_upsample() -> None:
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    a[0, 0] = np.nan
    m = kg.block_mean(a, 2, 0.5)
    assert m.shape == (3, 3)
    assert m[0, 0] == pytest.approx((1 + 6 + 7) / 3)
    assert m[2, 0] == pytest.approx((24 + 25) / 2)  # partial block: only pixels inside count
    allnan = np.full((4, 4), np.nan, np.float32)
    assert np.isnan(kg.block_mean(allnan, 2, 0.5)).all()
    up = kg.upsample(np.array([[1, 2], [3, 4]]), 3, (5, 4))
    assert up.shape == (5, 4) and up[4, 3] == 4 and up[0, 2] == 1
    assert kg.block_any(np.eye(4, dtype=bool), 2).tolist() == [[True, False], [False, True]]


# --- real crops ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slovenia(sample_path: Callable[[str], Path]) -> dict[str, np.ndarray]:
    folder = sample_path("slovenia_T33_summer2015")
    cube = np.load(folder / "L1C_13band_2015summer_5dates.npy")
    manifest = json.loads((folder / "manifest.json").read_text())
    return {s["date"][:10]: cube[s["index_in_file"]] for s in manifest["scenes"]["L1C_13band_2015summer_5dates"]}


def _rc(x: np.ndarray, band: int, wl: float) -> np.ndarray:
    return kc.rayleigh_correct(x[..., band], kc.rayleigh_optical_depth(wl), 25.0, 0.0, 150.0)


def test_multitemporal_on_real_slovenia(slovenia: dict[str, np.ndarray]) -> None:
    ref = slovenia["2015-07-11"]
    thr = kc.variation_threshold(np.array(20.0), S.var_min_threshold, S.var_max_threshold, S.forgetting_days)
    cloudy, _ = kc.multitemporal_test(_rc(slovenia["2015-07-31"], 0, 0.443), _rc(ref, 0, 0.443),
                                      _rc(slovenia["2015-07-31"], 3, 0.665), _rc(ref, 3, 0.665), thr, S.k_red_blue)
    assert cloudy.mean() > 0.95  # the thin, fully cloudy date
    thr50 = kc.variation_threshold(np.array(50.0), S.var_min_threshold, S.var_max_threshold, S.forgetting_days)
    clear, _ = kc.multitemporal_test(_rc(slovenia["2015-08-30"], 0, 0.443), _rc(ref, 0, 0.443),
                                     _rc(slovenia["2015-08-30"], 3, 0.665), _rc(ref, 3, 0.665), thr50, S.k_red_blue)
    assert clear.mean() < 0.01
    # no cirrus, snow or water on a clear summer date over farmland and forest
    x = slovenia["2015-09-09"]
    assert not kc.cirrus_test(x[..., 10], 0.015).any()
    assert not ksw.snow_test(x[..., 2], x[..., 3], x[..., 11], 0.4, 0.12, 0.16).any()
    assert ksw.water_test(x[..., 3], x[..., 8], 0.01, 0.05, 0.11, 0.1, 0.05).mean() < 0.01


def test_kernels_on_real_betsiboka_crop(sample_path: Callable[[str], Path]) -> None:
    with np.load(sample_path("s2cloudless_betsiboka") / "input_arrays.npz") as z:
        x = z["s2_im"][0]
    water_crop = x[250:330, 100:200]  # the open estuary, north of the delta
    w = ksw.water_test(water_crop[..., 3], water_crop[..., 8], 0.01, 0.05, 0.11, 0.1, 0.05)
    assert w.mean() > 0.5
    sed = x[560:620, 330:420]  # the delta with its red sediment channels: no snow in the tropics
    rc = {b: _rc(sed, i, wl) for b, i, wl in (("B02", 1, 0.4924), ("B03", 2, 0.5598), ("B04", 3, 0.6646), ("B08", 7, 0.8328))}
    sn = ksw.snow_test(rc["B03"], rc["B04"], sed[..., 11], 0.4, 0.12, 0.16, None, rc["B08"], 0.11, rc["B02"], 0.7)
    assert sn.mean() < 0.01
