"""Shared rich rendering: progress bars that library callbacks can drive."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cli.state import AppState

# How the review screen draws pictures (textual-image's renderers); here so that the CLI can
# offer them as choices without loading textual.
ImageMode = enum.StrEnum("ImageMode", ["auto", "halfcell", "sixel", "tgp", "unicode", "none"])


def facts_table(rows: Iterable[tuple[str, str]], title: str | None = None,
                borderless: bool = False) -> Table:
    """The CLI's summaries: a (what, value) row per fact, values to the right, no header;
    borderless (names in bold instead) for the crawl's live view and summary."""
    table = Table(title=title, title_justify="left", show_header=False,
                  **({"box": None} if borderless else {}))
    table.add_column("what", style="bold" if borderless else "")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def bar_progress(st: AppState) -> Progress:
    """The CLI's one look of a progress bar, on standard error."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=st.err,
    )


@contextlib.contextmanager
def progress_bar(st: AppState, label: str) -> Iterator[Callable[[int, int], None]]:
    """Yield an update(done, total) callback that draws one rich progress bar."""
    if st.settings.quiet:
        yield lambda done, total: None
        return
    with bar_progress(st) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
