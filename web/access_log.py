"""The server's log configuration: uvicorn's, with the secrets taken out of request lines.

Links in messages carry their credential in the address (`/exports/<token>`,
`/unsubscribe?token=...`), and a client may send a whole GraphQL operation, variables and all,
in the query string. The access log keeps the method, the path and the names of the query
parameters, and replaces what could be a secret with `[redacted]`.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from web.routes import EXPORT_DOWNLOAD

REDACTED = "[redacted]"
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


class RedactRequestTargets(logging.Filter):
    """Rewrites the request target of each uvicorn access log record before any handler sees it.

    uvicorn logs `(client, method, path with query string, HTTP version, status)` as the
    record's arguments; the formatter builds the line from them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact(args[2]), args[3], args[4])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging, with request targets redacted in the access log."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_request_targets": {"()": RedactRequestTargets}}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_request_targets"]
    # Our own loggers (delivery says where a development message was written) go where
    # uvicorn's do. They name records by id, never by address.
    config["loggers"]["privacy_api"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config
