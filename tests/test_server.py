"""``l2a serve``: the STAC API, the resto search.json and the downloads, over a real server.

The server runs in-process on 127.0.0.1:0 (uvicorn in a thread) over a static catalog written
with :class:`l2a.catalog.static.StaticCatalog` (7 products on 3 tiles, 3 months, cloud covers
0-80 %); clients are pystac-client (STAC API) and plain HTTP (resto, downloads). Expected
answers are computed from the table ``PRODUCTS`` below, independently of the server code.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("sqlalchemy")
pystac_client = pytest.importorskip("pystac_client")

from l2a.catalog.server import ServerThread, ServeSettings  # noqa: E402
from l2a.catalog.stac_item import COLLECTION_ID  # noqa: E402
from l2a.catalog.static import StaticCatalog  # noqa: E402
from l2a.io.muscate import product_name, zip_product  # noqa: E402
from l2a.production.db import Database  # noqa: E402

#: Footprints (lon/lat boxes) of the tiles used.
TILES = {
    "31TCJ": (0.5, 43.2, 1.9, 44.2),  # Toulouse
    "33TVM": (14.0, 45.9, 15.4, 46.9),  # Slovenia
    "38KQE": (46.0, -16.3, 47.0, -15.3),  # Betsiboka
}


@dataclass(frozen=True)
class P:
    platform: str
    tile: str
    time: datetime
    cloud: float
    snow: float
    orbit: int
    zipped: bool = False

    @property
    def name(self) -> str:
        return product_name(self.platform, self.time, self.tile)


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


PRODUCTS = [
    P("S2A", "31TCJ", _t("2024-01-10T10:55:14.866"), 5.0, 0.0, 51),
    P("S2B", "31TCJ", _t("2024-01-20T10:55:10.000"), 60.0, 10.0, 51),
    P("S2A", "31TCJ", _t("2024-02-05T10:55:20.000"), 15.0, 2.0, 51),
    P("S2A", "33TVM", _t("2024-01-15T10:05:00.000"), 0.0, 30.0, 122),
    P("S2B", "33TVM", _t("2024-02-10T10:05:00.000"), 35.0, 5.0, 122),
    P("S2A", "38KQE", _t("2024-01-25T07:10:00.000"), 80.0, 0.0, 20),
    P("S2C", "31TCJ", _t("2024-03-01T10:55:00.000"), 10.0, 0.0, 51, zipped=True),
]
BY_NAME = {p.name: p for p in PRODUCTS}


def _files(p: P) -> dict[str, tuple[str, bytes]]:
    """Asset key -> (path inside the product, content): small distinct bytes per file."""
    seed = hashlib.sha256(p.name.encode()).digest()
    return {
        "sre_red": (f"{p.name}_SRE_B4.tif", seed * 4096),  # 128 KiB
        "thumbnail": (f"{p.name}_QKL_ALL.jpg", b"\xff\xd8" + seed * 16),
        "metadata": (f"{p.name}_MTD_ALL.xml", f"<Muscate_Metadata_Document>{p.name}</Muscate_Metadata_Document>".encode()),
        "clm": (f"MASKS/{p.name}_CLM_R1.tif", seed[::-1] * 64),
    }


def _write_product(products: Path, p: P) -> pystac.Item:
    folder = products / p.name
    assets = {}
    for key, (rel, data) in _files(p).items():
        f = folder / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        assets[key] = pystac.Asset(
            str(f.resolve()),
            media_type="image/jpeg" if key == "thumbnail" else None,
            roles=["data"],
            extra_fields={"file:size": len(data), "file:checksum": "1220" + hashlib.sha256(data).hexdigest()},
        )
    if p.zipped:
        zip_product(folder)
    x0, y0, x1, y1 = TILES[p.tile]
    geom = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    item = pystac.Item(
        p.name, geom, [x0, y0, x1, y1], p.time,
        properties={
            "platform": f"sentinel-2{p.platform[-1].lower()}",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": p.cloud,
            "l2a:snow_cover": p.snow,
            "l2a:reflectance": True,
            "grid:code": f"MGRS-{p.tile}",
            "sat:relative_orbit": p.orbit,
            "processing:level": "L2A",
            "processing:datetime": "2024-04-01T00:00:00Z",
        },
        collection=COLLECTION_ID,
    )
    for k, a in assets.items():
        item.add_asset(k, a)
    return item


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Path, Database]]:
    root = tmp_path_factory.mktemp("serve")
    products, catalog = root / "products", root / "catalog"
    cat = StaticCatalog(catalog)
    for p in PRODUCTS:
        cat.add_item(_write_product(products, p))
    (root / "secret.txt").write_text("not for download")
    os.symlink(root / "secret.txt", products / PRODUCTS[0].name / "link.txt")
    url = f"sqlite:///{root / 'l2a.db'}"
    settings = ServeSettings(catalog=catalog, products=products, database_url=url, zip_cache=root / "cache")
    with ServerThread(settings) as srv:
        db = Database(url)
        yield srv, root, db
        db.dispose()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _json(url: str) -> tuple[int, Any]:
    status, _, body = _get(url)
    return status, json.loads(body)


def _ids(items: Any) -> set[str]:
    return {i.id for i in items}


def _expect(**kw: Any) -> set[str]:
    out = set()
    for p in PRODUCTS:
        if "tile" in kw and p.tile != kw["tile"]:
            continue
        if "start" in kw and p.time < kw["start"]:
            continue
        if "end" in kw and p.time > kw["end"]:
            continue
        if "max_cloud" in kw and not p.cloud <= kw["max_cloud"]:
            continue
        if "max_snow" in kw and not p.snow <= kw["max_snow"]:
            continue
        if "platform" in kw and p.platform != kw["platform"]:
            continue
        if "orbit" in kw and p.orbit != kw["orbit"]:
            continue
        out.add(p.name)
    return out


# --------------------------------------------------------------------------- STAC API


def test_landing_and_collections(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    client = pystac_client.Client.open(srv.url)
    assert client.conforms_to("ITEM_SEARCH") and client.conforms_to("QUERY") and client.conforms_to("FILTER")
    colls = list(client.get_collections())
    assert [c.id for c in colls] == [COLLECTION_ID]
    c = client.get_collection(COLLECTION_ID)
    assert c.extent.spatial.bboxes[0][0] == pytest.approx(0.5)
    status, conf = _json(f"{srv.url}/conformance")
    assert status == 200 and "https://api.stacspec.org/v1.0.0/core" in conf["conformsTo"]


def test_search_tile_date_cloud(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    client = pystac_client.Client.open(srv.url)
    by_tile = client.search(collections=[COLLECTION_ID], query={"grid:code": {"eq": "MGRS-31TCJ"}})
    assert _ids(by_tile.items()) == _expect(tile="31TCJ") and len(_expect(tile="31TCJ")) == 4
    window = client.search(datetime="2024-01-12/2024-01-31")
    assert _ids(window.items()) == _expect(start=_t("2024-01-12"), end=_t("2024-01-31T23:59:59"))
    open_end = client.search(datetime="2024-02-01/..", method="GET")
    assert _ids(open_end.items()) == _expect(start=_t("2024-02-01"))
    clear = client.search(query={"eo:cloud_cover": {"lte": 15}})
    assert _ids(clear.items()) == _expect(max_cloud=15) and len(_expect(max_cloud=15)) == 4
    cql = client.search(filter="\"grid:code\" = 'MGRS-31TCJ' AND \"eo:cloud_cover\" < 20", filter_lang="cql2-text")
    assert _ids(cql.items()) == _expect(tile="31TCJ", max_cloud=19.99)
    cql_json = client.search(filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}, method="GET")
    assert _ids(cql_json.items()) == _expect(max_cloud=9.99)
    box = client.search(bbox=[13.0, 45.0, 16.0, 47.0])
    assert _ids(box.items()) == _expect(tile="33TVM")
    pt = client.search(intersects={"type": "Point", "coordinates": [46.5, -15.8]})
    assert _ids(pt.items()) == _expect(tile="38KQE")
    one = PRODUCTS[3].name
    assert _ids(client.search(ids=[one]).items()) == {one}


def test_paging_and_sort(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    client = pystac_client.Client.open(srv.url)
    for method in ("POST", "GET"):
        search = client.search(collections=[COLLECTION_ID], limit=2, method=method, sortby="-eo:cloud_cover")
        pages = list(search.pages())
        assert [len(p.items) for p in pages] == [2, 2, 2, 1]
        items = [i for p in pages for i in p.items]
        assert [i.id for i in items] == [p.name for p in sorted(PRODUCTS, key=lambda p: -p.cloud)]
        assert search.matched() == len(PRODUCTS)
    newest_first = [i.id for i in client.search(limit=3).items()]
    assert newest_first == [p.name for p in sorted(PRODUCTS, key=lambda p: p.time, reverse=True)]


def test_item_assets_point_at_server(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    p = PRODUCTS[1]
    client = pystac_client.Client.open(srv.url)
    item = client.get_collection(COLLECTION_ID).get_item(p.name)
    assert item is not None
    href = item.assets["clm"].href
    assert href == f"{srv.url}/assets/{p.name}/MASKS/{p.name}_CLM_R1.tif"
    status, _, body = _get(href)
    assert status == 200 and body == _files(p)["clm"][1]
    status, items = _json(f"{srv.url}/collections/{COLLECTION_ID}/items?limit=3")
    assert status == 200 and items["numberMatched"] == len(PRODUCTS) and len(items["features"]) == 3
    assert any(lk["rel"] == "next" for lk in items["links"])
    status, err = _json(f"{srv.url}/collections/{COLLECTION_ID}/items/nope")
    assert status == 404 and "nope" in err["description"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("bbox=1,2,3", "bbox"),
        ("datetime=yesterday", "datetime"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("colour=red", "unknown search parameter"),
        ("filter=eo:cloud_cover <<< 3", "CQL2"),
        ('query={"eo:cloud_cover":{"less":3}}', "query operator"),
        ("datetime=2024-02-01/2024-01-01", "start is after the end"),
    ],
)
def test_stac_bad_parameters(site: tuple[ServerThread, Path, Database], query: str, message: str) -> None:
    srv, _, _ = site
    k, _, v = query.partition("=")
    status, body = _json(f"{srv.url}/search?{urllib.parse.urlencode({k: v})}")
    assert status == 400 and message in body["description"]


# --------------------------------------------------------------------------- resto


def _resto(srv: ServerThread, coll: str = COLLECTION_ID, **params: Any) -> tuple[int, Any]:
    q = urllib.parse.urlencode(params)
    return _json(f"{srv.url}/resto/api/collections/{coll}/search.json?{q}")


def _resto_ids(body: Any) -> set[str]:
    return {f["properties"]["productIdentifier"] for f in body["features"]}


def test_resto_search(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    status, body = _resto(srv, tileid="31TCJ", startDate="2024-01-01", completionDate="2024-01-31")
    assert status == 200 and body["type"] == "FeatureCollection"
    want = _expect(tile="31TCJ", start=_t("2024-01-01"), end=_t("2024-01-31T23:59:59"))
    assert _resto_ids(body) == want and body["properties"]["totalResults"] == len(want) == 2
    # Theia spelling, collection alias, cloud/snow intervals, platform and level spellings
    _, theia = _resto(srv, "SENTINEL2", location="T31TCJ", cloudCover="[0,20]")
    assert _resto_ids(theia) == _expect(tile="31TCJ", max_cloud=20)
    assert _resto_ids(_resto(srv, snowCover="[0,5]")[1]) == _expect(max_snow=5)
    # open interval ends, and a bare number as an upper bound
    assert _resto_ids(_resto(srv, cloudCover="]5,15]")[1]) == {p.name for p in PRODUCTS if 5 < p.cloud <= 15}
    assert _resto_ids(_resto(srv, cloudCover="[5,15[")[1]) == {p.name for p in PRODUCTS if 5 <= p.cloud < 15}
    assert _resto_ids(_resto(srv, cloudCover="10")[1]) == _expect(max_cloud=10)
    assert _resto_ids(_resto(srv, platform="S2B")[1]) == _expect(platform="S2B")
    assert _resto_ids(_resto(srv, platform="SENTINEL2A", processingLevel="LEVEL2A")[1]) == _expect(platform="S2A")
    assert _resto_ids(_resto(srv, relativeOrbitNumber="122")[1]) == _expect(orbit=122)
    assert _resto_ids(_resto(srv, productType="REFLECTANCE")[1]) == _expect()
    assert _resto_ids(_resto(srv, productType="MASKS")[1]) == set()
    assert _resto_ids(_resto(srv, box="13,45,16,47")[1]) == _expect(tile="33TVM")
    assert _resto_ids(_resto(srv, lat="-15.8", lon="46.5")[1]) == _expect(tile="38KQE")
    wkt = "POLYGON((1 43.5, 1.2 43.5, 1.2 43.7, 1 43.7, 1 43.5))"
    assert _resto_ids(_resto(srv, geometry=wkt)[1]) == _expect(tile="31TCJ")
    assert _resto_ids(_resto(srv, productIdentifier="%T33TVM%")[1]) == _expect(tile="33TVM")
    assert _resto_ids(_resto(srv, productIdentifier=PRODUCTS[0].name)[1]) == {PRODUCTS[0].name}


def test_resto_feature_properties(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    p = PRODUCTS[0]
    _, body = _resto(srv, productIdentifier=p.name)
    props = body["features"][0]["properties"]
    size = sum(len(d) for _, d in _files(p).values())
    assert props["title"] == p.name and props["mgrs"] == "31TCJ"
    assert props["platform"] == "SENTINEL2A" and props["instrument"] == "MSI"
    assert props["processingLevel"] == "LEVEL2A" and props["productType"] == "REFLECTANCE"
    assert props["startDate"] == props["completionDate"] == "2024-01-10T10:55:14.866Z"
    assert props["published"] == "2024-04-01T00:00:00Z"
    assert props["relativeOrbitNumber"] == 51 and props["orbitNumber"] is None
    assert props["cloudCover"] == 5.0 and props["snowCover"] == 0.0
    assert props["resourceSize"] == size and props["storage"]["mode"] == "disk"
    assert props["services"]["download"]["url"] == f"{srv.url}/download/{p.name}"
    assert props["quicklook"] == props["thumbnail"] == f"{srv.url}/assets/{p.name}/{p.name}_QKL_ALL.jpg"
    assert _get(props["quicklook"])[2] == _files(p)["thumbnail"][1]
    zipped = next(q for q in PRODUCTS if q.zipped)
    _, body = _resto(srv, productIdentifier=zipped.name)
    # the packager's zip: its size is the resource size
    z = site[1] / "products" / f"{zipped.name}.zip"
    assert body["features"][0]["properties"]["resourceSize"] == z.stat().st_size


def test_resto_paging(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    seen: list[str] = []
    for page in (1, 2, 3):
        status, body = _resto(srv, maxRecords=3, page=page)
        assert status == 200 and body["properties"]["totalResults"] == len(PRODUCTS)
        seen += [f["id"] for f in body["features"]]
        rels = {lk["rel"] for lk in body["properties"]["links"]}
        assert ("next" in rels) == (page < 3)
    assert seen == [p.name for p in sorted(PRODUCTS, key=lambda p: p.time, reverse=True)]
    _, asc = _resto(srv, maxRecords=2, sortOrder="ascending")
    assert [f["id"] for f in asc["features"]] == [p.name for p in sorted(PRODUCTS, key=lambda p: p.time)[:2]]
    _, beyond = _resto(srv, maxRecords=3, page=9)
    assert beyond["features"] == [] and beyond["properties"]["totalResults"] == len(PRODUCTS)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"maxRecords": "501"}, "maxRecords"),
        ({"maxRecords": "0"}, "maxRecords"),
        ({"page": "0"}, "page"),
        ({"cloudCover": "[0,abc]"}, "cloudCover"),
        ({"cloudCover": "[50,10]"}, "cloudCover"),
        ({"startDate": "31/01/2024"}, "startDate"),
        ({"startDate": "2024-02-01", "completionDate": "2024-01-01"}, "completionDate"),
        ({"tileid": "31XYZ1"}, "tileid"),
        ({"lat": "43"}, "lon"),
        ({"box": "1,2,3"}, "box"),
        ({"geometry": "POLYGON((1 2, 3"}, "geometry"),
        ({"relativeOrbitNumber": "200"}, "relativeOrbitNumber"),
    ],
)
def test_resto_bad_parameters(site: tuple[ServerThread, Path, Database], params: dict[str, str], message: str) -> None:
    srv, _, _ = site
    status, body = _resto(srv, **params)
    assert status == 400 and body["ErrorMessage"].startswith(message)


def test_resto_unknown_collection(site: tuple[ServerThread, Path, Database]) -> None:
    status, body = _resto(site[0], "S1_GRD")
    assert status == 404 and COLLECTION_ID in body["ErrorMessage"]


# --------------------------------------------------------------------------- downloads


def _rows(db: Database) -> list[tuple[str, str | None, str, int]]:
    from sqlalchemy import select

    from l2a.production.models import Download

    with db.session(readonly=True) as s:
        return [(d.item_id, d.asset, d.user, d.bytes) for d in s.scalars(select(Download).order_by(Download.id))]


def test_downloads_are_recorded(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, db = site
    before = len(_rows(db))
    p = PRODUCTS[2]
    # whole product, made on the fly, by a proxy-authenticated user
    status, headers, body = _get(f"{srv.url}/download/{p.name}", {"X-User": "alice"})
    assert status == 200 and headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert {n: z.read(n) for n in z.namelist()} == {f"{p.name}/{rel}": data for rel, data in _files(p).values()}
    # one asset, a range of it, by a basic-auth user
    rel, data = _files(p)["sre_red"]
    auth = "Basic " + base64.b64encode(b"bob:secret").decode()
    status, headers, part = _get(f"{srv.url}/assets/{p.name}/{rel}", {"Range": "bytes=100-1099", "Authorization": auth})
    assert status == 206 and part == data[100:1100]
    assert headers["content-range"] == f"bytes 100-1099/{len(data)}"
    # the packager's zip through the resto-style URL, anonymously
    zp = next(q for q in PRODUCTS if q.zipped)
    status, _, zbody = _get(f"{srv.url}/resto/collections/SENTINEL2/{zp.name}/download")
    assert status == 200 and zbody == (site[1] / "products" / f"{zp.name}.zip").read_bytes()
    rows = _rows(db)[before:]
    assert rows == [
        (p.name, None, "alice", len(body)),
        (p.name, "sre_red", "bob", 1000),
        (zp.name, None, "anonymous", len(zbody)),
    ]
    counts = {(i, u): (n, b) for i, u, n, b in db.download_counts()}
    assert counts[(p.name, "bob")] == (1, 1000)


def _raw_get(srv: ServerThread, path: str) -> int:
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        assert b"not for download" not in body
        return r.status
    finally:
        conn.close()


def test_path_traversal_refused(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, db = site
    before = len(_rows(db))
    name = PRODUCTS[0].name
    for path, code in (
        (f"/assets/{name}/../../secret.txt", 403),
        (f"/assets/{name}/..%2F..%2Fsecret.txt", 403),
        (f"/assets/{name}/%2e%2e/%2e%2e/secret.txt", 403),
        (f"/assets/{name}/MASKS/../../../secret.txt", 403),
        (f"/assets/{name}//etc/passwd", 403),
        (f"/assets/{name}/link.txt", 403),  # a symlink leaving the product folder
        (f"/assets/..%2F{name}/{name}_SRE_B4.tif", 404),  # not an item id
        ("/download/..%2Fsecret.txt", 404),
        (f"/assets/{name}/MASKS/", 400),
    ):
        assert _raw_get(srv, path) == code, path
    assert _raw_get(srv, f"/assets/{name}/{name}_SRE_B4.tif") == 200
    assert len(_rows(db)) == before + 1


def test_new_products_appear_without_restart(tmp_path: Path) -> None:
    cat = StaticCatalog(tmp_path / "catalog")
    cat.add_item(_write_product(tmp_path / "products", PRODUCTS[0]))
    settings = ServeSettings(catalog=tmp_path / "catalog", products=tmp_path / "products", zip_cache=tmp_path / "z")
    with ServerThread(settings) as srv:
        client = pystac_client.Client.open(srv.url)
        assert _ids(client.search(collections=[COLLECTION_ID]).items()) == {PRODUCTS[0].name}
        cat.add_item(_write_product(tmp_path / "products", PRODUCTS[3]))
        assert _ids(client.search(collections=[COLLECTION_ID]).items()) == {PRODUCTS[0].name, PRODUCTS[3].name}
        cat.remove_item(PRODUCTS[0].name)
        _, body = _resto(srv)
        assert _resto_ids(body) == {PRODUCTS[3].name}
        # no database configured: downloads are served (and only logged)
        status, _, _ = _get(f"{srv.url}/download/{PRODUCTS[3].name}")
        assert status == 200


def test_default_collection_is_ours() -> None:
    assert ServeSettings(Path("c"), Path("p")).collection == COLLECTION_ID


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    from l2a.catalog.server import create_app
    from l2a.errors import InputError

    with pytest.raises(InputError, match=r"catalog folder does not exist"):
        create_app(ServeSettings(catalog=tmp_path / "nothing", products=tmp_path))


def test_empty_site_then_first_product(tmp_path: Path) -> None:
    """A site before its first publication: an empty catalog, then the product once published."""
    (tmp_path / "catalog").mkdir()
    settings = ServeSettings(catalog=tmp_path / "catalog", products=tmp_path / "products")
    with ServerThread(settings) as srv:
        client = pystac_client.Client.open(srv.url)
        assert list(client.get_collections()) == []
        status, body = _resto(srv, "SENTINEL2")
        assert status == 200 and body["properties"]["totalResults"] == 0 and body["features"] == []
        StaticCatalog(tmp_path / "catalog").add_item(_write_product(tmp_path / "products", PRODUCTS[5]))
        assert _ids(client.search(collections=[COLLECTION_ID]).items()) == {PRODUCTS[5].name}
        _, body = _resto(srv, "SENTINEL2")
        assert body["properties"]["totalResults"] == 1


def test_site_configuration_and_url_hrefs(tmp_path: Path) -> None:
    """``l2a serve --config site.toml``: paths and database from the site; items whose asset
    hrefs are URLs (``ItemSettings.href_base``) still point at this server once served."""
    from l2a.config import init_site, load_config

    cfg = init_site(tmp_path / "site")
    settings = load_config(cfg)
    item = _write_product(settings.products, PRODUCTS[4])
    for a in item.assets.values():
        rel = Path(a.href).relative_to(settings.products.resolve())
        a.href = f"https://archive.example.org/l2a/{rel.as_posix()}"
    StaticCatalog(settings.catalog).add_item(item)
    with ServerThread(cfg) as srv:
        client = pystac_client.Client.open(srv.url)
        got = client.get_collection(COLLECTION_ID).get_item(PRODUCTS[4].name)
        assert got is not None
        rel, data = _files(PRODUCTS[4])["clm"]
        assert got.assets["clm"].href == f"{srv.url}/assets/{PRODUCTS[4].name}/{rel}"
        assert _get(got.assets["clm"].href, {"X-User": "carol"})[2] == data
    db = Database(settings.db_url)
    try:
        assert db.download_counts() == [(PRODUCTS[4].name, "carol", 1, len(data))]
    finally:
        db.dispose()


def test_theia_and_peps_script_flows(site: tuple[ServerThread, Path, Database]) -> None:
    """What theia_download.py / peps_download.py do, with only the server prefix changed."""
    srv, _, db = site
    before = len(_rows(db))
    # Theia: token, search on resto2, download with the token (trailing slash, issuerId)
    req = urllib.request.Request(f"{srv.url}/services/authenticate/", data=b"ident=dora%40example.org&pass=x")
    with urllib.request.urlopen(req, timeout=10) as r:
        token = r.read().decode()
    q = urllib.parse.urlencode({"location": "T33TVM", "startDate": "2024-01-01", "completionDate": "2024-12-31", "maxRecords": 500})
    status, body = _json(f"{srv.url}/resto2/api/collections/SENTINEL2/search.json?{q}")
    assert status == 200 and _resto_ids(body) == _expect(tile="33TVM")
    prod = body["features"][0]["id"]
    status, _, data = _get(f"{srv.url}/resto2/collections/SENTINEL2/{prod}/download/?issuerId=theia",
                           {"Authorization": f"Bearer {token}"})
    assert status == 200 and zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    # PEPS: basic auth, lat/lon search, download/?issuerId=peps
    status, body = _json(f"{srv.url}/resto/api/collections/S2ST/search.json?lat=43.6&lon=1.4")
    assert status == 404  # PEPS's L1C collection is not ours: said clearly
    auth = "Basic " + base64.b64encode(b"eve:pw").decode()
    status, _, data = _get(f"{srv.url}/resto/collections/{COLLECTION_ID}/{PRODUCTS[0].name}/download/?issuerId=peps",
                           {"Authorization": auth})
    assert status == 200
    assert [(r[0], r[2]) for r in _rows(db)[before:]] == [(prod, "dora@example.org"), (PRODUCTS[0].name, "eve")]


def test_zip_cache_is_bounded(tmp_path: Path) -> None:
    cat = StaticCatalog(tmp_path / "catalog")
    for p in PRODUCTS[:3]:
        cat.add_item(_write_product(tmp_path / "products", p))
    one_zip = 140_000  # bytes, a little more than one product's zip
    settings = ServeSettings(tmp_path / "catalog", tmp_path / "products", zip_cache=tmp_path / "zips",
                             zip_cache_max_gb=1.5 * one_zip / 1e9)
    with ServerThread(settings) as srv:
        for p in PRODUCTS[:3]:
            status, _, data = _get(f"{srv.url}/download/{p.name}")
            assert status == 200 and one_zip * 0.9 < len(data) < one_zip
            assert [z.name for z in (tmp_path / "zips").glob("*.zip")] == [f"{p.name}.zip"]


def test_self_intersecting_areas_are_repaired(site: tuple[ServerThread, Path, Database]) -> None:
    srv, _, _ = site
    bowtie = [[13.0, 45.0], [16.0, 47.0], [16.0, 45.0], [13.0, 47.0], [13.0, 45.0]]
    client = pystac_client.Client.open(srv.url)
    got = client.search(intersects={"type": "Polygon", "coordinates": [bowtie]})
    assert _ids(got.items()) == _expect(tile="33TVM")
    wkt = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in bowtie) + "))"
    assert _resto_ids(_resto(srv, geometry=wkt)[1]) == _expect(tile="33TVM")


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    from l2a.catalog.server import create_app
    from l2a.errors import InputError

    (tmp_path / "catalog").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "l2a.db").mkdir()  # a folder where the database file should be
    with pytest.raises(InputError, match="status database"):
        create_app(ServeSettings(tmp_path / "catalog", tmp_path, f"sqlite:///{tmp_path / 'ro' / 'l2a.db'}"))
