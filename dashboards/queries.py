"""Data queries of the dashboard and the site report: the status database and the STAC catalog only.

Every function returns a :class:`pandas.DataFrame` (or a small dataclass) built from

- the status database (:class:`l2a.production.db.Database`): product states per site and
  tile, job timings, failures and their reasons, running workers, downloads;
- the static STAC catalog (:class:`CatalogIndex`): one row per published item with its date,
  tile, mode, cloud/shadow/snow/water cover and quicklook.

Nothing here calls the processing chain. :class:`Queries` bundles both sources with a short
time-to-live cache, so that several browser sessions refreshing every few seconds cost one
query per period; the catalog index re-reads only item files whose modification time changed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from l2a.catalog.stac_item import COLLECTION_ID
from l2a.production.db import Database
from l2a.production.models import Download, Job, JobState, Product, PublishedItem, Site

__all__ = [
    "COVER_COLUMNS",
    "RUN_COLUMNS",
    "CatalogIndex",
    "ClusterInfo",
    "Queries",
    "QuerySettings",
    "cover_statistics",
    "dask_dashboard_link",
    "monthly_statistics",
]

#: Catalog item properties (percent of the tile) shown by the statistics, with their labels.
COVER_COLUMNS: Final[dict[str, str]] = {
    "cloud": "cloud %",
    "cloud_shadow": "cloud shadow %",
    "snow": "snow %",
    "water": "water %",
}
_PROPERTY_OF: Final[dict[str, str]] = {
    "cloud": "eo:cloud_cover",
    "cloud_shadow": "l2a:cloud_shadow_cover",
    "snow": "l2a:snow_cover",
    "water": "l2a:water_cover",
}
#: Product states shown as columns of the status table, in this order.
STATE_COLUMNS: Final[tuple[str, ...]] = (
    "discovered", "queued", "running", "done", "failed", "superseded", "ignored",
)
#: Columns of the catalog index.
INDEX_COLUMNS: Final[tuple[str, ...]] = (
    "item_id", "datetime", "tile", "platform", "mode", *COVER_COLUMNS, "valid",
    "aot", "water_vapour", "thumbnail", "path",
)

T = TypeVar("T")


@dataclass(frozen=True)
class QuerySettings:
    """Tuning of the dashboard queries.

    Attributes
    ----------
    ttl_s : float
        Seconds a query result is reused before the database or catalog is read again.
    clear_max_cloud : float
        A date counts as clear (usable) when its cloud + cloud-shadow cover is at most this (%).
    max_failures : int
        Most recent failures listed on the Status page.
    run_stale_after_s : float
        A run (``l2a run``/``watch``/``demo``) not finished whose heartbeat is older than this
        (s) is taken for dead (runs beat every 5 s; a killed one simply stops).
    """

    ttl_s: float = 5.0
    clear_max_cloud: float = 10.0
    max_failures: int = 200
    run_stale_after_s: float = 120.0


#: Columns of :attr:`ClusterInfo.runs`.
RUN_COLUMNS: Final[tuple[str, ...]] = (
    "runner", "command", "cluster", "scheduler", "dashboard_link", "started_at", "heartbeat_at",
)


@dataclass(frozen=True)
class ClusterInfo:
    """What the status database and the configuration say about the cluster.

    Attributes
    ----------
    kind : str
        Cluster kind of the run in progress, else of the configuration (``local``,
        ``scheduler``, ``scheduler_file``, ``jobqueue``).
    workers : pandas.DataFrame
        One row per worker holding a running job: ``worker``, ``jobs``, ``last_heartbeat``.
    dashboard : str or None
        URL of the dask dashboard: as the run in progress recorded it (the cluster's own
        answer, whatever port it got), else where the configuration says it will be.
    runs : pandas.DataFrame
        Runs in progress (alive by their heartbeat), latest first: ``runner`` (host:pid),
        ``command``, ``cluster``, ``scheduler``, ``dashboard_link``, ``started_at``,
        ``heartbeat_at``.
    last_finished : pandas.Timestamp or None
        End of the latest finished run (when none is in progress).
    """

    kind: str
    workers: pd.DataFrame
    dashboard: str | None
    runs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(RUN_COLUMNS)))
    last_finished: pd.Timestamp | None = None

    @property
    def dashboard_recorded(self) -> bool:
        """True when :attr:`dashboard` is the link a live run recorded."""
        return bool(len(self.runs)) and self.dashboard == self.runs.iloc[0]["dashboard_link"]


def dask_dashboard_link(kind: str, address: str | None, dashboard_address: str | None,
                        host: str = "localhost") -> str | None:
    """Where the dask dashboard should be, from the cluster settings.

    A local cluster serves it on ``dashboard_address`` (``:8787``) of the host running
    ``l2a run``; a remote scheduler ``tcp://HOST:8786`` conventionally on ``http://HOST:8787``.
    Job-queue and scheduler-file clusters choose their port at start: None.
    """
    if kind == "local" and dashboard_address:
        h, _, port = dashboard_address.rpartition(":")
        return f"http://{h or host}:{port}/status" if port else None
    if kind == "scheduler" and address:
        h = address.split("://", 1)[-1].rsplit(":", 1)[0]
        return f"http://{h}:8787/status"
    return None


# ---------------------------------------------------------------------------- catalog index
def _row(path: Path, d: dict[str, Any]) -> dict[str, Any]:
    p = d.get("properties", {})
    thumb = d.get("assets", {}).get("thumbnail", {}).get("href")
    if thumb and "://" not in thumb and not os.path.isabs(thumb):
        thumb = str((path.parent / thumb).resolve())
    grid = str(p.get("grid:code", ""))
    row: dict[str, Any] = {
        "item_id": d.get("id", path.stem),
        "datetime": pd.Timestamp(p.get("datetime") or p.get("start_datetime")),
        "tile": grid.removeprefix("MGRS-"),
        "platform": p.get("platform", ""),
        "mode": p.get("l2a:mode", ""),
        "valid": p.get("l2a:valid_cover"),
        "aot": p.get("l2a:aot_mean"),
        "water_vapour": p.get("l2a:water_vapour_mean"),
        "thumbnail": thumb,
        "path": str(path),
    }
    for col, prop in _PROPERTY_OF.items():
        row[col] = p.get(prop)
    return row


class CatalogIndex:
    """One row per item of a static STAC catalog collection, refreshed incrementally.

    Reads the item JSON files directly (the layout of :class:`l2a.catalog.static.StaticCatalog`:
    ``ROOT/<collection>/<id>/<id>.json``); on :meth:`refresh` only files that are new or whose
    modification time changed are parsed again, and removed items drop out.

    Parameters
    ----------
    root : path
        Catalog folder (holding ``catalog.json``).
    collection : str
        Collection id.
    """

    def __init__(self, root: str | Path, collection: str = COLLECTION_ID) -> None:
        self.root = Path(root)
        self.collection = collection
        self._rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._frame = pd.DataFrame(columns=list(INDEX_COLUMNS))
        self._lock = threading.Lock()

    def _item_files(self) -> list[Path]:
        folder = self.root / self.collection
        if not folder.is_dir():
            return []
        out = []
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_dir() and not entry.name.startswith("."):
                    p = Path(entry.path) / f"{entry.name}.json"
                    out.append(p)
        return out

    def refresh(self) -> pd.DataFrame:
        """Re-read changed item files; returns the index sorted by date."""
        with self._lock:
            seen: set[str] = set()
            changed = False
            for p in self._item_files():
                try:
                    mtime = p.stat().st_mtime
                except FileNotFoundError:  # removed meanwhile, or a product folder in writing
                    continue
                key = str(p)
                seen.add(key)
                old = self._rows.get(key)
                if old is not None and old[0] == mtime:
                    continue
                try:
                    with open(p, encoding="utf-8") as f:
                        self._rows[key] = (mtime, _row(p, json.load(f)))
                except (OSError, ValueError):  # replaced meanwhile: next refresh
                    continue
                changed = True
            for key in set(self._rows) - seen:
                del self._rows[key]
                changed = True
            if changed:
                df = pd.DataFrame([r for _, r in self._rows.values()], columns=list(INDEX_COLUMNS))
                if len(df):
                    df["datetime"] = pd.to_datetime(df["datetime"], utc=True)
                    for col in (*COVER_COLUMNS, "valid", "aot", "water_vapour"):
                        df[col] = pd.to_numeric(df[col], errors="coerce")
                    df = df.sort_values(["datetime", "item_id"]).reset_index(drop=True)
                self._frame = df
            return self._frame


# ---------------------------------------------------------------------------- statistics
def cover_statistics(items: pd.DataFrame) -> pd.DataFrame:
    """Per-date covers in long form: ``datetime``, ``tile``, ``item_id``, ``class``, ``percent``."""
    cols = ["datetime", "tile", "item_id", *COVER_COLUMNS]
    long = items[cols].melt(id_vars=["datetime", "tile", "item_id"], var_name="class",
                            value_name="percent")
    long["class"] = long["class"].map(COVER_COLUMNS)
    return long.dropna(subset=["percent"])


def monthly_statistics(items: pd.DataFrame, clear_max_cloud: float) -> pd.DataFrame:
    """Per month: mean covers (%), number of dates, number of clear dates.

    A date is clear when its cloud + cloud-shadow cover is at most ``clear_max_cloud`` (%).
    Columns: ``month`` (first day, a timestamp), ``dates``, ``clear_dates`` and the mean of
    each of :data:`COVER_COLUMNS` (``cloud`` …).
    """
    cols = ["month", "dates", "clear_dates", *COVER_COLUMNS]
    if items.empty:
        return pd.DataFrame(columns=cols)
    df = items.copy()
    df["month"] = df["datetime"].dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
    df["clear"] = (df["cloud"].fillna(100) + df["cloud_shadow"].fillna(0)) <= clear_max_cloud
    g = df.groupby("month")
    out = g[list(COVER_COLUMNS)].mean()
    out["dates"] = g.size()
    out["clear_dates"] = g["clear"].sum().astype(int)
    # months without any acquisition show as zero dates
    full = pd.date_range(out.index.min(), out.index.max(), freq="MS")
    out = out.reindex(full)
    out[["dates", "clear_dates"]] = out[["dates", "clear_dates"]].fillna(0).astype(int)
    out.index.name = "month"
    return out.reset_index()[cols]


# ---------------------------------------------------------------------------- the queries
@dataclass
class _Cached:
    time: float
    value: Any


@dataclass
class Queries:
    """The dashboard's data: status database + catalog index, with a TTL cache.

    Parameters
    ----------
    db : Database
        The status database (read-only sessions only).
    catalog : CatalogIndex
        Index of the static STAC catalog.
    site_tiles : dict
        Site name -> MGRS tiles, from the configuration (items of a tile belong to its
        sites; the database's product -> site links are used as well).
    cluster_kind, scheduler_address, dashboard_address : str
        From the configuration's ``[cluster]`` (for :meth:`cluster`).
    settings : QuerySettings
    """

    db: Database
    catalog: CatalogIndex
    site_tiles: dict[str, list[str]] = field(default_factory=dict)
    cluster_kind: str = "local"
    scheduler_address: str | None = None
    dashboard_address: str | None = ":8787"
    settings: QuerySettings = field(default_factory=QuerySettings)
    _cache: dict[Hashable, _Cached] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, config: str | Path | Any, settings: QuerySettings | None = None) -> Queries:
        """Queries of a site configuration (a ``site.toml`` path, its folder, or :class:`~l2a.config.Settings`)."""
        from l2a.config import Settings, load_config

        cfg = config if isinstance(config, Settings) else load_config(config)
        return cls(
            db=Database(cfg.db_url),
            catalog=CatalogIndex(cfg.catalog, cfg.processing.collection),
            site_tiles={s.name: list(s.tiles) for s in cfg.sites},
            cluster_kind=cfg.cluster.kind,
            scheduler_address=cfg.cluster.address,
            dashboard_address=cfg.cluster.dashboard_address,
            settings=settings or QuerySettings(),
        )

    def _cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit.time < self.settings.ttl_s:
                return hit.value  # type: ignore[no-any-return,unused-ignore]
        value = compute()
        with self._lock:
            self._cache[key] = _Cached(time.monotonic(), value)
        return value

    def clear_cache(self) -> None:
        """Forget every cached result (the next call reads the sources again)."""
        with self._lock:
            self._cache.clear()

    # ------------------------------------------------------------------ Status page
    def status_table(self) -> pd.DataFrame:
        """Products per site and tile, one column per state (:data:`STATE_COLUMNS`) plus ``total``."""

        def compute() -> pd.DataFrame:
            rows = [(r.site or "(no site)", r.tile, r.state.value, r.number)
                    for r in self.db.status_counts()]
            df = pd.DataFrame(rows, columns=["site", "tile", "state", "number"])
            wide = df.pivot_table(index=["site", "tile"], columns="state", values="number",
                                  aggfunc="sum", fill_value=0)
            wide = wide.reindex(columns=list(STATE_COLUMNS), fill_value=0).astype(int)
            wide["total"] = wide.sum(axis=1)
            wide.columns.name = None
            return wide.reset_index()

        return self._cached("status", compute)

    def failures(self) -> pd.DataFrame:
        """Most recent failures (failed jobs, and retries waiting after an error), newest first.

        Columns: ``time``, ``site``, ``tile``, ``date`` (acquisition), ``product``, ``mode``,
        ``state``, ``attempts``, ``worker``, ``reason``.
        """

        def compute() -> pd.DataFrame:
            q = (
                select(Job.finished_at, Site.name, Job.tile, Job.sensing_time, Product.name,
                       Job.mode, Job.state, Job.attempts, Job.max_attempts, Job.worker, Job.error)
                .join(Product, Job.product_id == Product.id)
                .outerjoin(Site, Product.site_id == Site.id)
                .where(Job.error.is_not(None),
                       Job.state.in_([JobState.FAILED, JobState.QUEUED, JobState.RUNNING]))
                .order_by(Job.finished_at.desc(), Job.id.desc())
                .limit(self.settings.max_failures)
            )
            with self.db.session(readonly=True) as s:
                rows = [
                    (t, site or "", tile, st, name, mode.value,
                     "failed" if state == JobState.FAILED else f"retrying ({state.value})",
                     f"{att}/{mx}", worker or "", err)
                    for t, site, tile, st, name, mode, state, att, mx, worker, err in s.execute(q)
                ]
            df = pd.DataFrame(rows, columns=["time", "site", "tile", "date", "product", "mode",
                                             "state", "attempts", "worker", "reason"])
            for c in ("time", "date"):
                df[c] = pd.to_datetime(df[c], utc=True)
            return df

        return self._cached("failures", compute)

    def throughput(self, window: timedelta, freq: str, now: datetime | None = None) -> pd.DataFrame:
        """Jobs finished per period over the last ``window``: ``time``, ``done``, ``failed``,
        ``mean_duration_s`` (of the done ones).

        ``freq`` is a pandas frequency (``"1h"``, ``"1D"``). Periods without any job count 0.
        """
        now = now or datetime.now(UTC)

        def compute() -> pd.DataFrame:
            since = now - window
            q = (
                select(Job.finished_at, Job.state, Job.duration_s)
                .where(Job.finished_at >= since,
                       Job.state.in_([JobState.DONE, JobState.FAILED]))
            )
            with self.db.session(readonly=True) as s:
                rows = [(t, st.value, d) for t, st, d in s.execute(q)]
            df = pd.DataFrame(rows, columns=["time", "state", "duration_s"])
            df["time"] = pd.to_datetime(df["time"], utc=True)
            bins = pd.date_range(pd.Timestamp(since).floor(freq), pd.Timestamp(now).floor(freq),
                                 freq=freq)
            df["time"] = df["time"].dt.floor(freq)
            counts = (df.groupby(["time", "state"]).size().unstack(fill_value=0)
                      .reindex(columns=["done", "failed"], fill_value=0))
            dur = df[df["state"] == "done"].groupby("time")["duration_s"].mean()
            out = counts.reindex(bins, fill_value=0).astype(int)
            out["mean_duration_s"] = dur.reindex(bins)
            out.index.name = "time"
            out.columns.name = None
            return out.reset_index()

        # the cache key rounds "now" to the TTL so that refreshes share a result
        return self._cached(("throughput", window, freq, int(now.timestamp() // max(self.settings.ttl_s, 1))), compute)

    def cluster(self) -> ClusterInfo:
        """Workers holding running jobs, the runs in progress and the dask dashboard link."""

        def compute() -> ClusterInfo:
            q = (
                select(Job.worker, func.count(Job.id), func.max(Job.heartbeat_at))
                .where(Job.state == JobState.RUNNING)
                .group_by(Job.worker)
                .order_by(Job.worker)
            )
            with self.db.session(readonly=True) as s:
                rows = [(w or "?", int(n), hb) for w, n, hb in s.execute(q)]
            workers = pd.DataFrame(rows, columns=["worker", "jobs", "last_heartbeat"])
            workers["last_heartbeat"] = pd.to_datetime(workers["last_heartbeat"], utc=True)
            try:
                live = self.db.active_runs(self.settings.run_stale_after_s)
                last = None if live else self.db.last_run()
            except DBAPIError:  # a database of schema 0001 (before runs were recorded): none
                live, last = [], None
            runs = pd.DataFrame([[getattr(r, c) for c in RUN_COLUMNS] for r in live], columns=list(RUN_COLUMNS))
            for c in ("started_at", "heartbeat_at"):
                runs[c] = pd.to_datetime(runs[c], utc=True)
            configured = dask_dashboard_link(self.cluster_kind, self.scheduler_address, self.dashboard_address)
            last_finished = None
            if live:
                kind, link = live[0].cluster, live[0].dashboard_link
            else:
                kind, link = self.cluster_kind, configured
                if last is not None and last.finished_at is not None:
                    last_finished = pd.Timestamp(last.finished_at).tz_convert("UTC")
            return ClusterInfo(kind, workers, link, runs, last_finished)

        return self._cached("cluster", compute)

    # ------------------------------------------------------------------ Sites page
    def items(self) -> pd.DataFrame:
        """The catalog index with a ``site`` column (one row per item and site), by date."""

        def compute() -> pd.DataFrame:
            idx = self.catalog.refresh()
            with self.db.session(readonly=True) as s:
                linked = list(s.execute(
                    select(PublishedItem.item_id, Site.name)
                    .join(Product, PublishedItem.product_id == Product.id)
                    .join(Site, Product.site_id == Site.id)
                ))
            parts = [pd.DataFrame(linked, columns=["item_id", "site"])]
            tiles = [(t, site) for site, ts in self.site_tiles.items() for t in ts]
            by_tile = pd.DataFrame(tiles, columns=["tile", "site"])
            parts.append(idx[["item_id", "tile"]].merge(by_tile, on="tile")[["item_id", "site"]])
            sites = pd.concat(parts, ignore_index=True).drop_duplicates()
            out = idx.merge(sites, on="item_id", how="left")
            out["site"] = out["site"].fillna("(no site)")
            return out.sort_values(["site", "datetime", "item_id"]).reset_index(drop=True)

        return self._cached("items", compute)

    def sites(self) -> list[str]:
        """Site names: the configuration's, the database's, and any found in the catalog."""

        def compute() -> list[str]:
            with self.db.session(readonly=True) as s:
                names = set(s.scalars(select(Site.name)))
            names |= set(self.site_tiles)
            return sorted(names)

        return self._cached("sites", compute)

    def site_items(self, site: str, start: date | None = None, end: date | None = None) -> pd.DataFrame:
        """Items of one site (optionally between ``start`` and ``end``, inclusive), newest first."""
        df = self.items()
        df = df[df["site"] == site]
        if start is not None:
            df = df[df["datetime"] >= pd.Timestamp(start, tz=UTC)]
        if end is not None:
            df = df[df["datetime"] < pd.Timestamp(end, tz=UTC) + np.timedelta64(1, "D")]
        return df.sort_values("datetime", ascending=False).reset_index(drop=True)

    # ------------------------------------------------------------------ Statistics page
    def site_statistics(self, site: str, start: date | None = None,
                        end: date | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per-date covers in long form, per-month statistics) of a site."""
        items = self.site_items(site, start, end).sort_values("datetime")
        return cover_statistics(items), monthly_statistics(items, self.settings.clear_max_cloud)

    def downloads_per_product(self, limit: int = 20) -> pd.DataFrame:
        """Most downloaded products: ``item_id``, ``downloads``, ``users``, ``gigabytes``."""

        def compute() -> pd.DataFrame:
            q = (
                select(Download.item_id, func.count(Download.id),
                       func.count(func.distinct(Download.user)),
                       func.coalesce(func.sum(Download.bytes), 0))
                .group_by(Download.item_id)
                .order_by(func.count(Download.id).desc(), Download.item_id)
                .limit(limit)
            )
            with self.db.session(readonly=True) as s:
                rows = [(i, int(n), int(u), int(b) / 1e9) for i, n, u, b in s.execute(q)]
            return pd.DataFrame(rows, columns=["item_id", "downloads", "users", "gigabytes"])

        return self._cached(("downloads_product", limit), compute)

    def downloads_per_user(self, freq: str = "W") -> pd.DataFrame:
        """Downloads per user and period: ``time``, ``user``, ``downloads``, ``gigabytes``."""

        def compute() -> pd.DataFrame:
            q = select(Download.time, Download.user, Download.bytes)
            with self.db.session(readonly=True) as s:
                rows = list(s.execute(q))
            df = pd.DataFrame(rows, columns=["time", "user", "bytes"])
            if df.empty:
                return pd.DataFrame(columns=["time", "user", "downloads", "gigabytes"])
            df["time"] = pd.to_datetime(df["time"], utc=True).dt.tz_convert(None)
            df["time"] = df["time"].dt.to_period(freq).dt.start_time
            g = df.groupby(["time", "user"])
            out = pd.DataFrame({"downloads": g.size(), "gigabytes": g["bytes"].sum() / 1e9})
            return out.reset_index()

        return self._cached(("downloads_user", freq), compute)
