"""COG writer: validity (rio-cogeo), exact values, overviews, block-by-block dask writing, atomicity."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.io.cog import CogJob, CogSettings, validate_cog, write_cog, write_cogs

GB = GeoBox((1100, 1300), Affine(10, 0, 600000, 0, -10, 5100000), "EPSG:32633")


def test_reflectance_cog_valid_and_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-10000, 10000, GB.shape, dtype=np.int16)
    p = write_cog(da.from_array(a, chunks=300), GB, tmp_path / "sre.tif", nodata=-10000, resampling="average", scales=[1e-4])
    ok, errors, warnings = validate_cog(p)
    assert ok and errors == [] and warnings == []
    with rasterio.open(p) as r:
        assert r.read(1).tolist() == a.tolist()
        assert r.crs.to_epsg() == 32633 and tuple(r.transform)[:6] == tuple(GB.affine)[:6]
        assert r.block_shapes == [(512, 512)] and r.nodata == -10000 and r.scales == (1e-4,)
        assert r.overviews(1) == [2, 4]
        assert r.compression.name.upper() == "ZSTD"
        assert r.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["sre.tif"]


def test_mask_cog_nearest_overviews_and_3d(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    m = rng.choice(np.array([1, 2, 4, 8], np.uint8), GB.shape)
    p = write_cog(m, GB, tmp_path / "clm.tif", resampling="nearest", settings=CogSettings(compress="DEFLATE"))
    assert validate_cog(p)[0]
    with rasterio.open(p, overview_level=0) as r:
        ov = r.read(1)
    # nearest keeps the mask vocabulary; an average would create values like 3, 5, 6
    assert set(np.unique(ov)) <= {1, 2, 4, 8}
    cube = rng.integers(0, 255, (2, *GB.shape), dtype=np.uint8)
    p3 = write_cog(xr.DataArray(cube, dims=("atb", "y", "x")), GB, tmp_path / "atb.tif", resampling="average",
                   descriptions=["water vapour", "aot"])
    assert validate_cog(p3)[0]
    with rasterio.open(p3) as r:
        assert r.count == 2 and r.descriptions == ("water vapour", "aot") and r.compression.name.upper() == "ZSTD"
        np.testing.assert_array_equal(r.read(), cube)


def test_bool_and_float(tmp_path: Path) -> None:
    b = np.zeros(GB.shape, bool)
    b[10:20, 30:40] = True
    p = write_cog(b, GB, tmp_path / "edg.tif")
    with rasterio.open(p) as r:
        assert r.dtypes[0] == "uint8" and r.read(1).sum() == 100
    f = np.linspace(0, 1, GB.shape[0] * GB.shape[1], dtype=np.float32).reshape(GB.shape)
    pf = write_cog(f, GB, tmp_path / "f.tif", nodata=float("nan"), resampling="average")
    assert validate_cog(pf)[0]
    with rasterio.open(pf) as r:
        np.testing.assert_array_equal(r.read(1), f)


@pytest.mark.parametrize("joint_bytes", [0, 64 * 1024 * 1024], ids=["block-by-block", "joint"])
def test_shared_graph_computed_once_per_block(tmp_path: Path, joint_bytes: int) -> None:
    """SRE and FRE of one map_blocks output: the kernel runs once per block, on both paths
    (blocks written one batch at a time for large sets, one compute for small ones)."""
    calls: list[tuple[int, int]] = []

    def kernel(x: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info:  # (dask also calls it once on empty arrays to infer metadata)
            calls.append(tuple(block_info[None]["chunk-location"][1:]))
        return np.stack([x[0], x[0] + 1]).astype(np.int16)

    src = da.from_array(np.arange(GB.shape[0] * GB.shape[1], dtype=np.int64).reshape(1, *GB.shape) % 9000, chunks=(1, 512, 512))
    both = da.map_blocks(kernel, src, chunks=((2,), *src.chunks[1:]), dtype=np.int16)
    jobs = [CogJob(tmp_path / "a.tif", both[0], GB, -10000, "average"), CogJob(tmp_path / "b.tif", both[1], GB, -10000, "average")]
    with dask.config.set(scheduler="synchronous"):
        write_cogs(jobs, CogSettings(blocks_per_compute=2, joint_compute_bytes=joint_bytes))
    nblocks = len(src.chunks[1]) * len(src.chunks[2])
    assert len(calls) == nblocks and len(set(calls)) == nblocks
    with rasterio.open(tmp_path / "b.tif") as r:
        np.testing.assert_array_equal(r.read(1), (src[0] + 1).compute())


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    def bad(x: np.ndarray) -> np.ndarray:
        if x.shape[0] < 512:  # fails on the last row of blocks
            raise RuntimeError("simulated failure")
        return x

    arr = da.zeros(tuple(GB.shape), dtype=np.int16, chunks=512).map_blocks(bad, dtype=np.int16)
    with pytest.raises(RuntimeError, match="simulated"):
        write_cog(arr, GB, tmp_path / "x.tif")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="does not match"):
        write_cog(np.zeros((5, 5), np.uint8), GB, tmp_path / "y.tif")
    assert list(tmp_path.iterdir()) == []


def _describe(p: Path) -> dict:
    with rasterio.open(p) as r:
        return {
            "pixels": r.read(), "overviews": r.overviews(1), "profile": {k: v for k, v in r.profile.items() if k != "crs"},
            "epsg": r.crs.to_epsg(), "tags": r.tags(), "band_tags": r.tags(1), "descriptions": r.descriptions,
            "scales": r.scales, "offsets": r.offsets,
            # OVERVIEW_RESAMPLING is noted only when GDAL builds the overviews of a file on disk
            "structure": {k: v for k, v in r.tags(ns="IMAGE_STRUCTURE").items() if k != "OVERVIEW_RESAMPLING"},
            "ov_pixels": [r.read(1, out_shape=(r.height // f, r.width // f)) for f in r.overviews(1)],
        }


def _block_mean(a: np.ndarray, f: int, nodata: float | None) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    b = a[: h * f, : w * f].reshape(h, f, w, f).astype(np.float64)
    v = b != nodata if nodata is not None else np.ones(b.shape, bool)
    with np.errstate(invalid="ignore"):
        return np.where(v, b, 0).sum(axis=(1, 3)) / v.sum(axis=(1, 3))


def test_direct_and_staged_paths_write_the_same_cog(tmp_path: Path) -> None:
    """Small sets are encoded straight from memory, large ones through staging files: same files."""
    rng = np.random.default_rng(3)
    a = rng.integers(-10000, 10000, GB.shape, dtype=np.int16)
    m = rng.choice(np.array([0, 1, 2, 4], np.uint8), GB.shape)

    def jobs(d: Path) -> list[CogJob]:
        return [
            CogJob(d / "sre.tif", da.from_array(a, chunks=512), GB, -10000, "average", ["SRE B04"], {"BAND": "B04"},
                   [{"UNIT": "1"}], [1e-4], [0.0]),
            CogJob(d / "clm.tif", m, GB, None, "nearest", ["CLM bits"]),
        ]

    write_cogs(jobs(tmp_path / "direct"))  # 4.3 MB: the in-memory path
    write_cogs(jobs(tmp_path / "staged"), CogSettings(joint_compute_bytes=0))
    for name in ("sre.tif", "clm.tif"):
        d, s = _describe(tmp_path / "direct" / name), _describe(tmp_path / "staged" / name)
        assert validate_cog(tmp_path / "direct" / name) == (True, [], [])
        assert validate_cog(tmp_path / "staged" / name) == (True, [], [])
        for key in d:
            if key == "ov_pixels":
                # the small-set path builds every level from the full resolution (in memory),
                # GDAL's COG driver (large sets) each from the level above: same first level
                # up to rounding, deeper levels differ by the error of a mean of means
                assert len(d[key]) == len(s[key]) == 2, name
                full = a if name == "sre.tif" else m
                for f, x, y in zip((2, 4), d[key], s[key], strict=True):
                    exact = _block_mean(full, f, -10000 if name == "sre.tif" else None)
                    if name == "sre.tif":
                        assert np.abs(x - exact).max() <= 0.5, (name, f)
                    else:  # nearest: picks from the mask vocabulary, the same pixels as GDAL's
                        assert set(np.unique(x)) <= {0, 1, 2, 4}
                        np.testing.assert_array_equal(x, y, err_msg=f"{name} overview")
                    if f == 2:
                        assert np.abs(x.astype(float) - y).max() <= 1, name
            elif key == "pixels":
                np.testing.assert_array_equal(d[key], s[key], err_msg=name)
            else:
                assert d[key] == s[key], (name, key)
    assert _describe(tmp_path / "direct" / "sre.tif")["band_tags"]["UNIT"] == "1"
    assert sorted(x.name for x in (tmp_path / "direct").iterdir()) == ["clm.tif", "sre.tif"]


@pytest.mark.parametrize("shape", [(513, 200), (1024, 1024), (1025, 1030), (2100, 900), (1014, 1014)])
def test_overview_levels_and_pixels(tmp_path: Path, shape: tuple[int, int]) -> None:
    """Overviews are built before the COG driver copies them: the levels are those GDAL's COG
    driver picks by itself (edge sizes around one and two halvings), and the first level is
    the no-data-aware 2 x 2 mean of the full resolution, as GDAL's own."""
    import rasterio.shutil

    from l2a.io.cog import overview_factors

    g = GeoBox(shape, Affine(10, 0, 600000, 0, -10, 5100000), "EPSG:32633")
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(-10000, 10000, shape, dtype=np.int16)
    a[:7] = -10000  # no-data rows (one overview row half empty): left out of the averages
    ours = write_cog(a, g, tmp_path / "ours.tif", nodata=-10000, resampling="average")
    with rasterio.open(ours) as src:  # GDAL left to choose its own levels and compute them
        rasterio.shutil.copy(src, tmp_path / "gdal.tif", driver="COG", BLOCKSIZE=512, OVERVIEWS="IGNORE_EXISTING",
                             OVERVIEW_RESAMPLING="AVERAGE")
    with rasterio.open(ours) as r, rasterio.open(tmp_path / "gdal.tif") as s:
        assert r.overviews(1) == s.overviews(1) == overview_factors(shape, 512)
    assert validate_cog(ours) == (True, [], [])
    if not overview_factors(shape, 512):
        return
    if shape[0] % 2 or shape[1] % 2:
        # odd sizes: GDAL's overview building rounds the overview size up (513 -> 257 rows), its
        # COG driver alone rounds it down (256): both valid, on slightly different grids
        return
    with rasterio.open(ours, overview_level=0) as r, rasterio.open(tmp_path / "gdal.tif", overview_level=0) as s:
        ov, gdal_ov = r.read(1).astype(np.float64), s.read(1).astype(np.float64)
    np.testing.assert_array_equal(ov == -10000, gdal_ov == -10000)
    assert np.abs(ov - gdal_ov).max() <= 1.0  # GDAL's two code paths may round differently
    h, w = shape[0] // 2, shape[1] // 2
    blocks = a.reshape(h, 2, w, 2).astype(np.float64)
    valid = blocks != -10000
    with np.errstate(invalid="ignore"):
        mean = np.where(valid, blocks, 0).sum(axis=(1, 3)) / valid.sum(axis=(1, 3))
    ok = np.isfinite(mean)
    assert (ov[~ok] == -10000).all()
    assert np.abs(ov[ok] - mean[ok]).max() <= 0.5  # rounded no-data-aware 2 x 2 mean
    assert overview_factors(shape, 512, count=1) == overview_factors(shape, 512)[:1]


def test_compression_level_is_honoured(tmp_path: Path) -> None:
    # a smooth field with noise: compressible, and more so at higher ZSTD levels
    yy, xx = np.mgrid[0 : GB.shape[0], 0 : GB.shape[1]]
    rng = np.random.default_rng(4)
    a = (1000 + 800 * np.sin(yy / 37.0) * np.cos(xx / 53.0) + rng.normal(0, 30, GB.shape)).astype(np.int16)
    sizes = {}
    for level in (1, 19):
        p = write_cog(a, GB, tmp_path / f"l{level}.tif", nodata=-10000, resampling="average", settings=CogSettings(level=level))
        assert validate_cog(p)[0]
        with rasterio.open(p) as r:
            np.testing.assert_array_equal(r.read(1), a)  # lossless at every level
        sizes[level] = p.stat().st_size
    assert sizes[19] < 0.98 * sizes[1]
    assert CogSettings().level == 1  # the documented default (benchmarks/production.py)


def test_single_tile_image_has_no_overviews(tmp_path: Path) -> None:
    g = GeoBox((300, 480), Affine(20, 0, 600000, 0, -20, 5100000), "EPSG:32633")
    p = write_cog(np.ones(g.shape, np.int16), g, tmp_path / "small.tif", resampling="average")
    assert validate_cog(p) == (True, [], [])
    with rasterio.open(p) as r:
        assert r.overviews(1) == [] and r.block_shapes == [(512, 512)]


def test_io_pool_threads_are_reused_and_nest_without_deadlock(tmp_path: Path) -> None:
    """run_threaded takes threads from one process-wide pool (their GDAL set-up is kept between
    calls), runs inline when called from one of them, and raises the first error."""
    import threading

    from l2a.io.cog import io_pool, run_threaded

    def threads_of_a_call() -> set[str]:
        names: set[str] = set()

        def read(k: int) -> None:
            with rasterio.open(tmp_path / "a.tif") as r:
                r.read(1)
            names.add(threading.current_thread().name)

        run_threaded(read, 40, 2)
        return names

    write_cog(np.arange(64, dtype=np.int16).reshape(8, 8), GeoBox((8, 8), Affine(10, 0, 0, 0, -10, 0), "EPSG:32631"), tmp_path / "a.tif")
    first, second = threads_of_a_call(), threads_of_a_call()
    pooled = {n for n in first | second if n.startswith("l2a-io")}
    assert pooled and len(pooled) <= 2  # the same pool thread(s) served both calls
    assert threading.current_thread().name in first | second  # the caller takes part
    assert io_pool() is io_pool()

    # from a pool thread: inline, on that thread (a pool task never waits for the pool)
    def nested() -> set[str]:
        seen: set[str] = set()
        run_threaded(lambda k: seen.add(threading.current_thread().name), 10, 2)
        return seen

    on = io_pool().submit(nested).result(timeout=30)
    assert len(on) == 1 and next(iter(on)).startswith("l2a-io")

    def fail(k: int) -> None:
        if k == 3:
            raise ValueError("item 3")

    with pytest.raises(ValueError, match="item 3"):
        run_threaded(fail, 10, 2)


def test_io_pool_in_a_forked_child(tmp_path: Path) -> None:
    """A child forked after the pool started gets a pool of its own (the parent's threads do not
    exist there): its writes finish instead of waiting forever."""
    import multiprocessing as mp

    from l2a.io.cog import io_pool

    io_pool().submit(lambda: None).result()
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_write_in_child, args=(str(tmp_path / "child.tif"),))
    p.start()
    p.join(30)
    if p.is_alive():
        p.kill()
    assert p.exitcode == 0
    with rasterio.open(tmp_path / "child.tif") as r:
        assert r.read(1).sum() == 64 * 63 // 2


def _write_in_child(path: str) -> None:
    g = GeoBox((8, 8), Affine(10, 0, 0, 0, -10, 0), "EPSG:32631")
    a = np.arange(64, dtype=np.int16).reshape(8, 8)
    write_cogs([CogJob(Path(path), a, g), CogJob(Path(path + ".2.tif"), a, g)], CogSettings(max_workers=2))


@pytest.mark.parametrize("joint_bytes", [0, 64 * 1024 * 1024], ids=["staged", "from-memory"])
def test_check_and_computed_hooks(tmp_path: Path, joint_bytes: int) -> None:
    """``check(k, path)`` sees every finished COG before it is renamed into place (the bytes
    that end there), on both paths; ``computed`` gets the in-memory arrays (small sets only);
    an error in ``check`` leaves nothing."""
    import hashlib

    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 9000, GB.shape, dtype=np.int16) for _ in range(3)]
    jobs = [CogJob(tmp_path / f"{k}.tif", da.from_array(a, chunks=512), GB, -10000, "average") for k, a in enumerate(arrays)]
    seen: dict[int, str] = {}
    held: dict[int, np.ndarray] = {}

    def check(k: int, path: Path) -> None:
        assert path != jobs[k].path and not jobs[k].path.exists()  # its temporary name, not yet in place
        with rasterio.open(path) as r:
            np.testing.assert_array_equal(r.read(1), arrays[k])
        seen[k] = hashlib.sha256(path.read_bytes()).hexdigest()

    settings = CogSettings(joint_compute_bytes=joint_bytes)
    write_cogs(jobs, settings, check=check, computed=lambda k, a: held.setdefault(k, a))
    assert seen == {k: hashlib.sha256(j.path.read_bytes()).hexdigest() for k, j in enumerate(jobs)}
    if joint_bytes:
        assert sorted(held) == [0, 1, 2] and all((held[k][0] == arrays[k]).all() for k in held)
    else:
        assert held == {}

    def reject(k: int, path: Path) -> None:
        if k == 1:
            raise RuntimeError("file 1 rejected")

    out = tmp_path / "again"
    out.mkdir()
    jobs = [CogJob(out / f"{k}.tif", a, GB, -10000, "average") for k, a in enumerate(arrays)]
    with pytest.raises(RuntimeError, match="file 1 rejected"):
        write_cogs(jobs, settings, check=reject)
    assert list(out.iterdir()) == []
