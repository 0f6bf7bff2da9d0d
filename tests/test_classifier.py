"""The classifier library: dataset and frozen splits, pipeline, training, registry, evaluation,
prediction, classification, and every bad-input case of issue 5."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from catalog.categories import ensure_category
from catalog.db import Catalog
from catalog.errors import ImageRejected
from catalog.models import Image, Model, Prediction, Product, SplitAssignment
from catalog.splits import hashed_split
from classifier.dataset import OTHER, DatasetSpec, build_dataset
from classifier.errors import (
    ClassMismatch,
    ImageSizeMismatch,
    MissingWeights,
    ModelFileError,
    NotEnoughClasses,
    TrainingInterrupted,
)

from helpers.classifier import (
    IMAGE_SIZE,
    PER_CLASS,
    RARE,
    RARE_COUNT,
    SHAPES,
    Trained,
    add_product,
    shape_image,
)

pytestmark = pytest.mark.slow


def _splits(catalog: Catalog, spec: DatasetSpec = DatasetSpec()) -> dict[int, str]:
    with catalog.session() as session:
        data = build_dataset(session, catalog.store, spec)
    return {e.image_id: e.split for e in data.examples}


# ------------------------------------------------------------------ dataset and splits


def test_split_is_frozen_stratified_and_stored(shapes_catalog: Catalog) -> None:
    first = _splits(shapes_catalog)
    assert first == _splits(shapes_catalog)  # drawn once, read back the same
    with shapes_catalog.session() as session:
        data = build_dataset(session, shapes_catalog.store, DatasetSpec())
        stored = session.scalar(select(func.count(SplitAssignment.id)))
    assert stored == len(SHAPES) * PER_CLASS + RARE_COUNT  # rare classes get a split too
    for name in data.classes:
        by_split = [e.split for e in data.examples if e.label == name]
        assert by_split.count("test") == 4 and by_split.count("val") == 4  # 15% of 24


def test_new_images_join_by_cluster_or_stable_hash(shapes_catalog: Catalog) -> None:
    before = _splits(shapes_catalog)
    some_test = next(i for i, s in before.items() if s == "test")
    _, mate = add_product(shapes_catalog, "http://shapes.test/mate", shape_image("circle",
                          (220, 40, 40), 4242), "Toys > Round > Ball")
    _, fresh = add_product(shapes_catalog, "http://shapes.test/fresh", shape_image("circle",
                           (220, 40, 40), 4343), "Toys > Round > Ball")
    with shapes_catalog.session() as session:
        # A later dedupe finds the new image is a better twin of a test image.
        old = session.get_one(Image, some_test)
        old.cluster_id, old.is_canonical = some_test, False
        session.get_one(Image, mate).cluster_id = some_test
        fresh_sha = session.get_one(Image, fresh).sha256
    after = _splits(shapes_catalog)
    assert {k: after[k] for k in before if k != some_test} == {
        k: v for k, v in before.items() if k != some_test
    }  # nothing already drawn moves
    assert after[mate] == "test"  # the cluster stays on the test side
    assert after[fresh] == hashed_split("category", fresh_sha)


def test_hashed_split_is_stable_and_roughly_proportional() -> None:
    picks = [hashed_split("t", f"{i:064x}") for i in range(4000)]
    assert picks == [hashed_split("t", f"{i:064x}") for i in range(4000)]
    assert 0.12 < picks.count("test") / 4000 < 0.18
    assert 0.12 < picks.count("val") / 4000 < 0.18


def test_level_rare_classes_and_other(shapes_catalog: Catalog) -> None:
    with shapes_catalog.session() as session:
        whole = build_dataset(session, shapes_catalog.store, DatasetSpec())
        top = build_dataset(session, shapes_catalog.store, DatasetSpec(level=1))
        merged = build_dataset(session, shapes_catalog.store, DatasetSpec(other=True))
    assert whole.classes == sorted(SHAPES) and whole.dropped == {RARE: RARE_COUNT}
    assert top.classes == ["Home", "Toys"] and not top.dropped  # the star joins Home
    assert OTHER in merged.classes and merged.merged == {RARE: RARE_COUNT}
    assert sum(e.label == OTHER for e in merged.examples) == RARE_COUNT


def test_fewer_than_two_classes_is_refused(catalog: Catalog, shapes_catalog: Catalog) -> None:
    with (
        pytest.raises(NotEnoughClasses, match="no labelled images"),
        catalog.session() as session,
    ):
        build_dataset(session, catalog.store, DatasetSpec())
    with (
        pytest.raises(NotEnoughClasses, match="fewer than 2 classes"),
        shapes_catalog.session() as session,
    ):
        build_dataset(session, shapes_catalog.store, DatasetSpec(min_per_class=1000))


# ------------------------------------------------------------------ pipeline and builders


def test_pipeline_pads_with_white_instead_of_stretching() -> None:
    from PIL import Image as PILImage

    from classifier.pipeline import prepare_bytes

    buf = io.BytesIO()
    PILImage.new("RGB", (64, 32), (200, 0, 0)).save(buf, "PNG")
    out = np.asarray(prepare_bytes(buf.getvalue(), 32))
    assert out.shape == (32, 32, 3)
    assert (out[:6] == 255).all() and (out[-6:] == 255).all()  # white bands, not stretched
    assert abs(int(out[16, 16, 0]) - 200) <= 2 and out[16, 16, 1] <= 2
    clear = io.BytesIO()
    PILImage.new("RGBA", (40, 40), (0, 0, 0, 0)).save(clear, "PNG")
    assert (np.asarray(prepare_bytes(clear.getvalue(), 32)) == 255).all()  # alpha on white


def _encoded(mode: str, fmt: str, colour: object, size: tuple[int, int] = (40, 40),
             **save: object) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new(mode, size, colour).save(buf, fmt, **save)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (lambda: _encoded("RGB", "JPEG", (200, 30, 30), (400, 400), quality=95), (200, 30, 30)),
        (lambda: _encoded("L", "JPEG", 90), (90, 90, 90)),
        (lambda: _encoded("CMYK", "JPEG", (0, 255, 255, 0)), (255, 0, 0)),
        (lambda: _encoded("RGB", "PNG", (20, 40, 220)), (20, 40, 220)),
        (lambda: _encoded("I;16", "PNG", 40000), (156, 156, 156)),
        (lambda: _encoded("RGBA", "PNG", (0, 0, 0, 0)), (255, 255, 255)),
        (lambda: _encoded("RGBA", "WEBP", (0, 200, 0, 255), lossless=True), (0, 200, 0)),
        (lambda: _encoded("P", "GIF", 0), None),
    ],
    ids=["jpeg-reduced", "jpeg-grey", "jpeg-cmyk", "png", "png-16bit", "png-clear",
         "webp-alpha", "gif"],
)
def test_pipeline_decodes_every_format_as_rgb(data, want) -> None:  # type: ignore[no-untyped-def]
    """OpenCV reads BGR, BGRA, grey and 16-bit images; all come out as 8-bit RGB."""
    from classifier.pipeline import prepare_bytes

    out = prepare_bytes(data(), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if want is not None:
        assert np.abs(out[16, 16].astype(int) - want).max() <= 6, out[16, 16]


def test_pipeline_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    from classifier.pipeline import _decode_batch, prepare_bytes

    for junk in (b"", b"<html>not a picture</html>", b"\xff\xd8\xff\xe0garbage"):
        with pytest.raises(ValueError):
            prepare_bytes(junk, 32)
    good = tmp_path / "good.png"
    good.write_bytes(_encoded("RGB", "PNG", (1, 2, 3)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>")
    paths = np.array([str(good), str(bad), str(tmp_path / "missing.jpg"), str(good)], object)
    images, kept = _decode_batch(paths, np.arange(4), 16)
    assert kept.tolist() == [0, 3] and images.shape == (2, 16, 16, 3)


def _dot_batch(n: int, size: int = 32) -> np.ndarray:
    """White images with one black 4x4 square left of centre (so a flip moves it)."""
    x = np.full((n, size, size, 3), 255.0, np.float32)
    x[:, 14:18, 6:10] = 0.0
    return x


def _dark_centre(batch: np.ndarray) -> np.ndarray:
    """(row, col) centre of the dark pixels of each image."""
    out = []
    for img in batch:
        rows, cols = np.nonzero(img[..., 0] < 128)
        out.append((rows.mean(), cols.mean()))
    return np.array(out)


def test_random_affine_flips_shifts_and_fills_with_white() -> None:
    from classifier.augment import RandomAffine

    x = _dot_batch(64)
    mirror = RandomAffine(rotation=0.0, zoom=(0.0, 0.0), shift=0.0, seed=1)(x)
    centres = _dark_centre(np.asarray(mirror))
    assert set(np.round(centres[:, 1], 1)) == {7.5, 23.5}  # untouched or mirrored, exactly
    assert 10 < (centres[:, 1] > 16).sum() < 54  # about half are flipped
    moved = np.asarray(RandomAffine(0.0, (0.0, 0.0), shift=0.1, flip=False, seed=2)(x))
    shift = _dark_centre(moved) - (15.5, 7.5)
    assert np.abs(shift).max() <= 0.1 * 32 + 0.5 and np.abs(shift).std() > 0.5
    white = np.full((8, 32, 32, 3), 255.0, np.float32)
    turned = np.asarray(RandomAffine(0.1, (-0.2, 0.2), 0.1, seed=3)(white))
    assert np.abs(turned - 255).max() < 1e-3  # what comes in from outside is the background
    assert np.array_equal(RandomAffine(seed=4)(x, training=False), x)


def test_random_affine_zoom_and_rotation_keep_the_product_in_place() -> None:
    from classifier.augment import RandomAffine

    x = np.full((4, 32, 32, 3), 255.0, np.float32)
    x[:, 12:20, 12:20] = 0.0  # an 8x8 square in the middle
    bigger = np.asarray(RandomAffine(0.0, (-0.2, -0.2), 0.0, flip=False)(x))
    assert ((bigger[..., 0] < 128).sum(axis=(1, 2)) > 8 * 8 * 1.4).all()  # zoomed in ~1/0.8
    turned = np.asarray(RandomAffine(0.125, (0.0, 0.0), 0.0, flip=False, seed=5)(x))
    assert np.abs(_dark_centre(turned) - 15.5).max() < 0.6  # rotates about the centre
    a = np.asarray(RandomAffine(seed=6)(x))
    assert np.array_equal(a, np.asarray(RandomAffine(seed=6)(x)))  # seeded: reproducible


def test_backbone_needs_local_weights(tmp_path: Path) -> None:
    import keras

    from classifier.architectures import build_model

    with pytest.raises(MissingWeights, match="never downloads"):
        build_model((32, 32, 3), 4, "mobilenetv3small")
    backbone = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    weights = tmp_path / "mnv3.weights.h5"
    backbone.save_weights(weights)
    model = build_model((32, 32, 3), 4, "mobilenetv3small", weights)
    assert model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape == (2, 4)
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelFileError):
        build_model((32, 32, 3), 4, "mobilenetv3small", bad)


def test_seed_architecture_is_the_sequential_cnn() -> None:
    import keras

    from classifier.architectures import build_model

    model = build_model((32, 32, 3), 5, "seed")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert isinstance(model, keras.Sequential)
    assert {"Conv2D", "MaxPooling2D", "BatchNormalization", "Dropout", "Dense"} <= kinds


def test_one_forward_pass_for_any_model_any_batch_and_no_retracing_warning(
        tmp_path: Path) -> None:
    """run_model: a Sequential model loaded from a file (it has no inputs of its own until
    called) and several fresh models, at several batch sizes, give the model's own answers,
    without TensorFlow's "retracing" warning (make demo runs five models one after another)."""
    import logging

    import keras

    from classifier.architectures import build_model
    from classifier.backend import run_model

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        build_model((32, 32, 3), 4, "seed").save(tmp_path / "seed.keras")
        models = [keras.saving.load_model(tmp_path / "seed.keras")]
        models += [keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]) for _ in range(6)]
        rng = np.random.default_rng(0)
        inputs = [rng.random((7, *m.input_shape[1:]), np.float32) for m in models]
        for model, x in zip(models, inputs, strict=True):  # one call each, as in make demo
            assert np.allclose(run_model(model, x), model(x, training=False), atol=1e-5)
        seed, x = models[0], inputs[0]
        for rows in (7, 3, 0):  # the same graph for any batch size
            got = run_model(seed, x[:rows], batch=2)
            assert got.shape == (rows, 4)
            if rows:  # (Keras itself cannot run the seed model on no rows)
                assert np.allclose(got, seed(x[:rows], training=False), atol=1e-5)
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [m for m in seen if "retracing" in m]


# ------------------------------------------------------------------ training and registry


def test_trained_model_is_registered_complete(trained_home: Trained) -> None:
    from catalog.db import open_catalog

    cat = open_catalog(trained_home.settings)
    try:
        with cat.session() as session:
            row = session.scalar(select(Model))
        assert row is not None and row.version == trained_home.version and row.active
        assert row.classes == sorted(SHAPES) and row.image_size == IMAGE_SIZE
        assert row.metrics["dropped"] == {RARE: RARE_COUNT}
        assert 0.25 <= row.temperature <= 10 and len(row.training_fingerprint or "") == 64
        assert row.metrics["train"]["epochs_run"] >= 1
        models_dir = trained_home.settings.models_dir
        assert (trained_home.settings.home / row.path).is_file()
        assert (models_dir / f"{row.version}-curves.png").is_file()
        assert not list(models_dir.glob(".tmp-*"))
    finally:
        cat.close()


def test_interrupted_training_registers_nothing(shapes_catalog: Catalog) -> None:
    from classifier.train import TrainConfig, train

    def stop(event) -> None:  # type: ignore[no-untyped-def]
        if event.stage == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="no model was registered"):
        train(shapes_catalog, TrainConfig(arch="compact", image_size=IMAGE_SIZE, epochs=3), stop)
    with shapes_catalog.session() as session:
        assert session.scalar(select(func.count(Model.id))) == 0
    models_dir = shapes_catalog.settings.models_dir
    assert not models_dir.exists() or not list(models_dir.iterdir())


# ------------------------------------------------------------------ evaluate


def test_evaluate_scores_and_stores_results(trained_catalog: Catalog) -> None:
    from classifier.evaluate import evaluate

    report = evaluate(trained_catalog)
    assert report.test_images == 16 and report.accuracy >= 0.75 and report.macro_f1 >= 0.7
    assert [s.name for s in report.per_class] == sorted(SHAPES)
    assert sum(s.support for s in report.per_class) == 16
    assert report.confusion_png and report.confusion_png.is_file()
    assert report.mistakes_png and report.mistakes_png.is_file()
    with trained_catalog.session() as session:
        stored = session.scalar(select(Model)).metrics["test"]  # type: ignore[union-attr]
    assert stored["accuracy"] == report.accuracy and stored["macro_f1"] == report.macro_f1


def test_evaluate_refuses_a_model_whose_classes_changed(trained_catalog: Catalog) -> None:
    from classifier.evaluate import evaluate

    for i in range(25):  # a new class appears in the catalog
        add_product(trained_catalog, f"http://shapes.test/ring/{i}",
                    shape_image("circle", (0, 0, 0), 7000 + i), "Toys > Ring")
    with pytest.raises(ClassMismatch, match="new in the catalog: Toys > Ring"):
        evaluate(trained_catalog)


# ------------------------------------------------------------------ predict and classify


def test_predict_copies_to_duplicates_and_runs_once(trained_catalog: Catalog) -> None:
    from classifier.predict import predict_catalog

    first = predict_catalog(trained_catalog, scope="unlabelled")
    assert (first.products, first.images, first.written, first.skipped) == (8, 7, 8, [])
    with trained_catalog.session() as session:
        rows = session.scalars(select(Prediction)).all()
        dup_ids = session.scalars(
            select(Product.id).where(Product.url.like("http://shapes.test/dup/%"))
        ).all()
    by_product = {p.product_id: p for p in rows}
    a, b = (by_product[i] for i in dup_ids)
    assert a.image_id == b.image_id and a.top_k == b.top_k  # one run, copied to the duplicate
    for p in rows:
        assert len(p.top_k) == 3 and p.top_k[0][0] in SHAPES
        assert p.confidence == pytest.approx(p.top_k[0][1], abs=1e-4)
        assert p.margin == pytest.approx(p.top_k[0][1] - p.top_k[1][1], abs=1e-4)
    again = predict_catalog(trained_catalog, scope="unlabelled")
    assert (again.already, again.images, again.written) == (8, 0, 0)
    everything = predict_catalog(trained_catalog, scope="all")
    assert everything.written == len(SHAPES) * PER_CLASS + RARE_COUNT


def test_predict_skips_and_counts_unreadable_images(trained_catalog: Catalog) -> None:
    from classifier.predict import predict_catalog

    with trained_catalog.session() as session:
        image = session.scalar(
            select(Image).join(Image.products).join(Product)
            .where(Product.url == "http://shapes.test/new/0")
        )
        assert image is not None and image.path
        trained_catalog.store.path(image.path).write_bytes(b"garbage")
    report = predict_catalog(trained_catalog, scope="unlabelled")
    assert len(report.skipped) == 1 and report.written == 7


def test_classify_bytes_and_bad_input(trained_catalog: Catalog) -> None:
    from classifier.predict import Classifier

    clf = Classifier.load(trained_catalog)
    shape, colour = SHAPES["Home > Cross"]
    top = clf.classify_bytes(shape_image(shape, colour, 31337), top_k=2)
    assert top[0][0] == "Home > Cross" and len(top) == 2 and top[0][1] >= top[1][1]
    with pytest.raises(ImageRejected, match="not-an-image"):
        clf.classify_bytes(b"<html>nope</html>")
    results = clf.classify_many([b"", shape_image(shape, colour, 1)])
    assert isinstance(results[0], ImageRejected) and not isinstance(results[1], ImageRejected)
    with pytest.raises(ImageSizeMismatch, match="takes 32x32"):
        clf.probabilities(np.zeros((1, 48, 48, 3), np.uint8))


def test_classify_many_over_several_chunks_keeps_order(
    trained_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks decode in a worker thread while the model runs: answers stay in input order,
    a chunk of only bad images is fine, and every answer is what one image alone gets."""
    from classifier import predict
    from classifier.predict import Classifier

    monkeypatch.setattr(predict, "PREDICT_BATCH", 2)  # 7 blobs: four chunks
    clf = Classifier.load(trained_catalog)
    good = [shape_image(*SHAPES[name], seed) for seed, name in enumerate(sorted(SHAPES))][:4]
    blobs = [good[0], b"", b"nope", good[1], good[2], b"x", good[3]]
    results = clf.classify_many(blobs, top_k=2)
    assert len(results) == len(blobs)
    for blob, got in zip(blobs, results, strict=True):
        if blob in good:
            assert got == clf.classify_bytes(blob, 2)
        else:
            assert isinstance(got, ImageRejected)


def test_model_entry_with_another_image_size_is_refused(trained_catalog: Catalog) -> None:
    from classifier.predict import Classifier

    with trained_catalog.session() as session:
        session.scalar(select(Model)).image_size = 64  # type: ignore[union-attr]
    with pytest.raises(ImageSizeMismatch, match="does not belong"):
        Classifier.load(trained_catalog)


def test_missing_or_corrupt_model_file(trained_catalog: Catalog) -> None:
    from classifier.predict import Classifier, predict_catalog

    with trained_catalog.session() as session:
        path = trained_catalog.settings.home / session.scalar(select(Model.path))  # type: ignore[operator]
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match="cannot be loaded"):
        Classifier.load(trained_catalog)
    path.unlink()
    with pytest.raises(ModelFileError, match="missing"):
        predict_catalog(trained_catalog)
    with trained_catalog.session() as session:
        assert session.scalar(select(func.count(Prediction.id))) == 0


def test_model_classes_unknown_to_the_catalog(trained_catalog: Catalog) -> None:
    from classifier.predict import predict_catalog

    with trained_catalog.session() as session:
        row = session.scalar(select(Model))
        assert row is not None
        row.classes = ["Nowhere", *row.classes[1:]]
        ensure_category(session, "Somewhere")
    with pytest.raises(ClassMismatch, match="Nowhere"):
        predict_catalog(trained_catalog)


def test_time_budget_plan_ignores_the_first_epochs_overhead(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import classifier.train as train_module

    clock = iter([0.0, 30.0, 32.0, 34.0])  # start; epoch 1 builds graphs (30 s); then 2 s each
    monkeypatch.setattr(train_module.time, "monotonic", lambda: next(clock))
    plan = train_module.Plan(100, budget_s=60.0)
    plan.update(1)
    assert plan.epochs == 2 and not plan.out_of_time
    plan.update(2)
    assert plan.epochs == 16  # 28 s left at 2 s an epoch
    plan.update(3)
    assert plan.epochs == 16 and not plan.out_of_time


def test_temperature_scaling_fixes_overconfidence() -> None:
    from classifier.metrics import calibrated, ece, fit_temperature

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 4000)
    logits = rng.normal(0, 1, (4000, 4))
    logits[np.arange(4000), labels] += 1.0  # right about 60% of the time...
    probs = calibrated(np.exp(logits * 4) / np.exp(logits * 4).sum(1, keepdims=True), 1.0)
    t = fit_temperature(probs, labels)  # ...but the softmax was sharpened 4x
    assert 3.0 < t < 5.0
    assert ece(calibrated(probs, t), labels) < 0.03 < ece(probs, labels)
