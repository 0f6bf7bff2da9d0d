"""Crawling the real demo storefront (a local HTTP server) into a fresh catalog."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from catalog.db import Catalog, open_catalog
from catalog.errors import InvalidInput
from catalog.labels import current_labels
from catalog.models import CrawlRun, Image, ImageSource, Label, Product, ProductImage
from catalog.settings import Settings
from scraper.errors import BadStartUrl, CrawlFailed
from scraper.report import CrawlReport
from scraper.run import CrawlOptions, crawl, job_dir

pytestmark = pytest.mark.slow

# Fast but otherwise default: no AutoThrottle warm-up, short retry back-off.
FAST = CrawlOptions(autothrottle=False, retry_backoff_s=0.05)


def hits(server: Any) -> Counter[str]:
    with server._lock:
        return Counter(server.hits)


def table_counts(cat: Catalog) -> dict[str, int]:
    with cat.session() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Product, Image, ProductImage, ImageSource, Label)}


def image_requests(before: Counter[str], after: Counter[str]) -> int:
    return sum(n for k, n in (after - before).items() if k.startswith("/images/"))


@pytest.fixture(scope="module")
def crawled(storefront: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Crawl the shop twice into one catalog; keep the reports and the server's counters."""
    settings = Settings.load(home=tmp_path_factory.mktemp("crawl") / "home", env={})
    cat = open_catalog(settings)
    h0 = hits(storefront)
    first = crawl(cat, storefront.url, options=FAST)
    h1 = hits(storefront)
    rows_after_first = table_counts(cat)
    second = crawl(cat, storefront.url, options=FAST)
    h2 = hits(storefront)
    yield {"cat": cat, "first": first, "second": second, "h": (h0, h1, h2),
           "rows": rows_after_first, "facts": storefront.facts(), "settings": settings}
    cat.close()


def normalised(title: str) -> str:
    return " ".join(title.split())


def test_every_product_is_stored_exactly(crawled: dict[str, Any]) -> None:
    facts, cat = crawled["facts"], crawled["cat"]
    fixtures = facts.fixtures
    # Pages that give no sku/brand in any structured markup (OpenGraph only, broken JSON-LD).
    unstructured = set(fixtures["markup"]["opengraph"]) | {fixtures["malformed_jsonld"]}
    with cat.session() as s:
        stored = {p.url: p for p in s.scalars(select(Product))}
    assert len(stored) == len(facts.products) == 372
    for pid, want in facts.products.items():
        p = stored[want["url"]]
        assert normalised(p.title) == normalised(want["title"]), pid
        assert p.price == want["price"] and p.currency == "EUR", pid
        assert p.category_path == want["category"], pid
        if pid in unstructured:
            assert (p.external_id, p.brand) == (None, None), pid
        else:
            assert (p.external_id, p.brand) == (want["sku"], want["brand"]), pid


def test_categories_become_store_labels(crawled: dict[str, Any]) -> None:
    facts, cat = crawled["facts"], crawled["cat"]
    with cat.session() as s:
        labels = list(current_labels(s))
        assert all(label.source == "store" for label in labels)
        counts = Counter(label.category for label in labels)
        urls = set(s.scalars(select(Product.url).where(Product.category_path.is_(None))))
    assert dict(counts) == facts.category_counts
    # Products without a category are stored, unlabelled: the classifier predicts them.
    assert urls == {facts.products[pid]["url"] for pid in facts.uncategorised}
    assert len(urls) == 32


def test_images_stored_once_and_linked(crawled: dict[str, Any]) -> None:
    facts, cat = crawled["facts"], crawled["cat"]
    truncated = facts.products[facts.fixtures["truncated_image"]]["image_urls"][0]
    good_urls = {u for u in facts.image_sha256 if u != truncated}
    with cat.session() as s:
        links = s.execute(select(Product.url, ProductImage.source_url, Image.sha256)
                          .join(ProductImage, ProductImage.product_id == Product.id)
                          .join(Image, Image.id == ProductImage.image_id)).all()
        stored = s.scalar(select(func.count()).select_from(Image)
                          .where(Image.rejected_reason.is_(None)))
    assert {src for _, src, _ in links} == good_urls
    assert all(facts.image_sha256[src] == sha for _, src, sha in links)
    assert stored == len({facts.image_sha256[u] for u in good_urls})
    # The same bytes under two URLs are one image linked to both products.
    a, b = (facts.products[i]["url"] for i in facts.fixtures["same_image_bytes"])
    shas = {url: sha for url, _, sha in links}
    assert shas[a] == shas[b]
    for path in {p for p in crawled["settings"].images_dir.rglob("*") if p.is_file()}:
        assert not path.name.startswith(".tmp-")
    first = crawled["first"]
    assert first.images_new == stored
    assert first.images_new + first.images_duplicate + first.images_known == len(links)


def test_bad_images_are_rejected_with_reasons(crawled: dict[str, Any]) -> None:
    facts, cat, first = crawled["facts"], crawled["cat"], crawled["first"]
    truncated = facts.products[facts.fixtures["truncated_image"]]["image_urls"][0]
    missing = facts.products[facts.fixtures["missing_image"]]["image_urls"][0]
    with cat.session() as s:
        sources = {src.url: src for src in s.scalars(select(ImageSource))}
        bad = s.get_one(Image, sources[truncated].image_id)
    assert bad.rejected_reason.startswith("truncated") and bad.path is None
    assert sources[missing].image_id is None and sources[missing].status == 404
    assert sources[missing].error == "http-404"
    assert dict(first.rejections) == {truncated: bad.rejected_reason, missing: "http-404"}
    assert first.images_rejected == 2 and first.errors == 0


def test_same_image_url_is_downloaded_once(crawled: dict[str, Any]) -> None:
    facts = crawled["facts"]
    h0, h1, _ = crawled["h"]
    a, b = (facts.products[i]["image_urls"] for i in facts.fixtures["same_image_url"])
    assert a == b
    assert (h1 - h0)[urlsplit(a[0]).path] == 1


def test_crawl_is_polite(crawled: dict[str, Any], storefront: Any) -> None:
    h0, h1, _ = crawled["h"]
    assert (h1 - h0)["/account/"] == 0  # disallowed in robots.txt
    assert (h1 - h0)["/robots.txt"] >= 1
    agents = {ua for _m, _t, _s, ua in list(storefront.log)}
    assert crawled["settings"].user_agent in agents


def test_second_crawl_changes_nothing(crawled: dict[str, Any]) -> None:
    cat, second = crawled["cat"], crawled["second"]
    _, h1, h2 = crawled["h"]
    assert table_counts(cat) == crawled["rows"]
    assert image_requests(h1, h2) == 0  # every image URL was stored: none fetched again
    assert (second.products_new, second.products_updated, second.products_unchanged) == (0, 0, 372)
    assert (second.images_new, second.images_duplicate, second.images_rejected) == (0, 0, 0)
    assert second.errors == 0 and second.status == "finished"


def test_crawl_runs_rows_keep_counters(crawled: dict[str, Any]) -> None:
    cat, first = crawled["cat"], crawled["first"]
    with cat.session() as s:
        runs = s.scalars(select(CrawlRun).order_by(CrawlRun.id)).all()
    assert [r.status for r in runs][:2] == ["finished", "finished"]
    run = runs[0]
    assert run.id == first.run_id and run.finished_at is not None and run.kind == "crawl"
    assert (run.pages, run.products_new, run.images_new, run.images_rejected, run.errors) == (
        first.pages, 372, first.images_new, 2, 0)
    assert runs[1].products_new == 0 and runs[1].settings["extra_counters"]["products_unchanged"]


def test_revalidation_uses_conditional_requests(crawled: dict[str, Any], storefront: Any) -> None:
    """Stored image URLs older than revalidate_days are asked again; unchanged ones get 304."""
    cat = crawled["cat"]
    rows = table_counts(cat)
    before = len(storefront.log)
    report = crawl(cat, storefront.url, options=CrawlOptions(
        autothrottle=False, retry_backoff_s=0.05, revalidate_days=0))
    statuses = Counter(status for _m, target, status, _ua in list(storefront.log)[before:]
                       if target.startswith("/images/"))
    assert statuses[304] >= 360 and statuses[200] == 0
    assert report.images_new == 0 and report.products_new == 0
    assert table_counts(cat) == rows


# --------------------------------------------------------------------------- limits, resume


def test_max_products_stops_the_crawl(storefront: Any, settings: Settings) -> None:
    report = crawl(settings, storefront.url, max_products=7, store_name="Demo", options=FAST)
    assert report.status == "max_products"
    with open_catalog(settings) as cat, cat.session() as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 7
        assert s.scalar(select(func.count()).select_from(CrawlRun)) == 1
    assert not job_dir(settings, "Demo").exists()  # a finished crawl leaves no job folder


def test_interrupted_crawl_resumes(storefront: Any, settings: Settings) -> None:
    threads: set[int] = set()

    def interrupt(report: CrawlReport) -> None:
        threads.add(threading.get_ident())
        # Pages are counted as they arrive; products only once the writer has committed them.
        if report.pages >= 60:
            raise KeyboardInterrupt

    # One request at a time, so the crawl cannot finish between two progress callbacks on a
    # busy machine (the callback runs on the main thread every 0.1-0.25 s).
    slow = CrawlOptions(autothrottle=False, retry_backoff_s=0.05, concurrency=1, per_domain=1)
    with open_catalog(settings) as cat:
        with pytest.raises(KeyboardInterrupt):
            crawl(cat, storefront.url, store_name="Demo", progress=interrupt, options=slow)
        assert job_dir(settings, "Demo").exists()
        with cat.session() as s:
            partial = s.scalar(select(func.count()).select_from(Product))
            assert s.scalar(select(CrawlRun.status)) == "interrupted"
        assert partial < 372
        resumed = crawl(cat, storefront.url, store_name="Demo", resume=True, options=FAST)
        with cat.session() as s:
            assert s.scalar(select(func.count()).select_from(Product)) == 372
    # Pages fetched before the interruption are not fetched again.
    assert resumed.products_new == 372 - partial and resumed.products_unchanged == 0
    assert threads == {threading.get_ident()}  # progress only ever on the caller's thread


@pytest.mark.parametrize("url", ["ftp://shop.example/", "http://", "https:///x", "  ",
                                 "http://[::1", "http://[::1]:99999/"])
def test_bad_start_url_is_refused(url: str, settings: Settings) -> None:
    with pytest.raises(BadStartUrl):
        crawl(settings, url)
    assert not (settings.home / "catalog.db").exists()


def test_unreachable_shop_is_one_clear_error(settings: Settings) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CrawlFailed, match=f"could not crawl http://127.0.0.1:{port}/"):
        crawl(settings, f"http://127.0.0.1:{port}/", options=FAST)
    with open_catalog(settings) as cat, cat.session() as s:
        run = s.scalar(select(CrawlRun))
        assert (run.status, run.errors, run.finished_at is not None) == ("failed", 1, True)


def test_bad_max_products_is_refused(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="max-products"):
        crawl(settings, "https://shop.example/", max_products=0)


def test_cli_crawl_prints_a_summary(storefront: Any, cli: Callable[..., Any]) -> None:
    result = cli("crawl", storefront.url, "--max-products", "5", "--store-name", "demo")
    assert result.exit_code == 0, result.output
    assert "products new 5" in " ".join(result.output.split())
    again = cli("crawl", "ftp://nowhere")
    assert again.exit_code == 1
    assert "give an http(s) URL" in again.output


def test_cli_bad_ipv6_url_is_one_line(tmp_path: Path) -> None:
    """A real process: no traceback, one clear line, exit 1."""
    slashcat = Path(sys.executable).parent / "slashcat"
    done = subprocess.run([str(slashcat), "--home", str(tmp_path), "crawl", "http://[::1"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1
    assert len(lines) == 1 and "give an http(s) URL" in lines[0], lines



class _Routes(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_GET(self) -> None:
        ctype, body = self.routes.get(self.path, ("text/html", b"<h1>Not found</h1>"))
        self.send_response(200 if self.path in self.routes else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _crawl_routes(settings: Settings, server: http.server.ThreadingHTTPServer, base: str,
                  routes: dict[str, tuple[str, bytes]]) -> Any:
    """Crawl a tiny shop whose every page is given (path -> content type, body)."""
    _Routes.routes = routes
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return crawl(settings, base + "/", options=FAST)
    finally:
        server.shutdown()
        server.server_close()


def test_shopify_products_json_is_used(settings: Settings, make_image: Callable[..., bytes]
                                       ) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    products = {"products": [
        {"id": 1, "title": "Classic Hoodie", "handle": "classic-hoodie", "vendor": "Northwind",
         "product_type": "Sweatshirts", "variants": [{"sku": "HD-1", "price": "59.00"}],
         "images": [{"src": f"{base}/img/hoodie.jpg"}]},
        {"id": 2, "title": "Gift Card", "handle": "gift-card", "vendor": "Northwind",
         "product_type": "", "variants": [{"sku": None, "price": "25.00"}], "images": []},
    ]}
    report = _crawl_routes(settings, server, base, {
        "/": ("text/html", b"<html><body><h1>Shop</h1></body></html>"),
        "/products.json?limit=250&page=1": ("application/json", json.dumps(products).encode()),
        "/img/hoodie.jpg": ("image/jpeg", make_image((64, 64), seed=9)),
    })
    assert (report.products_new, report.images_new, report.errors) == (2, 1, 0)
    with open_catalog(settings) as cat, cat.session() as s:
        rows = {p.url: (p.title, p.external_id, p.price, p.category_path)
                for p in s.scalars(select(Product))}
    assert rows == {f"{base}/products/classic-hoodie": ("Classic Hoodie", "HD-1", 59.0,
                                                        "Sweatshirts"),
                    f"{base}/products/gift-card": ("Gift Card", "2", 25.0, None)}


def test_woocommerce_store_api_is_used_when_the_page_shows_woocommerce(
        settings: Settings, make_image: Callable[..., bytes]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    mug = {"id": 7, "name": "Enamel Mug", "sku": "MUG-7", "permalink": f"{base}/product/mug/",
           "prices": {"price": "1450", "currency_code": "EUR", "currency_minor_unit": 2},
           "images": [{"src": f"{base}/img/mug.jpg"}], "categories": [{"name": "Kitchen"}]}
    report = _crawl_routes(settings, server, base, {
        "/": ("text/html", b'<html><head><meta name="generator" content="WooCommerce 8.2">'
                           b"</head><body class='woocommerce'><h1>Shop</h1></body></html>"),
        "/wp-json/wc/store/v1/products?per_page=100&page=1": (
            "application/json", json.dumps([mug]).encode()),
        "/img/mug.jpg": ("image/jpeg", make_image((64, 64), seed=4)),
    })
    assert (report.products_new, report.images_new, report.errors) == (1, 1, 0)
    with open_catalog(settings) as cat, cat.session() as s:
        [row] = s.scalars(select(Product)).all()
        assert (row.title, row.external_id, row.price, row.currency, row.category_path) == (
            "Enamel Mug", "MUG-7", 14.5, "EUR", "Kitchen")
        assert row.field_sources is not None and row.field_sources["price"] == "woocommerce"
