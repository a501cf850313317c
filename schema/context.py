"""What every resolver gets through `info.context`: the read session, the loaders, the unit of
work, and who is calling. What it needs of the HTTP edge (process services, the caller's device
and cookies) it reads through the two Protocols below, which web/ implements."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader
from strawberry.exceptions import StrawberryGraphQLError

from auth.actor import (
    CLIENT_SOURCE_HEADER,
    STAFF_ROLES,
    Actor,
    Credentials,
    actor_for_token,
    credentials_from_request,
)
from auth.api_keys import KeyUsage, Machine, is_api_key, machine_for_key
from auth.devices import DEVICE_HEADER
from auth.rate_limits import RateLimiter, Refusal
from auth.sealing import Sealer
from auth.signing import ReceiptSigner
from auth.tokens import SESSION_COOKIE
from models import Account, ConsentActor, Database, Source, utcnow
from privacy_api.config import Config
from resolvers import settings, staff
from resolvers.account import Client
from resolvers.consent import Provenance
from resolvers.errors import Rejected
from schema.errors import BAD_USER_INPUT

_SOURCES = {"web": Source.WEB, "mobile": Source.MOBILE, "api": Source.API}
T = TypeVar("T")


class Links(Protocol):
    """Absolute links to the API's own pages, for what leaves the API (built by the edge)."""

    def export_download(self, token: str) -> str: ...
    def unsubscribe(self, token: str) -> str: ...
    def confirm_email(self, token: str) -> str: ...
    def receipt_keys(self) -> str: ...
    def parental_consent(self, token: str) -> str: ...
    def confirm_signup(self, token: str) -> str: ...
    def reset_password(self, token: str) -> str: ...


class Services(Protocol):
    """What the GraphQL face reads that lives as long as the process (web/services.py builds
    it)."""

    @property
    def config(self) -> Config: ...
    @property
    def database(self) -> Database: ...
    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def links(self) -> Links: ...
    @property
    def receipts(self) -> ReceiptSigner: ...
    @property
    def key_usage(self) -> KeyUsage: ...
    @property
    def webhook_sealer(self) -> Sealer: ...


class Caller(Protocol):
    """What the HTTP edge knows of one request's caller, and the cookies its answer sets
    (web/cookies.py implements it)."""

    @property
    def client(self) -> Client: ...
    @property
    def device_id(self) -> str | None: ...
    @property
    def sends_global_privacy_control(self) -> bool: ...
    @property
    def age_gate_refused_recently(self) -> bool: ...
    def remember_device(self, device_id: str, *, issued: bool) -> None: ...
    def start_web_session(self, token: str) -> None: ...
    def end_web_session(self) -> None: ...
    def remember_age_refusal(self) -> None: ...


class RequestContext:
    """Built by the HTTP edge for each GraphQL request.

    Reads share one session, which is never committed. Every use case that writes runs in a unit
    of work of its own (`schema.mutations.mutate`, `answer_audited`), committed when it succeeds
    and rolled back when it is refused or fails, so one field's refusal never undoes another's
    change.
    """

    def __init__(
        self, request: Request, response: Response, services: Services, caller: Caller
    ) -> None:
        self.request = request
        self.response = response
        self.services = services
        self.caller = caller
        # Opened at the first read: a request that reads nothing costs no connection. The
        # session, bound to the same connection, only when a resolver reads through the ORM:
        # who is calling and their settings are read as plain rows.
        self._connection: AsyncConnection | None = None
        self._session: AsyncSession | None = None
        # Sibling fields resolve concurrently; one session must not be used by two at once.
        self._lock = asyncio.Lock()
        self._actor: Actor | None = None
        self._actor_loaded = False
        self._credentials: Credentials | None = None
        self._credentials_read = False
        self._machine: Machine | None = None
        self._machine_loaded = False
        # What rate limits refused in this request, for the response's headers to tell.
        self.refusals: list[Refusal] = []
        # Use cases run in units of work of their own (schema/mutations.py), so every mutation
        # field can be checked to have run one.
        self.mutations_run = 0
        # The other lists of an account, one loader per use case (see schema/connections.py).
        self.loaders: dict[object, DataLoader[Any, Any]] = {}

    @functools.cached_property
    def settings_loader(self) -> DataLoader[uuid.UUID, settings.Settings]:
        """Sibling Account objects (a staff list, or `me`'s four settings fields) ask for their
        settings separately; the loader answers them all with one statement. Made at first use,
        as the account loader: a request that reads no account costs neither."""
        return DataLoader(self._load_settings)

    @functools.cached_property
    def account_loader(self) -> DataLoader[uuid.UUID, Account | None]:
        return DataLoader(self._load_accounts)

    @property
    def request_id(self) -> str:
        return str(getattr(self.request.state, "request_id", ""))

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """The request's read session, for one resolver at a time."""
        async with self.reading_rows() as connection:
            if self._session is None:
                self._session = self.services.database.reads(bind=connection)
            yield self._session

    @asynccontextmanager
    async def reading_rows(self) -> AsyncIterator[AsyncConnection]:
        """The request's read connection, for one resolver at a time: for plain rows."""
        async with self._lock:
            try:
                if self._connection is None:
                    self._connection = await self.services.database.read_connection()
                yield self._connection
            except BaseException:
                # A failed read ends its transaction (PostgreSQL refuses the rest of it), and
                # its connection is not trusted again: after a timeout it may be half-way
                # through an answer that arrives later.
                if self._connection is not None:
                    await self._connection.invalidate()
                await self._release_reads()
                raise

    async def _end_reads(self) -> None:
        # Reads after a write must see it: SQLite keeps a read snapshot until its transaction
        # ends. Closing (not rolling back) leaves what was read detached but readable.
        async with self._lock:
            await self._release_reads()

    async def _release_reads(self) -> None:
        session, connection = self._session, self._connection
        self._session = self._connection = None
        try:
            if session is not None:
                await session.close()
        finally:
            if connection is not None:
                await connection.close()

    async def close(self) -> None:
        """At the end of the request: give the read session's connection back."""
        await self._end_reads()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction for one use case that writes: committed, or rolled back on error."""
        await self._end_reads()
        # The signed-in person's changes take turns (see Database.transaction).
        turn = self._actor.account_id if self._actor is not None else None
        try:
            async with self.services.database.transaction(turn) as session:
                yield session
        finally:
            await self._end_reads()

    async def answer(self, use_case: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run a read-only use case for a query, which has no payload for errors: a refusal
        becomes a GraphQL error with code BAD_USER_INPUT."""
        with refusal_as_graphql_error():
            async with self.reading() as session:
                return await use_case(session)

    async def answer_audited(self, use_case: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """As `answer`, for a staff read that records itself in the audit log: the read and its
        audit entry are one unit of work."""
        with refusal_as_graphql_error():
            async with self.unit_of_work() as session:
                return await use_case(session)

    def credentials(self) -> Credentials | None:
        """What the request presents, read from its headers once."""
        if not self._credentials_read:
            self._credentials = credentials_from_request(self.request.headers, self.request.cookies)
            self._credentials_read = True
        return self._credentials

    def _api_key(self) -> str | None:
        credentials = self.credentials()
        if credentials is None or credentials.via_cookie or not is_api_key(credentials.token):
            return None
        return credentials.token

    async def actor(self) -> Actor | None:
        """Who is calling, looked up once per request. Only reads. None for an API key: a
        machine client is not a person."""
        if not self._actor_loaded:
            credentials = self.credentials()
            if credentials is not None and self._api_key() is None:
                async with self.reading_rows() as connection:
                    found = await actor_for_token(connection, credentials.token, utcnow())
                if found is not None:
                    self._actor = found.actor
                    self.account_loader.prime(found.actor.account_id, found.account)
            self._actor_loaded = True
        return self._actor

    @property
    def caller_is_staff(self) -> bool:
        """Whether the caller, as looked up before the operation ran, is support or a privacy
        officer (false when the lookup could not reach the database)."""
        return self._actor is not None and self._actor.role in STAFF_ROLES

    @property
    def cookie_left_unused(self) -> bool:
        """A session cookie came without what shows the request is not a cross-site form or
        link (see `credentials_from_request`), so the caller was treated as signed out."""
        return (
            self._actor_loaded
            and self._credentials is None
            and SESSION_COOKIE in (self.request.cookies)
        )

    @property
    def session_refused(self) -> bool:
        """A session token came (bearer or usable cookie) that names no live session: signed
        out, revoked or expired. An API key is not a session token."""
        return (
            self._actor_loaded
            and self._actor is None
            and self._credentials is not None
            and self._api_key() is None
        )

    async def page_visitor(self) -> Actor | None:
        """Who opened a page in the browser, by the session cookie alone. Only for deciding which
        page to show: a page that changes nothing and that no other site can read."""
        token = self.request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        async with self.reading_rows() as connection:
            found = await actor_for_token(connection, token, utcnow())
        return found.actor if found is not None else None

    async def machine(self) -> Machine | None:
        """The machine client behind the request's API key, looked up once per request: None
        without a key, or for one that is unknown or revoked. Only reads."""
        if not self._machine_loaded:
            key = self._api_key()
            if key is not None:
                async with self.reading() as session:
                    self._machine = await machine_for_key(session, key)
            self._machine_loaded = True
        return self._machine

    async def signed_in(self) -> Actor:
        """The actor, in fields whose permission class has already required one."""
        actor = await self.actor()
        assert actor is not None, "guard this field with a permission class"
        return actor

    def replace_actor(self, actor: Actor) -> None:
        """The caller's account changed before the operation ran (see web/graphql.py): the
        actor as it now is, and its row read again."""
        self._actor = actor
        self.forget_account(actor.account_id)

    def provenance(self) -> Provenance:
        """A change made by the signed-in person, through the client the request says it is.

        Without an `X-Client-Source` header, a cookie means the web frontend and a bearer token
        an API client. Both headers are the client's word; the session the change came through
        is ours, and is recorded beside them.
        """
        source = _SOURCES.get(self.request.headers.get(CLIENT_SOURCE_HEADER, "").strip().lower())
        if source is None and self._actor is None:
            # A signed-out visitor: apps name their device in a header, browsers in a cookie.
            source = Source.API if DEVICE_HEADER.lower() in self.request.headers else Source.WEB
        if source is None:
            credentials = self.credentials()
            via_cookie = credentials is not None and credentials.via_cookie
            source = Source.WEB if via_cookie else Source.API
        return Provenance(
            ConsentActor.PERSON,
            source,
            request_id=self.request_id,
            session_id=self._actor.session_id if self._actor is not None else None,
            user_agent=self.request.headers.get("user-agent"),
        )

    async def _load_settings(self, account_ids: list[uuid.UUID]) -> list[settings.Settings]:
        async with self.reading_rows() as connection:
            return await settings.read_settings(connection, account_ids)

    async def _load_accounts(self, account_ids: list[uuid.UUID]) -> list[Account | None]:
        async with self.reading() as session:
            return await staff.accounts_by_id(session, account_ids)

    async def account_of(self, account_id: uuid.UUID) -> Account:
        """An account's row, read at most once per request (the caller's comes with the actor)."""
        account = await self.account_loader.load(account_id)
        if account is None:
            raise LookupError("the account is gone")
        return account

    def forget_account(self, account_id: uuid.UUID) -> None:
        """After a change to the account row, the next read goes to the database again."""
        with contextlib.suppress(KeyError):
            self.account_loader.clear(account_id)

    async def settings_of(self, account_id: uuid.UUID) -> settings.Settings:
        """Every setting of an account, read at most once per request."""
        return await self.settings_loader.load(account_id)

    def forget_settings(self, account_id: uuid.UUID) -> None:
        """After a change, the next read goes to the database again."""
        with contextlib.suppress(KeyError):  # never read in this request
            self.settings_loader.clear(account_id)


@contextmanager
def refusal_as_graphql_error() -> Iterator[None]:
    """A refusal in a field with no payload for errors: a GraphQL error with BAD_USER_INPUT."""
    try:
        yield
    except Rejected as rejected:
        error = rejected.errors[0]
        raise StrawberryGraphQLError(
            error.message, extensions={"code": BAD_USER_INPUT, "field": error.field}
        ) from None
