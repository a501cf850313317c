"""SQLAlchemy models, the engine and the session factory."""

from models.account import (
    Account,
    AuthSession,
    FormerEmail,
    PasswordReset,
    PendingSignup,
    ProfileChange,
    Role,
)
from models.api_keys import ApiKey, ApiScope
from models.base import Base, utcnow
from models.consent import ConsentActor, ConsentEvent, Source
from models.database import Database
from models.notifications import DeliveryStatus, Notification, NotificationKind
from models.parental import ParentalConsent, ParentalDecision, ParentalRequest
from models.policy import PolicyVersion
from models.requests import DataExport, PrivacyRequest, RequestKind, RequestStatus
from models.settings import AccountSetting, IdempotencyKey
from models.staff import AuditEntry, LegalHold
from models.visitors import Visitor, VisitorConsentEvent
from models.webhooks import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)

__all__ = [
    "Account",
    "AccountSetting",
    "ApiKey",
    "ApiScope",
    "AuditEntry",
    "AuthSession",
    "Base",
    "ConsentActor",
    "ConsentEvent",
    "DataExport",
    "Database",
    "DeliveryStatus",
    "FormerEmail",
    "IdempotencyKey",
    "LegalHold",
    "Notification",
    "NotificationKind",
    "ParentalConsent",
    "ParentalDecision",
    "ParentalRequest",
    "PasswordReset",
    "PendingSignup",
    "PolicyVersion",
    "PrivacyRequest",
    "ProfileChange",
    "RequestKind",
    "RequestStatus",
    "Role",
    "Source",
    "Visitor",
    "VisitorConsentEvent",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookEventType",
    "utcnow",
]
