"""Append-only labels and the rule that derives a product's current label."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, insert, select
from sqlalchemy.orm import Session

from catalog.categories import mapped_category, set_mapping
from catalog.errors import InvalidInput
from catalog.models import LABEL_SOURCES, Category, Label, Product, Store, utcnow

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


def is_live(sources: Iterable[str] = LABEL_SOURCES) -> ColumnElement[bool]:
    """A label from one of these sources that names a category and was not undone."""
    retracted = select(Label.retracts_id).where(Label.retracts_id.is_not(None))
    return and_(
        Label.source.in_(list(sources)), Label.category_id.is_not(None),
        Label.id.not_in(retracted),
    )


def outranking(source: str) -> tuple[str, ...]:
    """The sources whose labels take precedence over a label from `source`."""
    return tuple(s for s, rank in PRECEDENCE.items() if rank < PRECEDENCE[source])


def live_labels_query(*columns: Any, sources: Iterable[str] = LABEL_SOURCES) -> Select[Any]:
    """(product_id, source, category name, *columns) of live labels, by product then age."""
    return (
        select(Label.product_id, Label.source, Category.name, *columns)
        .join(Category, Category.id == Label.category_id)
        .where(is_live(sources))
        .order_by(Label.product_id, Label.id)
    )


def current_rows(rows: Iterable[Any]) -> Iterator[Any]:
    """Each product's current row from rows of live_labels_query: the precedence rule.

    Human > store > model-accepted; within a source the latest wins. Plain rows, not ORM
    objects, because building objects would cost an export most of its time.
    """
    best = None
    for row in rows:
        if best is not None and best[0] != row[0]:
            yield best
            best = None
        if best is None or PRECEDENCE[row[1]] <= PRECEDENCE[best[1]]:
            best = row
    if best is not None:
        yield best


def set_store_label(session: Session, product: Product, path: str | None) -> bool:
    """Record the store's category for a product if it differs from its last store label."""
    if path is None:
        return False
    return bool(set_store_labels(session, product.store_id, {product.id: path}))


def set_store_labels(
    session: Session,
    store_id: int,
    paths: Mapping[int, str],
    category_ids: dict[str, int] | None = None,
) -> int:
    """Store labels for many products of one store ({product id: store path}), in a few queries.

    A product gets a label only if its last store label names another category. `category_ids`
    caches the store's path -> category id across calls. Returns how many labels were added.
    """
    cache = {} if category_ids is None else category_ids
    wanted: dict[int, int] = {}
    for product_id, path in paths.items():
        if path not in cache:
            cache[path] = mapped_category(session, store_id, path).id
        wanted[product_id] = cache[path]
    last: dict[int, int | None] = {}
    for product_id, category_id in session.execute(
        select(Label.product_id, Label.category_id)
        .where(Label.source == "store", Label.product_id.in_(wanted))
        .order_by(Label.id)
    ):
        last[product_id] = category_id
    now = utcnow()
    rows = [
        {"product_id": pid, "category_id": cid, "source": "store", "created_at": now}
        for pid, cid in wanted.items()
        if last.get(pid) != cid
    ]
    if rows:
        session.execute(insert(Label), rows)
    return len(rows)


def current_labels(
    session: Session,
    product_ids: Iterable[int] | None = None,
    sources: Iterable[str] = LABEL_SOURCES,
) -> Iterator[CurrentLabel]:
    """Each product's current label (see current_rows), streamed in product order, one query."""
    query = live_labels_query(
        Label.category_id, Label.id, Label.confidence, Label.model_version, Label.created_at,
        sources=sources,
    )
    if product_ids is not None:
        query = query.where(Label.product_id.in_(list(product_ids)))
    for row in current_rows(session.execute(query).yield_per(2000)):
        pid, source, name, category_id, label_id, confidence, version, created = row
        yield CurrentLabel(pid, category_id, name, source, label_id, confidence, version, created)


def apply_mapping(
    session: Session, store_path: str, category_name: str, store_name: str | None = None
) -> int:
    """Map a store path onto a category and append new store labels; returns products relabelled."""
    store_id = None
    if store_name is not None:
        store_id = session.scalar(select(Store.id).where(Store.name == store_name))
        if store_id is None:
            raise InvalidInput(f"unknown store {store_name!r}")
    set_mapping(session, store_path, category_name, store_id)
    query = select(Product.store_id, Product.id).where(Product.category_path == store_path)
    if store_id is not None:
        query = query.where(Product.store_id == store_id)
    by_store: dict[int, dict[int, str]] = {}
    for sid, pid in session.execute(query):
        by_store.setdefault(sid, {})[pid] = store_path
    return sum(set_store_labels(session, sid, paths) for sid, paths in by_store.items())
