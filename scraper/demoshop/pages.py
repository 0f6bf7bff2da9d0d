"""The demo shop's pages: routes and HTML, rendered once from the manifest and kept in memory.

What it serves (URLs relative to the shop's base URL):

- `/` home: links to every category node, `/new` (products without a category) and
  `/account/` (disallowed in robots.txt).
- `/c/<master>[/<sub>[/<article>]]?page=N`: listings, `per_page` products a page, with
  `<link rel="next">`, numbered page links and a plain "Load more" link.
- `/p/<slug>`: product pages. Mostly JSON-LD `Product` + `BreadcrumbList` (some in one
  `@graph`), some microdata, some OpenGraph-only, one malformed JSON-LD. Every page has
  `og:image` and a visible breadcrumb `Home > Master > Sub > Article` (the JSON-LD and microdata
  breadcrumbs leave out Home). Products without a category have no breadcrumb at all.
- `/images/<file>`: files of the image folder (served by the server with ETag and 304), or
  the faults' special images.
- `/robots.txt` (Disallow: /account/, a Sitemap: line), `/sitemap.xml` (a sitemap index) ->
  `/sitemap-products-N.xml` (with `image:image`) and `/sitemap-categories.xml`.

With `shopify=True` it also answers like a Shopify shop: `/products.json?limit=&page=` and
product pages at `/products/<handle>` (the same pages).
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from scraper.demoshop.sample import slugify

if TYPE_CHECKING:
    from scraper.demoshop.faults import Faults

HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
DISALLOWED = "/account/"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = HTML
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


class ShopPages:
    """Routes and renders the demo shop for one base URL."""

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
            from scraper.demoshop.faults import add_faults

            add_faults(self, faults)
        self.by_slug = {p["slug"]: p for p in self.products}
        self.nodes = self._category_tree()
        self._cache: dict[str, Response] = {}

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

    def respond(self, target: str, first_time: bool) -> Response | None:
        """The response for a request target (path and query); None: serve the image file."""
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

    def image(self, name: str) -> Response | None:
        """A fault's special image, 404 for an unsafe name, None for a file to serve."""
        special = self.special_images.get(name)
        if callable(special):  # built on first use (the bomb takes a moment)
            special = self.special_images[name] = special()
        if special is not None:
            return special
        return None if SAFE_NAME.match(name) else not_found()

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

