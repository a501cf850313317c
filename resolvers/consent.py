"""The consent ledger: the one place events are written, read back and verified.

Every change of a setting or of the accepted policy is appended here in the same transaction as
the change itself (accepting a policy is written here too: `accept_policy`, as the ledger reads
the version in force from resolvers.policy). Each account has its own chain: event n stores the
hash of event n-1 and a hash over its own fields, so an edited, removed or reordered event breaks
the chain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import (
    BindParameter,
    Insert,
    String,
    Table,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from auth.actor import Actor
from models import (
    Account,
    AccountSetting,
    ConsentActor,
    ConsentEvent,
    Source,
    Visitor,
    VisitorConsentEvent,
    utcnow,
)
from models.base import row_object
from models.driver import DriverStatement
from resolvers import catalogue, webhooks
from resolvers.errors import Rejected
from resolvers.paging import Keyset, Page, PageRequest, pages_per_account
from resolvers.policy import acceptance_error, newest_version

POLICY_KEY = "policy"
# Where a session notes how many account ledger events its transaction wrote (`Session.info`).
EVENTS_WRITTEN = "privacy_api_consent_events"


# An event of either ledger: both have the same columns, hash and chain rules.
ChainedEvent = ConsentEvent | VisitorConsentEvent
E = TypeVar("E", ConsentEvent, VisitorConsentEvent)
HASH_VERSION = 2  # the format new events are written in; see `event_hash`
HASH_VERSIONS = frozenset({1, 2})
USER_AGENT_LENGTH = 255


@dataclass(frozen=True)
class Provenance:
    """Who made a change and through what: recorded with every event.

    For a change the person made while signed in, `session_id` is the session it came through
    (never its token) and `user_agent` what the client said it is.
    """

    actor: ConsentActor
    source: Source
    actor_id: uuid.UUID | None = None
    request_id: str | None = None
    session_id: uuid.UUID | None = None
    user_agent: str | None = None


def event_hash(
    *,
    prev_hash: str | None,
    seq: int,
    key: str,
    old_value: str | None,
    new_value: str,
    actor: ConsentActor,
    actor_id: uuid.UUID | None,
    source: Source,
    policy_version: str,
    occurred_at: datetime,
    request_id: str | None,
    hash_version: int = 1,
    accepted_policy_version: str | None = None,
    session_id: uuid.UUID | None = None,
    user_agent: str | None = None,
) -> str:
    """SHA-256 over the previous hash and this event's fields in a fixed order.

    Version 1 covers the fields events had from the start; version 2 appends the accepted policy
    version, the session, the user agent and the version number itself, so an event cannot be
    passed off under the other format. The account id is left out on purpose: erasure
    pseudonymises it, and the chain must still verify afterwards. Sequence numbers and the links
    bind each event to its chain.
    """
    fields: list[object] = [
        seq,
        key,
        old_value,
        new_value,
        actor.value,
        str(actor_id) if actor_id else None,
        source.value,
        policy_version,
        occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        request_id,
    ]
    if hash_version >= 2:
        fields += [
            accepted_policy_version,
            str(session_id) if session_id else None,
            user_agent,
            hash_version,
        ]
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash or ''}|{payload}".encode()).hexdigest()


def hash_of(event: ChainedEvent) -> str:
    """The hash an event should carry, by the format it says it was written in."""
    return event_hash(
        prev_hash=event.prev_hash,
        seq=event.seq,
        key=event.key,
        old_value=event.old_value,
        new_value=event.new_value,
        actor=event.actor,
        actor_id=event.actor_id,
        source=event.source,
        policy_version=event.policy_version,
        occurred_at=event.occurred_at,
        request_id=event.request_id,
        hash_version=event.hash_version,
        accepted_policy_version=event.accepted_policy_version,
        session_id=event.session_id,
        user_agent=event.user_agent,
    )


@dataclass(kw_only=True)
class Chain(ABC, Generic[E]):
    """A subject's chain of events (an account's, or a signed-out device's), locked for the
    current transaction: the caller appends, and `write` stores the events and the new head."""

    subject_id: uuid.UUID
    provenance: Provenance
    policy_version: str  # in force
    accepted_policy_version: str | None = None  # by the subject; follows its `policy` events
    seq: int
    head: str | None
    now: datetime
    gpc_applied_at: datetime | None = None
    events: list[E] = field(default_factory=list)
    # The columns of each event appended, as `write` inserts them.
    _values: list[dict[str, Any]] = field(default_factory=list)
    # The ledger's table, and the column naming the subject in it.
    event_table: ClassVar[Table]
    subject_column: ClassVar[str]

    def append(self, key: str, old_value: str | None, new_value: str) -> None:
        if key == POLICY_KEY:
            # An acceptance is made under the version it accepts.
            self.accepted_policy_version = new_value
        self.seq += 1
        values = chained_values(
            self.provenance,
            seq=self.seq,
            head=self.head,
            key=key,
            old_value=old_value,
            new_value=new_value,
            policy_version=self.policy_version,
            accepted_policy_version=self.accepted_policy_version,
            now=self.now,
        )
        self._values.append(values)
        self.events.append(self._event(values))
        self.head = values["hash"]

    @abstractmethod
    def _event(self, values: dict[str, Any]) -> E:
        """The event row of this subject's ledger for the chained `values`."""

    async def write(
        self, session: AsyncSession, new_head: Update, *, together: Sequence[Rows] = ()
    ) -> bool:
        """Store the events appended and the chain's new head with `new_head` (a `head_update`),
        and the `together` rows beside them; whether there were any events (without any, only
        the `together` rows are written).

        On PostgreSQL in one statement, each row inserted by a data-modifying WITH clause of the
        head's update: a change costs one round trip for all it writes. One clause per row, as
        SQLAlchemy caches the compiled form of a single-row insert and compiles a multi-row one
        again every time. SQLite has no such clauses: one statement for each kind of row there.
        """
        events = Rows(
            _insert_into(self.event_table),
            [{self.subject_column: self.subject_id, **values} for values in self._values],
        )
        writes = [events, *together] if self.events else list(together)
        if not self.events or session.get_bind().dialect.name != "postgresql":
            for rows in writes:
                if rows.rows:
                    await session.execute(rows.statement, rows.rows)
            if not self.events:
                return False
        head = {"subject_id": self.subject_id, "seq": self.seq, "head": self.head, "now": self.now}
        # On the connection, as the lock in `open_ledger`: the ORM's bulk-update bookkeeping
        # costs more than the statement, and the head names no object the session holds.
        connection = await session.connection()
        if not (self.events and connection.dialect.name == "postgresql"):
            await connection.execute(new_head, head)
            return True
        every = [(rows.statement, row) for rows in writes for row in rows.rows]
        for number, (_, row) in enumerate(every):
            head.update({f"w{number}_{column}": value for column, value in row.items()})
        combined = _combined(new_head, tuple((insert, tuple(row)) for insert, row in every))
        await combined.rows(connection, head)
        return True


@functools.cache
def _insert_into(table: Table) -> Insert:
    """The insert of an event table's rows, built once."""
    return insert(table)


@functools.lru_cache(maxsize=256)
def _combined(
    new_head: Update, shape: tuple[tuple[Insert, tuple[str, ...]], ...]
) -> DriverStatement:
    """`new_head` with one data-modifying WITH clause per row to insert, each row given by its
    statement and its columns, whose values are bound as `w<number>_<column>`. Built once per
    shape: a statement built with its values is keyed and coerced again for every request,
    which was most of a toggle's own time in SQLAlchemy."""
    for number, (statement, columns) in enumerate(shape):
        table = cast(Table, statement.table)
        values = {
            column: bindparam(f"w{number}_{column}", type_=table.c[column].type)
            for column in columns
        }
        new_head = new_head.add_cte(statement.values(values).cte(f"written_{number}"))
    # Sent by the driver itself (models/driver.py), inside the transaction.
    return DriverStatement(new_head)


@dataclass(frozen=True)
class Rows:
    """Rows a change inserts with its events: the statement (with no values) and their values."""

    statement: Insert
    rows: list[dict[str, Any]]


def head_update(model: type[Account] | type[Visitor], **also: BindParameter[Any]) -> Update:
    """The statement that stores a chain's newest number and hash on its subject's row, and
    the `also` columns (built once per subject: every change runs it)."""
    return (
        update(model)
        .where(model.id == bindparam("subject_id"))
        .values(ledger_seq=bindparam("seq"), ledger_head=bindparam("head"), **also)
        .execution_options(synchronize_session=False)
    )


@dataclass(kw_only=True)
class Ledger(Chain[ConsentEvent]):
    """An account's chain. Use `open_ledger`."""

    event_table: ClassVar[Table] = cast(Table, ConsentEvent.__table__)
    subject_column: ClassVar[str] = "account_id"

    # Read with the lock, for rules that depend on who the account holder is.
    birth_date: date | None = None
    country: str | None = None
    us_state: str | None = None
    phone: str | None = None
    # The settings' new values (`AccountSetting` rows), written with the events they go with.
    settings: list[dict[str, Any]] = field(default_factory=list)
    # Other rows of the same change (the idempotency key it was made under), written with them.
    also: list[Rows] = field(default_factory=list)

    @property
    def account_id(self) -> uuid.UUID:
        return self.subject_id

    def _event(self, values: dict[str, Any]) -> ConsentEvent:
        # Only read (its row is inserted from `values`): built as the ORM builds a loaded row.
        return row_object(ConsentEvent, {"account_id": self.subject_id, **values})


def chained_values(
    provenance: Provenance,
    *,
    seq: int,
    head: str | None,
    key: str,
    old_value: str | None,
    new_value: str,
    policy_version: str,
    accepted_policy_version: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The columns of the next event of a chain whose newest hash is `head`, its own hash
    included: one recipe for every ledger (an account's, a visitor's)."""
    values: dict[str, Any] = {
        "seq": seq,
        "key": key,
        "old_value": old_value,
        "new_value": new_value,
        "actor": provenance.actor,
        "actor_id": provenance.actor_id,
        "source": provenance.source,
        "policy_version": policy_version,
        "occurred_at": now,
        "request_id": provenance.request_id,
        "hash_version": HASH_VERSION,
        "accepted_policy_version": accepted_policy_version,
        "session_id": provenance.session_id,
        "user_agent": (provenance.user_agent or "")[:USER_AGENT_LENGTH] or None,
    }
    digest = event_hash(prev_hash=head, **values)
    return {**values, "prev_hash": head, "hash": digest}


@asynccontextmanager
async def open_ledger(
    session: AsyncSession, account_id: uuid.UUID, provenance: Provenance
) -> AsyncIterator[Ledger]:
    """Lock the account's chain, let the caller append, then write the events and the new head.

    Each event is also written to the webhook outbox as `consent.changed`.

    The lock is an UPDATE of the account row: on PostgreSQL it makes concurrent changes to one
    account wait for each other (so no two events share a predecessor); on SQLite it takes the
    database's write lock before anything is read.
    """
    now = utcnow()
    # On the session's connection: the statement names no object the session holds, and the
    # session's way with an ORM update (its bulk-update bookkeeping) cost more than the lock.
    # By the driver itself where it can (models/driver.py), on the session's connection: what
    # the session holds unwritten is written first, as the session's own execute would.
    if session.new or session.dirty or session.deleted:
        await session.flush()
    connection = await session.connection()
    [row] = await _LOCK.rows(connection, {"account_id": account_id, "now": now})
    seq, head, birth_date, country, us_state, phone, gpc_applied_at, accepted, policy = row
    ledger = Ledger(
        subject_id=account_id,
        provenance=provenance,
        policy_version=policy,
        accepted_policy_version=accepted,
        seq=seq,
        head=head,
        now=now,
        birth_date=birth_date,
        country=country,
        us_state=us_state,
        phone=phone,
        gpc_applied_at=gpc_applied_at,
    )
    yield ledger
    together = [Rows(_store_settings(session), ledger.settings)] if ledger.settings else []
    # Downstream systems hear of every change through the webhook outbox, in this same
    # transaction: one row per event, whatever the number of endpoints.
    if ledger.events:
        together.append(Rows(*webhooks.consent_changed(ledger.events)))
    if await ledger.write(session, _NEW_HEAD, together=[*together, *ledger.also]):
        # For the metrics, which count a transaction's events when it commits.
        session.info[EVENTS_WRITTEN] = session.info.get(EVENTS_WRITTEN, 0) + len(ledger.events)


def _store_settings(session: AsyncSession) -> Insert:
    """The statement writing settings' new values, stored or not before (an upsert)."""
    return _upsert_settings(session.get_bind().dialect.name == "postgresql")


@functools.cache
def _upsert_settings(on_postgresql: bool) -> Insert:
    """The settings' upsert in one dialect, built once."""
    dialect = postgresql if on_postgresql else sqlite
    upsert = dialect.insert(_SETTINGS)
    return upsert.on_conflict_do_update(
        index_elements=[_SETTINGS.c.account_id, _SETTINGS.c.key],
        set_={
            "value": upsert.excluded.value,
            "updated_at": upsert.excluded.updated_at,
            "gpc_conflict_at": upsert.excluded.gpc_conflict_at,
        },
    )


# Built once, as every change runs them. The lock also reads the policy version in force, so a
# change costs no statement of its own for it.
_LOCK = DriverStatement(
    update(Account)
    .where(Account.id == bindparam("account_id"))
    .values(updated_at=bindparam("now"))
    .returning(
        Account.ledger_seq,
        Account.ledger_head,
        Account.birth_date,
        Account.country,
        Account.us_state,
        Account.phone,
        Account.gpc_applied_at,
        Account.accepted_policy_version,
        newest_version().label("policy_version"),
    )
    .execution_options(synchronize_session=False)
)
# The change time is given, not left to the column's onupdate default: a default computed in
# Python is not filled in for a statement with data-modifying WITH clauses.
_NEW_HEAD = head_update(Account, updated_at=bindparam("now"))
_SETTINGS = cast(Table, AccountSetting.__table__)


# Sequence numbers only grow, so a cursor stays valid however many events arrive.
HISTORY = Keyset("consent", (ConsentEvent.seq,), descending=True)


@dataclass(frozen=True)
class HistoryQuery:
    page: PageRequest
    key: str | None = None


async def consent_histories(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], query: HistoryQuery
) -> dict[uuid.UUID, Page[ConsentEvent]]:
    """A page of each account's history, newest first, optionally of one key only."""
    key = query.key
    return await pages_per_account(
        session,
        ConsentEvent,
        ConsentEvent.account_id,
        account_ids,
        keyset=HISTORY,
        page=query.page,
        where=lambda _: [ConsentEvent.key == key] if key is not None else [],
    )


@dataclass(frozen=True)
class BrokenLink:
    event_id: int
    account_id: uuid.UUID
    seq: int
    reason: str


def link_problem(event: ChainedEvent, previous: ChainedEvent | None) -> str | None:
    """What is wrong with an event as the successor of `previous` in its chain (None for the
    first event), if anything: the chain rules every ledger follows."""
    expected_seq = previous.seq + 1 if previous else 1
    if event.seq != expected_seq:
        return f"expected event number {expected_seq}"
    if event.prev_hash != (previous.hash if previous else None):
        return "does not link to the event before it"
    problem = _format_problem(event, previous)
    if problem is not None:
        return problem
    if event.hash != hash_of(event):
        return "its contents do not match its hash"
    return None


def _format_problem(event: ChainedEvent, previous: ChainedEvent | None) -> str | None:
    """What is wrong with the event's hash format, if anything: fields its hash does not cover
    could be edited unseen, and a chain never goes back to an older format."""
    if event.hash_version not in HASH_VERSIONS:
        return f"its hash format {event.hash_version} is unknown"
    uncovered = (event.accepted_policy_version, event.session_id, event.user_agent)
    if event.hash_version == 1 and any(value is not None for value in uncovered):
        return "it holds fields its hash format (version 1) does not cover"
    if previous is not None and previous.hash_version > event.hash_version:
        return "its hash format is older than the event before it"
    return None


async def verify_ledger(session: AsyncSession) -> tuple[int, BrokenLink | None]:
    """Check every chain, streaming in bounded memory.

    Returns how many events were checked and the first broken link. Besides each link, the last
    event of a chain must be the head the account row records, so removing the newest events
    is caught too.
    """
    return await verify_chains(session, Account, ConsentEvent.account_id, "account")


async def verify_chains(
    session: AsyncSession,
    subject: type[Account] | type[Visitor],
    subject_of: InstrumentedAttribute[uuid.UUID],
    owner: str,
) -> tuple[int, BrokenLink | None]:
    """Check every chain of one ledger, for the account ledger and the visitors' alike,
    streaming in bounded memory: each link by `link_problem`, and that each chain ends at the
    head its owner (`subject`, whose id the events hold in `subject_of`; `owner` names it)
    records. An event without its owner's row is an erased account's, whose pseudonymised chain
    stands alone. Returns how many events were checked and the first broken link."""
    events = subject_of.class_
    rows = await session.stream(
        select(events, subject.ledger_seq, subject.ledger_head)
        .outerjoin(subject, subject.id == subject_of)
        .order_by(subject_of, events.seq)
        .execution_options(yield_per=1000)
    )

    def owner_of(event: ChainedEvent) -> uuid.UUID:
        return cast(uuid.UUID, getattr(event, subject_of.key))

    checked = 0
    last: tuple[Any, int | None, str | None] | None = None
    async for event, head_seq, head_hash in rows:
        same_chain = last is not None and owner_of(last[0]) == owner_of(event)
        if last is not None and not same_chain:
            if (broken := _head_problem(*last, owner_of, owner)) is not None:
                return checked, broken
        checked += 1
        previous = last[0] if last is not None and same_chain else None
        if (problem := link_problem(event, previous)) is not None:
            return checked, BrokenLink(event.id, owner_of(event), event.seq, problem)
        last = (event, head_seq, head_hash)
    return checked, _head_problem(*last, owner_of, owner) if last is not None else None


def _head_problem(
    event: Any,
    head_seq: int | None,
    head_hash: str | None,
    owner_of: Callable[[Any], uuid.UUID],
    owner: str,
) -> BrokenLink | None:
    if head_seq is None or (event.seq == head_seq and event.hash == head_hash):
        return None
    return BrokenLink(
        event.id,
        owner_of(event),
        event.seq,
        f"the {owner}'s chain should end at event {head_seq}; later events are missing",
    )


@dataclass(frozen=True)
class Disagreement:
    """A stored value that is not what the account's newest event for its key says."""

    account_id: uuid.UUID
    key: str
    stored: str | None  # None: no value stored, which means the catalogue default
    recorded: str | None  # None: no event for the key


async def disagreeing_settings(session: AsyncSession, *, limit: int) -> list[Disagreement]:
    """Accounts whose stored settings (or accepted policy version) differ from the newest event
    of the key, up to `limit` of them, in one statement however many accounts there are.

    A setting with no stored row holds its catalogue default, and a key with no event was never
    changed from it, so both sides are read with the default filled in. Erased accounts have no
    settings left to compare; their pseudonymised chains stand alone.
    """
    known = [(s.key, s.encode(s.default)) for s in catalogue.CATALOGUE] + [(POLICY_KEY, None)]
    keys = union_all(
        *(
            select(
                literal(key, String).label("key"), literal(default, String).label("default_value")
            )
            for key, default in known
        )
    ).subquery("catalogue")
    newest = (
        select(ConsentEvent.new_value)
        .where(ConsentEvent.account_id == Account.id, ConsentEvent.key == keys.c.key)
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
        .correlate(Account, keys)
        .scalar_subquery()
    )
    stored = case(
        (keys.c.key == POLICY_KEY, Account.accepted_policy_version), else_=AccountSetting.value
    )
    query = (
        select(Account.id, keys.c.key, stored, newest)
        .select_from(Account)
        .join(keys, true())
        .outerjoin(
            AccountSetting,
            (AccountSetting.account_id == Account.id) & (AccountSetting.key == keys.c.key),
        )
        .where(
            func.coalesce(stored, keys.c.default_value).is_distinct_from(
                func.coalesce(newest, keys.c.default_value)
            )
        )
        .order_by(Account.id, keys.c.key)
        .limit(limit)
    )
    return [Disagreement(*row) for row in await session.execute(query)]


async def accept_policy(
    session: AsyncSession, actor: Actor, provenance: Provenance, *, version: str
) -> Account:
    """Record that the person accepted the current version, as a ledger event (key `policy`).

    Only the current version can be accepted; accepting it again changes nothing.
    """
    async with open_ledger(session, actor.account_id, provenance) as ledger:
        outdated = acceptance_error(version, ledger.policy_version, "version")
        if outdated is not None:
            raise Rejected(outdated)
        # Read under the ledger's lock: another device may have just accepted.
        account = await session.get_one(Account, actor.account_id, populate_existing=True)
        if account.accepted_policy_version != version:
            ledger.append(POLICY_KEY, account.accepted_policy_version, version)
            account.accepted_policy_version = version
            account.policy_accepted_at = ledger.now
    await session.flush()
    return account
