"""Where the dask work runs: an embedded LocalCluster, an existing scheduler, or a batch system.

:func:`connect` returns a :class:`ClusterHandle` (a ``distributed.Client`` and, when we
started it, the cluster) from the site's :class:`~l2a.config.ClusterSettings` or from
command-line overrides:

``local`` (default)
    An embedded ``LocalCluster``: by default as many single-threaded worker processes as
    cores (2 x 1 on 2 cores), dashboard on ``:8787`` (another free port when taken). Scripts
    that start one need the ``if __name__ == "__main__":`` guard (worker processes are
    spawned).
``scheduler``
    Join a running scheduler: ``tcp://host:8786`` (``--scheduler``). The environment variable
    ``DASK_SCHEDULER_ADDRESS`` does the same when no kind is configured.
``scheduler_file``
    Join the scheduler described by a JSON file written by ``dask scheduler
    --scheduler-file`` (``--scheduler-file``), the usual way on HPC systems.
``jobqueue``
    Start a dask-jobqueue cluster (``--jobqueue slurm`` or ``pbs``, or any profile name
    ``<system>[-suffix]`` of dask's ``jobqueue`` configuration): workers are batch jobs. The
    profile's values come from dask's configuration (``~/.config/dask/jobqueue.yaml``,
    ``DASK_JOBQUEUE__SLURM__QUEUE=…``), over l2a's defaults (``l2a/jobqueue.yaml``: 4 cores,
    16 GiB, 2 worker processes a job, 2 h walltime, workers retired before the walltime), over
    dask-jobqueue's own. :func:`job_script` shows the batch script that would be submitted.

Requires ``distributed`` (and ``dask-jobqueue`` for batch systems: ``pip install l2a[hpc]``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2a.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

    from l2a.config import ClusterSettings

__all__ = [
    "JOBQUEUE_SYSTEMS",
    "ClusterHandle",
    "connect",
    "job_script",
    "jobqueue_cluster",
    "jobqueue_defaults",
]

log = logging.getLogger(__name__)

#: Batch systems of dask-jobqueue, by profile prefix.
JOBQUEUE_SYSTEMS: dict[str, str] = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "oar": "OARCluster",
    "moab": "MoabCluster",
    "htcondor": "HTCondorCluster",
}


@dataclass
class ClusterHandle:
    """A connected client, and the cluster when this process started it.

    Attributes
    ----------
    client : distributed.Client
    cluster : object or None
        The ``LocalCluster`` / ``JobQueueCluster`` we own (closed by :meth:`close`).
    kind : str
        ``local``, ``scheduler``, ``scheduler_file`` or ``jobqueue``.
    """

    client: Client
    cluster: Any
    kind: str

    @property
    def dashboard_link(self) -> str | None:
        """URL of the dask dashboard (None when the scheduler has none)."""
        try:
            link = self.client.dashboard_link
        except Exception:  # pragma: no cover - no bokeh / no dashboard
            return None
        return str(link) if link else None

    @property
    def scheduler_address(self) -> str:
        return str(self.client.scheduler_info().get("address", "")) or str(getattr(self.client.scheduler, "address", ""))

    def nthreads(self) -> int:
        """Threads over all workers now connected (0 while a batch cluster is starting)."""
        try:
            return int(sum(self.client.nthreads().values()))
        except Exception:
            return 0

    def close(self) -> None:
        """Close the client, and the cluster if we started it."""
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=10)

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def jobqueue_defaults() -> dict[str, Any]:
    """l2a's defaults of the dask-jobqueue profiles (``l2a/jobqueue.yaml``)."""
    import yaml

    text = resources.files("l2a").joinpath("jobqueue.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


_DEFAULTS_LOADED = False


def _load_jobqueue_config() -> None:
    """Merge l2a's profile defaults into dask's configuration (once; user settings win)."""
    global _DEFAULTS_LOADED
    if _DEFAULTS_LOADED:
        return
    import dask

    try:
        import dask_jobqueue  # noqa: F401  (registers dask-jobqueue's own defaults first)
    except ImportError as exc:
        raise InputError("jobqueue", "dask-jobqueue is not installed: pip install 'l2a[hpc]'") from exc
    dask.config.update_defaults(jobqueue_defaults())
    _DEFAULTS_LOADED = True


def _jobqueue_class(profile: str) -> Any:
    system = profile.split("-", 1)[0].split("_", 1)[0].lower()
    if system not in JOBQUEUE_SYSTEMS:
        raise InputError(
            profile,
            f"unknown batch system; a profile name starts with one of {', '.join(JOBQUEUE_SYSTEMS)}",
        )
    _load_jobqueue_config()
    import dask_jobqueue

    return getattr(dask_jobqueue, JOBQUEUE_SYSTEMS[system])


def jobqueue_cluster(profile: str, **overrides: Any) -> Any:
    """A dask-jobqueue cluster for ``profile`` (``slurm``, ``pbs``, ``slurm-bigmem`` …).

    Parameters
    ----------
    profile : str
        Name of the section of dask's ``jobqueue`` configuration; its first word picks the
        batch system. A profile without its own section uses the system's.
    **overrides
        Keyword arguments of the dask-jobqueue class (``queue=``, ``account=``, ``cores=`` …).
    """
    import dask

    cls = _jobqueue_class(profile)
    name = profile if dask.config.get(f"jobqueue.{profile}", None) is not None else profile.split("-", 1)[0].lower()
    overrides.setdefault("scheduler_options", {"dashboard_address": ":0"})
    return cls(config_name=name, **overrides)


def job_script(profile: str, **overrides: Any) -> str:
    """The batch script a ``profile`` cluster submits for one job (nothing is submitted)."""
    cluster = jobqueue_cluster(profile, **overrides)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def connect(
    settings: ClusterSettings | None = None,
    *,
    scheduler: str | None = None,
    scheduler_file: str | Path | None = None,
    jobqueue: str | None = None,
    processes: bool = True,
    n_workers: int | None = None,
) -> ClusterHandle:
    """Connect to (or start) the cluster of a site.

    Command-line overrides (``scheduler``, ``scheduler_file``, ``jobqueue``) win over the
    configuration; with neither, ``DASK_SCHEDULER_ADDRESS`` joins that scheduler, else an
    embedded LocalCluster starts.

    Parameters
    ----------
    settings : ClusterSettings, optional
    scheduler : str, optional
        ``tcp://host:port`` of a running scheduler.
    scheduler_file : path, optional
        Scheduler file of a running scheduler.
    jobqueue : str, optional
        dask-jobqueue profile (``slurm``, ``pbs`` …).
    processes : bool
        Local cluster only: worker processes (default) or threads of this process (tests,
        debugging).
    n_workers : int, optional
        Local workers (default: settings, else one per core) or batch jobs to scale to.
    """
    from distributed import Client

    from l2a.config import ClusterSettings

    s = settings or ClusterSettings()
    kind = s.kind
    if scheduler:
        kind = "scheduler"
    elif scheduler_file:
        kind = "scheduler_file"
    elif jobqueue:
        kind = "jobqueue"
    elif kind == "local" and os.environ.get("DASK_SCHEDULER_ADDRESS"):
        kind, scheduler = "scheduler", os.environ["DASK_SCHEDULER_ADDRESS"]
    workers = n_workers or s.n_workers
    if kind == "scheduler":
        address = scheduler or s.address
        try:
            return ClusterHandle(Client(address, timeout="20s"), None, kind)
        except OSError as exc:
            raise InputError(str(address), f"cannot reach the dask scheduler ({exc}); is `dask scheduler` running there?") from None
    if kind == "scheduler_file":
        path = Path(scheduler_file or s.scheduler_file or "")
        if not path.is_file():
            raise InputError(path, "scheduler file not found; start one with `dask scheduler --scheduler-file FILE`")
        try:
            return ClusterHandle(Client(scheduler_file=str(path), timeout="20s"), None, kind)
        except OSError as exc:
            raise InputError(path, f"cannot reach the scheduler of this file ({exc})") from None
    if kind == "jobqueue":
        profile = jobqueue or s.jobqueue or "slurm"
        cluster = jobqueue_cluster(profile)
        if workers:
            cluster.scale(jobs=workers)
        else:
            cluster.adapt(minimum_jobs=1, maximum_jobs=16)
        return ClusterHandle(Client(cluster), cluster, kind)
    from distributed import LocalCluster

    n = workers or (os.cpu_count() or 1)
    dash = s.dashboard_address
    try:
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=s.threads_per_worker,
            processes=processes,
            memory_limit=s.memory_limit,
            dashboard_address=dash,
            host="127.0.0.1",
            protocol="tcp://",
        )
    except (OSError, ImportError):  # dashboard port in use, or no bokeh: no dashboard
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=s.threads_per_worker,
            processes=processes,
            memory_limit=s.memory_limit,
            dashboard_address=":0",
            host="127.0.0.1",
            protocol="tcp://",
        )
    return ClusterHandle(Client(cluster), cluster, "local")
