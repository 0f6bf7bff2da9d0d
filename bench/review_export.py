"""Benchmark: review key press -> next card drawn, and export speed/memory on a big catalog.

    .venv/bin/python bench/review_export.py                    # everything (1,000,000 products)
    .venv/bin/python bench/review_export.py --products 100000  # a quicker export run
    .venv/bin/python bench/review_export.py --skip-export      # only the review screen
    .venv/bin/python bench/review_export.py --skip-review --postgres URL  # export on both engines

Review: 200 cards at 120x40, half-block images from 400x400 JPEGs; each key is `a` (accept, so
  the figure includes committing the label), pressed one at a time.
  (a) Textual's pilot: from the key press until the app has refreshed the screen with the next
      card (call_after_refresh); anchor: the same app with no picture (--images none).
  (b) a real terminal (tmux), if installed: from send-keys until capture-pane shows the next
      card's title and position (includes tmux's own polling cost, so it is an upper bound).
Export: rows/s and peak RSS of `write_export` over N products in a fresh process, against an
  anchor: a bare SQL join written with a plain csv.writer, in the same run. Medians of repeats.
  With --postgres URL, the same catalog is copied into a PostgreSQL schema (COPY, not timed)
  and exported from there too, beside the SQLite figure (issue 17: within 1.5x of its time).
Targets (issue 6): key -> card < 100 ms; export >= 50,000 rows/s and < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = "2026-11-25 04:00:00.000000"
CATEGORIES = [f"Dept {d} > Category {c}" for d in range(4) for c in range(5)]


# --- a big catalog, built with bulk inserts ---------------------------------------------------


def build_big_catalog(home: Path, products: int) -> Path:
    """A migrated catalog with `products` products, one image each, predictions and labels."""
    from catalog.db import open_catalog
    from catalog.settings import Settings

    db = home / "catalog.db"
    marker = home / f"built-{products}"
    if marker.exists():
        return db
    if home.exists():
        shutil.rmtree(home)
    open_catalog(Settings.load(home=home, env={})).close()
    rng = random.Random(7)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("INSERT INTO stores (id, name, base_url, created_at) VALUES "
                "(1, 'bench', 'http://bench.test/', ?)", (NOW,))
    con.executemany("INSERT INTO categories (id, name) VALUES (?, ?)",
                    [(i + 1, name) for i, name in enumerate(CATEGORIES)])
    con.execute(
        "INSERT INTO models (id, version, task, created_at, architecture, image_size, classes, "
        "metrics, temperature, path, active) VALUES (1, 'bench-v1', 'category', ?, 'cnn', 64, "
        "?, '{}', 1.0, 'models/bench-v1.keras', 1)", (NOW, json.dumps(CATEGORIES)))
    chunk = 50_000
    for start in range(1, products + 1, chunk):
        ids = range(start, min(start + chunk, products + 1))
        _insert_chunk(con, ids, rng)
    con.commit()
    con.close()
    marker.touch()
    return db


def _title(i: int) -> str:
    if i % 97 == 0:
        return f'=HYPERLINK("http://x.test/{i}")'
    if i % 89 == 0:
        return f'Shirt, "slim" fit\nsize {i}'
    return f"Product {i} — ünïcödé 製品"


def _insert_chunk(con: sqlite3.Connection, ids: range, rng: random.Random) -> None:
    n = len(CATEGORIES)
    con.executemany(
        "INSERT INTO images (id, sha256, path, format, width, height, size_bytes, cluster_id, "
        "is_canonical, created_at) VALUES (?, ?, ?, 'jpeg', 64, 64, 1000, ?, ?, ?)",
        [(i, f"{i:064x}", f"images/00/00/{i:064x}.jpg",
          i // 2 if i % 10 < 2 else None, 1 if (i % 10 >= 2 or i % 2 == 0) else 0, NOW)
         for i in ids])
    con.executemany(
        "INSERT INTO products (id, store_id, external_id, url, title, category_path, first_seen, "
        "last_seen) VALUES (?, 1, ?, ?, ?, ?, ?, ?)",
        [(i, f"SKU{i}", f"http://bench.test/p/{i}", _title(i), CATEGORIES[i % n], NOW, NOW)
         for i in ids])
    con.executemany(
        "INSERT INTO product_images (id, product_id, image_id, source_url, position) "
        "VALUES (?, ?, ?, ?, 0)", [(i, i, i, f"http://bench.test/img/{i}.jpg") for i in ids])
    preds = []
    for i in ids:
        top = rng.random() * 0.7 + 0.3
        second = (1 - top) * rng.random()
        cat = i % n
        top_k = [[CATEGORIES[cat], top], [CATEGORIES[(cat + 1) % n], second],
                 [CATEGORIES[(cat + 2) % n], max(0.0, 1 - top - second)]]
        preds.append((i, i, i, cat + 1, top, top - second, json.dumps(top_k), NOW))
    con.executemany(
        "INSERT INTO predictions (id, product_id, image_id, model_id, category_id, confidence, "
        "margin, top_k, created_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)", preds)
    labels = []
    for i in ids:
        if i % 3 == 0:
            labels.append((i, (i % n) + 1, "store", None, None, None))
        if i % 20 == 0:
            labels.append((i, ((i + 1) % n) + 1, "human", "bench", "bench-v1", None))
        if i % 50 == 1:
            labels.append((i, (i % n) + 1, "model-accepted", None, "bench-v1", 0.97))
    con.executemany(
        "INSERT INTO labels (product_id, category_id, source, author, model_version, confidence, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, '" + NOW + "')", labels)


# The tables in foreign-key order, as the SQLite build filled them.
COPIED = ["stores", "categories", "models", "images", "products", "product_images",
          "predictions", "labels"]


def copy_to_postgres(db: Path, url: str, products: int) -> str:
    """The SQLite big catalog copied into schema slashcat_bench_export_<n> (kept for reruns)."""
    from pg_schema import reset_schema, schema_exists, schema_url

    from catalog.db import open_catalog
    from catalog.settings import Settings

    schema = f"slashcat_bench_export_{products}"
    target = schema_url(url, schema)
    if schema_exists(url, schema) and _pg_products(target) == products:
        return target
    reset_schema(url, schema)
    open_catalog(Settings.load(home=db.parent, db=target, env={})).close()  # migrate
    src = sqlite3.connect(db)
    with _psycopg(target) as conn, conn.cursor() as cur:
        for table in COPIED:
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                    copy.write_row(row)
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))")
        cur.execute("ANALYZE")
    src.close()
    return target


def _psycopg(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))


def _pg_products(url: str) -> int:
    try:
        with _psycopg(url) as conn:
            return int(conn.execute("SELECT count(*) FROM products").fetchone()[0])
    except Exception:  # no table yet
        return -1


# --- export -------------------------------------------------------------------------------------


ANCHOR_QUERY = (
    "SELECT s.name, p.external_id, p.url, p.title, i.sha256, i.path, pi.source_url "
    "FROM products p JOIN stores s ON s.id = p.store_id "
    "LEFT JOIN product_images pi ON pi.product_id = p.id "
    "LEFT JOIN images i ON i.id = pi.image_id ORDER BY p.id"
)


def export_once(home: Path, out: Path, anchor: bool, db: str | None = None) -> dict[str, float]:
    """Run one export (or the anchor) in this process; returns rows, seconds, peak RSS in MB."""
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if anchor and db:
        with _psycopg(db) as conn, out.open("w", encoding="utf-8", newline="") as fh:
            cur = conn.cursor(name="anchor")  # server-side, as the export streams
            cur.itersize = 10_000
            cur.execute(ANCHOR_QUERY)
            csv.writer(fh).writerows(cur)
            cur.close()
            rows = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    elif anchor:
        con = sqlite3.connect(home / "catalog.db")
        query = ANCHOR_QUERY
        with out.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerows(con.execute(query))
        rows = con.execute("SELECT count(*) FROM products").fetchone()[0]
        con.close()
    else:
        from catalog.db import open_catalog
        from catalog.export import export_to_path
        from catalog.settings import Settings

        cat = open_catalog(Settings.load(home=home, db=db, env={}))
        with cat.session() as session:
            rows = export_to_path(session, out)
        cat.close()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "peak_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export_in_child(home: Path, anchor: bool, db: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.csv"
        cmd = [sys.executable, __file__, "--child-export", str(home), str(out)]
        if anchor:
            cmd.append("--anchor")
        if db:
            cmd += ["--db", db]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])


def bench_export(products: int, repeats: int, workdir: Path, postgres: str | None) -> None:
    home = workdir / f"big-{products}"
    t0 = time.perf_counter()
    db = build_big_catalog(home, products)
    print(f"catalog with {products:,} products ready in {time.perf_counter() - t0:.1f} s "
          f"({home})")
    pg = None
    if postgres:
        t0 = time.perf_counter()
        pg = copy_to_postgres(db, postgres, products)
        print(f"copied into PostgreSQL in {time.perf_counter() - t0:.1f} s")
    ours, anchor, pg_ours, pg_anchor = [], [], [], []
    for _ in range(repeats):
        ours.append(export_in_child(home, anchor=False))
        anchor.append(export_in_child(home, anchor=True))
        if pg:
            pg_ours.append(export_in_child(home, anchor=False, db=pg))
            pg_anchor.append(export_in_child(home, anchor=True, db=pg))
    if pg:
        _compare_engines(ours, pg_ours, pg_anchor)
    rate = statistics.median(r["rows"] / r["seconds"] for r in ours)
    anchor_rate = statistics.median(r["rows"] / r["seconds"] for r in anchor)
    cpu_rate = statistics.median(r["rows"] / r["cpu"] for r in ours)
    anchor_cpu_rate = statistics.median(r["rows"] / r["cpu"] for r in anchor)
    peak = max(r["peak_mb"] for r in ours)
    anchor_peak = max(r["peak_mb"] for r in anchor)
    print(f"export:  {rate:,.0f} rows/s wall, {cpu_rate:,.0f} rows per CPU-second "
          f"(median of {repeats}), peak RSS {peak:.0f} MB for {int(ours[0]['rows']):,} rows")
    print(f"anchor:  {anchor_rate:,.0f} rows/s wall, {anchor_cpu_rate:,.0f} rows per CPU-second, "
          f"peak RSS {anchor_peak:.0f} MB (bare SQL join + csv.writer, no final category)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall figures shrink when other processes share the cores)")
    print(f"ratio:   export runs at {rate / anchor_rate:.2f}x the anchor's speed; "
          f"target >= 50,000 rows/s: {'met' if rate >= 50_000 else 'MISSED'}, "
          f"< 200 MB: {'met' if peak < 200 else 'MISSED'}")


def _compare_engines(sqlite: list[dict[str, float]], pg: list[dict[str, float]],
                     pg_anchor: list[dict[str, float]]) -> None:
    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"PostgreSQL export: median {med(pg, 'seconds'):.2f} s wall, "
          f"{med(pg, 'cpu'):.2f} s CPU of the exporting process, peak RSS "
          f"{max(r['peak_mb'] for r in pg):.0f} MB; its anchor (server-side cursor + csv.writer): "
          f"{med(pg_anchor, 'seconds'):.2f} s")
    ratio = med(pg, "seconds") / med(sqlite, "seconds")
    print(f"SQLite export: median {med(sqlite, 'seconds'):.2f} s wall, {med(sqlite, 'cpu'):.2f} s "
          f"CPU; ratio PostgreSQL/SQLite time {ratio:.2f} (target <= 1.5: "
          f"{'met' if ratio <= 1.5 else 'MISSED'})")


# --- review screen ------------------------------------------------------------------------------


def build_review_catalog(home: Path, cards: int) -> None:
    """A small real catalog: `cards` products with 400x400 JPEGs and low-confidence predictions."""
    import numpy as np
    from PIL import Image as PILImage

    from catalog.categories import ensure_category
    from catalog.db import open_catalog
    from catalog.ingest import get_or_create_store, ingest_image, link_image, upsert_product
    from catalog.models import Model, Prediction
    from catalog.settings import Settings

    if home.exists():
        shutil.rmtree(home)
    cat = open_catalog(Settings.load(home=home, env={}))
    rng = np.random.default_rng(1)
    with cat.session() as s:
        store = get_or_create_store(s, "bench", "http://bench.test/")
        ids = [ensure_category(s, c).id for c in CATEGORIES]
        model = Model(version="bench-v1", task="category", architecture="cnn", image_size=64,
                      classes=CATEGORIES, path="models/x.keras", active=True)
        s.add(model)
        s.flush()
        for i in range(cards):
            product, _ = upsert_product(s, store.id, f"http://bench.test/p/{i}",
                                        title=f"Bench product {i:04d}", category_path="A > B")
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            picture = PILImage.fromarray(pixels).resize((400, 400), PILImage.BICUBIC)
            buf = io.BytesIO()
            picture.save(buf, "JPEG", quality=85)
            image = ingest_image(s, cat.store, buf.getvalue()).image
            link_image(s, product.id, image.id, f"http://bench.test/img/{i}.jpg")
            conf = 0.3 + 0.3 * i / cards  # the queue shows them in product order
            top_k = [[CATEGORIES[i % 20], conf], [CATEGORIES[(i + 1) % 20], (1 - conf) / 2],
                     [CATEGORIES[(i + 2) % 20], (1 - conf) / 2]]
            s.add(Prediction(product_id=product.id, image_id=image.id, model_id=model.id,
                             category_id=ids[i % 20], confidence=conf,
                             margin=conf - (1 - conf) / 2, top_k=top_k))
    cat.close()


def pilot_latencies(home: Path, cards: int, images: str) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds from each key press to the next card drawn."""
    from catalog.db import open_catalog
    from catalog.review import QueueFilter, ReviewSession, all_categories
    from catalog.settings import Settings
    from cli.review_screen import ReviewApp, image_widget_class

    cat = open_catalog(Settings.load(home=home, env={}))
    review = ReviewSession(cat, QueueFilter(), author="bench")
    with cat.session() as s:
        categories = all_categories(s)
    app = ReviewApp(review, categories, image_widget_class(images), "bench")
    times: list[float] = []
    cpu: list[float] = []

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            for _ in range(cards):
                before = app.drawn
                start, cpu_start = time.perf_counter(), time.process_time()
                await pilot.press("a")  # accept: commits a label, then draws the next card
                while app.drawn == before:
                    await asyncio.sleep(0.0005)
                times.append(app.drawn_at - start)
                cpu.append(time.process_time() - cpu_start)

    asyncio.run(main())
    cat.close()
    return times, cpu


def tmux_latencies(home: Path, cards: int) -> list[float] | None:
    if shutil.which("tmux") is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="sc-tmux-"))
    tmux = ["tmux", "-S", str(folder / "sock")]
    exe = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, "-c",
                      "from cli.app import main; main()", "--home", str(home), "review",
                      "--images", "halfcell", "--below", "1"])
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "40", "-s", "b", "-c",
                    str(ROOT), exe], check=True)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "b"], capture_output=True,
                              text=True).stdout

    def wait(*texts: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            shown = screen()
            if all(t in shown for t in texts):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"tmux never showed {texts!r}:\n{shown}")

    times = []
    try:
        wait(f"1 / {cards}")
        for k in range(cards - 1):
            start = time.perf_counter()
            subprocess.run([*tmux, "send-keys", "-t", "b", "a"], check=True)
            wait(f"Bench product {k + 1:04d}", f"{k + 2} / {cards}")
            times.append(time.perf_counter() - start)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return times


def describe(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms over {len(ms)} cards"


def fresh_copy(template: Path, home: Path) -> Path:
    """Each run decides every card, so each gets its own copy of the catalog."""
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(template, home)
    return home


def bench_review(cards: int, workdir: Path, use_tmux: bool) -> None:
    template = workdir / "review-template"
    build_review_catalog(template, cards + 1)
    halfcell, halfcell_cpu = pilot_latencies(
        fresh_copy(template, workdir / "review-a"), cards, "halfcell")
    plain, plain_cpu = pilot_latencies(fresh_copy(template, workdir / "review-b"), cards, "none")
    print(describe("key -> next card (pilot, half-block image)", halfcell))
    print(describe("  the same, CPU time of the process       ", halfcell_cpu))
    print(describe("anchor: same screen without a picture     ", plain))
    print(describe("  the same, CPU time of the process       ", plain_cpu))
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ratio = statistics.median(halfcell) / statistics.median(plain)
    verdict = "met" if statistics.median(halfcell) < 0.1 else "MISSED"
    print(f"ratio: the picture costs {ratio:.2f}x the text-only card; target median < 100 ms: "
          f"{verdict}")
    if use_tmux:
        real = tmux_latencies(fresh_copy(template, workdir / "review-c"), cards + 1)
        if real is None:
            print("tmux not installed: no real-terminal figure")
        else:
            print(describe("key -> next card in tmux (upper bound)   ", real))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--cards", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "slashcat-bench")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-review", action="store_true")
    parser.add_argument("--no-tmux", action="store_true")
    parser.add_argument("--child-export", nargs=2, metavar=("HOME", "OUT"))
    parser.add_argument("--anchor", action="store_true")
    parser.add_argument("--db", help=argparse.SUPPRESS)  # the child's catalog URL
    parser.add_argument("--postgres", metavar="URL",
                        help="also export from PostgreSQL (a schema in this database)")
    args = parser.parse_args()
    if args.child_export:
        home, out = map(Path, args.child_export)
        print(json.dumps(export_once(home, out, args.anchor, args.db)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.skip_review:
        bench_review(args.cards, args.workdir, not args.no_tmux)
    if not args.skip_export:
        bench_export(args.products, args.repeats, args.workdir, args.postgres)


if __name__ == "__main__":
    main()
