"""The multi-index Hamming search: every pair of 64-bit hashes within a distance, pure numpy.

The 64 bits are cut into blocks; if two hashes are within distance k, then for blocks probed
with radii r_j where sum(r_j + 1) = k + 1, at least one block differs by at most r_j bits
(pigeonhole). Each probed block gets a table of positions sorted by block value (direct
addressed, so a lookup is one gather); every hash probes its block value with up to r_j bits
flipped, and the candidates found are checked on all 64 bits. Candidates are deduplicated
without a global sort: a pair is kept only from the first block that can find it. Everything
is numpy over chunks, so memory stays O(n). Measured in bench/near_dups.py: all pairs within
8 among 1,000,000 hashes in seconds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from catalog.dedupe.hashing import Progress, default_workers
from catalog.errors import InvalidInput

MAX_DISTANCE = 64
PROBE_CHUNK = 2_000_000  # (query, probe) cells per numpy step: bounds the working memory
MAX_TABLE_BITS = 24  # a block's direct-address table has 2**bits entries

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # (i, j, distance), positions into hashes
HashLike = np.ndarray | int | Sequence[int]


def validate_threshold(threshold: int, name: str = "threshold") -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise InvalidInput(f"{name} must be a whole number from 0 to 64, got {threshold!r}")
    if not 0 <= threshold <= MAX_DISTANCE:
        raise InvalidInput(f"{name} must be from 0 to 64 (bits of a 64-bit hash), got {threshold}")
    return threshold


# ---------------------------------------------------------------- Hamming distances


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    bytes_ = x.astype(np.uint64).view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1, dtype=np.uint8)


def _as_uint64(hashes: HashLike) -> np.ndarray:
    """64-bit hashes as uint64 bit for bit, whether stored signed (the catalog) or not."""
    arr = np.asarray(hashes)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64, copy=False).view(np.uint64)
    return arr.astype(np.uint64, copy=False)


def hamming(a: HashLike, b: HashLike) -> np.ndarray:
    """Bits that differ between 64-bit hashes, element by element (broadcast like numpy).

    Takes uint64 or int64 arrays or plain ints, signed (as the catalog stores them) or not;
    for two ints the answer is a numpy scalar (`int()` it for a plain number)."""
    return popcount(np.bitwise_xor(_as_uint64(a), _as_uint64(b)))


# ---------------------------------------------------------------- multi-index search


@dataclass(frozen=True)
class Block:
    shift: int
    width: int
    radius: int

    @property
    def mask(self) -> np.uint64:
        return np.uint64(((1 << self.width) - 1) << self.shift)

    def keys(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes >> np.uint64(self.shift)) & np.uint64((1 << self.width) - 1)).astype(
            np.int64
        )

    def flips(self) -> np.ndarray:
        """Every XOR mask of at most `radius` bits within the block."""
        out = [0]
        for r in range(1, self.radius + 1):
            out += [sum(1 << b for b in bits) for bits in combinations(range(self.width), r)]
        return np.array(out, dtype=np.int64)

    def probes(self) -> int:
        return sum(math.comb(self.width, r) for r in range(self.radius + 1))


def plan_blocks(n: int, k: int) -> list[Block]:
    """Blocks of about log2(n) bits (so a bucket holds about one hash) and their radii.

    Only as many blocks are probed as the pigeonhole needs: sum(radius + 1) = k + 1.
    """
    m = max(3, min(16, round(64 / math.log2(max(n, 4)))))
    m = max(m, math.ceil(64 / MAX_TABLE_BITS))
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = [64 - sum(widths[: i + 1]) for i in range(m)]
    probed = min(m, k + 1)
    base, extra = divmod(k + 1, probed)
    radii = [base - 1 + (1 if i < extra else 0) for i in range(probed)]
    return [Block(shifts[i], widths[i], radii[i]) for i in range(probed)]


def search_cost(n: int, queries: int, blocks: Sequence[Block]) -> float:
    """Rough work of the indexed search, in the same units as a brute-force comparison."""
    probes = sum(b.probes() for b in blocks)
    expected = sum(b.probes() * n / 2**b.width for b in blocks)
    return queries * (4 * probes + 2 * expected) + 4 * n * len(blocks)


def near_pairs(
    hashes: np.ndarray,
    k: int,
    query: np.ndarray | None = None,
    progress: Progress | None = None,
) -> Pairs:
    """Every pair of positions (i, j) with Hamming distance <= k, each pair once.

    With `query` (positions), only pairs with at least one end in it are found: that is the
    incremental mode, new hashes against the whole index. i is always a query position.
    """
    parts = list(iter_near_pairs(hashes, k, query, progress))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0, np.uint8)
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def iter_near_pairs(
    hashes: np.ndarray,
    k: int,
    query: np.ndarray | None = None,
    progress: Progress | None = None,
) -> Iterator[Pairs]:
    """`near_pairs` in chunks, so a caller can fold them without holding every pair."""
    validate_threshold(k)
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)
    q = np.arange(n, dtype=np.int64) if query is None else np.asarray(query, dtype=np.int64)
    if n < 2 or len(q) == 0:
        return
    in_query = np.zeros(n, bool)
    in_query[q] = True
    blocks = plan_blocks(n, k)
    if search_cost(n, len(q), blocks) >= len(q) * n / 2:
        yield from _brute_pairs(h, k, q, in_query, progress)
    else:
        yield from _indexed_pairs(h, k, q, in_query, blocks, progress)


def _keep(i: np.ndarray, j: np.ndarray, in_query: np.ndarray) -> np.ndarray:
    """Each unordered pair once: when both ends are queries, only from the smaller one."""
    return (i != j) & (~in_query[j] | (i < j))


def _brute_pairs(
    h: np.ndarray, k: int, q: np.ndarray, in_query: np.ndarray, progress: Progress | None
) -> Iterator[Pairs]:
    step = max(1, PROBE_CHUNK // max(len(h), 1))
    for start in range(0, len(q), step):
        qi = q[start : start + step]
        d = hamming(h[qi][:, None], h[None, :])
        rows, j = np.nonzero(d <= k)
        i = qi[rows]
        keep = _keep(i, j, in_query)
        yield i[keep], j[keep], d[rows[keep], j[keep]]
        if progress:
            progress(min(start + step, len(q)), len(q))


@dataclass
class _BlockIndex:
    block: Block
    flips: np.ndarray
    occupied: np.ndarray  # a bool per bucket: most probes stop here, in a table small enough
    # to stay in cache (a bit table is smaller still but costs more arithmetic per probe)
    bounds: np.ndarray  # (buckets, 2): bucket b holds sorted positions bounds[b, 0]:bounds[b, 1],
    # side by side so one probe costs one cache miss
    order: np.ndarray  # positions sorted by block value
    sorted_hashes: np.ndarray  # hashes in that order (contiguous reads when verifying)


def _build_index(h: np.ndarray, block: Block) -> _BlockIndex:
    keys = block.keys(h)
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=1 << block.width)
    bounds = np.zeros((len(counts), 2), np.int64 if len(h) >= 2**31 else np.int32)
    np.cumsum(counts, out=bounds[:, 1])
    bounds[1:, 0] = bounds[:-1, 1]
    return _BlockIndex(block, block.flips(), counts > 0, bounds, order, h[order])


def _indexed_pairs(
    h: np.ndarray,
    k: int,
    q: np.ndarray,
    in_query: np.ndarray,
    blocks: list[Block],
    progress: Progress | None,
) -> Iterator[Pairs]:
    total = len(q) * len(blocks)
    done = 0
    for b, block in enumerate(blocks):
        index = _build_index(h, block)
        step = max(1, PROBE_CHUNK // len(index.flips))
        chunks = [q[start : start + step] for start in range(0, len(q), step)]
        probe = functools.partial(_probe, h, index, k=k)
        for qi, (i, j, d) in zip(chunks, _map_threads(probe, chunks), strict=True):
            keep = _keep(i, j, in_query)
            x = h[i] ^ h[j]
            for other in blocks[:b]:  # found by an earlier block already
                keep &= popcount(x & other.mask) > other.radius
            yield i[keep], j[keep], d[keep]
            done += len(qi)
            if progress:
                progress(done, total)


def _map_threads(func: Callable[[np.ndarray], Pairs], chunks: list[np.ndarray]) -> Iterator[Pairs]:
    """Map over chunks with one thread per core (numpy releases the GIL), results in order."""
    from concurrent.futures import ThreadPoolExecutor

    workers = min(default_workers(), len(chunks))
    if workers <= 1:
        yield from map(func, chunks)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(func, chunks)


def _probe(h: np.ndarray, index: _BlockIndex, qi: np.ndarray, k: int) -> Pairs:
    """Candidates of the queries `qi` in one block, checked on all bits."""
    keys = index.block.keys(h[qi])
    cells = (keys[:, None] ^ index.flips[None, :]).ravel()  # every (query, flip)
    cell_nz = np.flatnonzero(index.occupied[cells])
    cells = cells[cell_nz]
    bounds = index.bounds[cells].astype(np.int64)
    lo, counts = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    if len(cells) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0, np.uint8)
    # Expand every non-empty bucket range lo:lo+count into positions in sorted order.
    ends = np.cumsum(counts)
    pos = np.repeat(lo - (ends - counts), counts) + np.arange(ends[-1])
    owner = np.repeat(cell_nz // len(index.flips), counts)
    d = hamming(index.sorted_hashes[pos], h[qi][owner])
    hit = np.flatnonzero(d <= k)
    return qi[owner[hit]], index.order[pos[hit]], d[hit]
