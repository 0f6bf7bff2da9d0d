"""`slashcat import`: fill the catalog from a folder of category sub-folders, or a CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from catalog.categories import SEPARATOR, normalise_path
from catalog.db import Catalog
from catalog.errors import ImageRejected, InvalidInput
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.ingest import get_or_create_store, ingest_image, link_image, upsert_product
from catalog.labels import set_store_label
from catalog.models import CrawlRun, utcnow

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
BATCH = 256

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class ImportEntry:
    path: Path  # as found (may be a link)
    key: str  # the product's stable URL within the store
    category: str | None


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


def scan_csv(csv_path: Path) -> list[ImportEntry]:
    """Rows of `path,category` (a header row is optional); paths relative to the CSV."""
    base = csv_path.parent
    entries = []
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            if not row or row[0].strip().lower() == "path":
                continue
            if len(row) < 2:
                raise InvalidInput(f"{csv_path}: expected 'path,category', got {row!r}")
            rel = Path(row[0].strip())
            category = normalise_path(row[1])
            entries.append(ImportEntry(base / rel, "file:" + rel.as_posix(), category))
    return entries


def read_checked(entry: ImportEntry, root: Path, limits: Limits) -> tuple[bytes, ImageFacts]:
    """Read and inspect one file; raises ImageRejected with the reason."""
    real = entry.path.resolve()
    if not real.is_relative_to(root):
        raise ImageRejected("outside-folder", "a link that points outside the folder")
    if not real.is_file():
        raise ImageRejected("missing", "no such file")
    size = real.stat().st_size
    if size > limits.max_bytes:
        raise ImageRejected("too-large", f"{size} bytes > {limits.max_bytes}")
    data = real.read_bytes()
    return data, inspect_image(data, limits)


def _check_worker(
    args: tuple[ImportEntry, Path, Limits],
) -> tuple[bytes, ImageFacts | ImageRejected]:
    entry, root, limits = args
    try:
        return read_checked(entry, root, limits)
    except ImageRejected as exc:
        return b"", exc
    except OSError as exc:
        return b"", ImageRejected("unreadable", str(exc)[:160])


def _checked(
    entries: list[ImportEntry], root: Path, limits: Limits, workers: int
) -> Iterator[tuple[bytes, ImageFacts | ImageRejected]]:
    jobs = [(e, root, limits) for e in entries]
    if workers <= 1 or len(entries) < 64:
        yield from map(_check_worker, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_check_worker, jobs, chunksize=32)


def import_images(
    catalog: Catalog,
    source: Path,
    store_name: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a folder or CSV. Idempotent: a second run adds nothing."""
    source = source.resolve()
    if not source.exists():
        raise InvalidInput(f"{source} does not exist")
    entries = scan_csv(source) if source.is_file() else scan_folder(source)
    root = source.parent if source.is_file() else source
    s = catalog.settings
    limits = Limits(s.max_pixels, s.max_image_bytes, s.min_image_side)
    report = ImportReport(store=store_name or source.stem, files=len(entries))
    with catalog.session() as session:
        store = get_or_create_store(session, report.store, source.as_uri())
        run = CrawlRun(store_id=store.id, kind="import", settings={"source": str(source)})
        session.add(run)
        session.flush()
        store_id, report.run_id = store.id, run.id
    results = _checked(entries, root, limits, workers or min(os.cpu_count() or 1, 4))
    for start in range(0, len(entries), BATCH):
        chunk = entries[start : start + BATCH]
        with catalog.session() as session:
            for entry in chunk:
                data, facts = next(results)
                _import_one(session, catalog, store_id, entry, data, facts, report)
        if progress:
            progress(min(start + BATCH, len(entries)), len(entries))
    _finish_run(catalog, report)
    return report


def _import_one(session, catalog, store_id, entry, data, facts, report) -> None:
    if isinstance(facts, ImageRejected) and not data:
        report.rejected.append((str(entry.path), str(facts)))
        return
    outcome = ingest_image(session, catalog.store, data, facts=facts)
    if outcome.status == "rejected":
        report.rejected.append((str(entry.path), outcome.reason or "rejected"))
        return
    title = entry.path.stem
    product, status = upsert_product(
        session, store_id, entry.key, external_id=entry.key[5:], title=title,
        category_path=entry.category,
    )
    set_store_label(session, product, entry.category)
    linked = link_image(session, product.id, outcome.image.id, entry.key)
    if status == "new":
        report.products_new += 1
    else:
        report.products_unchanged += 1
    if outcome.status == "new":
        report.images_new += 1
    elif linked:
        report.images_duplicate += 1


def _finish_run(catalog: Catalog, report: ImportReport) -> None:
    with catalog.session() as session:
        run = session.get_one(CrawlRun, report.run_id)
        run.finished_at = utcnow()
        run.status = "finished"
        run.products_new = report.products_new
        run.images_new = report.images_new
        run.images_duplicate = report.images_duplicate
        run.images_rejected = len(report.rejected)


__all__ = ["SEPARATOR", "ImportReport", "import_images", "scan_csv", "scan_folder"]
