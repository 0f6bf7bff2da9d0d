"""Near-duplicate search at scale: all pairs within Hamming distance 8 among 1,000,000 hashes.

Two sets of 64-bit hashes, each built deterministically:
- planted: uniform random hashes, 10 % of them replaced by clusters of 2-6 copies of a
  base hash with 1-8 bits flipped;
- jittered: the real pHashes of the shared shop photos, each drawn many times with 4-24
  bits flipped (so the set keeps the real, clustered, bit distribution), plus 10 % near
  copies as above.
Ours is `catalog.dedupe.near_pairs`; the anchor is imagededup's hash search (HashEval,
its default Cython brute force, all cores) at doubling sizes up to the largest that finishes
within the budget (a size whose quadratic extrapolation exceeds it is not started). Each
measurement runs in a fresh process so that its peak memory (max RSS) is its own.

    .venv/bin/python bench/near_dups.py [--size 1000000] [--budget 600] [--repeats 3]
        [--sets planted jittered] [--anchor-sets planted jittered]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from catalog.dedupe import hamming, near_pairs

SHARED = Path(__file__).resolve().parents[1].parent / "shared"  # beside the repository
IMAGES = SHARED / "datasets" / "fashion-products" / "images"
REAL = Path("/tmp/slashcat-bench-real-phash.npy")
K = 8


def plant(h: np.ndarray, rng: np.random.Generator, fraction: float = 0.1) -> np.ndarray:
    """Overwrite `fraction` of the hashes with near copies (1-8 bits off) of other hashes."""
    n = len(h)
    slots = rng.choice(n, int(n * fraction), replace=False)
    bases = rng.choice(n, len(slots) // 4, replace=False)
    owner = bases[rng.integers(0, len(bases), len(slots))]
    flips = np.zeros(len(slots), np.uint64)
    for _ in range(8):  # up to 8 distinct-or-repeated bit positions (repeats cancel: fewer)
        use = rng.random(len(slots)) < 0.6
        flips ^= np.where(use, np.uint64(1) << rng.integers(0, 64, len(slots)).astype(np.uint64),
                          np.uint64(0))
    h[slots] = h[owner] ^ flips
    return h


def planted_set(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return plant(rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True), rng)


def jittered_set(n: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    real = np.load(REAL)
    h = real[rng.integers(0, len(real), n)]
    bits = np.unpackbits(h.view(np.uint8)).reshape(n, 64).astype(bool)
    flips = rng.integers(4, 25, n)
    cols = np.argsort(rng.random((n, 64)), axis=1)  # a random order of bit positions per row
    flip_mask = np.arange(64)[None, :] < flips[:, None]
    rows = np.repeat(np.arange(n), 64).reshape(n, 64)
    bits[rows[flip_mask], cols[flip_mask]] ^= True
    h = np.packbits(bits.astype(np.uint8), axis=1).view(np.uint64).reshape(-1)
    return plant(h, rng)


SETS = {"planted": planted_set, "jittered": jittered_set}


def peak_mb() -> float:
    """Peak resident memory of this process. VmHWM, because ru_maxrss survives exec on Linux
    and would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process (all its threads): less sensitive to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def set_file(name: str, n: int) -> Path:
    return Path(f"/tmp/slashcat-bench-{name}-{n}.npy")


def child_ours(name: str, n: int) -> dict:
    h = np.load(set_file(name, n))  # built by the parent: building it takes more memory
    base = peak_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    i, _j, _d = near_pairs(h, K)
    return {"seconds": time.perf_counter() - start, "cpu": cpu_seconds() - cpu, "pairs": len(i),
            "peak_mb": peak_mb(), "input_peak_mb": base}


def child_imagededup(name: str, n: int) -> dict:
    h = SETS[name](n)
    start = time.perf_counter()
    i, _j, _d = near_pairs(h, K)
    ours = time.perf_counter() - start
    search = import_imagededup_search()
    encodings = {str(k): f"{int(v):016x}" for k, v in enumerate(h)}
    start = time.perf_counter()
    evaluation = search(encodings, encodings, hex_hamming, verbose=False, threshold=K)
    result = evaluation.retrieve_results()
    seconds = time.perf_counter() - start
    found = sum(len(v) for v in result.values()) // 2
    return {"seconds": seconds, "pairs": found, "ours_seconds": ours, "ours_pairs": len(i),
            "peak_mb": peak_mb()}


def hex_hamming(a: str, b: str) -> int:
    """imagededup's distance function takes hex strings."""
    return int(hamming(int(a, 16), int(b, 16)))


def import_imagededup_search():  # type: ignore[no-untyped-def]
    """imagededup's HashEval. Its utils package imports its CNN model code, which needs
    torchvision; where torchvision is missing or broken (a CPU-only torch without a matching
    torchvision, as on this machine), a stand-in for that CNN module is registered first.
    The search itself never touches it."""
    import types

    try:
        import torchvision  # noqa: F401
    except Exception:
        stub = types.ModuleType("imagededup.utils.models")
        stub.CustomModel = object  # type: ignore[attr-defined]
        sys.modules["imagededup.utils.models"] = stub
    from imagededup.handlers.search.retrieval import HashEval

    return HashEval


def run_child(args: list[str], timeout: float | None = None) -> dict | None:
    cmd = [sys.executable, __file__, "--child", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"child {args} failed:\n{exc.stderr[-2000:]}") from exc
    return json.loads(out.stdout.strip().splitlines()[-1])


def real_hashes() -> None:
    from catalog.dedupe import hash_files

    batch = hash_files(sorted(IMAGES.glob("*.jpg")))
    np.save(REAL, batch.phash[batch.ok])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=600, help="seconds for imagededup")
    parser.add_argument("--start", type=int, default=2500, help="imagededup's first size")
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS),
                        help="sets to run ours on at --size")
    parser.add_argument("--anchor-sets", nargs="*", default=list(SETS), choices=list(SETS),
                        help="sets to run imagededup on")
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "SET", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, name, n = args.child
        func = child_ours if what == "ours" else child_imagededup
        print(json.dumps(func(name, int(n))))
        return
    real_hashes()
    print(f"all pairs within {K}; each figure from a fresh process; machine shared with other "
          f"work (2 cores)")
    for name in args.sets:
        np.save(set_file(name, args.size), SETS[name](args.size))
        runs = [run_child(["ours", name, str(args.size)]) for _ in range(args.repeats)]
        secs = statistics.median(r["seconds"] for r in runs if r)
        first = runs[0] or {}
        each = ", ".join(f"{r['seconds']:.1f}" for r in runs if r)
        cpu = statistics.median(r["cpu"] for r in runs if r)
        print(f"{name:9} n={args.size:,}: ours {secs:6.1f} s (median of {args.repeats}; "
              f"runs {each}; CPU {cpu:.1f} s over 2 threads), "
              f"{first.get('pairs', 0):,} pairs, peak memory {first.get('peak_mb', 0):,.0f} MB "
              f"(interpreter + loaded set {first.get('input_peak_mb', 0):,.0f} MB)")
    for name in args.anchor_sets:
        n, last = args.start, None
        while True:
            if last and last["seconds"] * (n / (n // 2)) ** 2 > args.budget:
                break  # the quadratic extrapolation says it would not finish
            res = run_child(["imagededup", name, str(n)], timeout=args.budget)
            if res is None:
                print(f"{name:9} imagededup n={n:,}: did not finish within {args.budget:.0f} s")
                break
            last = res
            same = "same pairs" if res["pairs"] == res["ours_pairs"] else (
                f"PAIR COUNTS DIFFER: ours {res['ours_pairs']:,}")
            ratio = res["seconds"] / res["ours_seconds"]
            print(f"{name:9} imagededup n={n:,}: {res['seconds']:7.1f} s, {res['pairs']:,} pairs "
                  f"({same}), peak {res['peak_mb']:,.0f} MB; ours on the same set "
                  f"{res['ours_seconds']:.3f} s -> ratio {ratio:,.0f}x")
            n *= 2


if __name__ == "__main__":
    main()
