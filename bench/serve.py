"""Latency and throughput of `slashcat serve` over real HTTP, beside the in-process anchor.

The server is the real command (`slashcat serve --port 0`) in a subprocess on 127.0.0.1, its
model warm. Measured in the same run:

- anchor: `Classifier.classify_bytes` called directly in this process (no HTTP), p50/p95;
- one client, sequential requests (keep-alive), single-image POST /api/classify: p50/p95;
- 8 concurrent clients, a bounded number of requests: requests/s and p50/p95.

Without --home it builds a small catalog (real product photos from shared/datasets when they
are there, else generated shapes) and trains a model at the default architecture and image size
(1 epoch: the weights do not matter for speed).

    .venv/bin/python bench/serve.py [--home DIR] [--requests 300] [--concurrent-requests 400]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from catalog.db import open_catalog
from catalog.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "fashion-products"
CLASSES = ("Topwear", "Shoes", "Bags", "Watches")
PER_CLASS = 30


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms(seconds: list[float]) -> str:
    p50, p95 = percentile(seconds, 50) * 1000, percentile(seconds, 95) * 1000
    return f"p50 {p50:7.2f} ms   p95 {p95:7.2f} ms"


def synthetic(seed: int, colour: tuple[int, int, int], size: int = 224) -> bytes:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def photos() -> dict[str, list[bytes]]:
    """Up to PER_CLASS photos for each class: shared product photos, or generated ones."""
    out: dict[str, list[bytes]] = {c: [] for c in CLASSES}
    if (SHARED / "products.csv").is_file():
        with (SHARED / "products.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                c = row["subCategory"]
                path = SHARED / "images" / f"{row['id']}.jpg"
                if c in out and len(out[c]) < PER_CLASS and path.is_file():
                    out[c].append(path.read_bytes())
    if any(len(v) < PER_CLASS for v in out.values()):
        colours = [(220, 40, 40), (40, 170, 60), (40, 70, 220), (230, 180, 20)]
        out = {c: [synthetic(i * 100 + j, colours[i]) for j in range(PER_CLASS)]
               for i, c in enumerate(CLASSES)}
    return out


def build_home(home: Path) -> tuple[str, bytes]:
    """A catalog with one trained, active model; returns (source of photos, one test photo)."""
    from catalog.ingest import get_or_create_store, ingest_image, link_image, upsert_product
    from catalog.labels import set_store_label
    from classifier.train import TrainConfig, train

    images = photos()
    source = "shared product photos" if (SHARED / "products.csv").is_file() and all(
        len(v) == PER_CLASS for v in images.values()) else "generated shapes"
    cat = open_catalog(Settings.load(home=home, env={}))
    try:
        with cat.session() as session:
            store = get_or_create_store(session, "bench", "http://bench.test/")
            for c, blobs in images.items():
                for i, data in enumerate(blobs[:-1]):  # the last one of each is never trained on
                    url = f"http://bench.test/{c}/{i}"
                    product, _ = upsert_product(session, store.id, url, category_path=c)
                    image = ingest_image(session, cat.store, data).image
                    link_image(session, product.id, image.id, url)
                    set_store_label(session, product, c)
        train(cat, TrainConfig(epochs=1, min_per_class=10, seed=0))
    finally:
        cat.close()
    return source, images[CLASSES[0]][-1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("slashcat")
    cmd = [str(exe), "--home", str(home), "--quiet", "serve", "--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "COLUMNS": "300", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    assert proc.stderr is not None
    lines: list[str] = []
    found: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if m and not found:
                found.append(m.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if found:
            try:
                if requests.get(found[0] + "/api/health", timeout=5).status_code == 200:
                    return proc, found[0]
            except requests.ConnectionError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start:\n" + "".join(lines[-20:]))


def one(session: requests.Session, url: str, data: bytes) -> float:
    started = time.perf_counter()
    r = session.post(url + "/api/classify", files=[("files", ("p.jpg", data, "image/jpeg"))],
                     timeout=30)
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:200]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="a catalog with an active model")
    parser.add_argument("--image", type=Path, help="the image to send [default: a product photo]")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests")
    parser.add_argument("--concurrent-requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:  # the child process that trains (see below)
        source, data = build_home(args.build_only)
        (args.build_only / "bench-photo.jpg").write_bytes(data)
        print(source)
        return

    tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
    data = b""
    if args.home:
        home = args.home
    else:
        # Train in a child process, so this one (the anchor) is as fresh as the server's.
        home = Path(tmp.name) / "home"
        t0 = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, "--build-only", str(home)],
                               capture_output=True, text=True, timeout=1800)
        if child.returncode != 0:
            raise SystemExit("building the catalog failed:\n" + child.stderr[-3000:])
        data = (home / "bench-photo.jpg").read_bytes()
        print(f"built a catalog from {child.stdout.strip().splitlines()[-1]} and trained a "
              f"model in {time.perf_counter() - t0:.1f} s (child process)")
    if args.image:
        data = args.image.read_bytes()
    if not data:
        data = synthetic(1, (200, 30, 30))

    from PIL import Image

    from classifier.predict import Classifier

    with Image.open(io.BytesIO(data)) as img:
        upload = f"{img.format} {img.size[0]}x{img.size[1]}, {len(data):,} bytes"

    cat = open_catalog(Settings.load(home=home, env={}))
    clf = Classifier.load(cat)
    print(f"model {clf.version}: {clf.image_size} px, {len(clf.classes)} classes; upload {upload}")
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (shared machine)")

    proc, url = start_server(home)
    try:
        # Anchor and HTTP in alternating rounds, so both see the same load on a shared machine.
        anchor: list[float] = []
        single: list[float] = []
        floor: list[float] = []
        with requests.Session() as s:
            for _ in range(10):
                clf.classify_bytes(data)
                one(s, url, data)
            rounds = 6
            for _ in range(rounds):
                for _ in range(args.requests // rounds):
                    t = time.perf_counter()
                    clf.classify_bytes(data)
                    anchor.append(time.perf_counter() - t)
                single += [one(s, url, data) for _ in range(args.requests // rounds)]
                for _ in range(args.requests // rounds):
                    t = time.perf_counter()
                    s.get(url + "/api/health", timeout=30).raise_for_status()
                    floor.append(time.perf_counter() - t)

        per_client = args.concurrent_requests // args.clients

        def client(_: int) -> list[float]:
            with requests.Session() as s:
                return [one(s, url, data) for _ in range(per_client)]

        before = requests.get(url + "/api/health", timeout=30).json()["batching"]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            parallel = [t for ts in pool.map(client, range(args.clients)) for t in ts]
        wall = time.perf_counter() - started
        after = requests.get(url + "/api/health", timeout=30).json()["batching"]
        calls = after["model_calls"] - before["model_calls"]
        served = after["requests_served"] - before["requests_served"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        cat.close()
        tmp.cleanup()

    a50, h50 = statistics.median(anchor), statistics.median(single)
    print(f"anchor  in-process classify_bytes      {ms(anchor)}   (n={len(anchor)})")
    print(f"http    1 client, sequential           {ms(single)}   (n={len(single)})")
    print(f"http    GET /api/health (HTTP floor)  {ms(floor)}   (n={len(floor)})")
    print(f"http    {args.clients} clients, concurrent          {ms(parallel)}   "
          f"(n={len(parallel)})")
    print(f"throughput  {len(parallel) / wall:7.1f} requests/s with {args.clients} clients "
          f"(anchor, 1 thread: {1 / a50:7.1f} images/s); {served / max(calls, 1):.2f} "
          f"requests per batched model call")
    print(f"ratio   http p50 / in-process p50 = {h50 / a50:.2f}x   "
          f"(p95 target < 100 ms: {'met' if percentile(single, 95) < 0.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
