"""64-bit perceptual hashes (pHash and dHash) that agree with imagehash, computed fast.

imagehash is the reference: it decodes the whole image, converts it to grey, resizes it to
32x32 (pHash) or 9x8 (dHash) with Lanczos, then takes a DCT. Here:

- JPEGs are decoded at a reduced scale (libjpeg's DCT scaling, 1/2, 1/4 or 1/8, grey only)
  so that the short side stays >= MIN_DECODED_SIDE: most of the decoding work is skipped.
- The Lanczos resize is a matrix product with Pillow's own filter weights (rounded to whole
  grey levels like Pillow's 8-bit output, which matters on flat white backgrounds), and the
  DCT's 8 lowest rows are a second matrix product, all batched over a stack of images.
- `hash_files` spreads batches of files over a process pool.

The measured distance to `imagehash.phash` is kept in tests/test_hashing.py and
bench/hashing.py. Hashes are unsigned 64-bit here; the catalog stores them as signed BIGINT
(`to_signed`), and bit order is imagehash's (first bit most significant, row-major).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from catalog.errors import one_line
from catalog.imaging import jpeg_frame, open_image, read_file, unreadable

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

HASH_BITS = 64
PHASH_SIZE = 32  # imagehash: hash_size 8 * highfreq_factor 4
# Reduced JPEG decoding keeps the short side at least this long. 32 (the pHash grid) is
# measured to stay within 0.5 bits of imagehash on average (64 halves that but costs 4x the
# resize arithmetic, which then dominates the decode): see bench/hashing.py.
MIN_DECODED_SIDE = 32
DRAFT_SIZE = (MIN_DECODED_SIDE, MIN_DECODED_SIDE)  # for Pillow's Image.draft()
BATCH = 256  # files per process-pool task

Progress = Callable[[int, int], None]  # (done, total)


# ---------------------------------------------------------------- integer conversions


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """(n, 64) booleans -> n unsigned 64-bit hashes, first bit most significant."""
    packed = np.packbits(bits.reshape(len(bits), HASH_BITS).astype(np.uint8), axis=1)
    return packed.view(">u8").reshape(-1).astype(np.uint64)


def to_signed(value: int) -> int:
    """A 64-bit unsigned hash as a signed integer, so it fits a portable BIGINT column."""
    return value - (1 << 64) if value >= 1 << 63 else value


# ---------------------------------------------------------------- the math, batched


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


@cache
def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's Lanczos resampling along one axis as an (out_size, in_size) matrix.

    Mirrors Pillow's precompute_coeffs: the filter widens with the scale when shrinking,
    and each output's weights are normalised to sum to one.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    out = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = np.arange(lo, hi)
        w = _lanczos((x - center + 0.5) / filterscale)
        total = w.sum()
        out[xx, lo:hi] = w / total if total else w
    return out


@cache
def _dct_rows(n: int = PHASH_SIZE, keep: int = 8) -> np.ndarray:
    """The first `keep` rows of an (unscaled) DCT-II matrix; scale does not change a median test."""
    k = np.arange(keep)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def _to_bytes_range(x: np.ndarray) -> np.ndarray:
    """Round and clip in place, as Pillow does when it writes an 8-bit pass."""
    np.rint(x, out=x)
    return np.clip(x, 0.0, 255.0, out=x)


def _resize_both(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stack (n, h, w) resized as Pillow's Lanczos would to 32x32 (pHash) and 9x8 (dHash).

    Pillow resizes horizontally first, then vertically, rounding to 8 bits after each pass;
    the horizontal pass is shared by both sizes (one product to 32 + 9 columns). Stacked
    products run one small BLAS call per image, which OpenBLAS keeps on one thread: one large
    flattened product spawns BLAS threads that fight the other worker processes for the cores
    (measured: 2x slower with a process pool).
    """
    _, h, w = stack.shape
    both = np.concatenate([resize_matrix(w, PHASH_SIZE), resize_matrix(w, 9)])
    rows = _to_bytes_range(stack @ both.T.astype(np.float32))  # (n, h, 32 + 9)
    rh32 = resize_matrix(h, PHASH_SIZE).astype(np.float32)
    rh8 = resize_matrix(h, 8).astype(np.float32)
    small = _to_bytes_range(rh32 @ rows[:, :, :PHASH_SIZE])  # (n, 32, 32)
    tiny = _to_bytes_range(rh8 @ rows[:, :, PHASH_SIZE:])  # (n, 8, 9)
    return small, tiny


def _above_median(values: np.ndarray) -> np.ndarray:
    """values (n, 64) > their row median; np.partition finds the two middle values."""
    mid = HASH_BITS // 2
    part = np.partition(values, (mid - 1, mid), axis=1)
    return values > (part[:, mid - 1 : mid] + part[:, mid : mid + 1]) / 2


def hashes_of_stack(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash and dHash of a stack of same-sized grey images (n, h, w) -> two uint64 arrays."""
    stack = np.asarray(gray, dtype=np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    small, tiny = _resize_both(stack)
    dct = _dct_rows()
    # imagehash: DCT along axis 0 (rows), then axis 1; keep the 8x8 lowest frequencies.
    # Rounded so that coefficients which are exactly equal in imagehash (zeros of a flat
    # image) do not differ by float noise here and flip bits at random.
    low = np.round((dct @ small.astype(np.float64) @ dct.T).reshape(len(stack), HASH_BITS), 6)
    phash = pack_rows(_above_median(low))
    dhash = pack_rows(tiny[:, :, 1:] > tiny[:, :, :-1])
    return phash, dhash


def image_hashes(img: PILImage) -> tuple[int, int]:
    """(pHash, dHash) of a decoded Pillow image (maybe drafted smaller), both unsigned 64-bit."""
    gray = np.asarray(img if img.mode == "L" else img.convert("L"))
    phash, dhash = hashes_of_stack(gray)
    return int(phash[0]), int(dhash[0])


# ---------------------------------------------------------------- decoding only what we need


def reduction(width: int, height: int) -> int:
    """The JPEG scale denominator Pillow's draft(DRAFT_SIZE) would pick (1, 2, 4 or 8)."""
    ratio = min(width // MIN_DECODED_SIDE, height // MIN_DECODED_SIDE)
    return next(d for d in (8, 4, 2, 1) if ratio >= d)


def decode_gray(data: bytes) -> np.ndarray:
    """Grey pixels for hashing: JPEGs at reduced scale via libjpeg-turbo, the rest via Pillow.

    The JPEG path decodes only the luma channel at the scale Pillow's draft(DRAFT_SIZE) picks,
    so it gives the same pixels as the ingest path (catalog.images). UnreadableImage (a
    ValueError) if the bytes do not decode.
    """
    frame = jpeg_frame(data) if data[:3] == b"\xff\xd8\xff" else None
    if frame is not None and frame[2] in (1, 3):  # grey or YCbCr; CMYK goes through Pillow
        width, height, _ = frame
        d = reduction(width, height)
        try:
            gray = _simplejpeg().decode_jpeg(
                data, colorspace="GRAY", min_width=-(-width // d), min_height=-(-height // d)
            )
        except ValueError as exc:  # truncated or corrupt: strict mode refuses warnings too
            raise unreadable(exc) from exc
        return gray[:, :, 0]
    return np.asarray(open_image(data, "L", DRAFT_SIZE))


@cache
def _simplejpeg() -> Any:
    import simplejpeg  # here, not at the top: the CLI imports this module and starts fast

    return simplejpeg


def hash_bytes(data: bytes) -> tuple[int, int]:
    """(pHash, dHash) of encoded image bytes, unsigned; UnreadableImage if they do not decode."""
    phash, dhash = hashes_of_stack(decode_gray(data))
    return int(phash[0]), int(dhash[0])


# ---------------------------------------------------------------- batches over all cores


@dataclass
class BatchHashes:
    """Hashes of many files, in input order. Files that failed have ok False and a reason."""

    phash: np.ndarray  # uint64
    dhash: np.ndarray  # uint64
    ok: np.ndarray  # bool
    errors: dict[int, str] = field(default_factory=dict)  # index -> reason

    def __len__(self) -> int:
        return len(self.ok)


def _empty(n: int) -> BatchHashes:
    return BatchHashes(
        np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, bool), {}
    )


def hash_chunk(paths: Sequence[str | Path]) -> BatchHashes:
    """Hash files in this process: decode each, then one batched product per image size."""
    out = _empty(len(paths))
    by_shape: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
    for i, path in enumerate(paths):
        try:
            gray = decode_gray(read_file(path))
        except (OSError, ValueError) as exc:
            out.errors[i] = one_line(exc)
            continue
        by_shape.setdefault(gray.shape, []).append((i, gray))
    for items in by_shape.values():
        idx = np.array([i for i, _ in items])
        phash, dhash = hashes_of_stack(np.stack([g for _, g in items]))
        out.phash[idx], out.dhash[idx], out.ok[idx] = phash, dhash, True
    return out


def _merge(parts: Iterable[BatchHashes], offsets: Sequence[int], n: int) -> BatchHashes:
    out = _empty(n)
    for start, part in zip(offsets, parts, strict=True):
        end = start + len(part)
        out.phash[start:end], out.dhash[start:end], out.ok[start:end] = (
            part.phash, part.dhash, part.ok
        )
        out.errors.update({start + i: reason for i, reason in part.errors.items()})
    return out


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def hash_files(
    paths: Sequence[str | Path],
    workers: int | None = None,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> BatchHashes:
    """pHash and dHash of image files, using `workers` processes (default: all cores).

    Undecodable or unreadable files get ok False and a reason in `errors`; nothing raises.
    """
    workers = workers or default_workers()
    offsets = list(range(0, len(paths), batch))
    chunks = [list(paths[start : start + batch]) for start in offsets]
    parts: list[BatchHashes] = []
    done = 0

    def collect(results: Iterable[BatchHashes]) -> None:
        nonlocal done
        for part in results:
            parts.append(part)
            done += len(part)
            if progress:
                progress(done, len(paths))

    if workers <= 1 or len(chunks) <= 1:
        collect(map(hash_chunk, chunks))
    else:
        with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
            collect(pool.map(hash_chunk, chunks))
    return _merge(parts, offsets, len(paths))


def signed(hashes: np.ndarray) -> np.ndarray:
    """uint64 hashes as int64 (the catalog's signed BIGINT), bit for bit."""
    return np.asarray(hashes, dtype=np.uint64).view(np.int64)


def unsigned(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    """int64 hashes from the catalog back to uint64, bit for bit."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)
