"""The classifier commands end to end: train, models, evaluate, predict, classify, retrain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db import Catalog
from catalog.models import Image, Model

from helpers import copy_home
from helpers.classifier import SHAPES, Trained, shape_image

pytestmark = pytest.mark.slow


def test_train_then_use_the_model_from_the_command_line(
    shapes_catalog: Catalog, cli, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    home = shapes_catalog.settings.home
    with shapes_catalog.session() as session:
        victim = session.scalars(select(Image).where(Image.path.is_not(None))).first()
        assert victim is not None and victim.path
        shapes_catalog.store.path(victim.path).write_bytes(b"\x89PNG\r\n\x1a\n broken")

    r = cli("train", "--arch", "compact", "--epochs", "2", "--image-size", "32", "--batch-size",
            "16", "--other", home_dir=home)
    assert r.exit_code == 0, r.output
    assert "Skipped 1 unreadable images" in r.output
    assert "Merged into Other: Home > Star (5)" in r.output
    assert "Model v1" in r.output and "Active model is now v1" in r.output

    r = cli("models", home_dir=home)
    assert r.exit_code == 0 and "v1" in r.output and "●" in r.output

    r = cli("evaluate", home_dir=home)
    assert r.exit_code == 0, r.output
    assert "macro-F1" in r.output and "Home > Cross" in r.output and "Other" in r.output

    r = cli("predict", home_dir=home)
    assert r.exit_code == 0, r.output
    assert "predictions written 8" in r.output
    r = cli("predict", "--unlabelled", home_dir=home)
    assert "already predicted 8" in r.output and "predictions written 0" in r.output

    shape, colour = SHAPES["Toys > Square > Block"]
    good = tmp_path / "block.png"
    good.write_bytes(shape_image(shape, colour, 555))
    r = cli("classify", str(good), "--json", "--top-k", "2", home_dir=home)
    assert r.exit_code == 0, r.output
    answer = json.loads(r.output)
    assert answer[0]["model"] == "v1" and len(answer[0]["top_k"]) == 2

    r = cli("models", "activate", "v9", home_dir=home)
    assert r.exit_code == 1 and "no model 'v9'" in r.output


def test_classify_reports_bad_files_and_fails(trained_home: Trained, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = copy_home(trained_home.settings.home, tmp_path / "copy").home
    page = tmp_path / "page.jpg"
    page.write_text("<html>not an image</html>")
    shape, colour = SHAPES["Home > Triangle"]
    good = tmp_path / "tri.png"
    good.write_bytes(shape_image(shape, colour, 77))
    r = cli("classify", str(page), str(good), str(tmp_path / "missing.png"), home_dir=home)
    assert r.exit_code == 1
    assert "not-an-image" in r.output and "cannot read" in r.output
    assert "Home > Triangle" in r.output


def test_train_needs_two_classes(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("init").exit_code == 0
    r = cli("train", "--image-size", "32")
    assert r.exit_code == 1
    assert "Error: no labelled images to train on" in r.output
    assert "Traceback" not in r.output


def test_predict_without_a_model(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("init").exit_code == 0
    r = cli("predict")
    assert r.exit_code == 1 and "no active model" in r.output


def test_retrain_compares_side_by_side(trained_home: Trained, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from catalog.db import open_catalog

    settings = copy_home(trained_home.settings.home, tmp_path / "copy")
    r = cli("retrain", "--epochs", "2", home_dir=settings.home)
    assert r.exit_code == 0, r.output
    assert "v2 (new)" in r.output and "v1 (active)" in r.output and "macro-F1" in r.output
    cat = open_catalog(settings)
    try:
        with cat.session() as session:
            rows = {m.version: m for m in session.scalars(select(Model))}
    finally:
        cat.close()
    new, old = rows["v2"].metrics["test"], rows["v1"].metrics["test"]
    assert rows["v2"].active == (new["macro_f1"] >= old["macro_f1"])
    assert ("Activated v2" in r.output) == rows["v2"].active
    assert rows["v2"].metrics["config"]["image_size"] == 32  # trained like the active model
