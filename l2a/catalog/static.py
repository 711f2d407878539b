"""A static STAC catalog of the L2A products, updated atomically and safe for concurrent writers.

Layout (what :mod:`pystac` reads as a self-contained catalog)::

    ROOT/catalog.json                                 root catalog, one child per collection
    ROOT/sentinel2-l2a-l2a/collection.json            collection (extent kept up to date)
    ROOT/sentinel2-l2a-l2a/<item id>/<item id>.json   one item per product

Every file is written under a temporary name and renamed into place (:func:`os.replace`), so a
reader never sees a half-written JSON. Writers take an exclusive lock on ``ROOT/.catalog.lock``
(:func:`fcntl.flock`: processes on one host, or hosts whose file system honours it) around the
read-modify-write of ``collection.json``. Adding an item whose id exists replaces it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pystac

from l2a.catalog.stac_item import COLLECTION_ID, verify_item

LOCK_NAME: Final[str] = ".catalog.lock"
CATALOG_ID: Final[str] = "l2a"


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StaticCatalog:
    """A static STAC catalog rooted at ``root`` (created on first use).

    Parameters
    ----------
    root : path
        Folder of ``catalog.json``.
    title, description : str
        Of the root catalog (used when it is created).
    """

    def __init__(self, root: str | Path, *, title: str = "l2a Sentinel-2 L2A products",
                 description: str = "MUSCATE-format Sentinel-2 L2A products made by l2a") -> None:
        self.root = Path(root)
        self.title = title
        self.description = description
        with self.lock():
            if not (self.root / "catalog.json").is_file():
                cat = pystac.Catalog(CATALOG_ID, description, title=title)
                d = cat.to_dict(include_self_link=False)
                d["links"] = [{"rel": "root", "href": "./catalog.json", "type": "application/json", "title": title}]
                _write_json(self.root / "catalog.json", d)

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock of the catalog (blocks until free)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ paths
    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.json"

    def collection_path(self, collection: str = COLLECTION_ID) -> Path:
        return self.root / collection / "collection.json"

    def item_path(self, item_id: str, collection: str = COLLECTION_ID) -> Path:
        return self.root / collection / item_id / f"{item_id}.json"

    # ------------------------------------------------------------------ writing
    def _ensure_collection(self, collection: str) -> dict[str, Any]:
        path = self.collection_path(collection)
        if path.is_file():
            return _read_json(path)
        coll = pystac.Collection(
            id=collection,
            description="Sentinel-2 Level-2A surface reflectance (SRE, FRE) and masks in the MUSCATE/Theia format, made by l2a",
            extent=pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]), pystac.TemporalExtent([[datetime.now(UTC), None]])),
            title="Sentinel-2 L2A (l2a)",
            license="other",
            keywords=["Sentinel-2", "L2A", "surface reflectance", "MUSCATE"],
            providers=[pystac.Provider("l2a", roles=[pystac.ProviderRole.PROCESSOR]),
                       pystac.Provider("ESA", roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.LICENSOR],
                                       url="https://www.esa.int")],
        )
        d = coll.to_dict(include_self_link=False)
        d["extent"] = {"spatial": {"bbox": []}, "temporal": {"interval": []}}
        d["links"] = [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ]
        cat = _read_json(self.catalog_path)
        href = f"./{collection}/collection.json"
        if not any(lk.get("rel") == "child" and lk.get("href") == href for lk in cat["links"]):
            cat["links"].append({"rel": "child", "href": href, "type": "application/json", "title": d.get("title")})
            _write_json(self.catalog_path, cat)
        return d

    @staticmethod
    def _extend(coll: dict[str, Any], bbox: list[float], start: str, end: str) -> None:
        sp = coll["extent"]["spatial"]["bbox"]
        if sp:
            b = sp[0]
            sp[0] = [min(b[0], bbox[0]), min(b[1], bbox[1]), max(b[2], bbox[2]), max(b[3], bbox[3])]
        else:
            sp.append(list(bbox))
        ti = coll["extent"]["temporal"]["interval"]
        if ti:
            t = ti[0]
            ti[0] = [min(t[0], start), max(t[1], end)]
        else:
            ti.append([start, end])

    def add_item(self, item: pystac.Item) -> Path:
        """Add (or replace) ``item`` in its collection (default ``sentinel2-l2a-l2a``); returns its JSON path."""
        collection = item.collection_id or COLLECTION_ID
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        d["collection"] = collection
        keep = [lk for lk in d.get("links", []) if lk.get("rel") not in ("self", "root", "parent", "collection")]
        d["links"] = [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            *keep,
        ]
        if item.bbox is None:
            raise ValueError(f"item {item.id} has no bbox")
        t0 = item.common_metadata.start_datetime or item.datetime
        t1 = item.common_metadata.end_datetime or item.datetime
        if t0 is None or t1 is None:
            raise ValueError(f"item {item.id} has no datetime")
        path = self.item_path(item.id, collection)
        with self.lock():
            coll = self._ensure_collection(collection)
            _write_json(path, d)
            href = f"./{item.id}/{item.id}.json"
            if not any(lk.get("rel") == "item" and lk.get("href") == href for lk in coll["links"]):
                coll["links"].append({"rel": "item", "href": href, "type": "application/geo+json"})
            self._extend(coll, [float(x) for x in item.bbox[:4]], _iso(t0), _iso(t1))
            _write_json(self.collection_path(collection), coll)
        return path

    def remove_item(self, item_id: str, collection: str = COLLECTION_ID) -> bool:
        """Remove an item (its JSON and the collection link); False when absent."""
        path = self.item_path(item_id, collection)
        with self.lock():
            cpath = self.collection_path(collection)
            if not cpath.is_file():
                return False
            coll = _read_json(cpath)
            href = f"./{item_id}/{item_id}.json"
            links = [lk for lk in coll["links"] if not (lk.get("rel") == "item" and lk.get("href") == href)]
            found = len(links) != len(coll["links"])
            coll["links"] = links
            _write_json(cpath, coll)
            if path.is_file():
                path.unlink()
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
                found = True
        return found

    # ------------------------------------------------------------------ reading
    def item_ids(self, collection: str = COLLECTION_ID) -> list[str]:
        """Ids of the items listed in the collection."""
        cpath = self.collection_path(collection)
        if not cpath.is_file():
            return []
        return [Path(lk["href"]).stem for lk in _read_json(cpath)["links"] if lk.get("rel") == "item"]

    def get_item(self, item_id: str, collection: str = COLLECTION_ID) -> pystac.Item:
        """Read one item (:class:`FileNotFoundError` when absent)."""
        return pystac.Item.from_file(str(self.item_path(item_id, collection)))

    def items(self, collection: str = COLLECTION_ID) -> Iterator[pystac.Item]:
        for i in self.item_ids(collection):
            yield self.get_item(i, collection)

    def verify(self, item_id: str, collection: str = COLLECTION_ID) -> list[str]:
        """Re-check the files of one item against its ``file:checksum`` (:func:`verify_item`)."""
        return verify_item(self.get_item(item_id, collection))


__all__ = ["StaticCatalog", "verify_item"]
