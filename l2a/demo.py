"""``l2a demo``: the README's main job on the embedded defaults.

Until the production chain exists, the demo opens every sample L1C product found in
``L2A_SAMPLE_DATA`` (SAFE folders and array scenes) and prints their parsed metadata,
which exercises the whole input layer on real data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from l2a.errors import L2AError
from l2a.paths import sample_data_dir

#: Shown when the sample data are absent: a query that finds real L1C products.
WHERE_TO_GET_DATA = """\
No sample data found at {root}.
Point L2A_SAMPLE_DATA at a folder of Sentinel-2 L1C SAFE products, or fetch some with a
STAC API query, for example (Earth Search, public, no account):

  python -m pip install pystac-client
  stac-client search https://earth-search.aws.element84.com/v1 -c sentinel-2-l1c \\
      --query "grid:code=MGRS-31TCJ" --datetime 2024-01-01/2024-03-31 --max-items 5
"""


def sample_products(root: Path) -> Iterator[str]:
    """Every sample L1C source under ``root``: SAFE products, then array scenes."""
    for mtd in sorted(root.glob("**/MTD_MSIL1C.xml")):
        safe = mtd.parent
        if (safe / "GRANULE").is_dir() and any((safe / "GRANULE").glob("*/MTD_TL.xml")):
            yield str(safe)
    try:
        from l2a.io.scenes import list_scenes
    except ImportError:  # pragma: no cover - scenes module always ships
        return
    for name in list_scenes():
        yield f"scene:{name}"


def run_demo(workdir: Path | None = None, console: Console | None = None) -> int:
    """Open every sample product and print a summary table; return the number read."""
    from l2a.io import open_l1c

    console = console or Console()
    root = sample_data_dir()
    if not root.is_dir():
        console.print(WHERE_TO_GET_DATA.format(root=root))
        return 0
    table = Table(title=f"L1C products in {root}")
    for col in ("product", "platform", "tile", "sensing time (UTC)", "baseline", "sun zenith", "bands"):
        table.add_column(col)
    n = 0
    for src in sample_products(root):
        try:
            product = open_l1c(src)
        except L2AError as exc:
            table.add_row(Path(src).name, "[red]error[/]", "", str(exc), "", "", "")
            continue
        md = product.metadata
        table.add_row(
            md.product_id[:60],
            md.platform,
            md.tile_id,
            md.sensing_time.strftime("%Y-%m-%d %H:%M:%S"),
            md.baseline or "-",
            f"{md.mean_sun_zenith:.2f}",
            str(len(product.bands)),
        )
        n += 1
    console.print(table)
    console.print(f"{n} products read. Inspect one with: l2a info PRODUCT [--json]")
    return n
