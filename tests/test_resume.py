"""Exact resume: the runner is killed (SIGKILL) at several points of a real run and restarted.

One site (the five Slovenia SAFE products) is run by a child process that kills itself at a
named point (``L2A_TEST_KILL_AT``, :mod:`l2a.production.faults`): during ingest, while a date
is being processed, half-way through packaging, and during publishing (item written but not
recorded; recorded but the job not marked done). Each restart resumes from what the previous
one left. At the end every product is done exactly once, none is duplicated, none is
half-written, and every file matches the checksum of its STAC item.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prod_helpers import check_exactly_once, make_site

from l2a.production.db import Database
from l2a.production.faults import ENV_KILL_AT
from l2a.production.models import JobState, ProductState

pytestmark = pytest.mark.sample_data

#: The runner of the child process: the site's configuration, a cluster of threads (so that
#: SIGKILL takes the workers with it, as a crash of the machine would), products counted as
#: complete at once.
CHILD = """
import sys
from l2a.cluster import connect
from l2a.config import load_config
from l2a.production.inbox import InboxSettings
from l2a.production.ingest import IngestSettings
from l2a.production.runner import Runner

settings = load_config(sys.argv[1])
ingest = IngestSettings(inbox=InboxSettings(settle_age_s=0.0, stable_interval_s=0.0))
with connect(settings.cluster, processes=False) as handle:
    summary = Runner(settings, handle, progress=False, ingest=ingest).run_once()
print(summary.line())
sys.exit(0 if summary.ok and not summary.failed else 1)
"""


def _run(config: Path, kill_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L2A_TEST_KILL", "DASK_SCHEDULER"))}
    if kill_at:
        env[ENV_KILL_AT] = kill_at
    return subprocess.run([sys.executable, "-c", CHILD, str(config)], env=env, capture_output=True, text=True, timeout=120)


def _killed(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == -signal.SIGKILL


def test_kill_at_every_stage_then_resume(tmp_path: Path, sample_data: Path) -> None:
    from l2a.testing.series import slovenia_safe_series

    safes = slovenia_safe_series(tmp_path / "l1c")
    settings = make_site(tmp_path / "site", safes)
    config = tmp_path / "site" / "site.toml"
    db = Database(settings.db_url)

    # 1. during ingest, after the third product is registered
    p = _run(config, "ingest:3")
    assert _killed(p), p.stderr[-2000:]
    assert len(db.find_products()) == 3

    # 2. while the second date is processed (the first was done and published)
    p = _run(config, "process:2")
    assert _killed(p), p.stderr[-2000:]
    assert len(db.find_products()) == 5  # ingest finished on restart
    running = db.jobs(state=JobState.RUNNING)
    assert len(running) == 1 and len(db.jobs(state=JobState.DONE)) == 1

    # 3. half-way through packaging: rasters written in the hidden temporary folder
    p = _run(config, "package:rasters:2")
    assert _killed(p), p.stderr[-2000:]
    partial = [x for x in Path(settings.products).iterdir() if x.name.endswith(".partial")]
    assert len(partial) == 1 and any(partial[0].rglob("*.tif"))

    # 4. publishing: the item is in the catalog, the database does not know it yet
    p = _run(config, "publish:item:1")
    assert _killed(p), p.stderr[-2000:]
    assert not any(x.name.endswith(".partial") for x in Path(settings.products).iterdir())
    assert len(db.jobs(state=JobState.RUNNING)) == 1

    # 5. publishing: recorded, but the job not yet marked done
    p = _run(config, "publish:recorded:1")
    assert _killed(p), p.stderr[-2000:]

    # 6. a clean run finishes the work
    p = _run(config, None)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    out = check_exactly_once(settings, 5)
    # resumed jobs kept their identity: one job per product, composites chained in date order
    jobs = db.jobs()
    assert len(jobs) == 5 and all(j.state == JobState.DONE for j in jobs)
    assert all(pr.state == ProductState.DONE for pr in db.find_products())
    starts = [j.started_at for j in jobs]
    assert starts == sorted(starts)
    # items are the products' own: the checksums of every asset were verified above
    item = json.loads(next(Path(settings.catalog).rglob(f"{out['ids'][0]}.json")).read_text())
    assert item["properties"]["l2a:product_name"] == out["ids"][0]

    # 7. a further run does nothing
    p = _run(config, None)
    assert p.returncode == 0 and "0 done" in p.stdout
    check_exactly_once(settings, 5)
