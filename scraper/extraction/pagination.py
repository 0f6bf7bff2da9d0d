"""The next page of a listing: rel=next, "next" links in their common forms, the numbered page
after the current one, and "load more" buttons whose URL is in the markup."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urldefrag, urljoin, urlsplit

NEXT_WORDS = re.compile(
    r"^\s*(next( page)?|next\s*[›»>→]|load more|show more|older( posts)?|[›»>→]|»»|>>|"
    r"weiter|nächste( seite)?|siguiente|suivant(e)?|volgende|próxima|successiva|avanti|"
    r"następna|nästa|seuraava|次へ|下一页)\s*$", re.I)
LOAD_MORE = re.compile(r"\b(load|show|view|see)\s+more\b", re.I)
PREV_WORDS = re.compile(r"prev|previous|back|zurück|anterior|précédent|vorige", re.I)
URL_ATTRS = ("href", "data-href", "data-url", "data-next-url", "data-next", "data-page-url")
PAGE_KEYS = ("page", "p", "pg", "pagenum", "page_no")


def link_url(element: Any) -> str | None:
    """The URL an element leads to; a javascript: href defers to its data-href/data-url."""
    for attr in URL_ATTRS:
        value = (element.get(attr) or "").strip()
        if value and not value.startswith(("javascript:", "#", "mailto:")):
            return value
    return None


def describes_next(element: Any) -> bool:
    """rel=next, or "next" in its text, title, aria-label or class (its own or its <li>'s)."""
    rel = (element.get("rel") or "").lower().split()
    if "next" in rel:
        return True
    labels = " ".join(element.get(a) or "" for a in ("title", "aria-label")).strip()
    text = " ".join(element.text_content().split())
    if PREV_WORDS.search(labels + " " + text):
        return False
    if NEXT_WORDS.match(text) or NEXT_WORDS.match(labels):
        return True
    if re.search(r"\bn(ä|ae)chste|\bnext\b|siguiente|suivant", labels, re.I):
        return True
    parent = element.getparent()
    classes = " ".join([element.get("class") or "", element.get("id") or "",
                        parent.get("class") or "" if parent is not None else ""]).lower()
    return bool(re.search(r"(^|[\s_-])(next|pagination-next|load-more|loadmore)($|[\s_-])",
                          classes)) and not re.search(r"prev", classes)


def next_page(doc: Any, base: str, url: str) -> str | None:
    """The URL of the page after this one, or None on the last (or only) page."""
    for link in doc.xpath('//link[@href][contains(concat(" ", translate(@rel, "NEXT", "next"),'
                          ' " "), " next ")]'):
        return absolute(link.get("href"), base)
    # Next links have short labels ("»", "Next page"); reading every long link's text is slow.
    for element in doc.xpath("//a[@href or @data-href or @data-url][@rel or string-length("
                             "normalize-space()) < 30] | //button[@data-url or @data-href or"
                             " @data-next-url or @data-next]"):
        if describes_next(element) or loads_more(element, base, url):
            found = link_url(element)
            rel_next = "next" in (element.get("rel") or "").lower().split()
            if found and (rel_next or not in_chrome(element)):
                return absolute(found, base)
    return numbered_next(doc, base, url)


def loads_more(element: Any, base: str, url: str) -> bool:
    """A "load more" / "show more" control whose URL continues this listing (same path, or a
    page number); "view more" links to other pages are not pagination."""
    if not LOAD_MORE.search(" ".join(element.text_content().split())):
        return False
    target = absolute(link_url(element), base)
    if target is None:
        return False
    return urlsplit(target).path == urlsplit(url).path or page_number(target) is not None


def in_chrome(element: Any) -> bool:
    """Inside the site's header or footer (a "more" link there is navigation, not paging)."""
    return any(a.tag in {"header", "footer"} for a in element.iterancestors())


def numbered_next(doc: Any, base: str, url: str) -> str | None:
    """The link numbered one past the current page (from the URL's page parameter or the
    pagination's current item)."""
    current = page_number(url) or current_marked(doc)
    if current is None:
        return None
    wanted = str(current + 1)
    for anchor in doc.xpath(f'//a[@href][normalize-space()="{wanted}"]'):
        href = absolute(anchor.get("href"), base)
        if href and href != urldefrag(url)[0]:
            return href
    return None


def page_number(url: str) -> int | None:
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query):
        if key.lower() in PAGE_KEYS and value.isdigit():
            return int(value)
    found = re.search(r"/page/(\d+)/?$", parts.path)
    return int(found.group(1)) if found else None


def current_marked(doc: Any) -> int | None:
    """The number of the pagination item marked current/active/selected (aria-current too)."""
    for element in doc.xpath(
        '//*[@aria-current="page"] | //*[contains(@class, "pag") or contains(@class, "pages")]'
        '//*[contains(@class, "current") or contains(@class, "active")'
        ' or contains(@class, "selected")]'
    ):
        text = " ".join(element.text_content().split())
        if text.isdigit() and len(text) <= 4:
            return int(text)
    return None


def absolute(href: str | None, base: str) -> str | None:
    if not href:
        return None
    full = urldefrag(urljoin(base, href.strip()))[0]
    return full if full.startswith(("http://", "https://")) else None
