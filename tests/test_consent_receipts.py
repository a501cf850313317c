"""Consent receipts: signed records of one consent, checked the way a person would, without us."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from auth.signing import ReceiptSigner
from models import ConsentEvent, VisitorConsentEvent
from privacy_api.config import ConfigError, load_config
from tests.conftest import SEED_POLICY_VERSION, TEST_SECRET
from tests.helpers import changed, gql, run_cli, signed_up
from web.app import create_app

KEYS_URL = "/.well-known/consent-receipt-keys"
ACCOUNT_RECEIPT = "query Receipt($id: ID!) { me { consentReceipt(eventId: $id) } }"
VISITOR_RECEIPT = "query Receipt($id: ID!) { visitorConsentReceipt(eventId: $id) }"
HISTORY = "{ me { consentHistory(first: 1) { edges { node { id key } } } } }"
VISITOR_CHOICE = """
mutation { setCookieConsent(input: {analytics: true}) {
  visitor { consentHistory { id key } } errors { code } } }
"""


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def published_key(client: httpx.AsyncClient, key_id: str) -> Ed25519PublicKey:
    """The public key as anyone fetches it: from the published key set, by the receipt's key id."""
    response = await client.get(KEYS_URL)
    assert response.status_code == 200
    [jwk] = [key for key in response.json()["keys"] if key["kid"] == key_id]
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    return Ed25519PublicKey.from_public_bytes(_unb64url(jwk["x"]))


def canonical(receipt: dict[str, Any]) -> bytes:
    """The canonical form, written here from the README's description, not from our code."""
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def verify(client: httpx.AsyncClient, signed: dict[str, Any]) -> None:
    """Raises InvalidSignature unless the receipt is exactly what was signed; its JWS form must
    verify too, and carry the same receipt."""
    signature = signed["signature"]
    assert signature["algorithm"] == "Ed25519"
    key = await published_key(client, signature["key_id"])
    key.verify(_unb64url(signature["value"]), canonical(signed["receipt"]))
    assert json.loads(await jws_payload(client, signed["jws"])) == signed["receipt"]


async def jws_payload(client: httpx.AsyncClient, token: str) -> bytes:
    """The payload of a compact JWS as a JOSE library checks it: with the published key set,
    the key picked by the `kid` of the token's header (BadSignatureError if altered)."""
    keys = KeySet.import_key_set((await client.get(KEYS_URL)).json())
    verified = jws.deserialize_compact(token, keys, algorithms=["Ed25519"])
    assert verified.protected["kid"] in {key["kid"] for key in keys.as_dict()["keys"]}
    return verified.payload


async def newest_event_id(client: httpx.AsyncClient, token: str) -> str:
    body = await gql(client, HISTORY, token=token)
    event_id: str = body["data"]["me"]["consentHistory"]["edges"][0]["node"]["id"]
    return event_id


async def account_receipt(client: httpx.AsyncClient, token: str, event_id: str) -> dict[str, Any]:
    return await gql(client, ACCOUNT_RECEIPT, {"id": event_id}, token=token)


class TestAccountReceipt:
    async def test_a_receipt_verifies_with_the_published_key(self, client, database) -> None:
        token = await signed_up(client)
        client.cookies.clear()
        await changed(
            client, "setDataSharing", {"purpose": "RESEARCH", "enabled": True}, token=token
        )
        event_id = await newest_event_id(client, token)

        body = await account_receipt(client, token, event_id)

        signed = body["data"]["me"]["consentReceipt"]
        await verify(client, signed)
        receipt = signed["receipt"]
        assert receipt["consent"]["key"] == "data_sharing.research"
        assert receipt["consent"]["purpose"] == "research"
        assert (receipt["consent"]["value"], receipt["consent"]["previous_value"]) == (
            "true",
            "false",
        )
        assert receipt["policy"]["version_in_force"] == SEED_POLICY_VERSION
        assert (receipt["collection"]["actor"], receipt["collection"]["source"]) == (
            "person",
            "api",
        )
        catalogue = await gql(client, "{ privacyCatalogue { key description } }")
        [wording] = [
            entry["description"]
            for entry in catalogue["data"]["privacyCatalogue"]
            if entry["key"] == "data_sharing.research"
        ]
        assert receipt["wording"]["sha256"] == hashlib.sha256(wording.encode()).hexdigest()
        async with database.session() as session:
            stored = await session.get_one(ConsentEvent, int(event_id))
        assert receipt["ledger"]["hash"] == stored.hash
        assert receipt["ledger"]["seq"] == stored.seq

    async def test_a_policy_acceptance_hashes_the_summary_accepted(self, client) -> None:
        token = await signed_up(client)
        client.cookies.clear()
        page = await gql(
            client,
            '{ me { consentHistory(first: 1, key: "policy") { edges { node { id } } } } }',
            token=token,
        )
        event_id = page["data"]["me"]["consentHistory"]["edges"][0]["node"]["id"]
        policy = await gql(client, "{ currentPolicy { version summary } }")

        signed = (await account_receipt(client, token, event_id))["data"]["me"]["consentReceipt"]

        await verify(client, signed)
        summary = policy["data"]["currentPolicy"]["summary"]
        assert signed["receipt"]["consent"]["value"] == SEED_POLICY_VERSION
        assert (
            signed["receipt"]["wording"]["sha256"] == hashlib.sha256(summary.encode()).hexdigest()
        )

    async def test_a_tampered_receipt_fails(self, client) -> None:
        token = await signed_up(client)
        client.cookies.clear()
        await changed(client, "setCookieConsent", {"analytics": True}, token=token)
        signed = (await account_receipt(client, token, await newest_event_id(client, token)))[
            "data"
        ]["me"]["consentReceipt"]
        signed["receipt"]["consent"]["value"] = "false"

        with pytest.raises(InvalidSignature):
            await verify(client, signed)
        header, payload, signature = signed["jws"].split(".")
        altered = json.loads(_unb64url(payload))
        altered["consent"]["value"] = "false"
        forged = base64.urlsafe_b64encode(json.dumps(altered).encode()).rstrip(b"=").decode()
        with pytest.raises(BadSignatureError):
            await jws_payload(client, f"{header}.{forged}.{signature}")

    async def test_another_persons_event_is_answered_as_one_that_does_not_exist(
        self, client
    ) -> None:
        owner = await signed_up(client)
        client.cookies.clear()
        other = await signed_up(client, email="grace@example.com")
        client.cookies.clear()
        theirs = await newest_event_id(client, owner)

        answers = [
            (await account_receipt(client, other, event_id))["errors"]
            for event_id in (theirs, "999999999", "not-a-number")
        ]

        assert answers[0][0]["message"] == "No such consent event."
        assert all(
            [(e["message"], e["extensions"]) for e in errors]
            == [(e["message"], e["extensions"]) for e in answers[0]]
            for errors in answers
        )

    async def test_signed_out_there_is_no_account_to_ask(self, client) -> None:
        body = await gql(client, ACCOUNT_RECEIPT, {"id": "1"})
        assert body["data"]["me"] is None


class TestVisitorReceipt:
    async def test_a_visitors_receipt_verifies(self, client, database) -> None:
        body = await gql(client, VISITOR_CHOICE)
        [event] = body["data"]["setCookieConsent"]["visitor"]["consentHistory"]

        answer = await gql(client, VISITOR_RECEIPT, {"id": event["id"]})

        signed = answer["data"]["visitorConsentReceipt"]
        await verify(client, signed)
        assert signed["receipt"]["subject"]["kind"] == "visitor"
        assert signed["receipt"]["consent"]["key"] == "cookies.analytics"
        async with database.session() as session:
            stored = await session.get_one(VisitorConsentEvent, int(event["id"]))
        assert signed["receipt"]["ledger"]["hash"] == stored.hash

    async def test_another_devices_event_is_refused(self, client) -> None:
        body = await gql(client, VISITOR_CHOICE)
        [theirs] = body["data"]["setCookieConsent"]["visitor"]["consentHistory"]
        client.cookies.clear()
        await gql(client, VISITOR_CHOICE)

        answers = [
            (await gql(client, VISITOR_RECEIPT, {"id": event_id}))["errors"]
            for event_id in (theirs["id"], "999999999")
        ]

        assert answers[0][0]["message"] == "No such consent event."
        assert [e["message"] for e in answers[0]] == [e["message"] for e in answers[1]]


class TestPublishedKeys:
    async def test_the_key_set_is_public_and_cacheable(self, client) -> None:
        response = await client.get(KEYS_URL)

        assert response.status_code == 200
        assert "max-age" in response.headers["cache-control"]
        [key] = response.json()["keys"]
        assert (key["alg"], key["use"]) == ("Ed25519", "sig")

    async def test_the_receipt_names_where_the_keys_are(self, client) -> None:
        token = await signed_up(client)
        client.cookies.clear()
        signed = (await account_receipt(client, token, await newest_event_id(client, token)))[
            "data"
        ]["me"]["consentReceipt"]

        assert signed["signature"]["keys_url"] == "http://127.0.0.1:8000" + KEYS_URL


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class TestSigningKeySetting:
    PRODUCTION = {
        "PRIVACY_API_ENV": "production",
        "PRIVACY_API_SECRET_KEY": TEST_SECRET,
        "PRIVACY_API_PUBLIC_URL": "https://privacy.example.com",
    }

    def test_production_loads_without_a_key_but_the_api_refuses_to_start(
        self, tmp_path: Path
    ) -> None:
        # Workers (purge, mail delivery) sign nothing; the API would sign with a key that
        # changed at every restart.
        config = load_config({**self.PRODUCTION, "PRIVACY_API_DATA_DIR": str(tmp_path)})

        with pytest.raises(ConfigError, match="PRIVACY_API_RECEIPT_SIGNING_KEY"):
            create_app(config)
        assert not (tmp_path / "receipt_signing_key.pem").exists()

    async def test_serve_in_production_without_a_key_stops_at_once(
        self, clean_database_url, tmp_path: Path
    ) -> None:
        code, _, err = await run_cli(
            clean_database_url,
            tmp_path,
            "serve",
            "--port",
            "1",
            PRIVACY_API_ENV="production",
            PRIVACY_API_PUBLIC_URL="https://privacy.example.com",
        )

        assert code == 2
        assert "PRIVACY_API_RECEIPT_SIGNING_KEY" in err and "Traceback" not in err

    def test_a_key_that_is_not_ed25519_is_refused(self, tmp_path: Path) -> None:
        env = {**self.PRODUCTION, "PRIVACY_API_RECEIPT_SIGNING_KEY": "bm90IGEga2V5"}
        with pytest.raises(ConfigError, match="32 bytes"):
            load_config(env)

    def test_pem_and_raw_base64_name_the_same_key(self) -> None:
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        by_pem = load_config({**self.PRODUCTION, "PRIVACY_API_RECEIPT_SIGNING_KEY": _pem(key)})
        by_raw = load_config(
            {
                **self.PRODUCTION,
                "PRIVACY_API_RECEIPT_SIGNING_KEY": base64.b64encode(raw).decode(),
            }
        )

        assert (
            ReceiptSigner(by_pem.receipt_signing_key).jwk
            == ReceiptSigner(by_raw.receipt_signing_key).jwk
        )

    def test_development_keeps_one_generated_key_across_restarts(self, tmp_path: Path) -> None:
        env = {"PRIVACY_API_DATA_DIR": str(tmp_path), "PRIVACY_API_SECRET_KEY": TEST_SECRET}

        first, second = load_config(env), load_config(env)

        assert first.receipt_signing_key == second.receipt_signing_key
        assert (tmp_path / "receipt_signing_key.pem").stat().st_mode & 0o077 == 0
