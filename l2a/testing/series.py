"""The real Slovenia summer 2015 series as five SAFE L1C products of tile 33TVL.

Placement
    The source arrays (``slovenia_T33_summer2015``, 101 x 100 px, EPSG:32633, upper-left
    corner (465181.05, 5080254.63), pixels of 9.995 x 9.997 m) are treated as 10 m pixels and
    put on the 10 m lattice of tile 33TVL (:func:`l2a.grid.tile_geobox`): their upper-left
    corner is snapped to the nearest lattice node (a shift of at most 5 m; the 0.05 % pixel
    size difference adds up to 5 cm across the area, i.e. nothing). The product grid is the
    smallest crop of the tile on its **60 m lattice** that holds the data, so that the 20 and
    60 m grids are the tile's own; the margin (at most 5 px each side) is no-data (DN 0).

20 and 60 m bands
    Exact 2 x 2 and 6 x 6 block means of the 10 m reflectance; a 20/60 m pixel is valid only
    when all its 10 m pixels are (a partial block at the data's edge is no-data).

Times, orbit
    Real sensing times from ``manifest.json`` (UTC), platform S2A (the only one flying in
    2015), relative orbit estimated from time and place (:func:`estimate_orbits`: R122).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.errors import MissingDataError
from l2a.paths import sample_data_dir
from l2a.sensors.sentinel2 import BAND_NAMES, BY_NAME
from l2a.testing.safe_writer import (
    GENERATION_DELAY,
    estimate_orbits,
    product_name,
    write_safe_from_reflectance,
)

SLOVENIA_TILE: Final[str] = "33TVL"
#: Lattice (m) the product crop is aligned to (the coarsest native resolution).
CROP_LATTICE_M: Final[int] = 60


def _tile_geobox10(tile_id: str) -> GeoBox:
    from l2a.grid import tile_geobox

    return tile_geobox(tile_id, 10)


def exact_block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Block mean by ``k`` (shape must be a multiple of ``k``); NaN when any pixel is NaN."""
    ny, nx = a.shape
    if ny % k or nx % k:
        raise ValueError(f"shape {a.shape} is not a multiple of {k}")
    return a.reshape(ny // k, k, nx // k, k).astype(np.float64).mean(axis=(1, 3)).astype(np.float32)


def slovenia_on_tile(
    source_dir: Path | None = None,
) -> tuple[GeoBox, list[tuple[datetime, dict[str, np.ndarray]]]]:
    """The Slovenia series placed on tile 33TVL: (10 m crop grid, [(time, reflectance per band)]).

    Reflectance arrays are at each band's native resolution on the crop (NaN = no-data),
    in chronological order.
    """
    folder = source_dir or sample_data_dir() / "slovenia_T33_summer2015"
    cube_path = folder / "L1C_13band_2015summer_5dates.npy"
    if not cube_path.is_file():
        raise MissingDataError(f"{cube_path} not found: set L2A_SAMPLE_DATA to the shared sample data folder")
    manifest = json.loads((folder / "manifest.json").read_text())
    cube = np.load(cube_path)
    ulx0, _, _, uly0, _, _ = manifest["transform_gdal"]
    ny, nx = manifest["shape_hw"]
    tile = _tile_geobox10(SLOVENIA_TILE)
    tx, ty = tile.affine.c, tile.affine.f
    col0 = round((ulx0 - tx) / 10.0)
    row0 = round((ty - uly0) / 10.0)
    step = CROP_LATTICE_M // 10
    c_lo, r_lo = (col0 // step) * step, (row0 // step) * step
    c_hi, r_hi = math.ceil((col0 + nx) / step) * step, math.ceil((row0 + ny) / step) * step
    gbox = GeoBox((r_hi - r_lo, c_hi - c_lo), Affine(10.0, 0.0, tx + 10.0 * c_lo, 0.0, -10.0, ty - 10.0 * r_lo), tile.crs)
    order = sorted(manifest["scenes"]["L1C_13band_2015summer_5dates"], key=lambda s: s["date"])
    series = []
    for entry in order:
        when = datetime.fromisoformat(entry["date"]).replace(tzinfo=UTC)
        bands: dict[str, np.ndarray] = {}
        for i, name in enumerate(BAND_NAMES):
            full = np.full(gbox.shape, np.nan, dtype=np.float32)
            full[row0 - r_lo : row0 - r_lo + ny, col0 - c_lo : col0 - c_lo + nx] = cube[entry["index_in_file"], :, :, i]
            k = BY_NAME[name].resolution // 10
            bands[name] = full if k == 1 else exact_block_mean(full, k)
        series.append((when, bands))
    return gbox, series


def slovenia_safe_series(
    out_dir: str | Path, baseline: str = "05.10", *, overwrite: bool = False
) -> list[Path]:
    """Write (or reuse) the five Slovenia SAFE products under ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder for the ``.SAFE`` products.
    baseline
        Processing baseline to write (``"05.10"``: DN with the -1000 offset; ``"02.06"``: none).
    overwrite
        Rewrite products that exist already (default: reuse them).

    Returns
    -------
    list of Path
        The five products, chronological.
    """
    out = Path(out_dir)
    gbox, series = slovenia_on_tile()
    tr = gbox.affine
    from pyproj import Transformer

    _, clat = Transformer.from_crs(str(gbox.crs), "EPSG:4326", always_xy=True).transform(
        tr.c + gbox.shape[1] * 5.0, tr.f - gbox.shape[0] * 5.0
    )
    paths = []
    for when, refl in series:
        rel, _ = estimate_orbits(when, clat, "S2A")
        name = product_name("S2A", when, baseline, rel, SLOVENIA_TILE, when + GENERATION_DELAY)
        existing = out / f"{name}.SAFE"
        if existing.is_dir() and not overwrite:
            paths.append(existing)
            continue
        paths.append(
            write_safe_from_reflectance(
                out, refl, gbox, when, tile_id=SLOVENIA_TILE, baseline=baseline, platform="S2A", overwrite=overwrite,
            )
        )
    return paths

