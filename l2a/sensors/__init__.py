"""Sensor constants: band tables (names, resolutions, wavelengths, common names)."""

from l2a.sensors.sentinel2 import BAND_NAMES, BANDS, Band, band, bands_at

__all__ = ["BANDS", "BAND_NAMES", "Band", "band", "bands_at"]
