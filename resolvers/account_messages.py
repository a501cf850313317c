"""The words of the messages that signing up and resetting a password send: one function per
kind, so each message's subject and body live in one place (and can move into a template whole).

A secret (code or token) is never written into a body: the body says where it goes with
`notifications.PLACEHOLDER`, and the caller queues the secret beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import NotificationKind
from resolvers.notifications import PLACEHOLDER


@dataclass(frozen=True)
class Message:
    kind: NotificationKind
    subject: str
    body: str


def signup_confirmation(link: str, valid_hours: int) -> Message:
    """To a new address: `link` already carries PLACEHOLDER where the code goes."""
    return Message(
        NotificationKind.SIGNUP_CONFIRMATION,
        "Confirm your email address to create your account",
        "Someone, hopefully you, asked to create an account with this address. To create it, "
        f"open {link} or enter this code in the app: {PLACEHOLDER}\n"
        f"The code works for {valid_hours} hours. If it was not you, ignore this message: "
        "no account is created without it.",
    )


def signup_attempt_existing() -> Message:
    """To the owner of an address that someone tried to sign up with."""
    return Message(
        NotificationKind.SIGNUP_ATTEMPT_EXISTING,
        "Someone tried to sign up with your email address",
        "Someone tried to create a new account with this address, which already has an account "
        "with us. Nothing was changed and no new account was created.\n"
        "If it was you, sign in instead; if you have forgotten your password, ask for a new "
        "one where you sign in.\n"
        "If it was not you, you can ignore this message.",
    )


def password_reset(link: str, valid_minutes: int) -> Message:
    """To an account's address: `link` already carries PLACEHOLDER where the token goes."""
    return Message(
        NotificationKind.PASSWORD_RESET,
        "Choose a new password",
        "Someone, hopefully you, asked to reset the password of the account with this address. "
        f"To choose a new password, open {link}\n"
        f"The link works once, for {valid_minutes} minutes. If it was not you, ignore this "
        "message: your password stays as it is.",
    )


def password_changed() -> Message:
    """To an account's address after its password was reset."""
    return Message(
        NotificationKind.PASSWORD_CHANGED,
        "Your password was changed",
        "The password of your account was changed, and every device signed in to it was "
        "signed out. If you did not do this, reset your password at once and contact us: your "
        "account may be in someone else's hands.",
    )
