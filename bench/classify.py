"""Benchmark: train `--arch seed` and the default architecture on fashion-products under the same
time budget; print top-1, macro-F1, ECE after calibration, training wall time, and prediction
throughput end to end (decode, predict, write) next to raw `model.predict` on preloaded tensors.

    .venv/bin/python bench/classify.py [--budget-min 15] [--image-size 64] [--repeats 3]

The catalog is built once under --work (import of a folder of subCategory sub-folders, then
dedupe so the frozen split is cluster-aware) and reused by later runs. The machine's cores are
shared, so timings are noisy: each throughput figure is a median over --repeats.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, func, select

from catalog.db import Catalog, open_catalog
from catalog.models import Prediction, Product
from catalog.settings import Settings

DATA = Path(__file__).resolve().parent.parent.parent / "shared/datasets/fashion-products"
MIN_IMAGES = 40


def class_folders(src: Path, out: Path) -> dict[str, int]:
    """Copy images into out/<subCategory>/ for classes with at least MIN_IMAGES images."""
    with (src / "products.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if (src / "images" / f"{r['id']}.jpg").is_file()]
    counts = Counter(r["subCategory"] for r in rows)
    keep = {c for c, n in counts.items() if n >= MIN_IMAGES}
    for r in rows:
        if r["subCategory"] in keep:
            target = out / r["subCategory"] / f"{r['id']}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copyfile(src / "images" / f"{r['id']}.jpg", target)
    return {c: counts[c] for c in sorted(keep)}


def build_catalog(work: Path, data: Path) -> Catalog:
    from catalog.importer import import_images

    settings = Settings.load(home=work / "home", env={})
    cat = open_catalog(settings)
    with cat.session() as session:
        have = session.scalar(select(func.count(Product.id))) or 0
    if have == 0:
        t0 = time.perf_counter()
        classes = class_folders(data, work / "src")
        print(f"classes (>= {MIN_IMAGES} images): {classes}")
        report = import_images(cat, work / "src", "fashion")
        print(f"imported {report.images_new} images in {time.perf_counter() - t0:.1f}s")
        try:
            from catalog.dedupe import run_dedupe

            summary = run_dedupe(cat)
            print(f"dedupe: {summary.rows_changed} images changed cluster/canonical")
        except Exception as exc:  # the dedupe module is someone else's and may be in flux
            print(f"dedupe unavailable ({exc}); every image is its own cluster")
    return cat


def raw_rate(clf, images, repeats: int) -> float:  # type: ignore[no-untyped-def]
    import numpy as np

    x = images.astype(np.float32)
    clf.raw_probabilities(x[:256])  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clf.raw_probabilities(x)  # model.predict_on_batch, 256 at a time
        rates.append(len(x) / (time.perf_counter() - t0))
    return statistics.median(rates)


def e2e_rate(cat: Catalog, version: str, model_id: int, repeats: int) -> tuple[float, int]:
    from classifier.predict import predict_catalog

    rates, n = [], 0
    for _ in range(repeats):
        with cat.session() as session:
            session.execute(delete(Prediction).where(Prediction.model_id == model_id))
        report = predict_catalog(cat, version, scope="all")
        n = report.images
        rates.append(report.images / report.seconds)
    return statistics.median(rates), n


def run_arch(cat: Catalog, arch: str, args: argparse.Namespace) -> dict[str, float | str]:
    from classifier.evaluate import evaluate
    from classifier.pipeline import decode_files
    from classifier.predict import Classifier
    from classifier.train import TrainConfig, train

    config = TrainConfig(
        arch=arch, image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        time_budget_min=args.budget_min, seed=args.seed, activate=False,
        patience=args.patience,
    )

    def show(event) -> None:  # type: ignore[no-untyped-def]
        if event.stage == "epoch" and event.epoch is not None:
            e = event.epoch
            print(f"  [{arch}] epoch {e.epoch}/{e.planned} loss {e.loss:.3f} acc {e.accuracy:.3f} "
                  f"val_acc {e.val_accuracy:.3f} {e.seconds:.1f}s", flush=True)

    result = train(cat, config, show)
    report = evaluate(cat, result.version)
    clf = Classifier.load(cat, result.version)
    e2e, n = e2e_rate(cat, result.version, result.model_id, args.repeats)
    test_paths = [str(p) for p in sorted(cat.settings.images_dir.rglob("*.jpg"))][:n]
    preloaded = decode_files(test_paths, args.image_size).images
    raw = raw_rate(clf, preloaded, args.repeats)
    return {
        "arch": arch,
        "version": result.version,
        "top1": report.accuracy,
        "macro_f1": report.macro_f1,
        "ece_before": report.ece_before,
        "ece_after": report.ece_after,
        "train_s": result.train_seconds,
        "epochs": result.epochs_run,
        "input_ms": result.input_ms_per_batch,
        "step_ms": result.step_ms_per_batch,
        "e2e_rate": e2e,
        "raw_rate": raw,
        "images": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/slashcat-bench-classify2"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--budget-min", type=float, default=15.0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default="seed,compact")
    args = parser.parse_args()
    cat = build_catalog(args.work, args.data)
    rows = [run_arch(cat, arch, args) for arch in args.archs.split(",")]
    print()
    print(f"budget {args.budget_min} min per architecture, image size {args.image_size}, "
          f"2 shared CPU cores (timings are noisy)")
    head = (f"{'arch':10} {'top-1':>6} {'macroF1':>7} {'ECE raw':>7} {'ECE cal':>7} "
            f"{'train s':>8} {'epochs':>6} {'in ms/b':>7} {'step ms/b':>9} "
            f"{'e2e img/s':>9} {'raw img/s':>9} {'e2e/raw':>7}")
    print(head)
    for r in rows:
        print(f"{r['arch']:10} {r['top1']:6.3f} {r['macro_f1']:7.3f} {r['ece_before']:7.3f} "
              f"{r['ece_after']:7.3f} {r['train_s']:8.0f} {r['epochs']:6d} {r['input_ms']:7.1f} "
              f"{r['step_ms']:9.1f} {r['e2e_rate']:9.0f} {r['raw_rate']:9.0f} "
              f"{r['e2e_rate'] / r['raw_rate']:7.2f}")
    if len(rows) == 2:
        print(f"default vs seed top-1: {rows[1]['top1'] - rows[0]['top1']:+.3f}")
    cat.close()


if __name__ == "__main__":
    main()
