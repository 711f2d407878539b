"""Public API of the masks: detect/detect_series on real scenes and constructed cases."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from PIL import Image

from l2a.errors import InputError
from l2a.kernels import shadows as ks
from l2a.masks import Composite, MaskSettings, detect, detect_series, quicklook, working_factor
from l2a.masks import bits as B
from l2a.masks.quicklook import CLOUD_COLOUR, SHADOW_COLOUR, SNOW_COLOUR, WATER_COLOUR

SLOVENIA_DATES = ("2015-07-11", "2015-07-31", "2015-08-20", "2015-08-30", "2015-09-09")
CLOUDY = ("2015-07-31", "2015-08-20")
CLEAR = ("2015-07-11", "2015-08-30", "2015-09-09")


@pytest.fixture(scope="module")
def slovenia(sample_path: Callable[[str], Path]) -> dict[str, xr.Dataset]:
    sample_path("slovenia_T33_summer2015")
    from l2a.io.scenes import open_scene

    return {d: open_scene(f"slovenia:{d}").toa(resolution=10).load() for d in SLOVENIA_DATES}


@pytest.fixture(scope="module")
def betsiboka(sample_path: Callable[[str], Path]) -> tuple[xr.Dataset, np.ndarray]:
    folder = sample_path("s2cloudless_betsiboka")
    from l2a.io.scenes import open_scene

    with np.load(folder / "input_arrays.npz") as z:
        ref = z["cl_mask"][0].astype(bool)
    return open_scene("betsiboka").toa().load(), ref


def _series(slovenia: dict[str, xr.Dataset]) -> list[xr.Dataset]:
    return [slovenia[d] for d in SLOVENIA_DATES]


# --- targets on real data ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nominal", "backward"])
def test_slovenia_series_targets(slovenia: dict[str, xr.Dataset], mode: str) -> None:
    masks = detect_series(_series(slovenia), settings=MaskSettings(series_mode=mode))
    for d, m in zip(SLOVENIA_DATES, masks, strict=True):
        frac = float(m.cloud.values[m.valid.values].mean())
        if d in CLOUDY:
            assert frac >= 0.98, (d, frac)
        else:
            assert frac <= 0.01, (d, frac)
        assert m.attrs["working_resolution_m"] == pytest.approx(20.0, rel=0.01)  # documented rule
    assert masks[0].attrs["mode"] == ("INIT" if mode == "nominal" else "NOMINAL")


def test_backward_mode_finds_clouds_on_the_first_date(slovenia: dict[str, xr.Dataset]) -> None:
    scenes = [slovenia[d] for d in SLOVENIA_DATES[1:]]  # series starting on the thin-cloud date
    nominal = detect_series(scenes, settings=MaskSettings(series_mode="nominal"))
    backward = detect_series(scenes, settings=MaskSettings(series_mode="backward"))
    assert nominal[0].attrs["mode"] == "INIT"
    assert float(nominal[0].cloud.mean()) < 0.5  # mono-temporal test alone misses this thin cloud
    assert backward[0].attrs["mode"] == "NOMINAL" and "BACKWARD" in backward[0].attrs["mode_reason"]
    assert float(backward[0].cloud.mean()) >= 0.98


def test_betsiboka_agrees_with_s2cloudless(betsiboka: tuple[xr.Dataset, np.ndarray]) -> None:
    toa, ref = betsiboka
    masks, comp = detect(toa)
    ours = masks.cloud.values
    f1 = 2.0 * (ours & ref).sum() / (ours.sum() + ref.sum())
    assert f1 >= 0.85
    assert masks.attrs["mode"] == "INIT"
    assert masks.snow.values.mean() < 0.01  # tropics
    assert 0.05 < masks.water.values.mean() < 0.3  # the estuary
    assert comp.geobox.shape == toa.odc.geobox.zoom_out(working_factor(toa.odc.geobox.shape, 73.2, MaskSettings())).shape


# --- bits ---------------------------------------------------------------------------------------------

def _terrain_like(toa: xr.Dataset, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = (toa.sizes["y"], toa.sizes["x"])
    data = {k: (("y", "x"), rng.random(shape) < 0.1) for k in ("hidden_faces", "cast_shadow", "sun_too_low", "tangent_sun")}
    data["elevation"] = (("y", "x"), np.full(shape, 700.0, np.float32))
    data["slope"] = (("y", "x"), np.zeros(shape, np.float32))
    data["aspect"] = (("y", "x"), np.zeros(shape, np.float32))
    return xr.Dataset(data, coords={"y": toa.y, "x": toa.x})


def test_clm_mg2_bits_are_consistent(betsiboka: tuple[xr.Dataset, np.ndarray]) -> None:
    toa, _ = betsiboka
    dem = _terrain_like(toa, 3)
    m, _ = detect(toa, dem=dem)
    clm, mg2 = m.clm.values, m.mg2.values
    assert clm.dtype == np.uint8 and mg2.dtype == np.uint8

    def bit(a: np.ndarray, k: int) -> np.ndarray:
        return (a >> k) & 1 == 1

    tests = bit(clm, 2) | bit(clm, 3) | bit(clm, 7)
    assert (bit(clm, 1) == (tests | bit(clm, 4))).all()
    assert (bit(clm, 0) == (bit(clm, 1) | bit(clm, 5) | bit(clm, 6))).all()
    assert not (bit(clm, 4) & tests).any()  # extension is outside the tested clouds
    assert not ((bit(clm, 5) | bit(clm, 6)) & bit(clm, 1)).any()
    assert (m.cloud.values == bit(clm, 1)).all() and (m.cirrus.values == bit(clm, 7)).all()
    assert (m.cloud_shadow.values == (bit(clm, 5) | bit(clm, 6))).all()
    assert (bit(mg2, 1) == bit(clm, 1)).all() and (bit(mg2, 3) == m.cloud_shadow.values).all()
    assert (m.water.values == bit(mg2, 0)).all() and (m.snow.values == bit(mg2, 2)).all()
    for k, name in ((4, "hidden_faces"), (5, "cast_shadow"), (6, "sun_too_low"), (7, "tangent_sun")):
        assert (bit(mg2, k) == dem[name].values).all(), name
    assert bit(clm, 1).any() and bit(clm, 4).any() and bit(mg2, 0).any() and bit(clm, 5).any()


# --- constructed scene: a cloud and its shadow -----------------------------------------------------

SUN_ZENITH, SUN_AZIMUTH, CLOUD_ALTITUDE = 40.0, 150.0, 2000.0


def _synthetic(when: str, cloud: bool, seed: int = 7, size: int = 400) -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    """400 x 400 px at 10 m: textured vegetation; optionally a cloud disk and its shadow."""
    rng = np.random.default_rng(seed)
    gb = GeoBox((size, size), Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), "EPSG:32631")
    from scipy import ndimage as ndi

    tex = ndi.gaussian_filter(rng.random((size, size)), 4.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    surface = {"B01": 0.10 + 0.02 * tex, "B02": 0.07 + 0.02 * tex, "B03": 0.07 + 0.03 * tex, "B04": 0.04 + 0.03 * tex,
               "B05": 0.08 + 0.03 * tex, "B06": 0.2 + 0.05 * tex, "B07": 0.25 + 0.05 * tex, "B08": 0.27 + 0.08 * tex,
               "B8A": 0.29 + 0.08 * tex, "B09": 0.08 + 0.02 * tex, "B10": 0.001 + 0.0 * tex, "B11": 0.15 + 0.04 * tex,
               "B12": 0.07 + 0.03 * tex}
    yy, xx = np.mgrid[0:size, 0:size]
    cloud_mask = (yy - 300) ** 2 + (xx - 300) ** 2 <= 45**2
    dr, dc = ks.shadow_shift(CLOUD_ALTITUDE, SUN_ZENITH, SUN_AZIMUTH, 0.0, 0.0, 10.0)
    shadow_mask = ((yy - 300 - dr) ** 2 + (xx - 300 - dc) ** 2 <= 45**2) & ~cloud_mask
    data = {}
    for b, v in surface.items():
        a = v.astype(np.float32)
        if cloud:
            a = np.where(shadow_mask, 0.35 * a, a)
            a = np.where(cloud_mask, 0.02 if b == "B10" else (0.35 if b in ("B11", "B12") else 0.5), a)
        data[b] = (("y", "x"), a.astype(np.float32))
    ds = xr.Dataset(data, coords=xr_coords(gb))
    ds.attrs.update(datetime=when, sun_zenith=SUN_ZENITH, sun_azimuth=SUN_AZIMUTH, view_zenith=0.0, view_azimuth=0.0)
    return ds, cloud_mask, shadow_mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("with_composite", [True, False])
def test_synthetic_cloud_and_shadow_found_at_the_right_place(with_composite: bool) -> None:
    clear, _, _ = _synthetic("2024-06-01T10:30:00Z", cloud=False)
    cloudy, cloud_mask, shadow_mask = _synthetic("2024-06-11T10:30:00Z", cloud=True)
    comp = detect(clear)[1] if with_composite else None
    m, _ = detect(cloudy, comp)
    assert m.attrs["mode"] == ("NOMINAL" if with_composite else "INIT")
    assert m.attrs["working_resolution_m"] == 80.0  # 400 px // 50 = 8
    tests = (m.clm.values & np.uint8(B.CLM_TESTS)) != 0
    assert _iou(tests, cloud_mask) > 0.85  # edges refined at 10 m, not 80 m blocks
    assert not m.cloud.values[~kc_dilate(cloud_mask, 35)].any()  # extension: 240 m square
    assert _iou(m.cloud_shadow.values, shadow_mask & ~m.cloud.values) > 0.6
    alts = [float(a) for a in m.attrs["shadow_altitudes_m"].split(",")]
    assert alts and abs(alts[0] - CLOUD_ALTITUDE) <= 300.0


def kc_dilate(mask: np.ndarray, r: int) -> np.ndarray:
    from l2a.kernels.clouds import dilate

    return dilate(mask, r)


# --- composite, modes ------------------------------------------------------------------------------------

def test_composite_save_load_resume_identical(slovenia: dict[str, xr.Dataset], tmp_path: Path) -> None:
    s = MaskSettings(series_mode="nominal")
    scenes = _series(slovenia)
    straight = detect_series(scenes, settings=s)
    comp = None
    for sc in scenes[:3]:
        _, comp = detect(sc, comp, settings=s)
    assert comp is not None
    comp.extra["aot"] = np.full(comp.dates.shape, 0.125, np.float32)
    comp.extra["sre_B04"] = comp.reflectance["B04"] * 0.9
    path = comp.save(tmp_path / "state" / "composite.npz")
    loaded = Composite.load(path)
    assert loaded.same_as(comp)
    assert loaded.geobox == comp.geobox and loaded.extra.keys() == {"aot", "sre_B04"}
    assert loaded.clear_dates().dtype == np.dtype("datetime64[s]")
    resumed = detect_series(scenes[3:], settings=s, composite=loaded)
    for a, b in zip(straight[3:], resumed, strict=True):
        assert np.array_equal(a.clm.values, b.clm.values) and np.array_equal(a.mg2.values, b.mg2.values)
    assert not list(tmp_path.glob("state/.composite-*"))  # no temporary left behind


def test_composite_keeps_last_clear_reflectance(slovenia: dict[str, xr.Dataset]) -> None:
    s = MaskSettings(series_mode="nominal")
    _, c1 = detect(slovenia["2015-07-11"], settings=s)
    _, c2 = detect(slovenia["2015-07-31"], c1, settings=s)
    assert c1.n_dates == 1 and c2.n_dates == 2
    # fully cloudy date: nothing replaced
    assert np.array_equal(c2.reflectance["B02"], c1.reflectance["B02"], equal_nan=True)
    assert np.array_equal(c2.dates, c1.dates, equal_nan=True)
    assert str(c2.clear_dates()[10, 10])[:10] == "2015-07-11" and c2.last_date.startswith("2015-07-31")


def test_reinit_after_gap(slovenia: dict[str, xr.Dataset]) -> None:
    s = MaskSettings(series_mode="nominal")
    _, comp = detect(slovenia["2015-07-11"], settings=s)
    later = slovenia["2015-09-09"]  # 60 days later
    m, new = detect(later, comp, settings=s)
    assert m.attrs["mode"] == "INIT" and "re-INIT" in m.attrs["mode_reason"] and new.n_dates == 1
    at45 = later.copy()
    at45.attrs = {**later.attrs, "datetime": "2015-08-25T10:00:08Z"}  # exactly 45 days
    assert detect(at45, comp, settings=s)[0].attrs["mode"] == "NOMINAL"
    short = dataclasses.replace(s, reinit_gap_days=10.0)
    assert detect(slovenia["2015-07-31"], comp, settings=short)[0].attrs["mode"] == "INIT"


def test_bad_inputs(slovenia: dict[str, xr.Dataset]) -> None:
    toa = slovenia["2015-07-11"]
    with pytest.raises(InputError, match="B11"):
        detect(toa.drop_vars("B11"))
    nodate = toa.copy()
    nodate.attrs = {k: v for k, v in toa.attrs.items() if k != "datetime"}
    with pytest.raises(InputError, match="datetime"):
        detect(nodate)
    other, _, _ = _synthetic("2015-07-20T10:00:00Z", cloud=False, size=100)
    _, comp = detect(other)
    with pytest.raises(InputError, match="grid"):
        detect(toa, comp)
    with pytest.raises(InputError, match="composite"):
        Composite.load("/nonexistent/composite.npz")


def test_missing_optional_bands_are_reported(slovenia: dict[str, xr.Dataset]) -> None:
    toa = slovenia["2015-07-11"].drop_vars(["B01", "B10", "B8A"])
    m, comp = detect(toa)
    assert "B10" in m.attrs["skipped"] and "B02" in m.attrs["skipped"]
    assert not m.cirrus.values.any() and "B01" not in comp.reflectance


def test_toulouse_safe_plumbing(sample_path: Callable[[str], Path]) -> None:
    pytest.importorskip("l2a.io.safe")
    from l2a.io.safe import open_safe

    folder = sample_path("alcd_toulouse_T31TCJ/safe")
    scenes = [open_safe(p).toa(resolution=10).load() for p in sorted(folder.glob("*.SAFE"))]
    masks = detect_series(scenes, settings=MaskSettings(series_mode="nominal"))
    assert [m.sizes["y"] for m in masks] == [30, 30]
    assert masks[0].attrs["working_factor"] == 1  # 30 px: too small for anything coarser
    # 45 days and 4 seconds apart: 45 whole days, within the gap as the planner counts it
    # (its product names say 45 days minus 5 minutes)
    assert masks[1].attrs["mode"] == "NOMINAL"
    masks = detect_series(scenes, settings=MaskSettings(series_mode="nominal", reinit_gap_days=44))
    assert masks[1].attrs["mode"] == "INIT" and "gap of 45 days > 44: re-INIT" in masks[1].attrs["mode_reason"]


# --- quicklook ------------------------------------------------------------------------------------------

def test_quicklook_colours(tmp_path: Path) -> None:
    toa, _, _ = _synthetic("2024-06-01T10:30:00Z", cloud=False, size=60)
    z = np.zeros((60, 60), bool)
    layers = {k: z.copy() for k in ("cloud", "cloud_shadow", "snow", "water")}
    layers["cloud"][5:15, 5:15] = True
    layers["cloud_shadow"][5:15, 30:40] = True
    layers["snow"][30:40, 5:15] = True
    layers["water"][30:40, 30:40] = True
    masks = xr.Dataset({k: (("y", "x"), v) for k, v in layers.items()})
    path = quicklook(toa, masks, tmp_path / "ql.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (60, 60, 3)
    for (r, c), colour in (((5, 9), CLOUD_COLOUR), ((14, 35), SHADOW_COLOUR), ((30, 10), SNOW_COLOUR), ((35, 39), WATER_COLOUR)):
        assert tuple(img[r, c]) == colour
    assert tuple(img[9, 9]) != CLOUD_COLOUR  # only outlines are drawn
    assert tuple(img[50, 50]) not in (CLOUD_COLOUR, SHADOW_COLOUR, SNOW_COLOUR, WATER_COLOUR)
    assert quicklook(toa, masks, tmp_path / "ql.jpg").stat().st_size > 0


def test_to_resolution_r2(betsiboka: tuple[xr.Dataset, np.ndarray]) -> None:
    from l2a.masks import to_resolution

    toa, _ = betsiboka
    m, comp = detect(toa)
    r2 = to_resolution(m, 2)
    assert r2.sizes["y"] == 428 and r2.sizes["x"] == 256
    assert r2.odc.geobox == toa.odc.geobox.zoom_out(2)
    block = m.cloud.values[:2, :2].any()
    assert bool(r2.cloud.values[0, 0]) == bool(block or r2.clm.values[0, 0] & B.CLM_TESTS)
    assert r2.cloud.values.mean() >= m.cloud.values.mean() - 1e-9  # conservative
    clm = r2.clm.values
    assert (((clm >> 1) & 1 == 1) == ((clm & (B.CLM_TESTS | B.CLM_EXTENSION)) != 0)).all()
    assert not (r2.cloud.values & r2.cloud_shadow.values).any()
    # the composite knows which pixels this date refreshed
    assert comp.updated().sum() == np.isfinite(comp.dates).sum() > 0


def test_nodata_is_invalid_and_never_flagged(slovenia: dict[str, xr.Dataset]) -> None:
    s = MaskSettings(series_mode="nominal")
    first = slovenia["2015-07-11"].copy(deep=True)
    cloudy = slovenia["2015-07-31"].copy(deep=True)
    yy, xx = np.mgrid[0:101, 0:100]
    edge = xx > yy + 40  # a swath edge
    for ds in (first, cloudy):
        for b in ds.data_vars:
            ds[b].values[edge] = np.nan
    m1, comp = detect(first, settings=s)
    m2, _ = detect(cloudy, comp, settings=s)
    for m in (m1, m2):
        assert not m.valid.values[edge].any() and (m.clm.values[edge] == 0).all()
        assert (m.mg2.values[edge] & 0x0F == 0).all()
    assert m2.cloud.values[~edge].mean() >= 0.98  # still cloudy where there are data
    assert np.isnan(comp.reflectance["B02"]).any()  # never-seen pixels stay NaN in the composite
