"""The notebooks: stripped in git, parameterised, and executed with papermill on a small catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")

from fixtures_dashboard import SmallSite, small_site  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SmallSite:
    return small_site(tmp_path_factory.mktemp("nb") / "site", dates_per_site=8)


@pytest.mark.parametrize("name", ["explore_tile.ipynb", "site_report.ipynb"])
def test_notebook_is_stripped_and_parameterised(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "config" in params[0].source
    nbformat.validate(nb)


def test_site_report_runs_with_papermill(site: SmallSite, tmp_path: Path) -> None:
    from l2a.report import run_report

    out = tmp_path / "report"
    res = run_report("toulouse", "2024-01-01", "2024-03-31", out, site.config)
    html = res.html.read_text(encoding="utf-8")
    assert "Cover of each acquisition" in html and "data:image/png;base64" in html
    assert "def " not in html  # code cells hidden
    monthly = pd.read_csv(out / "monthly.csv")
    products = pd.read_csv(out / "products.csv", parse_dates=["datetime"])
    # fixture: toulouse dates every 15 days from 2024-01-05, 6 published; 7 fall in Jan-Mar, 6 published
    assert len(products) == 6
    assert (products["datetime"].dt.month <= 3).all()
    assert monthly["dates"].sum() == len(products)
    assert (out / "covers.png").stat().st_size > 1000


def test_site_report_rejects_bad_dates(site: SmallSite, tmp_path: Path) -> None:
    from l2a.errors import InputError
    from l2a.report import run_report

    with pytest.raises(InputError, match="YYYY-MM-DD"):
        run_report("toulouse", "January", None, tmp_path, site.config)
    with pytest.raises(InputError, match="before start"):
        run_report("toulouse", "2024-03-01", "2024-01-01", tmp_path, site.config)


def test_explore_tile_runs_with_papermill(site: SmallSite, tmp_path: Path) -> None:
    import papermill

    pytest.importorskip("odc.stac")
    pytest.importorskip("stackstac")
    out = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "explore_tile.ipynb"), str(out), cwd=str(tmp_path), progress_bar=False,
        parameters={"config": str(site.config), "tile": "33TVL", "max_dates": 3, "resolution": 20.0},
    )
    nb = nbformat.read(out, as_version=4)
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    assert images >= 4  # RGB series, masks, NDVI series, AOT/WV maps
    text = "".join(o.get("data", {}).get("text/plain", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "ndvi" in text and "clear fraction" in text


def test_notebooks_run_on_the_demo_catalog(demo_site: Path, tmp_path: Path) -> None:
    """Both notebooks on the real products of ``l2a demo`` (small parameters)."""
    import papermill

    from l2a.report import run_report

    pytest.importorskip("odc.stac")
    pytest.importorskip("stackstac")
    out = tmp_path / "report"
    res = run_report("slovenia", "2015-07-01", "2015-09-30", out, demo_site)
    products = pd.read_csv(out / "products.csv", parse_dates=["datetime"])
    assert len(products) == 5  # the five real Slovenia dates
    assert "Cover of each acquisition" in res.html.read_text(encoding="utf-8")
    # the two fully cloudy dates are seen as such by the masks, the three clear ones as clear
    cloud = products.sort_values("datetime")["cloud"].round().tolist()
    assert cloud == [0, 100, 100, 0, 0]

    nb_out = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "explore_tile.ipynb"), str(nb_out), cwd=str(tmp_path), progress_bar=False,
        parameters={"config": str(demo_site), "tile": "33TVL", "max_dates": 3, "resolution": 20.0},
    )
    nb = nbformat.read(nb_out, as_version=4)
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    assert images >= 4
