"""Shared fixtures: a fresh home folder and catalog per test, and a CLI runner."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.db import Catalog, open_catalog
from catalog.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(home=tmp_path / "home", env={})


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest) -> str:
    """The catalog-level tests run on both engines: "" is SQLite in the home folder; the other
    is an empty PostgreSQL schema (tests/servers.py; skipped without a server, failed in CI)."""
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


def jpeg_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 30, 30),
               seed: int = 0, fmt: str = "JPEG") -> bytes:
    """A real image with some texture (so perceptual hashes differ by seed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(color, dtype=np.uint8)
    blocks = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    tex = np.kron(blocks, np.ones((size[1] // 8 + 1, size[0] // 8 + 1, 1), dtype=np.uint8))
    arr = ((base.astype(int) + tex[: size[1], : size[0]]) // 2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    return jpeg_bytes


# Fixture modules of the feature areas (tests/fixtures_*.py); each adds itself here.
pytest_plugins: list[str] = [
    "fixtures_classifier", "fixtures_dedupe", "fixtures_review", "fixtures_store", "fixtures_web",
    "servers",
]
