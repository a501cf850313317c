"""How much a receiver that hangs costs a healthy one: the time the webhook worker takes to
deliver a run of events to a healthy receiver alone, and beside an endpoint that accepts every
connection and never answers. Prints both and their ratio (1.00 is the goal; under 1.10 is the
promise).

The healthy receiver takes `--latency` seconds to answer each request, as a real one that does
some work. Both runs use a fresh SQLite database and the worker's own loop (`run`):

    python -m benchmarks.webhook_lanes [--events 41] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from auth.sealing import Sealer, new_key
from models import Database, WebhookEndpoint, WebhookEvent, WebhookEventType, utcnow
from privacy_api.cli import migrate
from resolvers.webhooks import new_secret
from workers.webhooks import Delivery, run


class Receiver(ThreadingHTTPServer):
    """Answers 204 after `latency` seconds, or (hanging) only once released."""

    request_queue_size = 64

    def __init__(self, latency: float, *, hanging: bool = False) -> None:
        self.latency = latency
        self.released = threading.Event()
        self.hanging = hanging
        self.count = 0
        self.expected = 0
        self.all_came = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                if receiver.hanging:
                    receiver.released.wait()
                else:
                    time.sleep(receiver.latency)
                with receiver.lock:
                    receiver.count += 1
                    if receiver.count == receiver.expected:
                        receiver.all_came.set()
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def stop(self) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


async def seeded(folder: Path, urls: list[str], events: int, sealer: Sealer) -> Database:
    """A migrated database with an endpoint per URL and `events` policy events for them."""
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await migrate(url)
    database = Database(url)
    now = utcnow() - timedelta(seconds=1)
    async with database.transaction() as session:
        for address in urls:
            session.add(
                WebhookEndpoint(
                    url=address,
                    description="bench",
                    events=[WebhookEventType.POLICY_PUBLISHED.value],
                    secret=sealer.seal(new_secret()),
                    created_by=uuid.uuid4(),
                    created_at=now - timedelta(seconds=1),
                )
            )
        for number in range(events):
            body = {"type": "policy.published", "timestamp": "", "data": {"n": number}}
            session.add(
                WebhookEvent(
                    message_id=f"msg_bench{number}",
                    type=WebhookEventType.POLICY_PUBLISHED,
                    payload=json.dumps(body),
                    created_at=now,
                )
            )
    return database


async def healthy_time(events: int, latency: float, *, beside_hanging: bool) -> float:
    """Seconds from the worker's start until the healthy receiver has every event."""
    healthy = Receiver(latency)
    healthy.expected = events
    hanging = Receiver(latency, hanging=True) if beside_hanging else None
    sealer = Sealer((new_key(),))
    delivery = Delivery(
        https_only=False, allow_private=True, disable_after=timedelta(hours=24), sealer=sealer
    )
    urls = [healthy.url] + ([hanging.url] if hanging else [])
    with tempfile.TemporaryDirectory() as folder:
        database = await seeded(Path(folder), urls, events, sealer)
        stop = asyncio.Event()
        started = time.perf_counter()
        worker = asyncio.create_task(run(database, delivery, once=False, stop=stop))
        try:
            if not await asyncio.to_thread(healthy.all_came.wait, 600):
                raise RuntimeError("the healthy receiver did not get every event in 10 minutes")
            elapsed = time.perf_counter() - started
        finally:
            if hanging:
                hanging.stop()
            stop.set()
            await worker
            await database.dispose()
            healthy.stop()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=41)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    await healthy_time(args.events, args.latency, beside_hanging=False)  # warm up
    alone, beside = [], []
    for _ in range(args.rounds):  # in alternation, so a busy moment falls on both
        alone.append(await healthy_time(args.events, args.latency, beside_hanging=False))
        beside.append(await healthy_time(args.events, args.latency, beside_hanging=True))
    median_alone, median_beside = statistics.median(alone), statistics.median(beside)
    print(f"{args.events} events to a healthy receiver answering in {args.latency:g} s")
    print(f"(median of {args.rounds} runs each):")
    print(f"  alone:                   {median_alone:6.2f} s")
    print(f"  beside a hanging one:    {median_beside:6.2f} s")
    print(f"  ratio (beside / alone):  {median_beside / median_alone:6.2f}  (goal: under 1.10)")


if __name__ == "__main__":
    asyncio.run(main())
