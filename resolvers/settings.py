"""Changing settings: each use case names what it wants, `change_settings` does the rest."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth.actor import Actor
from models import (
    Account,
    AccountSetting,
    ConsentActor,
    ConsentEvent,
    IdempotencyKey,
    ParentalConsent,
    ParentalDecision,
    Source,
    utcnow,
)
from models.driver import DriverStatement, connection_of
from resolvers import catalogue
from resolvers.age import is_minor, today_everywhere
from resolvers.catalogue import (
    Audience,
    Channel,
    CookieCategory,
    Purpose,
    SettingDefinition,
    SettingGroup,
    SettingKind,
    Topic,
    Value,
    VisibilityField,
)
from resolvers.consent import POLICY_KEY, Ledger, Provenance, Rows, open_ledger
from resolvers.errors import ErrorCode, Rejected, UserError

IDEMPOTENCY_KEY_MAX = 100
MAX_CHANGES = len(catalogue.CATALOGUE)


@dataclass(frozen=True)
class CurrentValue:
    value: Value
    updated_at: datetime | None  # None: never changed from the catalogue default
    # When the person switched on, against the Global Privacy Control signal, a setting it opts
    # out of; None when there is no such conflict.
    gpc_conflict_at: datetime | None = None


Settings = dict[str, CurrentValue]
# The shape every settings use case has, so the GraphQL layer can run any of them alike.
SettingsChange = Callable[..., Awaitable[int]]


_SETTINGS = select(
    AccountSetting.account_id,
    AccountSetting.key,
    AccountSetting.value,
    AccountSetting.updated_at,
    AccountSetting.gpc_conflict_at,
)
_ONE_ACCOUNTS_SETTINGS = DriverStatement(
    _SETTINGS.where(AccountSetting.account_id == bindparam("account_id"))
)


async def read_settings(
    session: AsyncSession | AsyncConnection, account_ids: Sequence[uuid.UUID]
) -> list[Settings]:
    """Every setting in the catalogue for each account, in the order asked (one statement)."""
    # The usual case, one account (`me`), runs a statement built once, by the driver where it
    # can (models/driver.py); on the session's connection, as plain rows: the ORM's result
    # machinery cost more than the rows it read.
    connection = await connection_of(session)
    rows: Iterable[Sequence[Any]] = (
        await _ONE_ACCOUNTS_SETTINGS.rows(connection, {"account_id": account_ids[0]})
        if len(account_ids) == 1
        else await connection.execute(_SETTINGS.where(AccountSetting.account_id.in_(account_ids)))
    )
    stored: dict[uuid.UUID, dict[str, tuple[str, datetime, datetime | None]]] = {}
    for account_id, key, value, updated_at, gpc_conflict_at in rows:
        stored.setdefault(account_id, {})[key] = (value, updated_at, gpc_conflict_at)
    return [_with_defaults(stored.get(account_id, {})) for account_id in account_ids]


def _with_defaults(stored: Mapping[str, tuple[str, datetime, datetime | None]]) -> Settings:
    result: Settings = {}
    for setting in catalogue.CATALOGUE:
        if setting.key in stored:
            text, updated_at, gpc_conflict_at = stored[setting.key]
            result[setting.key] = CurrentValue(setting.decode(text), updated_at, gpc_conflict_at)
        else:
            result[setting.key] = _unchanged(setting)
    return result


@functools.cache
def _unchanged(setting: SettingDefinition) -> CurrentValue:
    """A setting never changed from its default (the same, immutable, for every account)."""
    return CurrentValue(setting.default, None)


def _choice_error(
    setting: SettingDefinition, value: Value, holder: Ledger, today: date
) -> UserError | None:
    """Whether the account holder may give this setting this value: the rules in one place."""
    field = setting.key
    if setting.locked and value != setting.default:
        return UserError(field, "This setting cannot be changed.", ErrorCode.SETTING_LOCKED)
    if setting.withheld(value) and is_minor(
        holder.birth_date, holder.country, holder.us_state, today
    ):
        if setting.group is SettingGroup.VISIBILITY:
            return UserError(
                field, "Your profile can't be made public at your age.", ErrorCode.MINOR_PROTECTED
            )
        return UserError(
            field,
            "A parent or guardian must agree before this can be switched on.",
            ErrorCode.PARENTAL_CONSENT_REQUIRED,
        )
    if setting.needs_phone and value is True and not holder.phone:
        return UserError(
            field, "Add a phone number to your account first.", ErrorCode.PHONE_REQUIRED
        )
    return None


async def granted_by_parent(
    session: AsyncSession, account_id: uuid.UUID, keys: Sequence[str]
) -> set[str]:
    """Of these keys, those a parent has granted and not withdrawn. A grant counts only while
    its holder is a minor; callers ask only then (after that it has lapsed, see
    `resolvers.parental`)."""
    return {key for _, key in await parental_grants(session, [account_id], keys)}


async def parental_grants(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], keys: Sequence[str]
) -> set[tuple[uuid.UUID, str]]:
    """The (account, key) pairs among these that a parent has granted and not withdrawn, in one
    statement however many accounts (see `granted_by_parent`)."""
    if not account_ids or not keys:
        return set()
    rows = await session.execute(
        select(ParentalConsent.account_id, ParentalConsent.key)
        .where(
            ParentalConsent.account_id.in_(account_ids),
            ParentalConsent.key.in_(keys),
            ParentalConsent.decision == ParentalDecision.GRANTED,
        )
        .distinct()
    )
    return {(account_id, key) for account_id, key in rows}


async def _allowed_by_parent(
    session: AsyncSession, account_id: uuid.UUID, errors: list[UserError]
) -> list[UserError]:
    """The errors left once a parent's consent is taken into account: a minor may switch on
    what a parent has granted. Reads only when a parent's consent is what is missing."""
    needing = [e.field for e in errors if e.code is ErrorCode.PARENTAL_CONSENT_REQUIRED]
    if not needing:
        return errors
    granted = await granted_by_parent(session, account_id, [key for key in needing if key])
    return [
        error
        for error in errors
        if not (error.code is ErrorCode.PARENTAL_CONSENT_REQUIRED and error.field in granted)
    ]


def _fingerprint(operation: str, wanted: Mapping[SettingDefinition, Value]) -> str:
    body = json.dumps(
        [operation, sorted((s.key, s.encode(v)) for s, v in wanted.items())], separators=(",", ":")
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def _replayed(
    session: AsyncSession, account_id: uuid.UUID, key: str, fingerprint: str
) -> bool:
    """True when this key already carried out this very change; refused for another change."""
    stored = await session.scalar(
        select(IdempotencyKey.fingerprint).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
        )
    )
    if stored is None:
        return False
    if stored != fingerprint:
        raise Rejected.one(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotency key was used for a different change.",
            "idempotencyKey",
        )
    return True


_INSERT_KEY = insert(cast(Table, IdempotencyKey.__table__))


async def change_settings(
    session: AsyncSession,
    account_id: uuid.UUID,
    asked: Mapping[SettingDefinition, Value | None],
    provenance: Provenance,
    *,
    operation: str,
    idempotency_key: str | None = None,
    check_rules: bool = True,
) -> int:
    """Apply a set of changes all or nothing, one ledger event per value that really changes.
    Settings asked as None (left out by the client) stay as they are.

    Returns the number of events written (0 for a retry or when nothing changed).
    """
    wanted = {setting: value for setting, value in asked.items() if value is not None}
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"An idempotency key has 1 to {IDEMPOTENCY_KEY_MAX} characters.",
            "idempotencyKey",
        )
    if not wanted:
        return 0
    fingerprint = _fingerprint(operation, wanted)
    async with open_ledger(session, account_id, provenance) as ledger:
        # Checked under the account's lock: a retry that waited for the first request to commit
        # sees its key here, and answers as it did.
        if idempotency_key and await _replayed(session, account_id, idempotency_key, fingerprint):
            return 0
        if check_rules:
            today = today_everywhere(utcnow())
            errors = [
                error
                for setting, value in wanted.items()
                if (error := _choice_error(setting, value, ledger, today)) is not None
            ]
            errors = await _allowed_by_parent(session, account_id, errors)
            if errors:
                raise Rejected(*errors)
        written = await _store(session, ledger, wanted)
        if idempotency_key:
            key = {
                "account_id": account_id,
                "key": idempotency_key,
                "fingerprint": fingerprint,
                "created_at": ledger.now,
            }
            ledger.also.append(Rows(_INSERT_KEY, [key]))
    return written


async def write_settings(
    session: AsyncSession,
    account_id: uuid.UUID,
    wanted: Mapping[SettingDefinition, Value],
    provenance: Provenance,
) -> int:
    """Store the values that differ and append their events, for callers that change settings as
    part of a larger change. Checks no rules."""
    async with open_ledger(session, account_id, provenance) as ledger:
        return await _store(session, ledger, wanted)


# Built once: a statement built per request is keyed and coerced again each time, which was the
# largest share of a toggle's own time in SQLAlchemy.
_STORED_COLUMNS = select(AccountSetting.key, AccountSetting.value, AccountSetting.gpc_conflict_at)
_STORED = _STORED_COLUMNS.where(
    AccountSetting.account_id == bindparam("account_id"),
    AccountSetting.key.in_(bindparam("keys", expanding=True)),
)
# One setting (a toggle): no list to expand, so the driver can send it (models/driver.py).
_STORED_ONE = DriverStatement(
    _STORED_COLUMNS.where(
        AccountSetting.account_id == bindparam("account_id"),
        AccountSetting.key == bindparam("key"),
    )
)


async def _store(
    session: AsyncSession,
    ledger: Ledger,
    wanted: Mapping[SettingDefinition, Value],
    *,
    keep_gpc_conflicts: bool = False,
) -> int:
    """Within an open ledger: the values that differ, each with its event, which the ledger
    writes when it closes.

    A setting the GPC signal opts out of, switched on once the account has received the signal,
    is marked as conflicting with it; any later change of its value ends the mark. With
    `keep_gpc_conflicts`, settings so marked are left as they are.
    """
    keys = [setting.key for setting in wanted]
    connection = await session.connection()
    rows: Iterable[Sequence[Any]] = (
        await _STORED_ONE.rows(connection, {"account_id": ledger.account_id, "key": keys[0]})
        if len(keys) == 1
        else await connection.execute(_STORED, {"account_id": ledger.account_id, "keys": keys})
    )
    stored = {key: (value, gpc_conflict_at) for key, value, gpc_conflict_at in rows}
    for setting, value in wanted.items():
        new = setting.encode(value)
        old, gpc_conflict_at = stored.get(setting.key, (setting.encode(setting.default), None))
        if new == old or (keep_gpc_conflicts and gpc_conflict_at is not None):
            continue
        ledger.append(setting.key, old, new)
        against_gpc = (
            value is True
            and setting in catalogue.GPC_OPT_OUTS
            and ledger.gpc_applied_at is not None
        )
        ledger.settings.append(
            {
                "account_id": ledger.account_id,
                "key": setting.key,
                "value": new,
                "updated_at": ledger.now,
                "gpc_conflict_at": ledger.now if against_gpc else None,
            }
        )
    return len(ledger.events)


async def adopt_device_choices(
    session: AsyncSession,
    account_id: uuid.UUID,
    choices: Mapping[SettingDefinition, tuple[Value, datetime]],
    provenance: Provenance,
) -> int:
    """Carry choices made on a device before sign-in (each with when it was made) into the
    account: the newest choice wins, so each is taken only when it is newer than the account's
    own newest choice of its key (the defaults recorded at signup and the age rules' changes are
    not choices), and only when the account holder may make it (the rules of `change_settings`;
    one they may not is left out, not refused). Returns the number of events written."""
    if not choices:
        return 0
    async with open_ledger(session, account_id, provenance) as ledger:
        rows = await session.execute(
            select(ConsentEvent.key, func.max(ConsentEvent.occurred_at))
            .where(
                ConsentEvent.account_id == account_id,
                ConsentEvent.key.in_([setting.key for setting in choices]),
                ConsentEvent.actor.not_in([ConsentActor.SIGNUP, ConsentActor.SYSTEM]),
            )
            .group_by(ConsentEvent.key)
        )
        account_chose: dict[str, datetime] = {key: at for key, at in rows}
        today = today_everywhere(ledger.now)
        wanted: dict[SettingDefinition, Value] = {
            setting: value
            for setting, (value, chosen_at) in choices.items()
            if (setting.key not in account_chose or chosen_at > account_chose[setting.key])
            and _choice_error(setting, value, ledger, today) is None
        }
        return await _store(session, ledger, wanted) if wanted else 0


async def protect_if_minor(
    session: AsyncSession, account_id: uuid.UUID, provenance: Provenance
) -> int:
    """Apply the age rules to the account as it is now: if its holder is below the age of
    digital consent, each setting holding a value withheld from minors goes back to its default
    (off, or private), one event each, unless a parent granted it. Callers run it in the
    transaction that changed who the person is, after flushing that change.

    Returns the number of events written: 0 for an adult, or for a minor already protected.
    """
    async with open_ledger(session, account_id, provenance) as ledger:
        if not is_minor(
            ledger.birth_date, ledger.country, ledger.us_state, today_everywhere(ledger.now)
        ):
            return 0
        [current] = await read_settings(session, [account_id])
        holding = [
            setting
            for setting in catalogue.WITHHELD_FROM_MINORS
            if setting.withheld(current[setting.key].value)
        ]
        granted = await granted_by_parent(
            session, account_id, [s.key for s in holding if s.parent_may_grant]
        )
        wanted: dict[SettingDefinition, Value] = {
            setting: setting.default for setting in holding if setting.key not in granted
        }
        return await _store(session, ledger, wanted) if wanted else 0


async def minors_to_protect(session: AsyncSession) -> list[uuid.UUID]:
    """The accounts whose holder is below the age of digital consent by today's rules and holds
    a value withheld from minors, for applying a changed age table to everyone.

    Only accounts holding such a value are read (most hold none), streamed in bounded memory;
    the age itself is decided by `is_minor`, the one place the rule lives.
    """
    keys_by_value: dict[str, list[str]] = {}
    for setting in catalogue.WITHHELD_FROM_MINORS:
        withheld = Audience.PUBLIC if setting.kind is SettingKind.AUDIENCE else True
        keys_by_value.setdefault(setting.encode(withheld), []).append(setting.key)
    holding = (
        select(AccountSetting.account_id)
        .where(
            or_(
                *(
                    and_(AccountSetting.key.in_(keys), AccountSetting.value == value)
                    for value, keys in keys_by_value.items()
                )
            )
        )
        .distinct()
    )
    today = today_everywhere(utcnow())
    found: list[uuid.UUID] = []
    stream = await session.stream(
        select(Account.id, Account.birth_date, Account.country, Account.us_state)
        .where(Account.birth_date.is_not(None), Account.id.in_(holding))
        .execution_options(yield_per=1000)
    )
    async for account_id, birth_date, country, us_state in stream:
        if is_minor(birth_date, country, us_state, today):
            found.append(account_id)
    return found


async def record_initial_state(
    session: AsyncSession,
    account_id: uuid.UUID,
    policy_version: str,
    request_id: str | None,
    *,
    global_privacy_control: bool = False,
    session_id: uuid.UUID | None = None,
    user_agent: str | None = None,
) -> None:
    """At signup: the accepted policy and every default, as events with source SIGNUP.

    With a Global Privacy Control signal on the signup request, the settings it opts out of start
    off by the signal: their first events have actor and source GPC.
    """
    by_gpc = catalogue.GPC_OPT_OUTS if global_privacy_control else ()
    provenance = Provenance(
        ConsentActor.SIGNUP,
        Source.SIGNUP,
        request_id=request_id,
        session_id=session_id,
        user_agent=user_agent,
    )
    async with open_ledger(session, account_id, provenance) as ledger:
        ledger.append(POLICY_KEY, None, policy_version)
        rows = []
        for setting in catalogue.CATALOGUE:
            value = setting.encode(False if setting in by_gpc else setting.default)
            if setting not in by_gpc:
                ledger.append(setting.key, None, value)
            rows.append(
                {
                    "account_id": account_id,
                    "key": setting.key,
                    "value": value,
                    "updated_at": ledger.now,
                }
            )
        await session.execute(insert(AccountSetting), rows)
    if by_gpc:
        signal = Provenance(
            ConsentActor.GPC,
            Source.GPC,
            request_id=request_id,
            session_id=session_id,
            user_agent=user_agent,
        )
        async with open_ledger(session, account_id, signal) as ledger:
            for setting in by_gpc:
                ledger.append(setting.key, None, setting.encode(False))


async def set_communication_preference(
    session: AsyncSession,
    account_id: uuid.UUID,
    provenance: Provenance,
    *,
    channel: Channel,
    topic: Topic,
    enabled: bool,
    idempotency_key: str | None = None,
) -> int:
    return await change_settings(
        session,
        account_id,
        {catalogue.communication(channel, topic): enabled},
        provenance,
        operation="setCommunicationPreference",
        idempotency_key=idempotency_key,
    )


async def update_communication_preferences(
    session: AsyncSession,
    account_id: uuid.UUID,
    provenance: Provenance,
    *,
    changes: list[tuple[Channel, Topic, bool]],
    idempotency_key: str | None = None,
) -> int:
    """Several preferences at once, all or nothing."""
    if not 1 <= len(changes) <= MAX_CHANGES:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, f"Send 1 to {MAX_CHANGES} changes at a time.", "changes"
        )
    wanted: dict[SettingDefinition, Value] = {}
    for channel, topic, enabled in changes:
        setting = catalogue.communication(channel, topic)
        if setting in wanted and wanted[setting] != enabled:
            raise Rejected.one(
                ErrorCode.INVALID_INPUT,
                f"{channel.name} {topic.name} appears twice with different values.",
                "changes",
            )
        wanted[setting] = enabled
    return await change_settings(
        session,
        account_id,
        wanted,
        provenance,
        operation="updateCommunicationPreferences",
        idempotency_key=idempotency_key,
    )


async def set_data_sharing(
    session: AsyncSession,
    account_id: uuid.UUID,
    provenance: Provenance,
    *,
    purpose: Purpose,
    enabled: bool,
    idempotency_key: str | None = None,
) -> int:
    return await change_settings(
        session,
        account_id,
        {catalogue.data_sharing(purpose): enabled},
        provenance,
        operation="setDataSharing",
        idempotency_key=idempotency_key,
    )


async def update_visibility(
    session: AsyncSession,
    account_id: uuid.UUID,
    provenance: Provenance,
    *,
    profile: Audience | None = None,
    email: Audience | None = None,
    phone: Audience | None = None,
    search_engine_indexing: bool | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Fields left out (None) stay as they are."""
    asked: dict[SettingDefinition, Value | None] = {
        catalogue.visibility(VisibilityField.PROFILE): profile,
        catalogue.visibility(VisibilityField.EMAIL): email,
        catalogue.visibility(VisibilityField.PHONE): phone,
        catalogue.visibility(VisibilityField.SEARCH_ENGINE_INDEXING): search_engine_indexing,
    }
    return await change_settings(
        session,
        account_id,
        asked,
        provenance,
        operation="updateVisibility",
        idempotency_key=idempotency_key,
    )


async def set_cookie_consent(
    session: AsyncSession,
    account_id: uuid.UUID,
    provenance: Provenance,
    *,
    functional: bool | None = None,
    analytics: bool | None = None,
    advertising: bool | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Strictly necessary cookies are always on; categories left out stay as they are."""
    asked: dict[SettingDefinition, Value | None] = {
        catalogue.cookie(CookieCategory.FUNCTIONAL): functional,
        catalogue.cookie(CookieCategory.ANALYTICS): analytics,
        catalogue.cookie(CookieCategory.ADVERTISING): advertising,
    }
    return await change_settings(
        session,
        account_id,
        asked,
        provenance,
        operation="setCookieConsent",
        idempotency_key=idempotency_key,
    )


async def opt_out_of_marketing(
    session: AsyncSession,
    account_id: uuid.UUID,
    provenance: Provenance,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Every consent-based message, on every channel, off."""
    wanted: dict[SettingDefinition, Value] = dict.fromkeys(
        catalogue.MARKETING_COMMUNICATIONS, False
    )
    return await change_settings(
        session,
        account_id,
        wanted,
        provenance,
        operation="optOutOfMarketing",
        idempotency_key=idempotency_key,
    )


async def apply_global_privacy_control(
    session: AsyncSession, actor: Actor, request_id: str | None
) -> int:
    """A request carrying `Sec-GPC: 1` opts the person out of sale and sharing: every setting the
    signal covers is made sure to be off, with an event (actor and source GPC) for each that was
    on, except a choice the person made against the signal (marked as a conflict), which stands.

    Under the account's lock, so of several requests racing with the signal the first writes the
    events and the others find nothing left to change. Returns the number of events written.
    """
    provenance = Provenance(ConsentActor.GPC, Source.GPC, request_id=request_id)
    wanted: dict[SettingDefinition, Value] = dict.fromkeys(catalogue.GPC_OPT_OUTS, False)
    async with open_ledger(session, actor.account_id, provenance) as ledger:
        written = await _store(session, ledger, wanted, keep_gpc_conflicts=True)
        if ledger.gpc_applied_at is None:
            await session.execute(
                update(Account)
                .where(Account.id == actor.account_id)
                .values(gpc_applied_at=ledger.now)
                .execution_options(synchronize_session=False)
            )
    return written
