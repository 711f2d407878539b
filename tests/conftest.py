"""Shared fixtures.

Tests that need the real sample data use the ``sample_data`` fixture (or
``sample_path("sub/dir")``). Where the data are missing they *fail* under CI
(``CI`` or ``L2A_REQUIRE_SAMPLE_DATA`` set) and skip with a clear reason otherwise.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from l2a.errors import MissingDataError
from l2a.paths import aux_dir, sample_data_dir


def _require() -> bool:
    return bool(os.environ.get("L2A_REQUIRE_SAMPLE_DATA") or os.environ.get("CI"))


def _missing(what: Path) -> None:
    msg = (
        f"sample data not found at {what}: set L2A_SAMPLE_DATA to the folder of the "
        "shared Sentinel-2 sample data (default ../shared/data beside the checkout)"
    )
    if _require():
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test (or one of its fixtures) stopped by :class:`l2a.errors.MissingDataError` (sample
    data or auxiliary tables absent, e.g. fixtures that build SAFE products from the sample
    series) skips with that reason on a user's machine, like the ``sample_data`` fixture; under
    CI it stays a failure."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if call.excinfo is not None and call.excinfo.errisinstance(MissingDataError) and not _require():
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {call.excinfo.value}")


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """Root of the real sample data."""
    root = sample_data_dir()
    if not root.is_dir():
        _missing(root)
    return root


@pytest.fixture(scope="session")
def sample_path(sample_data: Path) -> Callable[[str], Path]:
    """``sample_path("slovenia_T33_summer2015")`` -> the path, or fail/skip if absent."""

    def get(rel: str) -> Path:
        p = sample_data / rel
        if not p.exists():
            _missing(p)
        return p

    return get


@pytest.fixture(scope="session")
def aux_data() -> Path:
    """Folder of the auxiliary radiometric tables."""
    p = aux_dir()
    if not p.is_dir():
        _missing(p)
    return p


@pytest.fixture(scope="session")
def demo_site(sample_path: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``site.toml`` of the ``l2a demo`` site, processed from the real sample data.

    One demo folder is shared by the xdist workers (the base temp folder's parent) and guarded
    by a file lock: the first worker processes it (about 20 s), the others then find nothing
    left to do, since the demo does no work twice.
    """
    import fcntl
    import io

    from rich.console import Console

    from l2a.demo import run_demo

    for sub in ("slovenia_T33_summer2015", "alcd_toulouse_T31TCJ", "s2cloudless_betsiboka"):
        sample_path(sub)
    root = tmp_path_factory.getbasetemp().parent / "l2a-demo-site"
    root.mkdir(exist_ok=True)
    with (root.parent / "l2a-demo-site.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = io.StringIO()
        code = run_demo(root, Console(file=log, width=120), progress=False, processes=False)
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert code == 0, log.getvalue()
    return root / "site.toml"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Block connections to anything but loopback (tests never touch the network)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ) and self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access blocked in tests: {address!r}")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
