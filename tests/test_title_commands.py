"""Title-aware models through the library commands: train --inputs, predict, classify --title."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.db import open_catalog
from catalog.errors import InvalidInput
from catalog.settings import Settings
from classifier.config import TrainConfig

from helpers import copy_home
from helpers.classifier import SHAPES, shape_image


@pytest.fixture(scope="module")
def titled_home(shapes_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes catalog with a lite0 title-aware model (tiny: 64 px, few epochs)."""
    from classifier.train import train

    settings = copy_home(shapes_home, tmp_path_factory.mktemp("titled") / "home")
    cat = open_catalog(settings)
    result = train(cat, TrainConfig(arch="lite0", image_size=64, epochs=2, seed=0))
    assert result.inputs == "image+title"  # auto: every shapes product has a title
    return settings.home


def test_auto_inputs_train_a_title_aware_model(titled_home: Path) -> None:
    from classifier.registry import list_models

    cat = open_catalog(Settings.load(home=titled_home, env={}))
    with cat.session() as session:
        (info,) = list_models(session)
    assert info.inputs == "image+title"


def test_predict_and_classify_with_titles(titled_home: Path, tmp_path: Path) -> None:
    from classifier.predict import Classifier, predict_catalog

    cat = open_catalog(copy_home(titled_home, tmp_path / "home"))
    report = predict_catalog(cat, scope="all")
    assert report.written >= report.images > 0
    clf = Classifier.load(cat)
    assert clf.reads_titles
    name, colour = next(iter(SHAPES.items()))[1]
    data = shape_image(name, colour, seed=99)
    for title in (None, "", "   ", "x" * 10_000, "\x00\xff garbage", "&amp; &lt;b&gt;",
                  "👟👟", "عباية سوداء"):
        top = clf.classify_bytes(data, 2, title)
        assert abs(sum(p for _, p in top)) <= 1.0001 and len(top) == 2


def test_image_only_refused_for_other_arch_with_titles() -> None:
    with pytest.raises(InvalidInput):
        TrainConfig(arch="compact", inputs="image+title").check()
    with pytest.raises(InvalidInput):
        TrainConfig(inputs="sound").check()
