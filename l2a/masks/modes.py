"""Time series of masks: INIT / NOMINAL / BACKWARD modes (:func:`detect_series`)."""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from l2a.errors import InputError
from l2a.masks.composite import Composite, to_days
from l2a.masks.detect import detect
from l2a.masks.settings import MaskSettings, Mode


def _dem_for(dem: xr.Dataset | Sequence[xr.Dataset | None] | None, i: int) -> xr.Dataset | None:
    if dem is None or isinstance(dem, xr.Dataset):
        return dem
    return dem[i]


def detect_series(
    scenes: Sequence[xr.Dataset],
    *,
    dem: xr.Dataset | Sequence[xr.Dataset | None] | None = None,
    settings: MaskSettings | None = None,
    composite: Composite | None = None,
) -> list[xr.Dataset]:
    """Masks of a time series of one place, with the multi-temporal modes.

    Parameters
    ----------
    scenes : sequence of xarray.Dataset
        TOA datasets as :func:`l2a.masks.detect` takes them, all on the same grid.  They are
        processed in chronological order (sorted by ``attrs["datetime"]``); the masks come back
        in the order given.
    dem : xarray.Dataset or sequence, optional
        One terrain dataset for all dates, or one per date (same order as ``scenes``).
    settings : MaskSettings, optional
        ``series_mode`` chooses the start: ``"backward"`` (default, MAJA's BACKWARD mode: the
        first ``backward_dates`` dates are processed in reverse order, from the N-th down to the
        second, to build the composite; then every date is processed forward in NOMINAL mode)
        or ``"nominal"`` (INIT on the first date, then forward).  In both, a gap longer than
        ``reinit_gap_days`` re-initialises (INIT).
    composite : Composite, optional
        Resume from a saved state instead of starting a new series.

    Returns
    -------
    list of xarray.Dataset
        One masks dataset per scene; ``attrs["mode"]`` says how each date was processed and
        ``attrs["series_mode"]`` how the series was started.
    """
    s = settings or MaskSettings()
    if not scenes:
        return []
    for i, sc in enumerate(scenes):
        if "datetime" not in sc.attrs:
            raise InputError(f"scenes[{i}]", "attribute 'datetime' missing")
    order = sorted(range(len(scenes)), key=lambda i: to_days(str(scenes[i].attrs["datetime"])))
    comp = composite
    if comp is None and s.series_mode == "backward" and len(order) > 1:
        n = min(s.backward_dates, len(order))
        for i in reversed(order[1:n]):
            _, comp = detect(scenes[i], comp, dem=_dem_for(dem, i), settings=s)
    out: dict[int, xr.Dataset] = {}
    first = True
    for i in order:
        masks, comp = detect(scenes[i], comp, dem=_dem_for(dem, i), settings=s)
        if first and composite is None and s.series_mode == "backward" and masks.attrs["mode"] == Mode.NOMINAL.value:
            masks.attrs["mode_reason"] = f"composite initialised in {Mode.BACKWARD.value} mode"
        masks.attrs["series_mode"] = s.series_mode
        out[i] = masks
        first = False
    return [out[i] for i in range(len(scenes))]
