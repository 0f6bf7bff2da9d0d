"""A small real catalog with a model and its predictions, for review and export tests.

Products (model v1, the active one), in the order the default queue (--below 0.7) shows them:
  p0 Topwear 0.40 margin 0.05, p1 Bottomwear 0.40 margin 0.20, p9 Shoes 0.55 margin 0.10,
  p2 Shoes 0.55 margin 0.30, p3 Bags 0.65 margin 0.40.
Not queued by default: p4 (0.80), p7 (0.30 but decided by a human), p5/p6/p8/p10/p11 (>= 0.9).
p5 (store says Bags, model Watches 0.97) and p8 (store Topwear, model Bottomwear 0.92) are
disagreements; p6's store label agrees. p10 and p11 (no labels) are what --accept-above 0.95
takes. p0's image shares a dedupe cluster with two other images. Model v0 is inactive.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from catalog.categories import ensure_category
from catalog.db import Catalog, open_catalog
from catalog.ingest import get_or_create_store, ingest_image, ingest_item
from catalog.labels import add_label
from catalog.models import Image, Model, Prediction
from catalog.settings import Settings

from helpers import copy_home

TOP = "Apparel > Topwear"
BOTTOM = "Apparel > Bottomwear"
SHOES = "Footwear > Shoes"
BAGS = "Accessories > Bags"
WATCHES = "Accessories > Watches"
CLASSES = [TOP, BOTTOM, SHOES, BAGS, WATCHES]

# name: (title, top-k of v1, store label or None)
PRODUCTS: dict[str, tuple[str, list[tuple[str, float]], str | None]] = {
    "p0": ("Striped tee, cotton", [(TOP, 0.40), (BOTTOM, 0.35), (SHOES, 0.15)], None),
    "p1": ("Slim \"chino\" trousers", [(BOTTOM, 0.40), (TOP, 0.20), (BAGS, 0.20)], None),
    "p2": ("Trail runner", [(SHOES, 0.55), (BAGS, 0.25), (TOP, 0.10)], None),
    "p3": ("Leather tote", [(BAGS, 0.65), (WATCHES, 0.25), (SHOES, 0.05)], None),
    "p4": ("Plain hoodie", [(TOP, 0.80), (BOTTOM, 0.10), (BAGS, 0.05)], None),
    "p5": ("Steel watch", [(WATCHES, 0.97), (BAGS, 0.02), (TOP, 0.01)], BAGS),
    "p6": ("Running shoe", [(SHOES, 0.96), (BAGS, 0.02), (TOP, 0.01)], SHOES),
    "p7": ("Mystery item", [(TOP, 0.30), (BAGS, 0.28), (SHOES, 0.20)], None),
    "p8": ("Cargo shorts", [(BOTTOM, 0.92), (TOP, 0.05), (BAGS, 0.02)], TOP),
    "p9": ("Canvas sneaker", [(SHOES, 0.55), (TOP, 0.45), (BAGS, 0.0)], None),
    "p10": ("Diver watch", [(WATCHES, 0.99), (BAGS, 0.01), (TOP, 0.0)], None),
    "p11": ("Weekend bag", [(BAGS, 0.96), (WATCHES, 0.02), (TOP, 0.01)], None),
}
DEFAULT_QUEUE = ["p0", "p1", "p9", "p2", "p3"]
# The inactive model v0 predicted only p0-p3; its queue order is p3, p2, p1, p0.
OLD: dict[str, list[tuple[str, float]]] = {
    "p0": [(SHOES, 0.90), (TOP, 0.05), (BAGS, 0.05)],
    "p1": [(TOP, 0.60), (BOTTOM, 0.30), (BAGS, 0.10)],
    "p2": [(BAGS, 0.50), (SHOES, 0.40), (TOP, 0.10)],
    "p3": [(WATCHES, 0.30), (BAGS, 0.29), (SHOES, 0.20)],
}


@dataclass
class ReviewData:
    catalog: Catalog
    products: dict[str, int] = field(default_factory=dict)  # name -> product id
    images: dict[str, int] = field(default_factory=dict)  # name -> image id
    predictions: dict[str, int] = field(default_factory=dict)  # name -> v1 prediction id
    old_predictions: dict[str, int] = field(default_factory=dict)  # name -> v0 prediction id

    def name_of_prediction(self, prediction_id: int) -> str:
        return next(k for k, v in self.predictions.items() if v == prediction_id)


def add_prediction(
    session: Session, product_id: int, image_id: int, model: Model,
    top_k: list[tuple[str, float]],
) -> Prediction:
    ordered = sorted(top_k, key=lambda t: -t[1])
    pred = Prediction(
        product_id=product_id,
        image_id=image_id,
        model_id=model.id,
        category_id=ensure_category(session, ordered[0][0]).id,
        confidence=ordered[0][1],
        margin=ordered[0][1] - ordered[1][1],
        top_k=[[name, p] for name, p in ordered],
    )
    session.add(pred)
    session.flush()
    return pred


def add_model(session: Session, version: str, active: bool) -> Model:
    model = Model(
        version=version, task="category", architecture="test-cnn", image_size=64,
        classes=CLASSES, path=f"models/{version}.keras", active=active,
    )
    session.add(model)
    session.flush()
    return model


def build_review_catalog(catalog: Catalog, make_image: Callable[..., bytes]) -> ReviewData:
    data = ReviewData(catalog)
    with catalog.session() as s:
        store = get_or_create_store(s, "demo", "http://shop.test/")
        for name in CLASSES:
            ensure_category(s, name)
        v0 = add_model(s, "v0", active=False)
        v1 = add_model(s, "v1", active=True)
        for i, (key, (title, top_k, store_label)) in enumerate(PRODUCTS.items()):
            item = ingest_item(
                s, catalog.store, store.id, f"http://shop.test/p/{key}", make_image(seed=i + 1),
                f"http://shop.test/img/{key}.jpg", title=title, external_id=f"SKU-{i}",
                category_path=store_label,
            )
            product, image = item.product, item.image.image
            data.products[key] = product.id
            data.images[key] = image.id
            data.predictions[key] = add_prediction(s, product.id, image.id, v1, top_k).id
            if key in OLD:
                data.old_predictions[key] = add_prediction(s, product.id, image.id, v0, OLD[key]).id
        add_label(s, data.products["p7"], ensure_category(s, BAGS).id, "human",
                  author="earlier", model_version="v1")
        _cluster(s, catalog, data, make_image)
    return data


def _cluster(
    s: Session, catalog: Catalog, data: ReviewData, make_image: Callable[..., bytes]
) -> None:
    """p0's image, p4's image and one unattached image form dedupe cluster 1."""
    extra = ingest_image(s, catalog.store, make_image(seed=99)).image
    for image_id in (data.images["p0"], data.images["p4"], extra.id):
        image = s.get_one(Image, image_id)
        image.cluster_id = 1
        image.is_canonical = image_id == data.images["p0"]


@pytest.fixture(scope="session")
def review_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReviewData]:
    """Built once per test run; each test gets a copy (building it costs more than copying)."""
    from helpers import jpeg_bytes

    home = tmp_path_factory.mktemp("review-template") / "home"
    cat = open_catalog(Settings.load(home=home, env={}))
    try:
        data = build_review_catalog(cat, jpeg_bytes)
    finally:
        cat.close()
    return home, data


@pytest.fixture
def review_data(
    settings: Settings, review_template: tuple[Path, ReviewData]
) -> Iterator[ReviewData]:
    """A fresh copy of the review catalog at the test's home folder (the `cli` fixture's too)."""
    template_home, template = review_template
    cat = open_catalog(copy_home(template_home, settings.home))
    yield replace(template, catalog=cat)
    cat.close()



class Tmux:
    """A private tmux server (its socket in a folder of ours) with one 120x40 pane."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True,
            check=check, timeout=10,
        )
        return out.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "review")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "review", *(["-l"] if literal else []), *keys)

    def wait_for(self, *texts: str, absent: tuple[str, ...] = (), timeout: float = 15.0) -> str:
        """Poll the pane until every text is on it and none of `absent` is."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts) and not any(t in screen for t in absent):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"never saw {texts!r} without {absent!r} on the screen:\n{screen}")


def slashcat_command() -> list[str]:
    script = Path(sys.executable).parent / "slashcat"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cli.app import main; main()"]


@contextmanager
def review_screen(home: Path, *args: str, width: int = 120) -> Iterator[Tmux]:
    """`slashcat review ARGS` on `home` in a private tmux pane (width x 40), killed after."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it)")
    folder = Path(tempfile.mkdtemp(prefix="sc-tmux-"))  # short: socket paths have a length limit
    t = Tmux(folder / "sock")
    # COLUMNS/LINES from the test process would override the pane's real size.
    command = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", *slashcat_command(), "--home",
                          str(home), "review", *args])
    t.run("new-session", "-d", "-x", str(width), "-y", "40", "-s", "review",
          "-c", str(Path(__file__).resolve().parents[2]),
          f"{command}; echo EXIT=$?; sleep 60")
    try:
        yield t
    finally:
        t.run("kill-server", check=False)
        shutil.rmtree(folder, ignore_errors=True)
