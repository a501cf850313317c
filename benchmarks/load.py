"""The API at production speed, against a same-SQL baseline measured in the same run.

    make bench
    .venv/bin/python -m benchmarks.load [--duration 2] [--databases sqlite,postgresql]
        [--workers 1,2] [--clients 10] [--profile SECONDS]

For each database (a PostgreSQL database of its own, dropped afterwards, and a SQLite file) and
each worker count, the API runs as a real server in production mode and `wrk` loads it from
another process. Beside it runs the baseline (benchmarks/baseline.py): bare Starlette with
asyncpg or aiosqlite, served by the same uvicorn with the same workers, sending the statements
our API needs and answering the same JSON (checked before the load). Each figure comes from two
wrk runs, taken in turns with what it is compared to. Printed, nothing asserted:

- requests/s, p50 and p99, ours against the baseline, for `me` with the profile and every
  setting; one `setCommunicationPreference` toggle (the clients take turns over several
  accounts, switching each on, then off, so that nearly every request writes; the share that
  did is printed); a 20-event `consentHistory` page; `{ __typename }`; `me` with 32 clients;
- `me`'s p99 while 20 clients flood `login` with wrong passwords for random emails from random
  addresses (X-Forwarded-For), against its p99 just before;
- flat growth (first worker count only): `me`, a deep history page and a toggle for an account
  of a few dozen events against one of 100,000; the export of those 100,000 events: its size,
  time to first byte, and the server's memory growth at its peak;
- a sign-in with an unknown email against one with a wrong password: near 1, so that timing
  does not tell whether an address is registered;
- with --profile, a py-spy profile of the API under `me` load (or the one --profile-operation
  names): the top frames by own and by total time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import client, seed, servers, wrk
from benchmarks.client import HISTORY, LOGIN, ME, TOGGLE, TYPENAME, bearer, body, cursor
from benchmarks.seed import People
from benchmarks.servers import Server
from benchmarks.wrk import Request, Result

REDIS = ("127.0.0.1", 6379)
LARGE_EVENTS = 100_000
QUICK_EVENTS = 30
FLOOD_CLIENTS = 20
TAIL_CLIENTS = 32
LOGIN_SAMPLES = 15
TOGGLERS_PER_CLIENT = 4
SETTLE_SECONDS = 5
JSON_HEADERS = {"Content-Type": "application/json"}
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@dataclass(frozen=True)
class Row:
    database: str
    workers: int
    operation: str
    ours: Result
    baseline: Result

    @property
    def ratio(self) -> float:
        return ratio(self.ours.rate, self.baseline.rate)


@dataclass(frozen=True)
class Flood:
    database: str
    workers: int
    unloaded: Result
    loaded: Result
    flood: Result


# One measurement: runs load for the seconds given and answers what wrk saw.
Measure = Callable[[float], Result]


@dataclass
class Bench:
    folder: Path
    seconds: int
    clients: int
    rate_limits: str
    profile: int
    # The operation the profile is taken under (a name of `operations`).
    profiled: str = "me"
    # Only the ratios against the baseline: no long history, flat growth, export, sign-in
    # timing or login flood (for comparing one change with the next in a few minutes).
    quick: bool = False
    rows: list[Row] = field(default_factory=list)
    floods: list[Flood] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def measure(self, server: Server, requests: list[Request], clients: int = 0) -> Measure:
        script = wrk.cycling(requests)

        def run(seconds: float) -> Result:
            result = wrk.run(
                server.url, script, self.folder, clients=clients or self.clients, seconds=seconds
            )
            # Requests still in flight when wrk stopped run on; let them end before what follows.
            time.sleep(min(SETTLE_SECONDS, result.p99_ms / 1000))
            return result

        return run

    def pair(self, first: Measure, second: Measure) -> tuple[Result, Result]:
        """Each measured twice, in the order first, second, second, first, so that the machine
        getting busier or quieter during the pair weighs on both alike."""
        a1, b1, b2, a2 = (run(self.seconds) for run in (first, second, second, first))
        return wrk.merge(a1, a2), wrk.merge(b1, b2)


def ratio(part: float, whole: float) -> float:
    """NaN (printed `nan`) when nothing was measured to compare with."""
    return part / whole if whole else math.nan


def say(text: str = "") -> None:
    print(text, flush=True)


def figures(result: Result) -> str:
    errors = f", {result.errors} HTTP errors" if result.errors else ""
    if result.counted:
        errors += f", {result.counted} GraphQL errors"
    return f"{result.rate:8.1f}/s  p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms{errors}"


# What each operation sends: to our /graphql, and the same body to the baseline's own route.
def operations(people: People) -> dict[str, tuple[list[Request], list[Request]]]:
    def both(route: str, requests: list[Request]) -> tuple[list[Request], list[Request]]:
        return requests, [Request(route, r.body, r.headers) for r in requests]

    normal = bearer(people.normal.token)
    return {
        "me": both("/me", [Request("/graphql", body(ME), normal)]),
        "toggle": both("/toggle", toggles(people.togglers)),
        "history page": both("/history", [Request("/graphql", body(HISTORY), normal)]),
        "__typename": both("/typename", [Request("/graphql", body(TYPENAME), JSON_HEADERS)]),
    }


def toggles(togglers: list[seed.Person]) -> list[Request]:
    """Every account switched on, then every one off, and again. One wrk thread sends them in
    this order; with several accounts per client, a request for an account is seldom still in
    flight when the next one for it goes out, so nearly every request changes the setting
    (the bench prints how many did)."""
    return [
        Request("/graphql", body(TOGGLE, {"on": on}), bearer(person.token))
        for on in (True, False)
        for person in togglers
    ]


def settled(database_url: str) -> int:
    """The events written, once toggles still running after a run have ended."""
    count = asyncio.run(seed.events_written(database_url))
    for _ in range(int(SETTLE_SECONDS / 0.5)):
        time.sleep(0.5)
        count, before = asyncio.run(seed.events_written(database_url)), count
        if count == before:
            break
    return count


def switch_off(api: Server, togglers: list[seed.Person]) -> None:
    """Where every toggle run starts: the toggled setting off for each account."""
    for person in togglers:
        client.call(api.url, TOGGLE, {"on": False}, Authorization=f"Bearer {person.token}")


def first_difference(ours: Any, theirs: Any, path: str = "") -> str | None:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            found = first_difference(ours.get(key), theirs.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            found = first_difference(mine, other, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if ours == theirs else f"{path or 'the answer'}: ours {ours!r}, baseline {theirs!r}"


def same_answers(bench: Bench, api: Server, baseline: Server, people: People) -> None:
    """The baseline earns its place only if it answers what we answer."""
    for name, (ours, theirs) in operations(people).items():
        if name == "toggle":
            switch_off(api, people.togglers[:1])  # ours switches it on; the baseline finds it on
        mine = httpx.post(api.url + ours[0].path, content=ours[0].body, headers=ours[0].headers)
        other = httpx.post(
            baseline.url + theirs[0].path, content=theirs[0].body, headers=theirs[0].headers
        )
        answer = mine.json()
        if answer.get("errors") or None in answer["data"].values():
            bench.notes.append(f"{name}: the API answered {mine.text[:300]}")
        difference = first_difference(answer, other.json())
        if difference:
            bench.notes.append(f"{name}: the baseline answers differently ({difference})")


def warm_up(bench: Bench, api: Server, baseline: Server, people: People) -> None:
    for name, (ours, theirs) in operations(people).items():
        if name != "toggle":  # it writes; its runs start from a known state instead
            bench.measure(api, ours)(1)
            bench.measure(baseline, theirs)(1)


def compare(
    bench: Bench,
    where: tuple[str, int],
    pair: tuple[Server, Server],
    people: People,
    database_url: str,
) -> None:
    """Ours against the baseline, operation by operation."""
    (label, workers), (api, baseline) = where, pair
    written: dict[str, int] = {}

    def toggling(server: Server, requests: list[Request]) -> Measure:
        load = bench.measure(server, requests)

        def measure(seconds: float) -> Result:
            switch_off(api, people.togglers)
            before = asyncio.run(seed.events_written(database_url))
            result = load(seconds)
            written[server.name] = written.get(server.name, 0) + settled(database_url) - before
            return result

        return measure

    for name, (ours, theirs) in operations(people).items():
        make = toggling if name == "toggle" else bench.measure
        row = Row(label, workers, name, *bench.pair(make(api, ours), make(baseline, theirs)))
        show(bench, row)
        if name == "toggle":
            bench.notes.append(
                f"{label}, {workers} worker(s): toggles that changed the setting: "
                f"ours {written[api.name]} of {row.ours.sent} sent, "
                f"baseline {written[baseline.name]} of {row.baseline.sent}"
            )
    ours, theirs = operations(people)["me"]
    tail = bench.pair(
        bench.measure(api, ours, TAIL_CLIENTS), bench.measure(baseline, theirs, TAIL_CLIENTS)
    )
    show(bench, Row(label, workers, f"me, {TAIL_CLIENTS} clients", *tail))


def show(bench: Bench, row: Row) -> None:
    bench.rows.append(row)
    say(f"  {row.operation:<14} ours {figures(row.ours)}")
    say(f"  {'':<14} base {figures(row.baseline)}   ours/base {row.ratio:.2f}x")


def login_flood(bench: Bench, label: str, workers: int, api: Server, people: People) -> None:
    me = bench.measure(api, operations(people)["me"][0])
    unloaded = me(2 * bench.seconds)
    template = body(
        LOGIN,
        {"i": {"email": f"flood-{uuid.uuid4().hex[:8]}-%d@example.com", "password": "wrong pw"}},
    )
    flooding = wrk.start(
        api.url,
        wrk.login_flood("/graphql", template, count="RATE_LIMITED"),
        bench.folder,
        clients=FLOOD_CLIENTS,
        seconds=2 * bench.seconds + 2,
    )
    time.sleep(1)
    loaded = me(2 * bench.seconds)
    flood = flooding.result()
    bench.floods.append(Flood(label, workers, unloaded, loaded, flood))
    limited = ratio(flood.counted, flood.requests)
    say(
        f"  me p99 while {FLOOD_CLIENTS} clients flood login: {loaded.p99_ms:.1f} ms against "
        f"{unloaded.p99_ms:.1f} ms unloaded = {ratio(loaded.p99_ms, unloaded.p99_ms):.2f}x "
        f"(me {loaded.rate:.0f}/s against {unloaded.rate:.0f}/s; the flood: {flood.rate:.0f} "
        f"sign-ins/s, {limited:.0%} answered RATE_LIMITED)"
    )


def flat_growth(bench: Bench, api: Server, people: People) -> None:
    normal, large = people.normal, people.large
    say(f"  flat growth: {normal.events:,} events against {large.events:,}")

    def accounts(label: str, small: list[Request], big: list[Request], clients: int) -> None:
        few, many = bench.pair(bench.measure(api, small, clients), bench.measure(api, big, clients))
        cost = ratio(few.rate, many.rate)
        say(f"    {label:<20} {normal.events:>7,}: {figures(few)}")
        say(f"    {'':<20} {large.events:>7,}: {figures(many)}   cost {cost:.2f}x")

    def requests(person: seed.Person, query: str, **variables: Any) -> list[Request]:
        return [Request("/graphql", body(query, variables), bearer(person.token))]

    accounts("me", requests(normal, ME), requests(large, ME), bench.clients)
    # Far from the newest events; the small account's page reaches its first event.
    accounts(
        "history, deep page",
        requests(normal, HISTORY, after=cursor(21)),
        requests(large, HISTORY, after=cursor(large.events // 2)),
        bench.clients,
    )
    switch_off(api, [normal, large])
    # One client, whose requests alternate on and off: every one writes.
    accounts(
        "toggle, 1 client",
        [*requests(normal, TOGGLE, on=True), *requests(normal, TOGGLE, on=False)],
        [*requests(large, TOGGLE, on=True), *requests(large, TOGGLE, on=False)],
        1,
    )


@contextmanager
def peak_memory(server: Server) -> Iterator[list[int]]:
    """The server's resident memory before (first) and its highest while the block runs."""
    found = [server.rss_bytes(), 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            found[1] = max(found[1], server.rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()


def export(api: Server, people: People) -> None:
    """Each account's export downloaded once, as its owner would (the first, unmeasured, to
    warm the path)."""
    for person, shown in ((people.normal, False), (people.normal, True), (people.large, True)):
        link = client.export_link(api.url, person.token)
        size = 0
        started = time.perf_counter()
        first_byte = 0.0
        with peak_memory(api) as memory, httpx.stream("GET", link, timeout=300) as response:
            for chunk in response.iter_raw():
                if not first_byte and chunk:
                    first_byte = time.perf_counter() - started
                size += len(chunk)
        took = time.perf_counter() - started
        grew = max(0, memory[1] - memory[0])
        if shown:
            say(
                f"    export, {person.events:>7,} events: {size / 2**20:5.1f} MiB in "
                f"{took:5.2f} s, first byte after {first_byte * 1000:6.1f} ms, server memory "
                f"+{grew / 2**20:.1f} MiB at its peak (HTTP {response.status_code})"
            )


def login_timing(api: Server, people: People) -> None:
    """Unknown email against wrong password, taken in turns from random addresses."""
    wrong, unknown = [], []
    accounts = [people.normal, people.large, *people.togglers]
    for turn in range(LOGIN_SAMPLES):
        for email, samples in (
            (accounts[turn % len(accounts)].email, wrong),
            (f"nobody-{uuid.uuid4().hex}@example.com", unknown),
        ):
            started = time.perf_counter()
            client.call(
                api.url,
                LOGIN,
                {"i": {"email": email, "password": "not the password"}},
                **{"X-Forwarded-For": client.some_address()},
            )
            samples.append(time.perf_counter() - started)
    a, b = statistics.median(unknown), statistics.median(wrong)
    say(
        f"    login, unknown email against wrong password: {a * 1000:.1f} ms / "
        f"{b * 1000:.1f} ms = {a / b:.2f}x"
    )


def profile(bench: Bench, api: Server, people: People) -> None:
    spy = shutil.which("py-spy") or str(servers.BIN / "py-spy")
    if not Path(spy).exists():
        say("    (no profile: py-spy is not installed; .venv/bin/pip install py-spy)")
        return
    output = bench.folder / "profile.txt"
    loading = wrk.start(
        api.url,
        wrk.cycling(operations(people)[bench.profiled][0]),
        bench.folder,
        clients=bench.clients,
        seconds=bench.profile + 3,
    )
    time.sleep(1)
    command = [spy, "record", "--pid", str(api.process.pid), "--duration", str(bench.profile)]
    command += ["--rate", "200", "--format", "raw", "--nolineno", "--nonblocking"]
    command += ["--subprocesses", "--output", str(output)]
    recorded = subprocess.run(command, capture_output=True, text=True, check=False)
    loading.result()
    if recorded.returncode != 0 or not output.exists():
        say(f"    (py-spy failed: {recorded.stderr.strip()[-300:]})")
        return
    for line in summarise_profile(output.read_text()):
        say(f"    {line}")


# The frames every busy sample passes through: the event loop and the thread pool.
TRUNK = (
    "<frozen runpy>",
    "click/core.py",
    "uvicorn/main.py",
    "uvicorn/__main__.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "threading.py",
    "concurrent/futures/thread.py",
)


def summarise_profile(collapsed: str, top: int = 15) -> list[str]:
    """py-spy's collapsed stacks ("frame;frame;... count", frames as "function (file)") as the
    share of busy samples by package, and the top frames by own and by total time."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        count = int(number)
        samples += count
        own[frames[-1]] += count
        source = frames[-1].rpartition("(")[2].rstrip(")")
        packages[source.split("/")[0].removesuffix(".py")] += count
        for frame in set(frames):
            if frame.rpartition("(")[2].rstrip(")") not in TRUNK:
                total[frame] += count
    if not samples:
        return ["(the profile holds no samples)"]
    shares = ", ".join(f"{name} {count / samples:.0%}" for name, count in packages.most_common(12))
    lines = [f"profile: {samples} samples of busy threads; own time by package: {shares}"]
    # Frames in most samples are the request's path through the middleware, the same for any
    # request; what lies below them tells where a request's time goes.
    below = Counter({frame: count for frame, count in total.items() if count < samples / 2})
    for title, counter in (("own time", own), ("total time, below the middleware", below)):
        lines.append(f"top frames by {title}:")
        lines += [f"  {count / samples:6.1%}  {frame}" for frame, count in counter.most_common(top)]
    return lines


def bench_database(bench: Bench, kind: str, database_url: str, worker_counts: list[int]) -> None:
    label = NAMES[kind]
    say(f"\n== {label} ({busy()}) ==")
    people: People | None = None
    catalogue = bench.folder / f"catalogue-{kind}.json"
    seed.migrate(servers.api_environment(database_url, "http://127.0.0.1", bench.rate_limits))
    for workers in worker_counts:
        api_port, baseline_port = servers.free_port(), servers.free_port()
        env = servers.api_environment(
            database_url, f"http://127.0.0.1:{api_port}", bench.rate_limits
        )
        command, how = servers.api_command(api_port, workers)
        try:
            with servers.running(
                "API",
                command,
                env,
                api_port,
                bench.folder / f"api-{kind}-{workers}.log",
                "/graphql",
            ) as api:
                if people is None:
                    say("  seeding: signing up accounts through the API, writing a long history")
                    people = seed.people(
                        api.url,
                        database_url,
                        togglers=TOGGLERS_PER_CLIENT * bench.clients,
                        large_events=QUICK_EVENTS if bench.quick else LARGE_EVENTS,
                    )
                    catalogue.write_text(json.dumps(client.catalogue(api.url)))
                with servers.running(
                    "baseline",
                    servers.baseline_command(baseline_port, workers),
                    {
                        **os.environ,
                        "BENCH_DATABASE_URL": database_url,
                        "BENCH_CATALOGUE": str(catalogue),
                    },
                    baseline_port,
                    bench.folder / f"baseline-{kind}-{workers}.log",
                    "/typename",
                ) as baseline:
                    say(f"  {workers} worker(s); the API served by {how}")
                    if workers > 1:
                        time.sleep(2)  # every worker up, not only the first to answer
                    same_answers(bench, api, baseline, people)
                    warm_up(bench, api, baseline, people)
                    compare(bench, (label, workers), (api, baseline), people, database_url)
                    if not bench.quick:
                        login_flood(bench, label, workers, api, people)
                if workers == worker_counts[0]:
                    if not bench.quick:
                        flat_growth(bench, api, people)
                        export(api, people)
                        login_timing(api, people)
                    if bench.profile:
                        profile(bench, api, people)
        except servers.StartFailed as failed:
            say(f"  {workers} worker(s): {failed}")
    say(f"  ({busy()})")


def busy() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} over 1 min, {five:.1f} over 5 on {os.cpu_count()} cores"


def table(bench: Bench) -> None:
    say(
        f"\n{'database':<11}{'workers':>8}  {'operation':<15}{'ours/s':>9}{'base/s':>9}"
        f"{'ours/base':>10}{'ours p50':>10}{'ours p99':>10}{'base p50':>10}{'base p99':>10}"
    )
    for row in bench.rows:
        say(
            f"{row.database:<11}{row.workers:>8}  {row.operation:<15}{row.ours.rate:>9.1f}"
            f"{row.baseline.rate:>9.1f}{row.ratio:>9.2f}x{row.ours.p50_ms:>8.1f}ms"
            f"{row.ours.p99_ms:>8.1f}ms{row.baseline.p50_ms:>8.1f}ms{row.baseline.p99_ms:>8.1f}ms"
        )
    say("\nTargets (issue 9): me >= 0.5x, toggle >= 0.4x, __typename >= 0.5x of the baseline;")
    say(f"p99 < 10x p50 with {TAIL_CLIENTS} clients; me p99 under a login flood <= 1.5x unloaded.")
    for row in bench.rows:
        if row.operation.startswith("me,"):
            say(
                f"  {row.database}, {row.workers} worker(s): me with {TAIL_CLIENTS} clients, "
                f"p99/p50 ours {ratio(row.ours.p99_ms, row.ours.p50_ms):.1f}, "
                f"baseline {ratio(row.baseline.p99_ms, row.baseline.p50_ms):.1f}"
            )
    for flood in bench.floods:
        say(
            f"  {flood.database}, {flood.workers} worker(s): me p99 under a login flood "
            f"{ratio(flood.loaded.p99_ms, flood.unloaded.p99_ms):.2f}x unloaded"
        )
    for note in bench.notes:
        say(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=int, default=2, help="seconds per wrk run; each figure takes two"
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="worker counts, such as 1,2")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument(
        "--profile", type=int, default=0, metavar="SECONDS", help="py-spy the API under load"
    )
    parser.add_argument(
        "--profile-operation",
        default="me",
        choices=["me", "toggle", "history page", "__typename"],
        help="the load the profile is taken under",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the ratios against the baseline only: no long history, flat growth, export, "
        "sign-in timing or login flood",
    )
    arguments = parser.parse_args()
    wrk.require()
    kinds = [kind.strip() for kind in arguments.databases.split(",") if kind.strip()]
    if "postgresql" in kinds and (problem := seed.postgres_problem()):
        say(f"Skipping PostgreSQL: {problem}")
        kinds.remove("postgresql")
    rate_limits = f"redis://{REDIS[0]}:{REDIS[1]}" if servers.reachable(*REDIS) else "memory://"
    worker_counts = [int(count) for count in arguments.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="privacy-bench-") as folder:
        bench = Bench(
            folder=Path(folder),
            seconds=arguments.duration,
            clients=arguments.clients,
            rate_limits=rate_limits,
            profile=arguments.profile,
            profiled=arguments.profile_operation,
            quick=arguments.quick,
        )
        say(
            f"{bench.seconds:g} s per run, {bench.clients} clients, wrk from another process; "
            f"rate limits in {rate_limits}"
        )
        for kind in kinds:
            with seed.database(kind, bench.folder) as database_url:
                bench_database(bench, kind, database_url, worker_counts)
        table(bench)


if __name__ == "__main__":
    sys.exit(main())
