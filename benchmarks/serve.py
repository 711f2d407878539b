"""``l2a serve`` over a catalog of N products (default 1,000): index load and request latencies.

Products: one real product written by :func:`l2a.io.muscate.write_product` (the small
synthetic inputs of the tests) and its item from :func:`make_item` (34 assets, like a real
product), cloned N times (tiles 31TCJ/33TVM/38KQE, a date every day, cloud cover 0-99 %) with
hard links for the files, published with :class:`StaticCatalog`; SQLite status database.

Measured (median of ``--repeat`` requests, one client thread, server in-process):
- ``index load``: first read of the catalog (catalog, collection, N item JSON files);
- ``refresh (no change)``: the per-request check that the catalog did not change;
- ``reload after one publication``: the next request after a product was published;
- ``search POST``: tile + date range + cloud cover, limit 10 (pystac-client's default form);
- ``search page 100``: GET /search?limit=100 (an unfiltered page of 100 items);
- ``all pages``: pystac-client walking every item 100 per page;
- ``resto``: search.json with tileid, dates, cloudCover, maxRecords=500;
- ``asset GET``: a 10 m mask COG with its download recorded in the database;
- ``zip first`` / ``zip cached``: /download/{item} made on the fly, then from the cache.

Run: ``.venv/bin/python benchmarks/serve.py [-n 1000] [--repeat 30]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        data: bytes = r.read()
        return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="products (default 1000)")
    ap.add_argument("--repeat", type=int, default=30, help="requests per latency figure")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import pystac
    import pystac_client
    from test_muscate import FAST, make_inputs

    from l2a.catalog.server import CatalogIndex, ServerThread, ServeSettings
    from l2a.catalog.stac_item import make_item
    from l2a.catalog.static import StaticCatalog
    from l2a.io.muscate import product_name, write_product

    tiles = {"31TCJ": (0.5, 43.2, 1.9, 44.2), "33TVM": (14.0, 45.9, 15.4, 46.9), "38KQE": (46.0, -16.3, 47.0, -15.3)}
    with tempfile.TemporaryDirectory(prefix="l2a-bench-serve-") as tmp:
        root = Path(tmp)
        products, catalog = root / "products", root / "catalog"
        t0 = time.perf_counter()
        template = write_product(root / "template", **make_inputs(), settings=FAST)
        base = make_item(template).to_dict(transform_hrefs=False)
        src = template.path
        files = [p for p in src.rglob("*") if p.is_file()]
        start = datetime(2023, 1, 1, 10, 30, tzinfo=UTC)
        cat = StaticCatalog(catalog)
        for i in range(args.n):
            tile = list(tiles)[i % 3]
            t = start + timedelta(days=i // 3)
            name = product_name("S2A" if i % 2 else "S2B", t, tile)
            dst = products / name
            for f in files:
                rel = f.relative_to(src).as_posix().replace(template.name, name)
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dst / rel)
            d = json.loads(json.dumps(base).replace(template.name, name).replace(str(root / "template"), str(products)))
            x0, y0, x1, y1 = tiles[tile]
            d["geometry"] = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
            d["bbox"] = [x0, y0, x1, y1]
            d["properties"]["datetime"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
            d["properties"]["grid:code"] = f"MGRS-{tile}"
            d["properties"]["eo:cloud_cover"] = float((i * 37) % 100)
            cat.add_item(pystac.Item.from_dict(d))
        print(f"setup: {args.n} products published in {time.perf_counter() - t0:.1f} s")

        idx = CatalogIndex(catalog, products)
        t = time.perf_counter()
        if os.environ.get("L2A_BENCH_PROFILE"):
            import cProfile

            cProfile.runctx("idx.refresh()", globals(), locals(), sort="cumtime")
        else:
            idx.refresh()
        print(f"index load ({len(idx.entries)} items): {1000 * (time.perf_counter() - t):.0f} ms")
        print(f"refresh (no change): {_median_ms(idx.refresh, 200):.3f} ms")
        extra = pystac.Item.from_dict(json.loads(json.dumps(d).replace(name, name.replace("_V1-0", "_V1-1"))))
        cat.add_item(extra)
        t = time.perf_counter()
        idx.refresh()
        print(f"reload after one publication ({len(idx.entries)} items): {1000 * (time.perf_counter() - t):.0f} ms")
        cat.remove_item(extra.id)

        settings = ServeSettings(catalog, products, f"sqlite:///{root / 'l2a.db'}", root / "cache")
        with ServerThread(settings) as srv:
            client = pystac_client.Client.open(srv.url)

            def search() -> object:
                return list(client.search(
                    query={"grid:code": {"eq": "MGRS-31TCJ"}, "eo:cloud_cover": {"lt": 30}},
                    datetime="2023-03-01/2023-06-30", limit=10, max_items=10,
                ).items())

            print(f"search POST (tile+dates+cloud, 10 items): {_median_ms(search, args.repeat):.1f} ms")
            print(f"search page 100 (GET): {_median_ms(lambda: _get(f'{srv.url}/search?limit=100'), args.repeat):.1f} ms")
            t = time.perf_counter()
            n = sum(1 for _ in client.search(limit=100).items())
            print(f"all pages ({n} items, 100 per page): {time.perf_counter() - t:.2f} s")
            resto = (f"{srv.url}/resto/api/collections/SENTINEL2/search.json?tileid=33TVM"
                     "&startDate=2023-01-01&completionDate=2023-12-31&cloudCover=[0,50]&maxRecords=500")
            print(f"resto (tile+dates+cloud, maxRecords=500): {_median_ms(lambda: _get(resto), args.repeat):.1f} ms")
            item = next(iter(client.search(max_items=1).items()))
            href = item.assets["clm"].href
            size = len(_get(href))
            print(f"asset GET + record ({size} bytes): {_median_ms(lambda: _get(href), args.repeat):.1f} ms")
            t = time.perf_counter()
            z = len(_get(f"{srv.url}/download/{item.id}"))
            print(f"zip first ({z / 1e6:.1f} MB, made on the fly): {1000 * (time.perf_counter() - t):.0f} ms")
            print(f"zip cached: {_median_ms(lambda: _get(f'{srv.url}/download/{item.id}'), 5):.0f} ms")


if __name__ == "__main__":
    main()
