"""`annotator serve backend`: the ML backend Label Studio asks for predictions."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from annotator.cli.common import console, handle_errors, settings_from
from annotator.credentials import check_bind
from annotator.labelstudio.client import LabelStudio

app = typer.Typer(no_args_is_help=True, help="Run the ML backend for Label Studio.")


@app.command()
@handle_errors
def backend(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None, typer.Option(help="serve this checkpoint (default: the workspace's working lung network)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="default: ANNOTATOR_BACKEND_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default: ANNOTATOR_BACKEND_PORT or 9090")] = None,
    connect: Annotated[
        list[int] | None, typer.Option(help="connect it to this Label Studio project id (repeatable)")
    ] = None,
) -> None:
    """Load the network once and serve /health, /setup, /predict, /webhook until Ctrl-C."""
    from ml_backend.server import build_app, make_backend_server

    settings = settings_from(ctx)
    if host or port:
        settings = settings.model_copy(
            update={"backend_host": host or settings.backend_host, "backend_port": port or settings.backend_port}
        )
    check_bind(settings, settings.backend_host, "the ML backend")  # before the network loads
    with console.status("loading the network..."):
        app_ = build_app(settings, checkpoint)
    url = f"http://{settings.backend_host}:{settings.backend_port}"
    httpd = make_backend_server(app_, settings.backend_host, settings.backend_port, settings)
    console.print(f"ML backend at [bold]{url}[/] serving {app_.holder.model_version}")
    console.print("token: `annotator labelstudio credentials` (Label Studio: basic auth, any user, token as password)")
    if connect:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()  # Label Studio calls /setup while we connect
        ls = LabelStudio(settings)
        for project_id in connect:
            backend_id = ls.connect_backend(project_id, url, settings.backend_token)
            console.print(f"connected to project {project_id} (ML backend id {backend_id})")
        try:
            thread.join()
        except KeyboardInterrupt:
            httpd.shutdown()
        return
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        httpd.server_close()
