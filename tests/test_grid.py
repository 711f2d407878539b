"""Tile grids computed from the id equal the geoposition of every genuine tile metadata file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from defusedxml import ElementTree

from l2a.errors import InputError
from l2a.grid import parse_tile_id, tile_crs, tile_geobox, tile_origin


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _tile_metadata_files(root: Path) -> list[Path]:
    """Every XML under ``root`` that carries a tile geocoding (L1C/L2A MTD_TL, AWS metadata.xml)."""
    out = []
    for p in sorted(root.rglob("*.xml")):
        if p.stat().st_size == 0:
            continue
        with p.open("rb") as f:
            head = f.read()
        if b"<ULX>" in head and b"Tile_Geocoding" in head:
            out.append(p)
    return out


def _read_geocoding(path: Path) -> tuple[str, str, dict[int, tuple[float, float, int, int]]]:
    tree = ElementTree.parse(path)
    tile_id = ""
    for el in tree.iter():
        if _local(el.tag) == "TILE_ID" and el.text:
            m = re.search(r"_T(\d{2}[A-Z]{3})_", el.text)
            assert m, el.text
            tile_id = m.group(1)
    geo = next(el for el in tree.iter() if _local(el.tag) == "Tile_Geocoding")
    crs = next(el.text for el in geo if _local(el.tag) == "HORIZONTAL_CS_CODE")
    sizes: dict[int, tuple[int, int]] = {}
    pos: dict[int, tuple[float, float]] = {}
    for el in geo:
        res = el.get("resolution")
        if res is None:
            continue
        vals = {_local(c.tag): (c.text or "").strip() for c in el}
        if _local(el.tag) == "Size":
            sizes[int(res)] = (int(vals["NROWS"]), int(vals["NCOLS"]))
        elif _local(el.tag) == "Geoposition":
            pos[int(res)] = (float(vals["ULX"]), float(vals["ULY"]))
            assert float(vals["XDIM"]) == int(res) and float(vals["YDIM"]) == -int(res)
    assert set(sizes) == set(pos) == {10, 20, 60}
    return tile_id, str(crs), {r: (*pos[r], *sizes[r]) for r in sizes}


def _aws_tile_id(folder: Path) -> str | None:
    """Tile id written in an AWS ``tileInfo.json`` beside the metadata, if any."""
    info = folder / "tileInfo.json"
    if not info.is_file():
        return None
    d = json.loads(info.read_text())
    return f"{int(d['utmZone']):02d}{d['latitudeBand']}{d['gridSquare']}"


def test_every_tile_metadata_matches_computed_grid(sample_data: Path) -> None:
    files = _tile_metadata_files(sample_data)
    # the sample data hold > 30 tile metadata files (L1C, L2A, PDMC, AWS), both hemispheres
    assert len(files) >= 30, files
    seen = set()
    relabelled = []
    for path in files:
        tile_id, crs, geo = _read_geocoding(path)
        assert tile_id, path
        aws = _aws_tile_id(path.parent)
        if aws is not None and aws != tile_id:
            # stactools' "T34LBQ" fixtures are copies of the 34LBP metadata with only the ids
            # renamed: their own tileInfo.json (path tiles/34/L/BP, gridSquare BP) and their
            # geoposition are those of 34LBP. Check them as what they really are.
            relabelled.append((tile_id, aws))
            tile_id = aws
        seen.add(tile_id)
        assert tile_crs(tile_id) == crs, path
        assert tile_crs("T" + tile_id) == crs
        for res, (ulx, uly, nrows, ncols) in geo.items():
            gb = tile_geobox(tile_id, res)
            assert gb.shape == (nrows, ncols), (path, res)
            t = gb.affine
            assert (t.c, t.f, t.a, t.e) == (ulx, uly, res, -res), (path, res, gb.affine)
            assert str(gb.crs) == crs
    assert relabelled == [("34LBQ", "34LBP")] * 3
    # both hemispheres, zones 1 and 60, several corner offsets
    assert {"31TCJ", "31TDH", "53HLA", "01LAC", "60CWS", "33XWJ", "37MGS"} <= seen
    assert len(seen) >= 20


def test_coarse_grid_covers_tile_with_same_corner() -> None:
    gb = tile_geobox("T31TCJ", 240)
    assert gb.shape == (458, 458)
    assert (gb.affine.c, gb.affine.f) == (300000.0, 4900020.0)
    assert gb.affine.a == 240 and gb.affine.e == -240
    g120 = tile_geobox("31TCJ", 120)
    assert g120.shape == (915, 915)
    g10 = tile_geobox("31TCJ", 10)
    # the coarse grid covers the full tile
    assert gb.extent.contains(g10.extent)


def test_origin_lattice_rule_examples() -> None:
    # independent of the files: square edges on the 60 m lattice already stay put
    assert tile_origin("31TCJ") == (300000.0, 4900020.0)
    assert tile_origin("T32TNM") == (499980.0, 4700040.0)
    assert tile_origin("53HPV") == (600000.0, 6000040.0)
    assert tile_crs("53HPV") == "EPSG:32753"
    assert tile_crs("T31TCJ") == "EPSG:32631"


@pytest.mark.parametrize("bad", ["", "31", "T31TIJ", "61TCJ", "31TSJ", "31TCW", "31ACJ", "XYZ12"])
def test_bad_tile_ids(bad: str) -> None:
    with pytest.raises(InputError):
        parse_tile_id(bad)
