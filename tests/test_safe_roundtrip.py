"""The SAFE writer's products read back exactly through the SAFE reader (no sample data needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from l2a.io.safe import open_safe
from l2a.sensors.sentinel2 import BANDS

safe_writer = pytest.importorskip("l2a.testing.safe_writer")


@pytest.mark.parametrize("baseline", ["05.10", "02.06"])
def test_writer_roundtrip(tmp_path: Path, baseline: str) -> None:
    # a 1.2 km crop of tile 31TCJ whose corner is on the tile's 60 m lattice
    gb10 = GeoBox((120, 120), Affine(10, 0, 300600, 0, -10, 4898820), "EPSG:32631")
    rng = np.random.default_rng(1)
    dn = {}
    for b in BANDS:
        shape = safe_writer.band_geobox(gb10, b.resolution).shape
        a = rng.integers(1, 20000, shape).astype(np.uint16)
        a[0, :3] = 0
        a[1, 1] = 65535
        dn[b.name] = a
    when = datetime(2024, 1, 20, 10, 58, 50, tzinfo=UTC)
    path = safe_writer.write_safe(tmp_path, dn, gb10, when, tile_id="T31TCJ", baseline=baseline)
    p = open_safe(path)
    md = p.metadata
    assert (md.tile_id, md.baseline, md.sensing_time) == ("31TCJ", baseline, when)
    assert p.bands == tuple(b.name for b in BANDS)
    assert p.geobox(10) == gb10 and md.geoboxes[10] == gb10
    offset = -1000.0 if baseline >= "04.00" else 0.0
    assert set(md.radio_offsets.values()) == {offset}
    for b in BANDS:
        got = p.toa([b.name], b.resolution)[b.name].values
        raw = dn[b.name].astype(np.float64)
        expect = np.where(raw == 0, np.nan, (raw + offset) / 10000).astype(np.float32)
        np.testing.assert_array_equal(got, expect)
        sat = p.quality([b.name], b.resolution)[f"saturation_{b.name}"].values
        np.testing.assert_array_equal(sat, dn[b.name] == 65535)
    assert md.sun is not None and np.isfinite(md.sun.zenith).all()
    assert len(md.view) == 13
    assert (len(md.footprints) == 13) == (baseline >= "04.00")
