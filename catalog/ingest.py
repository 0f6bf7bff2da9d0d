"""Plain functions that put stores, products and image bytes into the catalog (no Scrapy here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

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
    image_ids = _insert_images(session, image_store, [i.facts for i in items], outcome)
    product_ids = _insert_products(session, store_id, items, outcome)
    paths = {
        product_ids[i.url]: i.fields["category_path"]
        for i in items
        if i.fields.get("category_path") is not None
    }
    set_store_labels(session, store_id, paths, category_ids)
    pairs = [
        (product_ids[i.url], image_ids[i.facts.sha256], i.source_url or i.url) for i in items
    ]
    outcome.links_new = _insert_links(session, pairs)
    return outcome


def _insert_images(
    session: Session, image_store: ImageStore, facts: list[ImageFacts], outcome: BatchOutcome
) -> dict[str, int]:
    by_sha = {f.sha256: f for f in facts}
    query = select(Image.sha256, Image.id).where(Image.sha256.in_(by_sha))
    known = {sha for sha, _id in session.execute(query)}
    now = utcnow()
    rows = [
        {
            "sha256": sha, "path": image_store.relpath(sha, f.ext), "format": f.format,
            "width": f.width, "height": f.height, "size_bytes": f.size_bytes,
            "phash": to_signed(f.phash), "dhash": to_signed(f.dhash),
            "is_canonical": True, "created_at": now,
        }
        for sha, f in by_sha.items()
        if sha not in known
    ]
    if rows:
        image_store.sync()  # files are durable before their rows commit
        session.execute(insert(Image), rows)
    outcome.images_new += len(rows)
    return {sha: image_id for sha, image_id in session.execute(query)}


def _insert_products(
    session: Session, store_id: int, items: list[BatchItem], outcome: BatchOutcome
) -> dict[str, int]:
    in_store = (Product.store_id == store_id) & Product.url.in_([i.url for i in items])
    known = set(session.scalars(select(Product.url).where(in_store)))
    now = utcnow()
    new = {i.url: i for i in items if i.url not in known}
    rows = [
        {"store_id": store_id, "url": url, "first_seen": now, "last_seen": now,
         **{k: i.fields.get(k) for k in PRODUCT_FIELDS}}
        for url, i in new.items()
    ]
    if rows:
        session.execute(insert(Product), rows)
    if known:
        session.execute(
            update(Product).where(Product.store_id == store_id, Product.url.in_(known))
            .values(last_seen=now)
        )
    outcome.products_new += len(rows)
    outcome.products_unchanged += len(known)
    return dict(session.execute(select(Product.url, Product.id).where(in_store)).all())


def _insert_links(session: Session, pairs: list[tuple[int, int, str]]) -> int:
    """Attach images to products (product id, image id, source url); returns the new links."""
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
