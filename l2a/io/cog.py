"""Cloud-Optimized GeoTIFF writer: numpy or lazy dask arrays on a GeoBox -> valid COGs.

How a COG is written (:func:`write_cogs`, :func:`write_cog`):

1. every array is written block by block (the blocks of its dask chunk grid, several
   arrays at once so that arrays computed by one dask graph, e.g. SRE and FRE of a band, are
   computed once per block) into an uncompressed tiled GeoTIFF under a hidden temporary
   name beside the destination; memory stays bounded by ``CogSettings.blocks_per_compute``
   blocks of all arrays. Small sets (all arrays together at most
   ``CogSettings.joint_compute_bytes``, e.g. a crop or a 60 m product) are computed in one
   ``dask.compute`` call instead: the per-call scheduling cost dominates there;
2. GDAL's COG driver (through :func:`rasterio.shutil.copy`) turns it into a COG (512 x 512
   tiles, ZSTD or DEFLATE with a predictor, internal overviews resampled with ``average``
   for reflectance, ``nearest`` for masks), ``CogSettings.max_workers`` files at a time
   (threads: GDAL releases the GIL while it encodes);
3. once every file is converted, the COGs are renamed into place (:func:`os.replace`); the
   temporary files are removed whatever happens (after the running conversions end).

:func:`validate_cog` wraps ``rio_cogeo.cogeo.cog_validate``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
        Compression level (ZSTD 1-22, DEFLATE 1-9); 9 is a good size/speed trade-off for
        ZSTD and reasonable for DEFLATE.
    predictor : str
        ``"YES"`` lets GDAL pick (2 = horizontal differencing for integers, 3 for floats),
        ``"NO"`` disables it.
    overview_count : int or None
        Number of overview levels; ``None`` lets GDAL go down until the image fits one tile.
    blocks_per_compute : int
        Dask blocks computed per ``dask.compute`` call while writing lazy arrays (memory is
        about this many chunks of every array written together).
    num_threads : str
        ``GDAL_NUM_THREADS`` for compression and overviews (``"ALL_CPUS"`` or a number).
    max_workers : int
        Files converted to COG concurrently (threads; GDAL releases the GIL while it
        compresses). Small files gain most: one 1000 x 1000 px band has only 4 tiles, too few
        for GDAL's own per-tile threads. ``1``: one file after the other.
    joint_compute_bytes : int
        When all the arrays of one :func:`write_cogs` call together hold at most this many
        bytes (uncompressed), their lazy parts are computed in ONE ``dask.compute`` call
        (one graph traversal instead of one per grid and per batch of blocks); larger sets
        keep the bounded-memory block-by-block path.
    """

    blocksize: int = 512
    compress: str = "ZSTD"
    level: int = 9
    predictor: str = "YES"
    overview_count: int | None = None
    blocks_per_compute: int = 2
    num_threads: str = "ALL_CPUS"
    max_workers: int = 2
    joint_compute_bytes: int = 64 * 1024 * 1024


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
        "crs": g.crs.to_wkt() if g.crs is not None else None,
        "transform": g.affine,
        "nodata": job.nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "NONE",
        "interleave": "band",
        "BIGTIFF": "IF_SAFER",
    }


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


def write_cogs(jobs: Sequence[CogJob], settings: CogSettings = DEFAULT_COG) -> list[Path]:
    """Write several COGs, computing lazy arrays jointly block by block.

    Arrays that share a dask graph (e.g. SRE and FRE of one band group) are computed once per
    block (small sets: all in one ``dask.compute``, see ``CogSettings.joint_compute_bytes``).
    Files are converted to COG ``CogSettings.max_workers`` at a time under temporary names and
    renamed into place only once all of them succeeded; nothing is left behind on error.

    Parameters
    ----------
    jobs : sequence of CogJob
    settings : CogSettings

    Returns
    -------
    list of Path
        The written files, in the order of ``jobs``.
    """
    import rasterio
    import rasterio.shutil

    arrays = [_as3d(_raw(j.data)) for j in jobs]
    for j in jobs:
        j.path = Path(j.path)
        j.path.parent.mkdir(parents=True, exist_ok=True)
    tmps = [_tmp_name(j.path, ".stage.tif") for j in jobs]
    cogs = [_tmp_name(j.path, ".cog.tif") for j in jobs]
    with _cleanup(tmps + cogs), rasterio.Env(GDAL_NUM_THREADS=settings.num_threads):
        # 1. staged, uncompressed tiled GeoTIFFs written window by window
        dsts = [rasterio.open(t, "w", **_profile(j, a, settings.blocksize)) for t, j, a in zip(tmps, jobs, arrays, strict=True)]
        try:
            for dst, j in zip(dsts, jobs, strict=True):
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
            # group arrays by grid: windows follow the chunks of the first array of each grid
            groups: dict[tuple[Any, ...], list[int]] = {}
            for i, (a, j) in enumerate(zip(arrays, jobs, strict=True)):
                key = (tuple(j.geobox.shape), tuple(j.geobox.affine)[:6], getattr(a, "chunks", None) and a.chunks[-2:])
                groups.setdefault(key, []).append(i)
            batches: list[list[tuple[int, slice, slice]]] = []
            step = max(1, settings.blocks_per_compute)
            for idx in groups.values():
                wins = _windows(arrays[idx[0]], settings.blocksize)
                batches.extend([(i, ys, xs) for ys, xs in wins[k : k + step] for i in idx] for k in range(0, len(wins), step))
            total = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in arrays)
            if total <= settings.joint_compute_bytes:  # small set: one dask graph traversal for all
                batches = [[item for b in batches for item in b]]
            for items in batches:
                _write_batch(arrays, dsts, items)
        finally:
            for d in dsts:
                d.close()
        # 2. GDAL's COG driver (several files at once), 3. rename into place once all succeeded
        def convert(k: int) -> None:
            t, c, j, a = tmps[k], cogs[k], jobs[k], arrays[k]
            rasterio.shutil.copy(t, c, driver="COG", **_cog_options(j, np.dtype(a.dtype), settings))
            t.unlink()  # free the staging space as soon as possible (a 10 m band is 241 MB)

        workers = max(1, min(settings.max_workers, len(jobs)))
        if workers == 1:
            for k in range(len(jobs)):
                convert(k)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="cog") as pool:
                futures = [pool.submit(convert, k) for k in range(len(jobs))]
                try:
                    for f in futures:
                        f.result()
                finally:  # on error: no new conversion starts, the running ones end before the cleanup
                    for f in futures:
                        f.cancel()
        for c, j in zip(cogs, jobs, strict=True):  # all converted: into place
            os.replace(c, j.path)
    return [j.path for j in jobs]


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


__all__ = ["DEFAULT_COG", "CogJob", "CogSettings", "Resampling", "validate_cog", "write_cog", "write_cogs"]
