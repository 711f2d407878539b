"""MUSCATE packaging: layout, exact pixel values, COG validity, metadata, atomicity.

Synthetic inputs follow the documented conventions of ``l2a.chain.correction`` (SRE/FRE/ATB/IAB
on ``(y, x)`` for R1 and ``(y_r2, x_r2)`` for R2, grids in ``attrs["_geoboxes"]``) and of
``l2a.masks`` (booleans + uint8 ``clm``/``mg2``, on a 20 m grid here so that the packager must
resample them to R1). :func:`make_inputs` is reused by the STAC and catalog tests.
"""

from __future__ import annotations

import os
import signal
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.array as da
import defusedxml.ElementTree as DET
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import assign_crs, xr_coords

from l2a.io.cog import validate_cog
from l2a.io.l1c import L1CMetadata
from l2a.io.muscate import (
    GROUPS,
    PackageSettings,
    cleanup_partial,
    parse_product_name,
    product_name,
    read_mtd,
    read_product,
    sha256_file,
    write_product,
)
from l2a.sensors.sentinel2 import BY_NAME, MUSCATE_R1, MUSCATE_R2

CRS = "EPSG:32631"
X0, Y0 = 300000.0, 4900020.0
R1_SHAPE = (600, 540)
R2_SHAPE = (300, 270)
SENSING = datetime(2017, 12, 1, 10, 55, 14, 866000, tzinfo=UTC)
NAME = "SENTINEL2A_20171201-105514-866_L2A_T31TCJ_C_V1-0"


def grids() -> dict[str, GeoBox]:
    return {
        "R1": GeoBox(R1_SHAPE, Affine(10, 0, X0, 0, -10, Y0), CRS),
        "R2": GeoBox(R2_SHAPE, Affine(20, 0, X0, 0, -20, Y0), CRS),
    }


def make_metadata(**kw: Any) -> L1CMetadata:
    g = grids()
    base: dict[str, Any] = dict(
        product_id="S2A_MSIL1C_20171201T105421_N0206_R051_T31TCJ_20171201T125836",
        platform="S2A", sensing_time=SENSING, tile_id="31TCJ", relative_orbit=51, baseline="02.06",
        quantification=10000.0, radio_offsets={}, solar_irradiance={}, earth_sun_u=1.03, crs=CRS,
        geoboxes={10: g["R1"], 20: g["R2"]}, sun=None, view={}, mean_sun_zenith=67.5, mean_sun_azimuth=165.25,
        mean_view={"B02": (5.0, 100.0), "B04": (5.5, 102.0), "B11": (6.0, 104.0)}, cloud_cover=12.0,
        source="/inbox/S2A_MSIL1C_20171201T105421_N0206_R051_T31TCJ_20171201T125836.SAFE",
    )
    base.update(kw)
    return L1CMetadata(**base)


def make_l2a(seed: int = 0, chunks: int = 256) -> xr.Dataset:
    """Lazy L2A dataset with correct()'s layout; SRE in [0, 6000] with a no-data corner, FRE = SRE + 7."""
    rng = np.random.default_rng(seed)
    g = grids()
    variables: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    for gname, bands, dims in (("R1", MUSCATE_R1, ("y", "x")), ("R2", MUSCATE_R2, ("y_r2", "x_r2"))):
        shape = g[gname].shape
        for b in bands:
            sre = rng.integers(0, 6000, size=shape, dtype=np.int16)
            sre[:20, :30] = -10000
            fre = np.where(sre == -10000, sre, sre + 7).astype(np.int16)
            m = BY_NAME[b].muscate_name
            variables[f"SRE_{m}"] = (dims, da.from_array(sre, chunks=chunks))
            variables[f"FRE_{m}"] = (dims, da.from_array(fre, chunks=chunks))
        atb = rng.integers(0, 255, size=(2, *shape), dtype=np.uint8)
        variables[f"ATB_{gname}"] = (("atb", *dims), da.from_array(atb, chunks=(2, chunks, chunks)))
        variables[f"IAB_{gname}"] = (dims, da.from_array(rng.integers(0, 4, size=shape, dtype=np.uint8), chunks=chunks))
        c = xr_coords(g[gname])
        coords[dims[0]], coords[dims[1]] = c["y"].values, c["x"].values
    coords["atb"] = ["water_vapour", "aot"]
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update({"platform": "S2A", "datetime": SENSING.isoformat(), "crs": CRS, "aot_mean": 0.12, "water_vapour_mean": 1.4})
    ds.attrs["_geoboxes"] = {k: (tuple(v.shape), tuple(v.affine)[:6]) for k, v in g.items()}
    return ds


def make_masks(seed: int = 1, cloud_fraction: float = 0.2) -> xr.Dataset:
    """Masks on the 20 m grid (the packager resamples them to 10 m)."""
    rng = np.random.default_rng(seed)
    g = grids()["R2"]
    shape = g.shape
    cloud = rng.random(shape) < cloud_fraction
    shadow = ~cloud & (rng.random(shape) < 0.05)
    snow = ~cloud & (rng.random(shape) < 0.03)
    water = ~cloud & ~snow & (rng.random(shape) < 0.1)
    valid = np.ones(shape, bool)
    valid[:10, :15] = False
    clm = (cloud.astype(np.uint8) << 1) | (cloud | shadow).astype(np.uint8) | (shadow.astype(np.uint8) << 5)
    clm |= (rng.random(shape) < 0.02).astype(np.uint8) << 7
    mg2 = water.astype(np.uint8) | (cloud.astype(np.uint8) << 1) | (snow.astype(np.uint8) << 2) | (shadow.astype(np.uint8) << 3)
    ds = xr.Dataset(
        {k: (("y", "x"), v) for k, v in dict(cloud=cloud, cirrus=(clm & 128) > 0, cloud_shadow=shadow, snow=snow,
                                              water=water, valid=valid, clm=clm, mg2=mg2).items()},
        coords=xr_coords(g),
    )
    ds.attrs.update({"mode": "INIT"})
    return assign_crs(ds, CRS)


class FakeL1C:
    """An L1CProduct stand-in with quality(): B04 saturated on a block, no-data in a corner."""

    def __init__(self, md: L1CMetadata) -> None:
        self.metadata = md

    def quality(self, bands: list[str], resolution: float) -> xr.Dataset:
        g = self.metadata.geoboxes[int(resolution)]
        nodata = np.zeros(g.shape, bool)
        nodata[: g.shape[0] // 30, : g.shape[1] // 18] = True
        out = {"nodata": (("y", "x"), nodata)}
        for b in bands:
            sat = np.zeros(g.shape, bool)
            if b in ("B04", "B11"):
                sat[100:120, 200:230] = True
            out[f"saturation_{b}"] = (("y", "x"), sat)
        return assign_crs(xr.Dataset(out, coords=xr_coords(g)), CRS)


def make_inputs(seed: int = 0) -> dict[str, Any]:
    return {"l1c": FakeL1C(make_metadata()), "masks": make_masks(seed + 1), "l2a": make_l2a(seed)}


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as r:
        return r.read()


FAST = PackageSettings(quicklook_size=200)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("products")
    inputs = make_inputs()
    res = write_product(out, **inputs, settings=replace(FAST, make_zip=True))
    return res, inputs


def test_name_roundtrip() -> None:
    assert product_name("S2A", SENSING, "T31TCJ") == NAME
    assert product_name("S2B", SENSING, "31tcj", version="2.2") == "SENTINEL2B_20171201-105514-866_L2A_T31TCJ_C_V2-2"
    p = parse_product_name(NAME)
    assert p["platform"] == "S2A" and p["tile_id"] == "31TCJ" and p["sensing_time"] == SENSING and p["version"] == "1.0"
    with pytest.raises(ValueError):
        product_name("L8", SENSING, "31TCJ")
    with pytest.raises(ValueError):
        parse_product_name("S2A_MSIL1C_20171201T105421_N0206")


def test_layout(product: Any) -> None:
    res, _ = product
    assert res.path.name == NAME and res.path.is_dir()
    names = {f.path for f in res.files}
    for b in (*MUSCATE_R1, *MUSCATE_R2):
        m = BY_NAME[b].muscate_name
        assert f"{NAME}_SRE_{m}.tif" in names and f"{NAME}_FRE_{m}.tif" in names
    for gname in ("R1", "R2"):
        assert f"{NAME}_ATB_{gname}.tif" in names
        for kind in ("CLM", "MG2", "SAT", "EDG", "IAB"):
            assert f"MASKS/{NAME}_{kind}_{gname}.tif" in names
    assert f"{NAME}_QKL_ALL.jpg" in names and f"{NAME}_MTD_ALL.xml" in names
    on_disk = {p.relative_to(res.path).as_posix() for p in res.path.rglob("*") if p.is_file()}
    assert on_disk == names
    # nothing else visible beside the product except its zip
    assert sorted(p.name for p in res.path.parent.iterdir()) == [NAME, f"{NAME}.zip"]


def test_every_raster_is_a_valid_cog(product: Any) -> None:
    res, _ = product
    tifs = [f for f in res.files if f.path.endswith(".tif")]
    assert len(tifs) == 20 + 2 + 10
    for f in tifs:
        ok, errors, warnings = validate_cog(res.path / f.path)
        assert ok and not errors, (f.path, errors)
        assert not warnings, (f.path, warnings)
        with rasterio.open(res.path / f.path) as r:
            assert r.profile["blockxsize"] == 512 or r.width <= 512
            assert r.compression is not None and r.compression.name.upper() == "ZSTD"
            assert bool(r.overviews(1)) == (max(r.height, r.width) > 512), f.path


def _overview(path: Path) -> np.ndarray:
    with rasterio.open(path, overview_level=0) as r:
        return r.read(1)


def test_overview_resampling(product: Any) -> None:
    """Reflectance overviews average 2 x 2 blocks; mask overviews pick one of the block values."""
    res, inp = product
    full = inp["l2a"]["SRE_B2"].values.astype(float)
    ov = _overview(res.path / res.file("SRE", band="B02").path)
    blocks = full[:, :].reshape(300, 2, 270, 2).mean(axis=(1, 3))
    inner = np.s_[20:, 20:]  # away from the no-data corner
    assert np.abs(ov[inner] - blocks[inner]).max() <= 1.0
    iab = inp["l2a"]["IAB_R1"].values
    ovm = _overview(res.path / res.file("IAB", "R1").path)
    cand = iab.reshape(300, 2, 270, 2).transpose(0, 2, 1, 3).reshape(300, 270, 4)
    assert (cand == ovm[..., None]).any(axis=-1).all()


def test_pixels_read_back_exactly(product: Any) -> None:
    res, inp = product
    l2a, masks = inp["l2a"], inp["masks"]
    for b in (*MUSCATE_R1, *MUSCATE_R2):
        m = BY_NAME[b].muscate_name
        for kind in ("SRE", "FRE"):
            f = res.file(kind, band=b)
            got = _read(res.path / f.path)
            assert got.dtype == np.int16 and got.shape[0] == 1
            np.testing.assert_array_equal(got[0], l2a[f"{kind}_{m}"].values)
            with rasterio.open(res.path / f.path) as r:
                assert r.nodata == -10000 and r.scales == (0.0001,)
                assert r.crs.to_epsg() == 32631
    for gname in ("R1", "R2"):
        np.testing.assert_array_equal(_read(res.path / res.file("ATB", gname).path), l2a[f"ATB_{gname}"].values)
        np.testing.assert_array_equal(_read(res.path / res.file("IAB", gname).path)[0], l2a[f"IAB_{gname}"].values)
    # masks: 20 m input replicated 2 x 2 at R1, unchanged at R2
    for kind in ("clm", "mg2"):
        src = masks[kind].values
        np.testing.assert_array_equal(_read(res.path / res.file(kind.upper(), "R2").path)[0], src)
        np.testing.assert_array_equal(_read(res.path / res.file(kind.upper(), "R1").path)[0], np.kron(src, np.ones((2, 2), np.uint8)))
    # SAT: B04 is bit 2 of R1, B11 bit 4 of R2 (band order of the group)
    sat1 = _read(res.path / res.file("SAT", "R1").path)[0]
    assert set(np.unique(sat1)) == {0, 4} and sat1[110, 210] == 4
    sat2 = _read(res.path / res.file("SAT", "R2").path)[0]
    assert set(np.unique(sat2)) == {0, 16}
    edg = _read(res.path / res.file("EDG", "R1").path)[0]
    assert edg[:20, :30].all() and edg.sum() == 20 * 30


def test_checksums_and_zip(product: Any) -> None:
    res, _ = product
    for f in res.files:
        p = res.path / f.path
        assert f.size == p.stat().st_size and f.sha256 == sha256_file(p)
    assert res.zip_path is not None
    with zipfile.ZipFile(res.zip_path) as z:
        assert sorted(z.namelist()) == sorted(f"{NAME}/{f.path}" for f in res.files)
        assert z.testzip() is None


def test_metadata_parses_back(product: Any) -> None:
    res, inp = product
    mtd = res.path / f"{NAME}_MTD_ALL.xml"
    root = DET.parse(mtd).getroot()
    assert root.tag == "Muscate_Metadata_Document"
    assert root.findtext("Product_Characteristics/PRODUCT_LEVEL") == "L2A"
    assert root.findtext("Dataset_Identification/GEOGRAPHICAL_ZONE") == "T31TCJ"
    info = read_mtd(mtd)
    assert info.name == NAME and info.tile_id == "31TCJ" and info.platform == "S2A"
    assert info.sensing_time == SENSING and info.epsg == 32631 and info.relative_orbit == 51
    assert info.baseline == "02.06" and info.reflectance and info.has_fre
    assert info.grids["R1"] == (R1_SHAPE, (10.0, 0.0, X0, 0.0, -10.0, Y0))
    assert info.sun_zenith == 67.5 and info.sun_azimuth == 165.25
    masks = inp["masks"]
    valid = masks["valid"].values
    expected_cloud = 100.0 * (masks["cloud"].values & valid).sum() / valid.sum()
    assert info.covers["cloud"] == pytest.approx(expected_cloud)
    assert set(info.covers) >= {"cloud", "snow", "water", "cloud_shadow"}
    assert info.aot_mean == pytest.approx(0.12)
    # mean view over the bands present: circular mean of 100, 102, 104 degrees
    assert info.view_zenith == pytest.approx(5.5) and info.view_azimuth == pytest.approx(102.0, abs=1e-6)
    again = read_product(res.path)
    assert {(f.path, f.sha256) for f in again.files} == {(f.path, f.sha256) for f in res.files}
    assert again.file("SRE", band="B8A").group == "R2"


def test_quicklook_has_outlines(product: Any) -> None:
    from PIL import Image

    res, _ = product
    with Image.open(res.path / f"{NAME}_QKL_ALL.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.size == (135, 150)  # R1 600 x 540 / 4: the first power of two within 200 px
        a = np.asarray(im).astype(int)
    # green cloud outlines are present (JPEG: approximately)
    green = (a[..., 1] > 200) & (a[..., 0] < 80) & (a[..., 2] < 80)
    assert green.sum() > 50


@pytest.mark.parametrize("shape", [(600, 540), (1891, 1877), (947, 2049)])
def test_quicklook_shape_is_an_overview_level(tmp_path: Path, shape: tuple[int, int]) -> None:
    """Larger than the quicklook, the image is drawn at one of the COG's overview levels (GDAL
    reads it as stored instead of resampling the full resolution): its shape, rounding
    included, is the shape GDAL gave that overview."""
    from odc.geo.geobox import GeoBox

    from l2a.io.cog import write_cog
    from l2a.io.muscate import _quicklook_shape

    g = GeoBox(shape, Affine(10, 0, 300000, 0, -10, 5000000), "EPSG:32631")
    path = write_cog(np.zeros(shape, np.uint8), g, tmp_path / "a.tif")
    with rasterio.open(path) as r:
        levels = [(r.height // f, r.width // f) for f in r.overviews(1)]
        stored = []
        for i in range(len(levels)):
            with rasterio.open(path, overview_level=i) as o:
                stored.append(o.shape)
    for size in (max(shape) // 2 + 1, 1000):  # (quicklook sizes above the 512 px tiles: levels exist)
        want = _quicklook_shape(shape, size)
        assert max(want) <= size < 2 * max(want)
        assert want == tuple(shape) or want in stored, (size, want, stored, levels)
    assert _quicklook_shape(shape, max(shape)) == tuple(shape)


def test_outline_is_the_erosion_border() -> None:
    """The quicklook's outlines: exactly the pixels scipy's binary erosion (cross, edge inside) removes."""
    from scipy import ndimage as ndi

    from l2a.io.muscate import _outline

    rng = np.random.default_rng(7)
    for shape, p in [((37, 53), 0.5), ((64, 64), 0.9), ((1, 9), 0.7), ((9, 1), 0.7), ((20, 30), 0.0), ((20, 30), 1.0)]:
        m = rng.random(shape) < p
        np.testing.assert_array_equal(_outline(m), m & ~ndi.binary_erosion(m, border_value=1))
    blob = np.zeros((9, 9), bool)
    blob[2:7, 2:7] = True
    assert _outline(blob).sum() == 16 and not _outline(blob)[3:6, 3:6].any()


@pytest.mark.parametrize("reflectance", [True, False])
def test_quicklook_from_the_written_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reflectance: bool) -> None:
    """A full-resolution quicklook is drawn from the arrays write_cogs held, not read back from
    the files: write_product hands it the five R1 layers, and the image equals the one drawn
    from the files."""
    import l2a.io.muscate as m

    seen: list[tuple[set[str], np.ndarray, np.ndarray]] = []
    real = m.render_quicklook

    def spy(folder: Path, name: str, info: Any, settings: Any = m.DEFAULT_PACKAGE, layers: Any = None) -> np.ndarray:
        img = real(folder, name, info, settings, layers)
        seen.append((set(layers or {}), img, real(folder, name, info, settings)))
        return img

    monkeypatch.setattr(m, "render_quicklook", spy)
    settings = PackageSettings(quicklook_size=max(R1_SHAPE), max_cloud_cover=100.0 if reflectance else 5.0)
    write_product(tmp_path, **make_inputs(), settings=settings)
    (keys, held, files), = seen
    assert keys == ({"B04", "B03", "B02", "CLM", "MG2"} if reflectance else {"CLM", "MG2"})
    assert held.shape == (*R1_SHAPE, 3)
    np.testing.assert_array_equal(held, files)
    assert (held == m.QKL_COLOURS["cloud"]).all(-1).sum() > 50
    if reflectance:  # away from the outlines: SRE scaled to 0..255 at 0.25, no-data black
        res = read_product(next(tmp_path.iterdir()), checksums=False)
        for i, b in enumerate(("B04", "B03", "B02")):
            v = _read(res.path / res.file("SRE", band=b).path)[0].astype(np.float32)
            v[v == -10000] = 0
            want = (np.clip(v / 10000 / 0.25, 0, 1) * 255 + 0.5).astype(np.uint8)
            plain = ~np.any([(held == c).all(-1) for c in m.QKL_COLOURS.values()], axis=0)
            assert plain.mean() > 0.5 and (v == 0).any() and (want > 200).any()
            np.testing.assert_array_equal(held[..., i][plain], want[plain])


def test_reflectance_less_product(tmp_path: Path) -> None:
    inputs = make_inputs()
    res = write_product(tmp_path, **inputs, settings=replace(FAST, max_cloud_cover=5.0))
    kinds = {f.kind for f in res.files}
    assert kinds == {"CLM", "MG2", "SAT", "EDG", "QKL", "MTD"}
    assert not res.info.reflectance and res.info.bands == ()
    assert any("no reflectance" in n for n in res.info.notes)
    info = read_mtd(res.path / f"{NAME}_MTD_ALL.xml")
    assert not info.reflectance
    # also without any L2A dataset at all, grids from the metadata only
    res2 = write_product(tmp_path / "b", l1c=make_metadata(), masks=inputs["masks"], l2a=None, settings=FAST)
    assert {f.kind for f in res2.files} == {"CLM", "MG2", "SAT", "EDG", "QKL", "MTD"}
    assert res2.file("CLM", "R1").shape == R1_SHAPE


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    def boom(stage: str, folder: Path) -> None:
        assert folder.name.startswith(".") and any(folder.rglob("*.tif"))
        if stage == "metadata":
            raise RuntimeError("simulated crash mid-product")

    with pytest.raises(RuntimeError, match="simulated"):
        write_product(tmp_path, **make_inputs(), settings=FAST, _hook=boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["layout", "rio-cogeo"])
def test_verification_rejects_a_plain_geotiff(tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A raster that is not a COG (here one band rewritten as a plain striped GeoTIFF right after
    GDAL wrote it, before the check that opens it again) fails the product, named, and nothing
    is left."""
    import rasterio.shutil

    import l2a.io.cog as cog

    real = cog._write_direct

    def write_then_swap(dst: Path, *a: Any, **k: Any) -> None:
        real(dst, *a, **k)
        if "_SRE_B4" in dst.name:
            plain = dst.with_suffix(".plain.tif")
            rasterio.shutil.copy(dst, plain, driver="GTiff")
            plain.replace(dst)

    monkeypatch.setattr(cog, "_write_direct", write_then_swap)
    with pytest.raises(RuntimeError, match=r"SRE_B4\.tif: not (laid out by GDAL's COG driver|a valid COG)"):
        write_product(tmp_path, **make_inputs(), settings=replace(FAST, cog_validation=how))
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_version(tmp_path: Path) -> None:
    first = write_product(tmp_path, **make_inputs(0), settings=FAST)

    def boom(stage: str, folder: Path) -> None:
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        write_product(tmp_path, **make_inputs(5), settings=FAST, _hook=boom)
    assert {(f.path, f.sha256) for f in read_product(first.path).files} == {(f.path, f.sha256) for f in first.files}
    # a successful rewrite replaces it whole
    second = write_product(tmp_path, **make_inputs(5), settings=FAST)
    assert second.file("SRE", band="B02").sha256 != first.file("SRE", band="B02").sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]
    with pytest.raises(FileExistsError):
        write_product(tmp_path, **make_inputs(5), settings=replace(FAST, overwrite=False))


_KILLED_CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from dataclasses import replace
from test_muscate import FAST, make_inputs
from l2a.io.muscate import write_product

def die(stage, folder):
    if stage == "rasters":
        os.kill(os.getpid(), signal.SIGKILL)

write_product({out!r}, **make_inputs(), settings=FAST, _hook=die)
"""


def test_kill9_mid_product_leaves_no_product(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = _KILLED_CHILD.format(tests=str(Path(__file__).parent), out=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = list(tmp_path.iterdir())
    # only a hidden partial folder: never something named like a product
    assert left and all(x.name.startswith(".") and x.name.endswith(".partial") for x in left)
    assert not (tmp_path / NAME).exists()
    assert cleanup_partial(tmp_path) == left
    assert list(tmp_path.iterdir()) == []


def test_bad_masks_named(tmp_path: Path) -> None:
    from l2a.errors import InputError

    inputs = make_inputs()
    inputs["masks"] = inputs["masks"].drop_vars("mg2")
    with pytest.raises(InputError, match="mg2"):
        write_product(tmp_path, **inputs, settings=FAST)
    assert list(tmp_path.iterdir()) == []


def test_extra_masks_dtf(tmp_path: Path) -> None:
    from l2a.catalog.stac_item import make_item

    inputs = make_inputs()
    g = grids()["R1"]
    dtf = np.zeros(g.shape, np.uint8)
    dtf[:, 300:] = 1
    extra = {"DTF_R1-D01": assign_crs(xr.DataArray(dtf, dims=("y", "x"), coords=xr_coords(g)), CRS)}
    res = write_product(tmp_path, **inputs, extra_masks=extra, settings=FAST)
    f = res.file("DTF", "R1")
    assert f.path == f"MASKS/{NAME}_DTF_R1-D01.tif"
    np.testing.assert_array_equal(_read(res.path / f.path)[0], dtf)
    assert "dtf_r1_d01" in make_item(res).assets
    assert read_product(res.path).file("DTF").group == "R1"


def test_cleanup_restores_previous_version(tmp_path: Path) -> None:
    """A kill between the two renames of a replacement leaves the old version hidden: it comes back."""
    first = write_product(tmp_path, **make_inputs(0), settings=FAST)
    hidden = tmp_path / f".{NAME}.old-12345"
    os.replace(first.path, hidden)
    (tmp_path / f".{NAME}.abc.partial").mkdir()
    assert sorted(p.name for p in cleanup_partial(tmp_path)) == [f".{NAME}.abc.partial", hidden.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]
    assert {(f.path, f.sha256) for f in read_product(first.path).files} == {(f.path, f.sha256) for f in first.files}
    # with the new version in place, the old one is simply removed
    write_product(tmp_path, **make_inputs(1), settings=FAST)
    (tmp_path / f".{NAME}.old-999").mkdir()
    cleanup_partial(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_carried_quality_gives_the_same_sat_edg(product: Any, tmp_path: Path) -> None:
    """SAT/EDG from a quality given by the caller (the chain carries it from its TOA read) are the
    bits quality() gives; quality() is not called then; a carried group on another grid or missing
    a band falls back to quality()."""
    res, inputs = product
    l1c = inputs["l1c"]
    carried = {g: l1c.quality(list(GROUPS[g][0]), GROUPS[g][1]) for g in ("R1", "R2")}
    calls: list[float] = []

    class Counting(FakeL1C):
        def quality(self, bands: list[str], resolution: float) -> xr.Dataset:
            calls.append(resolution)
            return super().quality(bands, resolution)

    counting = Counting(l1c.metadata)
    given = write_product(tmp_path / "given", l1c=counting, masks=inputs["masks"], l2a=inputs["l2a"], settings=FAST,
                          quality={"R1": carried["R1"], "R2": carried["R2"].chunk(128)})  # numpy and lazy
    assert calls == []
    # R1 on a wrong grid, R2 without one band: both fall back to quality()
    shifted = carried["R1"].assign_coords(x=carried["R1"].x + 10.0)
    partial = carried["R2"].drop_vars("saturation_B11")
    fallback = write_product(tmp_path / "fallback", l1c=counting, masks=inputs["masks"], l2a=inputs["l2a"], settings=FAST,
                             quality={"R1": shifted, "R2": partial})
    assert sorted(calls) == [10.0, 20.0]
    for r in (given, fallback):
        for kind in ("SAT", "EDG"):
            for g in ("R1", "R2"):
                f = res.file(kind, g)
                np.testing.assert_array_equal(_read(r.path / f.path), _read(res.path / f.path), err_msg=f"{kind}_{g}")
                assert validate_cog(r.path / f.path)[0]
    assert _read(given.path / res.file("SAT", "R1").path).any()
