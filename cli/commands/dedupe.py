"""`slashcat dedupe`: near-duplicate clusters by perceptual hash, and ways to look at them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.render import facts_table, progress_bar
from cli.state import AppState, state, user_errors

if TYPE_CHECKING:
    from catalog.dedupe import DedupeSummary

ALL = "all"


@user_errors
def dedupe(
    ctx: typer.Context,
    threshold: int = typer.Option(
        None, "--threshold", "-t",
        help="Largest Hamming distance (0-64) of both pHash and dHash that counts as a "
        "duplicate \\[default: the dedupe_threshold setting].",
    ),
    no_verify: bool = typer.Option(
        False, "--no-verify", help="Trust the hashes alone: skip the colour check of each "
        "candidate pair (faster, but different products of one silhouette may merge).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Find and report; write nothing."),
    full: bool = typer.Option(
        False, "--full", help="Redo all pairs instead of comparing only new images."
    ),
    show: bool = typer.Option(
        False, "--show", help="List the recorded clusters, or with CLUSTER the images of one "
        "cluster; runs nothing.",
    ),
    cluster: str = typer.Argument(
        None, metavar="[CLUSTER]", show_default=False, help="With --show: the cluster to list."
    ),
    sheet: Path = typer.Option(
        None, "--sheet", metavar="FILE.png",
        help="Write a contact sheet of the largest recorded clusters; runs nothing.",
    ),
) -> None:
    """Group near-duplicate images into clusters and pick one canonical image per cluster.

    Only images added since the last run are compared against the index, unless --full or a
    different --threshold. Non-canonical images leave training, evaluation and review.
    Example: slashcat dedupe --threshold 4 --dry-run
    """
    from catalog.errors import InvalidInput

    st = state(ctx)
    if cluster is not None and not show:
        raise InvalidInput(f"to list cluster {cluster}, use: slashcat dedupe --show {cluster}")
    if show:
        _show(st, cluster or ALL)
    elif sheet is not None:
        _sheet(st, sheet)
    else:
        _run(st, threshold, dry_run, full, not no_verify)


def _run(st: AppState, threshold: int | None, dry_run: bool, full: bool, verify: bool) -> None:
    from catalog.dedupe import run_dedupe, validate_threshold

    if threshold is not None:
        validate_threshold(threshold)  # refuse before opening anything
    cat = st.catalog()
    with progress_bar(st, "Comparing hashes") as update:
        summary = run_dedupe(cat, threshold, dry_run=dry_run, full=full,
                             progress=update, verify=verify)
    _render_summary(st, summary)


def _render_summary(st: AppState, s: DedupeSummary) -> None:
    for image_id, reason in s.unhashable[:20]:
        st.console.print(f"  [red]cannot hash[/] image {image_id}: {reason}", highlight=False)
    if len(s.unhashable) > 20:
        st.console.print(f"  … and {len(s.unhashable) - 20} more images that cannot be hashed")
    if s.mode == "empty":
        st.console.print("Nothing to do: the catalog has no hashed images.")
        return
    if s.mode == "nothing-new":
        st.console.print(
            f"Nothing to do: all {s.images:,} images were already compared at threshold "
            f"{s.threshold} (use --full to redo all pairs)."
        )
    rule = f"pHash ≤ {s.threshold} and dHash ≤ {s.dhash_threshold}"
    if s.verify_cut is not None:
        rule += f" and colours correlate ≥ {s.verify_cut:g}"
    table = facts_table([
        ("mode", s.mode),
        ("duplicate when", rule),
        ("images with hashes", f"{s.images:,}"),
        ("hashed in this run", f"{s.hashed_now:,}"),
        ("compared in this run", f"{s.compared:,}"),
        *([("hash pairs turned down by colour", f"{s.rejected:,} of {s.candidates:,}")]
          if s.verify_cut is not None else []),
        *([("images whose file could not be read", f"{s.unverifiable:,}")]
          if s.unverifiable else []),
        ("near-duplicate pairs found", f"{s.pairs:,}"),
        ("clusters (2+ images)", f"{s.clusters:,}"),
        ("images in clusters", f"{s.clustered_images:,}"),
        ("images that leave training", f"{s.leaving_training:,} (+{s.newly_leaving:,} now)"),
        ("rows " + ("that would change" if s.dry_run else "changed"), f"{s.rows_changed:,}"),
        ("time", f"{s.seconds:.1f} s"),
    ], "Dedupe" + (" (dry run: nothing written)" if s.dry_run else ""))
    st.console.print(table)
    if s.sizes:
        sizes = ", ".join(f"{size}: {count:,}" for size, count in sorted(s.sizes.items()))
        st.console.print(f"Cluster sizes (size: clusters): {sizes}", highlight=False)
    if s.largest:
        largest = Table("cluster", "images", "canonical", title="Largest clusters",
                        title_justify="left")
        for info in s.largest:
            largest.add_row(str(info.cluster_id), str(info.size), str(info.canonical_id))
        st.console.print(largest)


def _show(st: AppState, which: str) -> None:
    from catalog.dedupe import cluster_members, list_clusters
    from catalog.errors import InvalidInput

    with st.catalog().session() as session:
        if which == ALL:
            clusters = list_clusters(session)
            if not clusters:
                st.console.print("No clusters recorded; run 'slashcat dedupe' first.")
                return
            table = Table("cluster", "images", "canonical", "members")
            for info in clusters:
                members = ", ".join(map(str, info.member_ids[:12]))
                more = " …" if info.size > 12 else ""
                table.add_row(str(info.cluster_id), str(info.size), str(info.canonical_id),
                              members + more)
            st.console.print(table)
            return
        if not which.isdigit():
            raise InvalidInput(f"--show takes a cluster number, got {which!r}")
        members = cluster_members(session, int(which))
    table = Table("image", "canonical", "size", "pHash dist", "dHash dist", "products", "file",
                  title=f"Cluster {which}", title_justify="left")
    for m in members:
        table.add_row(
            str(m.image_id), "yes" if m.is_canonical else "", f"{m.width}x{m.height}",
            str(m.phash_distance), str(m.dhash_distance), str(m.products), m.path or "-",
        )
    st.console.print(table)


def _sheet(st: AppState, path: Path) -> None:
    from catalog.dedupe import contact_sheet

    shown = contact_sheet(st.catalog(), path)
    st.console.print(f"Wrote [bold]{path}[/] with the {shown} largest clusters.")


def register(app: typer.Typer) -> None:
    app.command()(dedupe)
