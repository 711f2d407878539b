"""Time ``l2a dem prepare`` on a full tile and the terrain flags on its grids.

Run from the repository root::

    .venv/bin/python benchmarks/dem_prepare.py [--tile T32NKF] [--out benchmarks/_data/dem]

The source is the real Copernicus GLO-30 COG of São Tomé from the sample data; tile 32NKF
holds the island (6.5 E 0.3 N) and reaches past the COG (east of 7 E, south of the equator),
so the sea-level fallback is on. Prints the wall and CPU time of each resolution (10 m:
10980 x 10980, 20 m: 5490 x 5490, 240 m: 458 x 458), the peak memory of the process, and the
time of :func:`l2a.kernels.terrain.terrain_flags` (slope, aspect, SHD, HID, STL, TGS,
sky-view) on the 240 m and 20 m elevation.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import rasterio

from l2a.dem import prepare_tile
from l2a.kernels.terrain import TerrainSettings, terrain_flags
from l2a.paths import sample_data_dir

COP = "riotilerpds_fixtures/copernicus_dem/Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", default="T32NKF")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/_data/dem"))
    args = parser.parse_args()
    source = sample_data_dir() / COP
    print(f"source {source}\ntile {args.tile} -> {args.out}")
    for res in (240, 20, 10):
        wall, cpu = time.perf_counter(), time.process_time()
        prepare_tile(args.tile, source, args.out, sea_level_fallback=True, resolutions=[res])
        print(
            f"prepare {res:>4} m: wall {time.perf_counter() - wall:6.1f} s, "
            f"cpu {time.process_time() - cpu:6.1f} s, peak RSS so far {_peak_mb():6.0f} MB"
        )
    for res in (240, 20):
        with rasterio.open(args.out / f"elevation_{res}m.tif") as ds:
            z = ds.read(1)
        for method in ("slope", "horizon") if res == 240 else ("slope",):
            wall = time.perf_counter()
            out = terrain_flags(
                z, res, res, 60.0, 135.0, 5.0, 100.0, TerrainSettings(sky_view_method=method)
            )
            shd = float(np.mean(out["cast_shadow"]))
            print(
                f"terrain_flags {res:>4} m ({z.shape[0]} px, sky view {method}): "
                f"{time.perf_counter() - wall:6.2f} s, SHD fraction {shd:.4f}"
            )
    print(f"peak RSS {_peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
