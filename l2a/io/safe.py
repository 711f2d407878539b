"""Sentinel-2 SAFE L1C reader: a folder or a ``.zip`` read in place (GDAL ``/vsizip/``).

``open_safe(path, tile=None)`` returns a :class:`SafeProduct` that implements the
:class:`l2a.io.l1c.L1CProduct` protocol.

Formats: the compact SAFE of every processing baseline (N02.04 … N05.10) and the old
multi-tile PDMC SAFE (``S2A_OPER_PRD_MSIL1C_PDMC_*.SAFE``), where ``tile`` picks the granule.

Grids
-----
``metadata.geoboxes`` are the tile grids announced by ``MTD_TL.xml`` (10/20/60 m).
``geobox(resolution)`` is the grid of the pixels actually present: its upper-left corner and
extent come from the band files' own JPEG2000 georeferencing, and it has
``ceil(extent / resolution)`` pixels a side. For a genuine full product the band files cover the
tile exactly, so ``geobox(r)`` equals the MTD_TL grid at 10/20/60 m (and
:func:`l2a.grid.tile_geobox` at any resolution). For a cropped product (such as the Toulouse
sample, whose 13 bands are 30 x 30 crops at 10 m) it is the crop's grid. All band files
must cover the same extent; a band whose size disagrees is refused (InputError).

Pixels
------
``toa()`` reads each chunk in its own dask task (the task opens the file, so graphs
pickle). Coarser-than-native targets are read through JPEG2000 resolution levels, finer
targets by pixel replication; see :mod:`l2a.io.safe_read` for the exact rules.
Each task opens its band file once and decodes with ``GDAL_NUM_THREADS`` threads
(environment variable; when unset, 1 in dask worker threads/processes, which already run one
task per core, and all cores under the synchronous scheduler: see
:func:`l2a.io.safe_read.gdal_env`). At native
resolution the default 2048 px chunks are aligned on the 1024 px JPEG2000 tiles, so every tile
is decoded once; chunk sizes that are not multiples of the tile size decode shared tiles
several times.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.errors import InputError
from l2a.io.l1c import AngleGrid, L1CMetadata, toa_attrs
from l2a.io.lazy import angle_chunk, blocked, quality_chunk, toa_chunk
from l2a.io.safe_metadata import (
    ProductInfo,
    TileInfo,
    parse_product_metadata,
    parse_tile_metadata,
)
from l2a.io.safe_read import (
    DEFAULT_READ_SETTINGS,
    ReadSettings,
)
from l2a.sensors.sentinel2 import BAND_NAMES, BY_NAME, band

_PRODUCT_MTD = re.compile(r"^(MTD_MSIL1C\.xml|S2[A-Z]_OPER_MTD_SAFL1C_.*\.xml)$")
_L2A_MTD = re.compile(r"^(MTD_MSIL2A\.xml|S2[A-Z]_(OPER|USER)_MTD_SAFL2A_.*\.xml)$", re.IGNORECASE)
_TILE_MTD = re.compile(r"^(MTD_TL\.xml|S2[A-Z]_OPER_MTD_L1C_TL_.*\.xml)$")
_BAND_FILE = re.compile(r"_(B0[1-9]|B1[0-2]|B8A)\.jp2$")
_TILE_IN_NAME = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|$)")


# --------------------------------------------------------------------------- containers
class _Container:
    """Files of a SAFE, relative to its root, from a folder or a zip."""

    label: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def gdal_path(self, rel: str) -> str:
        raise NotImplementedError

    def display(self, rel: str) -> str:
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        return rel in self._name_set

    @cached_property
    def _name_set(self) -> set[str]:
        return set(self.names())

    def children(self, rel_dir: str) -> list[str]:
        """Immediate children names (files or folders) of ``rel_dir``."""
        prefix = rel_dir.rstrip("/") + "/" if rel_dir else ""
        out = set()
        for n in self.names():
            if n.startswith(prefix):
                rest = n[len(prefix) :]
                if rest:
                    out.add(rest.split("/", 1)[0])
        return sorted(out)


class _Folder(_Container):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def names(self) -> list[str]:
        return self._names

    @cached_property
    def _names(self) -> list[str]:
        out = []
        for p in self.root.rglob("*"):
            rel = p.relative_to(self.root).as_posix()
            out.append(rel + "/" if p.is_dir() else rel)
        # folders as "x/" entries, files as plain names; keep both for children()
        return [n.rstrip("/") for n in out]

    def read(self, rel: str) -> bytes:
        try:
            return (self.root / rel).read_bytes()
        except OSError as exc:
            raise InputError(self.root / rel, f"cannot read: {exc.strerror or exc}") from None

    def gdal_path(self, rel: str) -> str:
        return str(self.root / rel)

    def display(self, rel: str) -> str:
        return str(self.root / rel)


class _Zip(_Container):
    def __init__(self, zpath: Path) -> None:
        self.zpath = zpath.resolve()
        self.label = str(zpath)
        try:
            self.zf = zipfile.ZipFile(self.zpath)
            members = self.zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(
                zpath, f"not a readable zip file ({exc}); it may be truncated: download it again"
            ) from None
        for m in members:
            pure = PurePosixPath(m)
            if m.startswith(("/", "\\")) or ".." in pure.parts or "\\" in m or re.match(r"^[A-Za-z]:", m):
                raise InputError(
                    zpath, f"zip member {m!r} escapes the product folder (absolute path or '..'): refused"
                )
        roots = sorted(
            (m for m in members if _PRODUCT_MTD.match(PurePosixPath(m).name)), key=lambda m: m.count("/")
        )
        if not roots:
            l2a = [m for m in members if _L2A_MTD.match(PurePosixPath(m).name)]
            if l2a:
                raise InputError(zpath, "this is a Level-2A product, not a Level-1C product")
            raise InputError(zpath, "no MTD_MSIL1C.xml in the zip: not a Sentinel-2 L1C SAFE")
        parent = str(PurePosixPath(roots[0]).parent)
        self.prefix = "" if parent == "." else parent + "/"
        self._members = [m[len(self.prefix) :].rstrip("/") for m in members if m.startswith(self.prefix)]
        self._members = [m for m in self._members if m]
        # implicit folders
        dirs = {str(PurePosixPath(m).parent) for m in self._members}
        self._all = sorted(set(self._members) | {d for d in dirs if d != "."})

    def names(self) -> list[str]:
        return self._all

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(self.prefix + rel)
        except KeyError:
            raise InputError(self.display(rel), "missing from the zip") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(self.display(rel), f"cannot read from the zip (truncated or corrupt?): {exc}") from None

    def gdal_path(self, rel: str) -> str:
        return f"/vsizip/{self.zpath}/{self.prefix}{rel}"

    def display(self, rel: str) -> str:
        return f"{self.zpath}!/{self.prefix}{rel}"


# --------------------------------------------------------------------------- band files
@dataclass(frozen=True)
class BandFile:
    """Georeferencing of one band file (from its own header)."""

    name: str
    path: str  # GDAL path
    display: str
    shape: tuple[int, int]
    transform: Affine
    crs: str
    dtype: str
    n_overviews: int | None = None  # reduced JPEG2000 levels (None: unknown, counted at read)

    @property
    def pixel(self) -> float:
        return float(self.transform.a)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(ulx, uly, width_m, height_m)."""
        t = self.transform
        return (t.c, t.f, self.shape[1] * t.a, self.shape[0] * -t.e)


def _band_header(name: str, path: str, display: str) -> BandFile:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(display, "band file has no georeferencing")
            t = src.transform
            if t.b != 0 or t.d != 0 or t.e >= 0 or abs(t.a + t.e) > 1e-9:
                raise InputError(display, f"unexpected band geotransform {tuple(t)[:6]}")
            return BandFile(
                name, path, display, src.shape, t, src.crs.to_string(), src.dtypes[0],
                n_overviews=len(src.overviews(1)),
            )
    except RasterioError as exc:
        raise InputError(display, f"cannot open the JPEG2000 band (empty, truncated or corrupt?): {exc}") from None


# --------------------------------------------------------------------------- the product
class SafeProduct:
    """One granule (tile) of a SAFE L1C product. Implements :class:`l2a.io.l1c.L1CProduct`."""

    def __init__(
        self,
        container: _Container,
        product: ProductInfo,
        tile: TileInfo,
        granule_dir: str,
        source: str,
        settings: ReadSettings = DEFAULT_READ_SETTINGS,
    ) -> None:
        self._c = container
        self._product = product
        self._tile = tile
        self._granule = granule_dir
        self._source = source
        self.settings = settings
        img = f"{granule_dir}/IMG_DATA"
        files: dict[str, str] = {}
        for name in container.children(img):
            m = _BAND_FILE.search(name)
            if m:
                files[m.group(1)] = f"{img}/{name}"
        self._band_rel = {b: files[b] for b in BAND_NAMES if b in files}

    # ---- metadata
    @cached_property
    def metadata(self) -> L1CMetadata:
        p, t = self._product, self._tile
        foot: dict[str, str] = {}
        qmasks: dict[str, str] = {}
        for kind, bname, fname in t.masks:
            rel = fname if "/" in fname else f"{self._granule}/QI_DATA/{fname}"
            if not self._c.exists(rel):
                continue
            if kind == "MSK_DETFOO" and bname:
                foot[bname] = self._c.display(rel)
            else:
                qmasks[f"{kind}_{bname}" if bname else kind] = self._c.display(rel)
        name = Path(self._c.label).name
        stem = re.sub(r"\.(SAFE|zip)$", "", re.sub(r"\.zip$", "", name), flags=re.IGNORECASE)
        uri = re.sub(r"\.SAFE$", "", p.product_uri)
        product_id = uri if uri.startswith("S2") else stem
        return L1CMetadata(
            product_id=product_id,
            platform=p.platform,
            sensing_time=t.sensing_time,
            tile_id=t.tile_id,
            relative_orbit=p.relative_orbit,
            baseline=p.baseline,
            quantification=p.quantification,
            radio_offsets={b: float(p.offsets.get(b, 0.0)) for b in BAND_NAMES},
            solar_irradiance=dict(p.solar_irradiance),
            earth_sun_u=p.earth_sun_u,
            crs=t.crs,
            geoboxes=dict(t.geoboxes),
            sun=t.sun,
            view=dict(t.view),
            mean_sun_zenith=t.mean_sun_zenith,
            mean_sun_azimuth=t.mean_sun_azimuth,
            mean_view=dict(t.mean_view),
            cloud_cover=p.cloud_cover if p.cloud_cover is not None else t.cloudy_pixel_percentage,
            nodata_value=p.nodata_value,
            saturated_value=p.saturated_value,
            footprints=foot,
            quality_masks=qmasks,
            source=self._source,
            extra={
                "product_uri": p.product_uri,
                "product_type": p.product_type,
                "product_format": p.product_format,
                "spacecraft": p.spacecraft,
                "orbit_direction": p.orbit_direction,
                "datastrip_id": t.datastrip_id or p.datastrip_id,
                "granule_id": t.granule_id,
                "granule_dir": self._granule,
                "generation_time": p.generation_time,
                "product_start_time": p.start_time.isoformat(),
                "view_detectors": {b: list(d) for b, d in t.view_detectors.items()},
                "band_files": {b: self._c.display(r) for b, r in self._band_rel.items()},
            },
        )

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands whose image file is present."""
        return tuple(self._band_rel)

    # ---- band geometry
    def band_file(self, name: str) -> BandFile:
        """Header (shape, georeferencing) of a band file; checked against the other bands."""
        return self._band_files[band(name).name]

    @cached_property
    def _band_files(self) -> dict[str, BandFile]:
        out = {
            b: _band_header(b, self._c.gdal_path(rel), self._c.display(rel)) for b, rel in self._band_rel.items()
        }
        ref: BandFile | None = None
        for b, bf in out.items():
            if bf.crs != self._tile.crs and bf.crs.upper() != self._tile.crs.upper():
                raise InputError(bf.display, f"band CRS {bf.crs} differs from the tile's {self._tile.crs}")
            native = BY_NAME[b].resolution
            gb = self._tile.geoboxes.get(native)
            if (
                gb is not None
                and bf.pixel == native
                and (bf.transform.c, bf.transform.f) == (gb.affine.c, gb.affine.f)
                and bf.shape != gb.shape
            ):
                raise InputError(
                    bf.display,
                    f"wrong band size {bf.shape[1]} x {bf.shape[0]} px: MTD_TL.xml announces "
                    f"{gb.shape[1]} x {gb.shape[0]} px at {native} m",
                )
            if ref is None:
                ref = bf
                continue
            tol = 0.5 * min(ref.pixel, bf.pixel)
            if any(abs(u - v) > tol for u, v in zip(ref.extent, bf.extent, strict=True)):
                raise InputError(
                    bf.display,
                    f"wrong band size: {bf.shape[1]} x {bf.shape[0]} px at {bf.pixel:g} m "
                    f"({bf.extent[2]:g} x {bf.extent[3]:g} m from ({bf.extent[0]:g}, {bf.extent[1]:g})) "
                    f"while {ref.name} covers {ref.extent[2]:g} x {ref.extent[3]:g} m from "
                    f"({ref.extent[0]:g}, {ref.extent[1]:g})",
                )
        return out

    def _extent(self) -> tuple[float, float, float, float]:
        if self._band_rel:
            bf = next(iter(self._band_files.values()))
            return bf.extent
        gb = self._tile.geoboxes[min(self._tile.geoboxes)]
        return (gb.affine.c, gb.affine.f, gb.shape[1] * gb.affine.a, gb.shape[0] * -gb.affine.e)

    def geobox(self, resolution: float) -> GeoBox:
        """Grid of the present pixels at ``resolution`` metres (see the module docstring)."""
        if not resolution > 0:
            raise ValueError(f"resolution must be positive, got {resolution!r}")
        ulx, uly, w, h = self._extent()
        res = float(resolution)
        ny = math.ceil(h / res - 1e-9)
        nx = math.ceil(w / res - 1e-9)
        return GeoBox((ny, nx), Affine(res, 0.0, ulx, 0.0, -res, uly), self._tile.crs)

    # ---- pixels
    def _select(self, bands: Sequence[str] | None) -> list[str]:
        if bands is None:
            return list(self.bands)
        out = []
        for b in bands:
            name = band(b).name
            if name not in self._band_rel:
                raise InputError(
                    self._c.display(f"{self._granule}/IMG_DATA"),
                    f"band {name} is not in this product (present: {', '.join(self.bands) or 'none'})",
                )
            out.append(name)
        return out

    def _placement(self, bf: BandFile, gb: GeoBox) -> tuple[float, float, float]:
        """(row0, col0, step) of the target grid in the band file's pixel units."""
        t, g = bf.transform, gb.affine
        return (t.f - g.f) / -t.e, (g.c - t.c) / t.a, g.a / t.a

    def _coords(self, gb: GeoBox) -> dict[Any, Any]:
        from odc.geo.xr import xr_coords

        return dict(xr_coords(gb, crs_coord_name="spatial_ref"))

    def toa(
        self,
        bands: Sequence[str] | None = None,
        resolution: float = 10,
        *,
        chunks: int | None = 2048,
    ) -> xr.Dataset:
        """Lazy TOA reflectance ``(DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE`` (NaN for no-data)."""
        names = self._select(bands)
        gb = self.geobox(resolution)
        md = self.metadata
        chunk = int(chunks) if chunks else max(gb.shape)
        data_vars = {}
        for name in names:
            bf = self.band_file(name)
            row0, col0, step = self._placement(bf, gb)
            offset = float(md.radio_offsets.get(name, 0.0))

            def args(r0: int, c0: int, h: int, w: int, bf: BandFile = bf, row0: float = row0,
                     col0: float = col0, step: float = step, offset: float = offset) -> tuple[Any, ...]:
                return (bf.path, bf.shape, row0 + r0 * step, col0 + c0 * step, step, (h, w),
                        md.nodata_value, offset, md.quantification, self.settings, bf.n_overviews)

            arr = blocked(toa_chunk, args, gb.shape, chunk, np.float32)
            data_vars[name] = xr.DataArray(
                arr,
                dims=("y", "x"),
                attrs={"long_name": f"TOA reflectance {name}", "units": "1", "radio_add_offset": offset,
                       "quantification_value": md.quantification, "source_file": bf.display},
            )
        ds = xr.Dataset(data_vars, coords=self._coords(gb))
        ang = self.angles(gb, chunks=chunk, bands=names)
        ds.attrs.update(toa_attrs(md, resolution, ang))
        return ds

    def load_toa(
        self,
        bands: Sequence[str] | None = None,
        resolution: float = 10,
        *,
        chunks: int = 2048,
    ) -> xr.Dataset:
        """Eager :meth:`toa`: numpy-backed bands, at one times the result's memory.

        ``toa(...).compute()`` (or ``.values``) holds every chunk and then concatenates them
        into a new array (dask's final assembly), so its peak is twice the result. Here each
        band is allocated once and every chunk is stored into it as soon as it is read
        (``dask.array.store``, current dask scheduler), so the peak is the result plus the
        chunks in flight. Same values, coordinates and attributes as :meth:`toa`.
        """
        import dask.array as da

        ds = self.toa(bands, resolution, chunks=chunks)
        for name in list(ds.data_vars):
            var = ds[name]
            out = np.empty(var.shape, np.float32)
            da.store(var.data, out, lock=False)
            ds[name] = var.copy(data=out)
        return ds

    def quality(self, bands: Sequence[str] | None = None, resolution: float = 10) -> xr.Dataset:
        """Boolean ``nodata`` (any band no-data) and ``saturation_<band>`` on ``geobox(resolution)``."""
        import dask.array as da

        names = self._select(bands)
        gb = self.geobox(resolution)
        md = self.metadata
        chunk = 2048
        nodata = None
        out: dict[str, xr.DataArray] = {}
        for name in names:
            bf = self.band_file(name)
            row0, col0, step = self._placement(bf, gb)

            def args(r0: int, c0: int, h: int, w: int, bf: BandFile = bf, row0: float = row0,
                     col0: float = col0, step: float = step) -> tuple[Any, ...]:
                return (bf.path, bf.shape, row0 + r0 * step, col0 + c0 * step, step, (h, w),
                        md.nodata_value, md.saturated_value, self.settings, bf.n_overviews)

            arr = blocked(quality_chunk, args, gb.shape, chunk, bool, lead=(2,))
            nodata = arr[0] if nodata is None else (nodata | arr[0])
            out[f"saturation_{name}"] = xr.DataArray(arr[1], dims=("y", "x"))
        if nodata is None:
            nodata = da.zeros(gb.shape, dtype=bool, chunks=chunk)
        out = {"nodata": xr.DataArray(nodata, dims=("y", "x")), **out}
        return xr.Dataset(out, coords=self._coords(gb))

    # ---- angles
    def view_grid(self, bands: Sequence[str] | None = None) -> AngleGrid | None:
        """Viewing angle grid averaged over ``bands`` (default: every band with a grid).

        Zenith: mean; azimuth: circular mean; NaN where no band has data.
        """
        view = self.metadata.view
        names = [band(b).name for b in bands] if bands is not None else list(view)
        grids = [view[n] for n in names if n in view] or list(view.values())
        if not grids:
            return None
        if len(grids) == 1:
            return grids[0]
        z = np.stack([g.zenith for g in grids])
        a = np.deg2rad(np.stack([g.azimuth for g in grids]))
        ok = np.isfinite(z) & np.isfinite(a)
        n = ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            zm = np.where(ok, z, 0.0).sum(axis=0) / n
        am = np.rad2deg(np.arctan2(np.where(ok, np.sin(a), 0).sum(0), np.where(ok, np.cos(a), 0).sum(0))) % 360
        zm[n == 0] = np.nan
        am[n == 0] = np.nan
        return AngleGrid(zm, am, grids[0].geobox)

    def angles(
        self, geobox: GeoBox, chunks: int | None = 2048, *, bands: Sequence[str] | None = None
    ) -> xr.Dataset:
        """``sun_zenith``, ``sun_azimuth``, ``view_zenith``, ``view_azimuth`` (degrees) on ``geobox``.

        Bilinear interpolation of the 5 km grids (nodes outside the swath filled with the
        nearest valid node first; azimuths through sine and cosine). Lazy (dask) when the
        geobox is in the tile's CRS. View angles are the mean over ``bands`` (default all).
        """
        md = self.metadata
        out: dict[str, xr.DataArray] = {}
        for prefix, grid, mean in (
            ("sun", md.sun, (md.mean_sun_zenith, md.mean_sun_azimuth)),
            ("view", self.view_grid(bands), _mean_of(md.mean_view)),
        ):
            if grid is None or not np.isfinite(grid.zenith).any():
                z = np.full(geobox.shape, mean[0], np.float32)
                a = np.full(geobox.shape, mean[1], np.float32)
                out[f"{prefix}_zenith"] = xr.DataArray(z, dims=("y", "x"))
                out[f"{prefix}_azimuth"] = xr.DataArray(a, dims=("y", "x"))
                continue
            arr = _interp_grid(grid, geobox, chunks)
            out[f"{prefix}_zenith"] = xr.DataArray(arr[0], dims=("y", "x"), attrs={"units": "degree"})
            out[f"{prefix}_azimuth"] = xr.DataArray(arr[1], dims=("y", "x"), attrs={"units": "degree"})
        return xr.Dataset(out, coords=self._coords(geobox))

    def __repr__(self) -> str:
        md = self.metadata
        return f"SafeProduct({md.product_id!r}, tile={md.tile_id!r}, bands={len(self.bands)})"


def _mean_of(mean_view: Any) -> tuple[float, float]:
    if not mean_view:
        return (math.nan, math.nan)
    z = float(np.mean([v[0] for v in mean_view.values()]))
    a = np.deg2rad([v[1] for v in mean_view.values()])
    return z, float(np.rad2deg(np.arctan2(np.sin(a).sum(), np.cos(a).sum())) % 360)


def _interp_grid(grid: AngleGrid, geobox: GeoBox, chunks: int | None) -> Any:
    """(2, ny, nx) array of interpolated zenith/azimuth; dask when geobox shares the grid CRS."""
    g = grid.geobox.affine
    if geobox.crs == grid.geobox.crs and geobox.affine.b == 0 and geobox.affine.d == 0:
        t = geobox.affine
        ny, nx = geobox.shape
        ys = t.f + (np.arange(ny) + 0.5) * t.e
        xs = t.c + (np.arange(nx) + 0.5) * t.a
        row_pos = (ys - g.f) / g.e - 0.5
        col_pos = (xs - g.c) / g.a - 0.5
        chunk = int(chunks) if chunks else max(geobox.shape)

        def args(r0: int, c0: int, h: int, w: int) -> tuple[Any, ...]:
            return (grid.zenith, grid.azimuth, row_pos[r0 : r0 + h], col_pos[c0 : c0 + w])

        return blocked(angle_chunk, args, geobox.shape, chunk, np.float32, lead=(2,))
    # another CRS: transform pixel centres, interpolate eagerly
    from pyproj import Transformer
    from scipy import ndimage

    from l2a.io.safe_read import fill_nan_nearest

    assert geobox.crs is not None and grid.geobox.crs is not None
    tr = Transformer.from_crs(geobox.crs.to_wkt(), grid.geobox.crs.to_wkt(), always_xy=True)
    ny, nx = geobox.shape
    jj, ii = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    x, y = geobox.affine * (jj, ii)
    gx, gy = tr.transform(x, y)
    cpos = (np.asarray(gx) - g.c) / g.a - 0.5
    rpos = (np.asarray(gy) - g.f) / g.e - 0.5
    coords = np.stack([rpos, cpos])
    z = ndimage.map_coordinates(fill_nan_nearest(grid.zenith), coords, order=1, mode="nearest")
    a = np.deg2rad(fill_nan_nearest(grid.azimuth))
    s = ndimage.map_coordinates(np.sin(a), coords, order=1, mode="nearest")
    c = ndimage.map_coordinates(np.cos(a), coords, order=1, mode="nearest")
    return np.stack([z, np.rad2deg(np.arctan2(s, c)) % 360]).astype(np.float32)


# --------------------------------------------------------------------------- opening
def _normalise_tile(tile: str) -> str:
    t = tile.strip().upper()
    return t[1:] if t.startswith("T") and len(t) == 6 else t


def open_safe(
    path: str | Path, tile: str | None = None, *, settings: ReadSettings = DEFAULT_READ_SETTINGS
) -> SafeProduct:
    """Open a SAFE L1C product (folder or ``.zip``) and pick one granule.

    Parameters
    ----------
    path : str or Path
        ``*.SAFE`` folder, or a zip holding one.
    tile : str, optional
        Tile id (``"T53HPA"`` or ``"53HPA"``), needed when the product holds several tiles
        (old PDMC format).
    settings : ReadSettings
        Resampling settings.

    Raises
    ------
    l2a.errors.InputError
        On any problem with the input; the message names the file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder")
    c: _Container
    if p.is_dir():
        c = _Folder(p)
    elif zipfile.is_zipfile(p) or p.suffix.lower() == ".zip":
        c = _Zip(p)
    else:
        raise InputError(p, "not a SAFE folder nor a zip")
    top = c.children("")
    mtd = [n for n in top if _PRODUCT_MTD.match(n)]
    if not mtd:
        if any(_L2A_MTD.match(n) for n in top):
            raise InputError(p, "this is a Level-2A product, not a Level-1C product")
        raise InputError(p, "no MTD_MSIL1C.xml at the top of the product: not a Sentinel-2 L1C SAFE")
    product = parse_product_metadata(c.read(mtd[0]), c.display(mtd[0]))
    if product.level != "L1C":
        raise InputError(c.display(mtd[0]), "this is a Level-2A product, not a Level-1C product")
    granules = [g for g in c.children("GRANULE") if c.children(f"GRANULE/{g}")]
    if not granules:
        raise InputError(c.display("GRANULE"), "no granule folder in the product")
    by_tile: dict[str, list[str]] = {}
    for g in granules:
        m = _TILE_IN_NAME.search(g)
        by_tile.setdefault(m.group(1) if m else "", []).append(g)
    available = sorted(t for t in by_tile if t)
    if tile is None:
        if len(granules) > 1:
            raise InputError(
                p, f"the product holds {len(granules)} tiles ({', '.join(available)}): choose one with --tile (tile= in Python)"
            )
        gdir = granules[0]
    else:
        want = _normalise_tile(tile)
        if want not in by_tile:
            raise InputError(p, f"tile {tile} is not in the product (available: {', '.join(available) or 'none'})")
        if len(by_tile[want]) > 1:
            raise InputError(p, f"tile {want} appears in {len(by_tile[want])} granules: {by_tile[want]}")
        gdir = by_tile[want][0]
    gpath = f"GRANULE/{gdir}"
    tl = [n for n in c.children(gpath) if _TILE_MTD.match(n)]
    if not tl:
        raise InputError(
            c.display(f"{gpath}/MTD_TL.xml"), "tile metadata MTD_TL.xml is missing: the product is incomplete"
        )
    tile_info = parse_tile_metadata(c.read(f"{gpath}/{tl[0]}"), c.display(f"{gpath}/{tl[0]}"))
    if tile is not None and tile_info.tile_id != _normalise_tile(tile):
        raise InputError(c.display(f"{gpath}/{tl[0]}"), f"granule metadata is for tile {tile_info.tile_id}, not {tile}")
    return SafeProduct(c, product, tile_info, gpath, str(p), settings)
