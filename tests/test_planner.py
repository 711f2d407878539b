"""Planner: date order per tile, INIT/NOMINAL/BACKWARD, re-INIT after gaps, late products."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from l2a.production.db import Database
from l2a.production.models import JobMode, JobState, ProductState
from l2a.production.planner import PlannerSettings, plan


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'l2a.db'}")
    d.upgrade()
    return d


def name(tile: str, day: date, baseline: str = "0510", gen: str = "125244") -> str:
    d = f"{day:%Y%m%d}"
    return f"S2A_MSIL1C_{d}T105341_N{baseline}_R051_T{tile}_{d}T{gen}.SAFE"


def register(db: Database, tile: str, *days: date) -> list[int]:
    ids = []
    for d in days:
        p, _ = db.register_product(name(tile, d), source=f"/inbox/{name(tile, d)}")
        ids.append(p.id)
    return ids


def run_all(db: Database) -> list[tuple[str, date, JobMode]]:
    """Process every runnable job the way the runner does (claim -> done), in claim order."""
    order = []
    while (job := db.claim_next_job("test:1")) is not None:
        order.append((job.tile, job.sensing_time.date(), job.mode))
        db.finish_job(job.id)
    return order


D0 = date(2024, 1, 1)


def days(*offsets: int) -> list[date]:
    return [D0 + timedelta(days=o) for o in offsets]


def test_modes_order_and_idempotence(db: Database) -> None:
    register(db, "31TCJ", *days(20, 0, 10, 100, 105))  # registered out of order; gap 10 -> 100
    register(db, "33TVL", *days(5))
    p = plan(db, PlannerSettings(reinit_gap_days=45, backward_dates=8))
    assert len(p.queued) == 6 and not p.requeued
    modes = {(j.tile, j.sensing_time.date()): j.mode for j in p.queued}
    tcj = [modes[("31TCJ", d)] for d in days(0, 10, 20, 100, 105)]
    assert tcj == [JobMode.BACKWARD, JobMode.NOMINAL, JobMode.NOMINAL, JobMode.BACKWARD, JobMode.NOMINAL]
    assert modes[("33TVL", days(5)[0])] == JobMode.INIT  # alone: nothing to go backward over
    assert plan(db).n_jobs == 0  # idempotent
    order = run_all(db)
    # dates of a tile in order; the other tile interleaves (it is never blocked by 31TCJ)
    tcj_order = [d for t, d, _ in order if t == "31TCJ"]
    assert tcj_order == sorted(tcj_order) and len(order) == 6


def test_backward_disabled_gives_init(db: Database) -> None:
    register(db, "31TCJ", *days(0, 5))
    p = plan(db, PlannerSettings(backward_dates=1))
    assert [j.mode for j in sorted(p.queued, key=lambda j: j.sensing_time)] == [JobMode.INIT, JobMode.NOMINAL]


def test_late_product_remakes_the_later_dates(db: Database) -> None:
    s = PlannerSettings(reinit_gap_days=45, backward_dates=8)
    register(db, "31TCJ", *days(0, 10, 20, 30, 200))  # 200: after a re-INIT gap
    register(db, "33TVL", *days(15))
    plan(db, s)
    run_all(db)
    assert plan(db, s).n_jobs == 0
    # a late delivery between day 10 and day 20
    register(db, "31TCJ", *days(12))
    p = plan(db, s)
    assert [j.sensing_time.date() for j in p.queued] == days(12)
    assert p.queued[0].mode == JobMode.NOMINAL
    # day 20 and 30 were made without it: remade; day 200 (after the gap) and 33TVL are not
    assert sorted(j.sensing_time.date() for j in p.requeued) == days(20, 30)
    assert all(j.mode == JobMode.NOMINAL for j in p.requeued)
    order = [d for _, d, _ in run_all(db)]
    assert order == days(12, 20, 30)  # the late date first, then the chain after it
    assert plan(db, s).n_jobs == 0  # the chain is consistent again


def test_late_product_before_the_first_date_changes_modes(db: Database) -> None:
    s = PlannerSettings(reinit_gap_days=45, backward_dates=8)
    register(db, "31TCJ", *days(10, 20))
    p1 = plan(db, s)
    assert {j.sensing_time.date(): j.mode for j in p1.queued}[days(10)[0]] == JobMode.BACKWARD
    register(db, "31TCJ", *days(0))  # arrives before anything ran
    p2 = plan(db, s)
    assert [(j.sensing_time.date(), j.mode) for j in p2.queued] == [(days(0)[0], JobMode.BACKWARD)]
    assert [(j.sensing_time.date(), j.mode) for j in p2.mode_changed] == [(days(10)[0], JobMode.NOMINAL)]


def test_failed_date_leaves_the_series_and_does_not_block(db: Database) -> None:
    s = PlannerSettings(max_attempts=1)
    register(db, "31TCJ", *days(0, 10, 20))
    plan(db, s)
    job = db.claim_next_job("t:1")
    assert job is not None
    db.finish_job(job.id)
    job = db.claim_next_job("t:1")
    assert job is not None and job.sensing_time.date() == days(10)[0]
    db.fail_job(job.id, "broken", retry=True)  # attempts exhausted: failed for good
    assert db.jobs(state=JobState.FAILED)[0].product.state == ProductState.FAILED
    order = run_all(db)
    assert [d for _, d, _ in order] == days(20)  # the next date goes on
    assert plan(db, s).n_jobs == 0
    # an operator puts the failed date back: the later date is remade after it
    failed = db.find_products(state=ProductState.FAILED)[0]
    db.set_product_state(failed.id, ProductState.DISCOVERED)
    p = plan(db, s)
    assert [j.sensing_time.date() for j in p.queued] == days(10)
    assert [j.sensing_time.date() for j in p.requeued] == days(20)


def test_newer_baseline_supersedes_and_remakes(db: Database) -> None:
    register(db, "31TCJ", *days(0, 10))
    plan(db)
    run_all(db)
    newer = name("31TCJ", days(0)[0], baseline="0511", gen="235959")
    prod, created = db.register_product(newer, source=f"/inbox/{newer}")
    assert created
    p = plan(db)
    assert [j.product for j in p.queued] == [prod.name]
    assert [j.sensing_time.date() for j in p.requeued] == days(10)


def test_thousand_products_plan_quickly(db: Database) -> None:
    import time

    for k, tile in enumerate(("31TCJ", "31TDH", "33TVL", "38LPH")):
        register(db, tile, *days(*range(k, 1000, 4)))
    t0 = time.perf_counter()
    p = plan(db)
    took = time.perf_counter() - t0
    assert p.n_jobs == 1000 and len(p.tiles) == 4
    assert took < 10.0, f"planning 1000 products took {took:.1f} s"


def test_gap_counted_in_whole_days_as_the_masks_do(db: Database) -> None:
    """Product-name times and tile sensing times differ by minutes: a 45-day limit counts whole
    days on both sides (l2a.masks.detect rounds the same way)."""
    s = PlannerSettings(reinit_gap_days=45, backward_dates=1)
    for tile, late in (("31TCJ", "104819"), ("31TCK", "110000"), ("31TCL", "104819")):
        first = f"S2A_MSIL1C_20240120T105341_N0510_R051_T{tile}_20240120T125244.SAFE"
        day2 = "20240305" if tile != "31TCL" else "20240306"
        second = f"S2B_MSIL1C_{day2}T{late}_N0510_R051_T{tile}_{day2}T125347.SAFE"
        for n in (first, second):
            db.register_product(n, source=f"/inbox/{n}")
    modes = {(j.tile, j.sensing_time.date()): j.mode for j in plan(db, s).queued}
    assert modes[("31TCJ", date(2024, 3, 5))] == JobMode.NOMINAL  # 45 days - 5 min
    assert modes[("31TCK", date(2024, 3, 5))] == JobMode.NOMINAL  # 45 days + 6 min
    assert modes[("31TCL", date(2024, 3, 6))] == JobMode.INIT  # 46 days - 5 min
