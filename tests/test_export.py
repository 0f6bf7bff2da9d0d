"""`slashcat export` read back with csv and pandas: quoting, injection, final category, filters."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert, select

from catalog.export import COLUMNS, ExportOptions, export_rows, neutralise
from catalog.ingest import get_or_create_store, upsert_product
from catalog.labels import current_labels
from catalog.models import Image, Product, utcnow
from catalog.review import QueueFilter, ReviewSession, accept_above

from helpers.review import BAGS, TOP, WATCHES, ReviewData

TRICKY = {
    "T1": "Shirt, blue, size M",
    "T2": 'The "best" jeans',
    "T3": "Two\nlines\r\nof title",
    "T4": "日本語のシャツ — Ünïcödé",
    "T5": '=HYPERLINK("http://evil.test","click")',
    "T6": "-5% off",
    "T7": "@SUM(A1)",
    "T8": "+1 more",
    "T9": "\tindented",
}


@pytest.fixture
def data(review_data: ReviewData) -> ReviewData:
    """The review catalog plus products with awkward titles (no image, no prediction)."""
    with review_data.catalog.session() as s:
        other = get_or_create_store(s, "other", "http://other.test/")
        for key, title in TRICKY.items():
            upsert_product(s, other.id, f"http://other.test/{key}", title=title, external_id=key)
    return review_data


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_round_trips_with_csv_and_pandas(data: ReviewData, cli, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = cli("export", str(out))
    assert result.exit_code == 0, result.output
    raw_bytes = out.read_bytes()
    assert raw_bytes.startswith(b"store,external_id,url,title,") and b"\r\n" in raw_bytes
    text = raw_bytes.decode("utf-8")
    rows = read_csv(text)
    assert len(rows) == 12 + len(TRICKY)
    by_sku = {r["external_id"]: r for r in rows}
    assert by_sku["T1"]["title"] == TRICKY["T1"]
    assert by_sku["T2"]["title"] == TRICKY["T2"]
    assert by_sku["T3"]["title"] == TRICKY["T3"]
    assert by_sku["T4"]["title"] == TRICKY["T4"]
    for key in ("T5", "T6", "T7", "T8", "T9"):
        assert by_sku[key]["title"] == "'" + TRICKY[key]
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(COLUMNS)
    assert frame.set_index("external_id").loc["T3", "title"] == TRICKY["T3"]
    assert frame.set_index("external_id").loc["T4", "title"] == TRICKY["T4"]
    assert len(frame) == len(rows)


def test_raw_keeps_formulas_as_they_are(data: ReviewData, cli, tmp_path: Path) -> None:
    out = tmp_path / "raw.csv"
    assert cli("export", str(out), "--raw").exit_code == 0
    by_sku = {r["external_id"]: r for r in read_csv(out.read_text(encoding="utf-8"))}
    assert by_sku["T5"]["title"] == TRICKY["T5"] and by_sku["T9"]["title"] == TRICKY["T9"]
    assert neutralise("\rx") == "'\rx" and neutralise("a=b") == "a=b"


def test_final_category_source_confidence_and_version(data: ReviewData, cli) -> None:
    cat = data.catalog
    with cat.session() as s:
        accept_above(s, 0.95)
    rs = ReviewSession(cat, QueueFilter(below=0.7), "ann")
    rs.choose(2)  # p0 -> Bottomwear by a person
    rs.accept()  # p1 accepted...
    rs.undo()  # ...and undone: back to the model's prediction
    result = cli("export", "-")
    assert result.exit_code == 0, result.output
    rows = {r["external_id"]: r for r in read_csv(result.stdout)}
    sku = {k: f"SKU-{i}" for i, k in enumerate(["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7",
                                                  "p8", "p9", "p10", "p11"])}
    p0, p1, p5, p7, p10 = (rows[sku[k]] for k in ("p0", "p1", "p5", "p7", "p10"))
    assert (p0["source"], p0["category"], p0["model_version"], p0["confidence"]) == (
        "human", "Apparel > Bottomwear", "v1", "")
    assert p0["reviewed_at"].endswith("Z")
    assert (p1["source"], p1["confidence"], p1["model_version"], p1["reviewed_at"]) == (
        "model", "0.4", "v1", "")
    assert (p5["source"], p5["category"], p5["model_version"]) == ("store", BAGS, "")
    assert (p7["source"], p7["category"]) == ("human", BAGS)
    assert (p10["source"], p10["category"], p10["confidence"]) == (
        "model-accepted", WATCHES, "0.99")
    assert rows["T1"]["category"] == "" and rows["T1"]["image_sha256"] == ""
    # The same rule as catalog.labels.current_labels, product by product.
    with cat.session() as s:
        expected = {c.product_id: (c.category, c.source) for c in current_labels(s)}
        got = {pid: (r[7], r[8]) for pid, r in zip(_product_ids(s), export_rows(s), strict=True)
               if pid in expected}
    assert got == expected


def _product_ids(s) -> list[int]:  # type: ignore[no-untyped-def]
    return list(s.scalars(select(Product.id).order_by(Product.id)))


def test_canonical_image_of_the_cluster(data: ReviewData, cli) -> None:
    result = cli("export", "-", "--store", "demo")
    rows = {r["external_id"]: r for r in read_csv(result.stdout)}
    assert len(rows) == 12
    with data.catalog.session() as s:
        canonical = s.get_one(Image, data.images["p0"])
    p4 = rows["SKU-4"]  # p4's own image is a non-canonical member of p0's cluster
    assert (p4["image_sha256"], p4["image_path"]) == (canonical.sha256, canonical.path)
    assert p4["image_source_url"] == "http://shop.test/img/p4.jpg"
    assert (data.catalog.settings.home / p4["image_path"]).is_file()


def test_filters(data: ReviewData, cli) -> None:
    with data.catalog.session() as s:
        accept_above(s, 0.95)
    reviewed = read_csv(cli("export", "-", "--only-reviewed").stdout)
    assert sorted(r["source"] for r in reviewed) == ["human", "model-accepted", "model-accepted"]
    confident = read_csv(cli("export", "-", "--min-confidence", "0.6").stdout)
    kept = {(r["external_id"], r["source"]) for r in confident}
    assert ("SKU-3", "model") in kept and ("SKU-0", "model") not in kept  # 0.65 vs 0.40
    assert ("SKU-5", "store") in kept and ("SKU-7", "human") in kept
    assert not any(sku.startswith("T") for sku, _ in kept)  # no category at all
    assert {r["category"] for r in confident if r["external_id"] == "SKU-4"} == {TOP}


def test_jsonl(data: ReviewData, cli, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert cli("export", str(out), "--format", "jsonl").exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert list(first) == list(COLUMNS)
    frame = pd.read_json(out, lines=True, dtype=False)
    assert frame.set_index("external_id").loc["T5", "title"] == TRICKY["T5"]  # raw in JSON
    assert frame.set_index("external_id").loc["SKU-0", "confidence"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-confidence", "2"], "--min-confidence must be between 0 and 1"),
        (["--store", "nope"], "unknown store 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_old_file(
    data: ReviewData, cli, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "keep.csv"
    out.write_text("old contents", encoding="utf-8")
    result = cli("export", str(out), *args)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_text(encoding="utf-8") == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".keep")) == []


def test_an_unknown_format_is_a_usage_error_and_leaves_the_old_file(
    data: ReviewData, cli, tmp_path: Path
) -> None:
    out = tmp_path / "keep.csv"
    out.write_text("old contents", encoding="utf-8")
    result = cli("export", str(out), "--format", "xml")
    assert result.exit_code == 2 and "'xml' is not one of 'csv', 'jsonl'" in result.stderr
    assert out.read_text(encoding="utf-8") == "old contents"


def test_missing_folder(data: ReviewData, cli, tmp_path: Path) -> None:
    result = cli("export", str(tmp_path / "nope" / "x.csv"))
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_export_options_object_validates_before_streaming(data: ReviewData) -> None:
    from catalog.errors import InvalidInput

    with data.catalog.session() as s, pytest.raises(InvalidInput):
        export_rows(s, ExportOptions(format="xlsx"))


def test_a_closed_pipe_ends_the_export_quietly(catalog) -> None:
    """`slashcat export - | head -1`: more rows than a pipe holds, the reader leaves early."""
    with catalog.session() as s:
        store = get_or_create_store(s, "big", "http://big.test/")
        now = utcnow()
        s.execute(insert(Product), [
            {"store_id": store.id, "url": f"http://big.test/p{i}", "title": "x" * 80,
             "first_seen": now, "last_seen": now} for i in range(3000)
        ])
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli.app import main; main()",
         "--home", str(catalog.settings.home), "--db", catalog.settings.db_url, "export", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"store,external_id")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Error" not in err and "Traceback" not in err and "Exception" not in err
