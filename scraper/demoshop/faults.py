"""The demo shop's misbehaving parts, switched on by `Faults`: what a crawler must survive."""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scraper.demoshop.pages import HTML, Response, ok, page_html
from scraper.demoshop.sample import slugify

if TYPE_CHECKING:
    from scraper.demoshop.pages import ShopPages

INTERNAL_HOST = "127.0.0.2"


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to switch on; the defaults switch everything on."""

    slow_delay: float = 0.3  # seconds added to every `slow_every`-th product page
    slow_every: int = 10
    flaky_500: bool = True  # one product page answers 500 to its first request
    redirect_internal: bool = True  # a product page and an image redirect to 127.0.0.2
    bomb: bool = True  # an image whose header claims 20000x20000 pixels
    endless_pagination: bool = True  # /lookbook?page=N links to N+1 forever
    html_as_image: bool = True  # an HTML error page served as image/jpeg
    tracker: bool = True  # a product whose image is a 1x1 GIF
    hang_seconds: float = 5.0  # a product page that answers this late; 0 = off


# Products added by the faults: kind -> (id, title). None has a category.
FAULT_PRODUCTS = {
    "redirect_page": ("99001", "Partner Offer Gift Card"),
    "redirect_image": ("99002", "Partner Sunglasses"),
    "bomb": ("99003", "Giant Poster Print"),
    "html_as_image": ("99004", "Mystery Box Item"),
    "tracker": ("99005", "Tiny Pixel Keyring"),
    "hang": ("99006", "Slow Loris Socks"),
}


def add_faults(shop: ShopPages, faults: Faults) -> None:
    """Add the fault products to a shop and note where each fault lives."""
    labelled = [p for p in shop.products if p.get("category") and p["images"]]
    if faults.slow_delay > 0 and faults.slow_every > 0 and labelled:
        shop.slow_pages = {p["slug"] for p in labelled[:: faults.slow_every]}
        shop.faults_info["slow"] = {"slugs": sorted(shop.slow_pages),
                                    "delay": faults.slow_delay}
    if faults.flaky_500 and labelled:
        flaky = labelled[1 % len(labelled)]
        shop.flaky_pages = {flaky["slug"]}
        shop.faults_info["flaky_500"] = _info(shop, flaky, "500 on the first request, then 200")
    if faults.endless_pagination:
        shop.faults_info["endless_pagination"] = {"url": f"{shop.base}/lookbook",
                                                  "expect": "page N links to N+1 forever"}
    specials: dict[str, tuple[str, Response | Callable[[], Response], str]] = {}
    internal = shop.internal_url or f"http://{INTERNAL_HOST}"
    if faults.redirect_internal:
        specials["redirect_page"] = ("", ok(""), "page 302 to a 127.0.0.2 address")
        specials["redirect_image"] = ("redirect-99002.jpg", Response(
            302, b"", HTML, (("Location", f"{internal}/internal/secret.jpg"),)),
            "image 302 to a 127.0.0.2 address")
    if faults.bomb:
        specials["bomb"] = ("bomb-99003.png", lambda: ok(bomb_png(), "image/png"),
                            "header claims 20000x20000 pixels")
    if faults.html_as_image:
        specials["html_as_image"] = ("error-99004.jpg", ok(
            page_html("Error", shop.name, "<h1>Service unavailable</h1>"), "image/jpeg"),
            "HTML page served as image/jpeg")
    if faults.tracker:
        specials["tracker"] = ("pixel-99005.gif", ok(tracker_gif(), "image/gif"),
                               "a 1x1 GIF")
    if faults.hang_seconds > 0:
        specials["hang"] = ("", ok(""), f"page answers after {faults.hang_seconds} s")
    for kind, (image, response, expect) in specials.items():
        _add_fault_product(shop, kind, image, response, expect, internal)

def _add_fault_product(shop: ShopPages, kind: str, image: str,
                       response: Response | Callable[[], Response], expect: str,
                       internal: str) -> None:
    pid, title = FAULT_PRODUCTS[kind]
    p: dict[str, Any] = {
        "id": pid, "sku": f"SC-{pid}", "slug": f"{slugify(title)}-{pid}", "title": title,
        "brand": "Slashcat", "price": 9.99, "currency": "EUR", "category": None,
        "images": [image] if image else [], "markup": "jsonld", "img": "src", "thumb": None}
    shop.products.append(p)
    if kind == "redirect_page":
        shop.redirect_pages[p["slug"]] = f"{internal}/internal/admin"
    elif kind == "hang":
        shop.hang_pages.add(p["slug"])
    else:
        shop.special_images[image] = response
    shop.faults_info[kind] = _info(shop, p, expect)


def _info(shop: ShopPages, p: dict[str, Any], expect: str) -> dict[str, Any]:
    return {"product_id": p["id"], "url": f"{shop.base}{shop.product_url(p)}",
            "image_urls": [f"{shop.base}{shop.image_url(n)}" for n in p["images"]],
            "expect": expect}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@functools.cache
def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side white pixels: ~75 KB that decodes to 400 megapixels."""
    row = b"\x00" + b"\xff" * ((side + 7) // 8)
    raw = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))


def tracker_gif() -> bytes:
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
            b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

