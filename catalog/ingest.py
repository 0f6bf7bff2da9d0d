"""Plain functions that put stores, products and image bytes into the catalog (no Scrapy here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog.db import dialect_insert, insert_new
from catalog.dedupe import to_signed
from catalog.errors import ImageRejected
from catalog.images import ImageFacts, Limits, inspect_image
from catalog.labels import set_store_label, set_store_labels
from catalog.models import Image, ImageSource, Product, ProductImage, Store, utcnow
from catalog.store import ImageStore, sha256_hex

ImageStatus = Literal["new", "duplicate", "rejected"]
ProductStatus = Literal["new", "updated", "unchanged"]
PRODUCT_FIELDS = ("external_id", "title", "brand", "price", "currency", "category_path",
                  "availability", "field_sources")


@dataclass(frozen=True)
class ImageOutcome:
    status: ImageStatus
    image: Image
    reason: str | None = None


@dataclass(frozen=True)
class ItemOutcome:
    """What ingest_item did: the product, the image and whether they were new to each other."""

    product: Product
    product_status: ProductStatus
    image: ImageOutcome
    linked: bool  # False when the image was rejected or already attached


@dataclass(frozen=True)
class BatchItem:
    """One product with one image whose bytes are already in the image store (not yet synced)."""

    url: str
    facts: ImageFacts
    fields: dict[str, Any] = field(default_factory=dict)  # PRODUCT_FIELDS; the store label
    source_url: str | None = None  # of the image; the product's url if None


@dataclass
class BatchOutcome:
    products_new: int = 0
    products_unchanged: int = 0
    images_new: int = 0
    links_new: int = 0


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
    """Insert or update a product by (store, url); `last_seen` always moves forward.
    upsert_products' one-item form."""
    ((product_id, status),) = upsert_products(session, store_id, {url: fields}).values()
    # populate_existing: the batch form writes with Core statements, past the ORM's copy
    product = session.get(Product, product_id, populate_existing=True)
    assert product is not None
    return product, status


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
    known = session.scalar(select(Image.id).where(Image.sha256 == sha))
    if known is None:  # only unknown bytes are decoded
        if facts is None:
            try:
                facts = inspect_image(data, limits)
            except ImageRejected as exc:
                facts = exc
        checked = (RejectedBytes(len(data), str(facts)) if isinstance(facts, ImageRejected)
                   else facts)
        if isinstance(checked, ImageFacts):
            store.put(data, checked.ext, sha)
        stored = store_images(session, store, {sha: checked})[sha]
        known, new = stored.id, stored.new
    else:
        new = False
    image = session.get(Image, known)
    assert image is not None
    if image.rejected_reason:
        return ImageOutcome("rejected", image, image.rejected_reason)
    return ImageOutcome("new" if new else "duplicate", image)


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


def ingest_item(
    session: Session,
    image_store: ImageStore,
    store_id: int,
    url: str,
    data: bytes,
    source_url: str | None = None,
    limits: Limits = Limits(),
    position: int = 0,
    facts: ImageFacts | None = None,
    **fields: Any,
) -> ItemOutcome:
    """One product with one image: upsert the product, store the bytes, link them, record the
    store label (`category_path`). A rejected image still leaves the product. `facts`: the
    bytes already inspected by the caller (not decoded twice)."""
    product, product_status = upsert_product(session, store_id, url, **fields)
    image = ingest_image(session, image_store, data, limits, facts)
    linked = image.status != "rejected" and link_image(
        session, product.id, image.image.id, source_url, position
    )
    set_store_label(session, product, fields.get("category_path"))
    return ItemOutcome(product, product_status, image, linked)


def ingest_batch(
    session: Session,
    image_store: ImageStore,
    store_id: int,
    items: list[BatchItem],
    category_ids: dict[str, int] | None = None,
) -> BatchOutcome:
    """Many items in a few set-based queries (not a handful per item); ingest_item's twin.

    Files are synced before their rows are written. Existing products keep their fields and only
    move `last_seen`. `category_ids` caches the store's path -> category id across batches.
    """
    outcome = BatchOutcome()
    if not items:
        return outcome
    images = store_images(session, image_store, {i.facts.sha256: i.facts for i in items},
                          sync=True)
    outcome.images_new += sum(1 for stored in images.values() if stored.new)
    products = upsert_products(session, store_id, {i.url: i.fields for i in items},
                               update_fields=False)
    new = sum(1 for _id, status in products.values() if status == "new")
    outcome.products_new += new
    outcome.products_unchanged += len(products) - new
    paths = {
        products[i.url][0]: i.fields["category_path"]
        for i in items
        if i.fields.get("category_path") is not None
    }
    set_store_labels(session, store_id, paths, category_ids)
    links = [
        (products[i.url][0], images[i.facts.sha256].id, i.source_url or i.url, 0) for i in items
    ]
    outcome.links_new = insert_links(session, links)
    return outcome


# --------------------------------------------------------------------------- set-based parts
# Each takes many rows in a few statements. Inserts say ON CONFLICT DO NOTHING (SQLite and
# PostgreSQL both can): a concurrent writer that inserted the same key first (two crawl workers
# storing one image) makes ours a no-op, and the re-read that follows finds its row.


def upsert_products(
    session: Session, store_id: int, products: Mapping[str, Mapping[str, Any]],
    update_fields: bool = True,
) -> dict[str, tuple[int, ProductStatus]]:
    """Many products of one store by url ({url: fields}); upsert_product's batch form.

    New ones are inserted; known ones move `last_seen` and, with `update_fields`, take every
    field that is not None and differs. Returns {url: (id, new | updated | unchanged)}.
    """
    unknown = {k for fields in products.values() for k in fields} - set(PRODUCT_FIELDS)
    if unknown:
        raise TypeError(f"unknown product fields: {sorted(unknown)}")
    if not products:
        return {}
    columns = [getattr(Product, name) for name in PRODUCT_FIELDS]
    in_store = (Product.store_id == store_id) & Product.url.in_(list(products))
    now = utcnow()
    result: dict[str, tuple[int, ProductStatus]] = {}
    changes = []
    for row in session.execute(select(Product.id, Product.url, *columns).where(in_store)):
        changed = {
            key: value for key, value in products[row.url].items()
            if update_fields and value is not None and getattr(row, key) != value
        }
        result[row.url] = (row.id, "updated" if changed else "unchanged")
        if changed:
            changes.append({"id": row.id, **changed})
    if result:
        ids = [product_id for product_id, _status in result.values()]
        session.execute(update(Product).where(Product.id.in_(ids)).values(last_seen=now))
    if changes:
        session.execute(update(Product), changes)  # by primary key, grouped by columns set
    new = [url for url in products if url not in result]
    rows = [
        {"store_id": store_id, "url": url, "first_seen": now, "last_seen": now,
         **{k: products[url].get(k) for k in PRODUCT_FIELDS}}
        for url in new
    ]
    insert_new(session, Product, rows, ["store_id", "url"])
    if new:
        query = select(Product.url, Product.id).where(
            Product.store_id == store_id, Product.url.in_(new))
        result.update({url: (product_id, "new") for url, product_id in session.execute(query)})
    return result


@dataclass(frozen=True)
class RejectedBytes:
    """Bytes that are not a usable image: stored as a row with the reason, and no file."""

    size_bytes: int
    reason: str


@dataclass(frozen=True)
class StoredImage:
    id: int
    rejected_reason: str | None
    new: bool  # inserted by this call


def store_images(
    session: Session, image_store: ImageStore,
    images: Mapping[str, ImageFacts | RejectedBytes], sync: bool = False,
) -> dict[str, StoredImage]:
    """Rows for many images by sha256 ({sha: facts}); ingest_image is its one-item form.

    The files of good images must be in the store already: written durably, or, with `sync`,
    written and flushed here in one call before their rows.
    """
    if not images:
        return {}

    def read(shas: list[str]) -> dict[str, tuple[int, str | None]]:
        query = select(Image.sha256, Image.id, Image.rejected_reason).where(
            Image.sha256.in_(shas))
        return {sha: (image_id, reason) for sha, image_id, reason in session.execute(query)}

    known = read(list(images))
    now = utcnow()
    rows = [_image_row(image_store, sha, facts, now)
            for sha, facts in images.items() if sha not in known]
    if rows and sync:
        image_store.sync()  # files are durable before their rows commit
    insert_new(session, Image, rows, ["sha256"])
    added = read([row["sha256"] for row in rows]) if rows else {}
    stored = {sha: StoredImage(i, reason, False) for sha, (i, reason) in known.items()}
    stored.update({sha: StoredImage(i, reason, True) for sha, (i, reason) in added.items()})
    return stored


def _image_row(image_store: ImageStore, sha: str, facts: ImageFacts | RejectedBytes,
               now: datetime) -> dict[str, Any]:
    if isinstance(facts, RejectedBytes):
        return {"sha256": sha, "path": None, "format": None, "width": None, "height": None,
                "size_bytes": facts.size_bytes, "phash": None, "dhash": None,
                "rejected_reason": facts.reason[:200], "is_canonical": True, "created_at": now}
    return {"sha256": sha, "path": image_store.relpath(sha, facts.ext), "format": facts.format,
            "width": facts.width, "height": facts.height, "size_bytes": facts.size_bytes,
            "phash": to_signed(facts.phash), "dhash": to_signed(facts.dhash),
            "rejected_reason": None, "is_canonical": True, "created_at": now}


@dataclass(frozen=True)
class SourceRecord:
    """Where an image came from, so a later crawl can skip or revalidate it."""

    url: str
    image_id: int | None
    status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None


def record_sources(session: Session, records: list[SourceRecord]) -> None:
    """Insert or update `image_sources` rows by url (the last record of a url wins)."""
    by_url = {record.url: record for record in records}
    if not by_url:
        return
    now = utcnow()
    rows = [{**asdict(record), "fetched_at": now} for record in by_url.values()]
    statement = dialect_insert(session, ImageSource)
    statement = statement.on_conflict_do_update(
        index_elements=["url"],
        set_={name: statement.excluded[name] for name in rows[0] if name != "url"},
    )
    session.execute(statement, rows)


def insert_links(session: Session, links: Sequence[tuple[int, int, str | None, int]]) -> int:
    """Attach images to products ((product id, image id, source url, position), the first of a
    pair wins); returns how many links are new."""
    query = select(ProductImage.product_id, ProductImage.image_id).where(
        ProductImage.product_id.in_({p for p, _i, _u, _pos in links})
    )
    known: set[tuple[int, int]] = {(p, i) for p, i in session.execute(query)} if links else set()
    rows = []
    for product_id, image_id, url, position in links:
        if (product_id, image_id) not in known:
            known.add((product_id, image_id))
            rows.append({"product_id": product_id, "image_id": image_id, "source_url": url,
                         "position": position})
    insert_new(session, ProductImage, rows, ["product_id", "image_id"])
    return len(rows)
