"""Bit layout of the CLM and MG2 masks (PRODUCT_FORMAT.md; bit 0 is the least significant)."""

from __future__ import annotations

from typing import Final

import numpy as np

# CLM
CLM_ALL_CLOUDS_AND_SHADOWS: Final = 1 << 0
CLM_ALL_CLOUDS: Final = 1 << 1
CLM_THRESHOLD: Final = 1 << 2
CLM_MULTITEMPORAL: Final = 1 << 3
CLM_EXTENSION: Final = 1 << 4
CLM_SHADOW_INSIDE: Final = 1 << 5
CLM_SHADOW_OUTSIDE: Final = 1 << 6
CLM_CIRRUS: Final = 1 << 7
#: The cloud tests (their OR is bit 1 together with the extension).
CLM_TESTS: Final = CLM_THRESHOLD | CLM_MULTITEMPORAL | CLM_CIRRUS
CLM_SHADOWS: Final = CLM_SHADOW_INSIDE | CLM_SHADOW_OUTSIDE

# MG2
MG2_WATER: Final = 1 << 0
MG2_CLOUD: Final = 1 << 1
MG2_SNOW: Final = 1 << 2
MG2_SHADOW: Final = 1 << 3
MG2_HIDDEN_FACES: Final = 1 << 4
MG2_TOPO_SHADOW: Final = 1 << 5
MG2_SUN_TOO_LOW: Final = 1 << 6
MG2_TANGENT_SUN: Final = 1 << 7

#: Terrain dataset variables -> MG2 bit.
MG2_TERRAIN: Final[dict[str, int]] = {
    "hidden_faces": MG2_HIDDEN_FACES,
    "cast_shadow": MG2_TOPO_SHADOW,
    "sun_too_low": MG2_SUN_TOO_LOW,
    "tangent_sun": MG2_TANGENT_SUN,
}

#: Human-readable names (for STAC ``classification:bitfields`` and docs).
CLM_BIT_NAMES: Final[dict[int, str]] = {
    0: "all clouds and shadows", 1: "all clouds", 2: "reflectance threshold test",
    3: "multi-temporal reflectance variation test", 4: "extension (dilation)",
    5: "shadows of clouds inside the image", 6: "shadows of clouds outside the image", 7: "cirrus",
}
MG2_BIT_NAMES: Final[dict[int, str]] = {
    0: "water", 1: "all clouds", 2: "snow", 3: "cloud shadows", 4: "hidden faces",
    5: "topographic shadows", 6: "sun too low", 7: "tangent sun",
}


def finish_clm(clm: np.ndarray) -> np.ndarray:
    """Set the summary bits 1 (all clouds) and 0 (all clouds and shadows) from bits 2-7, in place."""
    clm &= np.uint8(0xFC)
    clouds = (clm & np.uint8(CLM_TESTS | CLM_EXTENSION)) != 0
    clm |= clouds.view(np.uint8) << 1
    anyc = (clm & np.uint8(CLM_ALL_CLOUDS | CLM_SHADOWS)) != 0
    clm |= anyc.view(np.uint8)
    return clm


def finish_mg2(mg2: np.ndarray, clm: np.ndarray) -> np.ndarray:
    """Copy the cloud (bit 1) and shadow (bit 3) summaries of ``clm`` into ``mg2``, in place."""
    mg2 &= np.uint8(~(MG2_CLOUD | MG2_SHADOW) & 0xFF)
    mg2 |= clm & np.uint8(CLM_ALL_CLOUDS)
    mg2 |= ((clm & np.uint8(CLM_SHADOWS)) != 0).view(np.uint8) << 3
    return mg2
