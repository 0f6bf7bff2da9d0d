"""The title-aware model on a toy task: small synthetic embeddings and titles, seconds to train."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier import title_model as T

FEATURES = 8
CLASSES = ["Shirts", "Shoes", "Belts"]
WORDS = ["shirt", "shoes", "belt"]
SMALL = {"char_tokens": 400, "word_tokens": 100, "text_units": 16}


def toy(n: int, seed: int) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """The picture only tells Shirts from the rest; the title names every class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    images = rng.normal(size=(n, FEATURES)).astype(np.float32)
    images += np.where(labels == 0, 1.5, -1.5)[:, None]
    brands = ["Nike", "Puma", "Lee", "Arrow"]
    titles: list[str | None] = [
        f"{brands[rng.integers(4)]} Men {WORDS[c]} {rng.integers(100)}" for c in labels
    ]
    return images, titles, labels


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    from classifier.backend import load_tensorflow

    load_tensorflow()
    images, titles, labels = toy(420, seed=1)
    titles[:20] = [None] * 20  # some training products have no title
    x = T.make_inputs(images, titles)
    tr, va, te = np.arange(300), np.arange(300, 360), np.arange(360, 420)
    model = T.build_title_model(len(CLASSES), [titles[i] for i in tr], features=FEATURES,
                                **SMALL)
    T.train_title_model(model, T.take(x, tr), labels[tr], np.ones(len(tr), np.float32),
                        T.take(x, va), labels[va], seed=0, epochs=10)
    cal = T.fit_calibration(model, T.take(x, va), labels[va])
    return {"model": model, "cal": cal, "x": T.take(x, te), "y": labels[te],
            "images": images[te], "titles": [titles[i] for i in te]}


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def test_the_title_decides_and_each_mode_predicts(trained: dict[str, Any]) -> None:
    model, cal, x, y = trained["model"], trained["cal"], trained["x"], trained["y"]
    scores = T.score_modes(model, cal, x, y, CLASSES)
    assert scores[T.BOTH].top1 >= 0.95
    assert scores[T.TITLE].top1 >= 0.95
    # the picture alone can only find Shirts: about 2/3, well above chance (1/3), below titles
    assert 0.5 <= scores[T.IMAGE].top1 < 0.9
    for mode in T.MODES:
        probs = T.predict(model, cal, x, mode)
        assert probs.shape == (len(y), len(CLASSES))
        assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
        assert 0.0 <= scores[mode].ece <= 1.0


def test_each_product_is_predicted_in_its_own_mode(trained: dict[str, Any]) -> None:
    model, cal, y = trained["model"], trained["cal"], trained["y"]
    titles = list(trained["titles"])
    titles[:10] = [None] * 10
    x = T.make_inputs(trained["images"], titles)
    assert list(T.modes_of(x)[:11]) == [T.IMAGE] * 10 + [T.BOTH]
    mixed = T.predict(model, cal, x)
    assert np.allclose(mixed[:10], T.predict(model, cal, T.take(x, np.arange(10)), T.IMAGE))
    assert np.allclose(mixed[10:], T.predict(model, cal, T.take(x, np.arange(10, len(y))),
                                             T.BOTH), atol=1e-5)
    title_only = T.make_inputs(None, trained["titles"], features=FEATURES)
    assert set(T.modes_of(title_only)) == {T.TITLE}
    assert accuracy(T.predict(model, cal, title_only), y) >= 0.95


def test_temperatures_per_mode(trained: dict[str, Any]) -> None:
    cal: T.ModeCalibration = trained["cal"]
    assert set(cal.temperatures) == set(T.MODES) == set(cal.val_ece)
    t = cal.temperatures
    # the picture alone is unsure where titles are sure: the modes need their own temperature
    assert abs(t[T.IMAGE] - t[T.BOTH]) > 0.05
    back = T.ModeCalibration.from_json(json.loads(json.dumps(T.metadata(cal)["calibration"])))
    assert back.temperatures == cal.temperatures
    probs = np.array([[0.6, 0.3, 0.1]] * 3, np.float32)
    out = back.apply(probs, np.array([T.BOTH, T.IMAGE, ""]))
    assert np.allclose(out[2], probs[2])  # neither input: left as it is
    assert not np.allclose(out[0], out[1])


def test_calibration_fixes_each_mode_its_own_way() -> None:
    """Synthetic: one mode overconfident, the other underconfident; the fitted temperatures
    go opposite ways and each mode's ECE falls."""
    from classifier import metrics as M

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 2000)
    right = rng.random(2000) < 0.7
    guess = np.where(right, labels, (labels + 1) % 3)
    sharp = np.full((2000, 3), 0.01, np.float32)
    sharp[np.arange(2000), guess] = 0.98  # says 98%, right 70% of the time
    mostly = np.where(rng.random(2000) < 0.95, labels, (labels + 1) % 3)
    soft = np.full((2000, 3), 0.2, np.float32)
    soft[np.arange(2000), mostly] = 0.6  # says 60%, right 95% of the time
    t_sharp, t_soft = M.fit_temperature(sharp, labels), M.fit_temperature(soft, labels)
    assert t_sharp > 1.5 and t_soft < 0.7
    cal = T.ModeCalibration({T.BOTH: t_soft, T.IMAGE: t_sharp, T.TITLE: 1.0})
    assert M.ece(cal.apply(sharp, T.IMAGE), labels) < M.ece(sharp, labels) / 2
    assert M.ece(cal.apply(soft, T.BOTH), labels) < M.ece(soft, labels) / 2


def test_round_trip_is_self_contained(trained: dict[str, Any], tmp_path: Path) -> None:
    model, x = trained["model"], trained["x"]
    path = tmp_path / "title.keras"
    model.save(path)
    probs = T.raw_probabilities(model, x)
    np.save(tmp_path / "image.npy", x["image"])
    (tmp_path / "titles.json").write_text(json.dumps([str(t) for t in x["title"]]))
    # a fresh interpreter that imports keras only: nothing of slashcat is needed to load it
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, keras
        d = {str(tmp_path)!r}
        m = keras.saving.load_model(d + "/title.keras")
        assert not any(k.startswith(("classifier", "catalog")) for k in sys.modules)
        image = np.load(d + "/image.npy")
        titles = np.array(json.load(open(d + "/titles.json")), dtype=object)
        n = len(image)
        p = m.predict_on_batch({{"image": image, "title": titles,
                                "has_image": np.ones((n, 1), "float32"),
                                "has_title": np.ones((n, 1), "float32")}})
        np.save(d + "/loaded.npy", np.asarray(p))
        print(json.dumps([m.get_layer("title_chars").vocabulary_size(),
                          m.get_layer("title_words").get_vocabulary()]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    n_chars, words = json.loads(done.stdout.strip().splitlines()[-1])
    assert n_chars == model.get_layer("title_chars").vocabulary_size() > 100
    assert words == model.get_layer("title_words").get_vocabulary()
    assert {"shirt", "shoes", "belt", "nike"} <= set(words)
    assert np.allclose(np.load(tmp_path / "loaded.npy"), probs, atol=1e-5)


def test_bad_titles_are_read_or_ignored(trained: dict[str, Any]) -> None:
    model, cal = trained["model"], trained["cal"]
    bad: list[str | bytes | None] = [
        None, "", "   \n\t", "belt " * 2500, bytes(range(256)) * 8, "Tom &amp; Co &lt;b&gt;Belt",
        "👟 shoes 🔥", "حزام جلد بني", "\x00\x01\x02", "🔥🔥",
    ]
    images = np.zeros((len(bad), FEATURES), np.float32)
    x = T.make_inputs(images, bad)
    assert x["has_title"][:, 0].tolist() == [0, 0, 0, 1, 0, 1, 1, 1, 0, 0]
    assert max(len(t) for t in x["title"]) <= 300
    probs = T.predict(model, cal, x)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert probs[3].argmax() == CLASSES.index("Belts")
    assert probs[5].argmax() == CLASSES.index("Belts")
    assert probs[6].argmax() == CLASSES.index("Shoes")


def test_modality_dropout_never_hides_the_only_input() -> None:
    from classifier.backend import load_tensorflow

    load_tensorflow()
    n = 400
    images = np.ones((n, FEATURES), np.float32)
    titles: list[str | None] = ["shoes"] * (n // 2) + [None] * (n // 2)
    x = T.make_inputs(images, titles)
    x["has_image"][: n // 4] = 0.0  # the first quarter: title only
    onehot = np.eye(3, dtype=np.float32)[np.zeros(n, int)]
    stream = T.training_stream(x, onehot, np.ones(n, np.float32), 50, 5, 0, T.MODE_SHARES)
    img, txt = [], []
    for batch, _y, _w in stream:
        img.append(batch["has_image"].numpy()[:, 0])
        txt.append(batch["has_title"].numpy()[:, 0])
    has_img, has_txt = np.concatenate(img), np.concatenate(txt)
    assert len(has_img) == 5 * n
    assert ((has_img + has_txt) >= 1).all()  # every example keeps at least one input
    both = (has_img == 1) & (has_txt == 1)
    # of the examples that had both (a quarter of the data), about half keep both
    assert 0.4 < both.sum() / (5 * n / 4) < 0.6


def test_unknown_mode_and_mismatched_titles() -> None:
    x = T.make_inputs(np.zeros((2, FEATURES), np.float32), ["a shirt", "a belt"])
    with pytest.raises(ValueError, match="unknown input mode"):
        T.with_mode(x, "audio")
    with pytest.raises(ValueError, match="3 titles for 2 products"):
        T.make_inputs(np.zeros((2, FEATURES), np.float32), ["a", "b", "c"])


def test_one_model_from_pixels(trained: dict[str, Any]) -> None:
    import keras

    pixels = keras.Input(shape=(8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(FEATURES, 3)(pixels))
    backbone = keras.Model(pixels, pooled, name="tiny")
    full = T.with_backbone(backbone, trained["model"])
    pics = np.random.default_rng(5).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    titles = ["belt", None, "shoes", "shirt"]
    probs = np.asarray(full.predict_on_batch(T.make_inputs(pics, titles)))
    assert probs.shape == (4, len(CLASSES))
    # the same as the fused model given the backbone's features
    feats = np.asarray(backbone.predict_on_batch(pics))
    assert np.allclose(probs, T.raw_probabilities(trained["model"], T.make_inputs(feats, titles)),
                       atol=1e-5)
