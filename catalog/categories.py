"""The taxonomy and the mapping from a store's category paths onto it."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db import insert_new
from catalog.errors import UnknownCategory
from catalog.models import Category, CategoryMapping

SEPARATOR = " > "


def normalise_path(path: str | list[str] | None) -> str | None:
    """The one place category names are cleaned, whatever they come from (a crawled page, a
    folder, a CSV, the command line): 'Apparel>Topwear / ' and ['Apparel', 'Topwear'] both
    become 'Apparel > Topwear'.

    Unicode is composed (NFC: a decomposed "café" is the precomposed one) and runs of any
    whitespace become one space. ">" separates levels everywhere, folder names included (a
    folder "Tops > Tees" is the path Tops > Tees, as `categories map "Tops > Tees"` reads it).
    """
    if path is None:
        return None
    if isinstance(path, list):
        parts = [p for part in path for p in part.split(">")]
    else:
        parts = path.replace("/", ">").split(">")
    clean = [" ".join(unicodedata.normalize("NFC", p).split()) for p in parts]
    clean = [p for p in clean if p and p.lower() not in {"home", "start", "shop"}]
    return SEPARATOR.join(clean) or None


def path_at_level(path: str, level: int | None) -> str:
    """The first `level` parts of a path (None keeps it whole)."""
    parts = path.split(SEPARATOR)
    return SEPARATOR.join(parts[:level]) if level else path


def ensure_category(session: Session, name: str) -> Category:
    """The category with this path name, creating it and its parents.

    Two writers may create the same new category at once (a crawl and an import on
    PostgreSQL): the insert does nothing when the other's row exists, and the read finds it.
    """
    query = select(Category).where(Category.name == name)
    found = session.scalar(query)
    if found is not None:
        return found
    parts = name.split(SEPARATOR)
    parent = ensure_category(session, SEPARATOR.join(parts[:-1])) if len(parts) > 1 else None
    insert_new(session, Category, [{"name": name, "parent_id": parent.id if parent else None}],
               ["name"])
    return session.scalars(query).one()


def get_category(session: Session, name: str) -> Category:
    name = normalise_path(name) or name  # as typed: "Tops>Tees", a decomposed é
    found = session.scalar(select(Category).where(Category.name == name))
    if found is None:
        found = session.scalar(select(Category).where(Category.name.endswith(SEPARATOR + name)))
    if found is None:
        raise UnknownCategory(f"unknown category {name!r}; see 'slashcat categories list'")
    return found


def mapped_category(session: Session, store_id: int, store_path: str) -> Category:
    """The catalog category a store path maps to; by default the path itself."""
    rows = session.scalars(
        select(CategoryMapping).where(
            CategoryMapping.store_path == store_path,
            (CategoryMapping.store_id == store_id) | CategoryMapping.store_id.is_(None),
        )
    ).all()
    # A store's own mapping wins over a catalog-wide one.
    best = sorted(rows, key=lambda m: m.store_id is None)
    if best:
        return session.get_one(Category, best[0].category_id)
    return ensure_category(session, store_path)


def set_mapping(
    session: Session, store_path: str, category_name: str, store_id: int | None = None
) -> CategoryMapping:
    category = ensure_category(session, category_name)
    mapping = session.scalar(
        select(CategoryMapping).where(
            CategoryMapping.store_path == store_path,
            CategoryMapping.store_id.is_(None)
            if store_id is None
            else CategoryMapping.store_id == store_id,
        )
    )
    if mapping is None:
        mapping = CategoryMapping(store_id=store_id, store_path=store_path, category_id=category.id)
        session.add(mapping)
    else:
        mapping.category_id = category.id
    session.flush()
    return mapping


@dataclass(frozen=True)
class CategoryRow:
    name: str
    products: int
    mapped_from: list[str]


def list_categories(session: Session) -> list[CategoryRow]:
    from catalog.labels import current_labels

    counts: dict[int, int] = {}
    for label in current_labels(session):
        counts[label.category_id] = counts.get(label.category_id, 0) + 1
    sources: dict[int, list[str]] = {}
    for m in session.scalars(select(CategoryMapping)):
        sources.setdefault(m.category_id, []).append(m.store_path)
    return [
        CategoryRow(c.name, counts.get(c.id, 0), sorted(sources.get(c.id, [])))
        for c in session.scalars(select(Category).order_by(Category.name))
    ]
