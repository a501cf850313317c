"""Load from `wrk` in its own process: a small Lua script per run, figures read from its summary."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "wrk is not installed; on Debian or Ubuntu: sudo apt-get install -y wrk"
RESULT_MARK = "BENCH-RESULT"
TIMEOUT = "10s"
# Every GraphQL error has a message; no answer the bench asks for has a field of that name
# (a quote inside a JSON string is escaped, so no description can match).
GRAPHQL_ERROR = '"message"'


@dataclass(frozen=True)
class Request:
    path: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # refused, timed out, or an HTTP status other than 2xx/3xx
    counted: int  # answers whose body held the marker the script counts, if any
    sent: int  # requests sent, some still unanswered when the run ended

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit(INSTALL_HINT)
    return found


def _lua(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _headers(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items()) + "}"


def _counting(marker: str | None) -> str:
    """Counts answers holding `marker` in each thread, and prints one line for the bench."""
    response = (
        f"""
function response(status, headers, body)
  if string.find(body, {_lua(marker)}, 1, true) then counted = counted + 1 end
end
"""
        if marker
        else ""
    )
    return (
        response
        + f"""
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local counted, sent = 0, 0
  for _, thread in ipairs(threads) do
    counted = counted + (thread:get("counted") or 0)
    sent = sent + (thread:get("sent") or 0)
  end
  local e = summary.errors
  io.write(string.format("{RESULT_MARK} %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, counted, sent))
end
"""
    )


def cycling(requests: list[Request], count: str | None = GRAPHQL_ERROR) -> str:
    """Sends the requests in turn, the first again after the last (one wrk thread: in order),
    counting the answers that carry a GraphQL error (HTTP 200 all the same)."""
    formatted = ",\n    ".join(
        f'wrk.format("POST", {_lua(r.path)}, {_headers(r.headers)}, {_lua(r.body)})'
        for r in requests
    )
    return f"""
counted = 0
sent = 0
local requests = {{}}
local turn = 0
function init(args)
  requests = {{
    {formatted}
  }}
end
function request()
  sent = sent + 1
  turn = turn % #requests + 1
  return requests[turn]
end
""" + _counting(count)


def login_flood(path: str, body_template: str, count: str) -> str:
    """Sign-in attempts, each from another address and for another email: `%d` in the body
    template takes a random number, X-Forwarded-For a random 10.x.y.z address."""
    return f"""
counted = 0
sent = 0
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end
function request()
  sent = sent + 1
  local address = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255),
    math.random(1, 254))
  local body = string.format({_lua(body_template)}, math.random(1, 2000000000))
  return wrk.format("POST", {_lua(path)}, {{["Content-Type"] = "application/json",
    ["X-Forwarded-For"] = address}}, body)
end
""" + _counting(count)


def start(url: str, script: str, folder: Path, *, clients: int, seconds: float) -> Load:
    """Start a wrk run in the background; `Load.result()` waits for it."""
    path = folder / f"load-{abs(hash(script))}.lua"
    path.write_text(script)
    command = [require(), "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s"]
    command += [f"--timeout={TIMEOUT}", "-s", str(path), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Load(process)


def run(url: str, script: str, folder: Path, *, clients: int, seconds: float) -> Result:
    return start(url, script, folder, clients=clients, seconds=seconds).result()


@dataclass
class Load:
    process: subprocess.Popen[str]

    def result(self) -> Result:
        output, _ = self.process.communicate()
        for line in output.splitlines():
            if line.startswith(RESULT_MARK):
                requests, micros, p50, p99, errors, counted, sent = map(int, line.split()[1:])
                return Result(requests, micros / 1e6, p50 / 1000, p99 / 1000, errors, counted, sent)
        raise RuntimeError(f"wrk printed no result:\n{output}")


def merge(first: Result, second: Result) -> Result:
    """Two runs of the same load as one: counts add up, percentiles are their mean."""
    return Result(
        first.requests + second.requests,
        first.seconds + second.seconds,
        (first.p50_ms + second.p50_ms) / 2,
        (first.p99_ms + second.p99_ms) / 2,
        first.errors + second.errors,
        first.counted + second.counted,
        first.sent + second.sent,
    )
