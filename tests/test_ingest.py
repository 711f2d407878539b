"""Ingest end to end on real-data SAFE products: idempotence across routes, supersession,
bad input moved aside with its reason, tiles outside every site, catalog downloads."""

from __future__ import annotations

import logging
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from servers import (
    FileServer,
    RustacApi,
    clone_safe_zip,
    rustac_exe,
    slovenia_products,
    stac_items,
    utc,
)

from l2a.catalog.download import DownloadSettings
from l2a.catalog.sources import StacApiSource, StaticStacSource
from l2a.config import Settings, Site
from l2a.production.db import Database
from l2a.production.inbox import InboxSettings
from l2a.production.ingest import Ingestor, IngestSettings, validate_product
from l2a.production.models import ProductState

OPTS = IngestSettings(inbox=InboxSettings(stable_interval_s=0.3))


def _old(p: Path) -> Path:
    t = time.time() - 3600
    for q in [p, *p.rglob("*")] if p.is_dir() else [p]:
        os.utime(q, (t, t))
    return p


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Settings, Database]]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = Settings(
        workdir=tmp_path, inbox=inbox, sites=[Site(name="slovenia", tiles=["33TVL"])]
    )
    db = Database(f"sqlite:///{tmp_path / 'l2a.db'}")
    db.upgrade()
    yield settings, db
    db.dispose()


def _drop(src: Path, inbox: Path, name: str | None = None) -> Path:
    dest = inbox / (name or src.name)
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copy(src, dest)
    return dest


def test_inbox_ingest_is_idempotent(env: tuple[Settings, Database]) -> None:
    settings, db = env
    _, _, zips = slovenia_products()
    for z in zips:
        _drop(z, settings.inbox)
    ing = Ingestor(settings, db, ingest=OPTS)
    first = ing.scan_inbox()  # just written: complete after two looks 0.3 s apart
    assert len(first.registered) == 5 and not first.pending and not first.rejected
    products = db.find_products()
    assert [p.state for p in products] == [ProductState.DISCOVERED] * 5
    assert [(c.site, c.tile, c.state, c.number) for c in db.status_counts()] == [
        ("slovenia", "33TVL", ProductState.DISCOVERED, 5)
    ]
    assert {Path(p.local_path).name for p in products if p.local_path} == {z.name for z in zips}
    assert all(p.cloud_cover == 0.0 and p.size_bytes for p in products)
    # a restart: a new ingestor, the database remembers, nothing is opened again
    again = Ingestor(settings, db, ingest=OPTS).scan_inbox()
    assert again.known == 5 and not again.registered
    assert len(db.find_products()) == 5


def test_still_being_written_waits(env: tuple[Settings, Database]) -> None:
    settings, db = env
    _, _, zips = slovenia_products()
    _drop(zips[0], settings.inbox)
    ing = Ingestor(settings, db, ingest=IngestSettings(inbox=InboxSettings(stable_interval_s=60)))
    r = ing.scan_inbox(wait=False)
    assert r.pending == [str(settings.inbox / zips[0].name)] and not r.registered
    assert db.find_products() == []


def test_duplicate_drop_recognised(env: tuple[Settings, Database]) -> None:
    settings, db = env
    _, safes, zips = slovenia_products()
    _old(_drop(zips[0], settings.inbox))
    ing = Ingestor(settings, db, ingest=OPTS)
    assert len(ing.scan_inbox().registered) == 1
    # the same product again, as a SAFE folder
    _old(_drop(safes[0], settings.inbox))
    r = ing.scan_inbox()
    assert len(r.duplicates) == 1 and not r.registered
    moved = settings.inbox / "_duplicates" / safes[0].name
    assert moved.is_dir() and not (settings.inbox / safes[0].name).exists()
    reason = (settings.inbox / "_duplicates" / (safes[0].name + ".reason.txt")).read_text()
    assert "duplicate of" in reason and zips[0].name in reason
    assert len(db.find_products()) == 1


def test_catalog_and_inbox_give_one_product(env: tuple[Settings, Database], tmp_path: Path) -> None:
    """The same products registered from a static STAC catalog, then dropped in the inbox."""
    import pystac

    settings, db = env
    _, safes, zips = slovenia_products()
    from l2a.testing.safe_writer import safe_stac_item

    cat = pystac.Catalog(id="l1c", description="local L1C")
    for s in safes:
        cat.add_item(safe_stac_item(s))
    cat.normalize_hrefs(str(tmp_path / "stac"))
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    source = StaticStacSource(str(tmp_path / "stac" / "catalog.json"))
    ing = Ingestor(settings, db, ingest=OPTS, sources=[source])
    r = ing.search_sources(fetch=False)
    assert r.found == 5 and len(r.registered) == 5
    assert all(p.local_path is None for p in db.find_products())
    for z in zips:
        _old(_drop(z, settings.inbox))
    r2 = ing.scan_inbox()
    assert len(r2.linked) == 5 and not r2.registered and not r2.duplicates
    products = db.find_products()
    assert len(products) == 5 and all(p.local_path for p in products)
    # and the catalog again: nothing new
    assert ing.search_sources(fetch=False).known == 5


def test_newer_baseline_supersedes(env: tuple[Settings, Database], tmp_path: Path) -> None:
    settings, db = env
    when = utc(2016, 5, 2, 10, 0, 32)
    old = clone_safe_zip(tmp_path, when, baseline="02.02")
    new = clone_safe_zip(tmp_path, when, baseline="05.10")
    ing = Ingestor(settings, db, ingest=OPTS)
    _old(_drop(old, settings.inbox))
    assert len(ing.scan_inbox().registered) == 1
    _old(_drop(new, settings.inbox))
    assert len(ing.scan_inbox().registered) == 1
    by_base = {p.baseline: p for p in db.find_products()}
    assert by_base["02.02"].state == ProductState.SUPERSEDED
    assert by_base["02.02"].superseded_by_id == by_base["05.10"].id
    assert by_base["05.10"].state == ProductState.DISCOVERED
    # an even older version arriving late is superseded on arrival
    late = clone_safe_zip(tmp_path, when, baseline="02.01")
    _old(_drop(late, settings.inbox))
    r = ing.scan_inbox()
    assert r.superseded == [late.name.removesuffix(".zip")]


def _truncated(src: Path, dest_dir: Path) -> Path:
    data = src.read_bytes()
    out = dest_dir / src.name
    out.write_bytes(data[: len(data) // 2])
    return out


def test_bad_products_rejected_others_go_on(
    env: tuple[Settings, Database], caplog: pytest.LogCaptureFixture
) -> None:
    settings, db = env
    _, safes, zips = slovenia_products()
    inbox = settings.inbox
    _drop(zips[0], inbox)  # good
    _truncated(zips[1], inbox)  # download cut short
    corrupt = _drop(safes[2], inbox)  # SAFE with a broken metadata file
    mtd = corrupt / "MTD_MSIL1C.xml"
    mtd.write_bytes(mtd.read_bytes()[:2000])
    incomplete = _drop(safes[3], inbox)  # SAFE with band files missing
    for jp2 in (incomplete / "GRANULE").rglob("*_B0[2-4].jp2"):
        jp2.unlink()
    with zipfile.ZipFile(
        inbox / "S2A_MSIL1C_20150909T100017_N0510_R122_T33TVL_20150909T120017.zip", "w"
    ) as zf:
        zf.writestr("readme.txt", "not a product")
    for p in inbox.iterdir():
        _old(p)
    caplog.set_level(logging.WARNING, logger="l2a.production.ingest")
    r = Ingestor(settings, db, ingest=OPTS).scan_inbox()
    assert r.registered == [zips[0].name.removesuffix(".zip")]
    reasons = dict(r.rejected)
    assert len(reasons) == 4
    assert "not a readable zip file" in reasons[str(inbox / zips[1].name)]
    assert "MTD_MSIL1C.xml" in reasons[str(corrupt)]
    assert "B02" in reasons[str(incomplete)] and "missing" in reasons[str(incomplete)]
    # moved aside with the reason beside them; the inbox holds only the good product
    rejected = inbox / "_rejected"
    assert sorted(p.name for p in inbox.iterdir() if p.name != "_rejected") == [zips[0].name]
    assert "not a readable zip" in (rejected / (zips[1].name + ".reason.txt")).read_text()
    assert (rejected / corrupt.name).is_dir()
    # marked failed in the database, with the reason
    failed = db.find_products(state=ProductState.FAILED)
    assert len(failed) == 4 and all(p.error for p in failed)
    assert any("rejecting" in rec.message for rec in caplog.records)
    # a good copy of a rejected product is taken
    _old(_drop(zips[1], inbox))
    r2 = Ingestor(settings, db, ingest=OPTS).scan_inbox()
    assert r2.registered == [zips[1].name.removesuffix(".zip")]
    assert len(db.find_products(state=ProductState.FAILED)) == 3


def test_tile_outside_every_site_ignored(
    env: tuple[Settings, Database], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, db = env
    z = clone_safe_zip(tmp_path, utc(2020, 6, 1, 10, 30, 21), tile="31TCJ")
    _old(_drop(z, settings.inbox))
    (settings.inbox / "notes.txt").write_text("hello")
    caplog.set_level(logging.INFO, logger="l2a.production.ingest")
    ing = Ingestor(settings, db, ingest=OPTS)
    r = ing.scan_inbox()
    assert r.ignored == [(z.name.removesuffix(".zip"), "tile 31TCJ is outside every site")]
    assert any("outside every site" in rec.message for rec in caplog.records)
    assert any("notes.txt" in rec.message for rec in caplog.records)
    (p,) = db.find_products()
    assert p.state == ProductState.IGNORED and p.error == "tile 31TCJ is outside every site"
    assert (settings.inbox / z.name).exists()  # left in place, remembered by the database
    caplog.clear()
    assert ing.scan_inbox().known == 1
    assert not any("outside every site" in rec.message for rec in caplog.records)


def test_area_sites_and_dates(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    from datetime import date

    settings = Settings(
        workdir=tmp_path,
        inbox=inbox,
        sites=[Site(name="ljubljana", bbox=(14.4, 45.9, 14.6, 46.1), start=date(2018, 1, 1))],
    )
    db = Database(f"sqlite:///{tmp_path / 'l2a.db'}")
    db.upgrade()
    inside = _old(clone_safe_zip(inbox, utc(2019, 4, 2, 10, 0, 31)))  # 33TVL holds the bbox
    before = _old(clone_safe_zip(inbox, utc(2017, 4, 2, 10, 0, 31)))
    r = Ingestor(settings, db, ingest=OPTS).scan_inbox()
    assert r.registered == [inside.name.removesuffix(".zip")]
    assert r.ignored and "outside the dates" in r.ignored[0][1]
    assert before.exists()
    db.dispose()


def test_validation_tiers(tmp_path: Path) -> None:
    _, _, zips = slovenia_products()
    tiers: tuple[Literal["name", "light", "full"], ...] = ("name", "light", "full")
    for tier in tiers:
        (vp,) = validate_product(zips[0], tier)
        assert vp.name.tile == "33TVL"
    # a zip whose member bytes were damaged: only the full tier reads them
    data = bytearray(zips[0].read_bytes())
    with zipfile.ZipFile(zips[0]) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("_B04.jp2"))
    off = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[off] ^= 0xFF
    damaged = tmp_path / zips[0].name
    damaged.write_bytes(bytes(data))
    validate_product(damaged, "light")
    with pytest.raises(Exception, match="CRC"):
        validate_product(damaged, "full")
    # metadata contradicting the name
    wrong = tmp_path / "renamed"
    wrong.mkdir()
    shutil.copy(zips[1], wrong / zips[0].name)
    with pytest.raises(Exception, match="sensing time"):
        validate_product(wrong / zips[0].name, "light")


# --------------------------------------------------------------------------- from a STAC API


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FileServer, RustacApi]]:
    if rustac_exe() is None:
        pytest.skip("rustac is not installed (pip install rustac): no local STAC API")
    _, _, zips = slovenia_products()
    root = tmp_path / "srv"
    root.mkdir()
    served = [Path(shutil.copy(z, root / z.name)) for z in zips]
    with FileServer(root) as srv:
        items = stac_items(served, srv, (5.0, 60.0, 10.0, 95.0, 20.0), "s2-l1c")
        with RustacApi(items, "s2-l1c", tmp_path / "api") as stac:
            yield srv, stac


def test_catalog_download_then_inbox(
    env: tuple[Settings, Database], api: tuple[FileServer, RustacApi]
) -> None:
    settings, db = env
    srv, stac = api
    settings = settings.model_copy(
        update={"processing": settings.processing.model_copy(update={"max_cloud_cover": 50.0})}
    )
    # one transfer is cut mid-file: the downloader resumes it
    srv.faults[next(iter(sorted(f"/files/{p.name}" for p in srv.root.iterdir())))] = [
        ("drop", 40_000)
    ]
    source = StacApiSource(
        stac.url,
        "s2-l1c",
        page_size=2,
        db=db,
        download_settings=DownloadSettings(max_attempts=3, backoff_s=0),
    )
    ing = Ingestor(settings, db, ingest=OPTS, sources=[source])
    r = ing.search_sources()
    assert r.found == 3 and len(r.registered) == 3 and len(r.downloaded) == 3 and not r.errors
    products = db.find_products()
    assert len(products) == 3
    assert all(p.local_path and Path(p.local_path).parent == settings.inbox for p in products)
    assert {p.cloud_cover for p in products} == {5.0, 10.0, 20.0}
    # the downloads are in the downloads table; the inbox scan knows the files
    assert len(db.download_counts()) == 3
    r2 = ing.scan_inbox()
    assert r2.known == 3 and not r2.registered and not r2.duplicates
    # searching again downloads nothing
    n = len(srv.requests)
    r3 = ing.search_sources()
    assert r3.known == 3 and not r3.downloaded and len(srv.requests) == n
