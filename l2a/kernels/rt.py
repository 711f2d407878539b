"""The radiative-transfer interface of the atmospheric correction.

A model gives, per band and for arrays of geometry and atmosphere, the terms of the
uniform-Lambertian-surface equation::

    rho_toa = tg * (rho_atm + T_down * T_up * rho / (1 - S * rho))

SMAC (:class:`l2a.kernels.smac.SmacModel`) implements it; a LUT computed with a full
radiative-transfer code can implement the same :class:`RadiativeTransferModel` protocol later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class AtmosphereTerms:
    """Atmospheric terms of one band for a set of pixels (all unitless, broadcast shape).

    Attributes
    ----------
    tg : gaseous transmission, sun-surface-sensor path, all gases.
    t_h2o : water-vapour part of ``tg``.
    rho_ray : Rayleigh path reflectance.
    rho_aer : aerosol path reflectance.
    rho_atm : total atmospheric path reflectance (Rayleigh + aerosol + coupling).
    t_down, t_up : total (direct + diffuse) scattering transmittances, sun and view paths.
    t_down_dir, t_up_dir : their direct (unscattered) parts.
    t_down_dif, t_up_dif : their diffuse parts.
    s : spherical albedo of the atmosphere.
    """

    tg: np.ndarray
    t_h2o: np.ndarray
    rho_ray: np.ndarray
    rho_aer: np.ndarray
    rho_atm: np.ndarray
    t_down: np.ndarray
    t_up: np.ndarray
    t_down_dir: np.ndarray
    t_up_dir: np.ndarray
    t_down_dif: np.ndarray
    t_up_dif: np.ndarray
    s: np.ndarray


@runtime_checkable
class RadiativeTransferModel(Protocol):
    """What the correction needs from a radiative-transfer model."""

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands the model covers."""
        ...

    def terms(
        self,
        band: str,
        sun_zenith: npt.ArrayLike,
        view_zenith: npt.ArrayLike,
        relative_azimuth: npt.ArrayLike,
        pressure_hpa: npt.ArrayLike,
        aot550: npt.ArrayLike,
        water_vapour: npt.ArrayLike,
        ozone: npt.ArrayLike,
    ) -> AtmosphereTerms:
        """Atmospheric terms of ``band``.

        Angles in degrees (relative azimuth = sun azimuth - view azimuth), pressure in hPa,
        AOT at 550 nm (unitless), water vapour in g/cm2, ozone in cm-atm.
        """
        ...

    def water_vapour_transmission(
        self, band: str, air_mass: npt.ArrayLike, water_vapour: npt.ArrayLike
    ) -> np.ndarray:
        """Two-way water-vapour transmission of ``band`` for air mass ``1/us + 1/uv``."""
        ...


def forward(t: AtmosphereTerms, rho_surface: npt.ArrayLike) -> np.ndarray:
    """TOA reflectance of a uniform Lambertian surface of reflectance ``rho_surface``."""
    r = np.asarray(rho_surface)
    return t.tg * (t.rho_atm + t.t_down * t.t_up * r / (1.0 - t.s * r))


def inverse(t: AtmosphereTerms, rho_toa: npt.ArrayLike) -> np.ndarray:
    """Surface reflectance of a uniform Lambertian surface: exact inverse of :func:`forward`."""
    y = np.asarray(rho_toa) / t.tg - t.rho_atm
    return y / (t.t_down * t.t_up + t.s * y)
