"""The process's log configuration, and the request target as it may be written in a log line.

Production writes one JSON object a line (for a log collector), development readable text; both
are set once, when a command starts (`configure`, or uvicorn with `log_config`). The request
lines themselves are written by `web.middleware.EdgeMiddleware`, not by uvicorn.

Links in messages carry their credential in the address (`/exports/<token>`,
`/unsubscribe?token=...`), and a client may send a whole GraphQL operation, variables and all,
in the query string. A text request line keeps the method, the path and the names of the query
parameters, and replaces what could be a secret with `[redacted]`; a JSON line names the route
(`/exports/{token}`) and never the path.
"""

from __future__ import annotations

import logging.config
import re
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from web.routes import EXPORT_DOWNLOAD

REDACTED = "[redacted]"
JSON = "json"
TEXT = "text"
# Routes whose last path segment is the credential itself.
SECRET_PATH_PREFIXES = (EXPORT_DOWNLOAD.removesuffix("{token}"),)
# Anything this long in a path is taken for a token (ours are 43 characters), so that a link
# pasted with a typo, or a route added later, does not leave one in the log.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{32,}")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def redact(path_with_query: str) -> str:
    """The request target as it may be logged: the credential segment of a link and every
    query parameter value replaced."""
    path, question_mark, query = path_with_query.partition("?")
    for prefix in SECRET_PATH_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            path = prefix + REDACTED
    path = _TOKEN_LIKE.sub(REDACTED, path)
    if not question_mark:
        return path
    parameters = []
    for parameter in query.split("&"):
        name, equals, _ = parameter.partition("=")
        if equals and _PARAMETER_NAME.fullmatch(name):
            parameters.append(f"{name}={REDACTED}")
        elif parameter:
            parameters.append(REDACTED)
    return f"{path}?{'&'.join(parameters)}"


def log_config(log_format: str, *, tracing: bool = False) -> dict[str, Any]:
    """The `logging.config.dictConfig` of every process: ours and uvicorn's loggers alike write
    to stderr, as JSON objects or as text; uvicorn's access log is replaced by our request line.
    With `tracing`, a JSON line written inside a span carries its `trace_id` and `span_id`."""
    formatters: dict[str, dict[str, Any]] = {
        JSON: {
            # Every request writes a line: orjson's encoder is the library's fastest.
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            # ISO 8601 in UTC with its offset: 2026-01-31T09:15:02.123456+00:00.
            "timestamp": "time",
            "rename_fields": {"levelname": "level", "name": "logger"},
            # uvicorn adds a copy of each message with terminal colours.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        },
        TEXT: {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {log_format: formatters[log_format]},
        "filters": {"trace": {"()": "web.tracing.TraceContext"}} if tracing else {},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "stream": "ext://sys.stderr",
                "filters": ["trace"] if tracing else [],
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            # aiosqlite logs each statement with its parameters at DEBUG: emails and phones.
            "aiosqlite": {"level": "INFO"},
            # The Redis client notes each retry; the rate limiter's failure says enough.
            "coredis": {"level": "WARNING"},
        },
    }


def configure(log_format: str, *, tracing: bool = False) -> None:
    """Set the process's logging, once, when a command starts."""
    lean_records()
    logging.config.dictConfig(log_config(log_format, tracing=tracing))


def lean_records() -> None:
    """Log records without what no line of ours writes: the caller's file and line (found by
    walking the stack for every record), and the thread's and process's names. The logging
    HOWTO's own advice for code that logs often; every request writes a line."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
