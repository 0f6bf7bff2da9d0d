"""Classifier commands: train, evaluate, predict, classify, retrain, models."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from classifier.config import DEFAULT_TOP_K, TrainConfig
from cli.commands import MODEL
from cli.render import bar_progress, progress_bar
from cli.state import AppState, state, user_errors

models_app = typer.Typer(
    help="List the trained models and choose the active one.\n\nExample: slashcat models",
    invoke_without_command=True,
)

LEVEL = typer.Option(None, "--level", help="Cut category paths to this many parts (2: "
                     "'Apparel > Topwear > Tshirts' -> 'Apparel > Topwear') \\[default: whole].")
# Defaults come from TrainConfig, the library's one home for them.
MIN_PER_CLASS = typer.Option(TrainConfig.min_per_class, "--min-per-class",
                             help="Leave out classes with fewer images.")
OTHER = typer.Option(False, "--other", help="Merge the rare classes into 'Other' instead.")
ARCH = typer.Option(TrainConfig.arch, "--arch", help="lite0 (EfficientNet-Lite0 pretrained on "
                    "ImageNet, the default), compact (a small CNN from scratch), seed (the "
                    "original CNN), efficientnetb0 or mobilenetv3small (these need --weights).")
IMAGE_SIZE = typer.Option(TrainConfig.image_size, "--image-size", help="Side of the square "
                          "training images, px \\[default: 160 for lite0, 64 otherwise].")
EPOCHS = typer.Option(TrainConfig.epochs, "--epochs", help="Most epochs to run.")
BUDGET = typer.Option(None, "--time-budget", help="Stop training in time to finish within "
                      "this many minutes.")
SEED = typer.Option(TrainConfig.seed, "--seed",
                    help="Random seed (same seed, same split and model).")
WEIGHTS = typer.Option(None, "--weights", help="Local weights file of a keras.applications "
                       "backbone (nothing is downloaded).")
BATCH = typer.Option(TrainConfig.batch_size, "--batch-size", help="Images per training step.")
INPUTS = typer.Option(TrainConfig.inputs, "--inputs", help="What the model reads: image, "
                      "image+title (the product title and brand too; lite0 only) or auto "
                      "(titles when at least half the training products have one).")


@contextlib.contextmanager
def train_progress(st: AppState) -> Iterator[Callable[[Any], None]]:
    """Draw TrainEvents: a decode bar, then one line per epoch under an epoch bar."""
    if st.settings.quiet:
        yield lambda event: None
        return
    with bar_progress(st) as bar:
        tasks: dict[str, Any] = {}

        def update(event: Any) -> None:
            if event.stage in ("decode", "embed"):
                label = {"decode": "Decoding images", "embed": "Embedding new images"}
                task = tasks.setdefault(event.stage,
                                        bar.add_task(label[event.stage], total=None))
                bar.update(task, completed=event.done, total=event.total)
            elif event.stage == "epoch" and event.epoch is not None:
                e = event.epoch
                task = tasks.setdefault("epoch", bar.add_task("Training", total=e.planned))
                bar.update(task, completed=e.epoch, total=e.planned)
                star = " [green]★ best[/]" if e.best else ""
                bar.console.print(
                    f"epoch {e.epoch:>3}/{e.planned:<3} loss {e.loss:.3f} acc {e.accuracy:.3f}  "
                    f"val loss {e.val_loss:.3f} val acc {e.val_accuracy:.3f}  "
                    f"lr {e.learning_rate:.2e}  {e.seconds:.1f}s{star}", highlight=False,
                )
            elif event.stage in ("calibrate", "save"):
                words = {"calibrate": "Calibrating on validation…", "save": "Saving model…"}
                bar.console.print(f"[dim]{words[event.stage]}[/]")

        yield update


def _render_train(st: AppState, r: Any) -> None:
    c = st.console
    if r.dropped:
        listing = ", ".join(f"{k} ({v})" for k, v in sorted(r.dropped.items()))
        c.print(f"[yellow]Left out rare classes:[/] {listing}", highlight=False)
    if r.merged:
        listing = ", ".join(f"{k} ({v})" for k, v in sorted(r.merged.items()))
        c.print(f"[yellow]Merged into Other:[/] {listing}", highlight=False)
    if r.skipped:
        c.print(f"[yellow]Skipped {len(r.skipped)} unreadable images[/]")
    sizes = ", ".join(f"{k} {v:,}" for k, v in r.split_sizes.items())
    c.print(
        f"Model [bold]{r.version}[/] ({r.architecture}, {r.image_size}px, reads {r.inputs}, "
        f"{len(r.classes)} classes; {sizes}): {r.epochs_run} epochs in {r.train_seconds:.0f}s "
        f"({r.stop_reason}), best epoch {r.best_epoch}, val accuracy {r.val_accuracy:.3f}"
    )
    if r.kept:
        c.print(f"Kept the {r.kept} model (the head on cached embeddings, or the network "
                "with its top blocks fine-tuned: whichever validated better).")
    c.print(
        f"Calibration: temperature {r.temperature:.2f}, val ECE {r.val_ece_before:.3f} → "
        f"{r.val_ece_after:.3f}. Input pipeline {r.input_ms_per_batch:.1f} ms/batch vs "
        f"training step {r.step_ms_per_batch:.1f} ms/batch."
    )
    if r.curves_png:
        c.print(f"Curves: {r.curves_png}", highlight=False)
    c.print(f"[green]Active model is now {r.version}.[/]" if r.activated
            else "Not activated; 'slashcat models activate' makes it the default.")


@user_errors
def train(
    ctx: typer.Context,
    level: int = LEVEL,
    min_per_class: int = MIN_PER_CLASS,
    other: bool = OTHER,
    arch: str = ARCH,
    image_size: int | None = IMAGE_SIZE,
    epochs: int = EPOCHS,
    time_budget: float = BUDGET,
    seed: int = SEED,
    weights: Path = WEIGHTS,
    batch_size: int = BATCH,
    inputs: str = INPUTS,
    activate: bool = typer.Option(None, "--activate/--no-activate", help="Make it the default "
                                  "model \\[default: only if there is none].", show_default=False),
) -> None:
    """Train a CNN on the catalog's labelled images and register it.

    Example: slashcat train --level 2 --time-budget 10
    """
    from classifier.train import train as run

    st = state(ctx)
    config = TrainConfig(
        level=level, min_per_class=min_per_class, other=other, arch=arch,
        image_size=image_size, epochs=epochs, batch_size=batch_size,
        time_budget_min=time_budget, seed=seed, weights=weights, activate=activate,
        inputs=inputs,
    )
    with train_progress(st) as update:
        result = run(st.catalog(), config, update)
    _render_train(st, result)


def _render_eval(st: AppState, r: Any, per_class: bool = True) -> None:
    c = st.console
    c.print(
        f"Model [bold]{r.version}[/] on the frozen test split of {r.task} "
        f"({r.test_images:,} images): accuracy [bold]{r.accuracy:.3f}[/], "
        f"macro-F1 [bold]{r.macro_f1:.3f}[/]; ECE {r.ece_before:.3f} → {r.ece_after:.3f} "
        f"(temperature {r.temperature:.2f})"
    )
    if r.skipped:
        c.print(f"[yellow]Skipped {len(r.skipped)} unreadable images[/]")
    if per_class:
        table = Table("class", "precision", "recall", "F1", "support")
        for s in r.per_class:
            table.add_row(s.name, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}",
                          str(s.support))
        c.print(table)
    for label, path in (("Confusion matrix", r.confusion_png), ("Mistakes", r.mistakes_png)):
        if path:
            c.print(f"{label}: {path}", highlight=False)


@user_errors
def evaluate(
    ctx: typer.Context,
    version: str = typer.Argument(None, help="Model version \\[default: the active model]."),
) -> None:
    """Score a model on the frozen test split: accuracy, macro-F1, per class, calibration.

    Example: slashcat evaluate v3
    """
    from classifier.evaluate import evaluate as run

    st = state(ctx)
    with progress_bar(st, "Decoding test images") as update:
        report = run(st.catalog(), version, update)
    _render_eval(st, report)


@user_errors
def predict(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Every product, labelled or not."),
    unlabelled: bool = typer.Option(False, "--unlabelled", help="Products without a label "
                                    "(the default)."),
    model: str = MODEL,
    top_k: int = typer.Option(DEFAULT_TOP_K, "--top-k", help="Categories kept per prediction."),
) -> None:
    """Predict categories for the catalog's products and store them with the model version.

    Running it again with the same model does nothing new.
    Example: slashcat predict --unlabelled
    """
    from catalog.errors import InvalidInput
    from classifier.predict import predict_catalog

    st = state(ctx)
    if all_ and unlabelled:
        raise InvalidInput("choose one of --all and --unlabelled")
    scope = "all" if all_ else "unlabelled"
    with progress_bar(st, "Predicting") as update:
        r = predict_catalog(st.catalog(), model, scope, update, top_k=top_k)
    st.console.print(
        f"Model [bold]{r.version}[/], {r.scope} products: {r.products:,}; already predicted "
        f"{r.already:,}; images run {r.images:,} ({r.images_per_second:.0f}/s); predictions "
        f"written {r.written:,}; without a usable image {r.no_image:,}"
    )
    if r.skipped:
        st.console.print(f"[yellow]Skipped {len(r.skipped)} unreadable images[/]")
        for path in r.skipped[:10]:
            st.console.print(f"  {path}", highlight=False)


@user_errors
def classify(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    top_k: int = typer.Option(DEFAULT_TOP_K, "--top-k", help="Categories per image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    model: str = MODEL,
    title: str = typer.Option(None, "--title", help="The product's title, read by a "
                              "title-aware model (the same title for every image given)."),
) -> None:
    """Classify image files that are not in the catalog.

    Example: slashcat classify photo.jpg other.png --top-k 3 --title "Tan Leather Belt"
    """
    from catalog.errors import ImageRejected
    from classifier.predict import Classifier

    st = state(ctx)
    clf = Classifier.load(st.catalog(), model, top_k)
    blobs: list[bytes | None] = []
    for path in images:
        try:
            blobs.append(path.read_bytes())
        except OSError as exc:
            blobs.append(None)
            st.err.print(f"[red]{path}[/]: cannot read ({exc.strerror})", highlight=False)
    good = [b for b in blobs if b is not None]
    if title is not None and not clf.reads_titles:
        st.err.print(f"[yellow]Model {clf.version} was trained without titles; "
                     "--title is ignored.[/]", highlight=False)
    titles = [title] * len(good) if title is not None and clf.reads_titles else None
    answers = iter(clf.classify_many(good, top_k, titles))
    results = [next(answers) if b is not None else ImageRejected("unreadable") for b in blobs]
    failed = sum(isinstance(r, ImageRejected) for r in results)
    if as_json:
        out = [
            {"file": str(p), "error": str(r)} if isinstance(r, ImageRejected)
            else {"file": str(p), "model": clf.version,
                  "top_k": [[name, round(prob, 4)] for name, prob in r]}
            for p, r in zip(images, results, strict=True)
        ]
        typer.echo(json.dumps(out, indent=2))
    else:
        table = Table("file", *[f"#{i + 1}" for i in range(top_k)], title=f"model {clf.version}")
        for p, r in zip(images, results, strict=True):
            if isinstance(r, ImageRejected):
                table.add_row(str(p), f"[red]{r}[/]")
            else:
                table.add_row(str(p), *[f"{name} {prob:.2f}" for name, prob in r])
        st.console.print(table)
    if failed:
        raise typer.Exit(1)


@user_errors
def retrain(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Activate the new model even if worse."),
    time_budget: float = BUDGET,
    epochs: int = typer.Option(None, "--epochs", help="Most epochs \\[default: as the active "
                               "model].", show_default=False),
) -> None:
    """Train on the current labels (reviewed ones included) and compare with the active model.

    The new model becomes active only if its macro-F1 on the frozen test split is not worse.
    Example: slashcat retrain --time-budget 10
    """
    from dataclasses import replace

    from classifier.registry import active_model
    from classifier.retrain import config_from_metrics
    from classifier.retrain import retrain as run

    st = state(ctx)
    cat = st.catalog()
    with cat.session() as session:
        old = active_model(session)
        config = config_from_metrics(old.metrics or {}) if old else TrainConfig()
    changes: dict[str, Any] = {}
    if time_budget is not None:
        changes["time_budget_min"] = time_budget
    if epochs is not None:
        changes["epochs"] = epochs
    with train_progress(st) as update:
        r = run(cat, replace(config, **changes), force, update)
    _render_train(st, r.new)
    table = Table("", r.new.version + " (new)", (r.old_version or "-") + " (active)")
    old = r.old_eval
    for label, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"),
                       ("ECE calibrated", "ece_after"), ("test images", "test_images")):
        new_value = getattr(r.new_eval, key)
        old_value = getattr(old, key) if old else None
        fmt = (lambda v: f"{v:,}") if key == "test_images" else (lambda v: f"{v:.3f}")
        table.add_row(label, fmt(new_value), fmt(old_value) if old_value is not None else "-")
    st.console.print(table)
    if r.old_note:
        st.console.print(f"[yellow]{r.old_note}[/]", highlight=False)
    verdict = "[green]Activated[/]" if r.activated else "[yellow]Not activated[/]"
    st.console.print(f"{verdict} {r.new.version}: {r.reason}.", highlight=False)


def _list_models(st: AppState) -> None:
    from classifier.registry import list_models

    with st.catalog().session() as session:
        rows = list_models(session)
    if not rows:
        st.console.print("No models yet; train one with 'slashcat train'.")
        return
    table = Table("", "version", "task", "arch", "inputs", "size", "classes", "accuracy",
                  "macro-F1", "predictions", "created")
    for m in rows:
        table.add_row(
            "[green]●[/]" if m.active else "", m.version, m.task, m.architecture, m.inputs,
            str(m.image_size), str(len(m.classes)),
            f"{m.accuracy:.3f}" if m.accuracy is not None else "-",
            f"{m.macro_f1:.3f}" if m.macro_f1 is not None else "-",
            f"{m.predictions:,}", m.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    st.console.print(table)


@models_app.callback()
@user_errors
def models_main(ctx: typer.Context) -> None:
    """List the models (the active one marked ●); 'activate' chooses the default.

    Example: slashcat models
    """
    if ctx.invoked_subcommand is None:
        _list_models(state(ctx))


@models_app.command("list")
@user_errors
def models_list(ctx: typer.Context) -> None:
    """List the trained models with their test scores.

    Example: slashcat models list
    """
    _list_models(state(ctx))


@models_app.command("activate")
@user_errors
def models_activate(
    ctx: typer.Context, version: str = typer.Argument(..., help="The model version, e.g. v3.")
) -> None:
    """Make a model the default one for predict, classify and retrain.

    Example: slashcat models activate v3
    """
    from classifier.registry import activate

    st = state(ctx)
    with st.catalog().session() as session:
        activate(session, version)
    st.console.print(f"Active model is now [bold]{version}[/].")


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(predict)
    app.command()(classify)
    app.command()(retrain)
    app.add_typer(models_app, name="models")
