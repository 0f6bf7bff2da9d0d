"""The counters of one crawl, shared by the spider, the pipelines and the caller."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

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

    @property
    def products(self) -> int:
        return self.products_new + self.products_updated + self.products_unchanged

    @property
    def rate(self) -> float:
        """Products per second so far."""
        elapsed = self.elapsed_s or (time.monotonic() - self.started)
        return self.products / elapsed if elapsed > 0 else 0.0

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            if len(self.error_messages) < KEEP_DETAILS:
                self.error_messages.append(message)

    def rejected(self, url: str, reason: str) -> None:
        with self._lock:
            self.images_rejected += 1
            if len(self.rejections) < KEEP_DETAILS:
                self.rejections.append((url, reason))

    def refused(self, url: str) -> None:
        with self._lock:
            self.blocked += 1
            if len(self.blocked_urls) < KEEP_DETAILS:
                self.blocked_urls.append(url)

    def snapshot(self) -> CrawlReport:
        """A consistent copy for a progress callback in another thread."""
        with self._lock:
            copy = replace(self, _lock=threading.Lock())
            copy.rejections = list(self.rejections)
            copy.error_messages = list(self.error_messages)
            copy.blocked_urls = list(self.blocked_urls)
        if not copy.elapsed_s:
            copy.elapsed_s = time.monotonic() - self.started
        return copy

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}
