"""Cloud-Optimized GeoTIFF writer: numpy or lazy dask arrays on a GeoBox -> valid COGs.

How a COG is written (:func:`write_cogs`, :func:`write_cog`). Two paths, picked by size:

- **small sets** (all arrays of one call together at most ``CogSettings.joint_compute_bytes``
  uncompressed, e.g. a crop, a 60 m product, the 36 files of a small date): the lazy arrays
  are computed in ONE ``dask.compute`` call (one graph traversal: arrays sharing a graph, e.g.
  SRE and FRE of a band, or SAT and SRE reading the same TOA, are computed once), then every
  array is encoded straight from memory by GDAL's COG driver (a GDAL ``MEM`` dataset handed
  to ``CreateCopy``): no staging file.
  ``CogSettings.max_workers`` files at a time (threads: GDAL releases the GIL);
- **large sets** (a whole tile): every array is written block by block (the blocks of its
  dask chunk grid, several arrays at once so that shared graphs are computed once per block)
  into an uncompressed tiled GeoTIFF under a hidden temporary name beside the destination,
  memory bounded by ``CogSettings.blocks_per_compute`` blocks of all arrays; GDAL's COG driver
  (:func:`rasterio.shutil.copy`) then turns each into a COG.

Both give the same files: 512 x 512 tiles, ZSTD (level ``CogSettings.level``) or DEFLATE with
the horizontal-differencing predictor for integers, internal overviews (``average`` for
reflectance, ``nearest`` for masks) down to the first level that fits one tile (none for an
image that fits one tile; :func:`overview_factors`), built by GDAL on the source (in memory,
or on the staging file) before the COG driver copies them in. Once every file is written, the COGs are renamed into place
(:func:`os.replace`); the temporary files are removed whatever happens.

:func:`validate_cog` wraps ``rio_cogeo.cogeo.cog_validate``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from odc.geo.geobox import GeoBox

#: Resampling of the internal overviews: ``average`` for reflectance, ``nearest`` for masks.
Resampling = Literal["average", "nearest", "mode", "bilinear"]


@dataclass(frozen=True)
class CogSettings:
    """How COGs are written.

    Attributes
    ----------
    blocksize : int
        Side of the internal tiles (pixels), 512 as PRODUCT_FORMAT.md says.
    compress : str
        ``"ZSTD"`` (default) or ``"DEFLATE"`` (both lossless).
    level : int
        Compression level (ZSTD 1-22, DEFLATE 1-9; lossless at every level: only size and
        time change). Default 1: on real Sentinel-2 reflectance (``benchmarks/production.py``
        prints the table) level 3 (zstd's own default) makes files 0.2-4.5 % smaller for
        1.5-1.7 times the encoding time, and level 9 a few % smaller again for about twice
        level 3's time. Encoding is most of the packaging of a product, so level 1 keeps the
        production layer's share of the chain low (sites where storage counts more than CPU
        set 3 or 9).
    predictor : str
        ``"YES"`` lets GDAL pick (2 = horizontal differencing for integers, 3 for floats),
        ``"NO"`` disables it.
    overview_count : int or None
        Number of overview levels; ``None`` lets GDAL go down until the image fits one tile.
    blocks_per_compute : int
        Dask blocks computed per ``dask.compute`` call while writing lazy arrays (memory is
        about this many chunks of every array written together).
    num_threads : str
        ``GDAL_NUM_THREADS`` for compression and overviews (``"ALL_CPUS"`` or a number) of
        the large-set path. The small-set path encodes one file per worker thread with one
        GDAL thread each when ``max_workers > 1`` (files of a few tiles: per-file threads only
        add start-up cost, measured 10-20 % slower on 2 cores).
    max_workers : int
        Files converted to COG concurrently (threads; GDAL releases the GIL while it
        compresses). Small files gain most: one 1000 x 1000 px band has only 4 tiles, too few
        for GDAL's own per-tile threads. ``1``: one file after the other.
    joint_compute_bytes : int
        When all the arrays of one :func:`write_cogs` call together hold at most this many
        bytes (uncompressed), their lazy parts are computed in ONE ``dask.compute`` call
        (one graph traversal instead of one per grid and per batch of blocks) and encoded
        straight from memory (no staging file); larger sets keep the bounded-memory
        block-by-block path through staging files. 256 MiB takes products up to about
        10 Mpx (a 30 x 30 km crop) through memory: on Betsiboka crops of 3.6 and 8.7 Mpx
        ``process_date`` is 8-10 % faster that way with the same peak memory (1.2 GB, set by
        the science, not by the outputs); a whole tile (about 3 GB of outputs) is staged.
    """

    blocksize: int = 512
    compress: str = "ZSTD"
    level: int = 1
    predictor: str = "YES"
    overview_count: int | None = None
    blocks_per_compute: int = 2
    num_threads: str = "ALL_CPUS"
    max_workers: int = 2
    joint_compute_bytes: int = 256 * 1024 * 1024


DEFAULT_COG: Final[CogSettings] = CogSettings()


@dataclass
class CogJob:
    """One COG to write: a 2-D ``(y, x)`` or 3-D ``(band, y, x)`` array on ``geobox``.

    Attributes
    ----------
    path : Path
        Destination file.
    data : numpy.ndarray, dask.array.Array or xarray.DataArray
        The pixels (3-D arrays are band-first).
    geobox : GeoBox
        Grid of the last two dimensions.
    nodata : int or float or None
        No-data value written in the file (``None``: none).
    resampling : str
        Overview resampling (``average`` reflectance, ``nearest`` masks).
    descriptions : sequence of str, optional
        One description per band.
    tags : mapping, optional
        Dataset-level metadata (TIFF tags), e.g. scale factors.
    band_tags : sequence of mapping, optional
        Per-band metadata.
    scales, offsets : sequence of float, optional
        Per-band scale/offset written into the file (GDAL ``scale``/``offset``).
    """

    path: Path
    data: Any
    geobox: GeoBox
    nodata: int | float | None = None
    resampling: Resampling = "nearest"
    descriptions: Sequence[str] | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    band_tags: Sequence[Mapping[str, Any]] | None = None
    scales: Sequence[float] | None = None
    offsets: Sequence[float] | None = None


def _raw(data: Any) -> Any:
    """Underlying numpy/dask array of a DataArray (or the array itself)."""
    return getattr(data, "data", data) if hasattr(data, "dims") else data


def _as3d(a: Any) -> Any:
    if np.dtype(a.dtype) == np.bool_:
        a = a.astype(np.uint8)
    if a.ndim == 2:
        return a[None, ...]
    if a.ndim != 3:
        raise ValueError(f"COG data must be 2-D (y, x) or 3-D (band, y, x), got {a.ndim}-D")
    return a


def _windows(arr: Any, blocksize: int) -> list[tuple[slice, slice]]:
    """Row/column slices of the array's dask chunks (numpy: 4 x 4 blocksize tiles)."""
    chunks = getattr(arr, "chunks", None)
    if chunks is not None and isinstance(chunks[0], tuple):
        ys, xs = chunks[-2], chunks[-1]
    else:
        h, w = arr.shape[-2:]
        step = 4 * blocksize
        ys = tuple(min(step, h - i) for i in range(0, h, step))
        xs = tuple(min(step, w - i) for i in range(0, w, step))
    out = []
    y0 = 0
    for dy in ys:
        x0 = 0
        for dx in xs:
            out.append((slice(y0, y0 + dy), slice(x0, x0 + dx)))
            x0 += dx
        y0 += dy
    return out


def _is_dask(a: Any) -> bool:
    return type(a).__module__.startswith("dask")


@functools.lru_cache(maxsize=16)
def _rio_crs(crs: str) -> Any:
    """rasterio CRS of an odc-geo CRS string (parsed once per process: WKT parsing costs ~1 ms a file)."""
    from rasterio.crs import CRS

    return CRS.from_user_input(crs)


def _profile(job: CogJob, arr: Any, blocksize: int) -> dict[str, Any]:
    g = job.geobox
    if tuple(arr.shape[-2:]) != tuple(g.shape):
        raise ValueError(f"{job.path.name}: array shape {tuple(arr.shape[-2:])} does not match its grid {tuple(g.shape)}")
    return {
        "driver": "GTiff",
        "height": int(g.shape[0]),
        "width": int(g.shape[1]),
        "count": int(arr.shape[0]),
        "dtype": np.dtype(arr.dtype).name,
        "crs": _rio_crs(str(g.crs)) if g.crs is not None else None,
        "transform": g.affine,
        "nodata": job.nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "NONE",
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }


def _set_metadata(dst: Any, j: CogJob) -> None:
    """Band descriptions, dataset and band tags, scales and offsets of ``j`` on an open writer."""
    if j.descriptions:
        for i, d in enumerate(j.descriptions, start=1):
            dst.set_band_description(i, d)
    if j.tags:
        dst.update_tags(**{k: str(v) for k, v in j.tags.items()})
    for i, bt in enumerate(j.band_tags or (), start=1):
        dst.update_tags(i, **{k: str(v) for k, v in bt.items()})
    if j.scales is not None:
        dst.scales = tuple(float(x) for x in j.scales)
    if j.offsets is not None:
        dst.offsets = tuple(float(x) for x in j.offsets)


def _write_direct(dst_path: Path, job: CogJob, arr: np.ndarray, settings: CogSettings) -> None:
    """Encode an in-memory array as a COG in one GDAL pass: a GDAL ``MEM`` dataset (no copy to
    disk, no encoding) handed to the COG driver's ``CreateCopy``.

    (rasterio's ``open(path, "w", driver="COG")`` does the same but holds the GIL while GDAL
    encodes; :func:`rasterio.shutil.copy` releases it, so files encode in parallel threads.)
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling

    prof = _profile(job, arr, settings.blocksize)
    for k in ("tiled", "blockxsize", "blockysize", "compress", "interleave", "BIGTIFF"):
        prof.pop(k)
    prof["driver"] = "MEM"
    with rasterio.open(f"/vsimem/{dst_path.name}", "w", **prof) as mem:  # MEM ignores the name
        _set_metadata(mem, job)
        mem.write(arr)
        factors = overview_factors(arr.shape[-2:], settings.blocksize, settings.overview_count)
        if factors:
            # built in memory: the COG driver copies the source's overviews instead of computing
            # them into a temporary file on disk (a third of the encoding time of a
            # 1000 x 1000 px band)
            mem.build_overviews(factors, Resampling[job.resampling])
        rasterio.shutil.copy(mem, dst_path, driver="COG", **_cog_options(job, np.dtype(arr.dtype), settings))


def overview_factors(shape: Sequence[int], blocksize: int, count: int | None = None) -> list[int]:
    """Decimation factors of the internal overviews GDAL's COG driver makes for an image of
    ``shape`` (rows, cols): halve until the image fits one tile (integer halving, as GDAL
    does), at most ``count`` levels when given."""
    rows, cols = int(shape[0]), int(shape[1])
    factors: list[int] = []
    while (rows > blocksize or cols > blocksize) and (count is None or len(factors) < count):
        rows, cols = rows // 2, cols // 2
        factors.append(2 ** (len(factors) + 1))
    return factors


def _cog_options(job: CogJob, dtype: np.dtype, s: CogSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "BLOCKSIZE": s.blocksize,
        "COMPRESS": s.compress,
        "LEVEL": s.level,
        "PREDICTOR": s.predictor if dtype.kind in "iuf" else "NO",
        "OVERVIEW_RESAMPLING": job.resampling.upper(),
        "NUM_THREADS": s.num_threads,
        "BIGTIFF": "IF_SAFER",
    }
    if s.overview_count is not None:
        opts["OVERVIEW_COUNT"] = s.overview_count
    return opts


@contextlib.contextmanager
def _cleanup(paths: list[Path]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _tmp_name(dst: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{dst.stem}-", suffix=suffix, dir=dst.parent)
    os.close(fd)
    return Path(name)


def _write_batch(arrays: Sequence[Any], dsts: Sequence[Any], items: Sequence[tuple[int, slice, slice]]) -> None:
    """Compute (one ``dask.compute`` call) and write ``(array index, rows, cols)`` windows."""
    import dask
    import rasterio.windows

    pieces = [arrays[i][:, ys, xs] for i, ys, xs in items]
    if any(_is_dask(p) for p in pieces):
        pieces = list(dask.compute(*pieces))
    for (i, ys, xs), piece in zip(items, pieces, strict=True):
        block = np.asarray(piece)
        win = rasterio.windows.Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
        dsts[i].write(block.astype(dsts[i].dtypes[0], copy=False), window=win)


def write_cogs(jobs: Sequence[CogJob], settings: CogSettings = DEFAULT_COG, *,
               computed: Callable[[int, np.ndarray], Any] | None = None,
               check: Callable[[int, Path], Any] | None = None) -> list[Path]:
    """Write several COGs, computing lazy arrays jointly (module docstring: the two paths).

    Arrays that share a dask graph (e.g. SRE and FRE of one band group) are computed once
    (small sets: all in one ``dask.compute`` and encoded from memory, see
    ``CogSettings.joint_compute_bytes``; large sets: once per block, through staging files).
    Files are written ``CogSettings.max_workers`` at a time under temporary names and renamed
    into place only once all of them succeeded; nothing is left behind on error.

    Parameters
    ----------
    jobs : sequence of CogJob
    settings : CogSettings
    computed : callable, optional
        ``computed(k, array)`` is called with the whole 3-D array of ``jobs[k]`` once it is in
        memory, for callers that want more from the pixels without computing or reading them
        again (the product's quicklook). Only the small-set path holds whole arrays; on the
        staged path it is not called.
    check : callable, optional
        ``check(k, path)`` is called on the writing thread as soon as the COG of ``jobs[k]`` is
        complete at ``path`` (its temporary name: the bytes that will be renamed into place),
        e.g. to open it again and hash it while the other files are still being encoded. An
        exception raised there fails the call like a write error (nothing is left).

    Returns
    -------
    list of Path
        The written files, in the order of ``jobs``.
    """
    arrays = [_as3d(_raw(j.data)) for j in jobs]
    for j in jobs:
        j.path = Path(j.path)
        j.path.parent.mkdir(parents=True, exist_ok=True)
    total = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in arrays)
    cogs = [_tmp_name(j.path, ".cog.tif") for j in jobs]
    with _cleanup(cogs):
        if total <= settings.joint_compute_bytes:
            _write_small(jobs, arrays, cogs, settings, computed, check)
        else:
            _write_staged(jobs, arrays, cogs, settings, check)
        for c, j in zip(cogs, jobs, strict=True):  # all written: into place
            os.replace(c, j.path)
    return [j.path for j in jobs]


#: Most threads of the shared I/O pool (:func:`io_pool`); they start as needed.
IO_POOL_THREADS: Final[int] = max(2, min(8, os.cpu_count() or 2))

_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (process id, pool): a forked child makes its own
_io_thread = threading.local()


def _start_io_thread() -> None:
    """Initializer of an I/O thread: one rasterio environment held for the thread's life."""
    import rasterio

    env = rasterio.Env()
    env.__enter__()
    _io_thread.env = env


def io_pool() -> ThreadPoolExecutor:
    """The process's shared pool of I/O threads (at most :data:`IO_POOL_THREADS`).

    Its threads live as long as the process, so GDAL's per-thread set-up (a PROJ context, the
    driver and configuration state, rasterio's environment) is paid once per thread, not at
    every call: with a fresh pair of threads per call, verifying the 34 files of a small
    product took 53-68 ms instead of 33 ms. Tasks on it must not wait for other tasks on it
    (:func:`run_threaded` runs inline there).
    """
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(IO_POOL_THREADS, thread_name_prefix="l2a-io",
                                                     initializer=_start_io_thread))
        return _pool[1]


def _on_io_thread() -> bool:
    return hasattr(_io_thread, "env")


def run_threaded(fn: Callable[[int], Any], n: int, workers: int, **gdal_env: Any) -> None:
    """``fn(k)`` for every ``k < n`` on ``workers`` threads, each inside ONE ``rasterio.Env``.

    The calling thread takes part; the others come from the shared pool (:func:`io_pool`),
    whose threads keep their GDAL state from call to call. rasterio's environment is per
    thread: without one, every ``rasterio.open`` sets up and tears down its own (about a third
    of the cost of opening a small file). Items are handed out one at a time (files differ in
    size); after an error no new item starts, the running ones end, and the first error is
    raised. Called from a pool thread, it runs inline (a pool task never waits for the pool).
    """
    import rasterio

    workers = max(1, min(workers, n))
    if _on_io_thread():
        workers = 1
    items = iter(range(n))
    lock = threading.Lock()
    failed = threading.Event()

    def worker() -> None:
        with rasterio.Env(**gdal_env):
            while not failed.is_set():
                with lock:
                    k = next(items, None)
                if k is None:
                    return
                try:
                    fn(k)
                except BaseException:
                    failed.set()
                    raise

    pool = io_pool()
    futures = [pool.submit(worker) for _ in range(workers - 1)]
    try:
        worker()
    finally:
        wait(futures)
    for f in futures:
        f.result()


def _write_small(jobs: Sequence[CogJob], arrays: list[Any], cogs: list[Path], settings: CogSettings,
                 computed: Callable[[int, np.ndarray], Any] | None = None,
                 check: Callable[[int, Path], Any] | None = None) -> None:
    """Small sets: one ``dask.compute`` for every lazy array, then one GDAL pass per file from memory."""
    import dask

    for j, a in zip(jobs, arrays, strict=True):
        _profile(j, a, settings.blocksize)  # shape check before anything is computed
    lazy = [i for i, a in enumerate(arrays) if _is_dask(a)]
    if lazy:
        for i, v in zip(lazy, dask.compute(*[arrays[i] for i in lazy]), strict=True):
            arrays[i] = v
    data = [np.ascontiguousarray(np.asarray(a)) for a in arrays]
    if computed is not None:
        for k, a in enumerate(data):
            computed(k, a)
    if settings.max_workers > 1:  # parallel across files, not inside each (a few tiles per file)
        settings = replace(settings, num_threads="1")

    def write(k: int) -> None:
        _write_direct(cogs[k], jobs[k], data[k], settings)
        if check is not None:
            check(k, cogs[k])

    run_threaded(write, len(jobs), settings.max_workers, GDAL_NUM_THREADS=settings.num_threads)


def _write_staged(jobs: Sequence[CogJob], arrays: list[Any], cogs: list[Path], settings: CogSettings,
                  check: Callable[[int, Path], Any] | None = None) -> None:
    """Large sets: block-by-block uncompressed staging files, then GDAL's COG driver on each."""
    import rasterio
    import rasterio.shutil

    tmps = [_tmp_name(j.path, ".stage.tif") for j in jobs]
    with _cleanup(tmps), rasterio.Env(GDAL_NUM_THREADS=settings.num_threads):
        # 1. staged, uncompressed tiled GeoTIFFs written window by window
        dsts = [rasterio.open(t, "w", **_profile(j, a, settings.blocksize)) for t, j, a in zip(tmps, jobs, arrays, strict=True)]
        try:
            for dst, j in zip(dsts, jobs, strict=True):
                _set_metadata(dst, j)
            # group arrays by grid: windows follow the chunks of the first array of each grid
            groups: dict[tuple[Any, ...], list[int]] = {}
            for i, (a, j) in enumerate(zip(arrays, jobs, strict=True)):
                key = (tuple(j.geobox.shape), tuple(j.geobox.affine)[:6], getattr(a, "chunks", None) and a.chunks[-2:])
                groups.setdefault(key, []).append(i)
            step = max(1, settings.blocks_per_compute)
            for idx in groups.values():
                wins = _windows(arrays[idx[0]], settings.blocksize)
                for k in range(0, len(wins), step):
                    _write_batch(arrays, dsts, [(i, ys, xs) for ys, xs in wins[k : k + step] for i in idx])
        finally:
            for d in dsts:
                d.close()

        # 2. GDAL's COG driver (several files at once)
        def convert(k: int) -> None:
            rasterio.shutil.copy(tmps[k], cogs[k], driver="COG", **_cog_options(jobs[k], np.dtype(arrays[k].dtype), settings))
            tmps[k].unlink()  # free the staging space as soon as possible (a 10 m band is 241 MB)
            if check is not None:
                check(k, cogs[k])

        run_threaded(convert, len(jobs), settings.max_workers, GDAL_NUM_THREADS=settings.num_threads)


def write_cog(
    data: Any,
    geobox: GeoBox,
    path: str | Path,
    *,
    nodata: int | float | None = None,
    resampling: Resampling = "nearest",
    descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    settings: CogSettings = DEFAULT_COG,
) -> Path:
    """Write one 2-D ``(y, x)`` or 3-D ``(band, y, x)`` array on ``geobox`` as a COG.

    ``data`` may be numpy, dask (written block by block, bounded memory) or an
    ``xarray.DataArray``. ``resampling`` is the overview resampling: ``"average"`` for
    reflectance, ``"nearest"`` for masks. See :func:`write_cogs`.
    """
    job = CogJob(Path(path), data, geobox, nodata, resampling, descriptions, dict(tags or {}), None, scales, offsets)
    return write_cogs([job], settings)[0]


def validate_cog(path: str | Path, *, strict: bool = False) -> tuple[bool, list[str], list[str]]:
    """``rio_cogeo.cogeo.cog_validate``: (is valid, errors, warnings)."""
    from rio_cogeo.cogeo import cog_validate

    return cog_validate(str(path), strict=strict, quiet=True)


__all__ = ["DEFAULT_COG", "CogJob", "CogSettings", "Resampling", "run_threaded", "validate_cog", "write_cog", "write_cogs"]
