"""Time and peak memory of reading one full-size 10 m band (10980 x 10980) at 10 m and 240 m.

The first run writes (once) a SAFE product with one lossless JPEG2000 band B04 into the
git-ignored ``benchmarks/_data/``: real reflectance texture (the 13 bands of the
``s2cloudless_betsiboka`` scene, 856 x 512 px each, mirrored and shifted tile by tile so that
neighbouring blocks differ) turned into N05.10 DN, written by
:func:`l2a.testing.safe_writer.write_safe` (genuine names and metadata, 1024 px JPEG2000 tiles,
6 resolution levels). Each measurement then runs in a fresh subprocess through the reader
(``open_safe(...).toa(["B04"], res).compute()``, dask synchronous scheduler, so GDAL uses all cores
unless ``GDAL_NUM_THREADS`` says otherwise) and reports wall time, the Python/numpy peak
(``tracemalloc``) and the growth of the process's peak resident memory (``ru_maxrss``), which
also counts GDAL/OpenJPEG's own buffers.

Usage::

    .venv/bin/python benchmarks/read_band.py            # write if needed, then measure 10 m and 240 m
    .venv/bin/python benchmarks/read_band.py --res 240  # one resolution
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
SIZE = 10_980


def build_band() -> np.ndarray:
    """A 10980 x 10980 uint16 DN mosaic of real reflectance texture (N05.10 offset applied)."""
    from l2a.io.scenes import open_scene

    scene = open_scene("betsiboka").toa(resolution=10, chunks=None)
    tiles = [np.nan_to_num(scene[b].values, nan=0.0) for b in scene.data_vars]
    th, tw = tiles[0].shape
    out = np.empty((SIZE, SIZE), dtype=np.uint16)
    k = 0
    for r in range(0, SIZE, th):
        for c in range(0, SIZE, tw):
            t = tiles[k % len(tiles)]
            if (r // th) % 2:
                t = t[::-1]
            if (c // tw) % 2:
                t = t[:, ::-1]
            t = np.roll(t, (k * 37) % th, axis=0)
            h, w = min(th, SIZE - r), min(tw, SIZE - c)
            out[r : r + h, c : c + w] = np.clip(np.rint(t[:h, :w] * 10000 + 1000), 1, 65534)
            k += 1
    return out


def ensure_product() -> Path:
    """The benchmark SAFE (written on first use)."""
    existing = sorted(DATA.glob("*.SAFE"))
    if existing:
        return existing[0]
    from l2a.grid import tile_geobox
    from l2a.testing.safe_writer import Jp2Settings, write_safe

    DATA.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dn = build_band()
    t1 = time.perf_counter()
    path = write_safe(
        DATA, {"B04": dn}, tile_geobox("31TCJ", 10), datetime(2024, 1, 20, 10, 58, 50, tzinfo=UTC),
        tile_id="31TCJ", jp2=Jp2Settings(threads=2),
    )
    t2 = time.perf_counter()
    size = next(path.glob("GRANULE/*/IMG_DATA/*_B04.jp2")).stat().st_size
    print(f"wrote {path.name}: mosaic {t1 - t0:.1f} s, JPEG2000 + metadata {t2 - t1:.1f} s, "
          f"B04.jp2 {size / 1e6:.1f} MB ({size * 8 / SIZE**2:.2f} bit/px, lossless)")
    return path


def _proc_status(key: str) -> float:
    """``VmRSS``/``VmHWM`` of this process (MB, Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(path: Path, res: int) -> dict[str, float]:
    """Read B04 at ``res`` through the reader (run in a fresh process)."""
    import tracemalloc

    import dask

    from l2a.io.safe import open_safe

    p = open_safe(path)
    _ = p.metadata
    rss0 = _proc_status("VmRSS")
    hwm0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        ds = p.toa(["B04"], res)
        arr = ds["B04"].values
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "resolution_m": res,
        "shape": list(arr.shape),
        "valid_fraction": float(np.isfinite(arr).mean()),
        "mean": float(np.nanmean(arr)),
        "seconds": dt,
        "tracemalloc_peak_mb": peak / 1e6,
        "rss_before_mb": rss0,
        "peak_rss_mb": hwm1,
        "peak_rss_before_mb": hwm0,
        "maxrss_growth_mb": hwm1 - rss0,
        "result_mb": arr.nbytes / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, action="append", help="resolution(s) to read (default 10 and 240)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(ensure_product(), args.child)))
        return
    ensure_product()
    for res in args.res or [10, 240]:
        out = subprocess.run([sys.executable, __file__, "--child", str(res)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"read B04 at {res:>4} m -> {r['shape'][0]} x {r['shape'][1]}: {r['seconds']:.2f} s, "
              f"tracemalloc peak {r['tracemalloc_peak_mb']:.0f} MB, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(+{r['maxrss_growth_mb']:.0f} MB over {r['rss_before_mb']:.0f} MB before the read; result {r['result_mb']:.0f} MB) "
              f"(valid {r['valid_fraction']:.3f}, mean reflectance {r['mean']:.4f})")


if __name__ == "__main__":
    main()
