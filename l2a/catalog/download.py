"""Verified, resumable HTTP downloads of input products.

``download(url, dest)`` fetches ``url`` into ``<dest>.part`` with ``requests`` (streamed),
resumes an interrupted transfer with an HTTP ``Range`` request, retries transient failures
(connection drops, timeouts, HTTP 408/425/429/5xx) with exponential backoff, verifies the
result (checksum when one is known, else the announced size) and only then renames it to
``dest`` (atomic on one file system). A corrupt transfer (checksum mismatch) is deleted and
downloaded again from scratch, within the same attempt budget.

Why ``requests``: pystac-client (our STAC API client) already depends on it, so it adds
nothing to the environment; streaming, ``Range`` headers, sessions with authentication and
connection pooling are all it takes here. (httpx would bring HTTP/2 and async, which a
sequential product downloader does not need.)

Checksums are given as ``"md5:<hex>"``, ``"sha256:<hex>"`` (any :mod:`hashlib` name), a
bare hexadecimal digest (32 hex digits: MD5, 64: SHA-256), or a STAC ``file:checksum``
multihash (hex: ``1220<sha256>``, ``d50110<md5>`` …), see :func:`parse_checksum`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from l2a.errors import L2AError

if TYPE_CHECKING:
    import requests

__all__ = [
    "Checksum",
    "DownloadError",
    "DownloadRecorder",
    "DownloadResult",
    "DownloadSettings",
    "download",
    "file_checksum",
    "file_problem",
    "parse_checksum",
]

log = logging.getLogger(__name__)

#: multihash function codes (https://github.com/multiformats/multicodec) -> hashlib names
MULTIHASH_CODES: dict[int, str] = {
    0x11: "sha1",
    0x12: "sha256",
    0x13: "sha512",
    0x14: "sha3_512",
    0x15: "sha3_384",
    0x16: "sha3_256",
    0x17: "sha3_224",
    0xD5: "md5",
    0xB220: "blake2b",  # blake2b-256
}

#: HTTP statuses worth retrying (the server is busy, staging the file, or failed transiently).
RETRY_STATUSES = frozenset({202, 408, 425, 429, 500, 502, 503, 504})


class DownloadError(L2AError):
    """A download that could not be completed and verified.

    Parameters
    ----------
    url : str
    problem : str
        What went wrong, in plain words (the last failure after all attempts).
    """

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")

    def __reduce__(self) -> tuple[type[DownloadError], tuple[str, str]]:
        return (type(self), (self.url, self.problem))


class DownloadRecorder(Protocol):
    """Where downloads are recorded (:class:`l2a.production.db.Database` fits)."""

    def record_download(
        self,
        item_id: str,
        *,
        user: str = ...,
        nbytes: int = ...,
        asset: str | None = ...,
        client: str | None = ...,
    ) -> Any:
        """Record one download."""
        ...


@dataclass(frozen=True)
class Checksum:
    """An expected digest: hashlib algorithm name and lower-case hex digest."""

    algorithm: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"

    def hasher(self) -> Any:
        """A fresh hashlib object for this algorithm."""
        if self.algorithm == "blake2b":
            return hashlib.blake2b(digest_size=len(self.hexdigest) // 2)
        return hashlib.new(self.algorithm)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def parse_checksum(text: str) -> Checksum:
    """Parse an expected checksum.

    Parameters
    ----------
    text : str
        ``"md5:…"``, ``"sha256:…"``, ``"SHA3-256:…"`` (any hashlib name, case and dashes
        ignored), a bare hex digest of 32 (MD5) or 64 (SHA-256) digits, or a multihash in hex
        (STAC ``file:checksum``: function code varint, digest length varint, digest).

    Raises
    ------
    ValueError
        If the text is none of these.
    """
    t = text.strip()
    if ":" in t:
        algo, digest = t.split(":", 1)
        name = algo.strip().lower().replace("-", "_")
        name = {"sha_256": "sha256", "sha_1": "sha1", "sha_512": "sha512"}.get(name, name)
        if name not in hashlib.algorithms_available:
            raise ValueError(f"unknown checksum algorithm {algo!r}")
        return Checksum(name, digest.strip().lower())
    low = t.lower()
    if not low or any(c not in "0123456789abcdef" for c in low) or len(low) % 2:
        raise ValueError(f"not a checksum: {text!r}")
    try:
        raw = bytes.fromhex(low)
        code, pos = _varint(raw, 0)
        length, pos = _varint(raw, pos)
        if code in MULTIHASH_CODES and len(raw) - pos == length:
            return Checksum(MULTIHASH_CODES[code], raw[pos:].hex())
    except ValueError:
        pass
    if len(low) == 32:
        return Checksum("md5", low)
    if len(low) == 64:
        return Checksum("sha256", low)
    raise ValueError(f"not a known checksum form (multihash, md5 or sha256 hex): {text!r}")


def file_checksum(path: str | Path, algorithm: str = "sha256", chunk_bytes: int = 1 << 20) -> str:
    """``"algorithm:hexdigest"`` of a file."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return f"{algorithm}:{h.hexdigest()}"


@dataclass(frozen=True)
class DownloadSettings:
    """Retry, timeout and buffer settings of :func:`download`."""

    #: Attempts in all (first try included) before giving up.
    max_attempts: int = 5
    #: Wait before the first retry (s); doubled at each further retry.
    backoff_s: float = 2.0
    #: Longest wait between two attempts (s).
    backoff_max_s: float = 120.0
    #: Connect timeout (s).
    connect_timeout_s: float = 30.0
    #: Read timeout: longest silence of the server within a transfer (s).
    read_timeout_s: float = 120.0
    #: Bytes read and written at a time.
    chunk_bytes: int = 1 << 20
    #: User agent sent with every request.
    user_agent: str = "l2a-ingest"


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download` did.

    Attributes
    ----------
    path : Path
        The verified file.
    size : int
        Its size (bytes).
    checksum : str
        ``"algorithm:hexdigest"`` (the expected algorithm, else SHA-256 of the file).
    verified_by : str
        ``"checksum"``, ``"size"`` or ``"none"`` (nothing to check against).
    attempts : int
        HTTP requests made (1 when all went well).
    resumed : int
        Requests that resumed a partial file with ``Range``.
    transferred : int
        Bytes received over the network (all attempts).
    seconds : float
    reused : bool
        True when ``dest`` existed already and passed verification (nothing downloaded).
    """

    path: Path
    size: int
    checksum: str
    verified_by: str
    attempts: int = 0
    resumed: int = 0
    transferred: int = 0
    seconds: float = 0.0
    reused: bool = False


def _session(settings: DownloadSettings) -> requests.Session:
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = settings.user_agent
    return s


def _total_from_headers(resp: Any, start: int) -> int | None:
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr:
        total = cr.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    cl = resp.headers.get("Content-Length")
    if cl and cl.isdigit() and resp.headers.get("Content-Encoding") in (None, "identity"):
        return start + int(cl)
    return None


def _verify(
    path: Path, size: int | None, expected: Checksum | None, chunk_bytes: int
) -> tuple[str, str, str | None]:
    """(checksum string, verified_by, problem or None)."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return "", "size", f"size is {actual_size} bytes, expected {size}"
    algo = expected.algorithm if expected else "sha256"
    h = expected.hasher() if expected else hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    digest = h.hexdigest()
    if expected is not None:
        if digest != expected.hexdigest:
            return (
                f"{algo}:{digest}",
                "checksum",
                f"{algo} checksum mismatch (got {digest[:16]}…, expected {expected.hexdigest[:16]}…)",
            )
        return f"{algo}:{digest}", "checksum", None
    return f"{algo}:{digest}", "size" if size is not None else "none", None


def file_problem(path: str | Path, size: int | None, checksum: str | None, chunk_bytes: int = 1 << 20) -> str | None:
    """What is wrong with a file already on disk against an announced size and checksum, or None.

    The same check as :func:`download` makes (size first, then the digest); the file is only
    hashed when a checksum is announced, and an unparseable one is ignored.
    """
    path = Path(path)
    try:
        expected = parse_checksum(checksum) if checksum else None
    except ValueError:
        expected = None
    if expected is None:
        actual = path.stat().st_size
        return f"size is {actual} bytes, expected {size}" if size is not None and actual != size else None
    return _verify(path, size, expected, chunk_bytes)[2]


def download(
    url: str,
    dest: str | Path,
    *,
    size: int | None = None,
    checksum: str | Checksum | None = None,
    session: requests.Session | None = None,
    settings: DownloadSettings | None = None,
    db: DownloadRecorder | None = None,
    item_id: str | None = None,
    user: str = "l2a-ingest",
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resumably, with retries and verification.

    Parameters
    ----------
    url : str
        HTTP(S) URL.
    dest : str or Path
        Final file. Bytes go to ``<dest>.part`` first (kept across calls: a later call
        resumes it), renamed to ``dest`` once verified.
    size : int, optional
        Expected size (bytes), e.g. STAC ``file:size`` or resto ``resourceSize``.
    checksum : str or Checksum, optional
        Expected digest (see :func:`parse_checksum`).
    session : requests.Session, optional
        For authentication, proxies, connection reuse.
    settings : DownloadSettings, optional
    db : Database, optional
        When given, a successful transfer is recorded in the downloads table (``item_id``,
        ``user``, bytes received, ``client`` = URL).
    item_id : str, optional
        Product/item id recorded with the download (default: the file name).
    sleep : callable
        Used between attempts (tests pass a no-op).

    Returns
    -------
    DownloadResult

    Raises
    ------
    DownloadError
        After ``settings.max_attempts`` failed attempts, or at once for an HTTP error that a
        retry cannot fix (401, 403, 404, …); the message names the last problem.
    """
    import requests

    cfg = settings or DownloadSettings()
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    expected = parse_checksum(checksum) if isinstance(checksum, str) else checksum
    t0 = time.monotonic()

    if dest.exists():
        digest, how, problem = _verify(dest, size, expected, cfg.chunk_bytes)
        if problem is None:
            log.info("%s: already downloaded and verified (%s)", dest, how)
            return DownloadResult(dest, dest.stat().st_size, digest, how, reused=True)
        log.warning("%s exists but %s: downloading it again", dest, problem)
        dest.unlink()

    dest.parent.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    sess = session or _session(cfg)
    attempts = resumed = transferred = 0
    last_problem = "no attempt made"
    try:
        while attempts < cfg.max_attempts:
            if attempts:
                wait = min(cfg.backoff_s * 2 ** (attempts - 1), cfg.backoff_max_s)
                log.info("%s: retrying in %.1f s after: %s", url, wait, last_problem)
                sleep(wait)
            attempts += 1
            start = part.stat().st_size if part.exists() else 0
            if size is not None and start > size:
                part.unlink()
                start = 0
            headers = {"Range": f"bytes={start}-"} if start else {}
            try:
                with sess.get(
                    url,
                    headers=headers,
                    stream=True,
                    timeout=(cfg.connect_timeout_s, cfg.read_timeout_s),
                ) as resp:
                    if resp.status_code == 416 and start:
                        # nothing left to send: the partial file may be complete already
                        total = _total_from_headers(resp, 0)
                        if total is None or total == start:
                            pass  # verify below
                        else:
                            part.unlink()
                            last_problem = "the server refused to resume (HTTP 416)"
                            continue
                    elif resp.status_code in RETRY_STATUSES:
                        last_problem = f"HTTP {resp.status_code} {resp.reason}"
                        continue
                    elif resp.status_code >= 400:
                        raise DownloadError(
                            url,
                            f"HTTP {resp.status_code} {resp.reason}"
                            + (
                                ": check the credentials of this source"
                                if resp.status_code in (401, 403)
                                else ""
                            ),
                        )
                    else:
                        mode = "ab"
                        if start and resp.status_code == 206:
                            resumed += 1
                            log.info("%s: resuming at byte %d", url, start)
                        elif start:
                            mode = "wb"  # the server ignored Range: start again
                            start = 0
                        total = _total_from_headers(resp, start)
                        if size is None and total is not None:
                            size = total
                        with open(part, mode) as f:
                            for block in resp.iter_content(chunk_size=cfg.chunk_bytes):
                                f.write(block)
                                transferred += len(block)
                            f.flush()
                            os.fsync(f.fileno())
                        got = part.stat().st_size
                        if total is not None and got < total:
                            last_problem = f"connection ended after {got} of {total} bytes"
                            continue
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_problem = f"connection failed: {type(exc).__name__}: {exc}"
                continue
            except requests.exceptions.ChunkedEncodingError as exc:
                last_problem = f"transfer interrupted: {exc}"
                continue
            digest, how, problem = _verify(part, size, expected, cfg.chunk_bytes)
            if problem is not None:
                last_problem = problem
                log.warning("%s: %s; the partial file is discarded", url, problem)
                part.unlink(missing_ok=True)
                continue
            os.replace(part, dest)
            result = DownloadResult(
                dest,
                dest.stat().st_size,
                digest,
                how,
                attempts=attempts,
                resumed=resumed,
                transferred=transferred,
                seconds=time.monotonic() - t0,
            )
            log.info(
                "downloaded %s (%d bytes, %d attempt(s), verified by %s)",
                dest.name,
                result.size,
                attempts,
                how,
            )
            if db is not None:
                db.record_download(
                    item_id or dest.name, user=user, nbytes=transferred, asset=None, client=url
                )
            return result
    finally:
        if own_session:
            sess.close()
    raise DownloadError(url, f"gave up after {attempts} attempt(s): {last_problem}")
