"""Every path the API serves, and the links to them that messages carry, built from one place."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

GRAPHQL = "/graphql"
EXPORT_DOWNLOAD = "/exports/{token}"
UNSUBSCRIBE = "/unsubscribe"
CONFIRM_EMAIL = "/confirm-email"
PARENTAL_CONSENT = "/parental-consent"
CONFIRM_SIGNUP = "/confirm-signup"
RESET_PASSWORD = "/reset-password"  # noqa: S105 (a path)
HEALTHZ = "/healthz"
READYZ = "/readyz"
# The public keys consent receipts are signed with (a JSON Web Key Set).
RECEIPT_KEYS = "/.well-known/consent-receipt-keys"
# The playground's scripts and styles (web/playground.py), so its page needs no other host.
PLAYGROUND_ASSETS = "/playground-assets"
# The stylesheet of the pages that links in messages open (web/html_pages.py).
PAGE_ASSETS = "/page-assets"
METRICS = "/metrics"


@dataclass(frozen=True)
class PublicLinks:
    """Absolute links to our pages, for messages and answers that leave the API."""

    public_url: str

    def export_download(self, token: str) -> str:
        return self.public_url + EXPORT_DOWNLOAD.format(token=quote(token, safe=""))

    def unsubscribe(self, token: str) -> str:
        return f"{self.public_url}{UNSUBSCRIBE}?{urlencode({'token': token})}"

    def receipt_keys(self) -> str:
        return self.public_url + RECEIPT_KEYS

    def confirm_email(self, token: str) -> str:
        # Our tokens are URL-safe already; left as they are, a message template's placeholder
        # for the code survives too.
        return f"{self.public_url}{CONFIRM_EMAIL}?token={token}"

    def parental_consent(self, token: str) -> str:
        # As for `confirm_email`: the token is URL-safe, and a placeholder for it survives.
        return f"{self.public_url}{PARENTAL_CONSENT}?token={token}"

    def confirm_signup(self, token: str) -> str:
        # As confirm_email: the token is URL-safe, and a placeholder for its code survives.
        return f"{self.public_url}{CONFIRM_SIGNUP}?token={token}"

    def reset_password(self, token: str) -> str:
        return f"{self.public_url}{RESET_PASSWORD}?token={token}"
