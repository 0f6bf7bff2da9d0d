"""The `slashcat` command line. Commands live in cli/commands/; heavy imports stay inside them."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from catalog.errors import SlashcatError
from catalog.settings import Settings
from cli.state import AppState

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise to a user of the CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    name="slashcat",
    help="Crawl a storefront into a product-image catalog, dedupe it, classify it, review it, "
    "export it.\n\nExample: slashcat --home shop-data crawl https://shop.example.com",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Path = typer.Option(
        None, "--home", envvar="SLASHCAT_HOME", help="Folder for the catalog, images and models "
        "\\[default: ./slashcat-data].", show_default=False,
    ),
    db: str = typer.Option(
        None, "--db", envvar="SLASHCAT_DB", help="SQLAlchemy URL of the catalog "
        "\\[default: SQLite at HOME/catalog.db].", show_default=False,
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="More detail; tracebacks on error."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results."),
) -> None:
    """Global options come before the command."""
    try:
        settings = Settings.load(home=home, db=db, verbose=verbose or None, quiet=quiet or None)
    except SlashcatError as exc:  # a bad slashcat.toml or SLASHCAT_* value: one line
        Console(stderr=True).print(f"[bold red]Error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    ctx.obj = AppState(settings)


def _register() -> None:
    from cli.commands import basic

    basic.register(app)
    _optional_commands()


def _optional_commands() -> None:
    """Commands from the other packages; each module adds itself to the app."""
    import importlib
    import pkgutil

    import cli.commands as pkg

    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name != "basic"]
    # The order of the journey in --help; modules not listed come after, by name.
    order = ["demo", "crawl", "store", "dedupe", "classify", "review", "export", "serve"]
    for name in sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n)):
        importlib.import_module(f"cli.commands.{name}").register(app)


_register()


def main() -> None:
    app()
