"""The composite: what the next date of the same tile needs (last clear reflectances and their dates).

It lives on the working (coarse) grid of the masks.  It is also the state shared with the
atmospheric correction: that step may store further coarse layers (surface reflectance, AOT…)
in :attr:`Composite.extra`, which are saved and loaded with it.

Saved as a single ``.npz`` (numpy's own format: exact round trip of every array and of the
grid), written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.errors import InputError

#: Format version written into saved composites.
COMPOSITE_FORMAT_VERSION = 1
_EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def to_days(iso: str) -> float:
    """ISO 8601 date-time (UTC) -> days since 1970-01-01 (float)."""
    t = np.datetime64(parse_time(iso).replace(tzinfo=None), "s")
    return float((t - _EPOCH) / np.timedelta64(1, "s")) / 86400.0


def parse_time(iso: str) -> datetime:
    """Parse an ISO 8601 string into an aware UTC datetime (naive means UTC)."""
    t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass
class Composite:
    """Per-tile state of the multi-temporal method.

    Attributes
    ----------
    geobox : GeoBox
        Working (coarse) grid of every array below.
    reflectance : dict of str to ndarray
        Last clear Rayleigh-corrected reflectance per band (``"B01"``, ``"B02"``…), float32,
        NaN where no clear observation exists yet.
    dates : ndarray
        Date of that last clear observation, float64 days since 1970-01-01 UTC, NaN where none
        (one date per pixel: all bands are updated together).  See :meth:`clear_dates`.
    last_date : str
        ISO 8601 UTC date-time of the last product processed (drives the re-INIT rule).
    n_dates : int
        Number of dates processed since the last INIT.
    extra : dict of str to ndarray
        Additional coarse layers other steps keep with the composite (e.g. ``"sre_B04"``,
        ``"aot"``); any dtype; each must have the grid's shape.  Saved and loaded as-is,
        carried over unchanged by :func:`l2a.masks.detect` (the step that owns a layer updates
        it, e.g. where :meth:`updated` is true), and dropped at a re-INIT.

    Notes
    -----
    :attr:`reflectance` holds *Rayleigh-corrected TOA* reflectance (what the cloud tests
    compare), not surface reflectance; the atmospheric correction keeps its own surface
    reflectances in :attr:`extra`.
    """

    geobox: GeoBox
    reflectance: dict[str, np.ndarray]
    dates: np.ndarray
    last_date: str
    n_dates: int = 1
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def clear_dates(self) -> np.ndarray:
        """Dates of the last clear observation as ``datetime64[s]`` (NaT where none)."""
        out = np.full(self.dates.shape, np.datetime64("NaT", "s"), dtype="datetime64[s]")
        ok = np.isfinite(self.dates)
        out[ok] = _EPOCH + (self.dates[ok] * 86400.0).round().astype("timedelta64[s]")
        return out

    def age_days(self, when: str) -> np.ndarray:
        """Age (days, signed: positive when ``when`` is later) of each pixel's reference."""
        return (to_days(when) - self.dates).astype(np.float32)

    def updated(self) -> np.ndarray:
        """Pixels refreshed by the last processed date (clear then): where other steps update
        their :attr:`extra` layers."""
        return np.asarray(self.dates == to_days(self.last_date))

    def gap_days(self, when: str) -> float:
        """Days between ``when`` and :attr:`last_date` (absolute)."""
        return abs(to_days(when) - to_days(self.last_date))

    def copy(self) -> Composite:
        """Deep copy (arrays copied)."""
        return Composite(
            geobox=self.geobox,
            reflectance={k: v.copy() for k, v in self.reflectance.items()},
            dates=self.dates.copy(),
            last_date=self.last_date,
            n_dates=self.n_dates,
            extra={k: v.copy() for k, v in self.extra.items()},
        )

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (``.npz``), atomically (temporary file, then rename)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": "l2a-masks-composite",
            "version": COMPOSITE_FORMAT_VERSION,
            "crs": self.geobox.crs.to_wkt() if self.geobox.crs is not None else None,
            "affine": list(self.geobox.affine)[:6],
            "shape": [int(self.geobox.shape[0]), int(self.geobox.shape[1])],
            "last_date": self.last_date,
            "n_dates": int(self.n_dates),
            "bands": sorted(self.reflectance),
            "extra": sorted(self.extra),
        }
        arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(header)), "dates": self.dates}
        for k, v in self.reflectance.items():
            arrays[f"refl__{k}"] = v
        for k, v in self.extra.items():
            arrays[f"extra__{k}"] = np.asarray(v)
        fd, tmp = tempfile.mkstemp(prefix=".composite-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, allow_pickle=False, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Composite:
        """Read a composite written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such composite file (give the .npz written by Composite.save)")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                if header.get("format") != "l2a-masks-composite":
                    raise InputError(path, "not an l2a masks composite (.npz from Composite.save)")
                if int(header["version"]) > COMPOSITE_FORMAT_VERSION:
                    raise InputError(path, f"composite format {header['version']} is newer than this l2a")
                refl = {k: z[f"refl__{k}"] for k in header["bands"]}
                extra = {k: z[f"extra__{k}"] for k in header["extra"]}
                dates = z["dates"]
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(path, f"unreadable composite ({exc}); delete it to re-initialise") from exc
        gb = GeoBox(tuple(header["shape"]), Affine(*header["affine"]), header["crs"])
        return cls(gb, refl, dates, header["last_date"], int(header["n_dates"]), extra)

    def same_as(self, other: Composite) -> bool:
        """Exact equality of grids, dates and every array (NaN equal to NaN)."""
        def eq(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
            return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)

        return (
            self.geobox == other.geobox
            and self.last_date == other.last_date
            and self.n_dates == other.n_dates
            and np.array_equal(self.dates, other.dates, equal_nan=True)
            and eq(self.reflectance, other.reflectance)
            and eq(self.extra, other.extra)
        )
