"""The demo storefront: a small threaded HTTP shop served from a folder built by `sample_data`.

Pages are rendered once from the manifest and kept in memory, so the shop keeps up with a fast
crawler. What it serves (URLs relative to `StoreServer.url`):

- `/` home: links to every category node, `/new` (products without a category) and
  `/account/` (disallowed in robots.txt).
- `/c/<master>[/<sub>[/<article>]]?page=N`: listings, `per_page` products a page, with
  `<link rel="next">`, numbered page links and a plain "Load more" link.
- `/p/<slug>`: product pages. Mostly JSON-LD `Product` + `BreadcrumbList` (some in one
  `@graph`), some microdata, some OpenGraph-only, one malformed JSON-LD. Every page has
  `og:image` and a visible breadcrumb `Home > Master > Sub > Article` (the JSON-LD and microdata
  breadcrumbs leave out Home). Products without a category have no breadcrumb at all.
- `/images/<file>` with ETag and Last-Modified; conditional requests get 304.
- `/robots.txt` (Disallow: /account/, a Sitemap: line), `/sitemap.xml` (a sitemap index) ->
  `/sitemap-products-N.xml` (with `image:image`) and `/sitemap-categories.xml`.

With `shopify=True` it also answers like a Shopify shop: `/products.json?limit=&page=` and
product pages at `/products/<handle>` (the same pages).

`Faults` adds the misbehaving parts a crawler must survive; `StoreServer.faults_info` says where
they are.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import html
import json
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from catalog.errors import InvalidInput
from scraper.sample_data import load_manifest, slugify

HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
               "gif": "image/gif", "webp": "image/webp"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
INTERNAL_HOST = "127.0.0.2"
SAMPLE_STORE = Path(__file__).resolve().parent.parent / "data" / "sample-store"
DISALLOWED = "/account/"


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


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = HTML
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class StoreFacts:
    """The shop's contents as served: products by id, categories, image bytes by URL."""

    products: dict[str, dict[str, Any]]  # id -> url, title, sku, brand, price, category, image_urls
    category_counts: dict[str, int]
    uncategorised: list[str]  # ids of products without a category
    image_sha256: dict[str, str]  # image URL -> sha256 of the bytes (URLs answering 200)
    fixtures: dict[str, Any]  # the manifest's deliberate traps (product ids)
    faults: dict[str, dict[str, Any]]  # StoreServer.faults_info

    @property
    def unique_images(self) -> int:
        return len(set(self.image_sha256.values()))


# Products added by the faults: kind -> (id, title). None has a category.
FAULT_PRODUCTS = {
    "redirect_page": ("99001", "Partner Offer Gift Card"),
    "redirect_image": ("99002", "Partner Sunglasses"),
    "bomb": ("99003", "Giant Poster Print"),
    "html_as_image": ("99004", "Mystery Box Item"),
    "tracker": ("99005", "Tiny Pixel Keyring"),
    "hang": ("99006", "Slow Loris Socks"),
}


class Shop:
    """Routes and renders the storefront for one base URL."""

    def __init__(self, root: Path, manifest: dict[str, Any], base_url: str,
                 faults: Faults | None = None, internal_url: str = "",
                 shopify: bool = False) -> None:
        self.root = Path(root)
        self.shopify = shopify
        self.manifest = manifest
        self.base = base_url.rstrip("/")
        self.faults = faults
        self.internal_url = internal_url
        self.name = str(manifest.get("name") or "Demo Shop")
        self.per_page = int(manifest.get("per_page") or 24)
        self.chunk = int(manifest.get("sitemap_chunk") or 500)
        image_root = Path(str(manifest.get("image_root") or "images"))
        self.image_root = image_root if image_root.is_absolute() else self.root / image_root
        stamp = datetime.fromisoformat(str(manifest.get("last_modified") or
                                           "2024-01-01T00:00:00+00:00").replace("Z", "+00:00"))
        self.last_modified = stamp.timestamp()
        self.products: list[dict[str, Any]] = [dict(p) for p in manifest["products"]]
        self.faults_info: dict[str, dict[str, Any]] = {}
        self.special_images: dict[str, Response | Callable[[], Response]] = {}
        self.redirect_pages: dict[str, str] = {}
        self.slow_pages: set[str] = set()
        self.flaky_pages: set[str] = set()
        self.hang_pages: set[str] = set()
        if faults is not None:
            self._add_faults(faults)
        self.by_slug = {p["slug"]: p for p in self.products}
        self.nodes = self._category_tree()
        self._cache: dict[str, Response] = {}
        self._images: dict[str, Response] = {}

    # ---- the catalogue -------------------------------------------------------------------

    def _category_tree(self) -> dict[tuple[str, ...], list[dict[str, Any]]]:
        nodes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for p in self.products:
            parts = tuple(split_path(p.get("category")))
            for depth in range(1, len(parts) + 1):
                nodes.setdefault(parts[:depth], []).append(p)
        return dict(sorted(nodes.items()))

    def node_url(self, parts: tuple[str, ...]) -> str:
        return "/c/" + "/".join(slugify(x) for x in parts)

    def product_url(self, p: dict[str, Any]) -> str:
        return f"/p/{p['slug']}"

    def image_url(self, name: str) -> str:
        return f"/images/{name}"

    def uncategorised(self) -> list[dict[str, Any]]:
        return [p for p in self.products if not p.get("category")]

    # ---- routing -------------------------------------------------------------------------

    def respond(self, target: str, first_time: bool) -> Response:
        """The response for a request target (path and query)."""
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        if path.startswith("/images/"):
            return self.image(path[len("/images/"):])
        if path.startswith("/p/"):
            return self.product_response(path[3:], first_time)
        if self.shopify and path.startswith("/products/"):
            return self.product_response(path[len("/products/"):], first_time)
        if self.shopify and path == "/products.json":
            return self.shopify_json(query)
        page = _page_number(query)
        if page is None:
            return not_found()
        key = f"{path}?{page}"
        cached = self._cache.get(key)
        if cached is None:
            cached = self._render(path, page)
            if cached.status == 200 and path != "/lookbook":  # endless: never cache it
                self._cache[key] = cached
        return cached

    def _render(self, path: str, page: int) -> Response:
        if path == "/" and page == 1:
            return ok(self.home())
        if path == "/robots.txt":
            return ok(self.robots(), "text/plain; charset=utf-8")
        if path == "/sitemap.xml":
            return ok(self.sitemap_index(), XML)
        if path == "/sitemap-categories.xml":
            return ok(self.category_sitemap(), XML)
        found = re.fullmatch(r"/sitemap-products-(\d+)\.xml", path)
        if found:
            body = self.product_sitemap(int(found.group(1)))
            return ok(body, XML) if body else not_found()
        if path == "/new":
            return self.listing("New arrivals", (), self.uncategorised(), "/new", page)
        if path == DISALLOWED:
            return ok(page_html("My account", self.name, "<p>Please sign in.</p>"))
        if path == "/lookbook" and self.faults and self.faults.endless_pagination:
            return ok(self.lookbook(page))
        for parts, items in self.nodes.items():
            if self.node_url(parts) == path.rstrip("/"):
                return self.listing(parts[-1], parts, items, self.node_url(parts), page)
        return not_found()

    def product_response(self, slug: str, first_time: bool) -> Response:
        if slug in self.redirect_pages:
            return Response(302, b"", HTML, (("Location", self.redirect_pages[slug]),))
        if slug in self.flaky_pages and first_time:
            return Response(500, b"<h1>Internal Server Error</h1>")
        p = self.by_slug.get(slug)
        if p is None:
            return not_found()
        key = f"/p/{slug}"
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = ok(self.product_page(p))
        if slug in self.hang_pages and self.faults:
            return Response(cached.status, cached.body, delay=self.faults.hang_seconds)
        if slug in self.slow_pages and self.faults:
            return Response(cached.status, cached.body, delay=self.faults.slow_delay)
        return cached

    def image(self, name: str) -> Response:
        special = self.special_images.get(name)
        if callable(special):  # built on first use (the bomb takes a moment)
            special = self.special_images[name] = special()
        if special is not None:
            return special
        cached = self._images.get(name)
        if cached is not None:
            return cached
        path = self.image_root / name
        if not SAFE_NAME.match(name) or not path.is_file():
            return not_found()
        data = path.read_bytes()
        etag = '"' + hashlib.sha1(data).hexdigest()[:20] + '"'
        ctype = IMAGE_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
        headers = (("ETag", etag),
                   ("Last-Modified", email.utils.formatdate(self.last_modified, usegmt=True)),
                   ("Cache-Control", "public, max-age=86400"))
        cached = self._images[name] = Response(200, data, ctype, headers)
        return cached

    # ---- pages ---------------------------------------------------------------------------

    def menu(self) -> str:
        items = []
        for parts in self.nodes:
            if len(parts) <= 2:
                cls = "top" if len(parts) == 1 else "sub"
                items.append(f'<li class="{cls}"><a href="{self.node_url(parts)}">'
                             f"{esc(parts[-1])}</a></li>")
        items.append('<li class="top"><a href="/new">New arrivals</a></li>')
        return '<nav class="menu"><ul>' + "".join(items) + "</ul></nav>"

    def home(self) -> str:
        cards = "".join(self.card(p) for p in self.products[:12])
        extra = ""
        if self.faults and self.faults.endless_pagination:
            extra = '<p><a href="/lookbook">Lookbook</a></p>'
        body = (f"{self.menu()}<h1>Welcome to {esc(self.name)}</h1>"
                f'<p><a href="{DISALLOWED}">My account</a></p>{extra}'
                f'<section class="featured"><h2>Featured</h2><ul class="grid">{cards}</ul>'
                "</section>")
        return page_html(self.name, self.name, body)

    def card(self, p: dict[str, Any]) -> str:
        img = ""
        if p["images"]:
            img = (f'<img src="{self.image_url(p["images"][0])}" alt="{esc(p["title"])}" '
                   'loading="lazy" width="128" height="128">')
        return (f'<li class="product-card"><a href="{self.product_url(p)}">{img}'
                f'<span class="title">{esc(p["title"])}</span></a>'
                f'<span class="price">€{p["price"]:.2f}</span></li>')

    def listing(self, title: str, parts: tuple[str, ...], items: list[dict[str, Any]],
                url: str, page: int) -> Response:
        pages = max(1, -(-len(items) // self.per_page))
        if page > pages:
            return not_found()
        shown = items[(page - 1) * self.per_page: page * self.per_page]
        children = [c for c in self.nodes if len(c) == len(parts) + 1 and c[:len(parts)] == parts]
        if not parts:
            children = []
        sub = "".join(f'<li><a href="{self.node_url(c)}">{esc(c[-1])}</a></li>' for c in children)
        head = [f'<link rel="canonical" href="{self.base}{page_link(url, page)}">']
        if page > 1:
            head.append(f'<link rel="prev" href="{page_link(url, page - 1)}">')
        if page < pages:
            head.append(f'<link rel="next" href="{page_link(url, page + 1)}">')
        body = (f"{self.menu()}{self.breadcrumb_nav(parts)}<h1>{esc(title)}</h1>"
                f'<ul class="subcategories">{sub}</ul>'
                f'<ul class="grid">{"".join(self.card(p) for p in shown)}</ul>'
                f"{pagination(url, page, pages)}")
        return ok(page_html(f"{title} | {self.name}", self.name, body, "".join(head)))

    def lookbook(self, page: int) -> str:
        """Endless pagination: every page has a next page and the same few products."""
        cards = "".join(self.card(p) for p in self.products[:4])
        head = f'<link rel="next" href="/lookbook?page={page + 1}">'
        body = (f"<h1>Lookbook, page {page}</h1><ul class=\"grid\">{cards}</ul>"
                f'<a class="load-more" rel="next" href="/lookbook?page={page + 1}">Load more</a>')
        return page_html(f"Lookbook {page}", self.name, body, head)

    def breadcrumb_nav(self, parts: tuple[str, ...], microdata: bool = False) -> str:
        items = ['<li><a href="/">Home</a></li>']
        for depth in range(1, len(parts) + 1):
            link = f'{self.node_url(parts[:depth])}'
            name = esc(parts[depth - 1])
            if microdata:
                items.append(
                    '<li itemprop="itemListElement" itemscope '
                    'itemtype="https://schema.org/ListItem">'
                    f'<a itemprop="item" href="{self.base}{link}"><span itemprop="name">{name}'
                    f'</span></a><meta itemprop="position" content="{depth}"></li>')
            else:
                items.append(f'<li><a href="{link}">{name}</a></li>')
        scope = ' itemscope itemtype="https://schema.org/BreadcrumbList"' if microdata else ""
        return (f'<nav class="breadcrumb" aria-label="Breadcrumb"><ol{scope}>{"".join(items)}'
                "</ol></nav>")

    def product_page(self, p: dict[str, Any]) -> str:
        parts = tuple(split_path(p.get("category")))
        markup = p.get("markup", "jsonld")
        images = [f"{self.base}{self.image_url(n)}" for n in p["images"]]
        head = [f'<link rel="canonical" href="{self.base}{self.product_url(p)}">',
                '<meta property="og:type" content="product">',
                f'<meta property="og:title" content="{esc(p["title"])}">',
                f'<meta property="og:url" content="{self.base}{self.product_url(p)}">',
                f'<meta property="product:price:amount" content="{p["price"]:.2f}">',
                f'<meta property="product:price:currency" content="{p["currency"]}">']
        head += [f'<meta property="og:image" content="{u}">' for u in images]
        if markup == "opengraph" and parts:
            head.append(f'<meta property="product:category" content="{esc(join_path(parts))}">')
        if markup in ("jsonld", "graph"):
            head.append(self.jsonld(p, parts, images, graph=markup == "graph"))
        elif markup == "jsonld-malformed":
            head.append(malformed_jsonld(p, images))
        # A product outside every category has no trail at all (not even Home).
        crumbs = self.breadcrumb_nav(parts, microdata=markup == "microdata") if parts else ""
        body = (f"{self.menu()}{crumbs}"
                f"<main>{self.product_block(p, images, markup == 'microdata')}"
                f"{self.related(p, parts)}</main>")
        return page_html(f"{p['title']} | {self.name}", self.name, body, "".join(head))

    def product_block(self, p: dict[str, Any], images: list[str], microdata: bool) -> str:
        def prop(name: str) -> str:
            return f' itemprop="{name}"' if microdata else ""

        scope = ' itemscope itemtype="https://schema.org/Product"' if microdata else ""
        offer = ' itemscope itemtype="https://schema.org/Offer"' if microdata else ""
        links = "".join(f'<link itemprop="image" href="{u}">' for u in images) if microdata else ""
        currency = f'<meta itemprop="priceCurrency" content="{p["currency"]}">' if microdata else ""
        return (f'<div class="product"{scope}>{links}<h1{prop("name")}>{esc(p["title"])}</h1>'
                f'<div class="gallery">{self.img_tag(p)}</div>'
                f'<p class="brand">Brand: <span{prop("brand")}>{esc(p["brand"])}</span></p>'
                f'<p class="sku">SKU: <span{prop("sku")}>{esc(p["sku"])}</span></p>'
                f'<p class="price"{prop("offers")}{offer}>{currency}'
                f'<span{prop("price")} content="{p["price"]:.2f}">€{p["price"]:.2f}</span></p>'
                '<button type="button">Add to cart</button></div>')

    def img_tag(self, p: dict[str, Any]) -> str:
        if not p["images"]:
            return ""
        full = self.image_url(p["images"][0])
        alt = esc(p["title"])
        style = p.get("img", "src")
        thumb = self.image_url(p["thumb"]) if p.get("thumb") else full
        srcset = f"{thumb} 64w, {full} 128w"
        if style == "srcset":
            return (f'<img src="{thumb}" srcset="{srcset}" '
                    f'sizes="(min-width: 600px) 128px, 64px" alt="{alt}">')
        if style == "data-src":
            return f'<img class="lazy" src="{PLACEHOLDER}" data-src="{full}" alt="{alt}">'
        if style == "data-srcset":
            return f'<img class="lazyload" src="{PLACEHOLDER}" data-srcset="{srcset}" alt="{alt}">'
        if style == "data-original":
            return f'<img class="lazy" src="{PLACEHOLDER}" data-original="{full}" alt="{alt}">'
        return f'<img src="{full}" alt="{alt}" width="128" height="128">'

    def related(self, p: dict[str, Any], parts: tuple[str, ...]) -> str:
        if not parts:
            return ""
        siblings = [q for q in self.nodes[parts] if q is not p][:4]
        links = "".join(f'<li><a href="{self.product_url(q)}">{esc(q["title"])}</a></li>'
                        for q in siblings)
        return f'<section class="related"><h2>You may also like</h2><ul>{links}</ul></section>'

    def jsonld(self, p: dict[str, Any], parts: tuple[str, ...], images: list[str],
               graph: bool) -> str:
        """Plain pages: one script per type. @graph pages write it the other common way: an
        http context, a single image as a string, offers as a list, crumbs as {"@id": url}."""
        url = f"{self.base}{self.product_url(p)}"
        offer = {"@type": "Offer", "price": f"{p['price']:.2f}", "priceCurrency": p["currency"],
                 "availability": "https://schema.org/InStock", "url": url}
        product: dict[str, Any] = {
            "@type": "Product",
            "name": p["title"],
            "sku": p["sku"],
            "productID": p["id"],
            "brand": {"@type": "Brand", "name": p["brand"]},
            "image": images[0] if graph and len(images) == 1 else images,
            "url": url,
            "offers": [offer] if graph else offer,
        }
        crumbs = {
            "@type": "BreadcrumbList",
            "itemListElement": [
                {"@type": "ListItem", "position": i + 1, "name": name,
                 "item": {"@id": link} if graph else link}
                for i, name in enumerate(parts)
                for link in [f"{self.base}{self.node_url(parts[: i + 1])}"]
            ],
        }
        docs: list[dict[str, Any]] = [product] + ([crumbs] if parts else [])
        if graph:
            return ld_script({"@context": "http://schema.org", "@graph": docs})
        return "".join(ld_script({"@context": "https://schema.org", **d}) for d in docs)

    def shopify_json(self, query: dict[str, list[str]]) -> Response:
        """Shopify's public /products.json: ?limit (<= 250, default 30) and ?page; an empty
        list past the end. The category path is the product_type."""
        page, limit_raw = _page_number(query), query.get("limit", ["30"])[-1]
        if page is None or not limit_raw.isdigit():
            return Response(400, b'{"errors": "bad page or limit"}', "application/json")
        limit = max(1, min(250, int(limit_raw)))
        chunk = self.products[(page - 1) * limit: page * limit]
        items = [self.shopify_item(p) for p in chunk]
        return ok(json.dumps({"products": items}), "application/json; charset=utf-8")

    def shopify_item(self, p: dict[str, Any]) -> dict[str, Any]:
        stamp = email_iso(self.last_modified)
        number = int(p["id"]) if str(p["id"]).isdigit() else p["id"]
        return {
            "id": number, "title": p["title"], "handle": p["slug"], "body_html": "",
            "vendor": p["brand"], "product_type": p.get("category") or "", "tags": [],
            "created_at": stamp, "updated_at": stamp, "published_at": stamp,
            "variants": [{"id": number, "title": "Default Title", "sku": p["sku"],
                          "price": f"{p['price']:.2f}", "available": True}],
            "images": [{"id": i + 1, "position": i + 1,
                        "src": f"{self.base}{self.image_url(n)}"}
                       for i, n in enumerate(p["images"])],
        }

    def robots(self) -> str:
        return (f"User-agent: *\nDisallow: {DISALLOWED}\n\nSitemap: {self.base}/sitemap.xml\n")

    def sitemap_index(self) -> str:
        n = max(1, -(-len(self.products) // self.chunk))
        entries = [f"{self.base}/sitemap-products-{i}.xml" for i in range(1, n + 1)]
        entries.append(f"{self.base}/sitemap-categories.xml")
        lastmod = email_iso(self.last_modified)
        items = "".join(f"<sitemap><loc>{u}</loc><lastmod>{lastmod}</lastmod></sitemap>"
                        for u in entries)
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"{items}</sitemapindex>\n")

    def product_sitemap(self, number: int) -> str:
        chunk = self.products[(number - 1) * self.chunk: number * self.chunk]
        if not chunk or number < 1:
            return ""
        lastmod = email_iso(self.last_modified)
        urls = []
        for p in chunk:
            imgs = "".join(f"<image:image><image:loc>{self.base}{self.image_url(n)}</image:loc>"
                           "</image:image>" for n in p["images"])
            urls.append(f"<url><loc>{self.base}{self.product_url(p)}</loc>"
                        f"<lastmod>{lastmod}</lastmod>{imgs}</url>")
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
                'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">'
                f'{"".join(urls)}</urlset>\n')

    def category_sitemap(self) -> str:
        urls = "".join(f"<url><loc>{self.base}{self.node_url(parts)}</loc></url>"
                       for parts in self.nodes)
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{self.base}/</loc></url>{urls}</urlset>\n")

    # ---- faults --------------------------------------------------------------------------

    def _add_faults(self, faults: Faults) -> None:
        labelled = [p for p in self.products if p.get("category") and p["images"]]
        if faults.slow_delay > 0 and faults.slow_every > 0 and labelled:
            self.slow_pages = {p["slug"] for p in labelled[:: faults.slow_every]}
            self.faults_info["slow"] = {"slugs": sorted(self.slow_pages),
                                        "delay": faults.slow_delay}
        if faults.flaky_500 and labelled:
            flaky = labelled[1 % len(labelled)]
            self.flaky_pages = {flaky["slug"]}
            self.faults_info["flaky_500"] = self._info(flaky, "500 on the first request, then 200")
        if faults.endless_pagination:
            self.faults_info["endless_pagination"] = {"url": f"{self.base}/lookbook",
                                                      "expect": "page N links to N+1 forever"}
        specials: dict[str, tuple[str, Response | Callable[[], Response], str]] = {}
        internal = self.internal_url or f"http://{INTERNAL_HOST}"
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
                page_html("Error", self.name, "<h1>Service unavailable</h1>"), "image/jpeg"),
                "HTML page served as image/jpeg")
        if faults.tracker:
            specials["tracker"] = ("pixel-99005.gif", ok(tracker_gif(), "image/gif"),
                                   "a 1x1 GIF")
        if faults.hang_seconds > 0:
            specials["hang"] = ("", ok(""), f"page answers after {faults.hang_seconds} s")
        for kind, (image, response, expect) in specials.items():
            self._add_fault_product(kind, image, response, expect, internal)

    def _add_fault_product(self, kind: str, image: str,
                           response: Response | Callable[[], Response], expect: str,
                           internal: str) -> None:
        pid, title = FAULT_PRODUCTS[kind]
        p: dict[str, Any] = {
            "id": pid, "sku": f"SC-{pid}", "slug": f"{slugify(title)}-{pid}", "title": title,
            "brand": "Slashcat", "price": 9.99, "currency": "EUR", "category": None,
            "images": [image] if image else [], "markup": "jsonld", "img": "src", "thumb": None}
        self.products.append(p)
        if kind == "redirect_page":
            self.redirect_pages[p["slug"]] = f"{internal}/internal/admin"
        elif kind == "hang":
            self.hang_pages.add(p["slug"])
        else:
            self.special_images[image] = response
        self.faults_info[kind] = self._info(p, expect)

    def _info(self, p: dict[str, Any], expect: str) -> dict[str, Any]:
        return {"product_id": p["id"], "url": f"{self.base}{self.product_url(p)}",
                "image_urls": [f"{self.base}{self.image_url(n)}" for n in p["images"]],
                "expect": expect}


# ---- small helpers -------------------------------------------------------------------------


def split_path(path: str | None) -> list[str]:
    return [x.strip() for x in (path or "").split(">") if x.strip()]


def join_path(parts: tuple[str, ...] | list[str]) -> str:
    return " > ".join(parts)


def esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def ld_script(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, indent=1).replace("</", "<\\/")
    return f'<script type="application/ld+json">{text}</script>'


def malformed_jsonld(p: dict[str, Any], images: list[str]) -> str:
    """JSON-LD as some shops ship it: a stray comma and an unclosed object."""
    image = json.dumps(images)
    return ('<script type="application/ld+json">{"@context": "https://schema.org", '
            f'"@type": "Product", "name": {json.dumps(p["title"])},, "image": {image}, '
            f'"offers": {{"@type": "Offer", "price": "{p["price"]:.2f}"</script>')


def page_html(title: str, shop: str, body: str, head: str = "") -> str:
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'{head}</head><body><header><a class="logo" href="/">{esc(shop)}</a></header>'
            f"{body}<footer><p>Demo shop for slashcat. Product data: Fashion Product Images "
            "(Small), Param Aggarwal, MIT licence.</p></footer></body></html>\n")


def page_link(url: str, page: int) -> str:
    return url if page == 1 else f"{url}?page={page}"


def pagination(url: str, page: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = []
    for n in range(1, pages + 1):
        if n == page:
            links.append(f'<li><span aria-current="page">{n}</span></li>')
        else:
            links.append(f'<li><a href="{page_link(url, n)}">{n}</a></li>')
    more = ""
    if page < pages:
        more = f'<a class="load-more" href="{page_link(url, page + 1)}">Load more</a>'
    return f'<nav class="pagination"><ol>{"".join(links)}</ol>{more}</nav>'


def _page_number(query: dict[str, list[str]]) -> int | None:
    raw = query.get("page", ["1"])[-1]
    return int(raw) if raw.isdigit() and int(raw) >= 1 else None


def email_iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def ok(body: str | bytes, content_type: str = HTML) -> Response:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Response(200, data, content_type)


def not_found() -> Response:
    return Response(404, page_html("Not found", "Demo Shop", "<h1>Page not found</h1>").encode())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


_BOMB: list[bytes] = []


def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side white pixels: ~50 KB that decodes to 400 megapixels."""
    if not _BOMB:
        row = b"\x00" + b"\xff" * ((side + 7) // 8)
        raw = zlib.compress(row * side, 9)
        ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
        _BOMB.append(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))
    return _BOMB[0]


def tracker_gif() -> bytes:
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
            b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


# ---- the HTTP server ----------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SlashcatDemoShop/1.0"
    timeout = 30  # idle keep-alive connections close
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        owner: StoreServer = self.server.owner  # type: ignore[attr-defined]
        first = owner._count(self.path)
        response = owner.shop.respond(self.path, first)
        if response.delay and owner._stopping.wait(response.delay):
            self.close_connection = True
            return
        status = response.status
        if status == 200 and _not_modified(self.headers, response, owner.shop.last_modified):
            status = 304
        owner._log(self.command, self.path, status, self.headers)
        self.send_response(status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        body = b"" if status == 304 else response.body
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the counters record requests; a library prints nothing


class _InternalHandler(BaseHTTPRequestHandler):
    """Stands for an internal service at 127.0.0.2; any request to it is a guard failure."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        owner: StoreServer = self.server.owner  # type: ignore[attr-defined]
        with owner._lock:
            owner.internal_hits[self.path] += 1
        body = b"internal secret"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _not_modified(headers: Any, response: Response, last_modified: float) -> bool:
    etag = dict(response.headers).get("ETag")
    if etag is None:
        return False
    inm = headers.get("If-None-Match")
    if inm is not None:
        return inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]
    ims = headers.get("If-Modified-Since")
    if ims:
        try:
            return email.utils.parsedate_to_datetime(ims).timestamp() >= int(last_modified)
        except (TypeError, ValueError):
            return False
    return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections, so a stopped shop answers nobody."""
        with self.connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep errors (clients that hang up are normal) instead of printing them."""
        import sys

        exc = sys.exc_info()[1]
        owner = getattr(self, "owner", None)
        if owner is not None and exc is not None and not isinstance(exc, ConnectionError):
            with owner._lock:
                owner.errors.append(repr(exc))


class StoreServer:
    """Serve a storefront folder on a local port (port 0 picks a free one).

    Use as a context manager, or call start()/stop(). `hits` counts requests per target
    (path and query); `internal_hits` counts requests that reached the 127.0.0.2 "internal
    service" (with faults on); `faults_info` says where each fault lives.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, shopify: bool = False) -> None:
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.faults = faults
        self.hits: Counter[str] = Counter()
        self.internal_hits: Counter[str] = Counter()
        self.log: list[tuple[str, str, int, str | None]] = []
        self.errors: list[str] = []  # unexpected exceptions in handlers
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        try:
            self._httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.host, self.port = self._httpd.socket.getsockname()[:2]
        self._internal: _Server | None = None
        internal_url = ""
        if faults is not None and faults.redirect_internal:
            try:
                self._internal = _internal_server(self.port)
            except OSError as exc:
                self._httpd.server_close()
                raise InvalidInput(f"cannot listen on {INTERNAL_HOST} for the redirect fault "
                                   f"({exc.strerror or exc}); use redirect_internal=False") from exc
            self._internal.owner = self  # type: ignore[attr-defined]
            internal_url = f"http://{INTERNAL_HOST}:{self._internal.socket.getsockname()[1]}"
        self.internal_url = internal_url
        self.shop = Shop(self.root, self.manifest, self.url, faults, internal_url, shopify)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def faults_info(self) -> dict[str, dict[str, Any]]:
        return self.shop.faults_info

    @property
    def products(self) -> list[dict[str, Any]]:
        """Every product served, fault products included."""
        return self.shop.products

    def facts(self) -> StoreFacts:
        """What a perfect crawl of this shop finds, for tests to compare against."""
        shop = self.shop
        products: dict[str, dict[str, Any]] = {}
        shas: dict[str, str] = {}
        for p in shop.products:
            urls = [f"{self.url}{shop.image_url(n)}" for n in p["images"]]
            products[p["id"]] = {
                "url": f"{self.url}{shop.product_url(p)}", "title": p["title"], "sku": p["sku"],
                "brand": p["brand"], "price": p["price"], "category": p.get("category"),
                "image_urls": urls,
            }
            for name, url in zip(p["images"], urls, strict=True):
                response = shop.image(name)
                if response.status == 200 and name not in shop.special_images:
                    shas[url] = hashlib.sha256(response.body).hexdigest()
        counts = Counter(p["category"] for p in products.values() if p["category"])
        return StoreFacts(
            products=products,
            category_counts=dict(sorted(counts.items())),
            uncategorised=sorted(k for k, p in products.items() if not p["category"]),
            image_sha256=shas,
            fixtures=dict(self.manifest.get("fixtures") or {}),
            faults=self.faults_info,
        )

    def start(self) -> StoreServer:
        for httpd in (self._httpd, self._internal):
            if httpd is not None:
                thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                          daemon=True, name=f"storefront-{httpd.server_address}")
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for httpd in (self._httpd, self._internal):
            if httpd is not None:
                if self._threads:
                    httpd.shutdown()
                httpd.server_close()
                httpd.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> StoreServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, target: str) -> int:
        """Requests for a path (with its query, if any); a full URL is accepted too."""
        parts = urlsplit(target)
        key = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            return self.hits[key]

    def reset(self) -> None:
        """Forget requests (the flaky page fails again on its next request)."""
        with self._lock:
            self.hits.clear()
            self.internal_hits.clear()
            self.log.clear()

    def _count(self, target: str) -> bool:
        """Count a request; True if it is the first for this target."""
        with self._lock:
            self.hits[target] += 1
            return self.hits[target] == 1

    def _log(self, method: str, target: str, status: int, headers: Any) -> None:
        with self._lock:
            self.log.append((method, target, status, headers.get("User-Agent")))


def _internal_server(port: int) -> _Server:
    """Listen on 127.0.0.2, on the shop's port if free (so only the host differs)."""
    try:
        server = _Server((INTERNAL_HOST, port), _InternalHandler)
    except OSError:
        server = _Server((INTERNAL_HOST, 0), _InternalHandler)
    return server
