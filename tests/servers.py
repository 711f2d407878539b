"""Local test servers and products for the ingest tests (no network: 127.0.0.1 only).

- :class:`FileServer`: a threaded HTTP server (``http.server``) on ``127.0.0.1:0`` serving a
  folder with ``Range`` support (206/416), plus fault injection per path: drop the connection
  after N bytes, serve corrupt bytes, or answer an HTTP error; and a resto ``search.json``
  endpoint (``/resto/api/collections/<c>/search.json``) over a list of features, with the
  PEPS/Theia parameters of CATALOGS.md (``startDate``, ``completionDate``, ``tileid``,
  ``location``, ``box``, ``cloudCover=[0,x]``, ``productType``, ``maxRecords`` ≤ 500,
  ``page``) and ``properties.totalResults``.
- :class:`RustacApi`: a real STAC API, ``rustac serve`` (memory backend) over item JSON.
- :func:`slovenia_products`: the real-data Slovenia SAFE series (and zips), written once.
- :func:`clone_safe_zip`: a tiny product with a genuine name and consistent metadata, made by
  re-stamping a real SAFE written by :mod:`l2a.testing.safe_writer` (for the 1,000-product
  benchmark).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

# --------------------------------------------------------------------------- file + resto server


class FileServer:
    """Threaded HTTP file server with Range support, faults, and a resto endpoint.

    Parameters
    ----------
    root : Path
        Folder served at ``/files/``.

    Attributes
    ----------
    faults : dict
        ``url path -> list of faults``; each request to the path consumes the first one:
        ``("drop", n)`` sends the headers and ``n`` bytes then closes the connection,
        ``("corrupt",)`` serves the bytes with some flipped, ``("status", code)`` answers
        ``code``.
    requests : list
        ``(method, path, Range header)`` of every request.
    resto : dict
        ``collection -> list of features`` served by ``search.json``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.faults: dict[str, list[tuple[Any, ...]]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.resto: dict[str, list[dict[str, Any]]] = {}
        self.stac_items: list[dict[str, Any]] = []
        self.stac_queries: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def do_POST(self) -> None:
                self._serve(head=False)

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else {}

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                url = urlparse(self.path)
                path = unquote(url.path)
                rng = self.headers.get("Range")
                with server.lock:
                    server.requests.append((self.command, path, rng))
                    pending = server.faults.get(path)
                    fault = pending.pop(0) if pending else None
                if path.startswith("/resto/api/collections/") and path.endswith("/search.json"):
                    coll = path.split("/")[4]
                    code, body = server._resto(coll, parse_qs(url.query))
                    self._send(code, json.dumps(body).encode())
                    return
                if path.startswith("/stac"):
                    code, body = server._stac(path, self._body())
                    self._send(code, json.dumps(body).encode(), "application/geo+json")
                    return
                if not path.startswith("/files/"):
                    self._send(404, b'{"error":"not found"}')
                    return
                target = (server.root / path[len("/files/") :]).resolve()
                if server.root.resolve() not in target.parents or not target.is_file():
                    self._send(404, b'{"error":"not found"}')
                    return
                if fault and fault[0] == "status":
                    self._send(int(fault[1]), b'{"error":"injected"}')
                    return
                data = target.read_bytes()
                if fault and fault[0] == "corrupt":
                    buf = bytearray(data)
                    for i in range(0, len(buf), max(1, len(buf) // 50)):
                        buf[i] ^= 0xFF
                    data = bytes(buf)
                start, end, code = 0, len(data) - 1, 200
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start = int(a) if a else 0
                    end = int(b) if b else len(data) - 1
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    code = 206
                chunk = data[start : end + 1]
                self.send_response(code)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(chunk)))
                if code == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if head:
                    return
                if fault and fault[0] == "drop":
                    self.wfile.write(chunk[: int(fault[1])])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def file_url(self, rel: str) -> str:
        """URL of a file under ``root``."""
        return f"{self.url}/files/{rel}"

    def resto_url(self, collection: str = "S2ST") -> str:
        """``search.json`` URL of a collection."""
        return f"{self.url}/resto/api/collections/{collection}/search.json"

    # ---- a small STAC API with the query extension (rustac's memory backend lacks it)
    def _stac(self, path: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        base = f"{self.url}/stac"
        if path in ("/stac", "/stac/"):
            return 200, {
                "type": "Catalog",
                "id": "test-api",
                "stac_version": "1.1.0",
                "description": "item search with the query extension",
                "conformsTo": [
                    "https://api.stacspec.org/v1.0.0/core",
                    "https://api.stacspec.org/v1.0.0/item-search",
                    "https://api.stacspec.org/v1.0.0/item-search#query",
                ],
                "links": [
                    {"rel": "self", "href": f"{base}/", "type": "application/json"},
                    {"rel": "root", "href": f"{base}/", "type": "application/json"},
                    {
                        "rel": "search",
                        "href": f"{base}/search",
                        "method": "POST",
                        "type": "application/geo+json",
                    },
                ],
            }
        if path != "/stac/search":
            return 404, {"code": "NotFound"}
        self.stac_queries.append(dict(body))
        out = [it for it in self.stac_items if _stac_match(it, body)]
        limit = int(body.get("limit", 10))
        start = int(str(body.get("token", "0")))
        page = out[start : start + limit]
        links = []
        if start + limit < len(out):
            links.append(
                {
                    "rel": "next",
                    "href": f"{base}/search",
                    "method": "POST",
                    "body": {"token": str(start + limit)},
                    "merge": True,
                }
            )
        return 200, {
            "type": "FeatureCollection",
            "features": page,
            "links": links,
            "numberMatched": len(out),
            "numberReturned": len(page),
        }

    # ---- resto
    def _resto(self, coll: str, q: Mapping[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def one(k: str) -> str | None:
            v = q.get(k)
            return v[0] if v else None

        feats = self.resto.get(coll)
        if feats is None:
            return 404, {"ErrorMessage": f"collection {coll} not found"}
        max_records = int(one("maxRecords") or 20)
        if not 0 < max_records <= 500:
            return 400, {"ErrorMessage": "maxRecords must be between 1 and 500"}
        page = int(one("page") or 1)
        out = []
        for f in feats:
            p = f["properties"]
            t = p["startDate"]
            if (s := one("startDate")) and t < s:
                continue
            if (e := one("completionDate")) and t > e:
                continue
            if (tile := one("tileid")) and p["mgrs"] != tile:
                continue
            if (loc := one("location")) and f"T{p['mgrs']}" != loc:
                continue
            if (pt := one("productType")) and p["productType"] != pt:
                continue
            if cc := one("cloudCover"):
                lo, hi = (float(x) for x in cc.strip("[]").split(","))
                if not lo <= p["cloudCover"] <= hi:
                    continue
            if box := one("box"):
                x0, y0, x1, y1 = (float(x) for x in box.split(","))
                fx0, fy0, fx1, fy1 = _bbox(f["geometry"])
                if fx1 < x0 or fx0 > x1 or fy1 < y0 or fy0 > y1:
                    continue
            out.append(f)
        start = (page - 1) * max_records
        return 200, {
            "type": "FeatureCollection",
            "properties": {
                "totalResults": len(out),
                "itemsPerPage": max_records,
                "startIndex": start + 1,
                "exactCount": True,
            },
            "features": out[start : start + max_records],
        }

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


def _stac_match(item: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Item search semantics: collections, bbox, datetime interval, query extension."""
    if (colls := body.get("collections")) and item.get("collection") not in colls:
        return False
    if bbox := body.get("bbox"):
        x0, y0, x1, y1 = bbox
        fx0, fy0, fx1, fy1 = item["bbox"]
        if fx1 < x0 or fx0 > x1 or fy1 < y0 or fy0 > y1:
            return False
    if dt := body.get("datetime"):
        a, _, b = dt.partition("/")
        t = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        if a not in ("", "..") and t < datetime.fromisoformat(a.replace("Z", "+00:00")):
            return False
        if b not in ("", "..") and t > datetime.fromisoformat(b.replace("Z", "+00:00")):
            return False
    for prop, ops in (body.get("query") or {}).items():
        value = item["properties"].get(prop)
        for op, ref in ops.items():
            if value is None or not _OPS[op](value, ref):
                return False
    return True


def _bbox(geom: Mapping[str, Any]) -> tuple[float, float, float, float]:
    pts = [pt for ring in geom["coordinates"] for pt in ring]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def resto_feature(item: Mapping[str, Any], download_url: str, size: int) -> dict[str, Any]:
    """A PEPS-style resto feature (fields as CATALOGS.md lists them) from a STAC item dict."""
    p = item["properties"]
    name = item["id"]
    t = p["datetime"].replace("+00:00", "Z")
    return {
        "type": "Feature",
        "id": hashlib.md5(name.encode()).hexdigest(),
        "geometry": item["geometry"],
        "properties": {
            "productIdentifier": f"/eodata/{name}.SAFE",
            "title": name,
            "platform": "S2A",
            "instrument": "MSI",
            "processingLevel": "LEVEL1C",
            "productType": "S2MSI1C",
            "mgrs": p["s2:mgrs_tile"],
            "startDate": t,
            "completionDate": t,
            "published": t,
            "orbitNumber": 262,
            "relativeOrbitNumber": p.get("sat:relative_orbit"),
            "orbitDirection": "descending",
            "cloudCover": p["eo:cloud_cover"],
            "snowCover": 0,
            "resourceSize": size,
            "storage": {"mode": "disk"},
            "services": {"download": {"url": download_url, "mimeType": "application/zip"}},
            "quicklook": None,
            "thumbnail": None,
        },
    }


# --------------------------------------------------------------------------- rustac STAC API


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rustac_exe() -> str | None:
    """The ``rustac`` command of this environment, if installed."""
    here = Path(sys.executable).with_name("rustac")
    return str(here) if here.exists() else shutil.which("rustac")


class RustacApi:
    """``rustac serve`` (a real STAC API, memory backend) over given items.

    Parameters
    ----------
    items : sequence of dict
        STAC items (``collection`` set).
    collection : str
    workdir : Path
    """

    def __init__(self, items: Sequence[Mapping[str, Any]], collection: str, workdir: Path) -> None:
        exe = rustac_exe()
        if exe is None:
            raise RuntimeError("rustac is not installed (pip install rustac)")
        workdir.mkdir(parents=True, exist_ok=True)
        coll = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": collection,
            "description": "test collection",
            "license": "other",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [],
        }
        (workdir / "collection.json").write_text(json.dumps(coll))
        (workdir / "items.json").write_text(
            json.dumps({"type": "FeatureCollection", "features": list(items)})
        )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._cmd = [
            exe,
            "serve",
            "--addr",
            f"127.0.0.1:{self.port}",
            str(workdir / "collection.json"),
            str(workdir / "items.json"),
        ]
        self._log = workdir / "rustac.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RustacApi:
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(self._cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        self.__exit__()
        raise RuntimeError(f"rustac serve did not start: {self._log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


# --------------------------------------------------------------------------- products


#: Announced cloud cover of the five Slovenia products (2015-07-11, 07-31, 08-20, 08-30, 09-09).
SLOVENIA_CLOUDS: tuple[float, ...] = (5.0, 60.0, 10.0, 95.0, 20.0)
#: Collection of the L1C items the test catalogs hold.
L1C_COLLECTION = "sentinel-2-l1c"


@cache
def slovenia_products() -> tuple[Path, list[Path], list[Path]]:
    """The five real-data Slovenia SAFE products (33TVL, 2015) and their zips, written once
    per test session into a temporary folder: ``(folder, safes, zips)``."""
    from l2a.testing.safe_writer import zip_safe
    from l2a.testing.series import slovenia_safe_series

    root = Path(tempfile.mkdtemp(prefix="l2a-ingest-"))
    atexit.register(shutil.rmtree, root, True)
    safes = slovenia_safe_series(root / "safe")
    (root / "zips").mkdir()
    zips = [zip_safe(p, root / "zips" / (p.name.removesuffix(".SAFE") + ".zip")) for p in safes]
    return root, safes, zips


def multihash_sha256(path: Path) -> str:
    """STAC ``file:checksum`` of a file (multihash sha2-256, hex)."""
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def stac_items(
    zips: Sequence[Path], server: FileServer, clouds: Sequence[float], collection: str
) -> list[dict[str, Any]]:
    """STAC items of the products (from :func:`safe_stac_item`) with a ``product`` asset
    (the zip on ``server``, ``file:size`` and ``file:checksum``), ``grid:code`` and the given
    cloud covers."""
    from l2a.testing.safe_writer import safe_stac_item

    _, safes, _ = slovenia_products()
    out = []
    for safe, z, cloud in zip(safes, zips, clouds, strict=True):
        item = safe_stac_item(safe).to_dict(include_self_link=False)
        item["collection"] = collection
        item["properties"]["eo:cloud_cover"] = cloud
        item["properties"]["grid:code"] = f"MGRS-{item['properties']['s2:mgrs_tile']}"
        item["assets"]["product"] = {
            "href": server.file_url(z.relative_to(server.root).as_posix()),
            "type": "application/zip",
            "roles": ["data", "archive"],
            "file:size": z.stat().st_size,
            "file:checksum": multihash_sha256(z),
        }
        out.append(item)
    return out


def renamed_item(item: Mapping[str, Any], tile: str) -> dict[str, Any]:
    """A copy of ``item`` claiming another tile (same footprint: a server-side bbox search
    returns it, only the tile check can drop it)."""
    d = json.loads(json.dumps(item))
    d["id"] = d["id"].replace("_T33TVL_", f"_T{tile}_")
    d["properties"]["s2:mgrs_tile"] = tile
    d["properties"]["grid:code"] = f"MGRS-{tile}"
    return d


@cache
def _template_files() -> tuple[str, list[tuple[str, bytes]]]:
    """(name, [(relative path, bytes)]) of the first Slovenia SAFE."""
    _, safes, _ = slovenia_products()
    src = safes[0]
    files = [
        (p.relative_to(src).as_posix(), p.read_bytes())
        for p in sorted(src.rglob("*"))
        if p.is_file()
    ]
    return src.name.removesuffix(".SAFE"), files


def clone_safe_zip(
    out_dir: Path,
    sensing: datetime,
    *,
    tile: str = "33TVL",
    platform: str = "S2A",
    baseline: str = "05.10",
    relative_orbit: int = 122,
) -> Path:
    """A small SAFE zip with a genuine name and metadata re-stamped for ``sensing``/``tile``.

    Copies the first real Slovenia product, replacing its sensing and generation stamps,
    tile id, platform, orbit and baseline in every path and XML (band pixels unchanged):
    ``light`` validation (structure + XML + name/metadata agreement) passes, ``full``
    (manifest/pixels) is not meant to.
    """
    tname, files = _template_files()
    old_sense = datetime(2015, 7, 11, 10, 0, 8)
    old_gen = old_sense + timedelta(hours=2)
    gen = sensing + timedelta(hours=2)
    pairs = [
        (f"{old_sense:%Y%m%dT%H%M%S}", f"{sensing:%Y%m%dT%H%M%S}"),
        (f"{old_gen:%Y%m%dT%H%M%S}", f"{gen:%Y%m%dT%H%M%S}"),
        (f"{old_sense:%Y-%m-%dT%H:%M:%S}", f"{sensing:%Y-%m-%dT%H:%M:%S}"),
        (f"{old_gen:%Y-%m-%dT%H:%M:%S}", f"{gen:%Y-%m-%dT%H:%M:%S}"),
        ("33TVL", tile),
        ("_R122_", f"_R{relative_orbit:03d}_"),
        ("N0510", f"N{baseline.replace('.', '')}"),
        ("<PROCESSING_BASELINE>05.10<", f"<PROCESSING_BASELINE>{baseline}<"),
        ("S2A_", f"{platform}_"),
        ("Sentinel-2A", f"Sentinel-2{platform[-1]}"),
    ]

    def sub(text: str) -> str:
        for a, b in pairs:
            text = text.replace(a, b)
        return text

    name = sub(tname)
    dest = out_dir / f"{name}.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for rel, data in files:
            if rel.endswith((".xml", ".safe")):
                data = sub(data.decode("utf-8")).encode("utf-8")
            zf.writestr(f"{name}.SAFE/{sub(rel)}", data)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, dest)
    return dest


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def iter_days(start: datetime, n: int, step_days: int = 5) -> Iterator[datetime]:
    """``n`` sensing times ``step_days`` apart."""
    for i in range(n):
        yield start + timedelta(days=i * step_days)
