"""``l2a serve``: a local HTTP service over the static STAC catalog of the products.

Endpoints (``{base}`` is the URL the client used, so links work behind any host name):

- **STAC API** 1.0 (core, collections, OGC API Features, item search with the ``query``,
  ``filter`` (CQL2 text and JSON) and ``sort`` extensions): ``/``, ``/conformance``,
  ``/queryables``, ``/collections``, ``/collections/{id}``, ``/collections/{id}/items``,
  ``/collections/{id}/items/{item}``, ``/search`` (GET and POST; ``bbox``, ``intersects``,
  ``datetime``, ``collections``, ``ids``, ``limit``, ``query``, ``filter``, ``sortby``, paging
  through ``next`` links with a ``token``). Served asset hrefs point at ``/assets/…``.
- **Resto** ``/resto/api/collections/{collection}/search.json`` (PEPS/Theia parameters, see
  :mod:`l2a.catalog.resto`; ``/resto2/…`` too, Theia's spelling; the collection is ours or
  ``SENTINEL2``), resto-style downloads ``/resto[2]/collections/{collection}/{item}/download[/]``
  and Theia's token service ``/services/authenticate/`` (the token only names the user), so
  that PEPS/Theia download scripts work with just the server prefix changed.
- **Downloads**: ``/download/{item}`` (the product zip: the one the packager wrote beside the
  product folder, or one made once into a cache folder), ``/assets/{item}/{file}`` (any file
  inside the product folder; paths leaving it are refused). Both support HTTP ``Range``;
  each download is recorded in the status database (:meth:`Database.record_download`): the
  user (``X-User`` header set by an authenticating reverse proxy, or the HTTP basic-auth user
  name, else ``anonymous``), the item, the asset, the client address, the time and the bytes
  actually sent.

The catalog is indexed in memory and re-read when ``catalog.json`` or a ``collection.json``
changes (their modification times are checked at each request; :class:`StaticCatalog`
rewrites the collection on every publication), so a running server sees new products at once.

Why not ``rustac serve`` or stac-fastapi: rustac's memory backend has no ``query``/``filter``
extension and runs as a separate process that knows neither the resto endpoint nor the
download accounting; stac-fastapi needs a database backend (pgstac, elasticsearch) or a
hand-written one behind its own request models. A small Starlette application (the framework
under FastAPI and stac-fastapi) with an in-memory index does all of it in one process; CQL2 is
evaluated by the ``cql2`` package (the reference Rust implementation).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from l2a.catalog.resto import (
    BadQuery,
    RestoSettings,
    parse_datetime,
    parse_resto_params,
    resto_feature,
    resto_page_time_key,
    resto_response,
)
from l2a.errors import InputError

__all__ = [
    "CONFORMANCE",
    "CatalogIndex",
    "ServeSettings",
    "ServerThread",
    "create_app",
    "serve",
]

log = logging.getLogger(__name__)

STAC_VERSION: Final[str] = "1.1.0"
GEOJSON: Final[str] = "application/geo+json"
JSON: Final[str] = "application/json"

CONFORMANCE: Final[tuple[str, ...]] = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
)

#: Operators of the STAC API ``query`` extension.
QUERY_OPS: Final[frozenset[str]] = frozenset(
    {"eq", "neq", "lt", "lte", "gt", "gte", "startsWith", "endsWith", "contains", "in"}
)


@dataclass(frozen=True)
class ServeSettings:
    """What ``l2a serve`` serves.

    Attributes
    ----------
    catalog : Path
        Static STAC catalog folder (``catalog.json`` at its root).
    products : Path
        Products folder: the only files served (product folders and their zips).
    database_url : str or None
        Status database receiving the download records; ``None``: downloads are only logged.
    zip_cache : Path or None
        Where zips made on request are kept (``None``: a folder under the system temp dir).
    zip_cache_max_gb : float
        Size of that cache (GB, 1e9 bytes); the least recently made zips are removed beyond it.
    default_limit : int
        Items per page of ``/search`` and ``/collections/{id}/items`` when no ``limit`` is given.
    max_limit : int
        Largest page (a larger ``limit`` is lowered to it, as OGC API Features allows).
    resto : RestoSettings
        Paging of the resto endpoint.
    collection : str
        Our products' collection (``processing.collection`` of the site; the same default as
        :data:`l2a.catalog.stac_item.COLLECTION_ID`). Resto searches on it answer an empty
        page, not 404, before the first product is published.
    resto_aliases : tuple of str
        Collection names of resto URLs that mean ``collection`` (Theia scripts ask for
        ``SENTINEL2``), besides the collection ids themselves.
    trust_user_header : bool
        Take the user name of download records from the ``X-User`` header. Set it only when
        an authenticating reverse proxy sets (and overwrites) that header; the server itself
        authenticates nobody (a basic-auth user name is recorded, its password not checked).
    title, description : str
        Of the landing page.
    """

    catalog: Path
    products: Path
    database_url: str | None = None
    zip_cache: Path | None = None
    zip_cache_max_gb: float = 20.0
    default_limit: int = 10
    max_limit: int = 1000
    resto: RestoSettings = field(default_factory=RestoSettings)
    collection: str = "sentinel2-l2a-l2a"
    resto_aliases: tuple[str, ...] = ("SENTINEL2",)
    trust_user_header: bool = True
    title: str = "l2a Sentinel-2 L2A products"
    description: str = "STAC API, resto search.json and downloads over the l2a static catalog"

    @classmethod
    def from_settings(cls, settings: Any) -> ServeSettings:
        """From a site's :class:`l2a.config.Settings` (catalog, products, database, cache)."""
        return cls(
            catalog=Path(settings.catalog),
            products=Path(settings.products),
            database_url=settings.db_url,
            zip_cache=Path(settings.workdir) / "cache" / "zips",
            collection=settings.processing.collection,
        )


def _as_serve_settings(obj: ServeSettings | Any) -> ServeSettings:
    if isinstance(obj, ServeSettings):
        return obj
    if isinstance(obj, str | os.PathLike):
        from l2a.config import load_config

        return ServeSettings.from_settings(load_config(Path(obj)))
    if hasattr(obj, "catalog") and hasattr(obj, "products") and hasattr(obj, "db_url"):
        return ServeSettings.from_settings(obj)
    raise TypeError(f"expected ServeSettings, Settings or a configuration path, not {type(obj).__name__}")


# --------------------------------------------------------------------------- the index


def _parse_time(v: Any) -> datetime | None:
    if not v:
        return None
    try:
        t = datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass
class Entry:
    """One indexed item."""

    item: dict[str, Any]
    collection: str
    path: Path
    footprint: Any
    start: datetime | None
    end: datetime | None
    product_dir: Path | None
    #: asset key -> path relative to ``product_dir`` (assets stored inside it)
    asset_files: dict[str, str]

    @property
    def id(self) -> str:
        return str(self.item["id"])


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


@dataclass(frozen=True)
class Snapshot:
    """The index at one moment (replaced as a whole on reload, so a request sees one state)."""

    collections: dict[str, dict[str, Any]]
    entries: list[Entry]
    by_id: dict[str, Entry]


class CatalogIndex:
    """In-memory index of a static STAC catalog, re-read when its catalogs/collections change.

    Parameters
    ----------
    root : Path
        Folder of ``catalog.json``.
    products : Path
        Products folder (assets inside it become downloadable).
    """

    def __init__(self, root: Path, products: Path) -> None:
        self.root = Path(root)
        self.products = Path(products).resolve()
        #: the products folder as configured (asset hrefs may use it rather than the real path)
        self.products_given = Path(os.path.normpath(Path(products).absolute()))
        self._lock = threading.Lock()
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self.snapshot = Snapshot({}, [], {})
        self._cache: dict[tuple[str, str | None], tuple[tuple[int, int], Entry]] = {}
        self.loads = 0

    @property
    def collections(self) -> dict[str, dict[str, Any]]:
        return self.snapshot.collections

    @property
    def entries(self) -> list[Entry]:
        return self.snapshot.entries

    @property
    def by_id(self) -> dict[str, Entry]:
        return self.snapshot.by_id

    # -- change detection
    def _files(self) -> list[Path]:
        files = [self.root / "catalog.json"]
        files += [Path(c["_path"]) for c in self.collections.values() if "_path" in c]
        return files

    def _stat_signature(self, files: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
        sig = []
        for f in files:
            try:
                st = f.stat()
                sig.append((str(f), st.st_mtime_ns, st.st_size))
            except OSError:
                sig.append((str(f), -1, -1))
        return tuple(sig)

    def refresh(self) -> bool:
        """Re-read the catalog when it changed; returns whether it did."""
        with self._lock:
            if self._signature is not None and self._stat_signature(self._files()) == self._signature:
                return False
            self._load()
            return True

    # -- loading
    def _load(self) -> None:
        root = self.root / "catalog.json"
        if not self.root.is_dir():
            raise InputError(self.root, "the catalog folder does not exist; fix `catalog` in the configuration (or run `l2a init`)")
        if not root.is_file():  # nothing published yet: serve an empty catalog until there is one
            self.snapshot = Snapshot({}, [], {})
            self._signature = self._stat_signature([root])
            self.loads += 1
            log.warning("%s has no catalog.json yet: serving an empty catalog", self.root)
            return
        collections: dict[str, dict[str, Any]] = {}
        entries: list[Entry] = []
        seen: set[str] = set()
        files: list[Path] = [root]
        cache: dict[tuple[str, str | None], tuple[tuple[int, int], Entry]] = {}

        def item(path: str, collection: str | None) -> None:
            # items whose file did not change since the last load are reused (a publication
            # then costs one stat per item plus the new item, not a full re-read)
            try:
                st = os.stat(path)
            except OSError:
                return
            key, sig = (path, collection), (st.st_mtime_ns, st.st_size)
            hit = self._cache.get(key)
            if hit is not None and hit[0] == sig:
                entry = hit[1]
            else:
                try:
                    with open(path, encoding="utf-8") as fh:
                        d = json.load(fh)
                    entry = self._entry(d, Path(path), collection)
                except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    log.warning("skipping item %s: %s", path, exc)
                    return
            cache[key] = (sig, entry)
            entries.append(entry)

        def walk(path: Path, collection: str | None, depth: int) -> None:
            rp = str(path.resolve())
            if rp in seen or depth > 8:
                return
            seen.add(rp)
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("skipping %s: %s", path, exc)
                return
            if d.get("type") == "Collection":
                collection = str(d["id"])
                d["_path"] = str(path)
                collections.setdefault(collection, d)
                files.append(path)
            for lk in d.get("links", []):
                rel, href = lk.get("rel"), lk.get("href")
                if rel not in ("child", "item") or not isinstance(href, str) or "://" in href:
                    continue
                target = os.path.normpath(os.path.join(path.parent, unquote(href)))
                if rel == "item":
                    if target not in seen:
                        seen.add(target)
                        item(target, collection)
                elif os.path.isfile(target):
                    walk(Path(target), collection, depth + 1)

        walk(root, None, 0)
        entries.sort(key=lambda e: (e.start or datetime.min.replace(tzinfo=UTC), e.id))
        by_id: dict[str, Entry] = {}
        for e in entries:
            by_id.setdefault(e.id, e)
        self.snapshot = Snapshot(collections, entries, by_id)
        self._cache = cache
        self._signature = self._stat_signature(files)
        self.loads += 1
        log.info("catalog %s: %d collections, %d items", self.root, len(collections), len(entries))

    def _entry(self, d: dict[str, Any], path: Path, collection: str | None) -> Entry:
        from shapely.errors import ShapelyError
        from shapely.geometry import shape

        props = d.setdefault("properties", {})
        coll = str(d.get("collection") or collection or "")
        footprint = None
        if d.get("geometry"):
            with contextlib.suppress(ShapelyError, ValueError, TypeError, KeyError, AttributeError):
                footprint = shape(d["geometry"])
        start = _parse_time(props.get("start_datetime") or props.get("datetime"))
        end = _parse_time(props.get("end_datetime") or props.get("datetime"))
        # the product folder: products/<id> if present, else the folder of the metadata asset
        here = str(path.parent)
        local: dict[str, str | None] = {}
        for k, a in d.get("assets", {}).items():
            href = str(a.get("href", ""))
            if href.startswith("file://"):
                href = unquote(href[7:])
            local[k] = None if "://" in href else os.path.normpath(os.path.join(here, href))
        product_dir: Path | None = None
        candidate = self.products / str(d["id"])
        prefixes = {str(candidate), str(self.products_given / str(d["id"]))}
        if candidate.is_dir():
            product_dir = candidate.resolve()
        else:
            meta = local.get("metadata")
            if meta is not None and _inside(Path(meta).parent, self.products):
                product_dir = Path(meta).parent.resolve()
                prefixes.add(os.path.dirname(meta))
        if product_dir is not None and not _inside(product_dir, self.products):
            product_dir = None
        # asset key -> path inside the product folder; lexical here (fast: no file system
        # calls per asset), the download handler re-checks the real path (symlinks) strictly
        files: dict[str, str] = {}
        if product_dir is not None:
            marker = f"/{product_dir.name}/"
            prefixes = {x + os.sep for x in (*prefixes, str(product_dir))}
            for k, p in local.items():
                if p is None:
                    # a URL (items written with ItemSettings.href_base): .../<product>/<file>
                    href = urlsplit(str(d["assets"][k].get("href", ""))).path
                    if marker not in href:
                        continue
                    p = os.path.normpath(os.path.join(product_dir, unquote(href.rsplit(marker, 1)[1])))
                prefix = next((x for x in prefixes if p.startswith(x)), None)
                if prefix is not None:
                    files[k] = p[len(prefix):].replace(os.sep, "/")
        return Entry(d, coll, path, footprint, start, end, product_dir, files)


# --------------------------------------------------------------------------- STAC search


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _bad(message: str) -> _BadRequest:
    return _BadRequest(message)


@dataclass
class SearchParams:
    """A validated item search."""

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: Any = None
    intersects: Any = None
    start: datetime | None = None
    end: datetime | None = None
    query: dict[str, dict[str, Any]] | None = None
    filter: Any = None  # cql2.Expr
    sortby: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int = 10
    offset: int = 0


def _list(v: Any, name: str) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise _bad(f"{name} must be a list of strings or a comma-separated string")


def _parse_bbox(v: Any) -> Any:
    from shapely.geometry import box

    if isinstance(v, str):
        try:
            v = [float(x) for x in v.split(",")]
        except ValueError:
            raise _bad(f"bbox {v!r} is not comma-separated numbers") from None
    if not isinstance(v, list) or len(v) not in (4, 6) or not all(isinstance(x, int | float) for x in v):
        raise _bad("bbox must be 4 (or 6) numbers: minlon,minlat,maxlon,maxlat")
    x0, y0, x1, y1 = (v[0], v[1], v[3], v[4]) if len(v) == 6 else v
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise _bad("bbox is out of range: lon in [-180, 180], lat in [-90, 90], minlat <= maxlat")
    if x0 > x1:  # crosses the antimeridian
        from shapely.geometry import MultiPolygon

        return MultiPolygon([box(x0, y0, 180, y1), box(-180, y0, x1, y1)])
    return box(x0, y0, x1, y1)


def _parse_intersects(v: Any) -> Any:
    from shapely import make_valid
    from shapely.errors import ShapelyError
    from shapely.geometry import shape

    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise _bad("intersects must be a GeoJSON geometry") from None
    if not isinstance(v, dict) or "type" not in v:
        raise _bad("intersects must be a GeoJSON geometry object")
    try:
        g = shape(v)
    except (ShapelyError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise _bad(f"intersects is not a valid GeoJSON geometry ({exc})") from None
    if g.is_empty:
        raise _bad("intersects is an empty geometry")
    return g if g.is_valid else make_valid(g)


def _parse_datetime_range(v: str) -> tuple[datetime | None, datetime | None]:
    try:
        if "/" in v:
            a, b = v.split("/", 1)
            start = None if a in ("", "..") else parse_datetime("datetime", a)
            end = None if b in ("", "..") else parse_datetime("datetime", b, end_of_day=True)
            if start and end and start > end:
                raise _bad(f"datetime {v!r}: the start is after the end")
            return start, end
        start = parse_datetime("datetime", v)
        end = parse_datetime("datetime", v, end_of_day=True)
        return start, end
    except BadQuery as exc:
        raise _bad(f"datetime {exc.problem}; intervals are START/END with .. for open ends") from None


def _parse_sortby(v: Any) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    if isinstance(v, str):
        for part in (x.strip() for x in v.split(",")):
            if not part:
                continue
            desc = part.startswith("-")
            out.append((part.lstrip("+- "), desc))
    elif isinstance(v, list):
        for s in v:
            if not isinstance(s, dict) or "field" not in s:
                raise _bad('sortby entries must be {"field": ..., "direction": "asc"|"desc"}')
            d = str(s.get("direction", "asc")).lower()
            if d not in ("asc", "desc"):
                raise _bad(f"sortby direction {d!r}: use asc or desc")
            out.append((str(s["field"]), d == "desc"))
    else:
        raise _bad("sortby must be a string (-field,+field) or a list of {field, direction}")
    return [(f.removeprefix("properties."), d) for f, d in out]


def _parse_filter(v: Any, lang: str | None) -> Any:
    import cql2

    if lang is not None and lang not in ("cql2-text", "cql2-json"):
        raise _bad(f"filter-lang {lang!r}: use cql2-text or cql2-json")
    if isinstance(v, str) and lang == "cql2-json":
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise _bad("filter is not JSON (filter-lang=cql2-json)") from None
    try:
        expr = cql2.Expr(v)
        expr.validate()
    except Exception as exc:  # cql2 raises its own error types (parse, validation)
        raise _bad(f"filter is not valid CQL2: {str(exc)[:300]}") from None
    return expr


def _parse_query(v: Any) -> dict[str, dict[str, Any]]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise _bad('query must be JSON, e.g. {"eo:cloud_cover": {"lt": 20}}') from None
    if not isinstance(v, dict):
        raise _bad('query must be an object, e.g. {"eo:cloud_cover": {"lt": 20}}')
    for name, ops in v.items():
        if not isinstance(ops, dict) or not ops:
            raise _bad(f"query on {name!r} must be an object of operators, e.g. {{\"lt\": 20}}")
        for op in ops:
            if op not in QUERY_OPS:
                raise _bad(f"query operator {op!r} on {name!r}: use one of {', '.join(sorted(QUERY_OPS))}")
    return v


def parse_search(args: Mapping[str, Any], settings: ServeSettings, *, post: bool) -> SearchParams:
    """Validate search parameters (a POST body, or GET parameters as strings)."""
    known = {"collections", "ids", "bbox", "intersects", "datetime", "query", "filter",
             "filter-lang", "filter_lang", "sortby", "limit", "token", "fields", "filter-crs", "f"}
    unknown = sorted(k for k in args if k not in known)
    if unknown:
        raise _bad(f"unknown search parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    p = SearchParams(limit=settings.default_limit)
    p.collections = _list(args.get("collections"), "collections")
    p.ids = _list(args.get("ids"), "ids")
    if args.get("bbox") is not None and args.get("intersects") is not None:
        raise _bad("give bbox or intersects, not both")
    if args.get("bbox") is not None:
        p.bbox = _parse_bbox(args["bbox"])
    if args.get("intersects") is not None:
        p.intersects = _parse_intersects(args["intersects"])
    if args.get("datetime"):
        if not isinstance(args["datetime"], str):
            raise _bad("datetime must be a string: an RFC 3339 instant or START/END")
        p.start, p.end = _parse_datetime_range(args["datetime"])
    if args.get("query") is not None:
        p.query = _parse_query(args["query"])
    if args.get("filter") is not None:
        lang = args.get("filter-lang") or args.get("filter_lang")
        if lang is None:
            lang = "cql2-json" if isinstance(args["filter"], dict) else "cql2-text"
        p.filter = _parse_filter(args["filter"], lang)
    if args.get("sortby") is not None:
        p.sortby = _parse_sortby(args["sortby"])
    if args.get("limit") is not None:
        try:
            limit = int(args["limit"])
        except (TypeError, ValueError):
            raise _bad(f"limit {args['limit']!r} is not an integer") from None
        if limit < 1:
            raise _bad(f"limit {limit} must be at least 1")
        p.limit = min(limit, settings.max_limit)
    if args.get("token") is not None:
        tok = str(args["token"])
        if not tok.isdigit():
            raise _bad(f"token {tok!r} is not a paging token of this server")
        p.offset = int(tok)
    return p


def _value(entry: Entry, name: str) -> Any:
    if name == "id":
        return entry.id
    if name == "collection":
        return entry.collection
    if name == "datetime":
        return entry.start
    return entry.item["properties"].get(name)


def _query_ok(value: Any, op: str, arg: Any) -> bool:
    if value is None:
        return op == "neq"
    try:
        if op == "eq":
            return bool(value == arg)
        if op == "neq":
            return bool(value != arg)
        if op == "lt":
            return bool(value < arg)
        if op == "lte":
            return bool(value <= arg)
        if op == "gt":
            return bool(value > arg)
        if op == "gte":
            return bool(value >= arg)
        if op == "startsWith":
            return str(value).startswith(str(arg))
        if op == "endsWith":
            return str(value).endswith(str(arg))
        if op == "contains":
            return str(arg) in str(value) if isinstance(value, str) else arg in value
        if op == "in":
            return value in arg
    except TypeError:
        return False
    return False


def _coerce(value: Any, arg: Any) -> Any:
    """Compare datetimes as datetimes when the query gives a date string."""
    if isinstance(value, datetime) and isinstance(arg, str):
        try:
            return parse_datetime("query", arg)
        except BadQuery:
            return arg
    return arg


def _matches(e: Entry, p: SearchParams) -> bool:
    if p.collections is not None and e.collection not in p.collections:
        return False
    if p.ids is not None and e.id not in p.ids:
        return False
    area = p.bbox if p.bbox is not None else p.intersects
    if area is not None and (e.footprint is None or not e.footprint.intersects(area)):
        return False
    if p.start is not None and (e.end is None or e.end < p.start):
        return False
    if p.end is not None and (e.start is None or e.start > p.end):
        return False
    if p.query:
        for name, ops in p.query.items():
            v = _value(e, name)
            for op, arg in ops.items():
                if not _query_ok(v, op, _coerce(v, arg)):
                    return False
    if p.filter is not None:
        try:
            if not p.filter.matches(e.item):
                return False
        except Exception:  # a comparison cql2 cannot make on this item: not a match
            return False
    return True


def _sorted(entries: list[Entry], sortby: list[tuple[str, bool]]) -> list[Entry]:
    keys = sortby or [("datetime", True)]
    out = sorted(entries, key=lambda e: e.id)
    for name, desc in reversed(keys):
        present = [e for e in out if _value(e, name) is not None]
        missing = [e for e in out if _value(e, name) is None]
        try:
            present.sort(key=lambda e, n=name: _value(e, n), reverse=desc)  # type: ignore[misc]
        except TypeError:
            present.sort(key=lambda e, n=name: str(_value(e, n)), reverse=desc)  # type: ignore[misc]
        out = present + missing
    return out


# --------------------------------------------------------------------------- rendering


class _Urls:
    """URLs of this server for one request."""

    def __init__(self, request: Request) -> None:
        self.base = str(request.base_url).rstrip("/")

    def __call__(self, *parts: str) -> str:
        return self.base + "/" + "/".join(quote(p, safe="/") for p in parts)

    def asset(self, item_id: str, rel: str) -> str:
        return self(f"assets/{quote(item_id, safe='')}/{quote(rel, safe='/')}")

    def download(self, item_id: str) -> str:
        return self(f"download/{quote(item_id, safe='')}")


def _render_item(e: Entry, urls: _Urls) -> dict[str, Any]:
    d = {k: v for k, v in e.item.items() if k != "links"}
    d["collection"] = e.collection
    assets = {}
    for k, a in e.item.get("assets", {}).items():
        a = dict(a)
        if k in e.asset_files:
            a["href"] = urls.asset(e.id, e.asset_files[k])
        assets[k] = a
    d["assets"] = assets
    coll = urls("collections", e.collection)
    keep = [
        lk for lk in e.item.get("links", [])
        if lk.get("rel") not in ("self", "root", "parent", "collection", "item", "child")
    ]
    d["links"] = [
        {"rel": "self", "href": f"{coll}/items/{quote(e.id, safe='')}", "type": GEOJSON},
        {"rel": "parent", "href": coll, "type": JSON},
        {"rel": "collection", "href": coll, "type": JSON},
        {"rel": "root", "href": urls(""), "type": JSON},
        *keep,
    ]
    if e.product_dir is not None:
        d["links"].append({"rel": "enclosure", "href": urls.download(e.id), "type": "application/zip",
                           "title": "the whole product as a zip"})
    return d


def _render_collection(c: dict[str, Any], urls: _Urls) -> dict[str, Any]:
    d = {k: v for k, v in c.items() if k not in ("links", "_path")}
    d.setdefault("stac_version", STAC_VERSION)
    keep = [lk for lk in c.get("links", []) if lk.get("rel") not in ("self", "root", "parent", "item", "child", "items")]
    u = urls("collections", str(c["id"]))
    d["links"] = [
        {"rel": "self", "href": u, "type": JSON},
        {"rel": "root", "href": urls(""), "type": JSON},
        {"rel": "parent", "href": urls(""), "type": JSON},
        {"rel": "items", "href": f"{u}/items", "type": GEOJSON},
        *keep,
    ]
    return d


def _json(data: Any, status: int = 200, media_type: str = JSON) -> JSONResponse:
    return JSONResponse(data, status_code=status, media_type=media_type)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return _json({"code": code, "description": message}, status)


# --------------------------------------------------------------------------- download accounting


def request_user(request: Request, *, trust_header: bool = True) -> str:
    """Who asks, for the download records.

    In order: the ``X-User`` header (set by an authenticating proxy), a bearer token of
    ``/services/authenticate/`` (Theia scripts; both only with ``trust_header``), the
    basic-auth user name (PEPS scripts), else ``anonymous``.
    """
    user = request.headers.get("x-user", "").strip() if trust_header else ""
    if user:
        return user[:255]
    auth = request.headers.get("authorization", "")
    if trust_header and auth.lower().startswith("bearer l2a-user-"):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
            tok = auth[len("bearer l2a-user-"):].strip()
            name = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)).decode("utf-8")
            if name:
                return name[:255]
    if auth.lower().startswith("basic "):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
            name = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0]
            if name:
                return name[:255]
    return "anonymous"


class _Recorder:
    """Records downloads in the status database (or only logs them)."""

    def __init__(self, url: str | None) -> None:
        self.db: Any = None
        self._lock = threading.Lock()
        if url:
            from sqlalchemy.exc import SQLAlchemyError

            from l2a.production.db import Database

            self.db = Database(url)
            try:
                self.db.upgrade()
            except SQLAlchemyError as exc:
                self.db.dispose()
                raise InputError(
                    self.db.url.render_as_string(hide_password=True),
                    f"cannot open the status database for the download records: {str(exc).splitlines()[0]}",
                ) from None

    def record(self, item_id: str, user: str, nbytes: int, asset: str | None, client: str | None) -> None:
        log.info("download %s %s by %s (%s): %d bytes", item_id, asset or "zip", user, client, nbytes)
        if self.db is None:
            return
        try:
            self.db.record_download(item_id, user=user, nbytes=nbytes, asset=asset, client=client)
        except Exception:  # never let accounting break a finished transfer
            log.exception("could not record the download of %s", item_id)

    def close(self) -> None:
        if self.db is not None:
            self.db.dispose()


class _Counted:
    """ASGI wrapper of a response: counts the body bytes sent and records the download.

    The record is written just before the last body chunk goes out, so a client that has its
    whole answer also finds the download in the database; a transfer cut short is recorded
    with the bytes sent until then.
    """

    def __init__(self, response: Response, done: Callable[[int], None]) -> None:
        self.response = response
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0
        status = 200
        recorded = False

        async def record(nbytes: int) -> None:
            nonlocal recorded
            if not recorded and status < 400 and scope.get("method") != "HEAD":
                recorded = True
                await run_in_threadpool(self.done, nbytes)

        length: int | None = None

        async def counting(message: Message) -> None:
            nonlocal sent, status, length
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-length":
                        length = int(v)
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body", False) or (length is not None and sent >= length):
                    await record(sent)
            await send(message)

        try:
            await self.response(scope, receive, counting)
        finally:
            await record(sent)


# --------------------------------------------------------------------------- application


class _App:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.index = CatalogIndex(settings.catalog, settings.products)
        self.index.refresh()
        self.recorder = _Recorder(settings.database_url)
        self.zip_cache = Path(settings.zip_cache or Path(tempfile.gettempdir()) / "l2a-serve-zips")
        self._zip_locks: dict[str, threading.Lock] = {}
        self._zip_guard = threading.Lock()

    async def fresh(self) -> Snapshot:
        await run_in_threadpool(self.index.refresh)
        return self.index.snapshot

    # ---- STAC core
    async def landing(self, request: Request) -> Response:
        idx = await self.fresh()
        urls = _Urls(request)
        links = [
            {"rel": "self", "href": urls(""), "type": JSON},
            {"rel": "root", "href": urls(""), "type": JSON},
            {"rel": "conformance", "href": urls("conformance"), "type": JSON},
            {"rel": "data", "href": urls("collections"), "type": JSON},
            {"rel": "search", "href": urls("search"), "type": GEOJSON, "method": "GET"},
            {"rel": "search", "href": urls("search"), "type": GEOJSON, "method": "POST"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "href": urls("queryables"),
             "type": "application/schema+json"},
        ]
        for cid, c in idx.collections.items():
            links.append({"rel": "child", "href": urls("collections", cid), "type": JSON,
                          "title": str(c.get("title") or cid)})
        for cid in idx.collections:
            links.append({"rel": "alternate", "href": urls(f"resto/api/collections/{cid}/search.json"),
                          "type": JSON, "title": f"resto search.json of {cid}"})
        return _json({
            "type": "Catalog", "id": "l2a", "stac_version": STAC_VERSION, "title": self.settings.title,
            "description": self.settings.description, "conformsTo": list(CONFORMANCE), "links": links,
        })

    async def conformance(self, request: Request) -> Response:
        return _json({"conformsTo": list(CONFORMANCE)})

    async def queryables(self, request: Request) -> Response:
        urls = _Urls(request)
        props = {
            "id": {"type": "string", "title": "item id"},
            "collection": {"type": "string"},
            "datetime": {"type": "string", "format": "date-time"},
            "geometry": {"$ref": "https://geojson.org/schema/Geometry.json"},
            "eo:cloud_cover": {"type": "number", "minimum": 0, "maximum": 100, "title": "cloud cover (%)"},
            "l2a:snow_cover": {"type": "number", "minimum": 0, "maximum": 100, "title": "snow cover (%)"},
            "l2a:water_cover": {"type": "number", "minimum": 0, "maximum": 100},
            "l2a:cloud_shadow_cover": {"type": "number", "minimum": 0, "maximum": 100},
            "grid:code": {"type": "string", "title": "MGRS tile, e.g. MGRS-31TCJ"},
            "platform": {"type": "string"},
            "sat:relative_orbit": {"type": "integer"},
            "s2:processing_baseline": {"type": "string"},
        }
        return _json({"$schema": "https://json-schema.org/draft/2019-09/schema", "$id": urls("queryables"),
                      "type": "object", "title": "queryables", "properties": props,
                      "additionalProperties": True}, media_type="application/schema+json")

    async def collections(self, request: Request) -> Response:
        idx = await self.fresh()
        urls = _Urls(request)
        return _json({
            "collections": [_render_collection(c, urls) for c in idx.collections.values()],
            "links": [{"rel": "self", "href": urls("collections"), "type": JSON},
                      {"rel": "root", "href": urls(""), "type": JSON}],
        })

    def _collection(self, idx: Snapshot, cid: str) -> dict[str, Any]:
        c = idx.collections.get(cid)
        if c is None:
            raise HTTPException(404, f"no collection {cid!r}; collections: {', '.join(idx.collections) or 'none'}")
        return c

    async def collection(self, request: Request) -> Response:
        idx = await self.fresh()
        c = self._collection(idx, request.path_params["cid"])
        return _json(_render_collection(c, _Urls(request)))

    async def item(self, request: Request) -> Response:
        idx = await self.fresh()
        cid, iid = request.path_params["cid"], request.path_params["iid"]
        self._collection(idx, cid)
        e = next((e for e in idx.entries if e.id == iid and e.collection == cid), None)
        if e is None:
            raise HTTPException(404, f"no item {iid!r} in collection {cid!r}")
        return _json(_render_item(e, _Urls(request)), media_type=GEOJSON)

    async def items(self, request: Request) -> Response:
        idx = await self.fresh()
        cid = request.path_params["cid"]
        self._collection(idx, cid)
        args: dict[str, Any] = dict(request.query_params)
        args["collections"] = cid
        return await self._search(request, args, post=False, self_path=f"collections/{cid}/items")

    # ---- item search
    async def search_get(self, request: Request) -> Response:
        return await self._search(request, dict(request.query_params), post=False, self_path="search")

    async def search_post(self, request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "BadRequest", "the POST body must be a JSON object of search parameters")
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "the POST body must be a JSON object of search parameters")
        return await self._search(request, body, post=True, self_path="search")

    async def _search(self, request: Request, args: dict[str, Any], *, post: bool, self_path: str) -> Response:
        idx = await self.fresh()
        try:
            p = parse_search(args, self.settings, post=post)
        except _BadRequest as exc:
            return _error(400, "BadRequest", exc.message)
        if p.collections is not None:
            missing = [c for c in p.collections if c not in idx.collections]
            if missing and self_path == "search":
                return _error(400, "BadRequest", f"unknown collection(s) {', '.join(missing)}; collections: {', '.join(idx.collections)}")
        entries = idx.entries
        matched = await run_in_threadpool(lambda: _sorted([e for e in entries if _matches(e, p)], p.sortby))
        page = matched[p.offset : p.offset + p.limit]
        urls = _Urls(request)
        links: list[dict[str, Any]] = [{"rel": "root", "href": urls(""), "type": JSON}]
        nxt = p.offset + p.limit if p.offset + p.limit < len(matched) else None
        prv = max(0, p.offset - p.limit) if p.offset > 0 else None
        for rel, tok in (("next", nxt), ("prev", prv)):
            if tok is None:
                continue
            if post:
                body = {k: v for k, v in args.items() if k != "token"}
                body["token"] = str(tok)
                links.append({"rel": rel, "href": urls(self_path), "type": GEOJSON, "method": "POST",
                              "body": body, "merge": False})
            else:
                q = {k: v for k, v in request.query_params.items() if k != "token"}
                q["token"] = str(tok)
                links.append({"rel": rel, "href": f"{urls(self_path)}?{urlencode(q)}", "type": GEOJSON,
                              "method": "GET"})
        return _json({
            "type": "FeatureCollection",
            "features": [_render_item(e, urls) for e in page],
            "links": links,
            "numberMatched": len(matched),
            "numberReturned": len(page),
            "context": {"matched": len(matched), "returned": len(page), "limit": p.limit},
        }, media_type=GEOJSON)

    # ---- resto
    def _resto_collection(self, idx: Snapshot, name: str) -> str:
        if name in idx.collections:
            return name
        aliases = {a.upper() for a in self.settings.resto_aliases}
        if name.upper() in aliases or name == self.settings.collection:
            return self.settings.collection
        known = dict.fromkeys([*idx.collections, self.settings.collection, *self.settings.resto_aliases])
        raise HTTPException(404, f"no collection {name!r}; collections: {', '.join(known)}")

    async def resto_search(self, request: Request) -> Response:
        idx = await self.fresh()
        try:
            coll = self._resto_collection(idx, request.path_params["collection"])
        except HTTPException as exc:
            return _json({"ErrorCode": 404, "ErrorMessage": exc.detail}, 404)
        try:
            q = parse_resto_params(dict(request.query_params), self.settings.resto)
        except BadQuery as exc:
            return _json({"ErrorCode": 400, "ErrorMessage": str(exc)}, 400)
        urls = _Urls(request)

        def run() -> tuple[list[Entry], int]:
            found = [e for e in idx.entries if e.collection == coll and q.matches(e.item, e.footprint)]
            found.sort(key=lambda e: (resto_page_time_key(e.item), e.id), reverse=q.descending)
            return found[q.offset : q.offset + q.max_records], len(found)

        page, total = await run_in_threadpool(run)
        feats = []
        for e in page:
            thumb = e.asset_files.get("thumbnail")
            feats.append(resto_feature(
                _render_item(e, urls), collection=coll, download_url=urls.download(e.id),
                resource_size=self._resource_size(e), quicklook_url=urls.asset(e.id, thumb) if thumb else None,
            ))
        base = str(request.url).split("?", 1)[0]

        def page_url(n: int) -> str:
            params = dict(request.query_params)
            params["page"] = str(n)
            return f"{base}?{urlencode(params)}"

        return _json(resto_response(feats, total, q, self_url=str(request.url), page_url=page_url))

    def _resource_size(self, e: Entry) -> int | None:
        z = self._packaged_zip(e)
        if z is not None:
            return z.stat().st_size
        sizes = [a.get("file:size") for a in e.item.get("assets", {}).values()]
        return int(sum(s for s in sizes if isinstance(s, int))) or None

    # ---- downloads
    def _entry(self, idx: Snapshot, item_id: str) -> Entry:
        e = idx.by_id.get(item_id)
        if e is None:
            raise HTTPException(404, f"no item {item_id!r} in the catalog")
        if e.product_dir is None or not e.product_dir.is_dir():
            raise HTTPException(404, f"the files of {item_id!r} are not in the products folder of this server")
        return e

    def _packaged_zip(self, e: Entry) -> Path | None:
        if e.product_dir is None:
            return None
        z = e.product_dir.parent / f"{e.product_dir.name}.zip"
        return z if z.is_file() and _inside(z, self.index.products) else None

    def _cached_zip(self, e: Entry) -> Path:
        """The product zip: the packager's, or one made once (stored, atomic) in the cache."""
        packaged = self._packaged_zip(e)
        if packaged is not None:
            return packaged
        assert e.product_dir is not None
        with self._zip_guard:
            lock = self._zip_locks.setdefault(e.id, threading.Lock())
        with lock:
            target = self.zip_cache / f"{e.product_dir.name}.zip"
            newest = max((p.stat().st_mtime for p in e.product_dir.rglob("*") if p.is_file()), default=0.0)
            newest = max(newest, e.path.stat().st_mtime if e.path.exists() else 0.0)
            if target.is_file() and target.stat().st_mtime >= newest:
                return target
            self.zip_cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.zip_cache)
            os.close(fd)
            try:
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
                    for p in sorted(e.product_dir.rglob("*")):
                        if p.is_file() and _inside(p, e.product_dir):
                            z.write(p, f"{e.product_dir.name}/{p.relative_to(e.product_dir).as_posix()}")
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self._evict(keep=target)
        return target

    def _evict(self, keep: Path) -> None:
        """Remove the oldest cached zips beyond ``zip_cache_max_gb`` (never ``keep``)."""
        limit = self.settings.zip_cache_max_gb * 1e9
        zips = []
        for p in self.zip_cache.glob("*.zip"):
            with contextlib.suppress(OSError):
                st = p.stat()
                zips.append((st.st_mtime, st.st_size, p))
        total = sum(z[1] for z in zips)
        for _, size, p in sorted(zips, key=lambda z: z[0]):
            if total <= limit:
                break
            if p != keep:
                with contextlib.suppress(OSError):
                    p.unlink()
                    total -= size

    def _counted_file(self, request: Request, path: Path, item_id: str, asset: str | None,
                      media_type: str | None, filename: str | None) -> Response:
        user = request_user(request, trust_header=self.settings.trust_user_header)
        client = request.client.host if request.client else None
        resp = FileResponse(path, media_type=media_type, filename=filename)
        resp.headers["accept-ranges"] = "bytes"

        def done(nbytes: int) -> None:
            self.recorder.record(item_id, user, nbytes, asset, client)

        return _Counted(resp, done)  # type: ignore[return-value]

    async def download(self, request: Request) -> Response:
        idx = await self.fresh()
        e = self._entry(idx, request.path_params["iid"])
        path = await run_in_threadpool(self._cached_zip, e)
        return self._counted_file(request, path, e.id, None, "application/zip", f"{e.product_dir.name}.zip" if e.product_dir else None)

    async def authenticate(self, request: Request) -> Response:
        """Theia's token service, for its download scripts: the token names the user.

        No password is checked (authenticate in a reverse proxy); downloads presenting
        ``Authorization: Bearer <token>`` are recorded under the ``ident`` given here.
        """
        fields = dict(request.query_params)
        if request.method == "POST":  # curl -d 'ident=…&pass=…' (form-urlencoded)
            body = (await request.body()).decode("utf-8", errors="replace")
            fields.update({k: v[0] for k, v in parse_qs(body).items() if v})
        ident = str(fields.get("ident") or "").strip()
        if not ident:
            return _error(400, "BadRequest", "give ident (the user name) to get a token")
        token = "l2a-user-" + base64.urlsafe_b64encode(ident.encode()).decode().rstrip("=")
        return Response(token, media_type="text/plain")

    async def resto_download(self, request: Request) -> Response:
        idx = await self.fresh()
        self._resto_collection(idx, request.path_params["collection"])
        return await self.download(request)

    async def asset(self, request: Request) -> Response:
        idx = await self.fresh()
        e = self._entry(idx, request.path_params["iid"])
        rel = unquote(request.path_params["file"])
        assert e.product_dir is not None
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or ".." in parts:
            return _error(403, "Forbidden", f"{rel!r} leaves the product folder: refused")
        if not rel or "" in parts:
            return _error(400, "BadRequest", f"{rel!r} is not a file path inside the product")
        path = e.product_dir / rel
        if not _inside(path, e.product_dir):
            return _error(403, "Forbidden", f"{rel!r} leaves the product folder: refused")
        if not path.is_file():
            raise HTTPException(404, f"{e.id} has no file {rel!r}")
        key = next((k for k, v in e.asset_files.items() if v == rel), rel)
        media = next((e.item["assets"][k].get("type") for k, v in e.asset_files.items() if v == rel), None)
        return self._counted_file(request, path, e.id, key, media, None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NotFound", 400: "BadRequest", 405: "MethodNotAllowed"}.get(exc.status_code, "Error")
    return _error(exc.status_code, code, str(exc.detail))


async def _input_error(request: Request, exc: Exception) -> Response:
    return _error(500, "ServerError", str(exc))


def create_app(settings: ServeSettings | Any) -> Starlette:
    """The ASGI application over a catalog (``ServeSettings``, a site's ``Settings`` or a config path).

    Raises
    ------
    InputError
        When the catalog folder does not exist (a folder without ``catalog.json`` yet is
        served as an empty catalog until the production publishes its first product).
    """
    s = _as_serve_settings(settings)
    a = _App(s)
    routes = [
        Route("/", a.landing, methods=["GET"]),
        Route("/conformance", a.conformance, methods=["GET"]),
        Route("/queryables", a.queryables, methods=["GET"]),
        Route("/collections", a.collections, methods=["GET"]),
        Route("/collections/{cid}", a.collection, methods=["GET"]),
        Route("/collections/{cid}/items", a.items, methods=["GET"]),
        Route("/collections/{cid}/items/{iid}", a.item, methods=["GET"]),
        Route("/search", a.search_get, methods=["GET"]),
        Route("/search", a.search_post, methods=["POST"]),
        *(
            r
            for prefix in ("/resto", "/resto2")  # PEPS and Theia spellings
            for r in (
                Route(f"{prefix}/api/collections/{{collection}}/search.json", a.resto_search, methods=["GET"]),
                Route(f"{prefix}/collections/{{collection}}/{{iid}}/download", a.resto_download, methods=["GET", "HEAD"]),
                Route(f"{prefix}/collections/{{collection}}/{{iid}}/download/", a.resto_download, methods=["GET", "HEAD"]),
            )
        ),
        Route("/services/authenticate/", a.authenticate, methods=["GET", "POST"]),
        Route("/download/{iid}", a.download, methods=["GET", "HEAD"]),
        Route("/assets/{iid}/{file:path}", a.asset, methods=["GET", "HEAD"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, InputError: _input_error},
    )
    app.state.l2a = a
    return app


# --------------------------------------------------------------------------- running


class ServerThread:
    """Run the service in a background thread (tests, notebooks, benchmarks).

    Use as a context manager; ``url`` is ``http://host:port`` with the port actually bound
    (``port=0`` picks a free one)::

        with ServerThread(ServeSettings(catalog, products, "sqlite:///l2a.db")) as srv:
            pystac_client.Client.open(srv.url)
    """

    def __init__(self, settings: ServeSettings | Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = create_app(settings)
        cfg = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off",
                             ws="none", access_log=False)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, name="l2a-serve", daemon=True)
        self.url = ""

    def start(self) -> ServerThread:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the l2a server did not start")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.l2a.recorder.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(settings_or_paths: ServeSettings | Any, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the catalog until interrupted (``l2a serve``).

    Parameters
    ----------
    settings_or_paths : ServeSettings, l2a.config.Settings, or path
        What to serve; a path is a site configuration file or folder.
    host, port : str, int
        Where to listen (``0.0.0.0`` for every interface).
    """
    import uvicorn

    app = create_app(settings_or_paths)
    s: ServeSettings = app.state.l2a.settings
    log.info("serving %s (products %s) on http://%s:%d", s.catalog, s.products, host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off", ws="none")
    finally:
        app.state.l2a.recorder.close()

