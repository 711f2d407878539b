"""Sentinel-2 tile grids computed from the tile id alone.

A Sentinel-2 tile id such as ``31TCJ`` names a UTM zone (``31``), a latitude band (``T``)
and a 100 km MGRS square (column ``C``, row ``J``). The tile is a 109.8 km square whose
upper-left corner is the north-west corner of that MGRS square, moved outwards onto the
60 m lattice of the UTM coordinates (so that the 10, 20 and 60 m grids share their corner):

- ``ULX = floor(west / 60) * 60`` (the corner is on or up to 40 m west of the square's edge),
- ``ULY = ceil(north / 60) * 60`` with ``north`` the *true* northing (negative in the
  southern hemisphere; the corner is on or up to 40 m north of the square's edge).

This rule was checked against the geoposition written in every genuine ``MTD_TL.xml`` of
the sample data (``tests/test_grid.py``), in both hemispheres and on both sides of the
false easting (e.g. 31TCJ: (300000, 4900020); 31TDH: (399960, 4800000); 53HLA:
(300000, 6100000) in EPSG:32753).

MGRS lettering (the "AA" scheme used by Sentinel-2, WGS84):

- column letters ``ABCDEFGHJKLMNPQRSTUVWXYZ`` (no I, O), 8 per zone, the set repeating every
  3 zones: zone 1 uses A-H, zone 2 J-R, zone 3 S-Z; letter ``k`` of the set is the square whose
  west edge is at easting ``k * 100 km`` (k = 1 … 8);
- row letters ``ABCDEFGHJKLMNPQRSTUV`` (20 letters) cycle every 2000 km of northing, starting
  at the equator with ``A`` in odd zones and ``F`` in even zones; the latitude band (``C`` …
  ``X``, 8 degrees each, ``X`` 12) tells which 2000 km cycle is meant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.errors import InputError

#: Side of a Sentinel-2 tile in metres (109.8 km).
TILE_SIZE_M: Final[float] = 109_800.0
#: Lattice (metres) on which tile corners lie: the coarsest native resolution.
CORNER_LATTICE_M: Final[float] = 60.0
#: Size of an MGRS grid square (metres).
MGRS_SQUARE_M: Final[float] = 100_000.0
#: Length of one cycle of the 20 MGRS row letters (metres of northing).
MGRS_ROW_CYCLE_M: Final[float] = 2_000_000.0

_COLUMN_LETTERS: Final[str] = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_ROW_LETTERS: Final[str] = "ABCDEFGHJKLMNPQRSTUV"
_BAND_LETTERS: Final[str] = "CDEFGHJKLMNPQRSTUVWX"


@dataclass(frozen=True)
class TileId:
    """A parsed Sentinel-2 / MGRS tile id.

    Attributes
    ----------
    zone : int
        UTM zone, 1 … 60.
    band : str
        Latitude band letter, ``C`` … ``X``.
    column : str
        100 km square column letter.
    row : str
        100 km square row letter.
    """

    zone: int
    band: str
    column: str
    row: str

    @property
    def name(self) -> str:
        """Canonical id without the leading ``T`` (``"31TCJ"``)."""
        return f"{self.zone:02d}{self.band}{self.column}{self.row}"

    @property
    def south(self) -> bool:
        """True for tiles of the southern hemisphere (bands C … M)."""
        return self.band < "N"

    @property
    def epsg(self) -> int:
        """EPSG code of the tile's UTM projection on WGS84."""
        return (32700 if self.south else 32600) + self.zone


def parse_tile_id(tile_id: str) -> TileId:
    """Parse ``"T31TCJ"``, ``"31TCJ"`` or ``"1LAC"`` into a :class:`TileId`.

    Raises
    ------
    l2a.errors.InputError
        When the id is not a valid Sentinel-2 tile id.
    """
    text = tile_id.strip().upper()
    if text.startswith("T") and len(text) >= 5 and text[1].isdigit():
        text = text[1:]
    digits = len(text) - 3
    if digits not in (1, 2) or not text[:digits].isdigit():
        raise InputError(tile_id, "not a Sentinel-2 tile id: expected e.g. 'T31TCJ' or '31TCJ'")
    zone = int(text[:digits])
    band, column, row = text[digits], text[digits + 1], text[digits + 2]
    if not 1 <= zone <= 60:
        raise InputError(tile_id, f"UTM zone {zone} out of range 1-60")
    if band not in _BAND_LETTERS:
        raise InputError(tile_id, f"latitude band {band!r} is not one of {_BAND_LETTERS}")
    if column not in _column_set(zone):
        raise InputError(
            tile_id, f"column letter {column!r} does not exist in UTM zone {zone} (expected one of {_column_set(zone)})"
        )
    if row not in _ROW_LETTERS:
        raise InputError(tile_id, f"row letter {row!r} is not one of {_ROW_LETTERS}")
    return TileId(zone, band, column, row)


def _column_set(zone: int) -> str:
    start = ((zone - 1) % 3) * 8
    return _COLUMN_LETTERS[start : start + 8]


@lru_cache(maxsize=64)
def _cm_northing(zone: int, lat: float) -> float:
    """True northing (m, negative south) of latitude ``lat`` on the zone's central meridian."""
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{32600 + zone}", always_xy=True)
    _, y = tr.transform(zone * 6.0 - 183.0, lat)
    return float(y)


def square_origin(tile: TileId) -> tuple[float, float]:
    """West edge easting and north edge *true* northing (m) of the tile's 100 km square."""
    west = (_column_set(tile.zone).index(tile.column) + 1) * MGRS_SQUARE_M
    row_index = (_ROW_LETTERS.index(tile.row) - (5 if tile.zone % 2 == 0 else 0)) % len(_ROW_LETTERS)
    # latitude band -> northing range on the central meridian -> the right 2000 km cycle
    b = _BAND_LETTERS.index(tile.band)
    lat_s = -80.0 + 8.0 * b
    lat_n = 84.0 if tile.band == "X" else lat_s + 8.0
    mid = 0.5 * (_cm_northing(tile.zone, lat_s) + _cm_northing(tile.zone, lat_n))
    base = row_index * MGRS_SQUARE_M + 0.5 * MGRS_SQUARE_M  # square centre in the first cycle
    k = round((mid - base) / MGRS_ROW_CYCLE_M)
    south_edge = row_index * MGRS_SQUARE_M + k * MGRS_ROW_CYCLE_M
    return west, south_edge + MGRS_SQUARE_M


def tile_crs(tile_id: str) -> str:
    """``"EPSG:326zz"`` (north) or ``"EPSG:327zz"`` (south) for a tile id."""
    return f"EPSG:{parse_tile_id(tile_id).epsg}"


def tile_origin(tile_id: str) -> tuple[float, float]:
    """Upper-left corner (ULX, ULY) of the tile in its UTM CRS (metres, false northing included)."""
    tile = parse_tile_id(tile_id)
    west, north = square_origin(tile)
    ulx = math.floor(west / CORNER_LATTICE_M) * CORNER_LATTICE_M
    uly = math.ceil(north / CORNER_LATTICE_M) * CORNER_LATTICE_M
    if tile.south:
        uly += 10_000_000.0
    return ulx, uly


def tile_shape(resolution: float) -> int:
    """Number of rows (= columns) of a tile grid at ``resolution`` metres: ``ceil(109800 / res)``."""
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    return math.ceil(TILE_SIZE_M / resolution - 1e-9)


def tile_geobox(tile_id: str, resolution: float) -> GeoBox:
    """The grid of a tile at ``resolution`` metres.

    Parameters
    ----------
    tile_id : str
        ``"T31TCJ"`` or ``"31TCJ"``.
    resolution : float
        Pixel size in metres. 10, 20 and 60 give the native grids (10980, 5490, 1830 px);
        any other value gives the grid with the same upper-left corner and
        ``ceil(109800 / resolution)`` pixels a side (458 at 240 m), which covers the tile
        (its last row/column may stick out by less than one pixel).

    Returns
    -------
    odc.geo.geobox.GeoBox
    """
    ulx, uly = tile_origin(tile_id)
    n = tile_shape(resolution)
    res = float(resolution)
    return GeoBox((n, n), Affine(res, 0.0, ulx, 0.0, -res, uly), tile_crs(tile_id))
