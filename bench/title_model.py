"""Benchmark: title-aware predictions (issue 15) on the shared fashion-products data.

Classes: subCategory with at least MIN_IMAGES images; titles: productDisplayName. The lite0
embeddings (EfficientNet-Lite0, ImageNet weights) are computed once and cached under
bench/out/ by image sha256 (classifier.embeddings.EmbeddingStore); later runs only read them.

The split: a seeded, stratified draw over near-duplicate groups (pHash and dHash within the
catalog's default dedupe threshold, connected components), through catalog.splits'
stratified_draw; so near-identical photos never straddle train and test. It is the catalog's
recipe without a catalog, not the frozen split of a bench catalog.

Printed side by side, each with top-1, macro-F1 and ECE after per-mode temperature scaling:
the image-only head (classifier.transfer.train_head), the title-only model, and the fused
model given image+title, image only, title only; the same with 20 labelled images per class;
an Arabic check (one class's titles translated word by word, train and test); the head's
prediction throughput with and without titles.

    .venv/bin/python bench/title_model.py [--size 160] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalog.dedupe.clusters import components  # noqa: E402
from catalog.dedupe.hashing import hash_files  # noqa: E402
from catalog.dedupe.search import hamming, near_pairs  # noqa: E402
from catalog.dedupe.verify import (  # noqa: E402
    VERIFY_CUT,
    normalise_signatures,
    signature_file,
    signature_similarity,
)
from catalog.settings import Settings  # noqa: E402
from catalog.splits import SplitItem, stratified_draw  # noqa: E402

DATA = ROOT.parent / "shared/datasets/fashion-products"
OUT = ROOT / "bench/out/title_model"
MIN_IMAGES = 30
CHUNK = 256  # images decoded and embedded at a time (bounds memory)


@dataclass
class Data:
    ids: list[str]
    shas: list[str]
    titles: list[str]
    labels: np.ndarray  # class index
    classes: list[str]
    split: np.ndarray  # "train" / "val" / "test"
    x: np.ndarray  # (n, 1280) float32 embeddings


def read_rows(data: Path) -> list[dict[str, str]]:
    with (data / "products.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if (data / "images" / f"{r['id']}.jpg").is_file()]
    counts = Counter(r["subCategory"] for r in rows)
    return [r for r in rows if counts[r["subCategory"]] >= MIN_IMAGES]


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def embeddings(paths: list[Path], shas: list[str], size: int) -> np.ndarray:
    """lite0 features of every image, from the bench cache, computing the missing ones."""
    from classifier.backbones.weights import pretrained_lite0
    from classifier.embeddings import EmbeddingStore, embed
    from classifier.pipeline import decode_files
    from classifier.transfer import backbone_key

    store = EmbeddingStore(OUT / "embeddings", backbone_key(), size)
    _, missing = store.get(shas)
    if missing:
        backbone = pretrained_lite0((size, size, 3))
        t0 = time.perf_counter()
        for start in range(0, len(missing), CHUNK):
            part = missing[start:start + CHUNK]
            decoded = decode_files([str(paths[i]) for i in part], size)
            if decoded.failed:
                bad = [str(paths[part[i]]) for i in decoded.failed]
                raise SystemExit(f"undecodable images: {bad}")
            embed(backbone, decoded.images, [shas[i] for i in part], store)
            done = start + len(part)
            print(f"  embedded {done}/{len(missing)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    vectors, still = store.get(shas)
    assert vectors is not None and not still
    return vectors


def near_duplicate_groups(paths: list[Path]) -> np.ndarray:
    """A group number per image, as the catalog's dedupe makes clusters: pairs with pHash and
    dHash both within the default threshold and similar colours, connected components."""
    cache = OUT / "groups.npy"
    if cache.is_file():
        groups = np.load(cache)
        if len(groups) == len(paths):
            return groups
    k = Settings().dedupe_threshold
    hashed = hash_files(paths)
    i, j, _ = near_pairs(hashed.phash, k)
    keep = hamming(hashed.dhash[i], hashed.dhash[j]) <= k
    i, j = i[keep], j[keep]
    # the catalog's colour check: the same silhouette in another colour is another product
    need = np.unique(np.concatenate([i, j]))
    sigs = {int(n): signature_file(paths[n]) for n in need}
    blank = np.zeros_like(next(s for s in sigs.values() if s is not None))
    ok = np.array([sigs[int(a)] is not None and sigs[int(b)] is not None
                   for a, b in zip(i, j, strict=True)], bool)
    norm = {n: normalise_signatures((s if s is not None else blank)[None])[0]
            for n, s in sigs.items()}
    if len(i):
        sim = signature_similarity(np.stack([norm[int(a)] for a in i]),
                                   np.stack([norm[int(b)] for b in j]))
        ok &= sim >= VERIFY_CUT
    groups = components(len(paths), i[ok], j[ok])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, groups)
    return groups


def load(data: Path, size: int) -> Data:
    rows = read_rows(data)
    paths = [data / "images" / f"{r['id']}.jpg" for r in rows]
    shas = [file_sha(p) for p in paths]
    classes = sorted({r["subCategory"] for r in rows})
    labels = np.array([classes.index(r["subCategory"]) for r in rows])
    groups = near_duplicate_groups(paths)
    # one split per group: the group's first member's label and sha decide its draw
    first: dict[int, int] = {}
    for n, g in enumerate(groups.tolist()):
        first.setdefault(g, n)
    items = [SplitItem(g, g, shas[n], rows[n]["subCategory"]) for g, n in first.items()]
    drawn = stratified_draw(items)
    split = np.array([drawn[g] for g in groups.tolist()])
    x = embeddings(paths, shas, size)
    return Data([r["id"] for r in rows], shas, [r["productDisplayName"] for r in rows],
                labels, classes, split, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--size", type=int, default=160, help="lite0 input size (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embed-only", action="store_true")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    t0 = time.perf_counter()
    d = load(args.data, args.size)
    counts = Counter(d.split.tolist())
    print(f"{len(d.ids)} images, {len(d.classes)} classes, split {dict(counts)}, "
          f"{len(set(d.shas))} distinct files, loaded in {time.perf_counter() - t0:.0f}s")
    if args.embed_only:
        return
    statistics.mean([0.0])


if __name__ == "__main__":
    main()
