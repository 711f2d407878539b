"""``l2a demo``: the README's main job, end to end on the real sample data.

:func:`run_demo` lays out a demo site in a working folder (default: ``~/.cache/l2a/demo``,
``$XDG_CACHE_HOME`` honoured)::

    DIR/inbox/      the Slovenia summer 2015 series as five SAFE products (tile 33TVL,
                    :func:`l2a.testing.series.slovenia_safe_series`), the two Toulouse SAFE
                    products of the sample data (symlinked; 30 x 30 px crops of 31TCJ), and a
                    crop of the Betsiboka scene written as a SAFE (:func:`betsiboka_safe`)
    DIR/products/   the MUSCATE L2A products
    DIR/catalog/    the static STAC catalog (catalog.json at its root)
    DIR/composites/ the per-tile composites
    DIR/l2a.db      the status database (SQLite)
    DIR/site.toml   the configuration it used (the format of ``l2a init``)

then runs the production chain on the embedded defaults (a LocalCluster, SQLite, the static
catalog): ingest, plan, process, package, publish; and prints a summary table and where
everything is. Afterwards ``l2a run --config DIR/site.toml`` processes anything else dropped
into ``DIR/inbox/``; ``l2a status --config DIR/site.toml`` shows the state. Running the demo
again on the same folder does no work twice (the inputs are reused, the status database
knows what is done).

Without the sample data it prints where to get data (:data:`WHERE_TO_GET_DATA`) and returns.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
from rich.console import Console, Group
from rich.table import Table

from l2a.paths import sample_data_dir

#: Shown when the sample data are absent: a query that finds real L1C products.
WHERE_TO_GET_DATA = """\
No sample data found at {root}.
Point L2A_SAMPLE_DATA at a folder of Sentinel-2 L1C SAFE products, or fetch some with a
STAC API query, for example (Earth Search, public, no account):

  python -m pip install pystac-client
  stac-client search https://earth-search.aws.element84.com/v1 -c sentinel-2-l1c \\
      --query "grid:code=MGRS-31TCJ" --datetime 2024-01-01/2024-03-31 --max-items 5
"""

#: The two Toulouse SAFE products of the sample data (relative to the sample data folder).
TOULOUSE_SAFE: Final[str] = "alcd_toulouse_T31TCJ/safe"
#: DEM of the Slovenia crop (the only DEM of the sample data over a demo tile).
SLOVENIA_DEM: Final[str] = "slovenia_T33_summer2015/DEM.tif"
#: Crop of the Betsiboka scene written as a SAFE: (first row, first column, rows, columns) in
#: scene pixels (about 73 m): the river mouth, its delta and small cumulus clouds.
BETSIBOKA_CROP: Final[tuple[int, int, int, int]] = (300, 200, 128, 128)
#: Lattice (m) the Betsiboka crop is aligned to (so that its 20 and 60 m grids are the tile's).
_LATTICE_M: Final[int] = 60

SITE_TOML = """\
# Demo site written by `l2a demo` (format of `l2a init`; see `l2a init SITE_DIR` for every
# setting with its documentation). Drop more L1C products into inbox/ and run:
#   l2a run --config {config}
#   l2a status --config {config}
workdir = "."
inbox = "inbox"
products = "products"
catalog = "catalog"
composites = "composites"
database_url = "sqlite:///l2a.db"

[[sites]]
name = "slovenia"
tiles = ["33TVL"]

[[sites]]
name = "toulouse"
tiles = ["31TCJ"]

[[sites]]
name = "betsiboka"
tiles = ["{betsiboka_tile}"]

[cluster]
kind = "local"
n_workers = {n_workers}
threads_per_worker = 1
dashboard_address = ":8787"

[processing]
reinit_gap_days = 45
backward_dates = 8
max_cloud_cover = 90.0
retry_backoff_s = 5.0

[dem]
source = "{dem}"
sea_level_fallback = true   # the DEM covers Slovenia only: sea level (flagged) elsewhere
"""


def default_workdir() -> Path:
    """``$XDG_CACHE_HOME/l2a/demo`` (``~/.cache/l2a/demo``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "l2a" / "demo"


def sample_products(root: Path) -> Iterator[str]:
    """Every sample L1C source under ``root``: SAFE products, then array scenes."""
    for mtd in sorted(root.glob("**/MTD_MSIL1C.xml")):
        safe = mtd.parent
        if (safe / "GRANULE").is_dir() and any((safe / "GRANULE").glob("*/MTD_TL.xml")):
            yield str(safe)
    from l2a.io.scenes import list_scenes

    for name in list_scenes():
        yield f"scene:{name}"


def betsiboka_safe(out_dir: str | Path, crop: tuple[int, int, int, int] = BETSIBOKA_CROP) -> Path:
    """A crop of the Betsiboka scene as an L1C SAFE product on tile 38LPH (reused if present).

    The scene (:func:`l2a.io.scenes.open_scene` ``"betsiboka"``: reflectance at about 73 m on a
    UTM 38S grid, nominal date 2017-12-15) is cropped to ``crop`` (scene rows/columns), the
    crop's bounds snapped outwards to the tile's 60 m lattice, and every band put on its native
    10/20/60 m grid by nearest neighbour (each scene pixel becomes a block of about 7 x 7 pixels
    at 10 m: no detail is invented). Baseline 02.06 (no radiometric offset, as in 2017).
    """
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from l2a.grid import tile_geobox
    from l2a.io.scenes import BETSIBOKA, betsiboka_geoboxes, open_scene
    from l2a.sensors.sentinel2 import BAND_NAMES, BY_NAME
    from l2a.testing.safe_writer import band_geobox, write_safe_from_reflectance

    out = Path(out_dir)
    scene = open_scene("betsiboka")
    md = scene.metadata
    existing = sorted(out.glob(f"S2A_MSIL1C_{md.sensing_time:%Y%m%d}*_T{md.tile_id}_*.SAFE"))
    if existing:
        return existing[0]
    utm, _ = betsiboka_geoboxes(BETSIBOKA)
    toa = scene.toa(chunks=None)
    r0, c0, h, w = crop
    a = utm.affine
    x0, y0 = a * (c0, r0)
    x1, y1 = a * (c0 + w, r0 + h)
    tile = tile_geobox(md.tile_id, 10)
    tx, ty = tile.affine.c, tile.affine.f
    step = _LATTICE_M // 10
    col_lo = math.floor((x0 - tx) / _LATTICE_M) * step
    row_lo = math.floor((ty - y0) / _LATTICE_M) * step
    col_hi = math.ceil((x1 - tx) / _LATTICE_M) * step
    row_hi = math.ceil((ty - y1) / _LATTICE_M) * step
    g10 = GeoBox((row_hi - row_lo, col_hi - col_lo), Affine(10.0, 0.0, tx + 10.0 * col_lo, 0.0, -10.0, ty - 10.0 * row_lo), tile.crs)
    inv = ~a
    refl: dict[str, np.ndarray] = {}
    for name in BAND_NAMES:
        gb = band_geobox(g10, BY_NAME[name].resolution)
        t = gb.affine
        xs = t.c + t.a * (np.arange(gb.shape[1]) + 0.5)
        ys = t.f + t.e * (np.arange(gb.shape[0]) + 0.5)
        cols = np.floor(inv.a * xs + inv.c).astype(np.int64)
        rows = np.floor(inv.e * ys + inv.f).astype(np.int64)
        src = np.asarray(toa[name].values, dtype=np.float32)
        ok_r = (rows >= 0) & (rows < src.shape[0])
        ok_c = (cols >= 0) & (cols < src.shape[1])
        vals = src[np.ix_(np.clip(rows, 0, src.shape[0] - 1), np.clip(cols, 0, src.shape[1] - 1))]
        vals[~ok_r, :] = np.nan
        vals[:, ~ok_c] = np.nan
        refl[name] = vals
    return write_safe_from_reflectance(
        out, refl, g10, md.sensing_time, tile_id=md.tile_id, baseline="02.06", platform=md.platform
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    import shutil

    if dst.exists() or dst.is_symlink():
        return
    try:
        dst.symlink_to(src, target_is_directory=True)
    except OSError:
        shutil.copytree(src, dst)


def prepare_site(workdir: Path, root: Path, *, n_workers: int = 2) -> Path:
    """Lay out the demo site in ``workdir`` (idempotent); returns ``site.toml``."""
    from l2a.io.scenes import open_scene
    from l2a.testing.series import slovenia_safe_series

    inbox = workdir / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    slovenia_safe_series(inbox)
    for safe in sorted((root / TOULOUSE_SAFE).glob("*.SAFE")):
        _link_or_copy(safe, inbox / safe.name)
    betsiboka_safe(inbox)
    config = workdir / "site.toml"
    text = SITE_TOML.format(
        config=config,
        betsiboka_tile=open_scene("betsiboka").metadata.tile_id,
        n_workers=n_workers,
        dem=root / SLOVENIA_DEM,
    )
    if not config.is_file() or config.read_text(encoding="utf-8") != text:
        tmp = config.with_name(".site.toml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(config)
    return config


def summary_table(config: Path) -> Group:
    """One row per input product: tile, date, state, mode, cloud cover, reflectance, output."""
    import json

    from sqlalchemy import select

    from l2a.config import load_config
    from l2a.production.db import Database
    from l2a.production.models import Job, JobState, Product, PublishedItem

    settings = load_config(config)
    db = Database(settings.db_url)
    notes: list[str] = []
    table = Table(title="demo products", padding=(0, 1))
    for col in ("site", "tile", "date", "state", "mode", "cloud%", "SRE"):
        table.add_column(col, no_wrap=True)
    # product folder names (~50 characters) go in the caption-like list below the table
    table.add_column("#", justify="right", no_wrap=True)
    with db.session(readonly=True) as s:
        products = list(s.scalars(select(Product).order_by(Product.tile, Product.sensing_time)))
        for p in products:
            job = s.scalar(select(Job).where(Job.product_id == p.id, Job.state == JobState.DONE).order_by(Job.id.desc()).limit(1))
            item = s.scalar(select(PublishedItem).where(PublishedItem.product_id == p.id).order_by(PublishedItem.id.desc()).limit(1))
            cloud, refl = "", ""
            if item is not None and Path(item.href).is_file():
                props = json.loads(Path(item.href).read_text(encoding="utf-8")).get("properties", {})
                cloud = f"{props.get('eo:cloud_cover', float('nan')):.0f}"
                refl = "yes" if props.get("l2a:reflectance", True) else "no"
            out = Path(job.output_path).name if job is not None and job.output_path else (p.error or "")
            notes.append(out)
            table.add_row(
                p.site.name if p.site else "-", p.tile, f"{p.sensing_time:%Y-%m-%d}", p.state.value,
                job.mode.value if job is not None else "", cloud, refl, str(len(notes)),
            )
    db.dispose()
    return Group(table, *(f"{i:>3}. {note}" for i, note in enumerate(notes, 1)))


def run_demo(
    workdir: Path | None = None,
    console: Console | None = None,
    *,
    progress: bool = True,
    processes: bool = True,
) -> int:
    """Set up the demo site over the sample data, process everything, print where it all is.

    Parameters
    ----------
    workdir : Path, optional
        Demo folder (default :func:`default_workdir`).
    console : Console, optional
    progress : bool
        Show the progress bar.
    processes : bool
        Worker processes (default) or threads for the local cluster.

    Returns
    -------
    int
        Exit code: 0 when every product is done (or without sample data), else that of
        :func:`l2a.production.commands.run`.
    """
    from l2a.production import commands

    console = console or Console()
    root = sample_data_dir()
    if not (root / "slovenia_T33_summer2015").is_dir():
        console.print(WHERE_TO_GET_DATA.format(root=root))
        return 0
    t0 = time.perf_counter()
    workdir = (workdir or default_workdir()).expanduser().resolve()
    console.print(f"demo site: {workdir}")
    config = prepare_site(workdir, root, n_workers=min(2, os.cpu_count() or 1))
    code = commands.run(config, console=console, progress=progress, processes=processes, command="demo")
    console.print(summary_table(config))
    console.print(
        f"products : {workdir / 'products'}\n"
        f"catalog  : {workdir / 'catalog' / 'catalog.json'}\n"
        f"database : {workdir / 'l2a.db'}\n"
        f"config   : {config}\n"
        f"status   : l2a status --config {config}\n"
        f"dashboard: l2a dashboard --config {config}\n"
        f"more data: drop L1C SAFE folders or zips into {workdir / 'inbox'} and run "
        f"`l2a run --config {config}`\n"
        f"demo time: {time.perf_counter() - t0:.1f} s"
    )
    return code
