"""Signed-out visitors: the cookie banner's choices before sign-in, and their receipts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import strawberry
from strawberry.scalars import JSON

from models import Visitor
from resolvers import receipts, visitors
from resolvers import settings as settings_use_cases
from resolvers.erasure import processing_suspended
from schema.account import AccountType
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.mutations import mutate_prepared
from schema.settings import (
    ConsentEventType,
    CookieConsent,
    cookie_consent_of,
)
from schema.settings_changes import CookieConsentInput, _change

Info = strawberry.Info[RequestContext]


@strawberry.type(
    name="Visitor",
    description="This device's cookie choices while signed out, known only by its device id "
    "(an HttpOnly cookie, or the X-Device-Id header for apps).",
)
class VisitorType:
    _visitor_id: strawberry.Private[uuid.UUID]
    cookie_consent: CookieConsent = strawberry.field(
        description="The device's choices, the catalogue defaults where none was made."
    )
    expires_at: datetime = strawberry.field(
        description="When the record and its choices are deleted unless a new choice is made; "
        "they join the account when someone signs up or signs in on this device."
    )

    @classmethod
    def of(
        cls, state: visitors.VisitorState, visitor: Visitor, retention: timedelta
    ) -> VisitorType:
        return cls(
            _visitor_id=visitor.id,
            cookie_consent=cookie_consent_of(state.settings, state.gpc_applied, False),
            expires_at=visitors.expires_at(visitor, retention),
        )

    @strawberry.field(description="The device's recorded choices, newest first.")
    async def consent_history(self, info: Info, first: int = 20) -> list[ConsentEventType]:
        rows = await info.context.answer(
            lambda session: visitors.consent_history(session, self._visitor_id, first=first)
        )
        return [ConsentEventType.from_model(row) for row in rows]


async def visitor_receipt(info: Info, event_id: strawberry.ID) -> JSON:
    """The signed-out device's equivalent of `me.consentReceipt`."""
    context = info.context
    receipt = await context.answer(
        lambda session: receipts.visitor_receipt(
            session,
            context.services.receipts,
            context.caller.device_id,
            str(event_id),
            issuer=context.services.config.public_url,
            keys_url=context.services.links.receipt_keys(),
        )
    )
    return JSON(receipt)


@strawberry.type(
    description="The cookie choices in force after `setCookieConsent`, or why it was refused."
)
class CookieConsentPayload:
    account: AccountType | None = strawberry.field(
        description="The signed-in person's account; null for a signed-out visitor."
    )
    cookie_consent: CookieConsent | None = strawberry.field(
        description="The choices now in force, signed in or not; null when refused."
    )
    visitor: VisitorType | None = strawberry.field(
        description="The device's record, for a signed-out visitor."
    )
    errors: list[UserErrorType]


def _retention(info: Info) -> timedelta:
    return timedelta(days=info.context.services.config.visitor_retention_days)


async def _visitor_state(info: Info) -> visitors.VisitorState:
    context = info.context
    return await context.answer(
        lambda session: visitors.cookie_consent(
            session,
            context.caller.device_id,
            gpc_signal=context.caller.sends_global_privacy_control,
        )
    )


async def cookie_consent(info: Info) -> CookieConsent:
    """The caller's cookie choices: the signed-in person's, else this device's."""
    context = info.context
    actor = await context.actor()
    if actor is not None:
        account = await context.account_of(actor.account_id)
        settings = await context.settings_of(actor.account_id)
        gpc_applied = account.gpc_applied_at is not None
        return cookie_consent_of(settings, gpc_applied, processing_suspended(account))
    state = await _visitor_state(info)
    return cookie_consent_of(state.settings, state.gpc_applied, False)


async def set_cookie_consent(info: Info, input: CookieConsentInput) -> CookieConsentPayload:
    """Signed in: the account's choice, as every settings change. Signed out: the device's."""
    context = info.context
    if await context.actor() is not None:
        changed = await _change(
            info,
            settings_use_cases.set_cookie_consent,
            functional=input.functional,
            analytics=input.analytics,
            advertising=input.advertising,
            idempotency_key=input.idempotency_key,
        )
        if changed.errors or changed.account is None:
            return CookieConsentPayload(
                account=None, cookie_consent=None, visitor=None, errors=changed.errors
            )
        return CookieConsentPayload(
            account=changed.account,
            cookie_consent=await cookie_consent(info),
            visitor=None,
            errors=[],
        )
    services = context.services
    caller = context.caller

    async def answer(
        chosen: visitors.Chosen | None, errors: list[UserErrorType]
    ) -> CookieConsentPayload:
        if chosen is None:
            return CookieConsentPayload(
                account=None, cookie_consent=None, visitor=None, errors=errors
            )
        device_id = chosen.issued_device_id or caller.device_id
        assert device_id is not None
        caller.remember_device(device_id, issued=chosen.issued_device_id is not None)
        state = await context.answer(
            lambda session: visitors.cookie_consent(
                session, device_id, gpc_signal=caller.sends_global_privacy_control
            )
        )
        visitor = (
            VisitorType.of(state, state.visitor, _retention(info))
            if state.visitor is not None
            else None
        )
        return CookieConsentPayload(
            account=None,
            cookie_consent=cookie_consent_of(state.settings, state.gpc_applied, False),
            visitor=visitor,
            errors=[],
        )

    return await mutate_prepared(
        info,
        lambda preparation: visitors.set_cookie_consent(
            preparation.reads,
            services.limiter,
            preparation.provenance,
            client_address=caller.client.address,
            device_id=caller.device_id,
            global_privacy_control=caller.sends_global_privacy_control,
            functional=input.functional,
            analytics=input.analytics,
            advertising=input.advertising,
        ),
        answer,
    )


@strawberry.type
class VisitorQuery:
    @strawberry.field(
        name="cookieConsent",
        description="Your cookie choices: the signed-in person's, else this device's (the "
        "defaults until a choice is made). Needs no sign-in; reading stores nothing.",
    )
    async def caller_cookie_consent(self, info: Info) -> CookieConsent:
        return await cookie_consent(info)

    @strawberry.field(
        description="This device's record as a signed-out visitor, or null when it has made no "
        "choice yet (or its choices have joined an account)."
    )
    async def visitor(self, info: Info) -> VisitorType | None:
        state = await _visitor_state(info)
        if state.visitor is None:
            return None
        return VisitorType.of(state, state.visitor, _retention(info))

    @strawberry.field(
        description="A signed receipt of one event of this device's choices as a signed-out "
        "visitor (`visitor.consentHistory` ids): the equivalent of `me.consentReceipt`."
    )
    async def visitor_consent_receipt(self, info: Info, event_id: strawberry.ID) -> JSON:
        return await visitor_receipt(info, event_id)


@strawberry.type
class VisitorMutation:
    @strawberry.mutation(
        description="Cookie choices, signed in or not (the cookie banner). Strictly necessary "
        "cookies are always on; categories left out stay as they are. Signed out, the first "
        "choice gives the device an id (cookie, and the X-Device-Id response header for apps)."
    )
    async def set_cookie_consent(
        self, info: Info, input: CookieConsentInput
    ) -> CookieConsentPayload:
        return await set_cookie_consent(info, input)
