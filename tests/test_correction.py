"""The correction chain step on the real Slovenia scenes (and constructed terrain)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from l2a.chain.correction import (
    ATB_AOT_SCALE,
    ATB_WATER_VAPOUR_SCALE,
    REFLECTANCE_NODATA,
    correct,
    group,
)
from l2a.errors import MissingDataError
from l2a.sensors.sentinel2 import BY_NAME, MUSCATE_BANDS

pytestmark = pytest.mark.sample_data


def _terrain(l1c: Any, dem_path: Path) -> xr.Dataset:
    import rasterio
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import wrap_xr

    from l2a.dem import terrain

    with rasterio.open(dem_path) as src:
        z = src.read(1).astype(np.float32)
        g = GeoBox(z.shape, src.transform, f"EPSG:{src.crs.to_epsg()}")
    el = wrap_xr(z, g)
    el.name = "elevation"
    md = l1c.metadata
    return terrain(el, md.mean_sun_zenith, md.mean_sun_azimuth)


@pytest.fixture(scope="module")
def scene(sample_path: Callable[[str], Path], aux_data: Path) -> dict[str, Any]:
    from l2a.io.scenes import open_scene

    l1c = open_scene("slovenia:2015-07-11")
    ter = _terrain(l1c, sample_path("slovenia_T33_summer2015/DEM.tif"))
    ds, _ = correct(l1c, None, None, ter)
    return {"l1c": l1c, "terrain": ter, "ds": ds.compute()}


def test_products_and_encodings(scene: dict[str, Any]) -> None:
    ds = scene["ds"]
    for b in MUSCATE_BANDS:
        name = BY_NAME[b].muscate_name
        for kind in ("SRE", "FRE"):
            v = ds[f"{kind}_{name}"]
            assert v.dtype == np.int16
            assert v.attrs["nodata"] == REFLECTANCE_NODATA
            assert v.dims == (("y", "x") if b in ("B02", "B03", "B04", "B08") else ("y_r2", "x_r2"))
    assert ds["SRE_B2"].shape == (101, 100) and ds["SRE_B12"].shape == (51, 50)
    assert ds["ATB_R1"].dtype == np.uint8 and ds["ATB_R1"].shape == (2, 101, 100)
    assert ds["ATB_R2"].shape == (2, 51, 50) and ds["IAB_R2"].dtype == np.uint8
    # ATB: value / 20 = g/cm2, value / 200 = AOT, consistent with the working-grid fields
    wv, aot = ds["water_vapour"].values, ds["aot"].values
    atb_wv = ds["ATB_R1"].sel(atb="water_vapour").values / ATB_WATER_VAPOUR_SCALE
    atb_aot = ds["ATB_R1"].sel(atb="aot").values / ATB_AOT_SCALE
    assert wv.min() - 0.05 <= atb_wv.min() and atb_wv.max() <= wv.max() + 0.05
    assert aot.min() - 0.005 <= atb_aot.min() and atb_aot.max() <= aot.max() + 0.005
    # grids attach for writing
    r2 = group(ds, "R2")
    assert r2.odc.geobox.shape == (51, 50) and "SRE_B8A" in r2 and "ATB_R2" in r2


def test_physically_plausible_on_clear_slovenia(scene: dict[str, Any]) -> None:
    ds = scene["ds"]
    assert 0.03 < float(ds["aot"].mean()) < 0.4
    assert 0.5 < float(ds["water_vapour"].mean()) < 4.0
    assert 880 < float(ds["pressure"].mean()) < 950  # 664-801 m
    # a clear scene: (almost) every AOT and water-vapour value is a direct estimate
    assert ds["aot_interpolated"].values.mean() < 0.1 and ds["water_vapour_interpolated"].values.mean() < 0.1
    assert (ds["IAB_R1"].values == 0).mean() > 0.8
    red = ds["SRE_B4"].values / 1e4
    nir = ds["SRE_B8"].values / 1e4
    forest = (nir - red) / (nir + red) > 0.8
    assert forest.sum() > 1000
    # vegetation: dark red, red edge, bright NIR; no no-data on a full scene
    assert np.median(red[forest]) < 0.03 and np.median(nir[forest]) > 0.2
    r2 = group(ds, "R2")
    med = {b: float(np.median(r2[f"SRE_{b}"].values)) for b in ("B5", "B6", "B7")}
    assert med["B5"] < med["B6"] < med["B7"]
    assert (ds["SRE_B2"].values != REFLECTANCE_NODATA).all()
    # the correction removes path reflectance in the blue
    toa_blue = scene["l1c"].toa(["B02"], 10)["B02"].values
    assert np.median(ds["SRE_B2"].values / 1e4) < np.median(toa_blue) - 0.03


def test_flat_dem_gives_fre_equal_sre(scene: dict[str, Any]) -> None:
    flat = scene["terrain"].copy()
    flat["slope"] = flat["slope"] * 0
    flat["cast_shadow"] = flat["cast_shadow"] & False
    flat["hidden_faces"] = flat["hidden_faces"] & False
    flat = flat.drop_vars("sky_view")
    ds, _ = correct(scene["l1c"], None, None, flat)
    ds = ds.compute()
    for name in ("B2", "B8", "B8A", "B12"):
        np.testing.assert_array_equal(ds[f"FRE_{name}"].values, ds[f"SRE_{name}"].values)
    # and the SRE does not depend on the terrain's slope
    np.testing.assert_array_equal(ds["SRE_B4"].values, scene["ds"]["SRE_B4"].values)


def test_slope_correction_on_real_dem(scene: dict[str, Any]) -> None:
    from l2a.kernels.slope_correction import cos_incidence

    ds, ter, md = scene["ds"], scene["terrain"], scene["l1c"].metadata
    ci = cos_incidence(ter["slope"].values, ter["aspect"].values, md.mean_sun_zenith, md.mean_sun_azimuth)
    sel = ter["slope"].values > 5
    sre = ds["SRE_B8"].values[sel].astype(float)
    fre = ds["FRE_B8"].values[sel].astype(float)
    c_sre = np.corrcoef(ci[sel], sre)[0, 1]
    c_fre = np.corrcoef(ci[sel], fre)[0, 1]
    assert c_sre > 0.15 and abs(c_fre) < 0.5 * c_sre


def test_shadow_pixels_never_amplified(scene: dict[str, Any]) -> None:
    ter = scene["terrain"].copy()
    shd = np.zeros(ter["slope"].shape, dtype=bool)
    shd[20:40, 30:60] = True
    ter["cast_shadow"] = (ter["slope"].dims, shd)
    ds, _ = correct(scene["l1c"], None, None, ter)
    ds = ds.compute()
    for name in ("B3", "B8"):
        sre = ds[f"SRE_{name}"].values[shd]
        fre = ds[f"FRE_{name}"].values[shd]
        assert np.all(fre <= sre)


def test_nodata_and_cloudy_scene(sample_path: Callable[[str], Path]) -> None:
    from l2a.io._array_product import ArrayL1CProduct
    from l2a.io.scenes import open_scene

    src = open_scene("slovenia:2015-07-11")
    toa = src.toa(None, 10)
    refl = {b: toa[b].values.copy() for b in toa.data_vars}
    for v in refl.values():
        v[:10, :] = np.nan
    l1c = ArrayL1CProduct(refl, toa.odc.geobox, src.metadata)
    masks = xr.Dataset(
        {
            k: (("y", "x"), np.full(toa["B02"].shape, k in ("cloud", "valid")))
            for k in ("cloud", "cloud_shadow", "snow", "water", "valid")
        },
        coords=toa.coords,
    )
    ds, _ = correct(l1c, masks, None, None)
    ds = ds.compute()
    assert (ds["SRE_B2"].values[:10] == REFLECTANCE_NODATA).all()
    assert (ds["SRE_B2"].values[12:] != REFLECTANCE_NODATA).all()
    # everything cloudy: water vapour and AOT are defaults, flagged interpolated (IAB bits 0 and 1)
    assert (ds["IAB_R1"].values == 3).all() and (ds["IAB_R2"].values == 3).all()
    np.testing.assert_allclose(ds["aot"].values, 0.1)


def test_composite_round(sample_path: Callable[[str], Path]) -> None:
    from l2a.io.scenes import open_scene

    detect = pytest.importorskip("l2a.masks").detect
    comp = None
    results = []
    for d in ("2015-07-11", "2015-08-30"):
        l1c = open_scene(f"slovenia:{d}")
        masks, comp = detect(l1c.toa(None, 10), comp)
        ds, comp = correct(l1c, masks, comp, None)
        results.append(ds)
    assert comp is not None
    for b in ("B02", "B03", "B04", "B8A"):
        v = comp.extra[f"sre_{b}"]
        assert v.shape == tuple(comp.geobox.shape) and np.isfinite(v).all()
    assert 0.0 < float(np.mean(comp.extra["aot"])) < 0.5


def test_multi_temporal_reference_age(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    """The composite keeps the date of each pixel's surface-reflectance reference (saved and
    loaded with it); 50 days later (07-11 -> 08-30, two cloudy dates between) that reference
    is too old for the multi-temporal AOT term: the retrieval is the single-date one."""
    from dataclasses import replace

    from l2a.chain.correction import CorrectionSettings
    from l2a.io.scenes import open_scene
    from l2a.kernels.atmosphere import AotSettings

    masks_mod = pytest.importorskip("l2a.masks")
    comp = None
    for d in ("2015-07-11", "2015-07-31", "2015-08-20"):
        l1c = open_scene(f"slovenia:{d}")
        masks, comp = masks_mod.detect(l1c.toa(None, 10), comp)
        _, comp = correct(l1c, masks, comp, None)
    assert comp is not None
    day0 = (np.datetime64("2015-07-11T10:00", "s") - np.datetime64("1970-01-01", "s")) / np.timedelta64(1, "D")
    dates = comp.extra["sre_date"]
    assert np.isfinite(dates).mean() > 0.9  # clear on 07-11, never since (07-31 and 08-20 cloudy)
    assert np.all(np.abs(dates[np.isfinite(dates)] - day0) < 0.5)
    comp = type(comp).load(comp.save(tmp_path / "comp.npz"))
    np.testing.assert_array_equal(comp.extra["sre_date"], dates)

    l1c = open_scene("slovenia:2015-08-30")
    masks, comp2 = masks_mod.detect(l1c.toa(None, 10), comp)
    single, _ = correct(l1c, masks, None, None)
    chained, after = correct(l1c, masks, comp2, None)
    np.testing.assert_allclose(chained["aot"].values, single["aot"].values, atol=1e-6)
    lenient = CorrectionSettings(aot=replace(AotSettings(), mt_max_age_days=60.0))
    with_mt, _ = correct(l1c, masks, comp2, None, lenient)
    assert float(np.abs(with_mt["aot"].values - single["aot"].values).mean()) > 0.01
    # today's clear pixels become the new reference
    day = (np.datetime64(l1c.metadata.sensing_time.replace(tzinfo=None), "s") - np.datetime64("1970-01-01", "s")) / np.timedelta64(1, "D")
    assert np.nanmax(after.extra["sre_date"]) == pytest.approx(day, abs=1e-6)


def test_missing_coefficients_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample_path: Callable[[str], Path]) -> None:
    from l2a.io.scenes import open_scene

    monkeypatch.setenv("L2A_AUX_DIR", str(tmp_path))
    with pytest.raises(MissingDataError, match="Coef_S2A_CONTINENTAL"):
        correct(open_scene("slovenia:2015-07-11"), None, None, None)


def test_genuine_safe_crop(sample_path: Callable[[str], Path]) -> None:
    """A genuine SAFE (offset -1000, per-band view angle grids) goes through the same step."""
    from l2a.io import open_l1c

    safe = next(iter(sorted(sample_path("alcd_toulouse_T31TCJ/safe").glob("S2A_*.SAFE"))))
    l1c = open_l1c(safe)
    ds, _ = correct(l1c, None, None, None)
    ds = ds.compute()
    assert ds["SRE_B2"].shape == (30, 30) and ds["SRE_B12"].shape == (15, 15)
    assert ds.attrs["platform"] == "S2A"
    for name in ("B2", "B4", "B8", "B11"):
        v = ds[f"SRE_{name}"].values
        assert (v != REFLECTANCE_NODATA).all() and (v > -500).all() and (v < 10000).all()
    np.testing.assert_array_equal(ds["FRE_B8"].values, ds["SRE_B8"].values)  # no DEM: flat


def test_whole_decimated_tile(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    """The whole real T19UDP tile (13 bands decimated to 900 m, read through a STAC item):
    masks, SRE/FRE/ATB on 900 m grids, no-data outside the swath, plausible atmosphere."""
    import json

    from test_stac_l1c import T19, _t19_item

    from l2a.chain.correction import CorrectionSettings
    from l2a.io import open_l1c
    from l2a.masks import detect

    path = tmp_path / "item.json"
    path.write_text(json.dumps(_t19_item(sample_path(T19), tmp_path)))
    l1c = open_l1c(str(path))
    toa = l1c.toa(None, 900).compute()
    masks, _ = detect(toa, None)
    ds, _ = correct(l1c, masks, None, None, CorrectionSettings(resolutions_m=(900.0, 900.0)))
    ds = ds.compute()
    r1, r2 = group(ds, "R1"), group(ds, "R2")
    assert r1.odc.geobox.shape == (122, 122) and r2.odc.geobox.shape == (122, 122)
    # west of the swath edge (a pixel missing in any band is no-data in all: the edge is
    # band-dependent by a pixel or two)
    outside = ~np.all([np.isfinite(toa[b].values) for b in toa.data_vars], axis=0)
    assert 0.2 < outside.mean() < 0.6
    for v in (r1["SRE_B2"], r1["FRE_B8"], r2["SRE_B12"]):
        nodata = v.values == REFLECTANCE_NODATA
        assert not nodata[~outside].any() and nodata[outside].mean() > 0.97
    np.testing.assert_array_equal(r1["FRE_B8"].values, r1["SRE_B8"].values)  # no DEM: flat
    # clear land: vegetated Quebec in July, a red edge and dark visible surface
    m = np.asarray(masks["valid"].values & ~masks["cloud"].values & ~masks["cloud_shadow"].values & ~masks["water"].values)
    m &= ~outside
    assert m.sum() > 2000
    med = {n: float(np.median(r1[f"SRE_{n}"].values[m])) / 1e4 for n in ("B2", "B4", "B8")}
    med |= {n: float(np.median(r2[f"SRE_{n}"].values[m])) / 1e4 for n in ("B5", "B7", "B11")}
    assert 0.0 < med["B2"] < 0.06 and 0.0 < med["B4"] < 0.08 and med["B4"] < med["B5"] < med["B7"]
    assert med["B8"] > 3 * med["B4"] and 0.05 < med["B11"] < 0.35
    aot, wv = float(ds.attrs["aot_mean"]), float(ds.attrs["water_vapour_mean"])
    assert 0.03 < aot < 0.6 and 0.3 < wv < 5.0
    atb = r1["ATB_R1"].values
    assert atb.dtype == np.uint8 and atb.shape == (2, 122, 122)
