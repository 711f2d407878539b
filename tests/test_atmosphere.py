"""Atmosphere inputs (pressure, ozone, water vapour, AOT), adjacency, slope and full-resolution kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2a.io.smac_coefs import read_smac_coefficients
from l2a.kernels import adjacency as adj
from l2a.kernels import atmosphere as atm
from l2a.kernels import fullres
from l2a.kernels import slope_correction as slc
from l2a.kernels.rt import AtmosphereTerms, forward, inverse
from l2a.kernels.smac import SmacModel


@pytest.fixture(scope="module")
def model(aux_data: Path) -> SmacModel:
    return SmacModel(read_smac_coefficients("S2A", root=aux_data))


# ---------------------------------------------------------------------------------------------
# pressure, ozone


def test_pressure_standard_atmosphere() -> None:
    # ICAO standard atmosphere table: 1013.25 hPa at 0 m, 898.76 hPa at 1000 m, 795.0 at 2000 m
    p = atm.pressure_from_altitude(np.array([0.0, 1000.0, 2000.0, np.nan]))
    np.testing.assert_allclose(p, [1013.25, 898.76, 795.0, 1013.25], atol=0.1)


def test_ozone_climatology_is_plausible() -> None:
    tropics = atm.ozone_climatology(0.0, 10.0, 180)
    mid_spring = atm.ozone_climatology(50.0, 10.0, 100)
    mid_autumn = atm.ozone_climatology(50.0, 10.0, 280)
    assert 0.2 <= float(tropics) <= 0.28
    assert 0.3 <= float(mid_autumn) < float(mid_spring) <= 0.5  # spring maximum at mid-latitudes


# ---------------------------------------------------------------------------------------------
# water vapour


def test_water_vapour_retrieval_recovers_the_column(model: SmacModel) -> None:
    u_true = np.array([[0.5, 1.0, 2.0], [3.0, 4.0, 5.0]])
    m = np.full(u_true.shape, 2.3)
    surface = 0.3
    b8a = surface * model.water_vapour_transmission("B8A", m, u_true)
    b9 = surface * model.water_vapour_transmission("B09", m, u_true)
    u = atm.water_vapour_from_ratio(
        b9,
        b8a,
        m,
        lambda mm, uu: model.water_vapour_transmission("B09", mm, uu),
        lambda mm, uu: model.water_vapour_transmission("B8A", mm, uu),
    )
    np.testing.assert_allclose(u, u_true, atol=1e-4)


def test_water_vapour_invalid_on_dark_or_nan_pixels(model: SmacModel) -> None:
    def tr(band: str):  # type: ignore[no-untyped-def]
        return lambda mm, uu: model.water_vapour_transmission(band, mm, uu)

    u = atm.water_vapour_from_ratio(np.array([0.01, np.nan, 0.6]), np.array([0.02, 0.3, 0.3]), 2.0, tr("B09"), tr("B8A"))
    assert np.isnan(u[0]) and np.isnan(u[1])  # dark (water) and no-data
    assert np.isnan(u[2])  # B9 brighter than B8A: outside the model's range


# ---------------------------------------------------------------------------------------------
# gaps, outliers


def test_fill_gaps_keeps_constant_and_flags() -> None:
    f = np.full((20, 20), 0.2)
    f[5:9, 5:9] = np.nan
    filled, flag = atm.fill_gaps(f, default=0.1)
    np.testing.assert_allclose(filled, 0.2)
    assert flag.sum() == 16 and flag[6, 6]
    all_nan, flag2 = atm.fill_gaps(np.full((3, 3), np.nan), default=0.1)
    np.testing.assert_allclose(all_nan, 0.1)
    assert flag2.all()


def test_fill_gaps_interpolates_a_ramp() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 41), (41, 1))
    holed = ramp.copy()
    holed[18:23, 18:23] = np.nan
    filled, _ = atm.fill_gaps(holed, default=0.0)
    assert np.max(np.abs(filled - ramp)) < 1e-9  # harmonic: exact for a plane


def test_reject_outliers_removes_a_spike() -> None:
    f = np.full((9, 9), 0.15)
    f[4, 4] = 0.9
    out = atm.reject_outliers(f, 3, 0.15)
    assert np.isnan(out[4, 4]) and np.isfinite(out).sum() == 80


# ---------------------------------------------------------------------------------------------
# aerosol


def _synthetic_scene(model: SmacModel, aot: float, seed: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], callable]:  # type: ignore[valid-type]
    """Dark vegetation obeying the blue-red relation, seen through ``aot``."""
    rng = np.random.default_rng(seed)
    shape = (16, 16)
    red = rng.uniform(0.01, 0.04, shape)
    surface = {
        "B04": red,
        "B02": 0.49 * red + 0.005,
        "B03": 0.06 + 0.3 * red,
        "B08": rng.uniform(0.25, 0.4, shape),
    }
    sz = np.full(shape, 35.0)

    def terms_at(band: str, tau: float | np.ndarray) -> AtmosphereTerms:
        return model.terms(band, sz, 5.0, 40.0, 950.0, tau, 2.0, 0.3)

    toa = {b: forward(terms_at(b, aot), v) for b, v in surface.items()}
    return toa, surface, terms_at


@pytest.mark.parametrize("aot", [0.05, 0.2, 0.45])
def test_aot_single_date_recovers_truth(model: SmacModel, aot: float) -> None:
    toa, _, terms_at = _synthetic_scene(model, aot)
    res = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, None)
    assert np.all(np.abs(res.aot - aot) < 0.02)
    assert not res.interpolated.any()
    assert res.n_mt.max() == 0 and res.n_ms.min() > 0


def test_aot_multi_temporal_term_uses_the_composite(model: SmacModel) -> None:
    toa, surface, terms_at = _synthetic_scene(model, 0.3)
    # a surface that breaks the blue-red relation: the MS term alone is biased, the MT term is not
    toa_b2 = forward(terms_at("B02", 0.3), surface["B02"] + 0.01)
    toa = {**toa, "B02": toa_b2}
    comp = {**surface, "B02": surface["B02"] + 0.01}
    ms_only = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, None)
    settings = atm.AotSettings(ms_weight=0.1)
    with_mt = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, comp, settings)
    assert np.mean(np.abs(ms_only.aot - 0.3)) > 0.05
    assert np.all(np.abs(with_mt.aot - 0.3) < 0.02)
    assert with_mt.n_mt.min() > 0


def test_aot_multi_temporal_term_leaves_out_old_references(model: SmacModel) -> None:
    """A reference older than mt_max_age_days is left out (pixel by pixel): the surface may
    have changed since, so the multi-spectral term alone decides there."""
    toa, surface, terms_at = _synthetic_scene(model, 0.3)
    # the surface darkened by 20 % since the reference (as between July and September)
    toa = {b: forward(terms_at(b, 0.3), 0.8 * v) for b, v in surface.items()}
    settings = atm.AotSettings(mt_max_age_days=30.0)
    ms_only = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, None, settings)
    young = np.full((16, 16), 10.0)
    old = np.full((16, 16), 50.0)
    with_young = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, surface, settings, young)
    with_old = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, surface, settings, old)
    # a recent reference pulls the AOT away from the truth to hide the change
    assert np.mean(with_young.aot) < 0.3 - 0.03 and with_young.n_mt.min() > 0
    # an old one is ignored: the same answer as the single-date retrieval, close to the truth
    np.testing.assert_allclose(with_old.aot, ms_only.aot)
    assert with_old.n_mt.max() == 0
    # a reference 50 days LATER (BACKWARD mode runs dates in reverse) is as far away
    later = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, surface, settings, -old)
    np.testing.assert_allclose(later.aot, ms_only.aot)
    near_later = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, surface, settings, -young)
    np.testing.assert_allclose(near_later.aot, with_young.aot)
    assert np.all(np.abs(with_old.aot - 0.3) < 0.03)
    # pixel by pixel: old on the left half only
    mixed = np.where(np.arange(16)[None, :] < 8, 50.0, 10.0) * np.ones((16, 16))
    res = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, surface, settings, mixed)
    assert res.n_mt[:, :5].max() == 0 and res.n_mt[:, 11:].min() > 0
    # unknown age (NaN, composites written before the dates were kept) keeps the term
    unknown = atm.estimate_aot(toa, np.ones((16, 16), bool), terms_at, surface, settings, np.full((16, 16), np.nan))
    np.testing.assert_allclose(unknown.aot, with_young.aot)


def test_aot_gaps_are_interpolated_and_flagged(model: SmacModel) -> None:
    toa, _, terms_at = _synthetic_scene(model, 0.2)
    usable = np.ones((16, 16), bool)
    usable[:, :8] = False  # half of the scene cloudy
    res = atm.estimate_aot(toa, usable, terms_at, None, atm.AotSettings(window_px=3))
    assert res.interpolated[:, :5].all() and not res.interpolated[:, 10:].any()
    assert np.all(np.abs(res.aot - 0.2) < 0.03)
    nothing = atm.estimate_aot(toa, np.zeros((16, 16), bool), terms_at, None)
    np.testing.assert_allclose(nothing.aot, atm.AotSettings().default_aot)
    assert nothing.interpolated.all()


# ---------------------------------------------------------------------------------------------
# adjacency


def test_adjacency_leaves_uniform_scene_and_inverts(model: SmacModel) -> None:
    t = model.terms("B03", 30.0, 5.0, 20.0, 1013.25, 0.3, 2.0, 0.3)
    rho = np.array([0.02, 0.1, 0.4])
    np.testing.assert_allclose(adj.correct_adjacency(rho, rho, t.t_up, t.t_up_dir, t.s), rho, atol=1e-12)
    env = 0.1
    apparent = adj.add_adjacency(rho, env, t.t_up, t.t_up_dir, t.s)
    # a dark pixel in a bright environment looks brighter, a bright one darker
    assert apparent[0] > rho[0] and apparent[2] < rho[2]
    np.testing.assert_allclose(adj.correct_adjacency(apparent, env, t.t_up, t.t_up_dir, t.s), rho, atol=1e-12)


def test_adjacency_linear_form_matches(model: SmacModel) -> None:
    t = model.terms("B02", 40.0, 8.0, 100.0, 900.0, 0.25, 2.0, 0.3)
    toa = np.linspace(0.05, 0.4, 8)
    env = 0.08
    explicit = adj.correct_adjacency(inverse(t, toa), env, t.t_up, t.t_up_dir, t.s)
    gain, offset = adj.linear_coefficients(t.tg, t.rho_atm, t.t_down, t.t_up, t.t_up_dir, t.s, env)
    np.testing.assert_allclose(gain * toa - offset, explicit, atol=1e-12)
    f32 = fullres.linear(toa.astype(np.float32), np.float32(gain), np.float32(offset))
    assert f32.dtype == np.float32 and np.max(np.abs(f32 - explicit)) < 1e-6


def test_environment_reflectance() -> None:
    r = np.full((30, 30), 0.2)
    r[0, 0] = np.nan
    env = adj.environment_reflectance(r, 100.0, 500.0)
    np.testing.assert_allclose(env, 0.2)
    step = np.zeros((10, 40))
    step[:, 20:] = 1.0
    env2 = adj.environment_reflectance(step, 100.0, 200.0)  # 5-pixel window
    assert env2[5, 0] == 0 and env2[5, 39] == 1 and env2[5, 19] == pytest.approx(0.4) and env2[5, 20] == pytest.approx(0.6)


# ---------------------------------------------------------------------------------------------
# slope correction


def test_cos_incidence_hand_values() -> None:
    # a 30 deg slope facing the sun (aspect = sun azimuth) with the sun 30 deg from zenith: normal incidence
    assert slc.cos_incidence(30.0, 180.0, 30.0, 180.0) == pytest.approx(1.0)
    # facing away: cos(60) ; flat: cos(sun zenith)
    assert slc.cos_incidence(30.0, 0.0, 30.0, 180.0) == pytest.approx(np.cos(np.radians(60)))
    assert slc.cos_incidence(0.0, 123.0, 40.0, 180.0) == pytest.approx(np.cos(np.radians(40)))


def test_flat_terrain_factor_is_one_and_slopes_balance() -> None:
    sz = 40.0
    ci_flat = slc.cos_incidence(0.0, 0.0, sz, 160.0)
    f = slc.slope_factor(ci_flat, sz, 0.7, 0.2, slc.sky_view_from_slope(0.0), 0.1)
    assert f == pytest.approx(1.0, abs=1e-12)
    toward = slc.slope_factor(slc.cos_incidence(20.0, 160.0, sz, 160.0), sz, 0.7, 0.2, slc.sky_view_from_slope(20.0), 0.1)
    away = slc.slope_factor(slc.cos_incidence(20.0, 340.0, sz, 160.0), sz, 0.7, 0.2, slc.sky_view_from_slope(20.0), 0.1)
    assert toward < 1.0 < away


def test_shadowed_pixels_never_amplified() -> None:
    ci = np.array([0.9, 0.2, -0.3, 0.5])
    shadow = np.array([True, True, True, False])
    f = slc.slope_factor(ci, 50.0, 0.6, 0.3, 0.9, 0.1, shadow)
    assert np.all(f[:3] <= 1.0)
    assert f[3] > 0
    # lit pixel facing away from the sun: capped
    g = slc.slope_factor(np.array([-0.5, 0.001]), 70.0, 0.8, 0.05, 0.5, 0.0, False)
    assert np.all(g <= slc.SlopeSettings().max_factor)


# ---------------------------------------------------------------------------------------------
# full-resolution helpers


def test_bilinear_weights_reproduce_planes() -> None:
    n_c = 6
    coarse = np.add.outer(2.0 * np.arange(n_c), 3.0 * np.arange(n_c + 1))  # plane in pixel index
    factor = 4
    pos_y = (np.arange(n_c * factor) + 0.5) / factor - 0.5
    pos_x = (np.arange((n_c + 1) * factor) + 0.5) / factor - 0.5
    wy = fullres.bilinear_weights(pos_y, n_c, np.float64)
    wx = fullres.bilinear_weights(pos_x, n_c + 1, np.float64)
    np.testing.assert_allclose(wy.sum(axis=1), 1.0)
    fine = fullres.upsample(coarse, wy, wx)
    cy = np.clip(pos_y, 0, n_c - 1)
    cx = np.clip(pos_x, 0, n_c)
    np.testing.assert_allclose(fine, np.add.outer(2.0 * cy, 3.0 * cx), atol=1e-12)
    one = fullres.bilinear_weights(np.array([-0.3, 0.0, 0.7]), 1)
    np.testing.assert_array_equal(one, np.ones((3, 1)))
