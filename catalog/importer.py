"""`slashcat import`: fill the catalog from a folder of category sub-folders, or a CSV."""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from catalog.categories import normalise_path
from catalog.children import die_with_parent
from catalog.db import Catalog
from catalog.errors import ImageRejected, InvalidInput
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.ingest import BatchItem, get_or_create_store, ingest_batch
from catalog.locks import writing
from catalog.models import CrawlRun, utcnow
from catalog.store import ImageStore

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
BATCH = 256

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class ImportEntry:
    path: Path  # as found (may be a link)
    key: str  # the product's stable URL within the store
    category: str | None
    title: str | None = None  # CSV imports' optional title column; folders have none


@dataclass
class ImportReport:
    store: str = ""
    files: int = 0
    products_new: int = 0
    products_unchanged: int = 0
    images_new: int = 0
    images_duplicate: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    run_id: int | None = None


def scan_folder(root: Path) -> list[ImportEntry]:
    """Image files under `root`; their folder path below root is the category."""
    entries = []
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        rel_dir = Path(dirpath).relative_to(root)
        category = normalise_path(list(rel_dir.parts)) if rel_dir.parts else None
        for name in sorted(names):
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                entries.append(ImportEntry(p, "file:" + (rel_dir / name).as_posix(), category))
    return entries


CSV_COLUMNS = ("path", "category", "title")  # title optional


def scan_csv(csv_path: Path) -> list[ImportEntry]:
    """Rows of `path,category[,title]` (a header row is optional, and names the columns in any
    order when present); absolute paths or relative to the CSV. Titles are kept as given
    (stripped; blank is none): the model reads them through classifier.titles."""
    base = csv_path.parent
    entries: list[ImportEntry] = []
    order = {name: i for i, name in enumerate(CSV_COLUMNS)}
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            if not row:
                continue
            if row[0].strip().lower() in CSV_COLUMNS and not entries:
                order = _header(csv_path, row)
                continue
            if len(row) <= max(order["path"], order["category"]):
                raise InvalidInput(f"{csv_path}: expected 'path,category[,title]', got {row!r}")
            rel = Path(row[order["path"]].strip())
            category = normalise_path(row[order["category"]])
            at = order.get("title")
            title = (row[at].strip() or None) if at is not None and at < len(row) else None
            entries.append(ImportEntry(base / rel, "file:" + rel.as_posix(), category, title))
    return entries


def _header(csv_path: Path, row: list[str]) -> dict[str, int]:
    names = [cell.strip().lower() for cell in row]
    order = {name: names.index(name) for name in CSV_COLUMNS if name in names}
    if "path" not in order or "category" not in order:
        raise InvalidInput(f"{csv_path}: the header must name 'path' and 'category' "
                           f"(and optionally 'title'), got {row!r}")
    return order


def read_checked(
    entry: ImportEntry, root: Path | None, limits: Limits
) -> tuple[bytes, ImageFacts]:
    """Read and inspect one file; raises ImageRejected with the reason.

    `root` is the scanned folder, which links must not escape; None for a CSV's rows, whose
    paths the user wrote and may point anywhere.
    """
    real = entry.path.resolve()
    if root is not None and not real.is_relative_to(root):
        raise ImageRejected("outside-folder", "a link that points outside the folder")
    if not real.is_file():
        raise ImageRejected("missing", "no such file")
    size = real.stat().st_size
    if size > limits.max_bytes:
        raise ImageRejected("too-large", f"{size} bytes > {limits.max_bytes}")
    data = real.read_bytes()
    return data, inspect_image(data, limits)


@functools.cache
def _store_at(root: Path) -> ImageStore:
    """One store per worker process, so its cache of made folders lasts across files."""
    return ImageStore(root)


def _check_and_store(
    args: tuple[ImportEntry, Path | None, Limits, Path],
) -> ImageFacts | ImageRejected:
    """Runs in a worker: read, inspect and write the file to the store (not yet synced)."""
    entry, root, limits, store_root = args
    try:
        data, facts = read_checked(entry, root, limits)
        _store_at(store_root).put(data, facts.ext, facts.sha256, durable=False)
        return facts
    except ImageRejected as exc:
        return exc
    except OSError as exc:
        return ImageRejected("unreadable", str(exc)[:160])


def _checked(
    entries: list[ImportEntry], root: Path | None, limits: Limits, store_root: Path, workers: int
) -> Iterator[ImageFacts | ImageRejected]:
    jobs = [(e, root, limits, store_root) for e in entries]
    if workers <= 1 or len(entries) < 64:
        yield from map(_check_and_store, jobs)
        return
    with ProcessPoolExecutor(workers, initializer=die_with_parent) as pool:
        yield from pool.map(_check_and_store, jobs, chunksize=32)


def import_images(
    catalog: Catalog,
    source: Path,
    store_name: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a folder or CSV. Idempotent: a second run adds nothing."""
    with writing(catalog.settings.home):
        return _import(catalog, source, store_name, workers, progress)


def _import(catalog: Catalog, source: Path, store_name: str | None, workers: int | None,
            progress: Progress | None) -> ImportReport:
    source = source.resolve()
    if not source.exists():
        raise InvalidInput(f"{source} does not exist")
    entries = scan_csv(source) if source.is_file() else scan_folder(source)
    root = None if source.is_file() else source
    limits = catalog.settings.image_limits()
    report = ImportReport(store=store_name or source.stem, files=len(entries))
    with catalog.session(write=True) as session:
        store = get_or_create_store(session, report.store, source.as_uri())
        run = CrawlRun(store_id=store.id, kind="import", settings={"source": str(source)})
        session.add(run)
        session.flush()
        store_id, report.run_id = store.id, run.id
    n_workers = workers or min(os.cpu_count() or 1, 4)
    results = _checked(entries, root, limits, catalog.store.root, n_workers)
    categories: dict[str, int] = {}
    for start in range(0, len(entries), BATCH):
        chunk = entries[start : start + BATCH]
        checked = [(entry, next(results)) for entry in chunk]
        with catalog.session(write=True) as session:
            _import_batch(session, catalog, store_id, checked, categories, report)
        if progress:
            progress(min(start + BATCH, len(entries)), len(entries))
    _finish_run(catalog, report)
    return report


Checked = tuple[ImportEntry, ImageFacts | ImageRejected]


def _import_batch(
    session: Session,
    catalog: Catalog,
    store_id: int,
    checked: list[Checked],
    categories: dict[str, int],
    report: ImportReport,
) -> None:
    items: list[BatchItem] = []
    for entry, facts in checked:
        if isinstance(facts, ImageRejected):
            report.rejected.append((str(entry.path), str(facts)))
        else:
            fields = {"external_id": entry.key[5:], "title": entry.title,
                      "category_path": entry.category}
            items.append(BatchItem(entry.key, facts, fields))
    done = ingest_batch(session, catalog.store, store_id, items, categories)
    report.products_new += done.products_new
    report.products_unchanged += done.products_unchanged
    report.images_new += done.images_new
    # Each new link beyond one per new image shares bytes already stored: a duplicate.
    report.images_duplicate += done.links_new - done.images_new


def _finish_run(catalog: Catalog, report: ImportReport) -> None:
    with catalog.session() as session:
        run = session.get_one(CrawlRun, report.run_id)
        run.finished_at = utcnow()
        run.status = "finished"
        run.products_new = report.products_new
        run.images_new = report.images_new
        run.images_duplicate = report.images_duplicate
        run.images_rejected = len(report.rejected)


__all__ = ["ImportReport", "import_images", "scan_csv", "scan_folder"]
