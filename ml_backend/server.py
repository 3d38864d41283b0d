"""Serve the backend with waitress (a production WSGI server: a fixed pool of request threads, request
and header size limits, idle-connection timeouts), built at an entry point.

``build_app(settings, checkpoint=None)`` loads the network once (the working one from the DB, or a file);
``make_backend_server(app, host, port)`` binds (refusing a non-loopback host with default secrets);
``BackendServer.serve_forever()`` runs until ``shutdown()`` or Ctrl-C. ``annotator serve backend`` calls them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from annotator.config import Settings
from annotator.credentials import check_bind
from annotator.errors import ConfigError
from ml_backend.app import MAX_BODY_BYTES, BackendApp, EventLog, ImageResolver
from ml_backend.holder import FixedCheckpoint, PredictorHolder, WorkingModelSource, load_predictor

log = logging.getLogger(__name__)

EVENTS_FILE = "backend-events.jsonl"
THREADS = 4  # request threads; predictions themselves run one batch at a time (BackendApp's lock)
CHANNEL_TIMEOUT_S = 60  # an idle or stalled client connection is closed after this


class BackendServer:
    """A waitress server on one socket; ``serve_forever`` in any thread, ``shutdown`` from another."""

    def __init__(self, app: BackendApp, host: str, port: int, threads: int = THREADS) -> None:
        try:
            from waitress.server import create_server
        except ImportError as exc:
            raise ConfigError("the ML backend is served by waitress: pip install waitress (pinned in "
                              "requirements.lock)") from exc
        try:
            self._server = create_server(
                app, host=host, port=port, threads=threads, channel_timeout=CHANNEL_TIMEOUT_S,
                max_request_body_size=MAX_BODY_BYTES, max_request_header_size=64 * 1024, ident="cxr-annotator",
                expose_tracebacks=False, clear_untrusted_proxy_headers=True,
            )
        except OSError as exc:
            raise ConfigError(f"the ML backend cannot listen on {host}:{port} ({exc.strerror or exc}); "
                              "choose another port (ANNOTATOR_BACKEND_PORT or --port)") from exc
        self.host, self.port = host, int(self._server.effective_port)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop serving: closes the sockets in the server's own loop, then waits for it to end."""
        from waitress import wasyncore

        def close_all() -> None:
            self._server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self._server._map)

        if not self._stopped.is_set():
            self._server.trigger.pull_trigger(close_all)
            self._stopped.wait(timeout_s)

    def server_close(self) -> None:
        if not self._stopped.is_set():
            self.shutdown()

    def __enter__(self) -> BackendServer:
        return self

    def __exit__(self, *exc) -> None:
        self.server_close()


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


def make_backend_server(app: BackendApp, host: str, port: int, settings: Settings | None = None) -> BackendServer:
    """Bind the backend; a host beyond loopback needs non-default secrets (``settings`` given: checked)."""
    if settings is not None:
        check_bind(settings, host, "the ML backend")
    return BackendServer(app, host, port)


def serve(app: BackendApp, host: str, port: int, settings: Settings | None = None) -> None:
    with make_backend_server(app, host, port, settings) as httpd:
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
    check_bind(settings, settings.backend_host, "the ML backend")  # before the network loads
    app = build_app(settings, args.checkpoint)
    print(f"ML backend ready on http://{settings.backend_host}:{settings.backend_port} "
          f"model_version={app.holder.model_version}", flush=True)
    serve(app, settings.backend_host, settings.backend_port, settings)


if __name__ == "__main__":  # pragma: no cover
    from annotator.errors import AnnotatorError

    try:
        main()
    except AnnotatorError as exc:  # one line with the fix, exit code 1 (as the CLI does)
        raise SystemExit(f"error: {exc}") from None
