"""Terrain kernels and the terrain() facade on constructed surfaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import wrap_xr

from l2a.dem import terrain
from l2a.errors import InputError
from l2a.kernels.terrain import (
    TerrainSettings,
    block_mean,
    cast_shadow,
    cos_incidence,
    horizon_sky_view,
    slope_aspect,
    terrain_flags,
)


def _grid(shape: tuple[int, int], dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Easting and northing (m) of pixel centres, origin at the upper-left corner."""
    r, c = np.meshgrid(np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5, indexing="ij")
    return c * dx, -r * dy


@pytest.mark.parametrize(
    "a, b, aspect",
    [
        (0.5, 0.0, 270.0),  # rises to the east: faces west
        (-0.5, 0.0, 90.0),
        (0.0, 0.5, 180.0),  # rises to the north: faces south
        (0.0, -0.5, 0.0),
        (-0.3, -0.3, 45.0),  # falls to the north-east
        (0.2, -0.6, math.degrees(math.atan2(-0.2, 0.6)) % 360),
    ],
)
@pytest.mark.parametrize("dx, dy", [(10.0, 10.0), (20.0, 10.0)])
def test_plane_slope_and_aspect_everywhere(
    a: float, b: float, aspect: float, dx: float, dy: float
) -> None:
    e, n = _grid((30, 40), dx, dy)
    z = a * e + b * n + 100.0
    slope, asp = slope_aspect(z, dx, dy)
    np.testing.assert_allclose(slope, math.degrees(math.atan(math.hypot(a, b))), atol=1e-4)
    diff = (asp - aspect + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-3)


def test_flat_ground_has_zero_slope_and_aspect() -> None:
    slope, asp = slope_aspect(np.full((8, 9), 12.5), 10.0, 10.0)
    assert (slope == 0).all() and (asp == 0).all()


def test_nan_propagates_to_neighbours_only() -> None:
    z = np.zeros((9, 9))
    z[4, 4] = np.nan
    slope, _ = slope_aspect(z, 10.0, 10.0)
    assert np.isnan(slope[3:6, 3:6]).all()
    assert np.isfinite(slope).sum() == 81 - 9


def _trapezoid_ridge(
    shape: tuple[int, int],
    dx: float,
    dy: float,
    azimuth: float,
    height: float,
    plateau: float,
    side: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A straight ridge across the image, perpendicular to the sun azimuth, through its centre.

    Returns the DEM, ``u`` (signed distance along the light's travel, m) and ``v`` (along the ridge).
    """
    e, n = _grid(shape, dx, dy)
    e0, n0 = e.mean(), n.mean()
    az = math.radians(azimuth)
    light = (-math.sin(az), -math.cos(az))
    u = (e - e0) * light[0] + (n - n0) * light[1]
    v = -(e - e0) * light[1] + (n - n0) * light[0]
    z = height * np.clip(1.0 - (np.abs(u) - plateau) / side, 0.0, 1.0)
    return z, u, v


@pytest.mark.parametrize("azimuth", [0.0, 30.0, 90.0, 135.0, 200.0, 250.0, 315.0])
@pytest.mark.parametrize("elevation", [20.0, 45.0, 70.0])
def test_ridge_shadow_has_the_trigonometric_length(azimuth: float, elevation: float) -> None:
    dx = dy = 10.0
    height, plateau, side = 100.0, 40.0, 20.0
    z, u, v = _trapezoid_ridge((200, 220), dx, dy, azimuth, height, plateau, side)
    shadow = cast_shadow(z, dx, dy, 90.0 - elevation, azimuth)
    length = height / math.tan(math.radians(elevation))
    central = np.abs(v) < 300.0
    lee = central & (u > plateau)
    # the shadow ends within one pixel of the trigonometric length, measured from the
    # plateau's lee edge; it starts within one pixel (diagonal) of that edge (the DEM
    # samples the edge at pixel centres only)
    pixel = math.hypot(dx, dy)
    assert (u[lee & shadow] <= plateau + length + dx).all()
    unlit_gap = u[lee & ~shadow]
    assert ((unlit_gap >= plateau + length - dx) | (unlit_gap < plateau + pixel)).all()
    assert shadow[central & (u > plateau + pixel) & (u < plateau + length - dx)].all()
    assert not shadow[central & (u <= plateau)].any()
    assert (lee & shadow).sum() > 0


def test_ridge_shadow_with_rectangular_pixels() -> None:
    dx, dy = 20.0, 10.0
    for azimuth in (60.0, 160.0, 290.0):
        z, u, v = _trapezoid_ridge((300, 150), dx, dy, azimuth, 120.0, 60.0, 30.0)
        shadow = cast_shadow(z, dx, dy, 50.0, azimuth)
        length = 120.0 / math.tan(math.radians(40.0))
        lee = (np.abs(v) < 300.0) & (u > 60.0)
        assert (u[lee & shadow] <= 60.0 + length + dx).all()
        assert shadow[lee & (u > 60.0 + math.hypot(dx, dy)) & (u < 60.0 + length - dx)].all()
        assert not shadow[lee & (u > 60.0 + length + dx)].any()


def test_no_shadow_on_a_plane_facing_the_sun_and_full_shadow_below_horizon() -> None:
    _e, n = _grid((50, 50), 10.0, 10.0)
    z = 0.8 * n  # rises to the north, faces south
    assert not cast_shadow(z, 10.0, 10.0, 60.0, 180.0).any()
    # facing away from a sun lower than the slope: self-shadowed
    steep = cast_shadow(z, 10.0, 10.0, 60.0, 0.0)  # slope 38.7 deg > sun elevation 30 deg
    assert steep[2:, :].all()
    assert cast_shadow(np.zeros((5, 5)), 10.0, 10.0, 91.0, 0.0).all()


def _facet(slope: float, aspect: float) -> np.ndarray:
    """Plane DEM with the given slope and aspect (degrees) on a 10 m grid."""
    e, n = _grid((12, 12), 10.0, 10.0)
    g = math.tan(math.radians(slope))
    a = math.radians(aspect)
    return -g * (math.sin(a) * e + math.cos(a) * n) + 500.0


def test_incidence_flags_on_facets() -> None:
    cfg = TerrainSettings()
    # sun zenith 60 from the south; facet facing north: incidence = 60 + slope
    for slope, tgs, stl in [
        (20.0, False, False),
        (28.0, True, True),
        (30.0, True, True),
        (24.0, False, False),
    ]:
        out = terrain_flags(_facet(slope, 0.0), 10.0, 10.0, 60.0, 180.0, settings=cfg)
        assert bool(out["tangent_sun"].all()) is tgs, slope
        assert bool(out["sun_too_low"].all()) is stl, slope
        assert not out["hidden_faces"].any()
    # facing the sun: incidence = 60 - slope, no flag
    out = terrain_flags(_facet(40.0, 180.0), 10.0, 10.0, 60.0, 180.0, settings=cfg)
    assert not (out["tangent_sun"].any() or out["sun_too_low"].any() or out["cast_shadow"].any())
    # the whole scene is flagged when the sun is too low
    low = terrain_flags(_facet(0.0, 0.0), 10.0, 10.0, 86.0, 180.0, settings=cfg)
    assert low["sun_too_low"].all()


def test_hidden_faces() -> None:
    # view from the east at 40 deg zenith: a 60 deg facet facing west turns its back
    hidden = terrain_flags(_facet(60.0, 270.0), 10.0, 10.0, 30.0, 180.0, 40.0, 90.0)["hidden_faces"]
    assert hidden.all()
    seen = terrain_flags(_facet(60.0, 90.0), 10.0, 10.0, 30.0, 180.0, 40.0, 90.0)["hidden_faces"]
    assert not seen.any()
    assert cos_incidence(np.array(60.0), np.array(270.0), 40.0, 90.0) < 0


def test_sky_view_and_settings_switch() -> None:
    flat = terrain_flags(np.zeros((6, 6)), 10.0, 10.0, 30.0, 180.0)
    np.testing.assert_allclose(flat["sky_view"], 1.0)
    steep = terrain_flags(_facet(60.0, 0.0), 10.0, 10.0, 30.0, 180.0)
    np.testing.assert_allclose(steep["sky_view"], 0.75, atol=1e-5)
    off = terrain_flags(
        np.zeros((6, 6)), 10.0, 10.0, 30.0, 180.0, settings=TerrainSettings(compute_sky_view=False)
    )
    assert "sky_view" not in off


def test_block_mean_ignores_nan() -> None:
    v = np.arange(16, dtype=float).reshape(4, 4)
    v[0, 0] = np.nan
    out = block_mean(v, 2)
    assert out[0, 0] == pytest.approx((1 + 4 + 5) / 3)
    assert np.isnan(block_mean(np.full((2, 2), np.nan), 2)).all()
    with pytest.raises(ValueError, match="multiple"):
        block_mean(np.zeros((3, 4)), 2)


def _utm_da(z: np.ndarray, res: float = 20.0) -> xr.DataArray:
    gb = GeoBox(z.shape, Affine(res, 0, 500_000.0, 0, -res, 5_000_000.0), "EPSG:32631")
    return wrap_xr(z.astype(np.float32), gb)


def test_terrain_dataset_convention() -> None:
    z, _, _ = _trapezoid_ridge((60, 70), 20.0, 20.0, 150.0, 200.0, 40.0, 40.0)
    elev = _utm_da(z)
    sun_zenith = xr.full_like(elev, 50.0, dtype=np.float64)
    ds = terrain(elev, sun_zenith, 150.0, view_zenith=5.0, view_azimuth=100.0)
    for name in ("elevation", "slope", "aspect", "sky_view"):
        assert np.issubdtype(ds[name].dtype, np.floating), name
    for name in ("cast_shadow", "hidden_faces", "sun_too_low", "tangent_sun", "dem_fallback"):
        assert ds[name].dtype == bool, name
    assert ds.odc.geobox == elev.odc.geobox
    assert ds["cast_shadow"].any() and not ds["dem_fallback"].any()
    np.testing.assert_array_equal(ds["elevation"].values, elev.values)
    assert ds["slope"].attrs["units"] == "degree"


def test_terrain_rejects_geographic_grids_and_mismatched_angles() -> None:
    gb = GeoBox((10, 10), Affine(0.001, 0, 6.0, 0, -0.001, 1.0), "EPSG:4326")
    with pytest.raises(InputError, match="projected"):
        terrain(wrap_xr(np.zeros((10, 10), np.float32), gb), 30.0, 180.0)
    elev = _utm_da(np.zeros((10, 10)))
    with pytest.raises(InputError, match="shape"):
        terrain(elev, xr.DataArray(np.zeros((3, 3))), 180.0)


@pytest.mark.parametrize("slope, aspect", [(0.0, 0.0), (20.0, 0.0), (40.0, 135.0), (60.0, 270.0)])
def test_horizon_sky_view_of_an_unobstructed_facet(slope: float, aspect: float) -> None:
    """With nothing but its own plane hiding the sky, a facet sees (1 + cos s) / 2."""
    e, n = _grid((120, 120), 10.0, 10.0)
    g = math.tan(math.radians(slope))
    a = math.radians(aspect)
    z = -g * (math.sin(a) * e + math.cos(a) * n)
    s, asp = slope_aspect(z, 10.0, 10.0)
    v = horizon_sky_view(z, 10.0, 10.0, s, asp, directions=16)
    assert v[60, 60] == pytest.approx((1.0 + math.cos(math.radians(slope))) / 2.0, abs=0.005)


@pytest.mark.parametrize("wall", [50.0, 300.0])
def test_horizon_sky_view_at_the_floor_of_a_canyon(wall: float) -> None:
    """Floor of an infinitely long canyon with walls rising γ0 across it: V = cos γ0."""
    c = np.arange(201)
    x = np.broadcast_to((c - 100) * 10.0, (201, 201))
    z = np.where(np.abs(x) >= 100.0, wall, 0.0)
    s, asp = slope_aspect(z, 10.0, 10.0)
    # within 1 km every direction but the canyon's own axis meets a wall
    v = horizon_sky_view(z, 10.0, 10.0, s, asp, directions=32, max_distance=1000.0)
    assert v[100, 100] == pytest.approx(math.cos(math.atan(wall / 100.0)), abs=0.01)
    # settings select the method
    flags = terrain_flags(
        z,
        10.0,
        10.0,
        30.0,
        180.0,
        settings=TerrainSettings(
            sky_view_method="horizon", sky_view_directions=32, sky_view_max_distance=1000.0
        ),
    )
    assert flags["sky_view"][100, 100] == pytest.approx(float(v[100, 100]))
    with pytest.raises(ValueError, match="sky_view_method"):
        terrain_flags(z, 10.0, 10.0, 30.0, 180.0, settings=TerrainSettings(sky_view_method="nope"))
