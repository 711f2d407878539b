"""Runner on dask-distributed over real data: parallel tiles, worker loss, retries, failures, disk full."""

from __future__ import annotations

import errno
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prod_helpers import check_exactly_once, fast_ingest, make_site
from sqlalchemy import select

from l2a.cluster import connect
from l2a.production import runner as runner_mod
from l2a.production.db import Database
from l2a.production.faults import ENV_KILL_AT, ENV_KILL_STATE
from l2a.production.models import JobMode, JobState, ProductState, Run
from l2a.production.runner import Runner, RunnerSettings

pytestmark = pytest.mark.sample_data


@pytest.fixture(scope="module")
def slovenia(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> list[Path]:
    from l2a.testing.series import slovenia_safe_series

    return slovenia_safe_series(tmp_path_factory.mktemp("l1c"))


@pytest.fixture(scope="module")
def toulouse(sample_path: Callable[[str], Path]) -> list[Path]:
    return sorted(sample_path("alcd_toulouse_T31TCJ/safe").glob("*.SAFE"))


def test_local_cluster_two_tiles_and_a_lost_worker(
    tmp_path: Path, slovenia: list[Path], toulouse: list[Path], sample_path: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_site(tmp_path, [*slovenia, *toulouse], dem=sample_path("slovenia_T33_summer2015/DEM.tif"))
    # the first worker process that starts a job dies (kill -9) before doing anything
    state = tmp_path / "killed.txt"
    monkeypatch.setenv(ENV_KILL_AT, "process:1")
    monkeypatch.setenv(ENV_KILL_STATE, str(state))
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with connect(settings.cluster) as handle:
        assert handle.nthreads() == 2
        link = handle.dashboard_link
        summary = Runner(settings, handle, progress=False, ingest=fast_ingest()).run_once()
    assert state.exists(), "the fault was not injected"
    assert summary.ok and not summary.failed, summary.line()
    assert len(summary.done) == 7
    check_exactly_once(settings, 7)
    db = Database(settings.db_url)
    jobs = db.jobs()
    modes = {(j.tile, j.sensing_time.date().isoformat()): j.mode for j in jobs}
    assert modes[("33TVL", "2015-07-11")] == JobMode.BACKWARD
    assert modes[("33TVL", "2015-09-09")] == JobMode.NOMINAL
    # the two tiles ran side by side: a Toulouse date started before the last Slovenia one ended
    tvl = [j for j in jobs if j.tile == "33TVL"]
    tcj = [j for j in jobs if j.tile == "31TCJ"]
    assert min(j.started_at for j in tcj) < max(j.finished_at for j in tvl)
    # each date of a tile started after the previous one finished (the composite travels)
    for series in (tvl, tcj):
        for a, b in itertools.pairwise(series):
            assert b.started_at >= a.finished_at
    # every date has its composite, recorded
    assert all(db.latest_composite(j.tile, None) is not None for j in jobs)
    # a second run does nothing
    again = Runner(settings, None, progress=False, ingest=fast_ingest()).run_once()
    assert again.done == [] and again.ingest is not None and again.ingest.known == 7
    # both runs are recorded, ended; the first with the dashboard link its cluster reported
    with db.session(readonly=True) as s:
        runs = list(s.scalars(select(Run).order_by(Run.id)))
    assert [(r.command, r.cluster) for r in runs] == [("run", "local"), ("run", "in-process")]
    assert link and runs[0].dashboard_link == link and runs[1].dashboard_link is None
    assert runs[0].scheduler and runs[0].scheduler.startswith(("tcp://", "inproc://"))
    assert all(r.finished_at is not None and r.finished_at >= r.started_at for r in runs)
    assert db.active_runs(120.0) == []


def _corrupt(safe: Path) -> None:
    band = next(safe.glob("GRANULE/*/IMG_DATA/*_B02.jp2"))
    data = band.read_bytes()
    band.write_bytes(data[: len(data) // 3])  # truncated transfer


def test_retries_backoff_and_failures_do_not_block_other_tiles(
    tmp_path: Path, slovenia: list[Path], toulouse: list[Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_site(tmp_path, [*slovenia, *toulouse], backoff=0.3, attempts=2)
    bad = tmp_path / "inbox" / slovenia[1].name
    _corrupt(bad)  # 2015-07-31: passes ingest (complete layout), fails when read
    real = runner_mod.execute
    log = tmp_path / "calls"  # tasks are serialised to the workers: count calls in files
    log.mkdir()

    def flaky(spec: runner_mod.JobSpec) -> Any:
        with open(log / spec.product, "a") as fh:
            fh.write(f"{time.monotonic()}\n")
        n = len((log / spec.product).read_text().split())
        if spec.product.startswith("S2A_MSIL1C_20240120"):
            raise RuntimeError("NFS hiccup")  # never succeeds
        if spec.product.startswith("S2A_MSIL1C_20150711") and n == 1:
            raise ConnectionResetError("transient")  # succeeds at the second attempt
        return real(spec)

    monkeypatch.setattr(runner_mod, "execute", flaky)
    with connect(settings.cluster, processes=False) as handle:
        summary = Runner(settings, handle, progress=False, ingest=fast_ingest()).run_once()
    db = Database(settings.db_url)
    by_name = {p.name: p for p in db.find_products()}
    states = {n[11:19]: p.state for n, p in by_name.items()}
    assert states == {
        "20150711": ProductState.DONE, "20150731": ProductState.FAILED, "20150820": ProductState.DONE,
        "20150830": ProductState.DONE, "20150909": ProductState.DONE,
        "20240120": ProductState.FAILED, "20240305": ProductState.DONE,
    }
    # bounded retries with exponential backoff: 2 attempts, the second >= backoff after the first
    t = [float(x) for x in next(log.glob("S2A_MSIL1C_20240120*")).read_text().split()]
    assert len(t) == 2 and t[1] - t[0] >= 0.3
    failed = {j.product.name[11:19]: j for j in db.jobs(state=JobState.FAILED)}
    assert failed["20240120"].attempts == 2 and "NFS hiccup" in (failed["20240120"].error or "")
    # the corrupt product: failed at once (no retry), with its reason, moved aside
    assert failed["20150731"].attempts == 1
    assert failed["20150731"].product.error.startswith("bad input")
    assert not bad.exists() and (tmp_path / "inbox" / "_rejected" / bad.name).is_dir()
    assert (tmp_path / "inbox" / "_rejected" / f"{bad.name}.reason.txt").is_file()
    # later dates of the tile went on from the last good composite
    done = {j.product.name[11:19]: j for j in db.jobs(state=JobState.DONE)}
    assert done["20150820"].mode == JobMode.NOMINAL
    assert {n for n, _ in summary.failed} == {by_name[n].name for n in by_name if n[11:19] in ("20150731", "20240120")}


def test_disk_full_stops_cleanly(tmp_path: Path, slovenia: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_site(tmp_path, slovenia[:2])
    import l2a.io.muscate as muscate

    real = muscate.write_cogs

    def full(jobs: Any, settings: Any = None, **kw: Any) -> Any:
        first = jobs[0]
        Path(first.path).write_bytes(b"\0" * 1024)  # something was written before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device", str(first.path))

    monkeypatch.setattr(muscate, "write_cogs", full)
    summary = Runner(settings, None, progress=False, ingest=fast_ingest(), options=RunnerSettings()).run_once()
    assert not summary.ok and "No space left" in (summary.stopped or "")
    assert list(Path(settings.products).iterdir()) == []  # nothing half-written, no temp folder
    db = Database(settings.db_url)
    jobs = db.jobs()
    assert [j.state for j in jobs] == [JobState.QUEUED, JobState.QUEUED]
    assert jobs[0].attempts == 0  # an output problem is not the product's fault
    # fixed: the next run does everything
    monkeypatch.setattr(muscate, "write_cogs", real)
    summary = Runner(settings, None, progress=False, ingest=fast_ingest()).run_once()
    assert summary.ok and len(summary.done) == 2
    check_exactly_once(settings, 2)


def test_late_product_remakes_later_dates_and_replaces_them(tmp_path: Path, slovenia: list[Path]) -> None:
    import shutil

    from l2a.catalog.static import StaticCatalog
    from l2a.masks import Composite

    settings = make_site(tmp_path, [slovenia[0], slovenia[3]])
    first = Runner(settings, None, progress=False, ingest=fast_ingest()).run_once()
    assert len(first.done) == 2
    cat = StaticCatalog(settings.catalog)
    later_id = next(i for i in cat.item_ids(settings.processing.collection) if "20150830" in i)
    old_item = cat.get_item(later_id, settings.processing.collection)
    # 2015-07-31 arrives late, between the two processed dates
    shutil.copytree(slovenia[1], tmp_path / "inbox" / slovenia[1].name)
    second = Runner(settings, None, progress=False, ingest=fast_ingest()).run_once()
    assert second.plan is not None and len(second.plan.queued) == 1 and len(second.plan.requeued) == 1
    assert [n[11:19] for n in second.done] == ["20150731", "20150830"]  # the late date, then the remake
    new_item = cat.get_item(later_id, settings.processing.collection)
    assert new_item.properties["processing:datetime"] > old_item.properties["processing:datetime"]
    assert cat.verify(later_id, settings.processing.collection) == []  # the replaced files match
    # the remade date's composite now descends from the late one (3 dates since INIT)
    db = Database(settings.db_url)
    row = db.latest_composite("33TVL")
    assert row is not None and Composite.load(row.path).n_dates == 3
    assert len(list(Path(settings.products).iterdir())) == 3  # replaced, not duplicated
    assert not any(p.name.startswith(".") for p in Path(settings.products).iterdir())
