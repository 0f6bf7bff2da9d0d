"""`slashcat demo`: the whole job end to end on the bundled sample storefront."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.panel import Panel
from rich.table import Table

from classifier.architectures import DEFAULT_ARCH
from cli.state import AppState, state, user_errors


@user_errors
def demo(
    ctx: typer.Context,
    home: Path = typer.Option(None, "--home", help="Home folder for the demo "
                              "\\[default: the global --home, ./slashcat-data]."),
    time_budget: float = typer.Option(2.0, "--time-budget", help="Minutes of training."),
    arch: str = typer.Option(DEFAULT_ARCH, "--arch", help="Architecture to train (see "
                             "'slashcat train --help')."),
    image_size: int | None = typer.Option(None, "--image-size", help="Training image size in "
                                          "pixels \\[default: the architecture's own]."),
) -> None:
    """Run the whole job on the bundled sample shop, from crawl to category CSV.

    Crawl, dedupe, train, evaluate, predict, accept the confident, export. Needs no network
    beyond localhost. Running it again reuses the crawl and the model.
    Example: slashcat demo --home demo-data --time-budget 2
    """
    from catalog.settings import Settings
    from cli.demo import DemoOptions, run_demo

    st = state(ctx)
    if home is not None:
        st.settings = Settings.load(home=home, db=st.settings.db or None,
                                    verbose=st.settings.verbose, quiet=st.settings.quiet)
    catalog = st.catalog(create=True)
    options = DemoOptions(time_budget_min=time_budget, arch=arch, image_size=image_size)
    with st.err.status("starting") as status:

        def on_stage(stage: str, event: str) -> None:
            if event == "start":
                status.update(f"[bold]{stage}[/] …")
            else:
                st.console.print(f"[green]✓[/] [bold]{stage:<10}[/] {event[6:]}",
                                 highlight=False)
        result = run_demo(catalog, options, on_stage)
    _summary(st, result)


def _summary(st: AppState, result) -> None:  # type: ignore[no-untyped-def]
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("accuracy", f"{result.accuracy:.1%} on {result.test_images} frozen test "
                  f"images (macro-F1 {result.macro_f1:.3f}), model {result.model_version}")
    if result.uncategorised:
        table.add_row("uncategorised", f"{result.uncategorised_correct}/{result.uncategorised} "
                      "predictions match the shop's hidden answers")
    table.add_row("accepted", f"{result.accepted} confident predictions")
    table.add_row("catalog", result.catalog_path)
    table.add_row("CSV", str(result.csv_path))
    for plot in result.plots:
        table.add_row("plot", str(plot))
    home = result.home
    table.add_row("next", f"slashcat --home {home} review\n"
                          f"slashcat --home {home} retrain\n"
                          f"slashcat --home {home} stats")
    total = sum(s.seconds for s in result.stages)
    st.console.print(Panel(table, title=f"slashcat demo done in {total:.0f} s",
                           title_align="left"))


def register(app: typer.Typer) -> None:
    app.command()(demo)
