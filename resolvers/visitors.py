"""Signed-out visitors: cookie choices made before signing in, recorded in a ledger of their own
and carried into the account when its holder signs up or signs in on the device.

A visitor record exists only once a choice is made (reading creates nothing) and is known only
by the hash of its device id. Its ledger follows the account ledger's chain rules
(`consent.Chain`, `consent.link_problem`). It expires a configured time after its last
choice; `purge_expired` removes it, and carrying it into an account removes it too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.devices import device_hash, new_device_id
from auth.rate_limits import Door, RateLimiter, client_key
from models import ConsentActor, Source, Visitor, VisitorConsentEvent, utcnow
from models.base import row_object
from resolvers import catalogue, settings
from resolvers.catalogue import CookieCategory, SettingDefinition, SettingGroup, Value
from resolvers.consent import BrokenLink, Chain, Provenance, head_update, verify_chains
from resolvers.errors import ErrorCode, Rejected
from resolvers.policy import newest_version
from resolvers.prepared import Prepared, Reads

# What a visitor can choose: the cookie categories that can be switched off.
VISITOR_SETTINGS: tuple[SettingDefinition, ...] = tuple(
    setting for setting in catalogue.in_group(SettingGroup.COOKIES) if not setting.locked
)
GPC_OPT_OUTS = tuple(setting for setting in catalogue.GPC_OPT_OUTS if setting in VISITOR_SETTINGS)
HISTORY_MAX = 100


@dataclass(frozen=True)
class VisitorState:
    """A visitor's cookie choices as `cookieConsent` shows them (defaults where none was made)."""

    settings: settings.Settings
    gpc_applied: bool
    visitor: Visitor | None


@dataclass(frozen=True)
class Chosen:
    """The outcome of a visitor's choice: their record, and the device id to hand back when a
    new one was issued."""

    visitor_id: uuid.UUID
    issued_device_id: str | None


@dataclass(kw_only=True)
class _VisitorLedger(Chain[VisitorConsentEvent]):
    """A device's chain: the account ledger's rules, but no policy is ever accepted on it."""

    event_table: ClassVar[Table] = cast(Table, VisitorConsentEvent.__table__)
    subject_column: ClassVar[str] = "visitor_id"

    def _event(self, values: dict[str, Any]) -> VisitorConsentEvent:
        # Only read (its row is inserted from `values`): built as the ORM builds a loaded row.
        return row_object(VisitorConsentEvent, {"visitor_id": self.subject_id, **values})


_NEW_HEAD = head_update(Visitor)


@asynccontextmanager
async def _open_ledger(
    session: AsyncSession, visitor_id: uuid.UUID, provenance: Provenance, *, choice: bool
) -> AsyncIterator[_VisitorLedger]:
    """Lock the visitor's chain (as `consent.open_ledger` locks an account's), let the caller
    append, then write the events and the new head. A choice renews the record's life."""
    now = utcnow()
    renewed = {"last_choice_at": now} if choice else {"ledger_seq": Visitor.ledger_seq}
    row = (
        await session.execute(
            update(Visitor)
            .where(Visitor.id == visitor_id)
            .values(**renewed)
            .returning(
                Visitor.ledger_seq,
                Visitor.ledger_head,
                Visitor.gpc_applied_at,
                newest_version().label("policy_version"),
            )
            .execution_options(synchronize_session=False)
        )
    ).one()
    ledger = _VisitorLedger(
        subject_id=visitor_id,
        provenance=provenance,
        policy_version=row.policy_version,
        seq=row.ledger_seq,
        head=row.ledger_head,
        now=now,
        gpc_applied_at=row.gpc_applied_at,
    )
    yield ledger
    await ledger.write(session, _NEW_HEAD)


@dataclass(frozen=True)
class _Newest:
    value: str
    occurred_at: datetime
    actor: ConsentActor


async def _newest_events(session: AsyncSession, visitor_id: uuid.UUID) -> dict[str, _Newest]:
    """The newest event of each key: a visitor's state is its ledger (one statement)."""
    ranked = (
        select(
            VisitorConsentEvent.key,
            VisitorConsentEvent.new_value,
            VisitorConsentEvent.occurred_at,
            VisitorConsentEvent.actor,
            func.row_number()
            .over(partition_by=VisitorConsentEvent.key, order_by=VisitorConsentEvent.seq.desc())
            .label("position"),
        )
        .where(VisitorConsentEvent.visitor_id == visitor_id)
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.key, ranked.c.new_value, ranked.c.occurred_at, ranked.c.actor).where(
            ranked.c.position == 1
        )
    )
    return {key: _Newest(value, at, actor) for key, value, at, actor in rows}


async def find_visitor(session: AsyncSession, device_id: str | None) -> Visitor | None:
    if device_id is None:
        return None
    found: Visitor | None = await session.scalar(
        select(Visitor).where(Visitor.device_hash == device_hash(device_id))
    )
    return found


async def cookie_consent(
    session: AsyncSession, device_id: str | None, *, gpc_signal: bool
) -> VisitorState:
    """The device's cookie choices; the catalogue defaults when it has made none. Reads only."""
    visitor = await find_visitor(session, device_id)
    newest = await _newest_events(session, visitor.id) if visitor is not None else {}
    gpc_applied = gpc_signal or (visitor is not None and visitor.gpc_applied_at is not None)
    values: settings.Settings = {}
    for setting in catalogue.CATALOGUE:
        if setting.key in newest:
            event = newest[setting.key]
            value = setting.decode(event.value)
            # Switched on after the signal arrived: the choice stands, against the signal.
            against_gpc = value is True and setting in GPC_OPT_OUTS and gpc_applied
            values[setting.key] = settings.CurrentValue(
                value, event.occurred_at, event.occurred_at if against_gpc else None
            )
        else:
            values[setting.key] = settings.CurrentValue(setting.default, None)
    return VisitorState(settings=values, gpc_applied=gpc_applied, visitor=visitor)


async def _apply_gpc(session: AsyncSession, visitor_id: uuid.UUID, request_id: str | None) -> None:
    """Under the visitor's lock: the settings the signal opts out of go off (actor and source
    GPC), once; later choices against it stand."""
    signal = Provenance(ConsentActor.GPC, Source.GPC, request_id=request_id)
    async with _open_ledger(session, visitor_id, signal, choice=False) as ledger:
        if ledger.gpc_applied_at is not None:
            return
        newest = await _newest_events(session, visitor_id)
        for setting in GPC_OPT_OUTS:
            old = newest[setting.key].value if setting.key in newest else None
            if old != setting.encode(False):
                ledger.append(setting.key, old, setting.encode(False))
        await session.execute(
            update(Visitor)
            .where(Visitor.id == visitor_id)
            .values(gpc_applied_at=ledger.now)
            .execution_options(synchronize_session=False)
        )


async def apply_global_privacy_control(
    session: AsyncSession, device_id: str | None, request_id: str | None
) -> bool:
    """A signed-out request with `Sec-GPC: 1` from a device that has a visitor record: as for an
    account (`settings.apply_global_privacy_control`). Returns whether anything was written."""
    visitor = await find_visitor(session, device_id)
    if visitor is None or visitor.gpc_applied_at is not None:
        return False
    await _apply_gpc(session, visitor.id, request_id)
    return True


async def set_cookie_consent(
    reads: Reads,
    limiter: RateLimiter,
    provenance: Provenance,
    *,
    client_address: str,
    device_id: str | None,
    global_privacy_control: bool,
    functional: bool | None = None,
    analytics: bool | None = None,
    advertising: bool | None = None,
) -> Prepared[Chosen | None]:
    """A signed-out visitor's cookie choice: categories left out stay as they are.

    The first choice of a device creates its record (limited per client) and issues a new device
    id; an id we do not know is replaced, never adopted, so every id is one we made. Returns None
    when nothing was asked and the device has no record (nothing is stored then).
    """
    asked: dict[SettingDefinition, Value | None] = {
        catalogue.cookie(CookieCategory.FUNCTIONAL): functional,
        catalogue.cookie(CookieCategory.ANALYTICS): analytics,
        catalogue.cookie(CookieCategory.ADVERTISING): advertising,
    }
    wanted = {setting: value for setting, value in asked.items() if value is not None}
    if wanted:
        async with reads() as session:
            known = await find_visitor(session, device_id) is not None
        # A new record is counted before the transaction; the write creates one only when the
        # device still has none.
        if not known and (
            refused := await limiter.admit(Door.VISITOR_PER_CLIENT, client_key(client_address))
        ):
            raise Rejected.rate_limited("Too many new visitors from here", refused)
    return Prepared(
        lambda session: _choose(
            session, provenance, device_id, wanted, global_privacy_control=global_privacy_control
        )
    )


async def _choose(
    session: AsyncSession,
    provenance: Provenance,
    device_id: str | None,
    wanted: dict[SettingDefinition, Value],
    *,
    global_privacy_control: bool,
) -> Chosen | None:
    visitor = await find_visitor(session, device_id)
    issued = None
    if visitor is None:
        if not wanted:
            return None
        issued = new_device_id()
        now = utcnow()
        visitor = Visitor(device_hash=device_hash(issued), created_at=now, last_choice_at=now)
        session.add(visitor)
        await session.flush()
    if global_privacy_control and visitor.gpc_applied_at is None:
        await _apply_gpc(session, visitor.id, provenance.request_id)
    async with _open_ledger(session, visitor.id, provenance, choice=True) as ledger:
        newest = await _newest_events(session, visitor.id)
        for setting, value in wanted.items():
            # A key's first choice is recorded even when it equals the default: a refusal is
            # a choice too, and it must win over an older one when carried into an account.
            old = newest[setting.key].value if setting.key in newest else None
            if setting.encode(value) != old:
                ledger.append(setting.key, old, setting.encode(value))
    return Chosen(visitor_id=visitor.id, issued_device_id=issued)


async def consent_history(
    session: AsyncSession, visitor_id: uuid.UUID, *, first: int
) -> list[VisitorConsentEvent]:
    """The visitor's newest events, newest first (a visitor's ledger is short; no paging)."""
    if not 1 <= first <= HISTORY_MAX:
        raise Rejected.one(ErrorCode.INVALID_INPUT, f"Ask for 1 to {HISTORY_MAX} events.", "first")
    rows = await session.scalars(
        select(VisitorConsentEvent)
        .where(VisitorConsentEvent.visitor_id == visitor_id)
        .order_by(VisitorConsentEvent.seq.desc())
        .limit(first)
    )
    return list(rows)


async def merge_into_account(
    session: AsyncSession,
    account_id: uuid.UUID,
    device_id: str | None,
    provenance: Provenance,
) -> int:
    """Carry the device's cookie choices into the account whose holder just signed up or signed
    in on it, then remove the visitor record: the choices now live in the account's ledger.

    Each key's newest visitor event is carried over when the visitor made it (what the GPC
    signal did is not a choice; the signal applies to the account by itself), it is newer than
    the account's own newest choice of the key, and the account holder may make it. One account
    event each, with source DEVICE. Returns the number of events written.
    """
    visitor = await find_visitor(session, device_id)
    if visitor is None:
        return 0
    newest = await _newest_events(session, visitor.id)
    choices: dict[SettingDefinition, tuple[Value, datetime]] = {
        setting: (setting.decode(event.value), event.occurred_at)
        for setting in VISITOR_SETTINGS
        if (event := newest.get(setting.key)) is not None and event.actor is ConsentActor.PERSON
    }
    device = Provenance(
        ConsentActor.PERSON,
        Source.DEVICE,
        request_id=provenance.request_id,
        session_id=provenance.session_id,
        user_agent=provenance.user_agent,
    )
    written = await settings.adopt_device_choices(session, account_id, choices, device)
    await _remove(session, [visitor.id])
    return written


async def _remove(session: AsyncSession, visitor_ids: list[uuid.UUID]) -> int:
    await session.execute(
        delete(VisitorConsentEvent).where(VisitorConsentEvent.visitor_id.in_(visitor_ids))
    )
    result = await session.execute(delete(Visitor).where(Visitor.id.in_(visitor_ids)))
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_expired(session: AsyncSession, now: datetime, retention: timedelta) -> int:
    """Remove every visitor whose last choice is older than the retention period, with its
    ledger. Returns how many were removed."""
    expired = list(
        await session.scalars(select(Visitor.id).where(Visitor.last_choice_at <= now - retention))
    )
    return await _remove(session, expired) if expired else 0


async def verify_visitor_ledgers(session: AsyncSession) -> tuple[int, BrokenLink | None]:
    """Check every visitor's chain by the account ledger's rules, streaming in bounded memory,
    and that each ends at the head its visitor record holds. Returns how many events were
    checked and the first broken link (naming the visitor where it says account)."""
    return await verify_chains(session, Visitor, VisitorConsentEvent.visitor_id, "visitor")


def expires_at(visitor: Visitor, retention: timedelta) -> datetime:
    return visitor.last_choice_at + retention
