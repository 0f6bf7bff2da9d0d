"""A crash-test harness, as databases have (issue 18): `crawl`, `import` and `train` are killed
with SIGKILL at seeded random moments spread over their run, restarted, and the catalog's
invariants are checked after every restart. Real processes, a real shop over HTTP.

Each command runs in chains: a fresh home, a few kills at rising moments (stratified over the
length of a clean run, so the early, middle and late parts of the work are all hit), then a run
to completion whose catalog must equal a clean run's. After every kill: no process of the
command left, no traceback printed, every image row has its file, no duplicate rows. After
completion also: every stored file has its row, and the counts equal the clean run's.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_reliability import (
    assert_no_traceback,
    count,
    make_folder,
    output,
    session_members,
    slashcat,
    start,
)

from scraper.demoshop import SAMPLE_SHOP, DemoShop

SEED = int(os.environ.get("TEST_SLASHCAT_CRASH_SEED", "18"))
KILLS = int(os.environ.get("TEST_SLASHCAT_CRASH_KILLS", "20"))
CHAIN = 10  # kills per fresh home
SHOP_PRODUCTS = 24
TEMP_PREFIX = ".tmp-"


@dataclass
class Tally:
    name: str
    kills: list[float] = field(default_factory=list)  # seconds after start
    landed: int = 0  # the process was still working when killed
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.name}: {len(self.kills)} kill points ({self.landed} while working), "
                f"{len(self.violations)} violations")


def kill_at(home: Path, args: list[str], moment: float, tally: Tally) -> None:
    """Start the command, SIGKILL its own process `moment` s later, check what is left."""
    proc = start(home, *args)
    try:
        proc.wait(moment)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, 9)
        proc.wait(30)
        tally.landed += 1
    tally.kills.append(round(moment, 2))
    end = time.monotonic() + 15
    while session_members(proc.pid) and time.monotonic() < end:
        time.sleep(0.05)
    left = session_members(proc.pid)
    for pid in left:
        os.kill(pid, 9)
    if left:
        tally.violations.append(f"kill at {moment:.2f}s: processes left behind {left}")
    out = proc.communicate(timeout=30)[0] or ""
    if "Traceback" in out:
        tally.violations.append(f"kill at {moment:.2f}s: traceback\n{out[-2000:]}")
    tally.violations += [f"kill at {moment:.2f}s: {v}" for v in catalog_violations(home)]


def catalog_violations(home: Path, complete: bool = False) -> list[str]:
    """What must hold after any kill (and, when `complete`, after a finished run)."""
    db_path = home / "catalog.db"
    if not db_path.exists():
        return []
    found = []
    with sqlite3.connect(db_path, timeout=30) as db:
        tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"images", "products", "product_images", "models"} <= tables:
            return []  # killed before the schema was made (the next run makes it)
        rows = {p for (p,) in db.execute("SELECT path FROM images WHERE path IS NOT NULL")}
        models = {p for (p,) in db.execute("SELECT path FROM models WHERE path != ''")}
        for sql, what in [
            ("SELECT count(*) - count(DISTINCT sha256) FROM images", "duplicate images"),
            ("SELECT count(*) - count(DISTINCT store_id || ' ' || url) FROM products",
             "duplicate products"),
            ("SELECT count(*) - count(DISTINCT product_id || ' ' || image_id) "
             "FROM product_images", "duplicate image links"),
        ]:
            if n := db.execute(sql).fetchone()[0]:
                found.append(f"{n} {what}")
    missing = sorted(p for p in rows | models if not (home / p).is_file())
    if missing:
        found.append(f"{len(missing)} rows without their file, e.g. {missing[0]}")
    if complete:
        stored = {p.relative_to(home).as_posix() for p in stored_files(home)}
        extra = sorted(stored - rows - models)
        if extra:
            found.append(f"{len(extra)} files without their row, e.g. {extra[0]}")
    return found


def stored_files(home: Path) -> Iterator[Path]:
    """Image and model files, not the temp files a kill leaves mid-write (doctor removes
    those; they never carry a name a row could point at)."""
    for folder, pattern in ((home / "images", "*"), (home / "models", "*.keras")):
        if folder.exists():
            for p in folder.rglob(pattern):
                if p.is_file() and not p.name.startswith(TEMP_PREFIX):
                    yield p


def counts(home: Path) -> dict[str, int]:
    tables = ("products", "images", "product_images", "categories", "labels", "image_sources")
    return {t: count(home, t) for t in tables}


def run_harness(tmp_path: Path, name: str, args: list[str], setup: Callable[[Path], None],
                kills: int, summary: Callable[[Path], dict[str, int]] = counts) -> Tally:
    tally = Tally(name)
    clean_home = tmp_path / f"{name}-clean"
    setup(clean_home)
    started = time.monotonic()
    clean = slashcat(clean_home, *args)
    clean_s = time.monotonic() - started
    assert clean.returncode == 0, output(clean)
    assert_no_traceback(output(clean))
    expected = summary(clean_home)
    rng = random.Random(f"{SEED}-{name}")
    for chain in range(-(-kills // CHAIN)):
        home = tmp_path / f"{name}-{chain}"
        setup(home)
        n = min(CHAIN, kills - chain * CHAIN)
        # Stratified: one moment in each n-th of the clean run's length, rising.
        for i in range(n):
            kill_at(home, args, clean_s * (i + rng.random()) / n, tally)
        done = slashcat(home, *args)
        if done.returncode != 0 or "Traceback" in output(done):
            tally.violations.append(f"chain {chain}: the run after the kills failed:\n"
                                    f"{output(done)[-2000:]}")
        tally.violations += [f"chain {chain}: {v}" for v in catalog_violations(home, True)]
        got = summary(home)
        if got != expected:
            tally.violations.append(f"chain {chain}: counts {got} != a clean run's {expected}")
    print(tally.line(), "moments:", tally.kills)
    return tally


# --------------------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoShop]:
    """The demo shop cut to a few dozen products (same pages, same images)."""
    root = tmp_path_factory.mktemp("small-shop")
    manifest = json.loads((SAMPLE_SHOP / "products.json").read_text())
    manifest["products"] = manifest["products"][:SHOP_PRODUCTS]
    manifest["fixtures"] = {}
    manifest["image_root"] = str(SAMPLE_SHOP / manifest["image_root"])
    (root / "products.json").write_text(json.dumps(manifest))
    with DemoShop(root) as shop:
        yield shop


@pytest.mark.crash
def test_crawl_survives_kills(tmp_path: Path, small_shop: DemoShop) -> None:
    args = ["crawl", small_shop.url, "--store-name", "demo", "--resume"]
    tally = run_harness(tmp_path, "crawl", args, lambda home: None, KILLS)
    assert len(tally.kills) >= 20 or KILLS < 20
    assert tally.violations == [], "\n".join(tally.violations)


@pytest.mark.crash
def test_import_survives_kills(tmp_path: Path) -> None:
    photos = make_folder(tmp_path / "photos", 240, categories=("Shoes", "Bags", "Tops > Tees"))
    args = ["import", str(photos), "--store-name", "photos", "--workers", "2"]
    tally = run_harness(tmp_path, "import", args, lambda home: None, KILLS)
    assert tally.violations == [], "\n".join(tally.violations)


def _labelled_home(home: Path) -> None:
    from helpers import jpeg_bytes

    photos = home.parent / f"{home.name}-photos"
    colours = {"Red": (220, 20, 20), "Blue": (20, 20, 220)}
    for name, colour in colours.items():
        (photos / name).mkdir(parents=True)
        for i in range(16):
            (photos / name / f"{i}.jpg").write_bytes(jpeg_bytes((64, 64), colour, seed=i))
    done = slashcat(home, "import", str(photos), "--workers", "1")
    assert done.returncode == 0, output(done)


def _models(home: Path) -> dict[str, int]:
    """Each finished train adds a model (training is not idempotent), so a kill that came
    after one had finished leaves two: what must hold is that one at least was made."""
    return {"models made": min(count(home, "models"), 1)}


@pytest.mark.crash
def test_train_survives_kills(tmp_path: Path) -> None:
    args = ["train", "--arch", "compact", "--image-size", "32", "--epochs", "1",
            "--batch-size", "8", "--min-per-class", "4"]
    kills = int(os.environ.get("TEST_SLASHCAT_CRASH_TRAIN_KILLS", "5"))
    tally = run_harness(tmp_path, "train", args, _labelled_home, kills, _models)
    assert tally.violations == [], "\n".join(tally.violations)
