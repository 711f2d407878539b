"""The per-date chain on the real Slovenia SAFE series: modes, composite, terrain, cloudy dates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio

from l2a.chain.process import ChainSettings, composite_file, process_date
from l2a.errors import InputError
from l2a.masks import Composite

pytestmark = pytest.mark.sample_data


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> list[Path]:
    from l2a.testing.series import slovenia_safe_series

    return slovenia_safe_series(tmp_path_factory.mktemp("inbox"))


@pytest.fixture(scope="module")
def dem(sample_path: Callable[[str], Path]) -> Path:
    return sample_path("slovenia_T33_summer2015/DEM.tif")


def test_series_init_then_nominal(series: list[Path], dem: Path, tmp_path: Path) -> None:
    out, comps = tmp_path / "products", tmp_path / "composites"
    r1 = process_date(series[0], composite_path=None, dem_source=dem, out_dir=out, composite_dir=comps, mode="INIT")
    assert r1.mode == "INIT" and r1.reflectance
    assert r1.composite_path == composite_file(comps, "33TVL", r1.sensing_time)
    assert 0.0 < r1.dem_fallback_fraction < 0.2  # the DEM covers the data, not the no-data margin
    # every file of the product is there with the checksum the result announces
    for f in r1.product.files:
        assert (r1.product.path / f.path).stat().st_size == f.size
    assert not any(p.name.endswith(".partial") for p in out.iterdir())
    c1 = Composite.load(r1.composite_path)
    assert c1.n_dates == 1 and "sre_B04" in c1.extra  # the correction's layers travel too
    # the 2015-07-31 date is fully cloudy: masks and metadata only (Theia's rule)
    r2 = process_date(series[1], composite_path=r1.composite_path, dem_source=dem, out_dir=out, composite_dir=comps)
    assert r2.mode == "NOMINAL" and r2.cloud_cover > 90 and not r2.reflectance
    kinds = {f.kind for f in r2.product.files}
    assert "SRE" not in kinds and {"CLM", "MG2", "MTD", "QKL"} <= kinds
    c2 = Composite.load(r2.composite_path)
    assert c2.n_dates == 2 and c2.last_date > c1.last_date


def test_backward_builds_the_composite_from_later_dates(series: list[Path], tmp_path: Path) -> None:
    r = process_date(series[0], composite_path=None, dem_source=None, out_dir=tmp_path / "p",
                     composite_dir=tmp_path / "c", mode="BACKWARD", backward_sources=series[1:])
    assert r.mode == "BACKWARD"
    comp = Composite.load(r.composite_path)
    # the composite went through the 4 later dates (reverse) then this one
    assert comp.n_dates == 5
    assert r.dem_fallback_fraction == 1.0 and any("sea level" in n for n in r.notes)


def test_no_composite_runs_as_init(series: list[Path], tmp_path: Path) -> None:
    r = process_date(series[3], composite_path=None, dem_source=None, out_dir=tmp_path, mode="NOMINAL")
    assert r.mode == "INIT" and any("INIT" in n for n in r.notes)
    # default composite folder: beside the products folder
    assert r.composite_path.parent.parent == tmp_path.parent / "composites"


def test_large_inputs_take_the_masks_at_reduced_resolution(series: list[Path], tmp_path: Path) -> None:
    s = replace(ChainSettings(), masks_full_resolution_max_pixels=0)  # treat the crop as a whole tile
    r = process_date(series[3], composite_path=None, dem_source=None, out_dir=tmp_path, settings=s, mode="INIT")
    f = r.product.file("CLM", "R1")
    with rasterio.open(r.product.path / f.path) as src:
        clm = src.read(1)
        assert (src.height, src.width) == r.product.info.grids["R1"][0]
    # masks made at 60 m come back on the 10 m grid as 6 x 6 blocks
    assert np.array_equal(clm[::6, ::6].repeat(6, 0).repeat(6, 1)[: clm.shape[0], : clm.shape[1]], clm)


def test_bad_mode_and_missing_tile(series: list[Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown mode"):
        process_date(series[0], composite_path=None, dem_source=None, out_dir=tmp_path, mode="SIDEWAYS")
    with pytest.raises(InputError):
        process_date(tmp_path / "nothing.SAFE", composite_path=None, dem_source=None, out_dir=tmp_path)
