"""The languages pages and messages come in, and how a request's Accept-Language picks one."""

from __future__ import annotations

import re

# English first: it is the default, and every text exists in it.
LANGUAGES = ("en", "de")
DEFAULT_LANGUAGE = LANGUAGES[0]

# One entry of an Accept-Language header (RFC 9110, 12.5.4): a range and an optional weight.
_ENTRY = re.compile(
    r"\s*(?P<range>\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)\s*"
    r"(?:;\s*q\s*=\s*(?P<q>0(?:\.\d{0,3})?|1(?:\.0{0,3})?))?\s*"
)


def negotiate(accept_language: str | None) -> str | None:
    """The language of ours the header prefers most (weights honoured, ties in its order), or
    None when it names none of them (no header, or only languages we do not have)."""
    best: tuple[float, str] | None = None
    for entry in (accept_language or "").split(","):
        match = _ENTRY.fullmatch(entry)
        if match is None:
            continue
        weight = float(match["q"]) if match["q"] is not None else 1.0
        wanted = match["range"].lower()
        language = DEFAULT_LANGUAGE if wanted == "*" else wanted.split("-")[0]
        if weight > 0 and language in LANGUAGES and (best is None or weight > best[0]):
            best = (weight, language)
    return best[1] if best else None
