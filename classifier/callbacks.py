"""The callbacks of a training run, as small named classes sharing one `RunState`.

Imported only when training starts (Keras is heavy; `slashcat --help` must stay instant).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from classifier import metrics as M
from classifier.train import (
    REFRESH_BATCH,
    Arrays,
    EpochStats,
    Plan,
    TrainEvent,
    TrainProgress,
    batchnorm_refresher,
    predict_arrays,
)


@dataclass
class RunState:
    """What the callbacks of one `fit` share: the epoch running, the best weights, history."""

    requested: int
    epoch: int = 0
    epoch_started: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)
    best: tuple[float, float] | None = None
    best_epoch: int = 0
    weights: list[Any] | None = None
    stop: str = "all epochs"
    refresh: Callable[[np.ndarray], None] | None = None


class CosineSchedule(keras.callbacks.Callback):
    """Linear warm-up then cosine decay over the planned epochs (one-cycle-like)."""

    def __init__(self, plan: Plan, steps: int, peak_lr: float, run: RunState) -> None:
        super().__init__()
        self.plan, self.steps, self.peak_lr, self.run = plan, steps, peak_lr, run

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.model.optimizer.learning_rate.assign(
            cosine_rate(self.run.epoch * self.steps + batch, self.plan.epochs * self.steps,
                        self.steps, self.peak_lr)
        )


def cosine_rate(t: int, total: int, steps: int, peak_lr: float) -> float:
    total = max(1, total)
    warm = max(1, min(total // 20, 3 * steps))
    if t < warm:
        return peak_lr * (t + 1) / warm
    frac = min(1.0, (t - warm) / max(1, total - warm))
    return peak_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))


class KeepBest(keras.callbacks.Callback):
    """Keeps the best weights (val accuracy, then val loss), stops early, reports epochs."""

    def __init__(self, plan: Plan, patience: int, progress: TrainProgress | None,
                 run: RunState, train_set: Arrays, val_set: Arrays) -> None:
        super().__init__()
        self.plan, self.patience, self.progress, self.run = plan, patience, progress, run
        self.train_set, self.val_set = train_set, val_set

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.run.epoch = epoch
        self.run.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        run, plan = self.run, self.plan
        logs = logs if logs is not None else {}
        self._validate(epoch, logs)
        score = (logs["val_accuracy"], -logs["val_loss"])
        best = run.best is None or score > run.best
        if best:
            run.best, run.best_epoch, run.weights = score, epoch + 1, self.model.get_weights()
        for key, value in logs.items():
            run.history.setdefault(key, []).append(float(value))
        plan.update(epoch + 1)
        if epoch + 1 - run.best_epoch >= self.patience:
            run.stop = "early stopping (validation stopped improving)"
            self.model.stop_training = True
        elif plan.out_of_time and plan.epochs < run.requested:
            run.stop = "time budget"
            self.model.stop_training = True
        if self.progress:
            self.progress(TrainEvent("epoch", epoch + 1, plan.epochs, self._stats(epoch, logs,
                                                                                best)))

    def _validate(self, epoch: int, logs: dict[str, Any]) -> None:
        """Validate with BatchNorm statistics of the current weights (see recalibrate_...)."""
        if self.run.refresh is None:
            self.run.refresh = batchnorm_refresher(self.model)
        pick = np.random.default_rng(epoch).permutation(len(self.train_set))[:REFRESH_BATCH]
        self.run.refresh(self.train_set.images[np.sort(pick)].astype(np.float32))
        probs = predict_arrays(self.model, self.val_set.images)
        logs["val_loss"] = M.nll(probs, self.val_set.labels)
        logs["val_accuracy"] = float((probs.argmax(1) == self.val_set.labels).mean())

    def _stats(self, epoch: int, logs: dict[str, Any], best: bool) -> EpochStats:
        lr = float(np.asarray(self.model.optimizer.learning_rate))
        now = time.monotonic()
        return EpochStats(
            epoch + 1, self.plan.epochs, float(logs.get("loss", 0)),
            float(logs.get("accuracy", 0)), float(logs["val_loss"]),
            float(logs["val_accuracy"]), lr, now - self.run.epoch_started,
            now - self.plan.started, best,
        )
