"""Catalog sources of L1C products behind one small protocol.

Every source answers ``search(site, start, end, max_cloud)`` with :class:`Candidate` s (the
product identity, where to download it, its announced size, checksum and cloud cover) and
``fetch(candidate, dest_dir)`` with the local path of the verified download. Sources:

- :class:`StacApiSource`: a STAC API through pystac-client. A tile site is searched tile by
  tile: the tile's footprint as ``bbox`` (every API understands it) plus, when the API
  conforms to the *query* extension, ``{tile_property: {"eq": …}}`` and
  ``{"eo:cloud_cover": {"lte": max_cloud}}``; an area site by ``intersects`` (GeoJSON) or
  ``bbox``. Pages are followed (``next`` links) with ``limit = page_size`` items per page
  (GEODES serves at most 80). Results are always checked again on the client (tile, date
  range, cloud cover), so an API that ignores a filter cannot let wrong products through.
- :class:`StaticStacSource`: a static catalog (``catalog.json`` on disk or over HTTP) walked
  with pystac, filtered on the client.
- :class:`RestoSource`: a PEPS/Theia-style resto ``search.json`` (OpenSearch) endpoint:
  ``startDate``, ``completionDate``, ``tileid`` (PEPS) or ``location`` (Theia), ``box``,
  ``cloudCover=[0,x]``, ``maxRecords`` (≤ 500) and ``page``; features carry
  ``services.download.url``, ``resourceSize``, ``cloudCover``, ``storage.mode`` …
- :class:`EodagSource`: EODAG (optional dependency), which knows many providers
  (GEODES, Copernicus Data Space, …), their authentication, paging and ordering; any STAC
  API can be declared to it as a custom provider.

:func:`make_source` builds one from the configuration models of :mod:`l2a.config`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from l2a.catalog.download import (
    DownloadError,
    DownloadRecorder,
    DownloadResult,
    DownloadSettings,
    download,
    file_problem,
)
from l2a.errors import InputError, L2AError
from l2a.io.identity import ProductName, key_from_stac_item, parse_product_name

if TYPE_CHECKING:
    import requests

    from l2a.config import Site

__all__ = [
    "ARCHIVE_ASSET_KEYS",
    "Candidate",
    "EodagSource",
    "L1CSource",
    "RestoSource",
    "SourceError",
    "StacApiSource",
    "StaticStacSource",
    "make_source",
    "tile_bbox",
]

log = logging.getLogger(__name__)

#: Asset keys that hold the whole product (SAFE zip) in the catalogs we know, in order of
#: preference (Copernicus Data Space: PRODUCT; others: product, zip, safe …).
ARCHIVE_ASSET_KEYS = (
    "product",
    "PRODUCT",
    "zip",
    "safe",
    "safe_zip",
    "archive",
    "data",
    "download",
)

#: Media types of whole-product archives.
ARCHIVE_MEDIA_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")


class SourceError(L2AError):
    """A catalog could not be searched (unreachable, bad answer)."""


@dataclass(frozen=True)
class Candidate:
    """A product a catalog offers.

    Attributes
    ----------
    id : str
        The catalog's id of the product (STAC item id, resto feature id).
    name : ProductName
        Identity (platform, tile, sensing time, baseline, generation time).
    source : str
        Label of the source (``"stac_api:https://…"``).
    href : str or None
        Download URL of the whole product (SAFE zip); None when the catalog has per-band
        assets only (then ``fetch`` writes the STAC item JSON, which ``open_stac_item``
        reads).
    datetime : datetime or None
        Sensing time the catalog announces.
    cloud_cover : float or None
        Percent.
    size : int or None
        Bytes, when announced (``file:size``, ``resourceSize``).
    checksum : str or None
        Announced checksum (``file:checksum`` multihash, ``md5:…``).
    storage : str
        ``"disk"``, ``"staging"`` or ``"tape"`` (resto ``storage.mode``); ``""`` unknown.
    record : dict
        The raw STAC item or resto feature.
    """

    id: str
    name: ProductName
    source: str
    href: str | None
    datetime: datetime | None = None
    cloud_cover: float | None = None
    size: int | None = None
    checksum: str | None = None
    storage: str = ""
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def filename(self) -> str:
        """File name the product gets locally (``<SAFE name>.zip`` or ``<id>.json``)."""
        if self.href is None:
            return f"{self.id}.json"
        base = self.name.name if self.name.form == "compact" else self.id
        return f"{base}.zip"


@runtime_checkable
class L1CSource(Protocol):
    """What every catalog source offers."""

    label: str

    def search(
        self,
        site: Site,
        start: date | None = None,
        end: date | None = None,
        max_cloud: float | None = None,
    ) -> Iterator[Candidate]:
        """Products of ``site`` sensed from ``start`` to ``end`` (inclusive; default: the
        site's dates) with at most ``max_cloud`` % cloud cover."""
        ...

    def fetch(self, candidate: Candidate, dest: Path) -> Path:
        """Download ``candidate`` into the folder ``dest``; return the verified file."""
        ...


# --------------------------------------------------------------------------- helpers
@lru_cache(maxsize=4096)
def tile_bbox(tile: str) -> tuple[float, float, float, float]:
    """Longitude/latitude bounding box of an MGRS tile (degrees, WGS84)."""
    from pyproj import Transformer

    from l2a.grid import tile_geobox

    gb = tile_geobox(tile, 600)
    b = gb.boundingbox
    to_ll = Transformer.from_crs(str(gb.crs), "EPSG:4326", always_xy=True)
    x0, y0, x1, y1 = to_ll.transform_bounds(b.left, b.bottom, b.right, b.top, densify_pts=21)
    return (float(x0), float(y0), float(x1), float(y1))


def _site_dates(
    site: Site, start: date | None, end: date | None
) -> tuple[datetime | None, datetime | None]:
    s = start or site.start
    e = end or site.end
    return (
        datetime.combine(s, time.min, tzinfo=UTC) if s else None,
        datetime.combine(e, time.max, tzinfo=UTC).replace(microsecond=0) if e else None,
    )


def _datetime_range(a: datetime | None, b: datetime | None) -> str | None:
    if a is None and b is None:
        return None

    def fmt(t: datetime | None) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else ".."

    return f"{fmt(a)}/{fmt(b)}"


def _site_geometry(site: Site) -> dict[str, Any] | None:
    if isinstance(site.geojson, dict):
        g = site.geojson
    elif site.geojson is not None:
        try:
            g = json.loads(Path(site.geojson).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(site.geojson, f"cannot read the site's GeoJSON area: {exc}") from None
    else:
        return None
    if g.get("type") == "FeatureCollection":
        from shapely.geometry import mapping, shape
        from shapely.ops import unary_union

        return dict(mapping(unary_union([shape(f["geometry"]) for f in g["features"]])))
    if g.get("type") == "Feature":
        return dict(g["geometry"])
    return dict(g)


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class _Filter:
    """Client-side check of a record against a site, dates and cloud cover."""

    def __init__(
        self, site: Site, start: datetime | None, end: datetime | None, max_cloud: float | None
    ) -> None:
        self.site = site
        self.tiles = set(site.tiles)
        self.start, self.end, self.max_cloud = start, end, max_cloud
        self.area = None
        if not self.tiles:
            from shapely.geometry import box, shape

            geom = _site_geometry(site)
            self.area = shape(geom) if geom else box(*site.bbox) if site.bbox else None

    def reason(self, name: ProductName, when: datetime | None, cloud: float | None) -> str | None:
        """Why the product does not fit, or None when it does."""
        if name.level != "L1C":
            return f"level {name.level}, not L1C"
        if self.tiles and name.tile not in self.tiles:
            return f"tile {name.tile} is not a tile of site {self.site.name}"
        if self.area is not None and name.tile:
            from shapely.geometry import box

            if not self.area.intersects(box(*tile_bbox(name.tile))):
                return f"tile {name.tile} is outside the area of site {self.site.name}"
        t = when or name.sensing_time
        if t is not None:
            if self.start and t < self.start - timedelta(days=0):
                return f"sensed {t:%Y-%m-%d}, before {self.start:%Y-%m-%d}"
            if self.end and t > self.end:
                return f"sensed {t:%Y-%m-%d}, after {self.end:%Y-%m-%d}"
        if self.max_cloud is not None and cloud is not None and cloud > self.max_cloud:
            return f"cloud cover {cloud:.0f} % above {self.max_cloud:.0f} %"
        return None


def _pick_archive(assets: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    for key in ARCHIVE_ASSET_KEYS:
        a = assets.get(key)
        if isinstance(a, Mapping) and a.get("href"):
            return key, a
    for key, a in assets.items():
        if isinstance(a, Mapping) and str(a.get("type", "")).split(";")[0] in ARCHIVE_MEDIA_TYPES:
            return key, a
    return None


def candidate_from_stac(item: Mapping[str, Any], label: str) -> Candidate:
    """A :class:`Candidate` from a STAC item dict (raises InputError if it is no S2 product)."""
    name = key_from_stac_item(item)
    props = item.get("properties", {}) or {}
    picked = _pick_archive(item.get("assets", {}) or {})
    href = size = checksum = None
    if picked:
        _, asset = picked
        href = str(asset["href"])
        size = asset.get("file:size")
        checksum = asset.get("file:checksum")
    cloud = props.get("eo:cloud_cover")
    return Candidate(
        id=str(item.get("id")),
        name=name,
        source=label,
        href=href,
        datetime=_parse_time(props.get("datetime")),
        cloud_cover=float(cloud) if isinstance(cloud, int | float) else None,
        size=int(size) if isinstance(size, int) else None,
        checksum=str(checksum) if checksum else None,
        storage=str(props.get("storage:tier", "")),
        record=item,
    )


class _FetchMixin:
    """``fetch`` by HTTP download (verified, resumable), or item JSON when no archive."""

    label: str
    session: requests.Session | None
    download_settings: DownloadSettings
    db: DownloadRecorder | None

    def fetch(self, candidate: Candidate, dest: Path) -> Path:
        """Download ``candidate`` into the folder ``dest`` (see :func:`download`)."""
        return self.fetch_result(candidate, dest).path

    def fetch_result(self, candidate: Candidate, dest: Path) -> DownloadResult:
        """Like :meth:`fetch`, with the transfer's details."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / candidate.filename
        if candidate.href is None:
            tmp = target.with_name(target.name + ".part")
            tmp.write_text(json.dumps(dict(candidate.record)), encoding="utf-8")
            tmp.replace(target)
            return DownloadResult(target, target.stat().st_size, "", "none")
        href = candidate.href
        if urlparse(href).scheme in ("", "file"):
            local = Path(urlparse(href).path if href.startswith("file:") else href)
            if not local.exists():
                raise InputError(local, "the catalog points to a local file that does not exist")
            return DownloadResult(local, local.stat().st_size, "", "none", reused=True)
        if candidate.storage in ("tape", "staging"):
            log.info(
                "%s is on %s storage: the server may need time to stage it",
                candidate.id,
                candidate.storage,
            )
        return download(
            href,
            target,
            size=candidate.size,
            checksum=candidate.checksum,
            session=self.session,
            settings=self.download_settings,
            db=self.db,
            item_id=candidate.id,
            user=f"ingest:{self.label}"[:255],
        )


# --------------------------------------------------------------------------- STAC API
class StacApiSource(_FetchMixin):
    """A STAC API searched with pystac-client.

    Parameters
    ----------
    url : str
        API root.
    collection : str
        Collection id (``sentinel-2-l1c``).
    query : dict, optional
        Extra ``query`` (sent only when the API conforms to the query extension).
    page_size : int
        Items per page (``limit``).
    tile_property : str
        Property holding the tile: ``grid:code`` (values ``MGRS-31TCJ``: Earth Search,
        Copernicus Data Space), ``s2:mgrs_tile`` (``31TCJ``: Planetary Computer), or
        ``mgrs:grid_square``-style fields; ``""``: never filter by property on the server.
    session, download_settings, db
        For :meth:`fetch` (see :func:`l2a.catalog.download.download`).
    """

    def __init__(
        self,
        url: str,
        collection: str,
        *,
        query: Mapping[str, Any] | None = None,
        page_size: int = 80,
        tile_property: str = "grid:code",
        session: requests.Session | None = None,
        download_settings: DownloadSettings | None = None,
        db: DownloadRecorder | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.collection = collection
        self.query = dict(query or {})
        self.page_size = page_size
        self.tile_property = tile_property
        self.session = session
        self.download_settings = download_settings or DownloadSettings()
        self.db = db
        self.headers = dict(headers or {})
        self.label = f"stac_api:{url}"
        self._client: Any = None
        self.pages = 0  #: pages fetched by the last search (for logs and tests)

    def client(self) -> Any:
        """The pystac-client ``Client`` (opened once)."""
        if self._client is None:
            from pystac_client import Client

            try:
                self._client = Client.open(self.url, headers=self.headers or None)
            except Exception as exc:  # pystac-client raises APIError, requests errors …
                raise SourceError(f"cannot open the STAC API {self.url}: {exc}") from None
        return self._client

    def _tile_query(self, tile: str) -> dict[str, Any]:
        prop = self.tile_property
        if not prop:
            return {}
        value = f"MGRS-{tile}" if prop == "grid:code" else tile
        return {prop: {"eq": value}}

    def search(
        self,
        site: Site,
        start: date | None = None,
        end: date | None = None,
        max_cloud: float | None = None,
    ) -> Iterator[Candidate]:
        """Search the API (see the class notes); yields each product once."""
        from pystac_client.conformance import ConformanceClasses

        client = self.client()
        t0, t1 = _site_dates(site, start, end)
        check = _Filter(site, t0, t1, max_cloud)
        has_query = client.conforms_to(ConformanceClasses.QUERY)
        base: dict[str, Any] = {
            "collections": [self.collection],
            "datetime": _datetime_range(t0, t1),
            "limit": self.page_size,
        }
        searches: list[dict[str, Any]] = []
        if site.tiles:
            for tile in site.tiles:
                q = dict(self.query)
                if has_query:
                    q.update(self._tile_query(tile))
                searches.append({**base, "bbox": list(tile_bbox(tile)), "query": q})
        else:
            geom = _site_geometry(site)
            where = {"intersects": geom} if geom else {"bbox": list(site.bbox or ())}
            searches.append({**base, **where, "query": dict(self.query)})
        seen: set[str] = set()
        self.pages = 0
        for params in searches:
            if has_query and max_cloud is not None:
                params["query"] = {**params["query"], "eo:cloud_cover": {"lte": max_cloud}}
            if not params["query"] or not has_query:
                if params["query"] and not has_query:
                    log.info("%s does not support the query extension: filtering locally", self.url)
                params.pop("query")
            if params["datetime"] is None:
                params.pop("datetime")
            try:
                search = client.search(**params)
                for page in search.pages_as_dicts():
                    self.pages += 1
                    for item in page.get("features", []):
                        cand = self._accept(item, check, seen)
                        if cand is not None:
                            yield cand
            except (SourceError, InputError):
                raise
            except Exception as exc:
                raise SourceError(f"search of {self.url} failed: {exc}") from None

    def _accept(self, item: Mapping[str, Any], check: _Filter, seen: set[str]) -> Candidate | None:
        try:
            cand = candidate_from_stac(item, self.label)
        except InputError as exc:
            log.info("skipping %s: %s", item.get("id"), exc.problem)
            return None
        if cand.id in seen:
            return None
        why = check.reason(cand.name, cand.datetime, cand.cloud_cover)
        if why:
            log.debug("skipping %s: %s", cand.id, why)
            return None
        seen.add(cand.id)
        return cand


# --------------------------------------------------------------------------- static STAC
class StaticStacSource(_FetchMixin):
    """A static STAC catalog (a ``catalog.json``/``collection.json`` path or URL).

    The whole catalog is walked (``get_items(recursive=True)``) and filtered on the client;
    relative asset hrefs are resolved against the item's location.
    """

    def __init__(
        self,
        href: str,
        *,
        session: requests.Session | None = None,
        download_settings: DownloadSettings | None = None,
        db: DownloadRecorder | None = None,
    ) -> None:
        self.href = href
        self.session = session
        self.download_settings = download_settings or DownloadSettings()
        self.db = db
        self.label = f"static_stac:{href}"

    def _items(self) -> Iterable[Any]:
        import pystac

        try:
            cat = pystac.read_file(self.href)
        except Exception as exc:
            raise SourceError(f"cannot read the STAC catalog {self.href}: {exc}") from None
        if isinstance(cat, pystac.Item):
            return [cat]
        if isinstance(cat, pystac.ItemCollection):
            return list(cat)
        if not isinstance(cat, pystac.Catalog):
            raise SourceError(f"{self.href} is not a STAC catalog, collection or item")
        cat.make_all_asset_hrefs_absolute()
        return cat.get_items(recursive=True)

    def search(
        self,
        site: Site,
        start: date | None = None,
        end: date | None = None,
        max_cloud: float | None = None,
    ) -> Iterator[Candidate]:
        """Items of the catalog that fit the site, the dates and the cloud cover."""
        t0, t1 = _site_dates(site, start, end)
        check = _Filter(site, t0, t1, max_cloud)
        seen: set[str] = set()
        for item in self._items():
            d = item.to_dict(transform_hrefs=False)
            for asset_key, asset in item.assets.items():
                d["assets"][asset_key]["href"] = asset.get_absolute_href() or asset.href
            try:
                cand = candidate_from_stac(d, self.label)
            except InputError as exc:
                log.info("skipping %s: %s", item.id, exc.problem)
                continue
            if cand.id in seen or check.reason(cand.name, cand.datetime, cand.cloud_cover):
                continue
            seen.add(cand.id)
            yield cand


# --------------------------------------------------------------------------- resto
class RestoSource(_FetchMixin):
    """A PEPS/Theia-style resto OpenSearch ``search.json`` endpoint.

    Parameters
    ----------
    url : str
        ``…/resto/api/collections/{collection}/search.json``.
    params : dict, optional
        Extra query parameters (``productType``, ``platform``, ``processingLevel``,
        ``relativeOrbitNumber`` …).
    max_records : int
        ``maxRecords`` per page (resto allows at most 500).
    tile_param : str
        ``"tileid"`` (PEPS, value ``31TCJ``) or ``"location"`` (Theia, value ``T31TCJ``).
    auth : tuple, optional
        (user, password) for downloads (PEPS used HTTP basic authentication).
    """

    def __init__(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        max_records: int = 500,
        tile_param: str = "tileid",
        session: requests.Session | None = None,
        download_settings: DownloadSettings | None = None,
        db: DownloadRecorder | None = None,
        auth: tuple[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not 0 < max_records <= 500:
            raise ValueError("maxRecords must be in 1..500 (resto's limit)")
        self.url = url
        self.params = dict(params or {})
        self.max_records = max_records
        self.tile_param = tile_param
        self.download_settings = download_settings or DownloadSettings()
        self.db = db
        self.timeout_s = timeout_s
        if session is None:
            import requests

            session = requests.Session()
            session.headers["User-Agent"] = self.download_settings.user_agent
        if auth:
            session.auth = auth
        self.session = session
        self.label = f"resto:{url}"
        self.pages = 0

    def _pages(self, params: dict[str, Any]) -> Iterator[list[Mapping[str, Any]]]:
        import requests

        page = 1
        while True:
            q = {**params, "maxRecords": self.max_records, "page": page}
            try:
                resp = self.session.get(self.url, params=q, timeout=self.timeout_s)  # type: ignore[union-attr]
                resp.raise_for_status()
                data = resp.json()
            except (requests.RequestException, ValueError) as exc:
                raise SourceError(f"resto search {self.url} failed: {exc}") from None
            self.pages += 1
            feats = data.get("features", []) or []
            yield feats
            total = (data.get("properties", {}) or {}).get("totalResults")
            if not feats or len(feats) < self.max_records:
                return
            if isinstance(total, int) and page * self.max_records >= total:
                return
            page += 1

    def search(
        self,
        site: Site,
        start: date | None = None,
        end: date | None = None,
        max_cloud: float | None = None,
    ) -> Iterator[Candidate]:
        """Query the endpoint page by page (see the class notes)."""
        t0, t1 = _site_dates(site, start, end)
        check = _Filter(site, t0, t1, max_cloud)
        base: dict[str, Any] = dict(self.params)
        if t0:
            base["startDate"] = t0.strftime("%Y-%m-%dT%H:%M:%SZ")
        if t1:
            base["completionDate"] = t1.strftime("%Y-%m-%dT%H:%M:%SZ")
        if max_cloud is not None:
            base["cloudCover"] = f"[0,{max_cloud:g}]"
        queries: list[dict[str, Any]] = []
        if site.tiles:
            for tile in site.tiles:
                value = f"T{tile}" if self.tile_param == "location" else tile
                queries.append({**base, self.tile_param: value})
        else:
            from shapely.geometry import shape

            geom = _site_geometry(site)
            bbox = shape(geom).bounds if geom else site.bbox
            assert bbox is not None
            queries.append({**base, "box": ",".join(f"{v:g}" for v in bbox)})
        seen: set[str] = set()
        self.pages = 0
        for q in queries:
            for feats in self._pages(q):
                for f in feats:
                    cand = self._candidate(f)
                    if cand is None or cand.id in seen:
                        continue
                    if check.reason(cand.name, cand.datetime, cand.cloud_cover):
                        continue
                    seen.add(cand.id)
                    yield cand

    def _candidate(self, feature: Mapping[str, Any]) -> Candidate | None:
        p = feature.get("properties", {}) or {}
        title = str(p.get("title") or p.get("productIdentifier") or feature.get("id") or "")
        name: ProductName | None = None
        for text in (title, str(p.get("productIdentifier", ""))):
            try:
                parsed = parse_product_name(text.rsplit("/", 1)[-1])
            except InputError:
                continue
            if parsed.is_complete:
                name = parsed
                break
        if name is None:
            props = {
                "platform": p.get("platform", ""),
                "tileid": p.get("mgrs") or p.get("tileid") or "",
                "datetime": p.get("startDate"),
                "processingLevel": p.get("processingLevel", ""),
            }
            try:
                name = key_from_stac_item({"id": title, "properties": props})
            except InputError as exc:
                log.info("skipping resto feature %s: %s", feature.get("id"), exc.problem)
                return None
        services = p.get("services", {}) or {}
        dl = (services.get("download", {}) or {}) if isinstance(services, Mapping) else {}
        storage = p.get("storage", {}) or {}
        cloud = p.get("cloudCover")
        size = p.get("resourceSize") or dl.get("size")
        checksum = dl.get("checksum")
        return Candidate(
            id=str(feature.get("id") or title),
            name=name,
            source=self.label,
            href=str(dl["url"]) if dl.get("url") else None,
            datetime=_parse_time(p.get("startDate")),
            cloud_cover=float(cloud) if isinstance(cloud, int | float) else None,
            size=int(size) if isinstance(size, int) else None,
            checksum=str(checksum) if checksum else None,
            storage=str(storage.get("mode", "")) if isinstance(storage, Mapping) else "",
            record=feature,
        )


# --------------------------------------------------------------------------- EODAG
#: Media type of the whole-product archive a custom STAC provider's download link points to.
_EODAG_ARCHIVE_LINK = '$.assets[?(@.type == "application/zip")].href'

#: EODAG ``order:status`` -> :attr:`Candidate.storage`.
_EODAG_STORAGE = {"succeeded": "disk", "ordered": "staging", "orderable": "tape"}


def _eodag_missing() -> SourceError:
    return SourceError(
        "the EODAG source needs the optional package eodag: pip install 'l2a[eodag]' (or "
        "pip install eodag), or use a stac_api source, e.g. GEODES at "
        "https://geodes-portal.cnes.fr/api/stac"
    )


def _eodag_name(title: str, props: Mapping[str, Any]) -> ProductName | None:
    """Identity of an EODAG product: its title (SAFE name), else its STAC-like properties."""
    for text in (title, str(props.get("id") or "")):
        base = text.rstrip("/").rsplit("/", 1)[-1]
        try:
            parsed = parse_product_name(base)
        except InputError:
            continue
        if parsed.is_complete:
            return parsed
    try:
        return key_from_stac_item({"id": title, "properties": dict(props)})
    except InputError:
        return None


class _EodagLogForwarder(logging.Handler):
    """EODAG's log records, passed on under l2a's logger ``l2a.catalog.sources.eodag``.

    EODAG logs a failed request at ERROR with its whole traceback in the message, then raises
    the error, which :class:`EodagSource` reports in one line as a :class:`SourceError` or
    :class:`~l2a.catalog.download.DownloadError` naming the provider or the file. Such a
    record is passed on as one WARNING line (its first line and the exception's) and, whole,
    at DEBUG; every other record as it is.
    """

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(f"{__name__}.eodag")
        if record.levelno >= logging.ERROR:
            try:
                text = record.getMessage()
            except Exception:  # a malformed record: passed on as it is
                text = str(record.msg)
            lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
            if record.exc_info and record.exc_info[1] is not None:
                lines.append(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
            if len(lines) > 1 or record.exc_info:
                if target.isEnabledFor(logging.DEBUG):
                    target.handle(logging.makeLogRecord({**record.__dict__, "levelno": logging.DEBUG, "levelname": "DEBUG"}))
                first = lines[0].rstrip(" :") if lines else "EODAG error"
                # the exception's own line ("requests.exceptions.HTTPError: 404 …"), else the last
                raised = [ln for ln in lines[1:] if re.match(r"^[\w.]*(Error|Exception)\b[^ ]*:", ln)]
                summary = first if len(lines) < 2 else f"{first}: {(raised or lines)[-1]}"
                record = logging.makeLogRecord({
                    **record.__dict__, "msg": f"{summary} (EODAG's traceback at DEBUG)", "args": None,
                    "exc_info": None, "exc_text": None, "levelno": logging.WARNING, "levelname": "WARNING",
                })
        if target.isEnabledFor(record.levelno):
            target.handle(record)


def _forward_eodag_logs() -> None:
    """Route the ``eodag`` logger through :class:`_EodagLogForwarder` (once per process)."""
    lg = logging.getLogger("eodag")
    if not any(isinstance(h, _EodagLogForwarder) for h in lg.handlers):
        lg.addHandler(_EodagLogForwarder())
        lg.propagate = False


class EodagSource:
    """EODAG as a source (optional dependency: ``pip install 'l2a[eodag]'``, EODAG >= 4).

    EODAG knows many providers (GEODES, Copernicus Data Space, Creodias, …), their search
    parameters, paging, authentication and ordering of offline products. A tile site is
    searched tile by tile (the tile's footprint as ``geom`` and ``grid:code = MGRS-<tile>``),
    an area site by its geometry; dates as ``start``/``end`` and the cloud limit as
    ``eo:cloud_cover``. As with the other sources, every result is checked again on the client
    (level, tile, dates, cloud cover). EODAG's own log records go through l2a's logger
    ``l2a.catalog.sources.eodag``; the tracebacks it logs at ERROR before raising become one
    WARNING line, whole at DEBUG (the error reaches the caller as one line naming the provider
    or the file).

    With ``url``, the provider is declared as a generic STAC API provider at that address
    (EODAG's ``add_provider``, searching at the landing page's ``search`` link): any STAC API
    becomes an EODAG source; ``collection`` is the
    server's collection id that ``product_type`` maps to; the download link is the item's
    ``application/zip`` asset.

    Parameters
    ----------
    provider : str
        EODAG provider (``geodes``, ``cop_dataspace`` …) or, with ``url``, the name given to
        the custom provider. Credentials live in EODAG's own configuration
        (``~/.config/eodag/eodag.yml``, ``config_file`` or ``EODAG__<PROVIDER>__AUTH__…``
        variables).
    product_type : str
        EODAG collection (product type) id, ``S2_MSI_L1C``.
    url : str, optional
        Root of a STAC API to declare as a custom provider.
    collection : str, optional
        The STAC API's collection id (custom provider only); default ``sentinel-2-l1c``.
    page_size : int, optional
        Results per page; None: EODAG's default for the provider.
    server_filters : bool, optional
        Send the tile and cloud limit to the server (``grid:code``, ``eo:cloud_cover``).
        None: yes for EODAG's providers; for a custom STAC API, when it conforms to the
        *query* extension (a STAC API without it may answer nothing at all).
    config_file : Path, optional
        EODAG user configuration (credentials, output folder …); None: EODAG's default.
    retries : int, optional
        Retries of a failed search request of the custom STAC provider (EODAG's
        ``retry_total``); None: EODAG's default (3, with back-off: about 12 s in all).
    db : DownloadRecorder, optional
        Where downloads are recorded.
    dag : EODataAccessGateway, optional
        An existing gateway to use (then ``config_file`` is ignored).
    """

    def __init__(
        self,
        provider: str,
        product_type: str = "S2_MSI_L1C",
        *,
        url: str | None = None,
        collection: str | None = None,
        page_size: int | None = None,
        server_filters: bool | None = None,
        config_file: Path | None = None,
        retries: int | None = None,
        db: DownloadRecorder | None = None,
        dag: Any = None,
    ) -> None:
        try:
            from eodag import EODataAccessGateway
            from eodag.config import EODAGSettings
        except ImportError:
            raise _eodag_missing() from None
        _forward_eodag_logs()
        self.provider = provider
        self.product_type = product_type
        self.url = url
        self.page_size = page_size
        self.db = db
        self.label = f"eodag:{provider}" + (f":{url}" if url else "")
        self._products: dict[str, Any] = {}
        self.pages = 0  #: pages fetched by the last search (for logs and tests)
        search_url, has_query = self._landing(url) if url else ("", True)
        try:
            if dag is None:
                settings: dict[str, Any] = {"providers_whitelist": [provider]}
                if config_file is not None:
                    settings["cfg_file"] = Path(config_file).expanduser()
                dag = EODataAccessGateway(settings=EODAGSettings(**settings))
            if url:
                search: dict[str, Any] = {
                    "metadata_mapping": {"eodag:download_link": _EODAG_ARCHIVE_LINK}
                }
                if retries is not None:
                    search["retry_total"] = retries
                dag.add_provider(
                    provider,
                    search_url,
                    search=search,
                    products={product_type: {"_collection": collection or "sentinel-2-l1c"}},
                    download={"ignore_assets": True},
                )
        except Exception as exc:  # eodag raises its own errors, pydantic's, yaml's …
            raise SourceError(f"cannot set up EODAG provider {provider!r}: {exc}") from None
        if provider not in dag.providers.names:
            raise SourceError(
                f"EODAG has no usable provider {provider!r}: unknown to EODAG, or left out "
                "for missing credentials (see `eodag list` and EODAG's configuration); or give "
                "a STAC API url to declare it"
            )
        self.dag = dag
        self.server_filters = has_query if server_filters is None else server_filters

    @staticmethod
    def _landing(url: str) -> tuple[str, bool]:
        """(search endpoint, conforms to the query extension) from a STAC API landing page."""
        import requests

        try:
            resp = requests.get(url, timeout=30)
            resp.raise_for_status()
            page = resp.json()
            conforms = page.get("conformsTo", []) or []
            links = page.get("links", []) or []
        except (requests.RequestException, ValueError, AttributeError) as exc:
            raise SourceError(f"cannot open the STAC API {url}: {exc}") from None
        search = next(
            (str(ln["href"]) for ln in links if ln.get("rel") == "search" and ln.get("href")),
            url.rstrip("/") + "/search",
        )
        return search, any(str(c).endswith("item-search#query") for c in conforms)

    def _queries(
        self, site: Site, t0: datetime | None, t1: datetime | None, max_cloud: float | None
    ) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"provider": self.provider, "collection": self.product_type}
        if t0:
            base["start"] = t0.strftime("%Y-%m-%dT%H:%M:%SZ")
        if t1:
            base["end"] = t1.strftime("%Y-%m-%dT%H:%M:%SZ")
        if max_cloud is not None and self.server_filters:
            base["eo:cloud_cover"] = max_cloud
        if self.page_size:
            base["limit"] = self.page_size
        if site.tiles:
            out = []
            for tile in site.tiles:
                q = {**base, "geom": list(tile_bbox(tile))}
                if self.server_filters:
                    q["grid:code"] = f"MGRS-{tile}"
                out.append(q)
            return out
        geom = _site_geometry(site)
        if geom is not None:
            from shapely.geometry import shape

            return [{**base, "geom": shape(geom)}]
        return [{**base, "geom": list(site.bbox or ())}]

    def _pages(self, query: dict[str, Any]) -> Iterator[Any]:
        first = self.dag.search(raise_errors=True, validate=False, **query)
        yield first
        yield from first.next_page(update=False)

    def search(
        self,
        site: Site,
        start: date | None = None,
        end: date | None = None,
        max_cloud: float | None = None,
    ) -> Iterator[Candidate]:
        """Search page by page (see the class notes); yields each product once."""
        t0, t1 = _site_dates(site, start, end)
        check = _Filter(site, t0, t1, max_cloud)
        seen: set[str] = set()
        self.pages = 0
        for query in self._queries(site, t0, t1, max_cloud):
            pages = self._pages(query)
            while True:
                try:
                    page = next(pages)
                except StopIteration:
                    break
                except Exception as exc:  # eodag's RequestError, AuthenticationError …
                    raise SourceError(
                        f"EODAG search on {self.provider} failed: {type(exc).__name__}: {exc}"
                    ) from None
                self.pages += 1
                for product in page:
                    cand = self._candidate(product)
                    if cand is None or cand.id in seen:
                        continue
                    why = check.reason(cand.name, cand.datetime, cand.cloud_cover)
                    if why:
                        log.debug("skipping %s: %s", cand.id, why)
                        continue
                    seen.add(cand.id)
                    self._products[cand.id] = product
                    yield cand

    def _candidate(self, product: Any) -> Candidate | None:
        props = dict(product.properties)
        title = str(props.get("title") or props.get("id") or "")
        name = _eodag_name(title, props)
        if name is None or not name.is_complete:
            log.info("skipping EODAG product %s: not a complete Sentinel-2 product name", title)
            return None
        link = props.get("eodag:download_link")
        href = (
            str(link) if isinstance(link, str) and link.startswith(("http", "s3", "file")) else None
        )
        size = checksum = None
        for asset in (getattr(product, "assets", None) or {}).values():
            if href and asset.get("href") == href:
                size, checksum = asset.get("file:size"), asset.get("file:checksum")
                break
        cloud = props.get("eo:cloud_cover")
        when = props.get("datetime") or props.get("start_datetime")
        try:
            record = product.as_dict()
        except Exception:  # a product eodag cannot serialise still downloads from the cache
            record = {"properties": props}
        return Candidate(
            id=title,
            name=name,
            source=self.label,
            href=href,
            datetime=_parse_time(when),
            cloud_cover=float(cloud) if isinstance(cloud, int | float) else None,
            size=int(size) if isinstance(size, int) else None,
            checksum=str(checksum) if checksum else None,
            storage=_EODAG_STORAGE.get(str(props.get("order:status", "")).lower(), ""),
            record=record,
        )

    def _product(self, candidate: Candidate) -> Any:
        product = self._products.get(candidate.id)
        if product is not None:
            return product
        from eodag.api.product import EOProduct

        try:
            return EOProduct.from_dict(dict(candidate.record), raise_errors=True)
        except Exception as exc:
            raise DownloadError(
                candidate.href or candidate.id,
                f"not found by this EODAG source's search and its record is no EODAG product "
                f"({exc}): search again",
            ) from None

    def fetch(self, candidate: Candidate, dest: Path) -> Path:
        """Download with EODAG into ``dest``; the SAFE zip (or the folder EODAG wrote).

        EODAG writes into a hidden staging folder of ``dest``; the result is checked against
        the announced size and checksum (when the catalog gives them) and only then moved
        into ``dest``. A verified file already there is reused. Failures raise
        :class:`l2a.catalog.download.DownloadError`.
        """
        dest = Path(dest)
        where = candidate.href or candidate.id
        done = dest / candidate.filename
        if candidate.href and done.is_file() and file_problem(done, candidate.size, candidate.checksum) is None:
            return done
        from eodag.utils import ProgressCallback

        product = self._product(candidate)
        # after a download EODAG points the product to the local copy: fetch again from remote
        remote = str(getattr(product, "remote_location", "") or "")
        if str(product.location).startswith("file:") and remote.startswith(("http", "s3")):
            product.location = remote
        stage = dest / f".{candidate.id}.eodag"
        stage.mkdir(parents=True, exist_ok=True)
        try:
            try:
                out = self.dag.download(
                    product,
                    output_dir=str(stage),
                    extract=False,
                    progress_callback=ProgressCallback(disable=True),
                )
            except Exception as exc:  # eodag's DownloadError, NotAvailableError, AuthError …
                raise DownloadError(
                    where, f"EODAG download failed: {type(exc).__name__}: {exc}"
                ) from None
            path = Path(out) if out else None
            if path is None or not path.exists():
                raise DownloadError(where, f"EODAG gave no file ({out!r}): offline product?")
            problem = file_problem(path, candidate.size, candidate.checksum) if path.is_file() else None
            if problem:
                raise DownloadError(where, problem)
            final = dest / path.name
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(path, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if self.db is not None:
            nbytes = final.stat().st_size if final.is_file() else 0
            self.db.record_download(
                candidate.id, user=f"ingest:{self.label}"[:255], nbytes=nbytes, client=where
            )
        return final

# --------------------------------------------------------------------------- factory
def make_source(
    config: Any,
    *,
    session: requests.Session | None = None,
    download_settings: DownloadSettings | None = None,
    db: DownloadRecorder | None = None,
) -> L1CSource:
    """A source from a configuration model (:class:`l2a.config.StacApiSource` …)."""
    kind = getattr(config, "kind", None)
    if kind == "stac_api":
        return StacApiSource(
            config.url,
            config.collection,
            query=config.query,
            page_size=config.page_size,
            session=session,
            download_settings=download_settings,
            db=db,
        )
    if kind == "static_stac":
        return StaticStacSource(
            config.href, session=session, download_settings=download_settings, db=db
        )
    if kind == "resto":
        params = dict(config.params)
        tile_param = params.pop("tile_param", "tileid")
        return RestoSource(
            config.url,
            params=params,
            max_records=config.max_records,
            tile_param=tile_param,
            session=session,
            download_settings=download_settings,
            db=db,
        )
    if kind == "eodag":
        return EodagSource(
            config.provider,
            config.product_type,
            url=getattr(config, "url", None),
            collection=getattr(config, "collection", None),
            page_size=getattr(config, "page_size", None),
            config_file=getattr(config, "config_file", None),
            db=db,
        )
    raise InputError(str(config), f"unknown catalog source kind {kind!r}")
