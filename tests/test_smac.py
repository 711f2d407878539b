"""SMAC coefficients and model: file errors, hand-computed values, physical limits, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2a.errors import InputError, MissingDataError
from l2a.io.smac_coefs import coefficient_file, parse_coefficient_file, read_smac_coefficients
from l2a.kernels import smac
from l2a.kernels.rt import RadiativeTransferModel, forward, inverse
from l2a.sensors.sentinel2 import BAND_NAMES

PLATFORMS = ("S2A", "S2B", "S2C")


@pytest.fixture(scope="module")
def coefs(aux_data: Path) -> dict[str, smac.SmacCoefficients]:
    return {p: read_smac_coefficients(p, root=aux_data) for p in PLATFORMS}


def _raw_table(aux_data: Path, platform: str) -> np.ndarray:
    """Independent parse of the file (numpy's loadtxt) to check our reader against."""
    return np.loadtxt(coefficient_file(platform, root=aux_data), comments="#")


def test_reader_matches_file_layout(aux_data: Path, coefs: dict[str, smac.SmacCoefficients]) -> None:
    for p in PLATFORMS:
        raw = _raw_table(aux_data, p)
        assert raw.shape == (49, 13)
        c = coefs[p]
        assert c.bands == BAND_NAMES
        np.testing.assert_array_equal(c.as_table(), raw)
        # physical layout checks: Rayleigh depth falls with wavelength, B09 is the water-vapour
        # band, ozone absorbs in the visible only, aerosol albedo and asymmetry are plausible
        assert np.all(np.diff(c.taur[[0, 1, 2, 3, 7, 12]]) < 0)
        assert 0.2 < c.taur[0] < 0.26  # 443 nm: Bodhaine et al. give 0.236
        assert int(np.argmin(c.ah2o[:10])) == 9
        assert c.ao3[2] < c.ao3[1] < 0 and c.ao3[8] == 0
        assert np.all((c.wo > 0.7) & (c.wo <= 1)) and np.all((c.gc > 0.5) & (c.gc < 0.8))


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"Coef_S2A_CONTINENTAL\.dat"):
        read_smac_coefficients("S2A", root=tmp_path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: lines[:-1], "expected 49 coefficient rows"),
        (lambda lines: [*lines[:5], lines[5] + " 1.0", *lines[6:]], "has 14 values"),
        (lambda lines: [*lines[:3], "0.1 abc " + lines[3], *lines[4:]], "not a row of numbers"),
        (lambda lines: [*lines[:28], lines[28].replace(lines[28].split()[0], "nan", 1), *lines[29:]], "non-finite"),
    ],
)
def test_malformed_file_raises_input_error(aux_data: Path, tmp_path: Path, mutate: object, message: str) -> None:
    lines = coefficient_file("S2A", root=aux_data).read_text().splitlines()
    bad = tmp_path / "Coef_S2A_CONTINENTAL.dat"
    bad.write_text("\n".join(mutate(lines)) + "\n")  # type: ignore[operator]
    with pytest.raises(InputError, match=message) as err:
        parse_coefficient_file(bad)
    assert str(bad) in str(err.value)


def test_model_satisfies_protocol(coefs: dict[str, smac.SmacCoefficients]) -> None:
    model = smac.SmacModel(coefs["S2A"])
    assert isinstance(model, RadiativeTransferModel)
    with pytest.raises(KeyError, match="B99"):
        model.terms("B99", 30, 0, 0)


def test_gas_transmission_hand_computed(aux_data: Path, coefs: dict[str, smac.SmacCoefficients]) -> None:
    raw = _raw_table(aux_data, "S2A")
    sz, vz, u_h2o, u_o3 = 40.0, 10.0, 2.5, 0.32
    m = 1 / np.cos(np.radians(sz)) + 1 / np.cos(np.radians(vz))
    # B09 (column 9): water vapour only
    ah2o, nh2o = raw[0, 9], raw[1, 9]
    tg, th2o = smac.gas_transmission(coefs["S2A"].band("B09"), sz, vz, 1013.25, u_h2o, u_o3)
    assert th2o == pytest.approx(np.exp(ah2o * (u_h2o * m) ** nh2o), rel=1e-12)
    # B03 (column 2): ozone and water vapour, no other gas at sea level
    ao3, no3 = raw[2, 2], raw[3, 2]
    expected = np.exp(ao3 * (u_o3 * m) ** no3) * np.exp(raw[0, 2] * (u_h2o * m) ** raw[1, 2])
    tg3, _ = smac.gas_transmission(coefs["S2A"].band("B03"), sz, vz, 1013.25, u_h2o, u_o3)
    assert tg3 == pytest.approx(expected, rel=1e-12)
    assert 0 < tg < 1 and 0 < tg3 < 1


def _rayleigh_single_scattering(c: smac.SmacCoefficients, sz: float, vz: float, raz: float, p: float) -> float:
    us, uv = np.cos(np.radians(sz)), np.cos(np.radians(vz))
    cos_scat = -(us * uv + np.sin(np.radians(sz)) * np.sin(np.radians(vz)) * np.cos(np.radians(raz)))
    phase = 0.75 * (1 + cos_scat**2)  # Rayleigh phase function (no depolarisation)
    return float(c.taur) * p / 1013.25 * phase / (4 * us * uv)


@pytest.mark.parametrize("band", ["B02", "B03", "B04", "B05", "B08"])
def test_zero_aerosol_gives_rayleigh_only(coefs: dict[str, smac.SmacCoefficients], band: str) -> None:
    c = coefs["S2A"].band(band)
    for sz, vz, raz, p in ((20.0, 5.0, 0.0, 1013.25), (45.0, 10.0, 120.0, 900.0), (60.0, 2.0, 180.0, 1013.25)):
        t = smac.terms(c, sz, vz, raz, p, 0.0, 2.0, 0.3)
        ray = _rayleigh_single_scattering(c, sz, vz, raz, p)
        # the path reflectance is the Rayleigh one (single scattering plus SMAC's small fitted residuals)
        assert float(t.rho_atm) == pytest.approx(ray, rel=0.25, abs=0.004)
        # direct transmittance is Beer's law with the Rayleigh depth only (hand computed)
        us = np.cos(np.radians(sz))
        assert float(t.t_down_dir) == pytest.approx(np.exp(-float(c.taur) * p / 1013.25 / us), rel=1e-4)
        # total Rayleigh transmittance: about half of the scattered light goes down
        assert float(t.t_down) == pytest.approx(np.exp(-0.5 * float(c.taur) * p / 1013.25 / us), abs=0.02)


def test_small_aerosol_is_single_scattering(coefs: dict[str, smac.SmacCoefficients]) -> None:
    """d(rho_atm)/d(aot) at aot -> 0 is the aerosol single-scattering reflectance (hand computed)."""
    for band in ("B02", "B04", "B8A", "B12"):
        c = coefs["S2A"].band(band)
        sz, vz, raz = 35.0, 7.0, 60.0
        us, uv = np.cos(np.radians(sz)), np.cos(np.radians(vz))
        cos_scat = -(us * uv + np.sin(np.radians(sz)) * np.sin(np.radians(vz)) * np.cos(np.radians(raz)))
        ang = np.degrees(np.arccos(cos_scat))
        phase = sum(float(getattr(c, f"a{k}P")) * ang**k for k in range(5))
        d_tau = 1e-4
        t0 = smac.terms(c, sz, vz, raz, 1013.25, 0.0, 2.0, 0.3)
        t1 = smac.terms(c, sz, vz, raz, 1013.25, d_tau, 2.0, 0.3)
        # the fitted residuals also depend on aot: keep only the two-stream aerosol term
        m = 1 / us + 1 / uv

        def res_aer(tau: float, c: smac.SmacCoefficients = c, m: float = m, cs: float = cos_scat) -> float:
            x = (float(c.a0taup) + float(c.a1taup) * tau) * m * cs
            return float(c.Resa1 + c.Resa2 * x + c.Resa3 * x**2 + c.Resa4 * x**3)

        aer_gain = (float(t1.rho_aer) + res_aer(d_tau)) - (float(t0.rho_aer) + res_aer(0.0))
        expected = float(c.wo) * phase * float(c.a1taup) * d_tau / (4 * us * uv)
        assert aer_gain == pytest.approx(expected, rel=0.01)


def test_transmittances_and_albedo_in_physical_range(coefs: dict[str, smac.SmacCoefficients]) -> None:
    sz, vz, raz, p, tau, wv = np.meshgrid(
        [0.0, 30, 60, 75], [0.0, 12], [0.0, 180], [600.0, 1013.25], np.linspace(0, 1.2, 7), [0.3, 6.0], indexing="ij"
    )
    for platform in PLATFORMS:
        model = smac.SmacModel(coefs[platform])
        for b in model.bands:
            t = model.terms(b, sz, vz, raz, p, tau, wv, 0.3)
            for name in ("tg", "t_down", "t_up", "t_down_dir", "t_up_dir"):
                v = getattr(t, name)
                assert np.all((v > 0) & (v <= 1)), (platform, b, name)
            assert np.all(t.t_down_dif >= 0) and np.all(t.t_up_dif >= 0)
            assert np.all((t.s >= 0) & (t.s < 1))
            assert np.all(t.rho_atm > -0.01)
            # more aerosol: less transmission, brighter path (visible and NIR), inside SMAC's
            # fitting range (sun zenith <= 60 deg, AOT <= 1)
            if b in ("B02", "B04", "B08"):
                inside = (slice(0, 3), slice(None), slice(None), slice(None), slice(0, 6))
                assert np.all(np.diff(t.t_down[inside], axis=4) < 0)
                assert np.all(np.diff(t.rho_atm[inside], axis=4) > 0)


def test_rayleigh_scales_with_pressure(coefs: dict[str, smac.SmacCoefficients]) -> None:
    c = coefs["S2B"].band("B02")
    low = smac.terms(c, 30, 5, 90, 506.625, 0.0)
    high = smac.terms(c, 30, 5, 90, 1013.25, 0.0)
    assert float(low.t_down_dir) > float(high.t_down_dir)
    assert float(low.rho_atm) < 0.6 * float(high.rho_atm)


def test_round_trip_all_bands_platforms(coefs: dict[str, smac.SmacCoefficients]) -> None:
    sz, vz, raz, tau, wv, rho = np.meshgrid(
        [0.0, 35, 70], [0.0, 11], [0.0, 100], np.linspace(0, 1, 5), [0.5, 2.5, 5.0], [0.0, 0.05, 0.3, 0.8], indexing="ij"
    )
    for platform in PLATFORMS:
        model = smac.SmacModel(coefs[platform])
        for b in model.bands:
            t = model.terms(b, sz, vz, raz, 950.0, tau, wv, 0.3)
            back = inverse(t, forward(t, rho))
            assert np.max(np.abs(back - rho)) < 1e-10
