"""`annotator train-pipeline` and `annotator predict`: (being built)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the recognition commands to the root app."""
