"""SQLAlchemy models, the engine and the session factory."""

from models.account import Account, AuthSession, Role
from models.base import Base, utcnow
from models.database import Database
from models.policy import PolicyVersion

__all__ = ["Account", "AuthSession", "Base", "Database", "PolicyVersion", "Role", "utcnow"]
