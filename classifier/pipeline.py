"""The input pipeline: tf.data decodes from the image store, pads to a white square, resizes.

tf.data drives the decoding, several batches in parallel and in order; OpenCV decodes each
batch inside one `tf.numpy_function` call (it releases the GIL, and is about 3.5x faster
per image than TensorFlow's own decode ops). JPEGs are decoded at a reduced scale (libjpeg's
DCT scaling) when they are much larger than the training size. Decoded images are kept at
training size (uint8), so each epoch only shuffles, augments (Keras layers, in parallel with
the model) and prefetches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from catalog.imaging import jpeg_frame, open_image, read_file

BACKGROUND = 255  # product photos sit on white
DECODE_BATCH = 128


def _tf() -> Any:
    import tensorflow as tf

    return tf


@cache
def _cv2() -> Any:
    import cv2  # here, not at the top: the CLI must start without OpenCV

    # tf.data already decodes several batches at once: OpenCV's own worker threads would
    # only fight those for the cores (measured on 2 cores: 4,981 images/s with them, 6,370
    # without).
    cv2.setNumThreads(1)
    return cv2


def _jpeg_flag(data: bytes, size: int) -> int:
    """OpenCV's read flag for the largest DCT scale (1/2, 1/4, 1/8) that still leaves at
    least `size` pixels on the long side: most of a large JPEG is never decoded."""
    cv2 = _cv2()
    frame = jpeg_frame(data)
    ratio = max(frame[0], frame[1]) // size if frame else 1
    for scale, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                        (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if ratio >= scale:
            return int(flag)
    return int(cv2.IMREAD_COLOR)


def _to_bgr(img: np.ndarray) -> np.ndarray:
    """What OpenCV decoded (grey, BGR or BGRA, 8 or 16 bits) as uint8 BGR, alpha on white.

    Channels stay in OpenCV's order until the image is small (see prepare_bytes): swapping
    them at full size cost a quarter of the decoding time.
    """
    cv2 = _cv2()
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        return np.asarray(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    if img.shape[2] == 4:
        alpha = img[:, :, 3:].astype(np.float32) / 255.0
        flat = img[:, :, :3].astype(np.float32) * alpha + BACKGROUND * (1.0 - alpha)
        return np.rint(flat).astype(np.uint8)
    return img


def _decode_pillow(data: bytes) -> np.ndarray:
    """The fallback for what OpenCV cannot read; UnreadableImage (a ValueError) if Pillow
    cannot either."""
    rgb = np.asarray(open_image(data, "RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, as OpenCV gives


def decode_bgr(data: bytes, size: int) -> np.ndarray:
    """Bytes -> uint8 BGR (h, w, 3), alpha composited on white; ValueError if undecodable.

    OpenCV (libjpeg-turbo, libpng, libwebp) releases the GIL, so tf.data's parallel calls
    use every core. A 224 px shop photo prepared at 64 px took 183 us here, against 669 us
    through TensorFlow's decode and resize ops. EXIF orientation is ignored, as everywhere
    else in the catalog.
    """
    cv2 = _cv2()
    buf = np.frombuffer(data, np.uint8)
    jpeg = data[:3] == b"\xff\xd8\xff"
    flag = _jpeg_flag(data, size) if jpeg else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(buf, flag | cv2.IMREAD_IGNORE_ORIENTATION) if len(buf) else None
    return _decode_pillow(data) if img is None else _to_bgr(img)


def pad_square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square with the background colour (never stretch), then resize to size x size."""
    cv2 = _cv2()
    h, w = img.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    if h != w:
        img = cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left,
                                 cv2.BORDER_CONSTANT, value=(BACKGROUND,) * 3)
    if side == size:
        return np.ascontiguousarray(img)
    return np.asarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))


def prepare_bytes(data: bytes, size: int) -> np.ndarray:
    """Bytes -> a size x size x 3 uint8 RGB array, exactly as the model was trained on."""
    cv2 = _cv2()
    small = pad_square_resize(decode_bgr(bytes(data), size), size)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))


def prepare_file(path: str | bytes, size: int) -> np.ndarray:
    return prepare_bytes(read_file(path), size)


def _decode_batch(paths: np.ndarray, positions: np.ndarray, size: int) -> tuple[Any, Any]:
    """One batch of files -> (images, positions of those that decoded); bad files are left out."""
    images, kept = [], []
    for path, pos in zip(paths, positions, strict=True):
        try:
            images.append(prepare_file(path, size))
        except (OSError, ValueError):
            continue
        kept.append(pos)
    out = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return out, np.asarray(kept, np.int64)


@dataclass
class Decoded:
    """Images decoded at training size; `index` says which inputs survived."""

    images: np.ndarray  # (n, size, size, 3) uint8
    index: np.ndarray  # positions in the input list
    failed: list[int]  # positions that could not be read or decoded


def file_batches(paths: Sequence[str], size: int, batch: int = DECODE_BATCH) -> Any:
    """A tf.data stream of (images, positions) batches; unreadable files are dropped.

    Each batch is decoded by OpenCV inside one `tf.numpy_function` call, several batches in
    parallel, in order, prefetched so decoding overlaps whatever consumes the stream.
    """
    tf = _tf()
    positions = np.arange(len(paths), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((list(paths), positions)).batch(batch)

    def decode(p: Any, i: Any) -> tuple[Any, Any]:
        images, kept = tf.numpy_function(
            lambda p, i: _decode_batch(p, i, size), [p, i], [tf.uint8, tf.int64],
            stateful=False,
        )
        images.set_shape([None, size, size, 3])
        kept.set_shape([None])
        return images, kept

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.filter(lambda images, kept: tf.size(kept) > 0).prefetch(tf.data.AUTOTUNE)


def decode_files(
    paths: Sequence[str], size: int, progress: Callable[[int, int], None] | None = None
) -> Decoded:
    """Decode every file once (the cache the epochs reuse)."""
    images, index = [], []
    seen = 0
    total = len(paths)
    for batch_images, batch_pos in file_batches(paths, size):
        images.append(batch_images.numpy())
        index.append(batch_pos.numpy())
        seen = int(batch_pos.numpy()[-1]) + 1
        if progress:
            progress(seen, total)
    if progress:
        progress(total, total)
    ok = np.concatenate(index) if index else np.zeros(0, np.int64)
    arr = np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8)
    failed = sorted(set(range(total)) - set(ok.tolist()))
    return Decoded(arr, ok, failed)


def augmenter(seed: int) -> Any:
    """Random flips, small rotations, zooms and shifts (one warp, filled with white), contrast."""
    import keras

    from classifier.augment import RandomAffine

    return keras.Sequential(
        [
            RandomAffine(0.04, (-0.12, 0.08), 0.06, fill=float(BACKGROUND), seed=seed),
            keras.layers.RandomContrast(0.2, seed=seed + 4),
        ],
        name="augment",
    )


def training_stream(
    images: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    batch: int,
    seed: int,
    augment: bool = True,
) -> Any:
    """Shuffled, augmented, prefetched batches of (image, one-hot target, sample weight)."""
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((images, targets, weights))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch)
    if augment:
        layer = augmenter(seed)
        ds = ds.map(
            lambda x, y, w: (layer(tf.cast(x, tf.float32), training=True), y, w),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(lambda x, y, w: (tf.cast(x, tf.float32), y, w))
    return ds.prefetch(tf.data.AUTOTUNE)
