"""Real PostgreSQL and Redis servers for tests.

Each server comes from, in order: the URL in TEST_SLASHCAT_POSTGRES_URL / TEST_SLASHCAT_REDIS_URL
(CI starts the servers and exports them); a throwaway server started here in a temporary folder
when Debian's binaries are installed (`apt-get install postgresql redis-server`); otherwise the
tests that need it are skipped with one line, except when CI is set, where they fail.

Fixtures:
- `postgres_url`: session; a fresh database (unique name) on the server, dropped at the end.
- `pg_catalog_url`: per test; a fresh, empty schema in that database (its URL sets search_path),
  so each test starts from an empty catalog without paying for a CREATE DATABASE.
- `redis_url`: per test; `redis://host:port/N`, a db number of this session's own, emptied
  (FLUSHDB) before the test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

PG_ENV = "TEST_SLASHCAT_POSTGRES_URL"
REDIS_ENV = "TEST_SLASHCAT_REDIS_URL"


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the servers must be there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the servers must be running)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


# --- PostgreSQL ------------------------------------------------------------------------------

def pg_bin_dir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps initdb out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the packaged `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A throwaway cluster in a temporary folder, trusting local connections, on loopback."""

    def __init__(self, bin_dir: Path, crash_safe: bool = False) -> None:
        self.bin_dir = bin_dir
        self.crash_safe = crash_safe  # for `halt`: every acknowledged commit survives it
        self.dir = Path(tempfile.mkdtemp(prefix="slashcat-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.restart()

    def restart(self) -> None:
        """Start the cluster's server (again, after `halt`)."""
        # The machine does not crash here, only the server: without fsync, CREATE DATABASE and
        # commits are fast. Without synchronous commits, a halt loses the last acknowledged ones.
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                f"-c synchronous_commit={'on' if self.crash_safe else 'off'} "
                "-c full_page_writes=off")
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                   "-l", str(self.dir / "log"), "-w", "-t", "30", "start"])

    def halt(self) -> None:
        """Stop the server at once, as a crash would, keeping its data (`restart` brings it
        back)."""
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                   "-w", "stop"])

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                       "-w", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True, cwd=self.dir)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()


def with_schema(url: str, schema: str) -> str:
    """The URL with libpq's `options` setting search_path, so every table lands in `schema`."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def _admin(url: str, *statements: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL to a maintenance database on a running PostgreSQL server."""
    env_url = os.environ.get(PG_ENV)
    if env_url:
        yield env_url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("PostgreSQL tests need psycopg: pip install -e '.[dev]'")
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        unavailable(f"no PostgreSQL server: set {PG_ENV} or apt-get install postgresql")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except (OSError, subprocess.CalledProcessError) as exc:
        server.stop()
        unavailable(f"cannot start PostgreSQL from {bin_dir}: {exc}")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database of this test session's own."""
    name = f"slashcat_test_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield with_database(postgres_server_url, name)
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_schema(postgres_url: str) -> Iterator[str]:
    """A URL whose tables all land in a new, empty schema; the schema is dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _admin(postgres_url, f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(postgres_url, schema)
    finally:
        _admin(postgres_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_catalog_url(postgres_url: str) -> Iterator[str]:
    """An empty catalog URL for one test."""
    with fresh_schema(postgres_url) as url:
        yield url


# --- Redis -----------------------------------------------------------------------------------

def redis_call(url: str, *args: str) -> bytes:
    """One command in the URL's db over RESP; the reply's first line (no client library)."""
    parts = urlsplit(url)
    cmds = [["SELECT", parts.path.strip("/") or "0"], list(args)]
    if parts.password:
        cmds.insert(0, ["AUTH", parts.password])
    payload = "".join(
        f"*{len(c)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in c) for c in cmds
    )
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as s:
        s.sendall(payload.encode())
        data = b""
        while data.count(b"\r\n") < len(cmds):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[len(cmds) - 1]


def with_db_number(url: str, db: int) -> str:
    return urlsplit(url)._replace(path=f"/{db}").geturl()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    env_url = os.environ.get(REDIS_ENV)
    if env_url:
        yield env_url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable(f"no Redis server: set {REDIS_ENV} or apt-get install redis-server")
    assert binary is not None
    folder = tempfile.mkdtemp(prefix="slashcat-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port):
            unavailable(f"redis-server did not start on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_session_url(redis_server_url: str) -> Iterator[str]:
    """A db number of this session's own: claimed by a key in the server URL's db, so several
    sessions can share one server and each test db holds only the test's keys."""
    token = uuid.uuid4().hex
    start = int(urlsplit(redis_server_url).path.strip("/") or 0)
    for db in range(start + 1, 16):
        claim = f"slashcat-test-db:{db}"
        if redis_call(redis_server_url, "SET", claim, token, "NX", "EX", "86400") == b"+OK":
            yield with_db_number(redis_server_url, db)
            redis_call(with_db_number(redis_server_url, db), "FLUSHDB")
            redis_call(redis_server_url, "DEL", claim)
            return
    unavailable(f"no free Redis db number on {redis_server_url}")


@pytest.fixture
def redis_url(redis_session_url: str) -> str:
    """`redis://host:port/N`: this session's own db number, emptied (FLUSHDB) before the test."""
    redis_call(redis_session_url, "FLUSHDB")
    return redis_session_url
