"""Closed loop ("closure") of the atmospheric correction on the real Slovenia surface.

Shared by ``benchmarks/correction_eval.py`` (section 2b) and ``tests/test_correction_closure.py``.

The surface is held fixed: the SRE that :func:`l2a.chain.correction.correct` retrieves on
2015-07-11 (10 m bands at 10 m, 20 m bands on their 2 x 2 pixels, B09 = B8A as the B9/B8A
water-vapour retrieval assumes). For each date of the series, its TOA is simulated with the same
SMAC model (:func:`l2a.kernels.rt.forward`) under the date's real sun geometry, the DEM's
pressure, the date's ozone and a known AOT / water vapour, on the real grid, and corrected again
with adjacency off in both directions (the simulation is the uniform-surface equation, which
``correct`` inverts exactly when adjacency is off). With an unchanged surface, whatever TOA
varies from date to date is atmosphere and sun geometry, which the correction must remove.

What it cannot test: whether real surfaces obey the dark-vegetation blue-red relation (the truth
was made with it), model error (SMAC on SMAC), adjacency, masks, off-nadir views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import xarray as xr

#: Clear dates of the Slovenia series, and all five (2015-07-31 and 2015-08-20 are cloudy).
CLEAR_DATES: Final[tuple[str, ...]] = ("2015-07-11", "2015-08-30", "2015-09-09")
ALL_DATES: Final[tuple[str, ...]] = ("2015-07-11", "2015-07-31", "2015-08-20", "2015-08-30", "2015-09-09")
#: The 10 m bands compared.
R1_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B08")
#: The bands of the fixed surface (the ten MUSCATE bands; B09 is set to B8A).
SURFACE_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


#: AOTs at 550 nm given to the three clear dates in order: a clear, a typical and a hazy day.
WIDE_AOTS: Final[tuple[float, ...]] = (0.05, 0.2, 0.4)
#: Tolerances: scene-mean AOT bias, share of working pixels within :func:`aot_envelope`, share of
#: visible 10 m pixels within :func:`sre_spec`.
MAX_MEAN_AOT_BIAS: Final[float] = 0.02
MIN_SHARE_IN_ENVELOPE: Final[float] = 0.95
MIN_SHARE_IN_SPEC: Final[float] = 0.99


def aot_envelope(tau: float) -> float:
    """Expected AOT error of a dark-target retrieval over land, ``0.05 + 0.15 tau`` (Levy et
    al. 2010, Atmos. Chem. Phys. 10:10399)."""
    return 0.05 + 0.15 * tau


def sre_spec(rho: np.ndarray) -> np.ndarray:
    """Sentinel-2 surface-reflectance accuracy requirement, ``0.005 + 5 %`` of the reflectance."""
    return 0.005 + 0.05 * np.abs(rho)


def aot_share_in_envelope(aot: np.ndarray, tau: float) -> float:
    """Share of the retrieved AOT field within :func:`aot_envelope` of the truth ``tau``."""
    return float(np.mean(np.abs(np.asarray(aot) - tau) <= aot_envelope(tau)))


def aot_ok(aot: np.ndarray, tau: float) -> bool:
    """The retrieved AOT field passes: mean bias and share within the envelope."""
    bias = abs(float(np.mean(np.asarray(aot) - tau)))
    return bias <= MAX_MEAN_AOT_BIAS and aot_share_in_envelope(aot, tau) >= MIN_SHARE_IN_ENVELOPE


@dataclasses.dataclass
class ClosedLoop:
    """The fixed surface, the real dates' geometry and atmospheres, and a TOA simulator.

    Attributes
    ----------
    truth : surface reflectance per band (10 m grid, float).
    elevation : ``xarray.Dataset`` with ``elevation`` only (pressure; FRE == SRE).
    scenes : the real dates (``l2a.io.scenes.open_scene``).
    real : per date, (AOT, water vapour, ozone) that ``correct`` retrieves single-date on the
        real date (ozone: what it used).
    days : sensing time of each date, days since 1970.
    simulate : ``simulate(date, aot, water_vapour)`` -> an in-memory L1C of the fixed surface
        under that date's geometry and the given atmosphere.
    """

    truth: dict[str, np.ndarray]
    elevation: xr.Dataset
    scenes: dict[str, Any]
    real: dict[str, tuple[float, float, float]]
    days: dict[str, float]
    simulate: Callable[[str, float, float], Any]


def closed_loop(dem: str | Path) -> ClosedLoop:
    """Build the closed loop over the Slovenia series (``dem``: its ``DEM.tif``)."""
    import rasterio
    from odc.geo.xr import xr_coords

    from l2a.chain.correction import correct, group
    from l2a.errors import InputError
    from l2a.io._array_product import ArrayL1CProduct
    from l2a.io.scenes import open_scene
    from l2a.io.smac_coefs import read_smac_coefficients
    from l2a.kernels.atmosphere import pressure_from_altitude
    from l2a.kernels.rt import forward
    from l2a.kernels.smac import SmacModel
    from l2a.sensors.sentinel2 import BY_NAME

    scenes = {d: open_scene(f"slovenia:{d}") for d in ALL_DATES}
    g10 = scenes[CLEAR_DATES[0]].geobox(10)
    ny, nx = g10.shape
    with rasterio.open(dem) as src:
        z = src.read(1).astype(np.float64)
    if z.shape != (ny, nx):
        raise InputError(dem, f"DEM of {z.shape} px, the Slovenia scenes are {(ny, nx)}")
    elevation = xr.Dataset({"elevation": (("y", "x"), z)}, coords=xr_coords(g10))

    ds0, _ = correct(scenes[CLEAR_DATES[0]], None, None, elevation)
    r1, r2 = group(ds0, "R1"), group(ds0, "R2")
    truth: dict[str, np.ndarray] = {}
    for b in SURFACE_BANDS:
        name = f"SRE_{BY_NAME[b].muscate_name}"
        # a 20 m band: each 20 m pixel on its 2 x 2 10 m pixels (block means give it back)
        v = r1[name].values if name in r1 else np.repeat(np.repeat(r2[name].values, 2, axis=0), 2, axis=1)[:ny, :nx]
        truth[b] = np.where(v == -10000, np.nan, v / 1e4)
    truth["B09"] = truth["B8A"]

    real = {}
    for d in ALL_DATES:  # the cloudy dates only give their ozone (AOT/WV: interpolate_atmospheres)
        dsd, _ = correct(scenes[d], None, None, elevation)
        real[d] = (float(dsd["aot"].mean()), float(dsd["water_vapour"].mean()), float(dsd.attrs["ozone_cm_atm"]))
    model = SmacModel(read_smac_coefficients(scenes[CLEAR_DATES[0]].metadata.platform))
    pressure = pressure_from_altitude(z)

    def simulate(d: str, tau: float, wv: float) -> ArrayL1CProduct:
        ang = scenes[d].angles(g10)
        sz, sa, vz, va = (np.asarray(ang[k].values, dtype=np.float64)
                          for k in ("sun_zenith", "sun_azimuth", "view_zenith", "view_azimuth"))
        toa = {b: forward(model.terms(b, sz, vz, sa - va, pressure, tau, wv, real[d][2]), rho).astype(np.float32)
               for b, rho in truth.items()}
        md = dataclasses.replace(scenes[d].metadata, product_id=f"closure:{d}")
        return ArrayL1CProduct(toa, g10, md, nominal_resolution=10.0)

    days = {d: scenes[d].metadata.sensing_time.timestamp() / 86400.0 for d in ALL_DATES}
    return ClosedLoop(truth, elevation, scenes, real, days, simulate)


def interpolate_atmospheres(loop: ClosedLoop, clear: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """(AOT, water vapour) of every date: the clear dates' values, interpolated in time between them."""
    x = [loop.days[d] for d in CLEAR_DATES]
    return {
        d: (float(np.interp(loop.days[d], x, [clear[c][0] for c in CLEAR_DATES])),
            float(np.interp(loop.days[d], x, [clear[c][1] for c in CLEAR_DATES])))
        for d in ALL_DATES
    }


def real_atmospheres(loop: ClosedLoop) -> dict[str, tuple[float, float]]:
    """The AOT and water vapour retrieved on the real clear dates (interpolated between them)."""
    return interpolate_atmospheres(loop, {d: loop.real[d][:2] for d in CLEAR_DATES})


def given_aots(loop: ClosedLoop, aots: tuple[float, ...]) -> dict[str, tuple[float, float]]:
    """One given AOT per clear date (in order), with the real water vapour."""
    return interpolate_atmospheres(loop, {d: (t, loop.real[d][1]) for d, t in zip(CLEAR_DATES, aots, strict=True)})


def run_series(loop: ClosedLoop, atmos: Mapping[str, tuple[float, float]], *, chained: bool,
               aot_settings: Any = None) -> list[dict[str, Any]]:
    """Simulate and correct the dates in order.

    ``chained=False``: the clear dates alone (no composite: the multi-spectral term only).
    ``chained=True``: the five dates through one composite, as production runs the series (the
    cloudy 2015-07-31 and 2015-08-20 simulated clear under the same unchanged surface).

    Per date: ``date``, ``clear``, true ``tau`` and ``wv``, the retrieved ``aot`` and
    ``water_vapour`` fields, and ``toa`` and ``sre`` of :data:`R1_BANDS` (float reflectance).
    """
    from l2a.chain.correction import CorrectionSettings, correct, working_geobox
    from l2a.kernels.adjacency import AdjacencySettings
    from l2a.masks.composite import Composite
    from l2a.sensors.sentinel2 import BY_NAME

    settings = CorrectionSettings(adjacency=AdjacencySettings(enabled=False))
    if aot_settings is not None:
        settings = dataclasses.replace(settings, aot=aot_settings)
    comp = None
    if chained:
        gw = working_geobox(loop.scenes[CLEAR_DATES[0]], None, settings)
        comp = Composite(geobox=gw, reflectance={}, dates=np.full(tuple(gw.shape), np.nan),
                         last_date=f"{CLEAR_DATES[0]}T00:00:00+00:00", extra={})
    names = [f"SRE_{BY_NAME[b].muscate_name}" for b in R1_BANDS]
    out = []
    for d in ALL_DATES if chained else CLEAR_DATES:
        tau, wv = atmos[d]
        sim = loop.simulate(d, tau, wv)
        ds, comp = correct(sim, None, comp, loop.elevation, settings)
        sre = ds[names].compute()
        toa = sim.toa(list(R1_BANDS), 10, chunks=None)
        out.append({
            "date": d, "clear": d in CLEAR_DATES, "tau": tau, "wv": wv,
            "aot": np.asarray(ds["aot"].values), "water_vapour": np.asarray(ds["water_vapour"].values),
            "toa": {b: np.asarray(toa[b].values, dtype=np.float64) for b in R1_BANDS},
            "sre": {b: sre[n].values / 1e4 for b, n in zip(R1_BANDS, names, strict=True)},
        })
    return out
