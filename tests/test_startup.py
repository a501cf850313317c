"""A start that cannot work ends at once with one line that says why, never a traceback or a hang:
a database URL the API cannot use, a database that refuses or never answers, a rate-limit store
that is down. `/readyz` tells a load balancer about the last two while the API runs.

The commands run in this process, to spare each the start of an interpreter; one refusal is run
as a real interpreter, for what only a process shows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from privacy_api.config import Config
from tests.conftest import TEST_SECRET
from tests.helpers import CliRun, run_in_process
from tests.test_cli import free_port
from web.app import create_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def environment(data_dir: Path, **env: str) -> dict[str, str]:
    """The environment given and no other PRIVACY_API_* setting (not even the suite's)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PRIVACY_API_")},
        "PRIVACY_API_DATA_DIR": str(data_dir),
        "PRIVACY_API_SECRET_KEY": TEST_SECRET,
        **env,
    }


def arguments(command: str) -> list[str]:
    return [command, "--port", str(free_port())] if command == "serve" else [command]


def start(data_dir: Path, command: str, **env: str) -> CliRun:
    """Run a `privacy-api` command, in this process, with the environment given. Each one here
    is refused before it serves (one that served would fail the test at once)."""
    return run_in_process(arguments(command), environment(data_dir, **env))


def start_process(data_dir: Path, command: str, **env: str) -> CliRun:
    """The same, as a real interpreter: what it prints at import and at exit counts too."""
    result = subprocess.run(
        [sys.executable, "-m", "privacy_api", *arguments(command)],
        cwd=PROJECT_ROOT,
        env=environment(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return CliRun(result.returncode, result.stdout, result.stderr)


def one_line(result: CliRun) -> str:
    """The single line a refused start prints, after checking it printed nothing else."""
    assert result.code != 0, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word: a database behind a dead link."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes each handshake; nobody ever reads
        yield listener.getsockname()[1]


class TestDatabaseUrl:
    @pytest.mark.parametrize(
        ("url", "scheme"),
        [
            ("postgres://privacy:pw@db.internal/privacy", "postgres://"),
            ("postgresql://privacy:pw@db.internal/privacy", "postgresql://"),
            ("postgresql+psycopg2://privacy@db.internal/privacy", "postgresql+psycopg2://"),
        ],
    )
    def test_a_postgresql_url_without_asyncpg_says_what_to_write(
        self, tmp_path: Path, url: str, scheme: str
    ) -> None:
        line = one_line(start(tmp_path, "serve", PRIVACY_API_DATABASE_URL=url))

        assert line.startswith("Configuration error: PRIVACY_API_DATABASE_URL")
        assert f"starts with {scheme}," in line
        assert "postgresql+asyncpg://user:password@host:5432/name" in line
        assert "pw" not in line.replace("password", "")  # the password is never echoed

    def test_sqlite_without_aiosqlite(self, tmp_path: Path) -> None:
        line = one_line(start(tmp_path, "migrate", PRIVACY_API_DATABASE_URL="sqlite:///x.db"))

        assert "sqlite+aiosqlite:///" in line

    def test_another_database(self, tmp_path: Path) -> None:
        line = one_line(start(tmp_path, "migrate", PRIVACY_API_DATABASE_URL="mysql://db/x"))

        assert "does not run on" in line
        assert "postgresql+asyncpg://" in line


class TestUnreachableDatabase:
    def test_a_refused_connection(self, tmp_path: Path) -> None:
        url = f"postgresql+asyncpg://privacy@127.0.0.1:{free_port()}/privacy"

        line = one_line(start(tmp_path, "serve", PRIVACY_API_DATABASE_URL=url))

        assert line.startswith(f"Database unreachable: {url} did not answer")
        assert "PRIVACY_API_DATABASE_URL" in line

    def test_a_refused_start_as_a_real_process_prints_one_line_and_no_traceback(
        self, tmp_path: Path
    ) -> None:
        # The one refusal run as a real interpreter, for what a command run in this process
        # cannot show: the exit status, and what Python prints at import or at exit (a warning,
        # a connection left open, a task whose error nobody read).
        url = f"postgresql+asyncpg://privacy@127.0.0.1:{free_port()}/privacy"

        result = start_process(tmp_path, "serve", PRIVACY_API_DATABASE_URL=url)
        line = one_line(result)

        assert result.code == 2
        assert line.startswith(f"Database unreachable: {url} did not answer")
        assert result.out == ""
        assert not (tmp_path / "privacy.db").exists()

    def test_a_database_that_never_answers_ends_the_wait(
        self, tmp_path: Path, silent_server: int
    ) -> None:
        url = f"postgresql+asyncpg://privacy@127.0.0.1:{silent_server}/privacy"

        line = one_line(
            start(
                tmp_path,
                "migrate",
                PRIVACY_API_DATABASE_URL=url,
                PRIVACY_API_DB_CONNECT_TIMEOUT="1",
            )
        )

        assert line.startswith("Database unreachable:")
        assert "within 1 seconds (no answer in time)" in line
        assert "PRIVACY_API_DB_CONNECT_TIMEOUT" in line

    def test_every_command_that_needs_it_checks(self, tmp_path: Path) -> None:
        url = f"postgresql+asyncpg://privacy@127.0.0.1:{free_port()}/privacy"

        line = one_line(start(tmp_path, "purge", PRIVACY_API_DATABASE_URL=url))

        assert line.startswith("Database unreachable:")


class TestUnreachableRateLimitStore:
    def test_serve_checks_it_at_start(self, tmp_path: Path) -> None:
        store = f"redis://127.0.0.1:{free_port()}"

        line = one_line(start(tmp_path, "serve", PRIVACY_API_RATE_LIMIT_STORAGE=store))

        assert line.startswith(f"Rate-limit store unreachable: {store} did not answer")
        assert "PRIVACY_API_RATE_LIMIT_STORAGE" in line
        assert not (tmp_path / "privacy.db").exists()  # refused before anything was written


class TestReadiness:
    async def test_ready_when_the_database_and_the_store_answer(self, config: Config) -> None:
        shared = replace(config, rate_limit_storage="redis://127.0.0.1:6379")
        async with served(shared) as http:
            response = await http.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_not_ready_while_the_rate_limit_store_is_down(self, config: Config) -> None:
        down = replace(config, rate_limit_storage=f"redis://127.0.0.1:{free_port()}")
        async with served(down) as http:
            response = await http.get("/readyz")
            # Liveness is another question: the process itself is fine.
            alive = await http.get("/healthz")

        assert response.status_code == 503
        assert response.json() == {"status": "rate limit store unavailable"}
        assert alive.status_code == 200


@asynccontextmanager
async def served(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app built from `config`, disposed of afterwards."""
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await app.state.services.database.dispose()
