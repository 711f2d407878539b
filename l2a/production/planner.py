"""The planner: which dates of which tile to process, in which mode, in which order.

Series
    A tile's *series* is its products that can be processed: every state but ``SUPERSEDED``,
    ``IGNORED`` and ``FAILED``, in sensing-time order. The composite travels along the series
    from one date to the next, so the dates of one tile run one after the other (the status
    database's claim enforces it: a job waits while an earlier date of its tile is queued or
    running); different tiles run in parallel.

Modes (SCIENCE.md section 5)
    - A date whose previous series member is at most :attr:`PlannerSettings.reinit_gap_days`
      older runs in ``NOMINAL`` mode (against the composite of that date).
    - The first date of a tile, or the first after a longer gap, starts a series: in
      ``BACKWARD`` mode when :attr:`PlannerSettings.backward_dates` > 1 and at least one
      later date of the tile follows within the gap (the job first builds the composite from
      the next ``backward_dates - 1`` dates processed in reverse, MAJA's BACKWARD), else in
      ``INIT`` mode.
    - Queued jobs whose mode changed (a late product became the new first date) are updated.

Late products (the documented policy)
    A product older than dates already processed (a late delivery, or a newer baseline of an
    old acquisition) breaks the composite chain from its date onward: every later date of the
    same series (up to the next re-INIT gap) was made with a composite that lacked it. The
    planner therefore re-queues those later dates (new jobs, NOMINAL), the late product first;
    the runner remakes them in date order and replaces the old products and STAC items
    atomically (same MUSCATE name; the folder is renamed over the old one).

    The rule is evaluated from the database alone, so it survives crashes: walking a tile's
    series in date order, a ``DONE`` date is *stale* when the job that made it started before
    the previous member's last job finished, or while that member is still pending
    (discovered, queued or running). A stale date is re-queued, which makes the next one stale
    in turn. A gap longer than the re-INIT gap cuts the chain (the date after it is INIT and
    depends on nothing earlier). A failed date leaves the series: the dates after it use the
    composite of the last date before it that succeeded (re-INIT if that is too old); if the
    failed date is re-queued later by an operator, the later dates are remade.

    Limit: a BACKWARD start uses the dates known when it runs; a date arriving later inside
    that window does not remake the first date.

Everything is done in one database transaction per call (fast for thousands of products:
see ``benchmarks/production.py``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from l2a.production.db import Database
from l2a.production.models import Job, JobMode, JobState, Product, ProductState, utcnow

__all__ = ["Plan", "PlannedJob", "PlannerSettings", "plan", "series_of"]

log = logging.getLogger(__name__)

#: Product states that are part of a tile's series.
SERIES_STATES = (ProductState.DISCOVERED, ProductState.QUEUED, ProductState.RUNNING, ProductState.DONE)
_PENDING = (ProductState.DISCOVERED, ProductState.QUEUED, ProductState.RUNNING)


@dataclass(frozen=True)
class PlannerSettings:
    """Planning choices (from :class:`l2a.config.ProcessingSettings`).

    Attributes
    ----------
    reinit_gap_days : float
        A gap longer than this (whole days, rounded) between two dates of a tile restarts the
        series.
    backward_dates : int
        Dates used by BACKWARD mode to initialise a series; 1 or less disables BACKWARD
        (series start in INIT mode).
    max_attempts : int
        Attempts per job before it is marked failed.
    """

    reinit_gap_days: float = 45.0
    backward_dates: int = 8
    max_attempts: int = 3

    @classmethod
    def from_config(cls, settings: Any) -> PlannerSettings:
        """From an :class:`l2a.config.Settings` (its ``processing`` section)."""
        p = settings.processing
        return cls(
            reinit_gap_days=float(p.reinit_gap_days),
            backward_dates=int(p.backward_dates),
            max_attempts=int(p.max_attempts),
        )


@dataclass(frozen=True)
class PlannedJob:
    """A job the planner queued (or whose mode it changed)."""

    job_id: int
    product_id: int
    product: str
    tile: str
    sensing_time: datetime
    mode: JobMode
    reason: str


@dataclass
class Plan:
    """What one planning pass did."""

    queued: list[PlannedJob] = field(default_factory=list)
    requeued: list[PlannedJob] = field(default_factory=list)
    mode_changed: list[PlannedJob] = field(default_factory=list)
    tiles: list[str] = field(default_factory=list)

    @property
    def n_jobs(self) -> int:
        return len(self.queued) + len(self.requeued)

    def __str__(self) -> str:
        return (
            f"{len(self.queued)} new job(s), {len(self.requeued)} date(s) to remake after late "
            f"products, {len(self.mode_changed)} mode change(s) over {len(self.tiles)} tile(s)"
        )


def series_of(products: Iterable[Product]) -> list[Product]:
    """A tile's series: products in :data:`SERIES_STATES`, by sensing time then id."""
    return sorted(
        (p for p in products if p.state in SERIES_STATES), key=lambda p: (p.sensing_time, p.id)
    )


def _gap_days(a: datetime, b: datetime) -> float:
    """Gap in whole days (rounded), the same count the masks step makes: the datatake time of
    a product name and the tile sensing time of its metadata differ by minutes, and a limit of
    45 days must mean the same on both sides."""
    return float(round(abs((b - a).total_seconds()) / 86400.0))


def _start_mode(series: Sequence[Product], i: int, s: PlannerSettings) -> JobMode:
    if s.backward_dates <= 1 or i + 1 >= len(series):
        return JobMode.INIT
    nxt = series[i + 1]
    if _gap_days(series[i].sensing_time, nxt.sensing_time) > s.reinit_gap_days:
        return JobMode.INIT
    return JobMode.BACKWARD


def mode_for(series: Sequence[Product], i: int, s: PlannerSettings) -> JobMode:
    """The mode of the ``i``-th date of a series."""
    if i > 0 and _gap_days(series[i - 1].sensing_time, series[i].sensing_time) <= s.reinit_gap_days:
        return JobMode.NOMINAL
    return _start_mode(series, i, s)


def _last_done_job(jobs: Sequence[Job]) -> Job | None:
    done = [j for j in jobs if j.state == JobState.DONE and j.started_at is not None]
    return max(done, key=lambda j: (j.finished_at or j.started_at, j.id)) if done else None


def _active_job(jobs: Sequence[Job]) -> Job | None:
    return next((j for j in jobs if j.state in (JobState.QUEUED, JobState.RUNNING)), None)


def plan(db: Database, settings: PlannerSettings | None = None, *, tiles: Iterable[str] | None = None) -> Plan:
    """Queue the work the database calls for (idempotent: a second call queues nothing new).

    Parameters
    ----------
    db : Database
    settings : PlannerSettings, optional
    tiles : iterable of str, optional
        Only these tiles (default: every tile with products).

    Returns
    -------
    Plan
        The jobs queued, re-queued (late products) and whose mode changed.
    """
    s = settings or PlannerSettings()
    out = Plan()
    with db.session() as sess:
        q = select(Product).where(Product.state.in_(SERIES_STATES))
        if tiles is not None:
            q = q.where(Product.tile.in_(list(tiles)))
        products = list(sess.scalars(q))
        if not products:
            return out
        by_tile: dict[str, list[Product]] = defaultdict(list)
        for p in products:
            by_tile[p.tile].append(p)
        jobs_by_product: dict[int, list[Job]] = defaultdict(list)
        ids = [p.id for p in products]
        for chunk in range(0, len(ids), 500):
            for j in sess.scalars(select(Job).where(Job.product_id.in_(ids[chunk : chunk + 500])).order_by(Job.id)):
                jobs_by_product[j.product_id].append(j)
        for tile in sorted(by_tile):
            _plan_tile(sess, tile, series_of(by_tile[tile]), jobs_by_product, s, out)
    for pj in out.requeued:
        log.info("T%s %s: remade after an earlier date changed (%s)", pj.tile, pj.product, pj.reason)
    return out


def _plan_tile(
    sess: Session,
    tile: str,
    series: list[Product],
    jobs_by_product: dict[int, list[Job]],
    s: PlannerSettings,
    out: Plan,
) -> None:
    touched = False
    # time after which a date's job must have started for its input composite to be current
    chain_time: datetime | None = None  # None: nothing earlier in the chain
    pending_before = False  # an earlier member of the chain is not done yet
    now = utcnow()
    far_future = now + timedelta(days=36500)
    for i, p in enumerate(series):
        if i > 0 and _gap_days(series[i - 1].sensing_time, p.sensing_time) > s.reinit_gap_days:
            chain_time, pending_before = None, False  # re-INIT: no dependence on earlier dates
        jobs = jobs_by_product.get(p.id, [])
        mode = mode_for(series, i, s)
        active = _active_job(jobs)
        reason = ""
        enqueue = False
        if p.state == ProductState.DISCOVERED:
            enqueue, reason = True, "new product"
        elif p.state == ProductState.DONE and active is None:
            last = _last_done_job(jobs)
            started = last.started_at if last is not None else None
            if pending_before:
                enqueue, reason = True, "an earlier date of the tile is being (re)processed"
            elif chain_time is not None and (started is None or started < chain_time):
                enqueue, reason = True, "an earlier date was processed after this one"
        elif p.state in (ProductState.QUEUED, ProductState.RUNNING) and active is None:
            enqueue, reason = True, "no active job (repaired)"
        if enqueue:
            job = Job(
                product_id=p.id,
                tile=p.tile,
                sensing_time=p.sensing_time,
                mode=mode,
                max_attempts=s.max_attempts,
            )
            sess.add(job)
            requeue = p.state == ProductState.DONE
            p.state = ProductState.QUEUED
            sess.flush()
            jobs_by_product[p.id].append(job)
            pj = PlannedJob(job.id, p.id, p.name, tile, p.sensing_time, mode, reason)
            (out.requeued if requeue else out.queued).append(pj)
            touched = True
            active = job
        elif active is not None and active.state == JobState.QUEUED and active.mode != mode:
            active.mode = mode
            out.mode_changed.append(PlannedJob(active.id, p.id, p.name, tile, p.sensing_time, mode, "series changed"))
            touched = True
        # what the next date depends on
        if p.state in _PENDING or active is not None:
            pending_before = True
            chain_time = far_future
        else:
            last = _last_done_job(jobs)
            chain_time = (last.finished_at or last.started_at) if last is not None else chain_time
    if touched:
        out.tiles.append(tile)
