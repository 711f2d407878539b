"""Site configuration: file + environment, defaults, path resolution, errors, `l2a init`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from l2a.config import (
    ClusterSettings,
    DemSettings,
    ProcessingSettings,
    Settings,
    StacApiSource,
    StaticCatalogSource,
    example_text,
    init_site,
    load_config,
)
from l2a.errors import InputError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No L2A_* setting from the caller's environment leaks into these tests."""
    import os

    for k in list(os.environ):
        if (
            k.upper().startswith("L2A_")
            and k.upper()[4:].split("__")[0].lower() in Settings.model_fields
        ):
            monkeypatch.delenv(k)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MINIMAL = """
[[sites]]
name = "toulouse"
tiles = ["T31TCJ", "31tdh"]
start = 2024-01-01
"""


def test_init_site_writes_a_valid_commented_example(tmp_path: Path) -> None:
    cfg = init_site(tmp_path / "site")
    assert cfg == tmp_path / "site" / "site.toml"
    text = cfg.read_text()
    assert text.count("#") > 40  # commented
    for folder in ("inbox", "products", "catalog"):
        assert (tmp_path / "site" / folder).is_dir()
    s = load_config(cfg)
    assert s.sites[0].tiles == ["31TCJ"]
    assert s.config_file == cfg.resolve()
    with pytest.raises(InputError, match="already exists"):
        init_site(tmp_path / "site")
    assert init_site(tmp_path / "site", overwrite=True) == cfg


def test_documented_defaults(tmp_path: Path) -> None:
    """The issue's documented defaults, and the template shows exactly the model defaults."""
    s = load_config(_write(tmp_path / "site.toml", MINIMAL))
    p = s.processing
    assert (p.coarse_resolution, p.reinit_gap_days, p.backward_dates) == (240, 45, 8)
    assert p.max_cloud_cover == 90.0 and p.zip_output is False
    assert s.cluster.kind == "local"
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'l2a.db'}"
    assert s.database_url is None and s.sources == []

    template = tomllib.loads(example_text())
    assert ProcessingSettings(**template["processing"]) == ProcessingSettings()
    assert ClusterSettings(**template["cluster"]) == ClusterSettings()
    assert DemSettings(**template["dem"]) == DemSettings()
    for field in ("workdir", "inbox", "products", "catalog", "composites", "poll_interval_s"):
        assert str(template[field]) == str(Settings.model_fields[field].default), field


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _write(
        tmp_path / "conf" / "site.toml",
        """
workdir = "../work"
inbox = "/abs/inbox"
database_url = "sqlite:///db/status.db"
"""
        + MINIMAL
        + """
[[sources]]
kind = "static_stac"
href = "l1c/catalog.json"
[[sources]]
kind = "stac_api"
url = "https://example.org/stac"
collection = "sentinel-2-l1c"
query = { "eo:cloud_cover" = { lt = 50 } }
[cluster]
kind = "scheduler_file"
scheduler_file = "sched.json"
[dem]
source = "dem/cop30.vrt"
""",
    )
    monkeypatch.chdir(tmp_path.parent)  # the current folder must not matter
    s = load_config(cfg)
    conf = (tmp_path / "conf").resolve()
    assert s.workdir == tmp_path.resolve() / "work"
    assert s.inbox == Path("/abs/inbox")
    assert s.products == s.workdir / "products"
    assert s.db_url == f"sqlite:///{conf / 'db' / 'status.db'}"
    static, api = s.sources
    assert isinstance(static, StaticCatalogSource) and static.href == str(
        conf / "l1c" / "catalog.json"
    )
    assert isinstance(api, StacApiSource) and api.query == {"eo:cloud_cover": {"lt": 50}}
    assert s.cluster.scheduler_file == conf / "sched.json"
    assert s.dem.source == str(conf / "dem" / "cop30.vrt")
    # a folder holding site.toml works too
    assert load_config(tmp_path / "conf") == s


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(
        tmp_path / "site.toml",
        MINIMAL + "\n[processing]\nmax_cloud_cover = 70\nbackward_dates = 5\n",
    )
    monkeypatch.setenv("L2A_PROCESSING__MAX_CLOUD_COVER", "40")
    monkeypatch.setenv("L2A_DATABASE_URL", "postgresql://l2a@db.example/l2a")
    monkeypatch.setenv("L2A_CLUSTER__KIND", "scheduler")
    monkeypatch.setenv("L2A_CLUSTER__ADDRESS", "tcp://10.0.0.5:8786")
    monkeypatch.setenv("L2A_SAMPLE_DATA", "/somewhere")  # not a setting: ignored
    s = load_config(cfg)
    assert s.processing.max_cloud_cover == 40  # env wins
    assert s.processing.backward_dates == 5  # the file's other values stay (deep merge)
    assert s.db_url == "postgresql://l2a@db.example/l2a"
    assert (s.cluster.kind, s.cluster.address) == ("scheduler", "tcp://10.0.0.5:8786")
    # keyword overrides (command-line options) win over both
    assert load_config(cfg, inbox="/cli/inbox").inbox == Path("/cli/inbox")


def test_yaml_file(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path / "site.yaml",
        "sites:\n  - name: alps\n    bbox: [6.5, 45.0, 7.5, 46.0]\n    start: 2023-05-01\n    end: 2023-09-30\n"
        "processing:\n  zip_output: true\n  compression_level: 9\n  cog_validation: rio-cogeo\n",
    )
    s = load_config(cfg)
    assert s.sites[0].bbox == (6.5, 45.0, 7.5, 46.0)
    assert str(s.sites[0].end) == "2023-09-30"
    assert s.processing.zip_output is True
    from l2a.production.runner import chain_settings

    pkg = chain_settings(s).package
    assert pkg.make_zip is True and pkg.cog.level == 9 and pkg.cog_validation == "rio-cogeo"
    assert chain_settings(load_config(None)).package.cog.level == 1
    assert chain_settings(load_config(None)).package.cog_validation == "layout"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[processing\ncoarse_resolution = 240", "not valid TOML"),
        (
            "[processing]\ncoarse_resolution = -240",
            r"processing\.coarse_resolution: Input should be greater than 0",
        ),
        ("[processing]\nmax_cloud_cover = 120", r"processing\.max_cloud_cover"),
        (
            "[processing]\ncoarse_resolutoin = 240",
            r"processing\.coarse_resolutoin: unknown setting",
        ),
        ("[[sites]]\nname = 'x'\n", "site 'x' needs tiles, a bbox or a geojson area"),
        (
            "[[sites]]\nname = 'x'\ntiles = ['31TCJX']\n",
            r"sites\.0\.tiles: not a Sentinel-2 MGRS tile id",
        ),
        (
            "[[sites]]\nname = 'x'\ntiles = ['31TCJ']\nstart = 2024-05-01\nend = 2024-01-01\n",
            "before start",
        ),
        ("[cluster]\nkind = 'scheduler'\n", "needs the field 'address'"),
        ("[cluster]\nkind = 'kubernetes'\n", r"cluster\.kind"),
        ("[[sources]]\nkind = 'ftp'\nurl = 'x'\n", r"sources\.0"),
        (
            "[[sites]]\nname = 'a'\ntiles = ['31TCJ']\n[[sites]]\nname = 'a'\ntiles = ['31TDH']\n",
            "unique",
        ),
    ],
)
def test_errors_name_file_field_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    cfg = _write(tmp_path / "site.toml", text)
    with pytest.raises(InputError, match=expected) as info:
        load_config(cfg)
    assert info.value.path == str(cfg)


def test_bad_environment_value_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "site.toml", MINIMAL)
    monkeypatch.setenv("L2A_PROCESSING__REINIT_GAP_DAYS", "soon")
    with pytest.raises(
        InputError, match=r"processing\.reinit_gap_days.*L2A_PROCESSING__REINIT_GAP_DAYS"
    ):
        load_config(cfg)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="l2a init"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="no configuration file here"):
        load_config(tmp_path)


def test_no_file_uses_environment_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("L2A_INBOX", "drop")
    s = load_config()
    assert s.inbox == tmp_path.resolve() / "drop"
    assert s.config_file is None and s.sites == []


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_config(_write(tmp_path / "site.toml", MINIMAL))
    with pytest.raises(Exception, match="frozen"):
        s.processing.coarse_resolution = 120  # type: ignore[misc]
    assert s.site_for_tile("T31TDH") is s.sites[0]
    assert s.site_for_tile("33UWP") is None
