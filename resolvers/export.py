"""Data portability: a single-use download link, and the JSON document behind it.

The document's format is described by `docs/export-schema.json`; `FORMAT_VERSION` here and the
schema's `version` constant change together. Every list in it is streamed from the database in
batches, so an account with a long consent history exports in bounded memory.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from auth.actor import Actor
from auth.rate_limits import Door, RateLimiter
from auth.tokens import hash_token, new_token
from models import (
    Account,
    AuditEntry,
    AuthSession,
    ConsentEvent,
    DataExport,
    FormerEmail,
    Notification,
    PrivacyRequest,
    ProfileChange,
    RequestKind,
    RequestStatus,
    utcnow,
)
from resolvers import catalogue, parental
from resolvers.age import is_minor, today_everywhere
from resolvers.consent import POLICY_KEY
from resolvers.errors import Rejected
from resolvers.prepared import Prepared
from resolvers.requests import open_request
from resolvers.settings import CurrentValue, read_settings

FORMAT = "privacy-settings-export"
FORMAT_VERSION = "1.4"
MAX_TOKEN_LENGTH = 256
# Rows fetched and written per step: the document's memory use grows with this, not the account.
BATCH = 1000


@dataclass(frozen=True)
class ExportLink:
    url: str
    expires_at: datetime


async def request_data_export(
    limiter: RateLimiter,
    actor: Actor,
    *,
    download_link: Callable[[str], str],
    valid_hours: int,
) -> Prepared[ExportLink]:
    """A new single-use link to the person's export, recorded as a completed privacy request.

    The token is kept only as its hash; the link in the answer is the one place it appears.
    """
    if refused := await limiter.admit(Door.EXPORT_PER_ACCOUNT, str(actor.account_id)):
        raise Rejected.rate_limited("You have asked for several exports recently", refused)
    return Prepared(
        lambda session: _keep_export(session, actor.account_id, download_link, valid_hours)
    )


async def _keep_export(
    session: AsyncSession,
    account_id: uuid.UUID,
    download_link: Callable[[str], str],
    valid_hours: int,
) -> ExportLink:
    token = new_token()
    now = utcnow()
    expires_at = now + timedelta(hours=valid_hours)
    session.add(
        DataExport(
            account_id=account_id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    open_request(
        session,
        kind=RequestKind.EXPORT,
        status=RequestStatus.COMPLETED,
        account_id=account_id,
        requested_by=account_id,
    )
    await session.flush()
    return ExportLink(url=download_link(token), expires_at=expires_at)


class LinkProblem(enum.Enum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


class LinkUnusable(Exception):
    """The download link cannot be used, and why."""

    def __init__(self, problem: LinkProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


async def _problem_with(session: AsyncSession, token: str, now: datetime) -> LinkProblem | None:
    if len(token) > MAX_TOKEN_LENGTH:
        return LinkProblem.UNKNOWN
    row = (
        await session.execute(
            select(DataExport.downloaded_at, DataExport.expires_at).where(
                DataExport.token_hash == hash_token(token)
            )
        )
    ).one_or_none()
    if row is None:
        return LinkProblem.UNKNOWN
    if row.downloaded_at is not None:
        return LinkProblem.USED
    if row.expires_at <= now:
        return LinkProblem.EXPIRED
    return None


async def check_download(session: AsyncSession, token: str, *, now: datetime) -> None:
    """Raise LinkUnusable unless the link could be downloaded now; uses nothing up."""
    problem = await _problem_with(session, token, now)
    if problem is not None:
        raise LinkUnusable(problem)


async def claim_download(session: AsyncSession, token: str, *, now: datetime) -> uuid.UUID:
    """Use up the link and return whose export it is; raises LinkUnusable.

    One conditional UPDATE marks it downloaded, so of two downloads at once exactly one gets
    a row back; the other is told the link was used.
    """
    account_id = None
    if len(token) <= MAX_TOKEN_LENGTH:
        account_id = (
            await session.execute(
                update(DataExport)
                .where(
                    DataExport.token_hash == hash_token(token),
                    DataExport.downloaded_at.is_(None),
                    DataExport.expires_at > now,
                )
                .values(downloaded_at=now)
                .returning(DataExport.account_id)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one_or_none()
    if account_id is not None:
        return account_id
    raise LinkUnusable(await _problem_with(session, token, now) or LinkProblem.USED)


def _time(value: datetime | None) -> str | None:
    """Timestamps in UTC to the microsecond, the form the consent hashes are computed over."""
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


def _json(value: Any) -> str:
    return _encoder.encode(value)


def _profile(account: Account) -> dict[str, Any]:
    # Everything on the account row except secrets (password and email-change token hashes)
    # and the ledger's bookkeeping, which the consent history carries in full.
    return {
        "id": str(account.id),
        "email": account.email,
        "pending_email": account.pending_email,
        "pending_email_expires_at": _time(account.email_token_expires_at),
        "display_name": account.display_name,
        "phone": account.phone,
        "birth_date": _date(account.birth_date),
        "country": account.country,
        "us_state": account.us_state,
        "locale": account.locale,
        "role": account.role.value,
        "created_at": _time(account.created_at),
        "updated_at": _time(account.updated_at),
        "accepted_policy_version": account.accepted_policy_version,
        "policy_accepted_at": _time(account.policy_accepted_at),
        "gpc_applied_at": _time(account.gpc_applied_at),
        "deletion_requested_at": _time(account.deletion_requested_at),
        "deletion_due_at": _time(account.deletion_due_at),
        "restricted_at": _time(account.restricted_at),
    }


def _setting(setting: catalogue.SettingDefinition, current: CurrentValue) -> dict[str, Any]:
    value = current.value
    return {
        "key": setting.key,
        "group": setting.group.value,
        # Audiences by name, as the consent history records them.
        "value": value.name if isinstance(value, catalogue.Audience) else value,
        "legal_basis": setting.legal_basis.value,
        "description": setting.description,
        "updated_at": _time(current.updated_at),
        "gpc_conflict_at": _time(current.gpc_conflict_at),
    }


def _session(row: Row[Any]) -> dict[str, Any]:
    return {
        "user_agent": row.user_agent,
        "created_at": _time(row.created_at),
        "last_used_at": _time(row.last_used_at),
        "expires_at": _time(row.expires_at),
    }


def _request(row: Row[Any]) -> dict[str, Any]:
    # The text only of what the person asked themself: a report about them keeps its reporter's
    # words (and the staff's notes on it) out of their export.
    own = bool(row.own)  # NULL for an anonymous report
    return {
        "kind": row.kind.value,
        "status": row.status.value,
        "created_at": _time(row.created_at),
        "due_at": _time(row.due_at),
        "handled_at": _time(row.handled_at),
        "made_by_you": own,
        "subject": row.subject if own else None,
        "details": row.details if own else None,
        "resolution": row.resolution if own else None,
        "extended_months": row.extended_months,
        "extension_reason": row.extension_reason,
    }


def _message(row: Row[Any]) -> dict[str, Any]:
    # The body holds a placeholder where a code or link went; the secret itself is never exported.
    return {
        "kind": row.kind.value,
        "subject": row.subject,
        "body": row.body,
        "created_at": _time(row.created_at),
        "sent_at": _time(row.sent_at),
    }


def _staff_access(row: Row[Any]) -> dict[str, Any]:
    # The staff member's role, never their name or id.
    return {
        "role": row.role.value if row.role is not None else None,
        "action": row.action,
        "reason": row.reason,
        "occurred_at": _time(row.occurred_at),
    }


def _policy_acceptance(row: Row[Any]) -> dict[str, Any]:
    return {
        "version": row.new_value,
        "previous_version": row.old_value,
        "accepted_at": _time(row.occurred_at),
        "source": row.source.value,
    }


def _profile_change(row: Row[Any]) -> dict[str, Any]:
    return {
        "field": row.field,
        "changed_at": _time(row.changed_at),
        "by_staff": row.changed_by is not None,
    }


def _former_email(row: Row[Any]) -> dict[str, Any]:
    return {"email": row.email, "replaced_at": _time(row.replaced_at)}


def _consent_event(row: Row[Any]) -> dict[str, Any]:
    # Values as stored, so that each hash can be recomputed from the export alone.
    return {
        "id": row.id,
        "seq": row.seq,
        "key": row.key,
        "old_value": row.old_value,
        "new_value": row.new_value,
        "actor": row.actor.value,
        "actor_id": str(row.actor_id) if row.actor_id else None,
        "source": row.source.value,
        "policy_version": row.policy_version,
        "occurred_at": _time(row.occurred_at),
        "request_id": row.request_id,
        "accepted_policy_version": row.accepted_policy_version,
        "session_id": str(row.session_id) if row.session_id else None,
        "user_agent": row.user_agent,
        "hash_version": row.hash_version,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def _parental_consent(*, minor: bool, now: datetime) -> Callable[[Row[Any]], dict[str, Any]]:
    # The status as read now (a grant lapses when the person comes of age); never the parent's
    # address, of which only a keyed hash is kept.
    def to_json(row: Row[Any]) -> dict[str, Any]:
        view = parental.view_of(row, minor=minor, now=now)
        return {
            "key": view.key,
            "status": view.status.value,
            "requested_at": _time(view.requested_at),
            "decide_by": _time(view.decide_by),
            "decided_at": _time(view.decided_at),
            "withdrawn_at": _time(view.withdrawn_at),
        }

    return to_json


Section = tuple[str, Select, Callable[[Row[Any]], dict[str, Any]]]


def _sections(account: Account, now: datetime) -> list[Section]:
    """The lists after the settings: each a name, the query for it, and how a row is written."""
    account_id = account.id
    minor = is_minor(account.birth_date, account.country, account.us_state, today_everywhere(now))
    ledger = ConsentEvent.__table__
    staff = aliased(Account)
    return [
        (
            "sessions",
            select(
                AuthSession.user_agent,
                AuthSession.created_at,
                AuthSession.last_used_at,
                AuthSession.expires_at,
            )
            .where(AuthSession.account_id == account_id)
            .order_by(AuthSession.created_at, AuthSession.id),
            _session,
        ),
        (
            "privacy_requests",
            select(
                PrivacyRequest.kind,
                PrivacyRequest.status,
                PrivacyRequest.created_at,
                PrivacyRequest.due_at,
                PrivacyRequest.handled_at,
                (PrivacyRequest.requested_by == account_id).label("own"),
                PrivacyRequest.subject,
                PrivacyRequest.details,
                PrivacyRequest.resolution,
                PrivacyRequest.extended_months,
                PrivacyRequest.extension_reason,
            )
            .where(PrivacyRequest.account_id == account_id)
            .order_by(PrivacyRequest.created_at, PrivacyRequest.id),
            _request,
        ),
        (
            "policy_acceptances",
            select(
                ConsentEvent.new_value,
                ConsentEvent.old_value,
                ConsentEvent.occurred_at,
                ConsentEvent.source,
            )
            .where(ConsentEvent.account_id == account_id, ConsentEvent.key == POLICY_KEY)
            .order_by(ConsentEvent.seq),
            _policy_acceptance,
        ),
        (
            "profile_changes",
            select(ProfileChange.field, ProfileChange.changed_at, ProfileChange.changed_by)
            .where(ProfileChange.account_id == account_id)
            .order_by(ProfileChange.changed_at, ProfileChange.id),
            _profile_change,
        ),
        (
            "former_emails",
            select(FormerEmail.email, FormerEmail.replaced_at)
            .where(FormerEmail.account_id == account_id)
            .order_by(FormerEmail.replaced_at, FormerEmail.id),
            _former_email,
        ),
        (
            "messages",
            select(
                Notification.kind,
                Notification.subject,
                Notification.body,
                Notification.created_at,
                Notification.sent_at,
            )
            .where(Notification.account_id == account_id)
            .order_by(Notification.created_at, Notification.id),
            _message,
        ),
        (
            "staff_access",
            select(staff.role, AuditEntry.action, AuditEntry.reason, AuditEntry.occurred_at)
            .outerjoin(staff, staff.id == AuditEntry.staff_id)
            .where(AuditEntry.account_id == account_id)
            .order_by(AuditEntry.occurred_at, AuditEntry.id),
            _staff_access,
        ),
        (
            "parental_consents",
            parental.consents_of(account_id),
            _parental_consent(minor=minor, now=now),
        ),
        (
            "consent_history",
            # A plain table query: rows need no ORM objects or identity tracking, which for a
            # long history is most of the work.
            select(*(column for column in ledger.columns if column.name != "account_id"))
            .where(ledger.c.account_id == account_id)
            .order_by(ledger.c.seq),
            _consent_event,
        ),
    ]


def _member(name: str, value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  ")
    return f"  {json.dumps(name)}: {text}"


def _list(name: str, items: Sequence[Any]) -> str:
    """`"name": [...]` with one item a line."""
    if not items:
        return f"  {json.dumps(name)}: []"
    return f"  {json.dumps(name)}: [" + _items(items, first=True) + "\n  ]"


def _items(items: Sequence[Any], first: bool) -> str:
    lead = "\n    " if first else ",\n    "
    return lead + ",\n    ".join(_json(item) for item in items)


async def _streamed_list(session: AsyncSession, section: Section) -> AsyncIterator[str]:
    """Like `_list`, read from the database and written a batch at a time."""
    name, statement, to_json = section
    yield f"  {json.dumps(name)}: ["
    empty = True
    result = await session.stream(statement.execution_options(yield_per=BATCH))
    async for rows in result.partitions():
        yield _items([to_json(row) for row in rows], first=empty)
        empty = False
    yield "]" if empty else "\n  ]"


async def write_export(
    session: AsyncSession, account_id: uuid.UUID, *, generated_at: datetime
) -> AsyncIterator[str]:
    """The export document as pieces of JSON text, in the order they belong in the file.

    Everything is read in one transaction; on PostgreSQL it is REPEATABLE READ, so a change
    made while the export streams cannot show in one part and be missing from another.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    account = await session.get(Account, account_id)
    if account is None:
        raise LookupError("the account was erased after its export link was used")
    [settings] = await read_settings(session, [account_id])
    head = [
        _member("format", FORMAT),
        _member("version", FORMAT_VERSION),
        _member("generated_at", _time(generated_at)),
        _member("profile", _profile(account)),
        _list("settings", [_setting(s, settings[s.key]) for s in catalogue.CATALOGUE]),
    ]
    yield "{\n" + ",\n".join(head)
    for section in _sections(account, generated_at):
        yield ",\n"
        async for piece in _streamed_list(session, section):
            yield piece
    yield "\n}\n"
