"""Looking up trained models' rows: the one place that knows which model is active."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.errors import ModelNotFound
from catalog.models import Model


def active_model(session: Session) -> Model | None:
    """The active model (the newest, should there ever be two), or None."""
    return session.scalar(
        select(Model).where(Model.active.is_(True)).order_by(Model.id.desc()).limit(1)
    )


def get_model(session: Session, version: str | None = None) -> Model:
    """The model with this version, or the active one when version is None."""
    if version is None:
        found = active_model(session)
        if found is None:
            raise ModelNotFound(
                "no active model; train one with 'slashcat train' or pass --model VERSION"
            )
        return found
    found = session.scalar(select(Model).where(Model.version == version))
    if found is None:
        known = ", ".join(session.scalars(select(Model.version).order_by(Model.id))) or "none"
        raise ModelNotFound(f"no model {version!r} (models: {known})")
    return found
