"""The fixtures of tests/helpers/servers.py that other tests build on (PostgreSQL, Redis)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import create_engine, text

from helpers.servers import redis_call


def test_each_test_gets_an_empty_schema_in_the_session_database(
        postgres_url: str, pg_catalog_url: str) -> None:
    engine = create_engine(pg_catalog_url)
    with engine.connect() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar()
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        tables = conn.execute(text("SELECT count(*) FROM information_schema.tables "
                                   "WHERE table_schema = current_schema()")).scalar()
    engine.dispose()
    assert database == urlsplit(postgres_url).path.strip("/")
    assert database.startswith("slashcat_test_")
    assert schema.startswith("t_") and tables == 0


def test_redis_url_is_an_empty_db_of_this_session(redis_url: str, redis_server_url: str) -> None:
    assert redis_call(redis_url, "PING") == b"+PONG"
    assert urlsplit(redis_url).path != urlsplit(redis_server_url).path
    assert redis_call(redis_url, "DBSIZE") == b":0"
    assert redis_call(redis_url, "SET", "k", "v") == b"+OK"


def test_redis_url_is_emptied_before_each_test(redis_url: str) -> None:
    assert redis_call(redis_url, "DBSIZE") == b":0"  # the previous test's key is gone
