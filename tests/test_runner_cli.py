"""The production commands: ``l2a run``/``watch``/``status`` bodies and ``l2a demo``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prod_helpers import check_exactly_once, make_site
from rich.console import Console

from l2a.production import commands

pytestmark = pytest.mark.sample_data


@pytest.fixture(scope="module")
def toulouse(sample_path: Callable[[str], Path]) -> list[Path]:
    return sorted(sample_path("alcd_toulouse_T31TCJ/safe").glob("*.SAFE"))


def _console() -> Console:
    return Console(record=True, width=200, force_terminal=False)


def test_watch_picks_up_drops_and_stops_cleanly(tmp_path: Path, toulouse: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    settings = make_site(tmp_path, toulouse[:1])
    settings = settings.model_copy(update={"poll_interval_s": 0.2})
    stop = threading.Event()
    console = _console()
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(commands.watch(settings, console=console, stop=stop, processes=False)))
    t.start()
    try:
        from l2a.production.db import Database

        db = Database(settings.db_url)

        def done() -> int:
            return sum(p.state.value == "done" for p in db.find_products()) if Path(settings.db_url[10:]).exists() else 0

        deadline = time.monotonic() + 60
        while done() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done() == 1
        # the watch is a run in progress, with the dashboard link of its local cluster
        live = db.active_runs(120.0)
        assert [(r.command, r.cluster) for r in live] == [("watch", "local")]
        assert live[0].dashboard_link and live[0].dashboard_link.startswith("http")
        shown = _console()
        commands.status(settings, console=shown)
        text = shown.export_text()
        assert f"l2a watch in progress on {live[0].runner}" in text and live[0].dashboard_link in text
        # a second product dropped while watching (written elsewhere, renamed in: complete)
        import shutil

        shutil.copytree(toulouse[1], tmp_path / f"{toulouse[1].name}.part")
        (tmp_path / f"{toulouse[1].name}.part").rename(tmp_path / "inbox" / toulouse[1].name)
        deadline = time.monotonic() + 60
        while done() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done() == 2
    finally:
        stop.set()
        t.join(timeout=60)
    assert not t.is_alive() and codes == [0]
    assert "stopped" in console.export_text()
    check_exactly_once(settings, 2)
    last = db.last_run()
    assert last is not None and last.command == "watch" and last.finished_at is not None
    assert db.active_runs(120.0) == []


def test_status_table_and_run_exit_codes(tmp_path: Path, toulouse: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    settings = make_site(tmp_path, toulouse)
    bad = tmp_path / "inbox" / toulouse[0].name
    (next(bad.glob("GRANULE/*/MTD_TL.xml"))).write_text("<not xml")
    console = _console()
    code = commands.run(settings, console=console, progress=False, processes=False)
    out = console.export_text()
    assert code == 0  # ingest rejected the broken product: no processing failure
    assert "rejected" in out and "1 done" in out
    console = _console()
    commands.status(settings, console=console)
    text = console.export_text()
    assert "31TCJ" in text and "done" in text and "failed" in text  # the rejected product and its reason
    assert "MTD_TL" in text or "XML" in text or "xml" in text


def test_demo_without_sample_data_says_where_to_get_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from l2a.demo import run_demo

    monkeypatch.setenv("L2A_SAMPLE_DATA", str(tmp_path / "nothing"))
    console = _console()
    assert run_demo(tmp_path / "demo", console) == 0
    text = console.export_text()
    assert "No sample data" in text and "stac-client search" in text
    assert not (tmp_path / "demo").exists()


def test_demo_end_to_end_twice(tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from l2a.config import load_config
    from l2a.demo import run_demo

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    console = _console()
    assert run_demo(tmp_path, console, progress=False, processes=False) == 0
    text = console.export_text()
    assert "8 done, 0 failed" in text
    for folder in ("inbox", "products", "catalog"):
        assert (tmp_path / folder).is_dir()
    assert (tmp_path / "catalog" / "catalog.json").is_file() and (tmp_path / "l2a.db").is_file()
    settings = load_config(tmp_path / "site.toml")  # the documented format, valid
    assert [s.name for s in settings.sites] == ["slovenia", "toulouse", "betsiboka"]
    check_exactly_once(settings, 8)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "products").iterdir()}
    console = _console()
    assert run_demo(tmp_path, console, progress=False, processes=False) == 0
    assert "0 done, 0 failed" in console.export_text()  # no work done twice
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "products").iterdir()} == before
