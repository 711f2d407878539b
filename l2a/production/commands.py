"""Bodies of the production commands of the CLI: ``l2a run``, ``l2a watch``, ``l2a status``.

Each function takes plain arguments, prints on a :class:`rich.console.Console`, and returns an
exit code (or a renderable), so that :mod:`l2a.cli` stays a thin typer layer and the
functions can be called from Python and tests.

Exit codes: 0 all good; 1 some products failed; 3 the run stopped on an output problem
(disk full, permission denied); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from l2a.config import Settings
    from l2a.production.runner import RunSummary

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OUTPUT", "ingest", "run", "status", "status_tables", "watch"]

EXIT_FAILED = 1
EXIT_OUTPUT = 3
EXIT_INTERRUPTED = 130


def _settings(config: str | Path | Settings) -> Settings:
    from l2a.config import Settings, load_config

    return config if isinstance(config, Settings) else load_config(config)


def _exit_code(summary: RunSummary) -> int:
    if summary.stopped:
        return EXIT_OUTPUT
    return EXIT_FAILED if summary.failed else 0


def print_summary(summary: RunSummary, console: Console) -> None:
    """The outcome of a run, in a few lines."""
    if summary.ingest is not None:
        console.print(f"ingest: {summary.ingest.summary()}")
        for path, reason in summary.ingest.rejected:
            console.print(f"  [red]rejected[/] {Path(path).name}: {reason}")
    if summary.plan is not None and summary.plan.n_jobs:
        console.print(f"plan: {summary.plan}")
    for name, reason in summary.failed:
        console.print(f"  [red]failed[/] {name}: {reason}")
    colour = "red" if summary.stopped else ("yellow" if summary.failed else "green")
    console.print(f"[{colour}]run: {summary.line()}[/]")


def ingest(config: str | Path | Settings, *, console: Console | None = None) -> int:
    """``l2a ingest``: search the catalog sources, download, scan the inbox, register; no processing.

    Returns
    -------
    int
        0, or :data:`EXIT_FAILED` when a product was rejected or a source failed.
    """
    from l2a.production.db import Database
    from l2a.production.ingest import Ingestor

    console = console or Console()
    settings = _settings(config)
    db = Database(settings.db_url)
    db.upgrade()
    report = Ingestor(settings, db).run_once(wait=True)
    console.print(f"ingest: {report.summary()}")
    for path, reason in report.rejected:
        console.print(f"  [red]rejected[/] {Path(path).name}: {reason}")
    for error in report.errors:
        console.print(f"  [red]error[/] {error}")
    return EXIT_FAILED if (report.rejected or report.errors) else 0


def run(
    config: str | Path | Settings,
    *,
    scheduler: str | None = None,
    scheduler_file: str | Path | None = None,
    jobqueue: str | None = None,
    console: Console | None = None,
    progress: bool = True,
    processes: bool = True,
    command: str = "run",
) -> int:
    """``l2a run``: ingest what is pending, process it, publish it, exit.

    Parameters
    ----------
    config : path or Settings
        The site configuration (``site.toml``) or its folder.
    scheduler, scheduler_file, jobqueue : optional
        Where to compute instead of the configured cluster (:func:`l2a.cluster.connect`).
    console : Console, optional
    progress : bool
        Show the progress bar.
    processes : bool
        Local cluster: worker processes (default) or threads.
    command : str
        What the run is recorded as in the database (``run``; ``demo`` from ``l2a demo``).

    Returns
    -------
    int
        Exit code (module docstring).
    """
    from l2a.cluster import connect
    from l2a.production.runner import Runner

    console = console or Console()
    settings = _settings(config)
    with connect(settings.cluster, scheduler=scheduler, scheduler_file=scheduler_file, jobqueue=jobqueue, processes=processes) as handle:
        if handle.dashboard_link:
            console.print(f"dask dashboard: {handle.dashboard_link}")
        runner = Runner(settings, handle, console=console, progress=progress)
        try:
            summary = runner.run_once(command=command)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: running jobs were put back in the queue[/]")
            return EXIT_INTERRUPTED
    print_summary(summary, console)
    return _exit_code(summary)


def watch(
    config: str | Path | Settings,
    *,
    scheduler: str | None = None,
    scheduler_file: str | Path | None = None,
    jobqueue: str | None = None,
    console: Console | None = None,
    stop: threading.Event | None = None,
    processes: bool = True,
) -> int:
    """``l2a watch``: scan, process and publish until Ctrl-C (or ``stop`` is set).

    Ctrl-C (SIGINT) or SIGTERM stop it cleanly: no new job starts, running jobs go back to the
    queue, the cluster is closed.
    """
    from l2a.cluster import connect
    from l2a.production.runner import Runner

    console = console or Console()
    settings = _settings(config)
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def _stop(signum: int, _frame: Any) -> None:
            console.print("[yellow]stopping…[/]")
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _stop)
    try:
        with connect(settings.cluster, scheduler=scheduler, scheduler_file=scheduler_file, jobqueue=jobqueue, processes=processes) as handle:
            if handle.dashboard_link:
                console.print(f"dask dashboard: {handle.dashboard_link}")
            console.print(f"watching {settings.inbox} every {settings.poll_interval_s:g} s (Ctrl-C stops)")
            runner = Runner(settings, handle, console=console, progress=False)
            stopped: list[str] = []

            def report(summary: RunSummary) -> None:
                print_summary(summary, console)
                if summary.stopped:
                    stopped.append(summary.stopped)

            runner.watch(stop, on_summary=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped")
    return EXIT_OUTPUT if stopped else 0


def status_tables(config: str | Path | Settings, *, failures: int = 20) -> Group:
    """``l2a status``: runs in progress (with their dask dashboard), products per
    site/tile/state, jobs per tile/mode/state, recent failures."""
    from sqlalchemy import select

    from l2a.production.db import Database
    from l2a.production.models import Job, JobState, Product, ProductState
    from l2a.production.runner import RunnerSettings

    settings = _settings(config)
    db = Database(settings.db_url)
    db.upgrade()
    counts = db.status_counts()
    states = [s for s in ProductState if any(c.state == s for c in counts)]
    prod = Table(title="products", caption=settings.db_url.split("?")[0])
    prod.add_column("site")
    prod.add_column("tile")
    for st in states:
        prod.add_column(st.value, justify="right")
    rows: dict[tuple[str, str], dict[ProductState, int]] = {}
    for c in counts:
        rows.setdefault((c.site or "-", c.tile), {})[c.state] = c.number
    for (site, tile), by in sorted(rows.items()):
        prod.add_row(site, tile, *[str(by.get(st, "")) for st in states])

    jobs = Table(title="jobs")
    for col in ("tile", "mode", "state", "number"):
        jobs.add_column(col, justify="right" if col == "number" else "left")
    for jc in db.job_counts():
        jobs.add_row(jc.tile, jc.mode.value, jc.state.value, str(jc.number))

    fail = Table(title="failures and warnings")
    for col in ("product", "state", "attempts", "reason"):
        fail.add_column(col)
    with db.session(readonly=True) as s:
        bad = list(
            s.scalars(
                select(Product)
                .where(Product.state.in_([ProductState.FAILED, ProductState.IGNORED]))
                .order_by(Product.updated_at.desc())
                .limit(failures)
            )
        )
        retrying = list(
            s.scalars(
                select(Job)
                .where(Job.state == JobState.QUEUED, Job.error.is_not(None))
                .order_by(Job.id.desc())
                .limit(failures)
            )
        )
        for p in bad:
            fail.add_row(p.name, p.state.value, "", p.error or "")
        for j in retrying:
            fail.add_row(f"job {j.id} T{j.tile} {j.sensing_time:%Y-%m-%d}", "retrying", str(j.attempts), j.error or "")
    live = db.active_runs(RunnerSettings().stale_after_s)
    db.dispose()
    runs = Text()
    for r in live:
        runs.append(f"l2a {r.command} in progress on {r.runner} since {r.started_at:%Y-%m-%d %H:%M} UTC "
                    f"({r.cluster} cluster" + (f", dask dashboard {r.dashboard_link}" if r.dashboard_link else "") + ")\n")
    parts: list[Any] = [runs] if live else []
    parts += [prod, jobs]
    if fail.row_count:
        parts.append(fail)
    return Group(*parts)


def status(config: str | Path | Settings, *, console: Console | None = None) -> int:
    """Print :func:`status_tables`."""
    console = console or Console()
    console.print(status_tables(config))
    return 0


logging.getLogger(__name__).addHandler(logging.NullHandler())
