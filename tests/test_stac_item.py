"""STAC items of the products: content, offline schema validation, direct loading by odc-stac and stackstac."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from test_muscate import FAST, NAME, make_inputs

from l2a.catalog.stac_item import (
    EXTENSIONS,
    PROJECTION_V1_2,
    PROJECTION_V2_0,
    ItemSettings,
    make_item,
    multihash_sha256,
    verify_item,
)
from l2a.io.muscate import read_product, sha256_file, write_product
from l2a.sensors.sentinel2 import BY_NAME, MUSCATE_BANDS

SCHEMAS = Path(__file__).parent / "schemas"
CORE_ITEM = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
CORE_COLLECTION = "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"
CORE_CATALOG = "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json"


class OfflineValidator:
    """jsonschema validation with pystac's bundled core schemas and l2a's own extension schemas.

    The extension schemas are the ``*.json`` files of ``tests/schemas`` (written for l2a from the
    extensions' specifications, see its README), keyed by ``$id``. Every stored extension schema is
    run on every document: besides the rules of its version (applied when that version is
    declared) each one checks that a document using its fields declares the extension at all.
    """

    def __init__(self) -> None:
        from pystac.validation.local_validator import get_local_schema_cache
        from referencing import Registry, Resource

        self.schemas: dict[str, dict[str, Any]] = dict(get_local_schema_cache())
        self.extensions: list[str] = []
        for f in sorted(SCHEMAS.glob("*.json")):
            s = json.loads(f.read_text())
            uri = s["$id"].rstrip("#")
            self.schemas[uri] = s
            self.extensions.append(uri)

        def retrieve(uri: str) -> Resource:
            raise LookupError(f"schema {uri} is not stored offline (no network in tests)")

        self.registry = Registry(retrieve=retrieve).with_resources(  # type: ignore[call-arg]
            (uri, Resource.from_contents(s)) for uri, s in self.schemas.items()
        )

    def check(self, d: dict[str, Any], uri: str) -> None:
        """Validate ``d`` against one stored schema (raises ``jsonschema.ValidationError``)."""
        from jsonschema import Draft7Validator

        Draft7Validator(self.schemas[uri], registry=self.registry).validate(d)

    def validate(self, d: dict[str, Any], core: str, *, extensions: bool = True) -> list[str]:
        """Validate against ``core`` and every stored extension schema; return the declared
        extension URIs that are not stored (not checked)."""
        self.check(d, core)
        if not extensions:
            return list(d.get("stac_extensions", []))
        for uri in self.extensions:
            self.check(d, uri)
        return [uri for uri in d.get("stac_extensions", []) if uri not in self.schemas]


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
    assert item.bbox is not None
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
    assert a["thumbnail"].media_type == "image/jpeg" and set(a["thumbnail"].roles or ()) == {"thumbnail", "overview"}
    assert a["metadata"].roles == ["metadata"]
    assert multihash_sha256("0" * 64) == "1220" + "0" * 64


def test_schemas_are_ours_and_complete(validator: OfflineValidator) -> None:
    """One well-formed draft-07 schema per extension version the items declare, keyed by its URL."""
    from jsonschema import Draft7Validator

    assert sorted(validator.extensions) == sorted(EXTENSIONS.values())
    for f in sorted(SCHEMAS.glob("*.json")):
        s = json.loads(f.read_text())
        Draft7Validator.check_schema(s)
        assert s["$schema"] == "http://json-schema.org/draft-07/schema#"
        slug, version = f.stem.rsplit("-v", 1)
        assert s["$id"] == f"https://stac-extensions.github.io/{slug}/v{version}/schema.json"
        assert "l2a's own schema" in s["title"]


def test_validates_offline(item: pystac.Item, validator: OfflineValidator, product: Any) -> None:
    from jsonschema import ValidationError

    d = item.to_dict()
    assert d["stac_extensions"] == list(EXTENSIONS.values())
    assert PROJECTION_V1_2 in d["stac_extensions"]
    # every declared extension is checked: nothing skipped
    assert validator.validate(d, CORE_ITEM) == []
    # an item built from the folder alone, with relative-URL assets and no FRE, too
    again = make_item(read_product(product.path), settings=ItemSettings(href_base="https://x.org/l2a", include_fre=False))
    assert validator.validate(again.to_dict(), CORE_ITEM) == []
    # the core schema does catch a broken item
    bad = json.loads(json.dumps(d))
    del bad["properties"]["datetime"]
    with pytest.raises(ValidationError, match="datetime"):
        validator.validate(bad, CORE_ITEM)


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def f(d: dict[str, Any]) -> None:
        target: Any = d
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
    return f


def _delete(path: tuple[Any, ...]) -> Any:
    def f(d: dict[str, Any]) -> None:
        target: Any = d
        for k in path[:-1]:
            target = target[k]
        del target[path[-1]]
    return f


def _undeclare(key: str) -> Any:
    def f(d: dict[str, Any]) -> None:
        d["stac_extensions"].remove(EXTENSIONS[key])
    return f


def _move_to_properties(asset: str, field: str) -> Any:
    def f(d: dict[str, Any]) -> None:
        d["properties"][field] = d["assets"][asset].pop(field)
    return f


def _checksum(d: dict[str, Any], how: str) -> None:
    c = d["assets"]["sre_red"]["file:checksum"]
    d["assets"]["sre_red"]["file:checksum"] = c[:-2] if how == "short" else c.upper()


#: (extension key, what is wrong, mutation of a valid item dict, expected error): each must be
#: rejected by the stored schema of that extension (and so by the validator), for that reason; a
#: "not declared" case uses the extension's fields without listing it in ``stac_extensions``.
UNDECLARED = r"None of \[.*\] are valid under the given schema"  # stac_extensions lacks the extension
MUTATIONS: list[tuple[str, str, Any, str]] = [
    ("proj", "proj:epsg as a string", _set(("properties", "proj:epsg"), "32631"),
     "is not of type 'integer', 'null'"),
    ("proj", "proj:code as a number", _set(("properties", "proj:code"), 32631),
     "is not of type 'string', 'null'"),
    ("proj", "proj:code without authority", _set(("properties", "proj:code"), "32631"),
     'does not match'),
    ("proj", "proj:shape with one axis", _set(("assets", "sre_red", "proj:shape"), [600]),
     'is too short'),
    ("proj", "proj:transform of 5 numbers", _set(("assets", "sre_red", "proj:transform"), [10.0, 0.0, 3e5, 0.0, -10.0]),
     'is not valid under any of the given schemas'),
    ("proj", "unknown proj: field (typo)", _set(("properties", "proj:epgs"), 32631),
     "'proj:epgs' is not one of"),
    ("proj", "projection not declared", _undeclare("proj"),
     UNDECLARED),
    ("eo", "unknown common name", _set(("assets", "sre_red", "eo:bands", 0, "common_name"), "infrared"),
     "'infrared' is not one of"),
    ("eo", "cloud cover above 100 %", _set(("properties", "eo:cloud_cover"), 120.0),
     'greater than the maximum of 100'),
    ("eo", "eo:bands not an array", _set(("assets", "sre_red", "eo:bands"), {"name": "B04"}),
     "is not of type 'array'"),
    ("eo", "negative wavelength", _set(("assets", "sre_red", "eo:bands", 0, "center_wavelength"), -0.665),
     'less than or equal to the minimum of 0'),
    ("raster", "unknown data type", _set(("assets", "clm", "raster:bands", 0, "data_type"), "int17"),
     "'int17' is not one of"),
    ("raster", "nodata a free string", _set(("assets", "sre_red", "raster:bands", 0, "nodata"), "none"),
     "'none' is not valid under any"),
    ("raster", "raster:bands on the item properties", _move_to_properties("sre_red", "raster:bands"),
     "'raster:bands' should not be valid"),
    ("raster", "raster not declared", _undeclare("raster"),
     UNDECLARED),
    ("file", "sha2-256 checksum one byte short", lambda d: _checksum(d, "short"),
     "does not match '\\^1220"),
    ("file", "checksum in upper case", lambda d: _checksum(d, "upper"),
     'does not match'),
    ("file", "negative size", _set(("assets", "clm", "file:size"), -1),
     'less than the minimum of 0'),
    ("file", "size as a string", _set(("assets", "clm", "file:size"), "1234"),
     "is not of type 'integer'"),
    ("file", "file:size on the item properties", _move_to_properties("clm", "file:size"),
     "'file:size' should not be valid"),
    ("file", "file not declared", _undeclare("file"),
     UNDECLARED),
    ("view", "sun elevation above 90", _set(("properties", "view:sun_elevation"), 120.0),
     'greater than the maximum of 90'),
    ("view", "negative azimuth", _set(("properties", "view:azimuth"), -5.0),
     'less than the minimum of 0'),
    ("view", "incidence angle as a string", _set(("properties", "view:incidence_angle"), "5.5"),
     "is not of type 'number'"),
    ("sat", "relative orbit 0", _set(("properties", "sat:relative_orbit"), 0),
     'less than the minimum of 1'),
    ("sat", "relative orbit as a string", _set(("properties", "sat:relative_orbit"), "51"),
     "is not of type 'integer'"),
    ("sat", "unknown orbit state", _set(("properties", "sat:orbit_state"), "north"),
     "'north' is not one of"),
    ("sat", "sat not declared", _undeclare("sat"),
     UNDECLARED),
    ("grid", "grid:code missing (required)", _delete(("properties", "grid:code")),
     "'grid:code' is a required property"),
    ("grid", "grid:code without grid designation", _set(("properties", "grid:code"), "31TCJ"),
     "'31TCJ' does not match"),
    ("grid", "malformed MGRS square", _set(("properties", "grid:code"), "MGRS-31tcj"),
     "'MGRS-31tcj' does not match"),
    ("classification", "class without name", _delete(("assets", "clm", "classification:bitfields", 0, "classes", 0, "name")),
     "'name' is a required property"),
    ("classification", "bit field name with a space", _set(("assets", "mg2", "classification:bitfields", 0, "name"), "open water"),
     "'open water' does not match"),
    ("classification", "negative bit offset", _set(("assets", "clm", "classification:bitfields", 1, "offset"), -1),
     'less than the minimum of 0'),
    ("classification", "class value not an integer", _set(("assets", "edg", "classification:bitfields", 0, "classes", 1, "value"), "1"),
     "'1' is not of type 'integer'"),
    ("classification", "classification not declared", _undeclare("classification"),
     UNDECLARED),
    ("processing", "processing:datetime not RFC 3339", _set(("properties", "processing:datetime"), "2017-12-01 10:55:14"),
     'does not match'),
    ("processing", "processing:datetime not UTC", _set(("properties", "processing:datetime"), "2017-12-01T10:55:14+02:00"),
     'does not match'),
    ("processing", "long level name", _set(("properties", "processing:level"), "Level-2A"),
     'should not be valid'),
    ("processing", "software version a number", _set(("properties", "processing:software"), {"l2a": 1.0}),
     "is not of type 'string'"),
    ("s2", "processing baseline in product-name form", _set(("properties", "s2:processing_baseline"), "N0206"),
     "'N0206' does not match"),
    ("s2", "processing baseline as a number", _set(("properties", "s2:processing_baseline"), 2.06),
     "is not of type 'string'"),
    ("s2", "unknown s2: field (typo)", _set(("properties", "s2:processing_baselin"), "02.06"),
     "'s2:processing_baselin' is not one of"),
    ("s2", "sentinel-2 not declared", _undeclare("s2"),
     UNDECLARED),
]


def test_every_schema_has_mutations() -> None:
    assert {k for k, *_ in MUTATIONS} == set(EXTENSIONS)


def _messages(errors: Any) -> list[str]:
    out: list[str] = []
    for e in errors:
        out.append(e.message)
        out.extend(_messages(e.context))
    return out


@pytest.mark.parametrize(("key", "mutation", "expected"), [(k, m, e) for k, _, m, e in MUTATIONS],
                         ids=[f"{k}: {w}" for k, w, *_ in MUTATIONS])
def test_schemas_reject_mutated_items(key: str, mutation: Any, expected: str, item: pystac.Item,
                                      validator: OfflineValidator) -> None:
    from jsonschema import Draft7Validator, ValidationError

    good = item.to_dict()
    validator.check(good, EXTENSIONS[key])
    bad = json.loads(json.dumps(good))
    mutation(bad)
    errors = list(Draft7Validator(validator.schemas[EXTENSIONS[key]], registry=validator.registry).iter_errors(bad))
    assert errors, "the mutated item passed"
    messages = _messages(errors)
    assert any(re.search(expected, m) for m in messages), messages
    with pytest.raises(ValidationError):
        validator.validate(bad, CORE_ITEM)


def test_other_versions_are_not_judged_by_ours(item: pystac.Item, validator: OfflineValidator) -> None:
    """A document declaring another version of an extension is not held to our version's rules,
    but it is reported as not checked."""
    d = item.to_dict()
    d["stac_extensions"] = [PROJECTION_V2_0 if u == PROJECTION_V1_2 else u for u in d["stac_extensions"]]
    assert validator.validate(d, CORE_ITEM) == [PROJECTION_V2_0]


def test_roundtrip_through_json(item: pystac.Item, tmp_path: Path, product: Any, validator: OfflineValidator) -> None:
    import stackstac

    from l2a.catalog.stac_item import for_stackstac

    path = tmp_path / "item.json"
    path.write_text(json.dumps(item.to_dict()))
    on_disk = json.loads(path.read_text())
    assert on_disk["properties"]["proj:epsg"] == 32631 and on_disk["properties"]["proj:code"] == "EPSG:32631"
    # the raw JSON dict loads in stackstac as is (no shim)
    st = stackstac.stack([on_disk], assets=["sre_green"], dtype="int16", fill_value=np.int16(-10000), rescale=False)
    np.testing.assert_array_equal(st.values[0, 0], _files(product, "SRE", "B03"))
    # pystac 1.15's reader migrates to projection v2.0.0 and drops proj:epsg (documented in
    # stac_item; if this starts failing, pystac changed and the docstring must follow)
    again = pystac.Item.from_file(str(path))
    assert again.properties["proj:code"] == "EPSG:32631" and "proj:epsg" not in again.properties
    assert PROJECTION_V2_0 in again.stac_extensions and PROJECTION_V1_2 not in again.stac_extensions
    assert "proj:epsg" in pystac.Item.from_dict(on_disk, migrate=False).properties
    assert verify_item(again) == []
    # the shim puts proj:epsg back and the declared projection version with it: valid again
    fixed = for_stackstac([again])
    assert fixed[0]["properties"]["proj:epsg"] == 32631 and PROJECTION_V1_2 in fixed[0]["stac_extensions"]
    assert validator.validate(fixed[0], CORE_ITEM) == []
    st = stackstac.stack(fixed, assets=["sre_green"], dtype="int16", fill_value=np.int16(-10000), rescale=False)
    np.testing.assert_array_equal(st.values[0, 0], _files(product, "SRE", "B03"))
    # items that already carry proj:epsg pass unchanged
    assert for_stackstac([on_disk]) == [on_disk]


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
    it = make_item(product, settings=ItemSettings(href_base="https://data.example.org/l2a/", include_fre=False))
    assert it.assets["sre_red"].href == f"https://data.example.org/l2a/{NAME}/{NAME}_SRE_B4.tif"
    assert not any(k.startswith("fre_") for k in it.assets)
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
    # odc-stac reads proj:code, so items migrated by pystac's reader (no proj:epsg) load as well
    migrated = pystac.Item.from_dict(item.to_dict())
    assert "proj:epsg" not in migrated.properties
    ds3 = odc.stac.load([migrated], bands=["sre_red"], chunks={})
    assert ds3.odc.geobox.crs.epsg == 32631
    np.testing.assert_array_equal(ds3.sre_red.values[0], _files(product, "SRE", "B04"))


def test_stackstac_loads_exact_values(item: pystac.Item, product: Any) -> None:
    import stackstac

    raw_json = json.loads(json.dumps(item.to_dict()))  # the item as written to disk / served, no shim
    st = stackstac.stack([raw_json], assets=["sre_red", "sre_blue"], dtype="int16", fill_value=np.int16(-10000), rescale=False)
    assert st.attrs["crs"].lower() == "epsg:32631" and st.shape == (1, 2, 600, 540)
    np.testing.assert_array_equal(st.sel(band="sre_red").values[0], _files(product, "SRE", "B04"))
    np.testing.assert_array_equal(st.sel(band="sre_blue").values[0], _files(product, "SRE", "B02"))
    # rescale=True applies raster:bands scale: reflectance in [0, 1)
    sf = stackstac.stack([raw_json], assets=["sre_swir22"], resolution=20, dtype="float64", fill_value=np.nan)
    raw = _files(product, "SRE", "B12").astype(float)
    expect = np.where(raw == -10000, np.nan, raw * 1e-4)
    np.testing.assert_allclose(sf.values[0, 0], expect, rtol=0, atol=1e-12)


def test_reflectance_less_item(tmp_path: Path, validator: OfflineValidator) -> None:
    res = write_product(tmp_path, **make_inputs(), settings=replace(FAST, max_cloud_cover=1.0))
    it = make_item(res)
    assert it.properties["l2a:reflectance"] is False
    assert not any(k.startswith(("sre_", "fre_", "atb")) for k in it.assets)
    assert {"clm", "mg2", "thumbnail", "metadata"} <= set(it.assets)
    assert validator.validate(it.to_dict(), CORE_ITEM) == []
