"""What every resolver gets through `info.context`: the request, one database session, the actor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from auth.actor import Actor, actor_for_token, credentials_from_request
from auth.rate_limits import RateLimiter
from auth.tokens import SESSION_COOKIE, MarkerSigner
from config import Config
from models import Database, utcnow
from resolvers.account import Client

AGE_GATE_COOKIE = "privacy_age_gate"
AGE_GATE_SECONDS = 24 * 60 * 60
_AGE_GATE_VALUE = "refused"


@dataclass(frozen=True)
class Services:
    """What lives as long as the process: built once by the app."""

    config: Config
    database: Database
    limiter: RateLimiter
    age_gate: MarkerSigner


class RequestContext:
    def __init__(
        self, request: Request, response: Response, session: AsyncSession, services: Services
    ) -> None:
        self.request = request
        self.response = response
        self.services = services
        self._session = session
        # Sibling fields resolve concurrently; one session must not be used by two at once.
        self._lock = asyncio.Lock()
        self._actor: Actor | None = None
        self._actor_loaded = False

    @property
    def request_id(self) -> str:
        return str(getattr(self.request.state, "request_id", ""))

    @asynccontextmanager
    async def db(self) -> AsyncIterator[AsyncSession]:
        """The request's session, for one resolver at a time; a failed step is rolled back."""
        async with self._lock:
            try:
                yield self._session
            except BaseException:
                await self._session.rollback()
                raise

    async def actor(self) -> Actor | None:
        if not self._actor_loaded:
            credentials = credentials_from_request(self.request.headers, self.request.cookies)
            if credentials is not None:
                async with self.db() as session:
                    self._actor = await actor_for_token(session, credentials.token, utcnow())
            self._actor_loaded = True
        return self._actor

    @property
    def client(self) -> Client:
        address = self.request.client.host if self.request.client else "unknown"
        return Client(
            address=address,
            user_agent=self.request.headers.get("user-agent"),
            session_days=self.services.config.session_days,
        )

    def start_web_session(self, token: str) -> None:
        self.response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=self.services.config.session_days * 24 * 60 * 60,
            httponly=True,
            samesite="lax",
            secure=self.services.config.production,
        )

    def end_web_session(self) -> None:
        self.response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="lax", secure=self.services.config.production
        )

    @property
    def age_gate_refused_recently(self) -> bool:
        marker = self.request.cookies.get(AGE_GATE_COOKIE)
        return self.services.age_gate.is_valid(marker, _AGE_GATE_VALUE, AGE_GATE_SECONDS)

    def remember_age_refusal(self) -> None:
        """A signed marker with nothing about the person in it, so a retry is refused too."""
        self.response.set_cookie(
            AGE_GATE_COOKIE,
            self.services.age_gate.sign(_AGE_GATE_VALUE),
            max_age=AGE_GATE_SECONDS,
            httponly=True,
            samesite="lax",
            secure=self.services.config.production,
        )
