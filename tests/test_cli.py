"""The `privacy-api` command as an operator runs it, on a SQLite file of its own.

Most commands run in this process (`tests.helpers.run_in_process`); the two that serve start the
real command, as an operator would, and sign in to it."""

from __future__ import annotations

import argparse
import asyncio
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from privacy_api import cli
from privacy_api.cli import next_slot
from schema import schema_sdl
from tests.helpers import CliRun, process_environment, run_in_process

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "privacy_api"]


def cli_environment(data_dir: Path, **env: str) -> dict[str, str]:
    """The command's environment: a database of its own in `data_dir`, not the test suite's."""
    environment = process_environment(PRIVACY_API_DATA_DIR=str(data_dir), **env)
    environment.pop("PRIVACY_API_DATABASE_URL", None)
    return environment


def run_cli(data_dir: Path, *args: str, **env: str) -> CliRun:
    """A command that ends (never one that serves), run in this process."""
    return run_in_process(list(args), cli_environment(data_dir, **env))


def start_serve(data_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """`privacy-api serve` in the background on a database in `data_dir`, output in one pipe."""
    return subprocess.Popen(
        [*COMMAND, "serve", *args],
        cwd=PROJECT_ROOT,
        env=cli_environment(data_dir, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_committed_schema_matches_the_code() -> None:
    committed = (PROJECT_ROOT / "schema.graphql").read_text()
    assert committed == schema_sdl(), "schema.graphql is stale: run `make schema`"


def test_export_schema_writes_the_sdl(tmp_path: Path) -> None:
    target = tmp_path / "out.graphql"
    result = run_cli(tmp_path, "export-schema", "--output", str(target))
    assert result.code == 0, result.err
    assert target.read_text() == schema_sdl()


def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_cli(tmp_path, "migrate")
        assert result.code == 0, result.err
    assert (tmp_path / "privacy.db").exists()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", PRIVACY_API_ENV="production", PRIVACY_API_SECRET_KEY="")
    assert result.code == 2
    assert "PRIVACY_API_SECRET_KEY" in result.err
    assert "Traceback" not in result.err


def test_production_refuses_the_test_suites_password_cost(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "migrate",
        PRIVACY_API_ENV="production",
        PRIVACY_API_SECRET_KEY="s" * 40,
        PRIVACY_API_PUBLIC_URL="https://privacy.example.com",
        PRIVACY_API_PASSWORD_COST="test",
    )
    assert result.code == 2
    assert "PRIVACY_API_PASSWORD_COST is for the test suite only" in result.err
    assert "Traceback" not in result.err


def test_create_staff(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "migrate").code == 0
    made = run_cli(
        tmp_path,
        "create-staff",
        "--email",
        "Officer@Example.com",
        "--name",
        "Olga Officer",
        "--role",
        "privacy-officer",
        PRIVACY_API_STAFF_PASSWORD="officer passphrase",
    )
    assert made.code == 0, made.err
    again = run_cli(
        tmp_path,
        "create-staff",
        "--email",
        "officer@example.com",
        "--name",
        "Someone Else",
        "--role",
        "support",
        PRIVACY_API_STAFF_PASSWORD="another passphrase",
    )
    assert again.code == 1
    assert "already in use" in again.err
    weak = run_cli(
        tmp_path,
        "create-staff",
        "--email",
        "s@example.com",
        "--name",
        "S",
        "--role",
        "support",
        PRIVACY_API_STAFF_PASSWORD="12345678",
    )
    assert weak.code == 1
    assert "password" in weak.err


def test_serve_prints_a_demo_account_that_can_sign_in(tmp_path: Path) -> None:
    port = free_port()
    server = start_serve(tmp_path, "--port", str(port))
    try:
        assert server.stdout is not None
        demo = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and demo is None:
            line = server.stdout.readline()
            demo = re.search(r"email (\S+)\s+password (\S+)", line)
        assert demo, "serve did not print the demo account"
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        playground = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
        assert playground.status_code == 200 and "graphiql" in playground.text.lower()
        login = httpx.post(
            f"{base}/graphql",
            json={
                "query": "mutation($i: LoginInput!) { login(input: $i) { token errors { code } } }",
                "variables": {"i": {"email": demo[1], "password": demo[2]}},
            },
        )
        assert login.json()["data"]["login"]["errors"] == []
        assert login.json()["data"]["login"]["token"]
    finally:
        server.terminate()
        server.wait(timeout=20)

    second = run_cli(tmp_path, "serve", "--port", "0", PRIVACY_API_ENV="bogus")
    assert second.code == 2
    assert "PRIVACY_API_ENV" in second.err


def test_the_demo_account_is_made_only_on_an_empty_database(tmp_path: Path) -> None:
    from privacy_api.cli import create_demo_account, migrate
    from privacy_api.config import load_config

    config = load_config({"PRIVACY_API_DATA_DIR": str(tmp_path)})
    asyncio.run(migrate(config.database_url))

    first = asyncio.run(create_demo_account(config))
    second = asyncio.run(create_demo_account(config))

    assert first is not None and first[0] == "demo@example.com"
    assert second is None


def test_production_needs_the_public_url_for_links(tmp_path: Path) -> None:
    secret = "s" * 40
    missing = run_cli(
        tmp_path, "migrate", PRIVACY_API_ENV="production", PRIVACY_API_SECRET_KEY=secret
    )
    given = run_cli(
        tmp_path,
        "migrate",
        PRIVACY_API_ENV="production",
        PRIVACY_API_SECRET_KEY=secret,
        PRIVACY_API_PUBLIC_URL="https://privacy.example.com/",
    )
    assert missing.code == 2 and "PRIVACY_API_PUBLIC_URL" in missing.err
    assert given.code == 0, given.err


def test_serve_refuses_several_workers_without_shared_rate_limits(tmp_path: Path) -> None:
    # With limits kept in each process's memory, every worker would allow its own ten guesses.
    result = run_cli(tmp_path, "serve", "--port", str(free_port()), "--workers", "2")
    assert result.code == 2
    [line] = result.err.splitlines()
    assert "PRIVACY_API_RATE_LIMIT_STORAGE" in line
    assert not (tmp_path / "privacy.db").exists()


def test_serve_runs_several_workers_with_shared_rate_limits(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    server = start_serve(
        tmp_path,
        "--port",
        str(port),
        "--workers",
        "2",
        PRIVACY_API_RATE_LIMIT_STORAGE=redis_url,
    )
    try:
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and answered is None:
            try:
                answered = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"}
                )
            except httpx.TransportError:
                time.sleep(0.2)
        assert answered is not None and answered.json() == {"data": {"__typename": "Query"}}
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    # uvicorn's supervisor names each worker process it started.
    assert len(re.findall(r"Started server process", output)) == 2, output


def test_serve_refuses_any_origin_in_one_line(tmp_path: Path) -> None:
    # "*" with credentials would let every site act with a signed-in person's cookie.
    result = run_cli(tmp_path, "serve", "--port", str(free_port()), PRIVACY_API_ALLOWED_ORIGINS="*")
    assert result.code == 2
    [line] = result.err.splitlines()
    assert line.startswith("Configuration error: PRIVACY_API_ALLOWED_ORIGINS")
    assert "'*'" in line
    assert not (tmp_path / "privacy.db").exists()


def subparsers() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


class TestHelp:
    def test_every_command_and_option_says_what_it_is_for_and_shows_its_default(self) -> None:
        root = cli.parser()
        listed = " ".join(root.format_help().split())
        for name, command in subparsers().items():
            assert name in listed
            shown = " ".join(command.format_help().split())
            assert command.description, name
            for action in command._actions:
                assert action.help, f"{name} {action.option_strings} has no help"
                if action.default not in (None, argparse.SUPPRESS) and not isinstance(
                    action.default, bool
                ):
                    assert f"(default: {action.default})" in shown, (name, action.dest)
        serve = " ".join(subparsers()["serve"].format_help().split())
        assert "PRIVACY_API_PORT" in serve  # where --port comes from when not given

    def test_version(self, tmp_path: Path) -> None:
        result = run_cli(tmp_path, "--version")
        assert result.code == 0, result.err
        assert result.out.strip() == f"privacy-api {metadata.version('privacy-settings-api')}"


class TestRefusedStart:
    def test_every_wrong_production_setting_is_named_at_once(self, tmp_path: Path) -> None:
        result = run_cli(
            tmp_path,
            "migrate",
            PRIVACY_API_ENV="production",
            PRIVACY_API_SECRET_KEY="",
            PRIVACY_API_PUBLIC_URL="",
            PRIVACY_API_SESSION_DAYS="a month",
            PRIVACY_API_DB_POOL_TIMEOUT="0",
            PRIVACY_API_SMTP_URL="mail.example.com",
            PRIVACY_API_PORT="80000",
        )
        assert result.code == 2
        lines = result.err.splitlines()
        assert lines[0] == "Configuration errors (6):"
        named = [line.split()[1] for line in lines[1:]]
        assert sorted(named) == sorted(
            [
                "PRIVACY_API_SECRET_KEY",
                "PRIVACY_API_PUBLIC_URL",
                "PRIVACY_API_SESSION_DAYS",
                "PRIVACY_API_DB_POOL_TIMEOUT",
                "PRIVACY_API_SMTP_URL",
                "PRIVACY_API_PORT",
            ]
        )
        assert "Traceback" not in result.err
        assert not list(tmp_path.iterdir())  # no development secret, no database

    def test_serve_names_what_only_the_api_needs_with_the_rest(self, tmp_path: Path) -> None:
        result = run_cli(
            tmp_path,
            "serve",
            PRIVACY_API_ENV="production",
            PRIVACY_API_SECRET_KEY="",
            PRIVACY_API_PUBLIC_URL="https://privacy.example.com",
            PRIVACY_API_RECEIPT_SIGNING_KEY="",
        )
        assert result.code == 2
        assert result.err.splitlines()[0] == "Configuration errors (2):"
        assert "PRIVACY_API_SECRET_KEY" in result.err
        assert "PRIVACY_API_RECEIPT_SIGNING_KEY is required in production" in result.err

    def test_a_port_in_use_is_one_line_before_anything_is_written(self, tmp_path: Path) -> None:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            result = run_cli(tmp_path, "serve", PRIVACY_API_PORT=str(port))
        assert result.code == 2
        [line] = result.err.splitlines()
        assert line.startswith(f"Cannot listen on 127.0.0.1:{port}: the port is in use.")
        assert "--port or PRIVACY_API_PORT" in line
        assert not (tmp_path / "privacy.db").exists()


class TestScheduledPurge:
    def test_slots_are_on_the_clock_whenever_a_run_ends(self) -> None:
        hour, day = timedelta(hours=1), timedelta(days=1)
        assert next_slot(datetime(2026, 3, 1, 12, 0, 0, 500, tzinfo=UTC), hour) == datetime(
            2026, 3, 1, 13, tzinfo=UTC
        )
        assert next_slot(datetime(2026, 3, 1, 13, tzinfo=UTC), hour) == datetime(
            2026, 3, 1, 14, tzinfo=UTC
        )
        assert next_slot(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), day) == datetime(
            2026, 3, 2, tzinfo=UTC
        )

    def test_every_runs_on_the_clock_and_stops_cleanly_on_sigterm(self, tmp_path: Path) -> None:
        assert run_cli(tmp_path, "migrate").code == 0
        process = subprocess.Popen(
            [*COMMAND, "purge", "--every", "2s"],
            cwd=PROJECT_ROOT,
            env=cli_environment(tmp_path, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True
        )
        reader.start()
        seen: list[str] = []
        try:
            # The run at start and one the schedule started: two reports, two slots announced.
            while sum(line.startswith("Next purge at") for line in seen) < 2:
                seen.append(lines.get(timeout=60))
            process.send_signal(signal.SIGTERM)  # while it waits for the third slot
            assert process.wait(timeout=30) == 0, "".join(seen)
        finally:
            if process.poll() is None:
                process.kill()
        reader.join(timeout=10)
        while not lines.empty():
            seen.append(lines.get())
        output = "".join(seen)
        assert output.count("Accounts due for deletion:") == 2, output
        slots = [
            datetime.strptime(line.removeprefix("Next purge at "), "%Y-%m-%d %H:%M:%S UTC.\n")
            for line in seen
            if line.startswith("Next purge at")
        ]
        # On the clock (every even second since the epoch), later each time, never drifting.
        assert all(slot.second % 2 == 0 for slot in slots), slots
        assert slots[1] > slots[0]
        assert seen[-1] == "Stopped.\n"
        assert "Traceback" not in output

    @pytest.mark.parametrize("interval", ["0s", "1w", "day", "-1h", "1.5h"])
    def test_an_interval_it_cannot_keep_is_refused(self, tmp_path: Path, interval: str) -> None:
        with pytest.raises(SystemExit) as refused:
            cli.parser().parse_args(["purge", "--every", interval])
        assert refused.value.code == 2
