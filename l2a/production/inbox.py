"""The inbox: a folder where L1C products (SAFE folders or zips) are dropped.

What counts as a product
    Top-level entries named ``*.SAFE`` (folders) or ``*.zip`` (files). Names matching
    :data:`PARTIAL_PATTERNS` (``*.part``, ``*.tmp``, hidden ``.*`` …) are transfers in
    progress and are never looked at; other files are reported once as unknown. The folders
    ``_rejected/`` and ``_duplicates/`` hold what ingest moved aside.

When a product is complete
    A product is picked up only once it is complete: either a completion event arrived
    (inotify ``IN_CLOSE_WRITE`` on a zip, or a rename into its final name inside the inbox,
    which is how ``l2a`` itself and careful senders deliver: write ``x.zip.part``, rename to
    ``x.zip``), or two looks :attr:`InboxSettings.stable_interval_s` apart saw the same
    signature (file count, total size, newest mtime), or the newest mtime is older than
    :attr:`InboxSettings.settle_age_s` (products that sat there across a restart).

Events and the periodic scan
    :class:`InboxWatcher` uses watchdog: the inotify observer on local disks (events within
    milliseconds) and its ``PollingObserver`` on network file systems (NFS, CIFS, Lustre,
    GPFS …, where inotify misses changes made by other hosts): ``observer="auto"`` picks from
    the file system type in ``/proc/mounts``. Events only make ingest react quickly: the
    periodic scan, reconciled with the status database, remains the system of record (events
    are lost across restarts and on overflow).

Moving aside
    :func:`move_aside` moves a rejected or duplicate product into ``_rejected/`` (or
    ``_duplicates/``) with ``<name>.reason.txt`` beside it, saying why in plain words.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import queue
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "NETWORK_FILESYSTEMS",
    "PARTIAL_PATTERNS",
    "Entry",
    "InboxSettings",
    "InboxWatcher",
    "StabilityTracker",
    "is_network_filesystem",
    "list_entries",
    "move_aside",
    "read_entry",
]

log = logging.getLogger(__name__)

#: Names of transfers in progress (never picked up).
PARTIAL_PATTERNS: tuple[str, ...] = (
    "*.part",
    "*.tmp",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.filepart",
    ".*",
    "~*",
)

#: File system types (``/proc/mounts``) on which inotify misses other hosts' changes.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "lustre",
        "gpfs",
        "beegfs",
        "glusterfs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.s3fs",
        "fuse.rclone",
        "9p",
        "ceph",
        "fuse.ceph",
        "afs",
    }
)


@dataclass(frozen=True)
class InboxSettings:
    """How the inbox is watched."""

    #: Seconds between the two looks that must agree before a product counts as complete.
    stable_interval_s: float = 2.0
    #: A product whose newest file is older than this (s) is complete at the first look.
    settle_age_s: float = 120.0
    #: Names of transfers in progress, never picked up (shell patterns).
    partial_patterns: tuple[str, ...] = PARTIAL_PATTERNS
    #: Sub-folder receiving rejected products and their ``.reason.txt``.
    rejected_dir: str = "_rejected"
    #: Sub-folder receiving duplicate drops.
    duplicates_dir: str = "_duplicates"
    #: ``"auto"`` (polling on network file systems, inotify elsewhere), ``"inotify"``
    #: (watchdog's native observer) or ``"polling"``.
    observer: Literal["auto", "inotify", "polling"] = "auto"
    #: Period of watchdog's polling observer (s).
    polling_interval_s: float = 1.0


@dataclass(frozen=True)
class Entry:
    """A candidate product in the inbox.

    Attributes
    ----------
    path : Path
    kind : str
        ``"safe"`` (folder) or ``"zip"``.
    size : int
        Bytes (total of the files of a folder).
    nfiles : int
        Files (1 for a zip).
    mtime_ns : int
        Newest modification time (ns since the epoch).
    """

    path: Path
    kind: Literal["safe", "zip"]
    size: int
    nfiles: int
    mtime_ns: int

    @property
    def signature(self) -> tuple[int, int, int]:
        """What must not change between two looks."""
        return (self.size, self.nfiles, self.mtime_ns)

    @property
    def mtime(self) -> datetime:
        """Newest modification time (UTC)."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, UTC)


def is_partial(name: str, patterns: Iterable[str] = PARTIAL_PATTERNS) -> bool:
    """True if ``name`` is a transfer in progress."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def read_entry(path: Path) -> Entry | None:
    """The :class:`Entry` of a top-level inbox item, or None if it is not a product form
    (or vanished meanwhile)."""
    name = path.name
    try:
        st = path.stat()
    except OSError:
        return None
    if name.endswith(".SAFE") and path.is_dir():
        size, nfiles, newest = 0, 0, st.st_mtime_ns
        stack = [path]
        while stack:
            d = stack.pop()
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                            newest = max(newest, e.stat(follow_symlinks=False).st_mtime_ns)
                        else:
                            s = e.stat()
                            size += s.st_size
                            nfiles += 1
                            newest = max(newest, s.st_mtime_ns)
            except OSError:
                return None
        return Entry(path, "safe", size, nfiles, newest)
    if name.lower().endswith(".zip") and path.is_file():
        return Entry(path, "zip", st.st_size, 1, st.st_mtime_ns)
    return None


def list_entries(
    inbox: Path, settings: InboxSettings = InboxSettings()
) -> tuple[list[Entry], list[Path]]:
    """Products in the inbox and unknown items.

    Returns
    -------
    (entries, unknown)
        ``entries``: SAFE folders and zips, sorted by name; ``unknown``: other top-level
        items (neither partial nor ours).
    """
    entries: list[Entry] = []
    unknown: list[Path] = []
    skip = {settings.rejected_dir, settings.duplicates_dir}
    try:
        it = sorted(os.scandir(inbox), key=lambda e: e.name)
    except FileNotFoundError:
        return [], []
    for e in it:
        if e.name in skip or is_partial(e.name, settings.partial_patterns):
            continue
        entry = read_entry(Path(e.path))
        if entry is None:
            if Path(e.path).exists():
                unknown.append(Path(e.path))
        else:
            entries.append(entry)
    return entries, unknown


class StabilityTracker:
    """Decides when an inbox entry is complete (see the module notes).

    Parameters
    ----------
    settings : InboxSettings
    clock : callable
        Monotonic seconds (tests inject their own).
    """

    def __init__(
        self, settings: InboxSettings = InboxSettings(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._seen: dict[Path, tuple[tuple[int, int, int], float]] = {}
        self._signalled: set[Path] = set()

    def signal_complete(self, path: Path) -> None:
        """A completion event (closed after writing, renamed into place) arrived for ``path``."""
        self._signalled.add(path)

    def is_complete(self, entry: Entry) -> bool:
        """Record a look at ``entry``; True when it is complete."""
        now = self.clock()
        if entry.path in self._signalled:
            return True
        age = time.time() - entry.mtime_ns / 1e9
        if age >= self.settings.settle_age_s:
            return True
        before = self._seen.get(entry.path)
        if before is not None and before[0] == entry.signature:
            # keep the time of the first look of this signature
            return now - before[1] >= self.settings.stable_interval_s
        self._seen[entry.path] = (entry.signature, now)
        return False

    def forget(self, path: Path) -> None:
        """Drop what is known of ``path`` (ingested, moved away)."""
        self._seen.pop(path, None)
        self._signalled.discard(path)

    def waiting(self) -> list[Path]:
        """Entries seen but not yet complete."""
        return sorted(self._seen)


def move_aside(path: Path, folder: Path, reason: str) -> Path:
    """Move ``path`` into ``folder`` and write ``<name>.reason.txt`` beside it.

    An existing product of the same name there is kept: the new one gets a ``.1``, ``.2`` …
    suffix. Returns the new path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{path.name}.{n}"
    shutil.move(str(path), str(target))
    note = target.with_name(target.name + ".reason.txt")
    tmp = note.with_name("." + note.name + ".tmp")
    tmp.write_text(
        f"{path.name}\nmoved here at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\nreason: {reason}\n",
        encoding="utf-8",
    )
    tmp.replace(note)
    return target


def is_network_filesystem(path: Path, mounts_text: str | None = None) -> bool:
    """True if ``path`` lies on a network/cluster file system.

    Parameters
    ----------
    path : Path
    mounts_text : str, optional
        Content of ``/proc/mounts`` (read from the system when None; no mounts table, as on
        macOS: False).
    """
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return False
    mounts = mounts_text.splitlines()
    target = str(path.resolve())
    best, fstype = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, parts[2]
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("nfs")


class InboxWatcher:
    """Watchdog observer over the inbox, turning events into hints about top-level entries.

    Hints land in :attr:`hints` as ``(path, complete)``: ``complete`` is True for a completion
    event (a zip closed after writing, an entry renamed into place inside the inbox), False
    for anything else (created, modified): the entry must then pass the stability check.

    Parameters
    ----------
    inbox : Path
    settings : InboxSettings
    """

    def __init__(self, inbox: Path, settings: InboxSettings = InboxSettings()) -> None:
        self.inbox = Path(inbox).resolve()
        self.settings = settings
        self.hints: queue.Queue[tuple[Path, bool]] = queue.Queue()
        mode = settings.observer
        if mode == "auto":
            mode = "polling" if is_network_filesystem(self.inbox) else "inotify"
        self.mode = mode
        self._observer: Any = None

    def _top(self, p: str | bytes) -> Path | None:
        path = Path(os.fsdecode(p))
        try:
            rel = path.resolve().relative_to(self.inbox)
        except ValueError:
            return None
        if not rel.parts:
            return None
        name = rel.parts[0]
        if name in (self.settings.rejected_dir, self.settings.duplicates_dir):
            return None
        if is_partial(name, self.settings.partial_patterns):
            return None
        return self.inbox / name

    def _handler(self) -> Any:
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                kind = event.event_type
                if kind in ("opened", "closed_no_write", "deleted"):
                    return
                if kind == "moved":
                    top = watcher._top(event.dest_path)
                    # renamed into its final top-level name inside the inbox: complete
                    complete = top is not None and Path(os.fsdecode(event.dest_path)) == top
                elif kind == "closed":
                    top = watcher._top(event.src_path)
                    complete = top is not None and Path(os.fsdecode(event.src_path)) == top
                else:
                    top = watcher._top(event.src_path)
                    complete = False
                if top is not None:
                    watcher.hints.put((top, complete))

        return Handler()

    def start(self) -> None:
        """Start observing (idempotent)."""
        if self._observer is not None:
            return
        if self.mode == "polling":
            from watchdog.observers.polling import PollingObserver

            observer: Any = PollingObserver(timeout=self.settings.polling_interval_s)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        self.inbox.mkdir(parents=True, exist_ok=True)
        observer.schedule(self._handler(), str(self.inbox), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info("watching %s (%s observer)", self.inbox, self.mode)

    def stop(self) -> None:
        """Stop observing."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    def __enter__(self) -> InboxWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
