"""L1C as a STAC item: the real decimated T19UDP tile, and items pointing at a SAFE we wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio

from l2a.errors import InputError
from l2a.io.l1c import L1CProduct, open_l1c
from l2a.io.safe import SafeProduct, open_safe
from l2a.io.stac_l1c import open_stac_item
from l2a.sensors.sentinel2 import BANDS, BY_NAME
from l2a.testing.safe_writer import safe_stac_item
from l2a.testing.series import slovenia_safe_series

T19 = "riotilerpds_fixtures/L1C_T19UDP_20170729_decimated"


def _t19_item(folder: Path, item_dir: Path) -> dict[str, Any]:
    """A STAC item built from the fixture's tileInfo.json (hrefs relative to ``item_dir``)."""
    info = json.loads((folder / "tileInfo.json").read_text())
    name = info["productName"]  # S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20170729T153557
    epsg = int(info["tileGeometry"]["crs"]["properties"]["name"].rsplit(":", 1)[1])
    ulx, uly = info["tileOrigin"]["coordinates"]
    with rasterio.open(folder / "B01.jp2") as src:
        shape = [src.height, src.width]
    res = 109_800 / shape[1]
    assets = {}
    for b in BANDS:
        assets[b.name] = {
            "href": os.path.relpath(folder / f"{b.name}.jp2", item_dir),
            "type": "image/jp2",
            "roles": ["data"],
            "eo:bands": [{"name": b.name, "common_name": b.common_name}],
        }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": name,
        "geometry": None,
        "properties": {
            "datetime": info["timestamp"],
            "platform": "sentinel-2a",
            "s2:processing_baseline": name.split("_")[3][1:3] + "." + name.split("_")[3][3:],
            "sat:relative_orbit": int(name.split("_")[4][1:]),
            "mgrs:utm_zone": info["utmZone"],
            "mgrs:latitude_band": info["latitudeBand"],
            "mgrs:grid_square": info["gridSquare"],
            "eo:cloud_cover": info["cloudyPixelPercentage"],
            "proj:epsg": epsg,
            "proj:shape": shape,
            "proj:transform": [res, 0.0, ulx, 0.0, -res, uly],
        },
        "links": [],
        "assets": assets,
    }


def test_t19udp_item(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    folder = sample_path(T19)
    item = _t19_item(folder, tmp_path)
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    p = open_l1c(str(path))  # dispatch by the .json suffix
    assert isinstance(p, L1CProduct)
    md = p.metadata
    assert (md.tile_id, md.platform, md.baseline, md.relative_orbit) == ("19UDP", "S2A", "02.05", 111)
    assert md.radio_offsets["B04"] == 0.0 and md.quantification == 10000  # baseline 02.05: no offset
    assert md.sensing_time == datetime(2017, 7, 29, 15, 35, 57, 455000, tzinfo=UTC)
    gb = p.geobox(900)
    assert gb.shape == (122, 122) and gb.crs.epsg == 32619 and gb.affine.c == 399960
    ds = p.toa(["B04", "B8A", "B10"], 900).compute()
    for name in ("B04", "B8A", "B10"):
        with rasterio.open(folder / f"{name}.jp2") as src:
            dn = src.read(1).astype(np.float64)
        expect = np.where(dn == 0, np.nan, dn / 10000).astype(np.float32)
        np.testing.assert_array_equal(ds[name].values, expect)
    assert np.isnan(ds["B04"].values).any() and np.isfinite(ds["B04"].values).any()  # swath edge
    # coarser: exact 2 x 2 block means over valid pixels (min_valid_fraction 0.5)
    c = p.toa(["B04"], 1800).compute()["B04"].values
    full = ds["B04"].values
    blk = full[:2, 60:62]
    if np.isfinite(blk).all():
        assert c[0, 30] == pytest.approx(blk.mean(), rel=1e-6)
    # angles computed from time and place: late afternoon? no, 15:36 UTC = 11:00 local solar time
    ang = p.angles(gb)
    sz = ang["sun_zenith"].values
    assert 25 < float(np.nanmean(sz)) < 40 and np.ptp(sz) > 0.3  # varies over 110 km
    assert float(ang["view_zenith"].values.max()) == 0.0  # no view angles in the item: nadir


def _item_for_safe(safe: SafeProduct, *, raster_bands: bool, asset_proj: bool) -> pystac.Item:
    md = safe.metadata
    gb10 = safe.geobox(10)
    item = pystac.Item(
        id=md.product_id,
        geometry=None,
        bbox=None,
        datetime=md.sensing_time,
        properties={
            "platform": "sentinel-2a",
            "s2:mgrs_tile": md.tile_id,
            "view:sun_elevation": 90.0 - md.mean_sun_zenith,
            "view:sun_azimuth": md.mean_sun_azimuth,
        },
    )
    if not raster_bands:
        item.properties["s2:processing_baseline"] = md.baseline
    if not asset_proj:
        item.properties.update({"proj:code": md.crs, "proj:shape": list(gb10.shape), "proj:transform": list(gb10.affine)[:6]})
    for b in md.radio_offsets:
        res = BY_NAME[b].resolution
        gb = md.geoboxes[res]
        extra: dict[str, Any] = {"eo:bands": [{"name": b, "common_name": BY_NAME[b].common_name}]}
        if asset_proj or res != 10:
            extra.update({"proj:code": md.crs, "proj:shape": list(gb.shape), "proj:transform": list(gb.affine)[:6]})
        if raster_bands:
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "scale": 1e-4, "offset": md.radio_offsets[b] / 1e4}]
        href = safe.band_file(b).path
        item.add_asset(BY_NAME[b].common_name, pystac.Asset(href=href, media_type="image/jp2", roles=["data"], extra_fields=extra))
    return item


@pytest.fixture(scope="module")
def slovenia_safe(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> Path:
    return slovenia_safe_series(tmp_path_factory.mktemp("slo"))[0]


@pytest.mark.parametrize("form", ["writer_item", "baseline_only_item_level_proj", "json_file"])
def test_stac_and_safe_give_the_same_pixels(slovenia_safe: Path, form: str, tmp_path: Path) -> None:
    safe = open_safe(slovenia_safe)
    if form == "writer_item":
        stac = open_l1c(safe_stac_item(slovenia_safe))
    elif form == "json_file":
        item = safe_stac_item(slovenia_safe)
        path = tmp_path / "item.json"
        path.write_text(json.dumps(item.to_dict(include_self_link=False)))
        stac = open_l1c(path)
    else:
        stac = open_l1c(_item_for_safe(safe, raster_bands=False, asset_proj=False))
    assert stac.metadata.radio_offsets == safe.metadata.radio_offsets
    assert (stac.metadata.tile_id, stac.metadata.platform) == (safe.metadata.tile_id, safe.metadata.platform)
    assert stac.bands == safe.bands
    for res in (10, 20, 60, 240):
        assert stac.geobox(res) == safe.geobox(res)
        a = stac.toa(["B02", "B05", "B09", "B12"], res, chunks=64).compute()
        b = safe.toa(["B02", "B05", "B09", "B12"], res, chunks=64).compute()
        for name in ("B02", "B05", "B09", "B12"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
        qa = stac.quality(["B02", "B09"], res).compute()
        qb = safe.quality(["B02", "B09"], res).compute()
        np.testing.assert_array_equal(qa["nodata"].values, qb["nodata"].values)
    # angles: item means + computed field vs the SAFE's 5 km grid (written from time and place)
    gb = safe.geobox(60)
    sa = stac.angles(gb)["sun_zenith"].values
    sb = safe.angles(gb)["sun_zenith"].values
    assert np.max(np.abs(sa - sb)) < 0.01


def test_item_errors(slovenia_safe: Path, tmp_path: Path) -> None:
    safe = open_safe(slovenia_safe)
    item = _item_for_safe(safe, raster_bands=False, asset_proj=True)
    del item.properties["s2:processing_baseline"]
    with pytest.raises(InputError, match="offset"):
        open_stac_item(item)
    d = _item_for_safe(safe, raster_bands=True, asset_proj=True).to_dict()
    d["assets"] = {"thumbnail": {"href": "x.jpg", "roles": ["thumbnail"]}}
    with pytest.raises(InputError, match="no Sentinel-2 band"):
        open_stac_item(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="STAC item"):
        open_stac_item(bad)
    with pytest.raises(InputError, match="no such"):
        open_stac_item(tmp_path / "missing.json")
