"""Training on the pretrained EfficientNet-Lite0: a head on cached embeddings, then fine-tuning.

1. Every image's pooled backbone features come from the embedding store (computed once),
   and so do those of its mirror image for the training images: a second view of each
   product for the head (it raised the validation macro-F1 of the head by 0.005).
2. A small head (one hidden layer, dropout) is trained on them: seconds, even for thousands
   of images.
3. If the time budget leaves room, the last two stages of the backbone and its head
   convolution are fine-tuned with augmentation (BatchNorm frozen: the few images of a small
   catalog would only spoil ImageNet's statistics); the result is kept only if it validates
   better than the head alone. The outcome names which one was kept.

The saved model is one Keras model of stock layers: it loads without the weights package.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classifier import metrics as M
from classifier.architectures import PRETRAINED as LITE0
from classifier.backbones import lite0
from classifier.backbones.weights import SHA256, pretrained_lite0
from classifier.embeddings import EmbeddingStore, embed
from classifier.pipeline import training_stream

FINE_TUNE_FROM = 11  # first MBConv block fine-tuned: blocks 11-15 (the 192 and 320 stages)
FINE_TUNE_EPOCHS_NO_BUDGET = 5  # without --time-budget: a few epochs, not hours on a CPU
# With a budget, still at most this many epochs (the cosine schedule spans them), stopped
# after FINE_TUNE_PATIENCE epochs without a better validation score than the best so far,
# the head's included: the best full-data epoch was the 5th, and a few-label run (20 per
# class) took 9 minutes when a patience of 30 epochs stopped it.
FINE_TUNE_MAX_EPOCHS = 10
FINE_TUNE_PATIENCE = 4
HEAD_EPOCHS = 60  # each of at least HEAD_STEPS steps
HEAD_STEPS = 32
HEAD_BATCH = 64
HEAD_PATIENCE = 8
HEAD_LR = 1e-3
MIRRORED = "mirrored"  # the store of the training images' horizontally flipped embeddings
HEAD_HIDDEN = 512
HEAD_DROPOUT = 0.5
FINE_TUNE_LR = 3e-4


def backbone_key() -> str:
    """Names embeddings: the network and the exact weights they came from."""
    return f"{lite0.NAME}-{SHA256[:12]}"


@dataclass
class Transferred:
    model: Any
    kept: str  # "head" or "fine-tuned"
    head_val_accuracy: float
    fine_val_accuracy: float | None
    embed_seconds: float
    head_seconds: float
    fine_seconds: float
    epochs_run: int = 0  # fine-tuning epochs
    best_epoch: int = 0
    stop_reason: str = "no fine-tuning"
    input_ms_per_batch: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)


def build_head(features: int, n_classes: int) -> Any:
    """Embedding -> one hidden ReLU layer -> dropout -> softmax, as one layer named
    "classes" (predict runs it alone on cached embeddings). On the shared catalog's
    validation split it beat the former dropout + softmax head (top-1 97.76% -> 98.35%, with
    mirror images); 1024 units or dropout on the input too did not do better."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(shape=(features,)),
        layers.Dense(HEAD_HIDDEN, activation="relu"),
        layers.Dropout(HEAD_DROPOUT),
        layers.Dense(n_classes, activation="softmax"),
    ], name="classes")


def build_classifier(backbone: Any, n_classes: int, head: Any = None) -> Any:
    """Image (0..255) -> backbone features -> the head (a new one unless given)."""
    from keras import Input, Model

    head = head if head is not None else build_head(backbone.output_shape[-1], n_classes)
    inputs = Input(shape=backbone.input_shape[1:], name="image")
    return Model(inputs, head(backbone(inputs)), name=LITE0)


def train_head(train_x: np.ndarray, train_y: np.ndarray, weights: np.ndarray,
               val_x: np.ndarray, val_y: np.ndarray, n_classes: int, seed: int = 0) -> Any:
    """The head (build_head) on embeddings; early stopping on validation loss.

    A small catalog makes one step per epoch, and a Keras epoch costs far more than a step
    of this tiny model: each epoch repeats the data to at least HEAD_STEPS steps.
    """
    import keras
    import tensorflow as tf

    head = build_head(train_x.shape[1], n_classes)
    head.compile(optimizer=keras.optimizers.AdamW(HEAD_LR, weight_decay=1e-4),
                 loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                 metrics=["accuracy"], jit_compile=False)
    eye = np.eye(n_classes, dtype=np.float32)
    repeat = max(1, math.ceil(HEAD_STEPS / math.ceil(len(train_x) / HEAD_BATCH)))
    data = (tf.data.Dataset.from_tensor_slices((train_x, eye[train_y], weights))
            .shuffle(len(train_x), seed=seed, reshuffle_each_iteration=True)
            .batch(HEAD_BATCH).repeat(repeat).prefetch(2))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=HEAD_PATIENCE,
                                         restore_best_weights=True)
    head.fit(data, epochs=HEAD_EPOCHS, validation_data=(val_x, eye[val_y]),
             callbacks=[stop], shuffle=False, verbose=0)
    return head


def _score(model: Any, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from classifier.train import predict_arrays

    probs = predict_arrays(model, images)
    return float((probs.argmax(1) == labels).mean()), -M.nll(probs, labels)


def forward_seconds(backbone: Any, images: np.ndarray, batch: int = 16) -> float:
    """Seconds per image of a forward pass (the second of two calls: the first traces)."""
    sample = images[:batch].astype(np.float32)
    backbone.predict_on_batch(sample)
    t0 = time.perf_counter()
    backbone.predict_on_batch(sample)
    return (time.perf_counter() - t0) / max(1, len(sample))


def unfreeze_top(backbone: Any, first_block: int = FINE_TUNE_FROM) -> None:
    """Trainable: blocks >= first_block and the head convolution; BatchNorm stays frozen."""
    import keras

    backbone.trainable = True
    for layer in backbone.layers:
        name = layer.name
        top = name.startswith("head_") or (
            name.startswith("block") and int(name[5:].split("_")[0]) >= first_block
        )
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)


def fit_lite0(config: Any, n_classes: int, train_set: Any, val_set: Any,
              embeddings_dir: Path, budget_s: float | None, progress: Any) -> Transferred:
    """The whole recipe (module doc); train_set/val_set are train.Arrays with shas."""
    import keras

    from classifier.callbacks import CosineSchedule, KeepBest, RunState
    from classifier.train import Plan, TrainEvent, sample_weights, time_input

    started = time.monotonic()
    size = train_set.images.shape[1]
    backbone = pretrained_lite0((size, size, 3))
    store = EmbeddingStore(embeddings_dir, backbone_key(), size)

    def report(done: int, total: int) -> None:
        if progress:
            progress(TrainEvent("embed", done, total))

    both = np.concatenate([train_set.images, val_set.images])
    feats = embed(backbone, both, [*train_set.shas, *val_set.shas], store, report)
    val_x = feats[len(train_set):]
    mirrored = EmbeddingStore(embeddings_dir, f"{backbone_key()}-{MIRRORED}", size)
    flipped = embed(backbone, train_set.images[:, :, ::-1], train_set.shas, mirrored, report)
    train_x = np.concatenate([feats[: len(train_set)], flipped])
    train_y = np.concatenate([train_set.labels, train_set.labels])
    embed_s = time.monotonic() - started

    weights = sample_weights(train_set.labels, n_classes)
    head = train_head(train_x, train_y, np.concatenate([weights, weights]), val_x,
                      val_set.labels, n_classes, config.seed)
    model = build_classifier(backbone, n_classes, head)
    head_s = time.monotonic() - started - embed_s
    head_score = _score(model, val_set.images, val_set.labels)
    out = Transferred(model, "head", head_score[0], None, embed_s, head_s, 0.0)

    # a fine-tuning epoch costs about three forward passes over the training images
    per_epoch = 3.0 * forward_seconds(backbone, train_set.images) * len(train_set)
    remaining = None if budget_s is None else budget_s - (time.monotonic() - started)
    if remaining is not None and remaining < 2 * per_epoch:
        out.stop_reason = "no fine-tuning (time budget spent on the head)"
        return out
    epochs = min(config.epochs, FINE_TUNE_MAX_EPOCHS if remaining is not None
                 else FINE_TUNE_EPOCHS_NO_BUDGET)
    head_weights = model.get_weights()
    unfreeze_top(backbone)
    model.compile(optimizer=keras.optimizers.AdamW(FINE_TUNE_LR, weight_decay=1e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"], jit_compile=False)
    eye = np.eye(n_classes, dtype=np.float32)
    stream = training_stream(train_set.images, eye[train_set.labels], weights,
                             config.batch_size, config.seed, config.augment)
    out.input_ms_per_batch = time_input(stream)
    plan = Plan(epochs, remaining)
    # the head is the score to beat: patience runs out when fine-tuning has not beaten it
    run = RunState(requested=epochs, best=head_score)
    steps = math.ceil(len(train_set) / config.batch_size)
    callbacks = [CosineSchedule(plan, steps, FINE_TUNE_LR, run),
                 KeepBest(plan, min(config.patience, FINE_TUNE_PATIENCE), progress, run,
                          train_set, val_set)]
    fine_start = time.monotonic()
    model.fit(stream, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=0)
    out.fine_seconds = time.monotonic() - fine_start
    out.epochs_run, out.best_epoch, out.stop_reason = (
        len(run.history.get("loss", [])), run.best_epoch, run.stop)
    out.history = run.history
    out.fine_val_accuracy = max(run.history.get("val_accuracy", [0.0]))
    if run.best is not None and run.weights is not None and run.best > head_score:
        model.set_weights(run.weights)  # in the trainable state they were taken in
        out.kept = "fine-tuned"
    else:
        backbone.trainable = True  # as when head_weights were taken
        model.set_weights(head_weights)
    backbone.trainable = False  # saved frozen: retraining starts from the same recipe
    return out
