"""Serve the backend: a threaded WSGI server from the standard library, built at an entry point.

``build_app(settings, checkpoint=None)`` loads the network once (the working one from the DB, or a file);
``serve(app, host, port)`` runs until interrupted. ``annotator serve backend`` calls both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from annotator.config import Settings
from ml_backend.app import BackendApp, EventLog, ImageResolver
from ml_backend.holder import FixedCheckpoint, PredictorHolder, WorkingModelSource, load_predictor

log = logging.getLogger(__name__)

EVENTS_FILE = "backend-events.jsonl"


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("%s - %s", self.address_string(), format % args)


def build_app(settings: Settings, checkpoint: Path | None = None, *, check_every_s: float = 2.0) -> BackendApp:
    """The backend for a workspace: the network loaded now, images from its store, events in its folder."""
    source = FixedCheckpoint(Path(checkpoint)) if checkpoint else WorkingModelSource(
        settings.database_url, settings.workspace_path
    )
    threads = settings.torch_threads or None

    def loader(path: Path):
        return load_predictor(path, backend=settings.predict_backend, device=settings.device, threads=threads)

    holder = PredictorHolder(source, loader, check_every_s=check_every_s)
    images = ImageResolver(settings.store_path, settings.labelstudio_base_url, settings.labelstudio_token)
    events = EventLog(settings.labelstudio_data / EVENTS_FILE)
    return BackendApp(holder=holder, token=settings.backend_token, images=images, events=events)


def make_backend_server(app: BackendApp, host: str, port: int) -> ThreadingWSGIServer:
    return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)


def serve(app: BackendApp, host: str, port: int) -> None:
    with make_backend_server(app, host, port) as httpd:
        log.info("ML backend on http://%s:%d serving %s", host, port, app.holder.model_version)
        httpd.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """``python -m ml_backend.server [--workspace DIR] [--checkpoint PATH] [--port N]`` (tests start this)."""
    import argparse

    from annotator.config import load_settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings(workspace=args.workspace, backend_host=args.host, backend_port=args.port)
    app = build_app(settings, args.checkpoint)
    print(f"ML backend ready on http://{settings.backend_host}:{settings.backend_port} "
          f"model_version={app.holder.model_version}", flush=True)
    serve(app, settings.backend_host, settings.backend_port)


if __name__ == "__main__":  # pragma: no cover
    main()
