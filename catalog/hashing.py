"""64-bit perceptual hashes compatible with imagehash's phash and dhash.

imagehash is the reference; these work on a Pillow image that may have been decoded at a
reduced scale (JPEG draft mode), which is where most of the speed comes from.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

HASH_BITS = 64
PHASH_SIZE = 32  # imagehash: hash_size 8 * highfreq_factor 4
DRAFT_SIZE = (PHASH_SIZE * 2, PHASH_SIZE * 2)


@cache
def _dct_rows(n: int = PHASH_SIZE, keep: int = 8) -> np.ndarray:
    """The first `keep` rows of an (unscaled) DCT-II matrix; scale does not change a median test."""
    k = np.arange(keep)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def bits_to_int(bits: np.ndarray) -> int:
    """Pack booleans row-major, first bit most significant (imagehash's hex order)."""
    return int.from_bytes(np.packbits(bits.reshape(-1).astype(np.uint8)).tobytes(), "big")


def to_signed(value: int) -> int:
    """A 64-bit unsigned hash as a signed integer, so it fits a portable BIGINT column."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def phash_gray32(gray: np.ndarray) -> int:
    """pHash of a 32x32 grey image given as a float array."""
    c = _dct_rows()
    low = c @ gray @ c.T
    return bits_to_int(low > np.median(low))


def dhash_gray9x8(gray: np.ndarray) -> int:
    return bits_to_int(gray[:, 1:] > gray[:, :-1])


def image_hashes(img: PILImage) -> tuple[int, int]:
    """(pHash, dHash) of a decoded Pillow image, both unsigned 64-bit."""
    from PIL import Image

    gray = img.convert("L")
    p = np.asarray(gray.resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS), dtype=float)
    d = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS), dtype=float)
    return phash_gray32(p), dhash_gray9x8(d)


def hamming(a: int, b: int) -> int:
    return (to_unsigned(a) ^ to_unsigned(b)).bit_count()
