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
    from classifier.evaluate import evaluate

    assert 0.0 <= evaluate(cat, figures=False).accuracy <= 1.0  # reads the test titles
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


def test_cli_models_classify_title_and_a_newer_format(titled_home: Path, tmp_path: Path,
                                                      cli) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from catalog.models import Model

    settings = copy_home(titled_home, tmp_path / "home2")
    home = settings.home
    r = cli("models", home_dir=home)
    assert r.exit_code == 0 and "image+title" in r.output, r.output
    photo = tmp_path / "photo.png"
    name, colour = next(iter(SHAPES.values()))
    photo.write_bytes(shape_image(name, colour, seed=7))
    r = cli("classify", str(photo), "--title", "عباية سوداء &amp; 👟", "--json", home_dir=home)
    assert r.exit_code == 0, r.output
    assert "ignored" not in r.output

    # a model from a newer slashcat (a title format this one does not know): one clear line
    cat = open_catalog(settings)
    with cat.session() as session:
        row = session.scalars(select(Model)).one()
        metrics = dict(row.metrics)
        metrics["inputs"] = {**metrics["inputs"], "title_format": 99}
        row.metrics = metrics
    cat.close()
    r = cli("classify", str(photo), home_dir=home)
    assert r.exit_code == 1 and "upgrade slashcat" in r.output
    assert "Traceback" not in r.output


def test_an_image_only_model_ignores_a_title_and_says_so_once(
    trained_catalog, cli, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    photos = []
    for i, (name, colour) in enumerate(list(SHAPES.values())[:2]):
        photos.append(tmp_path / f"p{i}.png")
        photos[-1].write_bytes(shape_image(name, colour, seed=i))
    r = cli("classify", *map(str, photos), "--title", "Red Ball",
            home_dir=trained_catalog.settings.home)
    assert r.exit_code == 0, r.output
    assert r.output.count("--title is ignored") == 1


def test_web_predictor_batches_titled_and_untitled_requests(titled_home: Path) -> None:
    from classifier.predict import Classifier
    from cli.web.app import Predictor

    clf = Classifier.load(open_catalog(Settings.load(home=titled_home, env={})))
    predictor = Predictor(clf)
    name, colour = next(iter(SHAPES.values()))
    blob = shape_image(name, colour, seed=5)
    with_title = predictor.classify([blob], 2, "x" * 10_240)[0]
    without = predictor.classify([blob], 2)[0]
    assert len(with_title) == len(without) == 2
    assert predictor.classify([blob], 2, " \t ")[0] == without  # blank: no title


def test_predict_keeps_each_inputs_own_guess(titled_home: Path, tmp_path: Path) -> None:
    """Every titled product's prediction carries the model's top-1 from the picture alone
    and from the title alone; a circle titled as a square makes them disagree."""
    from sqlalchemy import select

    from catalog.models import Category, Image, Prediction, Product
    from catalog.review import load_item
    from classifier.predict import Classifier, predict_catalog

    cat = open_catalog(copy_home(titled_home, tmp_path / "home"))
    with cat.session() as session:
        circle = session.scalars(select(Product).where(
            Product.url == "http://shapes.test/circle/0")).one()
        circle.title = "square block http://shapes.test/square/0"
        untitled = session.scalars(select(Product).where(
            Product.url == "http://shapes.test/cross/0")).one()
        untitled.title = None
        circle_id, untitled_id = circle.id, untitled.id
    predict_catalog(cat, scope="all")
    with cat.session() as session:
        names = dict(session.execute(select(Category.id, Category.name)).all())
        preds = {p.product_id: p for p in session.scalars(select(Prediction))}
        assert len(preds) > 100
        titled = [p for pid, p in preds.items() if pid != untitled_id]
        assert all(p.image_category_id and p.title_category_id for p in titled)
        assert all(0 < (p.image_confidence or 0) <= 1 and 0 < (p.title_confidence or 0) <= 1
                   for p in titled)
        none = preds[untitled_id]  # no title: nothing to compare, no guesses
        assert none.image_category_id is none.title_category_id is None
        mixed = preds[circle_id]
        assert names[mixed.title_category_id] == "Toys > Square > Block"
        assert names[mixed.image_category_id] == "Toys > Round > Ball"
        item = load_item(session, cat.store.path, mixed.id)
        path = session.get_one(Image, mixed.image_id).path
    explained = item.explanation()
    assert explained is not None and explained.startswith("title says Toys > Square > Block")
    # the stored picture guess is the classifier's own image-only answer
    clf = Classifier.load(cat)
    data = cat.store.path(path).read_bytes()
    top = clf.classify_bytes(data, 1)[0]
    assert top[0] == "Toys > Round > Ball"
    assert top[1] == pytest.approx(mixed.image_confidence, abs=1e-3)
