"""The demo shop on a local port: the pages of `ShopPages` and the image folder, run by uvicorn.

Image files are served by Starlette's `StaticFiles` (ETag, Last-Modified, 304 on conditional
requests, HEAD); pages come from memory. uvicorn runs in a daemon thread, so a test, the demo
or `slashcat store serve` can start and stop the shop in its own process.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from catalog.errors import InvalidInput
from scraper.demoshop.faults import INTERNAL_HOST, Faults
from scraper.demoshop.pages import Response, ShopPages, not_found
from scraper.demoshop.sample import load_manifest
from scraper.net import listen, serve_in_thread

SAMPLE_SHOP = Path(__file__).resolve().parents[2] / "data" / "sample-store"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ShopFacts:
    """The shop's contents as served: products by id, categories, image bytes by URL."""

    products: dict[str, dict[str, Any]]  # id -> url, title, sku, brand, price, category, image_urls
    category_counts: dict[str, int]
    uncategorised: list[str]  # ids of products without a category
    image_sha256: dict[str, str]  # image URL -> sha256 of the bytes (URLs answering 200)
    fixtures: dict[str, Any]  # the manifest's deliberate traps (product ids)
    faults: dict[str, dict[str, Any]]  # DemoShop.faults_info

    @property
    def unique_images(self) -> int:
        return len(set(self.image_sha256.values()))


class DemoShop:
    """Serve a demo shop folder on a local port (port 0 picks a free one).

    Use as a context manager, or call start()/stop(). `hits` counts requests per target
    (path and query); `internal_hits` counts requests that reached the 127.0.0.2 "internal
    service" (with faults on); `faults_info` says where each fault lives.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, shopify: bool = False) -> None:
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.faults = faults
        self.hits: Counter[str] = Counter()
        self.internal_hits: Counter[str] = Counter()
        self.log: list[tuple[str, str, int, str | None]] = []
        self.errors: list[str] = []  # unexpected exceptions in the app
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._sockets = [listen(host, port)]
        self.host, self.port = self._sockets[0].getsockname()[:2]
        self.internal_url = ""
        if faults is not None and faults.redirect_internal:
            self._sockets.append(self._internal_socket())
            self.internal_url = f"http://{INTERNAL_HOST}:{self._sockets[1].getsockname()[1]}"
        self.pages = ShopPages(self.root, self.manifest, self.url, faults, self.internal_url,
                               shopify)
        from starlette.staticfiles import StaticFiles

        self._files = StaticFiles(directory=self.pages.image_root, check_dir=False)

    def _internal_socket(self) -> socket.socket:
        """Listen on 127.0.0.2, on the shop's port if free (so only the host differs)."""
        try:
            try:
                return listen(INTERNAL_HOST, self.port)
            except InvalidInput:
                return listen(INTERNAL_HOST, 0)
        except InvalidInput as exc:
            self._sockets[0].close()
            raise InvalidInput(f"{exc} (for the redirect fault); use redirect_internal=False"
                               ) from None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def faults_info(self) -> dict[str, dict[str, Any]]:
        return self.pages.faults_info

    @property
    def products(self) -> list[dict[str, Any]]:
        """Every product served, fault products included."""
        return self.pages.products

    def facts(self) -> ShopFacts:
        """What a perfect crawl of this shop finds, for tests to compare against."""
        pages = self.pages
        products: dict[str, dict[str, Any]] = {}
        shas: dict[str, str] = {}
        for p in pages.products:
            urls = [f"{self.url}{pages.image_url(n)}" for n in p["images"]]
            products[p["id"]] = {
                "url": f"{self.url}{pages.product_url(p)}", "title": p["title"], "sku": p["sku"],
                "brand": p["brand"], "price": p["price"], "category": p.get("category"),
                "image_urls": urls,
            }
            for name, url in zip(p["images"], urls, strict=True):
                path = pages.image_root / name
                if pages.image(name) is None and path.is_file():
                    shas[url] = hashlib.sha256(path.read_bytes()).hexdigest()
        counts = Counter(p["category"] for p in products.values() if p["category"])
        return ShopFacts(
            products=products,
            category_counts=dict(sorted(counts.items())),
            uncategorised=sorted(k for k, p in products.items() if not p["category"]),
            image_sha256=shas,
            fixtures=dict(self.manifest.get("fixtures") or {}),
            faults=self.faults_info,
        )

    # ---- running -------------------------------------------------------------------------

    def start(self) -> DemoShop:
        import uvicorn

        config = uvicorn.Config(self.app, interface="asgi3", http="auto", loop="auto",
                                lifespan="off", proxy_headers=False,
                                log_config=None, access_log=False, server_header=False,
                                timeout_keep_alive=30, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        try:
            self._thread = serve_in_thread(self._server, self._sockets, f"demoshop-{self.port}",
                                           START_TIMEOUT_S)
        except InvalidInput:
            self.stop()
            raise InvalidInput(f"the demo shop did not start on {self.url}") from None
        return self

    def stop(self) -> None:
        """Stop serving; kept-alive connections are closed, so nobody gets an answer."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> DemoShop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the ASGI app --------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = scope["query_string"].decode("latin-1")
        target = scope["raw_path"].decode("latin-1") + (f"?{query}" if query else "")
        if scope["server"][0] == INTERNAL_HOST:
            await self._internal(target, send)
            return
        first = self._count(target)

        async def logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self._log(scope, target, message["status"])
            await send(message)

        try:
            response = self.pages.respond(target, first)
            if response is None:  # a file of the image folder
                await self._file(scope, receive, logged)
            else:
                await self._answer(response, scope, receive, logged)
        except Exception as exc:  # kept for the tests instead of printed
            with self._lock:
                self.errors.append(repr(exc))
            raise

    async def _file(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.exceptions import HTTPException

        name = scope["path"].removeprefix("/images/")
        try:
            await self._files({**scope, "path": f"/{name}", "root_path": ""}, receive, send)
        except HTTPException:  # StaticFiles' "no such file"
            await self._answer(not_found(), scope, receive, send)

    async def _answer(self, response: Response, scope: dict[str, Any], receive: Any,
                      send: Any) -> None:
        from starlette.responses import Response as StarletteResponse

        if response.delay and await self._stopped_within(response.delay):
            response = Response(503, b"", headers=(("Connection", "close"),))
        answer = StarletteResponse(response.body, response.status, dict(response.headers),
                                   media_type=response.content_type)
        await answer(scope, receive, send)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait, but stop waiting when the shop stops (a hanging page must not block it)."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.05))
        return True

    async def _internal(self, target: str, send: Any) -> None:
        """The "internal service" at 127.0.0.2: any request to it is a guard failure."""
        with self._lock:
            self.internal_hits[urlsplit(target).path] += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"15")]})
        await send({"type": "http.response.body", "body": b"internal secret"})

    # ---- counters ------------------------------------------------------------------------

    def count(self, target: str) -> int:
        """Requests for a path (with its query, if any); a full URL is accepted too."""
        parts = urlsplit(target)
        key = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            return self.hits[key]

    def reset(self) -> None:
        """Forget requests (the flaky page fails again on its next request)."""
        with self._lock:
            self.hits.clear()
            self.internal_hits.clear()
            self.log.clear()

    def _count(self, target: str) -> bool:
        """Count a request; True if it is the first for this target."""
        with self._lock:
            self.hits[target] += 1
            return self.hits[target] == 1

    def _log(self, scope: dict[str, Any], target: str, status: int) -> None:
        agent = dict(scope["headers"]).get(b"user-agent")
        with self._lock:
            self.log.append((scope["method"], target, status,
                             agent.decode("latin-1") if agent is not None else None))


