"""Privacy settings, the catalogue, consent history and profiles as others see them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.permission import BasePermission
from strawberry.scalars import JSON

from auth.permissions import IsAuthenticated
from models import ConsentActor, ConsentEvent, Source, VisitorConsentEvent
from resolvers import catalogue, consent, erasure, profiles, receipts
from resolvers import settings as use_cases
from resolvers.catalogue import (
    Audience,
    Channel,
    CookieCategory,
    LegalBasis,
    Purpose,
    SettingDefinition,
    SettingGroup,
    SettingKind,
    Topic,
    VisibilityField,
)
from resolvers.pages import page_request
from schema.context import RequestContext
from schema.errors import UserErrorType
from schema.ids import parse_id
from schema.pages import PageInfo, checked, load_page

if TYPE_CHECKING:
    from schema.account import AccountType

ChannelEnum = strawberry.enum(Channel, name="Channel")
TopicEnum = strawberry.enum(Topic, name="Topic")
PurposeEnum = strawberry.enum(Purpose, name="Purpose", description="What shared data is used for.")
AudienceEnum = strawberry.enum(Audience, name="Audience", description="Who may see something.")
CookieCategoryEnum = strawberry.enum(CookieCategory, name="CookieCategory")
SettingGroupEnum = strawberry.enum(SettingGroup, name="SettingGroup")
SettingKindEnum = strawberry.enum(SettingKind, name="SettingKind")
LegalBasisEnum = strawberry.enum(LegalBasis, name="LegalBasis")
ConsentActorEnum = strawberry.enum(ConsentActor, name="ConsentActor")
SourceEnum = strawberry.enum(Source, name="ConsentSource")

Info = strawberry.Info[RequestContext]
SUSPENDED = (
    "Chosen on, but off while a deletion is pending (`Account.processingSuspended`); the "
    "choice comes back if the deletion is cancelled."
)


@strawberry.type(description="One setting as the catalogue defines it.")
class SettingDefinitionType:
    key: str
    group: SettingGroupEnum  # type: ignore[valid-type]
    kind: SettingKindEnum  # type: ignore[valid-type]
    default_value: str = strawberry.field(description="`true`/`false`, or an Audience name.")
    legal_basis: LegalBasisEnum  # type: ignore[valid-type]
    locked: bool = strawberry.field(description="Cannot be changed by anyone.")
    withheld_from_minors: bool = strawberry.field(
        description="Cannot be switched on (or made PUBLIC) below the age of digital consent."
    )
    requires_phone: bool
    description: str
    channel: ChannelEnum | None  # type: ignore[valid-type]
    topic: TopicEnum | None  # type: ignore[valid-type]
    purpose: PurposeEnum | None  # type: ignore[valid-type]
    cookie_category: CookieCategoryEnum | None  # type: ignore[valid-type]

    @classmethod
    def from_domain(cls, setting: SettingDefinition) -> SettingDefinitionType:
        return cls(
            key=setting.key,
            group=setting.group,
            kind=setting.kind,
            default_value=setting.encode(setting.default),
            legal_basis=setting.legal_basis,
            locked=setting.locked,
            withheld_from_minors=setting.withheld_from_minors,
            requires_phone=setting.needs_phone,
            description=setting.description,
            channel=setting.channel,
            topic=setting.topic,
            purpose=setting.purpose,
            cookie_category=setting.cookie,
        )


@strawberry.type
class CommunicationPreference:
    channel: ChannelEnum  # type: ignore[valid-type]
    topic: TopicEnum  # type: ignore[valid-type]
    enabled: bool = strawberry.field(
        description="Whether messages may be sent: false while `suspended`, whatever was chosen."
    )
    locked: bool
    updated_at: datetime | None = strawberry.field(
        description="When it last changed; signup for a default, null if added since."
    )
    suspended: bool = strawberry.field(description=SUSPENDED)


@strawberry.type
class DataSharingSetting:
    purpose: PurposeEnum  # type: ignore[valid-type]
    enabled: bool = strawberry.field(
        description="Whether data may be used for it: false while `suspended`."
    )
    description: str
    updated_at: datetime | None
    suspended: bool = strawberry.field(description=SUSPENDED)


@strawberry.type
class VisibilitySettings:
    profile: AudienceEnum  # type: ignore[valid-type]
    email: AudienceEnum  # type: ignore[valid-type]
    phone: AudienceEnum  # type: ignore[valid-type]
    search_engine_indexing: bool


@strawberry.type
class CookieConsent:
    strictly_necessary: bool
    functional: bool
    analytics: bool
    advertising: bool
    gpc_applied: bool = strawberry.field(
        description="A Global Privacy Control signal was received (at signup or since): "
        "advertising and partner sharing are kept off, unless the person chose otherwise."
    )
    gpc_conflict: bool = strawberry.field(
        description="The person switched on a setting the GPC signal opts out of, after "
        "sending the signal: the choice stands until switched off again."
    )
    gpc_conflict_keys: list[str] = strawberry.field(
        description="The catalogue keys of those settings (advertising cookies, partner "
        "sharing), empty when there is no conflict."
    )
    updated_at: datetime | None
    suspended: list[CookieCategoryEnum] = strawberry.field(  # type: ignore[valid-type]
        description="Categories chosen on but read as off while a deletion is pending; they "
        "come back if it is cancelled."
    )


@strawberry.type
class ConsentEventType:
    id: strawberry.ID
    key: str = strawberry.field(description="A catalogue key, or `policy` for an acceptance.")
    old_value: str | None
    new_value: str
    actor: ConsentActorEnum  # type: ignore[valid-type]
    source: SourceEnum  # type: ignore[valid-type]
    policy_version: str = strawberry.field(description="The version in force at the time.")
    accepted_policy_version: str | None = strawberry.field(
        description="The version the person had accepted at the time (older than the one in "
        "force while a material change waits for their acceptance)."
    )
    occurred_at: datetime
    request_id: str | None
    session_id: strawberry.ID | None = strawberry.field(
        description="The signed-in session the person made the change through (as in `sessions`)."
    )
    user_agent: str | None = strawberry.field(
        description="What the person's client said it was, as sent (truncated)."
    )

    @classmethod
    def from_model(cls, event: ConsentEvent | VisitorConsentEvent) -> ConsentEventType:
        return cls(
            id=strawberry.ID(str(event.id)),
            key=event.key,
            old_value=event.old_value,
            new_value=event.new_value,
            actor=event.actor,
            source=event.source,
            policy_version=event.policy_version,
            accepted_policy_version=event.accepted_policy_version,
            occurred_at=event.occurred_at,
            request_id=event.request_id,
            session_id=strawberry.ID(str(event.session_id)) if event.session_id else None,
            user_agent=event.user_agent,
        )


@strawberry.type
class ConsentEventEdge:
    cursor: str
    node: ConsentEventType


@strawberry.type
class ConsentEventConnection:
    edges: list[ConsentEventEdge]
    page_info: PageInfo


def _values(
    settings: use_cases.Settings, group: SettingGroup
) -> list[tuple[SettingDefinition, use_cases.CurrentValue]]:
    return [(s, settings[s.key]) for s in catalogue.in_group(group)]


def _held_back(
    processing_suspended: bool, setting: SettingDefinition, value: catalogue.Value
) -> bool:
    return processing_suspended and erasure.suspended_by_deletion(setting, value)


@strawberry.type
class AccountSettingsFields:
    """The settings side of Account; AccountType inherits these fields."""

    _model_id: strawberry.Private[uuid.UUID]
    _gpc_applied: strawberry.Private[bool]
    _processing_suspended: strawberry.Private[bool]

    @strawberry.field(
        description="A deletion is pending: the profile is hidden from others, and consent-based "
        "settings read as off (`enabled: false`, `suspended: true`) until it is cancelled."
    )
    def processing_suspended(self) -> bool:
        return self._processing_suspended

    @strawberry.field(description="Every channel and topic, with whether it is on.")
    async def communication_preferences(self, info: Info) -> list[CommunicationPreference]:
        settings = await info.context.settings_of(self._model_id)
        return [
            CommunicationPreference(
                channel=s.channel,
                topic=s.topic,
                enabled=current.value is True and not held_back,
                locked=s.locked,
                updated_at=current.updated_at,
                suspended=held_back,
            )
            for s, current in _values(settings, SettingGroup.COMMUNICATION)
            for held_back in [_held_back(self._processing_suspended, s, current.value)]
        ]

    @strawberry.field
    async def data_sharing(self, info: Info) -> list[DataSharingSetting]:
        settings = await info.context.settings_of(self._model_id)
        return [
            DataSharingSetting(
                purpose=s.purpose,
                enabled=current.value is True and not held_back,
                description=s.description,
                updated_at=current.updated_at,
                suspended=held_back,
            )
            for s, current in _values(settings, SettingGroup.DATA_SHARING)
            for held_back in [_held_back(self._processing_suspended, s, current.value)]
        ]

    @strawberry.field
    async def visibility(self, info: Info) -> VisibilitySettings:
        settings = await info.context.settings_of(self._model_id)

        def value(field: VisibilityField) -> catalogue.Value:
            return settings[catalogue.visibility(field).key].value

        return VisibilitySettings(
            profile=value(VisibilityField.PROFILE),
            email=value(VisibilityField.EMAIL),
            phone=value(VisibilityField.PHONE),
            search_engine_indexing=value(VisibilityField.SEARCH_ENGINE_INDEXING) is True,
        )

    @strawberry.field
    async def cookie_consent(self, info: Info) -> CookieConsent:
        settings = await info.context.settings_of(self._model_id)
        return cookie_consent_of(settings, self._gpc_applied, self._processing_suspended)

    @strawberry.field(
        description="A signed, machine-readable receipt of one event of your consent history "
        '(`consentHistory` ids): see the README, "Consent receipts".'
    )
    async def consent_receipt(self, info: Info, event_id: strawberry.ID) -> JSON:
        context = info.context
        receipt = await context.answer(
            lambda session: receipts.account_receipt(
                session,
                context.services.receipts,
                self._model_id,
                str(event_id),
                issuer=context.services.config.public_url,
                keys_url=context.services.links.receipt_keys(),
            )
        )
        return JSON(receipt)

    @strawberry.field(description="Every recorded change of consent, newest first.")
    async def consent_history(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        key: Annotated[
            str | None,
            strawberry.argument(description="Only events of this catalogue key (or `policy`)."),
        ] = None,
    ) -> ConsentEventConnection:
        query = checked(
            lambda: consent.HistoryQuery(page_request(first, after, consent.HISTORY), key)
        )
        page = await load_page(info.context, consent.consent_histories, self._model_id, query)
        edges = [
            ConsentEventEdge(cursor=page.cursor(event), node=ConsentEventType.from_model(event))
            for event in page.items
        ]
        return ConsentEventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )


def cookie_consent_of(
    settings: use_cases.Settings, gpc_applied: bool, processing_suspended: bool
) -> CookieConsent:
    """The cookie choices of an account or a visitor, as the API shows them."""
    cookies = {s.cookie: current for s, current in _values(settings, SettingGroup.COOKIES)}
    changed = [c.updated_at for c in cookies.values() if c.updated_at is not None]
    conflicts = [
        s.key for s in catalogue.GPC_OPT_OUTS if settings[s.key].gpc_conflict_at is not None
    ]
    held_back = [
        s.cookie
        for s, current in _values(settings, SettingGroup.COOKIES)
        if _held_back(processing_suspended, s, current.value)
    ]

    def on(category: CookieCategory) -> bool:
        return cookies[category].value is True and category not in held_back

    return CookieConsent(
        strictly_necessary=on(CookieCategory.STRICTLY_NECESSARY),
        functional=on(CookieCategory.FUNCTIONAL),
        analytics=on(CookieCategory.ANALYTICS),
        advertising=on(CookieCategory.ADVERTISING),
        gpc_applied=gpc_applied,
        gpc_conflict=bool(conflicts),
        gpc_conflict_keys=conflicts,
        updated_at=max(changed, default=None),
        suspended=held_back,
    )


@strawberry.type(description="A profile as the viewer may see it; hidden fields are null.")
class PublicProfile:
    id: strawberry.ID
    display_name: str
    email: str | None
    phone: str | None
    search_engine_indexing: bool = strawberry.field(
        description="When false, pages showing this profile must carry noindex."
    )


@strawberry.type
class SettingsPayload:
    account: Annotated[AccountType, strawberry.lazy("schema.account")] | None
    errors: list[UserErrorType]


@strawberry.input
class CommunicationPreferenceInput:
    channel: ChannelEnum  # type: ignore[valid-type]
    topic: TopicEnum  # type: ignore[valid-type]
    enabled: bool
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key when retrying; the change is made once."
    )


@strawberry.input
class CommunicationChange:
    channel: ChannelEnum  # type: ignore[valid-type]
    topic: TopicEnum  # type: ignore[valid-type]
    enabled: bool


@strawberry.input
class CommunicationPreferencesInput:
    changes: list[CommunicationChange]
    idempotency_key: str | None = None


@strawberry.input
class DataSharingInput:
    purpose: PurposeEnum  # type: ignore[valid-type]
    enabled: bool
    idempotency_key: str | None = None


@strawberry.input(description="Fields left out stay as they are.")
class VisibilityInput:
    profile: AudienceEnum | None = None  # type: ignore[valid-type]
    email: AudienceEnum | None = None  # type: ignore[valid-type]
    phone: AudienceEnum | None = None  # type: ignore[valid-type]
    search_engine_indexing: bool | None = None
    idempotency_key: str | None = None


@strawberry.input(description="Strictly necessary cookies are always on. Left out: unchanged.")
class CookieConsentInput:
    functional: bool | None = None
    analytics: bool | None = None
    advertising: bool | None = None
    idempotency_key: str | None = None


@strawberry.input
class OptOutInput:
    idempotency_key: str | None = None


async def _change(
    info: Info, apply: use_cases.SettingsChange, **arguments: object
) -> SettingsPayload:
    """Run one settings use case for the signed-in person and answer with their account."""
    from schema.account import AccountType

    context = info.context
    actor = await context.signed_in()
    _, errors = await context.attempt(
        lambda session: apply(session, actor.account_id, context.provenance(), **arguments)
    )
    if errors:
        return SettingsPayload(account=None, errors=errors)
    context.forget_settings(actor.account_id)
    account = await context.account_of(actor.account_id)
    return SettingsPayload(account=AccountType.from_model(account), errors=[])


PERSON: list[type[BasePermission]] = [IsAuthenticated]


@strawberry.type
class SettingsQuery:
    @strawberry.field(description="Every setting a person can control. Needs no sign-in.")
    def privacy_catalogue(self) -> list[SettingDefinitionType]:
        return [SettingDefinitionType.from_domain(s) for s in catalogue.CATALOGUE]

    @strawberry.field(description="A profile as you may see it, or null when you may not.")
    async def public_profile(self, info: Info, id: strawberry.ID) -> PublicProfile | None:
        account_id = parse_id(id)
        viewer = await info.context.actor()
        async with info.context.reading() as session:
            profile = await profiles.public_profile(session, viewer, account_id)
        if profile is None or not profile.search_engine_indexing:
            info.context.response.headers["X-Robots-Tag"] = "noindex"
        if profile is None:
            return None
        return PublicProfile(
            id=strawberry.ID(str(profile.id)),
            display_name=profile.display_name,
            email=profile.email,
            phone=profile.phone,
            search_engine_indexing=profile.search_engine_indexing,
        )


@strawberry.type
class SettingsMutation:
    @strawberry.mutation(permission_classes=PERSON)
    async def set_communication_preference(
        self, info: Info, input: CommunicationPreferenceInput
    ) -> SettingsPayload:
        return await _change(
            info,
            use_cases.set_communication_preference,
            channel=input.channel,
            topic=input.topic,
            enabled=input.enabled,
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(permission_classes=PERSON, description="All or nothing.")
    async def update_communication_preferences(
        self, info: Info, input: CommunicationPreferencesInput
    ) -> SettingsPayload:
        return await _change(
            info,
            use_cases.update_communication_preferences,
            changes=[(c.channel, c.topic, c.enabled) for c in input.changes],
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(permission_classes=PERSON)
    async def set_data_sharing(self, info: Info, input: DataSharingInput) -> SettingsPayload:
        return await _change(
            info,
            use_cases.set_data_sharing,
            purpose=input.purpose,
            enabled=input.enabled,
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(permission_classes=PERSON)
    async def update_visibility(self, info: Info, input: VisibilityInput) -> SettingsPayload:
        return await _change(
            info,
            use_cases.update_visibility,
            profile=input.profile,
            email=input.email,
            phone=input.phone,
            search_engine_indexing=input.search_engine_indexing,
            idempotency_key=input.idempotency_key,
        )

    @strawberry.mutation(
        permission_classes=PERSON,
        description="Every consent-based message on every channel off, one event each.",
    )
    async def opt_out_of_marketing(
        self, info: Info, input: OptOutInput | None = None
    ) -> SettingsPayload:
        return await _change(
            info,
            use_cases.opt_out_of_marketing,
            idempotency_key=input.idempotency_key if input else None,
        )
