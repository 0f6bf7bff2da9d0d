"""The crawl's plain parts without Scrapy: the address guard's decisions and the persistence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from catalog.db import Catalog
from catalog.images import Limits
from catalog.labels import current_labels
from catalog.models import Image, ImageSource, Label, Product, ProductImage, utcnow
from scraper.extract import ProductData
from scraper.net import AddressPolicy, is_internal_address
from scraper.persist import (
    FetchedImage,
    save_batch,
    save_product,
    save_products,
    skip_or_revalidate,
    start_run,
)

# --------------------------------------------------------------------------- the guard


@pytest.mark.parametrize(("address", "internal"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("10.1.2.3", True), ("172.16.0.1", True),
    ("192.168.1.10", True), ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True),
    ("::1", True), ("fe80::1", True), ("fd00::1", True), ("::ffff:127.0.0.1", True),
    ("224.0.0.1", True), ("93.184.216.34", False), ("2606:4700::1111", False),
    ("not-an-ip", False),
])
def test_internal_addresses(address: str, internal: bool) -> None:
    assert is_internal_address(address) is internal


def fake_dns(table: dict[str, list[str]]) -> Callable[[str], list[str]]:
    return lambda host: table.get(host, [])


DNS = fake_dns({"shop.example": ["93.184.216.34"], "cdn.example": ["151.101.1.1"],
                "intranet.example": ["10.0.0.7"], "mixed.example": ["93.184.216.35", "10.0.0.8"]})


def test_public_start_refuses_internal_targets() -> None:
    policy = AddressPolicy("https://shop.example/", resolve=DNS)
    assert not policy.allow_internal
    assert policy.refusal("https://shop.example/p/1") is None
    assert policy.refusal("https://cdn.example/i.jpg") is None
    for url in ("http://127.0.0.2:8080/internal/admin", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/", "http://localhost:9200/", "http://intranet.example/",
                "http://mixed.example/"):
        assert policy.refusal(url) is not None, url
    assert "10.0.0.7" in (policy.refusal("http://intranet.example/x") or "")
    assert policy.refusal("http://unresolvable.example/") is None  # the download fails anyway


@pytest.mark.parametrize("start", ["http://127.0.0.1:8000/", "http://localhost/",
                                   "http://192.168.1.20/shop", "http://intranet.example/"])
def test_internal_start_allows_internal_targets(start: str) -> None:
    policy = AddressPolicy(start, resolve=DNS)
    assert policy.allow_internal
    assert policy.refusal("http://127.0.0.2/internal") is None
    assert policy.address_allowed("anything", "10.0.0.1")


def test_pinned_host_counts_as_public_and_connects_to_its_address() -> None:
    policy = AddressPolicy("http://shop.test:8000/", pinned={"Shop.Test": "127.0.0.1"},
                           resolve=DNS)
    assert not policy.allow_internal  # the start decides, and the operator vouched for it
    assert policy.addresses("shop.test") == ["127.0.0.1"]
    assert policy.refusal("http://shop.test:8000/p/1") is None
    assert policy.refusal("http://127.0.0.2:8000/internal") is not None
    assert policy.refusal("http://127.0.0.1:8000/p/1") is not None  # same server, but unpinned


def test_resolver_check_catches_rebinding() -> None:
    policy = AddressPolicy("https://shop.example/", resolve=DNS)
    assert policy.address_allowed("cdn.example", "151.101.1.1")
    assert not policy.address_allowed("cdn.example", "10.0.0.1")


# --------------------------------------------------------------------------- persistence

LIMITS = Limits(min_side=32)


def product(url: str = "https://shop.example/p/1", category: str | None = "Apparel > Tops",
            **kw: object) -> ProductData:
    return ProductData(url=url, title="Tee", external_id="T-1", brand="Acme", price=9.5,
                       currency="EUR", category_path=category, **kw)  # type: ignore[arg-type]


def fetched(url: str, body: bytes) -> FetchedImage:
    return FetchedImage(url, "fetched", 200, body, etag='"abc"',
                        last_modified="Wed, 01 May 2024 08:00:00 GMT")


def count(cat: Catalog, model: type) -> int:
    with cat.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def store_id(catalog: Catalog) -> int:
    return start_run(catalog, "shop", "https://shop.example/", {})[0]


def test_save_product_stores_everything_in_one_go(catalog: Catalog, store_id: int,
                                                  make_image: Callable[..., bytes]) -> None:
    good = make_image((80, 80), seed=1)
    images = [
        fetched("https://shop.example/i/1.jpg", good),
        fetched("https://shop.example/i/1-copy.jpg", good),  # same bytes, another URL
        fetched("https://shop.example/i/broken.jpg", good[: len(good) // 2]),
        fetched("https://shop.example/i/error.jpg", b"<!doctype html><h1>Oops</h1>"),
        fetched("https://shop.example/i/pixel.gif", make_image((1, 1), fmt="GIF")),
        FetchedImage("https://shop.example/i/gone.jpg", "failed", 404, error="http-404"),
        FetchedImage("https://shop.example/i/slow.jpg", "failed", error="timeout"),
    ]
    outcome = save_product(catalog, store_id, product(), images, LIMITS)
    assert outcome.product == "new"
    assert (outcome.images_new, outcome.images_duplicate) == (1, 1)
    reasons = {url.rsplit("/", 1)[1]: reason.split(":")[0] for url, reason in outcome.rejections}
    assert reasons == {"broken.jpg": "truncated", "error.jpg": "not-an-image",
                       "pixel.gif": "too-small", "gone.jpg": "http-404"}
    assert outcome.errors == ["image https://shop.example/i/slow.jpg: timeout"]
    with catalog.session() as s:
        p = s.scalar(select(Product))
        assert (p.title, p.external_id, p.category_path) == ("Tee", "T-1", "Apparel > Tops")
        assert [lab.category for lab in current_labels(s)] == ["Apparel > Tops"]
        links = s.scalars(select(ProductImage.source_url)).all()
        assert links == ["https://shop.example/i/1.jpg"]  # one image, linked once
        sources = {src.url.rsplit("/", 1)[1]: src for src in s.scalars(select(ImageSource))}
        assert len(sources) == 7
        assert sources["1.jpg"].etag == '"abc"' and sources["1.jpg"].image_id is not None
        assert sources["gone.jpg"].status == 404 and sources["gone.jpg"].image_id is None
        assert sources["slow.jpg"].error == "timeout"
        rejected = s.scalars(select(Image.rejected_reason).where(
            Image.rejected_reason.is_not(None))).all()
        assert len(rejected) == 3


def test_save_again_changes_nothing_but_last_seen(catalog: Catalog, store_id: int,
                                                  make_image: Callable[..., bytes]) -> None:
    url = "https://shop.example/i/1.jpg"
    save_product(catalog, store_id, product(), [fetched(url, make_image(seed=2))], LIMITS)
    rows = [count(catalog, m) for m in (Product, Image, ProductImage, ImageSource, Label)]
    again = save_product(catalog, store_id, product(), [FetchedImage(url, "known")], LIMITS)
    assert (again.product, again.images_new, again.images_known) == ("unchanged", 0, 1)
    assert [count(catalog, m) for m in (Product, Image, ProductImage, ImageSource, Label)] == rows
    changed = save_product(catalog, store_id, product(category="Apparel > Shirts"), [], LIMITS)
    assert changed.product == "updated"
    with catalog.session() as s:
        assert [lab.category for lab in current_labels(s)] == ["Apparel > Shirts"]


def test_a_failed_save_leaves_no_trace(catalog: Catalog, store_id: int,
                                       make_image: Callable[..., bytes]) -> None:
    catalog.settings.images_dir.parent.mkdir(parents=True, exist_ok=True)
    catalog.settings.images_dir.write_text("not a folder")  # storing the file will fail
    with pytest.raises(OSError):
        save_product(catalog, store_id, product(),
                     [fetched("https://shop.example/i/1.jpg", make_image(seed=3))], LIMITS)
    assert count(catalog, Product) == 0 and count(catalog, ImageSource) == 0


def test_a_batch_is_one_transaction_of_a_few_statements(catalog: Catalog, store_id: int,
                                                        make_image: Callable[..., bytes]) -> None:
    """40 products cost the statements of 1 (set-based), and come out as one at a time would."""
    from sqlalchemy import event

    shared = make_image((80, 80), seed=7)
    statements: list[str] = []
    event.listen(catalog.engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))

    def items(first: int, n: int) -> list[tuple[ProductData, list[FetchedImage]]]:
        return [(product(f"https://shop.example/p/{i}"),
                 [fetched(f"https://shop.example/i/{i}.jpg", make_image((80, 80), seed=100 + i)),
                  fetched("https://shop.example/i/shared.jpg", shared)])
                for i in range(first, first + n)]

    one = save_products(catalog, store_id, items(0, 1), LIMITS)
    for_one = len(statements)
    statements.clear()
    many = save_products(catalog, store_id, items(1, 40), LIMITS)
    assert len(statements) <= for_one  # not 40 times as many
    assert (one[0].product, one[0].images_new, one[0].images_duplicate) == ("new", 2, 0)
    assert all(o.product == "new" and o.images_new == 1 and o.images_duplicate == 1 for o in many)
    assert count(catalog, Product) == 41 and count(catalog, Image) == 42
    assert count(catalog, ProductImage) == 82 and count(catalog, ImageSource) == 42
    again = save_products(catalog, store_id, items(0, 41), LIMITS)
    assert {o.product for o in again} == {"unchanged"}
    assert count(catalog, ProductImage) == 82 and count(catalog, Label) == 41


def test_a_bad_item_in_a_batch_loses_only_itself(catalog: Catalog, store_id: int,
                                                 make_image: Callable[..., bytes]) -> None:
    from catalog.store import sha256_hex

    bodies = [make_image((80, 80), seed=200 + i) for i in range(3)]
    blocked = catalog.settings.images_dir / sha256_hex(bodies[1])[:2]
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the image's folder must go")
    items = [(product(f"https://shop.example/p/{i}"), [fetched(f"https://shop.example/{i}.jpg",
                                                               body)])
             for i, body in enumerate(bodies)]
    results = save_batch(catalog, store_id, items, LIMITS)
    assert isinstance(results[1], str) and "Error" in results[1]
    assert [r.product for r in (results[0], results[2])] == ["new", "new"]  # type: ignore[union-attr]
    assert count(catalog, Product) == 2 and count(catalog, Image) == 2


def test_the_counters_live_in_scrapys_stats_collector_while_bound() -> None:
    from scrapy.utils.test import get_crawler

    from scraper.report import CrawlReport

    stats = get_crawler().stats
    report = CrawlReport(pages=1)
    report.bind(stats)
    report.add(pages=2, products_new=3)
    report.error("boom")
    report.rejected("https://shop.example/x.gif", "too-small")
    assert stats.get_value("slashcat/pages") == 3
    assert stats.get_value("slashcat/errors") == 1
    assert stats.get_value("slashcat/images_rejected") == 1
    live = report.snapshot()
    assert (live.pages, live.products, live.errors, live.error_messages) == (3, 3, 1, ["boom"])
    stats.inc_value("slashcat/products_updated", 2)  # as the crawl's components do
    assert report.counters()["products_updated"] == 2 and report.products == 5
    report.unbind()
    report.add(pages=1)
    assert (report.pages, report.products) == (4, 5)
    assert stats.get_value("slashcat/pages") == 3


def source(image_id: int | None, status: int | None, age_days: float,
           etag: str | None = '"e1"') -> ImageSource:
    return ImageSource(url="u", image_id=image_id, status=status, etag=etag,
                       last_modified="Wed, 01 May 2024 08:00:00 GMT",
                       fetched_at=utcnow() - timedelta(days=age_days))


def test_skip_or_revalidate() -> None:
    week = timedelta(days=7)
    assert skip_or_revalidate(None, week) == (False, {})
    assert skip_or_revalidate(source(1, 200, 1), week) == (True, {})
    assert skip_or_revalidate(source(1, 200, 30), None) == (True, {})
    assert skip_or_revalidate(source(1, 200, 30), week) == (False, {
        "If-None-Match": '"e1"', "If-Modified-Since": "Wed, 01 May 2024 08:00:00 GMT"})
    assert skip_or_revalidate(source(None, 404, 1), week) == (True, {})  # gone, for a while
    assert skip_or_revalidate(source(None, 503, 1), week) == (False, {})  # transient: retry
    assert skip_or_revalidate(source(None, None, 1), week) == (False, {})  # timeout: retry


# --------------------------------------------------------------------------- spider helpers


def test_listing_key_ignores_the_page_number() -> None:
    from scraper.spider import listing_key

    assert listing_key("https://s.example/c/tops?page=3") == "https://s.example/c/tops"
    assert listing_key("https://s.example/c/tops?sort=new&p=2") == (
        "https://s.example/c/tops?sort=new")
    assert listing_key("https://s.example/blog/page/4/") == "https://s.example/blog"
    assert listing_key("https://s.example/c/tops?pageSize=48") == (
        "https://s.example/c/tops?pageSize=48")


def test_spider_stays_on_start_domain_plus_allowed(catalog: Catalog) -> None:
    from scraper.report import CrawlReport
    from scraper.run import CrawlContext, CrawlOptions, merge_options
    from scraper.spider import StoreSpider

    opts = merge_options(CrawlOptions(), None, [" CDN.example ", ""])
    ctx = CrawlContext(catalog, 1, CrawlReport(), LIMITS, opts)
    spider = StoreSpider(start_url="https://www.shop.example:8443/start", context=ctx)
    assert spider.allowed_domains == ["www.shop.example", "cdn.example"]
    assert spider.origin == "https://www.shop.example:8443"
