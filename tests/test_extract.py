"""Extraction on saved HTML snippets, one per markup style (no network, no Scrapy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.extract import extract_page
from scraper.extraction.images import img_url, srcset_largest
from scraper.extraction.platforms import shopify_products
from scraper.extraction.structured import parse_jsonld_text, parse_price

SNIPPETS = Path(__file__).parent / "snippets"
URL = "https://shop.example/p/x"


def read(name: str) -> bytes:
    return (SNIPPETS / name).read_bytes()


def test_jsonld_product_with_breadcrumb_and_canonical() -> None:
    p = extract_page(read("jsonld_product.html"), URL).product
    assert p is not None
    assert p.url == "https://shop.example/products/blue-oxford-shirt"  # rel=canonical
    assert (p.title, p.external_id, p.brand) == ("Blue Oxford Shirt", "OX-123", "Acme")
    assert (p.price, p.currency) == (1299.5, "USD")
    # BreadcrumbList sorted by position, Home and the product itself left out.
    assert p.category_path == "Men > Shirts"
    # Structured images first (ImageObject resolved against the page), then og:image;
    # the header logo is not a product image.
    assert p.image_urls == [
        "https://shop.example/img/ox-1.jpg",
        "https://shop.example/img/ox-2.jpg",
        "https://shop.example/img/ox-og.jpg",
    ]
    assert p.sources == ["json-ld"]


def test_jsonld_graph_resolves_references() -> None:
    p = extract_page(read("jsonld_graph.html"), URL).product
    assert p is not None
    assert (p.title, p.external_id, p.brand) == ("Trail Runner 2", "TR2-44", "Acme Outdoor")
    assert (p.price, p.currency) == (89.9, "EUR")  # AggregateOffer lowPrice
    assert p.category_path == "Footwear > Running Shoes"
    assert p.image_urls == ["https://cdn.example/tr2.jpg"]


def test_jsonld_product_group_takes_variant_images_and_price() -> None:
    p = extract_page(read("jsonld_productgroup.html"), URL).product
    assert p is not None
    assert (p.title, p.external_id, p.brand) == ("Cotton Tee", "TEE-GRP-9", "Basics Co")
    assert (p.price, p.currency) == (15.0, "GBP")
    assert p.category_path == "Apparel > Topwear > Tshirts"
    assert p.image_urls == ["https://shop.example/img/tee-red.jpg",
                            "https://shop.example/img/tee-blue.jpg"]


def test_itemlist_listing_is_not_a_product_and_gives_links() -> None:
    page = extract_page(read("jsonld_itemlist.html"), "https://shop.example/c/shirts")
    assert page.product is None
    assert page.links.products == ["https://shop.example/p/one", "https://shop.example/p/two",
                                   "https://shop.example/p/three"]
    assert page.links.pagination == [
        "https://shop.example/c/shirts?page=2",  # rel=next and the numbered link, once
        "https://shop.example/c/shirts?page=3",
        "https://shop.example/c/shirts/more-items",  # a plain "Load more" link
    ]
    # Other pages: fragments dropped, mailto skipped; the spider filters other hosts.
    assert page.links.other == ["https://shop.example/c/shoes", "https://shop.example/p/four",
                                "https://other.example/p/x"]


def test_malformed_jsonld_block_does_not_stop_the_page() -> None:
    page = extract_page(read("jsonld_malformed.html"), URL)
    assert len(page.problems) == 1 and page.problems[0].startswith("malformed JSON-LD")
    p = page.product
    assert p is not None
    # The broken Product block is skipped; the lenient second block (a // comment and a
    # trailing comma) still gives the breadcrumb; OpenGraph gives the rest.
    assert (p.title, p.price, p.currency) == ("Leather Belt", 25.0, "EUR")
    assert p.category_path == "Accessories > Belts"
    assert p.image_urls == ["https://shop.example/img/belt.jpg"]


def test_microdata_product_and_breadcrumb() -> None:
    p = extract_page(read("microdata.html"), URL).product
    assert p is not None
    assert p.sources == ["microdata"]
    assert (p.title, p.external_id, p.brand) == ("Steel Watch", "W-77", "Timely")
    assert (p.price, p.currency) == (199.0, "CHF")
    assert p.category_path == "Accessories > Watches"
    assert p.image_urls == ["https://shop.example/img/watch-large.jpg"]


def test_rdfa_product() -> None:
    p = extract_page(read("rdfa.html"), URL).product
    assert p is not None
    assert p.sources == ["rdfa"]
    assert (p.title, p.external_id, p.brand, p.price, p.currency) == (
        "Silk Tie", "TIE-5", "Knotty", 45.0, "EUR")
    assert p.category_path == "Accessories > Ties"
    assert p.image_urls == ["https://shop.example/img/tie.jpg"]


def test_opengraph_only() -> None:
    p = extract_page(read("opengraph_only.html"), URL).product
    assert p is not None
    assert p.sources == ["opengraph"]
    assert (p.title, p.external_id, p.brand) == ("Canvas Tote", "TOTE-1", "Bagworks")
    assert (p.price, p.currency) == (39.9, "USD")
    # product:category outranks the visible breadcrumb (which says only "Bags").
    assert p.category_path == "Accessories > Bags > Totes"
    assert p.image_urls == ["https://shop.example/img/tote-1.jpg",
                            "https://shop.example/img/tote-2.jpg"]


def test_visible_breadcrumb_is_the_last_resort() -> None:
    p = extract_page(read("visible_breadcrumb.html"), URL).product
    assert p is not None
    assert p.category_path == "Accessories > Scarves"  # Home, "›" and the title left out
    assert p.price == 19.9  # "19,90"
    assert p.image_urls == ["https://shop.example/img/scarf.jpg"]  # the gallery <img>


def test_srcset_and_lazy_load_images() -> None:
    p = extract_page(read("lazy_images.html"), URL).product
    assert p is not None
    assert p.image_urls == [
        "https://shop.example/img/dj-1200.jpg",  # the largest srcset candidate
        "https://shop.example/img/dj-back.jpg",  # data-src behind a data: placeholder
        "https://shop.example/img/dj-side-2x.jpg",  # data-srcset, largest density
        "https://shop.example/img/dj-detail.jpg",  # data-original
        "https://shop.example/img/dj-pic.webp",  # <picture><source srcset>
        "https://shop.example/img/dj-pic.jpg",
    ]  # not: the header logo, the 1x1 pixel, related products, footer icons


def test_page_without_product_markup_is_not_a_product() -> None:
    html = b"<html><head><title>About us</title></head><body><h1>About</h1></body></html>"
    assert extract_page(html, URL).product is None
    assert extract_page(b"", URL).product is None


def test_shopify_products_json() -> None:
    products = shopify_products(read("shopify_products.json"), "https://shop.example/")
    assert [p.url for p in products] == ["https://shop.example/products/classic-hoodie",
                                         "https://shop.example/products/gift-card"]
    hoodie, card = products
    assert (hoodie.title, hoodie.external_id, hoodie.brand, hoodie.price) == (
        "Classic Hoodie", "HD-CL-S", "Northwind", 59.0)
    assert hoodie.category_path == "Sweatshirts"
    assert hoodie.image_urls == ["https://cdn.shopify.com/s/files/1/hoodie.jpg?v=1",
                                 "https://cdn.shopify.com/s/files/1/hoodie-back.jpg?v=1"]
    assert card.category_path is None and card.external_id == "6790" and card.image_urls == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"products": "x"}', b"{}"])
def test_shopify_other_json_is_not_products(body: bytes) -> None:
    assert shopify_products(body, "https://shop.example/") == []


@pytest.mark.parametrize(("raw", "expected"), [
    (12, 12.0), ("12.50", 12.5), ("$1,299.00", 1299.0), ("1.299,00 €", 1299.0),
    ("19,90", 19.9), ("1,299", 1299.0), ("free", None), (None, None), (True, None),
])
def test_parse_price(raw: object, expected: float | None) -> None:
    assert parse_price(raw) == expected


def test_srcset_largest() -> None:
    assert srcset_largest("a.jpg 300w, b.jpg 900w, c.jpg 600w") == "b.jpg"
    assert srcset_largest("a.jpg 1x, b.jpg 2x") == "b.jpg"
    assert srcset_largest("only.jpg") == "only.jpg"
    assert srcset_largest("") is None


def test_img_url_skips_data_uris() -> None:
    from lxml.html import fragment_fromstring

    img = fragment_fromstring('<img src="data:image/gif;base64,R0l=" data-lazy-src="/x.jpg">')
    assert img_url(img) == "/x.jpg"
    assert img_url(fragment_fromstring('<img src="data:image/gif;base64,R0l=">')) is None


def test_parse_jsonld_text_refuses_garbage() -> None:
    assert parse_jsonld_text('<!-- {"a": 1} -->') == {"a": 1}
    with pytest.raises(ValueError):
        parse_jsonld_text('{"@type": "Product", "name": "x",, ')
