"""Product titles made fit for display and for the title-aware model: one cleaning, everywhere.

Titles come from scraped HTML, CSV files and users, so they carry entities ("&amp;"), stray
tags, odd Unicode forms (fullwidth letters, Arabic presentation forms), control characters,
undecodable bytes and, now and then, whole pages of text. `clean_title` turns any of that into
one line of at most MAX_CHARS characters, or None when nothing usable is left: no title is
then an explicit absence, never an empty string the model would read as a title.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

MAX_CHARS = 300
RAW_LIMIT = 64 * MAX_CHARS  # read no further: a 10 MB "title" costs no more than a long one
GARBAGE_SHARE = 0.3  # more undecodable/control characters than this: the title is noise

_TAG = re.compile(r"</?[A-Za-z][^<>]{0,500}>|<!--.*?-->", re.DOTALL)
_KEEP_FORMAT = {"\u200c", "\u200d"}  # zero-width (non-)joiners: Persian words, emoji sequences
_REPLACEMENT = "\ufffd"


def clean_title(raw: str | bytes | None, limit: int = MAX_CHARS) -> str | None:
    """One clean line of text, or None if `raw` holds no letters or digits, or is mostly noise.

    Bytes are read as UTF-8 (bad sequences count as noise). Tags are stripped and entities
    unescaped (twice, for double-escaped scrapes), the text NFKC-normalised, control, format
    and private-use characters dropped, whitespace collapsed, and the result cut to `limit`
    characters at a word boundary when one is near.
    """
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    text = text[:RAW_LIMIT]
    for _ in range(2):  # "&amp;lt;b&amp;gt;" is a tag escaped twice
        text = html.unescape(_TAG.sub(" ", text))
    text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    kept, noise = [], 0
    for ch in text:
        kind = _kind(ch)
        if kind == "space":
            kept.append(" ")
        elif kind == "keep":
            kept.append(ch)
        else:
            noise += kind == "noise"
    if text and noise / len(text) > GARBAGE_SHARE:
        return None
    line = " ".join("".join(kept).split())
    if not any(ch.isalnum() for ch in line):
        return None
    return _cut(line, limit)


def _kind(ch: str) -> str:
    """'keep', 'space', 'drop' (invisible formatting) or 'noise' (control, undecodable...)."""
    if ch.isspace():
        return "space"
    if ch == _REPLACEMENT:
        return "noise"
    category = unicodedata.category(ch)
    if category == "Cf":
        return "keep" if ch in _KEEP_FORMAT else "drop"  # bidi marks, BOM, soft hyphen
    if category[0] == "C":  # Cc control, Co private use, Cs surrogate, Cn unassigned
        return "noise"
    return "keep"


def _cut(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    head = line[:limit]
    space = head.rfind(" ")
    return head[:space] if space >= limit * 0.8 else head


def with_brand(title: str | None, brand: str | None) -> str | None:
    """The title with the brand in front when the title does not already name it (shops
    often leave it out); what the model reads for a product with both."""
    title, brand = clean_title(title), clean_title(brand)
    if not brand:
        return title
    if not title:
        return brand
    if brand.casefold() in title.casefold():
        return title
    return clean_title(f"{brand} {title}")


def model_text(title: str | bytes | None) -> str:
    """What the model reads: the cleaned title case-folded (any script), "" for no title."""
    clean = clean_title(title)
    return clean.casefold() if clean else ""


def product_titles(session: Any, product_ids: Iterable[int] | None = None) -> dict[int, str]:
    """product id -> what the model reads (title with brand, see with_brand), for the
    products that have a usable one; `product_ids` None: every product."""
    from sqlalchemy import select

    from catalog.models import Product

    query = select(Product.id, Product.title, Product.brand)
    wanted = None if product_ids is None else set(product_ids)
    out = {}
    for pid, title, brand in session.execute(query):
        if wanted is not None and pid not in wanted:
            continue
        text = model_text(with_brand(title, brand))
        if text:
            out[pid] = text
    return out


def image_titles(session: Any, image_ids: Iterable[int]) -> dict[int, str]:
    """image id -> the title of the first product (lowest id) showing it that has one."""
    from sqlalchemy import select

    from catalog.models import ProductImage

    wanted = set(image_ids)
    titles = product_titles(session)
    out: dict[int, str] = {}
    rows = session.execute(select(ProductImage.image_id, ProductImage.product_id)
                           .order_by(ProductImage.product_id))
    for image_id, pid in rows:
        if image_id in wanted and image_id not in out and pid in titles:
            out[image_id] = titles[pid]
    return out
