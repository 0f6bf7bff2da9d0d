"""One storefront crawled by several processes (and machines) that share a Redis frontier.

Scrapy's own distributed parts do the sharing: scrapy-redis's scheduler queue (a sorted set, by
priority) and its duplicate filter (a set of request fingerprints). What this module adds:

- a job in Redis (`slashcat:crawl:<store>:job`) that tells a joining worker what to crawl;
- in-flight bookkeeping: a worker pops a request and records it in its own in-flight hash in
  one atomic step (a Lua script), and removes it once Scrapy has finished with it (page
  parsed, its product stored). A worker killed with SIGKILL stops renewing its `alive` key; the
  others (or the next run) put its in-flight requests back on the queue;
- ending: a worker whose own engine is idle stays while the queue has requests or another
  worker is busy (one that finds the queue empty at start would otherwise quit at once);
- counters: each worker publishes its counters; the coordinator sums them for the live view;
- one catalog writer per machine for SQLite (`WriterServer`, in the coordinator's process):
  workers send it their items over a Unix socket, as a single crawl sends them to its writer.

Politeness across workers: each worker gets 1/N of the per-domain concurrency and of
AutoThrottle's target (N = workers of the job), so N workers together ask a shop no harder than
one crawl does, with no shared lock to consult per request. robots.txt, the address guard and
the size caps run in every worker exactly as in a single crawl (same settings, same components).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from catalog.db import Catalog, open_catalog
from catalog.errors import CatalogError
from catalog.images import Limits
from catalog.locks import writing
from catalog.settings import Settings
from scraper.errors import BadStartUrl, CrawlFailed
from scraper.persist import Item, Result, finish_run, save_batch, start_run
from scraper.report import COUNTERS, KEEP_DETAILS, CrawlReport
from scraper.run import (
    CATALOG_LOST,
    CrawlContext,
    CrawlOptions,
    Progress,
    cannot_resume,
    catalog_lost_error,
    check_start_url,
    scrapy_settings,
)

JOBS_KEY = "slashcat:crawl-jobs"
ALIVE_TTL_MS = 5000  # a worker silent this long is taken for dead
TICK_S = 0.25
EXIT_REDIS_LOST = 3
EXIT_CATALOG_LOST = 4

# Pop the best request and file it under this worker's in-flight hash, atomically: a worker
# killed between the two steps must not lose the request.
POP_SCRIPT = """
local r = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
if #r == 0 then return nil end
redis.call('zremrangebyrank', KEYS[1], 0, 0)
local field = redis.sha1hex(r[1])
redis.call('hset', KEYS[2], field, r[2] .. ' ' .. r[1])
return {field, r[1]}
"""


def redact(url: str) -> str:
    """The Redis URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def connect(redis_url: str) -> Any:
    """A Redis client that answered a PING; CrawlFailed (one line, no password) if not."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
        client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CrawlFailed(f"cannot reach Redis at {redact(redis_url)}: {reason[:160]}") from exc
    return client


def job_prefix(store_name: str) -> str:
    return f"slashcat:crawl:{store_name}"


@dataclass(frozen=True)
class Job:
    """What every worker of one crawl needs to know (kept in Redis for joiners)."""

    redis_url: str
    prefix: str
    start_url: str
    store_name: str
    store_id: int
    run_id: int
    workers: int
    options: CrawlOptions
    writer_address: str | None = None  # a Unix socket on the coordinator's machine
    writer_key: bytes = b""


# --------------------------------------------------------------------------- the coordinator


def crawl_distributed(catalog: Catalog, url: str, redis_url: str, workers: int = 2,
                      store_name: str | None = None, progress: Progress | None = None,
                      options: CrawlOptions | None = None, resume: bool = False) -> CrawlReport:
    """Crawl a storefront with `workers` local processes sharing the Redis frontier.

    Resumes the store's unfinished job if Redis still has one (its queue and seen set); the
    job's keys are deleted once the queue is empty and every worker has finished. Holds the
    home's writers lock as the single crawl does, so `doctor --fix` waits for it.
    """
    if workers < 1:
        raise BadStartUrl(f"--workers must be at least 1, not {workers}")
    url = check_start_url(url)
    client = connect(redis_url)
    with writing(catalog.settings.home):
        return _crawl_distributed(catalog, url, redis_url, client, workers, store_name,
                                  progress, options or CrawlOptions(), resume)


def _crawl_distributed(catalog: Catalog, url: str, redis_url: str, client: Any, workers: int,
                       store_name: str | None, progress: Progress | None, opts: CrawlOptions,
                       resume: bool) -> CrawlReport:
    name = store_name or urlsplit(url).netloc
    prefix = job_prefix(name)
    store_id, run_id = start_run(catalog, name, url, {
        "start_url": url, "redis": redact(redis_url), "workers": workers,
        "max_products": opts.max_products, "allow_domains": list(opts.allow_domains)})
    report = CrawlReport(store=name, start_url=url, run_id=run_id)
    if resume and not client.exists(f"{prefix}:job"):
        report.notice = cannot_resume(name, "Redis holds no interrupted crawl to continue")
    status = "failed"
    with _writer_server(catalog) as writer:
        job = Job(redis_url, prefix, url, name, store_id, run_id, workers, opts,
                  writer.address if writer else None, writer.key if writer else b"")
        try:
            with contextlib.suppress(Exception):
                recover_dead(client, prefix)
            client.hset(f"{prefix}:job", "job", pickle.dumps(job))
            client.sadd(JOBS_KEY, prefix)
            status = _run_workers(catalog.settings, job, client, report, progress)
        except KeyboardInterrupt:
            status = "interrupted"  # the queue stays in Redis: run again to continue
            raise
        finally:
            report.elapsed_s = time.monotonic() - report.started
            report.status = status
            lost = status == f"stopped: {CATALOG_LOST}"
            with contextlib.suppress(*((CatalogError,) if lost else ())):
                finish_run(catalog, run_id, report, status)
    if lost:
        raise catalog_lost_error(catalog.settings.db_url)
    if status.startswith("stopped: redis"):
        raise CrawlFailed(f"the crawl stopped: lost Redis at {redact(redis_url)}; what was "
                          f"stored is kept ({report.products:,} products this run); run the "
                          f"same command again to finish")
    if report.start_error and report.products == 0 and status == "finished":
        raise CrawlFailed(f"could not crawl {report.start_error}")
    if progress is not None:
        progress(report.snapshot())
    return report


def _run_workers(settings: Settings, job: Job, client: Any, report: CrawlReport,
                 progress: Progress | None) -> str:
    from scraper.writer import context

    ctx = context()
    settings = replace(settings, home=settings.home.resolve())
    procs = [ctx.Process(target=worker_process, args=(settings, job), daemon=False,
                         name=f"slashcat-crawl-worker-{i}") for i in range(job.workers)]
    for proc in procs:
        proc.start()
    redis_lost = False
    try:
        while any(p.is_alive() for p in procs) or (not redis_lost and _others_busy(client, job)):
            time.sleep(TICK_S)
            redis_lost = not _merge_reports(client, job, report) or redis_lost
            limit = job.options.max_products
            if limit and report.products >= limit and not redis_lost:
                with contextlib.suppress(Exception):  # every worker stops at its next tick
                    client.set(f"{job.prefix}:stop", "max_products")
            if progress is not None:
                progress(report.snapshot())
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a second one would cut their graceful
        # stop short, so the signal is passed on only to workers still running after a while.
        deadline = time.monotonic() + 5
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in procs:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGINT)
        for proc in procs:
            proc.join(60)
        _merge_reports(client, job, report)
        raise
    for proc in procs:
        proc.join()
    codes = [p.exitcode for p in procs]
    if not _merge_reports(client, job, report) or EXIT_REDIS_LOST in codes:
        return "stopped: redis lost"
    if EXIT_CATALOG_LOST in codes:  # the job stays in Redis, in-flight requests included
        return f"stopped: {CATALOG_LOST}"
    try:
        pending = pending_requests(client, job.prefix)
    except Exception:
        return "stopped: redis lost"
    if job.options.max_products and report.products >= job.options.max_products:
        finish_job(client, job.prefix)
        return "max_products"
    if pending:
        return "interrupted"  # requests left (workers stopped or killed): the next run continues
    finish_job(client, job.prefix)
    return "finished"


def _others_busy(client: Any, job: Job) -> bool:
    """Workers from other machines still alive on this job (the coordinator waits for them)."""
    try:
        return any(True for _ in client.scan_iter(f"{job.prefix}:alive:*"))
    except Exception:
        return False


def _merge_reports(client: Any, job: Job, report: CrawlReport) -> bool:
    """Sum every worker's published counters into `report`; False if Redis cannot be read."""
    try:
        published = client.hvals(f"{job.prefix}:report:{job.run_id}")
    except Exception:
        return False
    totals = dict.fromkeys(COUNTERS, 0)
    rejections: list[tuple[str, str]] = []
    messages: list[str] = []
    blocked: list[str] = []
    start_error = None
    for raw in published:
        part = pickle.loads(raw)
        for name in COUNTERS:
            totals[name] += part["counters"].get(name, 0)
        rejections += part["rejections"]
        messages += part["error_messages"]
        blocked += part["blocked_urls"]
        start_error = start_error or part["start_error"]
    report.set_counters(totals)
    with report._lock:
        report.rejections = rejections[:KEEP_DETAILS]
        report.error_messages = messages[:KEEP_DETAILS]
        report.blocked_urls = blocked[:KEEP_DETAILS]
        report.start_error = start_error
    return True


def pending_requests(client: Any, prefix: str) -> int:
    """Requests on the queue plus those held in flight by workers."""
    queued = int(client.zcard(f"{prefix}:requests"))
    held = sum(int(client.hlen(k)) for k in client.scan_iter(f"{prefix}:inflight:*"))
    return queued + held


def finish_job(client: Any, prefix: str) -> None:
    """Forget a finished job: the next crawl of the store starts afresh (and adds nothing twice)."""
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.srem(JOBS_KEY, prefix)


def recover_dead(client: Any, prefix: str) -> int:
    """Put the in-flight requests of dead workers back on the queue; returns how many."""
    import redis

    moved = 0
    for key in list(client.scan_iter(f"{prefix}:inflight:*")):
        worker = key.decode().rsplit(":", 1)[1]
        if client.exists(f"{prefix}:alive:{worker}"):
            continue
        claimed = f"{prefix}:recovering:{secrets.token_hex(6)}"
        try:
            client.rename(key, claimed)  # only one worker wins a dead worker's requests
        except redis.ResponseError:
            continue
        entries = client.hvals(claimed)
        pipe = client.pipeline()
        for entry in entries:
            score, data = entry.split(b" ", 1)
            pipe.execute_command("ZADD", f"{prefix}:requests", score, data)
        pipe.delete(claimed)
        pipe.execute()
        moved += len(entries)
    return moved


# --------------------------------------------------------------------------- the workers


def worker_process(settings: Settings, job: Job) -> None:
    """A child of the coordinator: crawl until the shared frontier is done."""
    # Ctrl-C reaches the whole process group; the coordinator forwards it once, and Scrapy stops.
    try:
        status = run_worker(settings, job)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except CrawlFailed as exc:
        raise SystemExit(EXIT_REDIS_LOST if "redis" in str(exc).lower() else 1) from None
    if status == f"stopped: {CATALOG_LOST}":
        raise SystemExit(EXIT_CATALOG_LOST)
    raise SystemExit(EXIT_REDIS_LOST if status.startswith("stopped: redis") else 0)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def run_worker(settings: Settings, job: Job, progress: Progress | None = None,
               direct_writes: bool = False) -> str:
    """Crawl as one worker of `job` in this process; returns Scrapy's finish reason."""
    import warnings

    from scrapy.core.engine import ExecutionEngine
    from scrapy.exceptions import ScrapyDeprecationWarning

    from scraper.run import run_spider

    # scrapy-redis still uses APIs Scrapy has deprecated; the user can do nothing about it.
    warnings.filterwarnings("ignore", category=ScrapyDeprecationWarning)

    # An idle worker looks at the shared queue again this often (Scrapy's default is 5 s).
    ExecutionEngine._SLOT_HEARTBEAT_INTERVAL = TICK_S
    me = worker_id()
    client = connect(job.redis_url)
    with open_catalog(settings, create=False) as catalog:
        s = catalog.settings
        report = CrawlReport(store=job.store_name, start_url=job.start_url, run_id=job.run_id)
        limits = Limits(s.max_pixels, s.max_image_bytes, s.min_image_side)
        opts = polite_share(job.options, job.workers)
        publish = _publisher(client, job, me, report, progress)
        ctx = CrawlContext(catalog, job.store_id, report, limits, opts, publish)
        values = scrapy_settings(s, job.start_url, opts, Path("unused"))
        del values["JOBDIR"]  # the frontier lives in Redis, not in a job folder
        values.update(redis_settings(job, me, direct_writes))
        try:
            status = run_spider(ctx, job.start_url, values)
        finally:
            report.elapsed_s = time.monotonic() - report.started
            with contextlib.suppress(Exception):
                publish(report.snapshot())
    return status


def polite_share(opts: CrawlOptions, workers: int) -> CrawlOptions:
    """One worker's share of the per-domain politeness budget."""
    return replace(opts, per_domain=max(1, math.ceil(opts.per_domain / workers)),
                   autothrottle_target=max(1.0, opts.autothrottle_target / workers))


def redis_settings(job: Job, me: str, direct_writes: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "SCHEDULER": "scraper.frontier.SharedScheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_QUEUE_KEY": f"{job.prefix}:requests",
        "SCHEDULER_DUPEFILTER_KEY": f"{job.prefix}:dupefilter",
        "REDIS_URL": job.redis_url,
        "REDIS_PARAMS": {"socket_connect_timeout": 3, "socket_timeout": 10},
        "SLASHCAT_JOB_PREFIX": job.prefix,
        "SLASHCAT_WORKER": me,
        "EXTENSIONS": {"scrapy.extensions.memusage.MemoryUsage": None,
                       "scraper.frontier.WorkerHeartbeat": 500},
    }
    if job.writer_address and not direct_writes:
        values["ITEM_PIPELINES"] = {
            "scraper.pipelines.FetchImagesPipeline": 100,
            "scraper.frontier.SharedWriterPipeline": 200,
        }
        values["SLASHCAT_WRITER_ADDRESS"] = job.writer_address
        values["SLASHCAT_WRITER_KEY"] = job.writer_key.hex()
    return values


def _publisher(client: Any, job: Job, me: str, report: CrawlReport,
               progress: Progress | None) -> Progress:
    """The worker's progress callback: publish its counters (and pass them on)."""
    key = f"{job.prefix}:report:{job.run_id}"

    def publish(snapshot: CrawlReport) -> None:
        part = {"counters": snapshot.counters(), "rejections": snapshot.rejections[:50],
                "error_messages": snapshot.error_messages[:50],
                "blocked_urls": snapshot.blocked_urls[:50], "start_error": snapshot.start_error}
        with contextlib.suppress(Exception):  # Redis trouble is the scheduler's to report
            client.hset(key, me, pickle.dumps(part))
        if progress is not None:
            progress(snapshot)

    return publish


def join_crawl(settings: Settings, redis_url: str, store_name: str | None = None,
               progress: Progress | None = None) -> CrawlReport:
    """`crawl-worker`: join an unfinished crawl on Redis as one more worker."""
    client = connect(redis_url)
    job = find_job(client, store_name)
    if job is None:
        which = f" for {store_name}" if store_name else ""
        raise CrawlFailed(f"no crawl{which} to join on Redis at {redact(redis_url)}; start one "
                          f"with: slashcat crawl URL --redis {redact(redis_url)}")
    # The coordinator's writer is reachable only on its own machine (a Unix socket); elsewhere
    # this worker writes to its own catalog (PostgreSQL, shared by every machine).
    local = bool(job.writer_address) and Path(str(job.writer_address)).exists()
    job = replace(job, redis_url=redis_url,
                  workers=max(job.workers, _alive_workers(client, job.prefix) + 1))
    report_holder: list[CrawlReport] = []

    def keep(snapshot: CrawlReport) -> None:
        report_holder[:] = [snapshot]
        if progress is not None:
            progress(snapshot)

    with writing(settings.home):
        status = run_worker(settings, job, keep, direct_writes=not local)
    report = report_holder[0] if report_holder else CrawlReport(store=job.store_name)
    report.status = status
    if status.startswith("stopped: redis"):
        raise CrawlFailed(f"the worker stopped: lost Redis at {redact(redis_url)}")
    return report


def find_job(client: Any, store_name: str | None) -> Job | None:
    prefixes = sorted(p.decode() for p in client.smembers(JOBS_KEY))
    if store_name:
        prefixes = [p for p in prefixes if p == job_prefix(store_name)]
    for prefix in prefixes:
        raw = client.hget(f"{prefix}:job", "job")
        if raw is not None:
            return pickle.loads(raw)
    return None


def _alive_workers(client: Any, prefix: str) -> int:
    return sum(1 for _ in client.scan_iter(f"{prefix}:alive:*"))


# --------------------------------------------------------------------------- one writer


class WriterServer:
    """Writes the items of every worker on this machine, one batch (transaction) at a time."""

    def __init__(self, catalog: Catalog, address: str) -> None:
        from multiprocessing.connection import Listener

        self.catalog = catalog
        s = catalog.settings
        self.limits = Limits(s.max_pixels, s.max_image_bytes, s.min_image_side)
        self.address = address
        self.key = secrets.token_bytes(16)
        self.listener = Listener(address, family="AF_UNIX", authkey=self.key)
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="slashcat-writer-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn = self.listener.accept()
            except Exception:  # closed, or a client that failed the handshake
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="slashcat-writer-conn").start()

    def _serve(self, conn: Any) -> None:
        categories: dict[str, int] = {}
        with conn:
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return  # the worker ended (or was killed): its unacknowledged items retry
                if message is None:
                    return
                store_id, items = message
                with self.lock:  # one batch (one transaction) at a time, from any worker
                    results = save_batch(self.catalog, store_id, items, self.limits, categories)
                try:
                    conn.send(results)
                except OSError:
                    return

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)


@contextlib.contextmanager
def _writer_server(catalog: Catalog) -> Iterator[WriterServer | None]:
    """A WriterServer for a SQLite file catalog (PostgreSQL takes every worker's writes)."""
    s = catalog.settings
    if not s.db_url.startswith("sqlite") or s.db_url in ("sqlite://", "sqlite:///:memory:"):
        yield None
        return
    sockets = s.home.resolve() / "crawl-jobs"
    sockets.mkdir(parents=True, exist_ok=True)
    address = str(sockets / f"writer-{os.getpid()}.sock")
    if len(address) > 100:  # AF_UNIX paths are short
        import tempfile

        address = os.path.join(tempfile.mkdtemp(prefix="slashcat-"), "writer.sock")
    server = WriterServer(catalog, address)
    try:
        yield server
    finally:
        server.close()


class RemoteWriter:
    """A worker's handle on the WriterServer: the interface of scraper.writer.WriterProcess."""

    def __init__(self, address: str, key: bytes, store_id: int) -> None:
        from multiprocessing.connection import Client

        try:
            self.conn = Client(address, family="AF_UNIX", authkey=key)
        except OSError as exc:
            raise CrawlFailed(f"cannot reach the catalog writer at {address}: {exc}") from exc
        self.store_id = store_id

    def save_batch(self, items: list[Item]) -> list[Result]:
        try:
            self.conn.send((self.store_id, items))
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            raise CrawlFailed("the catalog writer stopped") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.conn.close()


# --------------------------------------------------------------------------- many shops


def read_shop_list(path: Path) -> list[str]:
    """Start URLs from a file: one a line; blank lines and # comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadStartUrl(f"cannot read {path}: {exc.strerror or exc}") from exc
    return [line.split("#", 1)[0].strip() for line in text.splitlines()
            if line.split("#", 1)[0].strip()]


def crawl_shops(catalog: Catalog, urls: list[str], *, redis_url: str | None = None,
                workers: int = 1, store_name: str | None = None, resume: bool = False,
                max_products: int | None = None, allow_domains: tuple[str, ...] = (),
                progress: Progress | None = None, on_shop: Callable[[CrawlReport], None]
                | None = None, options: CrawlOptions | None = None) -> list[CrawlReport]:
    """Crawl each storefront in turn into one catalog, each as its own store.

    One shop after another (with Redis, all workers on one shop, then the next): the politeness
    budget is per shop, and a failing shop is reported without stopping the others.
    """
    if not urls:
        raise BadStartUrl("give at least one shop URL (or --from-file)")
    if store_name and len(urls) > 1:
        raise BadStartUrl("--store-name names one store; leave it out with several shops")
    checked = [check_start_url(u) for u in urls]  # every URL is checked before any crawl
    if redis_url:
        connect(redis_url)  # fail before any crawl if Redis is not there
    from scraper.run import crawl, merge_options

    opts = merge_options(options or CrawlOptions(), max_products, allow_domains)
    reports = []
    for url in dict.fromkeys(checked):
        try:
            if redis_url:
                report = crawl_distributed(catalog, url, redis_url, workers, store_name,
                                           progress, opts, resume)
            else:
                report = crawl(catalog, url, store_name=store_name, resume=resume,
                               progress=progress, options=opts)
        except CrawlFailed as exc:
            if len(checked) == 1 or "redis" in str(exc).lower():
                raise
            report = CrawlReport(store=urlsplit(url).netloc, start_url=url, status="failed")
            report.error(str(exc))
        reports.append(report)
        if on_shop is not None:
            on_shop(report)
    return reports
