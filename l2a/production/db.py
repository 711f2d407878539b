"""The status database: the system of record of production.

SQLite by default (WAL journal, foreign keys on, write transactions taken with
``BEGIN IMMEDIATE`` so that concurrent writers queue instead of failing), PostgreSQL by URL
(``postgresql://…`` uses psycopg 3). Keep SQLite on a local disk: its locking is unreliable
on NFS/Lustre; use PostgreSQL when several hosts share the work.

The schema comes from the Alembic migrations shipped in ``l2a/production/migrations``
(:meth:`Database.upgrade`; no ``alembic.ini`` needed). Typical use::

    db = Database("sqlite:////data/site/l2a.db")
    db.upgrade()
    product, created = db.register_product(parse_product_name(path.name), source=str(path))
    job = db.enqueue_job(product.id, JobMode.INIT)
    job = db.claim_next_job(worker="host-1:1234")
    db.finish_job(job.id, output_path="/data/site/products/…")

Developers: after changing :mod:`l2a.production.models`, generate a revision with
``python -m l2a.production.db revision "what changed"`` and review it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload, sessionmaker

from l2a.errors import InputError
from l2a.io.identity import ACQUISITION_TOLERANCE, ProductName, parse_product_name
from l2a.production.models import (
    Base,
    Composite,
    Download,
    Job,
    JobMode,
    JobState,
    Product,
    ProductState,
    PublishedItem,
    Run,
    Site,
    utcnow,
)

__all__ = ["Database", "JobCount", "StatusCount", "normalise_url"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

#: PostgreSQL advisory lock key taken while migrating (any constant unique to l2a).
_MIGRATION_LOCK = 0x6C326164

#: Product states that a newer version of the same acquisition replaces.
_REPLACEABLE = (
    ProductState.DISCOVERED,
    ProductState.QUEUED,
    ProductState.RUNNING,
    ProductState.DONE,
    ProductState.FAILED,
    ProductState.IGNORED,
)


@dataclass(frozen=True)
class DatabaseSettings:
    """Connection tuning of the status database."""

    #: Seconds a SQLite writer waits for the lock before giving up.
    sqlite_busy_timeout_s: float = 60.0
    #: Seconds a PostgreSQL connection attempt may take.
    connect_timeout_s: int = 10
    #: Echo SQL to the log (debugging).
    echo: bool = False


class StatusCount(NamedTuple):
    """One row of :meth:`Database.status_counts`."""

    site: str | None
    tile: str
    state: ProductState
    number: int


class JobCount(NamedTuple):
    """One row of :meth:`Database.job_counts`."""

    tile: str
    mode: JobMode
    state: JobState
    number: int


def normalise_url(url: str | URL) -> URL:
    """SQLAlchemy URL with our drivers: ``postgresql://`` and ``postgres://`` use psycopg 3.

    Raises
    ------
    InputError
        For an unparsable URL or an unsupported backend.
    """
    try:
        u = make_url(
            str(url).replace("postgres://", "postgresql://", 1) if isinstance(url, str) else url
        )
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise InputError(str(url), f"not a database URL ({exc}); e.g. sqlite:///l2a.db") from None
    if u.drivername in ("postgresql", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise InputError(
            u.render_as_string(hide_password=True),
            "unsupported database; use sqlite:///PATH or postgresql://USER@HOST/DB",
        )
    return u


class Database:
    """The status database and the small repository API of production.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///relative/or/absolute.db``, ``postgresql://user@host/db``.
    settings : DatabaseSettings, optional
    """

    def __init__(self, url: str | URL, settings: DatabaseSettings | None = None) -> None:
        self.settings = settings or DatabaseSettings()
        self.url = normalise_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._make_engine()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------ engine and schema
    def _make_engine(self) -> Engine:
        if self.is_sqlite:
            db = self.url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                self.url,
                echo=self.settings.echo,
                connect_args={"timeout": self.settings.sqlite_busy_timeout_s},
            )
            busy_ms = int(self.settings.sqlite_busy_timeout_s * 1000)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" event emit BEGIN (pysqlite's own is deferred and
                # would let two claimers read the same row before either writes).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA busy_timeout={busy_ms}")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
                conn.exec_driver_sql(f"BEGIN {mode}")

            return engine
        return create_engine(
            self.url,
            echo=self.settings.echo,
            pool_pre_ping=True,
            connect_args={"connect_timeout": self.settings.connect_timeout_s},
        )

    def _alembic_config(self, connection: Connection | None = None) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option(
            "sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the schema to ``revision`` (idempotent).

        Safe when several processes start at once: SQLite serialises them with its write
        lock, PostgreSQL with a transaction-level advisory lock.
        """
        from alembic import command

        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            command.upgrade(self._alembic_config(conn), revision)

    def downgrade(self, revision: str) -> None:
        """Migrate the schema down to ``revision`` (``"base"``: drop everything)."""
        from alembic import command

        with self.engine.begin() as conn:
            command.downgrade(self._alembic_config(conn), revision)

    def current_revision(self) -> str | None:
        """The schema revision of the database (None when never migrated)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def schema_differences(self) -> list[Any]:
        """Differences between the models and the migrated schema (empty when in sync)."""
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions
    @contextlib.contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error.

        On SQLite a read-write session takes the write lock at its start (``BEGIN
        IMMEDIATE``); pass ``readonly=True`` for pure reads (dashboards, status tables).
        """
        bind = (
            self.engine.execution_options(sqlite_begin="DEFERRED")
            if readonly and self.is_sqlite
            else None
        )
        with self._sessions(bind=bind) if bind is not None else self._sessions() as s:
            try:
                yield s
                if not readonly:
                    s.commit()
                # a read-only transaction just ends when the session closes: a rollback
                # would expire the objects handed back to the caller
            except BaseException:
                s.rollback()
                raise

    # ------------------------------------------------------------------ sites and products
    def ensure_site(self, name: str) -> Site:
        """The site named ``name``, created if missing."""
        for _ in range(3):
            try:
                with self.session() as s:
                    site = s.scalar(select(Site).where(Site.name == name))
                    if site is None:
                        site = Site(name=name)
                        s.add(site)
                        s.flush()
                    return site
            except IntegrityError:  # created meanwhile by another process
                continue
        raise RuntimeError(f"could not create site {name!r}")

    def register_product(
        self,
        name: ProductName | str,
        source: str,
        *,
        site: str | None = None,
        local_path: str | None = None,
        checksum: str | None = None,
        size_bytes: int | None = None,
        cloud_cover: float | None = None,
        state: ProductState = ProductState.DISCOVERED,
        error: str | None = None,
    ) -> tuple[Product, bool]:
        """Register an input product, idempotently, handling newer baselines.

        Parameters
        ----------
        name : ProductName or str
            Parsed identity (or a name/path to parse). It must be complete (tile and time).
        source : str
            Where it came from (inbox path or URL).
        site : str, optional
            Site name (created if missing).
        state : ProductState
            Initial state (``IGNORED`` with ``error`` for products outside every site).

        Returns
        -------
        (Product, bool)
            The product row and whether it was created. An existing version of the same
            acquisition (same key, baseline and generation time; or the same baseline where
            one side does not know its generation time) is returned unchanged with ``False``.
            A newer version marks the older ones ``SUPERSEDED`` (their queued jobs are
            cancelled); an older version arriving late is recorded as ``SUPERSEDED`` at once.
            Versions compare by (baseline, generation time); an unknown baseline (``""``,
            e.g. a Planetary Computer id) counts as the oldest. "Same acquisition" is
            :meth:`ProductName.same_acquisition` (platform, tile, level, and sensing times
            within :data:`ACQUISITION_TOLERANCE`), so a SAFE name and a STAC id carrying the
            tile's own sensing time match.
        """
        parsed = parse_product_name(name) if isinstance(name, str) else name
        key = parsed.key()
        disc = f"{parsed.generated:%Y%m%dT%H%M%S}" if parsed.generated else ""
        for _ in range(3):
            try:
                with self.session() as s:
                    return self._register(
                        s,
                        parsed,
                        str(key),
                        disc,
                        source,
                        site,
                        local_path,
                        checksum,
                        size_bytes,
                        cloud_cover,
                        state,
                        error,
                    )
            except IntegrityError:  # registered meanwhile by another process: look again
                continue
        raise RuntimeError(f"could not register {parsed.name}")

    def _register(
        self,
        s: Session,
        parsed: ProductName,
        key: str,
        disc: str,
        source: str,
        site_name: str | None,
        local_path: str | None,
        checksum: str | None,
        size_bytes: int | None,
        cloud_cover: float | None,
        state: ProductState,
        error: str | None,
    ) -> tuple[Product, bool]:
        assert parsed.sensing_time is not None and parsed.tile
        t = parsed.sensing_time
        candidates = list(
            s.scalars(
                select(Product).where(
                    Product.platform == parsed.platform,
                    Product.tile == parsed.tile,
                    Product.level == parsed.level,
                    Product.sensing_time > t - ACQUISITION_TOLERANCE,
                    Product.sensing_time < t + ACQUISITION_TOLERANCE,
                )
            )
        )
        for c in candidates:
            same_version = c.baseline == parsed.baseline and (
                c.discriminator == disc or not c.discriminator or not disc
            )
            if same_version:
                if local_path and not c.local_path:
                    c.local_path = local_path
                return c, False

        def version(baseline: str, discriminator: str) -> tuple[str, str]:
            return (baseline, discriminator)

        mine = version(parsed.baseline, disc)
        newer = [c for c in candidates if version(c.baseline, c.discriminator) > mine]
        older = [
            c
            for c in candidates
            if version(c.baseline, c.discriminator) < mine and c.state in _REPLACEABLE
        ]
        site_row = None
        if site_name:
            site_row = s.scalar(select(Site).where(Site.name == site_name))
            if site_row is None:
                site_row = Site(name=site_name)
                s.add(site_row)
        product = Product(
            # keep the key of the acquisition consistent across sources
            key=candidates[0].key if candidates else key,
            name=parsed.name,
            platform=parsed.platform,
            tile=parsed.tile,
            sensing_time=t,
            level=parsed.level,
            baseline=parsed.baseline,
            discriminator=disc,
            relative_orbit=parsed.relative_orbit,
            cloud_cover=cloud_cover,
            source=source,
            local_path=local_path,
            checksum=checksum,
            size_bytes=size_bytes,
            state=state,
            error=error,
            site=site_row,
        )
        if newer:
            best = max(newer, key=lambda c: version(c.baseline, c.discriminator))
            product.state = ProductState.SUPERSEDED
            product.superseded_by = best
            product.error = f"a newer version ({best.name}) was registered before"
        s.add(product)
        s.flush()
        if not newer:
            for old in older:
                old.state = ProductState.SUPERSEDED
                old.superseded_by_id = product.id
                old.error = f"superseded by {parsed.name} (baseline {parsed.baseline or '?'})"
                s.execute(
                    update(Job)
                    .where(Job.product_id == old.id, Job.state == JobState.QUEUED)
                    .values(state=JobState.CANCELLED, error=f"product superseded by {parsed.name}")
                )
        return product, True

    def get_product(self, product_id: int) -> Product | None:
        """A product by id."""
        with self.session(readonly=True) as s:
            return s.get(Product, product_id)

    def find_products(
        self, *, tile: str | None = None, state: ProductState | None = None
    ) -> list[Product]:
        """Products filtered by tile and state, in tile then time order."""
        q = select(Product).order_by(Product.tile, Product.sensing_time, Product.id)
        if tile:
            q = q.where(Product.tile == tile)
        if state:
            q = q.where(Product.state == state)
        with self.session(readonly=True) as s:
            return list(s.scalars(q))

    def set_product_state(
        self, product_id: int, state: ProductState, error: str | None = None
    ) -> None:
        """Set a product's state (and reason)."""
        with self.session() as s:
            p = s.get(Product, product_id)
            if p is None:
                raise KeyError(product_id)
            p.state = state
            p.error = error

    # ------------------------------------------------------------------ jobs
    def enqueue_job(
        self,
        product_id: int,
        mode: JobMode = JobMode.NOMINAL,
        *,
        priority: int = 0,
        max_attempts: int = 3,
    ) -> Job:
        """Queue a job for a product (returns the active one if the product has one already)."""
        with self.session() as s:
            active = s.scalar(
                select(Job).where(
                    Job.product_id == product_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING])
                )
            )
            if active is not None:
                return active
            product = s.get(Product, product_id)
            if product is None:
                raise KeyError(product_id)
            job = Job(
                product_id=product_id,
                tile=product.tile,
                sensing_time=product.sensing_time,
                mode=mode,
                priority=priority,
                max_attempts=max_attempts,
            )
            s.add(job)
            product.state = ProductState.QUEUED
            s.flush()
            return job

    def claim_next_job(self, worker: str, *, now: datetime | None = None) -> Job | None:
        """Atomically take the next runnable job, or None.

        Runnable: queued, past its ``not_before``, and first of its tile (no running job on
        the tile and no queued job of an earlier date: the composite travels in date order).
        Order: ``priority``, then sensing time, then id. PostgreSQL: ``SELECT … FOR UPDATE
        SKIP LOCKED``; SQLite: the whole claim runs under the database write lock
        (``BEGIN IMMEDIATE``). The job's ``product`` is loaded.
        """
        now = now or utcnow()
        other = aliased(Job)
        blocked = exists(
            select(other.id).where(
                other.tile == Job.tile,
                other.id != Job.id,
                or_(
                    other.state == JobState.RUNNING,
                    and_(
                        other.state == JobState.QUEUED,
                        or_(
                            other.sensing_time < Job.sensing_time,
                            and_(other.sensing_time == Job.sensing_time, other.id < Job.id),
                        ),
                    ),
                ),
            )
        )
        q = (
            select(Job)
            .where(
                Job.state == JobState.QUEUED,
                or_(Job.not_before.is_(None), Job.not_before <= now),
                ~blocked,
            )
            .order_by(Job.priority, Job.sensing_time, Job.id)
            .limit(1)
        )
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True, of=Job)
        with self.session() as s:
            job = s.scalar(q)
            if job is None:
                return None
            started = utcnow()  # after the row is ours: start times follow the claim order
            job.state = JobState.RUNNING
            job.worker = worker
            job.attempts += 1
            job.started_at = started
            job.heartbeat_at = started
            job.finished_at = None
            job.duration_s = None
            s.execute(
                update(Product)
                .where(Product.id == job.product_id)
                .values(state=ProductState.RUNNING)
            )
            s.flush()
            s.refresh(job, attribute_names=["product"])
            return job

    def heartbeat(self, job_id: int) -> None:
        """Record that the worker of a running job is alive."""
        with self.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))

    def finish_job(
        self, job_id: int, *, output_path: str | None = None, composite_path: str | None = None
    ) -> Job:
        """Mark a running job done (and its product).

        With ``composite_path``, the tile's composite after the product's date is recorded in
        the same transaction (:meth:`record_composite`): a crash leaves both or neither.
        """
        with self.session() as s:
            job = self._running(s, job_id)
            now = utcnow()
            job.state = JobState.DONE
            job.finished_at = now
            job.duration_s = (now - job.started_at).total_seconds() if job.started_at else None
            job.output_path = output_path
            job.error = None
            product = s.get(Product, job.product_id)
            if product is not None and product.state != ProductState.SUPERSEDED:
                product.state = ProductState.DONE
                product.error = None
            if composite_path is not None:
                if product is None:
                    raise LookupError(f"job {job_id}: its product {job.product_id} is gone (no date for the composite)")
                self._put_composite(s, job.tile, product.sensing_time, composite_path, job.id)
            return job

    def fail_job(
        self, job_id: int, reason: str, *, retry: bool = True, backoff_s: float = 60.0
    ) -> Job:
        """Record a failure of a running job, with the reason in plain words.

        With ``retry`` and attempts left, the job is queued again, claimable after
        ``backoff_s * 2**(attempts-1)`` seconds; otherwise it and its product are ``FAILED``.
        """
        with self.session() as s:
            job = self._running(s, job_id)
            now = utcnow()
            job.error = reason
            job.finished_at = now
            job.duration_s = (now - job.started_at).total_seconds() if job.started_at else None
            product = s.get(Product, job.product_id)
            if retry and job.attempts < job.max_attempts:
                job.state = JobState.QUEUED
                job.worker = None
                job.not_before = now + timedelta(seconds=backoff_s * 2 ** max(job.attempts - 1, 0))
                if product is not None and product.state == ProductState.RUNNING:
                    product.state = ProductState.QUEUED
            else:
                job.state = JobState.FAILED
                if product is not None and product.state != ProductState.SUPERSEDED:
                    product.state = ProductState.FAILED
                    product.error = reason
            return job

    @staticmethod
    def _running(s: Session, job_id: int) -> Job:
        job = s.get(Job, job_id, with_for_update=True)  # row lock on PostgreSQL
        if job is None:
            raise KeyError(f"no job {job_id}")
        if job.state != JobState.RUNNING:
            raise ValueError(f"job {job_id} is {job.state.value}, not running")
        return job

    def requeue_stale_jobs(self, older_than_s: float, *, now: datetime | None = None) -> int:
        """Put back in the queue running jobs whose worker fell silent (crash, lost host).

        A job whose last heartbeat (or start) is older than ``older_than_s`` seconds is queued
        again (its attempt stays counted). Call it at start-up with ``older_than_s=0`` when no
        other runner shares the database. Returns the number of jobs requeued.
        """
        now = now or utcnow()
        limit = now - timedelta(seconds=older_than_s)
        with self.session() as s:
            stale = list(
                s.scalars(
                    select(Job).where(
                        Job.state == JobState.RUNNING,
                        func.coalesce(Job.heartbeat_at, Job.started_at) <= limit,
                    )
                )
            )
            for job in stale:
                job.state = JobState.QUEUED
                job.error = f"worker {job.worker} stopped responding; requeued"
                job.worker = None
                s.execute(
                    update(Product)
                    .where(Product.id == job.product_id, Product.state == ProductState.RUNNING)
                    .values(state=ProductState.QUEUED)
                )
            return len(stale)

    def jobs(self, *, state: JobState | None = None, tile: str | None = None) -> list[Job]:
        """Jobs (with their product) by tile and time."""
        q = (
            select(Job)
            .options(selectinload(Job.product))
            .order_by(Job.tile, Job.sensing_time, Job.id)
        )
        if state:
            q = q.where(Job.state == state)
        if tile:
            q = q.where(Job.tile == tile)
        with self.session(readonly=True) as s:
            return list(s.scalars(q))

    # ------------------------------------------------------------------ composites, catalog, downloads
    def record_composite(
        self, tile: str, date: datetime, path: str, job_id: int | None = None
    ) -> Composite:
        """Record (or replace) a tile's composite state after ``date``."""
        with self.session() as s:
            return self._put_composite(s, tile, date, path, job_id)

    @staticmethod
    def _put_composite(s: Session, tile: str, date: datetime, path: str, job_id: int | None) -> Composite:
        row = s.scalar(select(Composite).where(Composite.tile == tile, Composite.date == date))
        if row is None:
            row = Composite(tile=tile, date=date, path=path, job_id=job_id)
            s.add(row)
        else:
            row.path, row.job_id, row.created_at = path, job_id, utcnow()
        s.flush()
        return row

    def latest_composite(self, tile: str, before: datetime | None = None) -> Composite | None:
        """The tile's last composite (strictly before ``before`` when given)."""
        q = select(Composite).where(Composite.tile == tile)
        if before is not None:
            q = q.where(Composite.date < before)
        with self.session(readonly=True) as s:
            return s.scalar(q.order_by(Composite.date.desc()).limit(1))

    def record_published(
        self,
        item_id: str,
        href: str,
        *,
        collection: str,
        checksum: str | None = None,
        product_id: int | None = None,
    ) -> PublishedItem:
        """Record (or update) a published STAC item."""
        with self.session() as s:
            row = s.scalar(select(PublishedItem).where(PublishedItem.item_id == item_id))
            if row is None:
                row = PublishedItem(item_id=item_id, href=href, collection=collection)
                s.add(row)
            row.href, row.collection, row.checksum = href, collection, checksum
            row.product_id = product_id
            row.published_at = utcnow()
            s.flush()
            return row

    def record_download(
        self,
        item_id: str,
        *,
        user: str = "anonymous",
        nbytes: int = 0,
        asset: str | None = None,
        client: str | None = None,
        time: datetime | None = None,
    ) -> Download:
        """Record that ``user`` downloaded ``nbytes`` of an item (or one of its assets)."""
        with self.session() as s:
            product_id = s.scalar(
                select(PublishedItem.product_id).where(PublishedItem.item_id == item_id)
            )
            row = Download(
                item_id=item_id,
                asset=asset,
                product_id=product_id,
                user=user,
                client=client,
                time=time or utcnow(),
                bytes=nbytes,
            )
            s.add(row)
            s.flush()
            return row

    # ------------------------------------------------------------------ statistics
    def status_counts(self) -> list[StatusCount]:
        """Number of products per site, tile and state."""
        q = (
            select(Site.name, Product.tile, Product.state, func.count(Product.id))
            .select_from(Product)
            .outerjoin(Site, Product.site_id == Site.id)
            .group_by(Site.name, Product.tile, Product.state)
            .order_by(Site.name, Product.tile, Product.state)
        )
        with self.session(readonly=True) as s:
            return [
                StatusCount(site, tile, ProductState(state), n)
                for site, tile, state, n in s.execute(q)
            ]

    def job_counts(self) -> list[JobCount]:
        """Number of jobs per tile, mode and state."""
        q = (
            select(Job.tile, Job.mode, Job.state, func.count(Job.id))
            .group_by(Job.tile, Job.mode, Job.state)
            .order_by(Job.tile, Job.mode, Job.state)
        )
        with self.session(readonly=True) as s:
            return [
                JobCount(tile, JobMode(mode), JobState(state), n)
                for tile, mode, state, n in s.execute(q)
            ]

    # ------------------------------------------------------------------------- runs
    def start_run(
        self,
        runner: str,
        command: str,
        cluster: str,
        *,
        scheduler: str | None = None,
        dashboard_link: str | None = None,
    ) -> int:
        """Record a run starting (``l2a run``/``watch``/``demo``); its id."""
        with self.session() as s:
            run = Run(
                runner=runner[:255], command=command[:16], cluster=cluster[:32],
                scheduler=(scheduler or None) and scheduler[:512],
                dashboard_link=(dashboard_link or None) and dashboard_link[:512],
            )
            s.add(run)
            s.flush()
            return int(run.id)

    def heartbeat_run(self, run_id: int) -> None:
        """Record that a run is alive."""
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))

    def finish_run(self, run_id: int) -> None:
        """Record the end of a run (also after an error; a killed run has none)."""
        with self.session() as s:
            now = utcnow()
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now, finished_at=now))

    def active_runs(self, stale_after_s: float, *, now: datetime | None = None) -> list[Run]:
        """Runs not finished whose heartbeat is at most ``stale_after_s`` old, latest first."""
        now = now or utcnow()
        q = (
            select(Run)
            .where(Run.finished_at.is_(None), Run.heartbeat_at >= now - timedelta(seconds=stale_after_s))
            .order_by(Run.started_at.desc(), Run.id.desc())
        )
        with self.session(readonly=True) as s:
            return list(s.scalars(q))

    def last_run(self) -> Run | None:
        """The latest run started, finished or not."""
        with self.session(readonly=True) as s:
            return s.scalar(select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(1))

    def download_counts(self) -> list[tuple[str, str, int, int]]:
        """(item id, user, downloads, bytes) per item and user."""
        q = (
            select(
                Download.item_id,
                Download.user,
                func.count(Download.id),
                func.coalesce(func.sum(Download.bytes), 0),
            )
            .group_by(Download.item_id, Download.user)
            .order_by(Download.item_id, Download.user)
        )
        with self.session(readonly=True) as s:
            return [(i, u, int(n), int(b)) for i, u, n, b in s.execute(q)]


def _revision(message: str) -> None:
    """Autogenerate a revision against a scratch SQLite database at head."""
    import tempfile

    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/scratch.db")
        db.upgrade()
        with db.engine.begin() as conn:
            command.revision(db._alembic_config(conn), message=message, autogenerate=True)
        db.dispose()


if __name__ == "__main__":  # pragma: no cover - developer tool
    if len(sys.argv) == 3 and sys.argv[1] == "revision":
        _revision(sys.argv[2])
    else:
        print('usage: python -m l2a.production.db revision "message"', file=sys.stderr)
        sys.exit(2)
