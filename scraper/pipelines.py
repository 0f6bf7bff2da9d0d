"""Thin item pipelines: fetch a product's images, then hand everything to scraper.persist.

Imported only when crawling. The catalog writes run in batches on one dedicated thread (SQLite has
one writer), off the reactor, so pages keep downloading while images are hashed and stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    DownloadCancelledError,
    DownloadTimeoutError,
    DropItem,
    IgnoreRequest,
)
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.error import TCPTimedOutError, TimeoutError
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from scraper.errors import CatalogLost
from scraper.items import ProductItem
from scraper.middlewares import BLOCKED, AddressRefused
from scraper.persist import (
    FetchedImage,
    Result,
    all_source_urls,
    known_sources,
    prepare_images,
    save_batch,
    skip_or_revalidate,
)
from scraper.run import CATALOG_LOST, catalog_lost_signal
from scraper.writer import Batcher, WriterProcess


class FetchImagesPipeline:
    """Download each image URL once per crawl; skip or revalidate URLs stored before."""

    def __init__(self, crawler: Crawler, max_bytes: int, revalidate_days: float) -> None:
        self.crawler = crawler
        self.max_bytes = max_bytes
        self.revalidate_after = (
            timedelta(days=revalidate_days) if revalidate_days >= 0 else None
        )
        self.inflight: dict[str, asyncio.Future[FetchedImage]] = {}
        self.stored_urls: set[str] = set()  # every image URL in the catalog at the start

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FetchImagesPipeline:
        s = crawler.settings
        return cls(crawler, s.getint("SLASHCAT_IMAGE_MAXSIZE"),
                   s.getfloat("SLASHCAT_REVALIDATE_DAYS"))

    def open_spider(self) -> None:
        ctx = self.crawler.spider.context  # type: ignore[union-attr]
        self.stored_urls = all_source_urls(ctx.catalog)

    async def process_item(self, item: ProductItem) -> ProductItem:
        urls = item.product.image_urls or item.sitemap_images
        ctx = self.crawler.spider.context  # type: ignore[union-attr]
        lookup = [u for u in urls if u not in self.inflight and u in self.stored_urls]
        known = known_sources(ctx.catalog, lookup)
        for url in urls:
            if url not in self.inflight:
                skip, headers = skip_or_revalidate(known.get(url), self.revalidate_after)
                coro = self._known(url) if skip else self._download(url, headers)
                self.inflight[url] = asyncio.ensure_future(coro)
        item.images = list(await asyncio.gather(*(self.inflight[u] for u in urls)))
        return item

    async def _known(self, url: str) -> FetchedImage:
        return FetchedImage(url, "known")

    async def _download(self, url: str, headers: dict[str, str]) -> FetchedImage:
        request = Request(url, headers=headers, meta={"download_maxsize": self.max_bytes,
                                                      "download_warnsize": 0})
        engine = self.crawler.engine
        assert engine is not None
        try:
            response = await engine.download_async(request)
        except IgnoreRequest as exc:
            return FetchedImage(url, "failed", error=refusal_code(request, exc))
        except Exception as exc:  # timeouts, DNS, refused connections, size caps
            return FetchedImage(url, "failed", error=describe_failure(exc))
        etag = header(response.headers, b"ETag")
        modified = header(response.headers, b"Last-Modified")
        if response.status == 304:
            return FetchedImage(url, "not-modified", 304, etag=etag, last_modified=modified)
        if response.status != 200:
            return FetchedImage(url, "failed", response.status, error=f"http-{response.status}")
        return FetchedImage(url, "fetched", 200, response.body, etag, modified)


class StoreProductPipeline:
    """Images checked and stored in threads; rows written in batches (scraper.writer.Batcher)
    by one writer: a child process, or this process for an in-memory catalog."""

    def __init__(self, crawler: Crawler, prepare_threads: int, use_process: bool) -> None:
        self.crawler = crawler
        # Checking, hashing and writing image files runs in parallel; rows have one writer.
        self.prepare_pool = ThreadPool(1, prepare_threads, name="slashcat-image-check")
        self.use_process = use_process
        self.writer: Any = None  # save_batch(items) -> results: WriterProcess or RemoteWriter
        self.batcher: Batcher | None = None
        self.stopping = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StoreProductPipeline:
        s = crawler.settings
        return cls(crawler, s.getint("SLASHCAT_PREPARE_THREADS", 3),
                   s.getbool("SLASHCAT_WRITER_PROCESS"))

    def open_spider(self) -> None:
        ctx = self.crawler.spider.context  # type: ignore[union-attr]
        self.writer = self.open_writer(ctx)
        if self.writer is not None:
            self.batcher = Batcher(self.writer.save_batch)
        else:
            categories: dict[str, int] = {}
            self.batcher = Batcher(lambda items: save_batch(ctx.catalog, ctx.store_id, items,
                                                            ctx.limits, categories))
        self.prepare_pool.start()

    def open_writer(self, ctx: Any) -> Any:
        if not self.use_process:
            return None
        settings = replace(ctx.catalog.settings, home=ctx.catalog.settings.home.resolve())
        return WriterProcess(settings, ctx.store_id, ctx.limits)

    def close_spider(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.prepare_pool.stop()
        if self.writer is not None:
            self.writer.close()

    async def process_item(self, item: ProductItem) -> ProductItem:
        from twisted.internet import reactor

        ctx = self.crawler.spider.context  # type: ignore[union-attr]
        try:
            # Files are checked and written durably in parallel threads (fsync waits overlap);
            # the rows are then written in a batch by the one writer.
            await maybe_deferred_to_future(deferToThreadPool(
                reactor, self.prepare_pool, prepare_images, ctx.catalog.store, item.images,
                ctx.limits))
            result = await maybe_deferred_to_future(self._save(item))
        except Exception as exc:  # a catalog error loses this item only
            ctx.report.error(f"saving {item.product.url}: {str(exc)[:160]}")
            if isinstance(exc, CatalogLost):
                self.crawler.signals.send_catch_log(signal=catalog_lost_signal)
                self.stop(CATALOG_LOST)
            raise DropItem(str(exc)) from exc
        if isinstance(result, str):
            ctx.report.error(f"saving {item.product.url}: {result[:160]}")
            raise DropItem(result)
        result.apply(ctx.report)
        return item

    def stop(self, reason: str) -> None:
        """Close the spider (once): its queue is saved, and the items in flight end."""
        from scrapy.utils.defer import deferred_from_coro

        if not self.stopping:
            self.stopping = True
            engine = self.crawler.engine
            assert engine is not None
            deferred_from_coro(engine.close_spider_async(reason=reason))

    def _save(self, item: ProductItem) -> Deferred[Result]:
        """The item's result, once its batch has committed (fired on the reactor thread)."""
        from twisted.internet import reactor

        assert self.batcher is not None
        d: Deferred[Result] = Deferred()

        def done(result: Result | BaseException) -> None:
            if isinstance(result, BaseException):
                reactor.callFromThread(d.errback, result)
            else:
                reactor.callFromThread(d.callback, result)

        self.batcher.submit((item.product, item.images), done)
        return d


def header(headers: Any, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value else None


def refusal_code(request: Request, exc: IgnoreRequest) -> str:
    """Why a request was refused on our side, as one of scraper.persist.REFUSALS."""
    # The guard marks a redirect it refused even when the off-site filter drops it first.
    if isinstance(exc, AddressRefused) or request.meta.get(BLOCKED):
        return "blocked-address"
    # Scrapy raises a plain IgnoreRequest for both; only its message tells them apart.
    text = str(exc).lower()
    if "offsite" in text:
        return "offsite"
    if "robots" in text:
        return "robots-disallowed"
    return f"ignored: {text[:100]}"


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, DownloadCancelledError):  # Scrapy cancels only at the size cap
        return "too-large"
    if isinstance(exc, DownloadTimeoutError | TimeoutError | TCPTimedOutError):
        return "timeout"
    return f"{type(exc).__name__}: {(str(exc) or type(exc).__name__)[:120]}"
