"""The command line: one Typer group per module. A command parses, opens the session, calls one service
function and renders the result. Imports no torch at start-up: heavy modules load inside commands."""
