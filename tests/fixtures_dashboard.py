"""Fill a status database and a static STAC catalog with realistic records (dashboard tests).

Two builders:

- :func:`small_site` writes a few products per site as real files (COG reflectances with
  overviews, CLM/MG2 masks, ATB, a quicklook JPEG with mask outlines drawn by
  :mod:`l2a.masks.quicklook`), their STAC items in a :class:`~l2a.catalog.static.StaticCatalog`,
  and the matching database rows (products, jobs with timings, a failure, a running job,
  published items, downloads), plus a ``site.toml``;
- :func:`large_database` bulk-inserts ``n`` products with jobs, published items and downloads,
  and writes one small item JSON per product straight into the catalog layout (for the
  response-time test).

Covers follow a seasonal cycle (snow in winter, more cloud in spring) with noise, so the
statistics have a shape a reader can check by eye.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from sqlalchemy import insert

from l2a.catalog.stac_item import COLLECTION_ID, EXTENSIONS
from l2a.catalog.static import StaticCatalog
from l2a.masks.quicklook import quicklook
from l2a.production.db import Database
from l2a.production.models import (
    Download,
    Job,
    JobMode,
    JobState,
    Product,
    ProductState,
    PublishedItem,
    Site,
)

#: Sites of the fixture: name -> (tile, EPSG, upper-left x, upper-left y).
SITES: dict[str, tuple[str, int, float, float]] = {
    "toulouse": ("31TCJ", 32631, 300000.0, 4900020.0),
    "slovenia": ("33TVL", 32633, 465180.0, 5080260.0),
}
BANDS = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8"}
USERS = ("alice", "bob", "carol", "dave")


@dataclass(frozen=True)
class SmallSite:
    """What :func:`small_site` wrote."""

    config: Path
    db_url: str
    catalog: Path
    products: Path
    item_ids: dict[str, list[str]]  #: site -> item ids, oldest first


def _covers(when: datetime, rng: np.random.Generator) -> dict[str, float]:
    doy = when.timetuple().tm_yday
    winter = 0.5 * (1 + np.cos(2 * np.pi * doy / 365.25))  # 1 in January, 0 in July
    cloud = float(np.clip(rng.gamma(0.7, 25.0) + 15 * winter, 0, 100))
    return {
        "cloud": round(cloud, 2),
        "cloud_shadow": round(min(cloud * rng.uniform(0.1, 0.3), 100 - cloud), 2),
        "snow": round(float(np.clip(25 * winter ** 2 + rng.normal(0, 2), 0, 100)), 2),
        "water": round(float(np.clip(rng.normal(3.0, 0.5), 0, 100)), 2),
    }


def _cog(path: Path, data: np.ndarray, transform: Any, epsg: int, nodata: float | None,
         resampling: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 1 if data.ndim == 2 else data.shape[0]
    arr = data[None] if data.ndim == 2 else data
    with rasterio.open(path, "w", driver="COG", width=arr.shape[2], height=arr.shape[1],
                       count=count, dtype=arr.dtype, crs=f"EPSG:{epsg}", transform=transform,
                       nodata=nodata, blocksize=128, compress="DEFLATE",
                       overview_resampling=resampling) as dst:
        dst.write(arr)


def _scene(rng: np.random.Generator, size: int, covers: dict[str, float]) -> dict[str, np.ndarray]:
    """Smooth land reflectance, a lake, and cloud/shadow/snow blobs with roughly the covers."""
    from scipy import ndimage as ndi

    y, x = np.mgrid[0:size, 0:size] / size
    fields = ndi.gaussian_filter(rng.standard_normal((size, size)), 3)
    land = 0.09 + 0.03 * np.sin(6 * x) * np.cos(4 * y) + 0.15 * fields
    water = (x - 0.7) ** 2 + (y - 0.3) ** 2 < covers["water"] / 100 / np.pi

    def blob(frac: float, smooth: float) -> np.ndarray:
        f = ndi.gaussian_filter(rng.standard_normal((size, size)), smooth)
        return f > np.quantile(f, 1 - frac / 100) if frac > 0 else np.zeros_like(f, bool)

    cloud = blob(covers["cloud"], 8)
    shadow = np.roll(cloud, (6, 10), axis=(0, 1)) & ~cloud if covers["cloud_shadow"] > 0 else np.zeros_like(cloud)
    snow = blob(covers["snow"], 12) & (y < 0.5) & ~cloud
    veg = np.clip(0.5 + 4 * fields, 0, 1)  # vegetation fraction
    refl = {"blue": land * 0.7, "green": land * (0.9 + 0.2 * veg), "red": land * (1.1 - 0.5 * veg)}
    refl["nir"] = land * (1.5 + 2.5 * veg)
    for b in refl:
        r = refl[b]
        r[water] = 0.02 if b != "nir" else 0.01
        r[snow] = 0.8
        r[cloud] = 0.45 + 0.1 * np.clip(fields[cloud] * 5 + 0.5, 0, 1)
        r[shadow] *= 0.4
    return {**refl, "cloud": cloud, "shadow": shadow, "snow": snow, "water": water}


def write_product(products: Path, site: str, when: datetime, rng: np.random.Generator,
                  mode: str, size: int = 256) -> pystac.Item:
    """Write one small MUSCATE-like product and return its STAC item (not yet in a catalog)."""
    tile, epsg, x0, y0 = SITES[site]
    platform = "A" if when.day % 2 else "B"
    name = f"SENTINEL2{platform}_{when:%Y%m%d-%H%M%S}-000_L2A_T{tile}_C_V1-0"
    folder = products / name
    covers = _covers(when, rng)
    sc = _scene(rng, size, covers)
    transform = from_origin(x0, y0, 10.0, 10.0)
    assets: dict[str, pystac.Asset] = {}
    raster = {"proj:shape": [size, size], "proj:transform": list(transform)[:6]}
    for common, b in BANDS.items():
        p = folder / f"{name}_SRE_{b}.tif"
        _cog(p, np.round(sc[common] * 10000).astype(np.int16), transform, epsg, -10000, "average")
        assets[f"sre_{common}"] = pystac.Asset(
            str(p), media_type=pystac.MediaType.COG, title=f"SRE {b} ({common}) surface reflectance, x10000",
            roles=["data", "reflectance"],
            extra_fields={**raster, "raster:bands": [{"data_type": "int16", "nodata": -10000, "scale": 0.0001, "offset": 0.0}],
                          "eo:bands": [{"name": b.replace("B", "B0"), "common_name": common}]},
        )
    clm = (sc["cloud"].astype(np.uint8) * 0b11) | (sc["shadow"].astype(np.uint8) << 5)
    clm |= (clm > 0).astype(np.uint8)
    mg2 = (sc["water"].astype(np.uint8) | (sc["cloud"].astype(np.uint8) << 1)
           | (sc["snow"].astype(np.uint8) << 2) | (sc["shadow"].astype(np.uint8) << 3))
    for key, arr, kind in (("clm", clm, "CLM"), ("mg2", mg2, "MG2")):
        p = folder / "MASKS" / f"{name}_{kind}_R1.tif"
        _cog(p, arr.astype(np.uint8), transform, epsg, None, "nearest")
        assets[key] = pystac.Asset(str(p), media_type=pystac.MediaType.COG, title=f"{kind} mask (bits)",
                                   roles=["data", "cloud" if key == "clm" else "data-mask"],
                                   extra_fields={**raster})
    wv = np.clip(20 * (1.5 + 0.3 * rng.standard_normal((size, size))), 0, 255).astype(np.uint8)
    aot = np.clip(200 * (0.1 + 0.02 * rng.standard_normal((size, size))), 0, 255).astype(np.uint8)
    p = folder / f"{name}_ATB_R1.tif"
    _cog(p, np.stack([wv, aot]), transform, epsg, None, "average")
    assets["atb"] = pystac.Asset(str(p), media_type=pystac.MediaType.COG, title="water vapour and AOT",
                                 roles=["data"], extra_fields={**raster, "raster:bands": [
                                     {"data_type": "uint8", "scale": 0.05, "offset": 0.0, "unit": "g/cm2"},
                                     {"data_type": "uint8", "scale": 0.005, "offset": 0.0}]})
    toa = xr.Dataset({b: (("y", "x"), sc[c].astype(np.float32)) for c, b in (("red", "B04"), ("green", "B03"), ("blue", "B02"))})
    masks = xr.Dataset({"cloud": (("y", "x"), sc["cloud"]), "cloud_shadow": (("y", "x"), sc["shadow"]),
                        "snow": (("y", "x"), sc["snow"]), "water": (("y", "x"), sc["water"])})
    ql = quicklook(toa, masks, folder / f"{name}_QKL_ALL.jpg")
    assets["thumbnail"] = pystac.Asset(str(ql), media_type=pystac.MediaType.JPEG,
                                       title="quicklook (mask outlines: clouds green, snow pink, water blue, shadows yellow)",
                                       roles=["thumbnail", "overview"])
    lon0, lat0 = (1.0, 44.0) if site == "toulouse" else (14.5, 45.9)
    geom = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon0 + 0.03, lat0], [lon0 + 0.03, lat0 + 0.03],
                                                [lon0, lat0 + 0.03], [lon0, lat0]]]}
    props = {
        "platform": f"sentinel-2{platform.lower()}", "constellation": "sentinel-2", "instruments": ["msi"],
        "eo:cloud_cover": covers["cloud"], "l2a:snow_cover": covers["snow"], "l2a:water_cover": covers["water"],
        "l2a:cloud_shadow_cover": covers["cloud_shadow"], "l2a:valid_cover": 100.0, "l2a:mode": mode,
        "l2a:product_name": name, "l2a:aot_mean": float(aot.mean() / 200), "l2a:water_vapour_mean": float(wv.mean() / 20),
        "proj:code": f"EPSG:{epsg}", "proj:epsg": epsg, "grid:code": f"MGRS-{tile}", "processing:level": "L2A",
        "view:sun_elevation": 45.0, "view:sun_azimuth": 150.0,
    }
    item = pystac.Item(name, geom, [lon0, lat0, lon0 + 0.03, lat0 + 0.03], when, props, collection=COLLECTION_ID)
    for k, a in assets.items():
        item.add_asset(k, a)
    item.stac_extensions = [EXTENSIONS[k] for k in ("eo", "proj", "raster", "grid", "processing", "view")]
    return item


_CONFIG = """\
workdir = "."
products = "products"
catalog = "catalog"
database_url = "sqlite:///l2a.db"

[[sites]]
name = "toulouse"
tiles = ["31TCJ"]

[[sites]]
name = "slovenia"
tiles = ["33TVL"]

[cluster]
kind = "local"
dashboard_address = ":8787"
"""


def small_site(workdir: Path, dates_per_site: int = 10, seed: int = 0,
               now: datetime | None = None, step_days: int = 15) -> SmallSite:
    """A site folder with real small products, their catalog and database rows.

    Per site, ``dates_per_site`` acquisitions every ``step_days`` days from ``2024-01-05``: all are
    published except the last two (one failed with a reason, one running); downloads by
    four users spread over the last weeks; jobs finished over the last 48 hours.
    """
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "site.toml").write_text(_CONFIG)
    db_url = f"sqlite:///{workdir / 'l2a.db'}"
    db = Database(db_url)
    db.upgrade()
    cat = StaticCatalog(workdir / "catalog")
    ids: dict[str, list[str]] = {}
    for site, (tile, *_rest) in SITES.items():
        site_row = db.ensure_site(site)
        ids[site] = []
        for i in range(dates_per_site):
            when = datetime(2024, 1, 5, 10, 30, tzinfo=UTC) + timedelta(days=step_days * i)
            mode = "INIT" if i == 0 else "NOMINAL"
            with db.session() as s:
                p = Product(key=f"S2A_T{tile}_{when:%Y%m%dT%H%M%S}_L1C",
                            name=f"S2A_MSIL1C_{when:%Y%m%dT%H%M%S}_N0510_R051_T{tile}_{when:%Y%m%dT%H%M%S}",
                            platform="S2A", tile=tile, sensing_time=when, baseline="05.10",
                            source="inbox", site_id=site_row.id, state=ProductState.DONE)
                s.add(p)
                s.flush()
                finished = now - timedelta(hours=float(rng.uniform(0.5, 47)))
                job = Job(product_id=p.id, tile=tile, sensing_time=when, mode=JobMode(mode),
                          state=JobState.DONE, attempts=1, worker="node-1:4242",
                          started_at=finished - timedelta(seconds=90), finished_at=finished,
                          duration_s=90.0 + float(rng.uniform(-20, 20)))
                if i == dates_per_site - 2:
                    p.state = ProductState.FAILED
                    p.error = job.error = "DEM missing over the tile and sea-level fallback disabled"
                    job.state, job.attempts = JobState.FAILED, 3
                elif i == dates_per_site - 1:
                    p.state = ProductState.RUNNING
                    job.state, job.finished_at, job.duration_s = JobState.RUNNING, None, None
                    job.heartbeat_at = now - timedelta(seconds=20)
                s.add(job)
                s.flush()
                pid = p.id
            if i >= dates_per_site - 2:
                continue
            item = write_product(workdir / "products", site, when, rng, mode)
            path = cat.add_item(item)
            db.record_published(item.id, str(path), collection=COLLECTION_ID, product_id=pid)
            ids[site].append(item.id)
            for _ in range(int(rng.integers(0, 5))):
                db.record_download(item.id, user=str(rng.choice(USERS)), nbytes=int(rng.integers(1e8, 9e8)),
                                   time=now - timedelta(days=float(rng.uniform(0, 40))))
    db.dispose()
    return SmallSite(workdir / "site.toml", db_url, workdir / "catalog", workdir / "products", ids)


def large_database(workdir: Path, n: int = 10_000, seed: int = 1,
                   now: datetime | None = None) -> Path:
    """``n`` products over 10 sites and 20 tiles with jobs, items and downloads; returns the config.

    Rows are bulk-inserted; each product gets a small item JSON in the catalog layout
    (properties and a thumbnail asset only).
    """
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    tiles = [f"3{1 + k % 3}T{'CDEFGH'[k % 6]}{'JKLMN'[k // 6]}" for k in range(20)]
    sites = {f"site{k:02d}": tiles[2 * k: 2 * k + 2] for k in range(10)}
    lines = ['workdir = "."', 'catalog = "catalog"', 'database_url = "sqlite:///l2a.db"', ""]
    for s, ts in sites.items():
        lines += ["[[sites]]", f'name = "{s}"', f"tiles = {json.dumps(ts)}", ""]
    (workdir / "site.toml").write_text("\n".join(lines))
    db = Database(f"sqlite:///{workdir / 'l2a.db'}")
    db.upgrade()
    site_ids = {s: db.ensure_site(s).id for s in sites}
    tile_site = {t: s for s, ts in sites.items() for t in ts}
    states = rng.choice(["done", "failed", "queued", "running"], size=n, p=[0.9, 0.03, 0.06, 0.01])
    products, jobs, published, downloads = [], [], [], []
    coll = workdir / "catalog" / COLLECTION_ID
    for i in range(n):
        tile = tiles[i % len(tiles)]
        when = datetime(2019, 1, 1, 10, 30, tzinfo=UTC) + timedelta(days=5 * (i // len(tiles)), seconds=i)
        st = str(states[i])
        products.append({"id": i + 1, "key": f"S2A_T{tile}_{when:%Y%m%dT%H%M%S}_L1C", "name": f"P{i}",
                         "platform": "S2A", "tile": tile, "sensing_time": when, "level": "L1C", "baseline": "05.10",
                         "discriminator": "", "source": "x", "state": ProductState(st), "site_id": site_ids[tile_site[tile]],
                         "error": "boom" if st == "failed" else None, "discovered_at": now, "updated_at": now})
        fin = now - timedelta(hours=float(rng.uniform(0, 24 * 30))) if st in ("done", "failed") else None
        jobs.append({"id": i + 1, "product_id": i + 1, "tile": tile, "sensing_time": when, "mode": JobMode.NOMINAL,
                     "state": JobState(st), "priority": 0, "attempts": 1, "max_attempts": 3, "created_at": now,
                     "worker": f"node-{i % 4}" if st == "running" else None, "finished_at": fin,
                     "started_at": fin - timedelta(seconds=100) if fin else None,
                     "heartbeat_at": now if st == "running" else None,
                     "duration_s": 100.0 if fin else None, "error": "reason of failure" if st == "failed" else None})
        if st == "done":
            item_id = f"SENTINEL2A_{when:%Y%m%d-%H%M%S}-000_L2A_T{tile}_C_V1-0"
            published.append({"item_id": item_id, "collection": COLLECTION_ID, "product_id": i + 1,
                              "href": str(coll / item_id / f"{item_id}.json"), "published_at": now})
            c = _covers(when, rng)
            d = {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": None,
                 "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "grid:code": f"MGRS-{tile}",
                                "platform": "sentinel-2a", "l2a:mode": "NOMINAL", "eo:cloud_cover": c["cloud"],
                                "l2a:cloud_shadow_cover": c["cloud_shadow"], "l2a:snow_cover": c["snow"],
                                "l2a:water_cover": c["water"]},
                 "assets": {"thumbnail": {"href": f"/nonexistent/{item_id}_QKL_ALL.jpg"}}, "links": []}
            (coll / item_id).mkdir(parents=True, exist_ok=True)
            (coll / item_id / f"{item_id}.json").write_text(json.dumps(d))
            for _ in range(int(rng.integers(0, 3))):
                downloads.append({"item_id": item_id, "product_id": i + 1, "user": str(rng.choice(USERS)),
                                  "time": now - timedelta(days=float(rng.uniform(0, 90))), "bytes": 10**8})
    with db.session() as s:
        for model, rows in ((Product, products), (Job, jobs), (PublishedItem, published), (Download, downloads)):
            s.execute(insert(model), rows)
    db.dispose()
    return workdir / "site.toml"


__all__ = ["SITES", "SmallSite", "large_database", "small_site", "write_product"]
_ = Site  # re-exported model names used by callers' type hints
