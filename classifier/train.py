"""Training: dataset from the catalog -> Keras model -> calibrated, registered .keras file.

The library reports through a callback (`progress(TrainEvent)`); the CLI draws. The model
file is written under a temporary name and renamed, and its row is added only after that,
so an interrupted run leaves neither a half file nor a half row.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catalog.categories import ensure_category
from catalog.db import Catalog
from catalog.locks import writing
from classifier import metrics as M
from classifier.architectures import PRETRAINED, build_model
from classifier.backend import load_tensorflow
from classifier.config import TITLE_SHARE_FOR_AUTO, TrainConfig
from classifier.dataset import Dataset, build_dataset
from classifier.errors import NotEnoughClasses, TrainingInterrupted
from classifier.pipeline import decode_files, training_stream
from classifier.registry import activate, active_model, next_version, register
from classifier.title_model import ModeCalibration
from classifier.title_model import metadata as title_metadata

RESERVE_S = 5.0  # kept back from a time budget for calibration and saving


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    planned: int  # epochs the run expects in total (shrinks under a time budget)
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float
    elapsed: float
    best: bool


@dataclass(frozen=True)
class TrainEvent:
    stage: str  # "decode" | "epoch" | "calibrate" | "save"
    done: int = 0
    total: int = 0
    epoch: EpochStats | None = None


TrainProgress = Callable[[TrainEvent], None]


@dataclass
class TrainResult:
    version: str
    model_id: int
    path: Path
    task: str
    architecture: str
    image_size: int
    classes: list[str]
    split_sizes: dict[str, int]
    dropped: dict[str, int]
    merged: dict[str, int]
    skipped: list[str]  # unreadable images (paths), left out
    epochs_run: int
    best_epoch: int
    stop_reason: str
    train_seconds: float
    total_seconds: float
    val_accuracy: float
    temperature: float
    val_ece_before: float
    val_ece_after: float
    input_ms_per_batch: float  # the input pipeline alone
    step_ms_per_batch: float  # a training step of the model, input included
    curves_png: Path | None
    activated: bool
    history: dict[str, list[float]] = field(default_factory=dict)
    kept: str | None = None  # lite0: "head" (on embeddings) or "fine-tuned"
    decode_seconds: float = 0.0  # reading the images, before any training
    head_seconds: float | None = None  # lite0: embeddings + head, the head-only model's cost
    inputs: str = "image"  # "image" or "image+title"
    title_meta: dict[str, Any] | None = None  # title-aware: inputs, format, calibration


@dataclass
class Arrays:
    images: np.ndarray
    labels: np.ndarray  # class indices
    shas: list[str] = field(default_factory=list)  # the images' sha256 (embedding keys)

    def __len__(self) -> int:
        return len(self.labels)

    def at_most(self, per_class: int, seed: int) -> Arrays:
        """A random subset with at most `per_class` images of each class."""
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(self.labels == c))[:per_class]
            for c in np.unique(self.labels)
        ])) if len(self) else np.zeros(0, np.int64)
        return Arrays(self.images[keep], self.labels[keep], [self.shas[i] for i in keep])


def split_arrays(
    data: Dataset, size: int, progress: TrainProgress | None = None
) -> tuple[dict[str, Arrays], list[str]]:
    """Decode every example once; returns arrays per split and the unreadable paths."""
    paths = [str(e.path) for e in data.examples]

    def report(done: int, total: int) -> None:
        if progress:
            progress(TrainEvent("decode", done, total))

    decoded = decode_files(paths, size, report)
    index = {name: i for i, name in enumerate(data.classes)}
    splits = np.array([data.examples[i].split for i in decoded.index])
    labels = np.array([index[data.examples[i].label] for i in decoded.index], dtype=np.int64)
    shas = np.array([data.examples[i].sha256 for i in decoded.index], dtype=object)
    out = {
        name: Arrays(decoded.images[splits == name], labels[splits == name],
                     shas[splits == name].tolist())
        for name in ("train", "val", "test")
    }
    return out, [paths[i] for i in decoded.failed]


def sample_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Square-root inverse frequency, mean 1: rare classes count more, not overwhelmingly."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    per_class = np.where(counts > 0, np.sqrt(counts.max() / np.maximum(counts, 1)), 0.0)
    w = per_class[labels]
    return (w / w.mean()).astype(np.float32) if len(w) else w.astype(np.float32)


class Plan:
    """How many epochs fit: the requested number, cut down by the time budget as epochs run."""

    def __init__(self, epochs: int, budget_s: float | None) -> None:
        self.requested = epochs
        self.epochs = epochs
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.ends: list[float] = []
        self.done = 0

    def update(self, epochs_done: int) -> None:
        now = time.monotonic()
        self.ends.append(now)
        self.done = epochs_done
        if self.budget_s is None or epochs_done == 0:
            return
        # The first epoch also builds the graphs; later epochs tell the real pace.
        laps = np.diff([self.started, *self.ends])
        per_epoch = float(np.mean(laps[1:]) if len(laps) > 1 else laps[0])
        remaining = max(0.0, self.budget_s - (now - self.started))
        fit = epochs_done + int(remaining // max(per_epoch, 1e-3))
        self.epochs = max(epochs_done, min(self.requested, fit))

    @property
    def out_of_time(self) -> bool:
        return self.done >= self.epochs


def compile_model(model: Any, arch: str, lr: float | None) -> tuple[float, bool]:
    """Adam and plain cross-entropy for the seed; AdamW, label smoothing, a schedule otherwise."""
    import keras

    if arch == "seed":
        rate = lr or 1e-3
        model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=["accuracy"],
            jit_compile=False,
        )
        return rate, False
    rate = lr or (2e-3 if arch == "compact" else 1e-3)
    model.compile(
        optimizer=keras.optimizers.AdamW(rate, weight_decay=5e-4),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=["accuracy"],
        jit_compile=False,  # XLA compiles for long on a CPU and gains little here
    )
    return rate, True


def batchnorm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer, nested models included (public Keras API only)."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batchnorm_layers(layer))
    return found


def recalibrate_batchnorm(model: Any, images: np.ndarray, seed: int, limit: int = 2048) -> None:
    """Recompute BatchNorm statistics from training images with the final weights.

    The moving averages lag behind weights that change fast, which hurts most when a small
    catalog gives few steps; averaging exact batch statistics fixes that ("precise BN").
    """

    norms = batchnorm_layers(model)
    if not norms or len(images) == 0:
        return
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(images))[:limit]
    saved = [layer.momentum for layer in norms]
    try:
        for k, start in enumerate(range(0, len(chosen), 256)):
            for layer in norms:
                layer.momentum = k / (k + 1)  # a running mean over the chunks
            model(images[chosen[start : start + 256]].astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(norms, saved, strict=True):
            layer.momentum = momentum


REFRESH_BATCH = 128


def batchnorm_refresher(model: Any) -> Callable[[np.ndarray], None]:
    """A compiled forward pass that sets BatchNorm statistics to those of one batch.

    Cheap enough for every epoch; `recalibrate_batchnorm` averages more batches at the end.
    """
    import tensorflow as tf

    norms = batchnorm_layers(model)
    saved = [layer.momentum for layer in norms]

    @tf.function(reduce_retracing=True)
    def forward(x: Any) -> None:
        model(x, training=True)

    def refresh(images: np.ndarray) -> None:
        for layer in norms:
            layer.momentum = 0.0  # read when the function is traced, on the first call
        try:
            forward(images)
        finally:
            for layer, momentum in zip(norms, saved, strict=True):
                layer.momentum = momentum

    return refresh


def predict_arrays(model: Any, images: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [
        np.asarray(model.predict_on_batch(images[i : i + batch].astype(np.float32)))
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def time_input(stream: Any, batches: int = 12) -> float:
    """Milliseconds per batch of the input pipeline alone (after a short warm-up)."""
    it = iter(stream)
    for _ in range(2):
        next(it, None)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        if next(it, None) is None:
            break
        n += 1
    return 1000 * (time.perf_counter() - t0) / max(1, n)


@dataclass
class Fitted:
    """A trained (uncalibrated) model and how its training went."""

    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    stop_reason: str
    train_seconds: float
    input_ms: float
    step_ms: float
    kept: str | None = None  # lite0: "head" or "fine-tuned"
    head_seconds: float | None = None  # lite0: embeddings + head


def fit_scratch(config: TrainConfig, n: int, train_set: Arrays, val_set: Arrays,
                budget: float | None, progress: TrainProgress | None) -> Fitted:
    """compact, seed and the keras.applications backbones: train the whole network."""
    from classifier.callbacks import CosineSchedule, KeepBest, RunState

    size = config.size
    model = build_model((size, size, 3), n, config.arch, config.weights)
    peak_lr, schedule = compile_model(model, config.arch, config.learning_rate)
    weights = (
        sample_weights(train_set.labels, n)
        if config.arch != "seed"
        else np.ones(len(train_set), np.float32)
    )
    eye = np.eye(n, dtype=np.float32)
    stream = training_stream(
        train_set.images, eye[train_set.labels], weights, config.batch_size, config.seed,
        config.augment,
    )
    input_ms = time_input(stream)
    plan = Plan(config.epochs, budget)
    steps = math.ceil(len(train_set) / config.batch_size)
    run = RunState(requested=config.epochs)
    callbacks: list[Any] = [KeepBest(plan, config.patience, progress, run, train_set, val_set)]
    if schedule:
        callbacks.insert(0, CosineSchedule(plan, steps, peak_lr, run))
    fit_start = time.monotonic()
    model.fit(stream, epochs=config.epochs, callbacks=callbacks, shuffle=False, verbose=0)
    train_seconds = time.monotonic() - fit_start
    if run.weights is not None:
        model.set_weights(run.weights)
    recalibrate_batchnorm(model, train_set.images, config.seed)
    epochs_run = len(run.history.get("loss", []))
    return Fitted(model, run.history, epochs_run, run.best_epoch, run.stop, train_seconds,
                  input_ms, 1000 * train_seconds / max(1, epochs_run * steps))


def fit_pretrained(catalog: Catalog, config: TrainConfig, n: int, train_set: Arrays,
                   val_set: Arrays, budget: float | None,
                   progress: TrainProgress | None) -> Fitted:
    """lite0: head on cached embeddings, then fine-tuning if it validates better."""
    from classifier.transfer import fit_lite0

    out = fit_lite0(config, n, train_set, val_set, catalog.settings.home / "embeddings",
                    budget, progress)
    steps = math.ceil(len(train_set) / config.batch_size)
    seconds = out.embed_seconds + out.head_seconds + out.fine_seconds
    return Fitted(out.model, out.history, out.epochs_run, out.best_epoch, out.stop_reason,
                  seconds, out.input_ms_per_batch,
                  1000 * out.fine_seconds / max(1, out.epochs_run * steps), out.kept,
                  out.embed_seconds + out.head_seconds)


def example_titles(session: Any, data: Dataset) -> dict[str, str]:
    """image sha256 -> the title the model reads, for the examples whose product has one."""
    from classifier.titles import image_titles

    found = image_titles(session, [e.image_id for e in data.examples])
    return {e.sha256: found[e.image_id] for e in data.examples if e.image_id in found}


def choose_inputs(config: TrainConfig, titles: dict[str, str], data: Dataset) -> str:
    """What the model will read: --inputs, or for auto titles when enough training products
    have one (and the backbone is lite0, the only title-aware recipe)."""
    if config.inputs != "auto":
        return config.inputs
    train_shas = [e.sha256 for e in data.split("train")]
    share = sum(sha in titles for sha in train_shas) / max(1, len(train_shas))
    return ("image+title" if config.arch == PRETRAINED and share >= TITLE_SHARE_FOR_AUTO
            else "image")


def fit_title_aware(catalog: Catalog, config: TrainConfig, n: int, train_set: Arrays,
                    val_set: Arrays, titles: dict[str, str],
                    progress: TrainProgress | None) -> tuple[Fitted, ModeCalibration]:
    """lite0 embeddings (cached) + the title tower (classifier.title_model), fused, trained
    with modality dropout, calibrated per input mode; saved whole, backbone included."""
    from classifier.embeddings import EmbeddingStore, embed
    from classifier.title_model import (
        build_title_model,
        fit_calibration,
        make_inputs,
        train_title_model,
        with_backbone,
    )
    from classifier.transfer import backbone_key, pretrained_lite0

    started = time.monotonic()
    size = config.size
    backbone = pretrained_lite0((size, size, 3))
    store = EmbeddingStore(catalog.settings.home / "embeddings", backbone_key(), size)

    def report(done: int, total: int) -> None:
        if progress:
            progress(TrainEvent("embed", done, total))

    both = np.concatenate([train_set.images, val_set.images])
    feats = embed(backbone, both, [*train_set.shas, *val_set.shas], store, report)
    train_titles = [titles.get(sha) for sha in train_set.shas]
    val_titles = [titles.get(sha) for sha in val_set.shas]
    train_in = make_inputs(feats[:len(train_set)], train_titles)
    val_in = make_inputs(feats[len(train_set):], val_titles)
    embed_s = time.monotonic() - started
    fused = build_title_model(n, train_titles)
    weights = sample_weights(train_set.labels, n)
    fit_start = time.monotonic()
    train_title_model(fused, train_in, train_set.labels, weights, val_in, val_set.labels,
                      seed=config.seed)
    history = {k: [float(x) for x in v] for k, v in fused.history.history.items()} \
        if getattr(fused, "history", None) else {}
    calibration = fit_calibration(fused, val_in, val_set.labels)
    train_s = time.monotonic() - fit_start
    backbone.trainable = False
    model = with_backbone(backbone, fused)
    epochs = len(history.get("loss", []))
    best = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else epochs
    return Fitted(model, history, epochs, best, "early stopping on all input modes",
                  embed_s + train_s, 0.0, 0.0, "title-aware head", embed_s + train_s), \
        calibration


def train(
    catalog: Catalog, config: TrainConfig = TrainConfig(), progress: TrainProgress | None = None
) -> TrainResult:
    """Train a model on the catalog's current labels and register it (see module doc)."""
    load_tensorflow()  # once, quietly (see classifier.backend)
    import keras

    config.check()
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    with catalog.session() as session:
        data = build_dataset(session, catalog.store, config.dataset_spec())
        titles = example_titles(session, data)
    inputs = choose_inputs(config, titles, data)
    arrays, skipped = split_arrays(data, config.size, progress)
    decode_seconds = time.monotonic() - started
    if config.max_per_class is not None:
        for name in ("train", "val"):
            arrays[name] = arrays[name].at_most(config.max_per_class, config.seed)
    train_set, val_set = arrays["train"], arrays["val"]
    if len(set(train_set.labels.tolist())) < 2:
        raise NotEnoughClasses("fewer than 2 classes left in the training split after decoding")
    if len(val_set) == 0:  # a tiny catalog: validate on the training images rather than none
        val_set = train_set
    n = len(data.classes)
    budget = None
    if config.time_budget_min is not None:
        budget = max(1.0, config.time_budget_min * 60 - (time.monotonic() - started)
                     - RESERVE_S)
    calibration = None
    try:
        if inputs == "image+title":
            fitted, calibration = fit_title_aware(catalog, config, n, train_set, val_set,
                                                  titles, progress)
        elif config.arch == PRETRAINED:
            fitted = fit_pretrained(catalog, config, n, train_set, val_set, budget, progress)
        else:
            fitted = fit_scratch(config, n, train_set, val_set, budget, progress)
    except KeyboardInterrupt:
        raise TrainingInterrupted("training interrupted; no model was registered") from None
    model = fitted.model
    if progress:
        progress(TrainEvent("calibrate"))
    if calibration is not None:  # the image-only mode is what predict_arrays shows
        from classifier.title_model import IMAGE, make_inputs, raw_probabilities

        raw = raw_probabilities(model, make_inputs(val_set.images.astype(np.float32), None),
                                batch=64)
        val_probs = calibration.apply(raw, IMAGE)
        temperature = calibration.temperatures[IMAGE]
        val_ece_before = M.ece(raw, val_set.labels)
    else:
        val_probs = predict_arrays(model, val_set.images)
        temperature = M.fit_temperature(val_probs, val_set.labels)
        val_ece_before = M.ece(val_probs, val_set.labels)
    result = TrainResult(
        version="", model_id=0, path=Path(), task=data.task, architecture=config.arch,
        image_size=config.size, classes=list(data.classes),
        split_sizes={k: len(v) for k, v in arrays.items()},
        dropped=data.dropped, merged=data.merged, skipped=skipped,
        epochs_run=fitted.epochs_run, best_epoch=fitted.best_epoch,
        stop_reason=fitted.stop_reason,
        train_seconds=fitted.train_seconds, total_seconds=0.0,
        val_accuracy=float((val_probs.argmax(1) == val_set.labels).mean()),
        temperature=temperature,
        val_ece_before=val_ece_before,
        val_ece_after=M.ece(val_probs if calibration is not None
                            else M.calibrated(val_probs, temperature), val_set.labels),
        input_ms_per_batch=fitted.input_ms, step_ms_per_batch=fitted.step_ms,
        curves_png=None, activated=False, history=fitted.history, kept=fitted.kept,
        decode_seconds=decode_seconds, head_seconds=fitted.head_seconds,
        inputs=inputs, title_meta=None if calibration is None else title_metadata(calibration),
    )
    if progress:
        progress(TrainEvent("save"))
    with writing(catalog.settings.home):  # `doctor --fix` leaves a model being saved alone
        save_and_register(catalog, model, config, data, result)
    result.total_seconds = time.monotonic() - started
    return result


def _metrics(config: TrainConfig, data: Dataset, result: TrainResult) -> dict[str, Any]:
    return {
        "config": config.as_dict(),
        "dataset": config.dataset_spec().as_dict(),
        "class_counts": data.counts,
        "dropped": data.dropped,
        "merged": data.merged,
        "train": {
            "split_sizes": result.split_sizes,
            "skipped_images": len(result.skipped),
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason,
            "kept": result.kept,
            "seconds": round(result.train_seconds, 2),
            "decode_seconds": round(result.decode_seconds, 2),
            "head_seconds": None if result.head_seconds is None else round(result.head_seconds, 2),
            "input_ms_per_batch": round(result.input_ms_per_batch, 2),
            "step_ms_per_batch": round(result.step_ms_per_batch, 2),
            "history": result.history,
        },
        "inputs": result.title_meta or {"inputs": ["image"]},
        "val": {
            "accuracy": result.val_accuracy,
            "ece_before": result.val_ece_before,
            "ece_after": result.val_ece_after,
        },
    }


def save_and_register(
    catalog: Catalog, model: Any, config: TrainConfig, data: Dataset, result: TrainResult
) -> None:
    """Write the .keras file atomically, then add its row (and activate it if asked)."""
    models_dir = catalog.settings.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".tmp-{uuid.uuid4().hex}.keras"
    final: Path | None = None
    try:
        model.save(tmp)
        with catalog.session() as session:
            for name in data.classes:  # "Other" becomes a category predictions can point at
                ensure_category(session, name)
            version = next_version(session)
            final = models_dir / f"{version}.keras"
            os.replace(tmp, final)
            row = register(
                session,
                version=version,
                task=data.task,
                architecture=config.arch,
                image_size=config.size,
                classes=list(data.classes),
                training_fingerprint=data.fingerprint(repr(sorted(config.as_dict().items()))),
                metrics=_metrics(config, data, result),
                temperature=result.temperature,
                path=final.relative_to(catalog.settings.home).as_posix(),
            )
            should = config.activate if config.activate is not None else (
                active_model(session) is None
            )
            if should:
                activate(session, version)
            row_id = row.id
    except BaseException:  # an interrupt too: no half file, no row without its file
        tmp.unlink(missing_ok=True)
        if final is not None:
            final.unlink(missing_ok=True)
        raise
    result.version, result.model_id, result.path = version, row_id, final
    result.activated = bool(should)
    result.curves_png = _curves(result, models_dir)


def _curves(result: TrainResult, models_dir: Path) -> Path | None:
    from classifier.plots import training_curves

    if not result.history.get("loss"):
        return None
    return training_curves(result.history, models_dir / f"{result.version}-curves.png")
