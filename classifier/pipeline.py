"""The input pipeline: tf.data decodes from the image store, pads to a white square, resizes.

Decoded images are kept at training size (uint8), so each epoch only shuffles, augments
(Keras layers, in parallel with the model) and prefetches. JPEGs are decoded at a reduced
scale (libjpeg's DCT scaling) when they are much larger than the training size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKGROUND = 255  # product photos sit on white
DECODE_BATCH = 128


def _tf() -> Any:
    import tensorflow as tf

    return tf


def decode_rgb(data: Any, size: int) -> Any:
    """Bytes (a scalar string tensor) -> uint8 RGB, alpha composited on white."""
    tf = _tf()
    head = tf.strings.substr(data, 0, 3)
    kind = tf.where(
        tf.equal(head, b"\xff\xd8\xff"), 0, tf.where(tf.equal(head, b"GIF"), 1, 2)
    )

    def jpeg() -> Any:
        shape = tf.io.extract_jpeg_shape(data)
        side = tf.maximum(shape[0], shape[1])
        # The largest DCT scale that still leaves at least `size` pixels on the long side.
        ratio = tf.cast(tf.clip_by_value(side // size, 1, 8), tf.int32)
        index = tf.where(ratio >= 8, 3, tf.where(ratio >= 4, 2, tf.where(ratio >= 2, 1, 0)))
        return tf.switch_case(
            index,
            [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in (1, 2, 4, 8)],
        )

    def gif() -> Any:
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def with_alpha() -> Any:
        rgba = tf.cast(tf.io.decode_image(data, channels=4, expand_animations=False), tf.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + BACKGROUND * (1.0 - alpha)
        return tf.cast(tf.round(rgb), tf.uint8)

    img = tf.switch_case(kind, [jpeg, gif, with_alpha])
    img.set_shape([None, None, 3])
    return img


def pad_square_resize(img: Any, size: int) -> Any:
    """Pad to a square with the background colour (never stretch), then resize to size x size."""
    tf = _tf()
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    side = tf.maximum(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    paddings = [[top, side - h - top], [left, side - w - left], [0, 0]]
    inverted = tf.pad(BACKGROUND - tf.cast(img, tf.int32), paddings)
    square = tf.cast(BACKGROUND - inverted, tf.float32)
    out = tf.image.resize(square, (size, size), method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def prepare_bytes(data: Any, size: int) -> Any:
    """Bytes -> a size x size x 3 uint8 tensor, exactly as the model was trained on."""
    return pad_square_resize(decode_rgb(data, size), size)


def prepare_file(path: Any, size: int) -> Any:
    return prepare_bytes(_tf().io.read_file(path), size)


@dataclass
class Decoded:
    """Images decoded at training size; `index` says which inputs survived."""

    images: np.ndarray  # (n, size, size, 3) uint8
    index: np.ndarray  # positions in the input list
    failed: list[int]  # positions that could not be read or decoded


def file_batches(paths: Sequence[str], size: int, batch: int = DECODE_BATCH) -> Any:
    """A tf.data stream of (images, positions) batches; unreadable files are dropped."""
    tf = _tf()
    positions = np.arange(len(paths), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((list(paths), positions))
    ds = ds.map(
        lambda p, i: (prepare_file(p, size), i),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors()
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


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
    """Random flips, small rotations, zooms and shifts (filled with white), contrast."""
    import keras

    fill = {"fill_mode": "constant", "fill_value": float(BACKGROUND)}
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.04, seed=seed + 1, **fill),
            keras.layers.RandomZoom((-0.12, 0.08), seed=seed + 2, **fill),
            keras.layers.RandomTranslation(0.06, 0.06, seed=seed + 3, **fill),
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


def eval_stream(images: np.ndarray, targets: np.ndarray, batch: int) -> Any:
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch)
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)
