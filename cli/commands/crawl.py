"""`slashcat crawl URL`: crawl a storefront into the catalog, with a live view."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.render import facts_table
from cli.state import AppState, state, user_errors


def counters_table(report: Any, title: str = "Crawl") -> Table:
    """The live view and the summary: one row per counter."""
    refused = f"  (refused internal addresses {report.blocked:,})" if report.blocked else ""
    return facts_table([
        ("pages", f"{report.pages:,}"),
        ("products", f"new {report.products_new:,}  updated {report.products_updated:,}"
                     f"  unchanged {report.products_unchanged:,}"),
        ("images", f"new {report.images_new:,}  duplicate {report.images_duplicate:,}  "
                   f"rejected {report.images_rejected:,}  already stored {report.images_known:,}"),
        ("errors", f"{report.errors:,}{refused}"),
        ("rate", f"{report.rate:,.1f} products/s"),
    ], title, borderless=True)


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
    urls: list[str] = typer.Argument(None, help="Start URLs of one or more shops, e.g. "
                                                "https://shop.example.com", show_default=False),
    max_products: int = typer.Option(None, "--max-products", min=1,
                                     help="Stop after this many products (per shop)."),
    store_name: str = typer.Option(None, "--store-name",
                                   help="Name to file the store under \\[default: its host]."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue an interrupted crawl of this store."),
    allow_domain: list[str] = typer.Option(
        None, "--allow-domain", help="Another domain to fetch from (an image CDN); repeatable."),
    from_file: Path = typer.Option(None, "--from-file", help="A file of shop URLs, one a line."),
    redis: str = typer.Option(None, "--redis", metavar="URL",
                              help="Share the crawl's frontier on this Redis (redis://host:6379/0)."),
    workers: int = typer.Option(2, "--workers", min=1,
                                help="Crawler processes on this machine (with --redis)."),
) -> None:
    """Crawl storefronts: products, images and categories go into the catalog.

    Obeys robots.txt, throttles itself, stays on the shop's domain (plus --allow-domain) and
    never fetches internal addresses. Running it again adds nothing twice. Several URLs (or
    --from-file) crawl several shops, each its own store. With --redis, --workers processes
    share one frontier; 'slashcat crawl-worker' joins more from other machines.
    Example: slashcat crawl https://shop.example.com --max-products 500
    """
    from catalog.errors import InvalidInput
    from scraper.distributed import crawl_shops, read_shop_list

    st = state(ctx)
    shops = list(urls or []) + (read_shop_list(from_file) if from_file else [])
    if not shops:
        raise InvalidInput("give a shop URL to crawl (or --from-file FILE)")
    cat = st.catalog(create=True)
    with quiet_scrapy(st.settings.verbose), live_view(st) as progress:
        crawl_shops(cat, shops, redis_url=redis, workers=workers, store_name=store_name,
                    resume=resume, max_products=max_products,
                    allow_domains=tuple(allow_domain or ()), progress=progress,
                    on_shop=lambda report: print_summary(st, report))


@user_errors
def crawl_worker(
    ctx: typer.Context,
    redis: str = typer.Option(..., "--redis", metavar="URL",
                              help="The Redis the crawl was started on."),
    store_name: str = typer.Option(None, "--store-name",
                                   help="Join this store's crawl \\[default: any unfinished one]."),
) -> None:
    """Join an unfinished 'slashcat crawl --redis' as one more crawler process.

    Run it on another machine with the same --db (PostgreSQL), or on the same machine.
    Example: slashcat --db postgresql+psycopg://cat@db/catalog crawl-worker --redis redis://db:6379/0
    """
    from scraper.distributed import join_crawl

    st = state(ctx)
    cat_settings = st.settings
    with quiet_scrapy(st.settings.verbose), live_view(st) as progress:
        report = join_crawl(cat_settings, redis, store_name, progress)
    print_summary(st, report)


def print_summary(st: AppState, report: Any) -> None:
    if getattr(report, "notice", None):
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
    app.command("crawl-worker")(crawl_worker)
