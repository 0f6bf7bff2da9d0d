"""Retrain on the current labels and promote the new model only if it is not worse."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from catalog.db import Catalog
from classifier.backend import load_tensorflow
from classifier.errors import ClassifierError
from classifier.evaluate import EvalReport, evaluate
from classifier.registry import activate, active_model
from classifier.train import TrainConfig, TrainProgress, TrainResult, train


@dataclass
class RetrainReport:
    new: TrainResult
    new_eval: EvalReport
    old_version: str | None
    old_eval: EvalReport | None
    old_note: str  # why the old model was not measured, if it was not
    activated: bool
    reason: str


def config_from_metrics(metrics: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a model was trained with (unknown keys ignored)."""
    saved = dict(metrics.get("config", {}))
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in known}
    if values.get("weights"):
        values["weights"] = Path(values["weights"])
    if "sources" in values:
        values["sources"] = tuple(values["sources"])
    return TrainConfig(**values)


def retrain(
    catalog: Catalog,
    config: TrainConfig | None = None,
    force: bool = False,
    progress: TrainProgress | None = None,
) -> RetrainReport:
    """Train like the active model did (or with `config`), compare on the frozen test split."""
    load_tensorflow()  # once, quietly (see classifier.backend)
    with catalog.session() as session:
        old = active_model(session)
        old_version = old.version if old else None
        old_config = config_from_metrics(old.metrics or {}) if old else TrainConfig()
    config = replace(config or old_config, activate=False)
    result = train(catalog, config, progress)
    new_eval = evaluate(catalog, result.version)
    old_eval, note = None, ""
    if old_version is not None:
        try:
            old_eval = evaluate(catalog, old_version)
        except ClassifierError as exc:  # changed classes, a missing file...
            note = str(exc)
    activated, reason = _decide(new_eval, old_version, old_eval, note, force)
    if activated:
        with catalog.session() as session:
            activate(session, result.version)
    result.activated = activated
    return RetrainReport(result, new_eval, old_version, old_eval, note, activated, reason)


def _decide(
    new: EvalReport, old_version: str | None, old: EvalReport | None, note: str, force: bool
) -> tuple[bool, str]:
    if force:
        return True, "--force"
    if old_version is None:
        return True, "there was no active model"
    if old is None:
        return True, f"the active model {old_version} cannot be measured any more"
    if new.macro_f1 >= old.macro_f1:
        return True, f"macro-F1 {new.macro_f1:.3f} is not worse than {old.macro_f1:.3f}"
    worse = f"macro-F1 {new.macro_f1:.3f} is worse than {old.macro_f1:.3f}"
    return False, f"{worse}; kept {old_version}"
