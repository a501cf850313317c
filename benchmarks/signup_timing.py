"""Whether a signup or a password reset request takes longer for a registered address than for
an unknown one: timing must not tell which addresses have an account.

Runs the API as production does (a real server process, `privacy-api serve`), makes some
accounts, then sends the two kinds of request in alternation, one at a time, and prints the
median time of each and their ratio (registered / unknown; 1.00 is the goal). Run on a quiet
machine:

    python -m benchmarks.signup_timing [--rounds 60] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks import client, seed, servers


def timed(send: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    response = send()
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    answer = response.json()
    if answer.get("errors") or any(
        payload.get("errors") for payload in answer["data"].values() if payload
    ):
        raise RuntimeError(f"the API refused a request of the bench: {answer}")
    return elapsed


def post(url: str, query: str, variables: dict[str, object]) -> httpx.Response:
    # Each request from another (simulated) client, so per-client limits stay out of the way.
    headers = {"Content-Type": "application/json", "X-Forwarded-For": client.some_address()}
    return httpx.post(
        f"{url}/graphql", content=client.body(query, variables), headers=headers, timeout=30
    )


def compare(
    name: str, rounds: int, registered: Callable[[int], float], unknown: Callable[[int], float]
) -> None:
    """Alternate the two, so drift on the machine touches both alike; print medians and ratio."""
    known_times, unknown_times = [], []
    for number in range(rounds):
        known_times.append(registered(number))
        unknown_times.append(unknown(number))
    known, new = statistics.median(known_times), statistics.median(unknown_times)
    print(
        f"{name:22} registered {known * 1000:7.1f} ms   unknown {new * 1000:7.1f} ms   "
        f"ratio registered/unknown {known / new:.2f}   (medians of {rounds})"
    )


def run(url: str, database_url: str, rounds: int) -> None:
    run_id = uuid.uuid4().hex[:8]
    # Each registered address is used at most twice per kind of request, well inside the
    # per-address limits from one place (5 signups, 3 reset requests an hour).
    accounts = [f"bench-{run_id}-{n}@example.com" for n in range((rounds + 1) // 2)]
    for email in accounts:
        client.signup(url, email, database_url)
    print(f"{len(accounts)} accounts made; {rounds} rounds of each request.")

    def signup(email: str) -> float:
        return timed(lambda: post(url, client.SIGNUP, {"i": client.signup_details(email)}))

    def reset(email: str) -> float:
        return timed(lambda: post(url, client.REQUEST_RESET, {"i": {"email": email}}))

    compare(
        "signup",
        rounds,
        lambda n: signup(accounts[n // 2]),
        lambda n: signup(f"new-{run_id}-{n}@example.com"),
    )
    compare(
        "requestPasswordReset",
        rounds,
        lambda n: reset(accounts[n // 2]),
        lambda n: reset(f"nobody-{run_id}-{n}@example.com"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    if args.database == "postgresql" and (problem := seed.postgres_problem()):
        raise SystemExit(problem)
    with (
        tempfile.TemporaryDirectory() as folder,
        seed.database(args.database, Path(folder)) as database_url,
    ):
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        env = servers.api_environment(database_url, url, "memory://")
        seed.migrate(env)
        command, how = servers.api_command(port, workers=1)
        print(f"API: {how}, {args.database}")
        with servers.running("API", command, env, port, Path(folder) / "api.log", "/graphql"):
            run(url, database_url, args.rounds)


if __name__ == "__main__":
    main()
