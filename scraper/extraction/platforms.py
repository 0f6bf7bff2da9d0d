"""The platforms shops run on, detected from the page itself (never from the URL alone), and
their own product data: WooCommerce's public Store API, Next.js/Nuxt embedded app state.

Pure functions: a parsed page or a response body in, ProductData out. PRODUCT_APIS names each
platform's own product listing API (Shopify's /products.json, WooCommerce's Store API), which the
spider pages through once a page shows the platform."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

APP_STATE_MAX = 20_000_000  # characters of embedded JSON we are willing to read
SCRIPT_MARKERS = (  # (platform, text in a script's src, type or first 2,000 characters)
    ("shopify", "cdn.shopify.com"), ("shopify", "Shopify.theme"),
    ("woocommerce", "/plugins/woocommerce/"), ("woocommerce", "wc_add_to_cart_params"),
    ("magento", "text/x-magento-init"), ("magento", "Mage.Cookies"), ("magento", "/mage/"),
    ("bigcommerce", "bigcommerce.com"), ("bigcommerce", "BCData"),
)


def detect_platform(doc: Any) -> str | None:
    """The shop software the page was made with, from its markup (one pass over the scripts;
    this runs on every crawled page)."""
    generator = " ".join(doc.xpath('//meta[@name="generator"]/@content')).lower()
    body_class = " ".join(doc.xpath("/html/body/@class")).lower()
    if "woocommerce" in generator or "woocommerce" in body_class:
        return "woocommerce"
    if "magento" in generator:
        return "magento"
    for script in doc.iter("script"):
        text = " ".join((script.get("src") or "", script.get("type") or "",
                         (script.text or "")[:2000]))
        for name, marker in SCRIPT_MARKERS:
            if marker in text:
                return name
    links = " ".join(doc.xpath("//head/link/@href"))
    if "cdn.shopify.com" in links:
        return "shopify"
    return "woocommerce" if "/plugins/woocommerce/" in links else None


def woocommerce_products(body: bytes | str, base: str) -> list[Any]:
    """Products from one page of the Store API (/wp-json/wc/store/v1/products); [] if the body
    is not that format. Prices come in minor units with their currency's decimals."""
    from scraper.extract import absolute_unique
    from scraper.extraction.model import ProductData, stamp
    from scraper.extraction.structured import text_of

    out = []
    for item in json_items(body, None):
        if not item.get("permalink"):
            continue
        prices = item.get("prices") if isinstance(item.get("prices"), dict) else {}
        images = [i.get("src") for i in item.get("images") or [] if isinstance(i, dict)]
        categories = [c.get("name") for c in item.get("categories") or []
                      if isinstance(c, dict) and c.get("name")]
        product = ProductData(
            url=urljoin(base, str(item["permalink"])),
            title=text_of(item.get("name")),
            external_id=text_of(item.get("sku")) or text_of(item.get("id")),
            price=minor_units(prices.get("price"), prices.get("currency_minor_unit")),
            currency=text_of(prices.get("currency_code")),
            category_path=categories[0] if categories else None,
            image_urls=absolute_unique([i for i in images if isinstance(i, str)], base),
            sources=["woocommerce"],
        )
        product.availability = ("InStock" if item.get("is_in_stock") else "OutOfStock") \
            if "is_in_stock" in item else None
        stamp(product, "woocommerce")
        out.append(product)
    return out


def shopify_products(body: bytes | str, base: str) -> list[Any]:
    """Products from a Shopify store's /products.json; [] if it is not that format."""
    from catalog.categories import normalise_path
    from scraper.extract import absolute_unique
    from scraper.extraction.model import ProductData
    from scraper.extraction.structured import parse_price, text_of

    out = []
    for item in json_items(body, "products"):
        if not item.get("handle"):
            continue
        variants = [v for v in item.get("variants") or [] if isinstance(v, dict)]
        first = variants[0] if variants else {}
        images = [i.get("src") for i in item.get("images") or [] if isinstance(i, dict)]
        out.append(ProductData(
            url=urljoin(base, f"/products/{item['handle']}"),
            title=text_of(item.get("title")),
            external_id=text_of(first.get("sku")) or text_of(item.get("id")),
            brand=text_of(item.get("vendor")),
            price=parse_price(first.get("price")),
            currency=None,
            category_path=normalise_path(item.get("product_type") or None),
            image_urls=absolute_unique([i for i in images if isinstance(i, str)], base),
            sources=["shopify"],
        ))
    return out


def json_items(body: bytes | str, key: str | None) -> list[dict[str, Any]]:
    """The objects of a JSON API's product list (under `key`, or the top-level list)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data.get(key) if key and isinstance(data, dict) else data
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def minor_units(value: Any, decimals: Any) -> float | None:
    """"1299" with 2 decimals -> 12.99; anything else -> None."""
    if not isinstance(value, str | int) or not str(value).isdigit():
        return None
    places = int(decimals) if isinstance(decimals, int) and 0 <= decimals <= 4 else 2
    return int(value) / 10 ** places


def app_state(doc: Any) -> Any:
    """The JSON of __NEXT_DATA__ (or a window.__NUXT__ literal in JSON form); None if absent,
    too big or not JSON."""
    for script in doc.xpath('//script[@id="__NEXT_DATA__"] | //script[contains(text(),'
                            ' "window.__NUXT__")]'):
        text = script.text or ""
        if len(text) > APP_STATE_MAX:
            return None
        if script.get("id") != "__NEXT_DATA__":
            found = re.search(r"window\.__NUXT__\s*=\s*(\{.*\})\s*;?\s*$", text, re.S)
            if not found:
                continue
            text = found.group(1)
        try:
            return json.loads(text)
        except ValueError:
            continue
    return None


def product_like(value: Any) -> bool:
    """A name or title with a price and an image."""
    if not isinstance(value, dict):
        return False
    keys = {k.lower() for k in value}
    return bool((keys & {"name", "title"}) and (keys & {"price", "prices", "offers"}) and (
        keys & {"image", "images", "media", "featuredimage"}))


def find_product(state: Any, max_nodes: int = 100_000) -> dict[str, Any] | None:
    """The shallowest object in app state that looks like a product, breadth first. Products
    that are two or more items of one list are a listing's (or "related" items), never the
    page's product. Bounded so a huge state cannot run away."""
    level = [state]
    seen = 0
    for _depth in range(13):
        deeper: list[Any] = []
        for value in level:
            seen += 1
            if seen > max_nodes:
                return None
            if isinstance(value, dict):
                if product_like(value):
                    return value
                deeper.extend(value.values())
            elif isinstance(value, list):
                items = value[:200]
                if sum(1 for item in items if product_like(item)) < 2:
                    deeper.extend(items)
        level = deeper
    return None


def app_state_product(doc: Any, url: str) -> Any:
    """A ProductData from Next.js/Nuxt state, or None."""
    from scraper.extraction.model import ProductData
    from scraper.extraction.structured import image_values, offer_price, parse_price, text_of

    node = find_product(app_state(doc))
    if node is None:
        return None
    product = ProductData(url=url, sources=["app-state"])
    product.title = text_of(node.get("name") or node.get("title"))
    price = node.get("price") if "price" in node else node.get("prices")
    if isinstance(price, dict):
        product.price = parse_price(price.get("amount") or price.get("value") or price.get(
            "price"))
        product.currency = text_of(price.get("currency") or price.get("currencyCode"))
    elif "offers" in node:
        product.price, product.currency = offer_price(node.get("offers"))
    else:
        product.price = parse_price(price)
    product.external_id = text_of(node.get("sku")) or text_of(node.get("id"))
    images = node.get("images") or node.get("image") or node.get("media") or []
    product.image_urls = image_values(images) or [
        i.get("src") for i in images if isinstance(i, dict) and isinstance(i.get("src"), str)]
    return product


def platform_product(doc: Any, platform: str | None, url: str) -> Any:
    """Magento 2 or BigCommerce (Stencil) product-page markup, or None elsewhere (their
    product-only markers: Magento's add-to-cart form, BigCommerce's productView)."""
    if platform == "magento" and doc.xpath('boolean(//form[@id="product_addtocart_form"])'):
        return magento_product(doc, url)
    if platform == "bigcommerce" and doc.xpath(
            'boolean(//*[contains(concat(" ", @class, " "), " productView ")])'):
        return bigcommerce_product(doc, url)
    return None


def magento_product(doc: Any, url: str) -> Any:
    from scraper.extraction.model import ProductData

    product = ProductData(url=url, sources=["magento"])
    product.title = first(doc, '//h1[contains(@class, "page-title")]//*[@data-ui-id='
                               '"page-title-wrapper"] | //h1[contains(@class, "page-title")]')
    amount = first(doc, '//*[@data-price-type="finalPrice"]/@data-price-amount')
    product.price = float(amount) if amount and re.fullmatch(r"\d+(\.\d+)?", amount) else None
    product.external_id = first(doc, '//*[contains(@class, "product attribute sku")]'
                                     '//*[contains(@class, "value")]') or first(
        doc, '//form[@id="product_addtocart_form"]/@data-product-sku')
    product.image_urls = magento_gallery(doc)
    return product


def magento_gallery(doc: Any) -> list[str]:
    """The gallery widget's images from text/x-magento-init JSON, the main one first."""
    for script in doc.xpath('//script[@type="text/x-magento-init"]'):
        text = script.text or ""
        if "mage/gallery/gallery" not in text or len(text) > APP_STATE_MAX:
            continue
        try:
            config = json.loads(text)
        except ValueError:
            continue
        for widget in config.values() if isinstance(config, dict) else []:
            gallery = widget.get("mage/gallery/gallery") if isinstance(widget, dict) else None
            items = gallery.get("data") if isinstance(gallery, dict) else None
            if isinstance(items, list):
                items = [i for i in items if isinstance(i, dict)]
                items.sort(key=lambda i: not i.get("isMain"))
                return [str(i.get("full") or i.get("img")) for i in items
                        if i.get("full") or i.get("img")]
    return []


def bigcommerce_product(doc: Any, url: str) -> Any:
    from scraper.extraction.model import ProductData
    from scraper.extraction.price import read_price

    product = ProductData(url=url, sources=["bigcommerce"])
    product.title = first(doc, '//h1[contains(@class, "productView-title")]')
    product.price, product.currency = read_price(first(
        doc, '//*[@data-product-price-without-tax] | //*[@data-product-price-with-tax]'))
    product.external_id = first(doc, "//*[@data-product-sku]")
    product.image_urls = [u for u in doc.xpath(
        '//*[contains(@class, "productView-image")]/@data-zoom-image'
        ' | //*[contains(@class, "productView-thumbnail-link")]/@data-image-gallery-zoom-image-url'
    ) if u.strip()]
    return product


def first(doc: Any, xpath: str) -> str | None:
    for value in doc.xpath(xpath):
        text = " ".join(str(value if isinstance(value, str) else value.text_content()).split())
        if text:
            return text
    return None


@dataclass(frozen=True)
class ProductApi:
    path: str  # with {size} and {page}
    page_size: int
    parse: Callable[[bytes | str, str], list[Any]]


PRODUCT_APIS = {
    "shopify": ProductApi("/products.json?limit={size}&page={page}", 250, shopify_products),
    "woocommerce": ProductApi("/wp-json/wc/store/v1/products?per_page={size}&page={page}", 100,
                              woocommerce_products),
}
