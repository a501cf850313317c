"""Privacy requests: complaints, reports of a child's account, and the staff's tools."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import strawberry

from auth.permissions import IsAuthenticated, IsPrivacyOfficer, IsSupport
from models import Account as AccountModel
from models import AuditEntry as AuditEntryModel
from models import LegalHold as LegalHoldModel
from models import PrivacyRequest as PrivacyRequestModel
from models import RequestKind, RequestStatus
from resolvers import requests, staff
from resolvers.paging import Page
from resolvers.staff import ChildReportDecision
from schema.account import AccountPayload, AccountType, PrivacyRequestType
from schema.connections import Before, Connection, Last, connection
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.ids import parse_id
from schema.mutations import mutate, mutate_prepared

Info = strawberry.Info[RequestContext]
strawberry.enum(
    ChildReportDecision,
    name="ChildReportDecision",
    description="CLEAR: not a child's account, restrictions lifted. DELETE: a child's "
    "account, erased without a grace period.",
)
Reason = Annotated[
    str, strawberry.argument(description="Why you need this: kept in the audit log.")
]
Overdue = Annotated[
    bool | None,
    strawberry.argument(
        description="Only open requests past their due date (true) or not yet (false)."
    ),
]
DueWithinDays = Annotated[
    int | None,
    strawberry.argument(
        description="Only open requests due within this many days (0 to 366), overdue ones "
        "included unless overdue is false."
    ),
]


@strawberry.type(
    name="AuditEntry",
    description="One staff access to personal data, as the audit log keeps it.",
)
class AuditEntryType:
    id: strawberry.ID
    staff_id: strawberry.ID = strawberry.field(description="The staff member who acted.")
    action: str = strawberry.field(
        description="What they did, such as viewing an account or processing a request."
    )
    account_id: strawberry.ID | None
    reason: str
    occurred_at: datetime
    request_id: str | None = strawberry.field(
        description="The id of the HTTP request, to trace it in the logs."
    )

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
    set_at: datetime = strawberry.field(description="When the hold began.")
    released_at: datetime | None = strawberry.field(
        description="When it ended; null while it holds."
    )

    @classmethod
    def from_model(cls, model: LegalHoldModel) -> LegalHoldType:
        return cls(
            id=strawberry.ID(str(model.id)),
            account_id=strawberry.ID(str(model.account_id)),
            reason=model.reason,
            set_at=model.set_at,
            released_at=model.released_at,
        )


@strawberry.type(description="The legal hold, or why it was refused.")
class LegalHoldPayload:
    hold: LegalHoldType | None
    errors: list[UserErrorType]


@strawberry.input(description="Keep an account from being erased while a legal matter is open.")
class SetLegalHoldInput:
    account_id: strawberry.ID
    reason: str = strawberry.field(description="The legal matter; also kept in the audit log.")


@strawberry.input(description="Turn every marketing message off for a person who asked staff to.")
class StaffOptOutInput:
    account_id: strawberry.ID
    reason: str = strawberry.field(description="Such as the ticket of the person's request.")


@strawberry.input(description="End a legal hold; the account's deletion, if due, goes ahead.")
class ReleaseLegalHoldInput:
    id: strawberry.ID
    reason: str


@strawberry.type(description="The request after the change, or why it was refused.")
class PrivacyRequestPayload:
    request: PrivacyRequestType | None
    errors: list[UserErrorType]


@strawberry.input(description="What the request is about, in the person's words.")
class PrivacyRequestInput:
    subject: str
    details: str


@strawberry.input(description="Report an account that may belong to a child under 13.")
class ChildReportInput:
    account_id: strawberry.ID
    details: str
    contact_email: str | None = strawberry.field(
        default=None, description="Where we may reach you about the report, if you wish."
    )


@strawberry.input(description="Close a privacy request with an answer to the person.")
class ProcessRequestInput:
    id: strawberry.ID
    status: RequestStatus
    resolution: str = strawberry.field(description="The answer the person is told.")
    reason: str


@strawberry.input(description="Take more time to answer a privacy request, as the law allows.")
class ExtendRequestInput:
    id: strawberry.ID
    months: int = strawberry.field(description="1 or 2; at most 2 months in all.")
    reason: str = strawberry.field(
        description="Why more time is needed: told to the person and kept in the audit log."
    )


@strawberry.input(
    description="Correct what a person cannot change themselves, after checking evidence.",
)
class CorrectAccountInput:
    account_id: strawberry.ID
    birth_date: date | None = strawberry.field(
        default=None, description="The checked date of birth; under 13 is refused."
    )
    country: str | None = strawberry.field(default=None, description="ISO 3166-1, such as DE.")
    us_state: str | None = strawberry.field(
        default=None,
        description="Only for the US: the state, ISO 3166-2 (US-CA, or CA); an empty string "
        "removes it.",
    )
    privacy_request_id: strawberry.ID | None = strawberry.field(
        default=None, description="The person's correction request this answers; it is closed."
    )
    resolution: str | None = strawberry.field(
        default=None,
        description="The answer the request is closed with; says what was corrected when left out.",
    )
    reason: str = strawberry.field(
        description="Such as the evidence checked; kept in the audit log."
    )


@strawberry.type(
    description="The corrected account and the request it closed, or why it was refused.",
)
class AccountCorrectionPayload:
    account: AccountType | None
    request: PrivacyRequestType | None = strawberry.field(description="The request it closed.")
    errors: list[UserErrorType]


@strawberry.input(description="The decision on a report that an account belongs to a child.")
class ChildReportReviewInput:
    request_id: strawberry.ID = strawberry.field(description="The child report being decided.")
    decision: ChildReportDecision = strawberry.field(
        description="Lift the restriction, or erase the child's account."
    )
    reason: str


def _request_payload(
    request: PrivacyRequestModel | None, errors: list[UserErrorType]
) -> PrivacyRequestPayload:
    return PrivacyRequestPayload(
        request=PrivacyRequestType.from_model(request) if request else None, errors=errors
    )


def _correction_payload(
    corrected: tuple[AccountModel, PrivacyRequestModel | None] | None,
    errors: list[UserErrorType],
) -> AccountCorrectionPayload:
    if corrected is None:
        return AccountCorrectionPayload(account=None, request=None, errors=errors)
    account, request = corrected
    return AccountCorrectionPayload(
        account=AccountType.from_model(account),
        request=PrivacyRequestType.from_model(request) if request else None,
        errors=errors,
    )


def _hold_payload(hold: LegalHoldModel | None, errors: list[UserErrorType]) -> LegalHoldPayload:
    return LegalHoldPayload(hold=LegalHoldType.from_model(hold) if hold else None, errors=errors)


async def _file(info: Info, kind: RequestKind, input: PrivacyRequestInput) -> PrivacyRequestPayload:
    limiter = info.context.services.limiter
    return await mutate_prepared(
        info,
        lambda preparation: requests.file_request(
            limiter,
            preparation.actor,
            kind=kind,
            subject=input.subject,
            details=input.details,
        ),
        _request_payload,
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
        context = info.context
        support = await context.signed_in()
        account = await context.answer_audited(
            lambda session: staff.look_up_account(
                session,
                support,
                account_id=parse_id(id) if id is not None else None,
                email=email,
                reason=reason,
                request_id=context.request_id,
            )
        )
        return AccountType.from_model(account) if account else None

    @strawberry.field(
        permission_classes=[IsSupport],
        description="Accounts whose email contains the text, by email. Audited. The first page "
        "only: staffAccountsConnection pages on.",
    )
    async def staff_accounts(
        self, info: Info, email_contains: str, reason: Reason, first: int = 20
    ) -> list[AccountType]:
        found = await _search(info, email_contains, reason, first, None)
        return [AccountType.from_model(account) for account in found.items]

    @strawberry.field(
        permission_classes=[IsSupport],
        description="Accounts whose email contains the text, by email, a page at a time. Audited.",
    )
    async def staff_accounts_connection(
        self,
        info: Info,
        email_contains: str,
        reason: Reason,
        first: int = 20,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[AccountType]:
        found = await _search(info, email_contains, reason, first, after, last, before)
        return connection(found, AccountType.from_model)

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer],
        description="Privacy requests, soonest due first. Audited. The first page only: "
        "privacyRequestsConnection pages on.",
    )
    async def privacy_requests(
        self,
        info: Info,
        reason: Reason,
        status: RequestStatus | None = None,
        kind: RequestKind | None = None,
        overdue: Overdue = None,
        due_within_days: DueWithinDays = None,
        first: int = 50,
    ) -> list[PrivacyRequestType]:
        found = await _queue(info, reason, status, kind, overdue, due_within_days, first, None)
        return [PrivacyRequestType.from_model(request) for request in found.items]

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer],
        description="Privacy requests, soonest due first, a page at a time. Audited.",
    )
    async def privacy_requests_connection(
        self,
        info: Info,
        reason: Reason,
        status: RequestStatus | None = None,
        kind: RequestKind | None = None,
        overdue: Overdue = None,
        due_within_days: DueWithinDays = None,
        first: int = 50,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[PrivacyRequestType]:
        found = await _queue(
            info, reason, status, kind, overdue, due_within_days, first, after, last, before
        )
        return connection(found, PrivacyRequestType.from_model)

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer],
        description="Newest first. The first page only: auditLogConnection pages on.",
    )
    async def audit_log(
        self, info: Info, account_id: strawberry.ID | None = None, first: int = 50
    ) -> list[AuditEntryType]:
        found = await _audit_log(info, account_id, first, None)
        return [AuditEntryType.from_model(entry) for entry in found.items]

    @strawberry.field(
        permission_classes=[IsPrivacyOfficer], description="Newest first, a page at a time."
    )
    async def audit_log_connection(
        self,
        info: Info,
        account_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
        last: Last = None,
        before: Before = None,
    ) -> Connection[AuditEntryType]:
        found = await _audit_log(info, account_id, first, after, last, before)
        return connection(found, AuditEntryType.from_model)


async def _search(
    info: Info,
    email_contains: str,
    reason: str,
    first: int,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[AccountModel]:
    context = info.context
    support = await context.signed_in()
    return await context.answer_audited(
        lambda session: staff.search_accounts(
            session,
            support,
            email_contains=email_contains,
            first=first,
            after=after,
            last=last,
            before=before,
            reason=reason,
            request_id=context.request_id,
        )
    )


async def _queue(
    info: Info,
    reason: str,
    status: RequestStatus | None,
    kind: RequestKind | None,
    overdue: bool | None,
    due_within_days: int | None,
    first: int,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[PrivacyRequestModel]:
    context = info.context
    officer = await context.signed_in()
    return await context.answer_audited(
        lambda session: staff.list_requests(
            session,
            officer,
            status=status,
            kind=kind,
            overdue=overdue,
            due_within_days=due_within_days,
            first=first,
            after=after,
            last=last,
            before=before,
            reason=reason,
            request_id=context.request_id,
        )
    )


async def _audit_log(
    info: Info,
    account_id: strawberry.ID | None,
    first: int,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[AuditEntryModel]:
    return await info.context.answer(
        lambda session: staff.audit_log(
            session,
            account_id=parse_id(account_id) if account_id is not None else None,
            first=first,
            after=after,
            last=last,
            before=before,
        )
    )


@strawberry.type
class RequestsMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Complain about how your data was handled; answered by the due date.",
    )
    async def file_complaint(self, info: Info, input: PrivacyRequestInput) -> PrivacyRequestPayload:
        return await _file(info, RequestKind.COMPLAINT, input)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Ask staff to correct what you cannot change yourself, such as your date of "
        "birth; answered by the due date.",
    )
    async def request_correction(
        self, info: Info, input: PrivacyRequestInput
    ) -> PrivacyRequestPayload:
        return await _file(info, RequestKind.CORRECTION, input)

    @strawberry.mutation(
        description="Report an account you believe belongs to a child under 13. No sign-in "
        "needed, and the report does not say who made it. A privacy officer reviews every "
        "report; meanwhile the profile is hidden if its stated age is under 16 or people at two "
        "different clients reported it within 30 days."
    )
    async def report_child_account(
        self, info: Info, input: ChildReportInput
    ) -> PrivacyRequestPayload:
        context = info.context
        return await mutate_prepared(
            info,
            lambda _: requests.report_child_account(
                context.services.limiter,
                context.caller.client.address,
                account_id=parse_id(input.account_id),
                details=input.details,
                contact_email=input.contact_email,
                secret_key=context.services.config.secret_key,
            ),
            _request_payload,
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Close a request as COMPLETED or REJECTED; the person is sent the resolution. "
        "A deletion request can only be REJECTED, which keeps the account and lifts its "
        "suspension; the purge completes one by erasing the account.",
    )
    async def process_privacy_request(
        self, info: Info, input: ProcessRequestInput
    ) -> PrivacyRequestPayload:
        return await mutate(
            info,
            lambda work: staff.process_request(
                work.session,
                work.actor,
                privacy_request_id=parse_id(input.id),
                status=input.status,
                resolution=input.resolution,
                reason=input.reason,
                request_id=work.request_id,
            ),
            _request_payload,
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Give an open request more time, before it is overdue: one or two more "
        "months, at most two in all, counted from when it was made. Audited; the person is told "
        "the new date and the reason.",
    )
    async def extend_privacy_request(
        self, info: Info, input: ExtendRequestInput
    ) -> PrivacyRequestPayload:
        return await mutate(
            info,
            lambda work: staff.extend_request(
                work.session,
                work.actor,
                privacy_request_id=parse_id(input.id),
                months=input.months,
                reason=input.reason,
                request_id=work.request_id,
            ),
            _request_payload,
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="CLEAR lifts the restriction; DELETE erases the account with no grace period.",
    )
    async def review_child_report(
        self, info: Info, input: ChildReportReviewInput
    ) -> PrivacyRequestPayload:
        return await mutate(
            info,
            lambda work: staff.review_child_report(
                work.session,
                work.actor,
                privacy_request_id=parse_id(input.request_id),
                decision=input.decision,
                reason=input.reason,
                request_id=work.request_id,
            ),
            _request_payload,
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Correct a person's date of birth, country or US state once checked, closing "
        "the correction request it answers. The age rules apply at once: a person it makes a "
        "minor loses what a minor may not have, recorded as done by you. Audited.",
    )
    async def correct_account(
        self, info: Info, input: CorrectAccountInput
    ) -> AccountCorrectionPayload:
        return await mutate(
            info,
            lambda work: staff.correct_account(
                work.session,
                work.actor,
                account_id=parse_id(input.account_id),
                birth_date=input.birth_date,
                country=input.country,
                us_state=input.us_state,
                privacy_request_id=parse_id(input.privacy_request_id)
                if input.privacy_request_id is not None
                else None,
                resolution=input.resolution,
                reason=input.reason,
                request_id=work.request_id,
            ),
            _correction_payload,
            changed=lambda corrected: [corrected[0].id],
        )

    @strawberry.mutation(
        permission_classes=[IsPrivacyOfficer],
        description="Keep an account from erasure, deletion requested or not, until released. "
        "When its deletion is pending, the person is mailed that it waits for a legal matter "
        "(not the reason given here).",
    )
    async def set_legal_hold(self, info: Info, input: SetLegalHoldInput) -> LegalHoldPayload:
        return await mutate(
            info,
            lambda work: staff.hold_account(
                work.session,
                work.actor,
                account_id=parse_id(input.account_id),
                reason=input.reason,
                request_id=work.request_id,
            ),
            _hold_payload,
        )

    @strawberry.mutation(
        description="End a legal hold. Privacy officers only; audited.",
        permission_classes=[IsPrivacyOfficer],
    )
    async def release_legal_hold(
        self, info: Info, input: ReleaseLegalHoldInput
    ) -> LegalHoldPayload:
        return await mutate(
            info,
            lambda work: staff.release_hold(
                work.session,
                work.actor,
                hold_id=parse_id(input.id),
                reason=input.reason,
                request_id=work.request_id,
            ),
            _hold_payload,
        )

    @strawberry.mutation(
        permission_classes=[IsSupport],
        description="For a person who asked support to stop marketing: every consent-based "
        "message off, recorded as done by you. Audited.",
    )
    async def staff_opt_out_of_marketing(
        self, info: Info, input: StaffOptOutInput
    ) -> AccountPayload:
        return await mutate(
            info,
            lambda work: staff.opt_out_for(
                work.session,
                work.actor,
                account_id=parse_id(input.account_id),
                reason=input.reason,
                request_id=work.request_id,
            ),
            AccountPayload.of,
            changed=lambda account: [account.id],
        )
