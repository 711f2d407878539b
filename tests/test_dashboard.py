"""Dashboard queries and components, without a browser (the browser tests are in test_dashboard_browser.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("panel")

from fixtures_dashboard import SmallSite, large_database, small_site

from dashboards.queries import (
    CatalogIndex,
    Queries,
    QuerySettings,
    dask_dashboard_link,
    monthly_statistics,
)

#: Response-time bound of each page's data query on a database of 10,000 products (s).
QUERY_BOUND_S = 1.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SmallSite:
    return small_site(tmp_path_factory.mktemp("dash") / "site")


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return large_database(tmp_path_factory.mktemp("dash_large") / "site", n=10_000)


# ---------------------------------------------------------------------------- queries
def test_status_counts_match_the_database(site: SmallSite) -> None:
    q = Queries.from_config(site.config)
    st = q.status_table().set_index("tile")
    # per site: 10 dates, 8 published, 1 failed, 1 running (fixture)
    assert st.loc["31TCJ", "done"] == 8 and st.loc["31TCJ", "failed"] == 1
    assert st.loc["33TVL", "running"] == 1
    assert (st["total"] == st[["discovered", "queued", "running", "done", "failed",
                                "superseded", "ignored"]].sum(axis=1)).all()
    fl = q.failures()
    assert len(fl) == 2 and fl["reason"].str.contains("DEM missing").all()
    assert fl["time"].is_monotonic_decreasing


def test_throughput_counts_every_finished_job_once(site: SmallSite) -> None:
    q = Queries.from_config(site.config)
    now = datetime.now(UTC)
    hours = q.throughput(timedelta(hours=48), "1h", now=now)
    days = q.throughput(timedelta(days=30), "1D", now=now)
    # fixture: 2 sites x (8 done + 1 failed) finished within the last 47 h
    assert hours["done"].sum() == days["done"].sum() == 16
    assert hours["failed"].sum() == days["failed"].sum() == 2
    assert len(hours) in (48, 49) and hours["time"].is_monotonic_increasing
    assert hours["mean_duration_s"].dropna().between(60, 120).all()


def test_items_belong_to_their_sites_and_carry_covers(site: SmallSite) -> None:
    q = Queries.from_config(site.config)
    items = q.items()
    for name, ids in site.item_ids.items():
        mine = q.site_items(name)
        assert sorted(mine["item_id"]) == sorted(ids)
        assert mine["datetime"].is_monotonic_decreasing  # newest first
    assert items[["cloud", "cloud_shadow", "snow", "water"]].notna().all().all()
    assert items["thumbnail"].map(lambda p: Path(p).is_file()).all()
    assert set(q.sites()) == {"toulouse", "slovenia"}


def test_monthly_statistics_by_hand() -> None:
    t = pd.to_datetime(["2024-01-03", "2024-01-20", "2024-03-02"], utc=True)
    items = pd.DataFrame({"datetime": t, "tile": "31TCJ", "item_id": ["a", "b", "c"],
                          "cloud": [5.0, 60.0, 2.0], "cloud_shadow": [4.0, 5.0, 0.0],
                          "snow": [10.0, 20.0, 0.0], "water": [1.0, 1.0, 1.0]})
    m = monthly_statistics(items, clear_max_cloud=10.0).set_index("month")
    assert list(m.index.strftime("%Y-%m")) == ["2024-01", "2024-02", "2024-03"]  # gap month kept
    assert m.loc["2024-01-01", "dates"] == 2 and m.loc["2024-01-01", "clear_dates"] == 1  # 5+4 <= 10
    assert m.loc["2024-02-01", "dates"] == 0 and m.loc["2024-03-01", "clear_dates"] == 1
    assert m.loc["2024-01-01", "snow"] == pytest.approx(15.0)


def test_downloads_add_up(site: SmallSite) -> None:
    q = Queries.from_config(site.config)
    per_product = q.downloads_per_product(limit=1000)
    per_user = q.downloads_per_user("W")
    assert per_product["downloads"].sum() == per_user["downloads"].sum() > 0
    assert set(per_user["user"]) <= {"alice", "bob", "carol", "dave"}


def test_catalog_index_rereads_only_changed_items(site: SmallSite) -> None:
    idx = CatalogIndex(site.catalog)
    df = idx.refresh()
    assert len(df) == sum(map(len, site.item_ids.values()))
    item = Path(df["path"].iloc[0])
    text = item.read_text()
    item.write_text(text.replace('"eo:cloud_cover": ', '"eo:cloud_cover": 99.5, "x:old": '))
    try:
        df2 = idx.refresh()
        assert df2.loc[df2["path"] == str(item), "cloud"].iloc[0] == 99.5
    finally:
        item.write_text(text)


def test_dask_dashboard_link() -> None:
    assert dask_dashboard_link("local", None, ":8787") == "http://localhost:8787/status"
    assert dask_dashboard_link("scheduler", "tcp://10.0.0.5:8786", None) == "http://10.0.0.5:8787/status"
    assert dask_dashboard_link("jobqueue", None, ":8787") is None


def test_cluster_shows_the_live_run_and_its_recorded_dashboard(site: SmallSite) -> None:
    """The dask dashboard link is the one the run in progress recorded (the port its cluster
    really got), not the configured one; a run killed (heartbeat stale) or finished is not in
    progress."""
    from sqlalchemy import update

    from dashboards.app import Dashboard
    from l2a.production.models import Run, utcnow

    q = Queries.from_config(site.config, QuerySettings(ttl_s=0))
    run_id = q.db.start_run("node7:4242", "watch", "local", scheduler="tcp://127.0.0.1:40123",
                            dashboard_link="http://127.0.0.1:41877/status")
    try:
        info = q.cluster()
        assert info.dashboard == "http://127.0.0.1:41877/status" and info.dashboard_recorded
        assert list(info.runs["runner"]) == ["node7:4242"] and info.kind == "local"
        text = Dashboard(q).status.cluster.object
        assert "`l2a watch` in progress on `node7:4242`" in text and "41877" in text
        # killed: no end, and the heartbeat stops
        with q.db.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow() - timedelta(minutes=10)))
        info = q.cluster()
        assert info.runs.empty and info.dashboard == "http://localhost:8787/status"
        assert not info.dashboard_recorded
    finally:
        q.db.finish_run(run_id)
    info = q.cluster()
    assert info.runs.empty and info.last_finished is not None
    assert "no run in progress (the last one ended" in Dashboard(q).status.cluster.object


def test_cluster_on_a_database_before_runs_were_recorded(tmp_path: Path) -> None:
    """The dashboard only reads: on a database still at schema 0001 (no runs table), the
    cluster line falls back to the configured link instead of failing."""
    from l2a.production.db import Database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Database(url).upgrade("0001")
    q = Queries(db=Database(url), catalog=CatalogIndex(tmp_path / "catalog"), settings=QuerySettings(ttl_s=0))
    info = q.cluster()
    assert info.runs.empty and info.last_finished is None
    assert info.dashboard == "http://localhost:8787/status"


def test_cache_reuses_results_within_ttl(site: SmallSite) -> None:
    q = Queries.from_config(site.config, QuerySettings(ttl_s=60))
    assert q.status_table() is q.status_table()
    q.clear_cache()
    q2 = Queries.from_config(site.config, QuerySettings(ttl_s=0))
    assert q2.status_table() is not q2.status_table()


def test_each_page_query_is_fast_on_10000_products(large: Path) -> None:
    q = Queries.from_config(large, QuerySettings(ttl_s=0))
    t0 = time.perf_counter()
    n_items = len(q.items())  # cold: parses every item JSON once
    cold = time.perf_counter() - t0
    assert n_items > 8000
    pages = {
        "status": lambda: (q.status_table(), q.failures(), q.cluster(),
                           q.throughput(timedelta(hours=48), "1h"),
                           q.throughput(timedelta(days=30), "1D")),
        "sites": lambda: q.site_items("site03"),
        "statistics": lambda: (q.site_statistics("site03"), q.downloads_per_product(),
                               q.downloads_per_user("W")),
    }
    timings = {}
    for name, run in pages.items():
        t0 = time.perf_counter()
        run()
        timings[name] = time.perf_counter() - t0
    print(f"\n10,000 products: catalog index cold {cold:.2f} s; "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
    assert cold < 10 * QUERY_BOUND_S
    for name, t in timings.items():
        assert t < QUERY_BOUND_S, f"{name} page query took {t:.2f} s"
    st = q.status_table()
    assert st["total"].sum() == 10_000


# ---------------------------------------------------------------------------- components
def test_dashboard_components_through_their_parameters(site: SmallSite) -> None:
    from dashboards.app import Dashboard

    dash = Dashboard(Queries.from_config(site.config))
    assert dash.status.totals["done"].value == 16
    assert dash.status.totals["failed"].value == 2
    assert len(dash.status.failures.value) == 2
    assert "http://localhost:8787/status" in dash.status.cluster.object

    sites = dash.sites
    sites.site = "toulouse"
    ids = [it["id"] for it in sites.gallery.items]
    assert sorted(ids) == sorted(site.item_ids["toulouse"])
    assert all(it["src"].startswith("data:image/jpeg;base64,") for it in sites.gallery.items)
    sites.gallery.selected = ids[0]  # what a click in the browser does
    view = sites.product
    assert view.overview is not None and view.overview.item_id == ids[0]
    ov = view.overview
    assert ov.rgb is not None and ov.rgb.shape[-1] == 3 and max(ov.rgb.shape[:2]) <= 512
    assert ov.classes is not None and set(np.unique(ov.classes)) <= {0, 1, 2, 3, 4}
    assert ov.aot is not None and 0.0 < float(np.nanmean(ov.aot)) < 1.0
    # images keep the raster orientation: the top-left pixel is at the top-left corner
    import holoviews as hv

    ndvi = next(e for e in view.images.object if isinstance(e, hv.Image) and e.vdims[0].name == "NDVI")
    left, _bottom, _right, top = ov.bounds
    assert ndvi[left + 1.0, top - 1.0] == pytest.approx(ov.ndvi[0, 0])
    meta = dict(view.metadata.value.values)
    assert meta["grid:code"] == "MGRS-31TCJ"
    assert view.download.disabled is False and Path(view.download.file).is_file()

    stats = dash.statistics
    stats.site = "slovenia"
    table = stats.monthly_table.value
    assert table["dates"].sum() == len(site.item_ids["slovenia"])
    dash.refresh()  # what the periodic callback does


def test_overview_read_is_downsampled(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from dashboards.product import read_overview

    path = tmp_path / "big.tif"
    data = np.arange(2048 * 2048, dtype=np.int32).reshape(2048, 2048).astype(np.int16)
    with rasterio.open(path, "w", driver="COG", width=2048, height=2048, count=1, dtype="int16",
                       crs="EPSG:32631", transform=from_origin(0, 0, 10, 10), blocksize=256) as dst:
        dst.write(data[None])
    arr, _crs, bounds = read_overview(str(path), max_size=512)
    assert arr.shape == (1, 512, 512)
    assert bounds == pytest.approx((0, -20480, 20480, 0))


def test_basic_auth_asks_for_a_login(site: SmallSite) -> None:
    import socket
    import urllib.request

    from dashboards.app import serve_dashboard

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = serve_dashboard(site.config, port=port, threaded=True, refresh_s=0,
                             basic_auth="correct horse", cookie_secret="test-secret")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    final, body = r.geturl(), r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert "/login" in final and "password" in body.lower()
        assert "l2a production" not in body  # nothing of the app before the login
    finally:
        server.stop()
