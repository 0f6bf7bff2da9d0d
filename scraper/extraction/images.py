"""A product's pictures in order of importance, without the page's other images.

Main photo first (declared: og:image, twitter:image, link rel=image_src, itemprop=image; then
the gallery: the biggest picture in the main content, with its zoom variant), then the other
photos of the same product. Never logos, icons, sprites, payment badges, social buttons,
tracking pixels, placeholder GIFs or other products' thumbnails (recommendation carousels).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

# A word of the URL's path (a run of letters) that starts with one of these names a logo,
# icon, badge, tracker...: words, not one big regex, as this runs on every <img> of a page.
JUNK_WORDS = (
    "icon", "sprite", "badge", "payment", "paypal", "visa", "mastercard", "amex", "klarna",
    "social", "facebook", "twitter", "pinterest", "instagram", "youtube", "pixel", "spacer",
    "blank", "placeholder", "loading", "loader", "transparent", "rating", "flag", "arrow", "btn",
    "button", "avatar", "doubleclick", "analytics", "beacon", "tracking")
JUNK_WHOLE = {"star", "stars"}
JUNK_OTHER = re.compile(r"(?<!cata)logo|(?<![a-z])(1x1|clear\.gif|trans\.gif|ads?/)")
LETTER_RUNS = re.compile(r"[a-z]+")
JUNK_AREA = re.compile(
    r"related|recommend|similar|also|upsell|up-sell|cross-?sell|recent|viewed|carousel-other|"
    r"rr_|rfk_|certona|bought|suggest|complete-the-look|you-may|youmay|sponsored|\bads?\b",
    re.I)
# The heading of a block of other products ("You may also like", "Related products").
JUNK_HEADING = re.compile(
    r"related|recommend|similar|\balso\b|recently|viewed|bought|sponsored|more to love|"
    r"more from|you might|you may|complete the look|other products|customers who", re.I)
HEADINGS = {"h2", "h3", "h4", "h5"}
CHROME_TAGS = {"header", "nav", "footer", "aside"}
MAIN_HINT = re.compile(r"main|primary|hero|product|zoom|landing|featured|gallery|pdp|large",
                       re.I)
ZOOM_ATTRS = ("data-zoom-image", "data-zoom", "data-large", "data-old-hires", "data-large-image",
              "data-full", "data-zoom-src", "data-mega-url", "data-big")
LAZY_ATTRS = ("data-src", "data-original", "data-lazy-src", "data-lazy", "src")
SRCSET_ITEM = re.compile(r"\s*(\S+)(?:\s+(\d+(?:\.\d+)?)([wx]))?\s*(?:,|$)")


def junk_url(url: str, title: str | None = None) -> bool:
    """A logo, icon, badge, pixel... by its URL; a file named after the product ("Hoodie with
    Logo": hoodie-with-logo-2.jpg) is the product's photo whatever its words."""
    path = re.sub(r"^(https?:)?//[^/]+", "", url)  # a CDN's host name says nothing
    if url.startswith("data:") or path.lower().split("?")[0].endswith(".svg"):
        return True
    if not junk_path(path.lower()):
        return False
    return not (title and named_after(path, title))


def junk_path(low: str) -> bool:
    if any(w.startswith(JUNK_WORDS) or w in JUNK_WHOLE for w in LETTER_RUNS.findall(low)):
        return True
    return ("logo" in low or "1x1" in low or ".gif" in low or "ad/" in low or "ads/" in low) \
        and JUNK_OTHER.search(low) is not None


def named_after(path: str, title: str) -> bool:
    """The file name holds at least two of the title's words (of 4 letters or more)."""
    name = set(re.findall(r"[a-z0-9]{4,}", path.rsplit("/", 1)[-1].lower()))
    return len(name & set(re.findall(r"[a-z0-9]{4,}", title.lower()))) >= 2


def other_area_test(doc: Any) -> Callable[[Any], bool]:
    """For one page: is an element inside the site's chrome or another product's area (related
    items, carousels)? Each ancestor's answer is remembered, so a page with thousands of
    images walks every branch once (lxml keeps one proxy per node while we hold it)."""
    known: dict[Any, bool] = {}

    def inside(element: Any) -> bool:
        path = []
        node = element.getparent()
        result = False
        while node is not None:
            if node in known:
                result = known[node]
                break
            path.append(node)
            marks = f"{node.get('class') or ''} {node.get('id') or ''}"
            if chrome(node) or (marks.strip() and JUNK_AREA.search(marks)) or \
                    headed_as_other(node):
                result = True
                break
            node = node.getparent()
        for seen in path:
            known[seen] = result
        return result

    return inside


def chrome(node: Any) -> bool:
    """The site's header, navigation, footer or sidebar; an <aside> inside <main> belongs to
    the content (a vehicle's or product's side panel with its price)."""
    if node.tag != "aside":
        return node.tag in CHROME_TAGS
    return not any(a.tag == "main" or a.get("role") == "main" for a in node.iterancestors())


def headed_as_other(node: Any) -> bool:
    """A block whose own heading (its first child, or the heading just before it) names other
    products: "<div><h2>Products related to this item</h2>...", "<h3>Related</h3><div>..."."""
    heads = [c for c in node[:1] if c.tag in HEADINGS]
    before = node.getprevious()
    if before is not None and before.tag in HEADINGS:
        heads.append(before)
    return any(JUNK_HEADING.search(" ".join(h.text_content().split())[:80]) for h in heads)


def srcset_largest(srcset: str) -> str | None:
    """The biggest candidate of a srcset ("a.jpg 300w, b.jpg 900w" -> b.jpg)."""
    best: tuple[float, str] | None = None
    for index, match in enumerate(SRCSET_ITEM.finditer(srcset.strip())):
        src, size, _unit = match.groups()
        if not src or src.startswith("data:"):
            continue
        score = float(size) if size else 1.0 + index * 1e-6
        if best is None or score > best[0]:
            best = (score, src)
    return best[1] if best else None


BIG_ATTR = re.compile(r"^data-.*(zoom|large|full|hi-?res|big|high)", re.I)
IMAGE_FILE = re.compile(r"\.(jpe?g|png|webp|gif|avif)(\?|$)", re.I)


def url_like(value: str) -> bool:
    return value.startswith(("http", "//", "/")) and " " not in value


def zoom_url(img: Any) -> str | None:
    """The img's large variant: a zoom attribute (data-zoom-image, data-large_image,
    data-image-large-src, ...), the largest of a {url: [width, height]} map
    (data-a-dynamic-image), or the image file its link opens (<a href=big.jpg><img>)."""
    for attr in ZOOM_ATTRS:
        value = (img.get(attr) or "").strip()
        if url_like(value):
            return value
    for attr, value in img.attrib.items():
        value = value.strip()
        if BIG_ATTR.match(attr) and url_like(value):
            return value
        if attr.startswith("data-") and value.startswith("{") and "http" in value:
            found = largest_of_map(value)
            if found:
                return found
    for ancestor in img.iterancestors():
        if ancestor.tag == "a":
            href = (ancestor.get("href") or "").strip()
            return href if url_like(href) and IMAGE_FILE.search(href) else None
        if ancestor.tag not in {"span", "div", "picture", "figure"}:
            return None
    return None


def largest_of_map(value: str) -> str | None:
    """The biggest URL of a JSON {url: [width, height]} attribute; None if it is not one."""
    import json

    try:
        sizes = json.loads(value)
    except ValueError:
        return None
    if not isinstance(sizes, dict):
        return None
    areas = [(size[0] * size[1], url) for url, size in sizes.items()
             if isinstance(size, list) and len(size) == 2 and url_like(url)
             and all(isinstance(n, int | float) for n in size)]
    return max(areas)[1] if areas else None


def img_url(img: Any) -> str | None:
    """The best URL of an <img>: its zoom variant, srcset's largest, then lazy-load attributes."""
    return zoom_url(img) or shown_url(img)


def shown_url(img: Any) -> str | None:
    """The URL the <img> shows: srcset's largest, then lazy-load attributes."""
    for attr in ("data-srcset", "srcset"):
        if img.get(attr):
            found = srcset_largest(img.get(attr))
            if found:
                return found
    for attr in LAZY_ATTRS:
        value = (img.get(attr) or "").strip()
        if value and not value.startswith("data:"):
            return value
    return None


def size_of(img: Any) -> float:
    """Declared area; 0 when the page does not say (unknown is not small)."""
    try:
        return float(img.get("width") or 0) * float(img.get("height") or 0)
    except ValueError:
        return 0.0


def tiny(img: Any) -> bool:
    for attr in ("width", "height"):
        try:
            if 0 <= float((img.get(attr) or "999").rstrip("px")) < 50:
                return True
        except ValueError:
            pass
    return False


def declared_images(doc: Any, title: str | None = None) -> list[tuple[str, str]]:
    """(source, url) of the images the page declares as its own picture (one pass over the
    meta tags: this runs on every product page)."""
    keys = {"og:image": 0, "og:image:url": 1, "og:image:secure_url": 2, "twitter:image": 3,
            "twitter:image:src": 4}
    found: list[tuple[int, int, str, str]] = []
    for order, element in enumerate(doc.iter("meta")):
        key = element.get("property") or element.get("name")
        if key in keys and element.get("content"):
            found.append((keys[key], order, "og" if key.startswith("og") else "twitter",
                          element.get("content").strip()))
    out = [(source, url) for _k, _o, source, url in sorted(found)]
    for element in doc.iter("link"):
        if element.get("rel") == "image_src" and element.get("href"):
            out.append(("link", element.get("href").strip()))
    return [(s, u) for s, u in out if u and not junk_url(u, title)]


def gallery_images(doc: Any, title: str | None,
                   skip: Callable[[Any], bool]) -> list[str]:
    """The body's product photos, best first: itemprop=image, then scored candidates."""
    title_words = {w for w in re.findall(r"\w{4,}", (title or "").lower())}
    scored = []
    for index, img in enumerate(doc.xpath("//body//img | //body//picture/source")):
        zoom = zoom_url(img)
        url = zoom or shown_url(img)
        if not url or tiny(img) or junk_url(url, title) or skip(img):
            continue
        alt = (img.get("alt") or img.get("title") or "").lower()
        marks = " ".join(f"{a.get('class') or ''} {a.get('id') or ''}"
                         for a in [img, *itertools.islice(img.iterancestors(), 3)])
        score = 0.0
        if img.get("itemprop") == "image":
            score += 8
        if zoom:
            score += 4
        if MAIN_HINT.search(marks):
            score += 2
        if title_words and len(title_words & set(re.findall(r"\w{4,}", alt))) >= 2:
            score += 3
        score += min(size_of(img) / 100_000, 3)
        scored.append((-score, index, url))
    return [url for _s, _i, url in sorted(scored)]
