"""`slashcat demo`: the whole job on the bundled sample storefront, stage by stage.

It lives in `cli/` because it is the one place allowed to import every package; it still
prints nothing itself: each stage reports through `on_stage` and the command renders.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from catalog.db import Catalog
from catalog.errors import SlashcatError
from catalog.models import Model, Store
from catalog.models_registry import active_model
from classifier.architectures import DEFAULT_ARCH

DEMO_STORE = "sample-store"
DEMO_LEVEL = 2  # "Apparel > Topwear": the sample's 8 classes
ACCEPT_ABOVE = 0.9


class DemoFailed(SlashcatError):
    def __init__(self, stage: str, cause: BaseException, hint: str) -> None:
        super().__init__(f"demo stage '{stage}' failed: {cause}. {hint}")
        self.stage = stage


@dataclass
class StageResult:
    name: str
    summary: str
    seconds: float


@dataclass
class DemoResult:
    home: Path
    stages: list[StageResult] = field(default_factory=list)
    model_version: str = ""
    accuracy: float = 0.0
    macro_f1: float = 0.0
    test_images: int = 0
    uncategorised: int = 0
    uncategorised_correct: int = 0
    accepted: int = 0
    catalog_path: str = ""
    csv_path: Path | None = None
    plots: list[Path] = field(default_factory=list)


OnStage = Callable[[str, str], None]  # (stage, "start" | "done: summary")
OnProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class DemoOptions:
    time_budget_min: float = 2.0
    arch: str = DEFAULT_ARCH
    image_size: int | None = None  # None: the architecture's own (config.TrainConfig.size)
    seed: int = 0
    store_root: Path | None = None  # default: the bundled data/sample-store


HINTS = {
    "storefront": "Is data/sample-store/ intact? Re-clone or run data/sample-store/build.py.",
    "crawl": "Check the home folder is writable; 'slashcat --verbose demo' shows the cause.",
    "dedupe": "Run 'slashcat doctor' to check the image store.",
    "train": "Try a longer --time-budget, or 'slashcat --verbose demo' for details.",
    "evaluate": "Run 'slashcat models' to see the registered model.",
    "predict": "Run 'slashcat models' and 'slashcat doctor'.",
    "accept": "Run 'slashcat review --accept-above 0.9 --dry-run' to see the queue.",
    "export": "Check that the home folder is writable.",
}


class Stages:
    """Runs named stages, timing them and turning any failure into DemoFailed."""

    def __init__(self, result: DemoResult, on_stage: OnStage) -> None:
        self.result = result
        self.on_stage = on_stage

    @contextmanager
    def stage(self, name: str) -> Iterator[StageResult]:
        self.on_stage(name, "start")
        record = StageResult(name, "", 0.0)
        started = time.monotonic()
        try:
            yield record
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise DemoFailed(name, exc, HINTS.get(name, "")) from exc
        record.seconds = time.monotonic() - started
        self.result.stages.append(record)
        self.on_stage(name, "done: " + record.summary)


def run_demo(
    catalog: Catalog,
    options: DemoOptions = DemoOptions(),
    on_stage: OnStage = lambda stage, event: None,
    on_progress: OnProgress = lambda done, total: None,
) -> DemoResult:
    """Crawl the sample shop, dedupe, train, evaluate, predict, accept, export."""
    from scraper.demoshop import SAMPLE_SHOP, DemoShop

    root = options.store_root or SAMPLE_SHOP
    result = DemoResult(home=catalog.settings.home, catalog_path=_catalog_path(catalog))
    stages = Stages(result, on_stage)
    with stages.stage("storefront") as st:
        server = DemoShop(root)
        server.start()
        st.summary = f"serving {len(server.manifest['products'])} products at {server.url}"
    try:
        with stages.stage("crawl") as st:
            st.summary = _crawl(catalog, server.url, on_progress)
    finally:
        server.stop()
    with stages.stage("dedupe") as st:
        st.summary = _dedupe(catalog)
    with stages.stage("train") as st:
        st.summary = _train(catalog, options, result, on_progress)
    with stages.stage("evaluate") as st:
        st.summary = _evaluate(catalog, result)
    with stages.stage("predict") as st:
        st.summary = _predict(catalog, result, root, on_progress)
    with stages.stage("accept") as st:
        st.summary = _accept(catalog, result)
    with stages.stage("export") as st:
        st.summary = _export(catalog, result)
    return result


def _catalog_path(catalog: Catalog) -> str:
    return catalog.engine.url.render_as_string(hide_password=True)


def _crawl(catalog: Catalog, url: str, on_progress: OnProgress) -> str:
    """Crawl once per home: the shop's URL changes with its port, so a second crawl is skipped."""
    from scraper.run import crawl

    with catalog.session() as session:
        if session.scalar(select(Store.id).where(Store.name == DEMO_STORE)) is not None:
            return f"already crawled into this home (store '{DEMO_STORE}')"

    def progress(report: Any) -> None:
        on_progress(report.products, 0)

    report = crawl(catalog, url, store_name=DEMO_STORE, progress=progress)
    return (
        f"{report.pages} pages, products {report.products_new} new, images {report.images_new} "
        f"new / {report.images_duplicate} duplicate / {report.images_rejected} rejected, "
        f"{report.errors} errors"
    )


def _dedupe(catalog: Catalog) -> str:
    from catalog.dedupe import run_dedupe

    summary = run_dedupe(catalog)
    return (
        f"{summary.clusters} clusters of near duplicates, "
        f"{summary.leaving_training} images leave training"
    )


def _train(
    catalog: Catalog, options: DemoOptions, result: DemoResult, on_progress: OnProgress
) -> str:
    """Train once per home; a second run reuses the model, so its numbers are the same."""
    from classifier.train import TrainConfig, train

    with catalog.session() as session:
        existing = active_model(session)
        if existing is not None:
            result.model_version = existing.version
            return f"reusing model {existing.version} ({existing.architecture})"
    config = TrainConfig(
        level=DEMO_LEVEL,
        arch=options.arch,
        image_size=options.image_size,
        time_budget_min=options.time_budget_min,
        seed=options.seed,
        activate=True,
    )

    def progress(event: Any) -> None:
        if event.epoch is not None:
            on_progress(event.epoch.epoch, event.epoch.planned)

    trained = train(catalog, config, progress)
    result.model_version = trained.version
    if trained.curves_png:
        result.plots.append(trained.curves_png)
    return (
        f"model {trained.version} ({trained.architecture}, reads {trained.inputs}, "
        f"{len(trained.classes)} classes, "
        f"{_how(trained)} in {trained.train_seconds:.0f} s, "
        f"val accuracy {trained.val_accuracy:.1%})"
    )


def _how(trained: Any) -> str:
    """What the training did: epochs, or for lite0 which of its two stages it kept."""
    if trained.kept == "head":
        return "head on pretrained embeddings"
    if trained.kept == "fine-tuned":
        return f"head + {trained.epochs_run} fine-tuning epochs"
    return f"{trained.epochs_run} epochs"


def _evaluate(catalog: Catalog, result: DemoResult) -> str:
    from classifier.evaluate import evaluate

    report = evaluate(catalog, result.model_version)
    result.accuracy, result.macro_f1 = report.accuracy, report.macro_f1
    result.test_images = report.test_images
    result.plots += [p for p in (report.confusion_png, report.mistakes_png) if p]
    return (
        f"accuracy {report.accuracy:.1%}, macro-F1 {report.macro_f1:.3f} on "
        f"{report.test_images} frozen test images; ECE {report.ece_after:.3f} after calibration"
    )


def _predict(catalog: Catalog, result: DemoResult, root: Path, on_progress: OnProgress) -> str:
    from classifier.predict import predict_catalog

    report = predict_catalog(catalog, result.model_version, "unlabelled", on_progress)
    result.uncategorised, result.uncategorised_correct = _score_answers(catalog, result, root)
    scored = (
        f"; {result.uncategorised_correct}/{result.uncategorised} match the shop's hidden answers"
        if result.uncategorised
        else ""
    )
    return f"{report.written} predictions written ({report.already} already there){scored}"


def _score_answers(catalog: Catalog, result: DemoResult, root: Path) -> tuple[int, int]:
    """Compare predictions for the uncategorised products with answers.csv (never served)."""
    from catalog.categories import path_at_level
    from catalog.models import Category, Prediction, Product

    answers_file = root / "answers.csv"
    if not answers_file.exists():
        return 0, 0
    with answers_file.open(newline="", encoding="utf-8") as fh:
        answers = {r["id"]: path_at_level(r["category"], DEMO_LEVEL) for r in csv.DictReader(fh)}
    with catalog.session() as session:
        rows = session.execute(
            select(Product.url, Category.name)
            .join(Prediction, Prediction.product_id == Product.id)
            .join(Model, Model.id == Prediction.model_id)
            .join(Category, Category.id == Prediction.category_id)
            .where(Model.version == result.model_version)
        ).all()
    predicted = {}
    for url, name in rows:  # the sample's product URLs end in the product id
        found = re.search(r"(\d+)/?$", url)
        if found and found.group(1) in answers:
            predicted[found.group(1)] = name
    correct = sum(answers[pid] == name for pid, name in predicted.items())
    return len(predicted), correct


def _accept(catalog: Catalog, result: DemoResult) -> str:
    from catalog.review import accept_above

    with catalog.session() as session:
        batch = accept_above(session, ACCEPT_ABOVE, model_version=result.model_version,
                             author="slashcat demo")
    result.accepted = batch.total
    return f"{batch.total} confident predictions (>= {ACCEPT_ABOVE:.0%}) accepted"


def _export(catalog: Catalog, result: DemoResult) -> str:
    from catalog.export import export_to_path

    path = catalog.settings.home / "categories.csv"
    with catalog.session() as session:
        rows = export_to_path(session, path)
    result.csv_path = path
    return f"{rows} rows in {path}"
