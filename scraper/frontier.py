"""The Scrapy parts of a crawl on a shared Redis frontier (imported only by workers).

See scraper.distributed for the design.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scrapy_redis.scheduler import Scheduler

from scraper.distributed import ALIVE_TTL_MS, POP_SCRIPT, TICK_S, RemoteWriter, recover_dead
from scraper.pipelines import StoreProductPipeline
from scraper.run import catalog_lost_signal


class SharedScheduler(Scheduler):
    """scrapy-redis's scheduler, plus in-flight bookkeeping and a clean stop if Redis goes."""

    lost: str | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> SharedScheduler:
        instance = super().from_crawler(crawler)
        s = crawler.settings
        prefix, me = s.get("SLASHCAT_JOB_PREFIX"), s.get("SLASHCAT_WORKER")
        instance.inflight_key = f"{prefix}:inflight:{me}"
        instance.popped = {}  # request -> its field in the in-flight hash
        instance.pop_script = instance.server.register_script(POP_SCRIPT)
        return instance

    def _redis_failed(self, exc: BaseException) -> None:
        self.lost = self.lost or f"{type(exc).__name__}: {str(exc)[:160]}"

    def enqueue_request(self, request: Any) -> bool:
        if self.lost:
            return False
        try:
            if not request.dont_filter and self.df.request_seen(request):
                return False
            self.queue.push(request)
            return True
        except Exception as exc:  # redis errors: stop cleanly (see WorkerHeartbeat)
            self._redis_failed(exc)
            return False

    def next_request(self) -> Any:
        if self.lost:
            return None
        try:
            popped = self.pop_script(keys=[self.queue.key, self.inflight_key])
        except Exception as exc:
            self._redis_failed(exc)
            return None
        if not popped:
            return None
        field, data = popped
        request = self.queue._decode_request(data)
        self.popped[request] = field
        return request

    def has_pending_requests(self) -> bool:
        if self.lost:
            return False
        try:
            return bool(super().has_pending_requests())
        except Exception as exc:
            self._redis_failed(exc)
            return False

    def release_finished(self, inprogress: set[Any]) -> None:
        """Drop requests Scrapy has finished with (page parsed, items stored) from in-flight."""
        done = [r for r in self.popped if r not in inprogress]
        if not done:
            return
        fields = [self.popped.pop(r) for r in done]
        self.server.hdel(self.inflight_key, *fields)


class WorkerHeartbeat:
    """Keeps this worker's `alive` key, releases finished requests, decides when to stop."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        s = crawler.settings
        self.prefix = s.get("SLASHCAT_JOB_PREFIX")
        self.me = s.get("SLASHCAT_WORKER")
        self.loop: Any = None
        self.last_recovery = 0.0
        self.hold = False  # the catalog was lost: in-flight requests stay for a resume

    @classmethod
    def from_crawler(cls, crawler: Any) -> WorkerHeartbeat:
        from scrapy import signals

        ext = cls(crawler)
        crawler.signals.connect(ext.opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.idle, signal=signals.spider_idle)
        crawler.signals.connect(ext.catalog_lost, signal=catalog_lost_signal)
        return ext

    def catalog_lost(self) -> None:
        self.hold = True

    @property
    def scheduler(self) -> SharedScheduler:
        return self.crawler.engine._slot.scheduler

    def opened(self, spider: Any = None) -> None:
        from twisted.internet.task import LoopingCall

        self.loop = LoopingCall(self.tick)
        self.loop.start(TICK_S, now=True)

    def closed(self, spider: Any = None, reason: str = "") -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        with contextlib.suppress(Exception):
            scheduler = self.scheduler
            if not self.hold:
                scheduler.release_finished(set())
            scheduler.server.delete(f"{self.prefix}:alive:{self.me}")

    def tick(self) -> None:
        engine = self.crawler.engine
        slot = getattr(engine, "_slot", None)
        if slot is None:
            return
        scheduler = slot.scheduler
        if scheduler.lost:
            self._stop_for_redis()
            return
        try:
            if not self.hold:
                scheduler.release_finished(slot.inprogress)
            stop = scheduler.server.get(f"{self.prefix}:stop")
            if stop:  # the coordinator saw --max-products reached across the workers
                self._close(stop.decode())
                return
            busy = bool(slot.inprogress) or not engine.spider_is_idle()
            scheduler.server.set(f"{self.prefix}:alive:{self.me}", "busy" if busy else "idle",
                                 px=ALIVE_TTL_MS)
            if time.monotonic() - self.last_recovery > 2.0:
                self.last_recovery = time.monotonic()
                if recover_dead(scheduler.server, self.prefix):
                    slot.nextcall.schedule()
        except Exception as exc:
            scheduler._redis_failed(exc)
            self._stop_for_redis()

    def _stop_for_redis(self) -> None:
        self._close("redis lost")

    def _close(self, reason: str) -> None:
        from scrapy.utils.defer import deferred_from_coro

        if self.loop is not None and self.loop.running:
            self.loop.stop()
        deferred_from_coro(self.crawler.engine.close_spider_async(reason=reason))

    def idle(self, spider: Any = None) -> None:
        """Stay while the frontier has work, or another worker may still add some."""
        from scrapy.exceptions import DontCloseSpider

        scheduler = self.scheduler
        if scheduler.lost:
            return
        try:
            if scheduler.has_pending_requests() or recover_dead(scheduler.server, self.prefix):
                raise DontCloseSpider
            for key in scheduler.server.scan_iter(f"{self.prefix}:alive:*"):
                if key.decode().endswith(self.me):
                    continue
                if scheduler.server.get(key) == b"busy":
                    raise DontCloseSpider
        except DontCloseSpider:
            raise
        except Exception as exc:
            scheduler._redis_failed(exc)


class SharedWriterPipeline(StoreProductPipeline):
    """StoreProductPipeline, writing through the coordinator's WriterServer."""

    def open_writer(self, ctx: Any) -> RemoteWriter:
        s = self.crawler.settings
        return RemoteWriter(s.get("SLASHCAT_WRITER_ADDRESS"),
                            bytes.fromhex(s.get("SLASHCAT_WRITER_KEY")), ctx.store_id)
