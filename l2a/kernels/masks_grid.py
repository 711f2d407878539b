"""Block resampling between the full-resolution grid and the working grid of the masks (pure numpy).

The working grid is the full-resolution grid zoomed out by an integer ``factor`` with the same
upper-left corner (``GeoBox.zoom_out``); its last row/column may cover a partial block.
"""

from __future__ import annotations

import numpy as np


def _pad_to_blocks(a: np.ndarray, factor: int, fill: float | bool) -> np.ndarray:
    h, w = a.shape
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), constant_values=fill)
    return a


def block_mean(a: np.ndarray, factor: int, min_valid_fraction: float) -> np.ndarray:
    """Mean of the finite values of each ``factor x factor`` block.

    Blocks where fewer than ``min_valid_fraction`` of the pixels *inside the array* are finite
    give NaN.  ``factor == 1`` returns a float32 copy.
    """
    if factor == 1:
        return a.astype(np.float32, copy=True)
    h, w = a.shape
    ok = np.isfinite(a)
    v = _pad_to_blocks(np.where(ok, a, 0.0).astype(np.float32), factor, 0.0)
    n = _pad_to_blocks(ok, factor, False)
    inside = _pad_to_blocks(np.ones((h, w), bool), factor, False)
    hh, ww = v.shape[0] // factor, v.shape[1] // factor
    s = v.reshape(hh, factor, ww, factor).sum(axis=(1, 3), dtype=np.float64)
    c = n.reshape(hh, factor, ww, factor).sum(axis=(1, 3))
    m = inside.reshape(hh, factor, ww, factor).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((c > 0) & (c >= min_valid_fraction * m), s / np.maximum(c, 1), np.nan)
    return out.astype(np.float32)


def block_any(a: np.ndarray, factor: int) -> np.ndarray:
    """True where any pixel of the ``factor x factor`` block is true."""
    if factor == 1:
        return a.astype(bool, copy=True)
    p = _pad_to_blocks(a.astype(bool), factor, False)
    hh, ww = p.shape[0] // factor, p.shape[1] // factor
    return np.asarray(p.reshape(hh, factor, ww, factor).any(axis=(1, 3)))


def block_fraction(a: np.ndarray, factor: int) -> np.ndarray:
    """Fraction of true pixels in each block (pixels outside the array do not count)."""
    h, w = a.shape
    p = _pad_to_blocks(a.astype(np.float32), factor, 0.0)
    inside = _pad_to_blocks(np.ones((h, w), np.float32), factor, 0.0)
    hh, ww = p.shape[0] // factor, p.shape[1] // factor
    s = p.reshape(hh, factor, ww, factor).sum(axis=(1, 3))
    m = inside.reshape(hh, factor, ww, factor).sum(axis=(1, 3))
    return (s / np.maximum(m, 1)).astype(np.float32)


def upsample(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour (block replication) from the working grid back to ``shape``."""
    if factor == 1:
        return a[: shape[0], : shape[1]].copy()
    rows = np.repeat(a, factor, axis=0)[: shape[0]]
    return np.repeat(rows, factor, axis=1)[:, : shape[1]]


def block_pixel_indices(blocks: np.ndarray, factor: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution pixels of the selected working-grid blocks, as flat indices.

    Parameters
    ----------
    blocks : ndarray of bool
        Selected blocks on the working grid.
    factor : int
        Block size in full-resolution pixels.
    shape : (int, int)
        Full-resolution shape (blocks of the last row/column may be partial).

    Returns
    -------
    flat : ndarray of int64
        Flat indices into the full-resolution grid (C order), block by block.
    block_flat : ndarray of int64
        Flat index into the working grid of each pixel's block (same length).
    """
    h, w = shape
    bi, bj = np.nonzero(blocks)
    off = np.arange(factor, dtype=np.int64)
    rows = bi.astype(np.int64)[:, None, None] * factor + off[None, :, None]
    cols = bj.astype(np.int64)[:, None, None] * factor + off[None, None, :]
    inside = (rows < h) & (cols < w)
    flat = (rows * w + cols)[inside]
    bflat = np.broadcast_to((bi.astype(np.int64) * blocks.shape[1] + bj)[:, None, None], inside.shape)[inside]
    return flat, bflat
