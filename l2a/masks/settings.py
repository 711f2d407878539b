"""Settings of the cloud, shadow, cirrus, snow and water masks.

Every threshold is a named field with its unit and its source.  Defaults are published values:
MAJA's default processing parameters (GIP_L2COMM "ALLSITES", github.com/olivierhagolle/MAJA_Parameters,
named ``MAJA:<parameter>`` below), Hagolle et al. 2010 (RSE 114:1747-1755) and Fmask (Zhu &
Woodcock 2012, RSE 118:83-94).  The few that no publication gives are marked "(ours)" and were
chosen on physical grounds, never fitted to a scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    """Processing mode of one date (see :func:`l2a.masks.detect_series`)."""

    INIT = "INIT"  #: no usable composite: mono-temporal tests only; seeds the composite
    NOMINAL = "NOMINAL"  #: multi-temporal tests against the composite of earlier dates
    BACKWARD = "BACKWARD"  #: date processed in reverse order to initialise a series


@dataclass(frozen=True)
class MaskSettings:
    """Thresholds and options of :func:`l2a.masks.detect` (reflectances are unitless, 0..1).

    Resolution
    ----------
    coarse_resolution_m : float
        Resolution of the decision grid (m); 240 (MAJA L2 coarse resolution), 120 as an option.
    min_coarse_pixels : int
        Working-resolution rule: the working grid must have at least this many pixels across the
        smaller side of the input.  Working factor = ``min(coarse_resolution / native,
        floor(min_side_pixels / min_coarse_pixels))``, at least 1.  So a full tile (10980 px)
        works at 240 m, the 101 x 100 px Slovenia crop at 20 m, the 856 x 512 px Betsiboka
        scene at 100 m.  (ours; about 50 across is what the issue asks)
    min_valid_fraction : float
        A working pixel is valid when at least this fraction of its full-resolution pixels are
        valid (ours).
    refine : bool
        Refine cloud, snow and water edges at full resolution (see ``refine_radius_px``).
    refine_radius_px : int
        Half-width, in working pixels, of the band around each coarse boundary in which the
        full-resolution tests decide (ours: one working pixel, the size of a coarse block).

    Clouds
    ------
    blue_band : str
        Band of the reflectance tests (MAJA:Blue_Band_Code B1; falls back to B02 if absent).
    red_band : str
        Band of the surface-change guard (MAJA:Red_Band_Code B4).
    blue_threshold : float
        Mono-temporal test on Rayleigh-corrected blue (MAJA:Cloud_Blue_Reflectance_Threshold 0.22).
    var_min_threshold, var_max_threshold : float
        Multi-temporal blue increase threshold, min and cap (MAJA:Min/Max_Threshold_Var_Blue
        0.025 / 0.070; Hagolle 2010 uses 0.03).
    forgetting_days : float
        Age of the reference after which the threshold is doubled, days
        (MAJA:Cloud_Forgetting_Duration 30).
    k_red_blue : float
        Surface-change guard: red increase above ``k_red_blue`` x blue increase is not a cloud
        (MAJA:K_Red_Blue 1.5; Hagolle 2010).
    max_age_days : float
        Composite pixels older than this are not used, days (MAJA:Max_Age 90).
    correlation_band : str
        Band of the local-correlation guard (MAJA:Correl_Band_Code B2).
    correlation_radius_px : int
        Window radius of the correlation, working pixels (MAJA:N_Correl 3).
    correlation_threshold : float
        Correlation above which a pixel is not cloudy (MAJA:Correl_Threshold 80 %).
    correlation_min_pixels : int
        Minimum valid pixels in a window (MAJA:Min_Pixel_Correl 15).
    correlation_discarded_ratio : float
        Fraction of a cloud's pixels that must be correlated for them to be removed
        (MAJA:Discarded_Pixels_Ratio_Min 20 %).
    cirrus_offset, cirrus_gain_per_m : float
        Cirrus if B10 > offset + gain x altitude(m) (MAJA:Cirrus_Mask_Threshold_Offset 0.015,
        Gain 0.00002).
    water_cloud_band : str
        Cloud test over water (MAJA:Reflectance_Water_Band_Code B12).
    water_cloud_threshold : float
        Cloud over water if ``water_cloud_band`` > this (MAJA:Water_Reflectance_Threshold 0.08).
    cloud_extension_m : float
        Dilation of all clouds, metres (MAJA:SE_Cloud_Radius 1 pixel at 240 m).

    Shadows
    -------
    shadow_bands : tuple of str
        Bands of the darkening tests; a pixel's darkening ratio is the largest over these bands,
        so it must darken in all of them (MAJA:Shadow_Band_Code B4; NIR added by us: a shadow
        darkens every band, a surface change such as greening or harvest rarely darkens both
        red and NIR).
    shadow_min_altitude_m, shadow_max_altitude_m, shadow_altitude_step_m : float
        Cloud altitudes tried (MAJA:Delta_H_Min 0 (we start at one step), Delta_H_Max 8000,
        Delta_H_Step 250).
    shadow_max_ratio : float
        Projected-shadow pixels are darker than this ratio to the reference
        (MAJA:Proj_Shad_Darkening_Max 0.8).
    shadow_min_footprint_fraction : float
        Minimum usable fraction of a cloud's projected footprint for an altitude to count (ours).
    outside_shadow_max_ratio : float
        Shadows of clouds outside the image: darker than this ratio (ours: stricter than inside
        because there is no geometric evidence; MAJA also caps this zone's threshold lower,
        Shad_Var_Darkening_Max).
    outside_shadow_min_pixels : int
        Minimum size of an outside-shadow patch, working pixels (ours).

    Snow
    ----
    snow_ndsi_threshold, snow_red_threshold, snow_swir_threshold : float
        NDSI > 0.4, red > 0.12, SWIR1 < 0.16 (MAJA:NDSI_Threshold, Red_Reflectance_Threshold,
        SWIR1_Reflectance_Threshold).
    snow_nir_threshold : float
        Snow also needs NIR > 0.11 (Fmask snow test, Zhu & Woodcock 2012): excludes turbid
        water, which can pass NDSI and red.  Water pixels are never snow (MAJA:Use_Water_Mask).
    snow_max_whiteness : float
        Snow is white: Fmask's whiteness ``sum(|b - mean|) / mean`` over blue, green, red must be
        below 0.7 (the Fmask cloud whiteness threshold, Zhu & Woodcock 2012, applied to snow,
        which is just as white); excludes red sediment-laden water and red soils.
    min_cos_incidence : float
        Floor of cos(incidence) in the slope normalisation (MAJA:Slope_Min_Cos_I 0.20).
    snow_in_cloud_border_fraction : float
        A snow patch whose border is cloud for at least this fraction is cloud (ours).

    Water
    -----
    water_ndvi_threshold, water_red_threshold : float
        NDVI < 0.01 and red < 0.05 (MAJA:Water_NDVI_Threshold, Water_Red_Reflectance_Threshold).
    fmask_water_nir_high, fmask_water_ndvi_high, fmask_water_nir_low : float
        Fmask water: NDVI < 0.01 and NIR < 0.11, or NDVI < 0.1 and NIR < 0.05 (Zhu & Woodcock
        2012); catches turbid water that MAJA's red test misses.
    water_max_slope_deg : float
        No water on slopes steeper than this, degrees (MAJA:Water_Slope_Threshold 0.15 rad).

    Series
    ------
    reinit_gap_days : float
        A gap longer than this since the composite's last date re-initialises, in whole days
        (rounded, as the production planner counts them) (45).
    backward_dates : int
        Number of dates processed in reverse to initialise a series (8).
    series_mode : str
        ``"backward"`` (default) or ``"nominal"`` (INIT on the first date, then forward).
    max_cloud_percentage : float
        Above this cloud cover the product gets masks but no reflectances
        (MAJA:Max_Cloud_Percentage 90); reported in ``masks.attrs``.
    """

    coarse_resolution_m: float = 240.0
    min_coarse_pixels: int = 50
    min_valid_fraction: float = 0.5
    refine: bool = True
    refine_radius_px: int = 1

    blue_band: str = "B01"
    red_band: str = "B04"
    blue_threshold: float = 0.22
    var_min_threshold: float = 0.025
    var_max_threshold: float = 0.070
    forgetting_days: float = 30.0
    k_red_blue: float = 1.5
    max_age_days: float = 90.0
    correlation_band: str = "B02"
    correlation_radius_px: int = 3
    correlation_threshold: float = 0.80
    correlation_min_pixels: int = 15
    correlation_discarded_ratio: float = 0.20
    cirrus_offset: float = 0.015
    cirrus_gain_per_m: float = 0.00002
    water_cloud_band: str = "B12"
    water_cloud_threshold: float = 0.08
    cloud_extension_m: float = 240.0

    shadow_bands: tuple[str, ...] = ("B04", "B8A")
    shadow_min_altitude_m: float = 250.0
    shadow_max_altitude_m: float = 8000.0
    shadow_altitude_step_m: float = 250.0
    shadow_max_ratio: float = 0.8
    shadow_min_footprint_fraction: float = 0.25
    outside_shadow_max_ratio: float = 0.5
    outside_shadow_min_pixels: int = 4

    snow_ndsi_threshold: float = 0.4
    snow_red_threshold: float = 0.12
    snow_swir_threshold: float = 0.16
    snow_nir_threshold: float = 0.11
    snow_max_whiteness: float = 0.7
    min_cos_incidence: float = 0.20
    snow_in_cloud_border_fraction: float = 0.8

    water_ndvi_threshold: float = 0.01
    water_red_threshold: float = 0.05
    fmask_water_nir_high: float = 0.11
    fmask_water_ndvi_high: float = 0.1
    fmask_water_nir_low: float = 0.05
    water_max_slope_deg: float = 8.6

    reinit_gap_days: float = 45.0
    backward_dates: int = 8
    series_mode: str = "backward"
    max_cloud_percentage: float = 90.0

    def __post_init__(self) -> None:
        if self.series_mode not in ("backward", "nominal"):
            raise ValueError(f"series_mode must be 'backward' or 'nominal', not {self.series_mode!r}")
        if self.coarse_resolution_m <= 0 or self.min_coarse_pixels < 1:
            raise ValueError("coarse_resolution_m must be > 0 and min_coarse_pixels >= 1")
        if self.shadow_altitude_step_m <= 0:
            raise ValueError("shadow_altitude_step_m must be > 0")
