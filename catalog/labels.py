"""Append-only labels and the rule that derives a product's current label."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.categories import mapped_category
from catalog.errors import InvalidInput
from catalog.models import LABEL_SOURCES, Category, Label, Product

PRECEDENCE = {"human": 0, "store": 1, "model-accepted": 2}


@dataclass(frozen=True)
class CurrentLabel:
    product_id: int
    category_id: int
    category: str
    source: str
    label_id: int
    confidence: float | None
    model_version: str | None
    created_at: datetime


def add_label(
    session: Session,
    product_id: int,
    category_id: int | None,
    source: str,
    author: str | None = None,
    model_version: str | None = None,
    confidence: float | None = None,
    retracts_id: int | None = None,
) -> Label:
    if source not in LABEL_SOURCES:
        raise InvalidInput(f"unknown label source {source!r}")
    label = Label(
        product_id=product_id,
        category_id=category_id,
        source=source,
        author=author,
        model_version=model_version,
        confidence=confidence,
        retracts_id=retracts_id,
    )
    session.add(label)
    session.flush()
    return label


def retract(session: Session, label: Label, author: str | None = None) -> Label:
    """Undo a label by appending a retraction; history is never rewritten."""
    return add_label(session, label.product_id, None, label.source, author, retracts_id=label.id)


def set_store_label(session: Session, product: Product, path: str | None) -> Label | None:
    """Record the store's category for a product if it differs from its last store label."""
    if path is None:
        return None
    category = mapped_category(session, product.store_id, path)
    last = session.scalar(
        select(Label)
        .where(Label.product_id == product.id, Label.source == "store")
        .order_by(Label.id.desc())
        .limit(1)
    )
    if last is not None and last.category_id == category.id:
        return None
    return add_label(session, product.id, category.id, "store")


def current_labels(
    session: Session,
    product_ids: Iterable[int] | None = None,
    sources: Iterable[str] = LABEL_SOURCES,
) -> Iterator[CurrentLabel]:
    """Each product's current label: human > store > model-accepted, latest first, undo honoured.

    Streams in product order; one query, no query per product.
    """
    retracted = select(Label.retracts_id).where(Label.retracts_id.is_not(None))
    query = (
        select(Label, Category.name)
        .join(Category, Category.id == Label.category_id)
        .where(Label.source.in_(list(sources)), Label.id.not_in(retracted))
        .order_by(Label.product_id, Label.id)
    )
    if product_ids is not None:
        query = query.where(Label.product_id.in_(list(product_ids)))
    best: tuple[Label, str] | None = None
    for label, name in session.execute(query).yield_per(2000):
        if best is not None and best[0].product_id != label.product_id:
            yield _current(*best)
            best = None
        if best is None or PRECEDENCE[label.source] <= PRECEDENCE[best[0].source]:
            best = (label, name)
    if best is not None:
        yield _current(*best)


def _current(label: Label, name: str) -> CurrentLabel:
    assert label.category_id is not None
    return CurrentLabel(
        label.product_id,
        label.category_id,
        name,
        label.source,
        label.id,
        label.confidence,
        label.model_version,
        label.created_at,
    )


def apply_mapping(
    session: Session, store_path: str, category_name: str, store_name: str | None = None
) -> int:
    """Map a store path onto a category and append new store labels; returns products relabelled."""
    from catalog.categories import set_mapping
    from catalog.errors import InvalidInput as _Invalid
    from catalog.models import Store

    store_id = None
    if store_name is not None:
        store_id = session.scalar(select(Store.id).where(Store.name == store_name))
        if store_id is None:
            raise _Invalid(f"unknown store {store_name!r}")
    set_mapping(session, store_path, category_name, store_id)
    query = select(Product).where(Product.category_path == store_path)
    if store_id is not None:
        query = query.where(Product.store_id == store_id)
    return sum(set_store_label(session, p, store_path) is not None for p in session.scalars(query))
