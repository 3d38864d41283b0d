"""The environment our Label Studio child process runs in: offline, SSRF-guarded, our user and token,
local files below the store, its database (its own SQLite file, or PostgreSQL), and none of the caller's
variables that Label Studio would read under a bare name."""

from __future__ import annotations

import os
from pathlib import Path

from annotator.config import Settings
from annotator.labelstudio.ssrf import banned_subnets

# bare names Label Studio reads after its own prefixes: never let the caller's shell set them
LEAKING_VARS = (
    "HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "DEBUG", "BASE_DATA_DIR", "DATABASE_NAME",
    "DJANGO_DB", "LOG_LEVEL", "SECRET_KEY", "LOCAL_FILES_DOCUMENT_ROOT", "LOCAL_FILES_SERVING_ENABLED",
    "SSRF_PROTECTION_ENABLED", "ML_BLOCK_LOCAL_IP", "USE_DEFAULT_BANNED_SUBNETS", "USER_ADDITIONAL_BANNED_SUBNETS",
)


def labelstudio_env(settings: Settings, data_path: Path, port: int, base: dict | None = None, *,
                    with_user: bool = True) -> dict[str, str]:
    """The child environment: offline, SSRF-guarded, our user and token (``with_user``), local files below
    the store, no leaking names."""
    env = dict(os.environ if base is None else base)
    for name in LEAKING_VARS:
        env.pop(name, None)
    for key in [k for k in env if k.startswith(("LABEL_STUDIO_", "HEARTEX_"))]:
        env.pop(key)
    store = settings.store_path
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_path),
            "LABEL_STUDIO_HOST": f"http://{settings.labelstudio_host}:{port}",
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "true",
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "true",
            "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS": "false",
            "LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS": ",".join(banned_subnets()),
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_CONVERTER_DOWNLOAD_RESOURCES": "false",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(store),
            "LABEL_STUDIO_LOG_LEVEL": "WARNING",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "HF_HUB_OFFLINE": "1",
        }
    )
    for name in POSTGRES_VARS:  # a database of the caller's environment is not the one we were told to use
        env.pop(name, None)
    if settings.labelstudio_db_url:
        env.update(postgres_env(settings.labelstudio_db_url))
    if with_user:
        env.update({"LABEL_STUDIO_USERNAME": settings.labelstudio_username,
                    "LABEL_STUDIO_PASSWORD": settings.labelstudio_password,
                    "LABEL_STUDIO_USER_TOKEN": settings.labelstudio_token})
    return env


POSTGRES_VARS = ("POSTGRE_NAME", "POSTGRE_USER", "POSTGRE_PASSWORD", "POSTGRE_HOST", "POSTGRE_PORT")


def postgres_env(url: str) -> dict[str, str]:
    """Label Studio's own database settings for a PostgreSQL URL (its ``DJANGO_DB=default``)."""
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    return {"LABEL_STUDIO_DJANGO_DB": "default", "LABEL_STUDIO_POSTGRE_NAME": parts.database or "",
            "LABEL_STUDIO_POSTGRE_USER": parts.username or "", "LABEL_STUDIO_POSTGRE_PASSWORD": parts.password or "",
            "LABEL_STUDIO_POSTGRE_HOST": parts.host or "localhost", "LABEL_STUDIO_POSTGRE_PORT": str(parts.port or 5432)}
