"""Lean band reads of :mod:`l2a.io.safe_read` on constructed tiled JPEG2000 files.

Native-resolution windows must open the file once, decode exactly the window (no extra
row/column that would touch the next JPEG2000 tile) and give exactly the float32 formula
``(DN + offset) / quantification`` (NaN for DN 0), whatever the strip size used internally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2a.io.safe_read import ReadSettings, dn_to_reflectance, read_resampled, read_toa

H, W, BLOCK = 300, 260, 64
OFFSET, QUANT = -1000.0, 10000.0


@pytest.fixture(scope="module")
def band(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A lossless, 64 px tiled, 3-level JPEG2000 band with no-data (0) and saturated DN."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(7)
    dn = rng.integers(1, 12000, size=(H, W), dtype=np.uint16)
    dn[:5] = 0  # no-data rows
    dn[100:140, 30:90] = 0  # no-data hole
    dn[200:204, 200:204] = 65535  # saturated
    path = tmp_path_factory.mktemp("jp2") / "band.jp2"
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=W, height=H, count=1, dtype="uint16",
        crs="EPSG:32631", transform=from_origin(300000, 5000000, 10, 10), REVERSIBLE=True,
        QUALITY=100, BLOCKXSIZE=BLOCK, BLOCKYSIZE=BLOCK, RESOLUTIONS=3,
    ) as out:
        out.write(dn[None])
    return path, dn


def _expected(dn: np.ndarray, r0: int, c0: int, h: int, w: int) -> np.ndarray:
    """Reference: float64 formula rounded to float32, NaN for no-data and outside the file."""
    out = np.full((h, w), np.nan, np.float32)
    rs, re_, cs, ce = max(r0, 0), min(r0 + h, dn.shape[0]), max(c0, 0), min(c0 + w, dn.shape[1])
    if re_ > rs and ce > cs:
        block = dn[rs:re_, cs:ce].astype(np.float64)
        ref = ((block + OFFSET) / QUANT).astype(np.float32)
        ref[block == 0] = np.nan
        out[rs - r0 : re_ - r0, cs - c0 : ce - c0] = ref
    return out


class _Spy:
    """Wraps ``rasterio.open``: counts opens and records read windows."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.opens: list[dict[str, Any]] = []
        self.windows: list[Any] = []

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        self.opens.append(kwargs)
        spy = self

        class _Proxy:
            def __init__(self, ds: Any) -> None:
                self._ds = ds

            def __enter__(self) -> _Proxy:
                return self

            def __exit__(self, *exc: object) -> None:
                self._ds.close()

            def read(self, *a: Any, **kw: Any) -> Any:
                spy.windows.append(kw.get("window"))
                return self._ds.read(*a, **kw)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._ds, name)

        return _Proxy(self.real(path, *args, **kwargs))


@pytest.mark.parametrize(
    ("r0", "c0", "h", "w"),
    [(0, 0, 128, 128), (64, 128, 64, 64), (7, 13, 50, 61), (250, 200, 80, 90), (-6, -3, 40, 30), (0, 0, H, W)],
)
@pytest.mark.parametrize("max_read_bytes", [64 * 2**20, 2 * W * BLOCK])
def test_native_window_exact(
    band: tuple[Path, np.ndarray], r0: int, c0: int, h: int, w: int, max_read_bytes: int
) -> None:
    path, dn = band
    got = read_toa(
        str(path), full_shape=(H, W), row0=float(r0), col0=float(c0), step=1.0, shape=(h, w), nodata=0,
        offset=OFFSET, quantification=QUANT, settings=ReadSettings(max_read_bytes=max_read_bytes),
    )
    assert got.dtype == np.float32 and got.shape == (h, w)
    np.testing.assert_array_equal(got, _expected(dn, r0, c0, h, w))
    mean, valid, sat = read_resampled(
        str(path), full_shape=(H, W), row0=float(r0), col0=float(c0), step=1.0, shape=(h, w), nodata=0,
        saturated=65535,
    )
    assert sat is not None
    np.testing.assert_array_equal(valid, np.isfinite(got))
    ref_dn = np.zeros((h, w), np.int64) - 1
    rs, re_, cs, ce = max(r0, 0), min(r0 + h, H), max(c0, 0), min(c0 + w, W)
    ref_dn[rs - r0 : re_ - r0, cs - c0 : ce - c0] = dn[rs:re_, cs:ce]
    np.testing.assert_array_equal(sat, ref_dn == 65535)
    np.testing.assert_array_equal(mean[valid], ref_dn[valid])


def test_one_open_and_exact_window(band: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    import rasterio

    path, _ = band
    spy = _Spy(rasterio.open)
    monkeypatch.setattr(rasterio, "open", spy)
    read_toa(str(path), full_shape=(H, W), row0=64.0, col0=128.0, step=1.0, shape=(128, 64), nodata=0,
             offset=OFFSET, quantification=QUANT)
    assert len(spy.opens) == 1 and spy.opens[0] == {}
    (win,) = spy.windows  # one read of exactly the window: 2 x 1 tiles, none of their neighbours
    assert (win.row_off, win.col_off, win.height, win.width) == (64, 128, 128, 64)
    # whole tile rows per strip when the buffer limit is small, each tile decoded once
    spy.opens.clear()
    spy.windows.clear()
    read_toa(str(path), full_shape=(H, W), row0=0.0, col0=0.0, step=1.0, shape=(H, W), nodata=0,
             offset=OFFSET, quantification=QUANT, settings=ReadSettings(max_read_bytes=2 * W * BLOCK))
    assert len(spy.opens) == 1
    assert [(w.row_off, w.height) for w in spy.windows] == [(0, 64), (64, 64), (128, 64), (192, 64), (256, 44)]
    # coarse read with the level count known: one open, at the reduced level
    spy.opens.clear()
    read_toa(str(path), full_shape=(H, W), row0=0.0, col0=0.0, step=4.0, shape=(75, 65), nodata=0,
             offset=OFFSET, quantification=QUANT, n_overviews=2)
    assert spy.opens == [{"overview_level": 0}]


def test_finer_grid_replicates(band: tuple[Path, np.ndarray]) -> None:
    path, dn = band
    native = _expected(dn, 0, 0, H, W)
    for k, (r0, c0) in ((2, (10.5, 3.0)), (3, (0.0, 1 / 3))):
        shape = (60, 70)
        got = read_toa(str(path), full_shape=(H, W), row0=r0, col0=c0, step=1 / k, shape=shape, nodata=0,
                       offset=OFFSET, quantification=QUANT)
        rows = (round(r0 * k) + np.arange(shape[0])) // k
        cols = (round(c0 * k) + np.arange(shape[1])) // k
        np.testing.assert_array_equal(got, native[np.ix_(rows, cols)])


def test_coarse_grid_block_mean(band: tuple[Path, np.ndarray]) -> None:
    """Step 2 at full resolution: 2 x 2 means of valid pixels, no-data below half coverage."""
    path, dn = band
    got = read_toa(str(path), full_shape=(H, W), row0=0.0, col0=0.0, step=2.0, shape=(H // 2, W // 2),
                   nodata=0, offset=OFFSET, quantification=QUANT)
    assert got.dtype == np.float32
    blocks = dn.astype(np.float64).reshape(H // 2, 2, W // 2, 2)
    ok = blocks != 0
    n = ok.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, blocks, 0).sum(axis=(1, 3)) / n
    ref = np.where(n >= 2, (mean + OFFSET) / QUANT, np.nan)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_dn_to_reflectance_matches_float64() -> None:
    dn = np.arange(0, 65536, dtype=np.uint16).reshape(256, 256)
    out = np.empty(dn.shape, np.float32)
    got = dn_to_reflectance(dn, 0, OFFSET, QUANT, out=out)
    assert got is out
    ref = ((dn.astype(np.float64) + OFFSET) / QUANT).astype(np.float32)
    ref[0, 0] = np.nan
    np.testing.assert_array_equal(got, ref)


def test_gdal_threads_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from l2a.io.safe_read import gdal_env

    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    assert gdal_env() == {"GDAL_NUM_THREADS": "ALL_CPUS"}  # alone in the main thread
    with ThreadPoolExecutor(1) as pool:  # a dask-like worker thread: one thread per task
        assert pool.submit(gdal_env).result() == {"GDAL_NUM_THREADS": "1"}
    monkeypatch.setenv("GDAL_NUM_THREADS", "3")
    assert gdal_env() == {"GDAL_NUM_THREADS": "3"}
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(gdal_env).result() == {"GDAL_NUM_THREADS": "3"}


def test_load_toa_equals_lazy_toa(sample_path: Any) -> None:
    from l2a.io.safe import open_safe

    p = open_safe(sample_path(
        "alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE"
    ))
    for res, chunks in ((10, 16), (20, 2048), (60, 2048)):
        lazy = p.toa(["B02", "B05", "B01"], res, chunks=chunks)
        eager = p.load_toa(["B02", "B05", "B01"], res, chunks=chunks)
        for name in ("B02", "B05", "B01"):
            assert isinstance(eager[name].data, np.ndarray) and eager[name].dtype == np.float32
            assert eager[name].attrs == lazy[name].attrs
            np.testing.assert_array_equal(eager[name].values, lazy[name].values)
        assert eager.odc.geobox == lazy.odc.geobox
        assert set(eager.attrs) == set(lazy.attrs)
