"""EODAG as a catalog source, against real local services (no network).

EODAG (>= 4) is pointed at a real local STAC API (``rustac serve``, tests/servers.py) declared
as a custom provider, and at the small STAC API of :class:`servers.FileServer` (with the
*query* extension); the products are the real-data Slovenia SAFE zips. EODAG's configuration
lives in a temporary folder and its external collections list is the bundled one, so nothing
is fetched from the internet: every connection attempt to a non-loopback address is recorded
and the tests assert there was none.

Without eodag the tests skip on a user's machine and fail under CI (``CI`` or
``L2A_REQUIRE_EODAG`` set; eodag is part of the ``dev`` extra).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from servers import (
    L1C_COLLECTION,
    SLOVENIA_CLOUDS,
    FileServer,
    RustacApi,
    renamed_item,
    rustac_exe,
    slovenia_products,
    stac_items,
)

from l2a.catalog.download import DownloadError, file_checksum
from l2a.catalog.sources import Candidate, EodagSource, L1CSource, SourceError, make_source
from l2a.config import EodagSource as EodagConfig
from l2a.config import Site

CLOUDS = SLOVENIA_CLOUDS
COLLECTION = L1C_COLLECTION
SITE = Site(name="slovenia", tiles=["33TVL"])


def _need(what: str, present: bool) -> None:
    if present:
        return
    msg = f"{what} is not installed (pip install -e '.[dev]')"
    if os.environ.get("CI") or os.environ.get("L2A_REQUIRE_EODAG"):
        pytest.fail(msg)
    pytest.skip(msg)


def _has_eodag() -> bool:
    try:
        import eodag  # noqa: F401
    except ImportError:
        return False
    return True


#: Tests that hold without eodag installed.
WITHOUT_EODAG = {"test_eodag_missing_is_a_clear_message", "test_import_l2a_does_not_import_eodag"}


@pytest.fixture(autouse=True)
def _offline_eodag(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Any]]:
    """EODAG configured in a temporary folder, the bundled collections list, and a record of
    every attempt to connect beyond loopback (conftest blocks them; this makes them fail the
    test even where EODAG would swallow the error)."""
    if not _has_eodag() and request.function.__name__ in WITHOUT_EODAG:
        yield []
        return
    _need("eodag", _has_eodag())
    from importlib.resources import files

    monkeypatch.setenv("EODAG_CFG_DIR", str(tmp_path / "eodag-cfg"))
    monkeypatch.setenv(
        "EODAG_EXT_COLLECTIONS_CFG_URI", str(files("eodag") / "resources" / "ext_collections.json")
    )
    for k in [k for k in os.environ if k.startswith("EODAG__")]:
        monkeypatch.delenv(k)
    attempts: list[Any] = []
    guarded = socket.socket.connect

    def record(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ):
            attempts.append(address)
        return guarded(self, address)

    monkeypatch.setattr(socket.socket, "connect", record)
    yield attempts
    assert not attempts, f"EODAG tried to reach the network: {attempts}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """File server over the zips + a rustac STAC API holding the 5 real items and 5 decoys
    (33TVM ids on 33TVL's footprint)."""
    _need("rustac", rustac_exe() is not None)
    tmp = tmp_path_factory.mktemp("eodag")
    _, _, zips = slovenia_products()
    root = tmp / "srv"
    (root / "zips").mkdir(parents=True)
    served = [Path(shutil.copy(z, root / "zips" / z.name)) for z in zips]
    with FileServer(root) as srv:
        items = stac_items(served, srv, CLOUDS, COLLECTION)
        decoys = [renamed_item(it, "33TVM") for it in items]
        srv.stac_items = items + decoys
        with RustacApi(items + decoys, COLLECTION, tmp / "api") as api:
            yield {"srv": srv, "api": api, "items": items, "decoys": decoys, "zips": served}


def _dates(cands: list[Candidate]) -> list[str]:
    return sorted(f"{c.name.sensing_time:%Y-%m-%d}" for c in cands)


def _source(env: dict[str, Any], **kw: Any) -> EodagSource:
    return EodagSource("local_stac", url=env["api"].url, collection=COLLECTION, **kw)


def test_custom_stac_provider_search_by_tile_dates_cloud_with_paging(
    env: dict[str, Any],
) -> None:
    src = _source(env, page_size=2)
    assert isinstance(src, L1CSource)
    # rustac's memory backend lacks the query extension: tile and cloud are checked locally
    assert src.server_filters is False
    found = list(src.search(SITE, date(2015, 7, 1), date(2015, 9, 30), max_cloud=50))
    assert _dates(found) == ["2015-07-11", "2015-08-20", "2015-09-09"]
    # 10 items on the tile's footprint, 2 a page: EODAG followed rustac's next links
    assert src.pages == 5
    by_id = {it["id"]: it for it in env["items"]}
    for c in found:
        assert c.name.tile == "33TVL" and c.name.baseline == "05.10" and c.name.level == "L1C"
        assert c.id in by_id and c.name.name == c.id and c.source.startswith("eodag:local_stac")
        asset = by_id[c.id]["assets"]["product"]
        assert (c.href, c.size, c.checksum) == (
            asset["href"],
            asset["file:size"],
            asset["file:checksum"],
        )
        assert c.cloud_cover == by_id[c.id]["properties"]["eo:cloud_cover"] <= 50
        assert c.datetime is not None and c.datetime.date() == c.name.sensing_time.date()
        assert c.storage == "disk"
    early = list(src.search(SITE, date(2015, 7, 1), date(2015, 8, 25)))
    assert _dates(early) == ["2015-07-11", "2015-07-31", "2015-08-20"]
    north = list(src.search(Site(name="north", tiles=["33TVM"])))
    assert all(c.name.tile == "33TVM" for c in north)


def test_custom_stac_provider_with_query_extension(env: dict[str, Any]) -> None:
    """An API that declares the query extension gets tile and cloud filters on the server."""
    srv: FileServer = env["srv"]
    srv.stac_queries.clear()
    src = EodagSource("query_stac", url=f"{srv.url}/stac", collection=COLLECTION, page_size=2)
    assert src.server_filters is True
    found = list(src.search(SITE, date(2015, 7, 1), date(2015, 9, 30), max_cloud=50))
    assert _dates(found) == ["2015-07-11", "2015-08-20", "2015-09-09"]
    q = srv.stac_queries[0]
    assert q["query"] == {"grid:code": {"eq": "MGRS-33TVL"}, "eo:cloud_cover": {"lte": 50}}
    assert q["collections"] == [COLLECTION] and q["limit"] == 2
    assert (
        q["datetime"].startswith("2015-07-01T00:00:00") and "/2015-09-30T23:59:59" in q["datetime"]
    )
    assert src.pages == 2 and len(srv.stac_queries) == 2  # 3 matches on the server, 2 a page


def test_area_site(env: dict[str, Any]) -> None:
    src = _source(env, page_size=4)
    x0, y0, x1, y1 = env["items"][0]["bbox"]
    site = Site(name="area", bbox=(x0, y0, x1, y1), start=date(2015, 8, 1))
    found = [c for c in src.search(site) if c.name.tile == "33TVL"]
    assert _dates(found) == ["2015-08-20", "2015-08-30", "2015-09-09"]
    assert list(src.search(Site(name="far", bbox=(100.0, 10.0, 101.0, 11.0)))) == []


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record_download(self, item_id: str, **kw: Any) -> None:
        self.calls.append((item_id, kw))


def test_fetch_gives_the_served_zip(env: dict[str, Any], tmp_path: Path) -> None:
    db = _Recorder()
    src = _source(env, db=db)
    cand = next(iter(src.search(SITE, max_cloud=6)))
    inbox = tmp_path / "inbox"
    path = src.fetch(cand, inbox)
    served = next(z for z in env["zips"] if z.name == path.name)
    assert path == inbox / f"{cand.name.name}.zip"
    assert path.read_bytes() == served.read_bytes()
    assert sorted(p.name for p in inbox.iterdir()) == [path.name]  # staging folder removed
    assert db.calls == [
        (cand.id, {"user": f"ingest:{src.label}", "nbytes": cand.size, "client": cand.href})
    ]
    # a verified file already in the inbox is reused, nothing is downloaded
    srv: FileServer = env["srv"]
    srv.requests.clear()
    assert src.fetch(cand, inbox) == path and srv.requests == [] and len(db.calls) == 1
    # a fresh source (another process) downloads from the candidate's record alone
    again = _source(env).fetch(cand, tmp_path / "other")
    assert file_checksum(again) == file_checksum(served)
    assert any(p == cand.href.removeprefix(srv.url) for _, p, _ in srv.requests if cand.href)


def test_download_failures_are_download_errors(env: dict[str, Any], tmp_path: Path) -> None:
    srv: FileServer = env["srv"]
    src = _source(env)
    cand = next(iter(src.search(SITE, max_cloud=6)))
    assert cand.href is not None
    rel = cand.href.removeprefix(srv.url)
    srv.faults[rel] = [("corrupt",)]
    with pytest.raises(DownloadError, match="checksum mismatch"):
        src.fetch(cand, tmp_path / "a")
    assert list((tmp_path / "a").iterdir()) == []  # nothing unverified left in the folder
    srv.faults[rel] = [("status", 404)] * 20
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    # what the application's handlers (on the root logger) receive; pytest's own capture
    # handlers also sit on the non-propagating "eodag" logger, so caplog is no witness here
    root, keep = logging.getLogger(), Keep(logging.DEBUG)
    root.addHandler(keep)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with pytest.raises(DownloadError, match="EODAG download failed"):
            src.fetch(cand, tmp_path / "a")
    finally:
        srv.faults.pop(rel, None)
        root.removeHandler(keep)
        root.setLevel(level)
    # EODAG's own traceback of the failure: whole at DEBUG, one WARNING line naming the HTTP
    # error, nothing at ERROR (the DownloadError reports it)
    from_eodag = [r for r in seen if r.name.startswith("eodag")]
    assert any(r.levelno == logging.DEBUG and "Traceback" in r.getMessage() for r in from_eodag)
    warned = [r.getMessage() for r in from_eodag if r.levelno == logging.WARNING]
    assert any("404" in m and "Traceback" not in m and "\n" not in m for m in warned), warned
    assert not any(r.levelno >= logging.ERROR for r in from_eodag)
    # the server healed: the same source downloads it again, verified
    path = src.fetch(cand, tmp_path / "a")
    assert path.stat().st_size == cand.size


def test_setup_and_search_errors_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open the STAC API"):
        EodagSource("nowhere", url="http://127.0.0.1:9/")
    with FileServer(tmp_path) as gone:  # a STAC API that stops after the setup
        dead = EodagSource("gone", url=f"{gone.url}/stac", retries=0)
    with pytest.raises(SourceError, match="EODAG search on gone failed"):
        list(dead.search(SITE))
    with pytest.raises(SourceError, match="no usable provider 'no_such_provider'"):
        EodagSource("no_such_provider")


def test_known_provider_is_set_up_offline() -> None:
    """EODAG's own providers load from its bundled configuration, without the network."""
    src = EodagSource("geodes")
    assert src.label == "eodag:geodes" and src.server_filters is True
    (q,) = src._queries(SITE, None, None, 30.0)
    assert q["grid:code"] == "MGRS-33TVL" and q["eo:cloud_cover"] == 30.0
    assert q["collection"] == "S2_MSI_L1C" and q["provider"] == "geodes"


def test_site_toml_sources(env: dict[str, Any], tmp_path: Path) -> None:
    """The README's two forms: a provider of EODAG's list and a custom STAC API."""
    from l2a.config import load_config

    cfg = tmp_path / "site.toml"
    cfg.write_text(
        f"""
[[sites]]
name = "slovenia"
tiles = ["33TVL"]
start = 2015-07-01
end = 2015-09-30

[[sources]]
kind = "eodag"
provider = "geodes"
config_file = "eodag.yml"

[[sources]]
kind = "eodag"
provider = "my_stac"
url = "{env["api"].url}"
collection = "{COLLECTION}"
page_size = 3
"""
    )
    settings = load_config(cfg)
    geodes_cfg, custom_cfg = settings.sources
    assert isinstance(geodes_cfg, EodagConfig) and geodes_cfg.product_type == "S2_MSI_L1C"
    assert geodes_cfg.config_file == (tmp_path / "eodag.yml").resolve()  # relative to site.toml
    geodes = make_source(geodes_cfg)
    assert isinstance(geodes, EodagSource) and geodes.url is None
    src = make_source(custom_cfg)
    assert isinstance(src, EodagSource) and src.page_size == 3 and src.url == env["api"].url
    found = list(src.search(settings.sites[0], max_cloud=15))
    assert _dates(found) == ["2015-07-11", "2015-08-20"]
    assert src.pages == 4  # 10 items on the footprint, 3 a page


def test_collection_without_url_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give its `url` too"):
        EodagConfig(provider="geodes", collection="sentinel-2-l1c")


def test_eodag_missing_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "eodag", None)
    with pytest.raises(SourceError, match=r"pip install 'l2a\[eodag\]'"):
        EodagSource("geodes")


def test_import_l2a_does_not_import_eodag() -> None:
    code = "import sys, l2a, l2a.catalog.sources, l2a.config; assert 'eodag' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
