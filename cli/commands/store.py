"""The bundled demo storefront: `slashcat store serve`."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import typer

from cli.state import state, user_errors

store_app = typer.Typer(
    help="Serve the bundled demo storefront (a little shop to crawl).", no_args_is_help=True
)


@store_app.command("serve")
@user_errors
def serve(
    ctx: typer.Context,
    port: int = typer.Option(8080, "--port", help="Port to listen on (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    products: Path = typer.Option(
        None, "--products", help="A storefront folder (with products.json) "
        "\\[default: the bundled data/sample-store].", show_default=False,
    ),
    shopify: bool = typer.Option(
        False, "--shopify", help="Also answer like a Shopify shop: /products.json and "
        "/products/<handle>.",
    ),
    faults: bool = typer.Option(
        False, "--faults", help="Switch on misbehaving pages (slow, 500, redirect to 127.0.0.2, "
        "decompression bomb, endless pagination, HTML as image, 1x1 image, hanging page).",
    ),
) -> None:
    """Serve the demo storefront until Ctrl-C.

    Crawl it from another terminal: slashcat crawl http://127.0.0.1:8080/
    Example: slashcat store serve --port 8080
    """
    from scraper.demoshop import SAMPLE_SHOP, DemoShop, Faults

    st = state(ctx)
    server = DemoShop(products or SAMPLE_SHOP, host=host, port=port,
                         faults=Faults() if faults else None, shopify=shopify)
    with server, contextlib.suppress(KeyboardInterrupt):
        _stop_on_sigterm()  # before the URL is printed: whoever reads it may stop us at once
        name = server.manifest.get("name", "storefront")
        st.console.print(f"Serving [bold]{name}[/] ({len(server.products):,} products) at "
                         f"{server.url}/  (Ctrl-C to stop)", highlight=False, soft_wrap=True)
        threading.Event().wait()
    st.console.print(f"Stopped; {sum(server.hits.values()):,} requests served.")


def _stop_on_sigterm() -> None:
    """`kill PID` stops the shop as cleanly as Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
