"""Visible fallbacks, product-page decision, platforms and bad input, on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scraper.extract import extract_page, parse_document
from scraper.extraction.platforms import detect_platform, woocommerce_products
from scraper.extraction.price import read_price

PAGES = Path(__file__).parent / "pages"
URL = "https://shop.example/p/apron"


def read(name: str) -> bytes:
    return (PAGES / name).read_bytes()


def test_visible_only_product_page() -> None:
    p = extract_page(read("visible_only.html"), URL).product
    assert p is not None
    assert p.title == "Linen Apron Sage"
    assert p.price == 29.0 and p.currency == "USD"  # not the promo, the old or a related price
    assert p.external_id == "LA-2041-S"
    assert p.image_urls[0] == "https://shop.example/img/apron-2000.jpg"  # zoom variant first
    assert "https://shop.example/img/apron-back-600.jpg" in p.image_urls
    joined = " ".join(p.image_urls)
    for junk in ("logo", "pixel", "paypal", "facebook", "mitt"):
        assert junk not in joined
    assert p.field_sources["title"] == "visible" and p.field_sources["price"] == "visible"
    assert p.category_path is not None and "Textiles" in p.category_path


@pytest.mark.parametrize("name", ["listing.html", "blog.html", "cart.html", "home.html"])
def test_non_product_pages_give_no_product(name: str) -> None:
    assert extract_page(read(name), URL).product is None


def test_listing_next_page_from_numbered_pagination() -> None:
    page = extract_page(read("listing.html"), "https://shop.example/aprons?page=2")
    assert page.links.next_page == "https://shop.example/aprons?page=3"


def test_next_page_rel_and_data_href() -> None:
    html = b'<html><body><a rel="next" href="javascript:;" data-href="/c?p=4">x</a></body></html>'
    assert extract_page(html, "https://s.example/c?p=3").links.next_page == "https://s.example/c?p=4"
    last = b'<html><body><a href="/about">more about us</a><a href="/x">View more</a></body></html>'
    assert extract_page(last, "https://s.example/c").links.next_page is None
    more = b'<html><body><button data-url="/c?page=2">Load more</button></body></html>'
    assert extract_page(more, "https://s.example/c").links.next_page == "https://s.example/c?page=2"


def test_next_data_product() -> None:
    p = extract_page(read("next_data.html"), URL).product
    assert p is not None
    assert (p.title, p.price, p.currency, p.external_id) == ("Sencha Tin", 14.5, "EUR", "TEA-77")
    assert p.image_urls[0] == "https://cdn.example/tea-1.jpg"
    assert p.field_sources["title"] == "app-state"


def test_platform_detected_from_markup_not_url() -> None:
    assert detect_platform(parse_document(read("woocommerce_page.html"))) == "woocommerce"
    assert detect_platform(parse_document(b"<html><body>wp-json woocommerce</body></html>")) is None


def test_woocommerce_store_api() -> None:
    body = json.dumps([{
        "id": 5, "name": "Mug", "sku": "MUG-1", "permalink": "https://w.example/product/mug/",
        "prices": {"price": "1299", "currency_code": "GBP", "currency_minor_unit": 2},
        "images": [{"src": "https://w.example/mug.jpg"}], "categories": [{"name": "Kitchen"}],
        "is_in_stock": True,
    }, {"no": "permalink"}])
    [mug] = woocommerce_products(body, "https://w.example")
    assert (mug.title, mug.price, mug.currency, mug.external_id) == ("Mug", 12.99, "GBP", "MUG-1")
    assert mug.image_urls == ["https://w.example/mug.jpg"] and mug.availability == "InStock"
    assert woocommerce_products(b"<html>not json</html>", "https://w.example") == []


@pytest.mark.parametrize(("text", "amount", "currency"), [
    ("1.299,00 €", 1299.0, "EUR"), ("From $9", 9.0, "USD"), ("$0.00", 0.0, "USD"),
    ("$10 - $20", 10.0, "USD"), ("Call for price", None, None), ("", None, None),
])
def test_prices(text: str, amount: float | None, currency: str | None) -> None:
    assert read_price(text) == (amount, currency)


def test_bad_input_does_not_crash() -> None:
    nested = b"<html><body>" + b"<div>" * 5000 + b"<h1>Deep</h1>" + b"</div>" * 10 + b"</body>"
    extract_page(nested, URL)
    big = b"<html><body><h1>Big</h1>" + b"<p>filler text</p>" * 300_000 + b"</body></html>"
    assert len(big) > 5_000_000
    extract_page(big, URL)
    state = {"props": {"items": [{"x": "y" * 1000} for _ in range(10_000)]}}
    huge = ('<html><body><script id="__NEXT_DATA__" type="application/json">'
            + json.dumps(state) + "</script></body></html>").encode()
    assert len(huge) > 10_000_000
    assert extract_page(huge, URL).product is None


def test_jsonld_with_comments_trailing_commas_and_entities() -> None:
    html = (b'<html><head><script type="application/ld+json">{/* c */ "@type": "Product",'
            b' "name": "Caf&eacute; Mug", "sku": "CM-1", "image": "/m.jpg",'
            b' "offers": {"price": "8.00", "priceCurrency": "USD",},}</script></head>'
            b'<body></body></html>')
    p = extract_page(html, URL).product
    assert p is not None and p.external_id == "CM-1" and p.price == 8.0
    assert p.title == "Café Mug"
    escaped = (b'<html><head><script type="application/ld+json">{&quot;@type&quot;: &quot;Product'
               b'&quot;, &quot;name&quot;: &quot;Tin&quot;, &quot;image&quot;: &quot;/t.jpg&quot;}'
               b'</script></head></html>')
    tin = extract_page(escaped, URL).product
    assert tin is not None and tin.title == "Tin"


@pytest.mark.parametrize(("encoding", "declared", "title"), [
    ("cp1252", "cp1252", "Café crème brûlée"),
    ("shift_jis", "shift_jis", "緑茶の缶"),
    ("cp1252", "utf-8", "Café crème brûlée"),  # declared wrongly
    ("shift_jis", "iso-8859-1", "静岡県産の煎茶、とても美味しいお茶です"),  # declared wrongly
    ("utf-8", "windows-1252", "Crème fraîche"),  # declared wrongly
])
def test_legacy_encodings(encoding: str, declared: str, title: str) -> None:
    # A real page's worth of text: a guess needs more than a title to go on.
    about = "静岡県産の煎茶です。毎朝お湯を注ぐだけで、香りの良いお茶が楽しめます。" * 4 \
        if encoding == "shift_jis" else "Fresh from the farm. " * 4
    lang = "ja" if encoding == "shift_jis" else "fr"
    html = (f'<html lang="{lang}"><head><meta charset="{declared}"><title>{title}</title></head>'
            f'<body><h1>{title}</h1><p>{about}</p><span class="price">$5.00</span>'
            '<form class="add-to-cart"><button>Add to cart</button></form>'
            '<img src="/a.jpg" width="400" height="400"></body></html>').encode(encoding)
    p = extract_page(html, URL).product
    assert p is not None and p.title == title


def test_xml_declared_xhtml_page() -> None:
    html = ('<?xml version="1.0" encoding="utf-8"?><html><head><script type="application/ld+json">'
            '{"@type": "Product", "name": "Jar", "image": "/j.jpg"}</script></head></html>')
    p = extract_page(html.encode(), URL).product
    assert p is not None and p.title == "Jar"


def test_magento_markup() -> None:
    p = extract_page(read("magento.html"), "https://m.example/joust-duffle-bag.html").product
    assert p is not None
    assert (p.title, p.price, p.external_id) == ("Joust Duffle Bag", 34.0, "24-MB01")
    assert p.image_urls[:2] == ["https://m.example/media/mb01-full.jpg",
                                "https://m.example/media/mb01-back-full.jpg"]  # main first
    assert p.field_sources["price"] == "magento"


def test_bigcommerce_markup() -> None:
    p = extract_page(read("bigcommerce.html"), "https://b.example/goo/").product
    assert p is not None
    assert (p.title, p.price, p.currency, p.external_id) == (
        "Amazing Self-Siphoning Goo", 10.95, "USD", "GB100")
    assert p.image_urls[0] == "https://cdn11.bigcommerce.com/s-abc/images/goo-1280.jpg"


def test_nuxt_state_product() -> None:
    p = extract_page(read("nuxt.html"), URL).product
    assert p is not None
    assert (p.title, p.price, p.external_id) == ("Oak Board", 42.0, "NX-9")
    assert p.image_urls == ["https://cdn.example/oak.jpg"]


def test_product_group_keeps_all_variant_images() -> None:
    html = b"""<html><head><script type="application/ld+json">{"@type": "ProductGroup",
      "name": "Tee", "productGroupID": "T1", "image": "/tee.jpg", "hasVariant": [
      {"@type": "Product", "sku": "T1-R", "image": "/tee-red.jpg",
       "offers": {"price": "15", "priceCurrency": "EUR"}},
      {"@type": "Product", "sku": "T1-B", "image": "/tee-blue.jpg"}]}</script></head></html>"""
    p = extract_page(html, URL).product
    assert p is not None and p.external_id == "T1" and p.price == 15.0
    assert p.image_urls[:3] == ["https://shop.example/tee.jpg", "https://shop.example/tee-red.jpg",
                                "https://shop.example/tee-blue.jpg"]


def test_classified_ad_with_price_in_heading_is_a_product() -> None:
    # No markup, no cart, og:type=article: the price inside the page heading says "one item
    # for sale" (classified ads, marketplace listings).
    p = extract_page(read("classified_ad.html"), URL).product
    assert p is not None
    assert p.title == "Oak bookshelf, 5 shelves"
    assert p.price == 120.0
    assert p.image_urls[0] == "https://ads.example/img/oak-shelf-600x450.jpg"


def product_with_titles(name: str, page_title: str, h1: str = "") -> str:
    return f"""<html><head><title>{page_title}</title>
<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "Product",
 "name": "{name}", "image": "https://shop.example/img/box.jpg",
 "offers": {{"@type": "Offer", "price": "51.95", "priceCurrency": "USD"}}}}</script>
</head><body><h1>{h1 or name}</h1></body></html>"""


@pytest.mark.parametrize(("name", "page_title", "h1", "title"), [
    # the page title names the product more fully (size dropped from the markup)
    ("Gold Gift Box, Ivory Ribbon", "Gold Gift Box 36 pc, Ivory Ribbon | Chocolatier",
     "", "Gold Gift Box 36 pc, Ivory Ribbon"),
    # the heading's lead-in is not part of the name
    ("Details about Electric Massage Chair Recliner", "Electric Massage Chair Recliner | Mart",
     '<span class="hdn">Details about</span> Electric Massage Chair Recliner',
     "Electric Massage Chair Recliner"),
    # a visible lead-in is part of the name
    ("Amazing Self-Siphoning Goo", "Self-Siphoning Goo - Science Store", "",
     "Amazing Self-Siphoning Goo"),
    # an SEO title that does not start like the name, or lacks its words, does not win
    ("Linen Apron Sage", "Buy Linen Apron Sage online | Shop", "", "Linen Apron Sage"),
    ("Linen Apron Sage", "Linen Apron | Shop", "", "Linen Apron Sage"),
])
def test_page_title_fuller_than_markup_name(name: str, page_title: str, h1: str,
                                           title: str) -> None:
    p = extract_page(product_with_titles(name, page_title, h1), URL).product
    assert p is not None and p.title == title


def test_sale_price_over_standard_price_in_the_same_offer() -> None:
    html = """<html><body><div itemscope itemtype="http://schema.org/Product">
<h1 itemprop="name">Merino Cardigan</h1><img itemprop="image" src="/c.jpg">
<div itemprop="offers" itemscope itemtype="http://schema.org/Offer">
<span class="price-standard" itemprop="priceCurrency" content="USD">$</span>
<span class="price-standard" itemprop="price">39.90</span>
<span class="price-sales" itemprop="priceCurrency" content="USD">$</span>
<span class="price-sales" itemprop="price">19.90</span></div></div></body></html>"""
    p = extract_page(html, URL).product
    assert p is not None and p.price == 19.9 and p.field_sources["price"] == "visible"


def test_shown_price_over_a_stale_meta_price_inside_it() -> None:
    html = """<html><head><script type="application/ld+json">{"@type": "Product",
 "name": "Soba Tee", "image": "/t.jpg", "offers": {"price": "25.00", "priceCurrency": "USD"}}
</script></head><body><h1>Soba Tee</h1><span id="listing-price">$28.50
<meta itemprop="price" content="25.00"></span></body></html>"""
    p = extract_page(html, URL).product
    assert p is not None and p.price == 28.5
    # agreeing markup is kept as it is
    p = extract_page(html.replace("$28.50", "$25.00"), URL).product
    assert p is not None and p.price == 25.0 and p.field_sources["price"] == "jsonld"


@pytest.mark.parametrize("base", ["https://shop.example/p/apron", "http://a.b:8000/c/d?x=1#f",
                                  "https://x.y"])
def test_fast_absolute_urls_equal_urljoin(base: str) -> None:
    from urllib.parse import urldefrag, urljoin

    from scraper.extraction.urls import absolute

    for link in ["/a", "/a#b", "http://q/r#s", "https://q/r?", "/a/../b", "//cdn/x.jpg",
                 "x.jpg", "?page=2", "#top", "/a?b=c#d", "/é/ü", "http://Q/R/./s", "/a/."]:
        assert absolute(base, link) == urldefrag(urljoin(base, link))[0]


def test_bad_input_still_gives_the_right_values() -> None:
    # a 10 MB __NEXT_DATA__ that carries the product: read, not dropped
    state = json.loads(read("next_data.html").decode().split(
        'type="application/json">', 1)[1].split("</script>", 1)[0])
    state["props"]["pageProps"]["reviews"] = [{"x": "y" * 1000} for _ in range(10_000)]
    huge = read("next_data.html").decode().replace(
        read("next_data.html").decode().split('type="application/json">', 1)[1].split(
            "</script>", 1)[0], json.dumps(state)).encode()
    assert len(huge) > 10_000_000
    p = extract_page(huge, URL).product
    # over the app-state size cap the product may go unread, but never read wrong
    assert p is None or (p.title, p.price) == ("Sencha Tin", 14.5)
    # a 5 MB product page: the product still found, right
    big = read("visible_only.html").replace(
        b"</body>", b"<p>filler text</p>" * 300_000 + b"</body>")
    assert len(big) > 5_000_000
    p = extract_page(big, URL).product
    assert p is not None and (p.title, p.price) == ("Linen Apron Sage", 29.0)
    # malformed HTML: unclosed tags, stray closers, an unterminated attribute
    broken = (b'<html><head><title>Tin | Shop</title><body><body></span><div><h1>Tin Can</div>'
              b'<p><span class="price">$3.50</span><img src="/tin.jpg" width="400" height="400">'
              b'<form class="add-to-cart"><button>Add to cart</button></form>'
              b'<a href="/x title="oops">x</a></body>')
    p = extract_page(broken, URL).product
    assert p is not None and (p.title, p.price) == ("Tin Can", 3.5)


@pytest.mark.parametrize(("shown", "amount", "currency"), [
    ("1.299,00 €", 1299.0, "EUR"), ("From $9", 9.0, "USD"), ("$0.00", 0.0, "USD"),
    ("$38.17 - $48.27", 38.17, "USD"),
])
def test_tricky_prices_on_a_page(shown: str, amount: float, currency: str) -> None:
    html = (f'<html><body><h1>Tin Can</h1><span class="price">{shown}</span>'
            '<img src="/tin.jpg" width="400" height="400">'
            '<form class="add-to-cart"><button>Add to cart</button></form></body></html>')
    p = extract_page(html, URL).product
    assert p is not None and (p.price, p.currency) == (amount, currency)
