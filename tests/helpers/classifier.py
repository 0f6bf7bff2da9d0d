"""Fixtures of the classifier tests: a tiny catalog of coloured shapes, and a model trained on it.

Training is the slow part, so one model is trained per session and each test that changes
the catalog works on its own copy of that home folder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from catalog.db import Catalog, open_catalog
from catalog.settings import Settings

from helpers import copy_home

# Category path -> (shape, colour). Distinct colours and shapes make the task learnable fast.
SHAPES = {
    "Toys > Round > Ball": ("circle", (220, 40, 40)),
    "Toys > Square > Block": ("square", (40, 170, 60)),
    "Home > Triangle": ("triangle", (40, 70, 220)),
    "Home > Cross": ("cross", (230, 180, 20)),
}
RARE = "Home > Star"  # fewer images than --min-per-class
PER_CLASS = 24
RARE_COUNT = 5
UNLABELLED = 6
IMAGE_SIZE = 32


def shape_image(shape: str, colour: tuple[int, int, int], seed: int, size: int = 44,
                fmt: str = "PNG") -> bytes:
    """A coloured shape at a random place and scale on a white, slightly noisy background."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 1, size - r - 1, 2))
    jitter = tuple(int(np.clip(c + rng.integers(-25, 25), 0, 255)) for c in colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=jitter)
    elif shape == "square":
        draw.rectangle(box, fill=jitter)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=jitter)
    elif shape == "cross":
        w = max(2, r // 3)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=jitter)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=jitter)
    else:  # star-ish
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy - r // 3),
                      (cx + r, cy - r // 3), (cx - r, cy + r)], fill=jitter)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 6, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


def add_product(catalog: Catalog, url: str, data: bytes, category: str | None) -> tuple[int, int]:
    """One product with one image, labelled by the store; returns (product id, image id)."""
    from catalog.ingest import get_or_create_store, ingest_item

    with catalog.session() as session:
        store = get_or_create_store(session, "shapes", "http://shapes.test/")
        item = ingest_item(session, catalog.store, store.id, url, data, url + ".png",
                           title=url, category_path=category)
        return item.product.id, item.image.image.id


def build_shapes_catalog(catalog: Catalog) -> None:
    from catalog.models import Image

    seed = 0
    for category, (shape, colour) in SHAPES.items():
        for i in range(PER_CLASS):
            seed += 1
            data = shape_image(shape, colour, seed)
            add_product(catalog, f"http://shapes.test/{shape}/{i}", data, category)
    for i in range(RARE_COUNT):
        seed += 1
        add_product(catalog, f"http://shapes.test/star/{i}",
                    shape_image("star", (150, 50, 200), seed), RARE)
    for i in range(UNLABELLED):
        seed += 1
        shape, colour = list(SHAPES.values())[i % len(SHAPES)]
        add_product(catalog, f"http://shapes.test/new/{i}", shape_image(shape, colour, seed), None)
    # Two more unlabelled products whose images are near duplicates: one dedupe cluster.
    _, first = add_product(catalog, "http://shapes.test/dup/0",
                           shape_image("circle", (220, 40, 40), 999), None)
    _, second = add_product(catalog, "http://shapes.test/dup/1",
                            shape_image("circle", (220, 40, 40), 999, fmt="JPEG"), None)
    with catalog.session() as session:
        session.get_one(Image, first).cluster_id = first
        dup = session.get_one(Image, second)
        dup.cluster_id, dup.is_canonical = first, False


@dataclass
class Trained:
    settings: Settings
    version: str


@pytest.fixture(scope="session")
def shapes_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home folder with the shapes catalog (never changed; copy it to change it)."""
    home = tmp_path_factory.mktemp("shapes") / "home"
    cat = open_catalog(Settings.load(home=home, env={}))
    try:
        build_shapes_catalog(cat)
    finally:
        cat.close()
    return home


@pytest.fixture(scope="session")
def trained_home(shapes_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The shapes catalog with one trained, active model (v1) at 32 px."""
    from classifier.train import TrainConfig, train

    settings = copy_home(shapes_home, tmp_path_factory.mktemp("trained") / "home")
    cat = open_catalog(settings)
    try:
        result = train(cat, TrainConfig(arch="compact", image_size=IMAGE_SIZE, epochs=6,
                                      batch_size=16, seed=1))
    finally:
        cat.close()
    return Trained(settings, result.version)


@pytest.fixture
def shapes_catalog(shapes_home: Path, tmp_path: Path) -> Catalog:
    """A private copy of the shapes catalog (no model)."""
    cat = open_catalog(copy_home(shapes_home, tmp_path / "shapes-home"))
    yield cat
    cat.close()


@pytest.fixture
def trained_catalog(trained_home: Trained, tmp_path: Path) -> Catalog:
    """A private copy of the shapes catalog with its trained model v1."""
    cat = open_catalog(copy_home(trained_home.settings.home, tmp_path / "shapes-home"))
    yield cat
    cat.close()
