"""SQLAlchemy models, the engine and the session factory."""

from models.account import Account, AuthSession, ProfileChange, Role
from models.base import Base, utcnow
from models.consent import ConsentActor, ConsentEvent, Source
from models.database import Database
from models.notifications import Notification, NotificationKind
from models.policy import PolicyVersion
from models.requests import DataExport, PrivacyRequest, RequestKind, RequestStatus
from models.settings import AccountSetting, IdempotencyKey
from models.staff import AuditEntry, LegalHold
from models.visitors import Visitor, VisitorConsentEvent

__all__ = [
    "Account",
    "AccountSetting",
    "AuditEntry",
    "AuthSession",
    "Base",
    "ConsentActor",
    "ConsentEvent",
    "DataExport",
    "Database",
    "IdempotencyKey",
    "LegalHold",
    "Notification",
    "NotificationKind",
    "PolicyVersion",
    "PrivacyRequest",
    "ProfileChange",
    "RequestKind",
    "RequestStatus",
    "Role",
    "Source",
    "Visitor",
    "VisitorConsentEvent",
    "utcnow",
]
