"""Catalog sources against real local services: a STAC API (``rustac serve``), static STAC
catalogs (on disk and over HTTP) and a resto ``search.json`` endpoint (tests/servers.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pystac
import pytest
from servers import (
    L1C_COLLECTION,
    SLOVENIA_CLOUDS,
    FileServer,
    RustacApi,
    renamed_item,
    resto_feature,
    rustac_exe,
    slovenia_products,
    stac_items,
)

from l2a.catalog.download import DownloadSettings
from l2a.catalog.sources import (
    Candidate,
    L1CSource,
    RestoSource,
    SourceError,
    StacApiSource,
    StaticStacSource,
    make_source,
    tile_bbox,
)
from l2a.config import RestoSource as RestoConfig
from l2a.config import Site
from l2a.config import StacApiSource as StacApiConfig

CLOUDS = SLOVENIA_CLOUDS
COLLECTION = L1C_COLLECTION
SITE = Site(name="slovenia", tiles=["33TVL"])
FAST = DownloadSettings(max_attempts=2, backoff_s=0.0)


@pytest.fixture(scope="module")
def catalog_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """File server over the zips + a STAC API holding the 5 real items and 5 decoys of 33TVM."""
    if rustac_exe() is None:
        pytest.skip("rustac is not installed (pip install rustac): no local STAC API")
    tmp = tmp_path_factory.mktemp("catalog")
    _, _, zips = slovenia_products()
    root = tmp / "srv"
    (root / "zips").mkdir(parents=True)
    served = [Path(shutil.copy(z, root / "zips" / z.name)) for z in zips]
    with FileServer(root) as srv:
        items = stac_items(served, srv, CLOUDS, COLLECTION)
        decoys = [renamed_item(it, "33TVM") for it in items]
        with RustacApi(items + decoys, COLLECTION, tmp / "api") as api:
            yield {"srv": srv, "api": api, "items": items, "decoys": decoys, "tmp": tmp}


def _dates(cands: list[Candidate]) -> list[str]:
    return sorted(f"{c.name.sensing_time:%Y-%m-%d}" for c in cands)


def test_stac_api_search_by_tile_dates_cloud_with_paging(catalog_env: dict[str, Any]) -> None:
    src = StacApiSource(catalog_env["api"].url, COLLECTION, page_size=2)
    assert isinstance(src, L1CSource)
    found = list(src.search(SITE, date(2015, 7, 1), date(2015, 9, 30), max_cloud=50))
    assert _dates(found) == ["2015-07-11", "2015-08-20", "2015-09-09"]
    assert all(c.name.tile == "33TVL" and c.name.baseline == "05.10" for c in found)
    # 10 items share the tile's footprint, 2 a page: the search followed the next links
    assert src.pages >= 5
    c = next(c for c in found if c.cloud_cover == 5.0)
    assert c.href and c.href.endswith(".zip") and c.size and c.checksum
    # dates narrow the search
    early = list(src.search(SITE, date(2015, 7, 1), date(2015, 8, 25), max_cloud=100))
    assert _dates(early) == ["2015-07-11", "2015-07-31", "2015-08-20"]
    # the decoys (33TVM ids on 33TVL's footprint) came back from the bbox search of 33TVL and
    # were dropped by the tile check; asked for 33TVM, the server answers by footprint
    other = list(src.search(Site(name="north", tiles=["33TVM"]), max_cloud=100))
    x0, y0, x1, y1 = tile_bbox("33TVM")
    fx0, fy0, fx1, fy1 = catalog_env["decoys"][0]["bbox"]
    overlaps = fx0 <= x1 and fx1 >= x0 and fy0 <= y1 and fy1 >= y0
    assert len(other) == (5 if overlaps else 0)
    assert all(c.name.tile == "33TVM" for c in other)


def test_stac_api_with_query_extension(catalog_env: dict[str, Any]) -> None:
    """An API that conforms to the query extension filters tile and cloud on the server."""
    srv: FileServer = catalog_env["srv"]
    srv.stac_items = catalog_env["items"] + catalog_env["decoys"]
    srv.stac_queries.clear()
    src = StacApiSource(f"{srv.url}/stac/", COLLECTION, page_size=2)
    found = list(src.search(SITE, date(2015, 7, 1), date(2015, 9, 30), max_cloud=50))
    assert _dates(found) == ["2015-07-11", "2015-08-20", "2015-09-09"]
    q = srv.stac_queries[0]
    assert q["query"] == {"grid:code": {"eq": "MGRS-33TVL"}, "eo:cloud_cover": {"lte": 50}}
    assert q["datetime"] == "2015-07-01T00:00:00Z/2015-09-30T23:59:59Z"
    assert q["bbox"] == pytest.approx(list(tile_bbox("33TVL")))
    assert src.pages == 2  # 3 matches on the server, 2 a page
    assert len(srv.stac_queries) == 2 and srv.stac_queries[1]["token"] == "2"


def test_stac_api_area_site(catalog_env: dict[str, Any]) -> None:
    src = StacApiSource(catalog_env["api"].url, COLLECTION, page_size=3)
    x0, y0, x1, y1 = catalog_env["items"][0]["bbox"]
    site = Site(name="area", bbox=(x0, y0, x1, y1), start=date(2015, 8, 1))
    found = [c for c in src.search(site, max_cloud=100) if c.name.tile == "33TVL"]
    assert _dates(found) == ["2015-08-20", "2015-08-30", "2015-09-09"]
    far = Site(name="far", bbox=(100.0, 10.0, 101.0, 11.0))
    assert list(src.search(far)) == []


def test_stac_api_fetch_verified(catalog_env: dict[str, Any], tmp_path: Path) -> None:
    src = StacApiSource(catalog_env["api"].url, COLLECTION, download_settings=FAST)
    cand = next(iter(src.search(SITE, max_cloud=6)))
    path = src.fetch(cand, tmp_path)
    assert path.name == cand.name.name + ".zip"
    assert path.stat().st_size == cand.size


def test_unreachable_api_is_a_clear_error() -> None:
    src = StacApiSource("http://127.0.0.1:9/", COLLECTION)
    with pytest.raises(SourceError, match="cannot open the STAC API"):
        list(src.search(SITE))


def _write_static_catalog(items: list[dict[str, Any]], folder: Path) -> Path:
    cat = pystac.Catalog(id="l1c", description="test L1C catalog")
    for d in items:
        cat.add_item(pystac.Item.from_dict(d))
    cat.normalize_hrefs(str(folder))
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


def test_static_catalog_on_disk_and_over_http(catalog_env: dict[str, Any]) -> None:
    srv: FileServer = catalog_env["srv"]
    folder = srv.root / "static"
    href = _write_static_catalog(catalog_env["items"] + catalog_env["decoys"], folder)
    local = StaticStacSource(str(href))
    found = list(local.search(SITE, max_cloud=50))
    assert _dates(found) == ["2015-07-11", "2015-08-20", "2015-09-09"]
    remote = StaticStacSource(srv.file_url("static/catalog.json"))
    found_http = list(remote.search(SITE, date(2015, 8, 1), None, max_cloud=50))
    assert _dates(found_http) == ["2015-08-20", "2015-09-09"]
    assert all(c.href and c.href.startswith(srv.url) for c in found_http)


@pytest.fixture(scope="module")
def resto_env(catalog_env: dict[str, Any]) -> dict[str, Any]:
    srv: FileServer = catalog_env["srv"]
    feats = []
    for it in catalog_env["items"] + catalog_env["decoys"]:
        a = it["assets"]["product"]
        feats.append(resto_feature(it, a["href"], a["file:size"]))
    srv.resto["S2ST"] = feats
    return catalog_env


def test_resto_search_paging_and_parameters(resto_env: dict[str, Any]) -> None:
    srv: FileServer = resto_env["srv"]
    src = RestoSource(srv.resto_url("S2ST"), max_records=2, params={"productType": "S2MSI1C"})
    found = list(src.search(SITE, date(2015, 7, 1), date(2015, 9, 30), max_cloud=50))
    assert _dates(found) == ["2015-07-11", "2015-08-20", "2015-09-09"]
    assert src.pages == 2  # 3 results, 2 per page
    queries = [p for _, p, _ in srv.requests if p.endswith("search.json")]
    assert queries  # the server saw the searches
    c = found[0]
    assert c.storage == "disk" and c.size and c.href and c.href.endswith(".zip")
    # Theia-style location=T33TVL, and every record of the tile when no cloud limit
    theia = RestoSource(srv.resto_url("S2ST"), max_records=3, tile_param="location")
    assert len(list(theia.search(SITE))) == 5
    assert theia.pages == 2
    with pytest.raises(ValueError, match="500"):
        RestoSource(srv.resto_url("S2ST"), max_records=501)


def test_resto_fetch_and_unknown_collection(resto_env: dict[str, Any], tmp_path: Path) -> None:
    srv: FileServer = resto_env["srv"]
    src = RestoSource(srv.resto_url("S2ST"), download_settings=FAST)
    cand = next(iter(src.search(SITE, max_cloud=6)))
    path = src.fetch(cand, tmp_path)
    assert path.stat().st_size == cand.size
    with pytest.raises(SourceError, match="404"):
        list(RestoSource(srv.resto_url("NOPE")).search(SITE))


def test_make_source_from_config(tmp_path: Path) -> None:
    s = make_source(StacApiConfig(url="http://127.0.0.1:1/", collection="c", page_size=80))
    assert isinstance(s, StacApiSource) and s.page_size == 80
    r = make_source(
        RestoConfig(url="http://127.0.0.1:1/search.json", params={"tile_param": "location"})
    )
    assert isinstance(r, RestoSource) and r.tile_param == "location" and r.max_records == 500


def test_tile_bbox_holds_the_tile() -> None:
    x0, y0, x1, y1 = tile_bbox("33TVL")
    assert 13 < x0 < x1 < 15.5 and 45 < y0 < y1 < 47
