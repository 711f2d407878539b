"""Test and demo helpers: write genuine-format Sentinel-2 L1C products from arrays.

- :mod:`l2a.testing.safe_writer`: :func:`~l2a.testing.safe_writer.write_safe`,
  :func:`~l2a.testing.safe_writer.write_safe_from_reflectance`.
- :mod:`l2a.testing.series`: :func:`~l2a.testing.series.slovenia_safe_series` (the real
  Slovenia summer 2015 series as 5 SAFE products of tile 33TVL).

Imported lazily (``import l2a`` does not load GDAL for this).
"""
