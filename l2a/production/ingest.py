"""Ingest: find L1C products (inbox, catalogs), validate them, register them once.

The status database is the system of record: a scan registers every complete product of the
inbox that it does not know yet, and skips (without reopening them) the ones it knows by
their local path; a restart loses nothing, and events (:class:`InboxWatcher`) only make it
react faster. Identity (:mod:`l2a.io.identity`: platform, tile, sensing time,
baseline, generation time) makes ingest idempotent, whatever the route: the same product
from the inbox and from a catalog is one row; a newer baseline of an acquisition supersedes
the older one (:meth:`Database.register_product`).

Validation tiers (:attr:`IngestSettings.validation`)
    ``"name"``
        The name parses into a complete identity; a zip's central directory is readable
        (a truncated zip fails here); a SAFE folder has ``MTD_MSIL1C.xml``. No XML parsed.
        For trusted, checksummed deliveries. About 0.2 ms a product.
    ``"light"`` (default)
        ``"name"`` plus the structure and metadata: :func:`l2a.io.safe.open_safe` (zip or
        folder layout, ``MTD_MSIL1C.xml`` and ``MTD_TL.xml`` parsed and checked), the 13
        band files present, and the metadata agreeing with the name (platform, tile, baseline,
        sensing time within :data:`~l2a.io.identity.ACQUISITION_TOLERANCE`).
        A few ms a product.
    ``"full"``
        ``"light"`` plus every member's CRC (zip) and every band file's JPEG2000 header read
        by GDAL (georeferencing and size checked against the metadata). Tens of ms to
        seconds a product (reads the whole zip).

Bad input
    A product that fails validation is registered ``FAILED`` with the reason (when its name
    identifies it) and moved to ``inbox/_rejected/`` with ``<name>.reason.txt``; the others
    go on. A product of a tile outside every site (or outside the sites' dates) is registered
    ``IGNORED`` with the reason and logged, and left where it is (the database remembers it).
    A second copy of a registered product (same identity and version) is recognised and
    moved to ``inbox/_duplicates/`` with its reason file.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import func, select

from l2a.errors import InputError
from l2a.io.identity import ACQUISITION_TOLERANCE, ProductName, parse_product_name
from l2a.production.inbox import (
    Entry,
    InboxSettings,
    InboxWatcher,
    StabilityTracker,
    list_entries,
    move_aside,
    read_entry,
)
from l2a.production.models import Job, Product, ProductState

if TYPE_CHECKING:
    from l2a.catalog.sources import Candidate, L1CSource
    from l2a.config import Settings, Site
    from l2a.production.db import Database

__all__ = [
    "IngestReport",
    "IngestSettings",
    "Ingestor",
    "ValidatedProduct",
    "validate_product",
]

log = logging.getLogger(__name__)

Tier = Literal["name", "light", "full"]

#: Number of bands of a complete Sentinel-2 L1C product.
N_BANDS = 13

_GRANULE_TILE = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|$)")


@dataclass(frozen=True)
class IngestSettings:
    """Choices of ingest (see the module notes for the validation tiers)."""

    #: Validation tier: ``"name"``, ``"light"`` or ``"full"``.
    validation: Tier = "light"
    #: How the inbox is watched and where products are moved aside.
    inbox: InboxSettings = field(default_factory=InboxSettings)
    #: Download catalog products (else only register them).
    fetch: bool = True
    #: Folder receiving downloads (None: the inbox, so that the inbox scan sees them too).
    download_dir: Path | None = None


@dataclass(frozen=True)
class ValidatedProduct:
    """One tile of a validated product."""

    name: ProductName
    path: Path
    cloud_cover: float | None
    size_bytes: int | None


@dataclass
class IngestReport:
    """What one ingest pass did (lists of product names or ``(path, reason)``)."""

    registered: list[str] = field(default_factory=list)
    known: int = 0
    linked: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    found: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def merge(self, other: IngestReport) -> None:
        """Add ``other``'s results to this report."""
        for name in (
            "registered",
            "linked",
            "duplicates",
            "superseded",
            "rejected",
            "ignored",
            "pending",
            "unknown",
            "downloaded",
            "errors",
        ):
            getattr(self, name).extend(getattr(other, name))
        self.known += other.known
        self.found += other.found
        self.seconds += other.seconds

    def summary(self) -> str:
        """One line for logs and the CLI."""
        parts = [
            f"{len(self.registered)} registered",
            f"{self.known} already known",
        ]
        for label, items in (
            ("linked to catalog records", self.linked),
            ("found in catalogs", range(self.found)),
            ("downloaded", self.downloaded),
            ("superseded on arrival", self.superseded),
            ("duplicates", self.duplicates),
            ("rejected", self.rejected),
            ("ignored", self.ignored),
            ("still being written", self.pending),
            ("errors", self.errors),
        ):
            if items:
                parts.append(f"{len(items)} {label}")
        return ", ".join(parts) + f" ({self.seconds:.1f} s)"


# --------------------------------------------------------------------------- validation
def _granule_tiles(path: Path) -> list[str]:
    """Tiles of a multi-tile (PDMC) product from its granule folder names."""
    if path.is_dir():
        names = (
            [p.name for p in (path / "GRANULE").iterdir()] if (path / "GRANULE").is_dir() else []
        )
    else:
        with zipfile.ZipFile(path) as zf:
            names = [
                part
                for m in zf.namelist()
                if "GRANULE/" in m
                for part in [m.split("GRANULE/", 1)[1].split("/", 1)[0]]
                if part
            ]
    return sorted({m[1] for n in names if (m := _GRANULE_TILE.search(n))})


def _check_name_tier(path: Path, name: ProductName) -> None:
    if path.is_dir():
        if not (path / "MTD_MSIL1C.xml").is_file() and not any(path.glob("S2*_MTD_SAFL1C_*.xml")):
            raise InputError(
                path, "no MTD_MSIL1C.xml at the top of the folder: not a complete L1C SAFE"
            )
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(
                path, f"not a readable zip file ({exc}): truncated or corrupt; send it again"
            ) from None


def validate_product(path: str | Path, tier: Tier = "light") -> list[ValidatedProduct]:
    """Validate an inbox product (see the module notes for the tiers).

    Returns
    -------
    list of ValidatedProduct
        One per tile (several only for old multi-tile PDMC products).

    Raises
    ------
    InputError
        Saying what is wrong, in plain words.
    """
    p = Path(path)
    name = parse_product_name(p.name)
    if name.level != "L1C":
        raise InputError(p, f"a {name.level} product, not L1C: l2a ingests Level-1C products")
    _check_name_tier(p, name)
    size = p.stat().st_size if p.is_file() else None
    if name.tile:
        tiles: list[tuple[ProductName, str | None]] = [(name, None)]
    else:
        found = _granule_tiles(p)
        if not found:
            raise InputError(p, "a multi-tile product without any granule folder: incomplete")
        tiles = [(name.for_tile(t), t) for t in found]
    if tier == "name":
        return [ValidatedProduct(n, p, None, size) for n, _ in tiles]
    from l2a.io.safe import open_safe

    out = []
    if tier == "full" and p.is_file():
        with zipfile.ZipFile(p) as zf:
            try:
                bad = zf.testzip()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InputError(p, f"corrupt zip ({exc}); send it again") from None
        if bad is not None:
            raise InputError(p, f"corrupt zip: member {bad} fails its CRC check; send it again")
    for n, tile in tiles:
        product = open_safe(p, tile=tile)
        md = product.metadata
        if md.tile_id != n.tile:
            raise InputError(p, f"the metadata is for tile {md.tile_id}, the name says {n.tile}")
        if md.platform != n.platform:
            raise InputError(p, f"the metadata says {md.platform}, the name says {n.platform}")
        if n.baseline and md.baseline and md.baseline != n.baseline:
            raise InputError(
                p, f"the metadata says baseline {md.baseline}, the name says {n.baseline}"
            )
        if n.sensing_time and abs(md.sensing_time - n.sensing_time) > ACQUISITION_TOLERANCE:
            raise InputError(
                p,
                f"the metadata's sensing time {md.sensing_time:%Y-%m-%dT%H:%M:%S} does not "
                f"match the name's {n.sensing_time:%Y-%m-%dT%H:%M:%S}",
            )
        missing = [b for b in _band_names() if b not in product.bands]
        if missing:
            raise InputError(p, f"incomplete product: band files missing: {', '.join(missing)}")
        if tier == "full":
            for b in product.bands:
                product.band_file(b)
        out.append(ValidatedProduct(n, p, md.cloud_cover, size))
    return out


def _reason(product: Path, exc: InputError) -> str:
    """The problem, naming the file inside the product when it is not the product itself."""
    where = exc.path
    for sep in ("!/", "/"):
        prefix = str(product) + sep
        if where.startswith(prefix):
            where = where[len(prefix) :]
            break
    else:
        if where in (str(product), product.name):
            return exc.problem
    return f"{where}: {exc.problem}"


def _band_names() -> tuple[str, ...]:
    from l2a.sensors.sentinel2 import BAND_NAMES

    return tuple(BAND_NAMES)


# --------------------------------------------------------------------------- the ingestor
class Ingestor:
    """Inbox scans, catalog searches and registration for one site configuration.

    Parameters
    ----------
    settings : Settings
        The site configuration (inbox, sites, sources, processing.max_cloud_cover).
    db : Database
        The status database (migrated).
    ingest : IngestSettings, optional
    sources : sequence of L1CSource, optional
        Catalog sources (default: built from ``settings.sources``).
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        ingest: IngestSettings | None = None,
        sources: Sequence[L1CSource] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.opts = ingest or IngestSettings()
        self.inbox = Path(settings.inbox)
        self.tracker = StabilityTracker(self.opts.inbox)
        self._sources = list(sources) if sources is not None else None
        self._site_cache: dict[str, list[Site]] = {}
        self._unknown_logged: set[Path] = set()
        self._lock = threading.Lock()

    # ---- sites
    def sources(self) -> list[L1CSource]:
        """The catalog sources (built from the configuration on first use)."""
        if self._sources is None:
            from l2a.catalog.sources import make_source

            self._sources = [make_source(s, db=self.db) for s in self.settings.sources]
        return self._sources

    def _sites_of_tile(self, tile: str) -> list[Site]:
        if tile not in self._site_cache:
            out = []
            for site in self.settings.sites:
                if site.tiles:
                    if tile in site.tiles:
                        out.append(site)
                    continue
                from shapely.geometry import box, shape

                from l2a.catalog.sources import _site_geometry, tile_bbox

                geom = _site_geometry(site)
                area = shape(geom) if geom else box(*site.bbox) if site.bbox else None
                if area is not None and area.intersects(box(*tile_bbox(tile))):
                    out.append(site)
            self._site_cache[tile] = out
        return self._site_cache[tile]

    def site_for(self, name: ProductName) -> tuple[str | None, str | None]:
        """(site name, None) for a product in a site, else (None, reason)."""
        assert name.tile and name.sensing_time
        sites = self._sites_of_tile(name.tile)
        if not sites:
            return None, f"tile {name.tile} is outside every site"
        day = name.sensing_time.date()
        for site in sites:
            if (site.start is None or day >= site.start) and (site.end is None or day <= site.end):
                return site.name, None
        return None, f"sensed {day}, outside the dates of the sites of tile {name.tile}"

    # ---- database helpers
    def _known_paths(self) -> dict[str, tuple[int, ProductState]]:
        with self.db.session(readonly=True) as s:
            rows = s.execute(
                select(Product.local_path, Product.id, Product.state).where(
                    Product.local_path.is_not(None)
                )
            )
            return {str(lp): (pid, st) for lp, pid, st in rows}

    def _has_jobs(self, product_id: int) -> bool:
        with self.db.session(readonly=True) as s:
            n = s.scalar(select(func.count(Job.id)).where(Job.product_id == product_id))
            return bool(n)

    def _update(self, product_id: int, **values: object) -> None:
        with self.db.session() as s:
            row = s.get(Product, product_id)
            if row is not None:
                for k, v in values.items():
                    setattr(row, k, v)

    # ---- registration of one validated product
    def _register(
        self,
        vp: ValidatedProduct,
        report: IngestReport,
        *,
        source: str | None = None,
        checksum: str | None = None,
    ) -> None:
        name = vp.name
        site, why = self.site_for(name)
        path = str(vp.path)
        if site is None:
            log.info("ignoring %s: %s", name.name, why)
            self.db.register_product(
                name,
                source=source or path,
                local_path=path,
                cloud_cover=vp.cloud_cover,
                size_bytes=vp.size_bytes,
                state=ProductState.IGNORED,
                error=why,
            )
            report.ignored.append((name.name, why or ""))
            return
        product, created = self.db.register_product(
            name,
            source=source or path,
            site=site,
            local_path=path,
            checksum=checksum,
            size_bytes=vp.size_bytes,
            cloud_cover=vp.cloud_cover,
        )
        if created:
            if product.state == ProductState.SUPERSEDED:
                log.info("%s arrived after a newer version: %s", name.name, product.error)
                report.superseded.append(name.name)
            else:
                report.registered.append(name.name)
            return
        # the same version is registered already
        if product.local_path == path:
            if product.source != (source or path):  # registered from a catalog, now local
                log.info("%s: linked to the catalog record %s", path, product.source)
                report.linked.append(name.name)
            else:
                report.known += 1
            return
        if product.state == ProductState.FAILED and not self._has_jobs(product.id):
            # an earlier copy was rejected: this one passed validation, take it
            self._update(product.id, state=ProductState.DISCOVERED, error=None, local_path=path)
            report.registered.append(name.name)
            return
        old = Path(product.local_path) if product.local_path else None
        if product.local_path is None or old is None or not old.exists():
            self._update(product.id, local_path=path, size_bytes=vp.size_bytes)
            report.linked.append(name.name)
            log.info("%s: linked to the registered product %s", path, product.name)
            return
        reason = f"duplicate of {product.name}, registered already from {product.local_path}"
        log.info("%s: %s", path, reason)
        if vp.path.exists() and vp.path.parent in self._drop_dirs():
            move_aside(vp.path, vp.path.parent / self.opts.inbox.duplicates_dir, reason)
        report.duplicates.append((path, reason))

    def _drop_dirs(self) -> tuple[Path, ...]:
        """Folders whose products ingest may move aside (the inbox, the download folder)."""
        return (self.inbox, Path(self.opts.download_dir or self.inbox))

    def _reject(self, path: Path, reason: str, report: IngestReport) -> None:
        log.warning("rejecting %s: %s", path, reason)
        target = path
        if path.exists() and path.parent in self._drop_dirs():
            target = move_aside(path, path.parent / self.opts.inbox.rejected_dir, reason)
        report.rejected.append((str(path), reason))
        try:
            name = parse_product_name(path.name)
        except InputError:
            return
        if not name.is_complete:
            return
        site, _ = self.site_for(name)
        product, created = self.db.register_product(
            name,
            source=str(path),
            site=site,
            local_path=str(target),
            state=ProductState.FAILED,
            error=reason,
        )
        if (
            not created
            and product.state in (ProductState.DISCOVERED, ProductState.FAILED)
            and product.local_path in (None, str(path), str(target))
        ):
            self._update(
                product.id, state=ProductState.FAILED, error=reason, local_path=str(target)
            )

    def ingest_path(self, path: Path, report: IngestReport | None = None) -> IngestReport:
        """Validate and register one complete inbox product (or reject it)."""
        report = report if report is not None else IngestReport()
        try:
            validated = validate_product(path, self.opts.validation)
        except InputError as exc:
            self._reject(path, _reason(path, exc), report)
            return report
        except OSError as exc:
            if not path.exists():
                return report  # vanished meanwhile
            self._reject(path, f"cannot read it: {exc}", report)
            return report
        for vp in validated:
            self._register(vp, report)
        return report

    # ---- the inbox
    def scan_inbox(self, *, wait: bool = True, only: Iterable[Path] | None = None) -> IngestReport:
        """Register the complete products of the inbox.

        Parameters
        ----------
        wait : bool
            When products are still settling, look again after
            :attr:`InboxSettings.stable_interval_s` (once) within this call; else leave
            them for the next scan (``report.pending``).
        only : iterable of Path, optional
            Look at these top-level entries only (event hints).
        """
        t0 = time.monotonic()
        report = IngestReport()
        with self._lock:
            known = self._known_paths()
            if only is None:
                entries, unknown = list_entries(self.inbox, self.opts.inbox)
                for u in unknown:
                    if u not in self._unknown_logged:
                        log.info("ignoring %s: not a SAFE folder nor a zip", u)
                        self._unknown_logged.add(u)
                report.unknown = [str(u) for u in unknown]
            else:
                entries = [e for p in dict.fromkeys(only) if (e := read_entry(p)) is not None]
            todo: list[Entry] = []
            for e in entries:
                if str(e.path) in known:
                    report.known += 1
                    self.tracker.forget(e.path)
                else:
                    todo.append(e)
            ready, waiting = self._complete(todo)
            if waiting and wait:
                time.sleep(self.opts.inbox.stable_interval_s)
                again = [e for w in waiting if (e := read_entry(w.path)) is not None]
                more, waiting = self._complete(again)
                ready += more
            for e in ready:
                self.ingest_path(e.path, report)
                self.tracker.forget(e.path)
            report.pending = [str(w.path) for w in waiting]
        report.seconds = time.monotonic() - t0
        if report.registered or report.rejected or report.duplicates or report.linked:
            log.info("inbox scan: %s", report.summary())
        return report

    def _complete(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        ready: list[Entry] = []
        waiting: list[Entry] = []
        for e in entries:
            (ready if self.tracker.is_complete(e) else waiting).append(e)
        return ready, waiting

    # ---- catalogs
    def search_sources(
        self,
        *,
        fetch: bool | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> IngestReport:
        """Search every source for every site, register what is found, download it.

        A product already registered with a local file is not downloaded again; one that
        a newer baseline supersedes, or outside every site, is not downloaded at all. A
        failed download leaves the product registered without a local file (retried next
        time) and is listed in ``report.errors``.
        """
        from l2a.catalog.sources import SourceError

        t0 = time.monotonic()
        report = IngestReport()
        do_fetch = self.opts.fetch if fetch is None else fetch
        max_cloud = self.settings.processing.max_cloud_cover
        for source in self.sources():
            for site in self.settings.sites:
                try:
                    candidates = list(
                        source.search(
                            site,
                            start.date() if start else None,
                            end.date() if end else None,
                            max_cloud,
                        )
                    )
                except (SourceError, InputError) as exc:
                    msg = f"{source.label}, site {site.name}: {exc}"
                    log.error("catalog search failed: %s", msg)
                    report.errors.append(msg)
                    continue
                report.found += len(candidates)
                for cand in candidates:
                    self._ingest_candidate(source, site, cand, do_fetch, report)
        report.seconds = time.monotonic() - t0
        log.info("catalog search: %s", report.summary())
        return report

    def _ingest_candidate(
        self, source: L1CSource, site: Site, cand: Candidate, fetch: bool, report: IngestReport
    ) -> None:
        from l2a.catalog.download import DownloadError

        if not cand.name.is_complete:
            report.errors.append(f"{cand.id}: the catalog record does not identify the product")
            return
        site_name, why = self.site_for(cand.name)
        product, created = self.db.register_product(
            cand.name,
            source=cand.href or cand.id,
            site=site_name,
            checksum=cand.checksum,
            size_bytes=cand.size,
            cloud_cover=cand.cloud_cover,
            state=ProductState.IGNORED if site_name is None else ProductState.DISCOVERED,
            error=why,
        )
        if created and product.state == ProductState.SUPERSEDED:
            report.superseded.append(cand.name.name)
        elif created:
            report.registered.append(cand.name.name)
        else:
            report.known += 1
        if (
            not fetch
            or product.state not in (ProductState.DISCOVERED, ProductState.FAILED)
            or (product.local_path and Path(product.local_path).exists())
        ):
            return
        dest = self.opts.download_dir or self.inbox
        try:
            path = source.fetch(cand, Path(dest))
        except (DownloadError, InputError, OSError) as exc:
            msg = f"{cand.id}: download failed: {exc}"
            log.error(msg)
            report.errors.append(msg)
            self._update(product.id, error=msg)
            return
        report.downloaded.append(cand.name.name)
        if path.suffix == ".json":
            self._update(product.id, local_path=str(path), error=None)
            return
        with self._lock:
            try:
                validate_product(path, self.opts.validation)
            except InputError as exc:
                self._reject(path, _reason(path, exc), report)
                return
            self._update(
                product.id,
                local_path=str(path),
                size_bytes=path.stat().st_size,
                state=ProductState.DISCOVERED
                if product.state == ProductState.FAILED
                else product.state,
                error=None,
            )

    # ---- everything
    def run_once(self, *, wait: bool = True) -> IngestReport:
        """Catalog sources first (downloads land in the inbox), then the inbox."""
        report = IngestReport()
        if self.settings.sources or self._sources:
            report.merge(self.search_sources())
        report.merge(self.scan_inbox(wait=wait))
        return report

    def watch(
        self,
        stop: threading.Event,
        *,
        on_report: Callable[[IngestReport], None] | None = None,
        scan_every_s: float | None = None,
        search_every_s: float | None = None,
    ) -> None:
        """Watch the inbox until ``stop`` is set.

        Events trigger a look at the entry they concern (a completion event ingests it at
        once, others after the stability interval); a full scan runs every ``scan_every_s``
        (default ``settings.poll_interval_s``) and catalog searches every
        ``search_every_s`` (default: 20 scans). ``on_report`` receives every non-empty report.
        """
        scan_period = scan_every_s or self.settings.poll_interval_s
        search_period = search_every_s or 20 * scan_period
        watcher = InboxWatcher(self.inbox, self.opts.inbox)
        hinted: dict[Path, float] = {}  # entry -> when to look
        next_scan = 0.0
        next_search = 0.0 if (self.settings.sources or self._sources) else float("inf")

        def emit(r: IngestReport) -> None:
            if on_report and (
                r.registered
                or r.rejected
                or r.duplicates
                or r.linked
                or r.ignored
                or r.superseded
                or r.downloaded
                or r.errors
            ):
                on_report(r)

        with watcher:
            while not stop.is_set():
                try:
                    next_scan, next_search = self._watch_step(
                        watcher, hinted, next_scan, next_search, scan_period, search_period, emit
                    )
                except Exception:  # keep watching: the next scan retries
                    log.exception("ingest error (watching goes on)")
                    stop.wait(min(scan_period, 10.0))

    def _watch_step(
        self,
        watcher: InboxWatcher,
        hinted: dict[Path, float],
        next_scan: float,
        next_search: float,
        scan_period: float,
        search_period: float,
        emit: Callable[[IngestReport], None],
    ) -> tuple[float, float]:
        """One turn of :meth:`watch`; returns the next scan and search times."""
        stable = self.opts.inbox.stable_interval_s
        now = time.monotonic()
        if now >= next_search:
            emit(self.search_sources())
            next_search = time.monotonic() + search_period
        if now >= next_scan:
            emit(self.scan_inbox(wait=False))
            next_scan = time.monotonic() + scan_period
        try:
            path, complete = watcher.hints.get(timeout=0.1)
        except queue.Empty:
            path = None
        if path is not None and (complete or path not in hinted):
            if complete:
                self.tracker.signal_complete(path)
                hinted[path] = now
            else:
                entry = read_entry(path)
                if entry is not None:
                    self.tracker.is_complete(entry)  # first look
                hinted[path] = now + stable
        due = [p for p, t in hinted.items() if t <= time.monotonic()]
        if due:
            r = self.scan_inbox(wait=False, only=due)
            waiting = set(map(Path, r.pending))
            for p in due:
                if p in waiting:
                    hinted[p] = time.monotonic() + stable
                else:
                    hinted.pop(p, None)
            emit(r)
        return next_scan, next_search
