"""`python -m annotator` (and `torchrun -m annotator ...`): the CLI."""

from annotator.cli.main import app

app(prog_name="annotator")
