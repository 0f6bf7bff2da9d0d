"""How well pHash distance finds planted near duplicates among real shop photos.

Takes the shared product photos, makes copies of a random subset with the transforms of
issue 4 (resize 50 %, JPEG quality 30, brightness +15 %, 5 % crop, a small text overlay,
JPEG->PNG and PNG->JPEG), mixes them with all the untouched originals and prints, per
transform and threshold 0-16, pair precision and recall; then the same with dHash as a
second opinion, and how large the biggest cluster gets (chaining). The anchor is the
transform-free pool: pairs found among untouched originals are false positives unless the
photos really are duplicates, which the data set has a few of.

What counts as a true pair: a copy with its source, and two photos that are the same picture
by an independent test that uses no hash: decoded at full size, their largest channel
difference averages at most SAME_PICTURE_MAE grey levels over the product (the pixels that
are not white in either; over the whole frame the white backdrop hides colour variants of
one product). The shop reuses one photo for several products, 76 pairs of them pixel for
pixel; the next candidate pair differs by 5.4 levels and is another product. Without this a
copy that rightly matches its source's twin counts as an error. `--strict` scores against
planted pairs only, for comparison.

    .venv/bin/python bench/dedupe_quality.py [--sources 1000] [--seed 4]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from catalog.dedupe import (
    colour_signature,
    components,
    hamming,
    hash_bytes,
    hash_files,
    near_pairs,
)
from catalog.dedupe.verify import normalise_signatures, signature_file, signature_similarity

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # beside the repository
IMAGES = SHARED / "datasets" / "fashion-products" / "images"
THRESHOLDS = range(0, 17)
MAIN = ("resize-50", "jpeg-q30", "brightness+15")  # the aim: recall >= .95 at precision >= .99
SAME_PICTURE_MAE = 3.0  # grey levels over the product; a JPEG re-save of one photo stays under it
WHITE = 240  # brighter in every channel: backdrop


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def crop(img: Image.Image, fraction: float = 0.05) -> Image.Image:
    dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def text(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle([6, 6, 78, 22], fill=(200, 0, 0))
    draw.text((9, 8), "SALE -20%", fill="white")
    return out


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize-50": lambda im: jpeg(im.resize((im.width // 2, im.height // 2),
                                           Image.Resampling.LANCZOS)),
    "jpeg-q30": lambda im: jpeg(im, 30),
    "brightness+15": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.15)),
    "crop-5": lambda im: jpeg(crop(im)),
    "text": lambda im: jpeg(text(im)),
    "jpeg->png": png,
    "png->jpeg": lambda im: jpeg(Image.open(io.BytesIO(png(im))), 85),
}


def build_pool(sources: int, seed: int):  # type: ignore[no-untyped-def]
    """Hashes of originals + copies; source index per row (-1: not a planted source), kind and
    colour signature (for the verified rule)."""
    paths = sorted(IMAGES.glob("*.jpg"))
    batch = hash_files(paths)
    ok = np.flatnonzero(batch.ok)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ok, sources, replace=False)
    ph, dh = list(batch.phash[ok]), list(batch.dhash[ok])
    source = [-1] * len(ok)
    kind = ["original"] * len(ok)
    row_of = {int(p): n for n, p in enumerate(ok)}
    blank = np.full((16 * 16, 3), 255, np.float32)
    sigs = [s if (s := signature_file(paths[p])) is not None else blank for p in ok]
    for src in chosen:
        source[row_of[int(src)]] = int(src)
        with Image.open(paths[src]) as im:
            im = im.convert("RGB")
            for name, make in TRANSFORMS.items():
                data = make(im)
                p, d = hash_bytes(data)
                sigs.append(colour_signature(data))
                ph.append(p)
                dh.append(d)
                source.append(int(src))
                kind.append(name)
    return (np.array(ph, np.uint64), np.array(dh, np.uint64), np.array(source), kind,
            np.stack(sigs), ok)


def picture(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def product_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the product's pixels (not white in a or b) of the largest channel difference."""
    diff = np.abs(a - b).max(axis=2)
    product = (a.min(axis=2) < WHITE) | (b.min(axis=2) < WHITE)
    return float(diff[product].mean()) if product.any() else 0.0


def same_pictures(paths: list[Path], ph: np.ndarray, raw_sigs: np.ndarray) -> np.ndarray:
    """Group label per original: originals that are the same picture share a label.

    Candidates are pairs within pHash distance 16 whose 16x16 thumbnails differ by at most
    2 x SAME_PICTURE_MAE on average (a loose filter: a same-picture pair differs by less than
    that everywhere); each is then tested on the full-size pixels (product_difference).
    """
    i, j, _ = near_pairs(ph, max(THRESHOLDS))
    keep = np.zeros(len(i), bool)
    for start in range(0, len(i), 50_000):
        a, b = i[start : start + 50_000], j[start : start + 50_000]
        keep[start : start + len(a)] = (
            np.abs(raw_sigs[a] - raw_sigs[b]).mean(axis=(1, 2)) <= 2 * SAME_PICTURE_MAE)
    i, j = i[keep], j[keep]
    diffs = np.full(len(i), np.inf)
    for n, (a, b) in enumerate(zip(i.tolist(), j.tolist(), strict=True)):
        pa, pb = picture(paths[a]), picture(paths[b])
        if pa.shape == pb.shape:
            diffs[n] = product_difference(pa, pb)
    confirmed = diffs <= SAME_PICTURE_MAE
    edges = [0, 0.01, 1, 2, 3, 4, 6, 8, 12, 20, 50]
    counts = np.histogram(diffs[np.isfinite(diffs)], bins=[*edges, np.inf])[0]
    spread = ", ".join(f"[{a:g}, {b:g}): {c}" for a, b, c in
                       zip(edges, [*edges[1:], np.inf], counts, strict=True))
    print(f"same-picture test: {len(i):,} candidate pairs of originals, {int(confirmed.sum()):,} "
          f"confirmed (product difference <= {SAME_PICTURE_MAE}); differences: {spread}")
    return components(len(ph), i[confirmed], j[confirmed])


def table(title: str, rows: list[list[str]], header: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))


def similar(sig: np.ndarray, i: np.ndarray, j: np.ndarray, step: int = 50_000) -> np.ndarray:
    """signature_similarity of pairs (i, j), in chunks to bound memory."""
    out = np.zeros(len(i), np.float32)
    for start in range(0, len(i), step):
        a, b = i[start : start + step], j[start : start + step]
        out[start : start + len(a)] = signature_similarity(sig[a], sig[b])
    return out


def evaluate(ph, dh, source, kind, group, dh_max=None, sig=None, cut=None):  # type: ignore[no-untyped-def]
    """Per transform and threshold: (precision, recall), plus overall precision and chaining.

    group: per row, the same-picture group of the original it is (or was made from); a pair
    is true when both rows share one.

    dh_max: None (pHash only), a number (dHash must be within it too) or "same" (both
    hashes within the threshold: the rule slashcat uses). With `sig` (normalised colour
    signatures) and `cut`, a pair also needs a signature similarity >= cut (verified rule).
    """
    i, j, d = near_pairs(ph, max(THRESHOLDS))
    if dh_max == "same":  # fold the dHash distance into d: the pair counts at max of both
        d = np.maximum(d, hamming(dh[i], dh[j]))
        keep = d <= max(THRESHOLDS)
        i, j, d = i[keep], j[keep], d[keep]
    elif dh_max is not None:
        keep = hamming(dh[i], dh[j]) <= dh_max
        i, j, d = i[keep], j[keep], d[keep]
    if cut is not None:
        keep = similar(sig, i, j) >= cut
        i, j, d = i[keep], j[keep], d[keep]
    same = group[i] == group[j]
    kinds = np.array(kind)
    out = {}
    for name in TRANSFORMS:
        copies = np.flatnonzero(kinds == name)
        if len(copies) == 0:
            continue
        originals = np.array([np.flatnonzero((source == source[c]) & (kinds == "original"))[0]
                              for c in copies])
        true_d = hamming(ph[copies], ph[originals])
        if dh_max == "same":
            true_d = np.maximum(true_d, hamming(dh[copies], dh[originals]))
        elif dh_max is not None:
            true_d = np.where(hamming(dh[copies], dh[originals]) <= dh_max, true_d, 99)
        if cut is not None:
            passes = similar(sig, copies, originals) >= cut
            true_d = np.where(passes, true_d, 99)
        touches = (kinds[i] == name) | (kinds[j] == name)
        for k in THRESHOLDS:
            hit = touches & (d <= k)
            precision = same[hit].mean() if hit.any() else 1.0
            recall = (true_d <= k).mean()
            out[name, k] = (precision, recall)
    for k in THRESHOLDS:
        hit = d <= k
        labels = components(len(ph), i[hit], j[hit])
        out["all", k] = (same[hit].mean() if hit.any() else 1.0, int(np.bincount(labels).max()),
                         int(hit.sum()), int((hit & ~same).sum()))
    return out


def print_results(title: str, res) -> None:  # type: ignore[no-untyped-def]
    header = ["k", *[n for n in TRANSFORMS], "all-prec", "false-pairs", "largest"]
    rows = []
    for k in THRESHOLDS:
        cells = [f"{res[n, k][0]:.3f}/{res[n, k][1]:.3f}" for n in TRANSFORMS]
        prec, largest, _pairs, false_pairs = res["all", k]
        rows.append([str(k), *cells, f"{prec:.3f}", str(false_pairs), str(largest)])
    table(title + "  (cells: precision/recall)", rows, header)


def best_threshold(res) -> int | None:  # type: ignore[no-untyped-def]
    """Largest k meeting the aim for the main transforms (a larger k helps crop and text)."""
    good = [k for k in THRESHOLDS
            if all(res[n, k][0] >= 0.99 and res[n, k][1] >= 0.95 for n in MAIN)]
    return max(good) if good else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--dhash", type=int, nargs="*", default=[2, 4, 8, 16])
    parser.add_argument("--cache", type=Path, help="keep the hashed pool in this .npz file")
    parser.add_argument("--strict", action="store_true",
                        help="count only planted pairs as true (same pictures become errors)")
    parser.add_argument("--cuts", type=float, nargs="*", default=[0.8, 0.85, 0.9, 0.95],
                        help="colour-signature similarity cut-offs of the verified rule")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.cache and args.cache.exists():
        saved = np.load(args.cache)
        ph, dh, source, kind = saved["ph"], saved["dh"], saved["source"], list(saved["kind"])
        sigs, ok = saved["sigs"], saved["ok"]
    else:
        ph, dh, source, kind, sigs, ok = build_pool(args.sources, args.seed)
        if args.cache:
            np.savez(args.cache, ph=ph, dh=dh, source=source, kind=np.array(kind), sigs=sigs,
                     ok=ok)
    sig = normalise_signatures(sigs)
    originals = kind.count("original")
    print(f"pool: {originals:,} untouched originals + {len(ph) - originals:,} copies of "
          f"{args.sources:,} of them ({len(TRANSFORMS)} transforms); "
          f"built in {time.perf_counter() - started:.1f} s")
    paths = sorted(IMAGES.glob("*.jpg"))
    row_of = {int(p): n for n, p in enumerate(ok)}
    if args.strict:
        print("strict: only a copy and its source count as a true pair")
        picture_group = np.arange(originals)
    else:
        picture_group = same_pictures([paths[p] for p in ok], ph[:originals], sigs[:originals])
    group = np.concatenate([picture_group, [picture_group[row_of[int(src)]]
                                            for src in source[originals:]]]).astype(np.int64)
    anchor = evaluate(ph[:originals], dh[:originals], source[:originals], kind[:originals],
                      group[:originals])
    table("anchor: originals only, pHash <= k (a pair is a false positive unless both are one "
          "picture)",
          [[str(k), str(anchor["all", k][2]), str(anchor["all", k][3]), str(anchor["all", k][1])]
           for k in THRESHOLDS],
          ["k", "pairs", "false pairs", "largest cluster"])
    res = evaluate(ph, dh, source, kind, group)
    print_results("pHash only", res)
    print(f"-> pHash only: largest threshold meeting the aim: {best_threshold(res)}")
    for dmax in args.dhash:
        res_d = evaluate(ph, dh, source, kind, group, dmax)
        print_results(f"pHash and dHash <= {dmax}", res_d)
        print(f"-> with dHash <= {dmax}: largest threshold meeting the aim: "
              f"{best_threshold(res_d)}")
    same = evaluate(ph, dh, source, kind, group, "same")
    print_results("slashcat's rule: pHash <= k and dHash <= k", same)
    print(f"-> both <= k: largest threshold meeting the aim: {best_threshold(same)}")
    for k in (2, 4, 6):
        prec, largest, _pairs, _false = same["all", k]
        print(f"   k={k}: " + ", ".join(f"{n} {same[n, k][0]:.3f}/{same[n, k][1]:.3f}"
                                       for n in TRANSFORMS)
              + f"; all pairs precision {prec:.3f}, largest cluster {largest}")
    for cut in args.cuts:
        ver = evaluate(ph, dh, source, kind, group, "same", sig, cut)
        print_results(f"verified rule: pHash <= k and dHash <= k and colour similarity >= {cut}",
                      ver)
        print(f"-> verified at {cut}: largest threshold meeting the aim: {best_threshold(ver)}")
        for k in (2, 4, 6, 8, 10, 12):
            prec, largest, _pairs, _false = ver["all", k]
            print(f"   k={k}: " + ", ".join(f"{n} {ver[n, k][0]:.3f}/{ver[n, k][1]:.3f}"
                                           for n in TRANSFORMS)
                  + f"; all pairs precision {prec:.3f}, largest cluster {largest}")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
