"""Dask tasks shared by the file-backed L1C forms (SAFE and STAC item).

Each task opens its own file (graphs pickle) and reads one chunk of a band through
:mod:`l2a.io.safe_read`; :func:`blocked` assembles one delayed call per chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from l2a.io.safe_read import ReadSettings, interp_angles, read_resampled, read_toa


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
