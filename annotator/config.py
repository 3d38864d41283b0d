"""Deployment settings: one typed object, read from ANNOTATOR_* variables and an optional TOML file.

Precedence: explicit arguments > environment > the file (``ANNOTATOR_CONFIG`` or
``<workspace>/annotator.toml``) > the workspace's secrets file (``annotator.credentials``) > defaults. The
secrets' defaults are fixed, public strings for loopback use; ``annotator init`` makes random ones. Model and training choices are not here: they are frozen
dataclasses in the modules that use them (``ModelSpec``, ``TrainConfig``).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from annotator.device import DEVICE_CHOICES, DEVICE_PATTERN
from annotator.credentials import DEFAULT_SECRETS, SECRET_FIELDS, masked, read_secrets
from annotator.errors import ConfigError

ENV_PREFIX = "ANNOTATOR_"
CONFIG_FILE_NAME = "annotator.toml"
REPO_ROOT = Path(__file__).resolve().parents[1]


def find_sample_data() -> Path | None:
    """The sample set: $ANNOTATOR_SAMPLE_DATA, else ``shared/data/cxr`` beside the checkout or the cwd."""
    env = os.environ.get(ENV_PREFIX + "SAMPLE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    for base in (REPO_ROOT, Path.cwd()):
        for parent in (base, *base.parents):
            candidate = parent / "shared" / "data" / "cxr"
            if (candidate / "manifest.csv").is_file():
                return candidate
    return None


# setting -> (lowest, highest, what is allowed, in words)
NUMBER_BOUNDS: dict[str, tuple[float, float, str]] = {
    "labelstudio_port": (1, 65535, "a TCP port, 1 to 65535"),
    "backend_port": (1, 65535, "a TCP port, 1 to 65535"),
    "round_size": (1, math.inf, "a whole number of images, 1 or more"),
    "target_masks": (1, math.inf, "a whole number of images, 1 or more"),
    "torch_threads": (0, math.inf, "0 (torch's default) or a positive number of threads"),
    "accept_dsc": (0.0, 1.0, "a Dice score from 0 to 1"),
    "double_read_share": (0.0, 1.0, "a share from 0 to 1 (0.1: one task in ten)"),
    "max_image_pixels": (1, math.inf, "a whole number of pixels, 1 or more"),
    "min_image_side_px": (1, math.inf, "a whole number of pixels, 1 or more"),
}


def _workspace_folder(*parts: str) -> property:
    """A folder of the workspace, read-only on the settings (``settings.models_path``)."""

    def folder(self: Settings) -> Path:
        return self.workspace_path.joinpath(*parts)

    return property(folder, doc=f"<workspace>/{'/'.join(parts)}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    workspace: Path = Field(default=Path("workspace"), description="holds the DB, image store, models, exports")
    db_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the workspace")
    sample_data: Path | None = Field(default=None, description="the bundled sample set (tests, demo)")

    labelstudio_host: str = "127.0.0.1"
    labelstudio_port: int = 8080
    labelstudio_url: str | None = Field(default=None, description="an external Label Studio; default: ours")
    labelstudio_db_url: str | None = Field(default=None, description="PostgreSQL for our Label Studio, "
                                           "postgresql://user:password@host:port/db; default: SQLite in its folder")
    labelstudio_username: str = "admin@cxr-annotator.local"
    labelstudio_password: str = DEFAULT_SECRETS["labelstudio_password"]
    labelstudio_token: str = DEFAULT_SECRETS["labelstudio_token"]
    backend_host: str = "127.0.0.1"
    backend_port: int = 9090
    backend_token: str = DEFAULT_SECRETS["backend_token"]
    pseudonym_key: str = Field(default=DEFAULT_SECRETS["pseudonym_key"], description="keys the patient-id pseudonyms of `data import --deidentify`")

    device: str = "auto"
    predict_backend: Literal["eager", "bf16", "onnx"] = "bf16"
    torch_threads: int = 0  # 0: torch's default

    max_image_pixels: int = 50_000_000  # import refuses images declaring more (read from the header)
    min_image_side_px: int = 64  # import refuses images with a shorter side

    round_size: int = 500
    target_masks: int = 3000
    double_read_share: float = 0.10  # of RA review tasks, read by two RAs (with a team; see workflows.double_read)
    accept_dsc: float = 0.95  # the simulator's RA accepts a prediction at or above this DSC

    def __repr_args__(self):  # secrets never reach a log line or a traceback through repr()
        for name, value in super().__repr_args__():
            yield name, masked(value) if name in SECRET_FIELDS else shown_url(name, value)

    # -- derived paths ------------------------------------------------------------------------
    @property
    def workspace_path(self) -> Path:
        return self.workspace.expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.workspace_path / 'annotator.db'}"

    store_path = _workspace_folder("store")
    image_store = _workspace_folder("store", "images")
    mask_store = _workspace_folder("store", "masks")
    # original files (DICOM with their headers, TIFF, 16-bit PNG): outside the store Label Studio serves
    originals_path = _workspace_folder("originals")
    models_path = _workspace_folder("models")
    exports_path = _workspace_folder("exports")
    reports_path = _workspace_folder("reports")
    labelstudio_data = _workspace_folder("labelstudio")  # the bundled server's data folder

    @property
    def labelstudio_base_url(self) -> str:
        return self.labelstudio_url or f"http://{self.labelstudio_host}:{self.labelstudio_port}"

    @property
    def sample_data_path(self) -> Path | None:
        return self.sample_data.expanduser().resolve() if self.sample_data else find_sample_data()

    # -- bounds: a value outside is refused with the setting, the value and what is allowed -------------
    @field_validator(*NUMBER_BOUNDS)
    @classmethod
    def _within_bounds(cls, value: float, info: ValidationInfo) -> float:
        low, high, allowed = NUMBER_BOUNDS[info.field_name]
        if not low <= value <= high:
            raise ValueError(f"allowed: {allowed}")
        return value

    @field_validator("device")
    @classmethod
    def _a_device(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError(f"allowed: {DEVICE_CHOICES}")
        return value

    @field_validator("labelstudio_url")
    @classmethod
    def _a_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("allowed: an http:// or https:// URL, e.g. http://127.0.0.1:8080")
        return value.rstrip("/") if value else value

    @field_validator("labelstudio_db_url")
    @classmethod
    def _a_postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"postgres(ql)?(\+psycopg2?)?://[^/\s]+/[^/\s?]+", value):
            raise ValueError("allowed: postgresql://user:password@host:port/database (Label Studio runs on "
                             "PostgreSQL or on its own SQLite file)")
        return value

    @field_validator("db_url")
    @classmethod
    def _a_db_url(cls, value: str | None) -> str | None:
        if value is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(value)
            except ArgumentError:
                raise ValueError("allowed: a SQLAlchemy URL, e.g. sqlite:///path/annotator.db or "
                                 "postgresql+psycopg://user@host/db") from None
        return value


def _read_file(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
    return data.get("annotator", data)


def settings_file(workspace: Path | None = None, config_file: Path | None = None) -> Path | None:
    """The TOML file the settings read: the one given, else $ANNOTATOR_CONFIG, else the workspace's
    ``annotator.toml`` when it exists, else none."""
    file_path = config_file or (Path(os.environ[ENV_PREFIX + "CONFIG"]) if os.environ.get(ENV_PREFIX + "CONFIG") else None)
    ws_guess = workspace or Path(os.environ.get(ENV_PREFIX + "WORKSPACE", "workspace"))
    if file_path is None and (ws_guess / CONFIG_FILE_NAME).is_file():
        file_path = ws_guess / CONFIG_FILE_NAME
    return file_path


def load_settings(workspace: Path | None = None, config_file: Path | None = None, **overrides) -> Settings:
    """Build the settings object at an entry point (CLI command, backend start, test)."""
    workspace = Path(workspace) if workspace is not None else None
    file_path = settings_file(workspace, config_file)
    file_values = _read_file(file_path) if file_path else {}
    env_keys = {k[len(ENV_PREFIX):].lower() for k in os.environ if k.startswith(ENV_PREFIX)}
    secrets_ws = workspace or (os.environ.get(ENV_PREFIX + "WORKSPACE") or file_values.get("workspace") or "workspace")
    stored = read_secrets(Path(str(secrets_ws)).expanduser())
    values = {k: v for k, v in {**stored, **file_values}.items() if k not in env_keys}
    if workspace is not None:
        values["workspace"] = workspace
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:  # one line: the setting, its value and source, what is allowed
        raise ConfigError(explain_error(exc, file_path)) from exc


SECRET_WORDS = ("password", "token", "secret", "key")  # a setting named so is masked too, declared or not


def shown_url(name: str, value):
    """A database URL as it may be shown: its password masked (``postgresql://u:***@host/db``)."""
    if not (name.endswith("db_url") and isinstance(value, str) and value):
        return value
    from sqlalchemy.engine import make_url

    return make_url(value).render_as_string(hide_password=True)


def is_secret(name: str) -> bool:
    return name in SECRET_FIELDS or any(word in name for word in SECRET_WORDS)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def env_variables() -> set[str]:
    return {k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX)}


# -- a bad value, in one line ---------------------------------------------------------------------------
def _allowed_by_type(annotation) -> str:
    """'a whole number', "one of: eager, bf16, onnx", ... from a field's type."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (_allowed_by_type(parts[0]) + " or unset") if len(parts) == 1 else "a valid value"
    if typing.get_origin(annotation) is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(annotation))
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text",
            Path: "a path"}.get(annotation, "a valid value")


def explain_error(exc: ValidationError, file_path: Path | None = None) -> str:
    """One line for every problem of ``exc``: which setting, the value given, where it came from, what is
    allowed (a setting that does not exist lists those that do)."""
    env = env_variables()
    problems = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        value = err.get("input")
        where = (f"environment {env_name(name)}" if env_name(name) in env
                 else f"file {file_path}" if file_path else "given")
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r} ({where}); known: {', '.join(Settings.model_fields)}")
            continue
        shown = masked(str(value)) if is_secret(name) else repr(value)
        message = str(err.get("msg", ""))
        if err["type"] == "value_error":
            allowed = message.removeprefix("Value error, ").removeprefix("allowed: ")
        else:
            field = Settings.model_fields.get(name)
            allowed = _allowed_by_type(field.annotation) if field is not None else message
        problems.append(f"{name} = {shown} ({where}) is not allowed; allowed: {allowed}")
    return "invalid setting: " + "; ".join(problems)
