"""Human and machine summaries of :class:`l2a.io.l1c.L1CMetadata` (used by ``l2a info``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox

from l2a.io.l1c import AngleGrid, L1CMetadata


def _num(x: float | None, ndigits: int = 6) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, ndigits)


def _grid(gb: GeoBox) -> dict[str, Any]:
    t = gb.affine
    return {
        "shape": [int(gb.shape[0]), int(gb.shape[1])],
        "transform": [float(v) for v in (t.a, t.b, t.c, t.d, t.e, t.f)],
        "crs": str(gb.crs),
    }


def _angle_grid(g: AngleGrid) -> dict[str, Any]:
    finite = np.isfinite(g.zenith)
    return {
        **_grid(g.geobox),
        "valid_nodes": int(finite.sum()),
        "zenith_min": _num(float(np.min(g.zenith[finite]))) if finite.any() else None,
        "zenith_max": _num(float(np.max(g.zenith[finite]))) if finite.any() else None,
    }


def metadata_summary(md: L1CMetadata) -> dict[str, Any]:
    """A JSON-serialisable summary of ``md`` (ids, ISO times, radiometry, angles, grids)."""
    return {
        "product_id": md.product_id,
        "platform": md.platform,
        "tile_id": md.tile_id,
        "sensing_time": md.sensing_time.isoformat().replace("+00:00", "Z"),
        "relative_orbit": md.relative_orbit,
        "baseline": md.baseline,
        "crs": md.crs,
        "cloud_cover": _num(md.cloud_cover, 4),
        "quantification": _num(md.quantification),
        "radio_offsets": {b: _num(v) for b, v in md.radio_offsets.items()},
        "solar_irradiance": {b: _num(v) for b, v in md.solar_irradiance.items()},
        "earth_sun_u": _num(md.earth_sun_u, 10),
        "nodata_value": int(md.nodata_value),
        "saturated_value": int(md.saturated_value),
        "mean_sun_zenith": _num(md.mean_sun_zenith),
        "mean_sun_azimuth": _num(md.mean_sun_azimuth),
        "mean_view": {b: [_num(z), _num(a)] for b, (z, a) in md.mean_view.items()},
        "grids": {str(r): _grid(gb) for r, gb in sorted(md.geoboxes.items())},
        "sun_grid": _angle_grid(md.sun) if md.sun is not None else None,
        "view_grids": {b: _angle_grid(g) for b, g in md.view.items()},
        "footprints": sorted(md.footprints),
        "quality_masks": sorted(md.quality_masks),
        "source": md.source,
        "extra": {k: v for k, v in md.extra.items() if isinstance(v, str | int | float | bool | type(None))},
    }


def render_summary(summary: dict[str, Any], console: Any) -> None:
    """Print ``summary`` (from :func:`metadata_summary`) as rich tables on ``console``."""
    from rich.table import Table

    head = Table(title=f"{summary.get('product_id', '')}", show_header=False, title_justify="left")
    head.add_column("field", style="bold cyan")
    head.add_column("value")
    for key in (
        "platform", "tile_id", "sensing_time", "relative_orbit", "baseline", "crs", "cloud_cover",
        "quantification", "earth_sun_u", "nodata_value", "saturated_value",
        "mean_sun_zenith", "mean_sun_azimuth", "source",
    ):
        head.add_row(key, "" if summary.get(key) is None else str(summary.get(key)))
    grids = summary.get("grids", {})
    head.add_row("grids", ", ".join(f"{r} m: {g['shape'][0]}x{g['shape'][1]}" for r, g in grids.items()))
    sun = summary.get("sun_grid")
    if sun:
        head.add_row("sun grid", f"{sun['shape'][0]}x{sun['shape'][1]} nodes, zenith {sun['zenith_min']}..{sun['zenith_max']}")
    head.add_row("footprints", ", ".join(summary.get("footprints", [])) or "none")
    head.add_row("quality masks", str(len(summary.get("quality_masks", []))))
    console.print(head)

    bands = Table(title="Bands", title_justify="left")
    for col in ("band", "offset", "irradiance", "view zenith", "view azimuth", "view grid"):
        bands.add_column(col, justify="right" if col != "band" else "left")
    names = sorted(set(summary.get("radio_offsets", {})) | set(summary.get("mean_view", {})))
    for b in names:
        mv = summary.get("mean_view", {}).get(b, [None, None])
        vg = summary.get("view_grids", {}).get(b)
        bands.add_row(
            b,
            str(summary.get("radio_offsets", {}).get(b, "")),
            str(summary.get("solar_irradiance", {}).get(b, "")),
            "" if mv[0] is None else f"{mv[0]:.3f}",
            "" if mv[1] is None else f"{mv[1]:.3f}",
            "" if vg is None else f"{vg['valid_nodes']} nodes",
        )
    console.print(bands)
