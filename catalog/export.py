"""Export one row per product with its final category, streaming (flat memory, no query per row).

Columns, in this stable order (COLUMNS):
  store, external_id, url, title,
  image_sha256      the canonical image of the dedupe cluster of the product's first image,
  image_path        that canonical image's file, relative to the slashcat home folder,
  image_source_url  where the product's first image was fetched from,
  category          the final category: the current label (human > store > model-accepted,
                    undo honoured) if any, else the active model's top prediction,
  source            human | store | model-accepted | model (empty if there is no category),
  confidence        the model's calibrated confidence for model and model-accepted rows,
  model_version     the model a human decision answered, or that made/accepted the prediction,
  reviewed_at       when a person decided (human) or batch-accepted (model-accepted), UTC ISO 8601.

Filters: `only_reviewed` keeps human and model-accepted rows; `min_confidence` drops model and
model-accepted rows below it and rows without a category (human and store rows have no model
confidence and are kept).

CSV: UTF-8, a header, RFC 4180 quoting and CRLF line ends. Text cells that begin with
= + - @ tab or carriage return get a leading apostrophe so a spreadsheet shows them as text
instead of running them as formulas; `raw=True` writes them unchanged. JSON Lines is always raw.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from catalog.errors import InvalidInput, check_fraction
from catalog.labels import current_rows, live_labels_query
from catalog.models import (
    Category,
    Image,
    Label,
    Model,
    Prediction,
    Product,
    ProductImage,
    Store,
)
from catalog.models_registry import active_model
from catalog.options import EXPORT_FORMATS

COLUMNS = (
    "store", "external_id", "url", "title", "image_sha256", "image_path", "image_source_url",
    "category", "source", "confidence", "model_version", "reviewed_at",
)
FORMULA_CHARS = frozenset("=+-@\t\r")
REVIEWED = ("human", "model-accepted")
CHUNK = 5000


@dataclass(frozen=True)
class ExportOptions:
    format: str = "csv"
    min_confidence: float | None = None
    only_reviewed: bool = False
    store: str | None = None
    raw: bool = False


def validate(session: Session, options: ExportOptions) -> int | None:
    """Check the options; returns the store id to filter on, if any."""
    if options.format not in EXPORT_FORMATS:
        raise InvalidInput(f"unknown format {options.format!r}; use csv or jsonl")
    check_fraction("--min-confidence", options.min_confidence)
    if options.store is None:
        return None
    store_id = session.scalar(select(Store.id).where(Store.name == options.store))
    if store_id is None:
        raise InvalidInput(f"unknown store {options.store!r}; see 'slashcat stats'")
    return store_id


def _products_query(store_id: int | None, model: Model | None) -> Any:
    """Products with the active model's prediction, in id order."""
    query = (
        select(Product.id, Store.name, Product.external_id, Product.url, Product.title)
        .join(Store, Store.id == Product.store_id)
        .order_by(Product.id)
    )
    if model is not None:
        pc = aliased(Category)
        query = (
            query.add_columns(pc.name, Prediction.confidence)
            .outerjoin(
                Prediction,
                (Prediction.product_id == Product.id) & (Prediction.model_id == model.id),
            )
            .outerjoin(pc, pc.id == Prediction.category_id)
        )
    if store_id is not None:
        query = query.where(Product.store_id == store_id)
    return query


def _images_query(store_id: int | None) -> Any:
    """Each product's good images, first first, with the canonical image of their cluster.

    A separate stream merged in Python: a per-product "first image" subquery costs SQLite
    a sort per row and halves the export's speed.
    """
    img, canon, other = aliased(Image), aliased(Image), aliased(Image)
    canonical_id = (
        select(func.min(other.id))
        .where(other.cluster_id == img.cluster_id, other.is_canonical.is_(True))
        .correlate(img)
        .scalar_subquery()
    )
    query = (
        select(ProductImage.product_id, canon.sha256, canon.path, ProductImage.source_url)
        .join(img, img.id == ProductImage.image_id)
        .join(canon, canon.id == func.coalesce(canonical_id, img.id))
        .where(img.rejected_reason.is_(None))
        .order_by(ProductImage.product_id, ProductImage.position, ProductImage.id)
    )
    if store_id is not None:
        query = query.where(
            ProductImage.product_id.in_(select(Product.id).where(Product.store_id == store_id))
        )
    return query


def _labels_query(store_id: int | None) -> Any:
    query = live_labels_query(Label.confidence, Label.model_version, Label.created_at)
    if store_id is not None:
        query = query.where(
            Label.product_id.in_(select(Product.id).where(Product.store_id == store_id))
        )
    return query


def _first(rows: Iterable[Any]) -> Iterator[Any]:
    """Each product's first row from rows ordered by product."""
    last = None
    for row in rows:
        if row[0] != last:
            last = row[0]
            yield row


class _Follower:
    """Walks a stream of rows that start with a product id in step with the products, both in
    id order."""

    def __init__(self, stream: Iterator[Any]) -> None:
        self.stream = stream
        self.head = next(stream, None)

    def take(self, product_id: int) -> Any:
        while self.head is not None and self.head[0] < product_id:
            self.head = next(self.stream, None)
        if self.head is not None and self.head[0] == product_id:
            return self.head
        return None


def export_rows(session: Session, options: ExportOptions = ExportOptions()) -> Iterator[tuple]:
    """One tuple per product, in COLUMNS order, as Python values (None for empty).

    The options are checked before this returns, so bad input fails before anything is written.
    """
    store_id = validate(session, options)
    return _rows(session, options, store_id)


def _rows(session: Session, options: ExportOptions, store_id: int | None) -> Iterator[tuple]:
    model = active_model(session)
    version = model.version if model is not None else None
    # Core results on the session's connection: the ORM layer would double the cost per row.
    conn = session.connection()

    def stream(query: Any) -> Any:
        return conn.execute(query.execution_options(yield_per=CHUNK))

    products = stream(_products_query(store_id, model))
    images = _Follower(_first(stream(_images_query(store_id))))
    labels = _Follower(current_rows(stream(_labels_query(store_id))))
    filtered = options.only_reviewed or options.min_confidence is not None
    for row in products:
        pid = row[0]
        out = _final(row, images.take(pid), labels.take(pid), version)
        if not filtered or _keep(out, options):
            yield out


def _final(row: Any, image: Any, current: Any, version: str | None) -> tuple:
    base = (*row[1:5], *(image[1:4] if image is not None else (None, None, None)))
    if current is not None:
        _, source, name, confidence, label_version, created = current
        reviewed = created if source in REVIEWED else None
        if source == "store":
            confidence = label_version = None
        elif source == "human":
            confidence = None
        return (*base, name, source, confidence, label_version, reviewed)
    if len(row) > 5 and row[5] is not None:
        return (*base, row[5], "model", row[6], version, None)
    return (*base, None, None, None, None, None)


def _keep(out: tuple, options: ExportOptions) -> bool:
    source, confidence = out[8], out[9]
    if options.only_reviewed and source not in REVIEWED:
        return False
    if options.min_confidence is not None:
        if source is None:
            return False
        if source in ("model", "model-accepted") and (
            confidence is None or confidence < options.min_confidence
        ):
            return False
    return True


def neutralise(text: str) -> str:
    """Make a cell a spreadsheet shows as text rather than evaluates as a formula."""
    return "'" + text if text and text[0] in FORMULA_CHARS else text


def _csv_row(row: tuple, raw: bool) -> list[Any]:
    """Cells for csv.writer (which writes None as an empty cell), by column position."""
    text = list(row[:9])
    if not raw:
        text = ["'" + v if v and v[0] in FORMULA_CHARS else v for v in text]
    confidence, version, reviewed = row[9], row[10], row[11]
    if version and not raw:
        version = neutralise(version)
    text.append(None if confidence is None else round(confidence, 6))
    text.append(version)
    text.append(None if reviewed is None else reviewed.isoformat(timespec="seconds") + "Z")
    return text


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, float):
        return round(value, 6)
    return value


def _csv_writer(out: TextIO, raw: bool) -> Callable[[tuple], Any]:
    writer = csv.writer(out)  # RFC 4180: minimal quoting, "" for quotes, CRLF
    writer.writerow(COLUMNS)
    return lambda row: writer.writerow(_csv_row(row, raw))


def _jsonl_writer(out: TextIO) -> Callable[[tuple], Any]:
    def write(row: tuple) -> None:
        record = dict(zip(COLUMNS, map(_json_value, row), strict=True))
        out.write(json.dumps(record, ensure_ascii=False) + "\n")

    return write


def write_export(
    session: Session,
    out: TextIO,
    options: ExportOptions = ExportOptions(),
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the export to a text stream (opened with newline=''); returns the rows written."""
    rows = export_rows(session, options)  # checks the options before the header is written
    write = _csv_writer(out, options.raw) if options.format == "csv" else _jsonl_writer(out)
    count = 0
    for row in rows:
        write(row)
        count += 1
        if progress is not None and count % CHUNK == 0:
            progress(count)
    if progress is not None:
        progress(count)
    return count


def export_to_path(
    session: Session,
    path: Path,
    options: ExportOptions = ExportOptions(),
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the export to a file atomically: a failure leaves any earlier file untouched."""
    validate(session, options)
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise InvalidInput(f"folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = write_export(session, out, options, progress)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
