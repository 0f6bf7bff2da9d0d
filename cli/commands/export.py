"""`slashcat export`: one row per product with its final category, as CSV or JSON Lines."""

from __future__ import annotations

import contextlib
import enum
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from catalog.options import EXPORT_FORMATS
from cli.render import progress_bar
from cli.state import state, user_errors

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from catalog.export import ExportOptions


ExportFormat = enum.Enum("ExportFormat", {f: f for f in EXPORT_FORMATS}, type=str)


@user_errors
def export(
    ctx: typer.Context,
    file: str = typer.Argument(
        "-", metavar="FILE | -", help="Where to write; '-' is standard output.",
    ),
    fmt: ExportFormat = typer.Option(ExportFormat.csv, "--format", help="csv or jsonl."),
    min_confidence: float = typer.Option(
        None, "--min-confidence", help="Drop model rows whose confidence is below this.",
    ),
    only_reviewed: bool = typer.Option(
        False, "--only-reviewed", help="Only human and batch-accepted (model-accepted) rows.",
    ),
    store: str = typer.Option(None, "--store", help="Only this store's products."),
    raw: bool = typer.Option(
        False, "--raw", help="Do not neutralise cells starting with = + - @ (formula injection).",
    ),
) -> None:
    """Export one row per product with its final category, source, confidence and model.

    Columns (stable order): store, external_id, url, title, image_sha256, image_path,
    image_source_url, category, source, confidence, model_version, reviewed_at. The category is
    the current label (human > store > model-accepted), else the active model's prediction
    (source 'model'). CSV is UTF-8 with RFC 4180 quoting; text cells starting with = + - @ tab
    or CR get a leading apostrophe so spreadsheets do not run them (--raw keeps them as they are).
    Example: slashcat export categories.csv --only-reviewed
    """
    from catalog.export import ExportOptions, export_to_path, validate

    st = state(ctx)
    options = ExportOptions(fmt.value, min_confidence, only_reviewed, store, raw)
    with st.catalog().session() as session:
        validate(session, options)  # before the progress bar, so bad input is one line
    # Rows on a terminal would tear a live progress bar apart: no bar then.
    bar = (contextlib.nullcontext(lambda done, total: None)
           if file == "-" and sys.stdout.isatty() else progress_bar(st, "Exporting"))
    with st.catalog().session() as session, bar as update:
        def tick(done: int) -> None:
            update(done, None)  # type: ignore[arg-type]  # total unknown: a spinner-like bar

        if file == "-":
            count = _write_stdout(session, options, tick)
        else:
            count = export_to_path(session, Path(file), options, tick)
    where = "standard output" if file == "-" else file
    st.err.print(f"Exported {count:,} products to {where}.", highlight=False)


def _write_stdout(session: Session, options: ExportOptions, tick: Callable[[int], None]) -> int:
    from catalog.export import write_export

    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        count = write_export(session, out, options, tick)
        out.flush()
    finally:
        with contextlib.suppress(BrokenPipeError):
            out.detach()  # leave sys.stdout open for the interpreter
    return count


def register(app: typer.Typer) -> None:
    app.command()(export)
