"""Accounts, sign-up, sign-in and sessions, and the Account with all it shows: its deletion, its
policy acceptance, its privacy requests (which point back to it) and, from schema.settings, its
settings. The domain modules whose mutations answer with the Account import this one."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import strawberry

from auth.permissions import IsAuthenticated, IsPrivacyOfficer, signed_out_error
from models import Account as AccountModel
from models import (
    AuthSession,
    DeliveryStatus,
    Notification,
    NotificationKind,
    ProfileChange,
    RequestKind,
    RequestStatus,
    Role,
    utcnow,
)
from models import PrivacyRequest as PrivacyRequestModel
from resolvers import access, parental, password_reset, policy, requests
from resolvers import account as accounts
from resolvers import signup as signups
from resolvers.age import is_minor, today_everywhere
from resolvers.erasure import processing_suspended
from resolvers.errors import ErrorCode
from resolvers.paging import page_request
from resolvers.profile import pending_email_of
from schema.connections import (
    Before,
    Connection,
    Last,
    checked,
    connection,
    first_rows,
    load_page,
)
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.ids import Node, parse_id
from schema.mutations import mutate, run_prepared
from schema.parental import ParentalConsentType
from schema.settings import AccountSettingsFields

Info = strawberry.Info[RequestContext]
strawberry.enum(Role, name="Role", description="What an account may do.")
strawberry.enum(NotificationKind, name="MessageKind", description="Why a message was sent.")
strawberry.enum(
    DeliveryStatus,
    name="MessageStatus",
    description="Where a message is: waiting (or between attempts), sent, given up on, or not "
    "sent because its topic was switched off before it went.",
)

strawberry.enum(RequestKind, name="RequestKind", description="What a privacy request asks for.")
strawberry.enum(RequestStatus, name="RequestStatus", description="Where a privacy request stands.")


@strawberry.type(
    name="ProfileChange", description="A personal field that changed: which, when and by whom."
)
class ProfileChangeType:
    field: str = strawberry.field(
        description="The profile field that changed (its value is not kept here)."
    )
    changed_at: datetime = strawberry.field(description="When it changed.")
    by_staff: bool = strawberry.field(description="Changed by staff rather than the person.")

    @classmethod
    def from_model(cls, model: ProfileChange) -> ProfileChangeType:
        return cls(
            field=model.field, changed_at=model.changed_at, by_staff=model.changed_by is not None
        )


@strawberry.type(
    name="Message", description="A message sent (or waiting to be sent) to the person."
)
class MessageType:
    kind: NotificationKind
    subject: str
    created_at: datetime
    sent_at: datetime | None = strawberry.field(description="Null while it waits in the outbox.")
    status: DeliveryStatus

    @classmethod
    def from_model(cls, model: Notification) -> MessageType:
        return cls(
            kind=model.kind,
            subject=model.subject,
            created_at=model.created_at,
            sent_at=model.sent_at,
            status=model.status,
        )


@strawberry.type(
    name="StaffAccess",
    description="Staff read or changed the person's data: their role and stated reason, "
    "never who they are.",
)
class StaffAccessType:
    role: Role | None = strawberry.field(
        description="Null once the staff account no longer exists."
    )
    action: str = strawberry.field(
        description="What the staff member did, such as viewing the account."
    )
    reason: str
    occurred_at: datetime

    @classmethod
    def from_entry(cls, entry: access.StaffAccess) -> StaffAccessType:
        return cls(
            role=entry.role, action=entry.action, reason=entry.reason, occurred_at=entry.occurred_at
        )


@strawberry.type(name="Session", description="A device or browser signed in to the account.")
class SessionType(Node):
    id: strawberry.ID
    user_agent: str | None = strawberry.field(
        description="The browser or app that signed in, as it said."
    )
    created_at: datetime
    last_used_at: datetime = strawberry.field(
        description="The last request with this session, to within a few minutes."
    )
    expires_at: datetime = strawberry.field(
        description="When the session ends unless signed out before."
    )
    current: bool = strawberry.field(description="Whether this request uses this session.")

    @classmethod
    def from_model(cls, model: AuthSession, current_id: uuid.UUID | None) -> SessionType:
        return cls(
            id=strawberry.ID(str(model.id)),
            user_agent=model.user_agent,
            created_at=model.created_at,
            last_used_at=model.last_used_at,
            expires_at=model.expires_at,
            current=model.id == current_id,
        )


@strawberry.type(description="The account is scheduled for deletion.")
class AccountDeletion:
    requested_at: datetime = strawberry.field(description="When the deletion was asked for.")
    due_at: datetime = strawberry.field(
        description="When the account is erased. Until then, `cancelAccountDeletion` keeps it."
    )

    @classmethod
    def of(cls, account: AccountModel) -> AccountDeletion | None:
        if account.deletion_requested_at is None or account.deletion_due_at is None:
            return None
        return cls(requested_at=account.deletion_requested_at, due_at=account.deletion_due_at)


@strawberry.type(description="Which version of the privacy policy a person has accepted.")
class AccountPolicy:
    accepted_version: str | None = strawberry.field(
        description="The version the person accepted; null if none."
    )
    current_version: str = strawberry.field(description="The version in force.")
    acceptance_required: bool = strawberry.field(
        description=(
            "A material version newer than the accepted one has been published: show "
            "`currentPolicy` and ask for `acceptPolicy`. Updates that are not material never "
            "set this."
        )
    )


async def account_policy(root: Any, info: Info) -> AccountPolicy:
    """`Account.policy`: the root is the Account being resolved."""
    async with info.context.reading() as session:
        status = await policy.policy_status(session, root.accepted_policy_version)
    return AccountPolicy(
        accepted_version=status.accepted_version,
        current_version=status.current_version,
        acceptance_required=status.acceptance_required,
    )


@strawberry.type(name="Account", description="A person's account as they themself see it.")
class AccountType(AccountSettingsFields, Node):
    id: strawberry.ID
    email: str
    display_name: str
    phone: str | None = strawberry.field(description="E.164, such as +4915123456789.")
    birth_date: date | None = strawberry.field(
        description="As given at signup; staff correct it on request."
    )
    country: str | None = strawberry.field(description="ISO 3166-1 alpha-2.")
    us_state: str | None = strawberry.field(
        description="For someone in the US, the state (ISO 3166-2, such as US-CA), if given."
    )
    is_minor: bool = strawberry.field(
        description="Below the age of digital consent where the person lives (country, and for "
        "the US the state; the strictest state's age when none is given)."
    )
    role: Role = strawberry.field(
        description="What the account may do: a person, support staff or a privacy officer."
    )
    locale: str | None = strawberry.field(
        description="The language messages are written in, such as en-GB."
    )
    pending_email: str | None = strawberry.field(
        description="A new address waiting for its confirmation code to be redeemed."
    )
    accepted_policy_version: str | None = strawberry.field(
        description="The privacy policy version the person last accepted."
    )
    policy_accepted_at: datetime | None = strawberry.field(
        description="When the person accepted `acceptedPolicyVersion`."
    )
    restricted_at: datetime | None = strawberry.field(
        description="Since when the profile is hidden from others after a report, until staff "
        "review it; null when it is not."
    )
    created_at: datetime
    deletion: AccountDeletion | None = strawberry.field(
        description="Set while the account is scheduled for deletion."
    )
    policy: AccountPolicy = strawberry.field(
        resolver=account_policy, description="Whether a newer privacy policy needs accepting."
    )

    @classmethod
    def from_model(cls, model: AccountModel) -> AccountType:
        return cls(
            id=strawberry.ID(str(model.id)),
            email=model.email,
            display_name=model.display_name,
            phone=model.phone,
            birth_date=model.birth_date,
            country=model.country,
            us_state=model.us_state,
            is_minor=is_minor(
                model.birth_date, model.country, model.us_state, today_everywhere(utcnow())
            ),
            role=model.role,
            locale=model.locale,
            pending_email=pending_email_of(model),
            accepted_policy_version=model.accepted_policy_version,
            policy_accepted_at=model.policy_accepted_at,
            restricted_at=model.restricted_at,
            created_at=model.created_at,
            deletion=AccountDeletion.of(model),
            _model_id=model.id,
            _gpc_applied=model.gpc_applied_at is not None,
            _processing_suspended=processing_suspended(model),
        )

    @strawberry.field(
        description="Requests the person made (exports, deletion, complaints), newest first. "
        "The first page only: privacyRequestsConnection pages on."
    )
    async def privacy_requests(self, info: Info, first: int = 50) -> list[PrivacyRequestType]:
        rows = await first_rows(
            info.context, requests.requests_by_author, self._model_id, first, requests.BY_AUTHOR
        )
        return [PrivacyRequestType.from_model(row) for row in rows]

    @strawberry.field(description="Requests the person made, newest first, a page at a time.")
    async def privacy_requests_connection(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[PrivacyRequestType]:
        page = checked(
            lambda: page_request(first, after, requests.BY_AUTHOR, last=last, before=before)
        )
        found = await load_page(info.context, requests.requests_by_author, self._model_id, page)
        return connection(found, PrivacyRequestType.from_model)

    @strawberry.field(description="Where the account is signed in, most recently used first.")
    async def sessions(self, info: Info, first: int = 50) -> list[SessionType]:
        rows = await first_rows(
            info.context, accounts.sessions_by_last_use, self._model_id, first, accounts.BY_LAST_USE
        )
        current = await _current_session(info)
        return [SessionType.from_model(row, current) for row in rows]

    @strawberry.field(
        description="Where the account is signed in, newest sign-in first, a page at a time."
    )
    async def sessions_connection(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[SessionType]:
        page = checked(
            lambda: page_request(first, after, accounts.BY_SIGN_IN, last=last, before=before)
        )
        found = await load_page(info.context, accounts.sessions_by_sign_in, self._model_id, page)
        current = await _current_session(info)
        return connection(found, lambda row: SessionType.from_model(row, current))

    @strawberry.field(
        description="Changes to the person's profile, newest first: the field, never the values."
    )
    async def profile_changes(self, info: Info, first: int = 50) -> list[ProfileChangeType]:
        rows = await first_rows(
            info.context, access.profile_changes, self._model_id, first, access.PROFILE_CHANGES
        )
        return [ProfileChangeType.from_model(row) for row in rows]

    @strawberry.field(
        description="Messages sent or waiting to be sent to the person, newest first; "
        "never the codes or links they carry."
    )
    async def messages(self, info: Info, first: int = 50) -> list[MessageType]:
        rows = await first_rows(
            info.context, access.messages, self._model_id, first, access.MESSAGES
        )
        return [MessageType.from_model(row) for row in rows]

    @strawberry.field(
        description="When staff read or changed the person's data, newest first: their role "
        "and the reason they gave."
    )
    async def staff_access(self, info: Info, first: int = 50) -> list[StaffAccessType]:
        rows = await first_rows(
            info.context, access.staff_access, self._model_id, first, access.STAFF_ACCESS
        )
        return [StaffAccessType.from_entry(entry) for entry in rows]

    @strawberry.field(
        description="What the person asked their parents to consent to, newest request first, "
        "and where each stands."
    )
    async def parental_consents(self, info: Info) -> list[ParentalConsentType]:
        account = await info.context.account_of(self._model_id)
        async with info.context.reading() as session:
            views = await parental.parental_consents(session, account)
        return [ParentalConsentType.from_view(view) for view in views]


@strawberry.type(
    name="PrivacyRequest",
    description="A request to the privacy team (complaint, correction, child report, ...) "
    "with its due date and answer.",
)
class PrivacyRequestType(Node):
    id: strawberry.ID
    kind: RequestKind
    status: RequestStatus
    subject: str | None
    details: str | None
    created_at: datetime
    due_at: datetime = strawberry.field(
        description="When it must be answered by: one calendar month after it was made, plus "
        "any extension."
    )
    extended_months: int = strawberry.field(
        description="By how many months a privacy officer extended the deadline (at most 2)."
    )
    extension_reason: str | None = strawberry.field(description="Why it was extended.")
    handled_at: datetime | None = strawberry.field(
        description="When staff closed it; null while open."
    )
    resolution: str | None = strawberry.field(
        description="The answer given to the person when it was closed."
    )
    _account_id: strawberry.Private[uuid.UUID | None]
    _contact_email: strawberry.Private[str | None]

    @classmethod
    def from_model(cls, model: PrivacyRequestModel) -> PrivacyRequestType:
        return cls(
            id=strawberry.ID(str(model.id)),
            kind=model.kind,
            status=model.status,
            subject=model.subject,
            details=model.details,
            created_at=model.created_at,
            due_at=model.due_at,
            extended_months=model.extended_months,
            extension_reason=model.extension_reason,
            handled_at=model.handled_at,
            resolution=model.resolution,
            _account_id=model.account_id,
            _contact_email=model.contact_email,
        )

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer], description="Whom it is about. Staff only."
    )
    async def account(self, info: Info) -> AccountType | None:
        if self._account_id is None:
            return None
        model = await info.context.account_loader.load(self._account_id)
        return AccountType.from_model(model) if model else None

    @strawberry.field(permission_classes=[IsPrivacyOfficer], description="Staff only.")
    def contact_email(self) -> str | None:
        return self._contact_email


async def _current_session(info: Info) -> uuid.UUID | None:
    actor = await info.context.actor()
    return actor.session_id if actor else None


@strawberry.type(description="A new session (signup or login), or why none was started.")
class AuthPayload:
    token: str | None = strawberry.field(
        description="Bearer token for the mobile app; the web gets an HttpOnly cookie as well."
    )
    account: AccountType | None
    errors: list[UserErrorType]


_CREATED_BY_CONFIRMATION = "The account is created by confirmSignup, which answers with it."


@strawberry.type(
    description="Whether the confirmation message was sent; the account comes with confirmSignup."
)
class SignupPayload:
    confirmation_sent: bool = strawberry.field(
        default=False,
        description="True once the signup is accepted: ask the person to check their email. "
        "The same answer whether or not the address already has an account.",
    )
    errors: list[UserErrorType] = strawberry.field(default_factory=list)
    token: str | None = strawberry.field(
        default=None,
        description="Always null.",
        deprecation_reason=_CREATED_BY_CONFIRMATION,
    )
    account: AccountType | None = strawberry.field(
        default=None,
        description="Always null.",
        deprecation_reason=_CREATED_BY_CONFIRMATION,
    )


@strawberry.type(description="Whether the request was accepted, or why it was refused.")
class DonePayload:
    errors: list[UserErrorType]
    ok: bool = strawberry.field(default=False, description="True when the request was accepted.")


@strawberry.type(description="The account after the change, or why it was refused.")
class AccountPayload:
    account: AccountType | None
    errors: list[UserErrorType]

    @classmethod
    def of(cls, account: AccountModel | None, errors: list[UserErrorType]) -> AccountPayload:
        return cls(account=AccountType.from_model(account) if account else None, errors=errors)


@strawberry.type(description="Whether the session ended.")
class LogoutPayload:
    ok: bool = strawberry.field(description="True when the session ended.")
    errors: list[UserErrorType]


@strawberry.input(description="What an account needs: a date of birth is asked, never an age.")
class SignupInput:
    email: str
    password: str = strawberry.field(description="8 to 128 characters, not a common password.")
    display_name: str
    birth_date: date = strawberry.field(
        description="The date of birth; under 13 is refused, and nothing about the child is kept."
    )
    country: str = strawberry.field(description="ISO 3166-1 alpha-2, such as DE.")
    us_state: str | None = strawberry.field(
        default=None,
        description="Only for the US: the state, ISO 3166-2 (US-CA, or CA). Some states protect "
        "teens for longer; without it, the strictest state's age applies.",
    )
    accept_policy_version: str = strawberry.field(
        description="The `currentPolicy.version` the person has read and accepts."
    )
    phone: str | None = strawberry.field(
        default=None, description="E.164, such as +4915123456789; needed for SMS."
    )


@strawberry.input(
    description="The token from the message's link, or the email address and the code from it."
)
class ConfirmSignupInput:
    token: str | None = strawberry.field(
        default=None, description="From the link in the message (the web page sends it)."
    )
    email: str | None = None
    code: str | None = strawberry.field(
        default=None, description="The short code the message shows, typed with `email` (apps)."
    )


@strawberry.input(description="The address of the account whose password is forgotten.")
class RequestPasswordResetInput:
    email: str


@strawberry.input(description="The reset link's token and the new password.")
class ResetPasswordInput:
    token: str = strawberry.field(description="From the link in the reset message.")
    new_password: str = strawberry.field(description="The same rules as at signup.")


@strawberry.input(
    description="Email and password. Send them as variables, never inline in the document.",
)
class LoginInput:
    email: str
    password: str


@strawberry.input(description="The current password, to prove it is you, and the new one.")
class ChangePasswordInput:
    current_password: str
    new_password: str


def _signed_in(
    info: Info, signed: accounts.SignedIn | None, errors: list[UserErrorType]
) -> AuthPayload:
    if signed is None:
        return AuthPayload(token=None, account=None, errors=errors)
    info.context.caller.start_web_session(signed.token)
    return AuthPayload(
        token=signed.token, account=AccountType.from_model(signed.account), errors=[]
    )


@strawberry.type
class AccountQuery:
    @strawberry.field(
        description="The signed-in person, or null when no credentials came. A session token "
        "(bearer or cookie) that is not valid or has expired, and a session cookie sent without "
        "the X-Requested-With header (or a JSON Content-Type), are an UNAUTHENTICATED error "
        "that says so, not a silent null."
    )
    async def me(self, info: strawberry.Info[RequestContext]) -> AccountType | None:
        context = info.context
        actor = await context.actor()
        if actor is None:
            if context.cookie_left_unused or context.session_refused:
                raise signed_out_error(
                    cookie_left_unused=context.cookie_left_unused,
                    session_refused=context.session_refused,
                )
            return None
        return AccountType.from_model(await info.context.account_of(actor.account_id))


@strawberry.type
class AccountMutation:
    @strawberry.mutation(
        description="Ask for an account. A date of birth is asked, never an age. The address "
        "is mailed a link and a code; confirmSignup creates the account."
    )
    async def signup(self, info: Info, input: SignupInput) -> SignupPayload:
        context = info.context
        started, errors = await run_prepared(
            context,
            lambda reads: signups.start_signup(
                reads,
                context.services.limiter,
                context.caller.client,
                refused_recently=context.caller.age_gate_refused_recently,
                email=input.email,
                password=input.password,
                display_name=input.display_name,
                birth_date=input.birth_date,
                country=input.country,
                us_state=input.us_state,
                accept_policy_version=input.accept_policy_version,
                confirmation_link=context.services.links.confirm_signup,
                secret_key=context.services.config.secret_key,
                phone=input.phone,
            ),
        )
        if any(error.code is ErrorCode.AGE_RESTRICTED for error in errors):
            context.caller.remember_age_refusal()
        return SignupPayload(confirmation_sent=started is not None, errors=errors)

    @strawberry.mutation(
        description="Create the account a signup asked for, with the code or link it mailed, "
        "and sign in."
    )
    async def confirm_signup(self, info: Info, input: ConfirmSignupInput) -> AuthPayload:
        context = info.context
        signed, errors = await run_prepared(
            context,
            lambda reads: signups.confirm_signup(
                reads,
                context.services.limiter,
                context.caller.client,
                secret_key=context.services.config.secret_key,
                token=input.token,
                email=input.email,
                code=input.code,
            ),
        )
        return _signed_in(info, signed, errors)

    @strawberry.mutation(
        description="Mail a link to choose a new password. The same answer whether or not the "
        "address has an account."
    )
    async def request_password_reset(
        self, info: Info, input: RequestPasswordResetInput
    ) -> DonePayload:
        context = info.context
        _, errors = await run_prepared(
            context,
            lambda _: password_reset.request_password_reset(
                context.services.limiter,
                context.caller.client,
                email=input.email,
                reset_link=context.services.links.reset_password,
            ),
        )
        return DonePayload(ok=not errors, errors=errors)

    @strawberry.mutation(
        description="Set a new password with the token of a reset link; every session is "
        "signed out."
    )
    async def reset_password(self, info: Info, input: ResetPasswordInput) -> DonePayload:
        _, errors = await run_prepared(
            info.context,
            lambda reads: password_reset.reset_password(
                reads, token=input.token, new_password=input.new_password
            ),
        )
        return DonePayload(ok=not errors, errors=errors)

    @strawberry.mutation(description="Sign in with email and password.")
    async def login(self, info: Info, input: LoginInput) -> AuthPayload:
        context = info.context
        signed, errors = await run_prepared(
            context,
            lambda reads: accounts.login(
                reads,
                context.services.limiter,
                context.caller.client,
                email=input.email,
                password=input.password,
            ),
        )
        return _signed_in(info, signed, errors)

    @strawberry.mutation(description="End this session.", permission_classes=[IsAuthenticated])
    async def logout(self, info: Info) -> LogoutPayload:
        caller = info.context.caller

        def answer(ended: None, errors: list[UserErrorType]) -> LogoutPayload:
            caller.end_web_session()
            return LogoutPayload(ok=True, errors=[])

        return await mutate(info, lambda work: accounts.logout(work.session, work.actor), answer)

    @strawberry.mutation(
        description="Set a new password; every other session is signed out.",
        permission_classes=[IsAuthenticated],
    )
    async def change_password(self, info: Info, input: ChangePasswordInput) -> AccountPayload:
        actor = await info.context.signed_in()
        account, errors = await run_prepared(
            info.context,
            lambda reads: accounts.change_password(
                reads,
                info.context.services.limiter,
                actor,
                current_password=input.current_password,
                new_password=input.new_password,
            ),
        )
        return AccountPayload.of(account, errors)

    @strawberry.mutation(
        description="Sign out one of your sessions, such as a lost phone.",
        permission_classes=[IsAuthenticated],
    )
    async def revoke_session(self, info: Info, id: strawberry.ID) -> AccountPayload:
        context = info.context

        async def answer(revoked: object, errors: list[UserErrorType]) -> AccountPayload:
            if errors:
                return AccountPayload.of(None, errors)
            actor = await context.signed_in()
            return AccountPayload.of(await context.account_of(actor.account_id), errors)

        return await mutate(
            info,
            lambda work: accounts.revoke_session(work.session, work.actor, session_id=parse_id(id)),
            answer,
        )
