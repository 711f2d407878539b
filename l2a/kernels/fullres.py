"""Full-resolution application of the correction: bilinear upsampling of coarse fields and
the fused inversion + adjacency kernel (float32, pure numpy).

Coarse per-band coefficient fields (computed once per date on the coarse grid) are
interpolated to each full-resolution block with separable bilinear weights,
``fine = Wy @ coarse @ Wx.T``, which runs through BLAS and costs about one operation per
fine pixel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def bilinear_weights(positions: npt.ArrayLike, n_coarse: int, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Dense ``(n_fine, n_coarse)`` linear-interpolation matrix.

    Parameters
    ----------
    positions : fractional coarse pixel index of each fine pixel centre (``0`` = centre of
        coarse pixel 0); values outside ``[0, n_coarse - 1]`` are clamped (constant extrapolation).
    n_coarse : number of coarse pixels along the axis.
    """
    p = np.clip(np.asarray(positions, dtype=np.float64), 0.0, max(n_coarse - 1, 0))
    w = np.zeros((p.size, n_coarse), dtype=dtype)
    if n_coarse == 1:
        w[:, 0] = 1
        return w
    i0 = np.minimum(np.floor(p).astype(np.int64), n_coarse - 2)
    frac = p - i0
    rows = np.arange(p.size)
    w[rows, i0] = 1.0 - frac
    w[rows, i0 + 1] = frac
    return w


def upsample(coarse: npt.ArrayLike, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Bilinear upsampling ``wy @ coarse @ wx.T`` (coarse must be NaN-free)."""
    c = np.asarray(coarse, dtype=wy.dtype)
    if wy.shape[0] * c.shape[1] <= c.shape[0] * wx.shape[0]:
        return (wy @ c) @ wx.T
    return wy @ (c @ wx.T)


def linear(toa: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``gain * toa - offset`` in float32 (inversion + adjacency, see :mod:`l2a.kernels.adjacency`)."""
    out = np.multiply(toa, gain, dtype=np.float32)
    out -= offset
    return out


def invert_adjacency(
    toa: np.ndarray,
    inv_tg: np.ndarray,
    rho_atm: np.ndarray,
    t_tot: np.ndarray,
    s: np.ndarray,
    m1: np.ndarray | None = None,
    m0: np.ndarray | None = None,
) -> np.ndarray:
    """Surface reflectance (float32) from TOA reflectance, with the adjacency correction.

    ``y = toa / tg - rho_atm``, ``u = y / (T_down T_up + S y)``, then (when ``m1``/``m0`` are
    given) ``rho = m1 u / (1 - S u) - m0`` (see :mod:`l2a.kernels.adjacency`). All arrays
    broadcast to ``toa``'s shape; NaN propagates. Works in place on temporaries to keep
    memory traffic low.
    """
    y = np.multiply(toa, inv_tg, dtype=np.float32)
    y -= rho_atm
    den = s * y
    den += t_tot
    y /= den  # y is now u
    if m1 is None or m0 is None:
        return y
    np.multiply(s, y, out=den)
    np.subtract(1.0, den, out=den)
    y *= m1
    y /= den
    y -= m0
    return y
