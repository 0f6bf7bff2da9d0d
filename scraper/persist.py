"""Plain functions that put crawled products into the catalog (no Scrapy here).

The pipelines are thin wrappers around `save_products`, which does everything for a batch of
items in ONE transaction: upsert the products, append the store labels, store/link their images
and remember every image URL in `image_sources`, so a later crawl can skip or revalidate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db import Catalog, is_connection_lost, retry_locked, safe_url
from catalog.errors import ImageRejected
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.ingest import (
    RejectedBytes,
    SourceRecord,
    StoredImage,
    get_or_create_store,
    insert_links,
    record_sources,
    store_images,
    upsert_products,
)
from catalog.labels import set_store_labels
from catalog.models import CrawlRun, Image, ImageSource, utcnow
from catalog.store import ImageStore, sha256_hex
from scraper.errors import CatalogLost
from scraper.extract import ProductData
from scraper.report import CrawlReport

FetchState = Literal["fetched", "known", "not-modified", "failed"]


@dataclass
class FetchedImage:
    """The result of asking for one image URL."""

    url: str
    state: FetchState
    status: int | None = None
    body: bytes | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None  # why it failed, e.g. "http-404", "blocked-address", "timeout"
    facts: ImageFacts | ImageRejected | None = None  # filled by check_images()


@dataclass
class SaveOutcome:
    product_id: int
    product: str  # new | updated | unchanged
    images_new: int = 0
    images_duplicate: int = 0
    images_known: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def apply(self, report: CrawlReport) -> None:
        report.add(**{f"products_{self.product}": 1}, images_new=self.images_new,
                   images_duplicate=self.images_duplicate, images_known=self.images_known)
        for url, reason in self.rejections:
            report.rejected(url, reason)
        for message in self.errors:
            report.error(message)


# --------------------------------------------------------------------------- decisions


# Refusals on our side (the address guard, off-site redirects, robots.txt): final, like a 4xx.
REFUSALS = ("blocked-address", "offsite", "robots-disallowed")


def is_permanent_failure(status: int | None, error: str | None = None) -> bool:
    """A 4xx answer or a refusal will not change on a retry; a 5xx or a timeout might."""
    return (status is not None and 400 <= status < 500) or error in REFUSALS


def skip_or_revalidate(source: ImageSource | None, revalidate_after: timedelta | None
                       ) -> tuple[bool, dict[str, str]]:
    """Decide what to do with an image URL seen before.

    Returns (skip, headers): skip it entirely if it was fetched (or refused for good) within
    `revalidate_after` (None: never revalidate); else ask again with If-None-Match /
    If-Modified-Since, so an unchanged image costs a 304 and no bytes.
    """
    if source is None:
        return False, {}
    settled = source.image_id is not None or is_permanent_failure(source.status, source.error)
    if not settled:
        return False, {}  # a transient failure last time: try again
    fresh = revalidate_after is None or utcnow() - source.fetched_at < revalidate_after
    if fresh:
        return True, {}
    headers = {}
    if source.image_id is not None and source.etag:
        headers["If-None-Match"] = source.etag
    if source.image_id is not None and source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    return False, headers


def known_sources(catalog: Catalog, urls: list[str]) -> dict[str, ImageSource]:
    if not urls:
        return {}
    with catalog.session() as session:
        rows = session.scalars(select(ImageSource).where(ImageSource.url.in_(urls))).all()
        return {row.url: row for row in rows}


def all_source_urls(catalog: Catalog) -> set[str]:
    """Every image URL the catalog has met (one query, so unknown URLs need no lookup)."""
    with catalog.session() as session:
        return set(session.scalars(select(ImageSource.url)))


def check_images(images: list[FetchedImage], limits: Limits) -> None:
    """Validate and hash fetched bytes (the slow part) before the write transaction opens."""
    for image in images:
        body = image.body  # read once: another item sharing this URL may clear it when stored
        if image.state == "fetched" and body is not None and image.facts is None:
            try:
                image.facts = inspect_image(body, limits)
            except ImageRejected as exc:
                image.facts = exc


def prepare_images(store: ImageStore, images: list[FetchedImage], limits: Limits) -> None:
    """Check the bytes and write good files durably, outside the (single) writer's transaction.

    Safe to run in several threads at once; the batch writer (fetched_facts) later finds each
    file in place. A crash in between leaves at worst an orphan file, which `slashcat doctor`
    removes.
    """
    check_images(images, limits)
    for image in images:
        body, facts = image.body, image.facts
        if image.state == "fetched" and body is not None and isinstance(facts, ImageFacts):
            store.put(body, facts.ext, facts.sha256)


# --------------------------------------------------------------------------- saving

Item = tuple[ProductData, list[FetchedImage]]
Result = SaveOutcome | str  # a str: why that item was not saved


def save_product(catalog: Catalog, store_id: int, product: ProductData,
                 images: list[FetchedImage], limits: Limits) -> SaveOutcome:
    """Upsert a product with its label and images, all in one transaction."""
    return save_products(catalog, store_id, [(product, images)], limits)[0]


def save_products(catalog: Catalog, store_id: int, items: list[Item], limits: Limits,
                  categories: dict[str, int] | None = None) -> list[SaveOutcome]:
    """Upsert many products with their labels and images in ONE transaction, in a few
    set-based statements (catalog.ingest's batch form), not a handful per product.

    `categories` caches the store's path -> category id across calls; it learns only what
    committed.
    """
    for _product, images in items:
        check_images(images, limits)
    learnt = dict(categories or {})
    with catalog.session(write=True) as session:
        outcomes = write_products(session, catalog.store, store_id, items, learnt)
    if categories is not None:
        categories.update(learnt)
    return outcomes


def save_batch(catalog: Catalog, store_id: int, items: list[Item], limits: Limits,
               categories: dict[str, int] | None = None) -> list[Result]:
    """save_products, retried while SQLite is busy or the server connection is being restored;
    if the batch still fails, each item on its own, so one bad item loses only itself. Raises
    CatalogLost (the crawl stops) when the catalog's server stays out of reach."""
    try:
        return list(retry_locked(save_products, catalog, store_id, items, limits, categories))
    except Exception as exc:
        if is_connection_lost(exc):  # for good: each item alone would only wait again
            raise CatalogLost(f"lost the connection to the catalog at "
                              f"{safe_url(catalog.settings.db_url)}") from exc
        if len(items) == 1:
            return [f"{type(exc).__name__}: {str(exc)[:200]}"]
    results: list[Result] = []
    for item in items:
        results += save_batch(catalog, store_id, [item], limits, categories)
    return results


def write_products(session: Session, image_store: ImageStore, store_id: int, items: list[Item],
                   categories: dict[str, int]) -> list[SaveOutcome]:
    products = upsert_products(session, store_id, {p.url: p.fields() for p, _ in items})
    paths = {products[p.url][0]: p.category_path for p, _ in items
             if p.category_path is not None}
    set_store_labels(session, store_id, paths, categories)
    shas = {id(image): image_sha(image) for _, images in items for image in images
            if image.state == "fetched" and image.body is not None}
    stored = store_images(session, image_store, fetched_facts(image_store, items, shas))
    known = known_images(session, [image.url for _, images in items for image in images
                                   if image.state in ("known", "not-modified")])
    batch = _Batch(stored, known, shas)
    outcomes = []
    for product, images in items:
        product_id, status = products[product.url]
        outcome = SaveOutcome(product_id, status)
        for position, image in enumerate(images):
            batch.add(product_id, position, image, outcome)
        outcomes.append(outcome)
    record_sources(session, batch.sources)
    insert_links(session, batch.links)
    return outcomes


def image_sha(image: FetchedImage) -> str:
    facts = image.facts
    return facts.sha256 if isinstance(facts, ImageFacts) else sha256_hex(image.body or b"")


def fetched_facts(image_store: ImageStore, items: list[Item], shas: dict[int, str]
                  ) -> dict[str, ImageFacts | RejectedBytes]:
    """What to store of each fetched image, by sha256; the good ones' files are made sure of
    (prepare_images wrote them already on the crawl's path: then this only touches them)."""
    wanted: dict[str, ImageFacts | RejectedBytes] = {}
    for _product, images in items:
        for image in images:
            sha = shas.get(id(image))
            if sha is None or sha in wanted:
                continue
            if isinstance(image.facts, ImageFacts):
                image_store.put(image.body or b"", image.facts.ext, sha)
                wanted[sha] = image.facts
            else:
                wanted[sha] = RejectedBytes(len(image.body or b""), str(image.facts))
    return wanted


@dataclass(frozen=True)
class KnownImage:
    """An image URL met by an earlier crawl (or batch), and what it led to."""

    image_id: int | None
    etag: str | None
    last_modified: str | None
    rejected: bool


def known_images(session: Session, urls: list[str]) -> dict[str, KnownImage]:
    if not urls:
        return {}
    query = (select(ImageSource.url, ImageSource.image_id, ImageSource.etag,
                    ImageSource.last_modified, Image.rejected_reason)
             .outerjoin(Image, Image.id == ImageSource.image_id)
             .where(ImageSource.url.in_(set(urls))))
    return {url: KnownImage(image_id, etag, modified, bool(reason))
            for url, image_id, etag, modified, reason in session.execute(query)}


@dataclass
class _Batch:
    """The rows one batch adds besides products and images: sources and links."""

    stored: dict[str, StoredImage]
    known: dict[str, KnownImage]
    shas: dict[int, str]
    sources: list[SourceRecord] = field(default_factory=list)
    links: list[tuple[int, int, str | None, int]] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)  # shas counted new (once per batch)

    def add(self, product_id: int, position: int, image: FetchedImage,
            outcome: SaveOutcome) -> None:
        if image.state in ("known", "not-modified"):
            self._known(product_id, position, image)
            outcome.images_known += 1
            return
        sha = self.shas.get(id(image))
        if sha is None:  # failed, or no body
            failure = image.error or f"http-{image.status}"
            self.sources.append(SourceRecord(image.url, None, image.status, error=failure[:300]))
            if is_permanent_failure(image.status, image.error):
                outcome.rejections.append((image.url, failure))
            else:
                outcome.errors.append(f"image {image.url}: {failure}")
            return
        stored = self.stored[sha]
        reason: str | None = stored.rejected_reason
        if reason and isinstance(image.facts, ImageRejected):
            reason = str(image.facts)  # in full (the row keeps 200 characters)
        self.sources.append(SourceRecord(image.url, stored.id, image.status, image.etag,
                                         image.last_modified, reason[:300] if reason else None))
        if reason:
            outcome.rejections.append((image.url, reason))
            return
        self.links.append((product_id, stored.id, image.url, position))
        if stored.new and sha not in self.counted:
            self.counted.add(sha)
            outcome.images_new += 1
        else:
            outcome.images_duplicate += 1

    def _known(self, product_id: int, position: int, image: FetchedImage) -> None:
        source = self.known.get(image.url)
        if source is None or source.image_id is None:
            return
        if not source.rejected:
            self.links.append((product_id, source.image_id, image.url, position))
        if image.state == "not-modified":
            self.sources.append(SourceRecord(
                image.url, source.image_id, 304, image.etag or source.etag,
                image.last_modified or source.last_modified))


# --------------------------------------------------------------------------- crawl runs


def start_run(catalog: Catalog, store_name: str, base_url: str,
              settings: dict[str, Any]) -> tuple[int, int]:
    """The store (created if new) and a fresh `crawl_runs` row; returns their ids."""
    with catalog.session(write=True) as session:
        store = get_or_create_store(session, store_name, base_url)
        run = CrawlRun(store_id=store.id, kind="crawl", settings=settings, status="running")
        session.add(run)
        session.flush()
        return store.id, run.id


def finish_run(catalog: Catalog, run_id: int, report: CrawlReport, status: str) -> None:
    """Write the counters and the final status of a run."""
    with catalog.session() as session:
        run = session.get_one(CrawlRun, run_id)
        counters = report.counters()
        for name in ("pages", "products_new", "products_updated", "images_new",
                     "images_duplicate", "images_rejected", "errors"):
            setattr(run, name, counters[name])
        run.settings = {**(run.settings or {}), "extra_counters": {
            k: counters[k] for k in ("products_unchanged", "images_known", "blocked")}}
        run.status = status
        run.finished_at = utcnow()
