"""The served dashboard driven by Playwright with the system's chromium.

Each page must render its plots (bokeh canvases), tables (rows) and images; a click on a
quicklook opens the product view.

The README screenshots come from a real demo site: :func:`l2a.demo.run_demo` processes the
sample data once for this module (Slovenia 5 dates, Toulouse 2, Betsiboka 1) and the dashboard
is served on it. They go to ``docs/screenshots/`` when ``L2A_UPDATE_SCREENSHOTS=1`` (commit
them), else to a temporary folder. What the demo lacks (failures, downloads, a live change)
is checked on the synthetic site of :mod:`fixtures_dashboard`.

Without playwright or chromium these tests fail under CI (``CI`` set) and are skipped
elsewhere, with the reason; without the sample data the demo test does the same.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
#: Width (px) of the committed screenshots, and their palette size (PNG-8 keeps them small).
SHOT_WIDTH = 1100
SHOT_COLOURS = 256
#: Demo date opened in the product view: a clear Slovenia date (cloud 0 %).
DEMO_DATE = "20150830"


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


@contextmanager
def _served(config: Path) -> Iterator[str]:
    """Serve the dashboard of ``config`` on a free port; yield its URL once it answers."""
    from dashboards.app import serve_dashboard

    port = _free_port()  # a threaded panel server does not tell the port it got for port=0
    server = serve_dashboard(config, port=port, threaded=True, refresh_s=REFRESH_S)
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
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.stop()


@contextmanager
def _opened(browser: Any, url: str) -> Iterator[Any]:
    """A page on ``url`` once its first canvas shows; ``page.errors`` collects console errors."""
    pg = browser.new_page(viewport={"width": 1400, "height": 2000})
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "ERR_NAME_NOT_RESOLVED" not in m.text and "Failed to load resource" not in m.text else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("canvas", timeout=TIMEOUT_S * 1000)
    pg.errors = errors
    try:
        yield pg
    finally:
        pg.close()


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


# ---------------------------------------------------------------- synthetic site
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SmallSite:
    return small_site(tmp_path_factory.mktemp("dash_browser") / "site")


@pytest.fixture(scope="module")
def page(browser: Any, site: SmallSite) -> Iterator[Any]:
    with _served(site.config) as url, _opened(browser, url) as pg:
        yield pg


# ---------------------------------------------------------------- real demo site
@pytest.fixture(scope="module")
def demo_page(browser: Any, demo_site: Path) -> Iterator[Any]:
    with _served(demo_site) as url, _opened(browser, url) as pg:
        yield pg


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("L2A_UPDATE_SCREENSHOTS") == "1":
        out = REPO / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("screenshots")


def _doc_y(locator: Any) -> int:
    """Top of an element in page (full-screenshot) pixels."""
    return int(locator.evaluate("el => el.getBoundingClientRect().top + window.scrollY"))


def _shot(page: Any, folder: Path, name: str, *, top: int = 0, bottom: int | None = None) -> Path:
    """Full-page screenshot cropped to rows ``top:bottom`` (page pixels), trimmed, downscaled
    to :data:`SHOT_WIDTH` and palette-quantized (a small PNG)."""
    import numpy as np
    from PIL import Image

    raw = folder / f".{name}.raw.png"
    page.screenshot(path=str(raw), full_page=True)
    out = folder / f"{name}.png"
    with Image.open(raw) as src:
        im = src.convert("RGB")
    raw.unlink()
    im = im.crop((0, max(0, top), im.width, min(im.height, bottom or im.height)))
    arr = np.asarray(im)
    rows = np.flatnonzero((arr != arr[-1, 0]).any(axis=(1, 2)))  # trim the empty page bottom
    if len(rows):
        im = im.crop((0, 0, im.width, min(im.height, int(rows.max()) + 16)))
    if im.width > SHOT_WIDTH:
        im = im.resize((SHOT_WIDTH, round(im.height * SHOT_WIDTH / im.width)), Image.Resampling.LANCZOS)
    # max-coverage palette refined by k-means: half the size of median cut, no colour cast
    # on the grey background, no speckles in dark images (unlike fast octree)
    im.quantize(colors=SHOT_COLOURS, method=Image.Quantize.MAXCOVERAGE, kmeans=3,
                dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def _visible(page: Any, selector: str) -> int:
    return int(page.locator(f"{selector} >> visible=true").count())


def _tab(page: Any, name: str) -> None:
    tab = page.locator(".bk-tab", has_text=name).first
    tab.click()
    page.wait_for_function("t => t.classList.contains('bk-active')", arg=tab.element_handle(),
                           timeout=TIMEOUT_S * 1000)
    time.sleep(0.3)  # the tab's content becomes visible


def _pick_site(page: Any, name: str) -> None:
    """Choose ``name`` in the visible page's "Site" select."""
    page.locator("select >> visible=true").first.select_option(name)


def _wait_cells(page: Any, field: str, wanted: set[str]) -> list[str]:
    """Texts of the visible table cells of column ``field`` once they include ``wanted``."""
    deadline = time.monotonic() + TIMEOUT_S
    texts: list[str] = []
    while time.monotonic() < deadline:
        texts = page.locator(f".tabulator-cell[tabulator-field='{field}'] >> visible=true").all_inner_texts()
        if wanted <= set(texts):
            break
        time.sleep(0.2)
    return texts


def _wait_count(page: Any, selector: str, at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    n = 0
    while time.monotonic() < deadline:
        n = _visible(page, selector)
        if n >= at_least:
            return n
        time.sleep(0.2)
    return n


def _wait_text(page: Any, text: str) -> None:
    page.get_by_text(text).first.wait_for(timeout=TIMEOUT_S * 1000)


# ---------------------------------------------------------------- the README screenshots (demo)
def test_demo_pages_render_and_make_the_readme_screenshots(demo_page: Any, shots: Path) -> None:
    """Status, Sites, a product and Statistics of the real demo site, screenshot each.

    One test (not four) so that ``-n 2`` runs the demo once, on one worker.
    """
    pg = demo_page
    # Status: 8 products done, none failed, in 3 sites
    _tab(pg, "Status")
    assert _wait_count(pg, "canvas", 2) >= 2  # throughput per hour and per day
    assert _wait_count(pg, ".tabulator-row", 3) >= 3  # slovenia, toulouse, betsiboka
    for name in ("slovenia", "toulouse", "betsiboka"):
        assert pg.get_by_text(name).first.is_visible(), name
    time.sleep(0.5)
    _shot(pg, shots, "status")

    # Sites: the Slovenia series (5 dates, newest first), decoded thumbnails
    _tab(pg, "Sites")
    _pick_site(pg, "slovenia")
    assert _wait_count(pg, ".ql-card", 5) == 5
    assert _wait_count(pg, ".ql-card[data-item*='T33TVL']", 5) == 5
    imgs = pg.locator(".ql-card img >> visible=true")
    for i in range(5):
        assert imgs.nth(i).get_attribute("src").startswith("data:image/jpeg;base64,")
        assert imgs.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")  # decoded
    time.sleep(0.5)
    hint = pg.get_by_text("Click a quicklook to open its product here.").first
    _shot(pg, shots, "sites", bottom=_doc_y(hint) - 8)  # the product view below is still empty

    # Product view of a clear date
    card = pg.locator(f".ql-card[data-item*='_{DEMO_DATE}-']").first
    item_id = card.get_attribute("data-item")
    canvases_before = _visible(pg, "canvas")
    card.click()
    _wait_text(pg, item_id)
    assert _wait_count(pg, "canvas", canvases_before + 4) >= canvases_before + 4  # rgb, masks, ndvi, aot
    assert pg.get_by_text("Metadata (STAC properties)").first.is_visible()
    assert pg.get_by_text("Download file").first.is_visible()
    assert _wait_count(pg, ".tabulator-row", 5) >= 5  # metadata rows
    time.sleep(1.0)
    title = pg.locator("h3", has_text=item_id).first
    title.scroll_into_view_if_needed()
    _shot(pg, shots, "product", top=_doc_y(title) - 16)  # the gallery above is in sites.png

    # Statistics of Slovenia: covers through time, per month, clear dates
    _tab(pg, "Statistics")
    _pick_site(pg, "slovenia")
    assert _wait_count(pg, "canvas", 5) >= 5  # covers, monthly, clear dates, 2 (empty) download plots
    assert _wait_count(pg, ".tabulator-row", 3) >= 3  # 2015-07, -08, -09
    months = _wait_cells(pg, "month", {"2015-07", "2015-08", "2015-09"})
    assert {"2015-07", "2015-08", "2015-09"} <= set(months), months
    time.sleep(0.5)
    # the demo has no download yet: leave the two empty "Distribution" plots out of the picture
    _shot(pg, shots, "statistics", bottom=_doc_y(pg.get_by_text("Distribution", exact=True).first) - 8)
    assert not pg.errors, pg.errors


# ---------------------------------------------------------------- what the demo lacks (synthetic)
def test_status_page_shows_failures(page: Any, site: SmallSite) -> None:
    _tab(page, "Status")
    assert _wait_count(page, "canvas", 2) >= 2  # throughput per hour and per day
    assert _wait_count(page, ".tabulator-row", 4) >= 4  # 2 tiles + 2 failures (+ workers)
    assert page.get_by_text("DEM missing over the tile").first.is_visible()
    assert page.get_by_text("toulouse").first.is_visible()
    assert not page.errors, page.errors


def test_sites_page_quicklook_opens_product(page: Any, site: SmallSite) -> None:
    _tab(page, "Sites")
    n = len(site.item_ids[sorted(site.item_ids)[0]])
    assert _wait_count(page, ".ql-card", n) == n
    imgs = page.locator(".ql-card img")
    assert imgs.first.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert imgs.first.evaluate("img => img.complete && img.naturalWidth > 0")  # decoded
    card = page.locator(".ql-card").nth(1)
    item_id = card.get_attribute("data-item")
    canvases_before = _visible(page, "canvas")
    card.click()
    _wait_text(page, item_id)
    assert _wait_count(page, "canvas", canvases_before + 1) > canvases_before  # images of the product
    assert page.get_by_text("Metadata (STAC properties)").first.is_visible()
    assert page.get_by_text("Download file").first.is_visible()
    assert not page.errors, page.errors


def test_statistics_page_shows_downloads(page: Any) -> None:
    _tab(page, "Statistics")
    assert _wait_count(page, "canvas", 5) >= 5  # covers, monthly, clear dates, 2 download plots
    assert _wait_count(page, ".tabulator-row", 2) >= 2  # monthly table
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
    _wait_text(page, reason)
    assert not page.errors, page.errors
