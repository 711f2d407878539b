"""Product identity: names of every product in the sample data, STAC ids, supersession."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from defusedxml import ElementTree
from hypothesis import given
from hypothesis import strategies as st

from l2a.errors import InputError
from l2a.io.identity import (
    ACQUISITION_TOLERANCE,
    ProductKey,
    ProductName,
    key_from_stac_item,
    normalise_tile,
    parse_product_name,
)

# Names of product-like things (products, granules, datastrips, STAC ids) in the sample data.
_PRODUCT_LIKE = re.compile(
    r"^(esa_)?S2[A-D]_(MSIL|OPER_PRD_|OPER_MSI_L[12][AC]_(TL|DS)_|T?\d\d[A-Z]{3}_)"
)
_MTD_FIELDS = (
    "PRODUCT_URI",
    "PROCESSING_BASELINE",
    "SPACECRAFT_NAME",
    "DATATAKE_SENSING_START",
    "SENSING_ORBIT_NUMBER",
)


def _product_names(root: Path) -> list[Path]:
    found = []
    for p in root.rglob("*"):
        if _PRODUCT_LIKE.match(p.name) and (p.is_dir() or p.suffix in (".zip", ".json")):
            found.append(p)
    return sorted(found)


def _mtd_fields(text: bytes) -> dict[str, str]:
    tree = ElementTree.fromstring(text)
    out: dict[str, str] = {}
    for el in tree.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in _MTD_FIELDS and tag not in out and el.text:
            out[tag] = el.text.strip()
    return out


def _product_mtd(path: Path) -> dict[str, str] | None:
    """Fields of the product-level metadata file, read independently of the name parser."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            names = [
                n for n in z.namelist() if re.search(r"/(MTD_MSIL1C|MTD_MSIL2A)\.xml$", n, re.I)
            ]
            return _mtd_fields(z.read(names[0])) if names else None
    if path.is_dir():
        for f in path.iterdir():
            if re.fullmatch(r"(MTD_MSIL(1C|2A)|S2._OPER_MTD_SAFL1C_.*)\.xml", f.name, re.I):
                return _mtd_fields(f.read_bytes())
    return None


def _safe_time(text: str) -> datetime:
    return (
        datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(microsecond=0)
    )


@pytest.mark.sample_data
def test_every_sample_product_name_parses_and_agrees_with_its_metadata(sample_data: Path) -> None:
    paths = _product_names(sample_data)
    assert len(paths) >= 30, (
        "expected the sample data's SAFE folders, zips, granules and STAC items"
    )
    checked = 0
    for path in paths:
        if path.suffix == ".json":
            continue  # STAC items: see the next test
        name = parse_product_name(str(path))
        assert name.platform in {"S2A", "S2B"}, path
        mtd = _product_mtd(path)
        if mtd is None:
            continue
        # Independent truth: the product's own metadata file.
        assert name.platform == "S2" + mtd["SPACECRAFT_NAME"][-1], path
        assert name.sensing_time == _safe_time(mtd["DATATAKE_SENSING_START"]), path
        assert name.relative_orbit == int(mtd["SENSING_ORBIT_NUMBER"]), path
        if name.baseline:
            assert name.baseline == mtd["PROCESSING_BASELINE"], path
        if name.form == "compact":
            uri = parse_product_name(mtd["PRODUCT_URI"])
            assert uri.key() == name.key(), path
        checked += 1
    assert checked >= 15


@pytest.mark.sample_data
def test_pdmc_multi_tile_product_needs_a_tile(sample_path: Callable[[str], Path]) -> None:
    safe = sample_path(
        "s2_metadata_only/s2reader_old_and_compact_safe/safe/"
        "S2A_OPER_PRD_MSIL1C_PDMC_20160905T104813_R002_V20160905T005712_20160905T010424.SAFE"
    )
    name = parse_product_name(safe.name)
    assert (name.form, name.tile, name.relative_orbit) == ("pdmc", None, 2)
    assert not name.is_complete
    with pytest.raises(InputError, match="no tile"):
        name.key()
    granules = sorted(g.name for g in (safe / "GRANULE").iterdir())
    tiles = [parse_product_name(g).tile for g in granules]
    assert tiles == ["53HLA", "53HMA", "53HNA", "53HNV", "53HPA", "53HPV"]
    keys = {name.for_tile(t).key() for t in tiles if t}
    assert len(keys) == 6
    assert all(k.sensing_time == datetime(2016, 9, 5, 0, 57, 12, tzinfo=UTC) for k in keys)
    # the granules carry the baseline the PDMC name lacks
    assert {parse_product_name(g).baseline for g in granules} == {"02.04"}


@pytest.mark.sample_data
def test_stac_items_of_the_sample_data(sample_data: Path) -> None:
    items = []
    for f in sample_data.rglob("*.json"):
        data = json.loads(f.read_text())
        if data.get("type") == "Feature":
            items.append(data)
    assert len(items) >= 10
    for data in items:
        name = key_from_stac_item(data)
        assert name.is_complete, data["id"]
        props = data["properties"]
        if "s2:product_uri" in props:
            # the SAFE name wins: datatake start time, and the key of the same product's SAFE
            assert name.key() == parse_product_name(props["s2:product_uri"]).key()
            assert name.time_kind == "datatake"
        # the item's own id (tile sensing time, or a date only) describes the same acquisition
        by_id = parse_product_name(data["id"])
        if by_id.is_complete:
            assert by_id.same_acquisition(name), data["id"]
        if "s2:processing_baseline" in props:
            assert name.baseline == props["s2:processing_baseline"]


def test_compact_names_zip_and_paths() -> None:
    base = "S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244"
    for form in (base, base + ".SAFE", base + ".zip", base + ".SAFE.zip", f"/inbox/x/{base}.SAFE/"):
        n = parse_product_name(form)
        assert n.name == base
        assert str(n.key()) == "S2A_T31TCJ_20240120T105341_L1C"
        assert (n.baseline, n.relative_orbit) == ("05.10", 51)
        assert n.generated == datetime(2024, 1, 20, 12, 52, 44, tzinfo=UTC)
    # Planetary Computer ids lack the baseline
    pc = parse_product_name("S2A_MSIL2A_20240109T203651_R085_T60CWS_20240110T005017")
    assert (pc.baseline, pc.tile, pc.level) == ("", "60CWS", "L2A")


def test_key_round_trip_and_ordering() -> None:
    k = parse_product_name("S2B_MSIL1C_20240305T104819_N0510_R051_T31TCJ_20240305T125347").key()
    assert ProductKey.parse(str(k)) == k
    k2 = parse_product_name("S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244").key()
    assert sorted([k, k2], key=lambda x: x.sensing_time) == [k2, k]
    with pytest.raises(InputError):
        ProductKey.parse("nonsense")


def test_newer_baseline_supersedes() -> None:
    old = parse_product_name("S2A_MSIL1C_20200219T112111_N0209_R037_T29RKH_20200219T123947")
    new = parse_product_name("S2A_MSIL1C_20200219T112111_N0500_R037_T29RKH_20230601T101010")
    assert old.key() == new.key()
    assert new.supersedes(old) and not old.supersedes(new)
    # Same baseline, re-generated later (real pair from the sample data): later one wins.
    a = parse_product_name("S2A_MSIL2A_20230625T234621_N0509_R073_T01WCP_20230626T022157")
    b = parse_product_name("S2A_MSIL2A_20230625T234621_N0509_R073_T01WCP_20230626T022158")
    assert b.supersedes(a) and not a.supersedes(b)
    # A different tile or date is another acquisition, never superseded.
    other_tile = parse_product_name("S2A_MSIL2A_20230625T234621_N0510_R073_T01WCS_20230626T022157")
    assert not other_tile.supersedes(a)


def test_same_acquisition_tolerance() -> None:
    datatake = parse_product_name("S2A_MSIL2A_20220401T083601_N0400_R064_T34LBQ_20220401T110010")
    tile_time = parse_product_name("S2A_T34LBQ_20220401T090142_L2A")  # 25 min later, same pass
    assert tile_time.time_kind == "tile"
    assert datatake.same_acquisition(tile_time)
    next_orbit = datatake.sensing_time + timedelta(minutes=100.6)  # type: ignore[operator]
    later = parse_product_name(f"S2A_T34LBQ_{next_orbit:%Y%m%dT%H%M%S}_L2A")
    assert not datatake.same_acquisition(later)
    assert timedelta(minutes=40) < ACQUISITION_TOLERANCE < timedelta(minutes=100.6 / 2 + 1)


def test_other_name_forms() -> None:
    es = parse_product_name("S2A_29RKH_20200219_0_L2A")
    assert es.sensing_date_only and not es.is_complete
    with pytest.raises(InputError, match="sensing time"):
        es.key()
    muscate = parse_product_name("SENTINEL2A_20171201-105514-866_L2A_T31TCJ_C_V2-2")
    assert (muscate.platform, muscate.tile, muscate.level) == ("S2A", "31TCJ", "L2A")
    assert muscate.sensing_time == datetime(2017, 12, 1, 10, 55, 14, tzinfo=UTC)
    ds = parse_product_name("S2A_OPER_MSI_L2A_DS_2APS_20230105T201055_S20230105T163809")
    assert ds.form == "datastrip" and ds.tile is None


def test_stac_item_without_product_uri_uses_datatake_then_datetime() -> None:
    props = {
        "platform": "sentinel-2b",
        "grid:code": "MGRS-31TCJ",
        "datetime": "2024-03-05T10:58:30.123Z",
        "s2:processing_baseline": "05.10",
        "processing:level": "L1C",
    }
    item = {"type": "Feature", "id": "URN:FEATURE:DATA:gdh:abc:V1", "properties": props}
    n = key_from_stac_item(item)
    assert (n.platform, n.tile, n.time_kind, n.baseline) == ("S2B", "31TCJ", "tile", "05.10")
    assert n.same_acquisition(
        parse_product_name("S2B_MSIL1C_20240305T104819_N0510_R051_T31TCJ_20240305T125347")
    )
    props2 = dict(props, **{"s2:datatake_id": "GS2B_20240305T104819_036483_N05.10"})
    n2 = key_from_stac_item({"id": "x", "properties": props2})
    assert str(n2.key()) == "S2B_T31TCJ_20240305T104819_L1C" and n2.time_kind == "datatake"
    with pytest.raises(InputError):
        key_from_stac_item({"id": "landsat", "properties": {"platform": "landsat-8"}})


@pytest.mark.parametrize("bad", ["", "S2A_MSIL1C_2024", "LC08_L1TP_199030_20240101", "readme.txt"])
def test_unknown_names_are_input_errors(bad: str) -> None:
    with pytest.raises(InputError, match="not a recognised"):
        parse_product_name(bad)


def test_normalise_tile() -> None:
    assert normalise_tile("t31tcj") == "31TCJ" == normalise_tile("31TCJ")
    for bad in ("31TC", "ABCDE", "31TCJX"):
        with pytest.raises(InputError):
            normalise_tile(bad)


_times = st.datetimes(
    min_value=datetime(2015, 6, 23), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
_tiles = st.from_regex(r"\A(0[1-9]|[1-5][0-9]|60)[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V]\Z")


@given(
    platform=st.sampled_from(["S2A", "S2B", "S2C"]),
    level=st.sampled_from(["L1C", "L2A"]),
    sensing=_times,
    delay=st.integers(min_value=0, max_value=10**8),
    baseline=st.integers(min_value=0, max_value=9999),
    orbit=st.integers(min_value=1, max_value=143),
    tile=_tiles,
    container=st.sampled_from(["", ".SAFE", ".zip", ".SAFE.zip"]),
)
def test_compact_names_round_trip(
    platform: str,
    level: str,
    sensing: datetime,
    delay: int,
    baseline: int,
    orbit: int,
    tile: str,
    container: str,
) -> None:
    generated = sensing + timedelta(seconds=delay)
    name = (
        f"{platform}_MSI{level}_{sensing:%Y%m%dT%H%M%S}_N{baseline:04d}_R{orbit:03d}_T{tile}_"
        f"{generated:%Y%m%dT%H%M%S}{container}"
    )
    n = parse_product_name(name)
    assert (n.platform, n.level, n.tile, n.relative_orbit) == (platform, level, tile, orbit)
    assert n.sensing_time == sensing and n.generated == generated
    assert n.baseline == f"{baseline // 100:02d}.{baseline % 100:02d}"
    assert ProductKey.parse(str(n.key())) == n.key()
    assert not n.supersedes(n)


@given(a=st.tuples(st.integers(0, 9999), _times), b=st.tuples(st.integers(0, 9999), _times))
def test_supersession_is_a_strict_order(a: tuple[int, datetime], b: tuple[int, datetime]) -> None:
    sensing = datetime(2024, 1, 20, 10, 53, 41, tzinfo=UTC)

    def make(v: tuple[int, datetime]) -> ProductName:
        return parse_product_name(
            f"S2A_MSIL1C_{sensing:%Y%m%dT%H%M%S}_N{v[0]:04d}_R051_T31TCJ_{v[1]:%Y%m%dT%H%M%S}"
        )

    na, nb = make(a), make(b)
    assert not (na.supersedes(nb) and nb.supersedes(na))
    if (na.baseline, na.generated) != (nb.baseline, nb.generated):
        assert na.supersedes(nb) != nb.supersedes(na)
        assert na.supersedes(nb) == ((a[0], a[1]) > (b[0], b[1]))
