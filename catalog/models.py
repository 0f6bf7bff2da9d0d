"""The catalog's data model (SQLAlchemy 2.0, typed). Portable SQL only: SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LABEL_SOURCES = ("store", "human", "model-accepted")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class Store(Base):
    __tablename__ = "stores"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    base_url: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    products: Mapped[list[Product]] = relationship(back_populates="store")


class CrawlRun(Base):
    __tablename__ = "crawl_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="crawl")  # crawl | import
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20), default="running")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    products_new: Mapped[int] = mapped_column(Integer, default=0)
    products_updated: Mapped[int] = mapped_column(Integer, default=0)
    images_new: Mapped[int] = mapped_column(Integer, default=0)
    images_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    images_rejected: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("store_id", "url", name="uq_products_store_url"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    title: Mapped[str | None] = mapped_column(Text)
    brand: Mapped[str | None] = mapped_column(String(300))
    price: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(10))
    category_path: Mapped[str | None] = mapped_column(Text)  # the store's breadcrumb, "A > B > C"
    # schema.org availability as the page showed it: InStock, OutOfStock, PreOrder, ...
    availability: Mapped[str | None] = mapped_column(String(40))
    # Where each field was read: {"title": "jsonld", "price": "visible", "image": "og", ...}
    field_sources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    store: Mapped[Store] = relationship(back_populates="products")
    images: Mapped[list[ProductImage]] = relationship(
        back_populates="product", order_by="ProductImage.position"
    )


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str | None] = mapped_column(String(300))  # relative to <home>; None if rejected
    format: Mapped[str | None] = mapped_column(String(10))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    # 64-bit hashes stored as signed integers so they fit a portable BIGINT.
    phash: Mapped[int | None] = mapped_column(BigInteger, index=True)
    dhash: Mapped[int | None] = mapped_column(BigInteger)
    cluster_id: Mapped[int | None] = mapped_column(Integer, index=True)
    is_canonical: Mapped[bool] = mapped_column(Boolean, default=True)
    # The Hamming threshold dedupe last compared this image at; NULL: not compared yet.
    dedupe_threshold: Mapped[int | None] = mapped_column(Integer)
    rejected_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    products: Mapped[list[ProductImage]] = relationship(back_populates="image")


class ProductImage(Base):
    __tablename__ = "product_images"
    __table_args__ = (
        UniqueConstraint("product_id", "image_id", name="uq_product_images_pair"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    source_url: Mapped[str | None] = mapped_column(String(2000))
    position: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship(back_populates="images")
    image: Mapped[Image] = relationship(back_populates="products")


class ImageSource(Base):
    """A URL (or file) an image was fetched from, so a re-crawl need not fetch it again."""

    __tablename__ = "image_sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last fetch
    etag: Mapped[str | None] = mapped_column(String(300))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(String(300))
    fetched_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Category(Base):
    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(500), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))


class CategoryMapping(Base):
    """Maps a store's category path onto the catalog taxonomy."""

    __tablename__ = "category_mappings"
    __table_args__ = (
        UniqueConstraint("store_id", "store_path", name="uq_category_mappings_store_path"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    store_path: Mapped[str] = mapped_column(String(1000))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))


class Label(Base):
    """Append-only label history. The current label is derived (human > store > model-accepted)."""

    __tablename__ = "labels"
    __table_args__ = (
        CheckConstraint(
            "source IN ('store', 'human', 'model-accepted')", name="source_known"
        ),
        Index("ix_labels_product_source", "product_id", "source"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    source: Mapped[str] = mapped_column(String(20))
    author: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[float | None] = mapped_column(Float)
    retracts_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))  # an undo
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(100), unique=True)
    task: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    architecture: Mapped[str] = mapped_column(String(100))
    image_size: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list[Any]] = mapped_column(default=list)
    training_fingerprint: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    temperature: Mapped[float] = mapped_column(Float, default=1.0)
    path: Mapped[str] = mapped_column(String(1000))
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("product_id", "model_id", name="uq_predictions_product_model"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    confidence: Mapped[float] = mapped_column(Float, index=True)
    margin: Mapped[float] = mapped_column(Float)  # top-1 minus top-2 probability
    top_k: Mapped[list[Any]] = mapped_column(default=list)  # [[category, probability], ...]
    # a title-aware model's own guess from each input alone (None: the product had no title,
    # or the model reads pictures only): what review shows when title and picture disagree
    image_category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    image_confidence: Mapped[float | None] = mapped_column(Float)
    title_category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    title_confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SplitAssignment(Base):
    """The frozen train/val/test split of a task, decided per dedupe cluster."""

    __tablename__ = "split_assignments"
    __table_args__ = (UniqueConstraint("task", "image_id", name="uq_split_assignments_task_image"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(200), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    split: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
