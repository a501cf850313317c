"""The catalogue: every setting a person controls, in one place.

Defaults, validation, the export, the GraphQL docs and the `privacyCatalogue` query all read it.
Adding a setting is one entry here plus a test; accounts made before it read its default until
they change it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache


class SettingGroup(enum.Enum):
    COMMUNICATION = "communication"
    DATA_SHARING = "data_sharing"
    VISIBILITY = "visibility"
    COOKIES = "cookies"


class SettingKind(enum.Enum):
    TOGGLE = "toggle"
    AUDIENCE = "audience"


class LegalBasis(enum.Enum):
    CONSENT = "consent"
    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"


class Channel(enum.Enum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Topic(enum.Enum):
    SERVICE_UPDATES = "service_updates"
    SECURITY_ALERTS = "security_alerts"
    NEWSLETTER = "newsletter"
    MARKETING = "marketing"
    RECOMMENDATIONS = "recommendations"
    SURVEYS_AND_PROMOTIONS = "surveys_and_promotions"


class Purpose(enum.Enum):
    USAGE_ANALYTICS = "usage_analytics"
    PERSONALIZATION = "personalization"
    RESEARCH = "research"


class Audience(enum.Enum):
    PUBLIC = "public"
    MEMBERS = "members"
    PRIVATE = "private"


class VisibilityField(enum.Enum):
    PROFILE = "profile"
    EMAIL = "email"
    PHONE = "phone"
    SEARCH_ENGINE_INDEXING = "search_engine_indexing"


class CookieCategory(enum.Enum):
    STRICTLY_NECESSARY = "strictly_necessary"
    FUNCTIONAL = "functional"
    ANALYTICS = "analytics"
    ADVERTISING = "advertising"


Value = bool | Audience


@dataclass(frozen=True)
class SettingDefinition:
    key: str
    group: SettingGroup
    kind: SettingKind
    default: Value
    legal_basis: LegalBasis
    description: str
    can_turn_off: bool = True
    # For a minor: a toggle cannot be switched on, an audience cannot be PUBLIC.
    withheld_from_minors: bool = False
    needs_phone: bool = False
    channel: Channel | None = None
    topic: Topic | None = None
    purpose: Purpose | None = None
    visibility: VisibilityField | None = None
    cookie: CookieCategory | None = None

    @property
    def locked(self) -> bool:
        return not self.can_turn_off

    def encode(self, value: Value) -> str:
        """Values are stored, and recorded in the ledger, as text."""
        if isinstance(value, Audience):
            return value.name
        return "true" if value else "false"

    def decode(self, text: str) -> Value:
        if self.kind is SettingKind.AUDIENCE:
            return Audience[text]
        return text == "true"

    @property
    def parent_may_grant(self) -> bool:
        """Whether a parent may consent to this for a minor (GDPR Art. 8(2)): an on/off setting
        withheld from minors. Who may see a minor's profile stays out of a parent's reach: a
        teen's profile is never made public."""
        return (
            self.withheld_from_minors
            and self.kind is SettingKind.TOGGLE
            and (self.group is not SettingGroup.VISIBILITY)
        )

    def withheld(self, value: Value) -> bool:
        """Whether a minor may not choose this value."""
        if not self.withheld_from_minors:
            return False
        return value is Audience.PUBLIC or value is True


_TOPICS: dict[Topic, tuple[LegalBasis, str]] = {
    Topic.SERVICE_UPDATES: (
        LegalBasis.CONTRACT,
        "Changes to the service you use: new features, maintenance, changes to terms.",
    ),
    Topic.SECURITY_ALERTS: (
        LegalBasis.LEGITIMATE_INTEREST,
        "Sign-ins from new devices, password changes and other events that protect your account.",
    ),
    Topic.NEWSLETTER: (LegalBasis.CONSENT, "Our newsletter about the CMS platform."),
    Topic.MARKETING: (LegalBasis.CONSENT, "Offers and news about our products."),
    Topic.RECOMMENDATIONS: (
        LegalBasis.CONSENT,
        "Content and features we think you may like, based on how you use the platform.",
    ),
    Topic.SURVEYS_AND_PROMOTIONS: (
        LegalBasis.CONSENT,
        "Invitations to surveys, competitions and promotions.",
    ),
}
_CHANNEL_NAMES = {
    Channel.EMAIL: "email",
    Channel.SMS: "text message",
    Channel.PUSH: "app notification",
}


def _communication(channel: Channel, topic: Topic) -> SettingDefinition:
    basis, description = _TOPICS[topic]
    by_consent = basis is LegalBasis.CONSENT
    # Service and security messages reach you by email and app by default; SMS only when asked.
    default = not by_consent and channel is not Channel.SMS
    locked = channel is Channel.EMAIL and topic is Topic.SECURITY_ALERTS
    return SettingDefinition(
        key=f"communication.{channel.value}.{topic.value}",
        group=SettingGroup.COMMUNICATION,
        kind=SettingKind.TOGGLE,
        default=default,
        legal_basis=basis,
        description=f"{description} By {_CHANNEL_NAMES[channel]}.",
        can_turn_off=not locked,
        withheld_from_minors=by_consent,
        needs_phone=channel is Channel.SMS,
        channel=channel,
        topic=topic,
    )


def _data_sharing(purpose: Purpose, description: str) -> SettingDefinition:
    return SettingDefinition(
        key=f"data_sharing.{purpose.value}",
        group=SettingGroup.DATA_SHARING,
        kind=SettingKind.TOGGLE,
        default=False,
        legal_basis=LegalBasis.CONSENT,
        description=description,
        withheld_from_minors=True,
        purpose=purpose,
    )


def _visibility(field: VisibilityField, description: str) -> SettingDefinition:
    indexing = field is VisibilityField.SEARCH_ENGINE_INDEXING
    return SettingDefinition(
        key=f"visibility.{field.value}",
        group=SettingGroup.VISIBILITY,
        kind=SettingKind.TOGGLE if indexing else SettingKind.AUDIENCE,
        default=False if indexing else Audience.PRIVATE,
        legal_basis=LegalBasis.CONSENT,
        description=description,
        withheld_from_minors=True,
        visibility=field,
    )


def _cookie(category: CookieCategory, description: str) -> SettingDefinition:
    necessary = category is CookieCategory.STRICTLY_NECESSARY
    return SettingDefinition(
        key=f"cookies.{category.value}",
        group=SettingGroup.COOKIES,
        kind=SettingKind.TOGGLE,
        default=necessary,
        legal_basis=LegalBasis.LEGITIMATE_INTEREST if necessary else LegalBasis.CONSENT,
        description=description,
        can_turn_off=not necessary,
        withheld_from_minors=not necessary,
        cookie=category,
    )


CATALOGUE: tuple[SettingDefinition, ...] = (
    *(_communication(channel, topic) for topic in Topic for channel in Channel),
    _data_sharing(
        Purpose.USAGE_ANALYTICS,
        "Use how you move through the platform, without your content, to find and fix problems.",
    ),
    _data_sharing(
        Purpose.PERSONALIZATION,
        "Tailor what you see (dashboards, suggestions) to how you use the platform.",
    ),
    _data_sharing(
        Purpose.RESEARCH,
        "Include your usage, pseudonymised, in research that shapes new features.",
    ),
    _visibility(VisibilityField.PROFILE, "Who can see your profile (display name) at all."),
    _visibility(VisibilityField.EMAIL, "Who can see your email address on your profile."),
    _visibility(VisibilityField.PHONE, "Who can see your phone number on your profile."),
    _visibility(
        VisibilityField.SEARCH_ENGINE_INDEXING,
        "Let search engines list your public profile.",
    ),
    _cookie(
        CookieCategory.STRICTLY_NECESSARY,
        "Keep you signed in and the site secure. Always on: the site cannot work without them.",
    ),
    _cookie(CookieCategory.FUNCTIONAL, "Remember choices such as language and layout."),
    _cookie(CookieCategory.ANALYTICS, "Count visits and measure how pages perform."),
    _cookie(
        CookieCategory.ADVERTISING,
        "Show and measure ads based on your visits. Off under GPC.",
    ),
)

BY_KEY: dict[str, SettingDefinition] = {setting.key: setting for setting in CATALOGUE}


def communication(channel: Channel, topic: Topic) -> SettingDefinition:
    return BY_KEY[f"communication.{channel.value}.{topic.value}"]


def data_sharing(purpose: Purpose) -> SettingDefinition:
    return BY_KEY[f"data_sharing.{purpose.value}"]


def visibility(field: VisibilityField) -> SettingDefinition:
    return BY_KEY[f"visibility.{field.value}"]


def cookie(category: CookieCategory) -> SettingDefinition:
    return BY_KEY[f"cookies.{category.value}"]


@cache
def in_group(group: SettingGroup) -> tuple[SettingDefinition, ...]:
    return tuple(setting for setting in CATALOGUE if setting.group is group)


# Signals that switch off these settings without the person's explicit action.
GPC_OPT_OUTS: tuple[SettingDefinition, ...] = (cookie(CookieCategory.ADVERTISING),)
MARKETING_COMMUNICATIONS: tuple[SettingDefinition, ...] = tuple(
    setting
    for setting in CATALOGUE
    if setting.group is SettingGroup.COMMUNICATION and setting.legal_basis is LegalBasis.CONSENT
)
# What nobody below the age of digital consent may have: these settings' on (or PUBLIC) values.
WITHHELD_FROM_MINORS: tuple[SettingDefinition, ...] = tuple(
    setting for setting in CATALOGUE if setting.withheld_from_minors
)
# What a parent may switch on for a minor with their consent.
PARENT_MAY_GRANT: tuple[SettingDefinition, ...] = tuple(
    setting for setting in CATALOGUE if setting.parent_may_grant
)

# Settings taken out of the catalogue, and why: their old events stay in the ledger under the key,
# and a client that still names one is told this instead of "unknown key".
WITHDRAWN: dict[str, str] = {
    "data_sharing.third_party_marketing": (
        "Sharing with partners for their marketing was withdrawn, as we do not sell, trade or "
        "rent personal information: every choice of it was switched off."
    ),
}


def unknown_key(key: str) -> str:
    """What to tell a client that names `key`, which is not in the catalogue."""
    return WITHDRAWN.get(key) or (
        f"Unknown key {key[:64]!r}: use a catalogue key (privacyCatalogue) such as "
        "communication.email.marketing or data_sharing.research."
    )
