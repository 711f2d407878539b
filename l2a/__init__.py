"""l2a: an open, automatic Sentinel-2 Level-2A ground segment.

Importing this package is light: it loads no dashboard, notebook or cluster code.
The sub-packages follow the layers of ``ARCHITECTURE.md``:

- :mod:`l2a.sensors`: band tables and sensor constants;
- :mod:`l2a.kernels`: pure numpy kernels (no I/O, no dask);
- :mod:`l2a.io`: L1C readers (SAFE, STAC item, array scenes), DEM sources, writers;
- :mod:`l2a.chain`: the per-date L2A steps lifted over xarray/dask;
- :mod:`l2a.production`: ingest, status database, planner, runner.
"""

from l2a._version import __version__

__all__ = ["__version__", "correct"]


def __getattr__(name: str) -> object:
    """Lazy top-level API: ``l2a.correct`` without importing xarray at ``import l2a``."""
    if name == "correct":
        from l2a.chain.correction import correct

        return correct
    raise AttributeError(f"module 'l2a' has no attribute {name!r}")
