"""The library entry point: `crawl(catalog_or_settings, url, ...) -> CrawlReport`.

Twisted's reactor cannot be restarted, yet tests, the demo and the CLI crawl more than once in
one process. So the reactor runs once, in a daemon thread, for the life of the process; each
crawl is a `CrawlerRunner.crawl` scheduled onto it, and the calling thread waits. (A child
process per crawl would also work, but costs a fresh Scrapy import and catalog connection per
crawl, ~1 s each; see the report of issue 3.) Scrapy and Twisted are imported only here, inside
functions, so `slashcat --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from catalog.db import Catalog, open_catalog, safe_url
from catalog.errors import CatalogError, InvalidInput
from catalog.images import Limits
from catalog.locks import writing
from catalog.settings import Settings
from scraper.errors import BadStartUrl, CatalogLost, CrawlFailed
from scraper.net import AddressPolicy, set_active_policy
from scraper.persist import finish_run, start_run
from scraper.report import CrawlReport

Progress = Callable[[CrawlReport], None]
PROGRESS_EVERY_S = 0.1


@dataclass(frozen=True)
class CrawlOptions:
    """Knobs of a crawl; the defaults are the polite ones."""

    max_products: int | None = None
    allow_domains: tuple[str, ...] = ()
    concurrency: int = 16
    per_domain: int = 8
    autothrottle: bool = True
    autothrottle_target: float = 4.0  # requests in flight per server AutoThrottle aims for
    download_timeout_s: float = 30.0
    retry_times: int = 2
    retry_backoff_s: float = 1.0  # first retry waits this long, then doubles
    page_max_bytes: int = 10 * 1024 * 1024
    image_max_bytes: int | None = None  # default: Settings.max_image_bytes
    revalidate_days: float = 7.0  # stored image URLs older than this get a conditional GET
    max_listing_pages: int = 500  # pages followed along one paginated listing
    shopify: bool = True  # ask for /products.json
    writer_process: bool = True  # store items in a child process (frees the crawler's GIL)
    pinned_hosts: dict[str, str] = field(default_factory=dict)  # see scraper.net
    scrapy_settings: dict[str, Any] = field(default_factory=dict)  # last-word overrides


@dataclass
class CrawlContext:
    """What the spider and pipelines share (passed as a spider argument, never pickled)."""

    catalog: Catalog
    store_id: int
    report: CrawlReport
    limits: Limits
    options: CrawlOptions
    progress: Progress | None = None
    _last: float = 0.0
    # Progress is reported only on the thread that called crawl() (it polls while the
    # reactor thread works): a callback may draw, or raise KeyboardInterrupt to stop the
    # crawl, and neither belongs inside Twisted. Calls from the reactor thread used to reset
    # the throttle and starve the caller's own calls, so an interrupt could miss the crawl.
    owner: int = field(default_factory=threading.get_ident)

    def notify(self, force: bool = False) -> None:
        if self.progress is None or threading.get_ident() != self.owner:
            return
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self.progress(self.report.snapshot())


def crawl(
    catalog_or_settings: Catalog | Settings,
    url: str,
    max_products: int | None = None,
    store_name: str | None = None,
    resume: bool = False,
    allow_domains: tuple[str, ...] | list[str] = (),
    progress: Progress | None = None,
    options: CrawlOptions | None = None,
) -> CrawlReport:
    """Crawl a storefront into the catalog; returns the counters (also kept in `crawl_runs`).

    Idempotent: crawling the same shop again adds nothing twice and fetches no stored image
    again. With `resume`, an interrupted crawl of the same store continues (Scrapy JOBDIR).
    """
    url = check_start_url(url)
    opts = options or CrawlOptions()
    opts = merge_options(opts, max_products, allow_domains)
    if isinstance(catalog_or_settings, Catalog):
        return _crawl(catalog_or_settings, url, store_name, resume, progress, opts)
    with open_catalog(catalog_or_settings) as catalog:
        return _crawl(catalog, url, store_name, resume, progress, opts)


def check_start_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    bad = BadStartUrl(f"cannot crawl {url!r}: give an http(s) URL such as https://shop.example")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:  # an unclosed "[", a bad IPv6 address
        raise bad from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    return url


def merge_options(opts: CrawlOptions, max_products: int | None,
           allow_domains: tuple[str, ...] | list[str]) -> CrawlOptions:
    from dataclasses import replace

    if max_products is not None and max_products < 1:
        raise InvalidInput(f"--max-products must be at least 1, not {max_products}")
    extra = tuple(d.strip().lower() for d in allow_domains if d.strip())
    return replace(opts, max_products=max_products or opts.max_products,
                   allow_domains=tuple(dict.fromkeys(opts.allow_domains + extra)))


_crawl_lock = threading.Lock()  # one crawl at a time: the reactor's resolver is process-wide


def _crawl(catalog: Catalog, url: str, store_name: str | None, resume: bool,
           progress: Progress | None, opts: CrawlOptions) -> CrawlReport:
    s = catalog.settings
    name = store_name or urlsplit(url).netloc
    run_settings = {"start_url": url, "max_products": opts.max_products, "resume": resume,
                    "allow_domains": list(opts.allow_domains)}
    with _crawl_lock, writing(s.home):
        store_id, run_id = start_run(catalog, name, url, run_settings)
        report = CrawlReport(store=name, start_url=url, run_id=run_id)
        limits = s.image_limits()
        ctx = CrawlContext(catalog, store_id, report, limits, opts, progress)
        jobdir = job_dir(s, name)
        if resume:
            report.notice = resume_notice(jobdir, name)
        if (not resume or report.notice) and jobdir.exists():
            shutil.rmtree(jobdir)
        jobdir.mkdir(parents=True, exist_ok=True)
        (jobdir / RUNNING_MARK).write_text(str(os.getpid()))
        status = "failed"
        try:
            status = run_spider(ctx, url, scrapy_settings(s, url, opts, jobdir))
            if report.start_error and report.products == 0:
                status = "failed"
                raise CrawlFailed(f"could not crawl {report.start_error}")
        except KeyboardInterrupt:
            status = "interrupted"  # the JOBDIR stays, so --resume can continue
            raise
        finally:
            lost = status == f"stopped: {CATALOG_LOST}"
            if lost:  # pages whose items were not stored count as seen: resume crawls anew
                (jobdir / RUNNING_MARK).write_text(CATALOG_LOST)
            else:  # Scrapy saved its queue: a resume can trust the JOBDIR (not so after a kill)
                (jobdir / RUNNING_MARK).unlink(missing_ok=True)
            report.elapsed_s = time.monotonic() - report.started
            report.status = status
            with contextlib.suppress(*((CatalogError,) if lost else ())):
                finish_run(catalog, run_id, report, status)
            set_active_policy(None)
        if lost:
            raise catalog_lost_error(s.db_url)
        if status in ("finished", "max_products"):
            shutil.rmtree(jobdir, ignore_errors=True)
        ctx.notify(force=True)
        return report


RUNNING_MARK = "slashcat-running"  # present while a crawl runs; left behind by a kill
CATALOG_LOST = "catalog lost"  # the finish reason of a crawl whose catalog server went away
# The Scrapy signal the product pipeline sends when it loses the catalog: a Redis worker then
# keeps its in-flight requests, so a resumed crawl fetches the products that were not stored.
catalog_lost_signal = object()


def catalog_lost_error(db_url: str) -> CatalogLost:
    return CatalogLost(f"the crawl stopped: lost the connection to the catalog at "
                       f"{safe_url(db_url)}; what was stored is kept; run the same command "
                       "with --resume to finish")


def resume_notice(jobdir: Path, store_name: str) -> str | None:
    """Why this job folder cannot be resumed (then the crawl runs incrementally), or None.

    Scrapy writes its queue's state only when it stops cleanly: after a SIGKILL the folder
    remembers every request as seen but holds no queue, so resuming it would crawl nothing."""
    mark = jobdir / RUNNING_MARK
    if mark.exists() and mark.read_text() == CATALOG_LOST:
        why = "the last crawl lost its catalog with products in flight"
    elif mark.exists():
        why = "the last crawl was killed before it could save its queue"
    elif not (jobdir / "requests.seen").exists():
        why = "there is no interrupted crawl to continue"
    else:
        return None
    return cannot_resume(store_name, why)


def cannot_resume(store_name: str, why: str) -> str:
    """The notice of a --resume that has nothing to continue (single and Redis crawls)."""
    return (f"cannot resume {store_name}: {why}; crawling it again incrementally instead "
            "(stored products and images are not fetched twice)")


def job_dir(settings: Settings, store_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", store_name).strip("._") or "store"
    return settings.home / "crawl-jobs" / safe


def scrapy_settings(s: Settings, url: str, opts: CrawlOptions, jobdir: Path) -> dict[str, Any]:
    """The Scrapy settings of one crawl (components read them in from_crawler)."""
    values: dict[str, Any] = {
        "BOT_NAME": "slashcat",
        "USER_AGENT": s.user_agent,
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": opts.autothrottle,
        "AUTOTHROTTLE_START_DELAY": 0.1,
        "AUTOTHROTTLE_MAX_DELAY": 10.0,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": opts.autothrottle_target,
        "CONCURRENT_REQUESTS": opts.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": opts.per_domain,
        # A page yields at most one item; Scrapy starts this many workers per response.
        "CONCURRENT_ITEMS": 4,
        "DOWNLOAD_DELAY": 0,
        "DOWNLOAD_TIMEOUT": opts.download_timeout_s,
        "DOWNLOAD_MAXSIZE": opts.page_max_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": opts.retry_times,
        "RETRY_HTTP_CODES": [500, 502, 503, 504, 522, 524, 408, 429],
        "TELNETCONSOLE_ENABLED": False,
        "LOG_ENABLED": False,
        "COOKIES_ENABLED": False,
        "JOBDIR": str(jobdir),
        "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "DOWNLOADER_MIDDLEWARES": {
            "scraper.middlewares.AddressGuardMiddleware": 10,
            "scraper.middlewares.RetryBackoffMiddleware": 20,
        },
        "ITEM_PIPELINES": {
            "scraper.pipelines.FetchImagesPipeline": 100,
            "scraper.pipelines.StoreProductPipeline": 200,
        },
        "EXTENSIONS": {"scrapy.extensions.memusage.MemoryUsage": None},
        # Byte counts per request and response that nothing reads (1.7% of the Scrapy thread's
        # CPU in a py-spy profile of the batched crawl: it renders every request's headers).
        "DOWNLOADER_STATS": False,
        "SLASHCAT_START_URL": url,
        "SLASHCAT_PINNED_HOSTS": dict(opts.pinned_hosts),
        "SLASHCAT_RETRY_BACKOFF": opts.retry_backoff_s,
        "SLASHCAT_RETRY_BACKOFF_MAX": 30.0,
        "SLASHCAT_IMAGE_MAXSIZE": opts.image_max_bytes or s.max_image_bytes,
        "SLASHCAT_REVALIDATE_DAYS": opts.revalidate_days,
        # An in-memory SQLite catalog cannot be shared with a child process.
        "SLASHCAT_WRITER_PROCESS": opts.writer_process and s.db_url not in ("sqlite://",
                                                                            "sqlite:///:memory:"),
    }
    values.update(opts.scrapy_settings)
    return values


# --------------------------------------------------------------------------- the reactor


_reactor_lock = threading.Lock()
_reactor_thread: list[threading.Thread] = []


def ensure_reactor() -> Any:
    """Start the process's reactor in a daemon thread (once) and return it."""
    with _reactor_lock:
        if _reactor_thread and _reactor_thread[0].is_alive():
            from twisted.internet import reactor

            return reactor
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                from scrapy.utils.reactor import install_reactor

                install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
                from twisted.internet import reactor

                _install_resolver(reactor)
                reactor.callWhenRunning(ready.set)
                reactor.run(installSignalHandlers=False)
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name="slashcat-reactor", daemon=True)
        thread.start()
        ready.wait(60)
        if failure or not ready.is_set():
            raise CrawlFailed(f"cannot start the crawler's event loop: {failure or 'timeout'}")
        _reactor_thread[:] = [thread]
        from twisted.internet import reactor

        return reactor


def _install_resolver(reactor: Any) -> None:
    from scraper.middlewares import GuardedResolver

    reactor.installResolver(GuardedResolver(reactor, cache_size=10000, timeout=60.0))
    reactor.getThreadPool().adjustPoolsize(maxthreads=10)


def _stop(crawler: Any) -> None:
    """Ask a running crawler to stop gracefully (on the reactor thread)."""
    from scrapy.utils.defer import deferred_from_coro

    deferred_from_coro(crawler.stop_async())


def run_spider(ctx: CrawlContext, url: str, settings: dict[str, Any]) -> str:
    """Run the spider to its end on the reactor thread; returns the final status."""
    reactor = ensure_reactor()
    set_active_policy(AddressPolicy(url, ctx.options.pinned_hosts))
    done = threading.Event()
    holder: dict[str, Any] = {}

    def start() -> None:
        from scrapy.crawler import CrawlerRunner

        from scraper.spider import StoreSpider

        try:
            runner = CrawlerRunner(settings)
            crawler = holder["crawler"] = runner.create_crawler(StoreSpider)
            d = runner.crawl(crawler, start_url=url, context=ctx)
        except BaseException as exc:  # reported to the waiting thread
            holder["error"] = exc
            done.set()
            return
        d.addCallbacks(lambda _: done.set(), lambda f: (holder.update(error=f.value),
                                                        done.set()))

    reactor.callFromThread(start)
    try:
        while not done.wait(0.25):
            ctx.notify()
    except KeyboardInterrupt:
        crawler = holder.get("crawler")
        if crawler is not None:
            reactor.callFromThread(_stop, crawler)
            done.wait(60)
        ctx.report.status = "interrupted"
        raise
    finally:
        ctx.report.unbind()  # the counters' final values, out of the crawler's stats
    if "error" in holder:
        raise CrawlFailed(f"the crawl stopped: {holder['error']}") from holder["error"]
    stats = holder["crawler"].stats
    reason = str(stats.get_value("finish_reason") or "finished")
    return reason if reason in ("finished", "max_products") else f"stopped: {reason}"
