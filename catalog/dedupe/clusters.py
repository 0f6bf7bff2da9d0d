"""Clusters: connected components of the pair graph, the canonical image of each, and the
readers of the clusters recorded in the catalog.

The canonical image of a cluster is the one with the most pixels, then the earliest seen
(created_at, then id). How clusters live in the catalog:
- `images.cluster_id` is the smallest image id of the cluster (stable while a cluster grows:
  new images have larger ids), NULL for an image with no near duplicate (a singleton is its
  own cluster and is canonical).
- `images.is_canonical` is false for the members that leave training and review.
- `images.dedupe_threshold` is the threshold an image was last compared at (catalog.dedupe.run).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.dedupe.search import hamming
from catalog.errors import InvalidInput
from catalog.models import Image, ProductImage

# ---------------------------------------------------------------- components and canonical


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


# ---------------------------------------------------------------- reading clusters


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: int
    size: int
    canonical_id: int
    member_ids: list[int]


@dataclass(frozen=True)
class Cluster:
    """A cluster with its canonical image's file, as training and prediction see it.
    An image without near duplicates is a cluster of its own (cluster_id None)."""

    canonical_id: int
    cluster_id: int | None
    path: str
    sha256: str
    image_ids: tuple[int, ...]


def canonical_clusters(session: Session) -> list[Cluster]:
    """Every cluster of usable stored images, singletons included, in order of first image id."""
    rows = session.execute(
        select(Image.id, Image.path, Image.sha256, Image.cluster_id, Image.is_canonical)
        .where(Image.rejected_reason.is_(None), Image.path.is_not(None))
        .order_by(Image.id)
    ).all()
    groups: dict[tuple[str, int], list[tuple[int, str, str, bool]]] = defaultdict(list)
    for image_id, path, sha, cluster_id, canonical in rows:
        key = ("c", cluster_id) if cluster_id is not None else ("i", image_id)
        groups[key].append((image_id, path or "", sha, bool(canonical)))
    out = []
    for (kind, number), members in groups.items():
        head = next((m for m in members if m[3]), members[0])
        ids = tuple(m[0] for m in members)
        out.append(Cluster(head[0], number if kind == "c" else None, head[1], head[2], ids))
    return out


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
    return -1 if a is None or b is None else int(hamming(a, b))
