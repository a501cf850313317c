"""Every database test runs on SQLite and on a real PostgreSQL, through the real ASGI app."""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

# The cheapest argon2id for the thousands of sign-ins the suite makes, set before anything hashes
# (and inherited by the CLI run as a subprocess); tests of the real cost ask for it by fixture.
os.environ["PRIVACY_API_PASSWORD_COST"] = "test"

import asyncpg
import httpx
import pytest
from limits.storage import storage_from_string
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from auth import passwords
from models import Base, Database, PolicyVersion
from privacy_api.cli import migrate
from privacy_api.config import Config
from tests.db_proxy import DatabaseProxy
from web import metrics
from web.app import create_app

SEED_POLICY_VERSION = "2025-07"
POSTGRES_ENV = "PRIVACY_API_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
REDIS_ENV = "PRIVACY_API_TEST_REDIS_URL"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
TEST_SECRET = "test-secret-key-that-is-long-enough-for-signing"
# Consent receipts are signed with this Ed25519 key (its 32 raw bytes, base64) in every test app.
# The web frontend's origin, allowed by the `frontend` fixture's app.
FRONTEND = "https://cms.example"
TEST_RECEIPT_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
TEST_WEBHOOK_KEY = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies, as migrating every time would be slow."""
    path: Path = tmp_path_factory.mktemp("sqlite") / "template.db"
    await migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each test's SQLite database is: one path, so that its URL (and the engine kept for
    it, see `_Kept`) is the same test after test."""
    return tmp_path_factory.mktemp("sqlite-each-test") / "privacy.db"


@pytest.fixture
async def sqlite_url(sqlite_template: Path, sqlite_path: Path) -> str:
    """A fresh copy of the migrated template, at the same path for every test."""
    url = f"sqlite+aiosqlite:///{sqlite_path}"
    await _Kept.close_connections(url)  # none may read the file being replaced
    _replace(sqlite_path, sqlite_template)
    return url


def _replace(path: Path, template: Path) -> None:
    for leftover in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{leftover}").unlink(missing_ok=True)
    shutil.copyfile(template, path)


@pytest.fixture(scope="session")
async def postgresql_url() -> AsyncIterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        message = (
            f"PostgreSQL not reachable at {make_url(admin_url).render_as_string()} ({error}). "
            f"Start one, or set {POSTGRES_ENV} to a server where the user may create databases."
        )
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    name = f"privacy_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        await migrate(url)
        yield url
    finally:
        await _Kept.close_connections(url)
        await _PostgresqlCleaner.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class _PostgresqlCleaner:
    """Empties the test database before each test in one round trip, on a connection kept for
    the session (an engine, a connection and forty statements each time cost more than many
    tests)."""

    connection: asyncpg.Connection | None = None
    # Every table but the policies, children first; replica mode skips triggers, among them the
    # ledger's refusal to delete events.
    SCRIPT = "".join(
        [
            "BEGIN; SET LOCAL session_replication_role = replica;",
            *(
                f'DELETE FROM "{table.name}";'
                for table in reversed(Base.metadata.sorted_tables)
                if table.name != PolicyVersion.__tablename__
            ),
            f'DELETE FROM "{PolicyVersion.__tablename__}" '
            f"WHERE version <> '{SEED_POLICY_VERSION}';",
            "COMMIT;",
        ]
    )

    @classmethod
    async def clean(cls, url: str) -> None:
        # A test may have ended this connection (tests/test_pool.py ends connections).
        if cls.connection is None or cls.connection.is_closed():
            cls.connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
        # Bounded: a connection a failed test left holding a lock must not hang the next one.
        try:
            await cls.connection.execute(cls.SCRIPT, timeout=30)
        except BaseException:
            # Its transaction may be left open: dropped, and the next test connects anew.
            cls.connection.terminate()
            cls.connection = None
            raise

    @classmethod
    async def close(cls) -> None:
        if cls.connection is not None and not cls.connection.is_closed():
            await cls.connection.close()
        cls.connection = None


@pytest.fixture(scope="session")
async def redis_url() -> str:
    """Redis for the rate limits several processes share; its URL is a setting like PostgreSQL's."""
    url = os.environ.get(REDIS_ENV, DEFAULT_REDIS)
    if not await storage_from_string(f"async+{url}").check():
        message = f"Redis not reachable at {url}. Start one, or set {REDIS_ENV} to one."
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each reason for skipping once, with how many tests it skipped (pytest's own summary would
    repeat a missing server's message for every test location)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count} skipped: {reason}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def clean_database_url(database_url: str) -> str:
    """The database, emptied of everything but the migrations' seed."""
    if database_url.startswith("sqlite"):
        return database_url  # a fresh copy of the template already
    await _PostgresqlCleaner.clean(database_url)
    return database_url


class _KeptDatabase(Database):
    """A `Database` kept from test to test (see `_Kept`)."""

    async def dispose(self) -> None:
        """What a test's teardown asks: SQLite's connections close, as its file is replaced
        before the next test; PostgreSQL's stay open for it, as that database is only emptied
        (opening them again cost more than many tests)."""
        if self.engine.dialect.name == "sqlite":
            await self.close()

    async def close(self) -> None:
        await super().dispose()


class _Kept:
    """One `Database` per URL for the tests' `app` and `database` fixtures, kept from test to
    test: an engine compiles each statement once and keeps it, and a new engine per test
    compiled every statement of every test again (an eighth of the suite's time). Tests that
    build their own `Database` or app still get engines of their own."""

    databases: dict[str, _KeptDatabase] = {}

    @classmethod
    def database(cls, url: str) -> Database:
        if url not in cls.databases:
            database = _KeptDatabase(url, make_config(url).database_timeouts)
            metrics.watch_pool(database)
            cls.databases[url] = database
        return cls.databases[url]

    @classmethod
    async def close_connections(cls, url: str) -> None:
        if url in cls.databases:
            await cls.databases[url].close()


@pytest.fixture
def standard_password_cost() -> Iterator[None]:
    """Passwords hashed at the cost production uses, for the tests about that cost."""
    passwords.use_cost(passwords.STANDARD)
    try:
        yield
    finally:
        passwords.use_cost(passwords.TEST)


def make_config(database_url: str, **overrides: object) -> Config:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "environment": "development",
        "receipt_signing_key": TEST_RECEIPT_KEY,
        "webhook_secret_keys": (TEST_WEBHOOK_KEY,),
    }
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


@pytest.fixture
def config(clean_database_url: str) -> Config:
    return make_config(clean_database_url)


def app_for(config: Config) -> Starlette:
    """The app for `config`, on the database kept for its URL when its waits are the usual ones
    (see `_Kept`)."""
    if config.database_timeouts != make_config(config.database_url).database_timeouts:
        return create_app(config)
    return create_app(config, _Kept.database(config.database_url))


@pytest.fixture
async def app(config: Config) -> AsyncIterator[object]:
    application = app_for(config)
    yield application
    await application.state.services.database.dispose()


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@asynccontextmanager
async def client_of(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app for `config` (see `app_for`) in this process, for a test or fixture
    that needs other settings than the `client` fixture's."""
    application = app_for(config)
    transport = httpx.ASGITransport(app=application)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await application.state.services.database.dispose()


@pytest.fixture
async def production_client(clean_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app as production runs it: no introspection, suggestions or GraphiQL."""
    async with client_of(make_config(clean_database_url, environment="production")) as http:
        yield http


@pytest.fixture
async def frontend(clean_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app that lets the web frontend's origin (`FRONTEND`) call it."""
    async with client_of(make_config(clean_database_url, allowed_origins=(FRONTEND,))) as http:
        yield http


@pytest.fixture
async def database(clean_database_url: str) -> AsyncIterator[Database]:
    """Direct access for assertions about what was (not) stored."""
    db = _Kept.database(clean_database_url)
    yield db
    await db.dispose()


@pytest.fixture
async def proxy(clean_database_url: str) -> AsyncIterator[DatabaseProxy]:
    """A proxy in front of the PostgreSQL database that can stall or cut its connections (the
    outage tests, and the compiled executor's)."""
    url = make_url(clean_database_url)
    proxy = DatabaseProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()
