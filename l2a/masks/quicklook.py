"""RGB quicklook of a date with mask outlines (Theia convention plus a shadow colour)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Final

import numpy as np
import xarray as xr
from scipy import ndimage as ndi

#: Outline colours (R, G, B): clouds green, snow pink, water blue as on Theia quicklooks;
#: cloud shadows yellow (our choice, the fourth colour).
CLOUD_COLOUR: Final = (0, 255, 0)
SNOW_COLOUR: Final = (255, 105, 180)
WATER_COLOUR: Final = (0, 0, 255)
SHADOW_COLOUR: Final = (255, 255, 0)
#: Reflectance shown as white (MAJA quicklook GIPP Max_Ref 0.25 for B4/B3/B2).
MAX_REFLECTANCE: Final = 0.25


def outline(mask: np.ndarray) -> np.ndarray:
    """Inner boundary of ``mask``: set pixels with at least one unset 4-neighbour."""
    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    return mask & ~ndi.binary_erosion(mask, border_value=1)


def render(
    toa: xr.Dataset,
    masks: xr.Dataset | None = None,
    *,
    bands: tuple[str, str, str] = ("B04", "B03", "B02"),
    max_reflectance: float = MAX_REFLECTANCE,
    max_size: int = 1024,
) -> np.ndarray:
    """RGB uint8 image (rows, cols, 3) with the outlines drawn; subsampled to ``max_size``."""
    h, w = toa.sizes["y"], toa.sizes["x"]
    step = max(1, int(np.ceil(max(h, w) / max_size)))
    rgb = np.stack([np.asarray(toa[b].values[::step, ::step], np.float32) for b in bands], axis=-1)
    img = (np.clip(np.nan_to_num(rgb, nan=0.0) / max_reflectance, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if masks is not None:
        for var, colour in (("water", WATER_COLOUR), ("snow", SNOW_COLOUR), ("cloud_shadow", SHADOW_COLOUR), ("cloud", CLOUD_COLOUR)):
            if var in masks:
                m = np.asarray(masks[var].values[::step, ::step], bool)
                img[outline(m)] = colour
    return img


def quicklook(
    toa: xr.Dataset,
    masks: xr.Dataset | None,
    path: str | Path,
    *,
    bands: tuple[str, str, str] = ("B04", "B03", "B02"),
    max_reflectance: float = MAX_REFLECTANCE,
    max_size: int = 1024,
) -> Path:
    """Write an RGB quicklook with mask outlines to ``path`` (PNG, or JPEG for .jpg/.jpeg).

    Outlines: clouds green ``(0, 255, 0)``, snow pink ``(255, 105, 180)``, water blue
    ``(0, 0, 255)``, cloud shadows yellow ``(255, 255, 0)``; clouds are drawn last (on top).
    The file is written under a temporary name and renamed into place.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = render(toa, masks, bands=bands, max_reflectance=max_reflectance, max_size=max_size)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    fd, tmp = tempfile.mkstemp(prefix=".ql-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(img, "RGB").save(tmp, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
