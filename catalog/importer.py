"""`slashcat import`: fill the catalog from a folder of category sub-folders, or a CSV."""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from catalog.categories import mapped_category, normalise_path
from catalog.db import Catalog
from catalog.dedupe import to_signed
from catalog.errors import ImageRejected, InvalidInput
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.ingest import get_or_create_store
from catalog.models import CrawlRun, Image, Label, Product, ProductImage, utcnow
from catalog.store import ImageStore

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


@functools.cache
def _store_at(root: Path) -> ImageStore:
    """One store per worker process, so its cache of made folders lasts across files."""
    return ImageStore(root)


def _check_and_store(args: tuple[ImportEntry, Path, Limits, Path]) -> ImageFacts | ImageRejected:
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
    entries: list[ImportEntry], root: Path, limits: Limits, store_root: Path, workers: int
) -> Iterator[ImageFacts | ImageRejected]:
    jobs = [(e, root, limits, store_root) for e in entries]
    if workers <= 1 or len(entries) < 64:
        yield from map(_check_and_store, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_check_and_store, jobs, chunksize=32)


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
    n_workers = workers or min(os.cpu_count() or 1, 4)
    results = _checked(entries, root, limits, catalog.store.root, n_workers)
    categories: dict[str, int] = {}
    for start in range(0, len(entries), BATCH):
        chunk = entries[start : start + BATCH]
        checked = [(entry, next(results)) for entry in chunk]
        with catalog.session() as session:
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
    """One batch in a few set-based queries (not a handful per file)."""
    good: list[tuple[ImportEntry, ImageFacts]] = []
    for entry, facts in checked:
        if isinstance(facts, ImageRejected):
            report.rejected.append((str(entry.path), str(facts)))
        else:
            good.append((entry, facts))
    if not good:
        return
    image_ids, new_images = _store_images(session, catalog, checked)
    product_ids = _upsert_products(session, store_id, [e for e, _ in good], report)
    _store_labels(session, store_id, good, product_ids, categories)
    pairs = [(product_ids[e.key], image_ids[f.sha256], e.key) for e, f in good]
    links = _link(session, pairs)
    report.images_new += new_images
    # Each new link beyond one per new image shares bytes already stored: a duplicate.
    report.images_duplicate += links - new_images


def _store_images(
    session: Session, catalog: Catalog, checked: list[Checked]
) -> tuple[dict[str, int], int]:
    facts_by_sha = {f.sha256: f for _e, f in checked if isinstance(f, ImageFacts)}
    query = select(Image.sha256, Image.id).where(Image.sha256.in_(facts_by_sha))
    known = {sha for sha, _id in session.execute(query)}
    rows = [
        _image_row(facts, catalog.store.relpath(sha, facts.ext))
        for sha, facts in facts_by_sha.items()
        if sha not in known
    ]
    if rows:
        catalog.store.sync()  # files are durable before their rows commit
        session.execute(insert(Image), rows)
    return {sha: image_id for sha, image_id in session.execute(query)}, len(rows)


def _image_row(facts: ImageFacts, rel: str) -> dict[str, object]:
    return {
        "sha256": facts.sha256, "path": rel, "format": facts.format, "width": facts.width,
        "height": facts.height, "size_bytes": facts.size_bytes,
        "phash": to_signed(facts.phash), "dhash": to_signed(facts.dhash),
        "is_canonical": True, "created_at": utcnow(),
    }


def _upsert_products(
    session: Session, store_id: int, entries: list[ImportEntry], report: ImportReport
) -> dict[str, int]:
    keys = [e.key for e in entries]
    in_store = (Product.store_id == store_id) & Product.url.in_(keys)
    known = set(session.scalars(select(Product.url).where(in_store)))
    now = utcnow()
    rows = [
        {"store_id": store_id, "url": e.key, "external_id": e.key[5:], "title": e.path.stem,
         "category_path": e.category, "first_seen": now, "last_seen": now}
        for e in {e.key: e for e in entries if e.key not in known}.values()
    ]
    if rows:
        session.execute(insert(Product), rows)
    if known:
        session.execute(
            update(Product).where(Product.store_id == store_id, Product.url.in_(known))
            .values(last_seen=now)
        )
    report.products_new += len(rows)
    report.products_unchanged += len(known)
    return dict(session.execute(select(Product.url, Product.id).where(in_store)).all())


def _store_labels(
    session: Session,
    store_id: int,
    good: list[tuple[ImportEntry, ImageFacts]],
    product_ids: dict[str, int],
    categories: dict[str, int],
) -> None:
    wanted: dict[int, int] = {}
    for entry, _facts in good:
        if entry.category is not None:
            if entry.category not in categories:
                categories[entry.category] = mapped_category(session, store_id, entry.category).id
            wanted[product_ids[entry.key]] = categories[entry.category]
    last: dict[int, int | None] = {}
    for pid, cid in session.execute(
        select(Label.product_id, Label.category_id)
        .where(Label.source == "store", Label.product_id.in_(wanted))
        .order_by(Label.id)
    ):
        last[pid] = cid
    rows = [
        {"product_id": pid, "category_id": cid, "source": "store", "created_at": utcnow()}
        for pid, cid in wanted.items()
        if last.get(pid) != cid
    ]
    if rows:
        session.execute(insert(Label), rows)


def _link(session: Session, pairs: list[tuple[int, int, str]]) -> int:
    """Attach images to products; returns how many links were new."""
    query = select(ProductImage.product_id, ProductImage.image_id).where(
        ProductImage.product_id.in_({p for p, _i, _u in pairs})
    )
    known: set[tuple[int, int]] = {(p, i) for p, i in session.execute(query)}
    rows = []
    for product_id, image_id, url in pairs:
        if (product_id, image_id) not in known:
            known.add((product_id, image_id))
            rows.append({"product_id": product_id, "image_id": image_id, "source_url": url,
                         "position": 0})
    if rows:
        session.execute(insert(ProductImage), rows)
    return len(rows)


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
