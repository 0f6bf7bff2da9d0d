"""Pure extraction: a page's HTML and URL in, product facts and links out (no Scrapy here).

Order of trust for every field: JSON-LD > microdata > RDFa > app state (Next.js/Nuxt) >
OpenGraph (scraper.extraction.structured, .platforms), then, field by field, what the page
shows (scraper.extraction.visible, .price, .images). Each field records where it came from.
A page is a product only on the signals together (is_product_page). The readers live in
scraper.extraction; this module orchestrates them and sorts the page's links.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from scraper.extraction.encoding import decode_html, without_xml_declaration
from scraper.extraction.images import (
    declared_images,
    gallery_images,
    junk_url,
    other_area_test,
)
from scraper.extraction.index import page_index
from scraper.extraction.model import (
    Page,
    PageLinks,
    ProductData,
    merge,
    missing,
    stamp,
)
from scraper.extraction.pagination import next_page
from scraper.extraction.platforms import app_state_product, detect_platform, platform_product
from scraper.extraction.price import shown_over_marked, visible_price
from scraper.extraction.structured import (
    PRODUCT_TYPES,
    by_id,
    deref,
    from_jsonld,
    from_opengraph,
    jsonld_breadcrumb,
    jsonld_nodes,
    microdata_nodes,
    opengraph,
    rdfa_nodes,
    same_name,
    text_of,
    types_of,
)
from scraper.extraction.urls import absolute
from scraper.extraction.visible import (
    availability,
    cart_buttons,
    fuller_title,
    labelled_id,
    main_heading,
    priced_heading,
    repeated_cards,
    visible_brand,
    visible_breadcrumb,
    visible_title,
    without_shop_name,
)

MAX_IMAGES = 12
PAGE_PARAM = re.compile(r"([?&](page|p|pg|start|offset)=\d+)|(/page/\d+/?$)", re.I)
MORE_TEXT = re.compile(r"^\s*(next|more|load more|show more|see more|older|›|»|>|→)\b", re.I)
SKIP_SUFFIXES = (
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".svg", ".ico", ".css", ".js", ".pdf",
    ".zip", ".gz", ".mp4", ".mp3", ".woff", ".woff2", ".ttf", ".xml", ".json", ".txt",
)
SKIP_PATH_WORDS = ("/cart", "/checkout", "/account", "/login", "/logout", "/register",
                   "/wishlist", "/search")


# --------------------------------------------------------------------------- parsing


def parse_document(html: str | bytes) -> Any:
    """An lxml HTML tree; bytes are decoded by scraper.extraction.encoding (pages that declare
    the wrong charset included)."""
    import lxml.html

    text = decode_html(html) if isinstance(html, bytes) else html
    text = without_xml_declaration(text)
    if not text.strip():
        text = "<html></html>"
    return lxml.html.document_fromstring(text)


def extract_page(html: str | bytes | Any, url: str) -> Page:
    """Everything we read from one HTML page: the product (if it is a product page) and links."""
    doc = html if hasattr(html, "xpath") else parse_document(html)
    base = base_url(doc, url)
    problems: list[str] = []
    jsonld = jsonld_nodes(doc, problems)
    platform = detect_platform(doc)
    product = extract_product_from(doc, base, url, jsonld, problems, platform)
    links = extract_links(doc, base, url, jsonld, listing=product is None)
    return Page(product, links, problems, platform)


def base_url(doc: Any, url: str) -> str:
    base = doc.find("head/base")
    href = (base.get("href") or "").strip() if base is not None else ""
    return urljoin(url, href) if href else url


def structured_readings(doc: Any, base: str, page_url: str, jsonld: list[dict[str, Any]],
                        problems: list[str], platform: str | None) -> list[ProductData | None]:
    """JSON-LD, then microdata, RDFa, app state and platform markup (Magento, BigCommerce)
    while fields are missing, then OpenGraph."""
    heading = functools.cache(lambda: main_heading(doc))
    readings = [stamp(from_jsonld(jsonld, page_url, heading), "jsonld")]
    if missing(readings[0]):
        readings.append(stamp(from_jsonld(microdata_nodes(doc, base, problems), page_url,
                                          heading), "microdata"))
        if readings[-1] is not None:
            readings[-1].sources = ["microdata"]
    if all(missing(r) for r in readings):
        readings.append(stamp(from_jsonld(rdfa_nodes(doc, base, problems), page_url), "rdfa"))
        if readings[-1] is not None:
            readings[-1].sources = ["rdfa"]
    if all(missing(r) for r in readings):
        readings.append(stamp(app_state_product(doc, page_url), "app-state"))
    if all(missing(r) for r in readings):
        readings.append(stamp(platform_product(doc, platform, page_url), platform or ""))
    readings.append(stamp(from_opengraph(opengraph(doc), page_url), "og"))
    return readings


def extract_product_from(doc: Any, base: str, url: str, jsonld: list[dict[str, Any]],
                         problems: list[str], platform: str | None) -> ProductData | None:
    page_url = canonical_url(doc, url)
    readings = structured_readings(doc, base, page_url, jsonld, problems, platform)
    found = [r for r in readings if r is not None]
    skip = other_area_test(doc)
    shown_price = functools.cache(lambda: visible_price(doc, skip))
    if not is_product_page(doc, found, jsonld, shown_price, skip, page_url):
        return None
    data = found[0] if found else ProductData(url=page_url)
    for other in found[1:]:
        merge(data, other)
    if readings[0] is None:  # no JSON-LD product, but its breadcrumb still outranks the rest
        data.category_path = jsonld_breadcrumb(jsonld, data.title) or data.category_path
    data.title = without_shop_name(doc, data.title) or data.title
    fill_from_page(doc, data, skip, shown_price)
    if data.field_sources.get("price") in {"jsonld", "microdata", "rdfa"}:
        shown = shown_over_marked(doc, skip)
        if shown:
            data.price, data.currency = shown[0], shown[1] or data.currency
            data.field_sources["price"] = "visible"
    fuller = fuller_title(doc, data.title)
    if fuller:
        data.title = fuller
        data.field_sources["title"] = "title"
    images = absolute_unique([u for u in data.image_urls if not junk_url(u, data.title)], base)
    # an img without src read as markup resolves to the page itself
    data.image_urls = [u for u in images if u not in {url, page_url, base}][:MAX_IMAGES]
    return data


def fill_from_page(doc: Any, data: ProductData, skip: Callable[[Any], bool],
                   shown_price: Callable[[], tuple[float | None, str | None]]) -> None:
    """Field by field, what the page shows where structured data said nothing."""
    def put(key: str, value: Any, source: str) -> None:
        if getattr(data, key) is None and value is not None:
            setattr(data, key, value)
            data.field_sources[key] = source

    if data.title is None:
        title, source = visible_title(doc)
        put("title", without_shop_name(doc, title) or title,
            "visible" if source in {"h1", "title"} else source or "visible")
    if data.price is None:
        amount, currency = shown_price()
        put("price", amount, "visible")
        put("currency", currency, "visible")
    elif data.currency is None:  # markup gave the amount alone: the shown price's currency
        amount, currency = shown_price()
        if amount is not None and abs(amount - data.price) < 0.005:
            put("currency", currency, "visible")
    if data.external_id is None:
        put("external_id", labelled_id(doc, skip), "visible")
    if data.brand is None:
        put("brand", visible_brand(doc), "visible")
    if data.availability is None:
        put("availability", availability(doc), "visible")
    if data.category_path is None:
        put("category_path", visible_breadcrumb(doc, data.title), "visible")
    declared = declared_images(doc, data.title)
    gallery = gallery_images(doc, data.title, skip)
    if not data.image_urls:
        data.field_sources["image"] = declared[0][0] if declared else "visible"
    data.image_urls += [u for _s, u in declared] + gallery


def is_product_page(doc: Any, found: list[ProductData], jsonld: list[dict[str, Any]],
                    shown_price: Callable[[], tuple[float | None, str | None]],
                    skip: Callable[[Any], bool], page_url: str) -> bool:
    """Signals together: Product markup or og:type=product; else a price with an add-to-cart
    form and one dominant title. Listings (several products marked up, none of them the
    page's heading) and blog, cart and home pages (the site's root, a featured product on
    it) are not products."""
    og_type = first_meta(doc, "og:type").lower()
    names = marked_product_names(doc, jsonld, skip)
    if len(names) >= 2 and og_type not in {"product", "og:product", "product.item"}:
        heading = main_heading(doc)
        return bool(found) and heading is not None and any(same_name(heading, n) for n in names)
    if found:
        return True
    if priced_heading(doc):  # a classified ad: no cart, its price inside its heading
        return shown_price()[0] is not None
    if og_type in {"article", "blog"} or urlsplit(page_url).path in {"", "/"}:
        return False
    if main_heading(doc) is None:
        return False
    price, _currency = shown_price()
    if price is None:
        return False
    buttons = cart_buttons(doc, skip)  # a home page has one per tile, a listing one per card
    return 1 <= len(buttons) <= 3 and not repeated_cards(buttons)


def marked_product_names(doc: Any, jsonld: list[dict[str, Any]],
                         skip: Callable[[Any], bool]) -> set[str]:
    """The distinct products the page marks up (microdata outside related-product areas and
    not nested in another product; JSON-LD products that are not another's variant)."""
    names: set[str] = set()
    for item in (e for e in page_index(doc).itemscopes
                 if "schema.org/Product" in (e.get("itemtype") or "")):
        if skip(item) or any(a.get("itemscope") is not None and "schema.org/Product" in (
                a.get("itemtype") or "") for a in item.iterancestors()):
            continue
        name = item.xpath('(.//*[@itemprop="name"])[1]')
        text = (name[0].get("content") or name[0].text_content()) if name else ""
        names.add(" ".join(text.split()).casefold() or f"#{len(names)}")
    variants = {str(deref(v, {}).get("@id")) for n in jsonld for v in (
        n.get("hasVariant") if isinstance(n.get("hasVariant"), list) else [])
        if isinstance(deref(v, {}), dict)}
    for node in jsonld:
        if not types_of(node) & PRODUCT_TYPES or "isVariantOf" in node or (
                str(node.get("@id")) in variants):
            continue
        names.add((text_of(node.get("name")) or "").casefold() or f"#{len(names)}")
    return names


def first_meta(doc: Any, key: str) -> str:
    return doc.xpath(f'string(//meta[@property="{key}" or @name="{key}"]/@content)').strip()


# --------------------------------------------------------------------------- images


def absolute_unique(urls: Iterable[str], base: str) -> list[str]:
    seen: dict[str, None] = {}
    for u in urls:
        full = absolute(base, u.strip())
        if full.startswith(("http://", "https://")):
            seen.setdefault(full, None)
    return list(seen)


# --------------------------------------------------------------------------- links


def canonical_url(doc: Any, url: str) -> str:
    """<link rel=canonical> when it stays on the same host, else the fetched URL."""
    href = doc.xpath('string(//link[translate(@rel, "CANONICAL", "canonical")="canonical"]/@href)')
    if href.strip():
        full = urldefrag(urljoin(url, href.strip()))[0]
        if urlsplit(full).hostname == urlsplit(url).hostname:
            return full
    return urldefrag(url)[0]


def looks_like_page(url: str) -> bool:
    """An http(s) page worth following, not a file or an account/cart page. String slicing,
    not urlsplit: this runs on every link of every page."""
    if not url.lower().startswith(("http://", "https://")):
        return False
    rest = url.split("#", 1)[0].split("?", 1)[0].split("//", 1)[1]
    slash = rest.find("/")
    path = rest[slash:].lower() if slash >= 0 else ""
    return not path.endswith(SKIP_SUFFIXES) and not any(w in path for w in SKIP_PATH_WORDS)


def itemlist_urls(nodes: list[dict[str, Any]]) -> list[str]:
    out = []
    ids = by_id(nodes)
    for node in nodes:
        if "ItemList" not in types_of(node) or "BreadcrumbList" in types_of(node):
            continue
        elements = node.get("itemListElement") or []
        for el in elements if isinstance(elements, list) else [elements]:
            el = deref(el, ids)
            if not isinstance(el, dict):
                continue
            item = deref(el.get("item"), ids)
            found = (text_of(el.get("url")) or (text_of(item.get("url")) if isinstance(item, dict)
                     else text_of(item)))
            if found:
                out.append(found)
    return out


def is_pagination(anchor: Any, href: str) -> bool:
    rel = (anchor.get("rel") or "").lower().split()
    if "next" in rel:
        return True
    # most links hold plain text: .text spares building text_content()
    text = " ".join(((anchor.text if len(anchor) == 0 else anchor.text_content()) or "").split())
    parent = anchor.getparent()
    classes = " ".join([anchor.get("class") or "", parent.get("class") or ""]).lower()
    if MORE_TEXT.match(text) or "pagination" in classes or "load-more" in classes:
        return True
    return bool(PAGE_PARAM.search(href)) or (text.isdigit() and len(text) <= 4)


def extract_links(doc: Any, base: str, url: str, jsonld: list[dict[str, Any]],
                  listing: bool = True) -> PageLinks:
    """Links to follow, sorted into product (ItemList), pagination and other same-site pages."""
    links = PageLinks(products=absolute_unique(itemlist_urls(jsonld), base))
    pagination: list[str] = [
        link.get("href") for link in doc.xpath('//link[@rel="next"][@href]')
    ]
    other: list[str] = []
    for anchor in doc.xpath("//a[@href]"):
        href = anchor.get("href").strip()
        if not href or href.startswith(("#", "javascript:", "mailto:", "tel:")):
            continue
        (pagination if is_pagination(anchor, href) else other).append(href)
    # A product page has no next page to look for (and most crawled pages are products).
    links.next_page = next_page(doc, base, url) if listing else None
    if links.next_page:
        pagination.insert(0, links.next_page)
    links.pagination = [u for u in absolute_unique(pagination, base) if looks_like_page(u)]
    known = set(links.pagination) | set(links.products)
    links.other = [u for u in absolute_unique(other, base) if looks_like_page(u)
                   and u not in known and u != url]
    return links
