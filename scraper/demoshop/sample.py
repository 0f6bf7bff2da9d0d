"""Build a demo shop folder (manifest + images) from a products CSV and an images folder.

The source is shaped like the Kaggle "Fashion Product Images (Small)" data: `products.csv`
(id, gender, masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName) and `images/<id>.jpg`. The output folder holds `products.json` (what
`scraper.demoshop.DemoShop` serves), `answers.csv` (the true category of the products the
shop leaves uncategorised; never served) and, when images are copied, `images/`.

Two uses: the small committed sample (`data/sample-store/`, with deliberate traps for the
crawler, see `SAMPLE`) and large generated shops for the crawl benchmark, whose images are
referenced in the source folder instead of copied.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog.errors import InvalidInput

MANIFEST = "products.json"
ANSWERS = "answers.csv"
FORMAT_VERSION = 1
LAST_MODIFIED = "2024-05-01T08:00:00Z"  # fixed, so rebuilt shops give the same pages

# Visually distinct subCategories, with the article types that look like the class.
SAMPLE_CLASSES: dict[str, tuple[str, ...]] = {
    "Topwear": ("Tshirts", "Shirts", "Tops", "Sweatshirts"),
    "Bottomwear": ("Jeans", "Trousers", "Shorts", "Track Pants"),
    "Shoes": ("Casual Shoes", "Sports Shoes", "Formal Shoes"),
    "Bags": ("Handbags", "Backpacks"),
    "Watches": ("Watches",),
    "Eyewear": ("Sunglasses",),
    "Belts": ("Belts",),
    "Ties": ("Ties",),
}


@dataclass(frozen=True)
class SampleSpec:
    """How the committed sample is drawn."""

    classes: dict[str, tuple[str, ...]]
    per_class: int = 42  # labelled products per class, before the derived trap products
    uncategorised: int = 32  # shared out evenly over the classes
    image_size: int = 128
    quality: int = 85
    seed: int = 3


SAMPLE = SampleSpec(SAMPLE_CLASSES)

# Share of pages per markup style and image-tag style (the rest is plain JSON-LD and <img src>).
MICRODATA_SHARE = 0.08
GRAPH_SHARE = 0.08
OPENGRAPH_ONLY = 2
IMG_STYLES = ("srcset", "data-src", "data-srcset", "data-original")
IMG_STYLE_SHARE = 0.28


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


def read_products(source_dir: Path) -> list[dict[str, str]]:
    """The CSV rows whose image exists, in file order."""
    csv_path = Path(source_dir) / "products.csv"
    if not csv_path.is_file():
        raise InvalidInput(f"no products.csv in {source_dir}")
    images = Path(source_dir) / "images"
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"id", "masterCategory", "subCategory", "articleType", "productDisplayName"}
    if rows and not missing <= set(rows[0]):
        raise InvalidInput(f"{csv_path} lacks columns {sorted(missing - set(rows[0]))}")
    return [r for r in rows if (images / f"{r['id']}.jpg").is_file()]


def category_path(row: dict[str, str]) -> str:
    return " > ".join(row[k].strip() for k in ("masterCategory", "subCategory", "articleType"))


GENDER_WORDS = {"men", "women", "unisex", "boys", "girls", "kids", "mens", "womens"}


def brand_of(title: str) -> str:
    """The words before the gender word ("United Colors of Benetton Men ..."), else the first."""
    words = title.split()
    for i, word in enumerate(words[:5]):
        if word.lower().removesuffix("'s") in GENDER_WORDS and i > 0:
            return " ".join(words[:i])
    return words[0] if words else ""


def price_of(product_id: str) -> float:
    """A stable, plausible price from the id."""
    n = int(hashlib.sha1(product_id.encode()).hexdigest()[:6], 16)
    return round(9.99 + (n % 12000) / 100, 2)


def product_entry(row: dict[str, str], image: str | None) -> dict[str, Any]:
    pid = str(row["id"])
    title = row["productDisplayName"].strip() or f"Product {pid}"
    return {
        "id": pid,
        "sku": f"SC-{pid}",
        "slug": f"{slugify(title)[:60].strip('-')}-{pid}",
        "title": title,
        "brand": brand_of(title),
        "price": price_of(pid),
        "currency": "EUR",
        "category": category_path(row),
        "images": [image] if image else [],
        "markup": "jsonld",
        "img": "src",
        "thumb": None,
    }


def build_shop(
    source_dir: Path,
    out_dir: Path,
    *,
    limit: int | None = None,
    sample: SampleSpec | None = None,
    name: str = "Slashcat Demo Fashion",
    per_page: int = 24,
    sitemap_chunk: int = 500,
) -> dict[str, Any]:
    """Write a demo shop folder and return its manifest.

    With `sample` (e.g. `SAMPLE`): a balanced, downscaled copy with the crawler traps listed in
    the manifest's `fixtures` (`limit` is ignored). Without: the first `limit` products of the
    CSV (all categories), images referenced from `source_dir/images` without copying, for
    benchmarks.
    """
    source_dir, out_dir = Path(source_dir).resolve(), Path(out_dir)
    if out_dir.resolve() == source_dir:
        raise InvalidInput(f"write the store somewhere else than its source {source_dir}")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    rows = read_products(source_dir)
    if not rows:
        raise InvalidInput(f"no products with images in {source_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if sample is None:
        chosen = rows[:limit] if limit else rows
        products = [product_entry(r, f"{r['id']}.jpg") for r in chosen]
        manifest = _manifest(name, str(source_dir / "images"), per_page, sitemap_chunk, products)
        answers: list[dict[str, str]] = []
    else:
        manifest, answers = _build_sample(rows, source_dir, out_dir, sample)
        manifest.update(name=name, per_page=per_page, sitemap_chunk=sitemap_chunk)
    _write_json(out_dir / MANIFEST, manifest)
    _write_answers(out_dir / ANSWERS, answers)
    return manifest


def _manifest(name: str, image_root: str, per_page: int, sitemap_chunk: int,
              products: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "name": name,
        "image_root": image_root,
        "per_page": per_page,
        "sitemap_chunk": sitemap_chunk,
        "last_modified": LAST_MODIFIED,
        "products": products,
        "fixtures": {},
    }


def choose_sample(rows: Sequence[dict[str, str]], spec: SampleSpec) -> dict[str, list[dict]]:
    """Per class, `per_class` + its share of uncategorised rows, drawn with a fixed seed."""
    rng = random.Random(spec.seed)
    extra = -(-spec.uncategorised // len(spec.classes))
    chosen: dict[str, list[dict]] = {}
    for sub, articles in spec.classes.items():
        pool = [r for r in rows if r["subCategory"] == sub and r["articleType"] in articles]
        want = spec.per_class + extra
        if len(pool) < want:
            raise InvalidInput(f"only {len(pool)} products of {sub}, {want} wanted")
        chosen[sub] = sorted(rng.sample(pool, want), key=lambda r: int(r["id"]))
    return chosen


def _build_sample(rows: Sequence[dict[str, str]], source_dir: Path, out_dir: Path,
                  spec: SampleSpec) -> tuple[dict[str, Any], list[dict]]:
    rng = random.Random(spec.seed)
    chosen = choose_sample(rows, spec)
    images_out = out_dir / "images"
    images_out.mkdir(exist_ok=True)
    for old in images_out.glob("*"):
        old.unlink()
    products: list[dict[str, Any]] = []
    uncategorised: list[str] = []
    answers: list[dict[str, str]] = []
    per_class_uncat = -(-spec.uncategorised // len(spec.classes))
    for sub, picked in chosen.items():
        held_out = {r["id"] for r in rng.sample(picked, per_class_uncat)}
        for row in picked:
            entry = product_entry(row, f"{row['id']}.jpg")
            src = source_dir / "images" / f"{row['id']}.jpg"
            (images_out / entry["images"][0]).write_bytes(
                downscale(src.read_bytes(), spec.image_size, spec.quality))
            if row["id"] in held_out and len(uncategorised) < spec.uncategorised:
                answers.append({"id": entry["id"], "category": entry["category"],
                                "subCategory": sub})
                entry["category"] = None
                uncategorised.append(entry["id"])
            products.append(entry)
    manifest = _manifest("", "images", 24, 500, products)
    fixtures = _add_traps(products, images_out, rng, spec)
    fixtures["uncategorised"] = sorted(uncategorised)
    fixtures.update(_vary_markup(products, images_out, rng, fixtures))
    manifest["fixtures"] = fixtures
    return manifest, answers


def downscale(data: bytes, size: int, quality: int) -> bytes:
    """Fit within size x size and re-encode as JPEG (white background, like the source)."""
    from PIL import Image

    from catalog.imaging import thumbnail

    rgb = thumbnail(data, (size, size), reduce=False, resample=Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _labelled(products: list[dict[str, Any]], taken: set[str]) -> list[dict[str, Any]]:
    return [p for p in products if p["category"] and p["id"] not in taken]


def _derived(base: dict[str, Any], new_id: str, image: str) -> dict[str, Any]:
    entry = dict(base, id=new_id, sku=f"SC-{new_id}", images=[image])
    entry["slug"] = f"{base['slug'].rsplit('-', 1)[0]}-{new_id}"
    entry["price"] = price_of(new_id)
    return entry


def _add_traps(products: list[dict[str, Any]], images: Path, rng: random.Random,
               spec: SampleSpec) -> dict[str, Any]:
    """Duplicates, near-duplicates, a truncated and a missing image; recorded for the tests."""
    taken: set[str] = set()

    def pick() -> dict[str, Any]:
        choice = rng.choice(_labelled(products, taken))
        taken.add(choice["id"])
        return choice

    same, copied, near, broken, missing = pick(), pick(), pick(), pick(), pick()
    twin = _derived(same, "90001", same["images"][0])  # same image URL
    copy = _derived(copied, "90002", "90002.jpg")  # same bytes, another URL
    (images / "90002.jpg").write_bytes((images / copied["images"][0]).read_bytes())
    original = (images / near["images"][0]).read_bytes()
    resized = _derived(near, "90003", "90003.jpg")
    (images / "90003.jpg").write_bytes(downscale(original, spec.image_size * 3 // 4, 90))
    recompressed = _derived(near, "90004", "90004.jpg")
    (images / "90004.jpg").write_bytes(_recompress(original, 35))
    data = (images / broken["images"][0]).read_bytes()
    (images / broken["images"][0]).write_bytes(data[: len(data) * 55 // 100])
    (images / missing["images"][0]).unlink()
    products.extend([twin, copy, resized, recompressed])
    return {
        "same_image_url": [same["id"], twin["id"]],
        "same_image_bytes": [copied["id"], copy["id"]],
        "near_duplicates": {"original": near["id"], "resized": resized["id"],
                            "recompressed": recompressed["id"]},
        "truncated_image": broken["id"],
        "missing_image": missing["id"],
        "_taken": sorted(taken | {"90001", "90002", "90003", "90004"}),
    }


def _recompress(data: bytes, quality: int) -> bytes:
    from catalog.imaging import open_image

    buf = io.BytesIO()
    open_image(data).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _vary_markup(products: list[dict[str, Any]], images: Path, rng: random.Random,
                 fixtures: dict[str, Any]) -> dict[str, Any]:
    """Mostly JSON-LD; some microdata, some @graph, OpenGraph-only and one malformed JSON-LD."""
    taken = set(fixtures.pop("_taken"))
    free = [p for p in products if p["category"] and p["id"] not in taken]
    rng.shuffle(free)
    n_micro = round(len(products) * MICRODATA_SHARE)
    n_graph = round(len(products) * GRAPH_SHARE)
    cut = [n_micro, n_micro + n_graph, n_micro + n_graph + OPENGRAPH_ONLY]
    for p in free[: cut[0]]:
        p["markup"] = "microdata"
    for p in free[cut[0]: cut[1]]:
        p["markup"] = "graph"
    for p in free[cut[1]: cut[2]]:
        p["markup"] = "opengraph"
    free[cut[2]]["markup"] = "jsonld-malformed"
    styled = rng.sample(products, round(len(products) * IMG_STYLE_SHARE))
    for i, p in enumerate(sorted(styled, key=lambda q: q["id"])):
        p["img"] = IMG_STYLES[i % len(IMG_STYLES)]
        if p["img"] in ("srcset", "data-srcset") and p["id"] not in taken:
            p["thumb"] = _thumb(images, p["images"][0])
    by_markup: dict[str, list[str]] = {}
    for p in products:
        by_markup.setdefault(p["markup"], []).append(p["id"])
    return {
        "malformed_jsonld": free[cut[2]]["id"],
        "markup": {k: sorted(v) for k, v in by_markup.items() if k != "jsonld"},
        "img_styles": {s: sorted(p["id"] for p in products if p["img"] == s)
                       for s in IMG_STYLES},
    }


def _thumb(images: Path, name: str) -> str:
    thumb = name.rsplit(".", 1)[0] + "-sm.jpg"
    (images / thumb).write_bytes(downscale((images / name).read_bytes(), 64, 80))
    return thumb


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_answers(path: Path, answers: list[dict[str, str]]) -> None:
    if not answers:
        path.unlink(missing_ok=True)
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["id", "category", "subCategory"])
        writer.writeheader()
        writer.writerows(answers)


def load_manifest(store_dir: Path) -> dict[str, Any]:
    """Read and check a storefront folder's manifest."""
    path = Path(store_dir) / MANIFEST
    if not path.is_file():
        raise InvalidInput(f"{store_dir} is not a storefront folder (no {MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise InvalidInput(f"{path}: unknown manifest format (expected {FORMAT_VERSION})")
    if not isinstance(data.get("products"), list):
        raise InvalidInput(f"{path}: no products list")
    return data
