"""Verified, resumable downloads against a real local HTTP server (tests/servers.py)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FileServer, multihash_sha256, slovenia_products

from l2a.catalog.download import (
    Checksum,
    DownloadError,
    DownloadSettings,
    download,
    file_checksum,
    parse_checksum,
)
from l2a.production.db import Database

FAST = DownloadSettings(max_attempts=3, backoff_s=0.0, read_timeout_s=10, chunk_bytes=8192)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FileServer, Path]]:
    """A server over a copy of a real SAFE zip."""
    _, _, zips = slovenia_products()
    root = tmp_path / "srv"
    root.mkdir()
    z = root / zips[0].name
    shutil.copy(zips[0], z)
    with FileServer(root) as srv:
        yield srv, z


def test_parse_checksum_forms() -> None:
    data = b"sentinel-2"
    sha = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(data).hexdigest()
    assert parse_checksum("1220" + sha) == Checksum("sha256", sha)  # STAC file:checksum
    assert parse_checksum("d50110" + md5) == Checksum("md5", md5)  # multihash md5 (varint code)
    assert parse_checksum(f"MD5:{md5.upper()}") == Checksum("md5", md5)
    assert parse_checksum(f"SHA-256:{sha}") == Checksum("sha256", sha)
    assert parse_checksum(md5) == Checksum("md5", md5)
    assert parse_checksum(sha) == Checksum("sha256", sha)
    for bad in ("", "xyz", "abc", "nohash:12"):
        with pytest.raises(ValueError):
            parse_checksum(bad)


def test_download_verified_by_multihash(served: tuple[FileServer, Path], tmp_path: Path) -> None:
    srv, z = served
    dest = tmp_path / "out" / z.name
    r = download(srv.file_url(z.name), dest, checksum=multihash_sha256(z), settings=FAST)
    assert dest.read_bytes() == z.read_bytes()
    assert r.verified_by == "checksum" and r.attempts == 1 and r.resumed == 0
    assert r.checksum == file_checksum(z)
    assert not dest.with_name(dest.name + ".part").exists()
    # a second call finds the verified file: no request at all
    n = len(srv.requests)
    again = download(srv.file_url(z.name), dest, checksum=multihash_sha256(z), settings=FAST)
    assert again.reused and len(srv.requests) == n


def test_resume_after_dropped_connection(served: tuple[FileServer, Path], tmp_path: Path) -> None:
    srv, z = served
    path = f"/files/{z.name}"
    srv.faults[path] = [("drop", 70_000)]
    dest = tmp_path / z.name
    r = download(
        srv.file_url(z.name), dest, size=z.stat().st_size, checksum=f"md5:{_md5(z)}", settings=FAST
    )
    assert dest.read_bytes() == z.read_bytes()
    assert r.attempts == 2 and r.resumed == 1
    ranges = [rng for _, p, rng in srv.requests if p == path]
    assert ranges[0] is None
    # the second request asked only for the missing bytes
    assert ranges[1] is not None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    start = int(ranges[1][6:].rstrip("-"))
    assert 0 < start <= 70_000
    assert r.transferred == z.stat().st_size  # nothing fetched twice


def test_part_file_left_by_a_crash_is_resumed(
    served: tuple[FileServer, Path], tmp_path: Path
) -> None:
    srv, z = served
    dest = tmp_path / z.name
    dest.with_name(dest.name + ".part").write_bytes(z.read_bytes()[:12345])
    r = download(srv.file_url(z.name), dest, checksum=multihash_sha256(z), settings=FAST)
    assert r.resumed == 1 and r.transferred == z.stat().st_size - 12345
    assert dest.read_bytes() == z.read_bytes()


def test_checksum_mismatch_rejected_and_retried(
    served: tuple[FileServer, Path], tmp_path: Path
) -> None:
    srv, z = served
    path = f"/files/{z.name}"
    srv.faults[path] = [("corrupt",)]
    dest = tmp_path / z.name
    r = download(srv.file_url(z.name), dest, checksum=multihash_sha256(z), settings=FAST)
    assert r.attempts == 2
    assert dest.read_bytes() == z.read_bytes()
    # the retry started from scratch: the corrupt bytes were not resumed from
    assert [rng for _, p, rng in srv.requests if p == path] == [None, None]


def test_always_corrupt_gives_up_cleanly(served: tuple[FileServer, Path], tmp_path: Path) -> None:
    srv, z = served
    srv.faults[f"/files/{z.name}"] = [("corrupt",)] * 3
    dest = tmp_path / z.name
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(srv.file_url(z.name), dest, checksum=multihash_sha256(z), settings=FAST)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_size_check_without_checksum(served: tuple[FileServer, Path], tmp_path: Path) -> None:
    srv, z = served
    with pytest.raises(DownloadError, match="expected 123"):
        download(srv.file_url(z.name), tmp_path / "a.zip", size=123, settings=FAST)
    r = download(srv.file_url(z.name), tmp_path / "b.zip", size=z.stat().st_size, settings=FAST)
    assert r.verified_by == "size"


def test_http_errors(served: tuple[FileServer, Path], tmp_path: Path) -> None:
    srv, z = served
    srv.faults[f"/files/{z.name}"] = [("status", 202), ("status", 503)]
    r = download(srv.file_url(z.name), tmp_path / z.name, settings=FAST)
    assert r.attempts == 3  # staging (202), busy (503), then success
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download(srv.file_url("missing.zip"), tmp_path / "missing.zip", settings=FAST)
    assert "gave up" not in str(err.value)  # not retried: a 404 does not heal


def test_download_recorded_in_database(served: tuple[FileServer, Path], tmp_path: Path) -> None:
    srv, z = served
    db = Database(f"sqlite:///{tmp_path / 'l2a.db'}")
    db.upgrade()
    download(srv.file_url(z.name), tmp_path / z.name, settings=FAST, db=db, item_id="item-1")
    rows = db.download_counts()
    assert rows == [("item-1", "l2a-ingest", 1, z.stat().st_size)]
    db.dispose()


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()
