"""``l2a serve`` over a real written product: its item from :func:`make_item`, published with
:class:`StaticCatalog`, found through the STAC API and loaded *over HTTP* by odc-stac (GDAL
range requests against ``/assets/…``); values equal the files, checksums equal the item's."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pystac_client = pytest.importorskip("pystac_client")
odc_stac = pytest.importorskip("odc.stac")

from test_muscate import FAST, NAME, make_inputs  # noqa: E402

from l2a.catalog.server import ServerThread, ServeSettings  # noqa: E402
from l2a.catalog.stac_item import COLLECTION_ID, make_item  # noqa: E402
from l2a.catalog.static import StaticCatalog  # noqa: E402
from l2a.io.muscate import write_product  # noqa: E402
from l2a.production.db import Database  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("serve_real")
    product = write_product(root / "products", **make_inputs(), settings=FAST)
    StaticCatalog(root / "catalog").add_item(make_item(product))
    url = f"sqlite:///{root / 'l2a.db'}"
    with ServerThread(ServeSettings(root / "catalog", root / "products", url, root / "cache")) as srv:
        yield srv, product, Database(url)


# odc-geo 0.5.3 (inside odc.stac.load) still calls shapely.ops.transform, deprecated in shapely 2.2
@pytest.mark.filterwarnings(r"ignore:The 'shapely.ops.transform\(\)' function is deprecated:DeprecationWarning")
def test_odc_stac_loads_over_http(served: Any) -> None:
    srv, product, db = served
    client = pystac_client.Client.open(srv.url)
    items = list(client.search(collections=[COLLECTION_ID], query={"grid:code": {"eq": "MGRS-31TCJ"}}).items())
    assert [i.id for i in items] == [NAME]
    item = items[0]
    assert item.assets["sre_red"].href.startswith(f"{srv.url}/assets/{NAME}/")
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY="0"):
        ds = odc_stac.load(items, bands=["sre_red", "sre_nir"], chunks={})
        loaded = ds.compute()
    for key in ("sre_red", "sre_nir"):
        rel = item.assets[key].href.split(f"/assets/{NAME}/", 1)[1]
        with rasterio.open(product.path / rel) as r:
            np.testing.assert_array_equal(loaded[key].values[0], r.read(1))
    # GDAL's range reads were recorded, as anonymous downloads of those assets
    rows = {(i, u) for i, u, _, _ in db.download_counts()}
    assert (NAME, "anonymous") in rows


def test_served_files_match_item_checksums(served: Any) -> None:
    srv, _, _ = served
    item = pystac_client.Client.open(srv.url).get_collection(COLLECTION_ID).get_item(NAME)
    assert item is not None
    for key in ("metadata", "thumbnail", "clm", "mg2"):
        a = item.assets[key]
        with urllib.request.urlopen(a.href, timeout=30) as r:
            data = r.read()
        assert len(data) == a.extra_fields["file:size"]
        assert "1220" + hashlib.sha256(data).hexdigest() == a.extra_fields["file:checksum"], key


def test_product_zip_holds_every_file(served: Any, tmp_path: Path) -> None:
    import zipfile

    srv, product, _ = served
    z = tmp_path / "p.zip"
    with urllib.request.urlopen(f"{srv.url}/download/{NAME}", timeout=60) as r:
        z.write_bytes(r.read())
    with zipfile.ZipFile(z) as zf:
        names = set(zf.namelist())
        assert {f"{NAME}/{f.path}" for f in product.files} <= names
        f = product.files[0]
        assert hashlib.sha256(zf.read(f"{NAME}/{f.path}")).hexdigest() == f.sha256


def test_served_json_validates_offline(served: Any) -> None:
    """The served item, collection and landing page validate against the STAC 1.1 core schemas
    (and the extension schemas stored with the tests)."""
    import json

    from test_stac_item import CORE_CATALOG, CORE_COLLECTION, CORE_ITEM, OfflineValidator

    srv = served[0]
    v = OfflineValidator()

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"{srv.url}{path}", timeout=30) as r:
            return json.loads(r.read())

    item = get(f"/collections/{COLLECTION_ID}/items/{NAME}")
    # proj:epsg (for stackstac 0.5) beside proj:code: valid under projection v1.2.0
    assert item["properties"]["proj:epsg"] == 32631
    assert v.validate(item, CORE_ITEM) == []
    v.validate(get(f"/collections/{COLLECTION_ID}"), CORE_COLLECTION)
    v.validate(get("/"), CORE_CATALOG)
