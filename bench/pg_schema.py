"""A PostgreSQL catalog URL of a benchmark's own: a schema in the given database, via search_path.

The server is yours to start (README, "When one machine is not enough"); the benchmarks take its
URL with --postgres and never touch other schemas.
"""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import create_engine, text


def schema_url(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def reset_schema(url: str, schema: str, drop_only: bool = False) -> str:
    """Drop `schema` (and everything in it), create it empty unless `drop_only`; its URL."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        if not drop_only:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return schema_url(url, schema)


def schema_exists(url: str, schema: str) -> bool:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM information_schema.schemata "
                                  "WHERE schema_name = :s"), {"s": schema}).first()
    engine.dispose()
    return found is not None
