"""A child process that writes crawled products' rows (no Scrapy here).

The crawler's reactor thread is CPU-bound on a 2-core machine, and the ORM work of
`save_product` would compete with it for the GIL. So that work runs in a child process with its
own catalog connection; the pipeline sends it one item at a time over a pipe (bytes already
checked, hashed and written to the image store by the parent) and waits in a thread (I/O, no
GIL held). Still one transaction per item.
Children come from a forkserver (started once per process, single-threaded, so forking is safe
even though the crawler has threads).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
from typing import Any

from catalog.db import open_catalog, retry_locked
from catalog.images import Limits
from catalog.settings import Settings
from scraper.errors import CrawlFailed, ItemNotSaved
from scraper.extract import ProductData
from scraper.persist import FetchedImage, SaveOutcome, save_product

_context: list[Any] = []


def context() -> Any:
    if not _context:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["scraper.writer"])
        _context.append(ctx)
    return _context[0]


def writer_main(settings: Settings, store_id: int, limits: Limits, conn: Any) -> None:
    """The child: save each (product, images) it receives; reply with the outcome or error."""
    # Ctrl-C reaches the whole process group; the parent stops the crawl gracefully and still
    # needs this writer for the items in flight, then closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open_catalog(settings, create=False) as catalog:
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message is None:
                break
            product, images = message
            try:  # the parent checked the bytes and wrote the files (prepare_images)
                conn.send(("ok", retry_locked(save_product, catalog, store_id, product, images,
                                                 limits)))
            except Exception as exc:  # reported per item; the crawl goes on
                conn.send(("error", f"{type(exc).__name__}: {str(exc)[:200]}"))


class WriterProcess:
    """The parent's handle: `save()` is called from one thread at a time."""

    def __init__(self, settings: Settings, store_id: int, limits: Limits) -> None:
        ctx = context()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=writer_main, args=(settings, store_id, limits, child),
                                   name="slashcat-catalog-writer", daemon=True)
        self.process.start()
        child.close()
        self.lock = threading.Lock()
        kind, _ = self._receive()
        if kind != "ready":
            raise CrawlFailed("the catalog writer did not start")

    def _receive(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as exc:
            raise CrawlFailed(f"the catalog writer stopped (exit code "
                              f"{self.process.exitcode})") from exc

    def save(self, product: ProductData, images: list[FetchedImage]) -> SaveOutcome:
        with self.lock:
            self.conn.send((product, images))
            kind, value = self._receive()
        if kind == "error":
            raise ItemNotSaved(value)
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()
