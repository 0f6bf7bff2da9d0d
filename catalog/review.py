"""The review queue: which predictions a person should look at, and recording their decisions.

Rules (the screen and the batch mode both follow them):
- The queue holds one model's predictions (default: the active model), lowest confidence first,
  ties by the smallest margin between the top two, then by prediction id (a stable order).
- A product with a live (not undone) `human` label has been decided and is never queued again,
  so a new session resumes where the last one stopped.
- `--disagreements` queues instead the products whose current store label the model contradicts
  with confidence >= DISAGREEMENT_CONFIDENCE, and (title-aware models) those whose title alone
  and picture alone point to different categories, each with confidence >=
  INPUTS_DISAGREE_CONFIDENCE; most confident first: likely mislabelled products or wrong photos.
- A decision appends a `human` label carrying the model version it answered, committed at once.
  Undo appends a retraction (history is never rewritten) and puts the item back in front.
- Skip writes nothing: the item moves to the end of this session's queue, and comes back at its
  usual place next session.
- Batch accept (`accept_above`) appends `model-accepted` labels for confident predictions of
  products that have no human or store label yet; running it again adds nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Select, exists, func, insert, select
from sqlalchemy.orm import Session, aliased

from catalog.categories import SEPARATOR, get_category
from catalog.db import Catalog
from catalog.errors import InvalidInput, check_fraction
from catalog.labels import add_label, is_live, outranking, retract
from catalog.models import Category, Image, Label, Model, Prediction, Product, utcnow
from catalog.models_registry import get_model
from catalog.options import DISAGREEMENT_CONFIDENCE, INPUTS_DISAGREE_CONFIDENCE

BATCH_SIZE = 5000


@dataclass(frozen=True)
class QueueFilter:
    below: float | None = None  # only predictions with confidence < below
    category: str | None = None  # only predicted (top-1) category C or its sub-categories
    model: str | None = None  # model version; None means the active model
    limit: int | None = None
    disagreements: bool = False


@dataclass(frozen=True)
class ReviewItem:
    """Everything a review card shows."""

    prediction_id: int
    product_id: int
    model_version: str
    category: str  # the model's top-1
    confidence: float
    margin: float
    top_k: list[tuple[str, float]]
    title: str | None
    url: str
    store_path: str | None
    store_label: str | None
    image_path: Path | None
    duplicates: int
    # a title-aware model's top-1 from the picture alone and from the title alone
    image_guess: tuple[str, float] | None = None
    title_guess: tuple[str, float] | None = None

    def explanation(self) -> str | None:
        """Which input drove the prediction, when the title and the picture disagree:
        "title says Sandal (93%), picture says Flip Flops (71%): the prediction follows the
        title". None when they agree or the model read only one of them."""
        if self.image_guess is None or self.title_guess is None:
            return None
        (image, p_image), (title, p_title) = self.image_guess, self.title_guess
        if image == title:
            return None
        follows = ("the title" if self.category == title else
                   "the picture" if self.category == image else "neither alone")
        return (f"title says {title} ({p_title:.0%}), picture says {image} ({p_image:.0%}): "
                f"the prediction follows {follows}")

    def reasons(self) -> list[str]:
        """Why the item is worth a look beyond its confidence: a store label the model
        contradicts, a title and a picture that disagree."""
        out = []
        if self.store_label is not None and self.store_label != self.category:
            out.append(f"store says {self.store_label}")
        explained = self.explanation()
        if explained:
            out.append(explained)
        return out


@dataclass(frozen=True)
class Decision:
    prediction_id: int
    product_id: int
    label_id: int
    category: str
    accepted: bool  # True if the person took the model's top-1
    seconds: float


@dataclass(frozen=True)
class SessionSummary:
    decisions: int
    accepted: int
    corrected: int
    undone: int
    skipped: int
    seconds_total: float
    seconds_per_decision: float | None
    median_seconds: float | None


@dataclass(frozen=True)
class BatchResult:
    model_version: str
    threshold: float
    dry_run: bool
    per_category: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.per_category.values())


def _live_product_ids(*sources: str) -> Select[Any]:
    """Product ids with a live (not undone) label from one of these sources."""
    return select(Label.product_id).where(is_live(sources))


def _latest_store_labels() -> Select[Any, Any]:
    return (
        select(Label.product_id, func.max(Label.id).label("label_id"))
        .where(is_live(["store"]))
        .group_by(Label.product_id)
    )


def validate_filter(filters: QueueFilter) -> None:
    check_fraction("--below", filters.below)
    if filters.limit is not None and filters.limit < 1:
        raise InvalidInput(f"--limit must be at least 1, got {filters.limit}")
    if filters.disagreements and filters.below is not None:
        raise InvalidInput(
            f"--below does not apply to --disagreements (they show predictions with "
            f"confidence >= {DISAGREEMENT_CONFIDENCE})"
        )


def queue_ids(session: Session, filters: QueueFilter) -> list[int]:
    """The prediction ids to review, in review order."""
    validate_filter(filters)
    model = get_model(session, filters.model)
    query = select(Prediction.id).where(
        Prediction.model_id == model.id,
        Prediction.product_id.not_in(_live_product_ids("human")),
    )
    if filters.category is not None:
        category = get_category(session, filters.category)
        query = query.join(Category, Category.id == Prediction.category_id).where(
            (Category.name == category.name)
            | Category.name.startswith(category.name + SEPARATOR, autoescape=True)
        )
    if filters.disagreements:
        latest = _latest_store_labels().subquery()
        store_label = aliased(Label)
        contradicts_store = (store_label.category_id != Prediction.category_id) & (
            Prediction.confidence >= DISAGREEMENT_CONFIDENCE)
        inputs_disagree = (Prediction.title_category_id != Prediction.image_category_id) & (
            Prediction.title_confidence >= INPUTS_DISAGREE_CONFIDENCE) & (
            Prediction.image_confidence >= INPUTS_DISAGREE_CONFIDENCE)
        query = (
            query.outerjoin(latest, latest.c.product_id == Prediction.product_id)
            .outerjoin(store_label, store_label.id == latest.c.label_id)
            .where(contradicts_store | inputs_disagree)
            .order_by(Prediction.confidence.desc(), Prediction.margin.desc(), Prediction.id)
        )
    else:
        if filters.below is not None:
            query = query.where(Prediction.confidence < filters.below)
        query = query.order_by(Prediction.confidence, Prediction.margin, Prediction.id)
    if filters.limit is not None:
        query = query.limit(filters.limit)
    return list(session.scalars(query))


def load_item(
    session: Session, store_root: Callable[[str], Path], prediction_id: int
) -> ReviewItem:
    """One card's facts: a handful of indexed look-ups."""
    row = session.execute(
        select(Prediction, Product, Model.version, Category.name, Image.path, Image.cluster_id)
        .join(Product, Product.id == Prediction.product_id)
        .join(Model, Model.id == Prediction.model_id)
        .join(Category, Category.id == Prediction.category_id)
        .join(Image, Image.id == Prediction.image_id)
        .where(Prediction.id == prediction_id)
    ).one()
    pred, product, version, category, image_path, cluster_id = row
    duplicates = 0
    if cluster_id is not None:
        duplicates = session.scalar(
            select(func.count(Image.id)).where(
                Image.cluster_id == cluster_id, Image.id != pred.image_id
            )
        ) or 0
    latest = _latest_store_labels().where(Label.product_id == product.id).subquery()
    store_label = session.scalar(
        select(Category.name)
        .join(Label, Label.category_id == Category.id)
        .join(latest, latest.c.label_id == Label.id)
    )
    return ReviewItem(
        prediction_id=pred.id,
        product_id=product.id,
        model_version=version,
        category=category,
        confidence=pred.confidence,
        margin=pred.margin,
        top_k=[(str(name), float(p)) for name, p in pred.top_k],
        title=product.title,
        url=product.url,
        store_path=product.category_path,
        store_label=store_label,
        image_path=store_root(image_path) if image_path else None,
        duplicates=duplicates,
        image_guess=_guess(session, pred.image_category_id, pred.image_confidence),
        title_guess=_guess(session, pred.title_category_id, pred.title_confidence),
    )


def _guess(session: Session, category_id: int | None,
           confidence: float | None) -> tuple[str, float] | None:
    if category_id is None or confidence is None:
        return None
    return session.get_one(Category, category_id).name, confidence


def queue_items(session: Session, store_root: Callable[[str], Path],
                filters: QueueFilter) -> list[ReviewItem]:
    """The queue's items in review order, for a listing without the screen."""
    return [load_item(session, store_root, i) for i in queue_ids(session, filters)]


def decide(session: Session, item: ReviewItem, category: str, author: str | None) -> Label:
    """Record a person's category for the item's product, answering the item's model."""
    chosen = get_category(session, category)
    return add_label(
        session, item.product_id, chosen.id, "human", author=author,
        model_version=item.model_version,
    )


def undo(session: Session, label_id: int, author: str | None) -> Label:
    """Undo a decision by appending a retraction of its label."""
    label = session.get(Label, label_id)
    if label is None:
        raise InvalidInput(f"no label {label_id}")
    if session.scalar(select(Label.id).where(Label.retracts_id == label_id)) is not None:
        raise InvalidInput(f"label {label_id} was undone already")
    return retract(session, label, author)


def accept_above(
    session: Session,
    threshold: float,
    dry_run: bool = False,
    model_version: str | None = None,
    author: str | None = None,
) -> BatchResult:
    """Append `model-accepted` labels for predictions with confidence >= threshold.

    Only products without a live human or store label get one (those outrank it anyway), and a
    product already accepted into the same category is left alone, so a re-run adds nothing.
    Returns how many products per category were (or, with dry_run, would be) accepted.
    """
    check_fraction("--accept-above", threshold)
    model = get_model(session, model_version)
    already = exists().where(
        Label.product_id == Prediction.product_id,
        Label.category_id == Prediction.category_id,
        is_live(["model-accepted"]),
    )
    query = (
        select(Prediction.product_id, Prediction.category_id, Prediction.confidence, Category.name)
        .join(Category, Category.id == Prediction.category_id)
        .where(
            Prediction.model_id == model.id,
            Prediction.confidence >= threshold,
            Prediction.product_id.not_in(_live_product_ids(*outranking("model-accepted"))),
            ~already,
        )
        .order_by(Prediction.id)
    )
    # Streams: the labels written meanwhile belong to products already read.
    rows = session.execute(query.execution_options(yield_per=BATCH_SIZE))
    counts: dict[str, int] = {}
    batch: list[dict[str, object]] = []
    now = utcnow()
    for product_id, category_id, confidence, name in rows:
        counts[name] = counts.get(name, 0) + 1
        if dry_run:
            continue
        batch.append(dict(
            product_id=product_id, category_id=category_id, source="model-accepted",
            author=author, model_version=model.version, confidence=confidence, created_at=now,
        ))
        if len(batch) >= BATCH_SIZE:
            session.execute(insert(Label), batch)
            batch = []
    if batch:
        session.execute(insert(Label), batch)
    return BatchResult(model.version, threshold, dry_run, dict(sorted(counts.items())))


@dataclass
class ReviewSession:
    """One person's sitting at the queue. Each action commits on its own transaction."""

    catalog: Catalog
    filters: QueueFilter = QueueFilter()
    author: str | None = None
    clock: Callable[[], float] = time.monotonic
    pending: list[int] = field(default_factory=list)  # prediction ids; the front is on screen
    decisions: list[Decision] = field(default_factory=list)  # live ones, newest last
    durations: list[float] = field(default_factory=list)  # every decision, undone or not
    undone: int = 0
    skipped: int = 0
    model_version: str = ""

    def __post_init__(self) -> None:
        with self.catalog.session() as session:
            self.model_version = get_model(session, self.filters.model).version
            self.pending = queue_ids(session, self.filters)
        self._cache: dict[int, ReviewItem] = {}
        self.started = self.clock()
        self.shown_at = self.started

    @property
    def position(self) -> int:
        return len(self.decisions) + 1

    @property
    def total(self) -> int:
        return len(self.decisions) + len(self.pending)

    @property
    def done(self) -> bool:
        return not self.pending

    def current(self) -> ReviewItem | None:
        if not self.pending:
            return None
        return self.item(self.pending[0])

    def item(self, prediction_id: int) -> ReviewItem:
        if prediction_id not in self._cache:
            with self.catalog.session() as session:
                self._cache[prediction_id] = load_item(
                    session, self.catalog.store.path, prediction_id
                )
        return self._cache[prediction_id]

    def decide(self, category: str) -> Decision:
        item = self.current()
        if item is None:
            raise InvalidInput("nothing left to review")
        with self.catalog.session() as session:
            label = decide(session, item, category, self.author)
            name = session.get_one(Category, label.category_id).name
        now = self.clock()
        decision = Decision(
            item.prediction_id, item.product_id, label.id, name,
            accepted=name == item.category, seconds=now - self.shown_at,
        )
        self.pending.pop(0)
        self.decisions.append(decision)
        self.durations.append(decision.seconds)
        self.shown_at = now
        return decision

    def accept(self) -> Decision:
        item = self.current()
        if item is None:
            raise InvalidInput("nothing left to review")
        return self.decide(item.category)

    def choose(self, rank: int) -> Decision:
        item = self.current()
        if item is None:
            raise InvalidInput("nothing left to review")
        if not 1 <= rank <= len(item.top_k):
            raise InvalidInput(f"there is no prediction number {rank}")
        return self.decide(item.top_k[rank - 1][0])

    def skip(self) -> None:
        if len(self.pending) > 1:
            self.pending.append(self.pending.pop(0))
        self.skipped += 1
        self.shown_at = self.clock()

    def undo(self) -> Decision | None:
        """Retract this session's last decision and show its item again; None if there is none."""
        if not self.decisions:
            return None
        decision = self.decisions[-1]
        with self.catalog.session() as session:
            undo(session, decision.label_id, self.author)
        self.decisions.pop()
        self.pending.insert(0, decision.prediction_id)
        self.undone += 1
        self.shown_at = self.clock()
        return decision

    def summary(self) -> SessionSummary:
        accepted = sum(d.accepted for d in self.decisions)
        made = len(self.durations)
        return SessionSummary(
            decisions=len(self.decisions),
            accepted=accepted,
            corrected=len(self.decisions) - accepted,
            undone=self.undone,
            skipped=self.skipped,
            seconds_total=self.clock() - self.started,
            seconds_per_decision=sum(self.durations) / made if made else None,
            median_seconds=statistics.median(self.durations) if made else None,
        )


def all_categories(session: Session) -> list[str]:
    """Every category name, for the pick-any-category list."""
    return list(session.scalars(select(Category.name).order_by(Category.name)))
