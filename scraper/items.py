"""What the spider yields (a plain dataclass; Scrapy handles dataclass items)."""

from __future__ import annotations

from dataclasses import dataclass, field

from scraper.extract import ProductData
from scraper.persist import FetchedImage


@dataclass
class ProductItem:
    product: ProductData
    sitemap_images: list[str] = field(default_factory=list)  # image:loc hints for the page
    images: list[FetchedImage] = field(default_factory=list)  # filled by FetchImagesPipeline
