"""The served dashboard driven by Playwright with the system's chromium.

Each page must render its plots (bokeh canvases), tables (rows) and images; a click on a
quicklook opens the product view. Screenshots go to ``docs/screenshots/`` when
``L2A_UPDATE_SCREENSHOTS=1`` (commit them: the README shows them), else to a temporary folder.

Without playwright or chromium these tests fail under CI (``CI`` set) and are skipped
elsewhere, with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("panel")

from fixtures_dashboard import SmallSite, small_site

#: Chromium flags that work in containers without network (see PITFALLS.md).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Seconds a page may take to show its content.
TIMEOUT_S = 30
REPO = Path(__file__).resolve().parents[1]
#: Refresh period of the served app (s); the queries' cache lives 5 s more.
REFRESH_S = 1.0


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


def _chromium() -> str:
    path = os.environ.get("L2A_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        _missing("no chromium (apt-get install chromium, or set L2A_CHROMIUM)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SmallSite:
    return small_site(tmp_path_factory.mktemp("dash_browser") / "site")


@pytest.fixture(scope="module")
def url(site: SmallSite) -> Iterator[str]:
    from dashboards.app import serve_dashboard

    port = _free_port()
    server = serve_dashboard(site.config, port=port, threaded=True, refresh_s=REFRESH_S)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"the dashboard did not answer on port {port} within {TIMEOUT_S} s")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/"
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[browser]')")
    exe = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, url: str) -> Iterator[Any]:
    pg = browser.new_page(viewport={"width": 1400, "height": 2000})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "ERR_NAME_NOT_RESOLVED" not in m.text and "Failed to load resource" not in m.text else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("canvas", timeout=TIMEOUT_S * 1000)
    pg.errors = errors
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("L2A_UPDATE_SCREENSHOTS") == "1":
        out = REPO / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


def _shot(page: Any, folder: Path, name: str, clip_to: Any | None = None) -> Path:
    """Screenshot, downscaled and palette-quantized to keep the committed PNGs small."""
    from PIL import Image

    raw = folder / f".{name}.raw.png"
    if clip_to is not None:
        clip_to.screenshot(path=str(raw))
    else:
        page.screenshot(path=str(raw), full_page=True)
    out = folder / f"{name}.png"
    import numpy as np

    with Image.open(raw) as src:
        im = src.convert("RGB")
        arr = np.asarray(im)
        rows = np.flatnonzero((arr != arr[-1, 0]).any(axis=(1, 2)))  # trim the empty page bottom
        if len(rows):
            im = im.crop((0, 0, im.width, min(im.height, int(rows.max()) + 16)))
        w = 1100
        if im.width > w:
            im = im.resize((w, round(im.height * w / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    raw.unlink()
    return out


def _visible(page: Any, selector: str) -> int:
    return int(page.locator(f"{selector} >> visible=true").count())


def _tab(page: Any, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def _wait_count(page: Any, selector: str, at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    n = 0
    while time.monotonic() < deadline:
        n = _visible(page, selector)
        if n >= at_least:
            return n
        time.sleep(0.2)
    return n


def test_status_page_renders(page: Any, site: SmallSite, shots: Path) -> None:
    _tab(page, "Status")
    assert _wait_count(page, "canvas", 2) >= 2  # throughput per hour and per day
    assert _wait_count(page, ".tabulator-row", 4) >= 4  # 2 tiles + 2 failures (+ workers)
    assert page.get_by_text("DEM missing over the tile").first.is_visible()
    assert page.get_by_text("toulouse").first.is_visible()
    time.sleep(0.5)
    _shot(page, shots, "status")
    assert not page.errors, page.errors


def test_sites_page_quicklook_opens_product(page: Any, site: SmallSite, shots: Path) -> None:
    _tab(page, "Sites")
    n = len(site.item_ids[sorted(site.item_ids)[0]])
    assert _wait_count(page, ".ql-card", n) == n
    imgs = page.locator(".ql-card img")
    assert imgs.first.get_attribute("src").startswith("data:image/jpeg;base64,")
    # the browser decoded the image (natural size > 0)
    assert imgs.first.evaluate("img => img.complete && img.naturalWidth > 0")
    _shot(page, shots, "sites")
    card = page.locator(".ql-card").nth(1)
    item_id = card.get_attribute("data-item")
    canvases_before = _visible(page, "canvas")
    card.click()
    page.get_by_text(item_id).first.wait_for(timeout=TIMEOUT_S * 1000)
    assert _wait_count(page, "canvas", canvases_before + 1) > canvases_before  # images of the product
    assert page.get_by_text("Metadata (STAC properties)").first.is_visible()
    assert page.get_by_text("Download file").first.is_visible()
    time.sleep(1.0)
    title = page.get_by_text(item_id).first
    title.scroll_into_view_if_needed()
    _shot(page, shots, "product")
    assert not page.errors, page.errors


def test_statistics_page_renders(page: Any, shots: Path) -> None:
    _tab(page, "Statistics")
    assert _wait_count(page, "canvas", 5) >= 5  # covers, monthly, clear dates, 2 download plots
    assert page.get_by_text("Usable (clear) dates per month").first.is_visible() or _visible(page, "canvas") >= 5
    assert _wait_count(page, ".tabulator-row", 2) >= 2  # monthly table
    time.sleep(0.5)
    _shot(page, shots, "statistics")
    assert not page.errors, page.errors


def test_status_page_refreshes_itself(page: Any, site: SmallSite) -> None:
    """A failure recorded after the page opened appears without a reload."""
    from datetime import UTC, datetime

    from l2a.production.db import Database
    from l2a.production.models import Job, JobMode, JobState, Product, ProductState

    _tab(page, "Status")
    reason = "live refresh check: the L1C zip is truncated"
    db = Database(site.db_url)
    when = datetime(2024, 9, 1, 10, 30, tzinfo=UTC)
    now = datetime.now(UTC)
    with db.session() as s:
        p = Product(key="S2A_T31TCJ_20240901T103000_L1C", name="S2A_MSIL1C_20240901T103000_N0510_R051_T31TCJ_20240901T120000",
                    platform="S2A", tile="31TCJ", sensing_time=when, source="inbox", state=ProductState.FAILED, error=reason)
        s.add(p)
        s.flush()
        s.add(Job(product_id=p.id, tile="31TCJ", sensing_time=when, mode=JobMode.NOMINAL, state=JobState.FAILED,
                  attempts=3, error=reason, started_at=now, finished_at=now, duration_s=1.0))
    db.dispose()
    page.get_by_text(reason).first.wait_for(timeout=TIMEOUT_S * 1000)
    assert not page.errors, page.errors
