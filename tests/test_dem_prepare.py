"""``l2a dem prepare`` / prepare_tile on a real tile (32NKF, São Tomé) with the Copernicus COG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from typer.testing import CliRunner

from l2a.cli import app
from l2a.dem import prepare_tile
from l2a.errors import MissingDataError
from l2a.grid import tile_geobox
from l2a.kernels.terrain import slope_aspect

COP = "riotilerpds_fixtures/copernicus_dem/Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"
#: The 32N tile holding 6.5 E 0.3 N (UTM 32N easting 221.7 km, northing 33.2 km):
#: eastings 199980..309780, northings -9780..100020, i.e. about 6.30..7.29 E, -0.09..0.90 N.
TILE = "T32NKF"


def test_tile_choice() -> None:
    e, n = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(6.5, 0.3)
    left, bottom, right, top = tile_geobox(TILE, 10).boundingbox
    assert left < e < right and bottom < n < top


@pytest.fixture(scope="module")
def prepared(
    sample_path: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """Run the CLI once on the full tile (about 20 s: the 10 m grid is 10980 x 10980)."""
    out = tmp_path_factory.mktemp("dem32NKF")
    result = CliRunner().invoke(
        app,
        [
            "dem", "prepare", "--tile", TILE, "--source", str(sample_path(COP)),
            "--out", str(out), "--coarse", "240", "--sea-level-fallback",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
@pytest.mark.sample_data
def test_cli_prepare_writes_the_tile_grids(prepared: tuple[Path, str]) -> None:
    out, output = prepared
    names = {p.name for p in out.iterdir()}
    for res in (10, 20, 240):
        for kind in ("elevation", "slope", "aspect", "dem_fallback"):
            assert f"{kind}_{res}m.tif" in names
            assert str(out / f"{kind}_{res}m.tif") in output.replace("\n", "")
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"
    for res in (10, 20, 240):
        gb = tile_geobox(TILE, res)
        with rasterio.open(out / f"elevation_{res}m.tif") as ds:
            assert ds.crs.to_epsg() == 32632
            assert ds.transform.almost_equals(gb.transform, precision=1e-9)
            assert (ds.height, ds.width) == gb.shape
            assert ds.profile["tiled"] and ds.compression is not None
            assert 0.0 < float(ds.tags()["L2A_DEM_FALLBACK_FRACTION"]) < 1.0


@pytest.mark.slow
@pytest.mark.sample_data
def test_cli_prepare_values(prepared: tuple[Path, str]) -> None:
    out, _ = prepared
    with rasterio.open(out / "elevation_240m.tif") as ds:
        z = ds.read(1)
        t = ds.transform
    with rasterio.open(out / "slope_240m.tif") as ds:
        slope = ds.read(1)
    with rasterio.open(out / "aspect_240m.tif") as ds:
        aspect = ds.read(1)
    with rasterio.open(out / "dem_fallback_240m.tif") as ds:
        fallback = ds.read(1).astype(bool)
    assert np.isfinite(z).all() and np.isfinite(slope).all() and np.isfinite(aspect).all()
    assert z.min() > -10.0 and 1400.0 < z.max() < 1977.0  # Pico de São Tomé in GLO-30
    assert (aspect >= 0).all() and (aspect < 360).all() and slope.max() < 60.0
    # the fallback covers exactly what lies east of 7 E or south of 0 N (outside the COG)
    rows, cols = np.meshgrid(
        np.arange(z.shape[0]) + 0.5, np.arange(z.shape[1]) + 0.5, indexing="ij"
    )
    e, n = t * (cols, rows)
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(e, n)
    far_outside = (lon > 7.0 + 0.002) | (lat < 0.0 - 0.002)
    far_inside = (lon < 7.0 - 0.002) & (lat > 0.0 + 0.002)
    assert fallback[far_outside].all() and not fallback[far_inside].any()
    assert (z[far_outside] == 0.0).all()  # sea level; partly covered pixels mix in the DEM
    # slope and aspect written strip by strip equal those of the whole elevation grid
    ref_slope, ref_aspect = slope_aspect(z, 240.0, 240.0)
    np.testing.assert_allclose(slope, ref_slope, atol=1e-4)
    np.testing.assert_allclose(aspect, ref_aspect, atol=1e-3)
    # the 10 m and 20 m grids agree with the 240 m one on the island
    with rasterio.open(out / "elevation_20m.tif") as ds:
        z20 = ds.read(1)
    blocks = z20[: 457 * 12, : 457 * 12].reshape(457, 12, 457, 12).mean(axis=(1, 3))
    assert np.sqrt(np.mean((blocks - z[:457, :457]) ** 2)) < 1.0
    # across a strip boundary at 20 m (rows 3071 | 3072), on the island's slopes
    window = rasterio.windows.Window(1000, 3066, 300, 12)
    with rasterio.open(out / "slope_20m.tif") as ds:
        slope20 = ds.read(1, window=window)
    halo = rasterio.windows.Window(1000 - 1, 3066 - 1, 302, 14)
    with rasterio.open(out / "elevation_20m.tif") as ds:
        ref20, _ = slope_aspect(ds.read(1, window=halo), 20.0, 20.0)
    assert slope20.max() > 5.0
    np.testing.assert_allclose(slope20, ref20[1:-1, 1:-1], atol=1e-4)
    with rasterio.open(out / "elevation_10m.tif") as ds:
        # a 2.4 km window on the island's slopes, read from the 10 m file
        window = rasterio.windows.Window(3000, 6000, 240, 240)
        z10 = ds.read(1, window=window)
        row0, col0 = 6000 // 24, 3000 // 24
    coarse10 = z10.reshape(10, 24, 10, 24).mean(axis=(1, 3))
    assert z10.max() > 100.0
    np.testing.assert_allclose(coarse10, z[row0 : row0 + 10, col0 : col0 + 10], atol=3.0)


@pytest.mark.sample_data
def test_cli_missing_coverage_fails_cleanly(
    sample_path: Callable[[str], Path], tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "dem",
            "prepare",
            "--tile",
            TILE,
            "--source",
            str(sample_path(COP)),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "does not cover" in result.output and "sea-level-fallback" in result.output.replace(
        "\n", ""
    )
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.sample_data
def test_prepare_tile_far_from_the_dem(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="31TCJ"):
        prepare_tile("31TCJ", sample_path(COP), tmp_path)
    # with the fallback, the whole tile is sea level and flagged (coarse grid only, for speed)
    written = prepare_tile(
        "31TCJ", sample_path(COP), tmp_path, sea_level_fallback=True, resolutions=[240]
    )
    assert [p.name for p in written] == [
        "elevation_240m.tif", "slope_240m.tif", "aspect_240m.tif", "dem_fallback_240m.tif",
    ]  # fmt: skip
    with rasterio.open(written[0]) as ds:
        assert (ds.read(1) == 0).all()
    with rasterio.open(written[-1]) as ds:
        assert ds.read(1).all()
