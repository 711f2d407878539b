"""The ``l2a`` command line: it parses, calls the library, and presents.

Sub-commands import their libraries lazily so that ``l2a --version`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from l2a import __version__
from l2a.errors import L2AError

app = typer.Typer(
    name="l2a",
    help="Sentinel-2 Level-2A ground segment: L1C in, MUSCATE L2A products and STAC out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dem_app = typer.Typer(help="Digital elevation model preparation.", no_args_is_help=True)
app.add_typer(dem_app, name="dem")

console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"l2a {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """l2a command line."""


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


@app.command()
def info(
    product: Annotated[
        str, typer.Argument(help="SAFE folder or zip, STAC item JSON, or scene:NAME")
    ],
    tile: Annotated[
        str | None, typer.Option(help="Tile id to pick in an old multi-tile product")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
) -> None:
    """Print the parsed metadata of an L1C product."""
    from l2a.io import open_l1c
    from l2a.io.describe import metadata_summary, render_summary

    try:
        summary = metadata_summary(open_l1c(product, tile=tile).metadata)
    except L2AError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        render_summary(summary, console)


@dem_app.command("prepare")
def dem_prepare(
    tile: Annotated[str, typer.Option(help="Sentinel-2 tile id, e.g. T31TCJ or 31TCJ")],
    source: Annotated[
        Path, typer.Option(help="DEM GeoTIFF/VRT, or a folder of tiles (e.g. Copernicus DEM COGs)")
    ],
    out: Annotated[Path, typer.Option(help="Output folder")],
    coarse: Annotated[int, typer.Option(help="Coarse resolution in metres")] = 240,
    sea_level_fallback: Annotated[
        bool, typer.Option(help="Fill missing DEM coverage with 0 m (flagged) instead of failing")
    ] = False,
) -> None:
    """Write elevation, slope and aspect GeoTIFFs on a tile's 10 m, 20 m and coarse grids."""
    from l2a.dem import prepare_tile

    try:
        written = prepare_tile(
            tile, source, out, coarse_resolution=coarse, sea_level_fallback=sea_level_fallback
        )
    except L2AError as exc:
        _fail(exc)
        return
    for path in written:
        console.print(str(path))


@app.command()
def init(
    site_dir: Annotated[Path, typer.Argument(help="Folder of the new site (created if missing)")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing site.toml")] = False,
) -> None:
    """Write a commented example site configuration (site.toml) and the site's folders."""
    from l2a.config import init_site

    try:
        path = init_site(site_dir, overwrite=force)
    except L2AError as exc:
        _fail(exc)
        return
    console.print(
        f"wrote {path}\nedit it, drop L1C products into {path.parent / 'inbox'}, then: l2a run --config {path}"
    )


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Working folder (default: in the user cache)")
    ] = None,
) -> None:
    """Run the main job: a demo site over the sample data, processed end to end."""
    from l2a.demo import run_demo

    try:
        code = run_demo(workdir=workdir, console=console)
    except L2AError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Site configuration (site.toml) or its folder")
]
SchedulerOpt = Annotated[
    str | None, typer.Option("--scheduler", help="Join a running dask scheduler, tcp://host:8786")
]
SchedulerFileOpt = Annotated[
    Path | None, typer.Option("--scheduler-file", help="Join the scheduler of this scheduler file")
]
JobqueueOpt = Annotated[
    str | None,
    typer.Option(
        "--jobqueue", help="Start workers as batch jobs: a dask-jobqueue profile (slurm, pbs)"
    ),
]


@app.command()
def ingest(config: ConfigOpt) -> None:
    """Search the catalog sources, download, scan the inbox and register products (no processing)."""
    from l2a.production import commands

    try:
        code = commands.ingest(config, console=console)
    except L2AError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


@app.command()
def run(
    config: ConfigOpt,
    scheduler: SchedulerOpt = None,
    scheduler_file: SchedulerFileOpt = None,
    jobqueue: JobqueueOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Ingest what is pending, process it, publish it, then exit (exit code 1: some failed; 3: output problem)."""
    from l2a.production import commands

    try:
        code = commands.run(
            config,
            scheduler=scheduler,
            scheduler_file=scheduler_file,
            jobqueue=jobqueue,
            console=console,
            progress=progress,
        )
    except L2AError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


@app.command()
def watch(
    config: ConfigOpt,
    scheduler: SchedulerOpt = None,
    scheduler_file: SchedulerFileOpt = None,
    jobqueue: JobqueueOpt = None,
) -> None:
    """Run forever: scan the inbox and catalogs, process, publish (Ctrl-C stops cleanly)."""
    from l2a.production import commands

    try:
        code = commands.watch(
            config,
            scheduler=scheduler,
            scheduler_file=scheduler_file,
            jobqueue=jobqueue,
            console=console,
        )
    except L2AError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


@app.command()
def status(config: ConfigOpt) -> None:
    """Tables of sites, products and jobs, with the reasons of failures."""
    from l2a.production import commands

    try:
        commands.status(config, console=console)
    except L2AError as exc:
        _fail(exc)


@app.command("job-script")
def job_script_cmd(
    profile: Annotated[str, typer.Argument(help="dask-jobqueue profile: slurm, pbs, …")],
) -> None:
    """Print the batch script that `--jobqueue PROFILE` would submit (nothing is submitted)."""
    from l2a.cluster import job_script

    try:
        typer.echo(job_script(profile))
    except L2AError as exc:
        _fail(exc)


@app.command()
def dashboard(
    config: ConfigOpt = Path("."),
    port: Annotated[int, typer.Option(help="TCP port (0: any free port)")] = 5006,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: every interface)")
    ] = None,
    show: Annotated[bool, typer.Option(help="Open a browser")] = False,
    download_url: Annotated[
        str | None, typer.Option(help="Base URL of a running `l2a serve` (counted downloads)")
    ] = None,
    refresh: Annotated[float, typer.Option(help="Seconds between automatic refreshes")] = 10.0,
    basic_auth: Annotated[
        str | None,
        typer.Option(help="Password, or a file of user:password lines (needs --cookie-secret)"),
    ] = None,
    cookie_secret: Annotated[
        str | None, typer.Option(help="Secret signing the login cookie")
    ] = None,
    allow_origin: Annotated[
        list[str] | None, typer.Option(help="Host[:port] browsers may connect from (repeatable)")
    ] = None,
) -> None:
    """Serve the production dashboard (Status, Sites, Statistics) of a site; Ctrl-C stops."""
    try:
        from dashboards.app import serve_dashboard
    except ImportError as exc:
        _fail(RuntimeError(f"{exc}; install the dashboard extra: pip install -e '.[dashboard]'"))
        return
    try:
        console.print(f"dashboard on http://{host or 'localhost'}:{port}/   Ctrl-C stops")
        kwargs: dict[str, Any] = {"websocket_origin": allow_origin} if allow_origin else {}
        serve_dashboard(
            config,
            port,
            address=host,
            show=show,
            download_url=download_url,
            refresh_s=refresh,
            basic_auth=basic_auth,
            cookie_secret=cookie_secret,
            **kwargs,
        )
    except L2AError as exc:
        _fail(exc)


@app.command()
def report(
    site: Annotated[str, typer.Argument(help="Site name of the configuration")],
    start: Annotated[str | None, typer.Option(help="First acquisition date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last acquisition date, YYYY-MM-DD")] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder (HTML, executed notebook, CSV, PNG)")
    ] = Path("report"),
    config: ConfigOpt = Path("."),
) -> None:
    """Run the site report notebook with papermill and save it as HTML."""
    from l2a.report import run_report

    try:
        res = run_report(site, start, end, out, config)
    except L2AError as exc:
        _fail(exc)
        return
    console.print(f"report: {res.html}\ntables and figures: {res.folder}")


@app.command()
def serve(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="Site configuration file (site.toml) or its folder"),
    ] = Path("."),
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Serve the site's catalog: STAC API, resto search.json and product downloads (counted)."""
    from l2a.catalog.server import ServeSettings
    from l2a.catalog.server import serve as run_server
    from l2a.config import load_config

    try:
        settings = ServeSettings.from_settings(load_config(config))
        console.print(
            f"catalog {settings.catalog}, products {settings.products}\n"
            f"STAC API  http://{host}:{port}/   (pystac_client.Client.open(...))\n"
            f"resto     http://{host}:{port}/resto/api/collections/<collection>/search.json\n"
            f"download  http://{host}:{port}/download/<item id>   Ctrl-C stops"
        )
        run_server(settings, host=host, port=port)
    except L2AError as exc:
        _fail(exc)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
