"""Near-duplicate images: pairs within a Hamming distance, clusters, one canonical image each.

Search (`near_pairs`) is multi-index hashing: the 64 bits are cut into blocks; if two hashes
are within distance k, then for blocks probed with radii r_j where sum(r_j + 1) = k + 1, at
least one block differs by at most r_j bits (pigeonhole). Each probed block gets a table of
positions sorted by block value (direct addressed, so a lookup is one gather); every hash
probes its block value with up to r_j bits flipped, and the candidates found are checked on
all 64 bits. Candidates are deduplicated without a global sort: a pair is kept only from the
first block that can find it. Everything is numpy over chunks, so memory stays O(n).
Measured in bench/near_dups.py: all pairs within 8 among 1,000,000 hashes in seconds.

Clusters are the connected components of the pair graph; the canonical image of a cluster is
the one with the most pixels, then the earliest seen (created_at, then id).

How clusters live in the catalog:
- `images.cluster_id` is the smallest image id of the cluster (stable while a cluster grows:
  new images have larger ids), NULL for an image with no near duplicate (a singleton is its
  own cluster and is canonical). `cluster_keys()` gives every image its cluster key.
- `images.is_canonical` is false for the members that leave training and review.
- `images.dedupe_threshold` is the threshold an image was last compared at; NULL means it
  has not been compared yet. A run compares only those new images against the index
  (incremental); a different threshold, or `full=True`, redoes all pairs.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.errors import InvalidInput
from catalog.hashing import (
    BatchHashes,
    default_workers,
    hash_files,
    normalise_signatures,
    signature_file,
    signature_similarity,
    signed,
    unsigned,
)
from catalog.models import Image, ProductImage

MAX_DISTANCE = 64
PROBE_CHUNK = 2_000_000  # (query, probe) cells per numpy step: bounds the working memory
MAX_TABLE_BITS = 24  # a block's direct-address table has 2**bits entries
VERIFY_CUT = 0.97  # colour similarity a candidate pair needs (Settings.dedupe_threshold)

Progress = Callable[[int, int], None]  # (done, total)
Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # (i, j, distance), positions into hashes


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


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return popcount(np.bitwise_xor(a, b))


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
        d = distances(h[qi][:, None], h[None, :])
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
    d = distances(index.sorted_hashes[pos], h[qi][owner])
    hit = np.flatnonzero(d <= k)
    return qi[owner[hit]], index.order[pos[hit]], d[hit]


# ---------------------------------------------------------------- clusters


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes given edges (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, np.int64)


def choose_canonical(
    labels: np.ndarray, pixels: np.ndarray, seen: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """A boolean per node: the largest resolution of its component, then earliest seen, then id.

    `seen` is any sortable number (earlier is smaller), e.g. created_at as a timestamp.
    """
    order = np.lexsort((ids, seen, -pixels, labels))  # last key sorts first
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    canonical = np.zeros(len(labels), bool)
    canonical[order[first]] = True
    return canonical


def cluster_ids(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per node, the smallest id of its component, or -1 where the component is a singleton."""
    size = np.bincount(labels)
    smallest = np.full(len(size), np.iinfo(np.int64).max)
    np.minimum.at(smallest, labels, ids)
    return np.where(size[labels] > 1, smallest[labels], -1)


# ---------------------------------------------------------------- the catalog run


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: int
    size: int
    canonical_id: int
    member_ids: list[int]


@dataclass
class DedupeSummary:
    """What a dedupe run found (and, unless dry_run, recorded)."""

    threshold: int
    dhash_threshold: int
    dry_run: bool
    mode: str = "full"  # full | incremental | nothing-new | empty
    images: int = 0  # images with hashes
    compared: int = 0  # images compared against the index in this run
    pairs: int = 0  # near-duplicate pairs found in this run
    clusters: int = 0  # clusters of two or more images
    clustered_images: int = 0
    leaving_training: int = 0  # non-canonical images (all of them, after this run)
    newly_leaving: int = 0  # images that stop being canonical in this run
    rows_changed: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # cluster size -> how many clusters
    largest: list[ClusterInfo] = field(default_factory=list)
    hashed_now: int = 0  # images that had no hash and got one in this run
    unhashable: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    seconds: float = 0.0
    verify_cut: float | None = None  # colour verification cut-off; None: hashes only
    candidates: int = 0  # hash pairs before verification
    rejected: int = 0  # hash pairs the colour verification turned down
    unverifiable: int = 0  # images in candidate pairs whose file could not be read

    @property
    def nothing_to_do(self) -> bool:
        return self.mode in ("empty", "nothing-new")


@dataclass
class _Rows:
    """The hashed images of the catalog as arrays, ordered by id."""

    ids: np.ndarray
    phash: np.ndarray  # uint64
    dhash: np.ndarray  # uint64
    pixels: np.ndarray
    seen: np.ndarray  # created_at as seconds
    cluster: np.ndarray  # -1 for none
    canonical: np.ndarray
    threshold: np.ndarray  # -1 for never compared


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _load_rows(session: Session) -> _Rows:
    rows = session.execute(
        select(
            Image.id, Image.phash, Image.dhash, Image.width, Image.height, Image.created_at,
            Image.cluster_id, Image.is_canonical, Image.dedupe_threshold,
        )
        .where(Image.phash.is_not(None), Image.rejected_reason.is_(None))
        .order_by(Image.id)
    ).all()
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * 9
    return _Rows(
        ids=np.array(cols[0], np.int64),
        phash=unsigned(np.array(cols[1], np.int64)),
        dhash=unsigned(np.array([d or 0 for d in cols[2]], np.int64)),
        pixels=np.array([(w or 0) * (hh or 0) for w, hh in zip(cols[3], cols[4], strict=True)],
                        np.int64),
        seen=np.array([_timestamp(c) for c in cols[5]], np.float64),
        cluster=np.array([-1 if c is None else c for c in cols[6]], np.int64),
        canonical=np.array([bool(c) for c in cols[7]], bool),
        threshold=np.array([-1 if t is None else t for t in cols[8]], np.int64),
    )


@dataclass
class _Hashed:
    """Images that had no hash and were hashed from their files in this run."""

    rows: list[Any]  # (id, path, width, height, created_at) of every image tried
    batch: BatchHashes

    @property
    def ok(self) -> np.ndarray:
        return np.flatnonzero(self.batch.ok)

    def failures(self) -> list[tuple[int, str]]:
        return [(self.rows[i].id, reason) for i, reason in sorted(self.batch.errors.items())]


def hash_missing(catalog: Catalog, workers: int | None = None) -> _Hashed:
    """Hash the stored images that have no hash yet (older rows); nothing is written.

    Files that do not decode get no hash and are listed by `failures()`.
    """
    with catalog.session() as session:
        todo = session.execute(
            select(Image.id, Image.path, Image.width, Image.height, Image.created_at).where(
                Image.phash.is_(None), Image.rejected_reason.is_(None), Image.path.is_not(None)
            )
        ).all()
    paths = [catalog.store.path(str(r.path)) for r in todo]
    return _Hashed(list(todo), hash_files(paths, workers=workers))


def _store_hashes(catalog: Catalog, hashed: _Hashed) -> None:
    ok = hashed.ok
    if not len(ok):
        return
    p, d = signed(hashed.batch.phash[ok]), signed(hashed.batch.dhash[ok])
    with catalog.session() as session:
        session.execute(
            update(Image),
            [{"id": hashed.rows[int(i)].id, "phash": int(p[n]), "dhash": int(d[n])}
             for n, i in enumerate(ok)],
        )


def run_dedupe(
    catalog: Catalog,
    threshold: int | None = None,
    dry_run: bool = False,
    full: bool = False,
    dhash_threshold: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    largest: int = 10,
    verify: bool = True,
    verify_cut: float = VERIFY_CUT,
) -> DedupeSummary:
    """Find near duplicates, cluster them, pick canonical images and record it all.

    Two images are near duplicates when their pHashes are within `threshold` bits AND their
    dHashes within `dhash_threshold` (default: the same number; 64 turns the second opinion
    off). bench/dedupe_quality.py measured that the dHash check removes most false pairs
    between different products of the same silhouette (see Settings.dedupe_threshold).
    With `verify` (the default), each candidate pair from the hashes must also have similar
    colours: a 16x16 RGB signature of both files (padded to square on white, decoded at
    reduced scale, computed once per image in the run and only for images in candidate pairs)
    must correlate >= `verify_cut` in every channel (`signature_similarity`). That separates
    products of the same silhouette in other colours, which the hashes (grey) cannot, and so
    allows a looser hash threshold. A pair whose file cannot be read is not accepted.
    Incremental by default: only images never compared at this threshold are searched
    against the whole index (changing `verify` or `verify_cut` needs `full=True`).
    `dry_run` computes everything and writes nothing.
    """
    started = time.perf_counter()
    threshold = validate_threshold(
        catalog.settings.dedupe_threshold if threshold is None else threshold
    )
    dhash_threshold = validate_threshold(
        threshold if dhash_threshold is None else dhash_threshold, "dHash threshold"
    )
    if verify and not 0.0 <= verify_cut <= 1.0:
        raise InvalidInput(f"the verification cut-off must be from 0 to 1, got {verify_cut}")
    summary = DedupeSummary(threshold, dhash_threshold, dry_run,
                            verify_cut=verify_cut if verify else None)
    hashed = hash_missing(catalog, workers)
    summary.hashed_now, summary.unhashable = len(hashed.ok), hashed.failures()
    if not dry_run:
        _store_hashes(catalog, hashed)
    with catalog.session() as session:
        rows = _load_rows(session)
    if dry_run and summary.hashed_now:  # not stored: add them to what the catalog holds
        rows = _with_hashed(rows, hashed)
    summary.images = len(rows.ids)
    query = _plan(rows, threshold, full, summary, largest)
    if query is None:
        summary.seconds = time.perf_counter() - started
        return summary
    i, j, _d = near_pairs(rows.phash, threshold, query, progress)
    second = distances(rows.dhash[i], rows.dhash[j]) <= dhash_threshold
    i, j = i[second], j[second]
    summary.candidates = len(i)
    if verify and len(i):
        keep, summary.unverifiable = verify_pairs(catalog, rows.ids, i, j, verify_cut, workers)
        i, j = i[keep], j[keep]
        summary.rejected = int((~keep).sum())
    summary.compared, summary.pairs = len(query), len(i)
    if summary.mode == "incremental":  # keep the clusters already known
        i, j = _with_known_clusters(rows, i, j)
    labels = components(len(rows.ids), i, j)
    new_cluster = cluster_ids(labels, rows.ids)
    new_canonical = choose_canonical(labels, rows.pixels, rows.seen, rows.ids)
    new_canonical |= new_cluster < 0
    _summarise(summary, rows, new_cluster, new_canonical, largest)
    changes = _changes(rows, new_cluster, new_canonical, threshold)
    summary.rows_changed = len(changes)
    if not dry_run and changes:
        with catalog.session() as session:
            session.execute(update(Image), changes)
    summary.seconds = time.perf_counter() - started
    return summary


def verify_pairs(
    catalog: Catalog,
    ids: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    cut: float,
    workers: int | None = None,
) -> tuple[np.ndarray, int]:
    """Which candidate pairs (positions into `ids`) have similar colour signatures, and how
    many of their images could not be read (pairs touching one are not accepted).

    Signatures are computed once per image, only for images in a pair, on all cores."""
    from concurrent.futures import ThreadPoolExecutor

    nodes = np.unique(np.concatenate([i, j]))
    wanted = [int(x) for x in ids[nodes]]
    paths: dict[int, str | None] = {}
    with catalog.session() as session:
        for start in range(0, len(wanted), 10_000):
            chunk = wanted[start : start + 10_000]
            paths.update(session.execute(
                select(Image.id, Image.path).where(Image.id.in_(chunk))
            ).all())

    def one(image_id: int) -> np.ndarray | None:
        path = paths.get(image_id)
        return None if path is None else signature_file(catalog.store.path(path))

    with ThreadPoolExecutor(max(1, min(workers or default_workers(), len(wanted)))) as pool:
        found = list(pool.map(one, wanted))
    readable = np.array([s is not None for s in found], bool)
    cells = next((s.shape for s in found if s is not None), (1, 3))
    # an unreadable image gets zeros: its pairs are dropped by `readable` below
    sigs = normalise_signatures(
        np.stack([s if s is not None else np.zeros(cells, np.float32) for s in found])
    )
    slot = np.searchsorted(nodes, i), np.searchsorted(nodes, j)
    keep = np.zeros(len(i), bool)
    for start in range(0, len(i), 100_000):
        a, b = slot[0][start : start + 100_000], slot[1][start : start + 100_000]
        keep[start : start + len(a)] = (
            (signature_similarity(sigs[a], sigs[b]) >= cut) & readable[a] & readable[b]
        )
    return keep, int((~readable).sum())


def _with_hashed(rows: _Rows, hashed: _Hashed) -> _Rows:
    ok = hashed.ok
    extra = [hashed.rows[int(n)] for n in ok]
    merged = _Rows(
        ids=np.concatenate([rows.ids, [r.id for r in extra]]).astype(np.int64),
        phash=np.concatenate([rows.phash, hashed.batch.phash[ok]]).astype(np.uint64),
        dhash=np.concatenate([rows.dhash, hashed.batch.dhash[ok]]).astype(np.uint64),
        pixels=np.concatenate([rows.pixels, [(r.width or 0) * (r.height or 0) for r in extra]])
        .astype(np.int64),
        seen=np.concatenate([rows.seen, [_timestamp(r.created_at) for r in extra]]),
        cluster=np.concatenate([rows.cluster, np.full(len(extra), -1)]).astype(np.int64),
        canonical=np.concatenate([rows.canonical, np.ones(len(extra), bool)]),
        threshold=np.concatenate([rows.threshold, np.full(len(extra), -1)]).astype(np.int64),
    )
    order = np.argsort(merged.ids, kind="stable")
    return _Rows(*(getattr(merged, f)[order] for f in _Rows.__dataclass_fields__))


def _plan(
    rows: _Rows, threshold: int, full: bool, summary: DedupeSummary, largest: int
) -> np.ndarray | None:
    """The query positions of this run, or None (and the reason in summary.mode)."""
    if len(rows.ids) == 0:
        summary.mode = "empty"
        return None
    known = rows.threshold >= 0
    stale = known & (rows.threshold != threshold)
    if full or stale.any() or not known.any():
        summary.mode = "full"
        return np.arange(len(rows.ids), dtype=np.int64)
    new = np.flatnonzero(~known)
    if len(new) == 0:
        summary.mode = "nothing-new"
        _summarise(summary, rows, rows.cluster, rows.canonical, largest)
        return None
    summary.mode = "incremental"
    return new


def _with_known_clusters(rows: _Rows, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, ...]:
    """Add edges that keep each known cluster together: a chain through its members.

    Chained rather than starred on the cluster id, which may name an image no longer here.
    """
    members = np.flatnonzero(rows.cluster >= 0)
    members = members[np.argsort(rows.cluster[members], kind="stable")]
    same = rows.cluster[members][1:] == rows.cluster[members][:-1]
    return np.concatenate([i, members[:-1][same]]), np.concatenate([j, members[1:][same]])


def _summarise(
    summary: DedupeSummary,
    rows: _Rows,
    cluster: np.ndarray,
    canonical: np.ndarray,
    largest: int,
) -> None:
    clustered = cluster >= 0
    summary.clustered_images = int(clustered.sum())
    summary.leaving_training = int((~canonical).sum())
    summary.newly_leaving = int((rows.canonical & ~canonical).sum())
    if not clustered.any():
        return
    keys, inverse, sizes = np.unique(cluster[clustered], return_inverse=True, return_counts=True)
    summary.clusters = len(keys)
    size_values, size_counts = np.unique(sizes, return_counts=True)
    summary.sizes = {int(s): int(c) for s, c in zip(size_values, size_counts, strict=True)}
    ids = rows.ids[clustered]
    canon = canonical[clustered]
    for c in np.lexsort((keys, -sizes))[:largest]:
        members = ids[inverse == c]
        summary.largest.append(
            ClusterInfo(int(keys[c]), int(sizes[c]), int(members[canon[inverse == c]][0]),
                        [int(m) for m in members])
        )


def _changes(
    rows: _Rows, cluster: np.ndarray, canonical: np.ndarray, threshold: int
) -> list[dict[str, Any]]:
    changed = (cluster != rows.cluster) | (canonical != rows.canonical) | (
        rows.threshold != threshold
    )
    return [
        {
            "id": int(rows.ids[n]),
            "cluster_id": None if cluster[n] < 0 else int(cluster[n]),
            "is_canonical": bool(canonical[n]),
            "dedupe_threshold": threshold,
        }
        for n in np.flatnonzero(changed)
    ]


# ---------------------------------------------------------------- reading clusters


def cluster_keys(session: Session) -> dict[int, int]:
    """Every usable image's cluster key: its cluster_id, or its own id when unclustered.

    Keys never collide: a cluster_id is the smallest image id of its cluster, and an
    unclustered image's id belongs to no cluster. For cluster-aware splits.
    """
    rows = session.execute(
        select(Image.id, Image.cluster_id).where(Image.rejected_reason.is_(None))
    )
    return {image_id: cluster if cluster is not None else image_id for image_id, cluster in rows}


def list_clusters(session: Session, limit: int | None = None) -> list[ClusterInfo]:
    """Clusters of two or more images, largest first (then by cluster id)."""
    size = func.count(Image.id).label("size")
    query = (
        select(Image.cluster_id, size)
        .where(Image.cluster_id.is_not(None), Image.rejected_reason.is_(None))
        .group_by(Image.cluster_id)
        .order_by(size.desc(), Image.cluster_id)
    )
    if limit is not None:
        query = query.limit(limit)
    heads = session.execute(query).all()
    return [_cluster(session, cluster_id) for cluster_id, _ in heads if cluster_id is not None]


def _cluster(session: Session, cluster_id: int) -> ClusterInfo:
    rows = session.execute(
        select(Image.id, Image.is_canonical)
        .where(Image.cluster_id == cluster_id, Image.rejected_reason.is_(None))
        .order_by(Image.is_canonical.desc(), Image.id)
    ).all()
    ids = [r.id for r in rows]
    canonical = next((r.id for r in rows if r.is_canonical), ids[0])
    return ClusterInfo(cluster_id, len(ids), canonical, ids)


@dataclass(frozen=True)
class MemberInfo:
    image_id: int
    sha256: str
    path: str | None
    width: int | None
    height: int | None
    is_canonical: bool
    phash_distance: int  # to the canonical image
    dhash_distance: int
    products: int


def cluster_members(session: Session, cluster_id: int) -> list[MemberInfo]:
    """The images of one cluster, canonical first; InvalidInput if there is no such cluster."""
    products = (
        select(func.count(ProductImage.id))
        .where(ProductImage.image_id == Image.id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Image, products)
        .where(Image.cluster_id == cluster_id)
        .order_by(Image.is_canonical.desc(), Image.id)
    ).all()
    if not rows:
        raise InvalidInput(f"no cluster {cluster_id}; 'slashcat dedupe --show' lists them")
    head = rows[0][0]
    out = []
    for img, n_products in rows:
        out.append(MemberInfo(
            img.id, img.sha256, img.path, img.width, img.height, img.is_canonical,
            _distance(img.phash, head.phash), _distance(img.dhash, head.dhash), n_products,
        ))
    return out


def _distance(a: int | None, b: int | None) -> int:
    if a is None or b is None:
        return -1
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


# ---------------------------------------------------------------- contact sheet


def contact_sheet(
    catalog: Catalog,
    out: Path,
    clusters: int = 12,
    per_row: int = 8,
    thumb: int = 112,
) -> int:
    """Write a PNG with one row per cluster (largest first), canonical image first and framed.

    Returns how many clusters it shows; InvalidInput if there are none to show.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"{out}: the contact sheet is a PNG; give a file name ending in .png")
    with catalog.session() as session:
        infos = list_clusters(session, clusters)
        rows = [(info, _paths(session, info.member_ids[:per_row])) for info in infos]
    if not rows:
        raise InvalidInput("no clusters to show; run 'slashcat dedupe' first")
    label_h, pad = 18, 6
    width = pad + per_row * (thumb + pad)
    height = pad + len(rows) * (thumb + label_h + pad)
    sheet = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (info, paths) in enumerate(rows):
        top = pad + r * (thumb + label_h + pad)
        more = f" (first {per_row})" if info.size > per_row else ""
        draw.text((pad, top + 2), f"cluster {info.cluster_id}: {info.size} images{more}",
                  fill="black")
        for c, (image_id, path) in enumerate(paths):
            left = pad + c * (thumb + pad)
            tile = _thumbnail(catalog, path, thumb)
            sheet.paste(tile, (left, top + label_h))
            if image_id == info.canonical_id:
                draw.rectangle([left - 2, top + label_h - 2, left + thumb + 1,
                                top + label_h + thumb + 1], outline=(0, 160, 0), width=3)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sheet.save(out, "PNG")
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc}") from exc
    return len(rows)


def _paths(session: Session, ids: list[int]) -> list[tuple[int, str | None]]:
    found = dict(session.execute(select(Image.id, Image.path).where(Image.id.in_(ids))).all())
    return [(i, found.get(i)) for i in ids]


def _thumbnail(catalog: Catalog, path: str | None, size: int) -> Any:
    """A size x size tile of the image, letterboxed; a grey tile if the file is unreadable."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    tile = PILImage.new("RGB", (size, size), (235, 235, 235))
    try:
        if path is None:
            raise OSError("no file")
        with PILImage.open(catalog.store.path(path)) as img:
            img.draft("RGB", (size, size))
            rgb = img.convert("RGB")
        rgb.thumbnail((size, size))
        tile.paste(rgb, ((size - rgb.width) // 2, (size - rgb.height) // 2))
    except (OSError, ValueError):
        ImageDraw.Draw(tile).text((8, size // 2 - 6), "unreadable", fill=(120, 0, 0))
    return tile
