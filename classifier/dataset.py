"""The labelled dataset a task trains on, read from the catalog.

One example per dedupe cluster: the cluster's canonical image, labelled with the current labels
of the products that show any image of the cluster (human beats store; ties go to the
majority). The class is the category path cut at `level`. Rare classes are left out, or merged
into `Other`. Every example carries its frozen split (catalog.splits).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.categories import path_at_level
from catalog.dedupe import Cluster, canonical_clusters
from catalog.labels import PRECEDENCE, current_labels
from catalog.models import ProductImage
from catalog.splits import SplitItem, assign_splits
from catalog.store import ImageStore
from classifier.errors import NotEnoughClasses

OTHER = "Other"


@dataclass(frozen=True)
class DatasetSpec:
    level: int | None = None  # cut category paths to this many parts; None keeps them whole
    min_per_class: int = 20
    other: bool = False  # merge rare classes into "Other" instead of leaving them out
    sources: tuple[str, ...] = ("human", "store")

    @property
    def task(self) -> str:
        return f"category@level{self.level}" if self.level else "category"

    def as_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "min_per_class": self.min_per_class,
            "other": self.other,
            "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DatasetSpec:
        level = data.get("level")
        return cls(
            level=int(level) if isinstance(level, int) else None,
            min_per_class=int(data.get("min_per_class", 20)),  # type: ignore[call-overload]
            other=bool(data.get("other", False)),
            sources=tuple(data.get("sources", ("human", "store"))),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Example:
    image_id: int
    path: Path
    sha256: str
    label: str
    split: str


@dataclass
class Dataset:
    task: str
    classes: list[str]
    examples: list[Example]
    counts: dict[str, int]  # examples per class, every class before filtering
    dropped: dict[str, int] = field(default_factory=dict)  # rare classes left out
    merged: dict[str, int] = field(default_factory=dict)  # rare classes merged into Other

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples if e.split == name]

    def fingerprint(self, extra: str = "") -> str:
        """A hash of what the model learns from: training images, their classes, the options."""
        h = hashlib.sha256(extra.encode())
        for e in sorted(self.split("train"), key=lambda e: e.sha256):
            h.update(f"{e.sha256}:{e.label}\n".encode())
        return h.hexdigest()


def image_products(session: Session) -> dict[int, list[int]]:
    """image id -> ids of the products that show it."""
    out: dict[int, list[int]] = defaultdict(list)
    for product_id, image_id in session.execute(
        select(ProductImage.product_id, ProductImage.image_id)
    ):
        out[image_id].append(product_id)
    return out


def cluster_label(
    product_ids: Iterable[int], labels: dict[int, tuple[str, str]]
) -> str | None:
    """The class of a cluster from its products' labels: best source first, then majority."""
    found = [labels[p] for p in product_ids if p in labels]
    if not found:
        return None
    best = min(PRECEDENCE[source] for _name, source in found)
    votes = Counter(name for name, source in found if PRECEDENCE[source] == best)
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def labelled_clusters(session: Session, spec: DatasetSpec) -> list[tuple[Cluster, str]]:
    labels = {
        lab.product_id: (path_at_level(lab.category, spec.level), lab.source)
        for lab in current_labels(session, sources=spec.sources)
    }
    products = image_products(session)
    out = []
    for cluster in canonical_clusters(session):
        pids = [p for image_id in cluster.image_ids for p in products.get(image_id, [])]
        label = cluster_label(pids, labels)
        if label is not None:
            out.append((cluster, label))
    return out


def build_dataset(session: Session, store: ImageStore, spec: DatasetSpec) -> Dataset:
    """The task's examples with their frozen splits; raises NotEnoughClasses."""
    labelled = labelled_clusters(session, spec)
    items = [SplitItem(c.canonical_id, c.cluster_id, c.sha256, label) for c, label in labelled]
    splits = assign_splits(session, spec.task, items)
    counts = Counter(label for _c, label in labelled)
    rare = {name: n for name, n in counts.items() if n < spec.min_per_class}
    kept = sorted(name for name in counts if name not in rare)
    if spec.other and rare:
        kept = sorted([*kept, OTHER])
    if len(kept) < 2:
        raise NotEnoughClasses(_not_enough_message(counts, spec))
    examples = []
    for cluster, label in labelled:
        cls = OTHER if label in rare and spec.other else label
        if cls in kept:
            path = store.path(cluster.path)
            split = splits[cluster.canonical_id]
            examples.append(Example(cluster.canonical_id, path, cluster.sha256, cls, split))
    return Dataset(
        task=spec.task,
        classes=kept,
        examples=examples,
        counts=dict(counts),
        dropped={} if spec.other else rare,
        merged=rare if spec.other else {},
    )


def _not_enough_message(counts: Counter[str], spec: DatasetSpec) -> str:
    if not counts:
        return "no labelled images to train on; import or crawl a store with categories first"
    listing = ", ".join(f"{name} ({n})" for name, n in counts.most_common(8))
    return (
        f"fewer than 2 classes have at least {spec.min_per_class} labelled images "
        f"(found: {listing}); lower --min-per-class, use --other, or label more products"
    )
