"""Plain functions that put stores, products and image bytes into the catalog (no Scrapy here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.dedupe import to_signed
from catalog.errors import ImageRejected
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.models import Image, ImageSource, Product, ProductImage, Store, utcnow
from catalog.store import ImageStore, sha256_hex

ImageStatus = Literal["new", "duplicate", "rejected"]
ProductStatus = Literal["new", "updated", "unchanged"]
PRODUCT_FIELDS = ("external_id", "title", "brand", "price", "currency", "category_path",
                  "field_sources")


@dataclass(frozen=True)
class ImageOutcome:
    status: ImageStatus
    image: Image
    reason: str | None = None


def get_or_create_store(session: Session, name: str, base_url: str) -> Store:
    store = session.scalar(select(Store).where(Store.name == name))
    if store is None:
        store = Store(name=name, base_url=base_url)
        session.add(store)
        session.flush()
    return store


def upsert_product(
    session: Session, store_id: int, url: str, **fields: Any
) -> tuple[Product, ProductStatus]:
    """Insert or update a product by (store, url); `last_seen` always moves forward."""
    unknown = set(fields) - set(PRODUCT_FIELDS)
    if unknown:
        raise TypeError(f"unknown product fields: {sorted(unknown)}")
    product = session.scalar(
        select(Product).where(Product.store_id == store_id, Product.url == url)
    )
    now = utcnow()
    if product is None:
        product = Product(store_id=store_id, url=url, first_seen=now, last_seen=now, **fields)
        session.add(product)
        session.flush()
        return product, "new"
    changed = False
    for key, value in fields.items():
        if value is not None and getattr(product, key) != value:
            setattr(product, key, value)
            changed = True
    product.last_seen = now
    return product, "updated" if changed else "unchanged"


def ingest_image(
    session: Session,
    store: ImageStore,
    data: bytes,
    limits: Limits = Limits(),
    facts: ImageFacts | ImageRejected | None = None,
) -> ImageOutcome:
    """Store image bytes once. Bad bytes get a row with the reason and no file.

    The file is written before the row, so a crash leaves at worst an orphan file,
    which `slashcat doctor` removes. `facts` may be precomputed in another process.
    """
    sha = facts.sha256 if isinstance(facts, ImageFacts) else sha256_hex(data)
    existing = session.scalar(select(Image).where(Image.sha256 == sha))
    if existing is not None:
        if existing.rejected_reason:
            return ImageOutcome("rejected", existing, existing.rejected_reason)
        return ImageOutcome("duplicate", existing)
    if facts is None:
        try:
            facts = inspect_image(data, limits)
        except ImageRejected as exc:
            facts = exc
    if isinstance(facts, ImageRejected):
        image = Image(sha256=sha, size_bytes=len(data), rejected_reason=str(facts)[:200])
        session.add(image)
        session.flush()
        return ImageOutcome("rejected", image, str(facts))
    rel = store.put(data, facts.ext, sha)
    image = Image(
        sha256=sha,
        path=rel,
        format=facts.format,
        width=facts.width,
        height=facts.height,
        size_bytes=facts.size_bytes,
        phash=to_signed(facts.phash),
        dhash=to_signed(facts.dhash),
    )
    session.add(image)
    session.flush()
    return ImageOutcome("new", image)


def link_image(
    session: Session, product_id: int, image_id: int, source_url: str | None, position: int = 0
) -> bool:
    """Attach an image to a product; False if it was attached already."""
    found = session.scalar(
        select(ProductImage).where(
            ProductImage.product_id == product_id, ProductImage.image_id == image_id
        )
    )
    if found is not None:
        return False
    session.add(
        ProductImage(
            product_id=product_id, image_id=image_id, source_url=source_url, position=position
        )
    )
    session.flush()
    return True


def record_source(
    session: Session,
    url: str,
    image_id: int | None,
    status: int | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    error: str | None = None,
) -> ImageSource:
    """Remember where an image came from, so a later crawl can skip or revalidate it."""
    source = session.scalar(select(ImageSource).where(ImageSource.url == url))
    if source is None:
        source = ImageSource(url=url)
        session.add(source)
    source.image_id = image_id
    source.status = status
    source.etag = etag
    source.last_modified = last_modified
    source.error = error
    source.fetched_at = utcnow()
    session.flush()
    return source


def find_source(session: Session, url: str) -> ImageSource | None:
    return session.scalar(select(ImageSource).where(ImageSource.url == url))
