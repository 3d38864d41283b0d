"""`annotator demo`: the whole protocol on the sample set with simulated people."""

from __future__ import annotations

from typing import Annotated

import typer

from annotator.cli.common import console, handle_errors, settings_from
from workflows.demo import run_demo


@handle_errors
def demo(
    ctx: typer.Context,
    round_size: Annotated[int, typer.Option(help="images per Stage II round")] = 50,
    target: Annotated[int, typer.Option(help="Stage II masks to reach")] = 200,
    preset: Annotated[str, typer.Option(help="training preset for every stage (`demo` fits the demo's time)")] = "demo",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="stop Label Studio and the backend at the end")] = False,
    no_team: Annotated[bool, typer.Option("--no-team", help="one operator for every queue, not a simulated team")]
    = False,
) -> None:
    """The main job on embedded defaults: the whole protocol on the sample set with simulated people."""
    result = run_demo(settings_from(ctx), round_size=round_size, target=target, preset=preset, serve=not no_serve,
                      say=lambda text: console.print(text, highlight=False), team=not no_team)
    console.print((result["report"]["markdown"]).read_text(), highlight=False)
