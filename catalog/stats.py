"""Counts for `slashcat stats`, each one query."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.labels import current_labels
from catalog.models import Image, Model, Prediction, Product, Store
from catalog.models_registry import active_model


@dataclass(frozen=True)
class StoreStats:
    name: str
    base_url: str
    products: int


@dataclass(frozen=True)
class CatalogStats:
    stores: list[StoreStats]
    products: int
    images: int
    images_rejected: int
    labelled: int
    unlabelled: int
    labels_by_source: dict[str, int]
    duplicates: int
    clusters: int
    models: int
    active_model: str | None
    predictions: int


def catalog_stats(session: Session) -> CatalogStats:
    def count(query) -> int:
        return session.scalar(query) or 0

    per_store = session.execute(
        select(Store.name, Store.base_url, func.count(Product.id))
        .outerjoin(Product, Product.store_id == Store.id)
        .group_by(Store.id)
        .order_by(Store.name)
    ).all()
    products = count(select(func.count(Product.id)))
    by_source: dict[str, int] = {}
    for label in current_labels(session):
        by_source[label.source] = by_source.get(label.source, 0) + 1
    labelled = sum(by_source.values())
    good = Image.rejected_reason.is_(None)
    active = active_model(session)
    return CatalogStats(
        stores=[StoreStats(n, u, c) for n, u, c in per_store],
        products=products,
        images=count(select(func.count(Image.id)).where(good)),
        images_rejected=count(select(func.count(Image.id)).where(Image.rejected_reason.is_not(None))),
        labelled=labelled,
        unlabelled=products - labelled,
        labels_by_source=by_source,
        duplicates=count(select(func.count(Image.id)).where(good, Image.is_canonical.is_(False))),
        clusters=count(
            select(func.count(func.distinct(Image.cluster_id))).where(Image.cluster_id.is_not(None))
        ),
        models=count(select(func.count(Model.id))),
        active_model=active.version if active is not None else None,
        predictions=count(select(func.count(Prediction.id))),
    )
