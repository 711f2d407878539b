"""A real date through masks + correction + packaging + STAC: Slovenia 2015-07-11 (101 x 100 px, 10 m)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from l2a.catalog.stac_item import make_item
from l2a.catalog.static import StaticCatalog
from l2a.io.cog import validate_cog
from l2a.io.muscate import PackageSettings, read_mtd, write_product
from l2a.sensors.sentinel2 import BY_NAME, MUSCATE_BANDS

pytestmark = pytest.mark.sample_data


@pytest.fixture(scope="module")
def real(sample_path: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    sample_path("slovenia_T33_summer2015")
    from l2a.chain.correction import correct
    from l2a.io import open_l1c
    from l2a.masks import detect

    l1c = open_l1c("scene:slovenia:2015-07-11")
    masks, _ = detect(l1c.toa(None, 10))
    ds, _ = correct(l1c, masks, None, None)
    out = tmp_path_factory.mktemp("real")
    res = write_product(out / "products", l1c=l1c, masks=masks, l2a=ds, settings=PackageSettings(make_zip=True))
    return l1c, masks, ds, res


def _read(res: Any, kind: str, band: str | None = None, group: str | None = None) -> np.ndarray:
    with rasterio.open(res.path / res.file(kind, group=group, band=band).path) as r:
        return r.read()


def test_real_product_exact_values(real: Any) -> None:
    _, masks, ds, res = real
    assert res.name == "SENTINEL2A_20150711-100008-000_L2A_T33TVL_C_V1-0"
    for b in MUSCATE_BANDS:
        m = BY_NAME[b].muscate_name
        for kind in ("SRE", "FRE"):
            np.testing.assert_array_equal(_read(res, kind, b)[0], ds[f"{kind}_{m}"].values)
    np.testing.assert_array_equal(_read(res, "ATB", group="R1"), ds["ATB_R1"].values)
    np.testing.assert_array_equal(_read(res, "CLM", group="R1")[0], masks["clm"].values)
    np.testing.assert_array_equal(_read(res, "MG2", group="R1")[0], masks["mg2"].values)
    for f in res.files:
        if f.path.endswith(".tif"):
            assert validate_cog(res.path / f.path)[0], f.path
    info = read_mtd(res.path / f"{res.name}_MTD_ALL.xml")
    assert info.epsg == 32633 and info.tile_id == "33TVL"
    assert info.covers["cloud"] == pytest.approx(float(masks.attrs["cloud_cover"]))
    assert res.zip_path is not None and res.zip_path.is_file()


# odc-geo 0.5.3 (inside odc.stac.load) still calls shapely.ops.transform, deprecated in shapely 2.2
@pytest.mark.filterwarnings(r"ignore:The 'shapely.ops.transform\(\)' function is deprecated:DeprecationWarning")
def test_real_item_loads(real: Any, tmp_path: Path) -> None:
    import odc.stac
    import stackstac

    _, _, ds, res = real
    item = make_item(res)
    StaticCatalog(tmp_path).add_item(item)
    st = stackstac.stack([item], assets=["sre_red", "sre_nir"], dtype="int16", fill_value=np.int16(-10000),
                         rescale=False, snap_bounds=False)  # the sample's 9.995 m pixels: no snapping to 10 m
    np.testing.assert_array_equal(st.sel(band="sre_red").values[0], ds["SRE_B4"].values)
    np.testing.assert_array_equal(st.sel(band="sre_nir").values[0], ds["SRE_B8"].values)
    o = odc.stac.load([item], bands=["sre_red"])
    np.testing.assert_array_equal(o.sre_red.values[0], ds["SRE_B4"].values)


def test_toulouse_safe_detector_footprints(sample_path: Any, tmp_path: Path) -> None:
    """Genuine L1C SAFE (baseline 05.10, 30 x 30 px crop): DTF masks from its MSK_DETFOO rasters."""
    from rasterio.windows import Window

    from l2a.chain.correction import correct
    from l2a.io import open_l1c
    from l2a.masks import detect
    from l2a.sensors.sentinel2 import MUSCATE_R1

    safe = sample_path("alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE")
    l1c = open_l1c(safe)
    masks, _ = detect(l1c.toa(None, 10))
    ds, _ = correct(l1c, masks, None, None)
    res = write_product(tmp_path, l1c=l1c, masks=masks, l2a=ds)
    dtf = [f for f in res.files if f.kind == "DTF"]
    assert {f.group for f in dtf} == {"R1", "R2"} and all(f.shape in ((30, 30), (15, 15)) for f in dtf)
    # the crop's UL corner (350000, 4850020) is pixel (5000, 5000) of the 10 m tile grid (UL 300000, 4900020)
    ref = {}
    for b in MUSCATE_R1:
        with rasterio.open(l1c.metadata.footprints[b]) as r:
            ref[b] = r.read(1, window=Window(5000, 5000, 30, 30))
    for f in (f for f in dtf if f.group == "R1"):
        d = int(f.path.rsplit("-D", 1)[1][:2])
        with rasterio.open(res.path / f.path) as r:
            got = r.read(1)
        for i, b in enumerate(MUSCATE_R1):
            np.testing.assert_array_equal((got >> i) & 1, (ref[b] == d).astype(np.uint8))
    item = make_item(res)
    keys = [k for k in item.assets if k.startswith("dtf_r1_d")]
    assert keys and len(item.assets[keys[0]].extra_fields["classification:bitfields"]) == 4
    # a reflectance-less product on the same crop keeps the crop's grids (not the full tile)
    res2 = write_product(tmp_path / "nr", l1c=l1c, masks=masks, l2a=None)
    assert res2.file("CLM", "R1").shape == (30, 30) and res2.file("CLM", "R2").shape == (15, 15)


def test_detector_footprints_across_the_tile_edge(sample_path: Any) -> None:
    """A grid half outside the L1C tile: the footprints read inside, zero outside (boundless read);
    the same grid moved inside the tile reads the same pixels with a plain window read."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from l2a.io import open_l1c
    from l2a.io.muscate import GROUPS, detector_footprints

    safe = sample_path("alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE")
    md = open_l1c(safe).metadata
    crs = "EPSG:32631"
    # the tile's 10 m grid: UL (300000, 4900020), 10980 px; the DETFOO rasters cover it whole
    edge = GeoBox((20, 30), Affine(10, 0, 300000 - 150, 0, -10, 4900020 - 50000), crs)  # 15 columns west of the tile
    inside = GeoBox((20, 15), Affine(10, 0, 300000, 0, -10, 4900020 - 50000), crs)
    got, notes = detector_footprints(md, {"R1": edge}, 2048)
    ref, _ = detector_footprints(md, {"R1": inside}, 2048)
    assert not notes and got and set(got) == set(ref)
    for key in got:
        a, b = np.asarray(got[key][0]), np.asarray(ref[key][0])
        assert a.shape == (20, 30)
        assert not a[:, :15].any()  # outside the tile: no detector
        np.testing.assert_array_equal(a[:, 15:], b)
    bands = GROUPS["R1"][0]
    with rasterio.open(md.footprints[bands[0]]) as r:
        raw = r.read(1, window=rasterio.windows.Window(0, 5000, 15, 20))
    d = int(next(iter(sorted(ref))).rsplit("-D", 1)[1])
    np.testing.assert_array_equal(np.asarray(ref[f"DTF_R1-D{d:02d}"][0]) & 1, (raw == d).astype(np.uint8))
