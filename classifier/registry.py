"""The model registry: rows of the `models` table and their .keras files under <home>/models/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from catalog.errors import one_line
from catalog.models import Model, Prediction
from catalog.models_registry import active_model as active_model
from catalog.models_registry import get_model as get_model
from classifier.errors import ModelFileError


@dataclass(frozen=True)
class ModelInfo:
    version: str
    task: str
    architecture: str
    image_size: int
    classes: list[str]
    created_at: datetime
    active: bool
    accuracy: float | None  # on the frozen test split, once evaluated
    macro_f1: float | None
    predictions: int
    path: str
    inputs: str = "image"  # "image" or "image+title"


def next_version(session: Session) -> str:
    numbers = [0]
    for version in session.scalars(select(Model.version)):
        match = re.fullmatch(r"v(\d+)", version)
        if match:
            numbers.append(int(match.group(1)))
    return f"v{max(numbers) + 1}"


def register(session: Session, **fields: Any) -> Model:
    """Add a model whose file is complete; the caller activates it if it should."""
    model = Model(**fields)
    session.add(model)
    session.flush()
    return model


def activate(session: Session, version: str) -> Model:
    """Make this model the default one; exactly one model is active."""
    model = get_model(session, version)
    session.execute(update(Model).where(Model.id != model.id).values(active=False))
    model.active = True
    session.flush()
    return model


def list_models(session: Session) -> list[ModelInfo]:
    counts = dict(
        session.execute(
            select(Prediction.model_id, func.count(Prediction.id)).group_by(Prediction.model_id)
        ).all()
    )
    out = []
    for m in session.scalars(select(Model).order_by(Model.id)):
        test = (m.metrics or {}).get("test", {})
        out.append(
            ModelInfo(
                m.version, m.task, m.architecture, m.image_size, list(m.classes), m.created_at,
                m.active, test.get("accuracy"), test.get("macro_f1"), counts.get(m.id, 0), m.path,
                model_inputs(m),
            )
        )
    return out


def model_inputs(model: Model) -> str:
    """What a model reads: "image", or "image+title" for a title-aware one."""
    listed = ((model.metrics or {}).get("inputs") or {}).get("inputs", ["image"])
    return "+".join(listed)


def model_path(home: Path, model: Model) -> Path:
    return home / model.path


def load_keras(path: Path) -> Any:
    """Load a .keras file; a missing or damaged file gives ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing; retrain or activate another model")
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # zip, h5 and deserialisation errors all mean a damaged file
        raise ModelFileError(f"model file {path} cannot be loaded ({one_line(exc)})") from exc
