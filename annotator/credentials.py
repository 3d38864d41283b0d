"""Per-workspace secrets: made at random by ``annotator init``, kept in ``<workspace>/secrets.toml`` (0600).

Precedence, as for every setting: explicit arguments > ``ANNOTATOR_*`` environment > settings file >
this secrets file > the built-in defaults. The built-in defaults are fixed, public strings: good enough
for a server on 127.0.0.1 in a test, refused for a bind beyond loopback (``check_bind``). Secrets are never
logged; ``Settings`` shows them masked; ``annotator labelstudio credentials`` is the one command that
prints them.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
import tomllib
from pathlib import Path

from annotator.errors import ConfigError

SECRETS_FILE = "secrets.toml"
SECRET_FIELDS = ("labelstudio_password", "labelstudio_token", "backend_token", "pseudonym_key")
# The built-in values (annotator.config's defaults): fine on loopback for a first try, refused beyond it.
DEFAULT_SECRETS = {"labelstudio_password": "annotator-admin", "labelstudio_token": "cxr-annotator-dev-token-0001",
                   "backend_token": "cxr-annotator-backend-token", "pseudonym_key": ""}
MIN_SECRET_CHARS = 16
FIX = ("run `annotator init` (it writes random secrets to {path}, mode 0600) or set ANNOTATOR_{names} "
       "to random values of at least {n} characters")


def secrets_path(workspace_path: Path) -> Path:
    return Path(workspace_path) / SECRETS_FILE


def new_secrets() -> dict[str, str]:
    """Fresh random values (the Label Studio token is 40 hex characters: its token column holds 40)."""
    return {"labelstudio_password": secrets.token_urlsafe(18), "labelstudio_token": secrets.token_hex(20),
            "backend_token": secrets.token_urlsafe(32), "pseudonym_key": secrets.token_hex(32)}


def ensure_secrets(workspace_path: Path) -> tuple[Path, bool]:
    """Write random secrets once (mode 0600, never overwritten); returns (path, created now)."""
    path = secrets_path(workspace_path)
    lines = ["# cxr-annotator secrets of this workspace (made by `annotator init`); keep this file 0600.",
             "# ANNOTATOR_* environment variables win over these values."]
    lines += [f'{name} = "{value}"' for name, value in new_secrets().items()]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, False
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path, True


def read_secrets(workspace_path: Path) -> dict[str, str]:
    """The workspace's secrets ({} when it has none); a file others can read, or a malformed one, is refused."""
    path = secrets_path(workspace_path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the secrets file {path}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"secrets file {path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
                          f"run `chmod 600 {path}`")
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the secrets file {path}: {exc}; fix it, or move it away and run "
                          "`annotator init` for new secrets") from exc
    unknown = sorted(set(values) - set(SECRET_FIELDS))
    if unknown or not all(isinstance(v, str) for v in values.values()):
        raise ConfigError(f"secrets file {path}: only string values of {', '.join(SECRET_FIELDS)} belong there "
                          f"(found {', '.join(unknown) or 'a value that is not a string'})")
    return values


def default_value(name: str) -> str:
    return DEFAULT_SECRETS[name]


def weak_secrets(settings) -> list[str]:
    """The secrets a server beyond loopback must not run with: empty, built-in default, or short."""
    return [name for name in SECRET_FIELDS[:3]
            if (value := getattr(settings, name)) == default_value(name) or len(value) < MIN_SECRET_CHARS]


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost, "", "0.0.0.0"-like: beyond loopback
        return False


def check_bind(settings, host: str, server: str) -> None:
    """Refuse to put ``server`` on a host beyond loopback while a secret is empty, default or short."""
    if is_loopback(host):
        return
    weak = weak_secrets(settings)
    if weak:
        names = "/".join(n.upper() for n in weak)
        raise ConfigError(
            f"refusing to serve {server} on {host!r} (beyond loopback) with default, empty or short secrets "
            f"({', '.join(weak)}): " + FIX.format(path=secrets_path(settings.workspace_path), names=names,
                                                  n=MIN_SECRET_CHARS))


def with_workspace_secrets(settings):
    """``settings`` with the workspace's secrets in place of built-in defaults (after ``init`` wrote them)."""
    stored = read_secrets(settings.workspace_path)
    update = {k: v for k, v in stored.items() if getattr(settings, k) == default_value(k)}
    return settings.model_copy(update=update) if update else settings


def masked(value: str) -> str:
    return "" if not value else "***"
