"""Solar position from time and place (NREL SPA through pvlib).

Used wherever an L1C form carries no sun angle grid (array scenes, STAC items without
``view:sun_*`` properties). The angles are *geometric* (no atmospheric refraction), as in
the Sentinel-2 metadata: the zenith is measured from the local vertical, the azimuth
clockwise from north (0 = N, 90 = E), both in degrees.

Accuracy: NREL SPA is good to 0.0003 deg; the dominant error in our use is the
sensing time itself (one time per tile).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SolarSettings:
    """Settings of the solar position computation.

    Attributes
    ----------
    elevation_m : float
        Height of the observer above the ellipsoid (m). The topocentric parallax it
        changes is below 1e-5 deg: sea level (0 m) is used by default.
    delta_t_s : float or None
        TT - UT1 in seconds; ``None`` estimates it from the date with pvlib's polynomial
        (about 68-70 s for 2015-2026).
    """

    elevation_m: float = 0.0
    delta_t_s: float | None = None


DEFAULT_SOLAR: Final[SolarSettings] = SolarSettings()


def _spa() -> Any:
    """pvlib's SPA module, imported lazily (pvlib pulls in pandas).

    pandas emits a DeprecationWarning about NumPy's generic timedelta unit while pvlib's
    modules build their defaults at import time: harmless third-party noise, silenced here
    for the import only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pvlib import spa
    return spa


def _unix_seconds(time: datetime | np.datetime64 | str) -> float:
    """Seconds since 1970-01-01 UTC of ``time`` (naive datetimes are taken as UTC)."""
    if isinstance(time, str):
        time = datetime.fromisoformat(time.replace("Z", "+00:00"))
    if isinstance(time, np.datetime64):
        return float(time.astype("datetime64[us]").astype(np.int64)) / 1e6
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.timestamp()


def sun_angles(
    time: datetime | np.datetime64 | str,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    settings: SolarSettings = DEFAULT_SOLAR,
) -> tuple[np.ndarray, np.ndarray]:
    """Sun zenith and azimuth (degrees) at ``time`` for every (lon, lat).

    Parameters
    ----------
    time
        Acquisition time, UTC (a timezone-aware ``datetime``, a naive one taken as UTC,
        an ISO 8601 string or a ``numpy.datetime64``).
    lon, lat
        Longitude and latitude in degrees (WGS84), any broadcastable shapes.
    settings
        See :class:`SolarSettings`.

    Returns
    -------
    zenith, azimuth : numpy.ndarray
        ``float64`` arrays of the broadcast shape: geometric sun zenith angle (deg, no
        refraction) and azimuth (deg clockwise from north, 0..360).
    """
    spa = _spa()
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    shape = lon_a.shape
    flat_lon = lon_a.ravel()
    flat_lat = lat_a.ravel()
    t = _unix_seconds(time)
    if settings.delta_t_s is None:
        when = datetime.fromtimestamp(t, tz=UTC)
        delta_t = float(np.asarray(spa.calculate_deltat(when.year, when.month)))
    else:
        delta_t = settings.delta_t_s
    unixtime = np.full(flat_lon.shape, t, dtype=np.float64)
    if flat_lon.size == 0:
        return np.empty(shape), np.empty(shape)
    _theta, theta0, _e, _e0, phi, _eot = spa.solar_position_numpy(
        unixtime, flat_lat, flat_lon, settings.elevation_m, 1013.25, 12.0, delta_t, 0.5667, 1
    )
    zenith = np.asarray(theta0, dtype=np.float64).reshape(shape)
    azimuth = np.mod(np.asarray(phi, dtype=np.float64), 360.0).reshape(shape)
    return zenith, azimuth


#: Band solar irradiance (W m-2 µm-1) written by ESA in ``MTD_MSIL1C.xml`` (``SOLAR_IRRADIANCE``,
#: bandId order B01 … B12 with B8A after B08), per platform. S2A and S2B values are those of the
#: genuine N05.10 products in the sample data (CNES/ALCD Toulouse set); platforms without an
#: entry fall back to S2A (used only for forms that carry no metadata: array scenes).
SOLAR_IRRADIANCE: Final[dict[str, dict[str, float]]] = {
    "S2A": dict(zip(
        ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"),
        (1884.69, 1959.66, 1823.24, 1512.06, 1424.64, 1287.61, 1162.08, 1041.63, 955.32, 812.92,
         367.15, 245.59, 85.25), strict=True)),
    "S2B": dict(zip(
        ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"),
        (1874.30, 1959.75, 1824.93, 1512.79, 1425.78, 1291.13, 1175.57, 1041.28, 953.93, 817.58,
         365.41, 247.08, 87.75), strict=True)),
}


def solar_irradiance(platform: str) -> dict[str, float]:
    """Band solar irradiance (W m-2 µm-1) of ``platform`` (S2A values when unknown)."""
    return dict(SOLAR_IRRADIANCE.get(platform.upper(), SOLAR_IRRADIANCE["S2A"]))


def earth_sun_u(time: datetime | np.datetime64 | str) -> float:
    """Earth-Sun distance correction factor ``U`` as ESA writes it in ``MTD_MSIL1C.xml``.

    ``U = 1 / (1 - 0.01673 cos(0.0172 (t - 2)))**2`` with ``t`` the days (fractional) elapsed
    since 1950-01-01T12:00 UTC at ``time`` (the datatake sensing start in genuine products):
    the formula of the L1C ATBD. It reproduces the ``U`` of the genuine products in the
    sample data (baselines 02.04 to 05.10) to about 1e-9 (unitless, 0.967..1.034).
    """
    days = (_unix_seconds(time) - _EPOCH_1950_NOON) / 86400.0
    return float(1.0 / (1.0 - 0.01673 * np.cos(0.0172 * (days - 2.0))) ** 2)


#: 1950-01-01T12:00 UTC in Unix seconds (origin of ``t`` in :func:`earth_sun_u`).
_EPOCH_1950_NOON: Final[float] = datetime(1950, 1, 1, 12, tzinfo=UTC).timestamp()
