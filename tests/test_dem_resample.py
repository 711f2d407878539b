"""DEM resampling proved on analytic surfaces (constructed GeoTIFFs, no sample data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from l2a.dem import load_dem
from l2a.errors import InputError, MissingDataError
from l2a.io.dem import find_dem_files

UTM = "EPSG:32632"
#: Reference point of the planes (UTM 32N, near São Tomé), so that float32 keeps mm precision.
E0, N0 = 221_000.0, 37_000.0
#: Geographic source grid: 0.0001 deg (about 11 m), 400 x 400 px.
LON0, LAT0, RES_DEG, N_SRC = 6.48, 0.36, 0.0001, 400


def _write(
    path: Path, data: np.ndarray, transform: Affine, crs: str, nodata: float | None = None
) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def _plane(a: float, b: float, c: float):
    return lambda e, n: a * (np.asarray(e) - E0) + b * (np.asarray(n) - N0) + c


def _geographic_plane_dem(path: Path, plane) -> Path:
    """A plane defined in UTM, sampled at the lon/lat centres of a EPSG:4326 grid."""
    cols, rows = np.meshgrid(np.arange(N_SRC) + 0.5, np.arange(N_SRC) + 0.5)
    lon, lat = LON0 + cols * RES_DEG, LAT0 - rows * RES_DEG
    e, n = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
    return _write(
        path,
        plane(e, n).astype(np.float32),
        Affine(RES_DEG, 0, LON0, 0, -RES_DEG, LAT0),
        "EPSG:4326",
    )


def _utm_grid(res: float, size_m: float = 3840.0) -> GeoBox:
    """A tile-like UTM grid on the 240 m lattice, well inside the geographic source."""
    n = round(size_m / res)
    return GeoBox((n, n), Affine(res, 0, 220_080.0, 0, -res, 39_360.0), UTM)


def _centres(gb: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    t = gb.transform
    rows, cols = gb.shape
    c, r = np.meshgrid(np.arange(cols) + 0.5, np.arange(rows) + 0.5)
    return t.c + c * t.a, t.f + r * t.e


@pytest.mark.parametrize("a, b", [(0.05, -0.03), (0.4, 0.25), (-0.3, 0.6)])
@pytest.mark.parametrize("res", [10, 20, 240])
def test_geographic_plane_comes_back_as_the_plane_on_utm(
    tmp_path: Path, a: float, b: float, res: int
) -> None:
    plane = _plane(a, b, 800.0)
    src = _geographic_plane_dem(tmp_path / "plane.tif", plane)
    gb = _utm_grid(res)
    dem = load_dem(src, gb)
    assert dem.odc.geobox == gb
    e, n = _centres(gb)
    err = np.abs(dem.values - plane(e, n))
    interior = err[1:-1, 1:-1]
    assert np.isfinite(interior).all()
    assert interior.max() < 0.01, f"max error {interior.max():.4f} m at {res} m"
    assert not bool(dem.dem_fallback.any())


def test_plane_on_half_pixel_shifted_grid(tmp_path: Path) -> None:
    """A target lattice offset by an odd amount still samples the plane at its own centres."""
    plane = _plane(0.2, -0.1, 300.0)
    src = _geographic_plane_dem(tmp_path / "plane.tif", plane)
    gb = GeoBox((40, 40), Affine(30.0, 0, 220_095.0, 0, -30.0, 39_345.0), UTM)
    dem = load_dem(src, gb)
    e, n = _centres(gb)
    assert np.abs(dem.values - plane(e, n)).max() < 0.01


def test_block_mean_preserves_the_mean_of_a_random_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    field = rng.gamma(2.0, 300.0, size=(480, 720)).astype(np.float32)
    src = _write(tmp_path / "r.tif", field, Affine(10.0, 0, 300_000.0, 0, -10.0, 5_000_000.0), UTM)
    for res, k in [(20, 2), (240, 24)]:
        gb = GeoBox(
            (480 // k, 720 // k), Affine(float(res), 0, 300_000.0, 0, -float(res), 5_000_000.0), UTM
        )
        dem = load_dem(src, gb)
        rel = abs(
            float(dem.values.astype(np.float64).mean()) - float(field.astype(np.float64).mean())
        )
        assert rel / float(field.mean()) < 1e-6
        # each coarse pixel is the mean of its own k x k block
        expect = field.astype(np.float64).reshape(480 // k, k, 720 // k, k).mean(axis=(1, 3))
        np.testing.assert_allclose(dem.values, expect, rtol=1e-6)


@pytest.mark.parametrize("row, col", [(0, 0), (23, 24), (100, 37), (239, 359)])
def test_raised_pixel_lands_in_the_coarse_pixel_containing_its_centre(
    tmp_path: Path, row: int, col: int
) -> None:
    field = np.zeros((240, 360), dtype=np.float32)
    field[row, col] = 576.0
    src = _write(
        tmp_path / "spike.tif", field, Affine(10.0, 0, 300_000.0, 0, -10.0, 5_000_000.0), UTM
    )
    gb = GeoBox((10, 15), Affine(240.0, 0, 300_000.0, 0, -240.0, 5_000_000.0), UTM)
    dem = load_dem(src, gb).values
    hit = np.argwhere(dem != 0)
    assert hit.tolist() == [[row // 24, col // 24]]
    assert dem[row // 24, col // 24] == pytest.approx(576.0 / 24**2)


def test_raised_pixel_through_a_reprojection(tmp_path: Path) -> None:
    """A spike in a geographic DEM lands in the UTM pixel containing its projected centre."""
    field = np.zeros((N_SRC, N_SRC), dtype=np.float32)
    row, col = 217, 148
    field[row, col] = 1000.0
    src = _write(
        tmp_path / "spike.tif", field, Affine(RES_DEG, 0, LON0, 0, -RES_DEG, LAT0), "EPSG:4326"
    )
    lon, lat = LON0 + (col + 0.5) * RES_DEG, LAT0 - (row + 0.5) * RES_DEG
    e, n = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
    gb = _utm_grid(240)
    dem = load_dem(src, gb).values
    expect = (int((gb.transform.f - n) // 240), int((e - gb.transform.c) // 240))
    assert np.unravel_index(int(np.argmax(dem)), dem.shape) == expect
    # the spike's volume is preserved: 1000 m x source pixel area spread over 240 m pixels
    e0, n0 = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(
        [lon - RES_DEG / 2, lon + RES_DEG / 2], [lat - RES_DEG / 2, lat + RES_DEG / 2]
    )
    area = abs((e0[1] - e0[0]) * (n0[1] - n0[0]))
    assert float(dem.sum()) * 240.0**2 == pytest.approx(1000.0 * area, rel=0.02)


def test_refining_is_bilinear_and_centre_aligned(tmp_path: Path) -> None:
    """20 m source -> 10 m target on a shared lattice: centres fall on quarter points."""
    src_data = np.arange(30 * 30, dtype=np.float32).reshape(30, 30)
    src = _write(
        tmp_path / "s.tif", src_data, Affine(20.0, 0, 300_000.0, 0, -20.0, 5_000_000.0), UTM
    )
    gb = GeoBox((40, 40), Affine(10.0, 0, 300_100.0, 0, -10.0, 4_999_900.0), UTM)
    dem = load_dem(src, gb).values
    # target centre (i, j) sits at source pixel coordinates (5 + (i + 0.5) / 2 - 0.5, ...)
    i, j = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    rs, cs = 5 + (i + 0.5) / 2 - 0.5, 5 + (j + 0.5) / 2 - 0.5
    np.testing.assert_allclose(dem, rs * 30 + cs, atol=1e-3)


def test_folder_of_tiles_equals_the_single_file(tmp_path: Path) -> None:
    plane = _plane(0.1, 0.07, 500.0)
    whole = _geographic_plane_dem(tmp_path / "whole.tif", plane)
    tiles = tmp_path / "tiles"
    (tiles / "sub").mkdir(parents=True)
    with rasterio.open(whole) as ds:
        data = ds.read(1)
        for name, (r0, r1, c0, c1) in {
            "nw.tif": (0, 200, 0, 200),
            "ne.tif": (0, 200, 200, 400),
            "sub/sw.tif": (200, 400, 0, 200),
            "sub/se.TIF": (200, 400, 200, 400),
        }.items():
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            _write(tiles / name, data[r0:r1, c0:c1], ds.window_transform(win), "EPSG:4326")
    # a tile far away must not be needed (and is not an error)
    _write(
        tiles / "far.tif", data[:10, :10], Affine(RES_DEG, 0, 40.0, 0, -RES_DEG, 10.0), "EPSG:4326"
    )
    assert len(find_dem_files(tiles)) == 5
    for res in (20, 240):
        gb = _utm_grid(res)
        np.testing.assert_allclose(
            load_dem(tiles, gb).values, load_dem(whole, gb).values, atol=1e-4
        )


def test_missing_coverage_is_a_clear_error(tmp_path: Path) -> None:
    src = _geographic_plane_dem(tmp_path / "plane.tif", _plane(0.0, 0.0, 100.0))
    # a grid sticking out of the source to the east
    gb = GeoBox((20, 20), Affine(240.0, 0, 222_000.0, 0, -240.0, 39_360.0), UTM)
    with pytest.raises(MissingDataError) as info:
        load_dem(src, gb)
    msg = str(info.value)
    assert "plane.tif" in msg and "does not cover" in msg and "%" in msg and "sea" in msg
    # a grid nowhere near
    far = GeoBox((5, 5), Affine(240.0, 0, 600_000.0, 0, -240.0, 5_000_000.0), UTM)
    with pytest.raises(MissingDataError):
        load_dem(src, far)


def test_sea_level_fallback_is_flagged(tmp_path: Path) -> None:
    src = _geographic_plane_dem(tmp_path / "plane.tif", _plane(0.0, 0.0, 100.0))
    gb = GeoBox((20, 20), Affine(240.0, 0, 222_000.0, 0, -240.0, 39_360.0), UTM)
    dem = load_dem(src, gb, sea_level_fallback=True)
    flag = dem.dem_fallback.values
    assert flag.any() and not flag.all()
    assert 0 < dem.attrs["dem_fallback_fraction"] < 1
    assert np.isfinite(dem.values).all()
    np.testing.assert_allclose(dem.values[~flag], 100.0, atol=1e-3)
    # fully uncovered pixels are 0 m; partly covered ones are between 0 and 100
    assert (dem.values[flag] < 100.0).all() and (dem.values[flag] >= 0.0).all()
    assert (dem.values[flag] == 0.0).any()


def test_bad_sources(tmp_path: Path) -> None:
    gb = _utm_grid(240)
    with pytest.raises(InputError, match="not found"):
        load_dem(tmp_path / "nope.tif", gb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DEM file"):
        load_dem(tmp_path / "empty", gb)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00 not really a tiff")
    with pytest.raises(InputError, match=r"junk\.tif"):
        load_dem(junk, gb)


def test_nodata_hole_in_the_source(tmp_path: Path) -> None:
    """Source no-data (int16 -32768) counts as missing coverage, never as an elevation."""
    data = np.full((240, 360), 250, dtype=np.int16)
    data[100:148, 200:272] = -32768  # a hole of 480 m x 720 m: rows 100..147, cols 200..271
    src = _write(
        tmp_path / "hole.tif", data, Affine(10.0, 0, 300_000.0, 0, -10.0, 5_000_000.0), UTM, -32768
    )
    gb = GeoBox((20, 30), Affine(120.0, 0, 300_000.0, 0, -120.0, 5_000_000.0), UTM)
    with pytest.raises(MissingDataError, match=r"hole\.tif"):
        load_dem(src, gb)
    dem = load_dem(src, gb, sea_level_fallback=True)
    flag = dem.dem_fallback.values
    expect = np.zeros((20, 30), dtype=bool)
    expect[100 // 12 : 148 // 12 + 1, 200 // 12 : 272 // 12 + 1] = True
    np.testing.assert_array_equal(flag, expect)
    np.testing.assert_allclose(dem.values[~flag], 250.0)
    assert (dem.values[flag] < 250.0).all() and (dem.values[9:12, 17:22] == 0.0).all()
    # refining through a reprojection: the hole stays a hole (bilinear never invents values)
    gb10 = GeoBox((60, 80), Affine(10.0, 0, 301_805.0, 0, -10.0, 4_998_805.0), UTM)
    fine = load_dem(src, gb10, sea_level_fallback=True)
    flag10 = fine.dem_fallback.values
    assert 0.1 < flag10.mean() < 0.9
    assert (fine.values[flag10] == 0.0).all()
    np.testing.assert_allclose(fine.values[~flag10], 250.0)


def test_folder_with_tiles_of_different_resolutions(tmp_path: Path) -> None:
    """Like Copernicus DEM tiles above 50 N: the east tile has columns twice as wide."""
    plane = _plane(0.05, -0.04, 600.0)
    to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    half = N_SRC // 2
    for name, lon0, res_x, ncols in [
        ("w.tif", LON0, RES_DEG, half),
        ("e.tif", LON0 + half * RES_DEG, 2 * RES_DEG, half // 2),
    ]:
        cols, rows = np.meshgrid(np.arange(ncols) + 0.5, np.arange(N_SRC) + 0.5)
        e, n = to_utm.transform(lon0 + cols * res_x, LAT0 - rows * RES_DEG)
        transform = Affine(res_x, 0, lon0, 0, -RES_DEG, LAT0)
        _write(tiles / name, plane(e, n).astype(np.float32), transform, "EPSG:4326")
    gb = _utm_grid(20)
    dem = load_dem(tiles, gb)
    e, n = _centres(gb)
    err = np.abs(dem.values - plane(e, n))
    seam_e, _ = to_utm.transform(LON0 + half * RES_DEG, LAT0)
    near_seam = np.abs(e - seam_e) < 3 * 22.0
    assert np.isfinite(dem.values).all()
    assert err[~near_seam].max() < 0.01
    # at the seam the wider tile is read bilinearly onto the finer lattice without its
    # neighbour: an error below the plane's rise over one wide pixel
    assert err[near_seam].max() < 0.065 * 22.0


def test_vrt_source(tmp_path: Path) -> None:
    plane = _plane(0.1, -0.2, 400.0)
    tif = _geographic_plane_dem(tmp_path / "plane.tif", plane)
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(
        f"""<VRTDataset rasterXSize="{N_SRC}" rasterYSize="{N_SRC}">
  <SRS>EPSG:4326</SRS>
  <GeoTransform>{LON0}, {RES_DEG}, 0, {LAT0}, 0, {-RES_DEG}</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="1">{tif.name}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""
    )
    gb = _utm_grid(240)
    np.testing.assert_array_equal(load_dem(vrt, gb).values, load_dem(tif, gb).values)


def test_folder_with_two_crs_is_refused(tmp_path: Path) -> None:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    _geographic_plane_dem(tiles / "a.tif", _plane(0.0, 0.0, 1.0))
    utm = np.ones((400, 400), dtype=np.float32)
    _write(tiles / "b.tif", utm, Affine(10.0, 0, 219_000.0, 0, -10.0, 40_000.0), UTM)
    with pytest.raises(InputError, match="one CRS"):
        load_dem(tiles, _utm_grid(240))
