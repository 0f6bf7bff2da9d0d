"""The crawl on Redis with several workers: real redis-server, real worker processes.

The shop is the session's demo storefront (a real HTTP server); the catalog a real SQLite file;
every crawl runs as `slashcat` in its own process, its workers as child processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = pytest.mark.skipif(not Path(REDIS_SERVER).exists(),
                                reason="redis-server is not installed")


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server (no persistence) that a test may stop and start again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder, self.port = folder, port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.client().ping()
                return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server for this module (to be replaced by the shared fixture of tests/servers)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.kill()


@pytest.fixture
def redis(redis_url: str) -> Any:
    """The module's Redis, emptied for this test."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    return client


# --------------------------------------------------------------------------- helpers


def slashcat(home: Path, *args: str) -> subprocess.Popen[str]:
    """`slashcat --home HOME -q ARGS` as a real process (its own session, for signals)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore",
           "COLUMNS": "250"}
    return subprocess.Popen(
        [sys.executable, "-c", "from cli.app import main; main()", "--home", str(home), "-q",
         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def rows(home: Path, sql: str) -> Any:
    with sqlite3.connect(home / "catalog.db", timeout=30) as db:
        return db.execute(sql).fetchone()


def count_products(home: Path) -> int:
    try:
        return int(rows(home, "select count(*) from products")[0])
    except sqlite3.Error:
        return 0


def wait_for(condition: Any, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_complete_once(home: Path, facts: Any) -> None:
    """Every product of the shop, each once; every image once, row and file."""
    total, distinct = rows(home, "select count(*), count(distinct url) from products")
    assert total == distinct == len(facts.products)
    images, shas = rows(home, "select count(*), count(distinct sha256) from images "
                              "where rejected_reason is null")
    truncated = facts.products[facts.fixtures["truncated_image"]]["image_urls"][0]
    good = {sha for url, sha in facts.image_sha256.items() if url != truncated}
    assert images == shas == len(good)
    # (a file being written when a process was stopped stays as .tmp-*; doctor removes it)
    files = [p for p in (home / "images").rglob("*") if p.is_file()
             and not p.name.startswith(".tmp-")]
    assert len(files) == images, sorted(str(p) for p in files)[:5]


def worker_pids(client: Any, store: str) -> list[int]:
    keys = client.keys(f"slashcat:crawl:{store}:alive:*")
    return [int(k.decode().rsplit(":", 1)[1].rsplit("-", 2)[1]) for k in keys]


# --------------------------------------------------------------------------- tests


def test_two_workers_crawl_the_shop_once_and_again_adds_nothing(
        storefront: Any, redis: Any, redis_url: str, tmp_path: Path) -> None:
    facts = storefront.facts()
    home = tmp_path / "home"
    code, out = finish(slashcat(home, "crawl", storefront.url, "--redis", redis_url,
                                "--workers", "2"))
    assert code == 0, out
    assert_complete_once(home, facts)
    assert rows(home, "select status from crawl_runs")[0] == "finished"
    assert f"new {len(facts.products)}" in out  # the counters summed over the workers
    assert not redis.keys("slashcat:crawl:*")  # a finished job leaves nothing in Redis

    code, out = finish(slashcat(home, "crawl", storefront.url, "--redis", redis_url,
                                "--workers", "2"))
    assert code == 0, out
    assert "products new 0" in out
    assert_complete_once(home, facts)


def test_robots_txt_holds_across_workers(storefront: Any, redis: Any, redis_url: str,
                                         tmp_path: Path) -> None:
    storefront.reset()
    home = tmp_path / "home"
    code, out = finish(slashcat(home, "crawl", storefront.url, "--redis", redis_url,
                                "--workers", "2", "--max-products", "20"))
    assert code == 0, out
    disallowed = [p for p in storefront.hits if p.startswith("/account/")]
    assert not disallowed
    # --max-products counts across the workers (a few more may be in flight at the stop)
    assert 20 <= count_products(home) <= 40
    assert rows(home, "select status from crawl_runs")[0] == "max_products"


def test_many_shops_each_its_own_store(storefront: Any, redis: Any, redis_url: str,
                                       tmp_path: Path) -> None:
    port = storefront.url.rstrip("/").rsplit(":", 1)[1]
    shops = tmp_path / "shops.txt"
    shops.write_text(f"# two names of one server: two stores\nhttp://127.0.0.1:{port}/\n\n"
                     f"http://localhost:{port}/\n")
    for args in ([], ["--redis", redis_url, "--workers", "2"]):
        home = tmp_path / f"home{len(args)}"
        # A part of each shop is enough to show the stores apart (and keeps the test short).
        code, out = finish(slashcat(home, "crawl", "--from-file", str(shops),
                                    "--max-products", "25", *args))
        assert code == 0, out
        with sqlite3.connect(home / "catalog.db") as db:
            per_store = dict(db.execute(
                "select stores.name, count(*) from products join stores"
                " on stores.id = products.store_id group by stores.name").fetchall())
        assert set(per_store) == {f"127.0.0.1:{port}", f"localhost:{port}"}
        # --max-products holds per shop (a few more may be in flight at the stop)
        assert all(25 <= n <= 50 for n in per_store.values()), per_store


def test_redis_down_at_start_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    code, out = finish(slashcat(tmp_path / "home", "crawl", "http://127.0.0.1:9/", "--redis",
                                f"redis://:s3cret@127.0.0.1:{port}/0"))
    assert code == 1
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in out
    assert "s3cret" not in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_crawl_worker_without_a_crawl_says_so(redis: Any, redis_url: str, tmp_path: Path) -> None:
    code, out = finish(slashcat(tmp_path / "home", "crawl-worker", "--redis", redis_url))
    assert code == 1
    assert "no crawl to join" in out and "Traceback" not in out


def test_stopped_workers_resume_from_the_shared_queue(storefront: Any, redis: Any,
                                                      redis_url: str, tmp_path: Path) -> None:
    facts = storefront.facts()
    home = tmp_path / "home"
    proc = slashcat(home, "crawl", storefront.url, "--redis", redis_url, "--workers", "2")
    wait_for(lambda: count_products(home) >= 40, what="40 products")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: every process of the crawl
    code, out = finish(proc)
    assert code == 130, out
    first = count_products(home)
    assert 0 < first < len(facts.products)
    assert redis.zcard(f"slashcat:crawl:{storefront.url.split('/')[2]}:requests") > 0

    code, out = finish(slashcat(home, "crawl", storefront.url, "--redis", redis_url,
                                "--workers", "2"))
    assert code == 0, out
    assert_complete_once(home, facts)
    pages = [r for r in sqlite3.connect(home / "catalog.db").execute(
        "select pages from crawl_runs order by id")]
    assert len(pages) == 2
    assert pages[1][0] < len(facts.products)  # continued: did not fetch every page again


def test_worker_killed_its_requests_are_retried(storefront: Any, redis: Any, redis_url: str,
                                                tmp_path: Path) -> None:
    facts = storefront.facts()
    home = tmp_path / "home"
    store = storefront.url.split("/")[2]
    proc = slashcat(home, "crawl", storefront.url, "--redis", redis_url, "--workers", "2")
    wait_for(lambda: count_products(home) >= 30 and len(worker_pids(redis, store)) == 2,
             what="two busy workers")

    def victim_holds_requests() -> int:
        for pid in worker_pids(redis, store):
            for key in redis.keys(f"slashcat:crawl:{store}:inflight:*-{pid}-*"):
                if redis.hlen(key):
                    return pid
        return 0

    wait_for(victim_holds_requests, what="a worker with requests in flight")
    os.kill(victim_holds_requests() or worker_pids(redis, store)[0], signal.SIGKILL)
    code, out = finish(proc)
    # The other worker waits for the victim's alive key to expire, puts its requests back on
    # the queue and finishes them: one run, nothing lost, nothing twice.
    assert code == 0, out
    assert rows(home, "select status from crawl_runs")[0] == "finished"
    assert_complete_once(home, facts)


def test_redis_lost_mid_crawl_stops_cleanly_and_a_rerun_completes(
        storefront: Any, tmp_path: Path) -> None:
    facts = storefront.facts()
    home = tmp_path / "home"
    server = RedisServer(tmp_path / "redis").start()
    try:
        proc = slashcat(home, "crawl", storefront.url, "--redis", server.url, "--workers", "2")
        wait_for(lambda: count_products(home) >= 30, what="30 products")
        server.kill()
        code, out = finish(proc, timeout=120)
        assert code == 1, out
        assert f"lost Redis at {server.url}" in out and "Traceback" not in out
        kept = count_products(home)
        assert kept >= 30  # nothing already stored is lost

        server.start()  # an empty Redis: the crawl starts over, and adds nothing twice
        code, out = finish(slashcat(home, "crawl", storefront.url, "--redis", server.url))
        assert code == 0, out
        assert_complete_once(home, facts)
    finally:
        server.kill()


def test_redis_flushed_mid_crawl_carries_on(storefront: Any, redis: Any, redis_url: str,
                                            tmp_path: Path) -> None:
    facts = storefront.facts()
    home = tmp_path / "home"
    proc = slashcat(home, "crawl", storefront.url, "--redis", redis_url, "--workers", "2")
    wait_for(lambda: count_products(home) >= 30, what="30 products")
    redis.flushdb()
    code, out = finish(proc)
    if code != 0 or count_products(home) < len(facts.products):  # then a rerun completes
        code, out = finish(slashcat(home, "crawl", storefront.url, "--redis", redis_url))
    assert code == 0, out
    assert_complete_once(home, facts)


# --------------------------------------------------------------------------- one image, two writers


def _store_same_image(home: str, store_id: int, url: str, data: bytes, start: Any) -> None:
    from catalog.db import open_catalog, retry_locked
    from catalog.images import Limits
    from catalog.settings import Settings
    from scraper.extract import ProductData
    from scraper.persist import FetchedImage, prepare_images, save_product

    settings = Settings.load(home=Path(home), env={})
    with open_catalog(settings, create=False) as catalog:
        limits = Limits(settings.max_pixels, settings.max_image_bytes, 16)
        images = [FetchedImage("http://shop.test/same.jpg", "fetched", 200, data)]
        start.wait()
        prepare_images(catalog.store, images, limits)
        retry_locked(save_product, catalog, store_id, ProductData(url=url, title=url), images,
                     limits)


def test_two_workers_store_the_same_image_at_once(tmp_path: Path, make_image: Any) -> None:
    """Writers in two processes (as crawl-workers without a shared writer): one row, one file."""
    from catalog.db import open_catalog
    from catalog.settings import Settings
    from scraper.persist import start_run

    with open_catalog(Settings.load(home=tmp_path, env={})) as catalog:
        store_id, _ = start_run(catalog, "shop", "http://shop.test/", {})
    data = make_image(size=(96, 96))
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_store_same_image,
                         args=(str(tmp_path), store_id, f"http://shop.test/p{i}", data, start))
             for i in range(2)]
    for p in procs:
        p.start()
    time.sleep(3)  # both have imported and opened the catalog
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert rows(tmp_path, "select count(*) from images")[0] == 1
    assert rows(tmp_path, "select count(*) from products")[0] == 2
    assert rows(tmp_path, "select count(*) from product_images")[0] == 2
    assert len([p for p in (tmp_path / "images").rglob("*") if p.is_file()]) == 1


def test_redis_crawl_holds_the_writers_lock_and_says_when_it_cannot_resume(
        storefront: Any, redis: Any, redis_url: str, tmp_path: Path) -> None:
    """As the single crawl does: `doctor --fix` sees a writer while it runs (issue 18), and a
    --resume with nothing to continue says so instead of passing in silence."""
    from catalog.locks import alone

    home = tmp_path / "home"
    proc = slashcat(home, "crawl", storefront.url, "--redis", redis_url, "--workers", "2",
                    "--resume")
    wait_for(lambda: count_products(home) >= 5, what="5 products")
    with alone(home) as no_writer:
        assert not no_writer
    code, out = finish(proc)
    assert code == 0, out
    assert "cannot resume" in out and "Redis holds no interrupted crawl" in out
    with alone(home) as no_writer:
        assert no_writer  # released with the crawl
