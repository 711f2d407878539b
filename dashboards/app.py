"""The l2a production dashboard (Panel): pages Status, Sites and Statistics.

Serve it with either::

    panel serve dashboards/app.py --args --config SITE_DIR/site.toml
    l2a dashboard --config SITE_DIR/site.toml --port 5006

It reads only the status database and the static STAC catalog of the site
(:mod:`dashboards.queries`), refreshes itself every few seconds (periodic callback, cached
queries), and shows rasters from the COG overviews (:mod:`dashboards.product`), never whole
bands.

Access control: ``panel serve … --basic-auth PASSWORD_OR_FILE --cookie-secret SECRET`` (or
``serve_dashboard(..., basic_auth=…)``), or Panel's OAuth providers (``--oauth-provider
github --oauth-key … --oauth-secret … --cookie-secret …``); see Panel's "Authentication" docs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from dashboards.gallery import QuicklookGallery, thumbnail_uri
from dashboards.product import MAX_SIZE, ProductOverview, load_overview
from dashboards.queries import COVER_COLUMNS, Queries, QuerySettings

__all__ = ["Dashboard", "ProductView", "SitesPage", "StatisticsPage", "StatusPage",
           "create_app", "serve_dashboard"]

#: Seconds between automatic refreshes of the open pages.
REFRESH_S: Final[float] = 10.0
#: Quicklooks per gallery page.
PAGE_SIZE: Final[int] = 24
#: Colours of the classes in the plots (the quicklook outline colours where there is one).
CLASS_COLOURS: Final[dict[str, str]] = {
    "cloud %": "#2ca02c", "cloud shadow %": "#bcbd22", "snow %": "#e377c2", "water %": "#1f77b4",
}
STATE_COLOURS: Final[dict[str, str]] = {"done": "#2ca02c", "failed": "#d62728"}
PLOT_WIDTH: Final[int] = 900

hv.extension("bokeh", logo=False)


def _note(text: str) -> pn.pane.Markdown:
    return pn.pane.Markdown(text, styles={"color": "#555"}, margin=(0, 10))


def _empty(message: str) -> hv.Text:
    return hv.Text(0.5, 0.5, message).opts(width=PLOT_WIDTH, height=200, xaxis=None, yaxis=None,
                                           toolbar=None)


class _Changes:
    """Remembers the last frame shown under a key, so that a refresh redraws only what changed."""

    def _changed(self, key: str, df: pd.DataFrame) -> bool:
        seen: dict[str, pd.DataFrame] = self.__dict__.setdefault("_seen", {})
        old = seen.get(key)
        if old is not None and old.shape == df.shape and old.equals(df):
            return False
        seen[key] = df
        return True


# ============================================================================ Status
class StatusPage(pn.viewable.Viewer, _Changes):
    """Counts per state, per site and tile; failures with reasons; throughput; cluster."""

    def __init__(self, queries: Queries, **params: Any) -> None:
        super().__init__(**params)
        self.queries = queries
        self.totals = {s: pn.indicators.Number(label=s, value=0, format="{value:,}", font_size="28pt",
                                               title_size="12pt", default_color=c, width=150)
                       for s, c in (("queued", "#1f77b4"), ("running", "#ff7f0e"),
                                    ("done", "#2ca02c"), ("failed", "#d62728"))}
        self.table = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False,
                                          sizing_mode="stretch_width", pagination="local",
                                          page_size=10)
        self.failures = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, sizing_mode="stretch_width",
            pagination="local", page_size=8, layout="fit_data_stretch", formatters={"reason": {"type": "textarea"}})
        self.hours = pn.pane.HoloViews(_empty("no job finished yet"), linked_axes=False, name="throughput-hours")
        self.days = pn.pane.HoloViews(_empty("no job finished yet"), linked_axes=False, name="throughput-days")
        self.cluster = pn.pane.Markdown("", name="cluster")
        self.workers = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False,
                                            width=500, pagination="local", page_size=5)
        self.updated = pn.pane.Markdown("")
        self.refresh()

    def refresh(self) -> None:
        q = self.queries
        st = q.status_table()
        for s, w in self.totals.items():
            w.value = int(st[s].sum()) if s in st else 0
        if self._changed("status", st):
            self.table.value = st
        fl = q.failures().copy()
        for c in ("time", "date"):
            fl[c] = fl[c].dt.strftime("%Y-%m-%d %H:%M" if c == "time" else "%Y-%m-%d")
        if self._changed("failures", fl):
            self.failures.value = fl
        hours = q.throughput(timedelta(hours=48), "1h")
        if self._changed("hours", hours):
            self.hours.object = self._throughput(hours, "hour")
        days = q.throughput(timedelta(days=30), "1D")
        if self._changed("days", days):
            self.days.object = self._throughput(days, "day")
        info = q.cluster()
        if len(info.runs):
            run = info.runs.iloc[0]
            doing = (f"`l2a {run['command']}` in progress on `{run['runner']}` since "
                     f"{run['started_at']:%Y-%m-%d %H:%M} UTC")
            link = (f"[open the dask dashboard]({info.dashboard})" if info.dashboard
                    else "this cluster reported no dask dashboard")
        else:
            doing = "no run in progress" + (f" (the last one ended {info.last_finished:%Y-%m-%d %H:%M} UTC)"
                                            if info.last_finished is not None else "")
            link = (f"dask dashboard while a run is in progress: [{info.dashboard}]({info.dashboard})"
                    if info.dashboard else "dask dashboard: shown here while a run is in progress")
        self.cluster.object = (f"**Cluster**: `{info.kind}` · {doing} · {len(info.workers)} worker(s) "
                               f"holding running jobs · {link}")
        wk = info.workers.copy()
        wk["last_heartbeat"] = wk["last_heartbeat"].dt.strftime("%Y-%m-%d %H:%M:%S")
        if self._changed("workers", wk):
            self.workers.value = wk
        self.updated.object = f"*updated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M:%S} UTC*"

    @staticmethod
    def _throughput(df: pd.DataFrame, unit: str) -> hv.Element:
        if df.empty or not (df["done"].sum() + df["failed"].sum()):
            return _empty(f"no job finished in this window (per {unit})")
        d = df.assign(time=df["time"].dt.tz_convert(None))
        curves = [hv.Curve(d, "time", (state, "products"), label=state).opts(
                      interpolation="steps-mid", color=STATE_COLOURS[state], line_width=2)
                  * hv.Scatter(d[d[state] > 0], "time", (state, "products")).opts(
                      color=STATE_COLOURS[state], size=6, tools=["hover"])
                  for state in ("done", "failed")]
        return hv.Overlay(curves).opts(
            width=PLOT_WIDTH // 2 - 20, height=260, xlabel=f"{unit} (UTC)", hooks=[_one_line_dates],
            ylabel=f"products per {unit}", legend_position="top_left", show_grid=True)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            _note("What production is doing now: products by state, where they fail and why, "
                  "how many finish per hour and per day. The page refreshes itself."),
            pn.Row(*self.totals.values(), self.updated),
            "### Products per site and tile", self.table,
            "### Failures (newest first; *retrying* jobs will run again after a pause)",
            self.failures,
            "### Throughput: products finished",
            pn.Row(pn.Column("last 48 hours", self.hours), pn.Column("last 30 days", self.days)),
            self.cluster, self.workers,
            sizing_mode="stretch_width",
        )


def _date_range(times: pd.Series, min_pad_days: float = 15.0) -> tuple[np.datetime64, np.datetime64]:
    """x range of a date axis: the data plus a margin of 5 % of their span, at least
    ``min_pad_days`` each side (one date alone would otherwise fill an axis of a second)."""
    lo, hi = pd.Timestamp(times.min()).to_datetime64(), pd.Timestamp(times.max()).to_datetime64()
    # numpy units throughout (pandas' Timedelta(days=…) warns on numpy 2's generic unit)
    pad = max((hi - lo) * 0.05, np.timedelta64(round(min_pad_days * 86400), "s"))
    return lo - pad, hi + pad


def _one_line_dates(plot: Any, _element: Any) -> None:
    """Date axes with one label per tick, few enough to be read: holoviews adds a second
    "context" line of dates that overlapped the tick labels of the 48-hour plot."""
    for axis in plot.state.xaxis:
        if hasattr(axis.ticker, "desired_num_ticks"):
            axis.ticker.desired_num_ticks = 4
        fmt = getattr(axis, "formatter", None)
        if fmt is not None and hasattr(fmt, "context"):
            fmt.context = None
            fmt.hours = "%d %b %Hh"
            fmt.days = "%d %b"


# ============================================================================ Sites
class ProductView(pn.viewable.Viewer):
    """One product: true colour, masks, NDVI, AOT and water vapour (overviews), metadata, download."""

    item_path = param.String(default="", doc="Path of the item JSON shown.")

    def __init__(self, download_url: str | None = None, **params: Any) -> None:
        self.download_url = download_url.rstrip("/") if download_url else None
        self.title = pn.pane.Markdown("*Click a quicklook to open its product here.*",
                                      name="product-title")
        self.images = pn.pane.HoloViews(None, linked_axes=False, name="product-images")
        self.metadata = pn.widgets.Tabulator(pd.DataFrame(columns=["property", "value"]),
                                             disabled=True, show_index=False, width=420,
                                             pagination="local", page_size=12)
        self.assets = pn.widgets.Select(label="file to download", width=300)
        self.download = pn.widgets.FileDownload(label="Download file", color="primary",
                                                width=300, disabled=True)
        self.links = pn.pane.Markdown("")
        self.overview: ProductOverview | None = None
        super().__init__(**params)
        self.assets.param.watch(self._pick_asset, "value")

    @param.depends("item_path", watch=True)
    def _load(self) -> None:
        if not self.item_path:
            return
        ov = load_overview(self.item_path, MAX_SIZE)
        self.overview = ov
        p = ov.properties
        self.title.object = (
            f"### {ov.item_id}\n{str(p.get('datetime', ''))[:19].replace('T', ' ')} UTC · "
            f"tile {str(p.get('grid:code', '')).removeprefix('MGRS-')} · mode {p.get('l2a:mode', '?')} · "
            f"cloud {p.get('eo:cloud_cover', '?')} % · shadow {p.get('l2a:cloud_shadow_cover', '?')} % · "
            f"snow {p.get('l2a:snow_cover', '?')} % · water {p.get('l2a:water_cover', '?')} %  \n"
            f"*Images are read from the files' overviews (at most {MAX_SIZE} pixels a side); "
            "in the masks, light grey is clear land.*")
        self.images.object = self._images(ov)
        rows = [(k, v if isinstance(v, str | int | float) else str(v)) for k, v in sorted(p.items())]
        self.metadata.value = pd.DataFrame(rows, columns=["property", "value"]).astype(str)
        files = {f"{k}: {Path(h).name}": h for k, (_t, h) in ov.assets.items() if h}
        self.assets.options = files
        if files:
            first = next((v for k, v in files.items() if k.startswith("thumbnail")), next(iter(files.values())))
            self.assets.value = first
            self._pick_asset()
        if self.download_url:
            self.links.object = (f"[Download the whole product (zip)]({self.download_url}/download/{ov.item_id}) "
                                 "· served by `l2a serve`, downloads are counted")
        else:
            self.links.object = ("*For counted downloads of whole products, run `l2a serve` and start "
                                 "the dashboard with `--download-url`.*")

    def _pick_asset(self, *_: Any) -> None:
        h = self.assets.value
        if h and Path(h).is_file():
            self.download.file = h
            self.download.filename = Path(h).name
            self.download.disabled = False
        else:
            self.download.disabled = True

    @staticmethod
    def _images(ov: ProductOverview) -> hv.Layout | hv.Element:
        bounds = ov.bounds
        opts = {"width": 430, "height": 400, "xaxis": None, "yaxis": None, "tools": ["hover"]}
        plots: list[hv.Element] = []
        if ov.rgb is not None:
            plots.append(hv.RGB(ov.rgb, bounds=bounds, label="true colour (SRE B4, B3, B2)").opts(
                width=430, height=400, xaxis=None, yaxis=None))
        if ov.classes is not None:
            # the quicklook outline colours (clouds green, snow pink, water blue, shadows yellow)
            cmap = ["#f0f0f0", "#1f77b4", "#2ca02c", "#e377c2", "#e6c200"]
            img = hv.Image(ov.classes, bounds=bounds, vdims=["class"],
                           label="masks: cloud green, shadow yellow, snow pink, water blue")
            plots.append(img.opts(cmap=cmap, clim=(-0.5, 4.5), colorbar=False, **opts))
        if ov.ndvi is not None:
            plots.append(hv.Image(ov.ndvi, bounds=bounds, vdims=["NDVI"], label="NDVI").opts(
                cmap="RdYlGn", clim=(-0.2, 0.9), colorbar=True, **opts))
        if ov.aot is not None:
            plots.append(hv.Image(ov.aot, bounds=bounds, vdims=["AOT"],
                                  label="aerosol optical thickness (550 nm)").opts(
                cmap="viridis", colorbar=True, **opts))
        if ov.water_vapour is not None:
            plots.append(hv.Image(ov.water_vapour, bounds=bounds, vdims=["g/cm2"],
                                  label="water vapour (g/cm²)").opts(cmap="Blues", colorbar=True, **opts))
        if not plots:
            return _empty("this product has no raster to show")
        return hv.Layout(plots).cols(2).opts(shared_axes=True)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.title,
            pn.Row(self.images,
                   pn.Column("#### Metadata (STAC properties)", self.metadata,
                             "#### Files", self.assets, self.download, self.links)),
            sizing_mode="stretch_width",
        )


class SitesPage(pn.viewable.Viewer, _Changes):
    """Pick a site, scroll its quicklooks (newest first), click one to open the product."""

    site: Any = param.Selector(default=None, objects=[], doc="Site shown.")
    page = param.Integer(default=1, bounds=(1, None), doc="Gallery page (newest first).")
    selected = param.String(default="", doc="Item id of the product opened.")

    def __init__(self, queries: Queries, download_url: str | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.queries = queries
        self.gallery = QuicklookGallery(sizing_mode="stretch_width")
        self.gallery.param.watch(lambda e: setattr(self, "selected", e.new), "selected")
        self.product = ProductView(download_url=download_url)
        self.count = pn.pane.Markdown("")
        self.site_select = pn.widgets.Select.from_param(self.param.site, label="Site", width=220)
        self.page_input = pn.widgets.IntInput.from_param(self.param.page, label="Page", width=100)
        self.refresh()

    def refresh(self) -> None:
        sites = self.queries.sites()
        self.param.site.objects = sites
        if self.site not in sites:
            self.site = sites[0] if sites else None
        elif self._changed("items", self.queries.site_items(self.site)):
            self._fill()

    @param.depends("site", "page", watch=True)
    def _fill(self) -> None:
        if self.site is None:
            self.gallery.items = []
            return
        df = self.queries.site_items(self.site)
        pages = max(1, -(-len(df) // PAGE_SIZE))
        self.param.page.bounds = (1, pages)
        if self.page > pages:
            self.page = pages
            return
        part = df.iloc[(self.page - 1) * PAGE_SIZE: self.page * PAGE_SIZE]
        self.gallery.items = [
            {"id": r.item_id, "src": thumbnail_uri(r.thumbnail),
             "date": f"{r.datetime:%Y-%m-%d}", "tile": r.tile, "mode": r.mode or "?",
             "cloud": "?" if pd.isna(r.cloud) else f"{r.cloud:.0f}"}
            for r in part.itertuples()
        ]
        self.count.object = (f"**{len(df)}** published products · page {self.page} of {pages} "
                             f"({PAGE_SIZE} per page, newest first)")

    @param.depends("selected", watch=True)
    def _open(self) -> None:
        if not self.selected:
            return
        df = self.queries.items()
        row = df[df["item_id"] == self.selected]
        if len(row):
            self.product.item_path = str(row["path"].iloc[0])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            _note("Quicklooks of the site's L2A products. Outlines: **clouds green**, **snow pink**, "
                  "**water blue**, **cloud shadows yellow**. Click a quicklook to open the product below."),
            pn.Row(self.site_select, self.page_input, self.count),
            pn.Column(self.gallery, max_height=470, scroll=True, sizing_mode="stretch_width"),
            pn.layout.Divider(),
            self.product,
            sizing_mode="stretch_width",
        )


# ============================================================================ Statistics
class StatisticsPage(pn.viewable.Viewer, _Changes):
    """Cloud, shadow, snow and water cover through time and per month; clear dates; downloads."""

    site: Any = param.Selector(default=None, objects=[], doc="Site of the cover statistics.")

    def __init__(self, queries: Queries, **params: Any) -> None:
        super().__init__(**params)
        self.queries = queries
        self.site_select = pn.widgets.Select.from_param(self.param.site, label="Site", width=220)
        self.timeline = pn.pane.HoloViews(None, linked_axes=False, name="covers-time")
        self.monthly = pn.pane.HoloViews(None, linked_axes=False, name="covers-month")
        self.clear = pn.pane.HoloViews(None, linked_axes=False, name="clear-dates")
        self.monthly_table = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False,
                                                  width=PLOT_WIDTH, pagination="local", page_size=12)
        self.dl_product = pn.pane.HoloViews(None, linked_axes=False, name="downloads-product")
        self.dl_user = pn.pane.HoloViews(None, linked_axes=False, name="downloads-user")
        self.refresh()

    def refresh(self) -> None:
        sites = self.queries.sites()
        self.param.site.objects = sites
        if self.site not in sites:
            self.site = sites[0] if sites else None
        elif self._changed("items", self.queries.site_items(self.site)):
            self._fill()
        self._downloads()

    @param.depends("site", watch=True)
    def _fill(self) -> None:
        if self.site is None:
            return
        long, monthly = self.queries.site_statistics(self.site)
        clear_max = self.queries.settings.clear_max_cloud
        if long.empty:
            for p in (self.timeline, self.monthly, self.clear):
                p.object = _empty("no published product for this site yet")
            self.monthly_table.value = monthly
            return
        long = long.assign(datetime=long["datetime"].dt.tz_convert(None))
        curves = [hv.Curve(g, "datetime", "percent", label=c).opts(color=CLASS_COLOURS[c])
                  * hv.Scatter(g, "datetime", "percent", label=c).opts(color=CLASS_COLOURS[c], size=5,
                                                                      tools=["hover"])
                  for c, g in long.groupby("class")]
        self.timeline.object = hv.Overlay(curves).opts(
            width=PLOT_WIDTH, height=300, xlabel="acquisition date", ylabel="% of the tile",
            legend_position="right", title="Cover of each acquisition",
            xlim=_date_range(long["datetime"]), hooks=[_one_line_dates])
        mo = monthly.assign(month=monthly["month"] + np.timedelta64(14, "D"))  # mid-month
        self.monthly.object = hv.Overlay([
            hv.Curve(mo, "month", (col, "percent"), label=label).opts(color=CLASS_COLOURS[label], line_width=2)
            * hv.Scatter(mo, "month", (col, "percent")).opts(color=CLASS_COLOURS[label], size=7, tools=["hover"])
            for col, label in COVER_COLUMNS.items()
        ]).opts(width=PLOT_WIDTH, height=300, ylabel="mean % of the tile", xlabel="month",
                title="Monthly mean cover", legend_position="right", show_grid=True,
                xlim=_date_range(mo["month"]), hooks=[_one_line_dates])
        c = monthly.assign(month=monthly["month"].dt.strftime("%Y-%m"))
        self.clear.object = (
            hv.Bars(c, "month", ("dates", "acquisitions"), label="all dates").opts(color="#c6dbef")
            * hv.Bars(c, "month", ("clear_dates", "acquisitions"),
                      label=f"clear dates (cloud + shadow ≤ {clear_max:g} %)").opts(color="#08519c", bar_width=0.5)
        ).opts(width=PLOT_WIDTH, height=280, xlabel="month", title="Usable (clear) dates per month",
               legend_position="right", tools=["hover"], show_legend=True)
        self.monthly_table.value = monthly.assign(month=monthly["month"].dt.strftime("%Y-%m")).round(2)

    def _downloads(self) -> None:
        dp = self.queries.downloads_per_product()
        du = self.queries.downloads_per_user("W")
        if not (self._changed("dl_product", dp) | self._changed("dl_user", du)):
            return
        if dp.empty:
            self.dl_product.object = _empty("no download recorded yet")
        else:
            self.dl_product.object = hv.Bars(dp, "item_id", ["downloads", "users", "gigabytes"]).opts(
                invert_axes=True, width=PLOT_WIDTH, height=max(200, 22 * len(dp)), tools=["hover"],
                xlabel="", ylabel="downloads", title="Most downloaded products", color="#6baed6")
        if du.empty:
            self.dl_user.object = _empty("no download recorded yet")
        else:
            du = du.assign(time=pd.to_datetime(du["time"]))
            users = sorted(du["user"].unique())
            self.dl_user.object = hv.Overlay([
                hv.Curve(du[du["user"] == u], "time", "downloads", label=u).opts(line_width=2)
                * hv.Scatter(du[du["user"] == u], "time", "downloads").opts(size=6, tools=["hover"])
                for u in users
            ]).opts(width=PLOT_WIDTH, height=280, xlabel="week", ylabel="downloads per week",
                    title="Downloads per user and week", legend_position="top_left", show_grid=True)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            _note("Cloud-detection statistics of a site from the published products' STAC "
                  "properties, and the distribution figures (downloads) of all sites."),
            self.site_select,
            self.timeline, self.monthly, self.clear, "#### Per month", self.monthly_table,
            "### Distribution", self.dl_product, self.dl_user,
            sizing_mode="stretch_width",
        )


# ============================================================================ the app
class Dashboard(pn.viewable.Viewer):
    """The three pages in tabs, refreshed together."""

    def __init__(self, queries: Queries, *, download_url: str | None = None,
                 title: str = "l2a production", **params: Any) -> None:
        super().__init__(**params)
        self.queries = queries
        self.title = title
        self.status = StatusPage(queries)
        self.sites = SitesPage(queries, download_url=download_url)
        self.statistics = StatisticsPage(queries)
        self.tabs = pn.Tabs(("Status", self.status), ("Sites", self.sites),
                            ("Statistics", self.statistics), dynamic=False,
                            sizing_mode="stretch_width")

    def refresh(self) -> None:
        """Re-read the (cached) queries and update every page."""
        self.status.refresh()
        self.sites.refresh()
        self.statistics.refresh()

    def __panel__(self) -> pn.viewable.Viewable:
        return self.tabs


def create_app(config: str | Path | Any, *, download_url: str | None = None,
               refresh_s: float = REFRESH_S, settings: QuerySettings | None = None) -> pn.template.BaseTemplate:
    """The served page of a site configuration (``site.toml``, its folder, or Settings)."""
    pn.extension("tabulator", sizing_mode="stretch_width", notifications=False)
    queries = Queries.from_config(config, settings)
    dash = Dashboard(queries, download_url=download_url)
    template = pn.template.FastListTemplate(
        title="l2a production dashboard", main=[dash], header_background="#0b3d5c",
        theme_toggle=False, main_max_width="1500px")
    if pn.state.curdoc is not None and refresh_s > 0:
        def start_refresh() -> None:
            pn.state.add_periodic_callback(dash.refresh, period=int(refresh_s * 1000))

        pn.state.onload(start_refresh)
    template.dashboard = dash  # type: ignore[attr-defined]  # reachable for tests
    return template


def serve_dashboard(config: str | Path | Any, port: int = 5006, *, address: str | None = None,
                    show: bool = False, threaded: bool = False, download_url: str | None = None,
                    refresh_s: float = REFRESH_S, basic_auth: str | None = None,
                    cookie_secret: str | None = None, **kwargs: Any) -> Any:
    """Serve the dashboard of a site (blocks unless ``threaded``); returns the server.

    Parameters
    ----------
    config : path or Settings
        ``site.toml`` (or its folder).
    port : int
        TCP port (0: any free port; the server's ``port`` attribute tells which).
    address : str, optional
        Address to listen on (default all interfaces).
    show : bool
        Open a browser.
    threaded : bool
        Run the server in a thread (tests) and return at once.
    download_url : str, optional
        Base URL of a running ``l2a serve`` (links to counted product downloads).
    refresh_s : float
        Seconds between automatic refreshes (0: never).
    basic_auth : str, optional
        A password, or a file of ``user:password`` lines (Panel's basic authentication);
        needs ``cookie_secret``.
    **kwargs
        Passed to :func:`panel.serve` (``websocket_origin``, ``oauth_provider`` …).
    """
    from l2a.config import Settings, load_config

    cfg = config if isinstance(config, Settings) else load_config(config)

    def app() -> Any:
        return create_app(cfg, download_url=download_url, refresh_s=refresh_s)

    kwargs.setdefault("liveness", True)  # GET /liveness answers 200 once the server runs
    if basic_auth:
        kwargs["basic_auth"] = basic_auth
        kwargs["cookie_secret"] = cookie_secret
    return pn.serve({"/": app}, port=port, address=address, show=show, threaded=threaded,
                    title="l2a production dashboard", **kwargs)


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panel serve dashboards/app.py --args")
    p.add_argument("--config", required=True, help="site.toml (or its folder)")
    p.add_argument("--download-url", default=None, help="base URL of `l2a serve`")
    p.add_argument("--refresh", type=float, default=REFRESH_S, help="refresh period (s)")
    return p.parse_args(argv)


if __name__.startswith("bokeh"):  # `panel serve dashboards/app.py --args --config …`
    _a = _args(sys.argv[1:])
    create_app(_a.config, download_url=_a.download_url, refresh_s=_a.refresh).servable()


