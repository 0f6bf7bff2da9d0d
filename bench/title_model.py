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
an Arabic check (Topwear's and Sandal's titles translated word by word by a fixed list,
train and test; the common words in every class's titles); the head's
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


# ------------------------------------------------------------------------- the Arabic check

# Common words, translated in every class's titles (so Arabic script alone names no class)...
ARABIC_COMMON = {
    "men": "رجال", "women": "نساء", "woman": "امرأة", "boys": "أولاد", "boy": "ولد",
    "girls": "بنات", "girl": "بنت", "kids": "أطفال", "unisex": "للجنسين",
    "blue": "أزرق", "black": "أسود", "white": "أبيض", "red": "أحمر", "green": "أخضر",
    "grey": "رمادي", "navy": "كحلي", "yellow": "أصفر", "pink": "وردي", "purple": "بنفسجي",
    "brown": "بني", "orange": "برتقالي", "maroon": "عنابي", "beige": "بيج", "olive": "زيتوني",
    "cream": "كريمي", "gold": "ذهبي", "silver": "فضي", "printed": "مطبوع", "print": "طباعة",
    "solid": "سادة", "striped": "مخطط", "stripes": "خطوط", "check": "كاروهات",
    "checked": "كاروهات", "checks": "كاروهات", "casual": "كاجوال", "formal": "رسمي",
    "sport": "رياضي", "sports": "رياضي", "slim": "ضيق", "fit": "مقاس", "light": "فاتح",
    "dark": "داكن", "and": "و", "of": "من", "with": "مع", "pack": "عبوة", "leather": "جلد",
    "classic": "كلاسيكي", "winter": "شتوي", "summer": "صيفي", "cotton": "قطن",
}
# ...and the product words of the classes under test, so only Arabic names those classes.
ARABIC_PRODUCT = {"Topwear": {
    "shirt": "قميص", "shirts": "قمصان", "tshirt": "تيشيرت", "tshirts": "تيشيرتات",
    "t-shirt": "تيشيرت", "t-shirts": "تيشيرتات", "tee": "تيشيرت", "top": "بلوزة",
    "tops": "بلوزات", "kurta": "كورتا", "kurtas": "كورتات", "kurti": "كورتي",
    "kurtis": "كورتيات", "sweater": "كنزة", "sweaters": "كنزات", "sweatshirt": "سويتشيرت",
    "sweatshirts": "سويتشيرتات", "jacket": "جاكيت", "jackets": "جاكيتات", "polo": "بولو",
    "tunic": "تونيك", "blazer": "بليزر", "blazers": "بليزرات", "waistcoat": "صدرية",
}, "Sandal": {  # small, and easily taken for Shoes or Flip Flops
    "sandal": "صندل", "sandals": "صنادل", "slipper": "شبشب", "slippers": "شباشب",
    "clog": "قبقاب", "clogs": "قباقيب", "floaters": "صنادل",
}}


def to_arabic(title: str, words: dict[str, str]) -> str:
    return " ".join(words.get(w.lower(), w) for w in title.split())


def arabic_titles(d: Data) -> tuple[list[str], dict[str, float]]:
    """Every title with the common words in Arabic, the ARABIC_PRODUCT classes' also with
    their product words; and per such class the share of its words that were translated."""
    words = {c: {**ARABIC_COMMON, **ARABIC_PRODUCT.get(c, {})} for c in d.classes}
    out, done, total = [], Counter[str](), Counter[str]()
    for title, label in zip(d.titles, d.labels.tolist(), strict=True):
        cls = d.classes[label]
        out.append(to_arabic(title, words[cls]))
        total[cls] += len(title.split())
        done[cls] += sum(w.lower() in words[cls] for w in title.split())
    return out, {c: done[c] / max(1, total[c]) for c in ARABIC_PRODUCT}


# ------------------------------------------------------------------------- runs


def per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of at most n items of each class, seeded."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def image_head(d: Data, tr: np.ndarray, va: np.ndarray, seed: int) -> tuple[object, float]:
    import keras

    from classifier.metrics import fit_temperature
    from classifier.train import sample_weights
    from classifier.transfer import train_head

    keras.utils.set_random_seed(seed)
    n = len(d.classes)
    head = train_head(d.x[tr], d.labels[tr], sample_weights(d.labels[tr], n), d.x[va],
                      d.labels[va], n, seed)
    probs = np.asarray(head.predict(d.x[va], batch_size=512, verbose=0))
    return head, fit_temperature(probs, d.labels[va])


def fused(d: Data, titles: list[str], tr: np.ndarray, va: np.ndarray, seed: int,
          shares: dict[str, float] | None = None) -> tuple[object, object, object]:
    from classifier import title_model as T
    from classifier.train import sample_weights

    x = T.make_inputs(d.x, titles)
    n = len(d.classes)
    model = T.build_title_model(n, [titles[i] for i in tr])
    T.train_title_model(model, T.take(x, tr), d.labels[tr], sample_weights(d.labels[tr], n),
                        T.take(x, va), d.labels[va], seed, shares)
    cal = T.fit_calibration(model, T.take(x, va), d.labels[va])
    return model, cal, x


def row(name: str, s: object) -> str:
    return (f"  {name:<34} top-1 {100 * s.top1:6.2f}%  macro-F1 {s.macro_f1:.4f}  "  # type: ignore[attr-defined]
            f"ECE {s.ece:.4f}")  # type: ignore[attr-defined]


def compare(d: Data, titles: list[str], tr: np.ndarray, va: np.ndarray, te: np.ndarray,
            seed: int, label: str) -> tuple[object, object]:
    """The image-only head, the title-only model and the fused model in its three modes."""
    from classifier import title_model as T
    from classifier.metrics import calibrated

    t0 = time.perf_counter()
    head, temp = image_head(d, tr, va, seed)
    head_s = time.perf_counter() - t0
    probs = calibrated(np.asarray(head.predict(d.x[te], batch_size=512, verbose=0)), temp)  # type: ignore[attr-defined]
    image_only = T.score(probs, d.labels[te], d.classes, T.IMAGE)
    t0 = time.perf_counter()
    tmodel, tcal, x = fused(d, titles, tr, va, seed, {T.TITLE: 1.0})
    title_s = time.perf_counter() - t0
    title_only = T.score(T.predict(tmodel, tcal, T.take(x, te), T.TITLE), d.labels[te],
                         d.classes, T.TITLE)
    t0 = time.perf_counter()
    model, cal, x = fused(d, titles, tr, va, seed)
    fused_s = time.perf_counter() - t0
    modes = T.score_modes(model, cal, T.take(x, te), d.labels[te], d.classes)
    print(f"{label}: train {len(tr)}, val {len(va)}, test {len(te)}; training seconds: "
          f"image head {head_s:.0f}, title-only {title_s:.0f}, fused {fused_s:.0f}")
    print(row("image-only head (lite0 embeddings)", image_only))
    print(row("title-only model", title_only))
    for mode in T.MODES:
        print(row(f"fused model, given {mode}", modes[mode]))
    print(f"  temperatures per mode: {cal.temperatures}")  # type: ignore[attr-defined]
    gap = 100 * (modes[T.IMAGE].top1 - image_only.top1)
    print(f"  fused given image only vs image-only head: {gap:+.2f} points")
    return head, model


def throughput(d: Data, te: np.ndarray, size: int, head: object, model: object,
               repeats: int = 3) -> None:
    """Images per second: the backbone pass, the image-only head, the fused head given image
    + title (cleaning the raw titles included) and given the image only."""
    from classifier import title_model as T
    from classifier.backbones.weights import pretrained_lite0
    from classifier.pipeline import decode_files
    from classifier.transfer import forward_seconds

    raw = [d.titles[i] for i in te]
    feats = d.x[te]

    def rate(fn) -> float:  # type: ignore[no-untyped-def]
        fn()  # warm-up (traces)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return len(te) / statistics.median(times)

    head_rate = rate(lambda: head.predict_on_batch(feats))  # type: ignore[attr-defined]
    with_titles = rate(lambda: T.raw_probabilities(model, T.make_inputs(feats, raw)))
    image_only = rate(lambda: T.raw_probabilities(model, T.make_inputs(feats, None)))
    paths = [str(DATA / "images" / f"{d.ids[i]}.jpg") for i in te[:64]]
    images = decode_files(paths, size).images
    backbone = pretrained_lite0((size, size, 3))
    backbone_rate = 1.0 / np.median([forward_seconds(backbone, images, 32) for _ in range(3)])
    print(f"throughput over {len(te)} test products (images/s, median of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f}):")
    print(f"  lite0 backbone forward at {size}px (batch 32): {backbone_rate:9.0f}")
    print(f"  image-only head on embeddings:               {head_rate:9.0f}")
    print(f"  fused head, image only:                      {image_only:9.0f}")
    print(f"  fused head, image + raw title (cleaned):     {with_titles:9.0f}")
    for name, r in (("image-only head", head_rate), ("fused, image+title", with_titles)):
        total = 1.0 / (1.0 / backbone_rate + 1.0 / r)
        print(f"  backbone + {name:<20} {total:9.0f} images/s end to end (no decoding)")


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
    tr, va, te = (np.flatnonzero(d.split == s) for s in ("train", "val", "test"))
    head, model = compare(d, d.titles, tr, va, te, args.seed, "all labelled products")
    few_tr, few_va = per_class(d.labels[tr], 20, args.seed), per_class(d.labels[va], 10, args.seed)
    compare(d, d.titles, tr[few_tr], va[few_va], te, args.seed,
            "20 labelled products per class (validation: 10 per class)")
    from classifier import title_model as T

    arabic, shares = arabic_titles(d)
    amodel, cal, x = fused(d, arabic, tr, va, args.seed)
    print("Arabic check: common words (gender, colours, ...) translated in every class's "
          "titles, product words too in:")
    for cls, share in shares.items():
        mine = te[d.labels[te] == d.classes.index(cls)]
        print(f"  {cls}: {100 * share:.0f}% of its title words in Arabic, e.g. "
              f"{arabic[mine[0]]!r} (was {d.titles[mine[0]]!r})")
        for mode in (T.BOTH, T.TITLE):
            probs = T.predict(amodel, cal, T.take(x, mine), mode)
            acc = float((probs.argmax(1) == d.labels[mine]).mean())
            print(f"    {cls} test products ({len(mine)}), given {mode}: {100 * acc:.2f}%")
    throughput(d, te, args.size, head, model)
    print(f"total {time.perf_counter() - t0:.0f}s; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------------- classify.py --titles
#
# The same comparison through the library (train, evaluate, predict_catalog) on the catalog
# bench/classify.py builds, so on its frozen cluster-aware split: the catalog is copied (its
# split assignments with it) to a titled copy, whose products get productDisplayName as title,
# and to an Arabic copy with one class's titles translated by the word lists above.

ARABIC_CLASS = "Topwear"  # the class whose test products must reach ARABIC_TARGET
ARABIC_TARGET = 0.95


def add_titles_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--titles", action="store_true",
        help="instead: image-only vs title-aware models (issue 15) on the same frozen split "
             "(bench/title_model.py); --limit N: a quick check on N images per class")
    parser.add_argument("--limit", type=int, default=None,
                        help="with --titles: at most N (>= 30) images per class, a quick check "
                             "under <--work>-limitN")
    parser.add_argument("--rates-only", action="store_true",
                        help="with --titles: only predict's rate from cached embeddings, of the "
                             "models an earlier --titles run trained under --work")


def subset_data(src: Path, out: Path, per_class: int) -> Path:
    """products.csv with at most per_class rows of each class (>= MIN_IMAGES, so every class
    the full run has stays), images linked: a small copy of the shared data, for --limit."""
    if per_class < MIN_IMAGES:
        raise SystemExit(f"--limit must be at least {MIN_IMAGES} (the classes' minimum)")
    rows = read_rows(src)
    taken: Counter[str] = Counter()
    (out / "images").mkdir(parents=True, exist_ok=True)
    with (out / "products.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in sorted(rows, key=lambda r: int(r["id"])):
            if taken[r["subCategory"]] < per_class:
                taken[r["subCategory"]] += 1
                writer.writerow(r)
                link = out / "images" / f"{r['id']}.jpg"
                if not link.exists():
                    link.symlink_to(src / "images" / f"{r['id']}.jpg")
    return out


def copy_home(home: Path, to: Path) -> Path:
    """A copy of a catalog home (the split assignments with it); the content-addressed image
    files are hard-linked, everything else copied."""
    import shutil

    if to.exists():
        return to
    images = Settings.load(home=home, env={}).images_dir

    def link_images(a: str, b: str) -> object:
        if Path(a).is_relative_to(images):
            os.link(a, b)
            return b
        return shutil.copy2(a, b)

    shutil.copytree(home, to, copy_function=link_images, ignore=shutil.ignore_patterns(
        "*.db-wal", "*.db-shm", "models"))
    return to


def set_titles(home: Path, data: Path, translate: dict[str, dict[str, str]] | None = None) -> int:
    """Each product's title from products.csv (productDisplayName), found by its file name;
    translate: class -> word list, for those classes' titles. Products already titled are kept."""
    from sqlalchemy import select

    from catalog.db import open_catalog
    from catalog.models import Product

    with (data / "products.csv").open(newline="", encoding="utf-8") as fh:
        names = {r["id"]: (r["productDisplayName"], r["subCategory"]) for r in csv.DictReader(fh)}
    cat = open_catalog(Settings.load(home=home, env={}))
    done = 0
    with cat.session() as session:
        for product in session.scalars(select(Product).where(Product.title.is_(None))):
            found = names.get(Path(product.external_id or "").stem)
            if found:
                title, cls = found
                product.title = to_arabic(title, translate[cls]) if translate else title
                done += 1
    cat.close()
    return done


def titled_homes(args: argparse.Namespace, build_catalog) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    """(the data, the titled catalog's home, the Arabic one's), made once under --work."""
    data, work = args.data, args.work
    if args.limit:
        work = work.with_name(f"{work.name}-limit{args.limit}")
        data = subset_data(args.data, work / "data", args.limit)
    build_catalog(work, data).close()  # classify.py's catalog: import, dedupe, frozen split
    titled = work / "titles" / "home"
    if not titled.exists():
        copy_home(work / "home", titled)
        print(f"titles: {set_titles(titled, data)} products titled", flush=True)
    arabic = work / "arabic" / "home"
    if not arabic.exists():
        copy_home(work / "home", arabic)
        classes = {r["subCategory"] for r in read_rows(data)}
        words = {c: {**ARABIC_COMMON, **ARABIC_PRODUCT.get(c, {})} for c in classes}
        print(f"arabic: {set_titles(arabic, data, words)} products titled", flush=True)
    return data, titled, arabic


def trained_models(cat) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    """The newest full-data image-only and image+title models of an earlier run's catalog."""
    from catalog.models import Model

    found: dict[str, tuple[str, int]] = {}
    with cat.session() as session:
        for row in session.query(Model).order_by(Model.id):
            metrics = row.metrics or {}
            inputs = "+".join((metrics.get("inputs") or {}).get("inputs") or ["image"])
            if metrics.get("config", {}).get("max_per_class") is None:
                found["image-only" if inputs == "image" else inputs] = (row.version, row.id)
    if not {"image-only", "image+title"} <= set(found):
        raise SystemExit("--rates-only: train both models first (bench/classify.py --titles)")
    return {name: found[name] for name in ("image-only", "image+title")}


def train_model(cat, args: argparse.Namespace, inputs: str, per_class: int | None = None):  # type: ignore[no-untyped-def]
    from classifier.config import TrainConfig
    from classifier.train import train

    config = TrainConfig(
        arch="lite0", image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        time_budget_min=args.budget_min, seed=args.seed, activate=False, patience=args.patience,
        max_per_class=per_class, inputs=inputs)
    t0 = time.perf_counter()
    result = train(cat, config)
    print(f"  trained {result.version} ({inputs}"
          f"{'' if per_class is None else f', {per_class}/class'}; kept {result.kept or '-'}) in "
          f"{time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
    return result


def image_only_score(cat, version: str) -> object:  # type: ignore[no-untyped-def]
    """evaluate()'s figures of an image-only model, as a ModeScore."""
    from classifier import title_model as T
    from classifier.evaluate import evaluate

    report = evaluate(cat, version, figures=False)
    return T.ModeScore(T.IMAGE, report.accuracy, report.macro_f1, report.ece_after)


def test_inputs(cat, version: str):  # type: ignore[no-untyped-def]
    """A title-aware model's fused part, its calibration, and the frozen test split's inputs
    (backbone features computed once, titles as predict reads them) with their labels."""
    from classifier import title_model as T
    from classifier.evaluate import model_dataset
    from classifier.pipeline import decode_files
    from classifier.predict import Classifier
    from classifier.registry import get_model
    from classifier.train import example_titles

    with cat.session() as session:
        row = get_model(session, version)
        data = model_dataset(cat, row)
        test = data.split("test")
        titles = example_titles(session, data)
    clf = Classifier.from_row(cat, row)
    fused = clf.model.get_layer(T.NAME)
    backbone = next(layer for layer in clf.model.layers
                    if hasattr(layer, "layers") and layer.name != T.NAME)
    decoded = decode_files([str(e.path) for e in test], row.image_size)
    feats = np.concatenate([
        np.asarray(backbone.predict_on_batch(decoded.images[i:i + CHUNK].astype(np.float32)))
        for i in range(0, len(decoded.images), CHUNK)])
    kept = [test[i] for i in decoded.index]
    labels = np.array([clf.classes.index(e.label) for e in kept])
    inputs = T.make_inputs(feats, [titles.get(e.sha256) for e in kept])
    return fused, clf, inputs, labels


def titled_scores(cat, version: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from classifier import title_model as T

    fused, clf, inputs, labels = test_inputs(cat, version)
    return T.score_modes(fused, clf.calibration, inputs, labels, clf.classes)  # type: ignore[return-value]


def arabic_check(home: Path, args: argparse.Namespace) -> list[str]:
    """A model trained on the Arabic catalog; its accuracy on the translated classes' test
    products, given image + title and given the title alone."""
    from catalog.db import open_catalog
    from classifier import title_model as T

    cat = open_catalog(Settings.load(home=home, env={}))
    result = train_model(cat, args, "image+title")
    fused, clf, inputs, labels = test_inputs(cat, result.version)
    cat.close()
    lines = []
    for cls in ARABIC_PRODUCT:
        if cls not in clf.classes:
            continue
        mine = np.flatnonzero(labels == clf.classes.index(cls))
        part = T.take(inputs, mine)
        example = next((t for t in part["title"].tolist() if t), "")
        accs = {mode: float((T.predict(fused, clf.calibration, part, mode).argmax(1)
                             == labels[mine]).mean()) for mode in (T.BOTH, T.TITLE)}
        verdict = ("" if cls != ARABIC_CLASS else
                   f"  (target >= {100 * ARABIC_TARGET:.0f}%: "
                   f"{'met' if accs[T.BOTH] >= ARABIC_TARGET else 'NOT met'})")
        lines.append(f"  Arabic {cls} ({len(mine)} test products, e.g. {example!r}): "
                     f"image+title {100 * accs[T.BOTH]:.2f}%, title only "
                     f"{100 * accs[T.TITLE]:.2f}%{verdict}")
    return lines


def predict_rates(cat, versions: dict[str, tuple[str, int]], repeats: int,  # type: ignore[no-untyped-def]
                  e2e_once, new_images: bool = True) -> list[str]:
    """predict_catalog per model (classify.py's e2e_once: images/s and CPU ms per image),
    with the embedding cache and without (new images), the models interleaved so the
    machine's load falls on both alike; medians of `repeats`. "new images" is the like-for-
    like figure: with the cache, a title-aware model always reads embeddings (its backbone is
    the pretrained one) while an image-only model does only if it kept its head-only stage."""
    cache = cat.settings.home / "embeddings"
    aside = cache.with_name("embeddings-aside")
    lines = []
    for version, model_id in versions.values():  # warm-up: the process's first graphs
        e2e_once(cat, version, model_id)
    for cold in (False, True) if new_images else (False,):
        if cold:
            cache.rename(aside)
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in versions}
        try:
            for _ in range(repeats):
                for name, (version, model_id) in versions.items():
                    runs[name].append(e2e_once(cat, version, model_id))
        finally:
            if cold:
                aside.rename(cache)
        med = {name: (statistics.median(r for r, _c, _n in got),
                      statistics.median(c for _r, c, _n in got), got[0][2])
               for name, got in runs.items()}
        base_rate, base_cpu, _n = med["image-only"]
        for name, (rate, cpu, n) in med.items():
            lines.append(
                f"  predict {name:<12} {'new images' if cold else 'cached embeddings':17} "
                f"{rate:8.1f} images/s ({rate / base_rate:.2f}x image-only), {cpu:6.2f} CPU ms "
                f"per image ({cpu / base_cpu:.2f}x) over {n}")
    return lines


def run_titles(args: argparse.Namespace, build_catalog, e2e_once) -> None:  # type: ignore[no-untyped-def]
    """bench/classify.py --titles: every figure of issue 15 from one run (module doc above)."""
    from catalog.db import open_catalog
    from classifier import title_model as T

    t0 = time.perf_counter()
    _data, titled, arabic = titled_homes(args, build_catalog)
    cat = open_catalog(Settings.load(home=titled, env={}))
    if args.rates_only:
        for line in predict_rates(cat, trained_models(cat), args.repeats, e2e_once, False):
            print(line)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        return
    image = train_model(cat, args, "image")
    fused = train_model(cat, args, "image+title")
    rows = [("image-only model", image_only_score(cat, image.version))]
    modes = titled_scores(cat, fused.version)
    rows += [("title-aware, given title only", modes[T.TITLE]),
             ("title-aware, given image+title", modes[T.BOTH]),
             ("title-aware, given image only", modes[T.IMAGE])]
    few_image = train_model(cat, args, "image", per_class=20)
    few_fused = train_model(cat, args, "image+title", per_class=20)
    rows += [("20/class image-only model", image_only_score(cat, few_image.version)),
             ("20/class title-aware, image+title", titled_scores(cat, few_fused.version)[T.BOTH])]
    rates = predict_rates(cat, {"image-only": (image.version, image.model_id),
                                "image+title": (fused.version, fused.model_id)},
                          args.repeats, e2e_once)
    cat.close()
    arabic_lines = arabic_check(arabic, args)
    print(f"\ntitle-aware bench (issue 15){f', --limit {args.limit}' if args.limit else ''}: "
          f"the frozen test split of {titled.parent.parent / 'home'}; load average "
          f"{os.getloadavg()[0]:.1f}")
    for name, s in rows:
        print(row(name, s))
    gap = 100 * (modes[T.IMAGE].top1 - rows[0][1].top1)  # type: ignore[attr-defined]
    print(f"  title-aware given image only vs the image-only model: {gap:+.2f} points")
    print("\n".join(rates + arabic_lines))
    print(f"targets: image+title top-1 >= 99.5%, macro-F1 >= 0.98; image only within 0.5 points; "
          f"20/class image+title >= 97%; Arabic {ARABIC_CLASS} >= 95%; predict with titles "
          f"within 10% of image-only. total {time.perf_counter() - t0:.0f} s")
