"""Fault injection for the exact-resume tests: kill this process at a named point.

``L2A_TEST_KILL_AT=<stage>:<n>`` makes the ``n``-th passage (1-based, counted in this
process) through a point named ``stage`` (or ``stage:<sub-stage>``) send ``SIGKILL`` to the
current process, as ``kill -9`` would. Points: ``ingest`` (after a product is registered),
``process`` (a date starts on a worker), ``masks``, ``correction``, ``package`` (with
sub-stages ``package:rasters``, ``package:metadata``, ``package:verified``), ``composite``,
``publish`` (with ``publish:item``: the STAC item is in the catalog but not in the database;
``publish:recorded``: recorded, job not yet done).

``L2A_TEST_KILL_STATE=<file>`` (optional) makes the kill happen once across processes: the
file is created just before the kill, and no point fires while it exists (a restarted worker
or runner then goes on).

Without ``L2A_TEST_KILL_AT`` every call is a cheap no-op.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

__all__ = ["ENV_KILL_AT", "ENV_KILL_STATE", "kill_point"]

ENV_KILL_AT = "L2A_TEST_KILL_AT"
ENV_KILL_STATE = "L2A_TEST_KILL_STATE"

_counts: dict[str, int] = {}
_lock = threading.Lock()


def kill_point(stage: str) -> None:
    """SIGKILL this process if ``L2A_TEST_KILL_AT`` names this passage of ``stage``."""
    spec = os.environ.get(ENV_KILL_AT)
    if not spec:
        return
    want, _, nth = spec.rpartition(":")
    if not want or not nth.isdigit():
        want, nth = spec, "1"
    if stage != want and not stage.startswith(want + ":"):
        return
    state = os.environ.get(ENV_KILL_STATE)
    if state and Path(state).exists():
        return
    with _lock:
        _counts[want] = _counts.get(want, 0) + 1
        if _counts[want] != int(nth):
            return
        if state:
            Path(state).write_text(f"killed at {stage} #{nth} in pid {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
