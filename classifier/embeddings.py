"""Backbone embeddings computed once per image and kept on disk.

A store is one .npz file per (backbone, input size) under <home>/embeddings/: the images'
sha256 and their pooled features as float16 (1280 values, 2.5 kB an image). Training, and
later retraining, look images up by hash and run the backbone only on those not yet seen.
A store that cannot be read is treated as empty and rewritten: it is only a cache.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EMBED_BATCH = 64


class EmbeddingStore:
    """float16 vectors by image sha256, for one backbone at one input size."""

    def __init__(self, folder: Path, backbone: str, size: int) -> None:
        self.path = Path(folder) / f"{backbone}-{size}px.npz"
        self._rows: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            try:
                with np.load(self.path, allow_pickle=False) as npz:
                    keys, vectors = npz["sha256"], npz["vectors"]
                if len(keys) == len(vectors) and vectors.dtype == np.float16:
                    self._rows = dict(zip(keys.tolist(), vectors, strict=True))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
                pass  # absent or damaged: start again
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    def get(self, shas: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """(vectors as float32, or None if any is missing; positions of the missing ones)."""
        rows = self._load()
        missing = [i for i, sha in enumerate(shas) if sha not in rows]
        if missing:
            return None, missing
        if not shas:
            return np.zeros((0, 0), np.float32), []
        return np.stack([rows[sha] for sha in shas]).astype(np.float32), []

    def found(self, shas: Sequence[str]) -> tuple[list[int], np.ndarray]:
        """(positions of the cached ones, their vectors as float32), whatever is missing."""
        rows = self._load()
        positions = [i for i, sha in enumerate(shas) if sha in rows]
        if not positions:
            return [], np.zeros((0, 0), np.float32)
        return positions, np.stack([rows[shas[i]] for i in positions]).astype(np.float32)

    def put(self, shas: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors and rewrite the file atomically (readers never see half of it)."""
        rows = self._load()
        rows.update(zip(shas, np.asarray(vectors, np.float16), strict=True))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        keys = np.array(list(rows), dtype="U64")
        with open(tmp, "wb") as f:
            np.savez(f, sha256=keys, vectors=np.stack(list(rows.values())))
        os.replace(tmp, self.path)


def embed(
    backbone: Any, images: np.ndarray, shas: Sequence[str], store: EmbeddingStore,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Features of `images` (n, size, size, 3 uint8) as float32: from the store, computing
    and storing only the missing ones. Stored values are float16, and so are those returned,
    so a model sees the same numbers whether they were just computed or read back."""
    _, missing = store.get(shas)
    total = len(missing)
    if total:
        done: list[np.ndarray] = []
        for start in range(0, total, EMBED_BATCH):
            chunk = missing[start:start + EMBED_BATCH]
            batch = images[chunk].astype(np.float32)
            done.append(np.asarray(backbone.predict_on_batch(batch), np.float32))
            if progress:
                progress(min(start + EMBED_BATCH, total), total)
        store.put([shas[i] for i in missing], np.concatenate(done))
    elif progress:
        progress(0, 0)
    vectors, still = store.get(shas)
    assert vectors is not None and not still
    return vectors
