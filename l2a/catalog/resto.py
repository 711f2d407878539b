"""Resto (PEPS/Theia OpenSearch) ``search.json`` over STAC items: parameters in, features out.

Pure translation, no HTTP: :func:`parse_resto_params` validates the query parameters of
``…/resto/api/collections/{collection}/search.json`` (CATALOGS.md) into a :class:`RestoQuery`,
:meth:`RestoQuery.matches` tests one STAC item, :func:`resto_feature` writes the resto feature
of an item and :func:`resto_response` the FeatureCollection with ``properties.totalResults``.
:mod:`l2a.catalog.server` serves them.

Parameters (values are case-insensitive where they are names):

========================  ==================================================================
``startDate``             acquisitions at or after (ISO date or date-time, UTC when naive)
``completionDate``        acquisitions at or before (a date alone includes the whole day)
``tileid`` / ``location`` MGRS tile, ``31TCJ`` (PEPS) or ``T31TCJ`` (Theia); a comma list
``lat`` + ``lon``         footprint contains the point (degrees)
``box``                   ``lonmin,latmin,lonmax,latmax``: footprint intersects the box
``geometry``              WKT (lon/lat): footprint intersects it
``productType``           ``REFLECTANCE`` (products with surface reflectance), ``MASKS``
``platform``              ``SENTINEL2A`` / ``S2A`` / ``sentinel-2a``
``processingLevel``       ``LEVEL2A`` / ``L2A``
``orbitNumber``           absolute orbit (only items carrying ``sat:absolute_orbit`` match)
``relativeOrbitNumber``   relative orbit (1-143)
``orbitDirection``        ``descending``/``ascending`` (items carrying ``sat:orbit_state``)
``cloudCover``            resto interval ``[0,20]`` (``]a,b[`` exclusive ends); a bare
                          number is an upper bound (%)
``snowCover``             the same on ``l2a:snow_cover`` (%)
``productIdentifier``     the product (item) id; ``%`` is a wildcard
``maxRecords``            page size, 1 to 500 (default 50)
``page``                  page number from 1
``sortOrder``             ``descending`` (default: newest first) or ``ascending``
========================  ==================================================================

Unknown parameters are ignored (resto clients send extras such as ``lang``); a bad value of a
known one raises :class:`BadQuery`, which the server answers with HTTP 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Final

__all__ = [
    "RESTO_MAX_RECORDS",
    "BadQuery",
    "Interval",
    "RestoQuery",
    "RestoSettings",
    "normalise_level",
    "normalise_platform",
    "parse_datetime",
    "parse_resto_params",
    "resto_feature",
    "resto_page_time_key",
    "resto_response",
]

#: The largest ``maxRecords`` resto accepts.
RESTO_MAX_RECORDS: Final[int] = 500

#: Relative orbits of Sentinel-2 (1 to this).
S2_RELATIVE_ORBITS: Final[int] = 143


class BadQuery(ValueError):
    """A query parameter with a bad value (answered with HTTP 400).

    Parameters
    ----------
    parameter : str
        The parameter's name.
    problem : str
        What is wrong and how to fix it.
    """

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True)
class RestoSettings:
    """Paging of the resto endpoint."""

    #: ``maxRecords`` when the request gives none (features per page).
    default_records: int = 50
    #: The largest ``maxRecords`` accepted (resto's own limit is 500).
    max_records: int = RESTO_MAX_RECORDS


@dataclass(frozen=True)
class Interval:
    """A numeric interval with open or closed ends (resto ``[a,b]``, ``]a,b[``)."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = True

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        v = float(value)
        lo_ok = v >= self.low if self.low_closed else v > self.low
        hi_ok = v <= self.high if self.high_closed else v < self.high
        return lo_ok and hi_ok


_INTERVAL = re.compile(r"^\s*([\[\]])\s*([^,\s]*)\s*,\s*([^,\s]*)\s*([\[\]])\s*$")


def _parse_interval(name: str, text: str) -> Interval:
    m = _INTERVAL.match(text)
    try:
        if m is None:
            return Interval(high=float(text))  # a bare number: an upper bound
        lo = float(m.group(2)) if m.group(2) else -math.inf
        hi = float(m.group(3)) if m.group(3) else math.inf
    except ValueError:
        raise BadQuery(
            name, f"{text!r} is not an interval; write [min,max] (e.g. {name}=[0,20])"
        ) from None
    if lo > hi:
        raise BadQuery(name, f"{text!r}: the lower bound is above the upper bound")
    return Interval(lo, hi, m.group(1) == "[", m.group(4) == "]")


def parse_datetime(name: str, text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime.

    A date alone means its first instant, or with ``end_of_day`` its last one (so that
    ``completionDate=2024-01-31`` includes that day). Naive date-times are UTC.
    """
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            d = date.fromisoformat(t)
            if end_of_day:
                return datetime.combine(d, time.max, tzinfo=UTC)
            return datetime.combine(d, time.min, tzinfo=UTC)
        dt = datetime.fromisoformat(t.replace("z", "Z"))
    except ValueError:
        raise BadQuery(
            name, f"{text!r} is not an ISO 8601 date or date-time (e.g. 2024-01-31 or 2024-01-31T10:00:00Z)"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def normalise_platform(text: str) -> str:
    """``S2A``, ``sentinel-2a``, ``Sentinel2A`` -> ``SENTINEL2A`` (Theia's spelling)."""
    t = re.sub(r"[\s_-]", "", text).upper()
    if re.fullmatch(r"S2[A-Z]", t):
        t = "SENTINEL2" + t[-1]
    return t


def normalise_level(text: str) -> str:
    """``LEVEL2A``, ``L2A``, ``level-2a`` -> ``LEVEL2A``."""
    t = re.sub(r"[\s_-]", "", text).upper()
    if t.startswith("LEVEL"):
        t = t[5:]
    elif t.startswith("L"):
        t = t[1:]
    return "LEVEL" + t


def _tile_of(props: Mapping[str, Any]) -> str | None:
    code = props.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        return code[5:].upper()
    tile = props.get("s2:mgrs_tile") or props.get("mgrs:tile")
    return str(tile).upper().lstrip("T") if tile else None


def _int(name: str, text: str, low: int, high: int | None = None) -> int:
    try:
        v = int(text)
    except ValueError:
        raise BadQuery(name, f"{text!r} is not an integer") from None
    if v < low or (high is not None and v > high):
        where = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadQuery(name, f"{v} is out of range: it must be {where}")
    return v


def _float(name: str, text: str, low: float, high: float) -> float:
    try:
        v = float(text)
    except ValueError:
        raise BadQuery(name, f"{text!r} is not a number") from None
    if not low <= v <= high:
        raise BadQuery(name, f"{v} is out of range: it must be between {low} and {high}")
    return v


def _product_type(props: Mapping[str, Any]) -> str:
    return "REFLECTANCE" if props.get("l2a:reflectance", True) else "MASKS"


def _level(props: Mapping[str, Any]) -> str:
    return normalise_level(str(props.get("processing:level") or "L2A"))


@dataclass(frozen=True)
class RestoQuery:
    """A validated resto query (see the module docstring for the parameters)."""

    start: datetime | None = None
    end: datetime | None = None
    tiles: frozenset[str] = frozenset()
    point: tuple[float, float] | None = None
    area: Any = None  # shapely geometry of box= or geometry= (lon/lat)
    area2: Any = None  # both box= and geometry= given: both must intersect
    product_type: str | None = None
    platform: str | None = None
    level: str | None = None
    orbit: int | None = None
    relative_orbit: int | None = None
    orbit_direction: str | None = None
    cloud: Interval | None = None
    snow: Interval | None = None
    identifier: re.Pattern[str] | None = None
    max_records: int = 50
    page: int = 1
    descending: bool = True
    original: dict[str, str] = field(default_factory=dict)

    @property
    def offset(self) -> int:
        """Index of the first feature of the page."""
        return (self.page - 1) * self.max_records

    def matches(self, item: Mapping[str, Any], footprint: Any) -> bool:
        """Whether the STAC item (a dict) with shapely ``footprint`` (lon/lat) answers the query."""
        props: Mapping[str, Any] = item.get("properties", {})
        if self.identifier is not None and not self.identifier.fullmatch(str(item.get("id", ""))):
            return False
        if self.start is not None or self.end is not None:
            t0 = _item_time(props, "start_datetime")
            t1 = _item_time(props, "end_datetime")
            if t0 is None or t1 is None:
                return False
            if self.start is not None and t1 < self.start:
                return False
            if self.end is not None and t0 > self.end:
                return False
        if self.tiles and _tile_of(props) not in self.tiles:
            return False
        if self.point is not None or self.area is not None or self.area2 is not None:
            if footprint is None:
                return False
            if self.point is not None:
                from shapely.geometry import Point

                if not footprint.intersects(Point(*self.point)):
                    return False
            if self.area is not None and not footprint.intersects(self.area):
                return False
            if self.area2 is not None and not footprint.intersects(self.area2):
                return False
        if self.product_type is not None and _product_type(props) != self.product_type:
            return False
        if self.platform is not None and normalise_platform(str(props.get("platform", ""))) != self.platform:
            return False
        if self.level is not None and _level(props) != self.level:
            return False
        if self.orbit is not None and props.get("sat:absolute_orbit") != self.orbit:
            return False
        if self.relative_orbit is not None and props.get("sat:relative_orbit") != self.relative_orbit:
            return False
        if (
            self.orbit_direction is not None
            and str(props.get("sat:orbit_state", "")).lower() != self.orbit_direction
        ):
            return False
        if self.cloud is not None and props.get("eo:cloud_cover") not in self.cloud:
            return False
        return not (self.snow is not None and props.get("l2a:snow_cover") not in self.snow)


def _item_time(props: Mapping[str, Any], key: str) -> datetime | None:
    v = props.get(key) or props.get("datetime")
    if not v:
        return None
    try:
        dt = datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def parse_resto_params(
    params: Mapping[str, str], settings: RestoSettings | None = None
) -> RestoQuery:
    """Validate resto query parameters into a :class:`RestoQuery`.

    Raises
    ------
    BadQuery
        Naming the parameter and what is wrong with its value.
    """
    s = settings or RestoSettings()
    p = {k: v for k, v in params.items() if v is not None and str(v).strip() != ""}
    out: dict[str, Any] = {"original": dict(p)}
    if "startDate" in p:
        out["start"] = parse_datetime("startDate", p["startDate"])
    if "completionDate" in p:
        out["end"] = parse_datetime("completionDate", p["completionDate"], end_of_day=True)
    if out.get("start") and out.get("end") and out["start"] > out["end"]:
        raise BadQuery("completionDate", "is before startDate")
    tiles: set[str] = set()
    for key in ("tileid", "location"):
        for t in p.get(key, "").split(","):
            t = t.strip().upper()
            if not t:
                continue
            if t.startswith("T") and len(t) == 6:
                t = t[1:]
            if not re.fullmatch(r"\d{2}[C-X][A-Z]{2}", t):
                raise BadQuery(key, f"{t!r} is not an MGRS tile (e.g. 31TCJ or T31TCJ)")
            tiles.add(t)
    out["tiles"] = frozenset(tiles)
    if ("lat" in p) != ("lon" in p):
        raise BadQuery("lon" if "lat" in p else "lat", "is missing: give both lat and lon")
    if "lat" in p:
        out["point"] = (_float("lon", p["lon"], -180, 180), _float("lat", p["lat"], -90, 90))
    if "box" in p:
        try:
            x0, y0, x1, y1 = (float(v) for v in p["box"].split(","))
        except ValueError:
            raise BadQuery("box", f"{p['box']!r} is not lonmin,latmin,lonmax,latmax") from None
        if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            raise BadQuery("box", "must be lonmin <= lonmax in [-180, 180], latmin <= latmax in [-90, 90]")
        from shapely.geometry import box

        out["area"] = box(x0, y0, x1, y1)
    if "geometry" in p:
        import shapely
        import shapely.wkt
        from shapely.errors import ShapelyError

        try:
            g = shapely.wkt.loads(p["geometry"])
        except (ShapelyError, ValueError, TypeError):
            raise BadQuery("geometry", f"{p['geometry'][:80]!r} is not valid WKT (e.g. POLYGON((1 43,2 43,2 44,1 43)))") from None
        if g.is_empty:
            raise BadQuery("geometry", "is empty")
        out["area2" if "area" in out else "area"] = g if g.is_valid else shapely.make_valid(g)
    if "productType" in p:
        out["product_type"] = p["productType"].strip().upper()
    if "platform" in p:
        out["platform"] = normalise_platform(p["platform"])
    if "processingLevel" in p:
        out["level"] = normalise_level(p["processingLevel"])
    if "orbitNumber" in p:
        out["orbit"] = _int("orbitNumber", p["orbitNumber"], 1)
    if "relativeOrbitNumber" in p:
        out["relative_orbit"] = _int("relativeOrbitNumber", p["relativeOrbitNumber"], 1, S2_RELATIVE_ORBITS)
    if "orbitDirection" in p:
        d = p["orbitDirection"].strip().lower()
        if d not in ("ascending", "descending"):
            raise BadQuery("orbitDirection", f"{d!r}: use ascending or descending")
        out["orbit_direction"] = d
    if "cloudCover" in p:
        out["cloud"] = _parse_interval("cloudCover", p["cloudCover"])
    if "snowCover" in p:
        out["snow"] = _parse_interval("snowCover", p["snowCover"])
    if "productIdentifier" in p:
        ident = p["productIdentifier"].strip()
        out["identifier"] = re.compile(
            ".*".join(re.escape(part) for part in ident.split("%")), re.IGNORECASE
        )
    out["max_records"] = (
        _int("maxRecords", p["maxRecords"], 1, s.max_records) if "maxRecords" in p else s.default_records
    )
    out["page"] = _int("page", p["page"], 1) if "page" in p else 1
    if "sortOrder" in p:
        order = p["sortOrder"].strip().lower()
        if order not in ("ascending", "descending"):
            raise BadQuery("sortOrder", f"{order!r}: use ascending or descending")
        out["descending"] = order == "descending"
    return RestoQuery(**out)


def _iso(props: Mapping[str, Any], key: str) -> str | None:
    t = _item_time(props, key)
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def resto_feature(
    item: Mapping[str, Any],
    *,
    collection: str,
    download_url: str,
    resource_size: int | None,
    quicklook_url: str | None,
) -> dict[str, Any]:
    """The resto feature of a STAC item (a dict whose asset hrefs the server already rewrote)."""
    props: Mapping[str, Any] = item.get("properties", {})
    published = props.get("processing:datetime") or props.get("created")
    instruments = props.get("instruments") or ["msi"]
    orbit_state = props.get("sat:orbit_state")
    return {
        "type": "Feature",
        "id": item["id"],
        "geometry": item.get("geometry"),
        "properties": {
            "collection": collection,
            "productIdentifier": item["id"],
            "title": item["id"],
            "platform": normalise_platform(str(props.get("platform", ""))) or None,
            "instrument": str(instruments[0]).upper(),
            "processingLevel": _level(props),
            "productType": _product_type(props),
            "mgrs": _tile_of(props),
            "startDate": _iso(props, "start_datetime"),
            "completionDate": _iso(props, "end_datetime"),
            "published": published,
            "orbitNumber": props.get("sat:absolute_orbit"),
            "relativeOrbitNumber": props.get("sat:relative_orbit"),
            "orbitDirection": str(orbit_state).lower() if orbit_state else None,
            "cloudCover": props.get("eo:cloud_cover"),
            "snowCover": props.get("l2a:snow_cover"),
            "resourceSize": resource_size,
            "storage": {"mode": "disk"},
            "services": {
                "download": {"url": download_url, "mimeType": "application/zip", "size": resource_size}
            },
            "quicklook": quicklook_url,
            "thumbnail": quicklook_url,
        },
    }


def resto_response(
    features: list[dict[str, Any]],
    total: int,
    query: RestoQuery,
    *,
    self_url: str,
    page_url: Any,
) -> dict[str, Any]:
    """The FeatureCollection of one page; ``page_url(n)`` gives the URL of page ``n``."""
    links = [{"rel": "self", "type": "application/json", "href": self_url}]
    if query.page > 1:
        links.append({"rel": "previous", "type": "application/json", "href": page_url(query.page - 1)})
        links.append({"rel": "first", "type": "application/json", "href": page_url(1)})
    if query.offset + len(features) < total:
        links.append({"rel": "next", "type": "application/json", "href": page_url(query.page + 1)})
        last = max(1, math.ceil(total / query.max_records))
        links.append({"rel": "last", "type": "application/json", "href": page_url(last)})
    return {
        "type": "FeatureCollection",
        "properties": {
            "totalResults": total,
            "exactCount": True,
            "startIndex": query.offset + 1,
            "itemsPerPage": query.max_records,
            "query": {"originalFilters": query.original},
            "links": links,
        },
        "features": features,
    }


def resto_page_time_key(item: Mapping[str, Any]) -> datetime:
    """Sort key of resto answers (the acquisition start)."""
    return _item_time(item.get("properties", {}), "start_datetime") or datetime.min.replace(tzinfo=UTC)

