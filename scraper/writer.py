"""Writing crawled products' rows in batches, in a child process (no Scrapy here).

The crawler's reactor thread is CPU-bound on a 2-core machine, and the ORM work of saving would
compete with it for the GIL. So that work runs in a child process with its own catalog
connection. The pipeline hands each item (bytes already checked, hashed and written to the image
store by the parent) to a `Batcher`, whose thread sends many items at once (by count, or after a
short wait) and gets back one outcome per item once they have committed together: one
transaction per batch, not per product, is what makes the catalog writes cheap.
Children come from a forkserver (started once per process, single-threaded, so forking is safe
even though the crawler has threads).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from catalog.children import die_with_parent
from catalog.db import open_catalog
from catalog.images import Limits
from catalog.settings import Settings
from scraper.errors import CatalogLost, CrawlFailed
from scraper.persist import Item, Result, save_batch

BATCH_ITEMS = 200  # items written in one transaction at most
BATCH_WAIT_S = 0.2  # how long the first item of a batch waits for others

_context: list[Any] = []


def context() -> Any:
    if not _context:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["scraper.writer"])
        _context.append(ctx)
    return _context[0]


def writer_main(settings: Settings, store_id: int, limits: Limits, conn: Any) -> None:
    """The child: save each batch of (product, images) it receives; reply with the results."""
    # Ctrl-C reaches the whole process group; the parent stops the crawl gracefully and still
    # needs this writer for the items in flight, then closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    categories: dict[str, int] = {}
    with open_catalog(settings, create=False) as catalog, contextlib.suppress(EOFError, OSError):
        # EOFError, OSError: the parent was killed; its items in flight are lost with it and
        # the catalog holds only whole batches (one transaction each), so exit without a word.
        conn.send(("ready", None))
        while True:
            items = conn.recv()
            if items is None:
                break
            try:
                conn.send(("ok", save_batch(catalog, store_id, items, limits, categories)))
            except CatalogLost as exc:
                conn.send(("lost", str(exc)))


class WriterProcess:
    """The parent's handle: `save_batch()` is called from one thread at a time."""

    def __init__(self, settings: Settings, store_id: int, limits: Limits) -> None:
        ctx = context()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=writer_main, args=(settings, store_id, limits, child),
                                   name="slashcat-catalog-writer", daemon=True)
        self.process.start()
        child.close()
        kind, _ = self._receive()
        if kind != "ready":
            raise CrawlFailed("the catalog writer did not start")

    def _receive(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            raise CrawlFailed(f"the catalog writer stopped (exit code "
                              f"{self.process.exitcode})") from exc

    def save_batch(self, items: list[Item]) -> list[Result]:
        self.conn.send(items)
        kind, value = self._receive()
        if kind == "lost":
            raise CatalogLost(value)
        return value

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


class Batcher:
    """Collects items from any thread and writes them in batches on its own thread.

    `submit(item, done)`: `done` is called (on the batcher's thread) with the batch's results,
    or with the exception that stopped the whole batch, once the batch has committed. An item
    is acknowledged only after its rows are in the catalog, so a caller that releases work on
    the acknowledgement (the Redis crawl's in-flight requests) never releases unsaved work.
    """

    def __init__(self, write: Callable[[list[Item]], list[Result]],
                 max_items: int = BATCH_ITEMS, wait_s: float = BATCH_WAIT_S) -> None:
        self.write = write
        self.max_items = max_items
        self.wait_s = wait_s
        self.queue: queue.Queue[tuple[Item, Callable[[Result | BaseException], None]] | None] = (
            queue.Queue())
        self.thread = threading.Thread(target=self._run, name="slashcat-catalog-batcher",
                                       daemon=True)
        self.thread.start()

    def submit(self, item: Item, done: Callable[[Result | BaseException], None]) -> None:
        self.queue.put((item, done))

    def close(self) -> None:
        """Write what is queued, then stop."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while True:
            batch, closing = self._collect()
            if batch:
                self._write(batch)
            if closing:
                return

    def _collect(self) -> tuple[list[tuple[Item, Callable[[Result | BaseException], None]]],
                                bool]:
        first = self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_items:
            wait = deadline - time.monotonic()
            try:
                entry = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                return batch, True
            batch.append(entry)
        return batch, False

    def _write(self, batch: list[tuple[Item, Callable[[Result | BaseException], None]]]) -> None:
        try:
            results: list[Result | BaseException] = list(self.write([item for item, _ in batch]))
        except Exception as exc:  # the writer itself is gone: every item of the batch fails
            results = [exc] * len(batch)
        for (item, done), result in zip(batch, results, strict=True):
            if not isinstance(result, str | BaseException):
                for image in item[1]:  # stored now: later items sharing the URL just link it
                    if image.state == "fetched":
                        image.state, image.body, image.facts = "known", None, None
            done(result)
