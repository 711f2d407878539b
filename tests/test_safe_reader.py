"""SAFE L1C reader on the real sample products: metadata, pixels, zip, coarse reads, angles."""

from __future__ import annotations

import pickle
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import dask
import numpy as np
import pytest

from l2a.grid import tile_geobox
from l2a.io.l1c import L1CProduct, open_l1c
from l2a.io.safe import open_safe
from l2a.io.safe_metadata import parse_product_metadata, parse_tile_metadata, parse_xml

TOULOUSE_A = "alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE"
TOULOUSE_B = "alcd_toulouse_T31TCJ/safe/S2B_MSIL1C_20240305T104819_N0510_R051_T31TCJ_20240305T125347.SAFE"
EODAG = "eodag_T31TDH_20180101/S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE"
PDMC = (
    "s2_metadata_only/s2reader_old_and_compact_safe/safe/"
    "S2A_OPER_PRD_MSIL1C_PDMC_20160905T104813_R002_V20160905T005712_20160905T010424.SAFE"
)
COMPACT_0204 = (
    "s2_metadata_only/s2reader_old_and_compact_safe/compact_safe/"
    "S2A_MSIL1C_20170226T102021_N0204_R065_T32TNM_20170226T102458.SAFE"
)
RER_0301 = "s2_metadata_only/stactools_sentinel2_tests/S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
LAC_0209 = "s2_metadata_only/stactools_sentinel2_tests/S2A_MSIL1C_20200717T221941_R029_T01LAC_20200717T234135.SAFE"


def _xml_value(path: Path, tag: str) -> str:
    """First text of ``<tag>`` read with a plain regex (independent of the parser)."""
    m = re.search(rf"<{tag}[^>]*>([^<]+)</{tag}>", path.read_text(encoding="utf-8"))
    assert m, (path, tag)
    return m.group(1).strip()


# --------------------------------------------------------------------------- every file parses
def test_every_metadata_file_parses(sample_data: Path) -> None:
    n_product = n_tile = n_other = 0
    for p in sorted(sample_data.rglob("*.xml")):
        data = p.read_bytes()
        if not data.strip():
            continue  # s2reader's empty MTD_DS placeholders
        head = data[:1000]
        if b"_Tile_ID" in head:
            t = parse_tile_metadata(data, p)
            assert re.fullmatch(r"\d{2}[A-Z]{3}", t.tile_id)
            assert set(t.geoboxes) == {10, 20, 60}
            assert t.sun is not None and t.sun.zenith.shape == (23, 23)
            assert np.isfinite(t.sun.zenith).all()
            # every band has a merged view grid, except in one trimmed stactools fixture whose
            # only view grid is a 2 x 1 placeholder with 0 m steps (ignored)
            assert len(t.view) == 13 or "T34VEL" in str(p), p
            for g in t.view.values():
                assert g.zenith.shape == (23, 23) and np.isfinite(g.zenith).any()
            n_tile += 1
        elif b"_User_Product" in head:
            info = parse_product_metadata(data, p)
            assert info.platform in ("S2A", "S2B")
            assert info.quantification == 10000
            assert len(info.solar_irradiance) == 13
            n_product += 1
        else:
            parse_xml(data, p)  # datastrip, manifest-like XML, QI reports: parse safely
            n_other += 1
    assert n_tile >= 30 and n_product >= 15 and n_other > 0


# --------------------------------------------------------------------------- exact values
def test_toulouse_metadata_n0510(sample_path: Callable[[str], Path]) -> None:
    root = sample_path(TOULOUSE_A)
    md = open_safe(root).metadata
    assert md.product_id == "S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244"
    assert (md.platform, md.tile_id, md.baseline, md.relative_orbit) == ("S2A", "31TCJ", "05.10", 51)
    assert md.crs == "EPSG:32631"
    assert md.sensing_time.isoformat() == "2024-01-20T10:58:50.500329+00:00"
    assert md.radio_offsets == dict.fromkeys(md.radio_offsets, -1000.0) and len(md.radio_offsets) == 13
    assert md.quantification == 10000
    assert md.earth_sun_u == float(_xml_value(root / "MTD_MSIL1C.xml", "U"))
    assert md.solar_irradiance["B01"] == 1884.69 and md.solar_irradiance["B12"] == 85.25
    assert round(md.mean_sun_zenith, 2) == 65.76  # PROVENANCE.md
    mtl = next(root.glob("GRANULE/*/MTD_TL.xml"))
    assert md.mean_sun_azimuth == float(_xml_value(mtl, "AZIMUTH_ANGLE"))
    assert md.sun is not None and md.sun.zenith[0, 0] == 66.3733  # first VALUES of the sun grid
    # the sun grid's first node is the tile's upper-left corner, 5 km spacing
    assert md.sun.geobox.affine.c + 2500 == 300000 and md.sun.geobox.affine.f - 2500 == 4900020
    assert md.geoboxes[10] == tile_geobox("31TCJ", 10)
    assert len(md.view) == 13
    # viewing grids of several detectors merged: more valid nodes than any single detector
    assert len(md.footprints) == 13 and md.footprints["B01"].endswith("MSK_DETFOO_B01.jp2")
    assert "MSK_CLASSI" in md.quality_masks and "MSK_QUALIT_B02" in md.quality_masks
    md_b = open_safe(sample_path(TOULOUSE_B)).metadata
    assert round(md_b.mean_sun_zenith, 2) == 51.82 and md_b.platform == "S2B"


def test_eodag_metadata_n0206(sample_path: Callable[[str], Path]) -> None:
    md = open_safe(sample_path(EODAG)).metadata
    assert md.baseline == "02.06"
    assert set(md.radio_offsets.values()) == {0.0}  # no offset before 04.00
    assert md.earth_sun_u is not None and round(md.earth_sun_u, 4) == 1.0342
    assert round(md.mean_sun_zenith, 2) == 67.04
    assert md.cloud_cover == 11.9204
    assert md.geoboxes[60] == tile_geobox("T31TDH", 60)
    assert sum(len(v) for v in md.extra["view_detectors"].values()) == 52  # 52 viewing-angle grids
    assert md.footprints == {}  # the GML masks are referenced but not shipped in this sample


@pytest.mark.parametrize("rel", [RER_0301, LAC_0209, COMPACT_0204])
def test_other_baselines(sample_path: Callable[[str], Path], rel: str) -> None:
    root = sample_path(rel)
    p = open_safe(root)
    md = p.metadata
    mtd = root / "MTD_MSIL1C.xml"
    mtl = next(root.glob("GRANULE/*/MTD_TL.xml"))
    assert md.baseline == _xml_value(mtd, "PROCESSING_BASELINE")
    assert md.earth_sun_u == float(_xml_value(mtd, "U"))
    assert md.mean_sun_zenith == float(_xml_value(mtl, "ZENITH_ANGLE"))
    assert md.geoboxes[20] == tile_geobox(md.tile_id, 20)
    assert set(md.radio_offsets.values()) == {0.0}


def test_pdmc_multi_tile(sample_path: Callable[[str], Path]) -> None:
    from l2a.errors import InputError

    root = sample_path(PDMC)
    with pytest.raises(InputError, match=r"6 tiles \(53HLA, 53HMA, 53HNA, 53HNV, 53HPA, 53HPV\)"):
        open_safe(root)
    with pytest.raises(InputError, match="not in the product"):
        open_safe(root, tile="T31TCJ")
    p = open_safe(root, tile="T53HPA")
    md = p.metadata
    assert md.tile_id == "53HPA" and md.baseline == "02.04" and md.crs == "EPSG:32753"
    assert md.geoboxes[10].affine.c == 600000 and md.geoboxes[10].affine.f == 6100000
    assert len(p.bands) == 13
    assert len(md.footprints) == 13 and md.footprints["B8A"].endswith(".gml")
    assert "MSK_CLOUDS" in md.quality_masks


# --------------------------------------------------------------------------- pixels
def test_eodag_b01_full_and_coarse(sample_path: Callable[[str], Path]) -> None:
    p = open_safe(sample_path(EODAG))
    assert isinstance(p, L1CProduct)
    assert p.bands == ("B01",)
    assert p.geobox(60) == tile_geobox("31TDH", 60)
    assert p.geobox(240) == tile_geobox("31TDH", 240)
    ds = p.toa(["B01"], 60, chunks=1024)
    assert ds.B01.chunks is not None and ds.odc.geobox == tile_geobox("31TDH", 60)
    full = ds.B01.values
    assert full.shape == (1830, 1830) and full.dtype == np.float32
    nan_frac = np.isnan(full).mean()
    assert 0.40 < nan_frac < 0.42  # 41 % zero DN (PROVENANCE.md)
    assert np.nanmax(full) == pytest.approx(15466 / 10000)  # max DN, no offset at N02.06

    coarse = p.toa(["B01"], 240, chunks=200).B01.values
    assert coarse.shape == (458, 458)
    pad = np.full((1832, 1832), np.nan)
    pad[:1830, :1830] = full
    blocks = pad.reshape(458, 4, 458, 4)
    complete = np.isfinite(blocks).all(axis=(1, 3))
    bmean = np.where(complete, np.where(complete[:, None, :, None], blocks, 0).sum(axis=(1, 3)) / 16, np.nan)
    both = complete & np.isfinite(coarse)
    assert both.mean() > 0.55
    diff = np.abs(coarse[both] - bmean[both])
    # JPEG2000 levels are a wavelet low-pass, not an exact box mean: close, and unbiased
    assert diff.mean() < 0.003 and abs(float(np.mean(coarse[both] - bmean[both]))) < 5e-4
    # no-data respected: coarse pixels made only of no-data are NaN, and the no-data share matches
    all_nodata = ~np.isfinite(blocks).any(axis=(1, 3))
    assert np.isnan(coarse[all_nodata]).all()
    assert abs(np.isnan(coarse).mean() - nan_frac) < 0.01
    q = p.quality(["B01"], 240)
    assert (q.nodata.values == np.isnan(coarse)).all()
    assert not q.saturation_B01.values.any()


def test_toulouse_grid_from_band_files(sample_path: Callable[[str], Path]) -> None:
    p = open_safe(sample_path(TOULOUSE_A))
    # the sample's JP2s are 30 x 30 crops at 10 m: geobox() follows the files
    gb = p.geobox(10)
    assert gb.shape == (30, 30) and (gb.affine.c, gb.affine.f) == (350000, 4850020)
    assert p.geobox(20).shape == (15, 15) and p.geobox(60).shape == (5, 5)
    ds = p.toa(["B02", "B05"], 20).compute()
    full = p.toa(["B02"], 10).B02.values
    # 20 m = exact 2 x 2 mean of the 10 m pixels (no shift)
    np.testing.assert_allclose(ds.B02.values, full.reshape(15, 2, 15, 2).mean(axis=(1, 3)), rtol=1e-6)
    up = p.toa(["B02"], 5).B02.values  # finer than the file: pixel replication
    np.testing.assert_array_equal(up[::2, ::2], full)
    np.testing.assert_array_equal(up[1::2, 1::2], full)


def test_toa_attrs_angles_and_pickle(sample_path: Callable[[str], Path]) -> None:
    p = open_safe(sample_path(TOULOUSE_A))
    ds = p.toa(["B04"], 10, chunks=16)
    assert ds.attrs["tile_id"] == "31TCJ" and ds.attrs["platform"] == "S2A"
    assert ds.attrs["datetime"] == "2024-01-20T10:58:50.500329Z"
    sz = ds.attrs["sun_zenith"].values
    md = p.metadata
    assert md.sun is not None
    # the crop lies between nodes (10, 10) and (11, 11) of the 5 km grid: interpolated value there
    nodes = md.sun.zenith[10:12, 10:12]
    assert nodes.min() - 1e-4 <= sz.min() <= sz.max() <= nodes.max() + 1e-4
    assert ds.attrs["view_zenith"].shape == (30, 30) and np.isfinite(ds.attrs["view_azimuth"].values).all()
    # TOA = (DN - 1000) / 10000 with NaN for DN 0
    import rasterio

    with rasterio.open(p.band_file("B04").path) as src:
        dn = src.read(1).astype(np.float64)
    expect = np.where(dn == 0, np.nan, (dn - 1000) / 10000)
    np.testing.assert_allclose(ds.B04.values, expect.astype(np.float32), rtol=1e-6)
    # the graph pickles (each task opens its file) and computes after a round trip
    (again,) = pickle.loads(pickle.dumps(dask.optimize(ds.B04.data)))
    np.testing.assert_array_equal(again.compute(), ds.B04.values)


def test_angles_interpolation_exact_at_nodes(sample_path: Callable[[str], Path]) -> None:
    p = open_safe(sample_path(EODAG))
    md = p.metadata
    assert md.sun is not None
    ang = p.angles(md.sun.geobox)  # a grid whose pixel centres are the nodes
    np.testing.assert_allclose(ang.sun_zenith.values, md.sun.zenith, atol=1e-4)
    d = (ang.sun_azimuth.values - md.sun.azimuth + 180) % 360 - 180
    assert np.abs(d).max() < 1e-3
    # view zenith: finite everywhere (swath-edge NaN nodes filled), within the grid's range
    vz = p.angles(tile_geobox("31TDH", 1830 * 60 / 50)).view_zenith.values
    assert np.isfinite(vz).all() and vz.min() >= 0 and vz.max() < 13


def test_zip_equals_folder(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    root = sample_path(TOULOUSE_B)
    zpath = tmp_path / (root.name.replace(".SAFE", "") + ".zip")
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f"{root.name}/{f.relative_to(root).as_posix()}")
    pz, pf = open_safe(zpath), open_l1c(root)
    assert pz.metadata.product_id == pf.metadata.product_id
    assert pz.bands == pf.bands and len(pz.bands) == 13
    assert pz.band_file("B03").path.startswith("/vsizip/")
    a = pz.toa(None, 20).compute()
    b = pf.toa(None, 20).compute()
    for name in pf.bands:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert np.isfinite(a.B03.values).any()
    assert set(pz.metadata.footprints) == set(pf.metadata.footprints)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_coarse_read_uses_jpeg2000_levels(
    sample_path: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rasterio

    from l2a.io.safe_read import ReadSettings, choose_level

    s = ReadSettings()
    assert choose_level(4, 4, s) == 1  # 60 m -> 240 m: read the 120 m level
    assert choose_level(24, 4, s) == 3  # 10 m -> 240 m: read the 80 m level
    assert choose_level(12, 4, s) == 2  # 20 m -> 240 m: read the 80 m level
    assert choose_level(1, 4, s) == 0 and choose_level(0.5, 4, s) == 0
    levels: list[int | None] = []
    real_open = rasterio.open

    def spy(path: object, *args: object, **kwargs: object) -> object:
        levels.append(kwargs.get("overview_level"))  # type: ignore[arg-type]
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rasterio, "open", spy)
    p = open_safe(sample_path(EODAG))
    p.band_file("B01")  # header read
    levels.clear()
    p.toa(["B01"], 240, chunks=1000).compute(scheduler="synchronous")
    assert levels and set(levels) - {None} == {0}  # overview_level=0 is the first (x2) level


def test_quality_nodata_and_saturation(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    src = sample_path(TOULOUSE_A)
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    for f in dst.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    b02 = next(dst.glob("GRANULE/*/IMG_DATA/*_B02.jp2"))
    dn = np.full((30, 30), 2000, np.uint16)
    dn[0, :] = 0  # no-data row
    dn[5:7, 5:7] = 65535  # saturated block
    b02.unlink()
    with rasterio.open(
        b02, "w", driver="JP2OpenJPEG", width=30, height=30, count=1, dtype="uint16",
        crs="EPSG:32631", transform=from_origin(350000, 4850020, 10, 10), REVERSIBLE=True, QUALITY=100,
    ) as out:
        out.write(dn[None])
    p = open_safe(dst)
    q = p.quality(["B02"], 10).compute()
    assert (q.nodata.values[0]).all() and not q.nodata.values[1:].any()
    np.testing.assert_array_equal(q.saturation_B02.values, dn == 65535)
    toa = p.toa(["B02"], 10).B02.values
    assert np.isnan(toa[0]).all() and toa[10, 10] == pytest.approx((2000 - 1000) / 10000)
    q20 = p.quality(["B02"], 20).compute()
    assert q20.saturation_B02.values[2:4, 2:4].all() and q20.saturation_B02.values.sum() == 4
    # a 20 m pixel half covered by no-data keeps the mean of its valid half (min_valid_fraction 0.5)
    assert not q20.nodata.values.any()
    toa20 = p.toa(["B02"], 20).B02.values
    assert toa20[0, 0] == pytest.approx(0.1) and toa20[0, 2] == pytest.approx(0.1)


def test_view_grids_merge_detectors(sample_path: Callable[[str], Path]) -> None:
    from defusedxml import ElementTree

    root = sample_path(EODAG)
    mtl = next(root.glob("GRANULE/*/MTD_TL.xml"))
    det_z = []
    for el in ElementTree.parse(mtl).getroot().iter("Viewing_Incidence_Angles_Grids"):
        if el.get("bandId") == "0":
            rows = el.find("Zenith/Values_List")
            assert rows is not None
            det_z.append(np.array([[float(v) for v in (r.text or "").split()] for r in rows]))
    assert len(det_z) >= 2
    stack = np.stack(det_z)
    count = np.isfinite(stack).sum(axis=0)
    merged = open_safe(root).metadata.view["B01"].zenith
    # each detector covers part of the swath; the merged grid covers their union
    assert max(int(np.isfinite(z).sum()) for z in det_z) < int(np.isfinite(merged).sum())
    np.testing.assert_array_equal(np.isfinite(merged), count > 0)
    single = count == 1
    np.testing.assert_allclose(merged[single], np.nansum(stack, axis=0)[single])
