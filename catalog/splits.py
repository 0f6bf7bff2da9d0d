"""The frozen train/val/test split of a task, decided once per catalog and kept in the catalog.

The first draw is stratified by class and made per dedupe cluster with a fixed seed, so near
duplicates never straddle train and test. Images that arrive later join the split of their
cluster if it has one, otherwise the split a stable hash of their cluster key picks: models of
the same task are always measured on the same test images.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Image, SplitAssignment

TEST_FRACTION = 0.15
VAL_FRACTION = 0.15
SEED = 1234


@dataclass(frozen=True)
class SplitItem:
    image_id: int
    cluster_id: int | None  # the dedupe cluster; None means the image is its own cluster
    key: str  # a stable identity of the cluster (its canonical image's sha256)
    label: str


def existing_splits(session: Session, task: str) -> dict[int, str]:
    rows = session.execute(
        select(SplitAssignment.image_id, SplitAssignment.split).where(SplitAssignment.task == task)
    )
    return {image_id: split for image_id, split in rows}


def assign_splits(
    session: Session, task: str, items: Iterable[SplitItem], seed: int = SEED
) -> dict[int, str]:
    """The split of every item; draws the task's split the first time and freezes new ones."""
    items = list(items)
    known = existing_splits(session, task)
    if known:
        fresh = _join_existing(session, task, [i for i in items if i.image_id not in known])
    else:
        fresh = stratified_draw(items, seed)
    for image_id, split in sorted(fresh.items()):
        session.add(SplitAssignment(task=task, image_id=image_id, split=split))
    session.flush()
    known.update(fresh)
    return {i.image_id: known[i.image_id] for i in items}


def stratified_draw(items: list[SplitItem], seed: int = SEED) -> dict[int, str]:
    """Per class, a seeded shuffle of its clusters cut into test, val and train."""
    by_label: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    rng = random.Random(seed)
    out: dict[int, str] = {}
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda i: i.key)
        rng.shuffle(group)
        n_test, n_val = _quota(len(group), TEST_FRACTION), _quota(len(group), VAL_FRACTION)
        for pos, item in enumerate(group):
            out[item.image_id] = (
                "test" if pos < n_test else "val" if pos < n_test + n_val else "train"
            )
    return out


def _quota(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if n >= 3 else 0


def hashed_split(task: str, key: str) -> str:
    """A split from a stable hash of the cluster key (same answer on every machine, every run)."""
    digest = hashlib.sha256(f"{task}\0{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if u < TEST_FRACTION else "val" if u < TEST_FRACTION + VAL_FRACTION else "train"


def _join_existing(session: Session, task: str, items: list[SplitItem]) -> dict[int, str]:
    """New items take their cluster's split when a cluster mate has one, else the hashed one."""
    clusters = {i.cluster_id for i in items if i.cluster_id is not None}
    by_cluster: dict[int, str] = {}
    if clusters:
        rows = session.execute(
            select(Image.cluster_id, SplitAssignment.split)
            .join(SplitAssignment, SplitAssignment.image_id == Image.id)
            .where(SplitAssignment.task == task, Image.cluster_id.in_(clusters))
            .order_by(SplitAssignment.id)
        )
        for cluster_id, split in rows:
            if cluster_id is not None:
                by_cluster.setdefault(cluster_id, split)
    out = {}
    for item in items:
        found = by_cluster.get(item.cluster_id) if item.cluster_id is not None else None
        out[item.image_id] = found or hashed_split(task, item.key)
    return out
