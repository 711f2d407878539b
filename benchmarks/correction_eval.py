"""Evaluation of the atmospheric and terrain correction (issue 4); prints a table.

Run from the repository root::

    .venv/bin/python benchmarks/correction_eval.py            # everything (about 1-2 min)
    .venv/bin/python benchmarks/correction_eval.py --quick    # no quarter-tile timing
    .venv/bin/python benchmarks/correction_eval.py --tile-side 10980   # time a whole synthetic tile

Sections:

1. SMAC forward-then-inverse round trip over a grid of geometries, pressures, AOT 0..1,
   water vapour 0.5..5 g/cm2, surface reflectances, all 13 bands, S2A/S2B/S2C (float64 model;
   and the float32 full-resolution kernel against the float64 model).
2. The clear Slovenia dates (2015-07-11, 2015-08-30, 2015-09-09; the cloudy dates run too, in
   order, to carry the composite): AOT and water vapour retrieved, forest spectrum (red edge),
   date-to-date standard deviation of SRE vs TOA over the same clear pixels.
2b. Closed loop on the real Slovenia surface (a closure check, not an issue target): the
   2015-07-11 SRE held fixed, TOA simulated with SMAC under each date's real geometry and known
   AOT / water vapour, corrected again (single-date and chained); AOT recovered, date-to-date
   std of TOA vs SRE, SRE error against the true surface.
3. FRE vs SRE on the Slovenia DEM: correlation of reflectance with the local illumination.
4. Speed: full-resolution inversion + adjacency (Mpx/s on one core, BLAS limited to one
   thread) and the wall time of ``correct`` on a synthetic in-memory tile (tiled Slovenia
   reflectance; no JPEG2000 decoding), extrapolated to a full 10980 x 10980 tile.
"""

from __future__ import annotations

import os

# one BLAS thread: speeds are per core
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

TARGET_ROUND_TRIP = 1e-4
TARGET_STD_REDUCTION = 0.30
TARGET_MPX_PER_S = 30.0
CLEAR_DATES = ("2015-07-11", "2015-08-30", "2015-09-09")
ALL_DATES = ("2015-07-11", "2015-07-31", "2015-08-20", "2015-08-30", "2015-09-09")


def _row(*cells: Any, widths: tuple[int, ...] = (34, 14, 14, 14, 14, 14)) -> str:
    out = []
    for c, w in zip(cells, widths, strict=False):
        s = f"{c:.4g}" if isinstance(c, float) else str(c)
        out.append(s.ljust(w))
    return " ".join(out)


# -------------------------------------------------------------------------------------------
def round_trip() -> bool:
    from l2a.io.smac_coefs import read_smac_coefficients
    from l2a.kernels import fullres
    from l2a.kernels.rt import forward, inverse
    from l2a.kernels.smac import SmacModel

    print("\n## 1. SMAC round trip (forward then inverse)")
    sz, vz, raz, p, tau, wv, rho = np.meshgrid(
        np.array([0.0, 20, 40, 60, 70]),
        np.array([0.0, 6, 12]),
        np.array([0.0, 90, 180]),
        np.array([700.0, 1013.25]),
        np.linspace(0.0, 1.0, 6),
        np.array([0.5, 2.0, 5.0]),
        np.array([0.0, 0.02, 0.1, 0.3, 0.6, 0.9]),
        indexing="ij",
    )
    print(_row("platform", "max |dRho| f64", "max |dRho| f32", "points", "target"))
    ok = True
    for platform in ("S2A", "S2B", "S2C"):
        model = SmacModel(read_smac_coefficients(platform))
        worst64 = worst32 = 0.0
        n = 0
        for b in model.bands:
            t = model.terms(b, sz, vz, raz, p, tau, wv, 0.3)
            toa = forward(t, rho)
            back = inverse(t, toa)
            worst64 = max(worst64, float(np.max(np.abs(back - rho))))
            f32 = fullres.invert_adjacency(
                toa.astype(np.float32),
                (1 / t.tg).astype(np.float32),
                t.rho_atm.astype(np.float32),
                (t.t_down * t.t_up).astype(np.float32),
                np.broadcast_to(t.s, toa.shape).astype(np.float32),
            )
            worst32 = max(worst32, float(np.max(np.abs(f32 - rho))))
            n += rho.size
        good = worst64 < TARGET_ROUND_TRIP and worst32 < TARGET_ROUND_TRIP
        ok &= good
        print(_row(platform, worst64, worst32, n, f"< {TARGET_ROUND_TRIP:g} {'OK' if good else 'FAIL'}"))
    return ok


# -------------------------------------------------------------------------------------------
def slovenia_terrain(l1c: Any) -> Any:
    import rasterio
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import wrap_xr

    from l2a.dem import terrain
    from l2a.paths import sample_data_dir

    path = sample_data_dir() / "slovenia_T33_summer2015" / "DEM.tif"
    with rasterio.open(path) as src:
        z = src.read(1).astype(np.float32)
        epsg = src.crs.to_epsg()
        g = GeoBox(z.shape, src.transform, f"EPSG:{epsg}" if epsg else src.crs.to_wkt())
    el = wrap_xr(z, g)
    el.name = "elevation"
    md = l1c.metadata
    return terrain(el, md.mean_sun_zenith, md.mean_sun_azimuth)


def _integer_shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Integer (rows, cols) translation of ``b`` relative to ``a`` by phase correlation."""
    fa = np.fft.fft2(np.nan_to_num(a - np.nanmean(a)))
    fb = np.fft.fft2(np.nan_to_num(b - np.nanmean(b)))
    cross = fa * np.conj(fb)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-12)).real
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = int(iy) if iy <= corr.shape[0] // 2 else int(iy) - corr.shape[0]
    dx = int(ix) if ix <= corr.shape[1] // 2 else int(ix) - corr.shape[1]
    return dy, dx


#: Roy et al. (2016, Remote Sens. Environ. 176:255-271) fixed MODIS BRDF parameters
#: (f_iso, f_vol, f_geo) for the Sentinel-2 visible and NIR bands (diagnostic only).
ROY2016_BRDF: dict[str, tuple[float, float, float]] = {
    "B02": (0.0774, 0.0372, 0.0079),
    "B03": (0.1306, 0.0580, 0.0178),
    "B04": (0.1690, 0.0574, 0.0227),
    "B08": (0.3093, 0.1535, 0.0330),
}


def _ross_li(sun_zenith: float, view_zenith: float, rel_azimuth: float) -> tuple[float, float]:
    """RossThick volume and LiSparse-R geometric kernels (h/b = 2, b/r = 1), degrees in."""
    ts, tv, phi = np.radians([sun_zenith, view_zenith, rel_azimuth])
    cos_xi = np.cos(ts) * np.cos(tv) + np.sin(ts) * np.sin(tv) * np.cos(phi)
    xi = np.arccos(np.clip(cos_xi, -1.0, 1.0))
    k_vol = ((np.pi / 2 - xi) * cos_xi + np.sin(xi)) / (np.cos(ts) + np.cos(tv)) - np.pi / 4
    d = np.sqrt(np.tan(ts) ** 2 + np.tan(tv) ** 2 - 2 * np.tan(ts) * np.tan(tv) * np.cos(phi))
    sec = 1 / np.cos(ts) + 1 / np.cos(tv)
    cos_t = np.clip(2.0 * np.sqrt(d**2 + (np.tan(ts) * np.tan(tv) * np.sin(phi)) ** 2) / sec, -1.0, 1.0)
    t = np.arccos(cos_t)
    overlap = (t - np.sin(t) * cos_t) * sec / np.pi
    k_geo = overlap - sec + 0.5 * (1 + cos_xi) / (np.cos(ts) * np.cos(tv))
    return float(k_vol), float(k_geo)


def _nbar_factor(band: str, sun_zenith: float, to_sun_zenith: float) -> float:
    """Roy et al. (2016) c-factor bringing a near-nadir observation to another sun zenith."""
    f_iso, f_vol, f_geo = ROY2016_BRDF[band]

    def model(sz: float) -> float:
        kv, kg = _ross_li(sz, 3.0, 90.0)
        return f_iso + f_vol * kv + f_geo * kg

    return model(to_sun_zenith) / model(sun_zenith)


def slovenia() -> bool:
    from l2a.chain.correction import correct, group
    from l2a.io.scenes import open_scene
    from l2a.kernels.slope_correction import cos_incidence

    try:
        from l2a.masks import detect
    except ImportError:  # masks not available: no cloud screening (clear dates only)
        detect = None

    print("\n## 2. Slovenia summer 2015 (real L1C, 101 x 100 px at 10 m, DEM 664-801 m)")
    comp = None
    per_date: dict[str, dict[str, Any]] = {}
    for d in ALL_DATES:
        l1c = open_scene(f"slovenia:{d}")
        masks = None
        if detect is not None:
            masks, comp = detect(l1c.toa(None, 10), comp)
        ter = slovenia_terrain(l1c)
        ds, comp = correct(l1c, masks, comp, ter)
        ds = ds.compute()
        r1 = group(ds, "R1")
        r2 = group(ds, "R2")
        toa = l1c.toa(["B02", "B03", "B04", "B08"], 10).compute()
        cloud = np.asarray(masks["cloud"].values | masks["cloud_shadow"].values) if masks is not None else None
        per_date[d] = {"ds": ds, "r1": r1, "r2": r2, "toa": toa, "terrain": ter, "cloud": cloud, "l1c": l1c}

    print(_row("date", "AOT mean", "AOT min..max", "WV g/cm2", "WV min..max", "cloud frac"))
    plausible = True
    for d in ALL_DATES:
        ds = per_date[d]["ds"]
        aot, wv = ds["aot"].values, ds["water_vapour"].values
        cl = per_date[d]["cloud"]
        cf = float(cl.mean()) if cl is not None else float("nan")
        print(_row(d, float(aot.mean()), f"{aot.min():.3f}..{aot.max():.3f}", float(wv.mean()), f"{wv.min():.2f}..{wv.max():.2f}", cf))
        if d in CLEAR_DATES:
            plausible &= 0.03 <= float(aot.mean()) <= 0.4
    print(f"AOT plausible (0.03..0.4 on the clear dates): {'OK' if plausible else 'NO'}; "
          "water vapour: see text (0.97 g/cm2 on 2015-09-09 is what the B9/B8A ratio 0.37 gives)")

    # forest spectrum: pixels whose SRE NDVI > 0.8 on the first clear date
    print("\nForest SRE (median of pixels with SRE NDVI > 0.8), reflectance:")
    bands = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
    print(_row("date", *bands[:5]) + " " + _row(*bands[5:], widths=(14,) * 5))
    red_edge = True
    spectra: dict[str, list[float]] = {}
    for d in CLEAR_DATES:
        r1, r2 = per_date[d]["r1"], per_date[d]["r2"]
        b4 = r1["SRE_B4"].values / 1e4
        b8 = r1["SRE_B8"].values / 1e4
        forest10 = (b8 - b4) / (b8 + b4) > 0.8
        # 20 m: NDVI from the 20 m bands B8A and B4 averaged
        b4_20 = r1["SRE_B4"].coarsen(y=2, x=2, boundary="trim").mean().values / 1e4
        b8a = r2["SRE_B8A"].values[: b4_20.shape[0], : b4_20.shape[1]] / 1e4
        forest20 = (b8a - b4_20) / (b8a + b4_20) > 0.8
        med = []
        for b in bands:
            if f"SRE_{b}" in r1:
                med.append(float(np.median(r1[f"SRE_{b}"].values[forest10]) / 1e4))
            else:
                v = r2[f"SRE_{b}"].values[: b4_20.shape[0], : b4_20.shape[1]]
                med.append(float(np.median(v[forest20]) / 1e4))
        sp = dict(zip(bands, med, strict=True))
        spectra[d] = med
        red_edge &= sp["B4"] < sp["B5"] < sp["B6"] < sp["B7"] and sp["B8"] > 8 * sp["B4"] and sp["B3"] > sp["B2"]
        print(_row(f"{d} ({int(forest10.sum())} px)", *med[:5]) + " " + _row(*med[5:], widths=(14,) * 5))
    print(f"red edge (B4 < B5 < B6 < B7, NIR > 8 x red, green peak): {'OK' if red_edge else 'NO'}")
    first, last = spectra[CLEAR_DATES[0]], spectra[CLEAR_DATES[-1]]
    print(f"forest SRE {CLEAR_DATES[-1]} / {CLEAR_DATES[0]}, per band (a change common to every band, blue "
          "included, is the surface's; a retrieval that hid it would leave the blue flat):")
    print(_row("ratio", *[f"{b}:{v1 / v0:.2f}" for b, v0, v1 in zip(bands[:5], first[:5], last[:5], strict=True)])
          + " " + _row(*[f"{b}:{v1 / v0:.2f}" for b, v0, v1 in zip(bands[5:], first[5:], last[5:], strict=True)],
                       widths=(14,) * 5))

    # date-to-date spread over pixels clear on every clear date
    clear = np.ones(per_date[CLEAR_DATES[0]]["r1"]["SRE_B2"].shape, dtype=bool)
    for d in CLEAR_DATES:
        if per_date[d]["cloud"] is not None:
            clear &= ~per_date[d]["cloud"]
    print(f"\nDate-to-date std over {int(clear.sum())} pixels clear on the 3 clear dates (mean of per-pixel std):")
    print(_row("band", "TOA std", "SRE std", "FRE std", "SRE reduction", "target"))
    stable = True
    for b, name in (("B02", "B2"), ("B03", "B3"), ("B04", "B4"), ("B08", "B8")):
        toa = np.stack([per_date[d]["toa"][b].values[clear] for d in CLEAR_DATES])
        sre = np.stack([per_date[d]["r1"][f"SRE_{name}"].values[clear] / 1e4 for d in CLEAR_DATES])
        fre = np.stack([per_date[d]["r1"][f"FRE_{name}"].values[clear] / 1e4 for d in CLEAR_DATES])
        s_t, s_s, s_f = (float(np.mean(np.std(a, axis=0))) for a in (toa, sre, fre))
        red = 1.0 - s_s / s_t
        visible = b in ("B02", "B03", "B04")
        if visible:
            stable &= red >= TARGET_STD_REDUCTION
        tgt = f">= {TARGET_STD_REDUCTION:.0%} {'OK' if red >= TARGET_STD_REDUCTION else 'FAIL'}" if visible else "(NIR, info)"
        print(_row(b, s_t, s_s, s_f, f"{red:.1%}", tgt))

    # diagnostic 1: the spread of the scene means (atmosphere and common changes, no pixel noise)
    print("\nDiagnostic: date-to-date std of the scene mean over the same pixels (pixel noise such as "
          "misregistration averages out; what is left is atmosphere + common surface change):")
    print(_row("band", "TOA std", "SRE std", "SRE reduction"))
    for b, name in (("B02", "B2"), ("B03", "B3"), ("B04", "B4"), ("B08", "B8")):
        tm = np.array([per_date[d]["toa"][b].values[clear].mean() for d in CLEAR_DATES])
        sm = np.array([per_date[d]["r1"][f"SRE_{name}"].values[clear].mean() / 1e4 for d in CLEAR_DATES])
        print(_row(b, float(tm.std()), float(sm.std()), f"{1.0 - sm.std() / tm.std():.1%}"))
    print("Contrast gain of the correction (slope of SRE on TOA over the pixels of one date: "
          "1/(tg T_down T_up) times the adjacency gain): pixel-level differences between dates "
          "(texture under a one-pixel shift, say) come out of SRE multiplied by it:")
    print(_row("band", *CLEAR_DATES))
    for b, name in (("B02", "B2"), ("B03", "B3"), ("B04", "B4"), ("B08", "B8")):
        gains = []
        for d in CLEAR_DATES:
            t = per_date[d]["toa"][b].values[clear]
            sr = per_date[d]["r1"][f"SRE_{name}"].values[clear] / 1e4
            gains.append(float(np.polyfit(t, sr, 1)[0]))
        print(_row(b, *gains))
    sz0 = per_date[CLEAR_DATES[0]]["l1c"].metadata.mean_sun_zenith
    print(f"SRE spread after a BRDF normalisation to the first date's sun zenith ({sz0:.1f} deg; Roy et "
          "al. 2016 c-factor with fixed MODIS parameters; directional effects explain little of it):")
    print(_row("band", "TOA std", "NBAR std", "NBAR reduction"))
    for b, name in (("B02", "B2"), ("B03", "B3"), ("B04", "B4"), ("B08", "B8")):
        toa = np.stack([per_date[d]["toa"][b].values[clear] for d in CLEAR_DATES])
        nbar = np.stack([
            per_date[d]["r1"][f"SRE_{name}"].values[clear] / 1e4
            * _nbar_factor(b, per_date[d]["l1c"].metadata.mean_sun_zenith, sz0)
            for d in CLEAR_DATES
        ])
        s_t, s_n = float(np.mean(np.std(toa, axis=0))), float(np.mean(np.std(nbar, axis=0)))
        print(_row(b, s_t, s_n, f"{1.0 - s_n / s_t:.1%}"))
    print("Inter-date shift of the NIR TOA against the first clear date (integer phase correlation, "
          "rows, cols; any shift adds pixel-level spread that SRE amplifies by 1/(T_down T_up tg)):")
    ref_nir = per_date[CLEAR_DATES[0]]["toa"]["B08"].values
    for d in CLEAR_DATES[1:]:
        dy, dx = _integer_shift(ref_nir, per_date[d]["toa"]["B08"].values)
        print(f"  {d}: ({dy}, {dx}) px")

    # diagnostic 2: the surface itself changes between the dates (aerosol-free SWIR bands)
    ref = CLEAR_DATES[0]
    print("\nDiagnostic: TOA change of the aerosol-free SWIR bands over the same pixels (ratio to "
          f"{ref}); a surface/BRDF change the visible TOA hides because the path reflectance grows "
          "with the sun zenith angle:")
    for d in CLEAR_DATES:
        t = per_date[d]["l1c"].toa(["B11", "B12"], 10).compute()
        t0 = per_date[ref]["l1c"].toa(["B11", "B12"], 10).compute()
        r11 = float(np.median(t["B11"].values[clear]) / np.median(t0["B11"].values[clear]))
        r12 = float(np.median(t["B12"].values[clear]) / np.median(t0["B12"].values[clear]))
        sz = per_date[d]["l1c"].metadata.mean_sun_zenith
        print(f"  {d}: sun zenith {sz:.1f} deg, B11 x{r11:.3f}, B12 x{r12:.3f}")

    # FRE vs SRE against illumination
    print("\n## 3. Slope correction on the Slovenia DEM: correlation of reflectance with cos(i)")
    print(_row("date / band", "corr SRE", "corr FRE", "|corr| drop", "sunlit/shaded SRE", "sunlit/shaded FRE"))
    drops = True
    for d in CLEAR_DATES:
        ter, r1, l1c = per_date[d]["terrain"], per_date[d]["r1"], per_date[d]["l1c"]
        md = l1c.metadata
        ci = cos_incidence(ter["slope"].values, ter["aspect"].values, md.mean_sun_zenith, md.mean_sun_azimuth)
        sel = clear & (ter["slope"].values > 5)
        lo, hi = np.percentile(ci[sel], [25, 75])
        for name in ("B4", "B8"):
            sre = r1[f"SRE_{name}"].values / 1e4
            fre = r1[f"FRE_{name}"].values / 1e4
            c_s = float(np.corrcoef(ci[sel], sre[sel])[0, 1])
            c_f = float(np.corrcoef(ci[sel], fre[sel])[0, 1])
            lit, dim = sel & (ci >= hi), sel & (ci <= lo)
            rs = float(np.mean(sre[lit]) / np.mean(sre[dim]))
            rf = float(np.mean(fre[lit]) / np.mean(fre[dim]))
            if name == "B8":
                drops &= abs(c_f) < abs(c_s)
            print(_row(f"{d} {name}", c_s, c_f, abs(c_s) - abs(c_f), rs, rf))
    print(f"NIR correlation with illumination drops after slope correction: {'OK' if drops else 'NO'}")
    return plausible and red_edge and stable and drops


# -------------------------------------------------------------------------------------------
def closure() -> bool:
    """Closed loop on the real Slovenia surface: unchanged surface, real geometries, known
    atmospheres (:mod:`l2a.testing.closure`, also run by ``tests/test_correction_closure.py``).

    ``single``: each clear date alone (composite None, the multi-spectral term only).
    ``chained``: all five dates in order through one composite, as production runs them (the
    cloudy 2015-07-31 and 2015-08-20 simulated clear, AOT and water vapour interpolated in time
    between their clear neighbours).
    """
    from l2a.paths import sample_data_dir
    from l2a.testing.closure import (
        MAX_MEAN_AOT_BIAS,
        MIN_SHARE_IN_ENVELOPE,
        MIN_SHARE_IN_SPEC,
        R1_BANDS,
        WIDE_AOTS,
        aot_ok,
        aot_share_in_envelope,
        closed_loop,
        given_aots,
        real_atmospheres,
        run_series,
        sre_spec,
    )

    print("\n## 2b. Closed loop on real surfaces (closure check of the retrieval, not an issue target)")
    loop = closed_loop(sample_data_dir() / "slovenia_T33_summer2015" / "DEM.tif")
    ny, nx = loop.truth["B02"].shape
    print(f"Surface: SRE of {CLEAR_DATES[0]} (correct, default settings, single date) held fixed on the "
          f"{ny} x {nx} px grid; TOA simulated with SMAC (rt.forward) for each date's real sun geometry, "
          "DEM pressure and ozone; B9 surface = B8A surface with the same water vapour; adjacency off in the "
          "simulation and the retrieval; no masks (every pixel clear). single: clear dates alone (no "
          "composite); chained: the 5 dates in order through one composite (07-31 and 08-20 simulated clear, "
          "atmosphere interpolated in time).")
    atmospheres = {
        "real AOT": real_atmospheres(loop),
        "AOT " + "/".join(f"{t:g}" for t in WIDE_AOTS): given_aots(loop, WIDE_AOTS),
    }
    widths = (50, 12, 12, 12, 12, 12, 12)
    print(_row("atmosphere, retrieval, date", "true AOT", "AOT mean", "max |dAOT|", "true WV", "WV mean", "in envelope",
               widths=widths))
    aot_pass = std_ok = sre_ok = True
    spreads: list[str] = []
    for label, atmos in atmospheres.items():
        for mode in ("single", "chained"):
            runs = run_series(loop, atmos, chained=mode == "chained")
            for r in runs:
                err = r["aot"] - r["tau"]
                inside = aot_share_in_envelope(r["aot"], r["tau"])
                aot_pass &= aot_ok(r["aot"], r["tau"])
                tag = r["date"] if r["clear"] else f"{r['date']} (sim. clear)"
                print(_row(f"{label}, {mode}, {tag}", r["tau"], float(r["aot"].mean()), float(np.abs(err).max()),
                           r["wv"], float(r["water_vapour"].mean()), f"{inside:.1%}", widths=widths))
            clear = [r for r in runs if r["clear"]]
            for b in R1_BANDS:
                t_arr = np.stack([r["toa"][b] for r in clear])
                s_arr = np.stack([r["sre"][b] for r in clear])
                s_t, s_s = float(np.mean(np.std(t_arr, axis=0))), float(np.mean(np.std(s_arr, axis=0)))
                err = s_arr - loop.truth[b][None]
                mae = float(np.mean(np.abs(err)))
                in_spec = float(np.mean(np.abs(err) <= sre_spec(loop.truth[b])[None]))
                red = 1.0 - s_s / s_t
                if b != "B08":
                    std_ok &= red >= TARGET_STD_REDUCTION
                    sre_ok &= in_spec >= MIN_SHARE_IN_SPEC
                spreads.append(_row(f"{label}, {mode}, {b}", s_t, s_s, f"{red:.1%}", mae, f"{in_spec:.1%}",
                                    widths=widths))
    print("Per-pixel date-to-date std over the 3 clear dates (mean over the pixels) and SRE error against the "
          "true surface:")
    print(_row("atmosphere, retrieval, band", "TOA std", "SRE std", "reduction", "SRE MAE", "in spec", widths=widths))
    for row in spreads:
        print(row)
    ok = aot_pass and std_ok and sre_ok
    print("(in envelope: share of working pixels with |AOT error| <= 0.05 + 0.15 AOT (Levy et al. 2010); in spec: "
          "share of 10 m pixels with |SRE error| <= 0.005 + 5 % (Sentinel-2 L2A requirement))")
    print(f"closure check: mean AOT bias <= {MAX_MEAN_AOT_BIAS:g} and >= {MIN_SHARE_IN_ENVELOPE:.0%} in "
          f"envelope {'OK' if aot_pass else 'NO'}; visible std reduction >= {TARGET_STD_REDUCTION:.0%} "
          f"{'OK' if std_ok else 'NO'}; visible SRE >= {MIN_SHARE_IN_SPEC:.0%} in spec {'OK' if sre_ok else 'NO'}: "
          f"{'OK' if ok else 'NO'} (not an issue target; does not enter ALL TARGETS)")
    return ok


# -------------------------------------------------------------------------------------------
def kernel_speed() -> bool:
    from l2a.chain.correction import _encode
    from l2a.kernels import fullres, slope_correction

    print("\n## 4. Speed (one core, one BLAS thread, float32)")
    n, factor = 2048, 24
    nc = n // factor + 2
    rng = np.random.default_rng(0)
    toa = rng.uniform(0.02, 0.4, (n, n)).astype(np.float32)
    gain = rng.uniform(1.0, 1.2, (nc, nc)).astype(np.float32)
    offset = rng.uniform(0.0, 0.05, (nc, nc)).astype(np.float32)
    fields = [rng.uniform(0.1, 1.0, (nc, nc)).astype(np.float32) for _ in range(6)]
    cb = np.cos(rng.uniform(0, 0.5, (n, n))).astype(np.float32)
    sky = np.ones((n, n), np.float32)
    shadow = np.zeros((n, n), bool)
    pos = (np.arange(n) + 0.5) / factor - 0.5
    best_sre = best_fre = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        wy = fullres.bilinear_weights(pos, nc)
        wx = fullres.bilinear_weights(pos, nc)
        sre = fullres.linear(toa, fullres.upsample(gain, wy, wx), fullres.upsample(offset, wy, wx))
        _encode(sre)
        t1 = time.perf_counter()
        ci = cb * fullres.upsample(fields[0], wy, wx)
        f = slope_correction.normalized_slope_factor(
            ci, fullres.upsample(fields[1], wy, wx), fullres.upsample(fields[2], wy, wx), sky, fullres.upsample(fields[3], wy, wx), shadow
        )
        _encode(sre * f)
        t2 = time.perf_counter()
        best_sre = min(best_sre, t1 - t0)
        best_fre = min(best_fre, t2 - t1)
    mpx = n * n / 1e6
    sre_rate = mpx / best_sre
    print(_row("inversion + adjacency (SRE, int16)", f"{sre_rate:.1f} Mpx/s", f"target >= {TARGET_MPX_PER_S:g}", "OK" if sre_rate >= TARGET_MPX_PER_S else "FAIL"))
    print(_row("+ slope correction (FRE, int16)", f"{mpx / (best_sre + best_fre):.1f} Mpx/s", "(SRE + FRE)"))
    return sre_rate >= TARGET_MPX_PER_S


class _Discard:
    """A dask ``store`` target that drops what it receives."""

    def __setitem__(self, key: object, value: object) -> None:
        pass


def tile_timing(side: int) -> None:
    import dask
    import dask.array as da
    import xarray as xr
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from l2a.chain.correction import CorrectionSettings, correct
    from l2a.io._array_product import ArrayL1CProduct
    from l2a.io.scenes import open_scene

    src = open_scene("slovenia:2015-07-11")
    base = src.toa(None, 10).compute()
    reps = -(-side // 100)
    gb = GeoBox((side, side), Affine(10.0, 0, 400000.0, 0, -10.0, 5100000.0), "EPSG:32633")
    t0 = time.perf_counter()
    needed = [b for b in base.data_vars if b not in ("B01", "B10")]  # the correction reads 11 bands
    refl = {b: np.ascontiguousarray(np.tile(base[b].values[:100, :100], (reps, reps))[:side, :side]) for b in needed}
    md = dataclasses.replace(src.metadata, geoboxes={10: gb})
    l1c = ArrayL1CProduct(refl, gb, md, nominal_resolution=10.0)
    yy, xx = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32), indexing="ij")
    slope = (10 + 8 * np.sin(xx / 300.0) * np.cos(yy / 450.0)).astype(np.float32)
    aspect = np.mod(np.degrees(np.arctan2(np.sin(yy / 200.0), np.cos(xx / 250.0))), 360).astype(np.float32)
    terrain = xr.Dataset(
        {
            "elevation": (("y", "x"), (600 + 0 * slope).astype(np.float32)),
            "slope": (("y", "x"), slope),
            "aspect": (("y", "x"), aspect),
            "cast_shadow": (("y", "x"), slope > 17.9),
            "hidden_faces": (("y", "x"), np.zeros((side, side), bool)),
        },
        coords=xr_coords(gb),
    )
    del yy, xx
    settings = CorrectionSettings(coarse_resolution_m=240.0)
    # warm the in-memory reader (block means, sun angles): reading is not timed, as JPEG2000
    # decoding is not for a SAFE
    for res in (10, 20, 240):
        l1c.toa(needed, res)
        l1c.angles(l1c.geobox(res))
    t_setup = time.perf_counter() - t0
    for workers in (1, 2):
        t1 = time.perf_counter()
        ds, _ = correct(l1c, None, None, terrain, settings)
        t2 = time.perf_counter()
        # results are streamed to a sink that discards them (bounded memory, no writing cost)
        lazy = [v.data for v in ds.data_vars.values() if isinstance(v.data, da.Array)]
        with dask.config.set(scheduler="threads", num_workers=workers):
            da.store(lazy, [_Discard() for _ in lazy], lock=False)
        t3 = time.perf_counter()
        total = t3 - t1
        scale = (10980 / side) ** 2
        print(_row(f"synthetic {side}x{side}, {workers} thread(s)", f"coarse {t2 - t1:.1f} s", f"full-res {t3 - t2:.1f} s",
                   f"total {total:.1f} s", f"tile ~{total * scale:.0f} s" if scale != 1 else "(full tile)"))
        del ds
    print(f"  (setup of the in-memory tile, not counted: {t_setup:.1f} s; working grid 240 m; 10 bands SRE+FRE+ATB+IAB,"
          " computed and discarded chunk by chunk)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the synthetic tile timing")
    ap.add_argument("--tile-side", type=int, default=5490, help="side (px) of the synthetic 10 m tile to time")
    ap.add_argument("--only-tile", action="store_true", help="run the synthetic tile timing only")
    args = ap.parse_args(argv)
    if args.only_tile:
        tile_timing(args.tile_side)
        return 0
    ok = round_trip()
    ok &= slovenia()
    closure()  # a closure check of the retrieval: printed, not one of the issue targets
    ok &= kernel_speed()
    if not args.quick:
        tile_timing(args.tile_side)
    print(f"\nALL TARGETS {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
