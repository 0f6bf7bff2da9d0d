"""The catalog database: migrations, pragmas, version guard, locking."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from catalog.db import alembic_config, head_revision, make_engine, open_catalog, upgrade
from catalog.errors import CatalogLocked, CatalogNotFound, CatalogTooNew
from catalog.models import Base
from catalog.settings import Settings

from helpers import jpeg_bytes


def test_migrations_up_down_and_match_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from alembic import command

    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).all()
    assert {t[0] for t in tables} <= {"alembic_version"}
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_open_creates_and_sets_pragmas(settings: Settings) -> None:
    cat = open_catalog(settings)
    with cat.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    cat.close()
    assert (settings.home / "catalog.db").exists()


def test_open_missing_catalog_without_create(settings: Settings) -> None:
    with pytest.raises(CatalogNotFound, match="slashcat init"):
        open_catalog(settings, create=False)


def test_refuses_catalog_newer_than_code(settings: Settings) -> None:
    open_catalog(settings).close()
    engine = make_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(CatalogTooNew, match="newer"):
        upgrade(engine)
    engine.dispose()


def test_reopen_is_at_head(settings: Settings) -> None:
    from catalog.db import current_revision

    open_catalog(settings).close()
    cat = open_catalog(settings)
    assert current_revision(cat.engine) == head_revision()
    cat.close()


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_locked_by_another_process(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "home", env={}, busy_timeout_s=0.3)
    open_catalog(settings).close()
    proc = hold_lock(settings.home / "catalog.db", 5)
    try:
        cat = open_catalog(settings)
        started = time.monotonic()
        with pytest.raises(CatalogLocked, match="locked by another process"), cat.session() as s:
            from catalog.ingest import get_or_create_store

            get_or_create_store(s, "x", "http://x")
        assert time.monotonic() - started < 3
        cat.close()
    finally:
        proc.kill()
        proc.wait()


def test_cli_reports_lock_in_one_line(tmp_path: Path, cli) -> None:
    assert cli("init").exit_code == 0
    proc = hold_lock(tmp_path / "home" / "catalog.db", 5)
    try:
        from typer.testing import CliRunner

        from cli.app import app

        result = CliRunner().invoke(
            app, ["--home", str(tmp_path / "home"), "import", str(tmp_path)],
            env={"SLASHCAT_BUSY_TIMEOUT_S": "0.3", "COLUMNS": "200"},
        )
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 1
    assert "locked by another process" in result.output
    assert "Traceback" not in result.output


def test_ingest_item_is_the_per_item_form_of_the_one_ingest_path(catalog) -> None:
    from sqlalchemy import func, select

    from catalog.ingest import get_or_create_store, ingest_item
    from catalog.labels import current_labels
    from catalog.models import Image, ProductImage

    data = jpeg_bytes(seed=7)
    with catalog.session() as s:
        store = get_or_create_store(s, "shop", "http://shop.test/")
        first = ingest_item(s, catalog.store, store.id, "http://shop.test/a", data,
                            "http://shop.test/a.jpg", title="A", category_path="Shoes")
        again = ingest_item(s, catalog.store, store.id, "http://shop.test/a", data,
                            "http://shop.test/a.jpg", title="A", category_path="Shoes")
        bad = ingest_item(s, catalog.store, store.id, "http://shop.test/b", b"<html>",
                          title="B", category_path="Bags")
    assert (first.product_status, first.image.status, first.linked) == ("new", "new", True)
    assert (again.product_status, again.image.status, again.linked) == (
        "unchanged", "duplicate", False)
    assert (bad.product_status, bad.image.status, bad.linked) == ("new", "rejected", False)
    with catalog.session() as s:
        assert s.scalar(select(func.count(ProductImage.id))) == 1
        assert s.scalar(select(func.count(Image.id)).where(Image.path.is_not(None))) == 1
        labels = {lab.product_id: lab.category for lab in current_labels(s)}
    assert labels == {first.product.id: "Shoes", bad.product.id: "Bags"}
