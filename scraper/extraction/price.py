"""Prices as shown to a shopper, read with price-parser (Zyte) rather than our own regexes.

A range ("$10 - $20", "38.17 - 48.27") gives its low end, as schema.org's lowPrice does;
"From $9" gives 9; "$0.00" gives 0.0. Text without a digit gives None, never a guess.
"""

from __future__ import annotations

import re
from typing import Any

from scraper.extraction.index import marked, page_index

STRUCK = re.compile(r"\b(old|was|strike|regular|list|compare|original|before|msrp|rrp|"
                    r"saving|save|discount|per|unit)", re.I)
PRICE_CLASS = re.compile(r"price|prc|amount|cost", re.I)
SALE_CLASS = re.compile(r"sale|current|now|deal|our|final|actual|special|offer", re.I)
CURRENCY = re.compile(r"[$€£¥₹₩₽]|\b(USD|EUR|GBP|JPY|CAD|AUD|CHF|SEK|NOK|DKK|PLN|INR)\b")


def read_price(text: str | None) -> tuple[float | None, str | None]:
    """(amount, currency) of a price text; (None, None) when it holds no amount."""
    if not text or not re.search(r"\d", text):
        return None, None
    from price_parser import Price

    price = Price.fromstring(text)
    if price.amount is None:
        return None, None
    return float(price.amount), normal_currency(price.currency)


def normal_currency(symbol: str | None) -> str | None:
    codes = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR",
             "₩": "KRW", "₽": "RUB", "C$": "CAD", "A$": "AUD", "CA$": "CAD"}
    if not symbol:
        return None
    symbol = symbol.strip()
    return codes.get(symbol, symbol.upper() if re.fullmatch(r"[A-Za-z]{3}", symbol) else None)


STRUCK_TAGS = {"del", "s", "strike"}
HIDDEN_CLASS = re.compile(r"sr-only|screen-reader|visually-hidden", re.I)


def struck(element: Any) -> bool:
    """A price shown struck through (the old price): <del>/<s>, line-through style, or a
    data-*strike* flag ("data-a-strike=true")."""
    if element.tag in STRUCK_TAGS or "line-through" in (element.get("style") or ""):
        return True
    return any("strike" in name and value.lower() in {"", "true", "1"}
               for name, value in element.attrib.items() if name.startswith("data-"))


def struck_within(element: Any, levels: int = 3) -> bool:
    """The element or one of its nearest ancestors is struck through."""
    for _ in range(levels + 1):
        if element is None or not isinstance(element.tag, str):
            return False
        if struck(element):
            return True
        element = element.getparent()
    return False


def shown_pieces(element: Any) -> Any:
    """The element's text a shopper reads as its price: not struck-through old prices, not
    text for screen readers only ("Original price was: $45.00.")."""
    if element.text:
        yield element.text
    for child in element:
        if isinstance(child.tag, str) and not struck(child) and not HIDDEN_CLASS.search(
                child.get("class") or ""):
            yield from shown_pieces(child)
        if child.tail:
            yield child.tail


def element_text(element: Any) -> str:
    """Text of a price element; separate pieces are joined tight when they are digits only
    ("$<b>339</b><sup>.99</sup>"), else with spaces."""
    pieces = [p.strip() for p in shown_pieces(element) if p.strip()]
    tight = "".join(pieces)
    return tight if re.fullmatch(r"[^\d]*[\d.,]+[^\d]*", tight) else " ".join(pieces)


def visible_price(doc: Any, skip: Any) -> tuple[float | None, str | None]:
    """The page's current price: itemprop=price, then the first price-classed element with a
    currency sign that is not struck through, outside `skip`ped areas (related products)."""
    for element in marked(doc, "price"):
        if skip(element):
            continue
        amount, currency = read_price(element.get("content") or element_text(element))
        if amount:
            return amount, currency or page_currency(doc)
    candidates = []
    after_title = False
    for element, marks in page_index(doc).classed():
        if element.tag == "h1":
            after_title = True  # the product's price follows its title; earlier ones are promos
            continue
        if not marks or not PRICE_CLASS.search(marks) or element.tag in {"script", "style"}:
            continue
        if STRUCK.search(marks) or skip(element) or len(element) > 6 or struck_within(element):
            continue
        text = element_text(element)
        if len(text) > 40 or not CURRENCY.search(text):
            continue
        amount, currency = read_price(text)
        if amount is not None:
            candidates.append((0 if after_title else 1, 0 if SALE_CLASS.search(marks) else 1,
                               len(candidates), amount, currency))
    if not candidates:
        return lone_price(doc, skip)
    _where, _kind, _order, amount, currency = min(candidates)
    return amount, currency


LONE_LOOK = 400  # elements after the <h1>: the price sits near the title
LONE_TAGS = {"h2", "h3", "h4", "h5", "h6", "p", "span", "div", "strong", "b", "li", "dd", "td"}
LONE_PRICE = re.compile(r"^\W*(?:[A-Z]{2,3}\W{0,2})?\d[\d.,\s]*(?:[A-Z]{3})?\W*$")


def lone_price(doc: Any, skip: Any) -> tuple[float | None, str | None]:
    """The first element after the page's <h1> whose whole text is one amount with its
    currency ("<h2>$110.00</h2>"): small shops that give their price no class or markup."""
    h1 = next(iter(doc.iter("h1")), None)
    if h1 is None:
        return None, None
    for seen, element in enumerate(following(h1)):
        if seen > LONE_LOOK:
            break
        if element.tag not in LONE_TAGS or len(element) > 3:
            continue
        text = element_text(element)
        if len(text) > 20 or not CURRENCY.search(text) or not LONE_PRICE.match(text):
            continue
        if struck_within(element) or skip(element):
            continue
        amount, currency = read_price(text)
        if amount is not None:
            return amount, currency
    return None, None


def following(element: Any) -> Any:
    """Elements after `element` in document order (not inside it)."""
    node = element
    while node is not None:
        for sibling in node.itersiblings():
            if isinstance(sibling.tag, str):
                yield sibling
                yield from (e for e in sibling.iterdescendants() if isinstance(e.tag, str))
        node = node.getparent()


STANDARD_CLASS = re.compile(r"standard|regular|list|was|old|original|compare|strike", re.I)


def shown_over_marked(doc: Any, skip: Any) -> tuple[float, str | None] | None:
    """The price a shopper sees when the page's itemprop=price markup says otherwise: a hidden
    <meta itemprop=price> inside a price element whose text shows another amount (the text is
    what is charged; the meta goes stale), or several itemprop=price values of which one is
    classed as the sale price and the others as the standard (list) price. None when the
    markup is unambiguous."""
    prices = [e for e in marked(doc, "price") if not skip(e)]
    for element in prices:
        parent = element.getparent()
        if element.tag != "meta" or parent is None or not PRICE_CLASS.search(
                f"{parent.get('class') or ''} {parent.get('id') or ''}"):
            continue
        said, _ = read_price(element.get("content"))
        text = element_text(parent)
        shown, currency = read_price(text) if len(text) <= 40 and CURRENCY.search(text) else (
            None, None)
        if said is not None and shown is not None and abs(said - shown) > 0.005:
            return shown, currency or page_currency(doc)
    readings = []
    for element in prices:
        amount, currency = read_price(element.get("content") or element_text(element))
        if amount is not None:
            readings.append((element.get("class") or "", amount, currency))
    if len({amount for _c, amount, _cur in readings}) < 2:
        return None
    sale = [(a, c) for marks, a, c in readings
            if SALE_CLASS.search(marks) and not STANDARD_CLASS.search(marks)]
    standard = [r for r in readings if STANDARD_CLASS.search(r[0])]
    if len(sale) == 1 and standard:
        return sale[0][0], sale[0][1] or page_currency(doc)
    return None


def page_currency(doc: Any) -> str | None:
    code = next((e.get("content") for e in marked(doc, "priceCurrency") if e.get("content")),
                "").strip()
    return code.upper() if re.fullmatch(r"[A-Za-z]{3}", code) else None
