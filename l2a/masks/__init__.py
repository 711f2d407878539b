"""Cloud, cloud-shadow, cirrus, snow and water masks: the multi-temporal MACCS/MAJA method.

Public API
----------
- :func:`detect` ``(toa, composite=None, *, dem=None, settings=None) -> (masks, composite)``
- :func:`detect_series` ``(scenes, *, dem=None, settings=None) -> list[masks]``
- :class:`Composite` (state between dates, ``save``/``load``), :class:`MaskSettings`, :class:`Mode`
- :func:`quicklook` (RGB with outlines: cloud green, snow pink, water blue, shadow yellow)

Decisions are made on a coarse working grid (240 m by default, finer for small inputs), then
cloud, snow and water edges are refined at full resolution.  See ``SCIENCE.md`` section 3.
"""

from l2a.masks.composite import Composite
from l2a.masks.detect import detect, to_resolution, working_factor
from l2a.masks.modes import detect_series
from l2a.masks.quicklook import quicklook
from l2a.masks.settings import MaskSettings, Mode

__all__ = ["Composite", "MaskSettings", "Mode", "detect", "detect_series", "quicklook", "to_resolution", "working_factor"]
