"""Helpers shared by the tests: real image bytes, template homes. The fixture modules beside
this file (classifier, dedupe, review, shop, web) are loaded as pytest plugins by conftest.py."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from catalog.settings import Settings
from scraper.demoshop.faults import bomb_png  # the one decompression-bomb writer

__all__ = ["bomb_png", "copy_home", "jpeg_bytes"]


def jpeg_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 30, 30),
               seed: int = 0, fmt: str = "JPEG") -> bytes:
    """A real image with some texture (so perceptual hashes differ by seed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(color, dtype=np.uint8)
    blocks = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    tex = np.kron(blocks, np.ones((size[1] // 8 + 1, size[0] // 8 + 1, 1), dtype=np.uint8))
    arr = ((base.astype(int) + tex[: size[1], : size[0]]) // 2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def copy_home(src: Path, dst: Path) -> Settings:
    """A private copy of a template home folder (built once per run: copying is cheaper)."""
    shutil.copytree(src, dst)
    return Settings.load(home=dst, env={})
