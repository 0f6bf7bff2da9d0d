"""Evaluation on the task's frozen test split: scores, calibration, figures; kept with the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catalog.db import Catalog
from catalog.models import Model
from classifier import metrics as M
from classifier.backend import load_tensorflow
from classifier.dataset import Dataset, DatasetSpec, build_dataset
from classifier.errors import ClassMismatch, NotEnoughClasses
from classifier.metrics import ClassScore
from classifier.predict import Classifier
from classifier.registry import get_model

Progress = Callable[[int, int], None]
MISTAKES_SHOWN = 24


@dataclass
class EvalReport:
    version: str
    task: str
    classes: list[str]
    test_images: int
    skipped: list[str]  # unreadable test images
    accuracy: float
    macro_f1: float
    per_class: list[ClassScore]
    confusion: list[list[int]]  # rows: true class, columns: predicted
    temperature: float
    ece_before: float  # on the test split, raw softmax
    ece_after: float  # after temperature scaling (fitted on val at training)
    confusion_png: Path | None
    mistakes_png: Path | None

    def as_metrics(self) -> dict[str, Any]:
        return {
            "test_images": self.test_images,
            "skipped_images": len(self.skipped),
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": [s.as_dict() for s in self.per_class],
            "confusion": self.confusion,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "confusion_png": str(self.confusion_png) if self.confusion_png else None,
            "mistakes_png": str(self.mistakes_png) if self.mistakes_png else None,
        }


def model_dataset(catalog: Catalog, row: Model) -> Dataset:
    """The model's task rebuilt from today's labels; its classes must be the model's."""
    spec = DatasetSpec.from_dict((row.metrics or {}).get("dataset", {}))
    with catalog.session() as session:
        data = build_dataset(session, catalog.store, spec)
    if sorted(data.classes) != sorted(row.classes):
        gone = sorted(set(row.classes) - set(data.classes))
        new = sorted(set(data.classes) - set(row.classes))
        raise ClassMismatch(
            f"model {row.version} knows other classes than the catalog now has "
            f"(missing from the catalog: {', '.join(gone) or 'none'}; "
            f"new in the catalog: {', '.join(new) or 'none'}); retrain with 'slashcat retrain'"
        )
    return data


def evaluate(
    catalog: Catalog,
    version: str | None = None,
    progress: Progress | None = None,
    figures: bool = True,
) -> EvalReport:
    """Score a model (default: the active one) on the frozen test split and store the result."""
    load_tensorflow()  # once, quietly (see classifier.backend)
    from classifier.pipeline import decode_files

    with catalog.session() as session:
        row = get_model(session, version)
    data = model_dataset(catalog, row)
    test = data.split("test")
    if not test:
        raise NotEnoughClasses(f"the {data.task} task has no test images; label more products")
    clf = Classifier.from_row(catalog, row)
    decoded = decode_files([str(e.path) for e in test], row.image_size, progress)
    index = {name: i for i, name in enumerate(clf.classes)}
    labels = np.array([index[test[i].label] for i in decoded.index], dtype=np.int64)
    titles = None
    if clf.reads_titles:  # the test products as predict sees them: with their titles
        from classifier.train import example_titles

        with catalog.session() as session:
            found = example_titles(session, data)
        titles = [found.get(test[i].sha256) for i in decoded.index]
    raw, probs = clf.raw_and_calibrated(decoded.images, titles)
    predicted = probs.argmax(axis=1)
    matrix = M.confusion(labels, predicted, len(clf.classes))
    scores = M.class_scores(matrix, clf.classes)
    report = EvalReport(
        version=row.version, task=data.task, classes=clf.classes, test_images=len(labels),
        skipped=[str(test[i].path) for i in decoded.failed],
        accuracy=float((predicted == labels).mean()) if len(labels) else 0.0,
        macro_f1=M.macro_f1(scores, matrix), per_class=scores, confusion=matrix.tolist(),
        temperature=clf.temperature, ece_before=M.ece(raw, labels),
        ece_after=M.ece(probs, labels), confusion_png=None, mistakes_png=None,
    )
    if figures:
        _figures(catalog, report, matrix, decoded.images, labels, probs)
    _store(catalog, row.id, report)
    return report


def _figures(
    catalog: Catalog, report: EvalReport, matrix: np.ndarray, images: np.ndarray,
    labels: np.ndarray, probs: np.ndarray,
) -> None:
    from classifier.plots import confusion_matrix, contact_sheet

    out = catalog.settings.models_dir
    report.confusion_png = confusion_matrix(
        matrix, report.classes, out / f"{report.version}-confusion.png"
    )
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:MISTAKES_SHOWN]
    captions = [
        f"{report.classes[labels[i]]}\n→ {report.classes[predicted[i]]} {probs[i].max():.2f}"
        for i in worst
    ]
    report.mistakes_png = contact_sheet(
        [images[i] for i in worst], captions, out / f"{report.version}-mistakes.png"
    )


def _store(catalog: Catalog, model_id: int, report: EvalReport) -> None:
    with catalog.session() as session:
        row = session.get_one(Model, model_id)
        metrics = dict(row.metrics or {})
        metrics["test"] = report.as_metrics()
        row.metrics = metrics  # a new dict, so the JSON column is written
