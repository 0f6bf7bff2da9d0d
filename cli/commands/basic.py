"""Catalog commands: init, stats, doctor, import, categories."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.render import facts_table, progress_bar
from cli.state import state, user_errors

categories_app = typer.Typer(
    help="List the taxonomy and map store category paths onto it.", no_args_is_help=True
)


@user_errors
def init(ctx: typer.Context) -> None:
    """Create the home folder and an empty catalog (safe to run again).

    Example: slashcat --home shop-data init
    """
    st = state(ctx)
    cat = st.catalog(create=True)
    st.settings.images_dir.mkdir(parents=True, exist_ok=True)
    st.console.print(f"Catalog ready at [bold]{cat.engine.url.render_as_string()}[/]")


@user_errors
def stats(ctx: typer.Context) -> None:
    """Show what the catalog holds: stores, products, images, labels, duplicates, models.

    Example: slashcat stats
    """
    from catalog.stats import catalog_stats

    st = state(ctx)
    with st.catalog().session() as session:
        s = catalog_stats(session)
    stores = Table(title="Stores", title_justify="left")
    for col in ("store", "base URL", "products"):
        stores.add_column(col, justify="right" if col == "products" else "left")
    for row in s.stores:
        stores.add_row(row.name, row.base_url, f"{row.products:,}")
    sources = ", ".join(f"{k} {v:,}" for k, v in sorted(s.labels_by_source.items())) or "none"
    totals = facts_table([
        ("products", f"{s.products:,}"),
        ("images", f"{s.images:,}"),
        ("images rejected", f"{s.images_rejected:,}"),
        ("labelled products", f"{s.labelled:,} ({sources})"),
        ("unlabelled products", f"{s.unlabelled:,}"),
        ("duplicate images", f"{s.duplicates:,} in {s.clusters:,} clusters"),
        ("models", f"{s.models:,}" + (f" (active {s.active_model})" if s.active_model else "")),
        ("predictions", f"{s.predictions:,}"),
    ], "Catalog")
    st.console.print(stores)
    st.console.print(totals)


@user_errors
def doctor(
    ctx: typer.Context,
    fix: bool = typer.Option(False, "--fix", help="Repair what is found."),
) -> None:
    """Check that catalog rows and image files agree; with --fix, repair them.

    Orphan files (no row) and left-over temp files are deleted; rows whose file is gone are
    marked rejected; models whose file is gone are deactivated; runs a kill left 'running' are
    marked interrupted. Safe while an import or crawl runs: its files are left alone.
    Example: slashcat doctor --fix
    """
    from catalog.doctor import check, file_integrity
    from catalog.errors import CatalogDamaged

    st = state(ctx)
    try:
        report = check(st.catalog(), repair=fix)
    except CatalogDamaged as exc:
        st.console.print(f"integrity: {file_integrity(st.settings)}", highlight=False)
        raise CatalogDamaged(str(exc).split("; restore")[0] + "; doctor cannot repair the "
                             "database file itself: restore a backup") from exc
    st.console.print(f"schema {report.schema_revision} (head {report.schema_head})")
    st.console.print(f"integrity: {report.integrity}")
    st.console.print(f"images checked: {report.images_checked:,}")
    for label, items in [
        ("orphan files (no catalog row)", report.orphan_files),
        ("rows whose file is missing", report.missing_files),
        ("left-over temp files", report.temp_files),
        ("models whose file is missing", report.missing_models),
        ("model files without a catalog row", report.orphan_models),
        ("runs left 'running' by a killed process", report.dead_runs),
    ]:
        st.console.print(f"{label}: {len(items)}")
        for item in items[:10]:
            st.console.print(f"  {item}", highlight=False)
    if report.writers_running:
        st.console.print(f"an import, crawl or train is running: {len(report.in_flight)} of its "
                         "files are in flight and left alone")
    if report.problems and not fix:
        st.console.print("[yellow]Run 'slashcat doctor --fix' to repair.[/]")
        raise typer.Exit(1)
    st.console.print("[green]Repaired.[/]" if report.problems else "[green]All good.[/]")


@user_errors
def import_(
    ctx: typer.Context,
    source: Path = typer.Argument(
        ..., help="A folder of category sub-folders of images, or a CSV of path,category[,title]."
    ),
    store_name: str = typer.Option(None, "--store-name", help="Store to file them under "
                                   "\\[default: the folder's name]."),
    workers: int = typer.Option(None, "--workers", help="Processes that decode and hash."),
) -> None:
    """Fill the catalog from labelled images on disk, without crawling.

    Each sub-folder name is a category (nested folders make a path 'A > B'). Bad files are
    reported and skipped; running it again adds nothing.
    Example: slashcat import ~/photos/by-category --store-name archive
    """
    from catalog.importer import import_images

    st = state(ctx)
    cat = st.catalog(create=True)
    with progress_bar(st, "Importing") as update:
        report = import_images(cat, source, store_name, workers, progress=update)
    st.console.print(
        f"[bold]{report.store}[/]: {report.files:,} files, products new {report.products_new:,} "
        f"(already there {report.products_unchanged:,}), images new {report.images_new:,}, "
        f"duplicate {report.images_duplicate:,}, rejected {len(report.rejected):,}"
    )
    for path, reason in report.rejected[:50]:
        st.console.print(f"  [red]rejected[/] {path}: {reason}", highlight=False)
    if len(report.rejected) > 50:
        st.console.print(f"  … and {len(report.rejected) - 50} more")


@categories_app.command("list")
@user_errors
def categories_list(ctx: typer.Context) -> None:
    """List categories with their product counts (current labels) and mappings.

    Example: slashcat categories list
    """
    from catalog.categories import list_categories

    st = state(ctx)
    with st.catalog().session() as session:
        rows = list_categories(session)
    table = Table("category", "products", "mapped from")
    for row in rows:
        table.add_row(row.name, f"{row.products:,}", ", ".join(row.mapped_from))
    st.console.print(table)


@categories_app.command("map")
@user_errors
def categories_map(
    ctx: typer.Context,
    store_path: str = typer.Argument(..., help="The store's category path, e.g. 'Men > Tees'."),
    category: str = typer.Argument(..., help="The catalog category it means, e.g. 'Topwear'."),
    store: str = typer.Option(None, "--store", help="Only for this store \\[default: all]."),
) -> None:
    """Map a store category path onto a catalog category; relabels the affected products.

    Example: slashcat categories map "Apparel > Topwear > Tshirts" "Apparel > Topwear"
    """
    from catalog.categories import normalise_path
    from catalog.labels import apply_mapping

    st = state(ctx)
    path = normalise_path(store_path)
    target = normalise_path(category)
    if not path or not target:
        raise typer.BadParameter("both paths must name a category")
    with st.catalog().session() as session:
        changed = apply_mapping(session, path, target, store)
    st.console.print(
        f"Mapped [bold]{path}[/] → [bold]{target}[/]; {changed:,} products relabelled."
    )


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(stats)
    app.command()(doctor)
    app.command("import")(import_)
    app.add_typer(categories_app, name="categories")
