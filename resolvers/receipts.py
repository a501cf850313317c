"""Consent receipts: one consent from a ledger as a signed record the person can keep.

In the spirit of the Kantara Initiative's consent receipt and ISO/IEC 27560 (records of
consent): what was consented to (key, purpose, value), when, under which policy version, a hash
of the wording the catalogue shows for it, through which client, and the event's place in its
hash chain. The receipt is signed with Ed25519 over its canonical JSON (`signing.canonical_json`),
so anyone holding the published public key can check it without asking us; the same receipt
also comes as a compact JWS (alg "Ed25519", RFC 9864), for any JOSE library.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.devices import device_hash
from auth.signing import ALGORITHM, ReceiptSigner, canonical_json
from models import ConsentEvent, PolicyVersion, Visitor, VisitorConsentEvent, utcnow
from resolvers import catalogue
from resolvers.consent import POLICY_KEY, ChainedEvent
from resolvers.errors import ErrorCode, Rejected

FORMAT = "privacy-settings-api/consent-receipt/1"
CANONICALIZATION = "JSON: keys sorted, no whitespace, UTF-8 (RFC 8785 for these values)"
_MAX_EVENT_ID = 2**63 - 1


def _no_such_event() -> Rejected:
    # The same answer for an id that does not exist and one of someone else's events.
    return Rejected.one(ErrorCode.NOT_FOUND, "No such consent event.", "eventId")


def _event_id(raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= _MAX_EVENT_ID:
        raise _no_such_event()
    return int(text)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _wording(session: AsyncSession, event: ChainedEvent) -> str | None:
    """What the person was shown for the key: the catalogue's description of a setting, or the
    summary of the policy version accepted."""
    if event.key == POLICY_KEY:
        summary: str | None = await session.scalar(
            select(PolicyVersion.summary).where(PolicyVersion.version == event.new_value)
        )
        return summary
    setting = catalogue.BY_KEY.get(event.key)
    return setting.description if setting is not None else None


def _what(event: ChainedEvent) -> dict[str, Any]:
    setting = catalogue.BY_KEY.get(event.key)
    purpose = None
    if setting is not None:
        purpose = next(
            (
                part.value
                for part in (setting.purpose, setting.topic, setting.cookie, setting.visibility)
                if part is not None
            ),
            None,
        )
    return {
        "key": event.key,
        "group": setting.group.value if setting else None,
        "purpose": purpose,
        "channel": setting.channel.value if setting and setting.channel else None,
        "legal_basis": setting.legal_basis.value if setting else None,
        "value": event.new_value,
        "previous_value": event.old_value,
    }


async def _signed(
    session: AsyncSession,
    signer: ReceiptSigner,
    *,
    issuer: str,
    keys_url: str,
    subject: dict[str, str],
    event: ChainedEvent,
) -> dict[str, Any]:
    wording = await _wording(session, event)
    receipt = {
        "format": FORMAT,
        "receipt_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{issuer}#{event.hash}")),
        "issued_at": _time(utcnow()),
        "issuer": issuer,
        "subject": subject,
        "consent": _what(event),
        "recorded_at": _time(event.occurred_at),
        "policy": {
            "version_in_force": event.policy_version,
            "version_accepted": event.accepted_policy_version,
        },
        "wording": {
            "text": wording,
            "sha256": _sha256(wording) if wording is not None else None,
        },
        "collection": {
            "actor": event.actor.value,
            "source": event.source.value,
            "request_id": event.request_id,
            "user_agent": event.user_agent,
        },
        "ledger": {
            "event_id": str(event.id),
            "seq": event.seq,
            "hash": event.hash,
            "prev_hash": event.prev_hash,
            "hash_version": event.hash_version,
        },
    }
    signed = canonical_json(receipt)
    return {
        "receipt": receipt,
        # The same receipt for JOSE tooling: its payload is the canonical JSON signed below.
        "jws": signer.compact_jws(signed),
        "signature": {
            "algorithm": ALGORITHM,
            "key_id": signer.key_id,
            "keys_url": keys_url,
            "canonicalization": CANONICALIZATION,
            "value": signer.sign(signed),
        },
    }


async def account_receipt(
    session: AsyncSession,
    signer: ReceiptSigner,
    account_id: uuid.UUID,
    raw_event_id: str,
    *,
    issuer: str,
    keys_url: str,
) -> dict[str, Any]:
    """A signed receipt for one event of the account's own ledger."""
    event = await session.scalar(
        select(ConsentEvent).where(
            ConsentEvent.id == _event_id(raw_event_id), ConsentEvent.account_id == account_id
        )
    )
    if event is None:
        raise _no_such_event()
    subject = {"kind": "account", "id": str(account_id)}
    return await _signed(
        session, signer, issuer=issuer, keys_url=keys_url, subject=subject, event=event
    )


async def visitor_receipt(
    session: AsyncSession,
    signer: ReceiptSigner,
    device_id: str | None,
    raw_event_id: str,
    *,
    issuer: str,
    keys_url: str,
) -> dict[str, Any]:
    """A signed receipt for one event of this device's visitor ledger."""
    event_id = _event_id(raw_event_id)
    if device_id is None:
        raise _no_such_event()
    event = await session.scalar(
        select(VisitorConsentEvent)
        .join(Visitor, Visitor.id == VisitorConsentEvent.visitor_id)
        .where(VisitorConsentEvent.id == event_id, Visitor.device_hash == device_hash(device_id))
    )
    if event is None:
        raise _no_such_event()
    subject = {"kind": "visitor", "id": str(event.visitor_id)}
    return await _signed(
        session, signer, issuer=issuer, keys_url=keys_url, subject=subject, event=event
    )
