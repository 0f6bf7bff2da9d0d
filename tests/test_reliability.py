"""Nothing lost, nothing misleading (issue 18): kills, concurrent runs, broken catalogs.

Every test here runs the real `slashcat` console script in child processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import jpeg_bytes

SLASHCAT = Path(sys.executable).parent / "slashcat"
ENV = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def slashcat(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SLASHCAT), "--home", str(home), *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    """A slashcat command in the background, in its own session (so it can be killed alone)."""
    return subprocess.Popen([str(SLASHCAT), "--home", str(home), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV, start_new_session=True)


def output(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def make_folder(root: Path, n: int, categories: tuple[str, ...] = ("Shoes", "Bags"),
                size: tuple[int, int] = (64, 64)) -> Path:
    for i in range(n):
        folder = root / categories[i % len(categories)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:05d}.jpg").write_bytes(jpeg_bytes(size, seed=i))
    return root


def image_files(home: Path) -> set[str]:
    images = home / "images"
    if not images.exists():
        return set()
    return {p.relative_to(home).as_posix() for p in images.rglob("*") if p.is_file()}


def image_rows(home: Path) -> list[str]:
    with sqlite3.connect(home / "catalog.db") as db:
        return [p for (p,) in db.execute("SELECT path FROM images WHERE path IS NOT NULL")]


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


# --------------------------------------------------------------------------- 1. doctor vs import


@pytest.mark.slow
def test_doctor_fix_during_import_deletes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    photos = make_folder(tmp_path / "photos", 1200, size=(96, 96))
    assert slashcat(home, "init").returncode == 0
    importing = start(home, "import", str(photos), "--workers", "2")
    wait_for(lambda: len(image_files(home)) > 20)
    # Pause the import (as a busy machine would) so doctor surely runs while it holds its
    # lock and has files without rows; on a fast machine it could otherwise finish first.
    os.kill(importing.pid, signal.SIGSTOP)
    try:
        fixed = slashcat(home, "doctor", "--fix")
    finally:
        os.kill(importing.pid, signal.SIGCONT)
    assert_no_traceback(output(fixed))
    assert "in flight and left alone" in output(fixed)  # it did run alongside the import
    assert importing.wait(240) == 0, importing.stdout.read() if importing.stdout else ""
    after = slashcat(home, "doctor")
    assert after.returncode == 0, output(after)
    rows = image_rows(home)
    assert len(rows) == 1200
    assert set(rows) == image_files(home)


def count(home: Path, table: str) -> int:
    try:
        with sqlite3.connect(home / "catalog.db", timeout=30) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def kill_group(proc: subprocess.Popen[str]) -> str:
    """SIGKILL the command and everything it started; returns what it printed."""
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return out or ""


# --------------------------------------------------------------------------- 2. resume after -9


@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_crawl(tmp_path: Path, storefront: Any) -> None:
    home = tmp_path / "home"
    crawling = start(home, "crawl", storefront.url, "--store-name", "demo")
    wait_for(lambda: count(home, "products") >= 30, timeout=120)
    kill_group(crawling)
    assert count(home, "products") < len(storefront.facts().products)
    resumed = slashcat(home, "crawl", storefront.url, "--store-name", "demo", "--resume")
    text = output(resumed)
    assert resumed.returncode == 0, text
    assert_no_traceback(text)
    assert "cannot resume" in text  # said plainly, not a silent "finished" with nothing done
    assert count(home, "products") == len(storefront.facts().products)


# --------------------------------------------------------------------------- 3. damaged catalog


def _truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])


def _not_sqlite(db: Path) -> None:
    db.write_bytes(b"these are the notes of a catalog team, not a database\n" * 200)


def _noise_in_the_middle(db: Path) -> None:
    import random

    data = bytearray(db.read_bytes())
    rng = random.Random(18)
    for page in range(2, len(data) // 4096):  # every page but the first (the schema's)
        at = page * 4096 + 8
        data[at : at + 512] = rng.randbytes(512)
    db.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate, _not_sqlite, _noise_in_the_middle])
def test_damaged_catalog_is_one_line_and_doctor_reports_it(tmp_path: Path, damage: Any) -> None:
    home = tmp_path / "home"
    photos = make_folder(tmp_path / "photos", 300)
    assert slashcat(home, "import", str(photos)).returncode == 0
    damage(home / "catalog.db")
    for command in (["stats"], ["init"], ["import", str(photos)], ["categories", "list"]):
        done = slashcat(home, *command)
        lines = output(done).strip().splitlines()
        assert done.returncode == 1, (command, lines)
        assert len(lines) == 1, (command, lines)
        assert "catalog.db is damaged" in lines[0] and "slashcat doctor" in lines[0], lines
    doctor = slashcat(home, "doctor")
    text = output(doctor)
    assert doctor.returncode == 1, text
    assert_no_traceback(text)
    assert "integrity:" in text and "integrity: ok" not in text, text


# --------------------------------------------------------------------------- 4. two imports


@pytest.mark.slow
@pytest.mark.parametrize("initialised", [True, False])
def test_two_imports_at_once_both_succeed(tmp_path: Path, initialised: bool) -> None:
    home = tmp_path / "home"
    photos = make_folder(tmp_path / "photos", 600)
    if initialised:
        assert slashcat(home, "init").returncode == 0
    runs = [start(home, "import", str(photos), "--store-name", "photos", "--workers", "1")
            for _ in range(2)]
    outs = [run.communicate(timeout=240)[0] for run in runs]
    for run, out in zip(runs, outs, strict=True):
        assert_no_traceback(out)
        assert run.returncode == 0, out
    assert count(home, "images") == 600
    assert count(home, "products") == 600
    assert count(home, "product_images") == 600
    assert set(image_rows(home)) == image_files(home)


@pytest.mark.slow
def test_creating_one_catalog_from_many_processes_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs = [start(home, "init") for _ in range(4)]
    for run in runs:
        out = run.communicate(timeout=120)[0]
        assert run.returncode == 0, out
        assert_no_traceback(out)
    assert slashcat(home, "doctor").returncode == 0


# --------------------------------------------------------------------------- 5. left behind


def session_members(sid: int) -> list[int]:
    """Live processes of a session (a command started with start() leads its own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_parent_only(proc: subprocess.Popen[str], settle_s: float = 10.0) -> str:
    """SIGKILL the command's own process (as `kill -9 PID` does); its children must follow."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    end = time.monotonic() + settle_s
    while session_members(proc.pid) and time.monotonic() < end:
        time.sleep(0.1)
    left = session_members(proc.pid)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
    out, _ = proc.communicate(timeout=30)
    return out or ""


@pytest.mark.slow
def test_killed_import_leaves_no_workers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    photos = make_folder(tmp_path / "photos", 1200, size=(96, 96))
    importing = start(home, "import", str(photos), "--workers", "2")
    wait_for(lambda: len(image_files(home)) > 20)
    assert len(session_members(importing.pid)) >= 3  # the command and its two workers
    assert_no_traceback(kill_parent_only(importing))


@pytest.mark.slow
def test_killed_crawl_leaves_nothing_and_prints_no_traceback(tmp_path: Path,
                                                             storefront: Any) -> None:
    home = tmp_path / "home"
    crawling = start(home, "crawl", storefront.url, "--store-name", "demo")
    wait_for(lambda: count(home, "products") >= 20, timeout=120)
    assert_no_traceback(kill_parent_only(crawling))


# --------------------------------------------------------------------------- 6. serve's decoding


def white_png(side: int, mode: str = "1") -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (side, side), 1).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_serve_bounds_the_pixels_it_decodes(cli_server: Any) -> None:
    import requests

    url = cli_server.url + "/api/classify"
    before = peak_rss_mb(cli_server.proc.pid)
    huge = white_png(9900)  # 98 Mpx of white in a small file
    started = time.monotonic()
    r = requests.post(url, files=[("files", (f"w{i}.png", huge, "image/png")) for i in range(16)],
                      timeout=120)
    assert r.status_code == 422, r.text
    assert {res["error"]["code"] for res in r.json()["results"]} == {"too-many-pixels"}
    assert time.monotonic() - started < 10
    # Under the per-image cap, but too many pixels for one request together: refused whole.
    big = white_png(6000)
    r = requests.post(url, files=[("files", (f"b{i}.png", big, "image/png")) for i in range(4)],
                      timeout=120)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request-too-many-pixels"
    assert peak_rss_mb(cli_server.proc.pid) - before < 150  # nothing of that was decoded


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_serve_keeps_little_memory_after_hostile_loads(cli_server: Any) -> None:
    """Three requests at once of sixteen 9,900 x 9,900 1-bit PNGs (issue 18): refused, and the
    process does not keep the memory they passed through (malloc_trim after large work)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    url = cli_server.url + "/api/classify"
    huge = white_png(9900)
    files = [("files", (f"w{i}.png", huge, "image/png")) for i in range(16)]
    requests.post(url, files=files[:1], timeout=120)  # warm: first-request allocations
    before = rss_mb(cli_server.proc.pid)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: requests.post(url, files=files, timeout=120), range(3)))
    assert {r.status_code for r in answers} <= {413, 422, 429}
    after = rss_mb(cli_server.proc.pid)
    print(f"serve RSS before {before:.0f} MB, after three hostile requests {after:.0f} MB")
    assert after - before < 100, (before, after)


def test_pixel_budget_answers_429_when_full() -> None:
    import threading

    from cli.web.uploads import PixelBudget, UploadError, UploadLimits

    budget = PixelBudget(UploadLimits(max_request_pixels=100, max_pixels_in_flight=120,
                                      busy_wait_s=0.2))
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold(80):
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    holding.wait(10)
    with pytest.raises(UploadError) as busy, budget.hold(50):
        pass
    assert (busy.value.status, busy.value.code) == (429, "busy")
    release.set()
    worker.join()
    with budget.hold(100):  # free again
        assert budget.in_flight == 100
    assert budget.in_flight == 0


# --------------------------------------------------------------------------- 7. --home is a file


@pytest.mark.slow
def test_home_that_is_a_file_is_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "notes.txt"
    home.write_text("not a folder")
    photos = make_folder(tmp_path / "photos", 2)
    for command in (["init"], ["import", str(photos)], ["stats"], ["doctor"]):
        done = slashcat(home, *command)
        lines = output(done).strip().splitlines()
        assert done.returncode == 1, (command, lines)
        assert len(lines) == 1 and "is a file, not a folder" in lines[0], (command, lines)
    assert home.read_text() == "not a folder"


# --------------------------------------------------------------------------- 8. category names


@pytest.mark.slow
def test_folder_names_become_categories_consistently(tmp_path: Path) -> None:
    import unicodedata

    home = tmp_path / "home"
    photos = tmp_path / "photos"
    names = {"Sub>Cat": 0, "Tops > Tees": 1, unicodedata.normalize("NFC", "café"): 2,
             unicodedata.normalize("NFD", "café"): 3, "Bags\u00a0 Small ": 4}
    for folder, seed in names.items():
        (photos / folder).mkdir(parents=True)
        (photos / folder / "a.jpg").write_bytes(jpeg_bytes(seed=seed))
    assert slashcat(home, "import", str(photos)).returncode == 0
    with sqlite3.connect(home / "catalog.db") as db:
        stored = {n for (n,) in db.execute("SELECT category_path FROM products")}
    assert stored == {"Sub > Cat", "Tops > Tees", "café", "Bags Small"}
    assert all(unicodedata.is_normalized("NFC", n) for n in stored)
    mapped = slashcat(home, "categories", "map", "Sub>Cat", "Other")
    assert "1 products relabelled" in " ".join(output(mapped).split()), output(mapped)
    listed = output(slashcat(home, "categories", "list"))
    assert listed.count("café") == 1


# --------------------------------------------------------------------------- 9. --top-k


@pytest.mark.slow
def test_top_k_outside_one_to_the_classes_is_refused(tmp_path: Path, web_model: Any,
                                                      cli_server: Any) -> None:
    import shutil

    import requests

    home = tmp_path / "home"
    shutil.copytree(web_model.home, home)
    photo = tmp_path / "x.jpg"
    photo.write_bytes(jpeg_bytes((96, 96)))
    n = len(web_model.classes)
    commands = [["classify", str(photo), "--top-k", bad] for bad in ("0", "-2", str(n + 1))]
    for command in [*commands, ["predict", "--top-k", "0"]]:
        done = slashcat(home, *command)
        lines = output(done).strip().splitlines()
        assert done.returncode == 1, (command, lines)
        assert_no_traceback(output(done))
        assert f"between 1 and {n}" in lines[-1], lines  # after a progress bar at most
    assert count(home, "predictions") == 0
    good = slashcat(home, "classify", str(photo), "--top-k", str(n))
    assert good.returncode == 0, output(good)
    r = requests.post(cli_server.url + "/api/classify", params={"top_k": n + 1},
                      files=[("files", ("x.jpg", photo.read_bytes(), "image/jpeg"))], timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad-top-k", r.text


# --------------------------------------------------------------------------- 10. doctor's gaps


@pytest.mark.slow
def test_doctor_finds_and_repairs_model_files_and_dead_runs(tmp_path: Path,
                                                            web_model: Any) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(web_model.home, home)
    models = home / "models"
    active = models / f"{web_model.version}.keras"
    shutil.copy(active, models / "v99.keras")  # a file without its row
    (models / ".tmp-0123abcd.keras").write_bytes(b"")  # what a kill during save leaves
    active.unlink()  # the active model's file is gone
    photos = make_folder(tmp_path / "photos", 1200, size=(96, 96))
    importing = start(home, "import", str(photos), "--workers", "2")
    wait_for(lambda: count(home, "product_images") > 300, timeout=120)
    kill_group(importing)  # its run stays "running"
    report = slashcat(home, "doctor")
    text = " ".join(output(report).split())
    assert report.returncode == 1, text
    for found in ("models whose file is missing: 1", "model files without a catalog row: 1",
                  ".tmp-0123abcd.keras", "runs left 'running' by a killed process: 1"):
        assert found in text, text
    fixed = slashcat(home, "doctor", "--fix")
    assert fixed.returncode == 0, output(fixed)
    again = slashcat(home, "doctor")
    assert again.returncode == 0 and "All good" in output(again), output(again)
    assert sorted(p.name for p in models.glob("*.keras")) == []
    with sqlite3.connect(home / "catalog.db") as db:
        assert db.execute("SELECT count(*) FROM models WHERE active").fetchone()[0] == 0
        statuses = {s for (s,) in db.execute("SELECT status FROM crawl_runs")}
    assert "running" not in statuses and "interrupted" in statuses
