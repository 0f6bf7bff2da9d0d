"""The storefront spider: sitemaps, listings with pagination, product pages, Shopify JSON.

Imported only when crawling. It yields ProductItem; the pipelines fetch images and store.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import scrapy
from scrapy.exceptions import CloseSpider, IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from scraper.extract import ProductData, extract_page
from scraper.extraction.platforms import PRODUCT_APIS
from scraper.items import ProductItem

SITEMAP_PRIORITY, PRODUCT_PRIORITY, PAGINATION_PRIORITY, PAGE_PRIORITY = 30, 20, 5, 0
PAGINATION_KEYS = re.compile(r"(^|&)(page|p|pg|start|offset)=\d+", re.I)
SITEMAP_MAX_BYTES = 50 * 1024 * 1024
IMAGE_NS = "{http://www.google.com/schemas/sitemap-image/1.1}"


def listing_key(url: str) -> str:
    """The listing a paginated URL belongs to: the URL without its page number."""
    parts = urlsplit(url)
    query = "&".join(q for q in parts.query.split("&") if not PAGINATION_KEYS.match("&" + q))
    path = re.sub(r"/page/\d+/?$", "", parts.path)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class StoreSpider(scrapy.Spider):
    name = "slashcat"

    def __init__(self, start_url: str, context: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = start_url
        self.context = context
        self.report = context.report
        opts = context.options
        host = urlsplit(start_url).hostname or ""
        self.allowed_domains = [host, *opts.allow_domains]
        self.origin = f"{urlsplit(start_url).scheme}://{urlsplit(start_url).netloc}"
        self.max_products = opts.max_products
        self.max_listing_pages = opts.max_listing_pages
        self.products_seen: set[str] = set()
        self.links_seen: set[str] = set()
        self.listing_links: dict[str, set[str]] = {}
        self.sitemap_images: dict[str, list[str]] = {}
        self.apis_asked: set[str] = set()  # a platform's API is asked once, when a page shows it

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> StoreSpider:
        from scrapy import signals

        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.opened, signal=signals.spider_opened)
        return spider

    def opened(self) -> None:
        # The crawl's counters live in Scrapy's stats collector while it runs (scraper.report).
        self.report.bind(self.crawler.stats)

    # ---- starting points -----------------------------------------------------------------

    async def start(self) -> AsyncIterator[Any]:
        probe = {"slashcat_probe": True}
        yield scrapy.Request(self.start_url, self.parse_page, priority=PAGE_PRIORITY,
                             errback=self.failed)
        yield scrapy.Request(f"{self.origin}/robots.txt", self.parse_robots, meta=probe,
                             priority=SITEMAP_PRIORITY, errback=self.failed)
        yield scrapy.Request(f"{self.origin}/sitemap.xml", self.parse_sitemap, meta=probe,
                             priority=SITEMAP_PRIORITY, errback=self.failed)
        if self.context.options.shopify:
            self.apis_asked.add("shopify")
            yield self.api_request("shopify", 1)

    def api_request(self, platform: str, page: int) -> scrapy.Request:
        """A page of the shop platform's own product API (Shopify, WooCommerce)."""
        api = PRODUCT_APIS[platform]
        return scrapy.Request(
            self.origin + api.path.format(size=api.page_size, page=page), self.parse_api,
            meta={"slashcat_probe": True, "api": platform, "api_page": page},
            priority=SITEMAP_PRIORITY, errback=self.failed,
        )

    # ---- callbacks -----------------------------------------------------------------------

    def parse_robots(self, response: Response) -> Iterator[scrapy.Request]:
        from scrapy.utils.sitemap import sitemap_urls_from_robots

        self.report.add(pages=1)
        for url in sitemap_urls_from_robots(response.body, base_url=response.url):
            yield scrapy.Request(url, self.parse_sitemap, priority=SITEMAP_PRIORITY,
                                 errback=self.failed, meta={"slashcat_probe": True})

    def parse_sitemap(self, response: Response) -> Iterator[scrapy.Request]:
        body = response.body
        if body[:2] == b"\x1f\x8b":  # a .xml.gz file (not transfer-encoded)
            from scrapy.utils.gz import gunzip

            try:
                body = gunzip(body, max_size=SITEMAP_MAX_BYTES)
            except Exception:  # not gzip after all, or too big
                self.report.error(f"unreadable sitemap {response.url}")
                return
        sitemap = read_sitemap(body)
        if sitemap is None or sitemap.type not in ("urlset", "sitemapindex"):
            return
        self.report.add(pages=1)
        locs = [entry["loc"] for entry in sitemap if entry.get("loc")]
        if sitemap.type == "sitemapindex":
            for url in locs:
                yield scrapy.Request(url, self.parse_sitemap, priority=SITEMAP_PRIORITY,
                                     errback=self.failed, meta={"slashcat_probe": True})
            return
        self.sitemap_images.update(sitemap_image_hints(body))
        yield from self.follow(locs, PRODUCT_PRIORITY)

    def parse_api(self, response: Response) -> Iterator[Any]:
        api = PRODUCT_APIS[response.meta["api"]]
        products = api.parse(response.body, self.origin)
        if not products:
            return
        self.report.add(pages=1)
        for product in products:
            item = self.product_item(product)
            if item is None:
                return
            yield item
        page = response.meta["api_page"]
        if len(products) >= api.page_size and page < 400:
            yield self.api_request(response.meta["api"], page + 1)

    def parse_page(self, response: Response) -> Iterator[Any]:
        if not _is_html(response):
            return
        self.report.add(pages=1)
        page = extract_page(response.selector.root, response.url)
        for problem in page.problems:
            self.logger.debug("%s: %s", response.url, problem)
        if page.platform and page.platform not in self.apis_asked:
            self.apis_asked.add(page.platform)
            if page.platform in PRODUCT_APIS:
                yield self.api_request(page.platform, 1)
        if page.product is not None:
            item = self.product_item(page.product)
            if item is not None:
                yield item
        yield from self.follow(page.links.products, PRODUCT_PRIORITY)
        new = self.count_new_links(response.url, page.links.products + page.links.other)
        yield from self.follow(page.links.other, PAGE_PRIORITY)
        depth = int(response.meta.get("listing_page", 1))
        if new and depth < self.max_listing_pages:
            yield from self.follow(page.links.pagination, PAGINATION_PRIORITY,
                                   {"listing_page": depth + 1})

    def failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        if failure.check(IgnoreRequest) and not failure.check(HttpError):
            # robots.txt, off-site or the address guard (which counts its own): not an error,
            # but if it is the start page the user should hear why nothing was crawled.
            if request.url == self.start_url:
                self.report.start_error = f"{request.url}: {failure.getErrorMessage()[:160]}"
            return
        if request.meta.get("slashcat_probe"):
            return  # no sitemap.xml or products.json here: nothing wrong with that
        if failure.check(HttpError):
            message = f"{request.url}: HTTP {failure.value.response.status}"
        else:
            message = f"{request.url}: {failure.getErrorMessage()[:160]}"
        self.report.error(message)
        if request.url == self.start_url:
            self.report.start_error = message

    # ---- helpers -------------------------------------------------------------------------

    def product_item(self, product: ProductData) -> ProductItem | None:
        """The item for a product not seen yet in this crawl; stop at max_products."""
        if product.url in self.products_seen:
            return None
        if self.max_products is not None and len(self.products_seen) >= self.max_products:
            raise CloseSpider("max_products")
        self.products_seen.add(product.url)
        hints = self.sitemap_images.get(product.url, [])
        return ProductItem(product, sitemap_images=hints)

    def count_new_links(self, url: str, links: Iterable[str]) -> int:
        """Links this listing had not shown on its earlier pages (endless pagination ends)."""
        seen = self.listing_links.setdefault(listing_key(url), set())
        fresh = set(links) - seen
        seen.update(fresh)
        return len(fresh)

    def follow(self, urls: Iterable[str], priority: int,
               meta: dict[str, Any] | None = None) -> Iterator[scrapy.Request]:
        limit_hit = (self.max_products is not None
                     and len(self.products_seen) >= self.max_products)
        for url in urls:
            if limit_hit or url in self.links_seen or url in self.products_seen:
                continue
            self.links_seen.add(url)
            yield scrapy.Request(url, self.parse_page, priority=priority, meta=dict(meta or {}),
                                 errback=self.failed)


def _is_html(response: Response) -> bool:
    ctype = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
    if ctype:
        return "html" in ctype
    return isinstance(response, scrapy.http.HtmlResponse)


def read_sitemap(body: bytes) -> Any:
    """Scrapy's Sitemap over the body, or None when it is no XML at all."""
    import lxml.etree
    from scrapy.utils.sitemap import Sitemap

    try:
        return Sitemap(body)
    except (lxml.etree.XMLSyntaxError, StopIteration):
        return None


def sitemap_image_hints(body: bytes) -> dict[str, list[str]]:
    """Page URL -> its `image:loc`s (Scrapy's Sitemap keeps only each entry's own fields)."""
    if IMAGE_NS[1:-1].encode() not in body:
        return {}
    import lxml.etree

    parser = lxml.etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    root = lxml.etree.fromstring(body, parser)
    hints: dict[str, list[str]] = {}
    for entry in root.iterfind("{*}url") if root is not None else ():
        page = (entry.findtext("{*}loc") or "").strip()
        images = [(e.text or "").strip() for e in entry.iterfind(f"{IMAGE_NS}image/{IMAGE_NS}loc")]
        if page and images:
            hints[page] = images
    return hints
