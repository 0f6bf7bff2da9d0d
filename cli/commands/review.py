"""`slashcat review`: the full-screen review of uncertain predictions, or batch accept."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from catalog.options import DEFAULT_BELOW, DISAGREEMENT_CONFIDENCE, INPUTS_DISAGREE_CONFIDENCE
from cli.commands import MODEL
from cli.render import ImageMode
from cli.state import AppState, state, user_errors

if TYPE_CHECKING:
    from catalog.review import QueueFilter, ReviewSession

NO_TTY = (
    "review needs an interactive terminal; in scripts use --accept-above X [--dry-run] "
    "to accept confident predictions"
)


@user_errors
def review(
    ctx: typer.Context,
    below: float = typer.Option(
        None, "--below",
        help=f"Only predictions with confidence below this \\[default: {DEFAULT_BELOW}].",
        show_default=False,
    ),
    category: str = typer.Option(
        None, "--category", help="Only products the model puts in this category (or under it).",
    ),
    model: str = MODEL,
    limit: int = typer.Option(None, "--limit", help="At most this many products."),
    disagreements: bool = typer.Option(
        False, "--disagreements",
        help="Instead, products whose store label the model contradicts with confidence >= "
        f"{DISAGREEMENT_CONFIDENCE}, or whose title and picture point to different categories "
        f"with confidence >= {INPUTS_DISAGREE_CONFIDENCE} each (title-aware models).",
    ),
    listing: bool = typer.Option(
        False, "--list", help="No screen: print the queue as a table (works in scripts).",
    ),
    accept_above: float = typer.Option(
        None, "--accept-above",
        help="No screen: accept predictions with confidence >= X as 'model-accepted' labels.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --accept-above: only count, write nothing.",
    ),
    images: ImageMode = typer.Option(ImageMode.auto, "--images", help="Image drawing."),
) -> None:
    """Review low-confidence predictions in a full-screen terminal, or accept confident ones.

    Lowest confidence first; every decision is saved at once as a human label, and the next
    session resumes where this one stopped. Skipped products come back next session.
    With a title-aware model, a card whose title and picture disagree says which one the
    prediction follows ("title says X, picture says Y").
    Keys: Enter/a accept, 1-3 choose, c pick any category, s skip, u undo, o open image, ? help,
    q quit. Without a terminal, use --accept-above X [--dry-run].
    Example: slashcat review --below 0.6 --category Shoes;  slashcat review --disagreements --list
    """
    from catalog.errors import InvalidInput
    from catalog.review import QueueFilter, validate_filter

    st = state(ctx)
    if accept_above is not None:
        if disagreements or below is not None or category or limit is not None or listing:
            raise InvalidInput(
                "--accept-above takes only --model and --dry-run, not the queue filters"
            )
        _batch(st, accept_above, dry_run, model)
        return
    if dry_run:
        raise InvalidInput("--dry-run only applies to --accept-above X")
    if below is None and not disagreements:
        below = DEFAULT_BELOW
    filters = QueueFilter(below, category, model, limit, disagreements)
    validate_filter(filters)
    if listing:
        _list(st, filters)
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidInput(NO_TTY)
    _screen(st, filters, images.value)


def _author() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        return None


def _batch(st: AppState, threshold: float, dry_run: bool, model: str | None) -> None:
    from catalog.db import retry_locked
    from catalog.review import accept_above

    def accept() -> Any:
        with st.catalog().session() as session:  # one transaction: repeated whole if busy
            return accept_above(session, threshold, dry_run, model, _author())

    result = retry_locked(accept)
    verb = "Would accept" if dry_run else "Accepted"
    table = Table("category", "products", title=f"{verb} (model {result.model_version}, "
                  f"confidence >= {threshold})", title_justify="left")
    for name, count in result.per_category.items():
        table.add_row(name, f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{result.total:,}[/]")
    st.console.print(table)
    if dry_run:
        st.console.print("Dry run: nothing was written.")


def _list(st: AppState, filters: QueueFilter) -> None:
    from catalog.review import queue_items

    cat = st.catalog()
    with cat.session() as session:
        items = queue_items(session, cat.store.path, filters)
    if not items:
        st.console.print("Nothing to review with these filters.")
        return
    table = Table("product", "title", "prediction", "confidence", "why",
                  title=f"Review queue (model {items[0].model_version}): {len(items)} products",
                  title_justify="left")
    for item in items:
        table.add_row(str(item.product_id), item.title or "—", item.category,
                      f"{item.confidence:.0%}", "; ".join(item.reasons()) or "—")
    st.console.print(table)


def _screen(st: AppState, filters: QueueFilter, images: str) -> None:
    from catalog.review import ReviewSession, all_categories
    from cli.review_screen import image_widget_class, run_review

    cat = st.catalog()
    session = ReviewSession(cat, filters, author=_author())
    if session.total == 0:
        st.console.print(f"Nothing to review for model {session.model_version} with these "
                         "filters.")
        return
    with cat.session() as db:
        categories = all_categories(db)
    image_widget_class(images)  # textual-image asks the terminal before Textual takes it over
    what = "disagreements" if session.filters.disagreements else (
        f"confidence < {session.filters.below}" if session.filters.below is not None else "all")
    run_review(session, categories, images, heading=f"slashcat review · model "
               f"{session.model_version} · {what}")
    _print_summary(st, session)


def _print_summary(st: AppState, session: ReviewSession) -> None:
    s = session.summary()
    pace = (f"{s.seconds_per_decision:.1f} s per decision (median {s.median_seconds:.1f} s)"
            if s.seconds_per_decision is not None else "no decisions")
    st.console.print(
        f"Review session: [bold]{s.decisions}[/] decisions ({s.accepted} accepted, "
        f"{s.corrected} corrected), {s.undone} undone, {s.skipped} skipped; {pace}; "
        f"{s.seconds_total:.0f} s in all. Every decision is saved.", highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(review)
