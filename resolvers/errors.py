"""What can go wrong that the person can fix: error codes and the exception that carries them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from auth.rate_limits import Refusal


class ErrorCode(enum.Enum):
    INVALID_EMAIL = "INVALID_EMAIL"
    EMAIL_UNAVAILABLE = "EMAIL_UNAVAILABLE"
    WEAK_PASSWORD = "WEAK_PASSWORD"  # noqa: S105 (an error code, not a secret)
    INVALID_DISPLAY_NAME = "INVALID_DISPLAY_NAME"
    INVALID_PHONE = "INVALID_PHONE"
    INVALID_COUNTRY = "INVALID_COUNTRY"
    INVALID_BIRTH_DATE = "INVALID_BIRTH_DATE"
    AGE_RESTRICTED = "AGE_RESTRICTED"
    POLICY_OUTDATED = "POLICY_OUTDATED"
    POLICY_VERSION_EXISTS = "POLICY_VERSION_EXISTS"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    DELETION_NOT_CANCELLABLE = "DELETION_NOT_CANCELLABLE"
    PROCESSING_SUSPENDED = "PROCESSING_SUSPENDED"
    INVALID_INPUT = "INVALID_INPUT"
    SETTING_LOCKED = "SETTING_LOCKED"
    PARENTAL_CONSENT_REQUIRED = "PARENTAL_CONSENT_REQUIRED"
    PARENTAL_CONSENT_NOT_NEEDED = "PARENTAL_CONSENT_NOT_NEEDED"
    MINOR_PROTECTED = "MINOR_PROTECTED"
    CORRECTION_REQUIRED = "CORRECTION_REQUIRED"
    PHONE_REQUIRED = "PHONE_REQUIRED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"


@dataclass(frozen=True)
class UserError:
    field: str | None
    message: str
    code: ErrorCode
    # For RATE_LIMITED: the door that refused, and how long until it lets the next try in.
    refusal: Refusal | None = None


def waiting_time(seconds: int) -> str:
    """A wait in words, rounded up in the unit a person would use: "90 seconds", "15 minutes",
    "3 hours"."""
    for unit, length in (("hour", 3600), ("minute", 60)):
        if seconds >= 2 * length:
            return f"{-(-seconds // length)} {unit}s"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


class Rejected(Exception):
    """Raised by a use case to refuse a change; nothing it started is kept."""

    def __init__(self, *errors: UserError) -> None:
        super().__init__(", ".join(error.code.value for error in errors))
        self.errors = list(errors)

    @classmethod
    def one(cls, code: ErrorCode, message: str, field: str | None = None) -> Rejected:
        return cls(UserError(field=field, message=message, code=code))

    @classmethod
    def rate_limited(cls, reason: str, refusal: Refusal, field: str | None = None) -> Rejected:
        """RATE_LIMITED, saying why and how long to wait (as `RateLimiter.admit` refused)."""
        message = f"{reason}; try again in {waiting_time(refusal.retry_after)}."
        return cls(UserError(field, message, ErrorCode.RATE_LIMITED, refusal))
