"""`slashcat crawl URL`: crawl a storefront into the catalog, with a live view."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.table import Table

from cli.state import AppState, state, user_errors


def counters_table(report: Any, title: str = "Crawl") -> Table:
    """The live view and the summary: one row per counter."""
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    table.add_row("pages", f"{report.pages:,}")
    table.add_row("products", f"new {report.products_new:,}  updated {report.products_updated:,}"
                  f"  unchanged {report.products_unchanged:,}")
    table.add_row("images", f"new {report.images_new:,}  duplicate {report.images_duplicate:,}"
                  f"  rejected {report.images_rejected:,}  already stored {report.images_known:,}")
    refused = f"  (refused internal addresses {report.blocked:,})" if report.blocked else ""
    table.add_row("errors", f"{report.errors:,}{refused}")
    table.add_row("rate", f"{report.rate:,.1f} products/s")
    return table


@contextlib.contextmanager
def live_view(st: AppState) -> Iterator[Callable[[Any], None]]:
    """Yield the progress callback that redraws the counters table."""
    if st.settings.quiet:
        yield lambda report: None
        return
    from rich.live import Live

    with Live(console=st.err, refresh_per_second=4, transient=True) as live:
        yield lambda report: live.update(counters_table(report, "Crawling…"))


@contextlib.contextmanager
def quiet_scrapy(verbose: bool) -> Iterator[None]:
    """Scrapy logs a lot; the CLI shows the counters instead (details with --verbose)."""
    loggers = [logging.getLogger(n) for n in ("scrapy", "twisted", "py.warnings")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO if verbose else logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@user_errors
def crawl(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="The shop's start URL, e.g. https://shop.example.com"),
    max_products: int = typer.Option(None, "--max-products", min=1,
                                     help="Stop after this many products."),
    store_name: str = typer.Option(None, "--store-name",
                                   help="Name to file the store under \\[default: its host]."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted crawl of this store."),
    allow_domain: list[str] = typer.Option(
        None, "--allow-domain", help="Another domain to fetch from (an image CDN); repeatable."),
) -> None:
    """Crawl a storefront: products, images and categories go into the catalog.

    Obeys robots.txt, throttles itself, stays on the shop's domain (plus --allow-domain) and
    never fetches internal addresses. Running it again adds nothing twice.
    Example: slashcat crawl https://shop.example.com --max-products 500
    """
    from scraper.run import crawl as run_crawl

    st = state(ctx)
    cat = st.catalog(create=True)
    with quiet_scrapy(st.settings.verbose), live_view(st) as progress:
        report = run_crawl(cat, url, max_products=max_products, store_name=store_name,
                           resume=resume, allow_domains=tuple(allow_domain or ()),
                           progress=progress)
    if report.notice:
        st.console.print(f"[yellow]{report.notice}[/]", highlight=False)
    st.console.print(counters_table(report, f"Crawled {report.store}: {report.status} "
                                            f"in {report.elapsed_s:,.1f} s"))
    summary = (f"products new {report.products_new:,}, updated {report.products_updated:,}; "
               f"images new {report.images_new:,}, duplicate {report.images_duplicate:,}, "
               f"rejected {report.images_rejected:,}; errors {report.errors:,}")
    st.console.print(summary, highlight=False)
    for image_url, reason in report.rejections[:20]:
        st.console.print(f"  [red]rejected[/] {image_url}: {reason}", highlight=False)
    for message in report.error_messages[:20]:
        st.console.print(f"  [yellow]error[/] {message}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(crawl)
