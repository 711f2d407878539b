"""Where l2a finds the sample data and the auxiliary tables.

- ``L2A_SAMPLE_DATA``: folder of real Sentinel-2 sample data (default ``../shared/data``
  relative to the repository root, i.e. beside the checkout).
- ``L2A_AUX_DIR``: auxiliary radiometric tables (default ``<sample data>/radiometry_rt_aux``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root when running from a checkout (``l2a/`` lives directly under it).
REPO_ROOT = Path(__file__).resolve().parent.parent


def sample_data_dir() -> Path:
    """Folder of the real sample data (may not exist on a user's machine)."""
    env = os.environ.get("L2A_SAMPLE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def aux_dir() -> Path:
    """Folder of the auxiliary radiometric tables (SMAC coefficients, spectra)."""
    env = os.environ.get("L2A_AUX_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return sample_data_dir() / "radiometry_rt_aux"
