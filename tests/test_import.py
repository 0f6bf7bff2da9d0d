"""`slashcat import`: a folder of category sub-folders (or a CSV), with every kind of bad file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.importer import import_images
from catalog.labels import current_labels
from catalog.models import Image, Product, ProductImage

from helpers import bomb_png, jpeg_bytes


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "Shoes").mkdir(parents=True)
    (root / "Bags").mkdir()
    (root / "Apparel" / "Topwear").mkdir(parents=True)
    for i in range(3):
        (root / "Shoes" / f"shoe{i}.jpg").write_bytes(jpeg_bytes((64, 64), seed=i))
        (root / "Bags" / f"bag{i}.png").write_bytes(jpeg_bytes((64, 48), seed=10 + i, fmt="PNG"))
    (root / "Apparel" / "Topwear" / "tee.webp").write_bytes(jpeg_bytes(seed=20, fmt="WEBP"))
    # The same bytes under another name: a second product sharing one image.
    (root / "Bags" / "bag0-copy.png").write_bytes((root / "Bags" / "bag0.png").read_bytes())
    bad = root / "Shoes"
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(jpeg_bytes((200, 200), seed=5)[:2000])
    (bad / "page.jpg").write_bytes(b"<html><body>404 Not Found</body></html>")
    (bad / "bomb.png").write_bytes(bomb_png())
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg_bytes(seed=99))
    os.symlink(outside, bad / "link.jpg")
    (root / "notes.txt").write_text("not an image, not even considered")
    return root


EXPECTED_REJECTIONS = {
    "empty.jpg": "empty",
    "truncated.jpg": "truncated",
    "page.jpg": "not-an-image",
    "bomb.png": "too-many-pixels",
    "link.jpg": "outside-folder",
}


def test_import_folder_lands_good_files_and_reports_bad(catalog, photo_folder: Path) -> None:
    report = import_images(catalog, photo_folder, store_name="photos", workers=2)
    assert report.files == 13
    assert report.products_new == 8
    assert report.images_new == 7
    assert report.images_duplicate == 1
    reasons = {Path(p).name: r.split(":")[0] for p, r in report.rejected}
    assert reasons == EXPECTED_REJECTIONS
    with catalog.session() as s:
        assert s.scalar(select(func.count(Product.id))) == 8
        assert s.scalar(select(func.count(Image.id))) == 7
        assert s.scalar(select(func.count(ProductImage.id))) == 8
        labels = {lab.category for lab in current_labels(s)}
        assert labels == {"Shoes", "Bags", "Apparel > Topwear"}
        for image in s.scalars(select(Image)):
            assert (catalog.settings.home / image.path).is_file()


def test_second_import_adds_nothing(catalog, photo_folder: Path) -> None:
    import_images(catalog, photo_folder, store_name="photos", workers=1)
    again = import_images(catalog, photo_folder, store_name="photos", workers=1)
    assert (again.products_new, again.images_new, again.images_duplicate) == (0, 0, 0)
    assert again.products_unchanged == 8
    with catalog.session() as s:
        assert s.scalar(select(func.count(Product.id))) == 8
        assert sum(1 for _ in current_labels(s)) == 8


def test_import_csv(catalog, tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    rows = ["path,category"]
    for i in range(4):
        name = f"img/p{i}.jpg"
        (tmp_path / name).write_bytes(jpeg_bytes(seed=30 + i))
        rows.append(f"{name},{'Watches' if i % 2 else 'Belts'}")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    report = import_images(catalog, csv_path, workers=1)
    assert (report.store, report.products_new, len(report.rejected)) == ("labels", 4, 0)
    with catalog.session() as s:
        assert sorted(lab.category for lab in current_labels(s)) == [
            "Belts", "Belts", "Watches", "Watches"]


def test_import_csv_with_absolute_and_parent_paths(catalog, tmp_path: Path) -> None:
    """The common CSV: absolute paths, or paths above the CSV's folder. Plain files, imported."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"p{i}.jpg").write_bytes(jpeg_bytes(seed=40 + i))
    (tmp_path / "lists").mkdir()
    csv_path = tmp_path / "lists" / "labels.csv"
    csv_path.write_text(f"path,category\n{photos / 'p0.jpg'},Watches\n../photos/p1.jpg,Belts\n")
    report = import_images(catalog, csv_path, workers=1)
    assert report.rejected == []
    assert (report.products_new, report.images_new) == (2, 2)
    with catalog.session() as s:
        assert sorted(lab.category for lab in current_labels(s)) == ["Belts", "Watches"]


def test_cli_import_and_stats(cli, photo_folder: Path) -> None:
    result = cli("import", str(photo_folder), "--store-name", "photos")
    assert result.exit_code == 0, result.output
    assert "products new 8" in result.output
    assert "rejected 5" in result.output
    assert "outside-folder" in result.output
    stats = cli("stats")
    assert stats.exit_code == 0
    assert "photos" in stats.output
    assert "8 (store 8)" in stats.output


def test_cli_import_missing_folder(cli, tmp_path: Path) -> None:
    result = cli("import", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "Traceback" not in result.output


def test_import_csv_with_titles_and_folders_without(catalog, tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    titles = ["Tan Leather Belt", "  ", "عباية سوداء &amp; 👟", '"Quoted, with comma"']
    import csv as csv_module

    csv_path = tmp_path / "titled.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        out = csv_module.writer(fh)
        out.writerow(["title", "path", "category"])  # named columns, in any order
        for i, title in enumerate(titles):
            (tmp_path / f"img/t{i}.jpg").write_bytes(jpeg_bytes(seed=60 + i))
            out.writerow([title, f"img/t{i}.jpg", "Belts"])
    report = import_images(catalog, csv_path, workers=1)
    assert report.products_new == 4 and not report.rejected
    with catalog.session() as s:
        found = dict(s.execute(select(Product.external_id, Product.title)).all())
    assert found == {"img/t0.jpg": "Tan Leather Belt", "img/t1.jpg": None,
                     "img/t2.jpg": "عباية سوداء &amp; 👟", "img/t3.jpg": '"Quoted, with comma"'}

    folder = tmp_path / "shop" / "Watches"
    folder.mkdir(parents=True)
    (folder / "w0.jpg").write_bytes(jpeg_bytes(seed=70))
    import_images(catalog, tmp_path / "shop", workers=1)
    with catalog.session() as s:
        assert s.scalar(select(Product.title).where(Product.external_id == "Watches/w0.jpg")) \
            is None


def test_import_csv_header_without_category_is_refused(catalog, tmp_path: Path) -> None:
    from catalog.errors import InvalidInput

    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("path,title\nx.jpg,Belt\n")
    with pytest.raises(InvalidInput, match="header must name"):
        import_images(catalog, csv_path, workers=1)
