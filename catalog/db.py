"""Engine and sessions from a URL; opening a catalog upgrades it to the newest schema."""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from catalog.errors import (
    CatalogDamaged,
    CatalogError,
    CatalogLocked,
    CatalogNotFound,
    CatalogTooNew,
    InvalidInput,
    one_line,
)
from catalog.models import Base
from catalog.settings import Settings
from catalog.store import ImageStore

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "alembic"


def is_locked_error(exc: BaseException) -> bool:
    """SQLite's BUSY or LOCKED, by error code (a DBAPI error, or SQLAlchemy's wrapper of one)."""
    code = getattr(getattr(exc, "orig", exc), "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# Two processes migrating one PostgreSQL catalog at once take turns on this advisory lock.
MIGRATION_LOCK_KEY = 0x51A5_CA7


def normalise_url(url: str) -> str:
    """PostgreSQL URLs without a driver (postgres://, postgresql://) use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def safe_url(url: str) -> str:
    """The URL to show a user: its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def make_engine(url: str, busy_timeout_s: float = 10.0) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        _sqlite_pragmas(engine, busy_timeout_s)
        return engine
    # psycopg logs, as warnings, the errors it ignores while closing a connection the server
    # ended; the caller reports the lost connection itself, in one line.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    try:
        parsed = make_url(url)
        args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
        return create_engine(parsed, pool_pre_ping=True, connect_args=args)
    except NoSuchModuleError as exc:
        raise InvalidInput(f"unknown database URL scheme in {safe_url(url)}") from exc
    except ArgumentError as exc:
        raise InvalidInput(f"bad database URL {safe_url(url)}: {one_line(exc)}") from exc
    except ImportError as exc:
        raise InvalidInput(
            f"the driver for {safe_url(url)} is not installed ({exc.name}); for PostgreSQL: "
            "pip install 'slashcat[postgres]'"
        ) from exc


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
    if _check_revision(engine, known) == head_revision():
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Another process may be migrating: wait for it, then look again on this connection.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            if _check_revision(conn, known) == head_revision():
                return
        elif conn.dialect.name == "sqlite":
            # Python's sqlite3 runs DDL outside any transaction: a kill halfway through left half
            # a schema no later run could complete, and two processes creating one catalog
            # both made its tables. SQLite's DDL is transactional: take the write lock (the
            # second process waits for the first), look again, and commit all of it or none.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            if _check_revision(conn, known) == head_revision():
                return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _check_revision(bind: Engine | Connection, known: set[str]) -> str | None:
    from alembic.runtime.migration import MigrationContext

    if isinstance(bind, Engine):
        current = current_revision(bind)
    else:
        current = MigrationContext.configure(bind).get_current_revision()
    if current is not None and current not in known:
        raise CatalogTooNew(
            f"the catalog's schema ({current}) is newer than this slashcat knows; upgrade slashcat"
        )
    return current


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
        raise CatalogError(f"database error: {one_line(exc.orig or exc)}") from exc


def is_connection_lost(exc: BaseException | None) -> bool:
    """The database server ended our connection (it restarted, or an admin ended it), or cannot
    be reached. SQLAlchemy has then dropped the pool's connections, so the next transaction
    opens new ones."""
    while exc is not None:
        if isinstance(exc, DBAPIError) and (exc.connection_invalidated or _unreachable(exc)):
            return True
        exc = exc.__cause__
    return False


def _unreachable(exc: DBAPIError) -> bool:
    # psycopg's OperationalError: the server is down, restarting or refusing connections.
    return isinstance(exc, OperationalError) and type(exc.orig).__module__.startswith("psycopg")


def retry_locked(fn: Callable[..., T], *args: Any, attempts: int = 8, **kwargs: Any) -> T:
    """Run a write transaction again if SQLite said busy (another process was writing), or the
    server ended the connection mid-transaction (waiting a little longer each time, ~7 s in all).

    busy_timeout covers waiting for the lock, but not a transaction that read first and then
    found another writer had committed since (SQLite refuses it at once): that one must start
    over. `fn` must be one whole transaction, safe to repeat.
    """
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except CatalogError as exc:
            again = isinstance(exc, CatalogLocked) or is_connection_lost(exc)
            if not again or attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


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
        _connect_or_explain(engine)
        with translate_db_errors():
            try:
                upgrade(engine)
            except DBAPIError as exc:  # e.g. no right to create tables, no such schema
                if isinstance(exc, OperationalError) or is_damaged_error(exc):
                    raise
                raise CatalogError(
                    f"cannot prepare the catalog at {safe_url(str(engine.url))}: "
                    f"{one_line(exc.orig or exc)}"
                ) from exc
    except BaseException:
        engine.dispose()
        raise
    return Catalog(settings, engine)


def _connect_or_explain(engine: Engine) -> None:
    """A server that is down or refuses us: one line naming the URL (never its password)."""
    if engine.dialect.name == "sqlite":
        return
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        reason = one_line(exc.orig or exc).removeprefix("connection failed: ")
        raise CatalogError(
            f"cannot connect to the catalog at {safe_url(str(engine.url))}: {reason}"
        ) from exc


def insert_new(session: Session, model: type[Base], rows: list[dict[str, Any]],
               keys: list[str]) -> None:
    """Insert rows whose unique `keys` are not in the table yet (others are left as they are)."""
    if rows:
        statement = dialect_insert(session, model).on_conflict_do_nothing(index_elements=keys)
        session.execute(statement, rows)


def dialect_insert(session: Session, model: type[Base]) -> Any:
    """INSERT for this session's engine, with its ON CONFLICT clauses."""
    table: Any = model.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
