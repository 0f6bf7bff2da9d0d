"""`slashcat serve`: a local web page and JSON API that classify uploaded images."""

from __future__ import annotations

import contextlib
import os

import typer

from cli.commands import MODEL
from cli.state import state, user_errors


@user_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but "
                             "localhost exposes the page to your network."),
    port: int = typer.Option(8000, "--port", help="TCP port (0 picks a free one)."),
    model: str = MODEL,
    allow_save: bool = typer.Option(
        False, "--allow-save", help="Show a 'save to catalog' button: stores the image in the "
        "catalog (store 'uploads') with the chosen category as a human label.",
    ),
    max_file_mb: float = typer.Option(10.0, "--max-file-mb", help="Largest image accepted."),
    max_files: int = typer.Option(16, "--max-files", help="Most images in one request."),
) -> None:
    """Serve a page to drop images on and see their top-3 categories, plus a JSON API.

    The model loads once, before the server starts. API: POST /api/classify (multipart field
    'files', repeatable), GET /api/health, POST /api/save (with --allow-save); docs at /docs.
    Uploads stay in memory and are checked by content; nothing is written unless saved.
    Example: slashcat serve --port 8000
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter quiet
    from catalog.errors import InvalidInput
    from classifier.predict import Classifier
    from cli.web.app import LOOPBACK_HOSTS, WebConfig, create_app
    from cli.web.server import is_loopback, run, url_of
    from cli.web.uploads import UploadLimits
    from scraper.net import listen

    st = state(ctx)
    if max_file_mb <= 0 or max_files < 1:
        raise InvalidInput("--max-file-mb must be positive and --max-files at least 1")
    max_file = int(max_file_mb * 1024 * 1024)
    limits = UploadLimits(
        max_file_bytes=max_file, max_files=max_files,
        max_body_bytes=min(max_file * max_files, max(40 * 1024 * 1024, max_file)) + 64 * 1024,
    )
    cat = st.catalog()
    with st.err.status("Loading the model…"):
        classifier = Classifier.load(cat, model)
    local = is_loopback(host)
    config = WebConfig(
        limits=limits, allow_save=allow_save,
        allowed_hosts=(*LOOPBACK_HOSTS, host) if local else ("*",),
    )
    app = create_app(cat, classifier, config)
    sock = listen(host, port)
    if not local:
        st.err.print(f"[yellow]Warning:[/] listening on {host}: anyone who can reach this "
                     "machine can use the page" + (" and write to the catalog" if allow_save
                                                   else "") + ".")
    st.err.print(
        f"Serving model [bold]{classifier.version}[/] ({len(classifier.classes)} classes) at "
        f"[bold]{url_of(sock)}[/]  (API docs at /docs; Ctrl+C to stop)", highlight=False,
    )
    # uvicorn shuts down gracefully on Ctrl+C, then re-raises it: that is a normal stop here.
    with contextlib.suppress(KeyboardInterrupt):
        run(app, sock, log_level="warning" if st.settings.quiet else "info")
    st.err.print("Stopped.")


def register(app: typer.Typer) -> None:
    app.command()(serve)
