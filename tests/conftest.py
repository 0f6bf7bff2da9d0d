"""Shared fixtures: a fresh home folder and catalog per test, and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.db import Catalog, open_catalog
from catalog.settings import Settings

from helpers import jpeg_bytes


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(home=tmp_path / "home", env={})


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest) -> str:
    """The catalog-level tests run on both engines: "" is SQLite in the home folder; the other
    is an empty PostgreSQL schema (tests/helpers/servers.py; skipped without a server, failed
    in CI)."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_catalog_url")


@pytest.fixture
def catalog(settings: Settings, catalog_url: str) -> Catalog:
    cat = open_catalog(Settings.load(home=settings.home, db=catalog_url or None, env={}))
    yield cat
    cat.close()


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., object]:
    """Run `slashcat --home <tmp>/home ARGS...`; returns the click Result."""
    from cli.app import app

    runner = CliRunner()
    home = tmp_path / "home"

    def run(*args: str, input: str | None = None, home_dir: Path | None = None):
        return runner.invoke(
            app, ["--home", str(home_dir or home), *args], input=input, env={"COLUMNS": "200"}
        )

    return run


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    return jpeg_bytes


# The fixture modules of the feature areas (tests/helpers/); each adds itself here.
pytest_plugins: list[str] = [
    "helpers.classifier", "helpers.dedupe", "helpers.review", "helpers.shop", "helpers.web",
    "helpers.servers",
]
