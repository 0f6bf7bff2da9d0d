"""The catalog's dedupe run: hash what has no hash, find near-duplicate pairs, check their
colours, cluster them and record cluster ids and canonical images.

`images.dedupe_threshold` is the threshold an image was last compared at; NULL means it has
not been compared yet. A run compares only those new images against the index (incremental);
a different threshold, or `full=True`, redoes all pairs. See catalog.dedupe.clusters for how
clusters live in the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.dedupe.clusters import ClusterInfo, choose_canonical, cluster_ids, components
from catalog.dedupe.hashing import BatchHashes, Progress, hash_files, signed, unsigned
from catalog.dedupe.search import hamming, near_pairs, validate_threshold
from catalog.dedupe.verify import VERIFY_CUT, verify_pairs
from catalog.errors import InvalidInput
from catalog.models import Image


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
    second = hamming(rows.dhash[i], rows.dhash[j]) <= dhash_threshold
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
