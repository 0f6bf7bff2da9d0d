"""Prediction: a loaded model (`Classifier`) and batch prediction over the catalog.

`predict_catalog` runs each canonical image once, copies the result to every product that
shows an image of its cluster, and skips products that already have a prediction from the
model, so a second run does no work. A lite0 model that kept its head-only stage has the
pretrained backbone unchanged, so images whose embeddings are cached (those it trained on)
need only the head: the same numbers the head was trained on, without decoding the image.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.dedupe import canonical_clusters
from catalog.errors import ImageRejected, InvalidInput, one_line
from catalog.images import Limits, inspect_image
from catalog.labels import current_labels
from catalog.models import Category, Model, Prediction, Product, ProductImage
from classifier.backend import load_tensorflow, run_model
from classifier.config import DEFAULT_TOP_K
from classifier.errors import ClassMismatch, ImageSizeMismatch, ModelFileError
from classifier.metrics import calibrated
from classifier.registry import get_model, load_keras, model_path

Progress = Callable[[int, int], None]
TopK = list[tuple[str, float]]
SCOPES = ("unlabelled", "all")
PREDICT_BATCH = 256  # images per forward pass (and per decoded chunk)


def check_top_k(k: int, classes: int) -> None:
    """--top-k / top_k must ask for 1 to all of the model's classes."""
    if not 1 <= k <= classes:
        raise InvalidInput(f"top-k must be between 1 and {classes} (the model's classes), "
                           f"not {k}")


class Classifier:
    """A registered model, ready to classify image bytes or decoded arrays."""

    def __init__(
        self, model: Any, version: str, model_id: int, classes: list[str], temperature: float,
        image_size: int, limits: Limits = Limits(), calibration: Any = None,
    ) -> None:
        self.model = model
        self.version = version
        self.model_id = model_id
        self.classes = classes
        self.temperature = temperature
        self.image_size = image_size
        self.limits = limits
        # title-aware models: a title_model.ModeCalibration (one temperature per input mode)
        self.calibration = calibration

    @property
    def reads_titles(self) -> bool:
        return self.calibration is not None

    @classmethod
    def load(cls, catalog: Catalog, version: str | None = None,
             top_k: int | None = None) -> Classifier:
        """The model with this version (default: the active one); checks file, size, classes.
        A `top_k` to be asked later is checked first, before TensorFlow loads for seconds."""
        with catalog.session() as session:
            row = get_model(session, version)
        if top_k is not None:
            check_top_k(top_k, len(row.classes))
        load_tensorflow()  # once, quietly (see classifier.backend)
        return cls.from_row(catalog, row)

    @classmethod
    def from_row(cls, catalog: Catalog, row: Model) -> Classifier:
        calibration = title_calibration(row)
        keras_model = load_keras(model_path(catalog.settings.home, row))
        shape = image_input_shape(keras_model)
        if shape[1:] != (row.image_size, row.image_size, 3):
            raise ImageSizeMismatch(
                f"model {row.version}: its file takes {shape[1:]} images but the catalog says "
                f"{row.image_size}x{row.image_size}; the file does not belong to this entry"
            )
        units = int(keras_model.output_shape[-1])
        if units != len(row.classes):
            raise ClassMismatch(
                f"model {row.version}: its file predicts {units} classes but the catalog lists "
                f"{len(row.classes)}"
            )
        limits = catalog.settings.image_limits()
        return cls(
            keras_model, row.version, row.id, list(row.classes), row.temperature,
            row.image_size, limits, calibration,
        )

    def probabilities(self, images: np.ndarray,
                      titles: Sequence[str | None] | None = None) -> np.ndarray:
        """Calibrated class probabilities for a batch of prepared images (n, size, size, 3),
        with their products' titles if the model reads titles (otherwise they are ignored)."""
        return self.raw_and_calibrated(images, titles)[1]

    def raw_and_calibrated(self, images: np.ndarray, titles: Sequence[str | None] | None = None,
                           ) -> tuple[np.ndarray, np.ndarray]:
        """The model's own softmax and its temperature-scaled form: per input mode (whether
        each product has a usable title) for a title-aware model, the one temperature else."""
        inputs = self.inputs_for(images, titles)
        raw = run_model(self.model, inputs)
        if self.calibration is None:
            return raw, calibrated(raw, self.temperature)
        from classifier.title_model import modes_of

        return raw, self.calibration.apply(raw, modes_of(inputs))

    def raw_probabilities(self, images: np.ndarray,
                          titles: Sequence[str | None] | None = None) -> np.ndarray:
        """The model's own softmax output, before temperature scaling."""
        return run_model(self.model, self.inputs_for(images, titles))

    def inputs_for(self, images: np.ndarray, titles: Sequence[str | None] | None) -> Any:
        """What the model takes: the images, or with their titles for a title-aware model."""
        images = np.asarray(images)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ImageSizeMismatch(
                f"model {self.version} takes {expected[0]}x{expected[1]} RGB images, "
                f"got an array of shape {images.shape}"
            )
        if self.calibration is None:
            return images
        from classifier.title_model import make_inputs

        return make_inputs(images, titles, n=len(images))

    def prepare(self, data: bytes) -> np.ndarray:
        """Validate bytes (raises ImageRejected) and turn them into the model's input."""
        from classifier.pipeline import prepare_bytes

        inspect_image(data, self.limits)
        return np.asarray(prepare_bytes(data, self.image_size))

    def top_k(self, probs: np.ndarray, k: int = 3) -> list[TopK]:
        check_top_k(k, len(self.classes))
        order = np.argsort(-probs, axis=1)[:, :k]
        return [
            [(self.classes[j], float(row[j])) for j in idx]
            for row, idx in zip(probs, order, strict=True)
        ]

    def classify_bytes(self, data: bytes, top_k: int = DEFAULT_TOP_K,
                       title: str | None = None) -> TopK:
        """The top-k (category, probability) pairs for one image (and its product's title,
        read if the model reads titles); raises ImageRejected."""
        titles = None if title is None else [title]
        return self.top_k(self.probabilities(self.prepare(data)[None], titles), top_k)[0]

    def prepare_many(self, blobs: Sequence[bytes]) -> list[np.ndarray | ImageRejected]:
        """Each blob prepared for the model, or the reason it was refused."""
        prepared: list[np.ndarray | ImageRejected] = []
        for data in blobs:
            try:
                prepared.append(self.prepare(data))
            except ImageRejected as exc:
                prepared.append(exc)
            except Exception as exc:  # bytes Pillow accepts but TensorFlow cannot decode
                prepared.append(ImageRejected("corrupt", one_line(exc)))
        return prepared

    def classify_many(
        self, blobs: Sequence[bytes], top_k: int = DEFAULT_TOP_K,
        titles: Sequence[str | None] | None = None,
    ) -> list[TopK | ImageRejected]:
        """Like classify_bytes for many images; bad ones come back as errors.

        Chunks are decoded in a worker thread while the model runs on the previous chunk
        (OpenCV releases the GIL), as predict_catalog's tf.data stream does for catalog files.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        check_top_k(top_k, len(self.classes))
        out: list[TopK | ImageRejected] = []
        pending: deque[Future[list[np.ndarray | ImageRejected]]] = deque()
        chunk_titles: deque[Sequence[str | None] | None] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
            for start in range(0, len(blobs), PREDICT_BATCH):
                chunk = slice(start, start + PREDICT_BATCH)
                pending.append(pool.submit(self.prepare_many, blobs[chunk]))
                chunk_titles.append(None if titles is None else titles[chunk])
                if len(pending) > 1:
                    out += self._rank(pending.popleft().result(), chunk_titles.popleft(), top_k)
            while pending:
                out += self._rank(pending.popleft().result(), chunk_titles.popleft(), top_k)
        return out

    def _rank(self, prepared: list[np.ndarray | ImageRejected],
              titles: Sequence[str | None] | None, top_k: int) -> list[TopK | ImageRejected]:
        keep = [i for i, p in enumerate(prepared) if isinstance(p, np.ndarray)]
        if not keep:
            return [p for p in prepared if isinstance(p, ImageRejected)]  # only errors
        good = np.stack([cast(np.ndarray, prepared[i]) for i in keep])
        kept_titles = None if titles is None else [titles[i] for i in keep]
        ranked = iter(self.top_k(self.probabilities(good, kept_titles), top_k))
        return [next(ranked) if isinstance(p, np.ndarray) else p for p in prepared]


def title_calibration(row: Model) -> Any:
    """A title-aware model's per-mode calibration (None for an image-only model); refuses a
    model whose title inputs are of a newer format than this slashcat reads."""
    from classifier.title_model import FORMAT, ModeCalibration

    meta = (row.metrics or {}).get("inputs") or {}
    if "title" not in meta.get("inputs", []):
        return None
    found = int(meta.get("title_format", 0))
    if found > FORMAT or found < 1:
        raise ModelFileError(
            f"model {row.version} reads titles in format {found}; this slashcat knows formats "
            f"up to {FORMAT}: upgrade slashcat or activate another model")
    return ModeCalibration.from_json(meta["calibration"])


def image_input_shape(keras_model: Any) -> tuple[Any, ...]:
    """The image input's shape, of an image-only model or of a title-aware one (dict inputs)."""
    for tensor in keras_model.inputs:
        if len(tensor.shape) == 4:
            return tuple(tensor.shape)
    return tuple(keras_model.input_shape)


@dataclass
class PredictReport:
    version: str
    scope: str
    products: int = 0  # products in scope
    already: int = 0  # had a prediction from this model already
    no_image: int = 0  # no usable image
    images: int = 0  # canonical images run through the model
    cached: int = 0  # of which predicted from cached embeddings (head-only lite0 models)
    written: int = 0  # prediction rows written
    skipped: list[str] = field(default_factory=list)  # unreadable image files
    load_seconds: float = 0.0  # reading the catalog and loading the model
    seconds: float = 0.0  # decoding, predicting and writing

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@dataclass
class Work:
    paths: list[str]  # canonical image files to run
    image_ids: list[int]
    products: list[list[int]]  # for each image, the products that get its prediction
    shas: list[str] = field(default_factory=list)  # each image's sha256 (embedding key)


def category_ids(session: Session, classes: list[str], version: str) -> dict[str, int]:
    found = dict(
        session.execute(select(Category.name, Category.id).where(Category.name.in_(classes))).all()
    )
    missing = [c for c in classes if c not in found]
    if missing:
        raise ClassMismatch(
            f"model {version} predicts categories the catalog does not have "
            f"({', '.join(missing[:5])}); retrain on this catalog"
        )
    return found


def plan_work(session: Session, catalog: Catalog, model_id: int, scope: str,
              report: PredictReport) -> Work:
    products = set(session.scalars(select(Product.id)))
    if scope == "unlabelled":
        products -= {lab.product_id for lab in current_labels(session)}
    report.products = len(products)
    done = set(
        session.scalars(select(Prediction.product_id).where(Prediction.model_id == model_id))
    )
    report.already = len(products & done)
    todo = products - done
    canonical: dict[int, tuple[int, str]] = {}
    shas: dict[int, str] = {}
    for c in canonical_clusters(session):
        shas[c.canonical_id] = c.sha256
        for image_id in c.image_ids:
            canonical[image_id] = (c.canonical_id, c.path)
    first: dict[int, int] = {}
    rows = session.execute(
        select(ProductImage.product_id, ProductImage.image_id)
        .order_by(ProductImage.product_id, ProductImage.position, ProductImage.id)
        .execution_options(yield_per=10_000)  # a server-side cursor on PostgreSQL
    )
    for product_id, image_id in rows:
        if product_id in todo and product_id not in first and image_id in canonical:
            first[product_id] = image_id
    report.no_image = len(todo) - len(first)
    groups: dict[int, list[int]] = {}
    paths: dict[int, str] = {}
    for product_id, image_id in sorted(first.items()):
        head, rel = canonical[image_id]
        groups.setdefault(head, []).append(product_id)
        paths[head] = str(catalog.store.path(rel))
    ids = sorted(groups)
    return Work([paths[i] for i in ids], ids, [groups[i] for i in ids], [shas[i] for i in ids])


def predict_catalog(
    catalog: Catalog,
    version: str | None = None,
    scope: str = "unlabelled",
    progress: Progress | None = None,
    top_k: int = DEFAULT_TOP_K,
    batch_size: int = 256,
) -> PredictReport:
    """Predict the products in scope ('unlabelled' or 'all') with a model (default: active)."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
    started = time.monotonic()
    with catalog.session() as session:
        row = get_model(session, version)
        check_top_k(top_k, len(row.classes))
        ids = category_ids(session, list(row.classes), row.version)
        report = PredictReport(row.version, scope)
        work = plan_work(session, catalog, row.id, scope, report)
    if not work.paths:
        report.load_seconds = time.monotonic() - started
        return report
    load_tensorflow()  # once, quietly (see classifier.backend)
    clf = Classifier.from_row(catalog, row)
    report.load_seconds = time.monotonic() - started
    started = time.monotonic()
    total = len(work.paths)
    if progress:
        progress(0, total)
    if clf.reads_titles:
        _run_titled(catalog, clf, ids, work, report, progress, top_k, batch_size)
    else:
        done = _run_cached(catalog, clf, row, ids, work, report, top_k)
        _run_batches(catalog, clf, ids, work, report, progress, top_k, batch_size, done)
    if progress:
        progress(total, total)
    report.seconds = time.monotonic() - started
    return report


def head_only(row: Model) -> bool:
    """A lite0 model whose backbone is the pretrained one, untouched (see module doc)."""
    from classifier.architectures import PRETRAINED

    kept = ((row.metrics or {}).get("train") or {}).get("kept")
    return row.architecture == PRETRAINED and kept == "head"


def _run_cached(
    catalog: Catalog, clf: Classifier, row: Model, ids: dict[str, int], work: Work,
    report: PredictReport, top_k: int,
) -> set[int]:
    """Predict the images whose embeddings are cached with the head alone; their positions."""
    if not head_only(row) or not work.shas:
        return set()
    from classifier.embeddings import EmbeddingStore
    from classifier.transfer import backbone_key

    store = EmbeddingStore(catalog.settings.home / "embeddings", backbone_key(), clf.image_size)
    positions, vectors = store.found(work.shas)
    if not positions:
        return set()
    head = clf.model.get_layer("classes")
    for start in range(0, len(positions), 4096):
        pos = np.asarray(positions[start:start + 4096], np.int64)
        raw = np.asarray(head(vectors[start:start + 4096]), np.float32)
        probs = calibrated(raw, clf.temperature)
        report.written += _write(catalog, clf, ids, work, pos, probs, top_k)
        report.images += len(pos)
    report.cached = len(positions)
    return set(positions)


def _run_batches(
    catalog: Catalog, clf: Classifier, ids: dict[str, int], work: Work, report: PredictReport,
    progress: Progress | None, top_k: int, batch_size: int, done: set[int],
) -> None:
    """Predict and write batch by batch; tf.data decodes the next batches meanwhile."""
    from classifier.pipeline import file_batches

    todo = [i for i in range(len(work.paths)) if i not in done]
    for images, positions in file_batches([work.paths[i] for i in todo], clf.image_size,
                                          batch_size):
        pos = np.asarray([todo[i] for i in positions.numpy().tolist()], np.int64)
        probs = clf.probabilities(images.numpy())
        report.written += _write(catalog, clf, ids, work, pos, probs, top_k)
        report.images += len(pos)
        done.update(pos.tolist())
        if progress:
            progress(len(done), len(work.paths))
    report.skipped = [p for i, p in enumerate(work.paths) if i not in done]


def _write(
    catalog: Catalog, clf: Classifier, ids: dict[str, int], work: Work, positions: np.ndarray,
    probs: np.ndarray, k: int,
) -> int:
    ranked = clf.top_k(probs, max(2, k))
    rows = []
    for pos, top in zip(positions.tolist(), ranked, strict=True):
        margin = top[0][1] - (top[1][1] if len(top) > 1 else 0.0)
        for product_id in work.products[pos]:
            rows.append({
                "product_id": product_id,
                "image_id": work.image_ids[pos],
                "model_id": clf.model_id,
                "category_id": ids[top[0][0]],
                "confidence": top[0][1],
                "margin": margin,
                "top_k": [[name, round(p, 5)] for name, p in top[:k]],
            })
    with catalog.session() as session:
        session.execute(insert(Prediction), rows)
    return len(rows)


def _run_titled(
    catalog: Catalog, clf: Classifier, ids: dict[str, int], work: Work, report: PredictReport,
    progress: Progress | None, top_k: int, batch_size: int,
) -> None:
    """A title-aware model: each canonical image through the backbone once (or its cached
    embedding: the backbone is the pretrained one), then the small fused model once per
    product with that product's title, calibrated in the product's own input mode."""
    from classifier.embeddings import EmbeddingStore
    from classifier.pipeline import file_batches
    from classifier.title_model import NAME
    from classifier.titles import product_titles
    from classifier.transfer import backbone_key

    fused = clf.model.get_layer(NAME)
    backbone = next(layer for layer in clf.model.layers
                    if hasattr(layer, "layers") and layer.name != NAME)
    with catalog.session() as session:
        titles = product_titles(session, [p for group in work.products for p in group])
    store = EmbeddingStore(catalog.settings.home / "embeddings", backbone_key(), clf.image_size)
    positions, vectors = store.found(work.shas)
    done: set[int] = set()
    if positions:
        report.cached = len(positions)
        _write_titled(catalog, clf, fused, ids, work, np.asarray(positions, np.int64), vectors,
                      titles, top_k, report, done)
    todo = [i for i in range(len(work.paths)) if i not in done]
    for images, batch_positions in file_batches([work.paths[i] for i in todo],
                                                clf.image_size, batch_size):
        pos = np.asarray([todo[i] for i in batch_positions.numpy().tolist()], np.int64)
        feats = run_model(backbone, images.numpy())
        _write_titled(catalog, clf, fused, ids, work, pos, feats, titles, top_k, report, done)
        if progress:
            progress(len(done), len(work.paths))
    report.skipped = [p for i, p in enumerate(work.paths) if i not in done]


def _write_titled(
    catalog: Catalog, clf: Classifier, fused: Any, ids: dict[str, int], work: Work,
    positions: np.ndarray, feats: np.ndarray, titles: dict[int, str], k: int,
    report: PredictReport, done: set[int],
) -> None:
    from classifier.title_model import make_inputs, predict

    rows = [(pos, pid) for pos in positions.tolist() for pid in work.products[pos]]
    index = {pos: i for i, pos in enumerate(positions.tolist())}
    inputs = make_inputs(feats[[index[pos] for pos, _ in rows]],
                         [titles.get(pid) for _, pid in rows], n=len(rows))
    probs = predict(fused, clf.calibration, inputs)
    ranked = clf.top_k(probs, max(2, k))
    alone = single_input_guesses(clf, fused, inputs)
    out = []
    for i, ((pos, pid), top) in enumerate(zip(rows, ranked, strict=True)):
        margin = top[0][1] - (top[1][1] if len(top) > 1 else 0.0)
        out.append({
            "product_id": pid, "image_id": work.image_ids[pos], "model_id": clf.model_id,
            "category_id": ids[top[0][0]], "confidence": top[0][1], "margin": margin,
            "top_k": [[name, round(p, 5)] for name, p in top[:k]],
            **_guess_columns(alone.get(i), ids),
        })
    with catalog.session() as session:
        session.execute(insert(Prediction), out)
    report.written += len(out)
    report.images += len(positions)
    done.update(positions.tolist())


Guess = tuple[str, float]  # a category and its calibrated probability


def single_input_guesses(clf: Classifier, fused: Any, inputs: dict[str, np.ndarray],
                         ) -> dict[int, tuple[Guess, Guess]]:
    """For each row that has both a picture and a title: the model's top-1 from the picture
    alone and from the title alone (each calibrated in its own mode), by row number. The
    backbone features are already computed, so this is two more passes of the small head."""
    from classifier.title_model import BOTH, IMAGE, TITLE, modes_of, predict, take

    both = np.flatnonzero(modes_of(inputs) == BOTH)
    if not len(both):
        return {}
    part = take(inputs, both)
    by_image = predict(fused, clf.calibration, part, IMAGE)
    by_title = predict(fused, clf.calibration, part, TITLE)
    out = {}
    for row, img, txt in zip(both.tolist(), by_image, by_title, strict=True):
        i, t = int(img.argmax()), int(txt.argmax())
        out[row] = ((clf.classes[i], float(img[i])), (clf.classes[t], float(txt[t])))
    return out


def _guess_columns(guesses: tuple[Guess, Guess] | None, ids: dict[str, int]) -> dict[str, Any]:
    if guesses is None:
        return {"image_category_id": None, "image_confidence": None,
                "title_category_id": None, "title_confidence": None}
    (image, p_image), (title, p_title) = guesses
    return {"image_category_id": ids[image], "image_confidence": p_image,
            "title_category_id": ids[title], "title_confidence": p_title}
