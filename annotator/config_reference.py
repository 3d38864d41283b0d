"""The settings as a reader meets them: each one's value, where it came from (default, secrets file, file,
environment, option), what it means; the README's table; and the one-line message for a bad value.

``Settings`` (``annotator.config``) stays the one owner of names, types, defaults and bounds; this module
only describes them. A field's own ``Field(description=...)`` wins over ``DESCRIPTIONS``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from annotator.config import (
    ENV_PREFIX, Settings, env_name, env_variables, is_secret, load_settings, settings_file, shown_url,
)
from annotator.credentials import masked, read_secrets

NOT_SETTINGS = {ENV_PREFIX + "CONFIG"}  # variables read besides the settings: the file's path

DESCRIPTIONS: dict[str, str] = {
    "labelstudio_host": "address our Label Studio binds to",
    "labelstudio_port": "port of our Label Studio",
    "labelstudio_username": "Label Studio admin account the tool signs in with",
    "labelstudio_password": "that account's password",
    "labelstudio_token": "that account's API token (the tool's calls and the backend's image reads)",
    "backend_host": "address the ML backend binds to",
    "backend_port": "port of the ML backend",
    "backend_token": "token Label Studio sends to the ML backend",
    "device": "where networks run: auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps; under torchrun each process takes its own GPU",
    "predict_backend": "how predictions run: eager (fp32), bf16 or onnx (each checked against fp32 first)",
    "torch_threads": "CPU threads for torch; 0 leaves torch's default",
    "max_image_pixels": "import refuses an image whose header declares more pixels (checked before decoding)",
    "min_image_side_px": "import refuses an image whose shorter side is under this many pixels",
    "round_size": "images per Stage II round (`round next --size` overrides it)",
    "target_masks": "Stage II masks to reach before Stage III",
    "double_read_share": "share of RA review tasks two RAs read (Label Studio's overlap); 0 turns double reads off",
    "accept_dsc": "the simulated RA accepts a prediction at or above this Dice score",
}
UNSET = {"sample_data": "(found beside the checkout)", "db_url": "(SQLite in the workspace)",
         "labelstudio_url": "(ours, from host and port)"}


@dataclass(frozen=True)
class SettingRow:
    name: str
    env: str
    value: object  # JSON-ready: str, int, float or None; secrets masked
    default: object
    source: str  # default | secrets file | file | environment | option
    description: str
    secret: bool


def description(name: str) -> str:
    field = Settings.model_fields[name]
    return field.description or DESCRIPTIONS.get(name, "")


def _shown(name: str, value: object) -> object:
    if value is None:
        return None
    if is_secret(name):
        return masked(str(value))
    if isinstance(value, Path):
        return str(value)
    return shown_url(name, value)


def unknown_variables() -> list[str]:
    """ANNOTATOR_* variables that name no setting (a typo is otherwise ignored silently)."""
    known = {env_name(n) for n in Settings.model_fields} | NOT_SETTINGS
    return sorted(env_variables() - known)


def describe_settings(workspace: Path | None = None, config_file: Path | None = None,
                      workspace_from_option: bool = False) -> tuple[Path | None, list[SettingRow]]:
    """The settings file read (or None) and every setting with its value and source, in declaration order."""
    settings = load_settings(workspace=workspace, config_file=config_file)
    file_path = settings_file(workspace, config_file)
    from annotator.config import _read_file

    in_file = set(_read_file(file_path)) if file_path else set()
    in_secrets = set(read_secrets(settings.workspace_path))
    env = env_variables()
    rows = []
    for name, field in Settings.model_fields.items():
        if name == "workspace" and workspace_from_option:
            source = "option"
        elif env_name(name) in env:
            source = "environment"
        elif name in in_file:
            source = "file"
        elif name in in_secrets:
            source = "secrets file"
        else:
            source = "default"
        rows.append(SettingRow(name, env_name(name), _shown(name, getattr(settings, name)),
                               _shown(name, field.default), source, description(name), is_secret(name)))
    return file_path, rows


def as_json(file_path: Path | None, rows: list[SettingRow]) -> dict:
    return {"file": str(file_path) if file_path else None, "settings": [asdict(r) for r in rows],
            "unknown_variables": unknown_variables()}


def _cell(name: str, value: object) -> str:
    if value is None:
        return UNSET.get(name, "(unset)")
    return f"`{value}`" if value != "" else "(empty)"


def markdown_table(rows: list[dict] | list[SettingRow]) -> str:
    """The README's settings table (defaults, not this machine's values), from ``config show --json``'s rows."""
    rows = [asdict(r) if isinstance(r, SettingRow) else r for r in rows]
    lines = ["| setting (TOML key) | environment variable | default | what it is |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['name']}` | `{r['env']}` | {_cell(r['name'], r['default'])} | {r['description']} |")
    return "\n".join(lines) + "\n"
