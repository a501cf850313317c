"""Device ids: how a signed-out visitor's browser or app is recognised, and nothing more.

A device id is a random token the API hands out with a visitor's first choice: in an HttpOnly
cookie for browsers, and in the `X-Device-Id` header for apps, which send it back the same way.
Only its SHA-256 is stored; being 256 random bits, it needs no salt or slow hash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from auth.actor import cannot_be_a_form_post
from auth.tokens import hash_token, new_token

DEVICE_COOKIE = "privacy_device"
DEVICE_HEADER = "X-Device-Id"
# What `new_token` makes: 43 URL-safe characters. Anything else was not made by us.
_WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{43}")


def new_device_id() -> str:
    return new_token()


def device_hash(device_id: str) -> str:
    return hash_token(device_id)


def device_id_from_request(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The device id an app sends in the header, or the browser's cookie when the request could
    not be a cross-site form post (as for the session cookie); None when there is none or it is
    not one we could have made."""
    given = headers.get(DEVICE_HEADER.lower(), "").strip()
    if not given:
        cookie = cookies.get(DEVICE_COOKIE, "")
        given = cookie if cookie and cannot_be_a_form_post(headers) else ""
    return given if _WELL_FORMED.fullmatch(given) else None
