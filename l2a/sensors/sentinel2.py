"""Sentinel-2 MSI band table and sensor constants.

Everything here is plain data: no I/O, no imports of ours. Wavelengths are the
S2A centre wavelengths and bandwidths of ESA's spectral response document
(COPE-GSEG-EOPG-TN-15-0007), in nanometres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Band:
    """One MSI spectral band.

    Attributes
    ----------
    name : str
        ESA band name, ``"B01"`` … ``"B12"``, ``"B8A"``.
    band_id : int
        The ``bandId`` used in ``MTD_MSIL1C.xml``/``MTD_TL.xml`` (0 … 12).
    resolution : int
        Native ground sampling distance in metres (10, 20 or 60).
    center_wavelength : float
        Centre wavelength in micrometres (STAC ``eo:bands`` convention).
    full_width_half_max : float
        Bandwidth in micrometres.
    common_name : str
        STAC ``eo:common_name``.
    """

    name: str
    band_id: int
    resolution: int
    center_wavelength: float
    full_width_half_max: float
    common_name: str

    @property
    def muscate_name(self) -> str:
        """Name used in MUSCATE file names (``B2``, ``B8A``, ``B11``)."""
        return "B8A" if self.name == "B8A" else f"B{int(self.name[1:])}"


BANDS: Final[tuple[Band, ...]] = (
    Band("B01", 0, 60, 0.4427, 0.021, "coastal"),
    Band("B02", 1, 10, 0.4924, 0.066, "blue"),
    Band("B03", 2, 10, 0.5598, 0.036, "green"),
    Band("B04", 3, 10, 0.6646, 0.031, "red"),
    Band("B05", 4, 20, 0.7041, 0.015, "rededge1"),
    Band("B06", 5, 20, 0.7405, 0.015, "rededge2"),
    Band("B07", 6, 20, 0.7828, 0.020, "rededge3"),
    Band("B08", 7, 10, 0.8328, 0.106, "nir"),
    Band("B8A", 8, 20, 0.8647, 0.021, "nir08"),
    Band("B09", 9, 60, 0.9451, 0.020, "nir09"),
    Band("B10", 10, 60, 1.3735, 0.031, "cirrus"),
    Band("B11", 11, 20, 1.6137, 0.091, "swir16"),
    Band("B12", 12, 20, 2.2024, 0.175, "swir22"),
)

BAND_NAMES: Final[tuple[str, ...]] = tuple(b.name for b in BANDS)
BY_NAME: Final[dict[str, Band]] = {b.name: b for b in BANDS}
BY_ID: Final[dict[int, Band]] = {b.band_id: b for b in BANDS}

#: Native resolutions of the MSI (metres).
NATIVE_RESOLUTIONS: Final[tuple[int, ...]] = (10, 20, 60)
#: Default coarse working resolution of the multi-temporal core (metres).
DEFAULT_COARSE_RESOLUTION: Final[int] = 240

#: MUSCATE resolution groups: R1 = 10 m, R2 = 20 m.
MUSCATE_R1: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B08")
MUSCATE_R2: Final[tuple[str, ...]] = ("B05", "B06", "B07", "B8A", "B11", "B12")
#: The ten bands of a MUSCATE L2A product (SRE/FRE).
MUSCATE_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")

#: Sentinel-2 platforms known to the processor.
PLATFORMS: Final[tuple[str, ...]] = ("S2A", "S2B", "S2C", "S2D")

#: Tile size in metres (109.8 km) and the 10 m raster size.
TILE_SIZE_M: Final[int] = 109_800
TILE_PIXELS_10M: Final[int] = 10_980


def band(name: str) -> Band:
    """Return the :class:`Band` called ``name`` (``"B2"`` and ``"B02"`` both work)."""
    key = name.upper()
    if key not in BY_NAME and key.startswith("B") and key[1:].isdigit():
        key = f"B{int(key[1:]):02d}"
    try:
        return BY_NAME[key]
    except KeyError:
        raise KeyError(f"unknown Sentinel-2 band {name!r}; expected one of {', '.join(BAND_NAMES)}") from None


def bands_at(resolution: int) -> tuple[str, ...]:
    """Bands whose native resolution is ``resolution`` metres."""
    return tuple(b.name for b in BANDS if b.resolution == resolution)
