"""Engine and sessions from a URL; opening a catalog upgrades it to the newest schema."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from catalog.errors import (
    CatalogDamaged,
    CatalogError,
    CatalogLocked,
    CatalogNotFound,
    CatalogTooNew,
)
from catalog.settings import Settings
from catalog.store import ImageStore

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "alembic"


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's BUSY or LOCKED, by error code (a DBAPI error, or SQLAlchemy's wrapper of one)."""
    code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def make_engine(url: str, busy_timeout_s: float = 10.0) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        _sqlite_pragmas(engine, busy_timeout_s)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = NORMAL")
        try:
            cur.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:  # a locked file refuses the journal switch
            if not is_locked_error(exc):
                raise
        cur.close()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to head; refuse a catalog written by a newer slashcat."""
    from alembic.script import ScriptDirectory

    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
    current = current_revision(engine)
    if current is not None and current not in known:
        raise CatalogTooNew(
            f"the catalog's schema ({current}) is newer than this slashcat knows; upgrade slashcat"
        )
    if current == head_revision():
        return
    with _migration_lock(engine):  # two processes creating one catalog: the second waits
        if current_revision(engine) == head_revision():
            return
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                # Python's sqlite3 runs DDL outside any transaction, so a kill halfway through
                # creating the catalog left half a schema that no later run could complete.
                # SQLite's DDL is transactional: all of the migration commits, or none.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """A lock file next to a SQLite catalog, held while its schema is created or upgraded.

    (SQLite's own lock cannot serve: Python's sqlite3 runs DDL outside a transaction.)"""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Catalog:
    """An open catalog: the engine, a session factory and the image store."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.store = ImageStore(settings.images_dir)

    @contextlib.contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A session that commits on success and turns a lock into CatalogLocked.

        `write=True` takes SQLite's write lock first (BEGIN IMMEDIATE), for a transaction that
        reads what it is about to insert: another process cannot commit the same rows in
        between, and the wait for the lock honours busy_timeout (a deferred transaction that
        reads and then writes gets SQLITE_BUSY at once when another process wrote meanwhile).
        """
        with translate_db_errors(), self.sessions() as session, session.begin():
            if write and self.engine.dialect.name == "sqlite":
                session.execute(text("BEGIN IMMEDIATE"))
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_damaged_error(exc: BaseException) -> bool:
    """SQLite's CORRUPT or NOTADB: a truncated, overwritten or foreign file."""
    code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def damaged(exc: BaseException, name: str = "catalog.db") -> CatalogDamaged:
    reason = getattr(exc, "orig", exc)
    return CatalogDamaged(f"{name} is damaged: {reason}; restore a backup or run "
                          "`slashcat doctor`")


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    try:
        yield
    except DatabaseError as exc:  # OperationalError (a lock) is one too
        if is_locked_error(exc):
            raise CatalogLocked(
                "the catalog is locked by another process; try again when it has finished"
            ) from exc
        if is_damaged_error(exc):
            raise damaged(exc) from exc
        raise CatalogError(f"database error: {exc.orig}") from exc


def open_catalog(settings: Settings, create: bool = True) -> Catalog:
    """Open (and if `create`, make) the catalog named by settings, migrated to head."""
    if settings.home.exists() and not settings.home.is_dir():
        raise CatalogError(f"{settings.home} is a file, not a folder; give --home a folder "
                           "(it is created if missing)")
    if settings.is_sqlite and not settings.db:
        if not create and not (settings.home / "catalog.db").exists():
            raise CatalogNotFound(
                f"no catalog at {settings.home}; run 'slashcat init' or pass --home"
            )
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url, settings.busy_timeout_s)
    try:
        with translate_db_errors():
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Catalog(settings, engine)
