"""The per-date chain: one L1C date in, one MUSCATE L2A product (and the tile's composite) out.

:func:`process_date` runs, for one acquisition of one tile:

1. open the L1C (:func:`l2a.io.open_l1c`: SAFE folder or zip, STAC item, array scene);
2. DEM -> terrain (:func:`l2a.dem.load_dem`, :func:`l2a.dem.terrain`) on the masks' working
   grid and on the terrain grid of the correction (20 m by default); no DEM, or a DEM that
   misses the tile with the sea-level fallback on: flat terrain at 0 m, flagged
   (``dem_fallback``, :attr:`DateResult.dem_fallback_fraction`);
3. masks (:func:`l2a.masks.detect`) against the previous composite (NOMINAL), none (INIT), or a
   composite first built from the following dates processed in reverse (BACKWARD, MAJA);
4. correction (:func:`l2a.chain.correction.correct`), unless the cloud cover is above
   :attr:`ChainSettings.max_cloud_cover`: such a date gets metadata, quicklook and masks only,
   as Theia does (its composite is still updated by the masks);
5. packaging (:func:`l2a.io.muscate.write_product`: built in a temporary folder, verified,
   checksummed, renamed into place). The L1C saturation and no-data (SAT, EDG) are carried
   from the TOA the correction reads (:func:`l2a.io.lazy.quality_from_toa`, same dask graph: each
   JPEG2000 band is decoded once for SRE, FRE, SAT and EDG) instead of decoded again by
   ``l1c.quality()``, which stays the fallback (cloudy dates, array scenes);
6. the updated composite saved atomically beside the tile's others
   (``<composite_dir>/T<tile>/<YYYYMMDDTHHMMSS>.npz``).

Bounded memory
    The sequential, multi-temporal part runs on the coarse working grid. Full resolution is
    only touched lazily: the correction and the packager work chunk by chunk through dask.
    The masks read their input at full resolution only for small inputs (at most
    :attr:`ChainSettings.masks_full_resolution_max_pixels` pixels at 10 m); larger ones (a
    whole tile) are read at :attr:`ChainSettings.masks_reduced_resolution_m` through the
    JPEG2000 resolution levels, and the packager brings the masks back to R1/R2.

The chain never touches the status database or the catalog: the production layer
(:mod:`l2a.production.runner`) decides the mode and the composite, calls this on a dask
worker, then verifies and publishes what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox

from l2a.chain.correction import CorrectionSettings
from l2a.errors import InputError, MissingDataError
from l2a.io.muscate import PackageSettings, ProductResult
from l2a.masks.settings import MaskSettings

__all__ = [
    "ChainSettings",
    "DateResult",
    "carried_quality",
    "composite_file",
    "flat_terrain",
    "process_date",
]

#: Modes of :func:`process_date` (same values as :class:`l2a.masks.Mode`).
MODES: Final[tuple[str, ...]] = ("INIT", "NOMINAL", "BACKWARD")


@dataclass(frozen=True)
class ChainSettings:
    """Settings of the per-date chain (built from a site's configuration by the runner).

    Attributes
    ----------
    masks : MaskSettings
        Cloud/shadow/snow/water detection; its ``coarse_resolution_m`` and ``reinit_gap_days``
        are the site's.
    correction : CorrectionSettings
        Atmospheric and terrain correction.
    package : PackageSettings
        MUSCATE packaging (zip, quicklook, COG settings).
    max_cloud_cover : float
        Cloud cover (% of valid pixels, as measured by the masks) above which no reflectance is
        computed nor written: the product has metadata, quicklook and masks only (Theia's rule,
        default 90 %).
    terrain_resolution_m : float
        Grid (m) of the terrain given to the correction (slope, aspect, shadows, sky view);
        20 m: the resolution of a GLO-30 DEM, and a quarter of the memory of 10 m.
    masks_full_resolution_max_pixels : int
        Inputs with at most this many 10 m pixels are given to the masks at 10 m (full
        resolution edge refinement); larger ones at ``masks_reduced_resolution_m``.
    masks_reduced_resolution_m : float
        Input resolution (m) of the masks for large inputs (60 m: a whole tile is 1830 x 1830).
    sea_level_fallback : bool
        Fill pixels the DEM does not cover with 0 m (flagged) instead of failing.
    threads : int
        Threads of the chunked (full-resolution) computations inside one date; the runner
        sets it to the threads of the dask worker that runs the date.
    """

    masks: MaskSettings = field(default_factory=MaskSettings)
    correction: CorrectionSettings = field(default_factory=CorrectionSettings)
    package: PackageSettings = field(default_factory=PackageSettings)
    max_cloud_cover: float = 90.0
    terrain_resolution_m: float = 20.0
    masks_full_resolution_max_pixels: int = 4_000_000
    masks_reduced_resolution_m: float = 60.0
    sea_level_fallback: bool = True
    threads: int = 1


@dataclass(frozen=True)
class DateResult:
    """What :func:`process_date` made.

    Attributes
    ----------
    product : ProductResult
        The MUSCATE product (folder, metadata, files with SHA-256).
    composite_path : Path
        The tile's composite after this date.
    mode : str
        ``INIT``, ``NOMINAL`` or ``BACKWARD`` (as run; a NOMINAL date whose composite is older
        than the re-INIT gap is run as INIT by the masks and reported so).
    cloud_cover : float
        % of valid pixels.
    reflectance : bool
        Whether SRE/FRE were written (false above the cloud-cover limit).
    dem_fallback_fraction : float
        Fraction of the tile whose elevation is the sea-level fallback (1.0: no DEM).
    timings : dict
        Seconds per step (``open``, ``terrain``, ``masks``, ``correction``, ``package``,
        ``composite``).
    notes : tuple of str
        Plain-words remarks (mode changes, fallbacks).
    """

    product: ProductResult
    composite_path: Path
    mode: str
    cloud_cover: float
    reflectance: bool
    dem_fallback_fraction: float
    timings: dict[str, float]
    notes: tuple[str, ...] = ()

    @property
    def tile(self) -> str:
        return self.product.info.tile_id

    @property
    def sensing_time(self) -> datetime:
        return self.product.info.sensing_time


def composite_file(composite_dir: str | Path, tile: str, sensing_time: datetime) -> Path:
    """Where the composite of ``tile`` after the date ``sensing_time`` is kept."""
    t = tile.upper().removeprefix("T")
    return Path(composite_dir) / f"T{t}" / f"{sensing_time:%Y%m%dT%H%M%S}.npz"


def flat_terrain(geobox: GeoBox, sun_zenith: float, sun_azimuth: float) -> xr.Dataset:
    """Terrain dataset of a flat tile at sea level, every pixel flagged ``dem_fallback``."""
    from odc.geo.xr import wrap_xr

    from l2a.dem import terrain

    el = wrap_xr(np.zeros(tuple(geobox.shape), np.float32), geobox)
    el.name = "elevation"
    el = el.assign_coords(dem_fallback=(el.dims, np.ones(tuple(geobox.shape), bool)))
    el.attrs["dem_fallback_fraction"] = 1.0
    return terrain(el, sun_zenith, sun_azimuth)


def _terrain_on(
    dem_source: str | Path | None, geobox: GeoBox, sun_zenith: float, sun_azimuth: float, settings: ChainSettings
) -> tuple[xr.Dataset, float]:
    """Terrain dataset on ``geobox`` and the fraction filled with the sea-level fallback."""
    from l2a.dem import load_dem, terrain

    if dem_source is None:
        return flat_terrain(geobox, sun_zenith, sun_azimuth), 1.0
    try:
        el = load_dem(dem_source, geobox, sea_level_fallback=settings.sea_level_fallback)
    except MissingDataError:
        raise
    except InputError:
        if not settings.sea_level_fallback:
            raise
        # a source that does not intersect the tile at all (e.g. one site DEM for several sites)
        return flat_terrain(geobox, sun_zenith, sun_azimuth), 1.0
    frac = float(el.attrs.get("dem_fallback_fraction", 0.0))
    ter = terrain(el, sun_zenith, sun_azimuth)
    if "dem_fallback" not in ter and "dem_fallback" in el.coords:
        ter["dem_fallback"] = (("y", "x"), np.asarray(el.coords["dem_fallback"].values, bool))
    return ter, frac


class TOARecorder:
    """An L1C product that remembers the TOA datasets its ``toa()`` returned (all else forwarded).

    Given to the correction, it lets the packager derive SAT and EDG from the very dask arrays
    the correction reads (:func:`carried_quality`), so that the bands are decoded once.
    """

    def __init__(self, l1c: Any) -> None:
        self.l1c = l1c
        self.toa_read: list[xr.Dataset] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.l1c, name)

    def toa(self, *args: Any, **kwargs: Any) -> xr.Dataset:
        ds: xr.Dataset = self.l1c.toa(*args, **kwargs)
        self.toa_read.append(ds)
        return ds


def carried_quality(l1c: Any, toa_read: Sequence[xr.Dataset]) -> dict[str, xr.Dataset]:
    """Quality by MUSCATE group (``R1``, ``R2``) from TOA datasets already read (see :class:`TOARecorder`).

    A group is given when one of ``toa_read`` holds all its bands at its nominal resolution and
    :func:`l2a.io.lazy.quality_from_toa` applies; the packager falls back to ``l1c.quality()`` for the others.
    """
    import odc.geo.xr  # noqa: F401

    from l2a.io.lazy import quality_from_toa
    from l2a.io.muscate import GROUPS

    out: dict[str, xr.Dataset] = {}
    for gname, (bands, res) in GROUPS.items():
        for ds in toa_read:
            g = ds.odc.geobox
            if g is None or abs(float(g.resolution.x)) != float(res) or any(b not in ds for b in bands):
                continue
            q = quality_from_toa(ds[list(bands)], l1c)
            if q is not None:
                out[gname] = q
                break
    return out


def _masks_input(l1c: Any, settings: ChainSettings) -> xr.Dataset:
    """TOA for the masks: 10 m for small inputs, else the reduced resolution (bounded memory)."""
    g10 = l1c.geobox(10)
    res = 10.0 if int(g10.shape[0]) * int(g10.shape[1]) <= settings.masks_full_resolution_max_pixels else settings.masks_reduced_resolution_m
    toa = l1c.toa(resolution=res, chunks=None)
    return toa.load()


def _working_geobox(toa: xr.Dataset, settings: MaskSettings) -> GeoBox:
    from l2a.masks import working_factor

    gb: GeoBox = toa.odc.geobox
    factor = working_factor((int(gb.shape[0]), int(gb.shape[1])), float(abs(gb.resolution.x)), settings)
    out: GeoBox = gb.zoom_out(factor) if factor > 1 else gb
    return out


def _scalar_attr(toa: xr.Dataset, name: str, default: float) -> float:
    v = toa.attrs.get(name)
    if v is None:
        return default
    arr = np.asarray(v.values if isinstance(v, xr.DataArray) else v, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else default


def process_date(
    l1c_source: Any,
    *,
    composite_path: str | Path | None,
    dem_source: str | Path | None,
    out_dir: str | Path,
    settings: ChainSettings | None = None,
    composite_dir: str | Path | None = None,
    mode: str = "NOMINAL",
    backward_sources: Sequence[Any] = (),
    hook: Callable[[str], None] | None = None,
) -> DateResult:
    """Process one L1C date of a tile into a MUSCATE L2A product and the updated composite.

    Parameters
    ----------
    l1c_source
        Anything :func:`l2a.io.open_l1c` takes (SAFE folder or zip, STAC item, scene name), or
        an opened :class:`~l2a.io.l1c.L1CProduct`.
    composite_path : path or None
        The tile's composite after the previous date (NOMINAL); ``None`` starts the series
        (INIT, or BACKWARD with ``backward_sources``).
    dem_source : path or None
        DEM (GeoTIFF/VRT/folder of tiles); ``None``: flat terrain at sea level, flagged.
    out_dir : path
        Folder of the L2A products (the product is ``out_dir/<MUSCATE name>``).
    settings : ChainSettings, optional
    composite_dir : path, optional
        Folder of the composites (default: the folder of ``composite_path``'s tile folder, else
        ``out_dir/../composites``).
    mode : {"INIT", "NOMINAL", "BACKWARD"}
        ``INIT`` ignores ``composite_path``. ``BACKWARD`` first builds the composite from
        ``backward_sources`` (the following dates, chronological) processed in reverse order
        (masks only), then processes this date against it.
    backward_sources : sequence
        L1C sources of the dates after this one used by BACKWARD (at most
        ``masks.backward_dates - 1`` are used).
    hook : callable, optional
        Called with a stage name (``"masks"``, ``"correction"``, ``"package"``,
        ``"composite"``) before each step: the production layer's fault injection and
        heartbeat.

    Returns
    -------
    DateResult

    Raises
    ------
    InputError
        Unreadable input, bad composite, unsupported mode.
    MissingDataError
        DEM coverage missing and the sea-level fallback off.
    OSError
        Output folder not writable or full: nothing half-written is left behind.
    """
    import dask

    s = settings or ChainSettings()
    if mode not in MODES:
        raise InputError(str(mode), f"unknown mode; expected one of {', '.join(MODES)}")
    # every chunked computation of this date runs here, on this worker's threads (inside a
    # dask-distributed task, dask would otherwise send them back to the cluster's scheduler)
    with dask.config.set(scheduler="threads", num_workers=max(1, s.threads)):
        return _process(
            l1c_source, composite_path, dem_source, out_dir, s, composite_dir, mode, backward_sources, hook
        )


def _process(
    l1c_source: Any,
    composite_path: str | Path | None,
    dem_source: str | Path | None,
    out_dir: str | Path,
    s: ChainSettings,
    composite_dir: str | Path | None,
    mode: str,
    backward_sources: Sequence[Any],
    hook: Callable[[str], None] | None,
) -> DateResult:
    from l2a.chain.correction import correct
    from l2a.io import open_l1c
    from l2a.io.muscate import write_product
    from l2a.masks import Composite, detect

    timings: dict[str, float] = {}
    notes: list[str] = []

    def step(name: str) -> None:
        if hook is not None:
            hook(name)

    t0 = time.perf_counter()
    l1c = l1c_source if hasattr(l1c_source, "toa") and hasattr(l1c_source, "metadata") else open_l1c(l1c_source)
    md = l1c.metadata
    if not md.tile_id:
        raise InputError(md.source or md.product_id, "tile id unknown: the chain needs the MGRS tile of the product")
    toa = _masks_input(l1c, s)
    timings["open"] = time.perf_counter() - t0

    # --- terrain --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sz = _scalar_attr(toa, "sun_zenith", float(md.mean_sun_zenith))
    sa = _scalar_attr(toa, "sun_azimuth", float(md.mean_sun_azimuth))
    wgb = _working_geobox(toa, s.masks)
    ter_w, _ = _terrain_on(dem_source, wgb, sz, sa, s)
    ter_f, frac = _terrain_on(dem_source, l1c.geobox(s.terrain_resolution_m), sz, sa, s)
    if frac >= 1.0:
        notes.append("no DEM over the tile: flat terrain at sea level (flagged)")
    elif frac > 0:
        notes.append(f"DEM missing over {100 * frac:.1f} % of the tile: sea level there (flagged)")
    timings["terrain"] = time.perf_counter() - t0

    # --- composite and masks --------------------------------------------------------------------
    t0 = time.perf_counter()
    step("masks")
    comp: Composite | None = None
    if mode == "NOMINAL" and composite_path is not None:
        comp = Composite.load(composite_path)
    elif mode == "NOMINAL":
        notes.append("no previous composite: run as INIT")
    if mode == "BACKWARD":
        later = list(backward_sources)[: max(0, s.masks.backward_dates - 1)]
        for src in reversed(later):
            try:
                other = src if hasattr(src, "toa") else open_l1c(src)
                _, comp = detect(_masks_input(other, s), comp, dem=ter_w, settings=s.masks)
            except InputError as exc:  # a bad later date must not stop this one: skip it
                notes.append(f"BACKWARD: skipped {getattr(src, 'name', src)}: {exc.problem}")
        if not later:
            notes.append("BACKWARD without following dates: run as INIT")
    masks, comp_new = detect(toa, comp, dem=ter_w, settings=s.masks)
    run_mode = str(masks.attrs.get("mode", "INIT"))
    if mode == "BACKWARD" and backward_sources and run_mode == "NOMINAL":
        run_mode = "BACKWARD"
    if masks.attrs.get("mode_reason"):
        notes.append(str(masks.attrs["mode_reason"]))
    masks.attrs["mode"] = run_mode
    masks.attrs["tile_id"] = md.tile_id
    cloud_cover = float(masks.attrs.get("cloud_cover", 0.0))
    timings["masks"] = time.perf_counter() - t0

    # --- correction -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    l2a: xr.Dataset | None = None
    quality: dict[str, xr.Dataset] = {}
    final_comp = comp_new
    if cloud_cover > s.max_cloud_cover:
        notes.append(f"cloud cover {cloud_cover:.1f} % above {s.max_cloud_cover:g} %: masks and metadata only")
    else:
        step("correction")
        corr = replace(s.correction, coarse_resolution_m=s.masks.coarse_resolution_m)
        recorder = TOARecorder(l1c)
        l2a, updated = correct(recorder, masks, comp_new, ter_f, corr)
        quality = carried_quality(l1c, recorder.toa_read)
        if updated is not None:
            final_comp = updated
    timings["correction"] = time.perf_counter() - t0

    # --- package ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    step("package")
    pkg = replace(s.package, max_cloud_cover=100.0)  # the limit was applied above
    product = write_product(
        out_dir,
        l1c=l1c,
        masks=masks,
        l2a=l2a,
        settings=pkg,
        quality=quality,
        _hook=(lambda stage, _p: step(f"package:{stage}")) if hook is not None else None,
    )
    timings["package"] = time.perf_counter() - t0

    # --- composite --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    step("composite")
    if composite_dir is None:
        composite_dir = Path(composite_path).parent.parent if composite_path else Path(out_dir).parent / "composites"
    cpath = final_comp.save(composite_file(composite_dir, md.tile_id, md.sensing_time))
    timings["composite"] = time.perf_counter() - t0
    return DateResult(
        product=product,
        composite_path=cpath,
        mode=run_mode,
        cloud_cover=cloud_cover,
        reflectance=product.info.reflectance,
        dem_fallback_fraction=frac,
        timings={k: round(v, 4) for k, v in timings.items()},
        notes=tuple(notes),
    )
