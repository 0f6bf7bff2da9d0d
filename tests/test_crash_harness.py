"""A crash-test harness, as databases have (issue 18): `crawl`, `import` and `train` are killed
with SIGKILL at seeded kill points spread over their run, restarted, and the catalog's
invariants are checked after every restart. Real processes, a real shop over HTTP.

Each command runs in chains: a fresh home, ten kills at rising kill points, then a run to
completion whose catalog must equal a clean run's. Crawl and import resume, so their kill
points are points of progress: "once the k-th image file is stored", k stratified over a clean
run's files (each restart must store something new before its kill, so every kill lands
mid-work). Train starts over each time, so its kill points are moments stratified over a clean
run's duration (the smallest training that still writes a model). After every kill: no process
of the command left, no traceback printed, every image or model row has its file, no duplicate
rows. After completion also: every stored file has its row, and the counts equal the clean
run's. The kill points and violations are printed at the end (and written as JSON to
$TEST_SLASHCAT_CRASH_REPORT); TEST_SLASHCAT_CRASH_SEED, _KILLS and _TRAIN_KILLS set the seed
and the number of kill points.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
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
    kills: list[str] = field(default_factory=list)  # where each kill landed
    landed: int = 0  # the process was alive and had done new work when killed
    violations: list[str] = field(default_factory=list)
    missed: int = 0  # timed kills whose run finished first (drawn again, earlier)

    def line(self) -> str:
        return (f"{self.name}: {len(self.kills)} kill points ({self.landed} mid-work, "
                f"{self.missed} timed kills redrawn), {len(self.violations)} violations")


def stored_count(home: Path) -> int:
    """Progress marker of crawl and import: image files stored so far."""
    return sum(1 for _ in stored_files(home))


@dataclass
class Trigger:
    """When to kill: once the marker reaches `target`, or `moment` s after the start."""
    target: int | None = None
    moment: float | None = None

    def __str__(self) -> str:
        return f"file {self.target}" if self.target is not None else f"{self.moment:.2f}s"


def wait_for(proc: subprocess.Popen[str], home: Path, trigger: Trigger) -> bool:
    """Wait for the trigger; False when the command ended first."""
    started = time.monotonic()
    while proc.poll() is None:
        if trigger.target is not None and stored_count(home) >= trigger.target:
            return True
        if trigger.moment is not None and time.monotonic() - started >= trigger.moment:
            return True
        time.sleep(0.01)
    return False


def kill_at(home: Path, args: list[str], trigger: Trigger, tally: Tally) -> bool:
    """Start the command, SIGKILL its own process at the trigger, check what is left.
    False when a timed kill found the run finished: it is not a kill point."""
    before = stored_count(home)
    proc = start(home, *args)
    where = str(trigger)
    if wait_for(proc, home, trigger):
        os.kill(proc.pid, 9)
        # Mid-work: killed alive, after this run stored something (or, for train, alive).
        if trigger.target is None or stored_count(home) > before:
            tally.landed += 1
        else:
            where += " (before new work)"
    else:
        where += " (finished first)"
        if trigger.moment is not None:
            tally.missed += 1
    proc.wait(30)
    killed = not where.endswith("(finished first)")
    if killed or trigger.moment is None:
        tally.kills.append(where)
    end = time.monotonic() + 15
    while session_members(proc.pid) and time.monotonic() < end:
        time.sleep(0.05)
    left = session_members(proc.pid)
    for pid in left:
        os.kill(pid, 9)
    if left:
        tally.violations.append(f"kill at {where}: processes left behind {left}")
    out = proc.communicate(timeout=30)[0] or ""
    if "Traceback" in out:
        tally.violations.append(f"kill at {where}: traceback\n{out[-2000:]}")
    tally.violations += [f"kill at {where}: {v}" for v in catalog_violations(home)]
    return killed


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


def triggers(rng: random.Random, n: int, clean_home: Path, clean_s: float,
             by_files: bool) -> list[Trigger]:
    """n rising kill points, one in each n-th of a clean run (stratified, seeded): of its
    stored files for a resumable command (each restart goes on where the last stopped, so a
    kill point is a point of progress), of its duration for train (each run starts over)."""
    cuts = [(i + rng.random()) / n for i in range(n)]
    if not by_files:
        return [Trigger(moment=clean_s * c) for c in cuts]
    total = stored_count(clean_home)
    return [Trigger(target=max(1, min(total, math.ceil(total * c)))) for c in cuts]


def run_harness(tmp_path: Path, name: str, args: list[str], setup: Callable[[Path], None],
                kills: int, summary: Callable[[Path], dict[str, int]] = counts,
                by_files: bool = True) -> Tally:
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
    total = stored_count(clean_home)
    chain = 0
    while len(tally.kills) < kills:
        home = tmp_path / f"{name}-{chain}"
        setup(home)
        n = min(CHAIN, kills - len(tally.kills))
        for trigger in triggers(rng, n, clean_home, clean_s, by_files):
            if trigger.target is not None:  # a restart must store something new first
                if stored_count(home) >= total:
                    break  # nothing new left to store: finish this chain, start another
                trigger.target = max(trigger.target, stored_count(home) + 1)
            # A timed kill that comes after the run finished (a slower clean run, a busier
            # machine) is drawn again, earlier, until it lands.
            while not kill_at(home, args, trigger, tally) and trigger.moment is not None:
                trigger.moment *= 0.5
        done = slashcat(home, *args)
        if done.returncode != 0 or "Traceback" in output(done):
            tally.violations.append(f"chain {chain}: the run after the kills failed:\n"
                                    f"{output(done)[-2000:]}")
        tally.violations += [f"chain {chain}: {v}" for v in catalog_violations(home, True)]
        got = summary(home)
        if got != expected:
            tally.violations.append(f"chain {chain}: counts {got} != a clean run's {expected}")
        chain += 1
    return tally


@pytest.fixture(scope="module")
def crash_report(pytestconfig: pytest.Config) -> Iterator[list[Tally]]:
    """Prints every command's kill points and violations past pytest's capture (and writes
    them as JSON to $TEST_SLASHCAT_CRASH_REPORT when set)."""
    tallies: list[Tally] = []
    yield tallies
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    for tally in tallies:
        if terminal is not None:
            terminal.write_line(f"crash harness {tally.line()}; kill points: "
                                + ", ".join(tally.kills))
    if path := os.environ.get("TEST_SLASHCAT_CRASH_REPORT"):
        Path(path).write_text(json.dumps([asdict(t) for t in tallies], indent=1))


def check(tally: Tally, crash_report: list[Tally], kills: int) -> None:
    crash_report.append(tally)
    assert tally.violations == [], "\n".join(tally.violations)
    assert len(tally.kills) == kills
    assert tally.landed >= kills * 0.9, f"too few kills landed mid-work: {tally.line()}"


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
def test_crawl_survives_kills(tmp_path: Path, small_shop: DemoShop,
                              crash_report: list[Tally]) -> None:
    args = ["crawl", small_shop.url, "--store-name", "demo", "--resume"]
    check(run_harness(tmp_path, "crawl", args, lambda home: None, KILLS), crash_report, KILLS)


@pytest.mark.crash
def test_import_survives_kills(tmp_path: Path, crash_report: list[Tally]) -> None:
    photos = make_folder(tmp_path / "photos", 240, categories=("Shoes", "Bags", "Tops > Tees"))
    args = ["import", str(photos), "--store-name", "photos", "--workers", "2"]
    check(run_harness(tmp_path, "import", args, lambda home: None, KILLS), crash_report, KILLS)


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
def test_train_survives_kills(tmp_path: Path, crash_report: list[Tally]) -> None:
    args = ["train", "--arch", "compact", "--image-size", "32", "--epochs", "1",
            "--batch-size", "8", "--min-per-class", "4"]
    kills = int(os.environ.get("TEST_SLASHCAT_CRASH_TRAIN_KILLS", "20"))
    tally = run_harness(tmp_path, "train", args, _labelled_home, kills, _models, by_files=False)
    check(tally, crash_report, kills)
