"""l2a.chain: the per-date L2A steps lifted over xarray/dask.

- :func:`correct`: atmospheric, adjacency and slope correction (SRE, FRE, ATB, IAB).
"""

from l2a.chain.correction import CorrectionSettings, correct, group

__all__ = ["CorrectionSettings", "correct", "group"]
