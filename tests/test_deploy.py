"""The container files, checked as far as a machine without a container runtime can: the
Dockerfile by hadolint, the compose file by docker-compose's own validation, and both against the
command line, the settings and the README they rely on. The containers themselves are not run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from privacy_api import cli
from privacy_api.config import load_config
from tests.conftest import TEST_RECEIPT_KEY, TEST_SECRET, TEST_WEBHOOK_KEY
from tests.test_cli import COMMAND, cli_environment, free_port
from web import routes

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "compose.yaml"
README = (PROJECT_ROOT / "README.md").read_text()
SETTINGS_SOURCES = "\n".join(
    (PROJECT_ROOT / "privacy_api" / name).read_text()
    for name in ("config.py", "cli.py", "startup.py")
)
APP_IMAGE = "privacy-api:local"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys resolved
    return loaded


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this repository's image."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == APP_IMAGE
    }


def command_line(service: dict[str, Any]) -> list[str]:
    """The `privacy-api ...` arguments a service runs (as PID 1: no shell in between)."""
    command = service["command"]
    assert isinstance(command, list), command
    return [str(part) for part in command]


def subcommands() -> set[str]:
    actions = [a for a in cli.parser()._actions if a.dest == "command"]
    return set(actions[0].choices or ())  # type: ignore[arg-type]


class TestDockerfile:
    def test_hadolint_passes(self) -> None:
        hadolint = shutil.which("hadolint") or str(PROJECT_ROOT / ".venv/bin/hadolint")
        result = subprocess.run(
            [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_runs_serve_as_an_unprivileged_user_and_asks_readyz(self) -> None:
        text = DOCKERFILE.read_text()
        [user] = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
        assert user.split(":")[0] not in {"0", "root"}
        [command] = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
        arguments = yaml.safe_load(command)
        assert arguments[:2] == ["privacy-api", "serve"]
        serve = cli.parser().parse_args(arguments[1:])
        assert serve.host != "127.0.0.1"  # reachable from outside the container
        assert serve.port is None  # PRIVACY_API_PORT, which the healthcheck reads too
        assert re.search(r"^\s+PRIVACY_API_PORT=8000$", text, re.MULTILINE)
        assert routes.READYZ in " ".join(healthcheck_command())

    def test_the_healthcheck_asks_the_port_serve_listens_on(self, tmp_path: Path) -> None:
        # As the image runs them: `serve` with no --port, and the HEALTHCHECK's own command,
        # both told the port by PRIVACY_API_PORT alone.
        port = free_port()
        environment = cli_environment(tmp_path, PRIVACY_API_PORT=str(port))
        check = [sys.executable, *healthcheck_command()[1:]]
        assert healthcheck_command()[0] == "python"
        refused = subprocess.run(check, env=environment, capture_output=True, check=False)
        assert refused.returncode != 0  # nothing listens yet: unhealthy
        server = subprocess.Popen(
            [*COMMAND, "serve", "--host", "127.0.0.1"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, "serve stopped"
                result = subprocess.run(check, env=environment, capture_output=True, check=False)
                if result.returncode == 0:
                    break
                assert time.monotonic() < deadline, result.stderr
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(timeout=30)


def healthcheck_command() -> list[str]:
    """The exec form of the Dockerfile's HEALTHCHECK CMD."""
    text = DOCKERFILE.read_text()
    healthcheck = text[text.index("HEALTHCHECK") :].replace("\\\n", " ")
    found = re.search(r"CMD (\[.*?\])\n", healthcheck)
    assert found, healthcheck
    command: list[str] = yaml.safe_load(found[1])
    return command


class TestComposeFile:
    def test_docker_compose_validates_it(self) -> None:
        docker_compose = shutil.which("docker-compose")
        if docker_compose is None:
            message = "docker-compose is not installed (apt-get install docker-compose)"
            if _in_ci():
                pytest.fail(message)
            pytest.skip(message)
        environment = {
            **os.environ,
            "PRIVACY_API_SECRET_KEY": TEST_SECRET,
            "PRIVACY_API_RECEIPT_SIGNING_KEY": TEST_RECEIPT_KEY,
            "PRIVACY_API_WEBHOOK_SECRET_KEY": TEST_WEBHOOK_KEY,
        }
        result = subprocess.run(
            [docker_compose, "--file", str(COMPOSE), "config", "--quiet"],
            capture_output=True,
            text=True,
            env=environment,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def test_the_secret_key_must_be_given(self) -> None:
        assert "${PRIVACY_API_SECRET_KEY:?" in COMPOSE.read_text()

    def test_the_api_must_be_given_the_receipt_key(self) -> None:
        environment = compose()["services"]["api"]["environment"]
        assert environment["PRIVACY_API_RECEIPT_SIGNING_KEY"].startswith(
            "${PRIVACY_API_RECEIPT_SIGNING_KEY:?"
        )

    def test_what_seals_or_opens_webhook_secrets_must_be_given_their_key(self) -> None:
        services = compose()["services"]
        for name in ("migrate", "api", "deliver-webhooks"):
            key = services[name]["environment"]["PRIVACY_API_WEBHOOK_SECRET_KEY"]
            assert key.startswith("${PRIVACY_API_WEBHOOK_SECRET_KEY:?"), name

    def test_the_services_an_operator_expects(self) -> None:
        services = compose()["services"]
        assert {"api", "postgres", "redis", "mailpit", "migrate", "purge"} <= services.keys()
        assert {"deliver-mail", "deliver-webhooks"} <= services.keys()

    def test_migrations_run_once_before_the_api_starts(self) -> None:
        services = compose()["services"]
        assert command_line(services["migrate"]) == ["privacy-api", "migrate"]
        assert services["migrate"]["restart"] == "no"
        api = services["api"]
        assert api["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        arguments = cli.parser().parse_args(command_line(api)[1:])
        assert arguments.migrate is False  # the one-shot did it
        assert arguments.workers >= 2
        for name in ("deliver-mail", "deliver-webhooks", "purge"):
            condition = services[name]["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully"

    def test_the_api_shares_rate_limits_and_reaches_the_others_by_name(self) -> None:
        services = compose()["services"]
        environment = services["api"]["environment"]
        assert environment["PRIVACY_API_RATE_LIMIT_STORAGE"] == "redis://redis:6379"
        assert "@postgres:5432/" in environment["PRIVACY_API_DATABASE_URL"]
        assert environment["PRIVACY_API_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert environment["PRIVACY_API_ENV"] == "production"
        assert environment["PRIVACY_API_SMTP_URL"] == "smtp://mailpit:1025"

    def test_every_command_exists_in_the_cli(self) -> None:
        known = subcommands()
        for name, service in app_services().items():
            arguments = command_line(service)
            assert arguments[0] == "privacy-api", name
            assert arguments[1] in known, f"{name}: no command {arguments[1]}"
            cli.parser().parse_args(arguments[1:])  # exits on an unknown option
            assert f"privacy-api {arguments[1]}" in README

    def test_only_this_machine_reaches_a_published_port(self) -> None:
        for name, service in compose()["services"].items():
            for published in service.get("ports", []):
                assert str(published).startswith("127.0.0.1:"), f"{name} publishes {published}"

    def test_metrics_are_not_served_where_the_api_is_published(self) -> None:
        api = compose()["services"]["api"]
        environment = api["environment"]
        metrics_port = environment["PRIVACY_API_METRICS_PORT"]
        published = [str(ports).rsplit(":", 1)[1] for ports in api["ports"]]
        assert published == [environment["PRIVACY_API_PORT"]]
        assert metrics_port not in published
        assert "PRIVACY_API_METRICS" not in environment  # which would serve them there too
        assert (
            load_config(
                {
                    **{k: str(v) for k, v in environment.items()},
                    "PRIVACY_API_SECRET_KEY": TEST_SECRET,
                    "PRIVACY_API_RECEIPT_SIGNING_KEY": TEST_RECEIPT_KEY,
                    "PRIVACY_API_WEBHOOK_SECRET_KEY": TEST_WEBHOOK_KEY,
                    "PRIVACY_API_DATABASE_URL": "postgresql+asyncpg://privacy@postgres/privacy",
                }
            ).metrics
            is False
        )

    def test_every_process_is_pid_1_and_hears_sigterm(self) -> None:
        # A shell as PID 1 ignores SIGTERM: `docker compose stop` would wait, then kill it.
        for name, service in app_services().items():
            assert "entrypoint" not in service, name
        purge = cli.parser().parse_args(command_line(compose()["services"]["purge"])[1:])
        assert purge.every == timedelta(days=1)

    def test_every_setting_is_read_and_documented(self) -> None:
        for name, service in app_services().items():
            for variable in service["environment"]:
                assert f"`{variable}`" in README, f"{name}: {variable} is not in the README"
                assert f'"{variable}"' in SETTINGS_SOURCES, f"{name}: nothing reads {variable}"

    def test_the_readme_walks_through_it_and_says_it_was_not_run_here(self) -> None:
        section = README[README.index("## Running in production") :]
        assert "docker compose up" in section
        assert "were not run" in section
        for name in compose()["services"]:
            assert f"`{name}`" in section, f"the README does not name the {name} service"
