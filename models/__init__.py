"""SQLAlchemy models, the engine and the session factory."""

from models.account import Account, AuthSession, Role
from models.base import Base, utcnow
from models.consent import ConsentActor, ConsentEvent, Source
from models.database import Database
from models.policy import PolicyVersion
from models.settings import AccountSetting, IdempotencyKey

__all__ = [
    "Account",
    "AccountSetting",
    "AuthSession",
    "Base",
    "ConsentActor",
    "ConsentEvent",
    "Database",
    "IdempotencyKey",
    "PolicyVersion",
    "Role",
    "Source",
    "utcnow",
]
