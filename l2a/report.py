"""``l2a report``: run the site report notebook with papermill and save it as HTML.

The notebook (``notebooks/site_report.ipynb``) holds no processing logic: it reads the status
database and the STAC catalog through the dashboard's queries and draws the Statistics page's
figures. :func:`run_report` executes it with the site, the period and the output folder as
parameters, then exports the executed notebook to HTML (code cells hidden)::

    l2a report toulouse --start 2024-01-01 --end 2024-06-30 --out reports/toulouse --config site.toml

The output folder receives ``site_report.ipynb`` (executed), ``site_report.html`` and the CSV
tables and PNG figures the notebook writes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from l2a.errors import InputError

__all__ = ["ReportResult", "default_notebook", "run_report"]

#: Notebook file name of the site report, in the repository's ``notebooks`` folder.
REPORT_NOTEBOOK: Final[str] = "site_report.ipynb"
#: Seconds a notebook cell may run before papermill stops it.
CELL_TIMEOUT_S: Final[int] = 600


@dataclass(frozen=True)
class ReportResult:
    """Files written by :func:`run_report`."""

    notebook: Path  #: the executed notebook
    html: Path  #: the HTML report
    folder: Path  #: the output folder (also holds the CSV tables and PNG figures)


def default_notebook() -> Path:
    """``notebooks/site_report.ipynb`` of the source tree (env ``L2A_NOTEBOOKS`` overrides the folder)."""
    folder = os.environ.get("L2A_NOTEBOOKS")
    base = Path(folder) if folder else Path(__file__).resolve().parents[1] / "notebooks"
    return base / REPORT_NOTEBOOK


def _iso(d: date | str | None, name: str) -> str:
    if d is None or d == "":
        return ""
    if isinstance(d, date):
        return d.isoformat()
    try:
        return date.fromisoformat(d).isoformat()
    except ValueError:
        raise InputError(name, f"{d!r} is not a date; use YYYY-MM-DD") from None


def run_report(
    site: str,
    start: date | str | None,
    end: date | str | None,
    out: str | Path,
    config: str | Path,
    *,
    notebook: str | Path | None = None,
    kernel: str = "python3",
    timeout_s: int = CELL_TIMEOUT_S,
) -> ReportResult:
    """Execute the site report for ``site`` between ``start`` and ``end`` into ``out``.

    Parameters
    ----------
    site : str
        Site name of the configuration.
    start, end : date or str or None
        Acquisition dates (inclusive, ``YYYY-MM-DD``); None: no limit.
    out : path
        Output folder (created).
    config : path
        The site's ``site.toml`` (or its folder).
    notebook : path, optional
        Report notebook (default :func:`default_notebook`).
    kernel : str
        Jupyter kernel to run it with (the project's environment must have it).
    timeout_s : int
        Seconds a cell may run.

    Raises
    ------
    InputError
        Missing notebook, configuration or bad dates.
    papermill.PapermillExecutionError
        When a cell fails (the executed notebook in ``out`` shows where).
    """
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    from l2a.config import find_config

    nb_path = Path(notebook) if notebook else default_notebook()
    if not nb_path.is_file():
        raise InputError(nb_path, "report notebook not found; pass --notebook or set L2A_NOTEBOOKS")
    cfg = find_config(config).resolve()
    params = {"config": str(cfg), "site": site, "start": _iso(start, "--start"),
              "end": _iso(end, "--end")}
    if params["start"] and params["end"] and params["end"] < params["start"]:
        raise InputError("--end", f"end {params['end']} is before start {params['start']}")
    folder = Path(out).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    params["output_folder"] = str(folder)
    executed = folder / nb_path.name
    papermill.execute_notebook(str(nb_path), str(executed), parameters=params, kernel_name=kernel,
                               cwd=str(folder), execution_timeout=timeout_s, progress_bar=False)
    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": f"{site} report"}})
    html = folder / (nb_path.stem + ".html")
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, html)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ReportResult(executed, html, folder)
