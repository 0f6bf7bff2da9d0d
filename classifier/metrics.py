"""Scores and calibration in plain numpy: accuracy, per-class P/R/F1, ECE, temperature."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-7


@dataclass(frozen=True)
class ClassScore:
    name: str
    precision: float
    recall: float
    f1: float
    support: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def calibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling on log-probabilities (the same as on logits after a softmax)."""
    z = np.log(np.clip(probs, EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`.

    SciPy's bounded scalar search over log T (the NLL is unimodal in it), bounded so that a
    tiny validation split cannot set an extreme temperature.
    """
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0

    def loss(log_t: float) -> float:
        return nll(calibrated(probs, float(np.exp(log_t))), labels)

    found = minimize_scalar(loss, bounds=(np.log(0.25), np.log(10.0)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: |accuracy - confidence| weighted over confidence bins."""
    if len(labels) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)


def confusion(labels: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, n), dtype=np.int64)
    np.add.at(out, (labels, predicted), 1)
    return out


def class_scores(matrix: np.ndarray, names: list[str]) -> list[ClassScore]:
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1)
    out = []
    for i, name in enumerate(names):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / support[i] if support[i] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out.append(ClassScore(name, float(p), float(r), float(f1), int(support[i])))
    return out


def macro_f1(scores: list[ClassScore], matrix: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions."""
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    f1s = [s.f1 for s, keep in zip(scores, present, strict=True) if keep]
    return float(np.mean(f1s)) if f1s else 0.0
