"""Privacy settings, the catalogue, consent history and profiles as others see them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from models import ConsentActor, ConsentEvent, Source, VisitorConsentEvent
from resolvers import catalogue, consent, erasure, public_profiles, receipts
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
from resolvers.paging import Tally, page_request
from schema.connections import Before, Last, PageInfo, checked, load_page, page_info, total_of
from schema.context import RequestContext
from schema.ids import parse_id

# strawberry.enum registers the domain's enum class itself, so fields are annotated with it.
strawberry.enum(Channel, name="Channel", description="How a message reaches the person.")
strawberry.enum(Topic, name="Topic", description="What a message is about.")
strawberry.enum(
    Purpose,
    name="Purpose",
    description="What shared data is used for. THIRD_PARTY_MARKETING (sharing with partners for "
    "their marketing) was withdrawn: we do not sell, trade or rent personal information.",
)
strawberry.enum(Audience, name="Audience", description="Who may see something.")
strawberry.enum(
    CookieCategory, name="CookieCategory", description="A kind of cookie, consented to as a group."
)
strawberry.enum(
    SettingGroup,
    name="SettingGroup",
    description="The part of the privacy settings a setting belongs to.",
)
strawberry.enum(
    SettingKind,
    name="SettingKind",
    description="Whether a setting is on/off or a choice of audience.",
)
strawberry.enum(
    LegalBasis,
    name="LegalBasis",
    description="Why the platform may process data for a setting (GDPR Art. 6).",
)
strawberry.enum(ConsentActor, name="ConsentActor", description="Who made a change of consent.")
strawberry.enum(
    Source, name="ConsentSource", description="Through what a change of consent arrived."
)

Info = strawberry.Info[RequestContext]
SUSPENDED = (
    "Chosen on, but off while a deletion is pending (`Account.processingSuspended`); the "
    "choice comes back if the deletion is cancelled."
)


@strawberry.interface(
    name="SettingDefinitionType",
    description="Deprecated, to be removed on 2027-06-01: the former name of SettingDefinition, "
    "kept so that fragments on it still match. Name SettingDefinition instead.",
)
class DeprecatedSettingDefinitionType:
    """The fields of SettingDefinition, under the SDL name it had before (README "Deprecations")."""

    key: str = strawberry.field(
        description="The setting's key, as in consent history and the export."
    )
    group: SettingGroup = strawberry.field(description="The part of the settings it belongs to.")
    kind: SettingKind
    default_value: str = strawberry.field(description="`true`/`false`, or an Audience name.")
    legal_basis: LegalBasis = strawberry.field(
        description="Why it may be processed; consent-based settings start off."
    )
    locked: bool = strawberry.field(description="Cannot be changed by anyone.")
    withheld_from_minors: bool = strawberry.field(
        description="Cannot be switched on (or made PUBLIC) below the age of digital consent."
    )
    parent_may_grant: bool = strawberry.field(
        description="A minor may ask a parent to consent to it (requestParentalConsent)."
    )
    requires_phone: bool = strawberry.field(
        description="Only with a phone number on the account (SMS)."
    )
    description: str = strawberry.field(description="What the setting does, in plain words.")
    channel: Channel | None
    topic: Topic | None
    purpose: Purpose | None
    cookie_category: CookieCategory | None = strawberry.field(
        description="The cookie category, for a cookie setting."
    )


@strawberry.type(name="SettingDefinition", description="One setting as the catalogue defines it.")
class SettingDefinitionType(DeprecatedSettingDefinitionType):
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
            parent_may_grant=setting.parent_may_grant,
            requires_phone=setting.needs_phone,
            description=setting.description,
            channel=setting.channel,
            topic=setting.topic,
            purpose=setting.purpose,
            cookie_category=setting.cookie,
        )


@strawberry.type(description="Whether messages of one topic may be sent on one channel.")
class CommunicationPreference:
    channel: Channel
    topic: Topic
    enabled: bool = strawberry.field(
        description="Whether messages may be sent: false while `suspended`, whatever was chosen."
    )
    locked: bool = strawberry.field(description="Cannot be turned off, such as security alerts.")
    updated_at: datetime | None = strawberry.field(
        description="When it last changed; signup for a default, null if added since."
    )
    suspended: bool = strawberry.field(description=SUSPENDED)

    @classmethod
    def of(
        cls,
        setting: SettingDefinition,
        current: use_cases.CurrentValue,
        processing_suspended: bool,
    ) -> CommunicationPreference:
        assert setting.channel is not None and setting.topic is not None, "a communication setting"
        now = erasure.effective(processing_suspended, setting, current.value)
        return cls(
            channel=setting.channel,
            topic=setting.topic,
            enabled=now.enabled,
            locked=setting.locked,
            updated_at=current.updated_at,
            suspended=now.suspended,
        )


@strawberry.type(description="Whether the person's data may be used for one purpose.")
class DataSharingSetting:
    purpose: Purpose
    enabled: bool = strawberry.field(
        description="Whether data may be used for it: false while `suspended`."
    )
    description: str = strawberry.field(description="What this use of data means, in plain words.")
    updated_at: datetime | None
    suspended: bool = strawberry.field(description=SUSPENDED)

    @classmethod
    def of(
        cls,
        setting: SettingDefinition,
        current: use_cases.CurrentValue,
        processing_suspended: bool,
    ) -> DataSharingSetting:
        assert setting.purpose is not None, "a data sharing setting"
        now = erasure.effective(processing_suspended, setting, current.value)
        return cls(
            purpose=setting.purpose,
            enabled=now.enabled,
            description=setting.description,
            updated_at=current.updated_at,
            suspended=now.suspended,
        )


@strawberry.type(
    description="Who may see the profile and each contact field, and whether search engines "
    "may index it.",
)
class VisibilitySettings:
    profile: Audience = strawberry.field(description="Who may see the profile at all.")
    email: Audience
    phone: Audience = strawberry.field(description="Who may see the phone number.")
    search_engine_indexing: bool = strawberry.field(
        description="Whether search engines may index the public profile."
    )


@strawberry.type(
    description="Consent per cookie category; strictly necessary cookies are always on.",
)
class CookieConsent:
    strictly_necessary: bool = strawberry.field(
        description="Always true: the site cannot work without them."
    )
    functional: bool = strawberry.field(description="Remembering choices such as language.")
    analytics: bool = strawberry.field(description="Measuring how the site is used.")
    advertising: bool = strawberry.field(description="Ads and the tracking behind them.")
    gpc_applied: bool = strawberry.field(
        description="A Global Privacy Control signal was received (at signup or since): "
        "advertising cookies are kept off, unless the person chose otherwise."
    )
    gpc_conflict: bool = strawberry.field(
        description="The person switched on a setting the GPC signal opts out of, after "
        "sending the signal: the choice stands until switched off again."
    )
    gpc_conflict_keys: list[str] = strawberry.field(
        description="The catalogue keys of those settings (advertising cookies), empty when "
        "there is no conflict."
    )
    updated_at: datetime | None
    suspended: list[CookieCategory] = strawberry.field(
        description="Categories chosen on but read as off while a deletion is pending; they "
        "come back if it is cancelled."
    )


@strawberry.interface(
    name="ConsentEventType",
    description="Deprecated, to be removed on 2027-06-01: the former name of ConsentEvent, kept "
    "so that fragments on it still match. Name ConsentEvent instead.",
)
class DeprecatedConsentEventType:
    """The fields of ConsentEvent, under the SDL name it had before (README "Deprecations")."""

    id: strawberry.ID
    key: str = strawberry.field(description="A catalogue key, or `policy` for an acceptance.")
    old_value: str | None = strawberry.field(
        description="The value before the change (`true`/`false` or an Audience name); null "
        "for the first."
    )
    new_value: str = strawberry.field(description="The value after the change.")
    actor: ConsentActor = strawberry.field(description="Who made the change.")
    source: Source = strawberry.field(description="Through what the change arrived.")
    policy_version: str = strawberry.field(description="The version in force at the time.")
    accepted_policy_version: str | None = strawberry.field(
        description="The version the person had accepted at the time (older than the one in "
        "force while a material change waits for their acceptance)."
    )
    occurred_at: datetime
    request_id: str | None = strawberry.field(
        description="The id of the HTTP request that made the change, to trace it in the logs."
    )
    session_id: strawberry.ID | None = strawberry.field(
        description="The signed-in session the person made the change through (as in `sessions`)."
    )
    user_agent: str | None = strawberry.field(
        description="What the person's client said it was, as sent (truncated)."
    )


@strawberry.type(
    name="ConsentEvent",
    description="One change of consent in the append-only ledger: who, what, from which value "
    "to which, and under which policy.",
)
class ConsentEventType(DeprecatedConsentEventType):
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


@strawberry.type(description="One consent event and the cursor that pages on from it.")
class ConsentEventEdge:
    cursor: str
    node: ConsentEventType


@strawberry.type(description="A page of consent events, newest first.")
class ConsentEventConnection:
    edges: list[ConsentEventEdge]
    page_info: PageInfo
    tally: strawberry.Private[Tally | None] = None

    @strawberry.field(
        description="How many events the whole history holds (of the key asked, if one was), "
        "every page together (counted only when asked)."
    )
    async def total_count(self, info: Info) -> int:
        return await total_of(info.context, self.tally)


def _values(
    settings: use_cases.Settings, group: SettingGroup
) -> list[tuple[SettingDefinition, use_cases.CurrentValue]]:
    return [(s, settings[s.key]) for s in catalogue.in_group(group)]


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
            CommunicationPreference.of(s, current, self._processing_suspended)
            for s, current in _values(settings, SettingGroup.COMMUNICATION)
        ]

    @strawberry.field(description="Every use of the person's data, with whether it is allowed.")
    async def data_sharing(self, info: Info) -> list[DataSharingSetting]:
        settings = await info.context.settings_of(self._model_id)
        return [
            DataSharingSetting.of(s, current, self._processing_suspended)
            for s, current in _values(settings, SettingGroup.DATA_SHARING)
        ]

    @strawberry.field(description="Who may see the profile and each contact field.")
    async def visibility(self, info: Info) -> VisibilitySettings:
        settings = await info.context.settings_of(self._model_id)

        def value(field: VisibilityField) -> catalogue.Value:
            return settings[catalogue.visibility(field).key].value

        def audience(field: VisibilityField) -> Audience:
            chosen = value(field)
            assert isinstance(chosen, Audience), "an AUDIENCE setting holds an Audience"
            return chosen

        return VisibilitySettings(
            profile=audience(VisibilityField.PROFILE),
            email=audience(VisibilityField.EMAIL),
            phone=audience(VisibilityField.PHONE),
            search_engine_indexing=value(VisibilityField.SEARCH_ENGINE_INDEXING) is True,
        )

    @strawberry.field(description="Consent per cookie category.")
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
        last: Last = None,
        before: Before = None,
    ) -> ConsentEventConnection:
        query = checked(
            lambda: consent.HistoryQuery(
                page_request(first, after, consent.HISTORY, last=last, before=before), key
            )
        )
        page = await load_page(info.context, consent.consent_histories, self._model_id, query)
        edges = [
            ConsentEventEdge(cursor=page.cursor(event), node=ConsentEventType.from_model(event))
            for event in page.items
        ]
        return ConsentEventConnection(
            edges=edges,
            page_info=page_info(page, [edge.cursor for edge in edges]),
            tally=page.tally,
        )


def cookie_consent_of(
    settings: use_cases.Settings, gpc_applied: bool, processing_suspended: bool
) -> CookieConsent:
    """The cookie choices of an account or a visitor, as the API shows them."""
    values = _values(settings, SettingGroup.COOKIES)
    cookies = {
        category: erasure.effective(processing_suspended, s, settings[s.key].value)
        for category in CookieCategory
        for s in [catalogue.cookie(category)]
    }
    changed = [current.updated_at for _, current in values if current.updated_at is not None]
    conflicts = [
        s.key for s in catalogue.GPC_OPT_OUTS if settings[s.key].gpc_conflict_at is not None
    ]
    held_back = [category for category, now in cookies.items() if now.suspended]

    def on(category: CookieCategory) -> bool:
        return cookies[category].enabled

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
    phone: str | None = strawberry.field(description="Only when its owner lets the caller see it.")
    search_engine_indexing: bool = strawberry.field(
        description="When false, pages showing this profile must carry noindex."
    )


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
            profile = await public_profiles.public_profile(session, viewer, account_id)
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
