"""PostgreSQL as the catalog: migrations, faults, and every command through the real CLI.

The server comes from tests/helpers/servers.py (skipped without one, failed in CI). The
catalog-level tests of the other files also run here through the parametrised `catalog` fixture, and
tests/test_demo.py runs the whole pipeline on PostgreSQL.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text

from catalog.db import alembic_config, open_catalog
from catalog.models import Base, Image, Label, Model, Prediction, Product
from catalog.settings import Settings

from helpers.classifier import SHAPES, shape_image
from helpers.servers import PostgresServer, free_port, fresh_schema, pg_bin_dir, unavailable
from helpers.web import CliServer

EXE = Path(sys.executable).with_name("slashcat")


def run_cli(home: Path, db: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed `slashcat` console script in its own process."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([str(EXE), "--home", str(home), "--db", db, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_migrations_up_down_and_match_models(pg_catalog_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from alembic import command
    from catalog.db import make_engine

    cfg = alembic_config(pg_catalog_url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = make_engine(pg_catalog_url)
    with engine.connect() as conn:
        tables = conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )).scalars().all()
    assert set(tables) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_sixty_four_bit_hashes_round_trip(catalog_url: str, settings: Settings) -> None:
    """pHash/dHash are unsigned 64-bit; stored signed, they must come back bit for bit."""
    from catalog.dedupe.hashing import to_signed, unsigned

    cat = open_catalog(Settings.load(home=settings.home, db=catalog_url or None, env={}))
    values = [0, 1, 2**63 - 1, 2**63, 2**64 - 1]
    with cat.session() as s:
        s.add_all(Image(sha256=f"{i:064x}", size_bytes=1, phash=to_signed(v), dhash=to_signed(v))
                  for i, v in enumerate(values))
    with cat.session() as s:
        got = unsigned(list(s.scalars(select(Image.phash).order_by(Image.id)))).tolist()
    cat.close()
    assert got == values


def assert_one_line(r: subprocess.CompletedProcess, *expected: str) -> None:
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 1, out
    assert len(out.splitlines()) == 1, out
    assert "Traceback" not in out
    for part in expected:
        assert part in out, out


def test_server_down_at_start_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://shop:s3cret-pw@127.0.0.1:{port}/catalog"
    r = run_cli(tmp_path / "home", url, "stats")
    assert_one_line(r, f"shop:***@127.0.0.1:{port}/catalog", "Connection refused")
    assert "s3cret-pw" not in r.stdout + r.stderr


def test_missing_database_or_schema_is_one_line(postgres_url: str, tmp_path: Path) -> None:
    from helpers.servers import with_database, with_schema

    r = run_cli(tmp_path / "home", with_database(postgres_url, "no_such_db"), "init")
    assert_one_line(r, "cannot connect to the catalog at", 'database "no_such_db" does not exist')
    r = run_cli(tmp_path / "home", with_schema(postgres_url, "no_such_schema"), "init")
    assert_one_line(r, "cannot prepare the catalog at", "no schema has been selected")


def test_stopped_server_is_one_line(tmp_path: Path) -> None:
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        unavailable("no PostgreSQL binaries to start and stop a server of this test's own")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.start()
        assert run_cli(tmp_path / "home", server.url, "init").returncode == 0
    finally:
        server.stop()
    r = run_cli(tmp_path / "home", server.url, "stats")
    assert_one_line(r, f"cannot connect to the catalog at {server.url}")


def test_two_processes_create_one_catalog_at_once(postgres_url: str, tmp_path: Path) -> None:
    for _ in range(2):  # races are timing-dependent: two fresh catalogs
        with fresh_schema(postgres_url) as url:
            procs = [
                subprocess.Popen([str(EXE), "--home", str(tmp_path / f"h{i}"), "--db", url, "init"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for i in range(3)
            ]
            outs = [(p.wait(120), p.stdout.read() if p.stdout else "") for p in procs]
            assert [rc for rc, _ in outs] == [0, 0, 0], outs
            cat = open_catalog(Settings.load(home=tmp_path / "h0", db=url, env={}))
            with cat.session() as s:
                assert s.scalar(select(func.count()).select_from(Product)) == 0
            cat.close()


# --- every command on one PostgreSQL catalog ---------------------------------------------------

PER_CLASS = 16
UNLABELLED = 6


def photo_folder(root: Path) -> Path:
    """Category sub-folders of real PNG files (the import layout), plus unlabelled shapes."""
    seed = 0
    for category, (shape, colour) in SHAPES.items():
        folder = root.joinpath(*category.split(" > "))
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            seed += 1
            (folder / f"{shape}-{i}.png").write_bytes(shape_image(shape, colour, seed))
    for i in range(UNLABELLED):
        seed += 1
        shape, colour = list(SHAPES.values())[i % len(SHAPES)]
        (root / f"new-{i}.png").write_bytes(shape_image(shape, colour, seed))
    # A near-duplicate pair for dedupe.
    (root / "dup-a.png").write_bytes(shape_image("circle", (220, 40, 40), 999, size=160))
    (root / "dup-b.jpg").write_bytes(shape_image("circle", (220, 40, 40), 999, size=160,
                                                 fmt="JPEG"))
    return root


@dataclass
class Pipeline:
    home: Path
    db: str
    out: dict[str, str]


@pytest.fixture(scope="module")
def pipeline(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """init, import, dedupe, train, evaluate, predict, classify, review --accept-above, export,
    retrain, doctor, stats: each through the real CLI on one PostgreSQL catalog."""
    from typer.testing import CliRunner

    from cli.app import app

    base = tmp_path_factory.mktemp("pg-pipeline")
    photos = photo_folder(base / "photos")
    home = base / "home"
    out: dict[str, str] = {}
    runner = CliRunner()  # in this process: TensorFlow loads once, not once per command
    with fresh_schema(postgres_url) as db:
        steps: list[tuple[str, list[str]]] = [
            ("init", ["init"]),
            ("import", ["import", str(photos), "--store-name", "shapes", "--workers", "1"]),
            ("import-again", ["import", str(photos), "--store-name", "shapes", "--workers", "1"]),
            ("dedupe", ["dedupe"]),
            ("train", ["train", "--image-size", "32", "--epochs", "4", "--batch-size", "16",
                       "--min-per-class", "5", "--seed", "1"]),
            ("evaluate", ["evaluate"]),
            ("predict", ["predict"]),
            ("classify", ["classify", str(photos / "new-0.png"), "--json"]),
            ("review", ["review", "--accept-above", "0.3"]),
            ("export", ["export", str(base / "out.csv")]),
            ("retrain", ["retrain", "--epochs", "2"]),
            ("doctor", ["doctor"]),
            ("stats", ["stats"]),
        ]
        for name, args in steps:
            r = runner.invoke(app, ["--home", str(home), "--db", db, *args],
                              env={"COLUMNS": "200"})
            out[name] = r.output
            assert r.exit_code == 0, f"slashcat {' '.join(args)}:\n{r.output}"
        yield Pipeline(home, db, out)


def count(db: str, home: Path, query: Any) -> int:
    cat = open_catalog(Settings.load(home=home, db=db, env={}), create=False)
    try:
        with cat.session() as s:
            return int(s.scalar(query) or 0)
    finally:
        cat.close()


@pytest.mark.slow
@pytest.mark.timeout(1200)  # twelve commands, two trainings, on a shared machine
def test_every_command_runs_on_postgres(pipeline: Pipeline) -> None:
    products = len(SHAPES) * PER_CLASS + UNLABELLED + 2
    db, home = pipeline.db, pipeline.home
    assert count(db, home, select(func.count(Product.id))) == products
    assert count(db, home, select(func.count(Image.id)).where(Image.is_canonical.is_(False))) == 1
    assert count(db, home, select(func.count(Model.id))) == 2  # train + retrain
    assert count(db, home, select(func.count(Prediction.id))) >= UNLABELLED
    assert count(db, home, select(func.count(Label.id)).where(Label.source == "store")) == (
        len(SHAPES) * PER_CLASS)
    with (pipeline.home.parent / "out.csv").open(newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == products
    assert '"top_k"' in pipeline.out["classify"] or "Toys" in pipeline.out["classify"]
    assert "problems" not in pipeline.out["doctor"].lower() or "0" in pipeline.out["doctor"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_serve_answers_from_a_postgres_catalog(pipeline: Pipeline) -> None:
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [str(EXE), "--home", str(pipeline.home), "--db", pipeline.db, "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    server = CliServer(pipeline.home, proc)
    threading.Thread(target=server.read, daemon=True).start()
    try:
        server.wait_ready()
        health = requests.get(server.url + "/api/health", timeout=10).json()
        assert health["model"]["version"] == "v2" or health["model"]["version"].startswith("v")
        files = {"files": ("ball.png", shape_image("circle", (220, 40, 40), 5), "image/png")}
        r = requests.post(server.url + "/api/classify", files=files, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        server.stop()


@pytest.mark.slow
def test_crawl_into_postgres(storefront: Any, pg_catalog_url: str, tmp_path: Path) -> None:
    from scraper.run import CrawlOptions, crawl

    settings = Settings.load(home=tmp_path / "home", db=pg_catalog_url, env={})
    cat = open_catalog(settings)
    try:
        options = CrawlOptions(autothrottle=False, retry_backoff_s=0.05)
        first = crawl(cat, storefront.url, options=options)
        facts = storefront.facts()
        with cat.session() as s:
            urls = set(s.scalars(select(Product.url)))
            products = len(urls)
            images = s.scalar(select(func.count(Image.id)))
            stored = s.scalar(select(func.count(Image.id)).where(Image.path.is_not(None)))
        assert urls == {p["url"] for p in facts.products.values()}
        assert first.products_new == products
        truncated = facts.products[facts.fixtures["truncated_image"]]["image_urls"][0]
        good = {sha for url, sha in facts.image_sha256.items() if url != truncated}
        assert stored == len(good) == first.images_new
        crawl(cat, storefront.url, options=options)
        with cat.session() as s:
            assert s.scalar(select(func.count(Product.id))) == products
            assert s.scalar(select(func.count(Image.id))) == images
    finally:
        cat.close()


def test_export_and_predict_stream_through_server_side_cursors(
        pg_catalog_url: str, tmp_path: Path) -> None:
    """Named (server-side) cursors: memory stays flat however many rows there are."""
    import psycopg
    from sqlalchemy import event

    from catalog.export import export_to_path
    from classifier.predict import PredictReport, plan_work

    from helpers.classifier import add_product

    cat = open_catalog(Settings.load(home=tmp_path / "home", db=pg_catalog_url, env={}))
    add_product(cat, "http://shapes.test/a", shape_image("circle", (220, 40, 40), 1), None)
    streamed: list[str] = []

    @event.listens_for(cat.engine, "before_cursor_execute")
    def _seen(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if isinstance(cursor, psycopg.ServerCursor):
            streamed.append(statement.split("FROM", 1)[1].split()[0])

    try:
        with cat.session() as s:
            assert export_to_path(s, tmp_path / "out.csv") == 1
        assert {"products", "product_images", "labels"} <= set(streamed)
        streamed.clear()
        with cat.session() as s:
            plan_work(s, cat, 0, "all", PredictReport("v0", "all"))
        assert "product_images" in streamed
    finally:
        cat.close()


# --- two writers, one image ----------------------------------------------------------------------


def _store_image_as(home: str, url: str, product_url: str, data: bytes, go: Any,
                    results: Any) -> None:
    """One writer process (as a crawl worker writing to PostgreSQL): save one product whose
    image is `data`, once `go` is set; put what save_batch said on `results`."""
    from catalog.images import Limits
    from scraper.extract import ProductData
    from scraper.persist import FetchedImage, prepare_images, save_batch

    settings = Settings.load(home=Path(home), db=url, env={})
    with open_catalog(settings, create=False) as catalog:
        limits = Limits(settings.max_pixels, settings.max_image_bytes, 16)
        images = [FetchedImage("http://shop.test/same.jpg", "fetched", 200, data)]
        go.wait(60)
        prepare_images(catalog.store, images, limits)
        store_id = 1
        [result] = save_batch(catalog, store_id, [(ProductData(url=product_url), images)], limits)
        results.put(result if isinstance(result, str) else result.product)


def _lock_waits(conn: Any) -> list[str]:
    """What the other backends of this database wait on, e.g. ['relation', 'transactionid']."""
    return sorted(conn.execute(text(
        "SELECT wait_event FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalars())


def test_two_writers_store_the_same_image_at_the_same_moment(
        pg_catalog_url: str, tmp_path: Path, make_image: Any) -> None:
    """Two processes insert the same image row, the second while the first has not committed:
    the second waits for the first, then finds its row. One row, one file, both products."""
    import multiprocessing as mp
    import time

    from scraper.persist import start_run

    settings = Settings.load(home=tmp_path, db=pg_catalog_url, env={})
    with open_catalog(settings) as catalog:
        assert start_run(catalog, "shop", "http://shop.test/", {})[0] == 1
        # The race on purpose: this lock on image_sources stops the first writer just after it
        # inserted the image row (uncommitted); the second then inserts the same row.
        holder = catalog.engine.connect()
        holder.execute(text("LOCK TABLE image_sources IN EXCLUSIVE MODE"))
        watcher = catalog.engine.connect()
        ctx = mp.get_context("spawn")
        go, results = ctx.Event(), ctx.Queue()
        data = make_image(size=(96, 96))
        procs = [ctx.Process(target=_store_image_as, args=(str(tmp_path), pg_catalog_url,
                                                          f"http://shop.test/p{i}", data, go,
                                                          results))
                 for i in range(2)]
        try:
            for p in procs:
                p.start()
            go.set()
            deadline = time.monotonic() + 90
            waits: list[str] = []
            while waits != ["relation", "transactionid"] and time.monotonic() < deadline:
                time.sleep(0.1)
                waits = _lock_waits(watcher)
                watcher.rollback()
            # One writer holds the new image row and waits for image_sources; the other waits
            # for the first's transaction to end, to know whether its own insert conflicts.
            assert waits == ["relation", "transactionid"], "the second writer never waited"
        finally:
            holder.rollback()
            holder.close()
            watcher.close()
            for p in procs:
                p.join(60)
        assert sorted(results.get(timeout=10) for _ in procs) == ["new", "new"]
        assert [p.exitcode for p in procs] == [0, 0]
        with catalog.session() as s:
            assert s.scalar(select(func.count(Image.id))) == 1
            assert s.scalar(select(func.count(Product.id))) == 2
            assert s.scalar(text("SELECT count(*) FROM product_images")) == 2
            assert s.scalar(text("SELECT count(*) FROM image_sources")) == 1
    assert len([p for p in (tmp_path / "images").rglob("*") if p.is_file()]) == 1


def test_two_writers_create_the_same_new_category_at_once(pg_catalog_url: str,
                                                          tmp_path: Path) -> None:
    """A crawl and an import both bring the new category "Bags > Totes": the second insert
    waits for the first transaction, then finds its row instead of failing on the unique name."""
    import time

    from sqlalchemy.orm import Session

    from catalog.categories import ensure_category
    from catalog.models import Category

    with open_catalog(Settings.load(home=tmp_path, db=pg_catalog_url, env={})) as catalog:
        first, watcher = Session(catalog.engine), catalog.engine.connect()
        got: list[Any] = []

        def second() -> None:
            with Session(catalog.engine) as session:
                try:
                    got.append(ensure_category(session, "Bags > Totes").id)
                    session.commit()
                except Exception as exc:  # what the user would have seen
                    got.append(type(exc).__name__)

        thread = threading.Thread(target=second)
        try:
            made = ensure_category(first, "Bags > Totes").id  # inserted, not committed yet
            thread.start()
            deadline = time.monotonic() + 30
            while _lock_waits(watcher) != ["transactionid"] and time.monotonic() < deadline:
                watcher.rollback()
                time.sleep(0.05)
            waits = _lock_waits(watcher)
            first.commit()
        finally:
            first.close()
            watcher.close()
            thread.join(30)
        assert waits == ["transactionid"], "the second writer never waited"
        assert got == [made]
        with catalog.session() as s:
            names = sorted(s.scalars(select(Category.name)))
    assert names == ["Bags", "Bags > Totes"]


# --- the connection lost mid-crawl ---------------------------------------------------------------


def _end_other_connections(conn: Any) -> int:
    """pg_terminate_backend on every other connection to this database (the crawl's)."""
    ended = conn.execute(text(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'")).scalar()
    conn.commit()
    return int(ended or 0)


@pytest.mark.slow
def test_connection_lost_mid_crawl_loses_no_product(storefront: Any, pg_catalog_url: str,
                                                    tmp_path: Path) -> None:
    """The server ends the crawl's connections (as a restart or an admin would) several times
    while it writes: the crawl reconnects and retries the batch; no product is lost. (If it
    ever stops instead, it must say so in one line and `--resume` must complete it.)"""
    import time

    from sqlalchemy import create_engine

    facts = storefront.facts()
    home = tmp_path / "home"
    run_cli(home, pg_catalog_url, "init")
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}  # the URL is long: no wrapping
    proc = subprocess.Popen([str(EXE), "--home", str(home), "--db", pg_catalog_url, "crawl",
                             storefront.url, "--store-name", "shop"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    engine = create_engine(pg_catalog_url)
    kills, total = [], len(facts.products)
    try:
        with engine.connect() as conn:
            # Every 0.2 s from the first stored product on, so some kills land mid-batch.
            while proc.poll() is None and len(kills) < 25:
                stored = conn.execute(text("SELECT count(*) FROM products")).scalar() or 0
                conn.commit()
                if stored >= total:
                    break
                if stored and _end_other_connections(conn):
                    kills.append(stored)
                time.sleep(0.2)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert kills, "the crawl finished before any connection was ended"
    assert "Traceback" not in out, out
    if proc.returncode != 0:  # stopped cleanly: one line, and --resume completes the crawl
        assert len(out.strip().splitlines()) == 1, out
        again = run_cli(home, pg_catalog_url, "crawl", storefront.url, "--store-name", "shop",
                        "--resume")
        assert again.returncode == 0, again.stdout + again.stderr
    with engine.connect() as conn:
        urls = list(conn.execute(text("SELECT url FROM products")).scalars())
        shas = list(conn.execute(text(
            "SELECT sha256 FROM images WHERE rejected_reason IS NULL")).scalars())
        errors = conn.execute(text("SELECT errors FROM crawl_runs ORDER BY id LIMIT 1")).scalar()
    engine.dispose()
    assert sorted(urls) == sorted(p["url"] for p in facts.products.values()), (kills, out)
    truncated = facts.products[facts.fixtures["truncated_image"]]["image_urls"][0]
    good = {sha for url, sha in facts.image_sha256.items() if url != truncated}
    assert sorted(shas) == sorted(good)
    files = [p for p in (home / "images").rglob("*") if p.is_file()
             and not p.name.startswith(".tmp-")]
    assert len(files) == len(good)
    assert proc.returncode != 0 or errors == 0, out  # finished: no item reported lost either


@pytest.mark.slow
@pytest.mark.parametrize("frontier", ["single", "redis"])
def test_server_down_mid_crawl_stops_in_one_line_and_resume_completes(
        storefront: Any, tmp_path: Path, frontier: str, request: pytest.FixtureRequest) -> None:
    """The catalog's server goes down for longer than the retries wait: the crawl stops with one
    line saying so, and once the server is back `crawl --resume` stores every product. On Redis
    the workers keep the requests of the products they could not store, and the resumed job
    fetches them again."""
    import time

    from sqlalchemy import create_engine

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        unavailable("no PostgreSQL binaries to stop and restart a server of this test's own")
    assert bin_dir is not None
    server = PostgresServer(bin_dir, crash_safe=True)  # halted: committed rows stay
    home = tmp_path / "home"
    try:
        server.start()
        assert run_cli(home, server.url, "init").returncode == 0
        env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}  # the URL is long: no wrapping
        shared = (["--redis", request.getfixturevalue("redis_url"), "--workers", "2"]
                  if frontier == "redis" else [])
        crawl_args = [str(EXE), "--home", str(home), "--db", server.url, "crawl", storefront.url,
                      "--store-name", "shop", *shared]
        proc = subprocess.Popen(crawl_args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        engine = create_engine(server.url)
        try:
            with engine.connect() as conn:
                while proc.poll() is None:
                    stored = conn.execute(text("SELECT count(*) FROM products")).scalar() or 0
                    conn.commit()
                    if stored >= 10:
                        break
                    time.sleep(0.05)
        finally:
            engine.dispose()
        assert proc.poll() is None, "the crawl finished before the server went down"
        server.halt()
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 1, out
        assert out.strip().splitlines() == [out.strip()], out
        assert "lost the connection to the catalog" in out and "--resume" in out, out
        assert "Traceback" not in out
        server.restart()
        again = run_cli(home, server.url, "crawl", storefront.url, "--store-name", "shop",
                        "--resume", *shared)
        assert again.returncode == 0, again.stdout + again.stderr
        if frontier == "single":  # its job folder counts unsaved pages as seen: crawled anew
            assert "cannot resume shop: the last crawl lost its catalog" in again.stdout
        else:  # the Redis job goes on from its queue and the held requests
            assert "cannot resume" not in again.stdout, again.stdout
        facts = storefront.facts()
        engine = create_engine(server.url)
        with engine.connect() as conn:
            urls = list(conn.execute(text("SELECT url FROM products")).scalars())
        engine.dispose()
        assert sorted(urls) == sorted(p["url"] for p in facts.products.values())
    finally:
        server.stop()
