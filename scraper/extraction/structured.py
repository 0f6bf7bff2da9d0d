"""Structured data: JSON-LD (Product, ProductGroup/hasVariant, BreadcrumbList, @graph),
microdata and RDFa through extruct, and OpenGraph, read into ProductData.

Order of trust: JSON-LD > microdata > RDFa > OpenGraph. A broken JSON-LD block is skipped on
its own; it never stops the rest of the page from being read.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from catalog.categories import normalise_path
from scraper.extraction.index import page_index
from scraper.extraction.model import ProductData

SCHEMA_PREFIX = re.compile(r"^(https?://schema\.org/|schema:)", re.I)
PRICE_NUMBER = re.compile(r"\d[\d.,\s]*")
PRODUCT_TYPES = {"Product", "ProductModel", "IndividualProduct", "Vehicle", "Book"}


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
        if "&quot;" in text:  # a block escaped as HTML text ({&quot;@type&quot;: ...})
            return parse_jsonld_text(html.unescape(text))
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
    if "&" in text and ";" in text:  # HTML entities some shops leave in JSON ("Caf&eacute;")
        text = html.unescape(text)
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


def offer_availability(offers: Any) -> str | None:
    """schema.org availability of the first offer that says it ("https://schema.org/InStock"
    -> "InStock")."""
    for offer in offers if isinstance(offers, list) else [offers]:
        value = text_of(offer.get("availability")) if isinstance(offer, dict) else None
        if value:
            return value.rstrip("/").rsplit("/", 1)[-1]
    return None


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
    data.availability = offer_availability(deref(node.get("offers"), ids))
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


def pick_product_node(nodes: list[dict[str, Any]],
                      heading: Callable[[], str | None] | None = None) -> dict[str, Any] | None:
    """The page's main product: a ProductGroup before a Product; a variant is not the page.
    Of several products (related items marked up too, sometimes first), the one the page's
    heading names."""
    groups = [n for n in nodes if "ProductGroup" in types_of(n)]
    if groups:
        return groups[0]
    products = [n for n in nodes if types_of(n) & PRODUCT_TYPES]
    if len(products) > 1 and heading is not None:
        title = heading()
        named = [n for n in products if title and same_name(title, text_of(n.get("name")) or "")]
        products = named + products
    return products[0] if products else None


def same_name(heading: str, name: str) -> bool:
    """The heading and a product's name hold the same words, one maybe more than the other."""
    a, b = set(re.findall(r"\w+", heading.casefold())), set(re.findall(r"\w+", name.casefold()))
    return bool(a and b) and (a <= b or b <= a)


def from_jsonld(nodes: list[dict[str, Any]], url: str,
                heading: Callable[[], str | None] | None = None) -> ProductData | None:
    """The page's product from JSON-LD shaped nodes; `heading` gives the page's main heading
    (asked only when several products are marked up)."""
    ids = by_id(nodes)
    node = pick_product_node(nodes, heading)
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
    if not page_index(doc).itemscopes:
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
