"""``l2a info`` on SAFE products (the CLI calls l2a.io.describe)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from l2a.cli import app

EODAG = "eodag_T31TDH_20180101/S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE"
PDMC = (
    "s2_metadata_only/s2reader_old_and_compact_safe/safe/"
    "S2A_OPER_PRD_MSIL1C_PDMC_20160905T104813_R002_V20160905T005712_20160905T010424.SAFE"
)

runner = CliRunner()


def test_info_json(sample_path: Callable[[str], Path]) -> None:
    res = runner.invoke(app, ["info", str(sample_path(EODAG)), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["tile_id"] == "31TDH" and s["baseline"] == "02.06" and s["platform"] == "S2A"
    assert s["sensing_time"] == "2018-01-01T10:54:35.457000Z"
    assert round(s["earth_sun_u"], 4) == 1.0342 and round(s["mean_sun_zenith"], 2) == 67.04
    assert s["grids"]["60"]["shape"] == [1830, 1830]
    assert s["grids"]["60"]["transform"][2] == 399960 and s["grids"]["60"]["transform"][5] == 4800000
    assert s["sun_grid"]["shape"] == [23, 23]
    assert set(s["radio_offsets"].values()) == {0.0}


def test_info_table_and_tile(sample_path: Callable[[str], Path]) -> None:
    res = runner.invoke(app, ["info", str(sample_path(PDMC)), "--tile", "T53HNV"])
    assert res.exit_code == 0, res.output
    assert "53HNV" in res.output and "02.04" in res.output and "B8A" in res.output


def test_info_errors(sample_path: Callable[[str], Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["info", str(sample_path(PDMC))])
    out = " ".join(res.output.split())  # rich wraps long lines
    assert res.exit_code == 2
    assert "6 tiles" in out and "--tile" in out and "Traceback" not in out
    res = runner.invoke(app, ["info", str(tmp_path / "missing.SAFE")])
    assert res.exit_code == 2 and "no such file" in " ".join(res.output.split())
