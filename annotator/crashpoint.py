"""Named crash points: ``ANNOTATOR_CRASH_AT=<point>`` ends the process with ``os._exit(137)`` (what a
``kill -9`` leaves: no cleanup, no rollback, no flushed buffers) when it reaches that point.

Every point is declared here, with what is half-done when it fires; the crash test runs each command
with each of its points, then again without, and checks that nothing was lost, doubled or left
illegal. A point the variable names that is not declared here is refused, so a typo cannot make that
test pass by never crashing.
"""

from __future__ import annotations

import os
import sys

from annotator.errors import UnknownNameError

ENV_VAR = "ANNOTATOR_CRASH_AT"
EXIT_CODE = 137  # 128 + SIGKILL, what a shell reports for kill -9

CRASH_POINTS: dict[str, str] = {
    "import.after_item": "one image stored (file and row), the import's transaction not committed",
    "push.after_import": "tasks created in Label Studio, their ids not recorded in our store",
    "predict.after_shard": "one shard of a prediction written to the workspace's cache, nothing of it in the store "
                           "(round next, Stage III)",
    "sync.after_decision": "one annotation applied (decision, state move, mask), the sync not committed",
    "train.after_training": "a network trained on the repository (its checkpoint in its training folder), "
                            "nothing registered (round close, Stage III)",
    "close.after_publish": "the new network registered and marked working, the round not closed nor committed",
    "stage3.after_training": "the six networks trained and registered, no best-of-six task created",
    "stage3.after_tasks": "the best-of-six tasks and overlays created, not committed nor pushed",
    "stage3.close.after_training": "Stage III's main network retrained, the stage not closed nor committed",
    "stage4.after_sample": "the verification sample drawn (round, tasks, moves), not committed nor pushed",
    "stage4.after_splits": "the splits stored after verification, not committed",
    "export.after_image": "the first image and mask of the export written, the rest and the CSVs not",
}


def crash_point(name: str) -> None:
    """End the process here when ``ANNOTATOR_CRASH_AT`` names this point (a no-op otherwise)."""
    if name not in CRASH_POINTS:  # a call site with a name not declared above: a bug, caught by any test
        raise UnknownNameError("crash point", name, CRASH_POINTS)
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    if wanted not in CRASH_POINTS:
        raise UnknownNameError(f"crash point in {ENV_VAR}", wanted, CRASH_POINTS)
    if wanted == name:
        sys.stderr.write(f"{ENV_VAR}={name}: crashing here ({CRASH_POINTS[name]})\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
