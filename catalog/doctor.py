"""Consistency checks between the catalog rows and the files of the home folder, with repairs.

`check(repair=True)` never races a writer: it takes the home's writers lock exclusively when it
can (no import, crawl or train runs, and none starts until the repair ends). When writers run,
files younger than the oldest running job (and than a grace period) are in flight: reported,
never deleted, since their rows may not be committed yet.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from sqlalchemy import func, make_url, select, text, update

from catalog.db import Catalog, current_revision, head_revision
from catalog.locks import alone
from catalog.models import CrawlRun, Image, Model, Prediction, utcnow
from catalog.settings import Settings
from catalog.store import TEMP_PREFIX

GRACE_S = 600.0  # a writer with no run row (train) has its files this long before they count


@dataclass
class DoctorReport:
    schema_revision: str | None = None
    schema_head: str = ""
    integrity: str = "ok"
    images_checked: int = 0
    orphan_files: list[Path] = field(default_factory=list)  # file, no row
    missing_files: list[str] = field(default_factory=list)  # row, no file (sha256)
    temp_files: list[Path] = field(default_factory=list)
    in_flight: list[Path] = field(default_factory=list)  # a running writer's, left alone
    writers_running: bool = False
    dead_runs: list[int] = field(default_factory=list)  # "running" rows of killed runs
    missing_models: list[str] = field(default_factory=list)  # versions whose file is gone
    orphan_models: list[Path] = field(default_factory=list)  # .keras files without a row

    @property
    def problems(self) -> int:
        bad_integrity = self.integrity != "ok"
        files = len(self.orphan_files) + len(self.missing_files) + len(self.temp_files)
        models = len(self.missing_models) + len(self.orphan_models)
        return files + models + len(self.dead_runs) + bad_integrity


def integrity_check(catalog: Catalog) -> str:
    """SQLite's own check of every page and index: "ok" or its first complaints."""
    if catalog.engine.dialect.name != "sqlite":
        return "ok"
    with catalog.engine.connect() as conn:
        rows = [str(r) for (r,) in conn.execute(text("PRAGMA integrity_check(20)"))]
    return "ok" if rows == ["ok"] else "; ".join(rows)


def file_integrity(settings: Settings) -> str:
    """SQLite's integrity check of a catalog file that may not even open through the engine."""
    url = make_url(settings.db_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return "not checked (not a SQLite file)"
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{url.database}?mode=ro", uri=True, timeout=10)
        ) as db:
            rows = [str(r) for (r,) in db.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "ok" if rows == ["ok"] else "; ".join(rows)


def check(catalog: Catalog, repair: bool = False) -> DoctorReport:
    report = DoctorReport(current_revision(catalog.engine), head_revision())
    report.integrity = integrity_check(catalog)
    with alone(catalog.settings.home) as no_writers:
        report.writers_running = not no_writers
        cutoff = _in_flight_cutoff(catalog, no_writers)
        _check_images(catalog, report, cutoff)
        _check_models(catalog, report, cutoff)
        if no_writers:
            with catalog.session() as session:
                running = select(CrawlRun.id).where(CrawlRun.status == "running")
                report.dead_runs = list(session.scalars(running.order_by(CrawlRun.id)))
        if repair:
            _repair(catalog, report)
    return report


def _in_flight_cutoff(catalog: Catalog, no_writers: bool) -> float:
    """Files modified at or after this time (epoch seconds) may belong to a running writer."""
    if no_writers:
        return float("inf")
    with catalog.session() as session:
        oldest = session.scalar(
            select(func.min(CrawlRun.started_at)).where(CrawlRun.status == "running")
        )
    cutoff = time.time() - GRACE_S
    if oldest is not None:
        cutoff = min(cutoff, oldest.replace(tzinfo=UTC).timestamp())
    return cutoff - 2.0  # file times and the clock of the row may differ by a little


def _check_images(catalog: Catalog, report: DoctorReport, cutoff: float) -> None:
    with catalog.session() as session:
        rows = session.execute(select(Image.sha256, Image.path).where(Image.path.is_not(None)))
        known = {path: sha for sha, path in rows}
    report.images_checked = len(known)
    on_disk = set()
    home = catalog.settings.home
    for f in catalog.store.files():
        rel = f.relative_to(home).as_posix()
        if rel in known:
            on_disk.add(rel)
        else:
            _sort_unknown(f, cutoff, report, report.orphan_files)
    report.missing_files = sorted(sha for path, sha in known.items() if path not in on_disk)


def _check_models(catalog: Catalog, report: DoctorReport, cutoff: float) -> None:
    home = catalog.settings.home
    with catalog.session() as session:
        rows = {path: v for path, v in session.execute(select(Model.path, Model.version))}
    report.missing_models = sorted(
        v for path, v in rows.items() if path and not (home / path).is_file()
    )
    models_dir = catalog.settings.models_dir
    if not models_dir.is_dir():
        return
    for f in sorted(models_dir.glob("*.keras")):  # temp files (".tmp-…") too
        rel = f.relative_to(home).as_posix()
        if rel not in rows:
            _sort_unknown(f, cutoff, report, report.orphan_models)


def _sort_unknown(f: Path, cutoff: float, report: DoctorReport, orphans: list[Path]) -> None:
    """A file no row names: in flight (a writer may commit it yet), a temp file, or an orphan."""
    if _younger(f, cutoff):
        report.in_flight.append(f)
    elif f.name.startswith(TEMP_PREFIX):
        report.temp_files.append(f)
    else:
        orphans.append(f)


def _younger(f: Path, cutoff: float) -> bool:
    try:
        return f.stat().st_mtime >= cutoff
    except FileNotFoundError:  # renamed or removed by its writer meanwhile
        return True


def _repair(catalog: Catalog, report: DoctorReport) -> None:
    """Orphan and temp files go; rows whose file is gone are marked rejected, keeping history;
    models whose file is gone are deactivated (and dropped when no prediction names them);
    runs left "running" by a killed process become "interrupted"."""
    for f in report.orphan_files + report.temp_files + report.orphan_models:
        f.unlink(missing_ok=True)
    with catalog.session() as session:
        if report.missing_files:
            for image in session.scalars(
                select(Image).where(Image.sha256.in_(report.missing_files))
            ):
                image.path = None
                image.rejected_reason = "missing-file: the stored file was lost"
        for model in session.scalars(select(Model).where(Model.version.in_(report.missing_models))):
            used = session.scalar(select(func.count()).where(Prediction.model_id == model.id))
            if used:
                model.active = False
                model.path = ""  # kept for its predictions; no file is expected any more
            else:
                session.delete(model)
        if report.dead_runs:
            session.execute(
                update(CrawlRun).where(CrawlRun.id.in_(report.dead_runs))
                .values(status="interrupted", finished_at=utcnow())
            )
