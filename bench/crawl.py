"""Crawl benchmark: products/s end to end into a fresh catalog, beside `scrapy bench`.

    .venv/bin/python bench/crawl.py [--products 5000] [--repeats 3] [--source DIR]
                                    [--workers N --redis redis://127.0.0.1:6379/0]

Builds a storefront of N products (one image each) from the shared fashion data with
`scraper.demoshop.build_shop`, serves it from a child process on a free localhost port
(the shop is another program, as in real life), and crawls it with `scraper.run.crawl` into a
fresh catalog: pages fetched, extracted, images fetched, validated, hashed, stored, committed.
The anchor is `scrapy bench` (Scrapy's own benchmark spider against its local server) run in
the same invocation; the ratio compares our products/s, and our requests/s, with its pages/s.

With --workers N --redis URL the same shop is also crawled by N worker processes sharing the
Redis frontier (`scraper.distributed.crawl_distributed`), each repeat beside a single-process
crawl, and the CPU seconds per product of the crawler processes (coordinator, workers, writer)
and of the shop's server are printed apart: on a 2-core machine the server competes for the
same cores, and if it is the one saturated, that bounds the figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_SOURCE = ROOT.parent / "shared" / "datasets" / "fashion-products"


def serve(store_dir: str, ports: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    from scraper.demoshop import DemoShop

    with DemoShop(Path(store_dir)) as server:
        ports.put(server.url)
        stop.wait()


OPTIONS: dict[str, object] = {}  # CrawlOptions fields set from the command line


def crawl_options() -> object:
    from scraper.run import CrawlOptions

    return CrawlOptions(**OPTIONS)  # type: ignore[arg-type]


def crawl_once(url: str, work: Path, index: int) -> tuple[float, float, object]:
    """One crawl into a fresh catalog: (wall seconds, this process's CPU seconds, report)."""
    from catalog.settings import Settings
    from scraper.run import crawl

    settings = Settings.load(home=work / f"home-{index}", env={})
    cpu, started = cpu_seconds(), time.perf_counter()
    report = crawl(settings, url, options=crawl_options())  # type: ignore[arg-type]
    return time.perf_counter() - started, cpu_seconds() - cpu, report


def proc_cpu_seconds(pid: int, children: bool = True) -> float:
    """User+system CPU of a process (and of its reaped children) from /proc, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def crawler_cpu_seconds() -> float:
    """This process plus its forkserver's processes (workers, the row writer), not the shop."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    return cpu_seconds() + (proc_cpu_seconds(pid) if pid else 0.0)


def crawl_workers_once(url: str, redis_url: str, workers: int, work: Path, index: int
                       ) -> tuple[float, object]:
    from catalog.db import open_catalog
    from catalog.settings import Settings
    from scraper.distributed import connect, crawl_distributed

    connect(redis_url).flushdb()  # a fresh frontier: the same work as the single crawl
    settings = Settings.load(home=work / f"home-w{workers}-{index}", env={})
    with open_catalog(settings) as catalog:
        started = time.perf_counter()
        report = crawl_distributed(catalog, url, redis_url, workers,
                                   options=crawl_options())  # type: ignore[arg-type]
    return time.perf_counter() - started, report


def redis_cpu_seconds(redis_url: str) -> float:
    """CPU time of the Redis server so far (its INFO), the third party of a shared crawl."""
    from scraper.distributed import connect

    info = connect(redis_url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


def cpu_seconds() -> float:
    """CPU time of this process, all threads (not the shop's process or the row writer's)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scrapy_bench_pages_per_s(seconds: int = 10) -> float:
    """Run `scrapy bench` and return its steady pages/s (median of its per-minute reports)."""
    scrapy = Path(sys.executable).with_name("scrapy")
    out = subprocess.run(
        [str(scrapy), "bench", "-s", f"CLOSESPIDER_TIMEOUT={seconds}", "-s", "LOG_LEVEL=INFO"],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=seconds + 60,
    )
    rates = [int(m) for m in re.findall(r"at (\d+) pages/min", out.stderr)]
    rates = [r for r in rates if r > 0]
    if not rates:
        raise SystemExit(f"could not read scrapy bench output:\n{out.stderr[-2000:]}")
    return statistics.median(rates) / 60.0


def print_cpu(label: str, products: int, elapsed: float, crawler: float, server: float) -> None:
    """CPU seconds per product of crawler and server, and how busy each kept the cores."""
    n = max(products, 1)
    cores = os.cpu_count() or 1
    print(f"{label}: crawler CPU {1000 * crawler / n:.1f} ms/product ({crawler / elapsed:.2f} "
          f"cores), shop server CPU {1000 * server / n:.1f} ms/product ({server / elapsed:.2f} "
          f"cores); together {(crawler + server) / elapsed:.2f} of {cores} cores")
    if server / elapsed > 0.85:
        print(f"{label}: the shop server is saturated (one Python process, {server / elapsed:.2f}"
              f" cores busy): it, not the crawler, bounds products/s here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--workers", type=int, default=0,
                        help="also crawl with N worker processes on --redis")
    parser.add_argument("--redis", help="Redis URL for --workers (its db is flushed)")
    parser.add_argument("--no-anchor", action="store_true", help="skip `scrapy bench`")
    parser.add_argument("--no-autothrottle", action="store_true",
                        help="crawl without AutoThrottle (where the time goes: CPU or throttle)")
    args = parser.parse_args()
    if args.no_autothrottle:
        OPTIONS["autothrottle"] = False

    from scraper.demoshop import build_shop

    work = Path(tempfile.mkdtemp(prefix="slashcat-bench-crawl-"))
    manifest = build_shop(args.source, work / "store", limit=args.products)
    n = len(manifest["products"])
    print(f"store: {n:,} products (one image each) in {work / 'store'}")

    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(str(work / "store"), ports, stop), daemon=True)
    server.start()
    url = ports.get(timeout=120)
    rates, request_rates, worker_rates = [], [], []
    print(f"load average at the start: {loadavg()} on {os.cpu_count()} cores")
    try:
        for i in range(args.repeats):
            server_cpu, crawler_cpu = proc_cpu_seconds(server.pid), crawler_cpu_seconds()
            elapsed, cpu, report = crawl_once(url, work, i)
            requests = report.pages + report.images_new + report.images_duplicate + (  # type: ignore[attr-defined]
                report.images_rejected)  # type: ignore[attr-defined]
            rate = report.products / elapsed  # type: ignore[attr-defined]
            rates.append(rate)
            request_rates.append(requests / elapsed)
            print(f"crawl {i + 1}: {report.products:,} products, {report.pages:,} pages, "  # type: ignore[attr-defined]
                  f"{report.images_new:,} new images, {report.errors} errors in "  # type: ignore[attr-defined]
                  f"{elapsed:.1f} s = {rate:.1f} products/s ({requests / elapsed:.1f} requests/s); "
                  f"crawler CPU {1000 * cpu / max(report.products, 1):.1f} ms/product")  # type: ignore[attr-defined]
            print_cpu("  single", report.products, elapsed,  # type: ignore[attr-defined]
                      crawler_cpu_seconds() - crawler_cpu,
                      proc_cpu_seconds(server.pid) - server_cpu)
            if args.workers and args.redis:
                server_cpu, crawler_cpu = proc_cpu_seconds(server.pid), crawler_cpu_seconds()
                own, redis_cpu = cpu_seconds(), redis_cpu_seconds(args.redis)
                elapsed, report = crawl_workers_once(url, args.redis, args.workers, work, i)
                own, redis_cpu = cpu_seconds() - own, redis_cpu_seconds(args.redis) - redis_cpu
                print(f"  of which the coordinator and its catalog writer: "
                      f"{1000 * own / max(report.products, 1):.1f} ms/product "  # type: ignore[attr-defined]
                      f"({own / elapsed:.2f} cores); the Redis server: "
                      f"{1000 * redis_cpu / max(report.products, 1):.1f} ms/product "  # type: ignore[attr-defined]
                      f"({redis_cpu / elapsed:.2f} cores)")
                rate = report.products / elapsed  # type: ignore[attr-defined]
                worker_rates.append(rate)
                print(f"crawl {i + 1} with {args.workers} workers on Redis: "
                      f"{report.products:,} products, {report.pages:,} pages, "  # type: ignore[attr-defined]
                      f"{report.errors} errors in {elapsed:.1f} s = {rate:.1f} products/s")  # type: ignore[attr-defined]
                print_cpu(f"  {args.workers} workers", report.products, elapsed,  # type: ignore[attr-defined]
                          crawler_cpu_seconds() - crawler_cpu,
                          proc_cpu_seconds(server.pid) - server_cpu)
            print(f"  load average now: {loadavg()}")
    finally:
        stop.set()
        server.join(10)
    if worker_rates:
        single, multi = statistics.median(rates), statistics.median(worker_rates)
        print(f"{args.workers} workers on Redis: {multi:.1f} products/s median vs single "
              f"{single:.1f} = {multi / single:.2f}x (target >= 1.5x with 2 workers)")
    if args.no_anchor:
        print(f"load average at the end: {loadavg()} on {os.cpu_count()} cores")
        return
    anchor = scrapy_bench_pages_per_s()
    ours, ours_req = statistics.median(rates), statistics.median(request_rates)
    print(f"slashcat crawl: {ours:.1f} products/s median of {len(rates)} "
          f"({ours_req:.1f} requests/s); target >= 100 products/s")
    print(f"scrapy bench (anchor, same run): {anchor:.1f} pages/s")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"load average at the end: {' '.join(load)} on {os.cpu_count()} cores")
    print(f"ratio: products/s / bench pages/s = {ours / anchor:.2f}; "
          f"requests/s / bench pages/s = {ours_req / anchor:.2f}")


if __name__ == "__main__":
    main()
