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
    """The language of ours the header prefers most, or None when it names none of them (no
    header, or only languages we do not have).

    Weights are honoured; a regional range counts for its language (`de-AT` for `de`); `*`
    stands for each language the header does not name; of equal weights the earlier wins.
    """
    named: dict[str, tuple[float, int]] = {}
    anything: tuple[float, int] | None = None
    for position, entry in enumerate((accept_language or "").split(",")):
        match = _ENTRY.fullmatch(entry)
        if match is None:
            continue
        weight = (float(match["q"]) if match["q"] is not None else 1.0, position)
        wanted = match["range"].lower()
        if wanted == "*":
            anything = anything or weight
        elif (language := wanted.split("-")[0]) in LANGUAGES:
            named.setdefault(language, weight)
    if anything is not None:
        for language in LANGUAGES:
            named.setdefault(language, anything)
    ranked = sorted(named, key=lambda language: (-named[language][0], named[language][1]))
    return next((language for language in ranked if named[language][0] > 0), None)
