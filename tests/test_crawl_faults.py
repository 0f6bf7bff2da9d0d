"""Crawling the misbehaving variant of the demo storefront (faults switched on)."""

from __future__ import annotations

import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from catalog.db import open_catalog
from catalog.models import Image, ImageSource, Product
from catalog.settings import Settings
from scraper.run import CrawlOptions, crawl

pytestmark = pytest.mark.slow

# The hanging page answers after 10 s; a 1.5 s timeout with one retry gives up on it.
IMPATIENT = CrawlOptions(autothrottle=False, retry_backoff_s=0.05, download_timeout_s=1.5,
                         retry_times=1)


def hits(server: Any) -> Counter[str]:
    with server._lock:
        return Counter(server.hits)


@pytest.fixture(scope="module")
def faulty_crawl(faulty_storefront: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, Any]:
    settings = Settings.load(home=tmp_path_factory.mktemp("faulty") / "home", env={})
    # The server builds its bomb on first use (~1 s); do that before the 1.5 s timeouts count.
    urllib.request.urlopen(faulty_storefront.faults_info["bomb"]["image_urls"][0]).read()
    before = hits(faulty_storefront)
    with open_catalog(settings) as cat:
        report = crawl(cat, faulty_storefront.url, options=IMPATIENT)
        with cat.session() as s:
            products = {p.url: p for p in s.scalars(select(Product))}
            sources = {src.url: (src, s.get(Image, src.image_id) if src.image_id else None)
                       for src in s.scalars(select(ImageSource))}
    return {"report": report, "products": products, "sources": sources,
            "hits": hits(faulty_storefront) - before, "info": faulty_storefront.faults_info}


def path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_500_is_retried(faulty_crawl: dict[str, Any]) -> None:
    flaky = faulty_crawl["info"]["flaky_500"]["url"]
    assert faulty_crawl["hits"][path(flaky)] == 2
    assert flaky in faulty_crawl["products"]


def test_slow_pages_are_waited_for(faulty_crawl: dict[str, Any]) -> None:
    slow = faulty_crawl["info"]["slow"]["slugs"]
    assert slow and all(any(u.endswith(f"/p/{slug}") for u in faulty_crawl["products"])
                        for slug in slow)


def test_hanging_page_times_out_and_the_crawl_goes_on(faulty_crawl: dict[str, Any]) -> None:
    report, hang = faulty_crawl["report"], faulty_crawl["info"]["hang"]["url"]
    assert hang not in faulty_crawl["products"]
    assert faulty_crawl["hits"][path(hang)] == 2  # one retry, then given up
    assert report.status == "finished"
    assert report.errors == 1 and hang in report.error_messages[0]
    # Everything else is there: the 372 products and 4 fault products with bad images.
    assert len(faulty_crawl["products"]) == 372 + 4


def test_endless_pagination_is_bounded(faulty_crawl: dict[str, Any]) -> None:
    pages = [k for k in faulty_crawl["hits"] if k.startswith("/lookbook")]
    assert 1 <= len(pages) <= 3


@pytest.mark.parametrize(("fault", "reason"), [
    ("bomb", "too-many-pixels"), ("html_as_image", "not-an-image"), ("tracker", "too-small"),
])
def test_bad_images_rejected_product_kept(faulty_crawl: dict[str, Any], fault: str,
                                          reason: str) -> None:
    info = faulty_crawl["info"][fault]
    assert info["url"] in faulty_crawl["products"]
    _src, image = faulty_crawl["sources"][info["image_urls"][0]]
    assert image is not None and image.rejected_reason.startswith(reason)
    assert image.path is None
    assert (info["image_urls"][0], image.rejected_reason) in faulty_crawl["report"].rejections


def test_redirect_off_site_is_not_followed(faulty_crawl: dict[str, Any],
                                           faulty_storefront: Any) -> None:
    assert faulty_crawl["info"]["redirect_page"]["url"] not in faulty_crawl["products"]
    assert sum(faulty_storefront.internal_hits.values()) == 0


def pinned_url(server: Any, url: str) -> str:
    """The same URL under a public-looking host name that the crawl pins to the server."""
    return url.replace(f"//{server.host}:", "//shop.test:")


def test_guard_refuses_redirects_to_internal_addresses(faulty_storefront: Any,
                                                       settings: Settings) -> None:
    """A public start (shop.test, pinned to the local server) may not reach 127.0.0.2."""
    info = faulty_storefront.faults_info
    opts = CrawlOptions(autothrottle=False, retry_backoff_s=0.05,
                        pinned_hosts={"shop.test": faulty_storefront.host})
    page = crawl(settings, pinned_url(faulty_storefront, info["redirect_page"]["url"]),
                 max_products=1, options=opts)
    image = crawl(settings, pinned_url(faulty_storefront, info["redirect_image"]["url"]),
                  max_products=1, options=opts)
    assert sum(faulty_storefront.internal_hits.values()) == 0
    assert any(u.startswith("http://127.0.0.2:") for u in page.blocked_urls)
    assert any(u.startswith("http://127.0.0.2:") for u in image.blocked_urls)
    assert image.products_new == 1  # the page itself is fine; its image is refused
    assert {reason for _u, reason in image.rejections} == {"blocked-address"}
    with open_catalog(settings) as cat, cat.session() as s:
        urls = set(s.scalars(select(Product.url)))
    assert urls == {pinned_url(faulty_storefront, info["redirect_image"]["url"])}
