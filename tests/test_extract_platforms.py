"""The default product-page markup of common shop platforms and marketplaces, one small
fixture each (written from their public themes, not copied pages), and the same platforms'
listing, blog and cart pages, which must give no product."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.extract import extract_page

PAGES = Path(__file__).parent / "pages"
URL = "https://shop.example/p/item"


def product(name: str):  # type: ignore[no-untyped-def]
    return extract_page((PAGES / name).read_bytes(), URL).product


# file, title, main image, price, currency, SKU
PRODUCTS = [
    ("prestashop.html", "Hummingbird printed t-shirt",  # a label "Reference", no markup
     "https://ps.example/2-large_default/hummingbird-printed-t-shirt.jpg", 19.12, "EUR",
     "demo_1-HB"),
    ("shopware6.html", "Hauptprodukt, frei konfigurierbar",
     "https://sw.example/media/a3/22/75/1615890290/hauptprodukt.jpg", 19.99, "EUR",
     "SWDEMO10001"),
    ("opencart.html", 'Apple Cinema 30"',  # the link's big image; a price with no class
     "https://oc.example/image/cache/catalog/demo/apple_cinema_30-500x500.jpg", 110.0, "USD",
     "AC30-HD2560"),
    ("wix.html", "Ceramic Pour-Over Set",  # og:title without the shop's name
     "https://static.wixstatic.com/media/6a1b2c_9f8e7d6c5b4a4f3e9d8c7b6a5f4e3d2c~mv2.jpg/v1/"
     "fill/w_1000,h_1000,al_c,q_85/6a1b2c_9f8e7d6c5b4a4f3e9d8c7b6a5f4e3d2c~mv2.jpg",
     68.0, "USD", "CPO-0012"),
    ("squarespace.html", "Waxed Canvas Tote",
     "http://static1.squarespace.com/static/5a1b2c3d4e5f6a7b8c9d0e1f/5a1b2c3d4e5f6a7b8c9d0e20/"
     "5a1b2c3d4e5f6a7b8c9d0e21/1614022301000/tote-olive.jpg?format=1500w", 85.0, "USD", None),
    ("shopify_dawn.html", "The Collection Snowboard: Hydrogen",  # no JSON-LD
     "http://dawn.example/cdn/shop/files/Main_0a40b01b-5021-48c1-80d1-aa8ab4876d3d.jpg"
     "?v=1700000000", 600.0, "USD", "HYD-SNOW-01"),
    ("woocommerce_product.html", "Hoodie with Logo",  # no JSON-LD; sale price; "logo" photo
     "https://woo.example/wp-content/uploads/2024/01/hoodie-with-logo-2.jpg", 42.0, "USD",
     "WH-4401"),
    ("magento_luma.html", "Radiant Tee",
     "https://luma.example/media/catalog/product/cache/9a8b7c/w/s/ws12-orange_main_1.jpg",
     22.0, "USD", "WS12"),
    ("amazon.html", "Kasa Smart Plug Mini, Works with Alexa, 4-Pack",  # data-a-dynamic-image
     "https://m.media-amazon.com/images/I/51UQyBbrSPL._AC_SL1000_.jpg", 24.99, "USD",
     "B091FXLMS8"),
    ("ebay.html", "Vintage Brass Desk Lamp Green Glass Shade Bankers Lamp",
     "https://i.ebayimg.com/images/g/3xYAAOSwq7ZlA1b2/s-l500.jpg", 64.5, "USD", "295812345678"),
    ("aliexpress_state.html", "Mini Bluetooth Speaker Portable Wireless 5.3 Bass Subwoofer",
     "https://ae01.alicdn.com/kf/S8f3a1b2c3d4e4f5a6b7c8d9e0f1a2b3cX.jpg", 12.87, "USD", None),
]


@pytest.mark.parametrize(("name", "title", "image", "price", "currency", "sku"), PRODUCTS)
def test_platform_product_page(name: str, title: str, image: str, price: float,
                               currency: str, sku: str | None) -> None:
    p = product(name)
    assert p is not None
    assert p.title == title
    assert p.image_urls[0] == image
    assert (p.price, p.currency) == (price, currency)
    assert p.external_id == sku


@pytest.mark.parametrize(("name", "not_images"), [
    ("amazon.html", ("61OTHERsmart",)),  # "Products related to this item" carousel
    ("opencart.html", ("iphone_1",)),  # <h3>Related Products</h3> before the cards
    ("ebay.html", ("OTHERlamp1",)),  # "Similar sponsored items"
    ("woocommerce_product.html", ("hoodie-2-324x324", "threadline-logo")),
    ("shopware6.html", (URL,)),  # itemprop=image on an img with data-src only
])
def test_other_products_and_chrome_images_left_out(name: str, not_images: tuple[str]) -> None:
    p = product(name)
    assert p is not None
    for url in p.image_urls:
        assert not any(bad in url for bad in not_images), url


@pytest.mark.parametrize("name", [
    "woocommerce_category.html",  # two product cards, each with its own cart button
    "shopify_collection.html",  # two cards with quick-add forms
    "amazon_search.html",  # search results with "Add to cart"
    "ebay_search.html",
    "woocommerce_blog.html",  # a post with an inline add-to-cart for one product
    "shopware_cart.html",  # a cart with an add-by-number form
    "home_featured_product.html",  # the site's root showing one featured product
])
def test_platform_non_product_pages(name: str) -> None:
    assert product(name) is None


def test_app_state_listing_is_not_a_product() -> None:
    # __NEXT_DATA__ of a category page: a list of product-shaped objects
    assert product("next_listing.html") is None


def test_app_state_product_beside_related_products() -> None:
    # the page's product, not the first of its "related" list, which comes first in the JSON
    p = product("next_related.html")
    assert p is not None
    assert (p.title, p.price, p.external_id) == ("Matcha Tin", 22.0, "TEA-78")
    assert p.image_urls == ["https://cdn.example/matcha.jpg", "https://cdn.example/matcha-2.jpg"]


def test_product_with_marked_up_related_cards_is_a_product() -> None:
    # main product + three related cards in microdata ("Customers also bought")
    p = product("microdata_related.html")
    assert p is not None
    assert (p.title, p.price, p.external_id) == ("Walnut Desk Organizer", 89.0, "WDO-100")


def test_two_marked_up_products_and_a_category_heading_are_a_listing() -> None:
    assert product("jsonld_two_cards.html") is None


def test_item_with_a_buy_form_and_its_price_in_a_side_panel() -> None:
    # No markup, no og, no cart: a dealer's vehicle page. Its first <h1> is a section's
    # ("Used Inventory"); the heading that repeats the page <title> names the item; the price
    # and a plain "buy" form sit in an <aside> of the main content.
    p = product("vehicle_inventory.html")
    assert p is not None
    assert (p.title, p.price, p.currency) == ("Model T Touring 1915 VIN 12345TR", 24900.0, "USD")
    assert p.image_urls == ["https://shop.example/photos/12345TR-side-1920.jpg"]


def test_sidebar_outside_main_is_still_chrome() -> None:
    # a post whose site sidebar sells something: its price and "Buy" are not the page's
    assert product("blog_sidebar_shop.html") is None


def test_of_several_marked_up_products_the_one_the_heading_names() -> None:
    # an upsell's JSON-LD block comes before the page's own product
    p = product("jsonld_related_first.html")
    assert p is not None
    assert (p.title, p.price, p.external_id) == ("Walnut Desk Organizer", 89.0, "WDO-100")
    assert p.image_urls[0] == "https://woodline.example/img/organizer-1200.jpg"


def test_currency_and_sku_the_markup_leaves_out() -> None:
    # JSON-LD gives the amount alone: the currency is the one shown with the same amount;
    # no SKU label: the variant picker's data-sku (not the related product's)
    p = product("jsonld_amount_only.html")
    assert p is not None
    assert (p.price, p.currency, p.external_id) == (49.9, "EUR", "TK-0800-SW")
    assert p.field_sources["currency"] == "visible"


def test_related_products_quick_add_buttons_do_not_make_a_listing() -> None:
    # four related products, each with its own "Add to cart", under the page's product
    page = (PAGES / "woocommerce_product.html").read_text()
    card = page.split('<ul class="products columns-3">', 1)[1].split("</ul>", 1)[0]
    page = page.replace(card, card * 4)
    p = extract_page(page, URL).product
    assert p is not None and (p.title, p.price) == ("Hoodie with Logo", 42.0)
