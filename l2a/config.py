"""Site configuration: one typed settings object from a TOML/YAML file and the environment.

A site is described by a file (``site.toml``, written commented by ``l2a init SITE_DIR``) and
may be overridden by environment variables ``L2A_<FIELD>``, nested with ``__``::

    L2A_DATABASE_URL=postgresql://l2a@dbhost/l2a
    L2A_PROCESSING__MAX_CLOUD_COVER=80
    L2A_CLUSTER__KIND=scheduler L2A_CLUSTER__ADDRESS=tcp://10.0.0.5:8786

Precedence: keyword arguments > environment > file > defaults. Relative paths (in the file
or the environment) resolve against the folder of the configuration file (the current
folder when there is no file). The database URL defaults to ``sqlite:///<workdir>/l2a.db``.

Why pydantic-settings: it is the maintained, widely used library for exactly this (typed
models, environment variables with prefixes and nesting, precise validation messages with the
location of the bad field); the file itself is read with :mod:`tomllib` or PyYAML.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from l2a.errors import InputError

__all__ = [
    "CONFIG_NAMES",
    "ClusterSettings",
    "DemSettings",
    "EodagSource",
    "ProcessingSettings",
    "RestoSource",
    "Settings",
    "Site",
    "StacApiSource",
    "StaticCatalogSource",
    "init_site",
    "load_config",
    "write_example",
]

#: File names ``load_config`` looks for when given a folder.
CONFIG_NAMES = ("site.toml", "l2a.toml", "site.yaml", "site.yml", "l2a.yaml", "l2a.yml")

_FILE_DATA: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("l2a_config_file")


class _Model(BaseModel):
    """Frozen, strict about unknown keys (a typo in the file is an error, not a silent default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Site(_Model):
    """One production site: where (tiles or an area) and when."""

    name: str = Field(min_length=1, description="Short name, used in tables and folder names.")
    tiles: list[str] = Field(
        default_factory=list, description="MGRS tiles, with or without the leading T (31TCJ)."
    )
    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="Area as lon_min, lat_min, lon_max, lat_max (degrees, WGS84)."
    )
    geojson: Path | dict[str, Any] | None = Field(
        default=None,
        description="Area as a GeoJSON file (relative to the config) or inline geometry.",
    )
    start: date | None = Field(
        default=None, description="First acquisition date (inclusive); none: no limit."
    )
    end: date | None = Field(
        default=None, description="Last acquisition date (inclusive); none: open-ended."
    )

    @field_validator("tiles")
    @classmethod
    def _tiles(cls, value: list[str]) -> list[str]:
        from l2a.io.identity import normalise_tile

        out = []
        for tile in value:
            try:
                out.append(normalise_tile(tile))
            except InputError as exc:
                raise ValueError(exc.problem + f": {tile!r}") from None
        return out

    @field_validator("bbox")
    @classmethod
    def _bbox(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None:
            x0, y0, x1, y1 = value
            if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
                raise ValueError(
                    "bbox must be lon_min < lon_max in [-180, 180], lat_min < lat_max in [-90, 90]"
                )
        return value

    @model_validator(mode="after")
    def _where_and_when(self) -> Site:
        if not self.tiles and self.bbox is None and self.geojson is None:
            raise ValueError(f"site {self.name!r} needs tiles, a bbox or a geojson area")
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"site {self.name!r}: end {self.end} is before start {self.start}")
        return self


class StacApiSource(_Model):
    """A STAC API searched with pystac-client."""

    kind: Literal["stac_api"] = "stac_api"
    url: str = Field(description="API root, e.g. https://earth-search.aws.element84.com/v1")
    collection: str = Field(description="Collection id, e.g. sentinel-2-l1c.")
    query: dict[str, Any] = Field(
        default_factory=dict, description="Extra STAC query, e.g. {'eo:cloud_cover': {'lt': 80}}."
    )
    page_size: int = Field(
        default=80, gt=0, description="Items per page (GEODES allows at most 80)."
    )


class StaticCatalogSource(_Model):
    """A static STAC catalog on disk or over HTTP."""

    kind: Literal["static_stac"] = "static_stac"
    href: str = Field(description="catalog.json path (relative to the config) or URL.")


class RestoSource(_Model):
    """A PEPS/Theia-style resto OpenSearch ``search.json`` endpoint."""

    kind: Literal["resto"] = "resto"
    url: str = Field(description="…/resto/api/collections/{collection}/search.json")
    params: dict[str, str] = Field(
        default_factory=dict, description="Extra query parameters (productType, …)."
    )
    max_records: int = Field(
        default=500, gt=0, le=500, description="maxRecords per page (resto allows 500)."
    )


class EodagSource(_Model):
    """An EODAG provider (optional dependency ``eodag``)."""

    kind: Literal["eodag"] = "eodag"
    provider: str = Field(description="EODAG provider name, e.g. geodes or cop_dataspace.")
    product_type: str = Field(default="S2_MSI_L1C", description="EODAG product type.")
    url: str | None = Field(
        default=None,
        description="STAC API root: declares `provider` as a custom EODAG STAC provider there.",
    )
    collection: str | None = Field(
        default=None,
        description="The custom STAC API's collection id (default sentinel-2-l1c); needs url.",
    )
    page_size: int | None = Field(
        default=None, gt=0, description="Results per page; none: EODAG's default."
    )
    config_file: Path | None = Field(
        default=None,
        description="EODAG user configuration (credentials); relative to the site file; none: EODAG's.",
    )

    @model_validator(mode="after")
    def _collection_needs_url(self) -> EodagSource:
        if self.collection is not None and self.url is None:
            raise ValueError("`collection` names a custom STAC API's collection: give its `url` too")
        return self


CatalogSource = Annotated[
    StacApiSource | StaticCatalogSource | RestoSource | EodagSource, Field(discriminator="kind")
]


class ClusterSettings(_Model):
    """Where the dask work runs."""

    kind: Literal["local", "scheduler", "scheduler_file", "jobqueue"] = Field(
        default="local", description="local: an embedded LocalCluster; else join or start one."
    )
    address: str | None = Field(
        default=None, description="Scheduler address tcp://host:8786 (kind=scheduler)."
    )
    scheduler_file: Path | None = Field(
        default=None, description="Scheduler file (kind=scheduler_file)."
    )
    jobqueue: str | None = Field(
        default=None,
        description="dask-jobqueue profile name in dask's config, e.g. slurm or pbs (kind=jobqueue).",
    )
    n_workers: int | None = Field(
        default=None,
        gt=0,
        description="Workers (local) or jobs to scale to (jobqueue); none: dask decides.",
    )
    threads_per_worker: int = Field(default=1, gt=0, description="Threads per local worker.")
    memory_limit: str = Field(
        default="auto", description="Memory per local worker, e.g. 4GiB, or auto."
    )
    dashboard_address: str = Field(
        default=":8787", description="Dashboard address of the local cluster."
    )

    @model_validator(mode="after")
    def _complete(self) -> ClusterSettings:
        need = {
            "scheduler": "address",
            "scheduler_file": "scheduler_file",
            "jobqueue": "jobqueue",
        }.get(self.kind)
        if need and getattr(self, need) is None:
            raise ValueError(f"cluster kind {self.kind!r} needs the field {need!r}")
        return self


class ProcessingSettings(_Model):
    """Production choices of the multi-temporal chain."""

    coarse_resolution: int = Field(
        default=240, gt=0, description="Resolution of the coarse core (m)."
    )
    reinit_gap_days: int = Field(
        default=45,
        gt=0,
        description="A gap longer than this (days) since the last processed date restarts in INIT mode.",
    )
    backward_dates: int = Field(
        default=8, gt=0, description="Dates used by BACKWARD mode to initialise a tile's composite."
    )
    max_cloud_cover: float = Field(
        default=90.0,
        ge=0,
        le=100,
        description="Products announced cloudier than this (%) are not processed.",
    )
    zip_output: bool = Field(default=False, description="Also ship each product as a zip.")
    compression_level: int = Field(
        default=1,
        ge=1,
        le=22,
        description="ZSTD level of the COGs (lossless; 3: 0.2-4.5 % smaller, 1.5-1.7x slower to encode; "
        "9: 1-2 % smaller again, 1.6-1.8x slower than 3).",
    )
    cog_validation: Literal["layout", "rio-cogeo"] = Field(
        default="layout",
        description="How each COG is checked before a product is moved into place: 'layout' (GDAL's "
        "LAYOUT=COG mark, tile size, overview levels) or 'rio-cogeo' (also rio-cogeo's full validation).",
    )
    max_attempts: int = Field(
        default=3, gt=0, description="Attempts per job before it is marked failed."
    )
    retry_backoff_s: float = Field(
        default=60.0, ge=0, description="Wait before the first retry (s), doubled each attempt."
    )
    collection: str = Field(
        default="sentinel2-l2a-l2a", description="STAC collection id of our products."
    )


class DemSettings(_Model):
    """Digital elevation model source."""

    source: str | None = Field(
        default=None,
        description="DEM GeoTIFF/VRT, folder of tiles (e.g. Copernicus DEM COGs), or URL; none: sea level (flagged).",
    )
    sea_level_fallback: bool = Field(
        default=True, description="Fill missing DEM coverage with 0 m (flagged) instead of failing."
    )


class _FileSource(PydanticBaseSettingsSource):
    """The configuration file's content (set by :func:`load_config` through a context variable)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_DATA.get({}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get({}))


class Settings(BaseSettings):
    """Everything a production site needs. Build it with :func:`load_config`.

    Paths are absolute after :func:`load_config` (relative ones resolve against the config
    file's folder).
    """

    model_config = SettingsConfigDict(
        env_prefix="L2A_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    workdir: Path = Field(
        default=Path("."),
        description="Base folder of the site (default: the config file's folder).",
    )
    inbox: Path = Field(
        default=Path("inbox"), description="Folder where L1C SAFE folders or zips are dropped."
    )
    products: Path = Field(
        default=Path("products"), description="Output folder of the L2A products."
    )
    catalog: Path = Field(
        default=Path("catalog"),
        description="Static STAC catalog folder (catalog.json at its root).",
    )
    composites: Path = Field(
        default=Path("composites"), description="Per-tile composite state (resume point)."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<workdir>/l2a.db (postgresql://… for several hosts).",
    )
    poll_interval_s: float = Field(
        default=30.0, gt=0, description="Inbox/catalog scan period of `l2a watch` (s)."
    )
    sites: list[Site] = Field(default_factory=list, description="Production sites.")
    sources: list[CatalogSource] = Field(
        default_factory=list, description="Catalog sources besides the inbox."
    )
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    dem: DemSettings = Field(default_factory=DemSettings)
    config_file: Path | None = Field(
        default=None, exclude=True, description="The file this was read from."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))

    @model_validator(mode="after")
    def _unique_sites(self) -> Settings:
        names = [s.name for s in self.sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site names must be unique: {', '.join(dupes)}")
        return self

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to SQLite in the work folder."""
        return self.database_url or f"sqlite:///{self.workdir / 'l2a.db'}"

    def site_for_tile(self, tile: str) -> Site | None:
        """The first site listing ``tile`` explicitly (area sites need a footprint test)."""
        from l2a.io.identity import normalise_tile

        t = normalise_tile(tile)
        return next((s for s in self.sites if t in s.tiles), None)

    def resolved(self, base: Path) -> Settings:
        """A copy with relative paths resolved against ``base``."""
        base = base.resolve()
        workdir = _resolve(base, self.workdir)

        def under(p: Path) -> Path:
            return _resolve(workdir, p)

        updates: dict[str, Any] = {
            "workdir": workdir,
            "inbox": under(self.inbox),
            "products": under(self.products),
            "catalog": under(self.catalog),
            "composites": under(self.composites),
            "database_url": _resolve_sqlite(base, self.database_url),
            "sites": [
                s.model_copy(update={"geojson": _resolve(base, s.geojson)})
                if isinstance(s.geojson, Path)
                else s
                for s in self.sites
            ],
            "sources": [
                s.model_copy(update={"href": str(_resolve(base, Path(s.href)))})
                if isinstance(s, StaticCatalogSource) and "://" not in s.href
                else s.model_copy(update={"config_file": _resolve(base, s.config_file)})
                if isinstance(s, EodagSource) and s.config_file is not None
                else s
                for s in self.sources
            ],
            "cluster": self.cluster.model_copy(
                update={"scheduler_file": _resolve(base, self.cluster.scheduler_file)}
                if self.cluster.scheduler_file
                else {}
            ),
            "dem": self.dem.model_copy(
                update={"source": str(_resolve(base, Path(self.dem.source)))}
                if self.dem.source and "://" not in self.dem.source
                else {}
            ),
        }
        return self.model_copy(update=updates)


def _resolve(base: Path, p: Path) -> Path:
    p = p.expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _resolve_sqlite(base: Path, url: str | None) -> str | None:
    """Make ``sqlite:///relative.db`` absolute (``sqlite:////abs.db`` and others unchanged)."""
    if not url or not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        return url
    path = url[len("sqlite:///") :]
    query = ""
    if "?" in path:
        path, query = path.split("?", 1)
        query = "?" + query
    return f"sqlite:///{_resolve(base, Path(path))}{query}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            path, f"cannot read the configuration file: {exc.strerror or exc}"
        ) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(path, f"not valid YAML: {exc}") from None
        data = {} if data is None else data
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(
            path, "the configuration must be a table/mapping of settings at its top level"
        )
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(
            str(x) for x in err["loc"] if not str(x).startswith(("function-after", "tagged-union"))
        )
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (misspelt?)"
        parts.append(f"{loc or '<top level>'}: {msg}")
    return "; ".join(parts)


def find_config(path: str | Path) -> Path:
    """The configuration file for ``path`` (a file, or a folder holding one of :data:`CONFIG_NAMES`)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in CONFIG_NAMES:
            if (p / name).is_file():
                return p / name
        raise InputError(
            p,
            f"no configuration file here (looked for {', '.join(CONFIG_NAMES)}); run `l2a init {p}`",
        )
    if not p.exists():
        raise InputError(p, "configuration file not found; run `l2a init SITE_DIR` to write one")
    return p


def load_config(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings of a site.

    Parameters
    ----------
    path : str or Path, optional
        A TOML (``.toml``) or YAML (``.yaml``/``.yml``) file, or a folder holding
        ``site.toml``. None: environment variables and defaults only, paths relative to the
        current folder.
    **overrides
        Settings that win over the environment and the file (e.g. from command-line options).

    Returns
    -------
    Settings
        With absolute paths.

    Raises
    ------
    InputError
        Naming the file, the field and the problem, for unreadable files, bad syntax or
        invalid values (values from ``L2A_…`` environment variables included).
    """
    file = find_config(path) if path is not None else None
    data = _read_file(file) if file else {}
    token = _FILE_DATA.set(data)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        where = file if file else "environment (L2A_* variables)"
        env_keys = sorted(
            k
            for k in os.environ
            if k.upper() in _ENV_FIELDS or (k.upper().startswith("L2A_") and "__" in k)
        )
        hint = (
            f" (environment overrides in effect: {', '.join(env_keys)})"
            if env_keys and file
            else ""
        )
        raise InputError(where, _describe(exc) + hint) from None
    finally:
        _FILE_DATA.reset(token)
    base = file.resolve().parent if file else Path.cwd()
    settings = settings.resolved(base)
    return settings.model_copy(update={"config_file": file.resolve() if file else None})


_ENV_FIELDS = {f"L2A_{name.upper()}" for name in Settings.model_fields}


def example_text() -> str:
    """The commented example configuration written by ``l2a init``."""
    return (
        resources.files("l2a.production").joinpath("site_template.toml").read_text(encoding="utf-8")
    )


def write_example(site_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the commented example ``site.toml`` into ``site_dir``.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InputError
        If the file exists and ``overwrite`` is false.
    """
    folder = Path(site_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "site.toml"
    if target.exists() and not overwrite:
        raise InputError(target, "already exists; edit it, or remove it to start again")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(example_text(), encoding="utf-8")
    tmp.replace(target)
    return target


def init_site(site_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Create a site folder: ``site.toml`` (commented example), ``inbox/``, ``products/``, ``catalog/``.

    The example is validated after writing, so that a broken template can never be shipped.

    Returns
    -------
    Path
        The configuration file.
    """
    target = write_example(site_dir, overwrite=overwrite)
    settings = load_config(target)
    for folder in (settings.inbox, settings.products, settings.catalog):
        folder.mkdir(parents=True, exist_ok=True)
    return target
