"""Absolute page and image URLs, fast: a page joins hundreds of links against its own URL, and
`urllib.parse.urljoin` + `urldefrag` were a third of extraction's CPU on a shop's product page.
Links that are already absolute, or root-relative without dot segments, are joined by hand;
everything else goes through urljoin."""

from __future__ import annotations

import functools
from urllib.parse import urldefrag, urljoin, urlsplit


@functools.lru_cache(maxsize=256)
def origin(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def absolute(base: str, link: str) -> str:
    """urldefrag(urljoin(base, link))[0], for a stripped `link`."""
    simple = link and "./" not in link and not link.endswith(("?", "#", "/..", "/."))
    if simple and link.startswith(("http://", "https://")):
        return link.split("#", 1)[0]
    if simple and link[0] == "/" and link[:2] != "//" and base.startswith(("http://", "https://")):
        return origin(base) + link.split("#", 1)[0]
    return urldefrag(urljoin(base, link))[0]
