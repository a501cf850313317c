"""What the bench sends to the API: the GraphQL documents and the few calls it makes to set up."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from models import Database, Notification, NotificationKind

PASSWORD = "benchmark passphrase"
POLICY_VERSION = "2025-07"

ME = """query Me { me {
  id email displayName phone birthDate country isMinor role locale pendingEmail
  acceptedPolicyVersion createdAt
  communicationPreferences { channel topic enabled locked updatedAt }
  dataSharing { purpose enabled description updatedAt }
  visibility { profile email phone searchEngineIndexing }
  cookieConsent { strictlyNecessary functional analytics advertising gpcApplied updatedAt }
} }"""
TOGGLE = """mutation Toggle($on: Boolean!) { setCommunicationPreference(input:
  {channel: EMAIL, topic: NEWSLETTER, enabled: $on}) { errors { field message code } } }"""
HISTORY = """query History($after: String) { me { consentHistory(first: 20, after: $after) {
  edges { cursor node { id key oldValue newValue actor source policyVersion occurredAt requestId } }
  pageInfo { hasNextPage endCursor }
} } }"""
TYPENAME = "{ __typename }"
LOGIN = """mutation Login($i: LoginInput!) { login(input: $i) { token errors { code } } }"""
SIGNUP = """mutation Signup($i: SignupInput!) {
  signup(input: $i) { confirmationSent errors { code } } }"""
CONFIRM_SIGNUP = """mutation Confirm($i: ConfirmSignupInput!) {
  confirmSignup(input: $i) { token errors { code } } }"""
REQUEST_RESET = """mutation Reset($i: RequestPasswordResetInput!) {
  requestPasswordReset(input: $i) { ok errors { code } } }"""
CATALOGUE = """{ privacyCatalogue { key group kind defaultValue locked description
  channel topic purpose cookieCategory } }"""
EXPORT = """mutation { requestDataExport { url errors { code message } } }"""


# Every document the bench sends, registered as the clients' manifest is (see `manifest`).
DOCUMENTS = (ME, TOGGLE, HISTORY, TYPENAME, LOGIN, SIGNUP, CONFIRM_SIGNUP, REQUEST_RESET)
DOCUMENTS += (CATALOGUE, EXPORT)


def document_id(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def manifest(path: Path) -> Path:
    """The bench's documents as a manifest of trusted documents (PRIVACY_API_TRUSTED_DOCUMENTS)."""
    path.write_text(json.dumps({document_id(query): query for query in DOCUMENTS}))
    return path


def body(query: str, variables: dict[str, Any] | None = None) -> str:
    """A request as the CMS and the app send it: the registered document's id, not its text."""
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": document_id(query)}}
    return json.dumps({"extensions": persisted, "variables": variables or {}})


def bearer(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def cursor(seq: int) -> str:
    """The cursor the API gives out for the event numbered `seq` (events before it follow)."""
    return base64.urlsafe_b64encode(f"consent:{seq}".encode()).decode()


def some_address() -> str:
    """A client address for X-Forwarded-For, so per-address limits do not cut the setup short."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def call(
    url: str, query: str, variables: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    """One GraphQL request; the decoded answer, which must carry no GraphQL error."""
    response = httpx.post(
        f"{url}/graphql",
        content=body(query, variables),
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    if answer.get("errors"):
        raise RuntimeError(f"the API answered with errors: {answer['errors']}")
    return answer


def signup_details(email: str) -> dict[str, str]:
    return {
        "email": email,
        "password": PASSWORD,
        "displayName": "Bench Mark",
        "birthDate": "1985-03-04",
        "country": "NL",
        "acceptPolicyVersion": POLICY_VERSION,
    }


async def _signup_code(database_url: str, email: str) -> str:
    """The code the API mailed to `email`, read from the outbox as a mailer would."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            secret = await session.scalar(
                select(Notification.secret)
                .where(
                    Notification.recipient == email,
                    Notification.kind == NotificationKind.SIGNUP_CONFIRMATION,
                )
                .order_by(Notification.created_at.desc())
                .limit(1)
            )
    finally:
        await database.dispose()
    if secret is None:
        raise RuntimeError(f"no signup code was mailed to {email}")
    return secret


def signup(url: str, email: str, database_url: str) -> str:
    """A new adult account through the API, confirmed with the code it mailed; its token."""
    place = {"X-Forwarded-For": some_address()}
    started = call(url, SIGNUP, {"i": signup_details(email)}, **place)["data"]["signup"]
    if started["errors"]:
        raise RuntimeError(f"signup of {email} refused: {started['errors']}")
    code = asyncio.run(_signup_code(database_url, email))
    confirm = {"i": {"email": email, "code": code}}
    payload = call(url, CONFIRM_SIGNUP, confirm, **place)["data"]["confirmSignup"]
    if payload["errors"]:
        raise RuntimeError(f"confirming the signup of {email} failed: {payload['errors']}")
    return str(payload["token"])


def catalogue(url: str) -> list[dict[str, Any]]:
    settings: list[dict[str, Any]] = call(url, CATALOGUE)["data"]["privacyCatalogue"]
    return settings


def export_link(url: str, token: str) -> str:
    payload = call(url, EXPORT, Authorization=f"Bearer {token}")["data"]["requestDataExport"]
    if payload["errors"]:
        raise RuntimeError(f"export refused: {payload['errors']}")
    return str(payload["url"])
