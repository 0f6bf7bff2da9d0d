"""What extraction produces: one product's facts (with where each came from) and a page's links.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIELD_NAMES = ("title", "external_id", "brand", "price", "currency", "category_path",
               "availability")


@dataclass
class ProductData:
    """What a page says about one product; None means the page did not say."""

    url: str
    title: str | None = None
    external_id: str | None = None
    brand: str | None = None
    price: float | None = None
    currency: str | None = None
    category_path: str | None = None
    image_urls: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # which syntaxes contributed
    availability: str | None = None  # schema.org name: InStock, OutOfStock, ...
    # Where each field came from (jsonld, microdata, rdfa, og, visible, shopify, ...), kept in
    # the catalog so a user can see how much to trust it.
    field_sources: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The columns of catalog.ingest.upsert_product."""
        return {
            "external_id": self.external_id,
            "title": self.title,
            "brand": self.brand,
            "price": self.price,
            "currency": self.currency,
            "category_path": self.category_path,
            "availability": self.availability,
            "field_sources": dict(self.field_sources) or None,
        }


@dataclass
class PageLinks:
    products: list[str] = field(default_factory=list)  # from ItemList structured data
    pagination: list[str] = field(default_factory=list)  # rel=next, numbered pages, load more
    other: list[str] = field(default_factory=list)  # every other same-site page link
    next_page: str | None = None  # the page after this one in a listing, when there is one


@dataclass
class Page:
    product: ProductData | None
    links: PageLinks
    problems: list[str] = field(default_factory=list)  # e.g. a malformed JSON-LD block
    platform: str | None = None  # shopify, woocommerce, magento, bigcommerce (from the markup)


def merge(into: ProductData, other: ProductData | None) -> ProductData:
    """Fill the gaps of a more trusted reading with a less trusted one."""
    if other is None:
        return into
    for key in FIELD_NAMES:
        if getattr(into, key) is None and getattr(other, key) is not None:
            setattr(into, key, getattr(other, key))
            if key in other.field_sources:
                into.field_sources[key] = other.field_sources[key]
    if not into.image_urls and other.image_urls and "image" in other.field_sources:
        into.field_sources["image"] = other.field_sources["image"]
    into.image_urls += other.image_urls
    into.sources += [s for s in other.sources if s not in into.sources]
    return into


def missing(data: ProductData | None) -> bool:
    return data is None or any(
        v is None for v in (data.title, data.price, data.category_path)
    ) or not data.image_urls


def stamp(data: ProductData | None, source: str) -> ProductData | None:
    """Record `source` for every field this reading found."""
    if data is not None:
        for key in FIELD_NAMES:
            if getattr(data, key) is not None:
                data.field_sources.setdefault(key, source)
        if data.image_urls:
            data.field_sources.setdefault("image", source)
    return data
