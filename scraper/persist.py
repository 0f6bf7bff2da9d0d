"""Plain functions that put one crawled product into the catalog (no Scrapy here).

The pipelines are thin wrappers around `save_product`, which does everything for one item in
ONE transaction: upsert the product, append the store label, store/hash/link its images and
remember every image URL in `image_sources`, so a later crawl can skip or revalidate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.errors import ImageRejected
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.ingest import (
    find_source,
    get_or_create_store,
    ingest_image,
    link_image,
    record_source,
    upsert_product,
)
from catalog.labels import set_store_label
from catalog.models import CrawlRun, Image, ImageSource, utcnow
from catalog.store import ImageStore
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

    Safe to run in several threads at once; ingest_image later finds each file in place. A crash
    in between leaves at worst an orphan file, which `slashcat doctor` removes.
    """
    check_images(images, limits)
    for image in images:
        body, facts = image.body, image.facts
        if image.state == "fetched" and body is not None and isinstance(facts, ImageFacts):
            store.put(body, facts.ext, facts.sha256)


# --------------------------------------------------------------------------- saving


def save_product(catalog: Catalog, store_id: int, product: ProductData,
                 images: list[FetchedImage], limits: Limits) -> SaveOutcome:
    """Upsert a product with its label and images, all in one transaction."""
    check_images(images, limits)
    with catalog.session(write=True) as session:
        row, status = upsert_product(session, store_id, product.url, **product.fields())
        set_store_label(session, row, product.category_path)
        outcome = SaveOutcome(row.id, status)
        for position, image in enumerate(images):
            save_image(session, catalog, row.id, position, image, limits, outcome)
    return outcome


def save_image(session: Session, catalog: Catalog, product_id: int, position: int,
               image: FetchedImage, limits: Limits, outcome: SaveOutcome) -> None:
    if image.state in ("known", "not-modified"):
        source = find_source(session, image.url)
        if source is not None and source.image_id is not None:
            stored = session.get(Image, source.image_id)
            if stored is not None and not stored.rejected_reason:
                link_image(session, product_id, stored.id, image.url, position)
            if image.state == "not-modified":
                record_source(session, image.url, source.image_id, 304,
                              image.etag or source.etag,
                              image.last_modified or source.last_modified)
        outcome.images_known += 1
        return
    if image.state == "failed" or image.body is None:
        reason = image.error or f"http-{image.status}"
        record_source(session, image.url, None, image.status, error=reason[:300])
        if is_permanent_failure(image.status, image.error):
            outcome.rejections.append((image.url, reason))
        else:
            outcome.errors.append(f"image {image.url}: {reason}")
        return
    result = ingest_image(session, catalog.store, image.body, limits, facts=image.facts)
    record_source(session, image.url, result.image.id, image.status, image.etag,
                  image.last_modified, error=result.reason[:300] if result.reason else None)
    if result.status == "rejected":
        outcome.rejections.append((image.url, result.reason or "rejected"))
        return
    link_image(session, product_id, result.image.id, image.url, position)
    if result.status == "new":
        outcome.images_new += 1
    else:
        outcome.images_duplicate += 1


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
