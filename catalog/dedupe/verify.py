"""The colour check: candidate pairs from the (grey) hashes must also have similar colours.

Different products of one silhouette in other colours share their pHash and dHash; a 16x16
colour signature of each image tells them apart (bench/dedupe_quality.py measured the cut).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from catalog.db import Catalog
from catalog.dedupe.hashing import default_workers
from catalog.imaging import WHITE, open_image, read_file
from catalog.models import Image

VERIFY_CUT = 0.97  # colour similarity a candidate pair needs (Settings.dedupe_threshold)
SIGNATURE_SIDE = 16  # a signature is SIGNATURE_SIDE**2 RGB cells of the image padded to square


def colour_signature(data: bytes) -> np.ndarray:
    """A small colour thumbnail to verify candidate pairs: the image padded to a square on
    white (transparency flattened on white), box-averaged to SIGNATURE_SIDE x SIGNATURE_SIDE
    RGB, as float32 of shape (SIGNATURE_SIDE**2, 3). JPEGs are decoded at reduced scale.
    UnreadableImage (a ValueError) if the bytes do not decode."""
    from PIL import Image as PILImage

    rgb = open_image(data, "RGB", (4 * SIGNATURE_SIDE, 4 * SIGNATURE_SIDE))
    side = max(rgb.size)
    square = PILImage.new("RGB", (side, side), WHITE)
    square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    small = square.resize((SIGNATURE_SIDE, SIGNATURE_SIDE), PILImage.Resampling.BOX)
    return np.asarray(small, np.float32).reshape(-1, 3)


def signature_file(path: str | Path) -> np.ndarray | None:
    """`colour_signature` of a file, or None if it cannot be read or decoded."""
    try:
        return colour_signature(read_file(path))
    except (OSError, ValueError):
        return None


BACKGROUND_LUMA = 235.0  # brighter cells are backdrop (products are shot on white)


def normalise_signatures(sigs: np.ndarray) -> np.ndarray:
    """RGB signatures (images, cells, 3) -> (images, cells, 3) features for
    `signature_similarity`: [luma, (R - G) / damp, (B - G) / damp] per cell.

    damp is the cell's luma plus half the image's mean product luma (cells darker than the
    backdrop), at least 16: dark cells carry little colour, so their noise must not count,
    and because the damping scales with the image, a global brightness change (every channel
    times k) leaves the chroma features as they were. A fixed damping (luma + 32) moved them
    enough to lose 1 in 20 brightened copies (bench/dedupe_quality.py).
    """
    x = np.asarray(sigs, np.float32)
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    product = luma < BACKGROUND_LUMA
    mean = (luma * product).sum(axis=-1) / np.maximum(product.sum(axis=-1), 1)
    damp = luma + np.maximum(0.5 * mean, 16.0)[..., None]
    chroma_r = (x[..., 0] - x[..., 1]) / damp
    chroma_b = (x[..., 2] - x[..., 1]) / damp
    return np.stack([luma, chroma_r, chroma_b], axis=-1).astype(np.float32)


def signature_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of normalised signatures (arrays of shape (pairs, cells, 3)), compared on the
    cells that are not white backdrop in either image: the smaller of the luma correlation
    there (blind to a global brightness or contrast change) and 1 - the mean absolute chroma
    difference there. 1 for the same picture; low for different products of one silhouette
    in other colours (chroma) or with other details inside (luma). An image that is all
    backdrop in both agrees fully."""
    w = ((a[..., 0] < BACKGROUND_LUMA) | (b[..., 0] < BACKGROUND_LUMA)).astype(np.float32)
    n = w.sum(axis=1)
    safe = np.maximum(n, 1.0)[:, None]
    la = a[..., 0] - (a[..., 0] * w).sum(axis=1)[:, None] / safe
    lb = b[..., 0] - (b[..., 0] * w).sum(axis=1)[:, None] / safe
    cov = (la * lb * w).sum(axis=1)
    var = np.sqrt((la * la * w).sum(axis=1) * (lb * lb * w).sum(axis=1))
    corr = np.where(var > 1e-3, cov / np.maximum(var, 1e-3), 1.0)
    chroma = (np.abs(a[..., 1:] - b[..., 1:]).sum(axis=2) * w).sum(axis=1) / (2 * safe[:, 0])
    return np.asarray(np.where(n > 0, np.minimum(corr, 1.0 - chroma), 1.0), np.float32)


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
