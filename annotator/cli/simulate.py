"""`annotator simulate`: scripted RAs and MDs work the open Label Studio tasks (for demos and tests)."""

from __future__ import annotations

from typing import Annotated

import typer

from annotator.cli.common import JsonFlag, handle_errors, workspace_session
from annotator.cli.render import render_result
from workflows.campaign import act
from workflows.queues import QUEUE_ORDER
from workflows.session import labelstudio_client
from workflows.simulator import ScriptedPeople, SimulationPolicy

QUEUE_HELP = f"a queue to work, repeatable (default: every queue, {', '.join(QUEUE_ORDER)})"


@handle_errors
def simulate(
    ctx: typer.Context,
    queue: Annotated[list[str] | None, typer.Option(help=QUEUE_HELP)] = None,
    seed: Annotated[int, typer.Option(help="seed of the simulated people's choices")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Scripted RAs and MDs work every open task through the Label Studio API, judged against the images'
    reference masks. Then run the matching sync command."""
    with workspace_session(ctx) as (settings, session):
        ls = labelstudio_client(settings)  # fails, changing nothing, when Label Studio is down
        people = ScriptedPeople(SimulationPolicy(accept_dsc=settings.accept_dsc, seed=seed))
        out = {q: act(session, settings, ls, q, people).__dict__ for q in queue or QUEUE_ORDER}
    render_result(out, as_json, "simulated people acted")
