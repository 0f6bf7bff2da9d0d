"""Benchmark: the pretrained default (lite0), the compact CNN and the seed CNN side by side on
fashion-products (subCategory, classes with at least 30 images), same frozen cluster-aware test
split, one time budget each. Prints top-1, macro-F1, ECE before/after calibration, training
wall time (and for lite0 the head-only model's: decoding + embeddings + head), prediction
throughput end to end (`predict_catalog`: decode, predict, write) next to raw
`model.predict_on_batch` on preloaded tensors, and few-label runs (train and validate on only
20 and 10 images per class, test on the same whole test split).

    .venv/bin/python bench/classify.py [--budget-min 15] [--repeats 3] [--few 20,10]
    .venv/bin/python bench/classify.py --throughput [--repeats 3]   # predict speed only
    .venv/bin/python bench/classify.py --titles [--limit 30]   # title-aware models (issue 15)

The catalog is built once under --work (import of a folder of subCategory sub-folders, then
dedupe so the frozen split is cluster-aware) and reused by later runs; the lite0 embedding
cache is emptied before its full-data run so the head-only time includes the embeddings. The
machine's cores are shared: the load average is printed, throughput figures are medians over
--repeats, few-label accuracies medians over --few-repeats subsets (seeds).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, func, select

from catalog.db import Catalog, open_catalog
from catalog.models import Prediction, Product
from catalog.settings import Settings

DATA = Path(__file__).resolve().parent.parent.parent / "shared/datasets/fashion-products"
MIN_IMAGES = 30  # the issue: subCategory classes with at least 30 images


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


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_clock() -> tuple[float, float]:
    """(wall, CPU) seconds of this process, TensorFlow's and tf.data's threads included."""
    return time.perf_counter(), time.process_time()


def raw_once(clf, images) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(images/s, CPU ms per image) of the model alone on preloaded tensors."""
    w0, c0 = cpu_clock()
    clf.raw_probabilities(images)  # the model, 256 at a time
    w1, c1 = cpu_clock()
    return len(images) / (w1 - w0), 1000 * (c1 - c0) / len(images)


def e2e_once(cat: Catalog, version: str, model_id: int) -> tuple[float, float, int]:
    """(images/s, CPU ms per image, images) of predict_catalog over every product: read,
    decode, predict, write (loading the model not counted)."""
    from classifier.predict import predict_catalog

    with cat.session() as session:
        session.execute(delete(Prediction).where(Prediction.model_id == model_id))
    c0 = time.process_time()
    report = predict_catalog(cat, version, scope="all")
    cpu = time.process_time() - c0  # includes loading: subtract it at the wall's rate
    cpu_run = cpu * report.seconds / max(1e-9, report.seconds + report.load_seconds)
    return report.images / report.seconds, 1000 * cpu_run / max(1, report.images), report.images


def throughput(cat: Catalog, version: str, model_id: int, kept: str | None,
               args: argparse.Namespace) -> dict[str, Any]:
    """End to end on images the model has not seen (no embedding cache) and raw
    model.predict, interleaved (raw, e2e, raw, e2e, ...) so both see the same load; medians."""
    import numpy as np

    from classifier.pipeline import decode_files
    from classifier.predict import Classifier

    clf = Classifier.load(cat, version)
    paths = [str(p) for p in sorted(cat.settings.images_dir.rglob("*.jpg"))][: args.raw_images]
    preloaded = decode_files(paths, clf.image_size).images.astype(np.float32)
    clf.raw_probabilities(preloaded[:256])  # warm-up (tracing)
    out: dict[str, Any] = {"cached_rate": None}
    if kept == "head":  # its training images' embeddings are cached: that pace first
        out["cached_rate"] = statistics.median(
            e2e_once(cat, version, model_id)[0] for _ in range(args.repeats))
    cache = cat.settings.home / "embeddings"
    aside = cache.with_name("embeddings-aside")
    if cache.exists():
        cache.rename(aside)
    raws, e2es = [], []
    try:
        for _ in range(args.repeats):
            raws.append(raw_once(clf, preloaded))
            e2es.append(e2e_once(cat, version, model_id))
            print(f"    raw {raws[-1][0]:.1f} img/s {raws[-1][1]:.2f} CPU ms/img; end to end "
                  f"{e2es[-1][0]:.1f} img/s {e2es[-1][1]:.2f} CPU ms/img; {load()}", flush=True)
    finally:
        if aside.exists():
            aside.rename(cache)
    med = statistics.median
    out.update(raw_rate=med(r for r, _c in raws), raw_cpu=med(c for _r, c in raws),
               e2e_rate=med(r for r, _c, _n in e2es), e2e_cpu=med(c for _r, c, _n in e2es),
               images=e2es[0][2], raw_images=len(preloaded))
    print(f"  predict end to end {out['e2e_rate']:.1f} images/s ({out['e2e_cpu']:.2f} CPU ms "
          f"each) over {out['images']} unseen images, raw model.predict {out['raw_rate']:.1f} "
          f"images/s ({out['raw_cpu']:.2f} CPU ms each) over {out['raw_images']}: "
          f"{out['e2e_rate'] / out['raw_rate']:.2f} of raw by wall clock, "
          f"{out['raw_cpu'] / out['e2e_cpu']:.2f} by CPU time (medians of {args.repeats}); "
          f"{load()}", flush=True)
    return out


def train_once(cat: Catalog, arch: str, args: argparse.Namespace, per_class: int | None,
               seed: int):  # type: ignore[no-untyped-def]
    from classifier.evaluate import evaluate
    from classifier.train import TrainConfig, train

    config = TrainConfig(
        arch=arch, image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        time_budget_min=args.budget_min, seed=seed, activate=False, patience=args.patience,
        max_per_class=per_class,
    )
    tag = f"{arch}{'' if per_class is None else f' {per_class}/class seed {seed}'}"

    def show(event) -> None:  # type: ignore[no-untyped-def]
        if event.stage == "epoch" and event.epoch is not None and args.verbose:
            e = event.epoch
            print(f"  [{tag}] epoch {e.epoch}/{e.planned} loss {e.loss:.3f} acc {e.accuracy:.3f} "
                  f"val_acc {e.val_accuracy:.3f} {e.seconds:.1f}s", flush=True)

    t0 = time.perf_counter()
    result = train(cat, config, show)
    report = evaluate(cat, result.version)
    print(f"  [{tag}] top-1 {report.accuracy:.4f} macro-F1 {report.macro_f1:.4f} "
          f"kept {result.kept or '-'} epochs {result.epochs_run} "
          f"({result.stop_reason}) in {time.perf_counter() - t0:.0f} s; {load()}", flush=True)
    return result, report


def run_full(cat: Catalog, arch: str, args: argparse.Namespace) -> dict[str, Any]:
    if arch == "lite0":  # a cold cache: the head-only time includes computing embeddings
        shutil.rmtree(cat.settings.home / "embeddings", ignore_errors=True)
    result, report = train_once(cat, arch, args, None, args.seed)
    rates = throughput(cat, result.version, result.model_id, result.kept, args)
    head = (None if result.head_seconds is None
            else result.decode_seconds + result.head_seconds)
    return {
        "arch": arch, "data": "full", "size": result.image_size,
        "top1": report.accuracy, "macro_f1": report.macro_f1,
        "ece_before": report.ece_before, "ece_after": report.ece_after,
        "train_s": result.decode_seconds + result.train_seconds, "head_s": head,
        "how": result.kept or f"{result.epochs_run} ep",
        "e2e_rate": rates["e2e_rate"], "raw_rate": rates["raw_rate"],
        "cached_rate": rates["cached_rate"],
    }


def run_throughput(cat: Catalog, args: argparse.Namespace) -> None:
    """--throughput: only predict end to end vs raw, with the newest full-data lite0 model
    of the work catalog (trained first, within --budget-min, if there is none)."""
    from catalog.models import Model

    with cat.session() as session:
        rows = session.scalars(select(Model).where(Model.architecture == "lite0")
                               .order_by(Model.id.desc())).all()
        row = next((r for r in rows if not (r.metrics or {}).get("config", {}).get(
            "max_per_class")), None)
        found = None if row is None else (row.version, row.id,
                                          (row.metrics or {}).get("train", {}).get("kept"))
    if found is None:
        result, _report = train_once(cat, "lite0", args, None, args.seed)
        found = (result.version, result.model_id, result.kept)
    print(f"throughput of model {found[0]} (lite0, kept {found[2]})", flush=True)
    throughput(cat, *found, args)


def run_few(cat: Catalog, arch: str, per_class: int, args: argparse.Namespace
            ) -> dict[str, Any]:
    runs = [train_once(cat, arch, args, per_class, args.seed + k)
            for k in range(args.few_repeats)]
    reports = [r for _res, r in runs]
    med = statistics.median
    return {
        "arch": arch, "data": f"{per_class}/class", "size": runs[0][0].image_size,
        "top1": med(r.accuracy for r in reports), "macro_f1": med(r.macro_f1 for r in reports),
        "ece_before": med(r.ece_before for r in reports),
        "ece_after": med(r.ece_after for r in reports),
        "train_s": med(res.decode_seconds + res.train_seconds for res, _r in runs),
        "head_s": None, "how": ",".join(res.kept or f"{res.epochs_run}ep" for res, _r in runs),
        "e2e_rate": None, "raw_rate": None, "cached_rate": None,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"budget {args.budget_min} min per training run, 2 shared CPU cores, {load()}")
    print(f"{'arch':8} {'data':9} {'px':>3} {'top-1':>6} {'macroF1':>7} {'ECE raw':>7} "
          f"{'ECE cal':>7} {'train s':>7} {'head s':>6} {'e2e img/s':>9} {'raw img/s':>9} "
          f"{'e2e/raw':>7}  kept/epochs")
    for r in rows:
        ratio = (r["e2e_rate"] / r["raw_rate"]) if r["e2e_rate"] and r["raw_rate"] else None
        print(f"{r['arch']:8} {r['data']:9} {r['size']:3d} {r['top1']:6.4f} "
              f"{r['macro_f1']:7.4f} {r['ece_before']:7.4f} {r['ece_after']:7.4f} "
              f"{r['train_s']:7.0f} {fmt(r['head_s'], '6.0f'):>6} "
              f"{fmt(r['e2e_rate'], '9.1f'):>9} {fmt(r['raw_rate'], '9.1f'):>9} "
              f"{fmt(ratio, '7.2f'):>7}  {r['how']}")
        if r["cached_rate"]:
            print(f"{'':8} {'':9} {'':3} predict end to end on its training images (embeddings "
                  f"cached): {r['cached_rate']:.1f} images/s")
    print("e2e: predict_catalog over every image, none of them in the embedding cache (read, "
          "decode, predict, write);\nraw: the model alone on preloaded tensors, interleaved "
          "with e2e; head s: decoding + embeddings + head (lite0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/slashcat-bench-classify3"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--budget-min", type=float, default=15.0)
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: each architecture's own (lite0 160, others 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats")
    parser.add_argument("--raw-images", type=int, default=1024,
                        help="preloaded images for the raw model.predict rate")
    parser.add_argument("--archs", default="lite0,compact,seed")
    parser.add_argument("--few", default="20,10", help="images per class; '' for none")
    parser.add_argument("--few-archs", default="lite0,compact")
    parser.add_argument("--few-repeats", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="print every epoch")
    parser.add_argument("--throughput", action="store_true",
                        help="only predict end to end vs raw (newest lite0 model, or train one)")
    from title_model import add_titles_arguments, run_titles  # bench/, beside this file

    add_titles_arguments(parser)
    args = parser.parse_args()
    print(f"start: {load()}", flush=True)
    if args.titles:  # issue 15's figures: bench/title_model.py on this catalog's split
        run_titles(args, build_catalog, e2e_once)
        return
    cat = build_catalog(args.work, args.data)
    if args.throughput:
        run_throughput(cat, args)
        cat.close()
        return
    rows = [run_full(cat, arch, args) for arch in args.archs.split(",") if arch]
    for per_class in [int(n) for n in args.few.split(",") if n]:
        rows += [run_few(cat, arch, per_class, args) for arch in args.few_archs.split(",")]
    print_table(rows, args)
    cat.close()


if __name__ == "__main__":
    main()
