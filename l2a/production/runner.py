"""The runner: queued jobs -> dask workers -> verified, published products, resumable exactly.

One runner process (the *driver*) owns the status database and the catalog; dask workers
only compute. For each job, in this order:

1. **claim** it in the database (:meth:`Database.claim_next_job`: the first queued date of a
   tile with nothing running; tiles run in parallel, dates of a tile in order);
2. **process** it on a worker (:func:`execute` -> :func:`l2a.chain.process.process_date`):
   the product is built in a hidden temporary folder and renamed into place, the composite
   saved atomically;
3. **verify** the outputs: the STAC item is made and every file's size and SHA-256 checked
   against it (:func:`l2a.catalog.stac_item.verify_item`);
4. **publish** the item into the static catalog (atomically) and record it;
5. record the composite, and **mark the job done**.

Exact resume
    A crash (``kill -9``, reboot) at any point leaves: the job ``RUNNING`` in the database
    (requeued at the next start: at once when its runner process is gone from this host, else
    once its heartbeat is older than :attr:`RunnerSettings.stale_after_s`); maybe a hidden
    ``.partial`` folder (removed at the next start); maybe a complete product not yet
    published (remade identically and replaced atomically); maybe a published item whose job
    is not done (the same item is published again, replacing it). Products and items are keyed
    by their MUSCATE name, so nothing is ever duplicated, and nothing half-written is ever
    visible under a product's name. The test suite kills the runner at each of these points.

Failures
    - Bad input (:class:`~l2a.errors.InputError`: a corrupt product found at processing time):
      the job and product fail at once with the reason; an inbox product is moved to
      ``inbox/_rejected/`` with a ``.reason.txt``.
    - Missing data (:class:`~l2a.errors.MissingDataError`, e.g. DEM coverage with the
      fallback off): failed at once with the reason, nothing moved.
    - Output problems (disk full, permission denied, read-only file system): the run stops
      cleanly: the job goes back to the queue (no attempt counted), nothing half-written is
      left, the reason is printed; fix and run again.
    - Anything else (a worker lost, a transient I/O error): retried up to ``max_attempts``
      with exponential backoff (``retry_backoff_s`` x 2^(attempt-1)). A date that fails for
      good leaves its tile's series; later dates go on from the last good composite (see
      :mod:`l2a.production.planner`). Other tiles are never blocked.
    - A worker lost mid-task: dask re-runs the task on another worker; if dask gives up
      (``KilledWorker``) the job is retried as above. While a job runs, the driver heartbeats
      it every :attr:`RunnerSettings.heartbeat_s`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from l2a.chain.process import ChainSettings, DateResult
from l2a.errors import InputError, L2AError, MissingDataError
from l2a.production.db import Database
from l2a.production.faults import kill_point
from l2a.production.models import Composite, Job, JobMode, JobState, Product, ProductState, utcnow
from l2a.production.planner import SERIES_STATES, Plan, PlannerSettings, plan

if TYPE_CHECKING:
    from rich.console import Console

    from l2a.cluster import ClusterHandle
    from l2a.config import Settings
    from l2a.production.ingest import IngestReport, IngestSettings

__all__ = [
    "JobSpec",
    "OutputError",
    "RunSummary",
    "Runner",
    "RunnerSettings",
    "chain_settings",
    "execute",
    "publish_item",
    "runner_id",
]

log = logging.getLogger(__name__)

#: errno values that mean "the output cannot be written": stop, do not retry.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
#: The same, recognised in messages of libraries that lose the errno (GDAL).
OUTPUT_MESSAGES = ("No space left on device", "Disk quota exceeded", "Permission denied", "Read-only file system")


@dataclass(frozen=True)
class RunnerSettings:
    """How the driver runs jobs.

    Attributes
    ----------
    heartbeat_s : float
        Period (s) of the heartbeats of running jobs, and of the driver's checks.
    stale_after_s : float
        A running job whose heartbeat is older than this (s) was abandoned by a runner that
        died on another host (or hung): it is requeued.
    jobs_per_thread : int
        Jobs claimed per worker thread (1: a job is claimed when a thread can start it).
    max_retry_wait_s : float
        ``l2a run`` waits for jobs in retry backoff at most this long (s) before exiting
        (they stay queued for the next run).
    publish : bool
        Publish STAC items into the static catalog.
    """

    heartbeat_s: float = 5.0
    stale_after_s: float = 120.0
    jobs_per_thread: int = 1
    max_retry_wait_s: float = 900.0
    publish: bool = True


class OutputError(L2AError):
    """The output cannot be written (disk full, permission denied): the run stops."""


def runner_id() -> str:
    """``host:pid`` of this process (the ``worker`` of the jobs it claims)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def chain_settings(settings: Settings) -> ChainSettings:
    """The chain's settings from a site configuration."""
    from l2a.io.cog import CogSettings
    from l2a.io.muscate import PackageSettings
    from l2a.masks.settings import MaskSettings

    p = settings.processing
    masks = MaskSettings(
        coarse_resolution_m=float(p.coarse_resolution),
        reinit_gap_days=float(p.reinit_gap_days),
        backward_dates=int(p.backward_dates),
        max_cloud_percentage=float(p.max_cloud_cover),
    )
    return ChainSettings(
        masks=masks,
        package=PackageSettings(make_zip=bool(p.zip_output), cog_validation=p.cog_validation,
                                cog=CogSettings(level=int(p.compression_level))),
        max_cloud_cover=float(p.max_cloud_cover),
        sea_level_fallback=bool(settings.dem.sea_level_fallback),
    )


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run one job (picklable)."""

    job_id: int
    product_id: int
    product: str
    tile: str
    source: str
    mode: str
    composite_path: str | None
    backward_sources: tuple[str, ...]
    dem_source: str | None
    out_dir: str
    composite_dir: str
    chain: ChainSettings


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except Exception:
        return 1


def execute(spec: JobSpec) -> DateResult:
    """Run one job on a dask worker (or anywhere): :func:`~l2a.chain.process.process_date`."""
    from l2a.chain.process import process_date

    kill_point("process")
    threads = _worker_threads()
    # one worker thread = one core: GDAL must not start a thread per core in every worker
    package = replace(spec.chain.package, cog=replace(spec.chain.package.cog, num_threads=str(threads)))
    chain = replace(spec.chain, threads=threads, package=package)
    error: BaseException | None = None
    try:
        return process_date(
            spec.source,
            composite_path=spec.composite_path,
            dem_source=spec.dem_source,
            out_dir=spec.out_dir,
            settings=chain,
            composite_dir=spec.composite_dir,
            mode=spec.mode,
            backward_sources=spec.backward_sources,
            hook=kill_point,
        )
    except Exception as exc:
        error = exc
    # raised outside the handler, without its chain: the chained GDAL/rasterio exceptions do
    # not survive the trip back from a worker, and the error's type decides retry or not
    error.__context__ = error.__cause__ = None
    raise error


# --------------------------------------------------------------------------- summary


@dataclass
class RunSummary:
    """What a run did."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    retried: list[tuple[str, str]] = field(default_factory=list)
    requeued_at_start: int = 0
    cleaned: list[str] = field(default_factory=list)
    ingest: IngestReport | None = None
    plan: Plan | None = None
    stopped: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.stopped is None

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def line(self) -> str:
        parts = [f"{len(self.done)} done", f"{len(self.failed)} failed"]
        if self.retried:
            parts.append(f"{len(self.retried)} retried")
        if self.requeued_at_start:
            parts.append(f"{self.requeued_at_start} resumed after a crash")
        text = ", ".join(parts) + f" in {self.seconds:.1f} s"
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")


# --------------------------------------------------------------------------- the driver


def _is_output_error(exc: BaseException) -> bool:
    if isinstance(exc, L2AError):
        return isinstance(exc, OutputError)
    if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS:
        return True
    text = str(exc)
    return any(m in text for m in OUTPUT_MESSAGES)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Runner:
    """Ingest, plan, process and publish for one site configuration.

    Parameters
    ----------
    settings : Settings
        The site configuration.
    handle : ClusterHandle or None
        Where to compute (:func:`l2a.cluster.connect`); ``None`` runs jobs in this process,
        one at a time (debugging, benchmarks).
    db : Database, optional
        Default: ``Database(settings.db_url)``.
    console : rich.console.Console, optional
        Where progress and messages go.
    progress : bool
        Show a progress bar.
    options : RunnerSettings, optional
    ingest : IngestSettings, optional
        Ingest choices (validation tier, inbox stability rules).
    """

    def __init__(
        self,
        settings: Settings,
        handle: ClusterHandle | None,
        *,
        db: Database | None = None,
        console: Console | None = None,
        progress: bool = True,
        options: RunnerSettings | None = None,
        ingest: IngestSettings | None = None,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.db = db or Database(settings.db_url)
        self.console = console
        self.show_progress = progress
        self.options = options or RunnerSettings()
        self.planner = PlannerSettings.from_config(settings)
        self.chain = chain_settings(settings)
        self.worker = runner_id()
        self.ingest_settings = ingest
        self._ingestor: Any = None
        self._prepared = False

    # ---------------------------------------------------------------- messages
    def _say(self, text: str) -> None:
        log.info("%s", text)
        if self.console is not None:
            self.console.print(text)

    # ---------------------------------------------------------------- start-up
    def prepare(self, summary: RunSummary | None = None) -> RunSummary:
        """Migrate the database and recover from a crash (idempotent)."""
        from l2a.io.muscate import cleanup_partial

        summary = summary or RunSummary()
        t0 = time.perf_counter()
        self.db.upgrade()
        for folder in (self.settings.products, self.settings.catalog, self.settings.composites):
            Path(folder).mkdir(parents=True, exist_ok=True)
        summary.cleaned += [str(p) for p in cleanup_partial(self.settings.products)]
        for tmp in Path(self.settings.composites).glob("*/.composite-*.npz"):
            tmp.unlink(missing_ok=True)
            summary.cleaned.append(str(tmp))
        summary.requeued_at_start += self.recover()
        self._prepared = True
        summary.add_time("prepare", time.perf_counter() - t0)
        return summary

    def recover(self) -> int:
        """Requeue jobs left running by a runner that died (here at once, elsewhere when stale)."""
        host = socket.gethostname()
        dead: list[int] = []
        with self.db.session(readonly=True) as s:
            for job in s.scalars(select(Job).where(Job.state == JobState.RUNNING)):
                who = (job.worker or "").rsplit(":", 1)
                if len(who) == 2 and who[0] == host and who[1].isdigit():
                    pid = int(who[1])
                    if pid != os.getpid() and not _pid_alive(pid):
                        dead.append(job.id)
        n = self._requeue(dead, "its runner stopped (crash or kill); resumed", count_attempt=False)
        n += self.db.requeue_stale_jobs(self.options.stale_after_s)
        if n:
            self._say(f"resuming {n} job(s) left running by a stopped runner")
        return n

    def _requeue(self, job_ids: list[int], reason: str, *, count_attempt: bool) -> int:
        if not job_ids:
            return 0
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.id.in_(job_ids), Job.state == JobState.RUNNING)):
                job.state = JobState.QUEUED
                job.error = reason
                job.worker = None
                job.not_before = None
                if not count_attempt:
                    job.attempts = max(0, job.attempts - 1)
                s.execute(
                    update(Product)
                    .where(Product.id == job.product_id, Product.state == ProductState.RUNNING)
                    .values(state=ProductState.QUEUED)
                )
        return len(job_ids)

    # ---------------------------------------------------------------- ingest and plan
    def ingestor(self) -> Any:
        """The :class:`~l2a.production.ingest.Ingestor` of this site (with the kill points)."""
        if self._ingestor is None:
            from l2a.production.ingest import Ingestor

            class _Ingestor(Ingestor):
                def ingest_path(self, path: Path, report: Any = None) -> Any:
                    out = super().ingest_path(path, report)
                    kill_point("ingest")
                    return out

            self._ingestor = _Ingestor(self.settings, self.db, ingest=self.ingest_settings)
        return self._ingestor

    def ingest(self, *, wait: bool = True) -> IngestReport:
        """One ingest pass (catalog sources, then the inbox)."""
        report: IngestReport = self.ingestor().run_once(wait=wait)
        return report

    def plan(self) -> Plan:
        """One planning pass."""
        return plan(self.db, self.planner)

    # ---------------------------------------------------------------- job preparation
    def _spec(self, job: Job) -> JobSpec:
        product: Product = job.product
        source = product.local_path or product.source
        mode = job.mode.value
        composite: str | None = None
        backward: tuple[str, ...] = ()
        with self.db.session(readonly=True) as s:
            if job.mode == JobMode.NOMINAL:
                prev = s.scalar(
                    select(Product)
                    .where(
                        Product.tile == job.tile,
                        Product.sensing_time < job.sensing_time,
                        Product.state == ProductState.DONE,
                    )
                    .order_by(Product.sensing_time.desc(), Product.id.desc())
                    .limit(1)
                )
                if prev is not None:
                    row = s.scalar(
                        select(Composite).where(Composite.tile == job.tile, Composite.date == prev.sensing_time)
                    )
                    if row is not None and Path(row.path).is_file():
                        composite = row.path
            elif job.mode == JobMode.BACKWARD:
                later = s.scalars(
                    select(Product)
                    .where(
                        Product.tile == job.tile,
                        Product.sensing_time > job.sensing_time,
                        Product.state.in_(SERIES_STATES),
                    )
                    .order_by(Product.sensing_time, Product.id)
                    .limit(max(0, self.planner.backward_dates - 1))
                )
                backward = tuple((p.local_path or p.source) for p in later)
        return JobSpec(
            job_id=job.id,
            product_id=product.id,
            product=product.name,
            tile=job.tile,
            source=source,
            mode=mode,
            composite_path=composite,
            backward_sources=backward,
            dem_source=self.settings.dem.source,
            out_dir=str(self.settings.products),
            composite_dir=str(self.settings.composites),
            chain=self.chain,
        )

    # ---------------------------------------------------------------- completion
    def _item_settings(self) -> Any:
        from l2a.catalog.stac_item import ItemSettings

        return ItemSettings(collection=self.settings.processing.collection)

    def complete(self, job_id: int, spec: JobSpec, result: DateResult, summary: RunSummary) -> None:
        """Verify, publish, record and mark done (the order that makes resume exact)."""
        from l2a.catalog.stac_item import make_item, verify_item

        t0 = time.perf_counter()
        item = make_item(result.product, settings=self._item_settings())
        item.properties["l2a:dem_fallback_fraction"] = round(float(result.dem_fallback_fraction), 4)
        problems = verify_item(item, base=result.product.path)
        if problems:
            raise RuntimeError("output verification failed: " + "; ".join(problems[:5]))
        summary.add_time("verify", time.perf_counter() - t0)
        t0 = time.perf_counter()
        if self.options.publish:
            href, checksum = publish_item(self.settings, item)
            kill_point("publish:item")
            self.db.record_published(
                item.id, href, collection=item.collection_id or self.settings.processing.collection,
                checksum=checksum, product_id=spec.product_id,
            )
            kill_point("publish:recorded")
        summary.add_time("publish", time.perf_counter() - t0)
        t0 = time.perf_counter()
        self.db.finish_job(job_id, output_path=str(result.product.path), composite_path=str(result.composite_path))
        summary.add_time("database", time.perf_counter() - t0)
        summary.done.append(result.product.name)

    def fail(self, job_id: int, spec: JobSpec, exc: BaseException, summary: RunSummary) -> bool:
        """Record a failure; returns True when the run must stop (output problem)."""
        reason = _reason(exc)
        if _is_output_error(exc):
            self._requeue([job_id], f"output problem, run stopped: {reason}", count_attempt=False)
            summary.stopped = f"cannot write the output ({reason}); free space or fix permissions, then run again"
            return True
        if isinstance(exc, InputError | MissingDataError):
            self.db.fail_job(job_id, f"bad input: {reason}" if isinstance(exc, InputError) else reason, retry=False)
            summary.failed.append((spec.product, reason))
            if isinstance(exc, InputError):
                self._move_aside(spec, reason)
            return False
        job = self.db.fail_job(job_id, reason, retry=True, backoff_s=self.settings.processing.retry_backoff_s)
        if job.state == JobState.FAILED:
            summary.failed.append((spec.product, reason))
        else:
            summary.retried.append((spec.product, reason))
            log.warning("%s failed (attempt %d/%d), retried later: %s", spec.product, job.attempts, job.max_attempts, reason)
        return False

    def _move_aside(self, spec: JobSpec, reason: str) -> None:
        from l2a.production.inbox import InboxSettings, move_aside

        src = Path(spec.source)
        inbox = Path(self.settings.inbox).resolve()
        try:
            inside = src.exists() and src.resolve().parent == inbox
        except OSError:
            inside = False
        if inside:
            with contextlib.suppress(OSError):
                target = move_aside(src, inbox / InboxSettings().rejected_dir, reason)
                with self.db.session() as s:
                    s.execute(update(Product).where(Product.id == spec.product_id).values(local_path=str(target)))

    # ---------------------------------------------------------------- the loop
    def _capacity(self) -> int:
        n = self.handle.nthreads() if self.handle is not None else 1
        return max(1, n) * max(1, self.options.jobs_per_thread)

    def _next_wakeup(self) -> datetime | None:
        with self.db.session(readonly=True) as s:
            row = s.scalar(
                select(Job.not_before)
                .where(Job.state == JobState.QUEUED, Job.not_before.is_not(None))
                .order_by(Job.not_before)
                .limit(1)
            )
        return row

    def _queued(self) -> int:
        from sqlalchemy import func

        with self.db.session(readonly=True) as s:
            return int(s.scalar(select(func.count(Job.id)).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))) or 0)

    def process(self, summary: RunSummary | None = None, *, stop: threading.Event | None = None, wait_retries: bool = True) -> RunSummary:
        """Run queued jobs until none is runnable (retries in backoff are waited for when
        ``wait_retries``, up to :attr:`RunnerSettings.max_retry_wait_s`)."""
        summary = summary or RunSummary()
        stop = stop or threading.Event()
        t_start = time.perf_counter()
        inflight: dict[Any, tuple[int, JobSpec]] = {}
        total = self._queued()
        with self._progress(total) as advance:
            try:
                while True:
                    if summary.stopped or stop.is_set():
                        break
                    # claim and submit
                    while len(inflight) < self._capacity():
                        t0 = time.perf_counter()
                        job = self.db.claim_next_job(self.worker)
                        if job is None:
                            break
                        spec = self._spec(job)
                        summary.add_time("database", time.perf_counter() - t0)
                        fut = self._submit(spec)
                        inflight[fut] = (job.id, spec)
                    if not inflight:
                        wake = self._next_wakeup() if wait_retries else None
                        if wake is None:
                            break
                        delay = (wake - utcnow()).total_seconds()
                        if delay > self.options.max_retry_wait_s:
                            self._say(f"jobs wait for a retry at {wake:%Y-%m-%d %H:%M:%S} UTC; run again later")
                            break
                        stop.wait(max(0.05, min(delay, self.options.heartbeat_s)))
                        continue
                    finished = self._wait(list(inflight), self.options.heartbeat_s)
                    live = [jid for f, (jid, _) in inflight.items() if f not in finished]
                    for jid in live:
                        self.db.heartbeat(jid)
                    for fut in finished:
                        job_id, spec = inflight.pop(fut)
                        if self._handle(fut, job_id, spec, summary):
                            break
                        advance(1)
            except KeyboardInterrupt:
                summary.stopped = "interrupted (Ctrl-C); running jobs were put back in the queue"
                raise
            finally:
                if inflight:
                    for fut in inflight:
                        with contextlib.suppress(Exception):
                            fut.cancel()
                    self._requeue([jid for jid, _ in inflight.values()], "run stopped before this job ended; requeued", count_attempt=False)
                summary.seconds += time.perf_counter() - t_start
        return summary

    def _submit(self, spec: JobSpec) -> Any:
        if self.handle is None:
            from concurrent.futures import Future

            fut: Future[DateResult] = Future()
            try:
                fut.set_result(execute(spec))
            except Exception as exc:
                fut.set_exception(exc)
            return fut
        return self.handle.client.submit(execute, spec, key=f"l2a-job-{spec.job_id}-{time.time_ns()}", pure=False, retries=0)

    def _wait(self, futures: list[Any], timeout: float) -> set[Any]:
        if self.handle is None:
            return set(futures)
        from distributed import wait

        try:
            done, _ = wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def _handle(self, fut: Any, job_id: int, spec: JobSpec, summary: RunSummary) -> bool:
        try:
            result: DateResult = fut.result()
        except Exception as exc:
            return self.fail(job_id, spec, exc, summary)
        for k, v in result.timings.items():
            summary.add_time(f"chain:{k}", v)
        try:
            self.complete(job_id, spec, result, summary)
        except Exception as exc:
            return self.fail(job_id, spec, exc, summary)
        return False

    @contextlib.contextmanager
    def _progress(self, total: int) -> Iterator[Callable[[int], None]]:
        if not self.show_progress or self.console is None or total == 0:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("[bold]processing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=False,
        ) as bar:
            task = bar.add_task("jobs", total=total)

            def advance(n: int) -> None:
                bar.update(task, advance=n, total=max(total, self._queued() + int(bar.tasks[0].completed) + n))

            yield advance

    # ---------------------------------------------------------------- the run record
    @contextlib.contextmanager
    def recorded_run(self, command: str) -> Iterator[int]:
        """Record this run in the ``runs`` table while the block runs: who drives it, the
        cluster, and the dask dashboard link as the cluster reports it (which the dashboard
        app shows); a heartbeat every :attr:`RunnerSettings.heartbeat_s` from a background
        thread, and the end (also after an error; a killed run simply stops beating)."""
        h = self.handle
        kind = h.kind if h is not None else "in-process"
        scheduler = link = None
        if h is not None:
            with contextlib.suppress(Exception):  # a scheduler going away must not stop the run here
                scheduler = h.scheduler_address
            link = h.dashboard_link
        run_id = self.db.start_run(self.worker, command, kind, scheduler=scheduler, dashboard_link=link)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.options.heartbeat_s):
                try:
                    self.db.heartbeat_run(run_id)
                except Exception as exc:  # the database busy or away for a moment: next beat
                    log.debug("run heartbeat failed: %s", exc)

        beater = threading.Thread(target=beat, name=f"l2a-run-{run_id}-heartbeat", daemon=True)
        beater.start()
        try:
            yield run_id
        finally:
            done.set()
            beater.join()
            with contextlib.suppress(Exception):
                self.db.finish_run(run_id)

    # ---------------------------------------------------------------- everything
    def run_once(self, *, stop: threading.Event | None = None, wait: bool = True, command: str = "run") -> RunSummary:
        """Ingest what is pending, plan, process and publish until idle (``l2a run``)."""
        summary = RunSummary()
        t0 = time.perf_counter()
        self.prepare(summary)
        with self.recorded_run(command):
            t1 = time.perf_counter()
            summary.ingest = self.ingest(wait=wait)
            summary.add_time("ingest", time.perf_counter() - t1)
            t1 = time.perf_counter()
            summary.plan = self.plan()
            summary.add_time("plan", time.perf_counter() - t1)
            self.process(summary, stop=stop)
        summary.seconds = time.perf_counter() - t0
        return summary

    def watch(self, stop: threading.Event, *, on_summary: Callable[[RunSummary], None] | None = None) -> None:
        """Scan, plan, process and publish until ``stop`` is set (``l2a watch``)."""
        self.prepare()
        period = float(self.settings.poll_interval_s)
        with self.recorded_run("watch"):
            while not stop.is_set():
                summary = RunSummary()
                summary.ingest = self.ingest(wait=False)
                summary.plan = self.plan()
                self.db.requeue_stale_jobs(self.options.stale_after_s)
                self.process(summary, stop=stop, wait_retries=False)
                if on_summary and (summary.done or summary.failed or summary.retried or summary.stopped):
                    on_summary(summary)
                if summary.stopped:
                    break
                stop.wait(period)


def _reason(exc: BaseException) -> str:
    """An exception in plain words (one line)."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if name == "KilledWorker":
        return "the worker processing it died repeatedly (out of memory?)"
    if isinstance(exc, L2AError):
        return text
    return f"{name}: {text}" if text else name


# --------------------------------------------------------------------------- publishing


def publish_item(settings: Settings, item: Any) -> tuple[str, str]:
    """Add ``item`` to the site's static catalog (atomically); returns (item JSON path, its SHA-256)."""
    import hashlib

    from l2a.catalog.static import StaticCatalog

    if not item.collection_id:
        item.collection_id = settings.processing.collection
    path = StaticCatalog(settings.catalog).add_item(item)
    return str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()
