"""Ingest + registration of N inbox products (target: 1,000 in well under 30 s with planning).

Products: small SAFE zips with genuine names and metadata (re-stamped copies of a real SAFE
written by the SAFE writer: tiles 33TVL/33TWL/33TVM, platforms S2A/S2B, a date every
5 days), dropped into a fresh inbox; a fresh SQLite status database.

Measured, separately:
- ``list``: one look at the inbox (stat of every entry);
- ``ingest``: :meth:`Ingestor.scan_inbox` as ``l2a ingest`` runs it (products older than the
  settle age are complete at the first look, as after a restart; ``--fresh`` makes them new
  so that the two-look wait of ``stable_interval_s`` is included), validation tier
  ``--tier`` (default ``light``), registration in the database;
- ``rescan``: a second scan (everything known: the database answers, nothing reopened);
- ``plan (proxy)``: when ``l2a.production.planner`` is absent, one queued job per product in
  tile/date order through :meth:`Database.enqueue_job` (the database work a planner does).

Run: ``.venv/bin/python benchmarks/ingest.py [-n 1000] [--tier light] [--fresh]``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="products (default 1000)")
    ap.add_argument("--tier", default="light", choices=["name", "light", "full"])
    ap.add_argument("--fresh", action="store_true", help="products just written (two looks)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("rasterio").setLevel(logging.ERROR)

    from servers import clone_safe_zip

    from l2a.config import Settings, Site
    from l2a.production.db import Database
    from l2a.production.inbox import InboxSettings, list_entries
    from l2a.production.ingest import Ingestor, IngestSettings
    from l2a.production.models import JobMode, ProductState

    with tempfile.TemporaryDirectory(prefix="l2a-bench-ingest-") as tmp:
        root = Path(tmp)
        inbox = root / "inbox"
        inbox.mkdir()
        tiles = ["33TVL", "33TWL", "33TVM"]
        t0 = time.perf_counter()
        start = datetime(2017, 1, 1, 10, 0, 8, tzinfo=UTC)
        old = time.time() - 3600
        for i in range(args.n):
            tile = tiles[i % len(tiles)]
            when = start + timedelta(days=5 * (i // len(tiles)), seconds=i % 7)
            z = clone_safe_zip(inbox, when, tile=tile, platform="S2A" if i % 2 else "S2B")
            if not args.fresh:
                os.utime(z, (old, old))
        t_make = time.perf_counter() - t0
        settings = Settings(
            workdir=root,
            inbox=inbox,
            sites=[Site(name="bench", tiles=tiles)],
        )
        db = Database(f"sqlite:///{root / 'l2a.db'}")
        db.upgrade()
        opts = IngestSettings(validation=args.tier, inbox=InboxSettings(stable_interval_s=1.0))
        ing = Ingestor(settings, db, ingest=opts)

        t0 = time.perf_counter()
        entries, _ = list_entries(inbox)
        t_list = time.perf_counter() - t0

        t0 = time.perf_counter()
        report = ing.scan_inbox()
        t_ingest = time.perf_counter() - t0

        t0 = time.perf_counter()
        again = ing.scan_inbox()
        t_rescan = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            from l2a.production.planner import plan
        except ImportError:
            for p in db.find_products(state=ProductState.DISCOVERED):
                db.enqueue_job(p.id, JobMode.NOMINAL)
            plan_note = "proxy: one enqueue_job per product"
        else:
            result = plan(db)
            plan_note = f"l2a.production.planner.plan: {result.n_jobs} jobs"
        t_plan = time.perf_counter() - t0
        n_reg = len(report.registered)
        print(f"products written: {args.n} in {t_make:.1f} s (not counted)")
        print(f"list inbox ({len(entries)} entries): {t_list:.2f} s")
        print(
            f"ingest tier={args.tier} fresh={args.fresh}: {t_ingest:.2f} s "
            f"({1000 * t_ingest / max(args.n, 1):.1f} ms/product); {report.summary()}"
        )
        print(f"rescan (all known): {t_rescan:.2f} s; {again.summary()}")
        print(f"plan ({plan_note}): {t_plan:.2f} s")
        print(f"ingest + plan: {t_ingest + t_plan:.2f} s for {n_reg} registered products")
        db.dispose()


if __name__ == "__main__":
    main()
