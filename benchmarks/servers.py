"""The servers under load, each a real process: the API as production runs it, and the baseline.

The API is started through `privacy-api serve --workers N` when the CLI offers it, else through
uvicorn on the app factory, as `serve` does today (production mode either way).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import client

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET_KEY = "benchmark-secret-key-long-enough-for-production-use"
# Where the app factory lives, newest layout first.
APP_FACTORIES = ("web.app:create_app", "app:create_app")
# The bench's load comes from this machine: X-Forwarded-For from it names the (simulated) client.
PROXY_ENV = {"PRIVACY_API_TRUSTED_PROXIES": "127.0.0.1"}
READY_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


RECEIPT_KEY = base64.b64encode(os.urandom(32)).decode()
# Production encrypts webhook signing secrets: a Fernet key of the run's own.
WEBHOOK_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()


def api_environment(database_url: str, public_url: str, rate_limits: str) -> dict[str, str]:
    documents = client.manifest(Path(tempfile.gettempdir()) / f"privacy-bench-{os.getpid()}.json")
    return {
        **os.environ,
        "PRIVACY_API_ENV": "production",
        "PRIVACY_API_SECRET_KEY": SECRET_KEY,
        "PRIVACY_API_PUBLIC_URL": public_url,
        "PRIVACY_API_DATABASE_URL": database_url,
        "PRIVACY_API_RATE_LIMIT_STORAGE": rate_limits,
        # Production signs consent receipts: a key of the run's own (32 random bytes).
        "PRIVACY_API_RECEIPT_SIGNING_KEY": RECEIPT_KEY,
        "PRIVACY_API_WEBHOOK_SECRET_KEY": WEBHOOK_KEY,
        **PROXY_ENV,
        # As production is advised to run: callers not signed in send registered documents.
        "PRIVACY_API_TRUSTED_DOCUMENTS": str(documents),
        "PRIVACY_API_REGISTERED_DOCUMENTS_ONLY": "1",
    }


def _serve_has_workers() -> bool:
    shown = subprocess.run(
        [str(BIN / "privacy-api"), "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=False,
    )
    return "--workers" in shown.stdout


def _app_factory() -> str:
    for factory in APP_FACTORIES:
        try:
            if importlib.util.find_spec(factory.split(":")[0]) is not None:
                return factory
        except ModuleNotFoundError:  # its package is not there either
            continue
    raise RuntimeError(f"no app factory found among {', '.join(APP_FACTORIES)}")


def api_command(port: int, workers: int) -> tuple[list[str], str]:
    """The command that serves the API, and how it was chosen (printed with the figures)."""
    if _serve_has_workers():
        command = [str(BIN / "privacy-api"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        return [*command, "--workers", str(workers)], "privacy-api serve --workers N"
    factory = _app_factory()
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--log-level", "info"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    how = f"uvicorn --factory {factory} --workers N (serve has no --workers yet)"
    return command, how


def baseline_command(port: int, workers: int) -> list[str]:
    """The baseline on the same uvicorn; no access log, as a bare app would be run."""
    command = [sys.executable, "-m", "benchmarks.baseline", "--port", str(port)]
    return [*command, "--workers", str(workers)]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server process and every process under it (uvicorn's workers)."""
        found = [self.process.pid]
        for pid in found:
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                found.extend(int(child) for child in task.read_text().split())
        return found

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class StartFailed(RuntimeError):
    """A server exited or did not answer; the message ends with its log."""


@contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], port: int, log: Path, ready_path: str
) -> Iterator[Server]:
    """A server in its own process group, answering `{ __typename }`, stopped afterwards."""
    server = start(name, command, env, port, log, ready_path)
    try:
        yield server
    finally:
        server.stop()


def start(
    name: str, command: list[str], env: dict[str, str], port: int, log: Path, ready_path: str
) -> Server:
    """Start a server in its own process group and wait until it answers `{ __typename }`."""
    handle = log.open("wb")
    process = subprocess.Popen(
        command,
        env=env,
        cwd=PROJECT_ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle.close()
    server = Server(name, port, process, log)
    deadline = time.monotonic() + READY_SECONDS
    body = {"query": "{ __typename }"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartFailed(f"the {name} exited with {process.returncode}:\n{server.tail()}")
        try:
            if httpx.post(server.url + ready_path, json=body, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise StartFailed(f"the {name} did not answer within {READY_SECONDS} s:\n{server.tail()}")
