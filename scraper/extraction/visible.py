"""What the page shows when its structured data is missing, partial or wrong: the title, the
identifiers next to their labels, brand and availability, and whether it is a product page."""

from __future__ import annotations

import re
from typing import Any

from scraper.extraction.index import marked, page_index
from scraper.extraction.structured import path_without_title

TITLE_SEPARATORS = re.compile(r"\s+[|:–—-]\s+|\s+[|·•]\s*")
LABEL = (r"(?<![\w])(SKU|Item\s*(?:#|No\.?|number|code)|Model\s*(?:#|No\.?|number)|MPN|"
         r"MFR\s*#|Part\s*(?:#|No\.?|number)|Style\s*(?:#|No\.?)|Art(?:icle)?\.?\s*No\.?|"
         r"Product\s*(?:code|ID|number|No\.?)|ISBN(?:-13)?|UPC|EAN|GTIN|TCIN|ASIN|"
         r"R[ée]f(?:[ée]rence|\.)?|Art(?:ikel)?\.?-?\s*Nr\.?|Artikelnummer|Produktnummer|"
         r"Bestellnummer)")
ID_LABEL = re.compile(LABEL + r"\s*[:#]?\s*[:#]?\s*([A-Z0-9][A-Z0-9._/-]{2,30})", re.I)
# A label alone ("ISBN-13:</dt>", "eBay item number:</span>"): its value sits in the next
# element. Up to two words may lead in.
LABEL_ONLY = re.compile(r"^\s*(?:[^\W\d]+\s+){0,2}" + LABEL + r"\s*[:#]?\s*[:#]?\s*$", re.I)
LABEL_START = re.compile(r"sku|item|model|mpn|mfr|part|style|art|product|isbn|upc|ean|gtin|"
                         r"tcin|asin|r[ée]f|produkt|bestell", re.I)  # a cheap first look
# A button that says only this buys the page's item (a vehicle's "Buy", a ticket's "Order").
BUY_LABELS = {"buy", "buy now", "order", "order now", "reserve", "reserve now", "kaufen",
              "jetzt kaufen", "acheter", "comprar", "acquista", "köp", "kopen"}
BREADCRUMB_SEPARATORS = {"/", ">", "›", "»", "|", "→", "\\"}
ID_PROPS = ("sku", "productID", "mpn", "gtin13", "gtin", "gtin14", "gtin12", "gtin8", "isbn")
CART_WORDS = re.compile(r"add[\s-]*to[\s-]*(?:(?:shopping|my)[\s-]*)?(cart|bag|basket|trolley)|"
                        r"buy[\s-]*(?:it[\s-]*)?now|"
                        r"in den warenkorb|ajouter au panier|añadir al carrito|add_to_cart|"
                        r"addtocart|add-to-cart", re.I)


def first_text(doc: Any, xpath: str) -> str | None:
    for value in doc.xpath(xpath):
        text = " ".join(str(value if isinstance(value, str) else value.text_content()).split())
        if text:
            return text
    return None


def main_heading(doc: Any) -> str | None:
    """The page's main <h1> (outside header/nav/footer), or None when there is none."""
    for h1 in doc.xpath("//body//h1"):
        if any(a.tag in {"header", "nav", "footer", "aside"} for a in h1.iterancestors()):
            continue
        text = " ".join(heading_text(h1).split())
        if 2 <= len(text) <= 300:
            return text
    return None


def priced_heading(doc: Any) -> bool:
    """A page heading (h1/h2 outside header, nav, footer, aside) that carries its own price
    element: how classified ads and marketplace listings without a cart show one item for
    sale ("Cue Stick Rack - <span class=price>$225</span>"). A blog or home heading has none."""
    from scraper.extraction.price import read_price

    for heading in doc.xpath("//body//h1 | //body//h2"):
        if any(a.tag in {"header", "nav", "footer", "aside"} for a in heading.iterancestors()):
            continue
        for element in heading.xpath('.//*[contains(translate(@class, "PRICE", "price"), '
                                     '"price") or contains(translate(@id, "PRICE", "price"), '
                                     '"price")]'):
            text = " ".join(element.text_content().split())
            if len(text) <= 30 and read_price(text)[0] is not None:
                return True
    return False


def heading_text(h1: Any) -> str:
    """The heading's words without the prices some shops put inside it."""
    parts = [h1.text or ""]
    for child in h1:
        if not re.search(r"price", f"{child.get('class') or ''} {child.get('id') or ''}", re.I):
            parts.append(child.text_content())
        parts.append(child.tail or "")
    return " ".join(parts)


def title_without_shop(title: str, site_name: str | None) -> str:
    """<title> minus the shop's name: the longest part between separators, or the part that is
    not og:site_name."""
    parts = [p.strip() for p in TITLE_SEPARATORS.split(title) if p.strip()]
    if site_name:
        parts = [p for p in parts if p.lower() != site_name.strip().lower()] or parts
    return max(parts, key=len) if parts else title


def fuller_title(doc: Any, name: str | None) -> str | None:
    """The <title> minus the shop's name when it names the same product more fully than the
    markup or heading does: it holds every word of `name` and starts alike (markup names often
    drop the size or material: "Gold Gift Box" vs "Gold Gift Box 36 pc"; with the same words
    the shop's own page title wins), or it is `name` without a short lead-in hidden from the
    eye ("Details about ..."). None when `name` should stay."""
    if not name:
        return None
    head_title = doc.find("head/title")  # no whole-document xpath: this runs on every page
    title = " ".join((head_title.text_content() if head_title is not None else "").split()) \
        or first_text(doc, "//title")
    if not title:
        return None
    part = title_without_shop(title, meta(doc, "og:site_name"))
    have, want = re.findall(r"\w+", part.casefold()), re.findall(r"\w+", name.casefold())
    if not have or not want or have == want:
        return None
    fuller = len(want) <= len(have) <= 3 * len(want) + 3
    if have[0] == want[0] and set(want) <= set(have) and fuller:
        return part
    lead = len(want) - len(have)
    if 1 <= lead <= 3 and want[lead:] == have and len(have) >= 3 and hidden_lead_in(doc):
        return part
    return None


def without_shop_name(doc: Any, name: str | None) -> str | None:
    """`name` without the shop's name it carries ("Tote — Field & Fold", og:title often
    does): the part left once og:site_name is dropped, or the part that is the page's <h1>.
    None when `name` should stay."""
    parts = [p.strip() for p in TITLE_SEPARATORS.split(name or "") if p.strip()]
    if len(parts) < 2:
        return None
    site = (meta(doc, "og:site_name") or "").casefold()
    kept = [p for p in parts if p.casefold() != site]
    if len(kept) == 1:
        return kept[0]
    heading = main_heading(doc)
    return heading if heading and heading.casefold() in {p.casefold() for p in parts} else None


HIDDEN = re.compile(r"hdn|hidden|sr-only|visually-hidden|screen-reader|display:\s*none", re.I)


def hidden_lead_in(doc: Any) -> bool:
    """The <h1> starts with words hidden from the eye (`<span class="g-hdn">Details about`,
    `sr-only`): text for screen readers, not part of the product's name."""
    for h1 in doc.xpath("//body//h1"):
        first = next((c for c in h1 if isinstance(c.tag, str)), None)
        if first is not None and not (h1.text or "").strip() and HIDDEN.search(
                f"{first.get('class') or ''} {first.get('style') or ''}"):
            return True
    return False


def visible_title(doc: Any) -> tuple[str | None, str | None]:
    """(title, source): the heading that repeats the <title> minus the shop (the page's one
    dominant title, when the first <h1> is a section's: "New Inventory"), the main <h1>,
    og:title, twitter:title, then <title> minus the shop."""
    named = titled_heading(doc)
    if named:
        return named, "h1"
    heading = main_heading(doc)
    if heading:
        return heading, "h1"
    for key, source in (("og:title", "og"), ("twitter:title", "twitter")):
        found = meta(doc, key)
        if found:
            return found, source
    title = first_text(doc, "//title")
    if title:
        site = meta(doc, "og:site_name")
        return title_without_shop(title, site), "title"
    return None, None


def titled_heading(doc: Any) -> str | None:
    """An <h1> or <h2> of the content whose words are those of the <title> minus the shop."""
    head_title = doc.find("head/title")
    title = " ".join((head_title.text_content() if head_title is not None else "").split())
    if not title:
        return None
    want = re.findall(r"\w+", title_without_shop(title, meta(doc, "og:site_name")).casefold())
    for heading in doc.xpath("//body//h1 | //body//h2"):
        if any(a.tag in {"header", "nav", "footer"} for a in heading.iterancestors()):
            continue
        text = " ".join(heading_text(heading).split())
        if want and re.findall(r"\w+", text.casefold()) == want:
            return text
    return None


def labelled_id(doc: Any, skip: Any) -> str | None:
    """An identifier from itemprop markup anywhere, else from a label the shopper reads
    ("SKU: 123", "Item # ABC", "Model # 6202-22-00", "ISBN-13: 978...")."""
    for prop in ID_PROPS:  # in order of trust
        for element in marked(doc, prop):
            value = " ".join((element.get("content") or element.text_content()).split())
            if value and not skip(element) and re.search(r"\d", value):
                return value
    body = doc.find("body")
    for element in body.iter() if body is not None else ():
        own = (element.text or "").strip()
        if not own or not isinstance(element.tag, str) or element.tag in {"script", "style"}:
            continue
        if not LABEL_START.search(own[:60]) or skip(element) or not (
                ID_LABEL.search(own[:60]) or LABEL_ONLY.match(own)):
            continue
        # "ISBN-13:</dt><dd>978..." : the value sits in the next element, so read the parent.
        container = element.getparent() if len(own) < 20 and element.getparent() is not None \
            else element
        found = ID_LABEL.search(" ".join(container.text_content().split())[:200])
        if found and re.search(r"\d", found.group(2)):
            return found.group(2).strip("._/-")
    return data_sku(doc, skip)


def data_sku(doc: Any, skip: Any) -> str | None:
    """The SKU a theme leaves in an attribute (data-sku, data-product-sku on the buy button
    or the variant picker), outside other products' areas."""
    for element in doc.xpath("//body//*[@data-sku or @data-product-sku]"):
        value = " ".join((element.get("data-sku") or element.get("data-product-sku")
                          or "").split())
        if 3 <= len(value) <= 40 and re.search(r"\d", value) and not skip(element):
            return value
    return None


def cart_buttons(doc: Any, skip: Any) -> list[Any]:
    """The page's add-to-cart forms and buttons (a product page has one or two); a button
    inside a cart form counts once, with its form; the quick-add buttons of related products
    (`skip`ped areas) do not count."""
    found = []
    for element in doc.xpath("//form | //button | //input[@type='submit'] | //a[@id or @class]"
                             " | //*[@role='button']"):
        marks = " ".join(str(element.get(a) or "") for a in ("id", "class", "name", "action",
                                                             "value", "data-action"))
        text = " ".join(element.text_content().split())[:60] if element.tag != "form" else ""
        label = (text or str(element.get("value") or "")).strip().lower()
        if not (CART_WORDS.search(marks) or CART_WORDS.search(text) or label in BUY_LABELS):
            continue
        in_cart_form = any(CART_WORDS.search(" ".join(str(a.get(k) or "") for k in (
            "id", "class", "action"))) for a in element.iterancestors())
        if not in_cart_form and not skip(element):
            found.append(element)
    return found


def repeated_cards(buttons: list[Any]) -> bool:
    """Two cart buttons that sit in look-alike sibling blocks, each with its own picture:
    the product cards of a listing, however few ("<li class=product>" twice), not the
    "Add to cart" and "Buy now" of one product."""
    if len(buttons) < 2:
        return False
    first = [buttons[0], *buttons[0].iterancestors()]
    second = [buttons[1], *buttons[1].iterancestors()]
    common = next((a for a in first if a in second), None)
    if common is None or common is buttons[0] or common is buttons[1]:
        return False
    card_a, card_b = first[first.index(common) - 1], second[second.index(common) - 1]
    return (card_a.tag, card_a.get("class")) == (card_b.tag, card_b.get("class")) and all(
        card.find(".//img") is not None for card in (card_a, card_b))


def meta(doc: Any, key: str) -> str | None:
    for element in doc.iter("meta"):  # cheaper than an xpath over the whole document
        if key in (element.get("property"), element.get("name")):
            text = " ".join((element.get("content") or "").split())
            if text:
                return text
    return None


def availability(doc: Any) -> str | None:
    """schema.org availability (InStock, OutOfStock, ...) from markup or product meta tags."""
    raw = next((" ".join(v.split()) for e in marked(doc, "availability")
                for v in (e.get("href"), e.get("content")) if v and v.strip()), None) or meta(
        doc, "product:availability") or meta(doc, "og:availability")
    if not raw:
        return None
    word = raw.rsplit("/", 1)[-1].replace(" ", "").lower()
    for name in ("InStock", "OutOfStock", "PreOrder", "BackOrder", "Discontinued",
                 "LimitedAvailability", "SoldOut", "OnlineOnly"):
        if name.lower() == word or name.lower().replace("stock", " stock") == raw.lower():
            return name
    return {"instock": "InStock", "in_stock": "InStock", "oos": "OutOfStock",
            "out of stock": "OutOfStock", "outofstock": "OutOfStock"}.get(word)


def visible_brand(doc: Any) -> str | None:
    brands = marked(doc, "brand")
    return next((" ".join(e.get("content").split()) for e in brands
                 if (e.get("content") or "").strip()), None) or next(
        (text for e in brands if (text := " ".join(e.text_content().split()))), None) or meta(
        doc, "product:brand") or meta(doc, "og:brand")


def visible_breadcrumb(doc: Any, title: str | None) -> str | None:
    """The breadcrumb a shopper sees: nav[aria-label=breadcrumb], .breadcrumb(s) lists."""
    containers = [e for e, marks in page_index(doc).classed() if "breadcrumb" in marks.lower()]
    for box in containers:
        parts = box.xpath(".//li") or box.xpath(".//a | .//span[not(*)]")
        names = [" ".join(p.text_content().split()) for p in parts]
        names = [n.strip("/>›» ") for n in names if n and n not in BREADCRUMB_SEPARATORS]
        names = [n for n in names if n]
        if names:
            return path_without_title(names, title)
    return None
