"""Privacy requests: complaints, reports of a child's account, and the staff's tools."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry

from auth.actor import Actor
from auth.permissions import IsAuthenticated, IsPrivacyOfficer, IsSupport
from models import AuditEntry as AuditEntryModel
from models import LegalHold as LegalHoldModel
from models import PrivacyRequest as PrivacyRequestModel
from models import RequestKind, RequestStatus
from resolvers import requests, staff
from resolvers.errors import Rejected
from resolvers.staff import ChildReportDecision
from schema.account import AccountType
from schema.context import RequestContext
from schema.errors import UserErrorType, to_user_errors

Info = strawberry.Info[RequestContext]
RequestKindEnum = strawberry.enum(RequestKind, name="RequestKind")
RequestStatusEnum = strawberry.enum(RequestStatus, name="RequestStatus")
ChildReportDecisionEnum = strawberry.enum(ChildReportDecision, name="ChildReportDecision")
Reason = Annotated[
    str, strawberry.argument(description="Why you need this: kept in the audit log.")
]


def _id(raw: strawberry.ID | None) -> uuid.UUID | None:
    """An id from a client; a malformed one matches nothing (the nil UUID)."""
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return uuid.UUID(int=0)


async def _actor(info: Info) -> Actor:
    actor = await info.context.actor()
    assert actor is not None  # the field's permission class made sure
    return actor


@strawberry.type(name="PrivacyRequest")
class PrivacyRequestType:
    id: strawberry.ID
    kind: RequestKindEnum  # type: ignore[valid-type]
    status: RequestStatusEnum  # type: ignore[valid-type]
    subject: str | None
    details: str | None
    created_at: datetime
    due_at: datetime = strawberry.field(description="When it must be answered by.")
    handled_at: datetime | None
    resolution: str | None
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


@strawberry.type(name="AuditEntry")
class AuditEntryType:
    id: strawberry.ID
    staff_id: strawberry.ID
    action: str
    account_id: strawberry.ID | None
    reason: str
    occurred_at: datetime
    request_id: str | None

    @classmethod
    def from_model(cls, model: AuditEntryModel) -> AuditEntryType:
        return cls(
            id=strawberry.ID(str(model.id)),
            staff_id=strawberry.ID(str(model.staff_id)),
            action=model.action,
            account_id=strawberry.ID(str(model.account_id)) if model.account_id else None,
            reason=model.reason,
            occurred_at=model.occurred_at,
            request_id=model.request_id,
        )


@strawberry.type(name="LegalHold", description="While in force, the account is not erased.")
class LegalHoldType:
    id: strawberry.ID
    account_id: strawberry.ID
    reason: str
    set_at: datetime
    released_at: datetime | None

    @classmethod
    def from_model(cls, model: LegalHoldModel) -> LegalHoldType:
        return cls(
            id=strawberry.ID(str(model.id)),
            account_id=strawberry.ID(str(model.account_id)),
            reason=model.reason,
            set_at=model.set_at,
            released_at=model.released_at,
        )


@strawberry.type
class LegalHoldPayload:
    hold: LegalHoldType | None
    errors: list[UserErrorType]


@strawberry.input
class SetLegalHoldInput:
    account_id: strawberry.ID
    reason: str = strawberry.field(description="The legal matter; also kept in the audit log.")


@strawberry.input
class ReleaseLegalHoldInput:
    id: strawberry.ID
    reason: str


@strawberry.type
class PrivacyRequestPayload:
    request: PrivacyRequestType | None
    errors: list[UserErrorType]


@strawberry.input
class ComplaintInput:
    subject: str
    details: str


@strawberry.input
class ChildReportInput:
    account_id: strawberry.ID
    details: str
    contact_email: str | None = strawberry.field(
        default=None, description="Where we may reach you about the report, if you wish."
    )


@strawberry.input
class ProcessRequestInput:
    id: strawberry.ID
    status: RequestStatusEnum  # type: ignore[valid-type]
    resolution: str
    reason: str


@strawberry.input
class ChildReportReviewInput:
    request_id: strawberry.ID
    decision: ChildReportDecisionEnum  # type: ignore[valid-type]
    reason: str


def _payload(request: PrivacyRequestModel) -> PrivacyRequestPayload:
    return PrivacyRequestPayload(request=PrivacyRequestType.from_model(request), errors=[])


def _refused(rejected: Rejected) -> PrivacyRequestPayload:
    return PrivacyRequestPayload(request=None, errors=to_user_errors(rejected.errors))


def _bad_input(rejected: Rejected) -> strawberry.exceptions.StrawberryGraphQLError:
    """Queries have no payload to carry a UserError: bad arguments become a GraphQL error."""
    error = rejected.errors[0]
    return strawberry.exceptions.StrawberryGraphQLError(
        error.message, extensions={"code": "BAD_USER_INPUT", "field": error.field}
    )


@strawberry.type
class RequestsQuery:
    @strawberry.field(
        permission_classes=[IsSupport], description="One account, by id or email. Audited."
    )
    async def staff_account(
        self,
        info: Info,
        reason: Reason,
        id: strawberry.ID | None = None,
        email: str | None = None,
    ) -> AccountType | None:
        try:
            async with info.context.db() as session:
                account = await staff.look_up_account(
                    session,
                    await _actor(info),
                    account_id=_id(id),
                    email=email,
                    reason=reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            raise _bad_input(rejected) from None
        return AccountType.from_model(account) if account else None

    @strawberry.field(
        permission_classes=[IsSupport], description="Accounts whose email contains the text."
    )
    async def staff_accounts(
        self, info: Info, email_contains: str, reason: Reason, first: int = 20
    ) -> list[AccountType]:
        try:
            async with info.context.db() as session:
                found = await staff.search_accounts(
                    session,
                    await _actor(info),
                    email_contains=email_contains,
                    first=first,
                    reason=reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            raise _bad_input(rejected) from None
        return [AccountType.from_model(account) for account in found]

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer], description="Privacy requests, soonest due first."
    )
    async def privacy_requests(
        self,
        info: Info,
        reason: Reason,
        status: RequestStatusEnum | None = None,  # type: ignore[valid-type]
        kind: RequestKindEnum | None = None,  # type: ignore[valid-type]
        first: int = 50,
    ) -> list[PrivacyRequestType]:
        try:
            async with info.context.db() as session:
                found = await staff.list_requests(
                    session,
                    await _actor(info),
                    status=status,
                    kind=kind,
                    first=first,
                    reason=reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            raise _bad_input(rejected) from None
        return [PrivacyRequestType.from_model(request) for request in found]

    @strawberry.field(permission_classes=[IsPrivacyOfficer], description="Newest first.")
    async def audit_log(
        self, info: Info, account_id: strawberry.ID | None = None, first: int = 50
    ) -> list[AuditEntryType]:
        try:
            async with info.context.db() as session:
                entries = await staff.audit_log(session, account_id=_id(account_id), first=first)
        except Rejected as rejected:
            raise _bad_input(rejected) from None
        return [AuditEntryType.from_model(entry) for entry in entries]


@strawberry.type
class RequestsMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Complain about how your data was handled; answered by the due date.",
    )
    async def file_complaint(self, info: Info, input: ComplaintInput) -> PrivacyRequestPayload:
        actor = await _actor(info)
        try:
            async with info.context.db() as session:
                request = await requests.file_complaint(
                    session,
                    actor,
                    subject=input.subject,
                    details=input.details,
                    due_days=info.context.services.config.request_due_days,
                )
        except Rejected as rejected:
            return _refused(rejected)
        return _payload(request)

    @strawberry.mutation(
        description="Report an account you believe belongs to a child under 13. No sign-in "
        "needed. The profile is hidden until a privacy officer reviews the report."
    )
    async def report_child_account(
        self, info: Info, input: ChildReportInput
    ) -> PrivacyRequestPayload:
        context = info.context
        account_id = _id(input.account_id)
        assert account_id is not None
        try:
            async with context.db() as session:
                request = await requests.report_child_account(
                    session,
                    context.services.limiter,
                    context.client.address,
                    account_id=account_id,
                    details=input.details,
                    contact_email=input.contact_email,
                    due_days=context.services.config.request_due_days,
                )
        except Rejected as rejected:
            return _refused(rejected)
        return _payload(request)

    @strawberry.mutation(permission_classes=[IsPrivacyOfficer])
    async def process_privacy_request(
        self, info: Info, input: ProcessRequestInput
    ) -> PrivacyRequestPayload:
        try:
            async with info.context.db() as session:
                request = await staff.process_request(
                    session,
                    await _actor(info),
                    privacy_request_id=_id(input.id) or uuid.UUID(int=0),
                    status=input.status,
                    resolution=input.resolution,
                    reason=input.reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            return _refused(rejected)
        return _payload(request)

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="CLEAR lifts the restriction; DELETE erases the account with no grace period.",
    )
    async def review_child_report(
        self, info: Info, input: ChildReportReviewInput
    ) -> PrivacyRequestPayload:
        try:
            async with info.context.db() as session:
                request = await staff.review_child_report(
                    session,
                    await _actor(info),
                    privacy_request_id=_id(input.request_id) or uuid.UUID(int=0),
                    decision=input.decision,
                    reason=input.reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            return _refused(rejected)
        return _payload(request)

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Keep an account from erasure, deletion requested or not, until released.",
    )
    async def set_legal_hold(self, info: Info, input: SetLegalHoldInput) -> LegalHoldPayload:
        try:
            async with info.context.db() as session:
                hold = await staff.hold_account(
                    session,
                    await _actor(info),
                    account_id=_id(input.account_id) or uuid.UUID(int=0),
                    reason=input.reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            return LegalHoldPayload(hold=None, errors=to_user_errors(rejected.errors))
        return LegalHoldPayload(hold=LegalHoldType.from_model(hold), errors=[])

    @strawberry.mutation(permission_classes=[IsPrivacyOfficer])
    async def release_legal_hold(
        self, info: Info, input: ReleaseLegalHoldInput
    ) -> LegalHoldPayload:
        try:
            async with info.context.db() as session:
                hold = await staff.release_hold(
                    session,
                    await _actor(info),
                    hold_id=_id(input.id) or uuid.UUID(int=0),
                    reason=input.reason,
                    request_id=info.context.request_id,
                )
        except Rejected as rejected:
            return LegalHoldPayload(hold=None, errors=to_user_errors(rejected.errors))
        return LegalHoldPayload(hold=LegalHoldType.from_model(hold), errors=[])
