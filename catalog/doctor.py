"""Consistency checks between the catalog rows and the image files, with repairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text

from catalog.db import Catalog, current_revision, head_revision
from catalog.models import Image
from catalog.store import TEMP_PREFIX


@dataclass
class DoctorReport:
    schema_revision: str | None = None
    schema_head: str = ""
    integrity: str = "ok"
    images_checked: int = 0
    orphan_files: list[Path] = field(default_factory=list)  # file, no row
    missing_files: list[str] = field(default_factory=list)  # row, no file (sha256)
    temp_files: list[Path] = field(default_factory=list)
    repaired: bool = False

    @property
    def problems(self) -> int:
        bad_integrity = self.integrity != "ok"
        files = len(self.orphan_files) + len(self.missing_files) + len(self.temp_files)
        return files + bad_integrity


def check(catalog: Catalog, repair: bool = False) -> DoctorReport:
    report = DoctorReport(current_revision(catalog.engine), head_revision())
    if catalog.engine.dialect.name == "sqlite":
        with catalog.engine.connect() as conn:
            report.integrity = str(conn.execute(text("PRAGMA quick_check")).scalar())
    with catalog.session() as session:
        rows = session.execute(select(Image.sha256, Image.path).where(Image.path.is_not(None)))
        known = {path: sha for sha, path in rows}
    report.images_checked = len(known)
    on_disk = set()
    home = catalog.settings.home
    for f in catalog.store.files():
        rel = f.relative_to(home).as_posix()
        if f.name.startswith(TEMP_PREFIX):
            report.temp_files.append(f)
        elif rel not in known:
            report.orphan_files.append(f)
        else:
            on_disk.add(rel)
    report.missing_files = sorted(sha for path, sha in known.items() if path not in on_disk)
    if repair:
        _repair(catalog, report)
    return report


def _repair(catalog: Catalog, report: DoctorReport) -> None:
    """Orphan and temp files go; rows whose file is gone are marked rejected, keeping history."""
    for f in report.orphan_files + report.temp_files:
        f.unlink(missing_ok=True)
    if report.missing_files:
        with catalog.session() as session:
            for image in session.scalars(
                select(Image).where(Image.sha256.in_(report.missing_files))
            ):
                image.path = None
                image.rejected_reason = "missing-file: the stored file was lost"
    report.repaired = True
