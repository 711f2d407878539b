"""Bad SAFE input: each case gives one clear InputError naming the file (deliverable 8)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from l2a.errors import InputError
from l2a.io.safe import open_safe

TOULOUSE = "alcd_toulouse_T31TCJ/safe/S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE"


@pytest.fixture()
def safe_copy(sample_path: Callable[[str], Path], tmp_path: Path) -> Path:
    src = sample_path(TOULOUSE)
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def _mtl(root: Path) -> Path:
    return next(root.glob("GRANULE/*/MTD_TL.xml"))


def _band(root: Path, name: str) -> Path:
    return next(root.glob(f"GRANULE/*/IMG_DATA/*_{name}.jp2"))


def _zip(root: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f"{root.name}/{f.relative_to(root).as_posix()}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out


def test_truncated_jpeg2000(safe_copy: Path) -> None:
    b02 = _band(safe_copy, "B02")
    data = b02.read_bytes()
    b02.write_bytes(data[: len(data) // 2])
    p = open_safe(safe_copy)
    with pytest.raises(InputError) as err:
        p.toa(["B02"], 10).compute()
    assert b02.name in str(err.value) and "truncated" in str(err.value)


def test_empty_jpeg2000(safe_copy: Path) -> None:
    b03 = _band(safe_copy, "B03")
    b03.write_bytes(b"")
    with pytest.raises(InputError, match=r"B03\.jp2.*cannot open the JPEG2000"):
        open_safe(safe_copy).toa(["B03"], 10)


def test_truncated_zip(safe_copy: Path, tmp_path: Path) -> None:
    z = _zip(safe_copy, tmp_path / "product.zip")
    data = z.read_bytes()
    z.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=r"product\.zip: not a readable zip file.*truncated"):
        open_safe(z)


@pytest.mark.parametrize("evil", ["../escape.txt", "/etc/evil.txt", "S2.SAFE/../../x.xml"])
def test_zip_member_escaping(safe_copy: Path, tmp_path: Path, evil: str) -> None:
    z = _zip(safe_copy, tmp_path / "evil.zip", {evil: b"x"})
    with pytest.raises(InputError, match=r"evil\.zip: zip member .* escapes the product folder"):
        open_safe(z)


def test_missing_tile_metadata(safe_copy: Path) -> None:
    _mtl(safe_copy).unlink()
    with pytest.raises(InputError, match=r"MTD_TL\.xml: tile metadata MTD_TL\.xml is missing"):
        open_safe(safe_copy)


def test_malformed_xml(safe_copy: Path) -> None:
    mtd = safe_copy / "MTD_MSIL1C.xml"
    text = mtd.read_bytes()
    mtd.write_bytes(text[: len(text) // 2])
    with pytest.raises(InputError, match=r"MTD_MSIL1C\.xml: malformed XML"):
        open_safe(safe_copy)


def test_external_entity(safe_copy: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    mtl = _mtl(safe_copy)
    text = mtl.read_text(encoding="utf-8")
    decl, rest = text.split("\n", 1)
    evil = (
        f'{decl}\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        + rest.replace("<DOWNLINK_PRIORITY", "<X>&xxe;</X><DOWNLINK_PRIORITY", 1)
    )
    mtl.write_text(evil, encoding="utf-8")
    with pytest.raises(InputError, match=r"MTD_TL\.xml: refused unsafe XML") as err:
        open_safe(safe_copy)
    assert "SECRET" not in str(err.value)


@pytest.mark.parametrize("baseline", ["09.99", "garbage", ""])
def test_unknown_baseline(safe_copy: Path, baseline: str) -> None:
    mtd = safe_copy / "MTD_MSIL1C.xml"
    text = mtd.read_text(encoding="utf-8")
    mtd.write_text(text.replace(">05.10</PROCESSING_BASELINE>", f">{baseline}</PROCESSING_BASELINE>"), encoding="utf-8")
    with pytest.raises(InputError, match=r"MTD_MSIL1C\.xml: (unknown processing baseline|processing baseline)"):
        open_safe(safe_copy)


def test_band_of_wrong_size(safe_copy: Path) -> None:
    b02 = _band(safe_copy, "B02")
    b02.unlink()
    with rasterio.open(
        b02, "w", driver="JP2OpenJPEG", width=20, height=20, count=1, dtype="uint16",
        crs="EPSG:32631", transform=from_origin(350000, 4850020, 10, 10), REVERSIBLE=True, QUALITY=100,
    ) as dst:
        dst.write(np.full((1, 20, 20), 1234, np.uint16))
    p = open_safe(safe_copy)
    with pytest.raises(InputError, match=r"B02\.jp2: wrong band size: 20 x 20 px"):
        p.toa(["B02", "B03"], 10)


def test_not_l1c_and_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_safe(tmp_path / "nothing.SAFE")
    (tmp_path / "empty.SAFE").mkdir()
    with pytest.raises(InputError, match="not a Sentinel-2 L1C SAFE"):
        open_safe(tmp_path / "empty.SAFE")
