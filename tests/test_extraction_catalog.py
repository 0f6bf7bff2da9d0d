"""What extraction reads reaches the catalog: availability with its field source."""

from __future__ import annotations

from sqlalchemy import select

from catalog.db import open_catalog
from catalog.ingest import get_or_create_store, upsert_product
from catalog.models import Product
from catalog.settings import Settings
from scraper.extract import extract_page

PAGE = """<html><head><title>Enamel Mug | Shop</title>
<meta property="og:image" content="https://shop.example/img/mug.jpg"></head><body>
<div itemscope itemtype="https://schema.org/Product"><h1 itemprop="name">Enamel Mug</h1>
<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
<span itemprop="price" content="14.50">$14.50</span>
<link itemprop="availability" href="https://schema.org/OutOfStock">Sold out</div></div>
</body></html>"""


def test_availability_is_stored_with_its_source(settings: Settings) -> None:
    product = extract_page(PAGE, "https://shop.example/p/mug").product
    assert product is not None and product.availability == "OutOfStock"
    with open_catalog(settings) as cat:
        with cat.session(write=True) as s:
            store = get_or_create_store(s, "shop", "https://shop.example/")
            upsert_product(s, store.id, product.url, **product.fields())
            s.commit()
        with cat.session() as s:
            row = s.scalars(select(Product)).one()
            assert row.availability == "OutOfStock"
            assert row.field_sources is not None and row.field_sources["availability"] in {
                "microdata", "visible"}
