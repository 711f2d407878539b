"""Status database schema: SQLAlchemy 2 typed ORM models.

The schema is created and evolved only by the Alembic migrations in
``l2a/production/migrations`` (run by :meth:`l2a.production.db.Database.upgrade`); a test
checks that the migrated schema equals these models. Change a model => add a revision::

    .venv/bin/python -m l2a.production.db revision "what changed"

Times are stored as UTC (``DateTime(timezone=True)``; SQLite keeps naive UTC, and
:class:`UTCDateTime` gives back aware datetimes on every backend).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Composite",
    "Download",
    "Job",
    "JobMode",
    "JobState",
    "Product",
    "ProductState",
    "PublishedItem",
    "Run",
    "Site",
    "utcnow",
]

#: Constraint naming convention, so that migrations name constraints the same on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always returns aware UTC datetimes (SQLite included)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value!r}: the status database stores aware UTC times"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ProductState(enum.StrEnum):
    """Life of an input product."""

    DISCOVERED = "discovered"  #: registered, not yet planned
    QUEUED = "queued"  #: a job is waiting for it
    RUNNING = "running"  #: a job is processing it
    DONE = "done"  #: its L2A product is published
    FAILED = "failed"  #: gave up (see ``error``)
    SUPERSEDED = "superseded"  #: a newer baseline of the same acquisition replaced it
    IGNORED = "ignored"  #: outside every site, too cloudy, or a duplicate


class JobState(enum.StrEnum):
    """Life of a processing job."""

    QUEUED = "queued"  #: waiting (maybe until ``not_before`` after a failure)
    RUNNING = "running"  #: claimed by ``worker``
    DONE = "done"
    FAILED = "failed"  #: attempts exhausted (see ``error``)
    CANCELLED = "cancelled"  #: replaced by a re-plan (e.g. a late product earlier in the series)


class JobMode(enum.StrEnum):
    """Multi-temporal mode of one date (see SCIENCE.md)."""

    INIT = "INIT"
    NOMINAL = "NOMINAL"
    BACKWARD = "BACKWARD"


def _enum(cls: type[enum.StrEnum]) -> SAEnum:
    # Stored as plain strings (no native ENUM type, no CHECK): adding a state needs no migration
    # of a PostgreSQL type; the Python enum validates on the way in.
    return SAEnum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}  # noqa: RUF012


class Site(Base):
    """A production site of the configuration (tiles or an area, dates)."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    products: Mapped[list[Product]] = relationship(back_populates="site")


class Product(Base):
    """One input (L1C) product version: an acquisition over a tile at one processing baseline."""

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("key", "baseline", "discriminator"),
        Index("ix_products_tile_sensing", "tile", "sensing_time"),
        Index("ix_products_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: acquisition identity, ``str(ProductKey)``: S2A_T31TCJ_20240120T105341_L1C
    key: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), doc="product name (SAFE name without .SAFE)")
    platform: Mapped[str] = mapped_column(String(8))
    tile: Mapped[str] = mapped_column(String(8))
    sensing_time: Mapped[datetime]
    level: Mapped[str] = mapped_column(String(4), default="L1C")
    #: processing baseline "05.10"; "" when unknown
    baseline: Mapped[str] = mapped_column(String(8), default="")
    #: generation time YYYYMMDDTHHMMSS of the name (product discriminator); "" when unknown
    discriminator: Mapped[str] = mapped_column(String(16), default="")
    relative_orbit: Mapped[int | None]
    cloud_cover: Mapped[float | None] = mapped_column(Float)
    #: where it came from: inbox path, or asset/download URL
    source: Mapped[str] = mapped_column(Text)
    #: local path once in the inbox / downloaded
    local_path: Mapped[str | None] = mapped_column(Text)
    state: Mapped[ProductState] = mapped_column(
        _enum(ProductState), default=ProductState.DISCOVERED
    )
    #: "algorithm:hexdigest", e.g. "sha256:…" (or multihash as STAC file:checksum)
    checksum: Mapped[str | None] = mapped_column(String(160))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(
        Text, doc="why it failed or was ignored, in plain words"
    )
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    superseded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL")
    )
    discovered_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    site: Mapped[Site | None] = relationship(back_populates="products")
    superseded_by: Mapped[Product | None] = relationship(remote_side=[id])
    jobs: Mapped[list[Job]] = relationship(back_populates="product", order_by="Job.id")

    def __repr__(self) -> str:
        return f"Product({self.name!r}, state={self.state.value})"


class Job(Base):
    """One processing attempt series of a product in one mode."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "state", "not_before", "priority"),
        Index("ix_jobs_tile_sensing", "tile", "sensing_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    #: copied from the product so that the claim query orders dates of one tile without a join
    tile: Mapped[str] = mapped_column(String(8))
    sensing_time: Mapped[datetime]
    mode: Mapped[JobMode] = mapped_column(_enum(JobMode), default=JobMode.NOMINAL)
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.QUEUED)
    #: lower runs first
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    #: not claimable before this time (retry backoff)
    not_before: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(
        Text, doc="the reason of the last failure, in plain words"
    )
    #: where the product was written (set when done)
    output_path: Mapped[str | None] = mapped_column(Text)

    product: Mapped[Product] = relationship(back_populates="jobs")

    def __repr__(self) -> str:
        return f"Job({self.id}, T{self.tile} {self.sensing_time:%Y-%m-%d} {self.mode.value} {self.state.value})"


class Composite(Base):
    """A tile's composite state after a date (the resume point of the time series)."""

    __tablename__ = "composites"
    __table_args__ = (UniqueConstraint("tile", "date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tile: Mapped[str] = mapped_column(String(8))
    date: Mapped[datetime]
    path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PublishedItem(Base):
    """A STAC item of ours in the catalog."""

    __tablename__ = "published_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(255), unique=True)
    collection: Mapped[str] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), index=True
    )
    href: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(160), doc="checksum of the item JSON")
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


class Download(Base):
    """Who downloaded what, when (distribution statistics)."""

    __tablename__ = "downloads"
    __table_args__ = (Index("ix_downloads_time", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(255), index=True)
    asset: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    user: Mapped[str] = mapped_column(String(255), default="anonymous")
    client: Mapped[str | None] = mapped_column(String(255), doc="client address or user agent")
    time: Mapped[datetime] = mapped_column(default=utcnow)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class Run(Base):
    """One ``l2a run`` / ``l2a watch`` / ``l2a demo``: who runs it, on which cluster, where its
    dask dashboard is (as the cluster reported it), and whether it is alive."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_started", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: ``host:pid`` of the process driving the run
    runner: Mapped[str] = mapped_column(String(255))
    command: Mapped[str] = mapped_column(String(16), doc="run, watch or demo")
    cluster: Mapped[str] = mapped_column(String(32), doc="local, scheduler, scheduler_file or jobqueue")
    scheduler: Mapped[str | None] = mapped_column(String(512), doc="the scheduler's address")
    dashboard_link: Mapped[str | None] = mapped_column(String(512), doc="the dask dashboard, as the cluster reported it")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: refreshed while the run is alive (a run with an old heartbeat and no end was killed)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"Run({self.id}, {self.command} by {self.runner}, {self.cluster})"

