"""Inbox scanning: complete files only, moving aside, the watchdog and polling observers."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from servers import slovenia_products

from l2a.config import Settings, Site
from l2a.production.db import Database
from l2a.production.inbox import (
    InboxSettings,
    InboxWatcher,
    StabilityTracker,
    is_network_filesystem,
    list_entries,
    move_aside,
    read_entry,
)
from l2a.production.ingest import Ingestor, IngestReport, IngestSettings
from l2a.production.models import ProductState


def _old(p: Path, age_s: float = 3600) -> None:
    t = time.time() - age_s
    for q in [p, *p.rglob("*")] if p.is_dir() else [p]:
        os.utime(q, (t, t))


def test_list_entries_skips_partial_names(tmp_path: Path) -> None:
    _, safes, zips = slovenia_products()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(zips[0], inbox / zips[0].name)
    shutil.copytree(safes[1], inbox / safes[1].name)
    shutil.copy(zips[2], inbox / (zips[2].name + ".part"))  # download in progress
    (inbox / ".S2A_hidden.zip").write_bytes(b"x")
    (inbox / "upload.tmp").write_bytes(b"x")
    (inbox / "README.txt").write_text("hello")
    (inbox / "_rejected").mkdir()
    entries, unknown = list_entries(inbox)
    assert [(e.path.name, e.kind) for e in entries] == [
        (zips[0].name, "zip"),
        (safes[1].name, "safe"),
    ]
    assert unknown == [inbox / "README.txt"]
    safe = entries[1]
    assert safe.nfiles == sum(1 for p in safes[1].rglob("*") if p.is_file())
    assert safe.size == sum(p.stat().st_size for p in safes[1].rglob("*") if p.is_file())


def test_stability_needs_two_equal_looks(tmp_path: Path) -> None:
    now = [100.0]
    tracker = StabilityTracker(InboxSettings(stable_interval_s=2.0), clock=lambda: now[0])
    p = tmp_path / "S2A_x.zip"
    p.write_bytes(b"a" * 10)
    assert not tracker.is_complete(read_entry(p))  # type: ignore[arg-type]
    now[0] += 1.0
    assert not tracker.is_complete(read_entry(p))  # type: ignore[arg-type]  # too soon
    with open(p, "ab") as f:  # still growing
        f.write(b"b" * 10)
    now[0] += 5.0
    assert not tracker.is_complete(read_entry(p))  # type: ignore[arg-type]  # changed: restart
    now[0] += 2.5
    assert tracker.is_complete(read_entry(p))  # type: ignore[arg-type]
    # an old file (e.g. found after a restart) is complete at the first look
    q = tmp_path / "S2A_y.zip"
    q.write_bytes(b"c")
    _old(q)
    assert StabilityTracker(InboxSettings(settle_age_s=60)).is_complete(read_entry(q))  # type: ignore[arg-type]
    # a completion event makes it complete at once
    r = tmp_path / "S2A_z.zip"
    r.write_bytes(b"d")
    tracker.signal_complete(r)
    assert tracker.is_complete(read_entry(r))  # type: ignore[arg-type]


def test_move_aside_writes_the_reason(tmp_path: Path) -> None:
    a = tmp_path / "S2A_a.zip"
    a.write_bytes(b"1")
    target = move_aside(a, tmp_path / "_rejected", "not a readable zip file")
    assert target == tmp_path / "_rejected" / "S2A_a.zip" and not a.exists()
    assert (
        "not a readable zip file" in (tmp_path / "_rejected" / "S2A_a.zip.reason.txt").read_text()
    )
    a.write_bytes(b"2")  # the same name again: kept apart
    second = move_aside(a, tmp_path / "_rejected", "again")
    assert second.name == "S2A_a.zip.1" and target.read_bytes() == b"1"


def test_network_filesystem_detection(tmp_path: Path) -> None:
    mounts = (
        "/dev/sda1 / ext4 rw 0 0\n"
        "server:/export /data nfs4 rw 0 0\n"
        "/dev/sdb1 /data/local ext4 rw 0 0\n"
        "lustre@tcp:/fs /scratch lustre rw 0 0\n"
    )
    assert is_network_filesystem(Path("/data/site/inbox"), mounts)
    assert not is_network_filesystem(Path("/data/local/inbox"), mounts)  # longest mount wins
    assert is_network_filesystem(Path("/scratch/x"), mounts)
    assert not is_network_filesystem(Path("/home/x"), mounts)
    w = InboxWatcher(tmp_path, InboxSettings(observer="polling"))
    assert w.mode == "polling"


# --------------------------------------------------------------------------- watching


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Settings, Database]]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = Settings(
        workdir=tmp_path,
        inbox=inbox,
        sites=[Site(name="slovenia", tiles=["33TVL"])],
        poll_interval_s=3600,  # the periodic scan runs once at start: events do the rest
    )
    db = Database(f"sqlite:///{tmp_path / 'l2a.db'}")
    db.upgrade()
    yield settings, db
    db.dispose()


def _watch(
    settings: Settings, db: Database, opts: IngestSettings
) -> tuple[threading.Event, threading.Thread, list[IngestReport]]:
    stop = threading.Event()
    reports: list[IngestReport] = []
    ing = Ingestor(settings, db, ingest=opts)
    t = threading.Thread(target=ing.watch, args=(stop,), kwargs={"on_report": reports.append})
    t.start()
    return stop, t, reports


def _wait_registered(db: Database, n: int, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if len(db.find_products(state=ProductState.DISCOVERED)) >= n:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} products registered after {timeout} s")


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_watcher_sees_a_product_within_seconds(
    site: tuple[Settings, Database], tmp_path: Path, observer: Literal["inotify", "polling"]
) -> None:
    settings, db = site
    _, safes, zips = slovenia_products()
    opts = IngestSettings(
        inbox=InboxSettings(observer=observer, stable_interval_s=1.0, polling_interval_s=0.25)
    )
    stop, thread, reports = _watch(settings, db, opts)
    try:
        time.sleep(0.5)  # the first periodic scan has run (empty inbox)
        # 1. a SAFE folder moved in from elsewhere on the same disk (created event, then the
        #    two looks of the stability check)
        staging = tmp_path / "staging"
        shutil.copytree(safes[0], staging / safes[0].name)
        os.rename(staging / safes[0].name, settings.inbox / safes[0].name)
        dt = _wait_registered(db, 1, timeout=8)
        assert dt < 4.0, dt
        # 2. a zip written as .part then renamed in place (completion event)
        part = settings.inbox / (zips[1].name + ".part")
        shutil.copy(zips[1], part)
        t0 = time.monotonic()
        os.rename(part, settings.inbox / zips[1].name)
        _wait_registered(db, 2, timeout=8)
        assert time.monotonic() - t0 < 4.0
    finally:
        stop.set()
        thread.join(timeout=10)
    names = {p.name for p in db.find_products()}
    assert names == {safes[0].name.removesuffix(".SAFE"), zips[1].name.removesuffix(".zip")}
    assert sum(len(r.registered) for r in reports) == 2


def test_watcher_waits_for_a_growing_file(site: tuple[Settings, Database]) -> None:
    """A zip written in place in several sessions is not taken while it grows."""
    settings, db = site
    _, _, zips = slovenia_products()
    data = zips[2].read_bytes()
    opts = IngestSettings(inbox=InboxSettings(observer="inotify", stable_interval_s=1.0))
    stop, thread, reports = _watch(settings, db, opts)
    target = settings.inbox / zips[2].name
    try:
        time.sleep(0.3)
        # a slow writer: every write is a "modified" event; only the size/mtime check can
        # tell that the file is still growing (the close at the end is the completion event)
        with open(target, "wb") as f:
            for i in range(0, len(data), len(data) // 4):
                f.write(data[i : i + len(data) // 4])
                f.flush()
                time.sleep(0.4)
        _wait_registered(db, 1, timeout=8)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not [r for r in reports if r.rejected]  # never read half-written
