"""Packaging invariants: light import, CLI version, environment.yml mirrors pyproject."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from typer.testing import CliRunner

import l2a
from l2a.cli import app

ROOT = Path(__file__).resolve().parent.parent

#: pip name -> conda-forge name where they differ
CONDA_NAMES = {"dask": "dask-core", "psycopg": "psycopg", "types-PyYAML": "types-pyyaml"}


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].strip()


def test_version_cli() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"l2a {l2a.__version__}"


def test_import_is_light() -> None:
    code = (
        "import sys, l2a; heavy = [m for m in ('panel', 'bokeh', 'jupyter_core', 'IPython', 'distributed',"
        " 'holoviews', 'sqlalchemy') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_environment_yml_mirrors_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in reqs}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    have = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    missing = sorted(CONDA_NAMES.get(n, n).lower() for n in wanted if CONDA_NAMES.get(n, n).lower() not in have)
    assert not missing, f"environment.yml lacks {missing}"
    assert "libgdal-jp2openjpeg" in have
    assert any(d.startswith("python=3.12") for d in env["dependencies"] if isinstance(d, str))


def test_input_error_pickles() -> None:
    import pickle

    from l2a.errors import InputError

    err = pickle.loads(pickle.dumps(InputError("/x/B01.jp2", "truncated")))
    assert isinstance(err, InputError) and err.path == "/x/B01.jp2" and err.problem == "truncated"
    assert str(err) == "/x/B01.jp2: truncated"
