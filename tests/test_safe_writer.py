"""SAFE writer: genuine structure, lossless bands, and an exact round trip through the reader."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import defusedxml.ElementTree as DET
import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.errors import InputError
from l2a.grid import tile_geobox
from l2a.sensors.sentinel2 import BANDS, BY_NAME
from l2a.sensors.solar import earth_sun_u
from l2a.testing import safe_writer as sw
from l2a.testing.safe_writer import (
    band_geobox,
    estimate_orbits,
    merged_view,
    model_view_grids,
    write_safe,
    write_safe_from_reflectance,
)

GENUINE = "alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE"
GENUINE_0206 = "eodag_T31TDH_20180101/S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE"
#: Genuine compact product name (ESA naming convention).
NAME_RE = re.compile(r"^S2[A-D]_MSIL1C_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}_\d{8}T\d{6}\.SAFE$")
WHEN = datetime(2024, 1, 20, 10, 58, 50, 500000, tzinfo=UTC)


def _crop() -> GeoBox:
    """A 126 x 96 px crop of 31TCJ on its 60 m lattice, 1.2 km in from the corner."""
    t = tile_geobox("31TCJ", 10).affine
    return GeoBox((126, 96), Affine(10.0, 0.0, t.c + 600, 0.0, -10.0, t.f - 1200), "EPSG:32631")


def _dn(gb: GeoBox) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    out = {}
    for b in BANDS:
        a = rng.integers(1, 65535, size=band_geobox(gb, b.resolution).shape, dtype=np.uint16)
        a[0, :3] = 0  # no-data
        a[-1, -1] = 65535  # saturated
        out[b.name] = a
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], GeoBox]:
    gb = _crop()
    dn = _dn(gb)
    path = write_safe(tmp_path_factory.mktemp("safe"), dn, gb, WHEN, tile_id="T31TCJ", baseline="05.10")
    return path, dn, gb


def _paths(root: object) -> set[str]:
    """Every element path (local names) of an XML tree."""
    out: set[str] = set()

    def walk(el: object, prefix: str) -> None:
        tag = el.tag.split("}")[-1]  # type: ignore[attr-defined]
        p = f"{prefix}/{tag}"
        out.add(p)
        for c in el:  # type: ignore[attr-defined]
            walk(c, p)

    walk(root, "")
    return out


def test_layout_and_names(written: tuple[Path, dict[str, np.ndarray], GeoBox]) -> None:
    path, dn, _ = written
    assert NAME_RE.match(path.name), path.name
    assert path.name.startswith("S2A_MSIL1C_20240120T105850_N0510_R051_T31TCJ_")
    granule = next((path / "GRANULE").iterdir())
    assert re.match(r"^L1C_T31TCJ_A\d{6}_\d{8}T\d{6}$", granule.name)
    imgs = sorted(p.name for p in (granule / "IMG_DATA").glob("*.jp2"))
    assert imgs == sorted(f"T31TCJ_20240120T105850_{b}.jp2" for b in dn)
    assert not list(path.parent.glob(".*tmp"))  # temporary folder renamed away


def test_bands_are_lossless_georeferenced_jpeg2000(written: tuple[Path, dict[str, np.ndarray], GeoBox]) -> None:
    path, dn, gb = written
    for name, arr in dn.items():
        f = next(path.glob(f"GRANULE/*/IMG_DATA/*_{name}.jp2"))
        with rasterio.open(f) as src:
            assert src.driver == "JP2OpenJPEG"
            assert src.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION_REVERSIBILITY") == "LOSSLESS"
            assert src.crs.to_epsg() == 32631
            assert src.transform == band_geobox(gb, BY_NAME[name].resolution).affine
            np.testing.assert_array_equal(src.read(1), arr)


def test_jpeg2000_levels_make_coarse_reads_cheap(tmp_path: Path) -> None:
    gb = GeoBox((1100, 1100), Affine(10, 0, 300000, 0, -10, 4900020), "EPSG:32631")
    data = np.arange(1100 * 1100, dtype=np.uint32).reshape(1100, 1100) % 60000 + 1
    f = tmp_path / "b.jp2"
    sw.write_jp2(f, data.astype(np.uint16), gb)
    with rasterio.open(f) as src:
        assert len(src.overviews(1)) >= 3  # 1/2, 1/4, 1/8 … resolution levels
        assert src.block_shapes[0] == (1024, 1024)
        np.testing.assert_array_equal(src.read(1), data)


def test_xml_follows_the_genuine_files(
    written: tuple[Path, dict[str, np.ndarray], GeoBox], sample_path: Callable[[str], Path]
) -> None:
    path, _, _ = written
    genuine = sample_path(GENUINE)
    for ours, theirs in (
        (path / "MTD_MSIL1C.xml", genuine / "MTD_MSIL1C.xml"),
        (next(path.glob("GRANULE/*/MTD_TL.xml")), next(genuine.glob("GRANULE/*/MTD_TL.xml"))),
        (path / "manifest.safe", genuine / "manifest.safe"),
    ):
        a, b = DET.parse(ours).getroot(), DET.parse(theirs).getroot()
        assert a.tag == b.tag  # same root element and namespace
        extra = _paths(a) - _paths(b)
        assert not extra, f"{ours.name}: elements absent from the genuine file: {sorted(extra)[:5]}"
    tl = DET.parse(next(path.glob("GRANULE/*/MTD_TL.xml"))).getroot()
    needed = {"/Level-1C_Tile_ID/Geometric_Info/Tile_Angles/Sun_Angles_Grid/Zenith/Values_List/VALUES",
              "/Level-1C_Tile_ID/Geometric_Info/Tile_Angles/Viewing_Incidence_Angles_Grids/Azimuth/Values_List/VALUES",
              "/Level-1C_Tile_ID/Geometric_Info/Tile_Geocoding/Geoposition/ULX"}
    assert needed <= _paths(tl)


def test_offsets_by_baseline(tmp_path: Path, sample_path: Callable[[str], Path]) -> None:
    gb = _crop()
    refl = {"B02": np.full(gb.shape, 0.1234, np.float32), "B01": np.full(band_geobox(gb, 60).shape, 0.05, np.float32)}
    new = write_safe_from_reflectance(tmp_path, refl, gb, WHEN, tile_id="31TCJ", baseline="05.10")
    old = write_safe_from_reflectance(tmp_path, refl, gb, WHEN, tile_id="31TCJ", baseline="02.06")

    def offsets(p: Path) -> list[str]:
        return [e.text or "" for e in DET.parse(p / "MTD_MSIL1C.xml").getroot().iter("RADIO_ADD_OFFSET")]

    assert offsets(new) == ["-1000"] * 13
    assert offsets(old) == []
    assert offsets(sample_path(GENUINE_0206)) == []  # as in the genuine N02.06 product
    with rasterio.open(next(new.glob("GRANULE/*/IMG_DATA/*_B02.jp2"))) as s:
        assert int(s.read(1)[5, 5]) == 1234 + 1000
    with rasterio.open(next(old.glob("GRANULE/*/IMG_DATA/*_B02.jp2"))) as s:
        assert int(s.read(1)[5, 5]) == 1234


def test_manifest_lists_every_file_with_checksum(written: tuple[Path, dict[str, np.ndarray], GeoBox]) -> None:
    path, _, _ = written
    root = DET.parse(path / "manifest.safe").getroot()
    listed = {}
    for bs in root.iter("byteStream"):
        href = bs.find("fileLocation").get("href")  # type: ignore[union-attr]
        listed[href.removeprefix("./")] = (int(bs.get("size")), bs.find("checksum").text)  # type: ignore[arg-type, union-attr]
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != "manifest.safe"}
    assert set(listed) == files
    for rel, (size, digest) in listed.items():
        data = (path / rel).read_bytes()
        assert size == len(data) and digest == hashlib.sha3_256(data).hexdigest().upper()


def test_orbit_estimate_matches_genuine_products() -> None:
    """Relative orbits of genuine products (names in the sample data) from time and latitude."""
    cases = [  # (platform, tile SENSING_TIME, tile centre latitude, relative orbit)
        ("S2A", "2024-01-20T10:58:50.500329+00:00", 43.7, 51),
        ("S2B", "2024-03-05T10:58:54.168722+00:00", 43.7, 51),
        ("S2A", "2017-02-26T10:24:58.867+00:00", 42.0, 65),
        ("S2A", "2016-09-05T01:04:24.002+00:00", -35.7, 2),
        ("S2A", "2021-09-08T04:40:48.758475+00:00", 27.5, 133),
        ("S2B", "2021-01-22T13:42:49.838906+00:00", -37.5, 81),
        ("S2B", "2019-12-28T21:05:52.062315+00:00", -72.5, 71),
    ]
    for platform, t, lat, rel in cases:
        assert estimate_orbits(datetime.fromisoformat(t), lat, platform)[0] == rel, (platform, t)


def test_bad_inputs_and_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gb = _crop()
    dn = {"B02": np.ones(gb.shape, np.uint16)}
    with pytest.raises(InputError, match="shape"):
        write_safe(tmp_path, {"B05": np.ones(gb.shape, np.uint16)}, gb, WHEN, tile_id="31TCJ")
    with pytest.raises(InputError, match="uint16"):
        write_safe(tmp_path, {"B02": np.ones(gb.shape, np.float32)}, gb, WHEN, tile_id="31TCJ")
    write_safe(tmp_path, dn, gb, WHEN, tile_id="31TCJ")
    with pytest.raises(InputError, match="exists"):
        write_safe(tmp_path, dn, gb, WHEN, tile_id="31TCJ")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(sw, "write_jp2", boom)
    with pytest.raises(OSError, match="disk full"):
        write_safe(tmp_path / "other", dn, gb, WHEN, tile_id="31TCJ")
    assert list((tmp_path / "other").iterdir()) == []  # nothing half-written left behind


# ------------------------------------------------------------------ round trip through the reader
def test_reader_reads_back_exactly(written: tuple[Path, dict[str, np.ndarray], GeoBox]) -> None:
    from l2a.io.safe import open_safe

    path, dn, gb = written
    p = open_safe(path)
    md = p.metadata
    assert md.tile_id == "31TCJ" and md.platform == "S2A" and md.baseline == "05.10"
    assert md.relative_orbit == 51 and md.quantification == 10000
    assert md.radio_offsets == dict.fromkeys(dn, -1000.0)
    assert md.earth_sun_u == pytest.approx(earth_sun_u(WHEN), abs=1e-12)
    assert md.sensing_time == WHEN
    assert md.geoboxes[10] == gb and md.geoboxes[60] == band_geobox(gb, 60)
    # pixels: every band at its native resolution, exact
    for name in ("B02", "B05", "B01", "B8A"):
        res = BY_NAME[name].resolution
        got = p.toa([name], res).compute()[name].values
        raw = dn[name].astype(np.float64)
        expect = np.where(raw == 0, np.nan, (raw - 1000) / 10000).astype(np.float32)
        np.testing.assert_array_equal(got, expect)
        q = p.quality([name], res).compute()
        np.testing.assert_array_equal(q["nodata"].values, raw == 0)
        np.testing.assert_array_equal(q[f"saturation_{name}"].values, raw == 65535)
    # angles: the sun grid and the merged detector grids written
    sun = sw.computed_sun_grid(WHEN, gb)
    assert md.sun is not None
    np.testing.assert_allclose(md.sun.zenith, sun.zenith, atol=1e-4)
    np.testing.assert_allclose(md.sun.azimuth, sun.azimuth, atol=1e-4)
    assert md.sun.geobox == sun.geobox
    zv, av = merged_view(model_view_grids(gb))
    np.testing.assert_allclose(md.view["B03"].zenith, zv, atol=1e-5)
    np.testing.assert_allclose(md.view["B03"].azimuth, av, atol=1e-4)


def test_reflectance_round_trip(tmp_path: Path) -> None:
    from l2a.io.safe import open_safe

    gb = _crop()
    rng = np.random.default_rng(3)
    refl = {"B04": rng.uniform(-0.05, 1.2, gb.shape).astype(np.float32)}
    refl["B04"][10:12, 10:12] = np.nan
    for baseline in ("05.10", "03.01"):
        path = write_safe_from_reflectance(tmp_path / baseline, refl, gb, WHEN, tile_id="31TCJ", baseline=baseline)
        got = open_safe(path).toa(["B04"], 10).compute()["B04"].values
        src = refl["B04"]
        lo = -0.1 if baseline >= "04.00" else 1e-4  # below: clipped (offset, or DN 0 reserved)
        ok = np.isfinite(src) & (src > lo)
        assert np.all(np.isnan(got[~np.isfinite(src)]))
        assert np.max(np.abs(got[ok] - src[ok])) <= 0.5e-4 + 1e-7


def test_slovenia_series(tmp_path_factory: pytest.TempPathFactory, sample_path: Callable[[str], Path]) -> None:
    import json

    from l2a.io.safe import open_safe
    from l2a.io.scenes import open_scene
    from l2a.testing.series import slovenia_safe_series

    folder = sample_path("slovenia_T33_summer2015")
    out = tmp_path_factory.mktemp("series")
    paths = slovenia_safe_series(out)
    assert len(paths) == 5 and all(NAME_RE.match(p.name) and "_T33TVL_" in p.name for p in paths)
    assert slovenia_safe_series(out) == paths  # second call reuses the products
    times = sorted(s["date"] for s in json.loads((folder / "manifest.json").read_text())["scenes"]["L1C_13band_2015summer_5dates"])
    tile = tile_geobox("33TVL", 10).affine
    for path, t in zip(paths, times, strict=True):
        p = open_safe(path)
        assert p.metadata.sensing_time == datetime.fromisoformat(t).replace(tzinfo=UTC)
        gb = p.geobox(10)
        # on the tile's 60 m lattice
        assert (gb.affine.c - tile.c) % 60 == 0 and (tile.f - gb.affine.f) % 60 == 0
        scene = open_scene(f"slovenia:{t[:10]}")
        src = scene.toa(["B08"], 10, chunks=None)["B08"].values
        sg = scene.geobox(10).affine
        r0 = round((gb.affine.f - sg.f) / 10)
        c0 = round((sg.c - gb.affine.c) / 10)
        assert abs(sg.f - (gb.affine.f - 10 * r0)) <= 5 and abs(sg.c - (gb.affine.c + 10 * c0)) <= 5  # snapped
        got = p.toa(["B08", "B11"], 10).compute()
        np.testing.assert_allclose(got["B08"].values[r0 : r0 + 101, c0 : c0 + 100], src, atol=0.5e-4)
        assert np.isnan(got["B08"].values).sum() == gb.shape[0] * gb.shape[1] - src.size
        if t.startswith("2015-07-11"):
            b11 = p.toa(["B11"], 20).compute()["B11"].values
            full = np.full(gb.shape, np.nan)
            full[r0 : r0 + 101, c0 : c0 + 100] = scene.toa(["B11"], 10, chunks=None)["B11"].values
            blocks = full.reshape(gb.shape[0] // 2, 2, gb.shape[1] // 2, 2).mean(axis=(1, 3))
            np.testing.assert_allclose(b11, blocks, atol=0.5e-4)  # exact 2 x 2 means, NaN at partial blocks


def test_zipped_product_reads_the_same(written: tuple[Path, dict[str, np.ndarray], GeoBox], tmp_path: Path) -> None:
    import zipfile

    from l2a.io.safe import open_safe

    path, _, _ = written
    z = sw.zip_safe(path, tmp_path / (path.name.removesuffix(".SAFE") + ".zip"))
    with zipfile.ZipFile(z) as zf:
        assert all(n.startswith(path.name + "/") for n in zf.namelist())
    a = open_safe(z).toa(["B03", "B11"], 20).compute()
    b = open_safe(path).toa(["B03", "B11"], 20).compute()
    for name in ("B03", "B11"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
