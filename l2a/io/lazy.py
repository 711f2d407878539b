"""Dask tasks shared by the file-backed L1C forms (SAFE and STAC item).

Each task opens its own file (graphs pickle) and reads one chunk of a band through
:mod:`l2a.io.safe_read`; :func:`blocked` assembles one delayed call per chunk. :func:`quality_from_toa` derives the
SAT/no-data quality of ``quality()`` from a TOA dataset already read (no second decoding).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from l2a.errors import InputError
from l2a.io.safe_read import (
    ReadSettings,
    dn_to_reflectance,
    interp_angles,
    read_resampled,
    read_toa,
    replication_factor,
)


def toa_chunk(
    path: str,
    full_shape: tuple[int, int],
    row0: float,
    col0: float,
    step: float,
    shape: tuple[int, int],
    nodata: int,
    offset: float,
    quantification: float,
    settings: ReadSettings,
    n_overviews: int | None = None,
) -> np.ndarray:
    return read_toa(
        path, full_shape=full_shape, row0=row0, col0=col0, step=step, shape=shape, nodata=nodata,
        offset=offset, quantification=quantification, settings=settings, n_overviews=n_overviews,
    )


def quality_chunk(
    path: str,
    full_shape: tuple[int, int],
    row0: float,
    col0: float,
    step: float,
    shape: tuple[int, int],
    nodata: int,
    saturated: int,
    settings: ReadSettings,
    n_overviews: int | None = None,
) -> np.ndarray:
    _, valid, sat = read_resampled(
        path,
        full_shape=full_shape,
        row0=row0,
        col0=col0,
        step=step,
        shape=shape,
        nodata=nodata,
        saturated=saturated,
        settings=settings,
        n_overviews=n_overviews,
    )
    assert sat is not None
    return np.stack([~valid, sat])


def angle_chunk(
    zenith: np.ndarray, azimuth: np.ndarray, row_pos: np.ndarray, col_pos: np.ndarray
) -> np.ndarray:
    z, a = interp_angles(zenith, azimuth, row_pos, col_pos)
    return np.stack([z, a])


def _chunk_starts(n: int, c: int) -> list[tuple[int, int]]:
    return [(s, min(c, n - s)) for s in range(0, n, c)]


def blocked(
    func: Any, args_for: Any, shape: Any, chunk: int, dtype: Any, lead: tuple[int, ...] = ()
) -> Any:
    """Dask array of ``lead + shape`` built from one delayed call per (row, col) chunk."""
    import dask
    import dask.array as da

    rows = []
    for r0, h in _chunk_starts(shape[0], chunk):
        row = []
        for c0, w in _chunk_starts(shape[1], chunk):
            d = dask.delayed(func, pure=True)(*args_for(r0, c0, h, w))
            row.append(da.from_delayed(d, shape=(*lead, h, w), dtype=dtype))
        rows.append(row)
    if lead:
        return da.concatenate([da.concatenate(r, axis=len(lead) + 1) for r in rows], axis=len(lead))
    return da.block(rows)


def _dn_layout(l1c: Any, band_name: str) -> tuple[Any, int] | None:
    """(affine of the band's file, saturated DN) for readers whose TOA is ``(DN + offset) / q`` per file
    pixel (SAFE, STAC item), else None (array scenes carry no DN)."""
    md = l1c.metadata
    band_file = getattr(l1c, "band_file", None)
    if callable(band_file):  # SAFE
        try:
            return band_file(band_name).transform, int(md.saturated_value)
        except (KeyError, InputError):
            return None
    band_asset = getattr(l1c, "band_asset", None)
    if callable(band_asset):  # STAC item
        try:
            sb = band_asset(band_name)
        except (KeyError, InputError):
            return None
        return sb.transform, int(sb.saturated)
    return None


def quality_from_toa(toa: xr.Dataset, l1c: Any) -> xr.Dataset | None:
    """``l1c.quality(bands, resolution)`` derived from ``l1c.toa(bands, resolution)`` (lazy, no new read).

    ``nodata``: any band NaN (TOA is NaN exactly where ``DN == nodata``, and outside the file);
    ``saturation_<band>``: the TOA equals the saturated DN converted by the reader's own
    float32 formula (:func:`l2a.io.safe_read.dn_to_reflectance`; the conversion is one-to-one
    on integer DN). Bit-identical to ``quality()`` where the target pixel is one file pixel or
    a replicated sub-pixel of it (aligned grid, file resolution a multiple of the target's);
    returns None otherwise (averaged reads, or a reader without DN), and for an empty dataset.
    """
    import odc.geo.xr  # noqa: F401

    g = toa.odc.geobox
    if g is None or not toa.data_vars:
        return None
    md = l1c.metadata
    nodata = None
    out: dict[str, Any] = {}
    for name, v in toa.data_vars.items():
        lay = _dn_layout(l1c, str(name))
        if lay is None or "radio_add_offset" not in v.attrs or "quantification_value" not in v.attrs:
            return None
        t, saturated = lay
        row0, col0, step = (t.f - g.affine.f) / -t.e, (g.affine.c - t.c) / t.a, g.affine.a / t.a
        if replication_factor(step, row0, col0) is None:
            return None
        sat = dn_to_reflectance(np.array([saturated]), int(md.nodata_value) if saturated != md.nodata_value else -1,
                                float(v.attrs["radio_add_offset"]), float(v.attrs["quantification_value"]))[0]
        arr = v.data
        out[f"saturation_{name}"] = (("y", "x"), arr == sat)
        isnan = np.isnan(arr)
        nodata = isnan if nodata is None else (nodata | isnan)
    return xr.Dataset({"nodata": (("y", "x"), nodata), **out}, coords=toa.coords)
