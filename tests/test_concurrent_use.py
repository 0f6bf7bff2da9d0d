"""A crawl, `predict` and `review --accept-above` on one SQLite catalog at the same time.

Real processes on a real catalog file (a copy of the trained shapes catalog) and the demo
storefront: every process ends well, no "database is locked" reaches the user, no row is lost.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import copy_home

ROOT = Path(__file__).resolve().parents[1]


def slashcat(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "COLUMNS": "250"}
    return subprocess.Popen(
        [sys.executable, "-c", "from cli.app import main; main()", "--home", str(home), "-q",
         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def count(home: Path, sql: str) -> int:
    with sqlite3.connect(home / "catalog.db", timeout=30) as db:
        return int(db.execute(sql).fetchone()[0])


def test_crawl_predict_and_review_at_once(trained_home: Any, storefront: Any,
                                          tmp_path: Path) -> None:
    home = tmp_path / "home"
    copy_home(trained_home.settings.home, home)
    before = count(home, "select count(*) from products")
    facts = storefront.facts()

    crawl = slashcat(home, "crawl", storefront.url)
    outputs: list[tuple[list[str], int, str]] = []
    # Predict and accept over and over while the crawl writes (each run sees more products).
    while crawl.poll() is None or len(outputs) < 6:
        for args in (["predict", "--all"], ["review", "--accept-above", "0.0"]):
            proc = slashcat(home, *args)
            out, _ = proc.communicate(timeout=300)
            outputs.append((args, proc.returncode, out))
        if len(outputs) > 40:
            break
        time.sleep(0.2)
    crawl_out, _ = crawl.communicate(timeout=300)
    outputs.append((["crawl"], crawl.returncode, crawl_out))

    for args, code, out in outputs:
        assert code == 0, f"{args}: {out}"
        assert "locked" not in out.lower(), f"{args}: {out}"
    assert count(home, "select count(*) from products") == before + len(facts.products)
    # Every run's rows are there: predictions of every run, labels of every accept.
    predicted = count(home, "select count(distinct product_id) from predictions")
    assert predicted >= before
    accepted = count(home, "select count(distinct product_id) from labels "
                           "where source = 'model-accepted'")
    assert accepted > 0
    assert count(home, "select count(*) from crawl_runs where status = 'finished'") == 1
