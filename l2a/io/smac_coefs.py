"""Read SMAC coefficient files (auxiliary data, never embedded in code).

File layout (sen2like / CNES 2022, ``Coef_S2{A,B,C}_CONTINENTAL.dat``): one comment line
starting with ``#``, then 49 rows of 13 numbers; row ``i`` is the coefficient
``l2a.kernels.smac.COEFFICIENT_NAMES[i]``, column ``j`` the band ``B01 … B12`` (with B8A
after B08). Files live in ``<aux_dir>/smac_sen2like/`` (``L2A_AUX_DIR``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np

from l2a.errors import InputError, MissingDataError
from l2a.kernels.smac import COEFFICIENT_NAMES, SmacCoefficients
from l2a.paths import aux_dir
from l2a.sensors.sentinel2 import BAND_NAMES

#: Sub-folder of the auxiliary-data directory holding the coefficient files.
SMAC_SUBDIR: Final[str] = "smac_sen2like"
#: Aerosol model of the default files.
DEFAULT_AEROSOL_MODEL: Final[str] = "CONTINENTAL"


def coefficient_file(platform: str, aerosol_model: str = DEFAULT_AEROSOL_MODEL, root: Path | None = None) -> Path:
    """Path of the SMAC coefficient file of ``platform`` (``"S2A"``, ``"S2B"``, ``"S2C"``)."""
    base = (root if root is not None else aux_dir()) / SMAC_SUBDIR
    return base / f"Coef_{platform.upper()}_{aerosol_model.upper()}.dat"


def parse_coefficient_file(path: Path) -> SmacCoefficients:
    """Parse one coefficient file.

    Raises
    ------
    l2a.errors.MissingDataError
        When the file does not exist.
    l2a.errors.InputError
        When it does not hold 49 rows of 13 finite numbers after its comment lines.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"{path}: SMAC coefficient file not found; set L2A_AUX_DIR to the folder that holds "
            f"{SMAC_SUBDIR}/Coef_S2A_CONTINENTAL.dat …"
        )
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the SMAC coefficient file as text ({exc})") from exc
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            rows.append([float(v) for v in stripped.split()])
        except ValueError:
            raise InputError(path, f"line {lineno} is not a row of numbers: {stripped[:60]!r}") from None
    n_rows, n_cols = len(COEFFICIENT_NAMES), len(BAND_NAMES)
    if len(rows) != n_rows:
        raise InputError(path, f"expected {n_rows} coefficient rows ({', '.join(COEFFICIENT_NAMES[:3])} …), found {len(rows)}")
    bad = [i for i, r in enumerate(rows) if len(r) != n_cols]
    if bad:
        raise InputError(
            path,
            f"row {bad[0] + 1} ({COEFFICIENT_NAMES[bad[0]]}) has {len(rows[bad[0]])} values, expected {n_cols} (one per band)",
        )
    table = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(table)):
        raise InputError(path, "non-finite coefficient values")
    c = SmacCoefficients.from_table(table, BAND_NAMES, source=str(path))
    # light sanity checks of the physical coefficients
    if np.any(c.taur <= 0) or np.any(c.taur > 1) or np.any((c.wo <= 0) | (c.wo > 1)):
        raise InputError(path, "implausible Rayleigh depth or aerosol albedo: is this a SMAC file in the 49x13 layout?")
    return c


@lru_cache(maxsize=16)
def _cached(path: str, mtime: float) -> SmacCoefficients:
    return parse_coefficient_file(Path(path))


def read_smac_coefficients(
    platform: str, aerosol_model: str = DEFAULT_AEROSOL_MODEL, root: Path | None = None
) -> SmacCoefficients:
    """SMAC coefficients of ``platform`` from the auxiliary-data directory (cached per file).

    Parameters
    ----------
    platform : ``"S2A"``, ``"S2B"`` or ``"S2C"``.
    aerosol_model : aerosol model of the file name (``"CONTINENTAL"``).
    root : auxiliary-data directory; default :func:`l2a.paths.aux_dir`.
    """
    path = coefficient_file(platform, aerosol_model, root)
    if not path.is_file():
        return parse_coefficient_file(path)  # raises MissingDataError naming the file
    return _cached(str(path), path.stat().st_mtime)
