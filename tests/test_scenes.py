"""Array scenes (slovenia, betsiboka) as L1C products, solar angles, block means, MGRS ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from l2a.errors import InputError
from l2a.io._array_product import (
    SunGridSettings,
    block_mean,
    mgrs_tile_id,
    sun_angles_on_geobox,
    zoom_out,
)
from l2a.io.l1c import L1CProduct
from l2a.io.scenes import BETSIBOKA, betsiboka_geoboxes, list_scenes, open_scene
from l2a.sensors.sentinel2 import BAND_NAMES
from l2a.sensors.solar import earth_sun_u, sun_angles

TOULOUSE_SAFE = "alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE"


def test_block_mean_exact_with_partial_blocks_and_nan() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((7, 5)).astype(np.float32)
    a[0, 0] = np.nan
    out = block_mean(a, 3)
    assert out.shape == (3, 2)
    assert out[0, 0] == pytest.approx(np.nanmean(a[0:3, 0:3]), rel=1e-6)
    assert out[2, 1] == pytest.approx(a[6, 3:5].mean(), rel=1e-6)  # 1 x 2 partial corner block
    assert out[1, 1] == pytest.approx(a[3:6, 3:5].mean(), rel=1e-6)
    b = np.full((4, 4), np.nan, dtype=np.float32)
    b[3, 3] = 2.0
    assert np.isnan(block_mean(b, 2)[0, 0]) and block_mean(b, 2)[1, 1] == 2.0


def test_sun_angles_match_esa_grid_mean(sample_path: Callable[[str], Path]) -> None:
    """The computed sun at the tile centre agrees with ESA's mean sun angles of a genuine product."""
    import defusedxml.ElementTree as ET

    safe = sample_path(TOULOUSE_SAFE)
    tl = ET.parse(next(safe.glob("GRANULE/*/MTD_TL.xml")))
    zen_esa = float(tl.find(".//Mean_Sun_Angle/ZENITH_ANGLE").text)  # type: ignore[union-attr]
    azi_esa = float(tl.find(".//Mean_Sun_Angle/AZIMUTH_ANGLE").text)  # type: ignore[union-attr]
    when = tl.find(".//SENSING_TIME").text  # type: ignore[union-attr]
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(354900, 4845120)
    zen, azi = sun_angles(when, lon, lat)
    assert zen == pytest.approx(zen_esa, abs=0.1)
    assert azi == pytest.approx(azi_esa, abs=0.2)


def test_earth_sun_u_matches_genuine_metadata(sample_path: Callable[[str], Path]) -> None:
    import defusedxml.ElementTree as ET

    mtd = ET.parse(sample_path(TOULOUSE_SAFE) / "MTD_MSIL1C.xml")
    u = float(mtd.find(".//Reflectance_Conversion/U").text)  # type: ignore[union-attr]
    start = mtd.find(".//DATATAKE_SENSING_START").text  # type: ignore[union-attr]
    assert earth_sun_u(start) == pytest.approx(u, abs=1e-9)


def test_sun_angles_vectorised_and_interpolated() -> None:
    lon = np.array([[0.0, 10.0], [20.0, 30.0]])
    zen, azi = sun_angles(datetime(2020, 6, 21, 12, tzinfo=UTC), lon, 45.0)
    assert zen.shape == (2, 2)
    assert zen[0, 0] == pytest.approx(45.0 - 23.44, abs=0.3)  # noon on the solstice at Greenwich
    assert 177.5 < azi[0, 0] < 180.0  # solar noon is at 12:01:45 UTC (equation of time)
    assert np.all(np.diff(azi.ravel()) > 0)  # the afternoon sun moves west in the east
    gbox = GeoBox((600, 500), Affine(60, 0, 399960, 0, -60, 5000040), "EPSG:32631")
    direct = sun_angles_on_geobox("2021-01-10T10:30:00Z", gbox)
    interp = sun_angles_on_geobox("2021-01-10T10:30:00Z", gbox, SunGridSettings(max_direct_pixels=0))
    assert np.max(np.abs(direct[0] - interp[0])) < 2e-3
    assert np.max(np.abs(direct[1] - interp[1])) < 2e-3


def test_mgrs_tile_ids_of_genuine_tiles(sample_path: Callable[[str], Path]) -> None:
    """The 100 km square under each genuine tile's geoposition gives back its tile id."""
    import re

    checked = set()
    for xml in sorted(sample_path("s2_metadata_only").rglob("*.xml")):
        text = xml.read_text(errors="replace")
        tile = re.search(r"<TILE_ID[^>]*>[^<]*_T(\d\d[A-Z]{3})_", text)
        code = re.search(r"<HORIZONTAL_CS_CODE>EPSG:(\d+)<", text)
        ulx = re.search(r"<ULX>(\d+)<", text)
        uly = re.search(r"<ULY>(\d+)<", text)
        if not (tile and code and ulx and uly) or tile.group(1)[2] in "XC":  # Svalbard, Antarctica
            continue
        if tile.group(1) == "34LBQ":
            continue  # stactools fixture: named 34LBQ but carries the geoposition of its sibling 34LBP
        to_ll = Transformer.from_crs(f"EPSG:{code.group(1)}", "EPSG:4326", always_xy=True)
        lon, lat = to_ll.transform(int(ulx.group(1)) + 50_000, int(uly.group(1)) - 50_000)
        if int((lon + 180.0) // 6.0) % 60 + 1 != int(tile.group(1)[:2]):
            continue  # this 100 km square lies beyond its zone's edge (e.g. 01LAC)
        assert mgrs_tile_id(lon, lat) == tile.group(1), xml
        checked.add(tile.group(1))
    assert len(checked) >= 8 and any(t[2] < "N" for t in checked)  # southern tiles included


def test_list_and_open_every_scene(sample_data: Path) -> None:
    names = list_scenes()
    assert len(names) == 6 and "betsiboka" in names
    for name in names:
        p = open_scene(name)
        assert isinstance(p, L1CProduct)
        assert p.bands == BAND_NAMES
        ds = p.toa(["B02", "B11"], resolution=10)
        assert ds.odc.geobox == p.geobox(10)
        assert ds["B02"].dtype == np.float32
        assert set(ds.attrs) >= {"datetime", "platform", "tile_id", "sun_zenith", "sun_azimuth", "view_zenith"}
        assert ds.attrs["sun_zenith"].shape == ds["B02"].shape
        assert p.metadata.sun is None and p.metadata.quantification == 10000
    with pytest.raises(InputError, match="known scenes"):
        open_scene("slovenia:2015-07-12")


def test_slovenia_matches_npy_and_manifest(sample_path: Callable[[str], Path]) -> None:
    folder = sample_path("slovenia_T33_summer2015")
    cube = np.load(folder / "L1C_13band_2015summer_5dates.npy")
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["scenes"]["L1C_13band_2015summer_5dates"]:
        date = entry["date"][:10]
        p = open_scene(f"slovenia:{date}")
        ds = p.toa(resolution=10, chunks=None)
        for i, b in enumerate(BAND_NAMES):
            np.testing.assert_array_equal(ds[b].values, cube[entry["index_in_file"], :, :, i])
        assert ds.attrs["datetime"] == entry["date"] + "Z"
        assert p.metadata.tile_id == "33TVL"
        assert p.metadata.platform == "S2A"
        assert p.geobox(10).crs.epsg == 32633


def test_slovenia_coarse_is_block_mean(sample_data: Path) -> None:
    p = open_scene("slovenia:2015-09-09")
    full = p.toa(["B04"], 10, chunks=None)["B04"].values
    coarse = p.toa(["B04"], 240)
    assert coarse.sizes == {"y": 5, "x": 5}  # 101 x 100 px in 24 x 24 blocks, partial edges kept
    v = coarse["B04"].values
    assert v[0, 0] == pytest.approx(full[:24, :24].mean(), rel=1e-6)
    assert v[4, 4] == pytest.approx(full[96:, 96:].mean(), rel=1e-6)
    gb = coarse.odc.geobox
    assert gb.affine.c == p.geobox(10).affine.c and gb.affine.a == pytest.approx(24 * p.geobox(10).affine.a)
    q = p.quality(resolution=240)
    assert q["nodata"].dtype == bool and not q["nodata"].any()
    ang = p.angles(gb)
    assert float(ang["sun_zenith"].mean()) == pytest.approx(p.metadata.mean_sun_zenith, abs=0.01)


def test_betsiboka_grid_and_angles(sample_data: Path) -> None:
    p = open_scene("betsiboka")
    utm, geo = betsiboka_geoboxes()
    assert p.geobox(10) == utm and utm.shape == BETSIBOKA.shape
    assert utm.crs.epsg == 32738
    # the fitted UTM grid stays within ~3 pixels of the geographic one at the corners
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32738", always_xy=True)
    for lon, lat, (r, c) in (
        (BETSIBOKA.lon_min, BETSIBOKA.lat_max, (0, 0)),
        (BETSIBOKA.lon_max, BETSIBOKA.lat_min, (856, 512)),
    ):
        x, y = to_utm.transform(lon, lat)
        ux, uy = utm.affine @ (c, r)
        assert abs(x - ux) < 250 and abs(y - uy) < 250
    ds = p.toa(["B01", "B08"], resolution=240)
    assert ds.odc.geobox == zoom_out(utm, 3)
    # sun high (nominal December date over 16 S), view nadir
    assert 10 < p.metadata.mean_sun_zenith < 40
    assert p.metadata.extra["date_known"] is False
    assert geo.crs.epsg == 4326


def test_dispatch_and_independent_copies(sample_data: Path) -> None:
    from l2a.io.l1c import open_l1c

    p = open_l1c("scene:slovenia:2015-08-30")
    a = p.toa(["B03"], chunks=None)["B03"]
    a.values[:] = -1.0  # a caller scribbling on its copy does not change the product
    assert float(p.toa(["B03"], chunks=None)["B03"].min()) > 0
    assert open_l1c("scene:betsiboka").metadata.product_id == "betsiboka"
