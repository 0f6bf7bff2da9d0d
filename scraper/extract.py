"""Pure extraction: a page's HTML and URL in, product facts and links out (no Scrapy here).

Order of trust for every field: JSON-LD (Product, ProductGroup, BreadcrumbList, ItemList,
@graph) > microdata > RDFa > OpenGraph > the visible breadcrumb. A broken JSON-LD block is
skipped on its own; it never stops the rest of the page from being read.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from catalog.categories import normalise_path
from scraper.extraction.encoding import decode_html, without_xml_declaration
from scraper.extraction.images import (
    declared_images,
    gallery_images,
    junk_url,
    other_area_test,
)
from scraper.extraction.pagination import next_page
from scraper.extraction.platforms import app_state_product, detect_platform
from scraper.extraction.price import visible_price
from scraper.extraction.visible import (
    availability,
    cart_buttons,
    labelled_id,
    main_heading,
    visible_brand,
    visible_title,
)

MAX_IMAGES = 12
SCHEMA_PREFIX = re.compile(r"^(https?://schema\.org/|schema:)", re.I)
PRICE_NUMBER = re.compile(r"\d[\d.,\s]*")
PAGE_PARAM = re.compile(r"([?&](page|p|pg|start|offset)=\d+)|(/page/\d+/?$)", re.I)
MORE_TEXT = re.compile(r"^\s*(next|more|load more|show more|see more|older|›|»|>|→)\b", re.I)
BREADCRUMB_SEPARATORS = {"/", ">", "›", "»", "|", "→", "\\"}
SKIP_SUFFIXES = (
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".svg", ".ico", ".css", ".js", ".pdf",
    ".zip", ".gz", ".mp4", ".mp3", ".woff", ".woff2", ".ttf", ".xml", ".json", ".txt",
)
SKIP_PATH_WORDS = ("/cart", "/checkout", "/account", "/login", "/logout", "/register",
                   "/wishlist", "/search")
FIELD_NAMES = ("title", "external_id", "brand", "price", "currency", "category_path",
               "availability")
PRODUCT_TYPES = {"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"}


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
    product = extract_product_from(doc, base, url, jsonld, problems)
    links = extract_links(doc, base, url, jsonld)
    return Page(product, links, problems, detect_platform(doc))


def extract_product(html: str | bytes, url: str) -> ProductData | None:
    return extract_page(html, url).product


def base_url(doc: Any, url: str) -> str:
    href = doc.xpath("string(//head/base/@href)").strip()
    return urljoin(url, href) if href else url


# --------------------------------------------------------------------------- JSON-LD


def parse_jsonld_text(text: str) -> Any:
    """json, then the lenient jstyleson (comments, trailing commas); raises ValueError."""
    import jstyleson

    text = text.strip()
    if text.startswith("<!--"):
        text = text[4:]
    if text.endswith("-->"):
        text = text[:-3]
    try:
        return json.loads(text, strict=False)
    except ValueError:
        pass
    try:
        return jstyleson.loads(text, strict=False)
    except Exception as exc:  # jstyleson raises assorted errors on garbage
        raise ValueError(str(exc)) from exc


def jsonld_nodes(doc: Any, problems: list[str]) -> list[dict[str, Any]]:
    """Every JSON-LD object on the page, with @graph and nesting flattened; bad blocks skipped."""
    nodes: list[dict[str, Any]] = []
    for script in doc.xpath('//script[contains(translate(@type, "LDJSON", "ldjson"), "ld+json")]'):
        text = script.text_content() or ""
        try:
            data = parse_jsonld_text(text)
        except ValueError as exc:
            problems.append(f"malformed JSON-LD: {str(exc)[:80]}")
            continue
        nodes.extend(walk_nodes(data))
    return nodes


def walk_nodes(data: Any) -> Iterator[dict[str, Any]]:
    """Top-level objects and @graph members (nested values stay inside their parent)."""
    if isinstance(data, list):
        for entry in data:
            yield from walk_nodes(entry)
    elif isinstance(data, dict):
        if "@graph" in data:
            yield from walk_nodes(data["@graph"])
        if "@type" in data:
            yield data


def types_of(node: Any) -> set[str]:
    if not isinstance(node, dict):
        return set()
    raw = node.get("@type") or node.get("type") or []
    raw = raw if isinstance(raw, list) else [raw]
    return {SCHEMA_PREFIX.sub("", str(t)).rsplit("/", 1)[-1] for t in raw}


def by_id(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(n["@id"]): n for n in nodes if isinstance(n, dict) and "@id" in n}


def deref(value: Any, ids: dict[str, dict[str, Any]]) -> Any:
    """Follow a {"@id": ...} reference inside a @graph."""
    if isinstance(value, dict) and set(value) == {"@id"}:
        return ids.get(str(value["@id"]), value)
    return value


# --------------------------------------------------------------------------- reading values


def text_of(value: Any) -> str | None:
    """A plain string from a string, number, list or {name|@value} object."""
    if isinstance(value, list):
        for entry in value:
            found = text_of(entry)
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key in ("name", "@value", "value", "url", "@id"):
            if key in value:
                return text_of(value[key])
        return None
    if value is None or isinstance(value, bool):
        return None
    text = " ".join(str(value).split())
    return text or None


def parse_price(value: Any) -> float | None:
    """12.5, "12.50", "$1,299.00", "1.299,00 €" -> a float; None if there is no number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    found = PRICE_NUMBER.search(str(value))
    if not found:
        return None
    num = found.group(0).replace(" ", "").strip(".,")
    if "," in num and "." in num:
        num = num.replace(",", "") if num.rfind(".") > num.rfind(",") else num.replace(
            ".", "").replace(",", ".")
    elif "," in num:
        head, _, tail = num.rpartition(",")
        num = head.replace(",", "") + ("." + tail if len(tail) != 3 else tail)
    try:
        return float(num)
    except ValueError:
        return None


def image_values(value: Any) -> list[str]:
    """URLs from a string, a list, or ImageObject(s) with url/contentUrl."""
    out: list[str] = []
    for entry in value if isinstance(value, list) else [value]:
        if isinstance(entry, str):
            out.append(entry.strip())
        elif isinstance(entry, dict):
            for key in ("contentUrl", "url", "@id", "thumbnailUrl"):
                if isinstance(entry.get(key), str):
                    out.append(entry[key].strip())
                    break
    return [u for u in out if u]


def offer_price(offers: Any) -> tuple[float | None, str | None]:
    for offer in offers if isinstance(offers, list) else [offers]:
        if not isinstance(offer, dict):
            continue
        price = parse_price(offer.get("price") or offer.get("lowPrice"))
        currency = text_of(offer.get("priceCurrency"))
        spec = offer.get("priceSpecification")
        if price is None and spec is not None:
            spec = spec[0] if isinstance(spec, list) and spec else spec
            if isinstance(spec, dict):
                price = parse_price(spec.get("price"))
                currency = currency or text_of(spec.get("priceCurrency"))
        if price is None and "offers" in offer:  # AggregateOffer with inner offers
            price, inner_currency = offer_price(offer["offers"])
            currency = currency or inner_currency
        if price is not None:
            return price, currency
    return None, None


def breadcrumb_path(node: dict[str, Any], ids: dict[str, dict[str, Any]],
                    title: str | None) -> str | None:
    """A BreadcrumbList as "A > B > C", ordered by position, without the product itself."""
    elements = node.get("itemListElement") or []
    elements = elements if isinstance(elements, list) else [elements]
    named: list[tuple[float, str]] = []
    for index, el in enumerate(elements):
        el = deref(el, ids)
        if not isinstance(el, dict):
            continue
        name = text_of(el.get("name")) or text_of(deref(el.get("item"), ids))
        if not name or name.startswith("http"):
            continue
        try:
            pos = float(el.get("position", index))
        except (TypeError, ValueError):
            pos = float(index)
        named.append((pos, name))
    names = [n for _, n in sorted(named, key=lambda p: p[0])]
    return path_without_title(names, title)


def path_without_title(names: list[str], title: str | None) -> str | None:
    if title and names and names[-1].strip().lower() == title.strip().lower():
        names = names[:-1]
    return normalise_path(names) if names else None


def category_value(value: Any) -> str | None:
    """schema.org `category` may be a string path, a list of parts, or a Thing."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return normalise_path([v for v in value if v.strip()])
    text = text_of(value)
    return normalise_path(text) if text and not text.startswith("http") else None


# --------------------------------------------------------------------------- products


def product_from_node(node: dict[str, Any], ids: dict[str, dict[str, Any]],
                      url: str) -> ProductData:
    """Read a schema.org Product or ProductGroup node (JSON-LD shaped)."""
    data = ProductData(url=url)
    data.title = text_of(node.get("name"))
    data.external_id = next(
        (text_of(node.get(k)) for k in ("sku", "productGroupID", "productID", "mpn", "gtin13",
                                         "gtin", "gtin14", "gtin12", "gtin8")
         if text_of(node.get(k))),
        None,
    )
    data.brand = text_of(deref(node.get("brand"), ids)) or text_of(node.get("manufacturer"))
    data.price, data.currency = offer_price(deref(node.get("offers"), ids))
    data.category_path = category_value(node.get("category"))
    data.image_urls = image_values(node.get("image"))
    variants = node.get("hasVariant") or []
    for variant in variants if isinstance(variants, list) else [variants]:
        variant = deref(variant, ids)
        if not isinstance(variant, dict):
            continue
        data.image_urls += image_values(variant.get("image"))
        if data.price is None:
            data.price, data.currency = offer_price(variant.get("offers"))
        data.category_path = data.category_path or category_value(variant.get("category"))
    crumb = deref(node.get("breadcrumb"), ids)
    if isinstance(crumb, dict) and "BreadcrumbList" in types_of(crumb):
        data.category_path = breadcrumb_path(crumb, ids, data.title) or data.category_path
    return data


def pick_product_node(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The page's main product: a ProductGroup before a Product; a variant is not the page."""
    groups = [n for n in nodes if "ProductGroup" in types_of(n)]
    if groups:
        return groups[0]
    products = [n for n in nodes if types_of(n) & PRODUCT_TYPES]
    return products[0] if products else None


def from_jsonld(nodes: list[dict[str, Any]], url: str) -> ProductData | None:
    ids = by_id(nodes)
    node = pick_product_node(nodes)
    if node is None:
        return None
    data = product_from_node(node, ids, url)
    # The store's navigation path is its category, when the page gives one.
    data.category_path = jsonld_breadcrumb(nodes, data.title) or data.category_path
    data.sources.append("json-ld")
    return data


def jsonld_breadcrumb(nodes: list[dict[str, Any]], title: str | None) -> str | None:
    crumbs = [n for n in nodes if "BreadcrumbList" in types_of(n)]
    return breadcrumb_path(crumbs[0], by_id(nodes), title) if crumbs else None


def microdata_to_jsonld(item: dict[str, Any]) -> dict[str, Any]:
    """extruct's microdata item {type, properties} -> a JSON-LD shaped dict."""
    out: dict[str, Any] = {"@type": item.get("type")}
    for key, value in (item.get("properties") or {}).items():
        out[key] = _microdata_value(value)
    return out


def _microdata_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_microdata_value(v) for v in value]
    if isinstance(value, dict) and "properties" in value:
        return microdata_to_jsonld(value)
    return value


def microdata_nodes(doc: Any, url: str, problems: list[str]) -> list[dict[str, Any]]:
    if not doc.xpath("boolean(//*[@itemscope])"):
        return []
    from extruct.w3cmicrodata import MicrodataExtractor

    try:
        items = MicrodataExtractor().extract_items(doc, url)
    except Exception as exc:  # extruct on odd markup; the rest of the page still counts
        problems.append(f"microdata: {str(exc)[:80]}")
        return []
    return [microdata_to_jsonld(i) for i in items]


def rdfa_nodes(doc: Any, url: str, problems: list[str]) -> list[dict[str, Any]]:
    """RDFa (pyRdfa is slow, so only when the page has typeof/vocab markup)."""
    if not doc.xpath("boolean(//*[@typeof or @vocab])"):
        return []
    import lxml.html
    from extruct import extract

    html = lxml.html.tostring(doc)
    try:
        raw = extract(html, base_url=url, syntaxes=["rdfa"], errors="strict")["rdfa"]
    except Exception as exc:  # see microdata_nodes
        problems.append(f"rdfa: {str(exc)[:80]}")
        return []
    return rdfa_to_jsonld(raw)


def rdfa_to_jsonld(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expanded RDFa (IRIs, lists of @value) -> compact schema.org dicts, references resolved."""
    compact: dict[str, dict[str, Any]] = {}
    for node in raw:
        out: dict[str, Any] = {"@type": [SCHEMA_PREFIX.sub("", t) for t in node.get("@type", [])]}
        for key, values in node.items():
            if key.startswith("@"):
                continue
            short = SCHEMA_PREFIX.sub("", key).rsplit("/", 1)[-1]
            out[short] = [v.get("@value", v) if isinstance(v, dict) else v for v in values]
            out[short] = out[short][0] if len(out[short]) == 1 else out[short]
        compact[str(node.get("@id"))] = out
    for out in compact.values():
        for key, value in list(out.items()):
            if isinstance(value, dict) and "@id" in value:
                out[key] = compact.get(str(value["@id"]), value)
    return [n for n in compact.values() if n.get("@type")]


def opengraph(doc: Any) -> dict[str, list[str]]:
    """og:* and product:* meta properties (several og:image are kept in order)."""
    out: dict[str, list[str]] = {}
    for meta in doc.xpath("//meta[@property or @name][@content]"):
        key = (meta.get("property") or meta.get("name") or "").strip().lower()
        if key.startswith(("og:", "product:")):
            out.setdefault(key, []).append(meta.get("content").strip())
    return out


def from_opengraph(og: dict[str, list[str]], url: str) -> ProductData | None:
    kind = (og.get("og:type") or [""])[0].lower()
    has_price = any(k in og for k in ("product:price:amount", "og:price:amount"))
    if kind not in {"product", "og:product", "product.item"} and not has_price:
        return None
    data = ProductData(url=url, sources=["opengraph"])
    data.title = (og.get("og:title") or [None])[0]
    data.brand = (og.get("product:brand") or [None])[0]
    data.external_id = (og.get("product:retailer_item_id") or og.get("product:sku") or [None])[0]
    data.price = parse_price((og.get("product:price:amount") or og.get("og:price:amount")
                              or [None])[0])
    data.currency = (og.get("product:price:currency") or og.get("og:price:currency")
                     or [None])[0]
    data.category_path = category_value((og.get("product:category") or [None])[0])
    data.image_urls = og.get("og:image", []) + og.get("og:image:url", [])
    return data


def visible_breadcrumb(doc: Any, title: str | None) -> str | None:
    """The breadcrumb a shopper sees: nav[aria-label=breadcrumb], .breadcrumb(s) lists."""
    containers = doc.xpath(
        '//*[contains(translate(@aria-label, "BREADCRUMB", "breadcrumb"), "breadcrumb")'
        ' or contains(translate(@class, "BREADCRUMB", "breadcrumb"), "breadcrumb")'
        ' or contains(translate(@id, "BREADCRUMB", "breadcrumb"), "breadcrumb")]'
    )
    for box in containers:
        parts = box.xpath(".//li") or box.xpath(".//a | .//span[not(*)]")
        names = [" ".join(p.text_content().split()) for p in parts]
        names = [n.strip("/>›» ") for n in names if n and n not in BREADCRUMB_SEPARATORS]
        names = [n for n in names if n]
        if names:
            return path_without_title(names, title)
    return None


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


def structured_readings(doc: Any, base: str, page_url: str, jsonld: list[dict[str, Any]],
                        problems: list[str]) -> list[ProductData | None]:
    """JSON-LD, then microdata and RDFa while fields are missing, then OpenGraph."""
    readings = [stamp(from_jsonld(jsonld, page_url), "jsonld")]
    if missing(readings[0]):
        readings.append(stamp(from_jsonld(microdata_nodes(doc, base, problems), page_url),
                              "microdata"))
        if readings[-1] is not None:
            readings[-1].sources = ["microdata"]
    if all(missing(r) for r in readings):
        readings.append(stamp(from_jsonld(rdfa_nodes(doc, base, problems), page_url), "rdfa"))
        if readings[-1] is not None:
            readings[-1].sources = ["rdfa"]
    if all(missing(r) for r in readings):
        readings.append(stamp(app_state_product(doc, page_url), "app-state"))
    readings.append(stamp(from_opengraph(opengraph(doc), page_url), "og"))
    return readings


def extract_product_from(doc: Any, base: str, url: str, jsonld: list[dict[str, Any]],
                         problems: list[str]) -> ProductData | None:
    page_url = canonical_url(doc, url)
    readings = structured_readings(doc, base, page_url, jsonld, problems)
    found = [r for r in readings if r is not None]
    skip = other_area_test(doc)
    shown_price = functools.cache(lambda: visible_price(doc, skip))
    if not is_product_page(doc, found, jsonld, shown_price):
        return None
    data = found[0] if found else ProductData(url=page_url)
    for other in found[1:]:
        merge(data, other)
    if readings[0] is None:  # no JSON-LD product, but its breadcrumb still outranks the rest
        data.category_path = jsonld_breadcrumb(jsonld, data.title) or data.category_path
    fill_from_page(doc, data, skip, shown_price)
    data.image_urls = absolute_unique([u for u in data.image_urls if not junk_url(u)],
                                      base)[:MAX_IMAGES]
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
        put("title", title, "visible" if source in {"h1", "title"} else source or "visible")
    if data.price is None:
        amount, currency = shown_price()
        put("price", amount, "visible")
        put("currency", currency, "visible")
    if data.external_id is None:
        put("external_id", labelled_id(doc, skip), "visible")
    if data.brand is None:
        put("brand", visible_brand(doc), "visible")
    if data.availability is None:
        put("availability", availability(doc), "visible")
    if data.category_path is None:
        put("category_path", visible_breadcrumb(doc, data.title), "visible")
    declared = declared_images(doc)
    gallery = gallery_images(doc, data.title, skip)
    if not data.image_urls:
        data.field_sources["image"] = declared[0][0] if declared else "visible"
    data.image_urls += [u for _s, u in declared] + gallery


def is_product_page(doc: Any, found: list[ProductData], jsonld: list[dict[str, Any]],
                    shown_price: Callable[[], tuple[float | None, str | None]]) -> bool:
    """Signals together: Product markup or og:type=product; else a price with an add-to-cart
    form and one dominant title. Listings (many Product items) and blog, cart and home pages
    are not products."""
    product_cards = len(doc.xpath('//*[@itemscope][contains(@itemtype, "schema.org/Product")]'))
    product_cards += sum(1 for n in jsonld if types_of(n) & PRODUCT_TYPES)
    og_type = (opengraph(doc).get("og:type") or [""])[0].lower()
    if og_type in {"article", "blog"} and not found:
        return False
    if product_cards >= 3 and og_type not in {"product", "og:product", "product.item"}:
        return False  # a listing of product cards
    if found:
        return True
    if main_heading(doc) is None:
        return False
    price, _currency = shown_price()
    return price is not None and 1 <= cart_buttons(doc) <= 3  # a home page has one per tile


# --------------------------------------------------------------------------- images


def absolute_unique(urls: Iterable[str], base: str) -> list[str]:
    seen: dict[str, None] = {}
    for u in urls:
        full = urldefrag(urljoin(base, u.strip()))[0]
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
    parts = urlsplit(url)
    path = parts.path.lower()
    return parts.scheme in {"http", "https"} and not path.endswith(SKIP_SUFFIXES) and not any(
        w in path for w in SKIP_PATH_WORDS
    )


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
    text = " ".join(anchor.text_content().split())
    parent = anchor.getparent()
    classes = " ".join([anchor.get("class") or "", parent.get("class") or ""]).lower()
    if MORE_TEXT.match(text) or "pagination" in classes or "load-more" in classes:
        return True
    return bool(PAGE_PARAM.search(href)) or (text.isdigit() and len(text) <= 4)


def extract_links(doc: Any, base: str, url: str, jsonld: list[dict[str, Any]]) -> PageLinks:
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
    links.next_page = next_page(doc, base, url)
    if links.next_page:
        pagination.insert(0, links.next_page)
    links.pagination = [u for u in absolute_unique(pagination, base) if looks_like_page(u)]
    known = set(links.pagination) | set(links.products)
    links.other = [u for u in absolute_unique(other, base) if looks_like_page(u)
                   and u not in known and u != url]
    return links


# --------------------------------------------------------------------------- Shopify


def shopify_products(body: bytes | str, base: str) -> list[ProductData]:
    """Products from a Shopify store's /products.json; [] if it is not that format."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data.get("products") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if not isinstance(item, dict) or not item.get("handle"):
            continue
        variants = [v for v in item.get("variants") or [] if isinstance(v, dict)]
        first = variants[0] if variants else {}
        images = [i.get("src") for i in item.get("images") or [] if isinstance(i, dict)]
        path = normalise_path(item.get("product_type") or None) if item.get(
            "product_type") else None
        out.append(ProductData(
            url=urljoin(base, f"/products/{item['handle']}"),
            title=text_of(item.get("title")),
            external_id=text_of(first.get("sku")) or text_of(item.get("id")),
            brand=text_of(item.get("vendor")),
            price=parse_price(first.get("price")),
            currency=None,
            category_path=path,
            image_urls=absolute_unique([i for i in images if isinstance(i, str)], base),
            sources=["shopify"],
        ))
    return out


# --------------------------------------------------------------------------- sitemaps


@dataclass
class SitemapEntries:
    kind: str  # "sitemapindex" | "urlset" | "" (not a sitemap)
    locs: list[str] = field(default_factory=list)
    images: dict[str, list[str]] = field(default_factory=dict)  # page URL -> image:loc URLs


def parse_sitemap(body: bytes) -> SitemapEntries:
    """A sitemap or sitemap index, with image-sitemap entries; entities are never resolved."""
    import io

    import lxml.etree

    out = SitemapEntries(kind="")
    try:
        events = lxml.etree.iterparse(
            io.BytesIO(body), events=("end",), recover=True, resolve_entities=False,
            no_network=True, remove_comments=True, huge_tree=False,
        )
        for _event, elem in events:
            name = local_name(elem.tag)
            if name in {"url", "sitemap"}:
                sitemap_entry(elem, out)
                elem.clear()
            elif name in {"urlset", "sitemapindex"}:
                out.kind = name
    except lxml.etree.LxmlError:
        pass
    return out


def local_name(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def sitemap_entry(elem: Any, out: SitemapEntries) -> None:
    loc = None
    images = []
    for child in elem.iter():
        name = local_name(child.tag)
        text = (child.text or "").strip()
        if name == "loc" and text:
            if local_name(child.getparent().tag) == "image":
                images.append(text)
            elif loc is None:
                loc = text
    if loc:
        out.locs.append(loc)
        if images:
            out.images[loc] = images


def robots_sitemaps(text: str) -> list[str]:
    """The `Sitemap:` lines of a robots.txt."""
    out = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "sitemap" and value.strip():
            out.append(value.strip())
    return out
