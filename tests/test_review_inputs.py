"""Review with a title-aware model's per-input guesses: the card says which input drove the
prediction, and --disagreements surfaces products whose title and picture disagree.

The review catalog (helpers/review.py) gets per-input guesses written into its predictions:
  p2 "Trail runner" (Shoes 0.55): title says Shoes 0.95, picture says Bags 0.90 -> a
     disagreement (both >= INPUTS_DISAGREE_CONFIDENCE), the prediction follows the title;
  p3 "Leather tote" (Bags 0.65): title Watches 0.60, picture Bags 0.85 -> explained on the
     card but not sure enough to be a disagreement;
  p4 "Plain hoodie": both say Topwear -> nothing to explain.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.categories import ensure_category
from catalog.models import Prediction
from catalog.review import QueueFilter, load_item, queue_ids

from helpers.review import (
    BAGS,
    SHOES,
    TOP,
    WATCHES,
    ReviewData,
    Tmux,
    review_screen,
    slashcat_command,
)

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")

GUESSES = {  # product: (picture's guess, title's guess)
    "p2": ((BAGS, 0.90), (SHOES, 0.95)),
    "p3": ((BAGS, 0.85), (WATCHES, 0.60)),
    "p4": ((TOP, 0.90), (TOP, 0.97)),
}
P2_WHY = "title says Footwear > Shoes (95%), picture says Accessories > Bags (90%)"


@pytest.fixture
def guessed(review_data: ReviewData) -> ReviewData:
    with review_data.catalog.session() as s:
        for name, ((image, p_image), (title, p_title)) in GUESSES.items():
            pred = s.get_one(Prediction, review_data.predictions[name])
            pred.image_category_id = ensure_category(s, image).id
            pred.image_confidence = p_image
            pred.title_category_id = ensure_category(s, title).id
            pred.title_confidence = p_title
    return review_data


def item(data: ReviewData, name: str):  # type: ignore[no-untyped-def]
    with data.catalog.session() as s:
        return load_item(s, data.catalog.store.path, data.predictions[name])


def queue(data: ReviewData, **kw: object) -> list[str]:
    with data.catalog.session() as s:
        return [data.name_of_prediction(i)
                for i in queue_ids(s, QueueFilter(**kw))]  # type: ignore[arg-type]


def test_the_card_says_which_input_drove_the_prediction(guessed: ReviewData) -> None:
    assert item(guessed, "p2").explanation() == f"{P2_WHY}: the prediction follows the title"
    assert item(guessed, "p3").explanation() == (
        "title says Accessories > Watches (60%), picture says Accessories > Bags (85%): "
        "the prediction follows the picture")
    assert item(guessed, "p4").explanation() is None  # they agree
    assert item(guessed, "p0").explanation() is None  # no per-input guesses (image-only model)
    assert item(guessed, "p5").reasons() == [f"store says {BAGS}"]


def test_disagreements_add_title_picture_conflicts(guessed: ReviewData) -> None:
    # store contradictions p5 (0.97), p8 (0.92), then p2 (0.55): most confident first;
    # p3's title is not sure enough (0.60 < 0.8), p4's inputs agree
    assert queue(guessed, disagreements=True) == ["p5", "p8", "p2"]
    assert queue(guessed, disagreements=True, category="Footwear") == ["p2"]
    assert queue(guessed, below=0.7) == ["p0", "p1", "p9", "p2", "p3"]  # the usual queue


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([*slashcat_command(), "--home", str(home), *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_disagreements_listing_in_a_script(guessed: ReviewData) -> None:
    out = run(guessed.catalog.settings.home, "review", "--disagreements", "--list")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "│" in line]
    rows = [next(t for t in ("Steel watch", "Cargo shorts", "Trail runner") if t in line)
            for line in lines if any(t in line for t in ("watch", "shorts", "runner"))]
    assert rows == ["Steel watch", "Cargo shorts", "Trail runner"]
    assert P2_WHY in out.stdout and f"store says {BAGS}" in out.stdout
    assert "3 products" in out.stdout
    bad = run(guessed.catalog.settings.home, "review", "--list", "--accept-above", "0.9")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


@pytest.fixture
def tmux_disagreements(guessed: ReviewData) -> Iterator[Tmux]:
    with review_screen(guessed.catalog.settings.home, "--disagreements", "--images", "halfcell",
                       width=160) as t:
        yield t


def test_disagreements_screen_explains_the_conflict(tmux_disagreements: Tmux) -> None:
    t = tmux_disagreements
    t.wait_for("1 / 3", "Steel watch", "disagreements", absent=("title says",))
    t.keys("s")
    t.wait_for("1 / 3", "Cargo shorts")
    t.keys("s")
    screen = t.wait_for("1 / 3", "Trail runner", "title says")
    flat = " ".join(screen.split())
    assert f"{P2_WHY}: the prediction follows the title" in flat, screen
    t.keys("q")
    t.wait_for("EXIT=0")
