"""A title-aware classifier: the image's backbone features and the product title, fused.

Inputs (a dict, all explicit):
  image      the pooled backbone vector (lite0: 1280 floats), zeros when there is no image
  title      the title as model_text() makes it ("" when there is none)
  has_image  1.0 / 0.0 per product
  has_title  1.0 / 0.0 per product

The text tower reads the title twice, both through Keras `TextVectorization` adapted on the
training titles (the vocabularies are saved inside the .keras file): character 2-4-grams
(any script, robust to typos, new words and brand spellings) and word tokens, multi-hot,
then one small dense layer. Each branch is multiplied by its presence flag, and the flags
themselves join the concatenation, so the softmax adds up one linear image term, one text
term and a bias per input mode; a modality shown alone adds a second term of its own (the
weights that best combine with a title are not the best without one). Training drops a
modality at random (`modality dropout`), so one model serves image+title, image only and
title only.

Only stock Keras layers: a saved model loads with `keras.saving.load_model` alone.
Confidence is calibrated per input mode (ModeCalibration): one temperature each, fitted on
validation, kept as JSON in the model's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classifier import metrics as M
from classifier.backbones.lite0 import FEATURES
from classifier.backend import run_model
from classifier.titles import model_text

BOTH, IMAGE, TITLE = "image+title", "image", "title"
MODES = (BOTH, IMAGE, TITLE)
FORMAT = 1  # of the inputs contract above; a slashcat that knows none refuses the model
NAME = "title_aware"
CHAR_NGRAMS = (2, 3, 4)
CHAR_TOKENS = 20_000
WORD_TOKENS = 10_000
TEXT_UNITS = 128
DROPOUT = 0.2
VAL_ROWS = 500  # validation products for early stopping (each shown in the three modes)
MODE_SHARES = {BOTH: 0.5, IMAGE: 0.25, TITLE: 0.25}  # modality dropout during training

Inputs = dict[str, np.ndarray]


# ------------------------------------------------------------------------------ the network


def build_title_model(n_classes: int, titles: Sequence[str | None],
                      features: int = FEATURES, char_tokens: int = CHAR_TOKENS,
                      word_tokens: int = WORD_TOKENS, text_units: int = TEXT_UNITS) -> Any:
    """The fused network (module doc), its vectorizers adapted on `titles` (the training set's)."""
    import keras
    from keras import layers

    texts = [t for t in (model_text(x) for x in titles) if t]
    if not texts:
        texts = [""]  # a vocabulary of nothing: the text term stays zero, the model still builds
    chars = layers.TextVectorization(
        max_tokens=char_tokens, standardize="lower", split="character", ngrams=CHAR_NGRAMS,
        output_mode="multi_hot", name="title_chars")
    words = layers.TextVectorization(
        max_tokens=word_tokens, standardize="lower_and_strip_punctuation", split="whitespace",
        output_mode="multi_hot", name="title_words")
    chars.adapt(texts, batch_size=1024)
    words.adapt(texts, batch_size=1024)

    image = keras.Input(shape=(features,), name="image")
    title = keras.Input(shape=(), dtype="string", name="title")
    has_image = keras.Input(shape=(1,), name="has_image")
    has_title = keras.Input(shape=(1,), name="has_title")

    x_img = layers.Dropout(DROPOUT, name="image_dropout")(image)
    x_img = layers.Multiply(name="image_present")([x_img, has_image])
    x_txt = layers.Concatenate(name="title_grams")([chars(title), words(title)])
    x_txt = layers.Dense(text_units, activation="relu", name="title_dense")(x_txt)
    x_txt = layers.Dropout(DROPOUT, name="title_dropout")(x_txt)
    x_txt = layers.Multiply(name="title_present")([x_txt, has_title])
    # each modality also gets a term of its own when it is alone: with a title, the picture's
    # weights learn to add to the title's; without, they must carry the product by themselves
    img_alone = layers.Subtract(name="image_alone")(
        [x_img, layers.Multiply(name="image_with_title")([x_img, has_title])])
    txt_alone = layers.Subtract(name="title_alone")(
        [x_txt, layers.Multiply(name="title_with_image")([x_txt, has_image])])
    fused = layers.Concatenate(name="fused")(
        [x_img, x_txt, img_alone, txt_alone, has_image, has_title])
    outputs = layers.Dense(n_classes, activation="softmax", name="classes")(fused)
    inputs = {"image": image, "title": title, "has_image": has_image, "has_title": has_title}
    return keras.Model(inputs, outputs, name=NAME)


def with_backbone(backbone: Any, fused: Any) -> Any:
    """One model from pixels: image (0..255) -> backbone features -> the fused model."""
    import keras

    size = backbone.input_shape[1:]
    image = keras.Input(shape=size, name="image")
    title = keras.Input(shape=(), dtype="string", name="title")
    has_image = keras.Input(shape=(1,), name="has_image")
    has_title = keras.Input(shape=(1,), name="has_title")
    outputs = fused({"image": backbone(image), "title": title, "has_image": has_image,
                     "has_title": has_title})
    inputs = {"image": image, "title": title, "has_image": has_image, "has_title": has_title}
    return keras.Model(inputs, outputs, name=f"{NAME}_{backbone.name}")


# ------------------------------------------------------------------------------ inputs


def make_inputs(images: np.ndarray | None, titles: Sequence[str | bytes | None] | None,
                n: int | None = None, features: int | tuple[int, ...] = FEATURES) -> Inputs:
    """The model's input dict. images None: no image for anyone (zeros of shape `features`:
    an embedding's length, or pixels' shape for with_backbone); titles None: no titles.
    A None or unusable title (see titles.clean_title) is an absent one, flagged as such."""
    if n is None:
        n = len(images) if images is not None else len(titles or [])
    if images is None:
        shape = (features,) if isinstance(features, int) else tuple(features)
        image = np.zeros((n, *shape), np.float32)
        has_image = np.zeros((n, 1), np.float32)
    else:
        image = np.asarray(images, np.float32)
        has_image = np.ones((n, 1), np.float32)
    texts = [model_text(t) for t in titles] if titles is not None else [""] * n
    if len(texts) != n:
        raise ValueError(f"{len(texts)} titles for {n} products")
    title = np.array(texts, dtype=object).reshape(n)
    has_title = np.array([[1.0 if t else 0.0] for t in texts], np.float32).reshape(n, 1)
    return {"image": image, "title": title, "has_image": has_image, "has_title": has_title}


def with_mode(inputs: Inputs, mode: str) -> Inputs:
    """The same products with a modality hidden: IMAGE hides titles, TITLE hides images."""
    if mode not in MODES:
        raise ValueError(f"unknown input mode {mode!r}; one of {', '.join(MODES)}")
    out = dict(inputs)
    if mode == IMAGE:
        out["title"] = np.full_like(inputs["title"], "")
        out["has_title"] = np.zeros_like(inputs["has_title"])
    elif mode == TITLE:
        out["image"] = np.zeros_like(inputs["image"])
        out["has_image"] = np.zeros_like(inputs["has_image"])
    return out


def modes_of(inputs: Inputs) -> np.ndarray:
    """Each product's input mode from its presence flags ("" when it has neither)."""
    img = inputs["has_image"][:, 0] > 0
    txt = inputs["has_title"][:, 0] > 0
    return np.where(img & txt, BOTH, np.where(img, IMAGE, np.where(txt, TITLE, "")))


def take(inputs: Inputs, rows: np.ndarray) -> Inputs:
    return {k: v[rows] for k, v in inputs.items()}


def concat(parts: Sequence[Inputs]) -> Inputs:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ------------------------------------------------------------------------------ training


def modality_dropout(has_image: Any, has_title: Any, draw: Any,
                     shares: dict[str, float]) -> tuple[Any, Any]:
    """New presence flags for one example: keep both, hide the title or hide the image, by
    `draw` in [0, 1) against `shares`. A modality is only hidden if the other is present."""
    import tensorflow as tf

    hide_title = tf.logical_and(draw >= shares[BOTH], draw < shares[BOTH] + shares[IMAGE])
    hide_image = draw >= shares[BOTH] + shares[IMAGE]
    hide_title = tf.logical_and(hide_title, has_image[0] > 0)
    hide_image = tf.logical_and(hide_image, has_title[0] > 0)
    return (has_image * (1.0 - tf.cast(hide_image, tf.float32)),
            has_title * (1.0 - tf.cast(hide_title, tf.float32)))


def training_stream(inputs: Inputs, onehot: np.ndarray, weights: np.ndarray, batch: int,
                    repeat: int, seed: int, shares: dict[str, float]) -> Any:
    """Shuffled batches with modality dropout drawn afresh for every example, every pass."""
    import tensorflow as tf

    total = sum(shares.get(m, 0.0) for m in MODES)
    shares = {m: shares.get(m, 0.0) / total for m in MODES}
    data = tf.data.Dataset.from_tensor_slices((inputs, onehot, weights))
    data = data.shuffle(len(onehot), seed=seed, reshuffle_each_iteration=True).repeat(repeat)
    @tf.autograph.experimental.do_not_convert  # plain tensor code: nothing to convert
    def uniform(r: Any) -> Any:
        return tf.cast(r % 1_000_000, tf.float32) / 1_000_000.0

    draws = tf.data.Dataset.random(seed=seed).map(uniform)

    @tf.autograph.experimental.do_not_convert
    def drop(example: Any, draw: Any) -> Any:
        x, y, w = example
        has_image, has_title = modality_dropout(x["has_image"], x["has_title"], draw, shares)
        return {**x, "has_image": has_image, "has_title": has_title}, y, w

    return tf.data.Dataset.zip((data, draws)).map(drop).batch(batch).prefetch(2)


def all_modes(inputs: Inputs, labels: np.ndarray) -> tuple[Inputs, np.ndarray]:
    """Every product three times, once per input mode (rows lacking a modality repeat it)."""
    parts = [with_mode(inputs, m) for m in MODES]
    return concat(parts), np.concatenate([labels] * len(MODES))


def train_title_model(model: Any, train: Inputs, train_y: np.ndarray, weights: np.ndarray,
                      val: Inputs, val_y: np.ndarray, seed: int = 0,
                      shares: dict[str, float] | None = None, epochs: int | None = None) -> Any:
    """Fit `model` with modality dropout; early stopping on the validation loss over all
    three modes (at most VAL_ROWS products), so no mode is sacrificed. The schedule is the
    embedding head's (classifier.transfer)."""
    import keras

    from classifier.transfer import HEAD_BATCH, HEAD_EPOCHS, HEAD_LR, HEAD_PATIENCE, HEAD_STEPS

    keras.utils.set_random_seed(seed)
    n_classes = model.output_shape[-1]
    eye = np.eye(n_classes, dtype=np.float32)
    model.compile(optimizer=keras.optimizers.AdamW(HEAD_LR, weight_decay=1e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"], jit_compile=False)
    repeat = max(1, math.ceil(HEAD_STEPS / math.ceil(len(train_y) / HEAD_BATCH)))
    stream = training_stream(train, eye[train_y], weights, HEAD_BATCH, repeat, seed,
                             shares or MODE_SHARES)
    if len(val_y) > VAL_ROWS:  # each epoch validates three times over: keep it short
        rows = np.random.default_rng(seed).permutation(len(val_y))[:VAL_ROWS]
        val, val_y = take(val, np.sort(rows)), val_y[np.sort(rows)]
    val_x, val_labels = all_modes(val, val_y)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=HEAD_PATIENCE,
                                         restore_best_weights=True)
    model.fit(stream, epochs=epochs or HEAD_EPOCHS, validation_data=(val_x, eye[val_labels]),
              validation_batch_size=512, callbacks=[stop], shuffle=False, verbose=0)
    return model


# ------------------------------------------------------------------------------ prediction


def raw_probabilities(model: Any, inputs: Inputs, batch: int = 512) -> np.ndarray:
    """The model's softmax, before calibration (classifier.backend.run_model)."""
    return run_model(model, inputs, batch)


@dataclass
class ModeCalibration:
    """One temperature per input mode, so a confidence of 0.9 means 90% in every mode."""

    temperatures: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODES, 1.0))
    val_ece: dict[str, float] = field(default_factory=dict)  # after calibration

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "temperatures": dict(self.temperatures),
                "val_ece": dict(self.val_ece)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModeCalibration:
        temps = {m: float(data["temperatures"][m]) for m in MODES}
        return cls(temps, {m: float(v) for m, v in data.get("val_ece", {}).items()})

    def apply(self, probs: np.ndarray, modes: str | np.ndarray) -> np.ndarray:
        """Calibrated probabilities; `modes` one mode for all rows, or one per row (rows with
        "" -- neither input -- are left as they are)."""
        rows = np.broadcast_to(np.asarray(modes), (len(probs),))
        out = np.array(probs, np.float32, copy=True)
        for mode in MODES:
            pick = rows == mode
            if pick.any():
                out[pick] = M.calibrated(probs[pick], self.temperatures[mode])
        return out


def fit_calibration(model: Any, val: Inputs, val_y: np.ndarray) -> ModeCalibration:
    """Temperatures fitted on the validation products shown in each mode."""
    cal = ModeCalibration()
    for mode in MODES:
        probs = raw_probabilities(model, with_mode(val, mode))
        cal.temperatures[mode] = M.fit_temperature(probs, val_y)
        cal.val_ece[mode] = M.ece(M.calibrated(probs, cal.temperatures[mode]), val_y)
    return cal


def predict(model: Any, calibration: ModeCalibration, inputs: Inputs,
            mode: str | None = None) -> np.ndarray:
    """Calibrated probabilities. mode None: each product as it is (its own mode, from its
    presence flags); otherwise every product seen in `mode` (a modality hidden if need be)."""
    if mode is not None:
        inputs = with_mode(inputs, mode)
    probs = raw_probabilities(model, inputs)
    return calibration.apply(probs, mode if mode is not None else modes_of(inputs))


@dataclass(frozen=True)
class ModeScore:
    mode: str
    top1: float
    macro_f1: float
    ece: float


def score_modes(model: Any, calibration: ModeCalibration, inputs: Inputs,
                labels: np.ndarray, classes: list[str]) -> dict[str, ModeScore]:
    """Top-1, macro-F1 and ECE (after calibration) of the same products in each mode."""
    return {mode: score(predict(model, calibration, inputs, mode), labels, classes, mode)
            for mode in MODES}


def score(probs: np.ndarray, labels: np.ndarray, classes: list[str], mode: str) -> ModeScore:
    matrix = M.confusion(labels, probs.argmax(1), len(classes))
    f1 = M.macro_f1(M.class_scores(matrix, classes), matrix)
    return ModeScore(mode, float((probs.argmax(1) == labels).mean()), f1, M.ece(probs, labels))


def metadata(calibration: ModeCalibration) -> dict[str, Any]:
    """What the catalog keeps about a title-aware model: its inputs and calibration."""
    return {"inputs": [IMAGE, TITLE], "title_format": FORMAT,
            "calibration": calibration.as_json()}
