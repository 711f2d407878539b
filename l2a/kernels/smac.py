"""SMAC: the Simplified Method for Atmospheric Correction (Rahman and Dedieu 1994).

Pure numpy, vectorised over any broadcastable inputs. One set of coefficients
(:class:`SmacCoefficients`) describes one sensor and one aerosol model; each field holds one
value per band (shape ``(n_bands,)``), and :meth:`SmacCoefficients.band` extracts the
scalars of one band.

The model (per band, cosines ``us = cos(theta_s)``, ``uv = cos(theta_v)``, air mass
``m = 1/us + 1/uv``, pressure ratio ``Peq = P / 1013.25``):

- gaseous transmission of gas ``g``: ``t_g = exp(a_g * (u_g * m) ** n_g)`` with the column
  ``u_g`` (water vapour in g/cm2, ozone in cm-atm, the well-mixed gases ``Peq ** p_g``);
- aerosol optical depth in the band ``taup = a0taup + a1taup * aot550``;
- total (direct + diffuse) scattering transmittance along one path
  ``T(u) = a0T + a1T * aot550 / u + (a2T * Peq + a3T) / (1 + u)``;
- spherical albedo ``S = a0s * Peq + a3s + a1s * aot550 + a2s * aot550**2``;
- Rayleigh path reflectance (single scattering, pressure scaled) minus a fitted residual;
- aerosol path reflectance from a two-stream solution with the aerosol's single scattering
  albedo ``wo``, asymmetry ``gc`` and a polynomial phase function of the scattering angle,
  minus a fitted residual, plus a fitted Rayleigh-aerosol coupling term;
- TOA reflectance of a uniform Lambertian surface ``rho``::

      rho_toa = tg * (rho_atm + T(us) * T(uv) * rho / (1 - S * rho))

  and its exact inverse ``rho = y / (T(us) T(uv) + S y)`` with ``y = rho_toa / tg - rho_atm``.

Deviations from the published model: the fitted total transmittance can exceed 1 by up to
about 0.2 % in the SWIR for a clear atmosphere and a high sun, and goes negative for a low
sun and a thick aerosol layer (sun zenith > 70 deg with AOT > 1, outside SMAC's fitting
range); it is bounded to ``[T_direct, 1]`` (``T_direct`` from Beer's law below) so that it
stays a transmittance. Forward and inverse use the same bounded value, so the round trip
stays exact. SMAC's accuracy is documented for sun zenith angles up to about 60-70 deg and
view zenith angles up to 30 deg (``TETAV_MAX`` of the coefficient files).

The split of each total transmittance into direct and diffuse parts uses Beer's law for the
direct beam, ``exp(-(taur * Peq + taup) / u)``; the diffuse part is the rest (at least 0).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from l2a.kernels.rt import AtmosphereTerms
from l2a.kernels.rt import forward as rt_forward
from l2a.kernels.rt import inverse as rt_inverse

#: Names of the 49 SMAC coefficients in the order of the coefficient files (one row each).
COEFFICIENT_NAMES: Final[tuple[str, ...]] = (
    "ah2o", "nh2o", "ao3", "no3", "ao2", "no2", "po2", "aco2", "nco2", "pco2",
    "ach4", "nch4", "pch4", "ano2", "nno2", "pno2", "aco", "nco", "pco",
    "a0s", "a1s", "a2s", "a3s", "a0T", "a1T", "a2T", "a3T", "taur", "sr",
    "a0taup", "a1taup", "wo", "gc", "a0P", "a1P", "a2P", "a3P", "a4P",
    "Rest1", "Rest2", "Rest3", "Rest4", "Resr1", "Resr2", "Resr3",
    "Resa1", "Resa2", "Resa3", "Resa4",
)  # fmt: skip

#: Standard sea-level pressure (hPa) to which SMAC coefficients refer.
P0_HPA: Final[float] = 1013.25

_DEG: Final[float] = np.pi / 180.0


@dataclass(frozen=True)
class SmacCoefficients:
    """SMAC coefficients of one sensor and aerosol model.

    Every field named in :data:`COEFFICIENT_NAMES` is a float64 array with one value per
    band (same order as ``bands``), or a 0-d array after :meth:`band`.

    Attributes
    ----------
    bands : tuple of str
        Band names, ``("B01", …, "B12")``.
    source : str
        Where the coefficients were read from (file path), for messages.
    """

    bands: tuple[str, ...]
    source: str
    ah2o: np.ndarray
    nh2o: np.ndarray
    ao3: np.ndarray
    no3: np.ndarray
    ao2: np.ndarray
    no2: np.ndarray
    po2: np.ndarray
    aco2: np.ndarray
    nco2: np.ndarray
    pco2: np.ndarray
    ach4: np.ndarray
    nch4: np.ndarray
    pch4: np.ndarray
    ano2: np.ndarray
    nno2: np.ndarray
    pno2: np.ndarray
    aco: np.ndarray
    nco: np.ndarray
    pco: np.ndarray
    a0s: np.ndarray
    a1s: np.ndarray
    a2s: np.ndarray
    a3s: np.ndarray
    a0T: np.ndarray
    a1T: np.ndarray
    a2T: np.ndarray
    a3T: np.ndarray
    taur: np.ndarray
    sr: np.ndarray
    a0taup: np.ndarray
    a1taup: np.ndarray
    wo: np.ndarray
    gc: np.ndarray
    a0P: np.ndarray
    a1P: np.ndarray
    a2P: np.ndarray
    a3P: np.ndarray
    a4P: np.ndarray
    Rest1: np.ndarray
    Rest2: np.ndarray
    Rest3: np.ndarray
    Rest4: np.ndarray
    Resr1: np.ndarray
    Resr2: np.ndarray
    Resr3: np.ndarray
    Resa1: np.ndarray
    Resa2: np.ndarray
    Resa3: np.ndarray
    Resa4: np.ndarray

    @classmethod
    def from_table(cls, table: npt.ArrayLike, bands: tuple[str, ...], source: str = "") -> SmacCoefficients:
        """Build from a ``(49, n_bands)`` table whose rows follow :data:`COEFFICIENT_NAMES`."""
        arr = np.asarray(table, dtype=np.float64)
        if arr.shape != (len(COEFFICIENT_NAMES), len(bands)):
            raise ValueError(f"expected a ({len(COEFFICIENT_NAMES)}, {len(bands)}) table, got {arr.shape}")
        values = {name: arr[i].copy() for i, name in enumerate(COEFFICIENT_NAMES)}
        return cls(bands=tuple(bands), source=source, **values)

    def index(self, band: str) -> int:
        """Position of ``band`` in :attr:`bands` (``KeyError`` when absent)."""
        try:
            return self.bands.index(band)
        except ValueError:
            raise KeyError(f"band {band!r} not in SMAC coefficients {self.source} ({self.bands})") from None

    def band(self, band: str) -> SmacCoefficients:
        """The coefficients of one band (0-d arrays)."""
        i = self.index(band)
        values: dict[str, Any] = {name: np.asarray(getattr(self, name)[..., i]) for name in COEFFICIENT_NAMES}
        return replace(self, bands=(band,), **values)

    def as_table(self) -> np.ndarray:
        """The ``(49, n_bands)`` table (inverse of :meth:`from_table`)."""
        return np.stack([np.atleast_1d(getattr(self, n)) for n in COEFFICIENT_NAMES])


assert [f.name for f in fields(SmacCoefficients)][2:] == list(COEFFICIENT_NAMES)


def _f(x: npt.ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def gas_transmission(
    c: SmacCoefficients,
    sun_zenith: npt.ArrayLike,
    view_zenith: npt.ArrayLike,
    pressure_hpa: npt.ArrayLike = P0_HPA,
    water_vapour: npt.ArrayLike = 2.0,
    ozone: npt.ArrayLike = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaseous transmission (all gases, and water vapour alone) on the sun-surface-sensor path.

    Parameters
    ----------
    c : coefficients of one band (see :meth:`SmacCoefficients.band`) or broadcastable ones.
    sun_zenith, view_zenith : degrees.
    pressure_hpa : surface pressure (hPa).
    water_vapour : column water vapour (g/cm2).
    ozone : ozone column (cm-atm, i.e. Dobson units / 1000).

    Returns
    -------
    tg, t_h2o : numpy.ndarray
    """
    us = np.cos(_f(sun_zenith) * _DEG)
    uv = np.cos(_f(view_zenith) * _DEG)
    m = 1.0 / us + 1.0 / uv
    peq = _f(pressure_hpa) / P0_HPA
    t_h2o = np.exp(c.ah2o * (np.maximum(_f(water_vapour), 0.0) * m) ** c.nh2o)
    log_other = c.ao3 * (np.maximum(_f(ozone), 0.0) * m) ** c.no3
    log_other = log_other + c.ao2 * ((peq**c.po2) * m) ** c.no2
    log_other = log_other + c.aco2 * ((peq**c.pco2) * m) ** c.nco2
    log_other = log_other + c.ach4 * ((peq**c.pch4) * m) ** c.nch4
    log_other = log_other + c.ano2 * ((peq**c.pno2) * m) ** c.nno2
    log_other = log_other + c.aco * ((peq**c.pco) * m) ** c.nco
    return t_h2o * np.exp(log_other), t_h2o


def water_vapour_transmission(
    c: SmacCoefficients, air_mass: npt.ArrayLike, water_vapour: npt.ArrayLike
) -> np.ndarray:
    """Water-vapour transmission ``exp(ah2o (u m) ** nh2o)`` for air mass ``m`` and column ``u`` (g/cm2)."""
    return np.exp(c.ah2o * (np.maximum(_f(water_vapour), 0.0) * _f(air_mass)) ** c.nh2o)


def terms(
    c: SmacCoefficients,
    sun_zenith: npt.ArrayLike,
    view_zenith: npt.ArrayLike,
    relative_azimuth: npt.ArrayLike,
    pressure_hpa: npt.ArrayLike = P0_HPA,
    aot550: npt.ArrayLike = 0.1,
    water_vapour: npt.ArrayLike = 2.0,
    ozone: npt.ArrayLike = 0.3,
) -> AtmosphereTerms:
    """All atmospheric terms of one band.

    Parameters
    ----------
    c : coefficients of one band (0-d fields) or fields broadcastable with the inputs.
    sun_zenith, view_zenith : degrees (0 … < 90).
    relative_azimuth : sun azimuth minus view azimuth (degrees); 0 means the sensor looks
        from the sun's side (backscattering).
    pressure_hpa : surface pressure (hPa).
    aot550 : aerosol optical thickness at 550 nm.
    water_vapour : g/cm2.
    ozone : cm-atm.
    """
    ts = _f(sun_zenith) * _DEG
    tv = _f(view_zenith) * _DEG
    us = np.cos(ts)
    uv = np.cos(tv)
    m = 1.0 / us + 1.0 / uv
    peq = _f(pressure_hpa) / P0_HPA
    tau550 = np.maximum(_f(aot550), 0.0)
    taup = c.a0taup + c.a1taup * tau550

    tg, t_h2o = gas_transmission(c, sun_zenith, view_zenith, pressure_hpa, water_vapour, ozone)

    # total scattering transmittances, bounded by the direct beam and by 1 (module docstring)
    taurz = c.taur * peq
    tau_ext = taurz + taup
    dir_down = np.exp(-tau_ext / us)
    dir_up = np.exp(-tau_ext / uv)
    t_down = np.clip(c.a0T + c.a1T * tau550 / us + (c.a2T * peq + c.a3T) / (1.0 + us), dir_down, 1.0)
    t_up = np.clip(c.a0T + c.a1T * tau550 / uv + (c.a2T * peq + c.a3T) / (1.0 + uv), dir_up, 1.0)
    s = c.a0s * peq + c.a3s + c.a1s * tau550 + c.a2s * tau550 * tau550

    # scattering angle
    cksi = -(us * uv + np.sin(ts) * np.sin(tv) * np.cos(_f(relative_azimuth) * _DEG))
    cksi = np.clip(cksi, -1.0, 1.0)
    ksid = np.degrees(np.arccos(cksi))

    # Rayleigh
    ray_phase = 0.7190443 * (1.0 + cksi * cksi) + 0.0412742
    x_ray = c.taur * ray_phase / (us * uv)
    rho_ray = x_ray / 4.0 * peq
    res_ray = c.Resr1 + c.Resr2 * x_ray + c.Resr3 * x_ray * x_ray

    # aerosol: two-stream solution with a polynomial phase function
    aer_phase = c.a0P + ksid * (c.a1P + ksid * (c.a2P + ksid * (c.a3P + ksid * c.a4P)))
    wo, gc = c.wo, c.gc
    g3 = 3.0 - wo * 3.0 * gc
    ak2 = (1.0 - wo) * g3
    ak = np.sqrt(ak2)
    den = 4.0 * (1.0 - ak2 * us * us)
    e = -3.0 * us * us * wo / den
    f = -(1.0 - wo) * 3.0 * gc * us * us * wo / den
    dp = e / (3.0 * us) + us * f
    d = e + f
    b = 2.0 * ak / g3
    ep = np.exp(ak * taup)
    em = np.exp(-ak * taup)
    delta = ep * (1.0 + b) ** 2 - em * (1.0 - b) ** 2
    ww = wo / 4.0
    ss = us / (1.0 - ak2 * us * us)
    q1 = 2.0 + 3.0 * us + (1.0 - wo) * 3.0 * gc * us * (1.0 + 2.0 * us)
    q2 = 2.0 - 3.0 * us - (1.0 - wo) * 3.0 * gc * us * (1.0 - 2.0 * us)
    q3 = q2 * np.exp(-taup / us)
    c1 = (ww * ss / delta) * (q1 * ep * (1.0 + b) + q3 * (1.0 - b))
    c2 = -(ww * ss / delta) * (q1 * em * (1.0 - b) + q3 * (1.0 + b))
    cp1 = c1 * ak / g3
    cp2 = -c2 * ak / g3
    z = d - wo * 3.0 * gc * uv * dp + wo * aer_phase / 4.0
    x = c1 - wo * 3.0 * gc * uv * cp1
    y = c2 - wo * 3.0 * gc * uv * cp2
    aa1 = uv / (1.0 + ak * uv)
    aa2 = uv / (1.0 - ak * uv)
    aa3 = us * uv / (us + uv)
    rho_aer = (
        x * aa1 * -np.expm1(-taup / aa1)
        + y * aa2 * -np.expm1(-taup / aa2)
        + z * aa3 * -np.expm1(-taup / aa3)
    ) / (us * uv)
    xa = taup * m * cksi
    res_aer = c.Resa1 + xa * (c.Resa2 + xa * (c.Resa3 + xa * c.Resa4))
    xt = (taup + taurz) * m * cksi
    res_6s = c.Rest1 + xt * (c.Rest2 + xt * (c.Rest3 + xt * c.Rest4))

    rho_ray_c = rho_ray - res_ray
    rho_aer_c = rho_aer - res_aer
    rho_atm = rho_ray_c + rho_aer_c + res_6s

    t_down_dir = np.minimum(dir_down, t_down)
    t_up_dir = np.minimum(dir_up, t_up)
    return AtmosphereTerms(
        tg=tg,
        t_h2o=t_h2o,
        rho_ray=rho_ray_c,
        rho_aer=rho_aer_c,
        rho_atm=rho_atm,
        t_down=t_down,
        t_up=t_up,
        t_down_dir=t_down_dir,
        t_up_dir=t_up_dir,
        t_down_dif=t_down - t_down_dir,
        t_up_dif=t_up - t_up_dir,
        s=s,
    )


class SmacModel:
    """SMAC as a :class:`l2a.kernels.rt.RadiativeTransferModel`.

    Parameters
    ----------
    coefficients : the sensor's coefficients (all bands).
    """

    def __init__(self, coefficients: SmacCoefficients) -> None:
        self.coefficients = coefficients
        self._per_band = {b: coefficients.band(b) for b in coefficients.bands}

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands covered by the coefficients."""
        return self.coefficients.bands

    def band(self, band: str) -> SmacCoefficients:
        """Coefficients of one band."""
        try:
            return self._per_band[band]
        except KeyError:
            raise KeyError(f"band {band!r} not in SMAC coefficients {self.coefficients.source}") from None

    def terms(
        self,
        band: str,
        sun_zenith: npt.ArrayLike,
        view_zenith: npt.ArrayLike,
        relative_azimuth: npt.ArrayLike,
        pressure_hpa: npt.ArrayLike = P0_HPA,
        aot550: npt.ArrayLike = 0.1,
        water_vapour: npt.ArrayLike = 2.0,
        ozone: npt.ArrayLike = 0.3,
    ) -> AtmosphereTerms:
        """See :func:`terms`."""
        return terms(self.band(band), sun_zenith, view_zenith, relative_azimuth, pressure_hpa, aot550, water_vapour, ozone)

    def water_vapour_transmission(
        self, band: str, air_mass: npt.ArrayLike, water_vapour: npt.ArrayLike
    ) -> np.ndarray:
        """See :func:`water_vapour_transmission`."""
        return water_vapour_transmission(self.band(band), air_mass, water_vapour)


forward = rt_forward
inverse = rt_inverse
