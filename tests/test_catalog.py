"""Static STAC catalog: layout readable by pystac, atomic replace, concurrent writers, verification."""

from __future__ import annotations

import json
import multiprocessing as mp
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pystac
import pytest
from test_muscate import FAST, make_inputs
from test_stac_item import CORE_CATALOG, CORE_COLLECTION, CORE_ITEM, OfflineValidator

from l2a.catalog.stac_item import make_item
from l2a.catalog.static import LOCK_NAME, StaticCatalog
from l2a.io.muscate import write_product


def fake_item(i: int, lon: float = 1.0, lat: float = 44.0) -> pystac.Item:
    """A small item (no files) for catalog mechanics."""
    t = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=i)
    box = [lon, lat, lon + 0.1, lat + 0.1]
    geom = {"type": "Polygon", "coordinates": [[[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]], [box[0], box[1]]]]}
    it = pystac.Item(f"item-{i:03d}", geom, box, t, {"eo:cloud_cover": float(i)}, collection="sentinel2-l2a-l2a")
    it.add_link(pystac.Link("collection", "../collection.json"))
    return it


def _add_many(root: str, start: int, n: int) -> None:
    cat = StaticCatalog(root)
    for i in range(start, start + n):
        cat.add_item(fake_item(i, lon=float(i % 7), lat=float(i % 5)))


def test_layout_and_pystac_reads_it(tmp_path: Path) -> None:
    res = write_product(tmp_path / "products", **make_inputs(), settings=FAST)
    item = make_item(res)
    cat = StaticCatalog(tmp_path / "catalog")
    path = cat.add_item(item)
    assert path == tmp_path / "catalog" / "sentinel2-l2a-l2a" / item.id / f"{item.id}.json"
    root = pystac.Catalog.from_file(str(tmp_path / "catalog" / "catalog.json"))
    colls = list(root.get_children())
    assert [c.id for c in colls] == ["sentinel2-l2a-l2a"]
    items = list(root.get_items(recursive=True))
    assert [i.id for i in items] == [item.id]
    got = items[0]
    assert got.assets["sre_red"].href == item.assets["sre_red"].href
    assert got.get_root() is not None and got.collection_id == "sentinel2-l2a-l2a"
    coll = json.loads(cat.collection_path().read_text())
    assert coll["extent"]["spatial"]["bbox"] == [pytest.approx(item.bbox)]
    assert coll["extent"]["temporal"]["interval"][0][0].startswith("2017-12-01T10:55:14.866")
    assert cat.verify(item.id) == []
    # validates against the core schemas, offline
    v = OfflineValidator()
    v.validate(json.loads(cat.catalog_path.read_text()), CORE_CATALOG)
    v.validate(coll, CORE_COLLECTION)
    # the stored item: core and every extension schema, none declared but unchecked
    assert v.validate(json.loads(path.read_text()), CORE_ITEM) == []
    # nothing temporary left around
    leftovers = [p for p in (tmp_path / "catalog").rglob(".*") if p.name != LOCK_NAME]
    assert leftovers == []


def test_readding_replaces(tmp_path: Path) -> None:
    cat = StaticCatalog(tmp_path)
    a = fake_item(1)
    cat.add_item(a)
    b = fake_item(1, lon=10.0)
    b.properties["eo:cloud_cover"] = 55.0
    cat.add_item(b)
    assert cat.item_ids() == ["item-001"]
    assert cat.get_item("item-001").properties["eo:cloud_cover"] == 55.0
    coll = json.loads(cat.collection_path().read_text())
    assert sum(1 for lk in coll["links"] if lk["rel"] == "item") == 1
    # extent grows to cover both versions
    assert coll["extent"]["spatial"]["bbox"][0] == [1.0, 44.0, 10.1, 44.1]
    assert cat.remove_item("item-001") and cat.item_ids() == [] and not cat.item_path("item-001").exists()
    assert not cat.remove_item("item-001")


def test_concurrent_writers(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(tmp_path), k * 10, 10)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cat = StaticCatalog(tmp_path)
    assert sorted(cat.item_ids()) == [f"item-{i:03d}" for i in range(40)]
    coll = json.loads(cat.collection_path().read_text())
    assert coll["extent"]["spatial"]["bbox"][0] == [0.0, 0.0, 6.1, 4.1]
    assert coll["extent"]["temporal"]["interval"][0] == ["2020-01-01T00:00:00.000000Z", "2020-02-09T00:00:00.000000Z"]
    root = pystac.Catalog.from_file(str(tmp_path / "catalog.json"))
    assert len(list(root.get_items(recursive=True))) == 40


def test_item_without_bbox_rejected(tmp_path: Path) -> None:
    it = fake_item(2)
    it.bbox = None
    with pytest.raises(ValueError, match="bbox"):
        StaticCatalog(tmp_path).add_item(it)
    assert StaticCatalog(tmp_path).item_ids() == []


def test_verify_reports_tampering(tmp_path: Path) -> None:
    res = write_product(tmp_path / "p", **make_inputs(2), settings=FAST)
    cat = StaticCatalog(tmp_path / "c")
    cat.add_item(make_item(res))
    qkl = res.path / res.file("QKL").path
    qkl.write_bytes(qkl.read_bytes() + b"x")
    problems: list[Any] = cat.verify(res.name)
    assert len(problems) == 1 and problems[0].startswith("thumbnail")
