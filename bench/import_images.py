"""Import the shared fashion photos (grouped by subCategory) into a fresh catalog.

Prints the median wall time of `import_images` over repeats beside an anchor measured in the
same run: a plain single-process loop that reads, fully decodes (Pillow) and sha256-hashes each
file, the least work any importer must do. With --postgres URL, each repeat also imports into
a fresh PostgreSQL catalog (a schema of the URL's database), timed beside SQLite.

    .venv/bin/python bench/import_images.py [--repeats 3] [--workers N] [--limit N]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pg_schema import reset_schema
from PIL import Image

from catalog.db import open_catalog
from catalog.importer import import_images
from catalog.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-products"


def build_folder(out: Path, limit: int | None = None) -> int:
    """Hard-link (or copy) each photo (the first `limit`) into <out>/<subCategory>/."""
    n = 0
    with (SHARED / "products.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if limit is not None and n >= limit:
                break
            src = SHARED / "images" / f"{row['id']}.jpg"
            if not src.exists():
                continue
            dest = out / row["subCategory"] / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                dest.hardlink_to(src)
            except OSError:
                shutil.copy(src, dest)
            n += 1
    return n


def anchor(folder: Path) -> float:
    started = time.perf_counter()
    for p in folder.rglob("*.jpg"):
        data = p.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(p) as img:
            img.load()
    return time.perf_counter() - started


def run_import(folder: Path, workers: int | None, db: str | None = None) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as home:
        cat = open_catalog(Settings.load(home=home, db=db, env={}))  # migrations: not timed
        started = time.perf_counter()
        report = import_images(cat, folder, "fashion", workers)
        elapsed = time.perf_counter() - started
        cat.close()
    summary = (f"products {report.products_new}, images {report.images_new}, "
               f"duplicates {report.images_duplicate}, rejected {len(report.rejected)}")
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--postgres", metavar="URL", help="also import into PostgreSQL here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "by-subcategory"
        n = build_folder(folder, args.limit)
        times, pg_times, summary, pg_summary = [], [], "", ""
        anchors = []
        for _ in range(args.repeats):
            elapsed, summary = run_import(folder, args.workers)
            times.append(elapsed)
            if args.postgres:
                db = reset_schema(args.postgres, "slashcat_bench_import")
                elapsed, pg_summary = run_import(folder, args.workers, db)
                pg_times.append(elapsed)
                reset_schema(args.postgres, "slashcat_bench_import", drop_only=True)
            anchors.append(anchor(folder))
    med, med_anchor = statistics.median(times), statistics.median(anchors)
    print(f"files: {n}; {summary}")
    print(f"slashcat import, SQLite: median {med:.2f} s over {args.repeats} runs "
          f"({n / med:,.0f} images/s); runs: {', '.join(f'{t:.2f}' for t in times)}")
    if pg_times:
        pg = statistics.median(pg_times)
        print(f"slashcat import, PostgreSQL: median {pg:.2f} s ({n / pg:,.0f} images/s); "
              f"runs: {', '.join(f'{t:.2f}' for t in pg_times)}; {pg_summary}")
        print(f"ratio PostgreSQL/SQLite time: {pg / med:.2f} (target <= 1.5: "
              f"{'met' if pg / med <= 1.5 else 'MISSED'})")
    print(f"anchor (read + Pillow decode + sha256, 1 process): median {med_anchor:.2f} s "
          f"({n / med_anchor:,.0f} images/s)")
    print(f"ratio import/anchor time: {med / med_anchor:.2f}")


if __name__ == "__main__":
    main()
