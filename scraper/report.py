"""The counters of one crawl, shared by the spider, the pipelines and the caller.

While a crawl runs its counters live in the crawler's Scrapy stats collector (`crawler.stats`,
under "slashcat/<name>", beside Scrapy's own counters), which `bind` attaches; the report reads
them from there (`snapshot`, `counters`) and keeps their final values once `unbind` detaches it.
A report of several workers (the Redis crawl's coordinator) is never bound: it holds the sums.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

COUNTERS = (
    "pages",
    "products_new",
    "products_updated",
    "products_unchanged",
    "images_new",
    "images_duplicate",
    "images_rejected",
    "images_known",
    "errors",
    "blocked",
)
KEEP_DETAILS = 200  # rejections and error messages kept for the summary
STATS_PREFIX = "slashcat/"


@dataclass
class CrawlReport:
    store: str = ""
    start_url: str = ""
    run_id: int | None = None
    status: str = "running"
    started: float = field(default_factory=time.monotonic)
    elapsed_s: float = 0.0
    pages: int = 0
    products_new: int = 0
    products_updated: int = 0
    products_unchanged: int = 0
    images_new: int = 0
    images_duplicate: int = 0
    images_rejected: int = 0
    images_known: int = 0  # stored by an earlier crawl: not fetched again (or 304)
    errors: int = 0
    blocked: int = 0  # requests the address guard refused
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (image URL, reason)
    error_messages: list[str] = field(default_factory=list)
    blocked_urls: list[str] = field(default_factory=list)
    start_error: str | None = None  # why the start URL itself could not be fetched
    notice: str | None = None  # e.g. why --resume could not continue and what ran instead
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # The running crawler's StatsCollector, which holds the counters while bound.
    _stats: Any = field(default=None, repr=False, compare=False)

    def bind(self, stats: Any) -> None:
        """Keep the counters in a Scrapy stats collector from now on (inc_value/get_value)."""
        with self._lock:
            for name in COUNTERS:
                stats.set_value(STATS_PREFIX + name, getattr(self, name))
            self._stats = stats

    def unbind(self) -> None:
        """Take the counters' final values back from the stats collector."""
        with self._lock:
            if self._stats is not None:
                for name in COUNTERS:
                    setattr(self, name, self._count(name))
                self._stats = None

    def _count(self, name: str) -> int:
        if self._stats is None:
            return int(getattr(self, name))
        return int(self._stats.get_value(STATS_PREFIX + name, 0))

    @property
    def products(self) -> int:
        return sum(self._count(n) for n in ("products_new", "products_updated",
                                            "products_unchanged"))

    @property
    def rate(self) -> float:
        """Products per second so far."""
        elapsed = self.elapsed_s or (time.monotonic() - self.started)
        return self.products / elapsed if elapsed > 0 else 0.0

    def add(self, **counts: int) -> None:
        with self._lock:
            self._add(counts)

    def _add(self, counts: dict[str, int]) -> None:
        for name, value in counts.items():
            if name not in COUNTERS:
                raise KeyError(name)
            if self._stats is not None:
                self._stats.inc_value(STATS_PREFIX + name, value)
            else:
                setattr(self, name, getattr(self, name) + value)

    def set_counters(self, counts: dict[str, int]) -> None:
        """Replace the counters (the sums of several workers' reports)."""
        with self._lock:
            for name, value in counts.items():
                if self._stats is not None:
                    self._stats.set_value(STATS_PREFIX + name, value)
                else:
                    setattr(self, name, value)

    def error(self, message: str) -> None:
        with self._lock:
            self._add({"errors": 1})
            if len(self.error_messages) < KEEP_DETAILS:
                self.error_messages.append(message)

    def rejected(self, url: str, reason: str) -> None:
        with self._lock:
            self._add({"images_rejected": 1})
            if len(self.rejections) < KEEP_DETAILS:
                self.rejections.append((url, reason))

    def refused(self, url: str) -> None:
        with self._lock:
            self._add({"blocked": 1})
            if len(self.blocked_urls) < KEEP_DETAILS:
                self.blocked_urls.append(url)

    def snapshot(self) -> CrawlReport:
        """A consistent, unbound copy for a progress callback in another thread."""
        with self._lock:
            counts: dict[str, Any] = {name: self._count(name) for name in COUNTERS}
            copy = replace(self, _lock=threading.Lock(), _stats=None, **counts)
            copy.rejections = list(self.rejections)
            copy.error_messages = list(self.error_messages)
            copy.blocked_urls = list(self.blocked_urls)
        if not copy.elapsed_s:
            copy.elapsed_s = time.monotonic() - self.started
        return copy

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: self._count(name) for name in COUNTERS}
