"""`slashcat demo` end to end with a tiny training budget, checked stage by stage."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.db import open_catalog
from catalog.models import CrawlRun, Image, Label, Model, Prediction, Product
from catalog.settings import Settings

from helpers.servers import fresh_schema

STORE = Path(__file__).resolve().parents[1] / "data/sample-store"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """The whole pipeline runs on both engines: "" is SQLite in the home folder."""
    if request.param == "sqlite":
        yield ""
        return
    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, demo_db: str) -> tuple[Path, str, str]:
    from typer.testing import CliRunner

    from cli.app import app

    home = tmp_path_factory.mktemp("demo") / "home"
    db = ["--db", demo_db] if demo_db else []
    args = [*db, "demo", "--home", str(home), "--time-budget", "0.15", "--image-size", "32"]
    runner = CliRunner()
    first = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    return home, first.output, second.output


def test_every_stage_reports(demo_home) -> None:
    _home, out, _again = demo_home
    for stage in ("storefront", "crawl", "dedupe", "train", "evaluate", "predict", "accept",
                  "export"):
        assert f"✓ {stage}" in out
    assert "slashcat demo done" in out
    assert "review" in out and "retrain" in out


def test_catalog_holds_each_stage_result(demo_home, demo_db: str) -> None:
    home, _out, _again = demo_home
    cat = open_catalog(Settings.load(home=home, db=demo_db or None, env={}), create=False)
    with cat.session() as s:
        assert s.scalar(select(func.count(Product.id))) == 372
        assert s.scalar(select(func.count(CrawlRun.id)).where(CrawlRun.kind == "crawl")) == 1
        assert s.scalar(select(func.count(Image.id)).where(Image.is_canonical.is_(False))) > 0
        model = s.scalar(select(Model).where(Model.active.is_(True)))
        assert model is not None and len(model.classes) == 8
        assert model.metrics["test"]["accuracy"] > 0.2  # tiny budget; the real demo trains longer
        uncategorised = 32
        assert s.scalar(
            select(func.count(Prediction.id)).where(Prediction.model_id == model.id)
        ) >= uncategorised
        accepted = s.scalar(select(func.count(Label.id)).where(Label.source == "model-accepted"))
    cat.close()
    assert (home / "models" / f"{model.version}-confusion.png").is_file()
    assert Path(model.path).is_file() or (home / model.path).is_file()
    with (home / "categories.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 372
    sources = {r["source"] for r in rows}
    assert "store" in sources and ("model" in sources or accepted)


def test_second_run_reuses_crawl_and_model(demo_home) -> None:
    _home, first, again = demo_home
    assert "already crawled" in again
    assert "reusing model" in again
    accuracy = [line for line in first.splitlines() if line.startswith("✓ evaluate")]
    assert accuracy and accuracy[0] in again


def test_the_demo_model_is_lite0_and_serves_like_the_library(demo_home, demo_db: str,
                                                             cli) -> None:  # type: ignore[no-untyped-def]
    """The default (pretrained) model through `models` and the web app, over real HTTP."""
    import requests

    from classifier.predict import Classifier
    from cli.web.app import create_app

    from helpers.web import start_in_thread

    home, _out, _again = demo_home
    db = ["--db", demo_db] if demo_db else []
    listing = cli(*db, "models", home_dir=home)
    assert listing.exit_code == 0 and "lite0" in listing.output
    photo = next((STORE / "images").glob("*.jpg")).read_bytes()
    cat = open_catalog(Settings.load(home=home, db=demo_db or None, env={}), create=False)
    running = None
    try:
        clf = Classifier.load(cat)
        expected = clf.classify_bytes(photo, 3)
        running = start_in_thread(create_app(cat, clf))
        files = [("files", ("p.jpg", photo, "image/jpeg"))]
        r = requests.post(running.url + "/api/classify", files=files, timeout=60)
    finally:
        if running is not None:
            running.stop()
        cat.close()
    assert r.status_code == 200, r.text
    got = r.json()["results"][0]["top_k"]
    assert [g["category"] for g in got] == [c for c, _p in expected]
    assert [g["confidence"] for g in got] == pytest.approx([p for _c, p in expected], abs=1e-4)
