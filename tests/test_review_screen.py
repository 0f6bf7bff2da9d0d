"""The review screen: driven in a real terminal (tmux), with Textual's pilot, and without a TTY."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.labels import current_labels
from catalog.models import Image, Label
from catalog.review import QueueFilter, ReviewSession, all_categories

from helpers.review import BAGS, TOP, WATCHES, ReviewData, Tmux, review_screen

# textual-image still calls Pillow's deprecated Image.getdata; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")


def current(data: ReviewData) -> dict[str, tuple[str, str]]:
    """Current label (category, source) by fixture product name."""
    names = {v: k for k, v in data.products.items()}
    with data.catalog.session() as s:
        return {names[c.product_id]: (c.category, c.source) for c in current_labels(s)}


def human_labels(data: ReviewData) -> list[Label]:
    with data.catalog.session() as s:
        return list(s.scalars(select(Label).where(Label.source == "human").order_by(Label.id)))


# --- a real terminal ------------------------------------------------------------------------


@pytest.fixture
def tmux(review_data: ReviewData) -> Iterator[Tmux]:
    with review_screen(review_data.catalog.settings.home, "--images", "halfcell") as t:
        yield t


def test_review_in_a_real_terminal(review_data: ReviewData, tmux: Tmux) -> None:
    screen = tmux.wait_for("1 / 5", "Striped tee, cotton", "2 duplicate images", "accept")
    assert "http://shop.test/p/p0" in screen and "Apparel > Topwear" in screen
    assert "40.0%" in screen and "▀" in screen  # the top-3 bars and the half-block picture

    tmux.keys("Enter")  # accept the top prediction
    tmux.wait_for("2 / 5", 'Slim "chino" trousers')
    assert current(review_data)["p0"] == (TOP, "human")

    tmux.keys("2")  # choose the second prediction
    tmux.wait_for("3 / 5", "Canvas sneaker")
    assert current(review_data)["p1"] == (TOP, "human")

    tmux.keys("c")  # pick any category by filtering
    tmux.wait_for("type to filter")
    tmux.keys("watch", literal=True)
    # Lower-case "watch" is the filter box; Bottomwear leaves the list once it is filtered.
    tmux.wait_for("watch", "Accessories > Watches", absent=("Apparel > Bottomwear",))
    tmux.keys("Enter")
    tmux.wait_for("4 / 5", "Trail runner")
    assert current(review_data)["p9"] == (WATCHES, "human")

    tmux.keys("s")  # skip: nothing written, next card, same position
    tmux.wait_for("4 / 5", "Leather tote", "Skipped")
    assert "p2" not in current(review_data)

    tmux.keys("u")  # undo the pick: a retraction, the card comes back
    tmux.wait_for("3 / 5", "Canvas sneaker", "Undid")
    assert "p9" not in current(review_data)
    assert [lb.category_id is None for lb in human_labels(review_data)][-1] is True

    tmux.keys("q")
    screen = tmux.wait_for("EXIT=0")
    assert "2 decisions (1 accepted, 1 corrected), 1 undone, 1 skipped" in screen.replace(
        "\n", " ")
    labels = human_labels(review_data)
    assert [(lb.model_version, lb.author is not None) for lb in labels[-4:] if lb.category_id] \
        == [("v1", True)] * 3


# --- Textual's pilot ------------------------------------------------------------------------


def run_app(data: ReviewData, script: Callable[..., object], opener=None) -> ReviewSession:  # type: ignore[no-untyped-def]
    from textual_image.widget import HalfcellImage

    from cli.review_screen import ReviewApp

    review = ReviewSession(data.catalog, QueueFilter(below=0.7), author="pilot")
    with data.catalog.session() as s:
        categories = all_categories(s)
    app = ReviewApp(review, categories, HalfcellImage, "test", opener=opener)

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await script(pilot, app)

    asyncio.run(main())
    return review


def status(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.query_one("#status").render())


def test_pilot_to_the_end_and_back(review_data: ReviewData) -> None:
    async def script(pilot, app) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("a", "a", "a", "a", "a")
        await pilot.pause()
        assert "Nothing left to review" in str(app.query_one("#title").render())
        await pilot.press("a")  # nothing to decide: harmless
        await pilot.press("u")
        await pilot.pause()
        assert "Leather tote" in str(app.query_one("#title").render())

    review = run_app(review_data, script)
    assert review.summary().decisions == 4
    assert current(review_data)["p2"][1] == "human" and "p3" not in current(review_data)


def test_pilot_pick_cancel_and_no_match_write_nothing(review_data: ReviewData) -> None:
    async def script(pilot, app) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("z", "z", "z", "enter")  # nothing matches: the picker stays open
        await pilot.pause()
        assert app.screen.__class__.__name__ == "PickScreen"
        await pilot.press("backspace", "backspace", "backspace", "b", "a", "g", "down", "enter")
        await pilot.pause()

    run_app(review_data, script)
    assert current(review_data)["p0"] == (BAGS, "human")
    assert len(human_labels(review_data)) == 2  # p7's earlier label and this one


def test_pilot_open_and_help(review_data: ReviewData) -> None:
    opened: list[str] = []

    async def script(pilot, app) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("o")
        await pilot.pause()
        assert "Opened" in status(app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("x")
        await pilot.pause()
        assert app.screen.__class__.__name__ != "HelpScreen"
        app.opener = lambda path: False
        await pilot.press("o")
        await pilot.pause()
        assert "No system image viewer" in status(app)

    run_app(review_data, script, opener=lambda path: opened.append(path) or True)
    assert len(opened) == 1 and Path(opened[0]).is_file()
    assert len(human_labels(review_data)) == 1


# --- no terminal ------------------------------------------------------------------------------


def test_without_a_terminal_review_names_the_batch_flag(review_data: ReviewData, cli) -> None:
    result = cli("review")
    assert result.exit_code == 1
    assert "--accept-above" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_batch_accept_from_the_command_line(review_data: ReviewData, cli) -> None:
    dry = cli("review", "--accept-above", "0.95", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would accept" in dry.stdout and "Accessories > Watches" in dry.stdout
    assert "Dry run" in dry.stdout and "p10" not in current(review_data)
    real = cli("review", "--accept-above", "0.95")
    assert real.exit_code == 0 and "Accepted" in real.stdout
    assert current(review_data)["p10"] == (WATCHES, "model-accepted")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accept-above", "1.5"], "--accept-above must be between 0 and 1"),
        (["--accept-above", "0.9", "--below", "0.5"], "--accept-above takes only"),
        (["--dry-run"], "--dry-run only applies to --accept-above"),
        (["--below", "-1"], "--below must be between 0 and 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--disagreements", "--below", "0.5"], "--below does not apply"),
        (["--model", "v9", "--accept-above", "0.9"], "no model 'v9'"),
    ],
)
def test_bad_review_input(review_data: ReviewData, cli, args: list[str], message: str) -> None:
    result = cli("review", *args)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_image_mode_is_refused_by_its_choices(review_data: ReviewData, cli) -> None:
    result = cli("review", "--images", "ascii")
    assert result.exit_code == 2 and "'ascii' is not one of" in result.output.replace("\n", " ")


def test_loading_the_cli_does_not_import_textual() -> None:
    code = ("import sys; import cli.app; "
            "print(any(m.startswith(('textual', 'textual_image')) for m in sys.modules))")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "False"


def test_pilot_missing_image_file_shows_a_placeholder(review_data: ReviewData) -> None:
    cat = review_data.catalog
    with cat.session() as s:
        path = s.get_one(Image, review_data.images["p0"]).path
    cat.store.path(path).unlink()

    async def script(pilot, app) -> None:  # type: ignore[no-untyped-def]
        placeholder = app.query_one("#no-image")
        assert placeholder.display and "unreadable" in str(placeholder.render())
        await pilot.press("enter")  # still reviewable
        await pilot.pause()
        assert not app.query_one("#no-image").display

    run_app(review_data, script)
    assert current(review_data)["p0"] == (TOP, "human")
