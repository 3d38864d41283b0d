"""`--help` reads well everywhere: every command of the tree answers it, every option and argument says
what it is for, a flag shows no value placeholder, the root lists the commands in protocol order, and
shell completion is on."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from annotator.cli.main import COMMAND_ORDER, app


def _walk(command, path: tuple[str, ...] = ()):
    """(path, command) of the command tree; Typer builds it from its own copy of Click's classes."""
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(get_command(app)))


def test_the_tree_holds_every_group_and_its_commands():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "round next", "round close", "md queue", "stage3 run", "stage4 sync", "export", "simulate",
            "demo", "model list", "train-pipeline", "predict", "data import", "labelstudio start"} <= paths
    assert len(paths) >= 30


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "annotator" for p, _ in COMMANDS])
def test_help_describes_every_option_and_shows_no_placeholder_beside_a_flag(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: "), result.output[:200]
    undescribed = [p.name for p in command.params if not p.hidden and not (getattr(p, "help", None) or "").strip()]
    assert undescribed == [], f"`{' '.join(path)}`: no help text for {undescribed}"
    assert command.help or command.short_help or not path, f"`{' '.join(path)}` has no description"
    flags = [opt for p in command.params if p.param_type_name == "option" and p.is_flag
             for opt in (*p.opts, *p.secondary_opts)]
    for opt in [*flags, "--help"]:
        assert re.search(rf"(^|[\s,]){re.escape(opt)}\b[^\n]*", result.output), f"{opt} missing from the help"
        assert not re.search(rf"{re.escape(opt)} <", result.output), f"`{' '.join(path)}`: {opt} shows a value"
    assert "<bool>" not in result.output


def test_root_help_lists_the_commands_in_protocol_order():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    section = result.output.split("Commands:", 1)[1]
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.strip()]
    assert [name for name in listed if name in COMMAND_ORDER] == list(COMMAND_ORDER)
    assert listed[: len(COMMAND_ORDER)] == list(COMMAND_ORDER)  # commands added later go after these


def test_shell_completion_installs_and_completes(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    cmd = [sys.executable, "-m", "annotator.cli.main"]
    done = subprocess.run([*cmd, "--install-completion", "bash"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "bash completion installed" in done.stdout
    assert ".bash_completions/" in (tmp_path / ".bashrc").read_text()
    # what bash asks when the user types `annotator st<TAB>` (the installed script sets these variables)
    done = subprocess.run([sys.executable, "-c", "from annotator.cli.main import app; app(prog_name='annotator')"],
                          env={**env, "_ANNOTATOR_COMPLETE": "complete_bash", "COMP_WORDS": "annotator st",
                               "COMP_CWORD": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["stage1", "stage3", "stage4", "status"]
