"""Product identity: what makes two Sentinel-2 products "the same acquisition".

Ingest is idempotent on the :class:`ProductKey` (platform, tile, datatake sensing time,
processing level). Two products with the same key are versions of one acquisition; the one
with the newer processing baseline (then the newer generation time, the "product
discriminator") supersedes the other (:meth:`ProductName.supersedes`).

Names understood by :func:`parse_product_name`:

- compact SAFE names (since December 2016), as folders, ``.SAFE``, ``.zip`` or ``.SAFE.zip``:
  ``S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE`` (the ``N`` field is
  missing in some catalogs, e.g. Planetary Computer ids);
- old "PDMC" multi-tile names:
  ``S2A_OPER_PRD_MSIL1C_PDMC_20160905T104813_R002_V20160905T005712_20160905T010424.SAFE``
  (no tile: one product per tile is made with :meth:`ProductName.for_tile`);
- old granule (tile) and datastrip names: ``S2A_OPER_MSI_L1C_TL_SGS__20160905T073438_A006291_T53HLA_N02.04``,
  ``S2A_OPER_MSI_L2A_DS_2APS_20230105T201055_S20230105T163809`` (partial identities);
- STAC ids: Earth Search ``S2A_T60CWS_20240109T203651_L2A`` and ``S2A_29RKH_20200219_0_L2A``
  (date only: use :func:`key_from_stac_item`, which reads ``s2:product_uri`` or
  ``s2:datatake_id``), Copernicus Data Space / Planetary Computer ids (compact names);
- MUSCATE / Theia names ``SENTINEL2A_20171201-105514-866_L2A_T31TCJ_C_V2-2``.

The sensing time of the key is the datatake sensing start written in the product name (the
same for every tile of a datatake), to the second, in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any

from l2a.errors import InputError

__all__ = [
    "ACQUISITION_TOLERANCE",
    "ProductKey",
    "ProductName",
    "key_from_stac_item",
    "normalise_tile",
    "parse_product_name",
]

#: Two sensing times of one platform over one tile closer than this are one acquisition
#: (half a Sentinel-2 orbit of 100.6 min; a tile is sensed at most ~40 min after its
#: datatake started).
ACQUISITION_TOLERANCE = timedelta(minutes=50)

_TIME = r"\d{8}T\d{6}"
_TILE = r"\d{2}[C-X][A-Z]{2}"
_SUFFIX = r"(?:\.SAFE)?(?:\.zip)?"

_COMPACT = re.compile(
    rf"^(?:[A-Za-z0-9]+_)??(?P<platform>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<sensing>{_TIME})"
    rf"(?:_N(?P<baseline>\d{{4}}))?_R(?P<orbit>\d{{3}})_T(?P<tile>{_TILE})_(?P<generated>{_TIME}){_SUFFIX}$"
)
_PDMC = re.compile(
    rf"^(?P<platform>S2[A-D])_OPER_PRD_MSI(?P<level>L1C|L2A)_PDMC_(?P<generated>{_TIME})"
    rf"_R(?P<orbit>\d{{3}})_V(?P<sensing>{_TIME})_(?P<stop>{_TIME}){_SUFFIX}$"
)
_GRANULE = re.compile(
    rf"^(?P<platform>S2[A-D])_OPER_MSI_(?P<level>L1C|L2A)_TL_(?P<centre>\w{{4}})_(?P<generated>{_TIME})"
    rf"_A(?P<abs_orbit>\d{{6}})_T(?P<tile>{_TILE})(?:_N(?P<baseline>\d{{2}}\.\d{{2}}))?(?:-.*)?$"
)
_DATASTRIP = re.compile(
    rf"^(?P<platform>S2[A-D])_OPER_MSI_(?P<level>L1C|L2A)_DS_(?P<centre>\w{{4}})_(?P<generated>{_TIME})"
    rf"_S(?P<sensing>{_TIME})(?:_N(?P<baseline>\d{{2}}\.\d{{2}}))?(?:-.*)?$"
)
_EARTH_SEARCH_C1 = re.compile(
    rf"^(?P<platform>S2[A-D])_T(?P<tile>{_TILE})_(?P<sensing>{_TIME})_(?P<level>L1C|L2A)$"
)
_EARTH_SEARCH_V0 = re.compile(
    rf"^(?P<platform>S2[A-D])_(?P<tile>{_TILE})_(?P<date>\d{{8}})_(?P<seq>\d+)_(?P<level>L1C|L2A)$"
)
_MUSCATE = re.compile(
    r"^SENTINEL2(?P<letter>[A-D])_(?P<date>\d{8})-(?P<time>\d{6})-(?P<ms>\d{3})_(?P<level>L1C|L2A|L3A)"
    rf"_T(?P<tile>{_TILE})_(?P<kind>[A-Z])_V(?P<version>\d+-\d+)(?:\.zip)?$"
)
_DATATAKE = re.compile(
    rf"^G(?P<platform>S2[A-D])_(?P<sensing>{_TIME})_(?P<abs_orbit>\d{{6}})_N(?P<baseline>\d{{2}}\.\d{{2}})$"
)
_TILE_RE = re.compile(rf"^T?(?P<tile>{_TILE})$")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def _baseline(text: str | None) -> str:
    """``"0510"`` or ``"05.10"`` -> ``"05.10"``; missing -> ``""``."""
    if not text:
        return ""
    digits = text.replace(".", "")
    return f"{digits[:2]}.{digits[2:]}"


def normalise_tile(tile: str) -> str:
    """MGRS tile id without the leading ``T``, upper case (``"t31tcj"`` -> ``"31TCJ"``).

    Raises
    ------
    InputError
        If ``tile`` is not a Sentinel-2 MGRS tile id.
    """
    m = _TILE_RE.match(tile.strip().upper())
    if not m:
        raise InputError(tile, "not a Sentinel-2 MGRS tile id (expected like 31TCJ or T31TCJ)")
    return m["tile"]


@dataclass(frozen=True, order=True)
class ProductKey:
    """Identity of one acquisition over one tile, independent of its processing version.

    Attributes
    ----------
    platform : str
        ``"S2A"``, ``"S2B"``, ``"S2C"`` …
    tile : str
        MGRS tile without ``T`` (``"31TCJ"``).
    sensing_time : datetime
        Datatake sensing start, UTC, whole seconds.
    level : str
        ``"L1C"`` or ``"L2A"``.
    """

    platform: str
    tile: str
    sensing_time: datetime
    level: str = "L1C"

    def __str__(self) -> str:
        return f"{self.platform}_T{self.tile}_{self.sensing_time:%Y%m%dT%H%M%S}_{self.level}"

    @classmethod
    def parse(cls, text: str) -> ProductKey:
        """Inverse of ``str(key)`` (``S2A_T31TCJ_20240120T105341_L1C``)."""
        m = _EARTH_SEARCH_C1.match(text)
        if not m:
            raise InputError(
                text, "not a product key (expected like S2A_T31TCJ_20240120T105341_L1C)"
            )
        return cls(m["platform"], m["tile"], _time(m["sensing"]), m["level"])


@dataclass(frozen=True)
class ProductName:
    """Everything a product name (or id) says about the product.

    Fields a name does not carry are ``None`` (or ``""`` for ``baseline``).

    Attributes
    ----------
    name : str
        The name as given, without directories (and without ``.SAFE``/``.zip``).
    form : str
        ``"compact"``, ``"pdmc"``, ``"granule"``, ``"datastrip"``, ``"stac"``, ``"muscate"``.
    platform : str
    level : str
        ``"L1C"``, ``"L2A"`` (``"L3A"`` for MUSCATE syntheses).
    tile : str or None
        Tile without ``T``; ``None`` for multi-tile (PDMC) products and datastrips.
    sensing_time : datetime or None
        Datatake sensing start (UTC); ``None`` for granule names.
    sensing_date_only : bool
        True when the name gives the date but not the time (Earth Search v0 ids).
    time_kind : str
        ``"datatake"`` when ``sensing_time`` is the datatake sensing start (SAFE names,
        datatake ids), ``"tile"`` when it is the tile's own sensing time (stactools/Earth Search
        c1 ids, MUSCATE names, STAC ``datetime``): both describe one acquisition, a few minutes
        apart, and :meth:`same_acquisition` matches them.
    baseline : str
        Processing baseline ``"05.10"``; ``""`` when the name does not say.
    generated : datetime or None
        Generation time (the compact name's product discriminator).
    relative_orbit : int or None
    absolute_orbit : int or None
    """

    name: str
    form: str
    platform: str
    level: str
    tile: str | None = None
    sensing_time: datetime | None = None
    sensing_date_only: bool = False
    time_kind: str = "datatake"
    baseline: str = ""
    generated: datetime | None = None
    relative_orbit: int | None = None
    absolute_orbit: int | None = None

    @property
    def is_complete(self) -> bool:
        """True when the name alone gives a :class:`ProductKey`."""
        return bool(self.tile) and self.sensing_time is not None and not self.sensing_date_only

    def same_acquisition(self, other: ProductName) -> bool:
        """True if both names describe the same acquisition (possibly different versions).

        Same platform, tile and level, and sensing times closer than
        :data:`ACQUISITION_TOLERANCE` (the datatake start and a tile's sensing time differ by
        up to tens of minutes; the next pass over a tile is one orbit, about 100 min, later).
        """
        if not (self.is_complete and other.is_complete):
            return False
        a, b = self.key(), other.key()
        return (a.platform, a.tile, a.level) == (b.platform, b.tile, b.level) and abs(
            a.sensing_time - b.sensing_time
        ) < ACQUISITION_TOLERANCE

    def key(self) -> ProductKey:
        """The acquisition identity.

        Raises
        ------
        InputError
            If the name lacks the tile or the sensing time (multi-tile PDMC products: use
            :meth:`for_tile`; granule names; date-only STAC ids: use :func:`key_from_stac_item`).
        """
        if not self.tile:
            raise InputError(
                self.name, "the name gives no tile (a multi-tile product: pick a tile)"
            )
        if self.sensing_time is None or self.sensing_date_only:
            raise InputError(self.name, "the name gives no sensing time; read it from the metadata")
        return ProductKey(self.platform, self.tile, self.sensing_time, self.level)

    def for_tile(self, tile: str) -> ProductName:
        """The same product restricted to one tile (for old multi-tile products)."""
        return replace(self, tile=normalise_tile(tile))

    @property
    def version(self) -> tuple[str, datetime]:
        """Sort key of processing versions: baseline, then generation time."""
        return (self.baseline, self.generated or datetime.min.replace(tzinfo=UTC))

    def supersedes(self, other: ProductName) -> bool:
        """True if this product is a newer version of the same acquisition as ``other``."""
        return self.same_acquisition(other) and self.version > other.version


def _strip(name: str) -> str:
    base = PurePath(name.rstrip("/\\")).name
    for suffix in (".zip", ".SAFE", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def parse_product_name(name: str) -> ProductName:
    """Parse a product name, file or folder path, zip name or STAC item id.

    Parameters
    ----------
    name : str
        E.g. ``"/inbox/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE"``.

    Returns
    -------
    ProductName

    Raises
    ------
    InputError
        If the name matches none of the known Sentinel-2 naming conventions.
    """
    base = _strip(name)
    if m := _COMPACT.match(base):
        return ProductName(
            name=base,
            form="compact",
            platform=m["platform"],
            level=m["level"],
            tile=m["tile"],
            sensing_time=_time(m["sensing"]),
            baseline=_baseline(m["baseline"]),
            generated=_time(m["generated"]),
            relative_orbit=int(m["orbit"]),
        )
    if m := _PDMC.match(base):
        return ProductName(
            name=base,
            form="pdmc",
            platform=m["platform"],
            level=m["level"],
            sensing_time=_time(m["sensing"]),
            generated=_time(m["generated"]),
            relative_orbit=int(m["orbit"]),
        )
    if m := _GRANULE.match(base):
        return ProductName(
            name=base,
            form="granule",
            platform=m["platform"],
            level=m["level"],
            tile=m["tile"],
            baseline=_baseline(m["baseline"]),
            generated=_time(m["generated"]),
            absolute_orbit=int(m["abs_orbit"]),
        )
    if m := _DATASTRIP.match(base):
        return ProductName(
            name=base,
            form="datastrip",
            platform=m["platform"],
            level=m["level"],
            sensing_time=_time(m["sensing"]),
            baseline=_baseline(m["baseline"]),
            generated=_time(m["generated"]),
        )
    if m := _EARTH_SEARCH_C1.match(base):
        return ProductName(
            name=base,
            form="stac",
            platform=m["platform"],
            level=m["level"],
            tile=m["tile"],
            sensing_time=_time(m["sensing"]),
            time_kind="tile",
        )
    if m := _EARTH_SEARCH_V0.match(base):
        return ProductName(
            name=base,
            form="stac",
            platform=m["platform"],
            level=m["level"],
            tile=m["tile"],
            sensing_time=datetime.strptime(m["date"], "%Y%m%d").replace(tzinfo=UTC),
            sensing_date_only=True,
            time_kind="date",
        )
    if m := _MUSCATE.match(base):
        when = datetime.strptime(f"{m['date']}T{m['time']}", "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return ProductName(
            name=base,
            form="muscate",
            platform=f"S2{m['letter']}",
            level=m["level"],
            tile=m["tile"],
            sensing_time=when,
            time_kind="tile",
        )
    raise InputError(
        name,
        "not a recognised Sentinel-2 product name (expected a SAFE name such as "
        "S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE, a zip of one, "
        "or a STAC item id)",
    )


def _platform_from_property(value: str) -> str | None:
    m = re.fullmatch(r"(?i)sentinel-?2([a-d])", value.strip())
    return f"S2{m.group(1).upper()}" if m else None


def key_from_stac_item(item: Mapping[str, Any] | Any) -> ProductName:
    """Identity of a STAC item (a :class:`pystac.Item` or its dict form).

    Tries, in order: ``s2:product_uri`` (the SAFE name), the item id, ``s2:datatake_id`` with the
    tile from ``grid:code``/``s2:mgrs_tile``/``mgrs:*``, and finally the ``platform`` and
    ``datetime`` properties (tile sensing time: only used when nothing better exists).

    Returns
    -------
    ProductName
        Complete (``is_complete``) unless the item says too little.

    Raises
    ------
    InputError
        If the item does not describe a Sentinel-2 product.
    """
    data: Mapping[str, Any] = item if isinstance(item, Mapping) else item.to_dict()
    item_id = str(data.get("id", ""))
    props: Mapping[str, Any] = data.get("properties", {}) or {}

    uri = props.get("s2:product_uri")
    if isinstance(uri, str):
        try:
            parsed = parse_product_name(uri)
        except InputError:
            parsed = None
        if parsed is not None and parsed.is_complete:
            return parsed

    from_id: ProductName | None
    try:
        from_id = parse_product_name(item_id)
    except InputError:
        from_id = None
    if from_id is not None and from_id.is_complete and from_id.time_kind == "datatake":
        return _with_props(from_id, props)

    tile = _tile_from_props(props) or (from_id.tile if from_id else None)
    level = _level_from_props(props) or (from_id.level if from_id else "L1C")
    datatake = props.get("s2:datatake_id")
    if isinstance(datatake, str) and (m := _DATATAKE.match(datatake)) and tile:
        return _with_props(
            ProductName(
                name=item_id,
                form="stac",
                platform=m["platform"],
                level=level,
                tile=tile,
                sensing_time=_time(m["sensing"]),
                baseline=_baseline(m["baseline"]),
                absolute_orbit=int(m["abs_orbit"]),
            ),
            props,
        )
    if from_id is not None and from_id.is_complete:
        return _with_props(from_id, props)
    platform = _platform_from_property(str(props.get("platform", ""))) or (
        from_id.platform if from_id else None
    )
    when = props.get("datetime")
    if platform and tile and isinstance(when, str):
        sensing = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(UTC)
        return _with_props(
            ProductName(
                name=item_id,
                form="stac",
                platform=platform,
                level=level,
                tile=tile,
                sensing_time=sensing.replace(microsecond=0),
                time_kind="tile",
            ),
            props,
        )
    raise InputError(
        item_id or "<STAC item>", "the STAC item does not identify a Sentinel-2 product"
    )


def _tile_from_props(props: Mapping[str, Any]) -> str | None:
    for field in ("s2:mgrs_tile", "grid:code", "tileid", "mgrs"):
        value = props.get(field)
        if isinstance(value, str) and value:
            try:
                return normalise_tile(value.removeprefix("MGRS-"))
            except InputError:
                continue
    zone, band, square = (
        props.get(k) for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")
    )
    if zone is not None and band and square:
        return normalise_tile(f"{int(zone):02d}{band}{square}")
    return None


def _level_from_props(props: Mapping[str, Any]) -> str | None:
    for field in ("processing:level", "s2:product_type", "processingLevel", "productType"):
        value = props.get(field)
        if isinstance(value, str):
            if "1C" in value.upper():
                return "L1C"
            if "2A" in value.upper():
                return "L2A"
    return None


def _with_props(name: ProductName, props: Mapping[str, Any]) -> ProductName:
    """Fill fields the id lacks from STAC properties."""
    updates: dict[str, Any] = {}
    if not name.baseline and isinstance(props.get("s2:processing_baseline"), str):
        updates["baseline"] = _baseline(props["s2:processing_baseline"])
    if name.relative_orbit is None and isinstance(props.get("sat:relative_orbit"), int):
        updates["relative_orbit"] = props["sat:relative_orbit"]
    if name.generated is None and isinstance(props.get("s2:generation_time"), str):
        gen = datetime.fromisoformat(props["s2:generation_time"].replace("Z", "+00:00"))
        updates["generated"] = gen.astimezone(UTC).replace(microsecond=0)
    return replace(name, **updates) if updates else name
