"""Cluster profiles: dask-jobqueue job scripts (golden files), joining schedulers, local clusters."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import dask
import pytest

from l2a.cluster import connect, job_script, jobqueue_defaults
from l2a.config import ClusterSettings
from l2a.errors import InputError

GOLDEN = Path(__file__).with_name("golden")


#: Tests never touch the network: the throw-away schedulers listen on the loopback.
LOOPBACK = {"scheduler_options": {"host": "127.0.0.1", "dashboard_address": ":0"}}


def _normalise(script: str) -> str:
    """Replace what depends on the machine and the run: the interpreter and the scheduler address."""
    script = script.replace(sys.executable, "PYTHON")
    return re.sub(r"tcp://[0-9.]+:\d+", "tcp://SCHEDULER", script).strip() + "\n"


@pytest.mark.parametrize("profile", ["slurm", "pbs"])
def test_job_script_matches_golden_file(profile: str) -> None:
    # the golden files were reviewed by hand: one job of 4 cores / 16 GiB running 2 workers of
    # 2 threads, 2 h walltime, workers retired before it (--lifetime)
    script = _normalise(job_script(profile, **LOOPBACK))
    expected = (GOLDEN / f"jobqueue_{profile}.sh").read_text()
    assert script == expected


def test_user_configuration_wins_over_l2a_defaults() -> None:
    with dask.config.set({"jobqueue.slurm.queue": "bigmem", "jobqueue.slurm.memory": "64GiB", "jobqueue.slurm.cores": 8}):
        script = _normalise(job_script("slurm", **LOOPBACK))
    assert "#SBATCH -p bigmem" in script
    assert "#SBATCH --mem=64G" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "--nthreads 4" in script  # 8 cores over 2 worker processes


def test_defaults_file_is_valid_and_complete() -> None:
    d = jobqueue_defaults()
    for system in ("slurm", "pbs"):
        prof = d["jobqueue"][system]
        assert prof["cores"] % prof["processes"] == 0
        assert "--lifetime" in prof["worker-extra-args"]


def test_unknown_batch_system_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="batch system"):
        job_script("kubernetes")


def test_join_scheduler_by_address_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0", host="127.0.0.1", protocol="tcp://") as cluster:
        addr = cluster.scheduler_address
        with connect(scheduler=addr) as h:
            assert h.kind == "scheduler" and h.cluster is None
            assert h.client.submit(sum, [1, 2]).result() == 3
            assert h.nthreads() == 1
        sf = tmp_path / "scheduler.json"
        sf.write_text(json.dumps({"address": addr, "type": "Scheduler"}))
        with connect(ClusterSettings(kind="scheduler_file", scheduler_file=sf)) as h:
            assert h.kind == "scheduler_file"
            assert h.scheduler_address == addr
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", addr)
        with connect(ClusterSettings()) as h:
            assert h.kind == "scheduler" and h.scheduler_address == addr
    # the cluster we joined is still ours to close: joining never closes it (checked above by reuse)


def test_missing_scheduler_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="scheduler file not found"):
        connect(scheduler_file=tmp_path / "nope.json")


def test_local_cluster_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with connect(ClusterSettings(n_workers=2, dashboard_address=":0"), processes=False) as h:
        assert h.kind == "local"
        assert h.nthreads() == 2
        assert h.dashboard_link and h.dashboard_link.startswith("http")
