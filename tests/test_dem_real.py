"""DEM preparation on the real DEMs of the sample data (Copernicus COG, EPSG:4326, UTM)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
import rasterio.windows
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from l2a.dem import load_dem, terrain

pytestmark = pytest.mark.sample_data

COP = "riotilerpds_fixtures/copernicus_dem/Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"
TEXAS = "dem_pysheds_texas/dem.tif"
SLOVENIA = "slovenia_T33_summer2015/DEM.tif"


def _grid(crs: str, left: float, top: float, res: float, width_m: float, height_m: float) -> GeoBox:
    return GeoBox(
        (round(height_m / res), round(width_m / res)), Affine(res, 0, left, 0, -res, top), crs
    )


def _direct_mean(path: Path, gb: GeoBox) -> tuple[float, float, float]:
    """Mean, min and max of the source pixels whose centres fall inside the target grid."""
    with rasterio.open(path) as ds:
        bounds = rasterio.warp.transform_bounds(
            gb.crs.to_wkt(), ds.crs, *gb.boundingbox, densify_pts=64
        )
        win = (
            rasterio.windows.from_bounds(*bounds, transform=ds.transform)
            .round_offsets()
            .round_lengths()
        )
        win = rasterio.windows.Window(
            win.col_off - 2, win.row_off - 2, win.width + 4, win.height + 4
        )
        win = win.intersection(rasterio.windows.Window(0, 0, ds.width, ds.height))
        z = ds.read(1, masked=True, window=win).astype(np.float64)
        rows, cols = np.meshgrid(
            np.arange(z.shape[0]) + 0.5, np.arange(z.shape[1]) + 0.5, indexing="ij"
        )
        x, y = ds.window_transform(win) * (cols, rows)
        tx, ty = Transformer.from_crs(ds.crs, gb.crs.to_wkt(), always_xy=True).transform(x, y)
    left, bottom, right, top = gb.boundingbox
    inside = (tx > left) & (tx < right) & (ty > bottom) & (ty < top) & ~np.ma.getmaskarray(z)
    vals = np.asarray(z)[inside]
    return float(vals.mean()), float(vals.min()), float(vals.max())


def _coarse_of_fine(fine: np.ndarray, k: int) -> np.ndarray:
    r, c = fine.shape[0] // k, fine.shape[1] // k
    return fine[: r * k, : c * k].reshape(r, k, c, k).mean(axis=(1, 3))


# São Tomé island, UTM 32N: lon 6.44..6.78 E, lat 0.002..0.44 N (inside the 1 x 1 degree COG)
SAO_TOME = {
    "crs": "EPSG:32632",
    "left": 214_080.0,
    "top": 48_960.0,
    "width_m": 39_840.0,
    "height_m": 48_720.0,
}


@pytest.fixture(scope="module")
def sao_tome(sample_path: Callable[[str], Path]) -> dict[int, object]:
    path = sample_path(COP)
    return {res: load_dem(path, _grid(res=res, **SAO_TOME)) for res in (20, 240)}  # type: ignore[arg-type]


def test_sao_tome_copernicus_to_utm(sample_path: Callable[[str], Path], sao_tome: dict) -> None:
    path = sample_path(COP)
    fine, coarse = sao_tome[20], sao_tome[240]
    for dem in (fine, coarse):
        assert np.isfinite(dem.values).all()
        assert not bool(dem.dem_fallback.any())
        assert dem.attrs["dem_fallback_fraction"] == 0.0
    mean, lo, hi = _direct_mean(path, coarse.odc.geobox)
    # averaging never leaves the source's range; the island's summit survives at 20 m
    assert lo - 1e-3 <= float(coarse.min()) and float(coarse.max()) <= hi + 1e-3
    assert lo - 1e-3 <= float(fine.min()) and float(fine.max()) <= hi + 1e-3
    assert float(fine.max()) > 1850.0 and float(coarse.max()) > 1400.0
    # the area mean equals the mean of the source pixels inside the footprint (about 320 m over
    # 40 x 49 km); the edge band of half a source pixel is all sea (0 m), so the match is tight
    assert float(coarse.values.mean()) == pytest.approx(mean, rel=1e-3)
    assert float(fine.values.mean()) == pytest.approx(mean, rel=1e-3)
    # coarse pixels are the area means of the fine ones (two independent paths through GDAL)
    diff = _coarse_of_fine(fine.values.astype(np.float64), 12) - coarse.values
    assert np.sqrt(np.mean(diff**2)) < 1.0
    assert np.abs(diff).max() < 15.0


def test_sao_tome_terrain(sao_tome: dict) -> None:
    coarse = sao_tome[240]
    ds = terrain(coarse, sun_zenith=70.0, sun_azimuth=60.0)
    sea = ds.elevation.values == 0.0
    # open sea: every pixel of a 5 x 5 neighbourhood at 0 m
    from scipy import ndimage

    open_sea = ndimage.binary_erosion(sea, np.ones((5, 5), bool), border_value=0)
    assert open_sea.sum() > 10_000
    assert float(ds.slope.values[open_sea].max()) < 1e-6
    land = ds.elevation.values > 100.0
    assert float(ds.slope.values[land].mean()) > 5.0
    assert float(ds.slope.values.max()) < 60.0
    # a low sun from the north-east shadows some island slopes, not the open sea
    assert 0.0 < float(ds.cast_shadow.values[land].mean()) < 0.5
    assert not ds.cast_shadow.values[open_sea].any()
    assert not ds.hidden_faces.values.any()
    assert float(ds.sky_view.min()) >= 0.5 and float(ds.sky_view.max()) == pytest.approx(1.0)


@pytest.mark.parametrize("res", [20, 240])
def test_texas_epsg4326_to_utm(sample_path: Callable[[str], Path], res: int) -> None:
    path = sample_path(TEXAS)
    gb = _grid("EPSG:32614", 642_480.0, 3_632_160.0, res, 27_840.0, 32_160.0)
    dem = load_dem(path, gb)
    assert np.isfinite(dem.values).all() and not bool(dem.dem_fallback.any())
    mean, lo, hi = _direct_mean(path, gb)
    assert lo - 1e-3 <= float(dem.min()) and float(dem.max()) <= hi + 1e-3
    assert float(dem.min()) >= 147.0 and float(dem.max()) <= 298.0
    assert float(dem.values.mean()) == pytest.approx(mean, rel=2e-4)
    slope = terrain(dem, 40.0, 150.0).slope.values
    assert np.isfinite(slope).all() and float(np.median(slope)) < 5.0  # gently rolling plains


def test_texas_block_means_agree(sample_path: Callable[[str], Path]) -> None:
    path = sample_path(TEXAS)
    fine = load_dem(path, _grid("EPSG:32614", 642_480.0, 3_632_160.0, 20, 27_840.0, 32_160.0))
    coarse = load_dem(path, _grid("EPSG:32614", 642_480.0, 3_632_160.0, 240, 27_840.0, 32_160.0))
    diff = _coarse_of_fine(fine.values.astype(np.float64), 12) - coarse.values
    assert np.sqrt(np.mean(diff**2)) < 0.5


@pytest.mark.parametrize(
    "res, left, top, size",
    [(20, 465_200.0, 5_080_240.0, 960.0), (240, 465_360.0, 5_080_080.0, 720.0)],
)
def test_slovenia_utm_to_20_and_240(
    sample_path: Callable[[str], Path], res: int, left: float, top: float, size: float
) -> None:
    path = sample_path(SLOVENIA)
    gb = _grid("EPSG:32633", left, top, res, size, size)
    dem = load_dem(path, gb)
    assert np.isfinite(dem.values).all()
    mean, _, _ = _direct_mean(path, gb)
    assert float(dem.min()) >= 664.0 and float(dem.max()) <= 801.0  # the source's range
    assert float(dem.values.mean()) == pytest.approx(mean, rel=1e-3)
    if res == 240:
        # each 240 m pixel against the mean of the 10 m source pixels whose centres it contains
        with rasterio.open(path) as ds:
            z = ds.read(1).astype(np.float64)
            rows, cols = np.meshgrid(
                np.arange(ds.height) + 0.5, np.arange(ds.width) + 0.5, indexing="ij"
            )
            x, y = ds.transform * (cols, rows)
        for (i, j), value in np.ndenumerate(dem.values):
            x0, y0 = gb.transform * (j, i)
            inside = (x > x0) & (x < x0 + res) & (y < y0) & (y > y0 - res)
            assert value == pytest.approx(z[inside].mean(), abs=1.0)
    ds_t = terrain(dem, 35.0, 160.0)
    assert float(ds_t.slope.max()) < 45.0
