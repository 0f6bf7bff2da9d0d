"""Crawl benchmark: products/s end to end into a fresh catalog, beside `scrapy bench`.

    .venv/bin/python bench/crawl.py [--products 5000] [--repeats 3] [--source DIR]

Builds a storefront of N products (one image each) from the shared fashion data with
`scraper.demoshop.build_shop`, serves it from a child process on a free localhost port
(the shop is another program, as in real life), and crawls it with `scraper.run.crawl` into a
fresh catalog: pages fetched, extracted, images fetched, validated, hashed, stored, committed.
The anchor is `scrapy bench` (Scrapy's own benchmark spider against its local server) run in
the same invocation; the ratio compares our products/s, and our requests/s, with its pages/s.
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


def crawl_once(url: str, work: Path, index: int) -> tuple[float, float, object]:
    """One crawl into a fresh catalog: (wall seconds, this process's CPU seconds, report)."""
    from catalog.settings import Settings
    from scraper.run import crawl

    settings = Settings.load(home=work / f"home-{index}", env={})
    cpu, started = cpu_seconds(), time.perf_counter()
    report = crawl(settings, url)
    return time.perf_counter() - started, cpu_seconds() - cpu, report


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()

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
    rates, request_rates = [], []
    try:
        for i in range(args.repeats):
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
    finally:
        stop.set()
        server.join(10)
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
