"""Helpers of the production tests: a site over real SAFE products, and the exact-resume checks."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from l2a.config import Settings, load_config

SITE = """\
[[sites]]
name = "slovenia"
tiles = ["33TVL"]

[[sites]]
name = "toulouse"
tiles = ["31TCJ"]

[cluster]
kind = "local"
n_workers = 2
dashboard_address = ":0"

[processing]
retry_backoff_s = {backoff}
max_attempts = {attempts}

[dem]
{dem}sea_level_fallback = true
"""


def make_site(root: Path, products: Iterable[Path], *, dem: Path | None = None, backoff: float = 0.2,
              attempts: int = 3) -> Settings:
    """A site folder ``root`` with ``products`` copied into its inbox; returns its settings."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for p in products:
        shutil.copytree(p, inbox / p.name, symlinks=True)
    text = SITE.format(backoff=backoff, attempts=attempts, dem=f'source = "{dem}"\n' if dem else "")
    (root / "site.toml").write_text(text)
    return load_config(root / "site.toml")


def fast_ingest() -> Any:
    """Ingest settings for tests: products just copied count as complete at once."""
    from l2a.production.inbox import InboxSettings
    from l2a.production.ingest import IngestSettings

    return IngestSettings(inbox=InboxSettings(settle_age_s=0.0, stable_interval_s=0.0))


def check_exactly_once(settings: Settings, expected: int) -> dict[str, Any]:
    """Every registered product done exactly once: one product folder, one catalog item whose
    checksums match the files, one done job, no half-written folder anywhere."""
    from sqlalchemy import func, select

    from l2a.catalog.static import StaticCatalog
    from l2a.production.db import Database
    from l2a.production.models import Job, JobState, Product, ProductState, PublishedItem

    db = Database(settings.db_url)
    with db.session(readonly=True) as s:
        states = dict(s.execute(select(Product.state, func.count()).group_by(Product.state)).all())
        done_jobs = dict(s.execute(select(Job.product_id, func.count()).where(Job.state == JobState.DONE).group_by(Job.product_id)).all())
        active = s.scalar(select(func.count()).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING])))
        published = list(s.scalars(select(PublishedItem)))
    db.dispose()
    assert states == {ProductState.DONE: expected}, states
    assert len(done_jobs) == expected and set(done_jobs.values()) == {1}, done_jobs
    assert active == 0
    folders = sorted(p for p in Path(settings.products).iterdir())
    assert all(not p.name.startswith(".") for p in folders), f"left-overs: {folders}"
    assert len(folders) == expected
    cat = StaticCatalog(settings.catalog)
    ids = cat.item_ids(settings.processing.collection)
    assert sorted(ids) == sorted(p.name for p in folders)
    assert len(ids) == len(set(ids)) == expected
    for item_id in ids:
        assert cat.verify(item_id, settings.processing.collection) == [], item_id
    assert sorted(p.item_id for p in published) == sorted(ids)
    assert not list(Path(settings.composites).glob("*/.composite-*"))
    return {"ids": ids, "folders": folders}
