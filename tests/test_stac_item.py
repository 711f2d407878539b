"""STAC items of the products: content, offline schema validation, direct loading by odc-stac and stackstac."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from test_muscate import FAST, NAME, make_inputs

from l2a.catalog.stac_item import EXTENSIONS, ItemSettings, make_item, multihash_sha256, verify_item
from l2a.io.muscate import read_product, sha256_file, write_product
from l2a.sensors.sentinel2 import BY_NAME, MUSCATE_BANDS

SCHEMAS = Path(__file__).parent / "schemas"
CORE_ITEM = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
CORE_COLLECTION = "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"
CORE_CATALOG = "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json"
#: Extension schemas that may be missing offline (skipped); adding one to tests/schemas/ makes the
#: tests validate it. Stored: projection v2.0.0, eo v1.1.0, raster v1.1.0, view v1.0.0, sat v1.0.0.
STORED = {EXTENSIONS[k] for k in ("proj", "eo", "raster", "view", "sat")}
NOT_STORED = set(EXTENSIONS.values()) - STORED


class OfflineValidator:
    """jsonschema validation with schemas from pystac's bundled core set and tests/schemas/ only."""

    def __init__(self) -> None:
        from pystac.validation.local_validator import get_local_schema_cache
        from referencing import Registry, Resource

        self.schemas: dict[str, dict[str, Any]] = dict(get_local_schema_cache())
        for f in sorted(SCHEMAS.glob("*.json")):
            s = json.loads(f.read_text())
            self.schemas[s["$id"].rstrip("#")] = s

        def retrieve(uri: str) -> Resource:
            raise LookupError(f"schema {uri} is not stored offline (no network in tests)")

        self.registry = Registry(retrieve=retrieve).with_resources(  # type: ignore[call-arg]
            (uri, Resource.from_contents(s)) for uri, s in self.schemas.items()
        )

    def validate(self, d: dict[str, Any], core: str, *, extensions: bool = True) -> list[str]:
        """Validate against ``core`` and every declared extension stored; return the skipped extension URIs."""
        from jsonschema import Draft7Validator

        Draft7Validator(self.schemas[core], registry=self.registry).validate(d)
        if not extensions:
            return list(d.get("stac_extensions", []))
        skipped = []
        for uri in d.get("stac_extensions", []):
            if uri in self.schemas:
                Draft7Validator(self.schemas[uri], registry=self.registry).validate(d)
            else:
                skipped.append(uri)
        return skipped


@pytest.fixture(scope="module")
def validator() -> OfflineValidator:
    return OfflineValidator()


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("stac_products")
    return write_product(out, **make_inputs(), settings=FAST)


@pytest.fixture(scope="module")
def item(product: Any) -> pystac.Item:
    return make_item(product, l1c_href="https://example.org/stac/S2A_MSIL1C_20171201T105421.json")


def test_properties(item: pystac.Item, product: Any) -> None:
    p = item.properties
    assert item.id == NAME and item.collection_id == "sentinel2-l2a-l2a"
    assert item.datetime is not None and item.datetime.isoformat().startswith("2017-12-01T10:55:14.866")
    assert p["platform"] == "sentinel-2a" and p["constellation"] == "sentinel-2" and p["instruments"] == ["msi"]
    assert p["eo:cloud_cover"] == pytest.approx(product.info.covers["cloud"], abs=1e-4)
    for k in ("l2a:snow_cover", "l2a:water_cover", "l2a:cloud_shadow_cover"):
        assert 0.0 <= p[k] <= 100.0
    assert p["proj:code"] == "EPSG:32631" and p["proj:epsg"] == 32631
    assert p["grid:code"] == "MGRS-31TCJ"
    assert p["view:sun_elevation"] == pytest.approx(90 - 67.5) and p["view:sun_azimuth"] == pytest.approx(165.25)
    assert p["view:incidence_angle"] == pytest.approx(5.5)
    assert p["sat:relative_orbit"] == 51 and p["s2:processing_baseline"] == "02.06"
    assert p["processing:level"] == "L2A" and "l2a" in p["processing:software"]
    assert p["processing:datetime"].endswith("Z")
    rels = {lk.rel: lk.href for lk in item.links}
    assert rels["derived_from"].endswith("S2A_MSIL1C_20171201T105421.json") and "license" in rels
    # footprint: the UTM box (x 300-305.4 km, zone 31) in lon/lat around 0.5 E, 44.2 N
    w, s, e, n = item.bbox
    assert 0.0 < w < e < 1.5 and 44.0 < s < n < 44.5


def test_assets(item: pystac.Item, product: Any) -> None:
    a = item.assets
    for b in MUSCATE_BANDS:
        band = BY_NAME[b]
        for kind in ("sre", "fre"):
            asset = a[f"{kind}_{band.common_name}"]
            f = product.file(kind.upper(), band=b)
            assert asset.href == str((product.path / f.path).resolve())
            assert asset.roles == ["data", "reflectance"]
            x = asset.extra_fields
            assert x["raster:bands"] == [{"data_type": "int16", "nodata": -10000, "scale": 0.0001, "offset": 0.0,
                                          "spatial_resolution": float(band.resolution)}]
            assert x["eo:bands"][0]["name"] == b
            # eo v1.1.0 knows only "rededge" for B5-B7
            assert x["eo:bands"][0]["common_name"] == ("rededge" if b in ("B05", "B06", "B07") else band.common_name)
            assert x["eo:bands"][0]["center_wavelength"] == band.center_wavelength
            assert x["file:size"] == (product.path / f.path).stat().st_size
            assert x["file:checksum"] == "1220" + sha256_file(product.path / f.path)
            with rasterio.open(product.path / f.path) as r:
                assert x["proj:shape"] == [r.height, r.width]
                assert x["proj:transform"] == list(r.transform)[:6]
    for key in ("clm", "mg2", "sat", "edg", "iab", "clm_r2", "mg2_r2", "sat_r2", "edg_r2", "iab_r2"):
        bf = a[key].extra_fields["classification:bitfields"]
        assert [f["offset"] for f in bf] == list(range(len(bf)))
    assert [f["name"] for f in a["clm"].extra_fields["classification:bitfields"]][7] == "cirrus"
    assert [f["name"] for f in a["mg2"].extra_fields["classification:bitfields"]][2] == "snow"
    assert len(a["sat"].extra_fields["classification:bitfields"]) == 4 and len(a["sat_r2"].extra_fields["classification:bitfields"]) == 6
    atb = a["atb"].extra_fields["raster:bands"]
    assert [b["scale"] for b in atb] == [0.05, 0.005]
    assert a["thumbnail"].media_type == "image/jpeg" and set(a["thumbnail"].roles) == {"thumbnail", "overview"}
    assert a["metadata"].roles == ["metadata"]
    assert multihash_sha256("0" * 64) == "1220" + "0" * 64


def test_validates_offline(item: pystac.Item, validator: OfflineValidator, product: Any) -> None:
    from jsonschema import ValidationError

    d = item.to_dict()
    # proj:epsg (for stackstac 0.5) is the one thing the projection v2.0.0 schema rejects
    with pytest.raises(ValidationError, match="proj:epsg"):
        validator.validate(d, CORE_ITEM)
    strict = make_item(product, settings=ItemSettings(stackstac_epsg=False)).to_dict()
    skipped = validator.validate(strict, CORE_ITEM)
    assert set(skipped) <= NOT_STORED
    assert not STORED & set(skipped)
    # only proj:epsg differs between the two
    assert {k: v for k, v in d["properties"].items() if k != "proj:epsg"} == strict["properties"]
    # the core schema does catch a broken item
    bad = json.loads(json.dumps(strict))
    del bad["properties"]["datetime"]
    with pytest.raises(ValidationError, match="datetime"):
        validator.validate(bad, CORE_ITEM)
    # and the stored extension schemas catch a bad field
    bad = json.loads(json.dumps(strict))
    bad["assets"]["sre_red"]["eo:bands"][0]["common_name"] = "infrared"
    with pytest.raises(ValidationError, match="infrared"):
        validator.validate(bad, CORE_ITEM)
    for path, value in ((("assets", "clm", "raster:bands", 0, "data_type"), "int17"), (("properties", "sat:relative_orbit"), 0),
                        (("properties", "view:sun_elevation"), 120.0)):
        bad = json.loads(json.dumps(strict))
        target: Any = bad
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        with pytest.raises(ValidationError):
            validator.validate(bad, CORE_ITEM)


def test_roundtrip_through_json(item: pystac.Item, tmp_path: Path, product: Any) -> None:
    import stackstac

    from l2a.catalog.stac_item import for_stackstac

    path = tmp_path / "item.json"
    path.write_text(json.dumps(item.to_dict()))
    on_disk = json.loads(path.read_text())
    assert on_disk["properties"]["proj:epsg"] == 32631 and on_disk["properties"]["proj:code"] == "EPSG:32631"
    again = pystac.Item.from_file(str(path))
    # pystac's projection migration drops proj:epsg on read (PITFALLS): the shim puts it back
    assert again.properties["proj:code"] == "EPSG:32631"
    assert verify_item(again) == []
    fixed = for_stackstac([again])
    assert fixed[0]["properties"]["proj:epsg"] == 32631
    st = stackstac.stack(fixed, assets=["sre_green"], dtype="int16", fill_value=np.int16(-10000), rescale=False)
    np.testing.assert_array_equal(st.values[0, 0], _files(product, "SRE", "B03"))
    # the raw JSON dict works directly too
    st2 = stackstac.stack([on_disk], assets=["sre_green"], dtype="int16", fill_value=np.int16(-10000), rescale=False)
    np.testing.assert_array_equal(st2.values[0, 0], _files(product, "SRE", "B03"))


def test_verify_item_detects_changes(tmp_path: Path) -> None:
    res = write_product(tmp_path, **make_inputs(3), settings=FAST)
    it = make_item(res)
    assert verify_item(it) == []
    f = res.path / res.file("MG2", "R2").path
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    problems = verify_item(it)
    assert len(problems) == 1 and problems[0].startswith("mg2_r2") and "checksum" in problems[0]
    (res.path / res.file("SRE", band="B02").path).unlink()
    assert any(p.startswith("sre_blue") and "missing" in p for p in verify_item(it))


def test_href_base_and_options(product: Any) -> None:
    it = make_item(product, settings=ItemSettings(href_base="https://data.example.org/l2a/", stackstac_epsg=False, include_fre=False))
    assert it.assets["sre_red"].href == f"https://data.example.org/l2a/{NAME}/{NAME}_SRE_B4.tif"
    assert "proj:epsg" not in it.properties and not any(k.startswith("fre_") for k in it.assets)
    assert all("remote" in p for p in verify_item(it))
    # item rebuilt from the folder alone (resume) equals the one from the writer, but for the time it was made
    again = make_item(read_product(product.path))
    first = make_item(product)
    assert again.to_dict()["assets"] == first.to_dict()["assets"]
    assert {k: v for k, v in again.properties.items()} == {k: v for k, v in first.properties.items()}


def _files(product: Any, kind: str, band: str | None = None, group: str | None = None) -> np.ndarray:
    with rasterio.open(product.path / product.file(kind, group=group, band=band).path) as r:
        return r.read(1)


# odc-geo 0.5.3 (inside odc.stac.load) still calls shapely.ops.transform, deprecated in shapely 2.2
@pytest.mark.filterwarnings(r"ignore:The 'shapely.ops.transform\(\)' function is deprecated:DeprecationWarning")
def test_odc_stac_loads_exact_values(item: pystac.Item, product: Any) -> None:
    import odc.stac

    ds = odc.stac.load([item], bands=["sre_red", "sre_nir", "clm"], chunks={})
    assert ds.odc.geobox.crs.epsg == 32631 and tuple(ds.odc.geobox.shape) == (600, 540)
    assert ds.sre_red.attrs["nodata"] == -10000 and ds.sre_red.dtype == np.int16
    np.testing.assert_array_equal(ds.sre_red.values[0], _files(product, "SRE", "B04"))
    np.testing.assert_array_equal(ds.sre_nir.values[0], _files(product, "SRE", "B08"))
    np.testing.assert_array_equal(ds.clm.values[0], _files(product, "CLM", group="R1"))
    # a 20 m band on its own grid
    ds2 = odc.stac.load([item], bands=["sre_swir16", "clm_r2", "sre_rededge2"], resolution=20, chunks={})
    assert tuple(ds2.odc.geobox.shape) == (300, 270)
    np.testing.assert_array_equal(ds2.sre_rededge2.values[0], _files(product, "SRE", "B06"))
    np.testing.assert_array_equal(ds2.sre_swir16.values[0], _files(product, "SRE", "B11"))
    np.testing.assert_array_equal(ds2.clm_r2.values[0], _files(product, "CLM", group="R2"))


def test_stackstac_loads_exact_values(item: pystac.Item, product: Any) -> None:
    import stackstac

    st = stackstac.stack([item], assets=["sre_red", "sre_blue"], dtype="int16", fill_value=np.int16(-10000), rescale=False)
    assert st.attrs["crs"].lower() == "epsg:32631" and st.shape == (1, 2, 600, 540)
    np.testing.assert_array_equal(st.sel(band="sre_red").values[0], _files(product, "SRE", "B04"))
    np.testing.assert_array_equal(st.sel(band="sre_blue").values[0], _files(product, "SRE", "B02"))
    # rescale=True applies raster:bands scale: reflectance in [0, 1)
    sf = stackstac.stack([item], assets=["sre_swir22"], resolution=20, dtype="float64", fill_value=np.nan)
    raw = _files(product, "SRE", "B12").astype(float)
    expect = np.where(raw == -10000, np.nan, raw * 1e-4)
    np.testing.assert_allclose(sf.values[0, 0], expect, rtol=0, atol=1e-12)


def test_reflectance_less_item(tmp_path: Path, validator: OfflineValidator) -> None:
    res = write_product(tmp_path, **make_inputs(), settings=replace(FAST, max_cloud_cover=1.0))
    it = make_item(res)
    assert it.properties["l2a:reflectance"] is False
    assert not any(k.startswith(("sre_", "fre_", "atb")) for k in it.assets)
    assert {"clm", "mg2", "thumbnail", "metadata"} <= set(it.assets)
    validator.validate(make_item(res, settings=ItemSettings(stackstac_epsg=False)).to_dict(), CORE_ITEM)
