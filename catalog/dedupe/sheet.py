"""The contact sheet: a PNG of the largest recorded clusters, to look at what dedupe did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.db import Catalog
from catalog.dedupe.clusters import list_clusters
from catalog.errors import InvalidInput
from catalog.imaging import read_file, thumbnail
from catalog.models import Image


def contact_sheet(
    catalog: Catalog,
    out: Path,
    clusters: int = 12,
    per_row: int = 8,
    thumb: int = 112,
) -> int:
    """Write a PNG with one row per cluster (largest first), canonical image first and framed.

    Returns how many clusters it shows; InvalidInput if there are none to show.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"{out}: the contact sheet is a PNG; give a file name ending in .png")
    with catalog.session() as session:
        infos = list_clusters(session, clusters)
        rows = [(info, _paths(session, info.member_ids[:per_row])) for info in infos]
    if not rows:
        raise InvalidInput("no clusters to show; run 'slashcat dedupe' first")
    label_h, pad = 18, 6
    width = pad + per_row * (thumb + pad)
    height = pad + len(rows) * (thumb + label_h + pad)
    sheet = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (info, paths) in enumerate(rows):
        top = pad + r * (thumb + label_h + pad)
        more = f" (first {per_row})" if info.size > per_row else ""
        draw.text((pad, top + 2), f"cluster {info.cluster_id}: {info.size} images{more}",
                  fill="black")
        for c, (image_id, path) in enumerate(paths):
            left = pad + c * (thumb + pad)
            tile = _tile(catalog, path, thumb)
            sheet.paste(tile, (left, top + label_h))
            if image_id == info.canonical_id:
                draw.rectangle([left - 2, top + label_h - 2, left + thumb + 1,
                                top + label_h + thumb + 1], outline=(0, 160, 0), width=3)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sheet.save(out, "PNG")
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc}") from exc
    return len(rows)


def _paths(session: Session, ids: list[int]) -> list[tuple[int, str | None]]:
    found = dict(session.execute(select(Image.id, Image.path).where(Image.id.in_(ids))).all())
    return [(i, found.get(i)) for i in ids]


def _tile(catalog: Catalog, path: str | None, size: int) -> Any:
    """A size x size tile of the image, letterboxed; a grey tile if the file is unreadable."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    tile = PILImage.new("RGB", (size, size), (235, 235, 235))
    try:
        if path is None:
            raise OSError("no file")
        rgb = thumbnail(read_file(catalog.store.path(path)), (size, size))
        tile.paste(rgb, ((size - rgb.width) // 2, (size - rgb.height) // 2))
    except (OSError, ValueError):
        ImageDraw.Draw(tile).text((8, size // 2 - 6), "unreadable", fill=(120, 0, 0))
    return tile
