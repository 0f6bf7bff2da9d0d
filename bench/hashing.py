"""Perceptual hashing speed and agreement: catalog.dedupe.hashing against plain imagehash.

Hashes the shared shop photos from disk with `catalog.dedupe.hashing.hash_files` (reduced JPEG
decoding, batched matrix DCT, a process pool) and with the anchor, plain
`imagehash.phash(Image.open(path))`, on one core (the process pinned to one CPU) and on all
cores (a process pool for both), in the same run. Prints images/s, the ratio, medians over
repeats, and how far our pHash is from imagehash's (mean and max Hamming distance).

Then the same on one core for some of the photos re-encoded at 4x the size (896 px, closer to
what shops serve), where decoding at a reduced scale saves much more.

    .venv/bin/python bench/hashing.py [--repeats 3] [--limit N] [--large 500] [--min-side 32]

`--min-side 28` decodes the 224 px photos at 1/8 instead of 1/4 scale, to show what the
default's closer agreement with imagehash costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from catalog.dedupe import hamming, hashing
from catalog.dedupe.hashing import default_workers, hash_files

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # beside the repository
IMAGES = SHARED / "datasets" / "fashion-products" / "images"


def imagehash_chunk(paths: list[Path]) -> list[int]:
    import imagehash
    from PIL import Image

    return [int(str(imagehash.phash(Image.open(p))), 16) for p in paths]


def imagehash_all(paths: list[Path], workers: int) -> list[int]:
    if workers <= 1:
        return imagehash_chunk(paths)
    chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]
    with ProcessPoolExecutor(workers) as pool:
        return [h for part in pool.map(imagehash_chunk, chunks) for h in part]


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(func, *args):  # type: ignore[no-untyped-def]
    """(wall seconds, CPU seconds, result)."""
    start, cpu = time.perf_counter(), cpu_seconds()
    out = func(*args)
    return time.perf_counter() - start, cpu_seconds() - cpu, out


def measure(paths: list[Path], workers: int, repeats: int):  # type: ignore[no-untyped-def]
    """Median images/s (wall and per CPU second) of ours and of imagehash, interleaved so both
    see the same load from whatever else runs on the machine."""
    ours, ref = [], []
    ref_hashes = batch = None
    for _ in range(repeats):
        wall, cpu, batch = timed(hash_files, paths, workers)
        ours.append((wall, cpu))
        wall, cpu, ref_hashes = timed(imagehash_all, paths, workers)
        ref.append((wall, cpu))
    n = len(paths)

    def rates(times: list[tuple[float, float]]) -> tuple[float, float]:
        return (n / statistics.median(t[0] for t in times),
                n / statistics.median(t[1] for t in times))

    return rates(ours), rates(ref), ref_hashes, batch


def line(label: str, ours: tuple[float, float], ref: tuple[float, float]) -> str:
    return (f"{label}: ours {ours[0]:8,.0f} images/s   imagehash {ref[0]:6,.0f} images/s   "
            f"ratio {ours[0] / ref[0]:5.1f}x   | per CPU-second: ours {ours[1]:7,.0f}, "
            f"imagehash {ref[1]:5,.0f}, ratio {ours[1] / ref[1]:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="hash only the first N images")
    parser.add_argument("--large", type=int, default=500, help="photos to re-encode at 896 px")
    parser.add_argument("--min-side", type=int, default=hashing.MIN_DECODED_SIDE,
                        help="shortest side a reduced JPEG decode may leave (the default's is 32)")
    args = parser.parse_args()
    hashing.MIN_DECODED_SIDE = args.min_side  # read at call time; forked workers too
    paths = sorted(IMAGES.glob("*.jpg"))[: args.limit or None]
    for p in paths:  # warm the page cache so both sides read from memory
        p.read_bytes()
    cores = default_workers()
    print(f"{len(paths):,} images from {IMAGES}; {cores} cores (shared with other work); "
          f"medians of {args.repeats} repeats; reduced JPEG decoding down to {args.min_side} px")

    all_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(all_cpus)})
    ours1, ref1, ref_hashes, batch = measure(paths, 1, args.repeats)
    os.sched_setaffinity(0, all_cpus)
    print(line("one core", ours1, ref1))
    ours_n, ref_n, _, _ = measure(paths, cores, args.repeats)
    print(line(f"{cores} cores ", ours_n, ref_n)
          + f"   (ours {ours_n[0] / ours1[0]:.1f}x its one-core speed)")

    ok = batch.ok  # type: ignore[attr-defined]
    ref = np.array(ref_hashes, dtype=np.uint64)
    dist = hamming(batch.phash[ok], ref[ok])  # type: ignore[attr-defined]
    counts = np.bincount(dist, minlength=5)
    print(f"agreement with imagehash.phash over {int(ok.sum()):,} images: mean Hamming "
          f"{dist.mean():.3f}, max {dist.max()}, identical {counts[0] / len(dist):.1%}; "
          f"distribution {dict(enumerate(counts.tolist()))}")
    if not ok.all():
        print(f"{int((~ok).sum())} images did not decode")
    if args.large:
        large_photos(paths[: args.large], args.repeats)


def large_photos(paths: list[Path], repeats: int) -> None:
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        big = []
        for p in paths:
            with Image.open(p) as img:
                out = Path(tmp) / p.name
                img.resize((img.width * 4, img.height * 4), Image.Resampling.LANCZOS).save(
                    out, "JPEG", quality=90)
                big.append(out)
        all_cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cpus)})
        ours, ref, _, _ = measure(big, 1, repeats)
        os.sched_setaffinity(0, all_cpus)
        print(line(f"{len(big)} photos at 896 px, one core", ours, ref))


if __name__ == "__main__":
    main()
