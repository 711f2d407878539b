"""The per-date chain on the real Slovenia SAFE series: modes, composite, terrain, cloudy dates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

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


# --- SAT/EDG carried from the correction's TOA read instead of a second decoding by quality()


def _assert_same_quality(carried: Any, ref: Any) -> None:
    assert carried is not None
    assert set(carried.data_vars) == set(ref.data_vars)
    for k in ref.data_vars:
        np.testing.assert_array_equal(carried[k].values, ref[k].values, err_msg=k)


@pytest.fixture(scope="module")
def special_safe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SAFE (baseline 05.10, offset -1000) whose DN have saturated (65535) and no-data (0) pixels
    in different places for every band, including a no-data margin, at native 10/20 m."""
    from datetime import UTC, datetime

    from affine import Affine
    from odc.geo.geobox import GeoBox

    from l2a.grid import tile_geobox
    from l2a.sensors.sentinel2 import BAND_NAMES, BY_NAME
    from l2a.testing.safe_writer import band_geobox, write_safe

    tile = tile_geobox("33TVL", 10)
    g10 = GeoBox((120, 180), Affine(10.0, 0.0, tile.affine.c + 600.0, 0.0, -10.0, tile.affine.f - 1200.0), tile.crs)
    rng = np.random.default_rng(11)
    dn = {}
    for i, b in enumerate(BAND_NAMES):
        shape = tuple(band_geobox(g10, BY_NAME[b].resolution).shape)
        a = rng.integers(1500, 9000, shape).astype(np.uint16)
        a[rng.random(shape) < 0.02 + 0.005 * i] = 65535  # saturated
        a[rng.random(shape) < 0.01] = 0  # scattered no-data
        a[:, : 1 + i % 3] = 0  # a no-data margin, different per band
        a[-1, -1] = 65534  # the DN just below saturation is not saturated
        dn[b] = a
    return write_safe(tmp_path_factory.mktemp("special"), dn, g10, datetime(2020, 6, 1, 10, 0, 0, tzinfo=UTC), tile_id="33TVL")


def test_carried_quality_equals_quality_constructed(special_safe: Path) -> None:
    from l2a.io import open_l1c
    from l2a.io.lazy import quality_from_toa
    from l2a.io.muscate import GROUPS

    l1c = open_l1c(special_safe)
    assert l1c.metadata.radio_offsets  # offset -1000: the saturated reflectance is (65535 - 1000) / 10000
    for bands, res in GROUPS.values():
        ref = l1c.quality(list(bands), res)
        assert all(int(ref[f"saturation_{b}"].values.sum()) > 0 for b in bands) and int(ref["nodata"].values.sum()) > 0
        _assert_same_quality(quality_from_toa(l1c.toa(list(bands), res, chunks=64), l1c), ref)
    # 20 m bands on the 10 m grid: replicated sub-pixels, still exact
    r2 = list(GROUPS["R2"][0])
    _assert_same_quality(quality_from_toa(l1c.toa(r2, 10), l1c), l1c.quality(r2, 10))
    # 10 m bands averaged onto 20 m: not derivable from the TOA, left to quality()
    assert quality_from_toa(l1c.toa(list(GROUPS["R1"][0]), 20), l1c) is None


def test_carried_quality_equals_quality_real(series: list[Path], sample_path: Callable[[str], Path]) -> None:
    from l2a.io import open_l1c
    from l2a.io.lazy import quality_from_toa
    from l2a.io.muscate import GROUPS

    safes = sorted(sample_path("alcd_toulouse_T31TCJ/safe").glob("*.SAFE")) + series[:2]
    for safe in safes:
        l1c = open_l1c(safe)
        for gname, (bands, res) in GROUPS.items():
            carried = quality_from_toa(l1c.toa(list(bands), res), l1c)
            if "T31TCJ" in safe.name and gname == "R2":
                # the Toulouse crops store every band at 10 m: the 20 m grid averages, quality() decides
                assert carried is None
            else:
                _assert_same_quality(carried, l1c.quality(list(bands), res))


@pytest.mark.parametrize("joint_bytes", [64 * 1024 * 1024, 0], ids=["in-memory", "block-by-block"])
def test_process_date_carries_sat_edg(special_safe: Path, tmp_path: Path, joint_bytes: int) -> None:
    """The chain writes SAT/EDG from its TOA read: quality() is never called, the bits are quality()'s
    (on both COG paths: small sets from memory, whole tiles through staging files)."""
    from l2a.io import open_l1c
    from l2a.io.cog import CogSettings
    from l2a.io.muscate import GROUPS, PackageSettings

    l1c = open_l1c(special_safe)
    reference = {g: l1c.quality(list(b), r).compute() for g, (b, r) in GROUPS.items()}

    def no_second_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("quality() called: SAT/EDG were not carried")

    l1c.quality = no_second_read  # type: ignore[method-assign]
    s = replace(ChainSettings(), max_cloud_cover=100.0, package=PackageSettings(cog=CogSettings(joint_compute_bytes=joint_bytes)))
    r = process_date(l1c, composite_path=None, dem_source=None, out_dir=tmp_path, settings=s, mode="INIT")
    assert r.reflectance
    for gname, (bands, _) in GROUPS.items():
        with rasterio.open(r.product.path / r.product.file("SAT", gname).path) as src:
            sat = src.read(1)
        with rasterio.open(r.product.path / r.product.file("EDG", gname).path) as src:
            edg = src.read(1)
        q = reference[gname]
        expected = sum((q[f"saturation_{b}"].values.astype(np.uint8) << i) for i, b in enumerate(bands))
        np.testing.assert_array_equal(sat, expected)
        np.testing.assert_array_equal(edg, q["nodata"].values.astype(np.uint8))
        assert sat.any() and edg.any()
    assert not any("SAT_" in n for n in r.product.info.notes)
