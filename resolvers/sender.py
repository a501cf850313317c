"""The sender API: what machine clients (a mailer, the CMS backend) ask before they act on a
person's data, answered from the rules where they live (catalogue, age, erasure, GPC).

`consent_status` says, for many accounts at once, whether each may receive each message topic,
data-sharing purpose or cookie category right now; `suppressed_accounts` is the feed of
marketing opt-outs a mailer syncs from.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, AccountSetting, ConsentEvent, Role, utcnow
from resolvers import catalogue, erasure
from resolvers.age import is_minor, today_everywhere
from resolvers.catalogue import SettingDefinition, SettingGroup, SettingKind, Value
from resolvers.errors import ErrorCode, Rejected
from resolvers.paging import Keyset, Page, cut, page_of, page_request, tally_of
from resolvers.settings import parental_grants

MAX_ACCOUNTS = 1000
# 1,000 accounts by 10 keys is 10,000 answers: the most objects any one query may answer with.
MAX_KEYS = 10


class Block(enum.Enum):
    """Why something may not be done for an account right now, the first that applies."""

    UNKNOWN_ACCOUNT = "unknown_account"  # no such account (or erased, or a staff account)
    DELETION_PENDING = "deletion_pending"  # consent-based processing stops until cancelled
    RESTRICTED = "restricted"  # reported as a child's: treated as a minor's until reviewed
    MINOR = "minor"  # below the age of digital consent of their country
    GPC = "gpc"  # opted out of sale and sharing by the Global Privacy Control signal
    NOT_CHOSEN = "not_chosen"  # off: never switched on, or switched off


@dataclass(frozen=True)
class Decision:
    key: str
    blocked_by: Block | None

    @property
    def allowed(self) -> bool:
        return self.blocked_by is None


@dataclass(frozen=True)
class AccountConsent:
    account_id: uuid.UUID
    known: bool
    decisions: list[Decision]


def _bad_keys(message: str) -> Rejected:
    return Rejected.one(ErrorCode.INVALID_INPUT, message, "keys")


def checked_keys(keys: Sequence[str]) -> list[SettingDefinition]:
    """The catalogue entries asked about, once each in the order given; a refusal naming the
    first key that is not something one may receive or allow."""
    asked = list(dict.fromkeys(keys))
    if not 1 <= len(asked) <= MAX_KEYS:
        raise _bad_keys(f"Ask about 1 to {MAX_KEYS} keys at a time.")
    settings = []
    for key in asked:
        setting = catalogue.BY_KEY.get(key)
        if setting is None:
            raise _bad_keys(catalogue.unknown_key(key))
        if setting.group is SettingGroup.VISIBILITY or setting.kind is not SettingKind.TOGGLE:
            raise _bad_keys(
                f"{key} is a visibility setting, not something one may receive: ask about "
                "message topics, data-sharing purposes or cookie categories."
            )
        settings.append(setting)
    return settings


def _checked_accounts(account_ids: Sequence[uuid.UUID]) -> None:
    if not 1 <= len(account_ids) <= MAX_ACCOUNTS:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT,
            f"Ask about 1 to {MAX_ACCOUNTS:,} accounts at a time; split longer lists.",
            "accountIds",
        )


def blocked_by(
    setting: SettingDefinition,
    value: Value,
    gpc_conflict: bool,
    account: Account,
    minor: bool,
    parent_granted: bool,
) -> Block | None:
    """Whether this account's stored choice may take effect now, and if not, why. A minor's
    choice counts where a parent's consent stands, as it does when they change their settings."""
    if erasure.holds_back(erasure.processing_suspended(account), setting):
        return Block.DELETION_PENDING
    if setting.withheld(True):
        if account.restricted_at is not None:
            return Block.RESTRICTED
        if minor and not parent_granted:
            return Block.MINOR
    if (
        setting in catalogue.GPC_OPT_OUTS
        and account.gpc_applied_at is not None
        and not gpc_conflict  # switched on against the signal: the person's choice stands
    ):
        return Block.GPC
    return None if value is True else Block.NOT_CHOSEN


async def consent_status(
    session: AsyncSession, *, account_ids: Sequence[uuid.UUID], keys: Sequence[str]
) -> list[AccountConsent]:
    """For each account asked (in the order asked), whether each key may be acted on now.

    Two statements whatever the number of accounts: the accounts, and their stored choices for
    the keys asked (an account without one has the catalogue default); a third, for parents'
    grants, when minors are asked about settings withheld from them.
    """
    _checked_accounts(account_ids)
    settings = checked_keys(keys)
    wanted = list(dict.fromkeys(account_ids))
    accounts = {
        account.id: account
        for account in await session.scalars(
            select(Account).where(Account.id.in_(wanted), Account.role == Role.USER)
        )
    }
    stored: dict[tuple[uuid.UUID, str], tuple[str, datetime | None]] = {}
    if accounts:
        rows = await session.execute(
            select(
                AccountSetting.account_id,
                AccountSetting.key,
                AccountSetting.value,
                AccountSetting.gpc_conflict_at,
            ).where(
                AccountSetting.account_id.in_(list(accounts)),
                AccountSetting.key.in_([setting.key for setting in settings]),
            )
        )
        for account_id, key, text, gpc_conflict_at in rows:
            stored[account_id, key] = (text, gpc_conflict_at)
    today = today_everywhere(utcnow())
    minors = {
        account.id
        for account in accounts.values()
        if is_minor(account.birth_date, account.country, account.us_state, today)
    }
    grantable = [setting.key for setting in settings if setting.parent_may_grant]
    granted = await parental_grants(session, list(minors), grantable)
    answers = []
    for account_id in account_ids:
        account = accounts.get(account_id)
        if account is None:
            unknown = [Decision(s.key, Block.UNKNOWN_ACCOUNT) for s in settings]
            answers.append(AccountConsent(account_id, known=False, decisions=unknown))
            continue
        decisions = []
        for setting in settings:
            chosen, gpc_conflict_at = stored.get((account_id, setting.key), (None, None))
            value = setting.default if chosen is None else setting.decode(chosen)
            block = blocked_by(
                setting,
                value,
                gpc_conflict_at is not None,
                account,
                minor=account_id in minors,
                parent_granted=(account_id, setting.key) in granted,
            )
            decisions.append(Decision(setting.key, block))
        answers.append(AccountConsent(account_id, known=True, decisions=decisions))
    return answers


# In the order events were made; a cursor holds the last event's time and id, so it stays valid
# as events arrive.
SUPPRESSIONS = Keyset("suppressions", (ConsentEvent.occurred_at, ConsentEvent.id), descending=False)
_ON, _OFF = (catalogue.MARKETING_COMMUNICATIONS[0].encode(value) for value in (True, False))


async def suppressed_accounts(
    session: AsyncSession,
    *,
    since: datetime | None,
    first: int,
    after: str | None,
    settle: timedelta,
    last: int | None = None,
    before: str | None = None,
) -> Page[ConsentEvent]:
    """The marketing opt-outs (a consent-based message switched from on to off, by anyone: the
    person, an unsubscribe link, support, the age rules), oldest first, since a time and after a
    cursor.

    An event is listed once it is `settle` old: the time it carries is taken before the
    transaction that writes it commits, so a younger one may still appear before an older one,
    and a cursor already past it would skip it.
    """
    page = page_request(first, after, SUPPRESSIONS, last=last, before=before)
    if since is not None and since.tzinfo is None:
        raise Rejected.one(
            ErrorCode.INVALID_INPUT, "Give the time with its offset, such as Z for UTC.", "since"
        )
    query = select(ConsentEvent).where(
        ConsentEvent.new_value == _OFF,
        ConsentEvent.old_value == _ON,
        ConsentEvent.key.in_([setting.key for setting in catalogue.MARKETING_COMMUNICATIONS]),
        ConsentEvent.occurred_at <= utcnow() - settle,
    )
    if since is not None:
        query = query.where(ConsentEvent.occurred_at >= since)
    rows = list(await session.scalars(cut(query, SUPPRESSIONS, page)))
    return page_of(rows, page, SUPPRESSIONS, tally_of(query))
