"""Checks and normal forms for what a person types in: email, password, name, phone, country."""

from __future__ import annotations

import unicodedata

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from resolvers.errors import ErrorCode, UserError

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
DISPLAY_NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254

# Passwords that appear near the top of every breach corpus; NIST 800-63B asks us to refuse them.
COMMON_PASSWORDS = frozenset(
    """
    12345678 123456789 1234567890 password password1 password123 passw0rd qwertyuiop
    qwerty123 11111111 00000000 iloveyou 1q2w3e4r 1q2w3e4r5t qwe12345 abc12345 abcd1234
    sunshine princess football baseball welcome1 welcome123 admin123 administrator
    letmein1 trustno1 starwars dragon123 superman 123123123 87654321 12341234 aa123456
    1qaz2wsx zaq12wsx changeme 11223344 88888888 asdfghjk asdfasdf qwertyui monkey123
    computer internet whatever michelle jennifer liverpool chelsea1 samsung1 q1w2e3r4
    q1w2e3r4t5 987654321 iloveyou1 master12 pokemon1 secret123 mustang1 shadow12
    """.split()
)


NUL = "\x00"


def nul_error(field: str) -> UserError:
    """Text that holds a NUL character: no one types one, and PostgreSQL text cannot store it."""
    return UserError(
        field, "Remove the NUL character (\\0): text cannot contain one.", ErrorCode.INVALID_INPUT
    )


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf") for char in value)


INVALID_EMAIL = "Enter a valid email address."
MIXED_SCRIPTS = (
    "Write each part of the address in one script: this one mixes letters of different "
    "scripts that look alike (such as a Cyrillic \u0430 among Latin letters)."
)
LOOK_ALIKE_FORMS = (
    "Type the address with plain letters: it holds a look-alike form of one (such as \u017f for s, "
    "\ufb01 for fi, or a full-width letter)."
)

# Scripts that UTS #39 lets one identifier mix ("highly restrictive"): Latin with the scripts
# Japanese, Chinese and Korean are written in beside it. Any other mix is refused.
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# First words of character names that are not the name of the character's script.
_SCRIPT_OF_WORD = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "KATAKANA-HIRAGANA": "KATAKANA",
    "ARABIC-INDIC": "ARABIC",
}


def _script(char: str) -> str | None:
    """The script of a letter or digit, as the first word of its Unicode name says (LATIN,
    CYRILLIC, GREEK, ...); None for what every script uses (ASCII digits, punctuation, marks)."""
    if char.isascii():
        return "LATIN" if char.isalpha() else None
    if unicodedata.category(char)[0] not in "LN":
        return None
    word = unicodedata.name(char, "UNNAMED").split(" ", 1)[0]
    return _SCRIPT_OF_WORD.get(word, word)


def look_alike_problem(part: str) -> str | None:
    """Why a part of an address (the local part, or one label of the domain) could pass for
    another that is not the same mailbox, or None: a compatibility form (NFKC would change it),
    or letters of scripts that are not written together (UTS #39)."""
    if unicodedata.normalize("NFKC", part) != part:
        return LOOK_ALIKE_FORMS
    scripts = {script for script in map(_script, part) if script is not None}
    if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
        return MIXED_SCRIPTS
    return None


def _checked_email(raw: str) -> tuple[str | None, str]:
    """The canonical form of an address, or None and what to tell the person."""
    candidate = raw.strip()
    if not candidate or len(candidate) > EMAIL_MAX_LENGTH:
        return None, INVALID_EMAIL
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return None, INVALID_EMAIL
    email = checked.normalized.lower()
    local_part, _, domain = email.rpartition("@")
    # Two addresses a person on staff cannot tell apart must not make two accounts: each part
    # is checked as UTS #39 checks an identifier (the domain label by label, as IDNA keeps it).
    for part in (local_part, *domain.split(".")):
        problem = look_alike_problem(part)
        if problem is not None:
            return None, problem
    return email, ""


def normalize_email(raw: str) -> str | None:
    """The canonical form of an email address, or None when it is not a usable address."""
    return _checked_email(raw)[0]


def email_errors(raw: str) -> tuple[str | None, list[UserError]]:
    email, problem = _checked_email(raw)
    if email is None:
        return None, [UserError("email", problem, ErrorCode.INVALID_EMAIL)]
    return email, []


def password_errors(password: str, email: str | None, field: str = "password") -> list[UserError]:
    def weak(message: str) -> list[UserError]:
        return [UserError(field, message, ErrorCode.WEAK_PASSWORD)]

    if len(password) < PASSWORD_MIN_LENGTH:
        return weak(f"Use at least {PASSWORD_MIN_LENGTH} characters.")
    if len(password) > PASSWORD_MAX_LENGTH:
        return weak(f"Use at most {PASSWORD_MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS:
        return weak("This password is too common; choose another.")
    if email and (lowered == email or lowered == email.split("@", 1)[0]):
        return weak("Do not use your email address as your password.")
    return []


def display_name_errors(raw: str) -> tuple[str, list[UserError]]:
    name = raw.strip()
    if not name or len(name) > DISPLAY_NAME_MAX_LENGTH or _has_control_characters(name):
        message = f"Enter a name of 1 to {DISPLAY_NAME_MAX_LENGTH} printable characters."
        return name, [UserError("displayName", message, ErrorCode.INVALID_DISPLAY_NAME)]
    return name, []


# Codes people type that ISO 3166-1 spells otherwise: the EU's own code for Greece, and the UK's
# common abbreviation (its ISO code is GB).
COUNTRY_ALIASES = {"EL": "GR", "UK": "GB"}


def country_errors(raw: str) -> tuple[str, list[UserError]]:
    code = raw.strip().upper()
    code = COUNTRY_ALIASES.get(code, code)
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        message = "Use a two-letter ISO 3166-1 country code, such as DE or US."
        return code, [UserError("country", message, ErrorCode.INVALID_COUNTRY)]
    return code, []


def us_state_errors(raw: str | None, country: str | None) -> tuple[str | None, list[UserError]]:
    """The state of someone in the US as its ISO 3166-2 code (US-CA; CA is read as US-CA); None
    when none is given. A state is refused for any other country."""
    if raw is None or not raw.strip():
        return None, []
    code = raw.strip().upper()
    code = code if code.startswith("US-") else f"US-{code}"
    if country != "US":
        message = "A state is given only for someone in the United States (country US)."
        return None, [UserError("usState", message, ErrorCode.INVALID_INPUT)]
    subdivision = pycountry.subdivisions.get(code=code) if len(code) <= 6 else None
    if subdivision is None:
        message = "Use the state's ISO 3166-2 code, such as US-CA or CA."
        return None, [UserError("usState", message, ErrorCode.INVALID_INPUT)]
    return code, []


def phone_errors(raw: str | None, country: str | None) -> tuple[str | None, list[UserError]]:
    """The number in E.164 form; a national number is read in the person's country."""
    if raw is None or not raw.strip():
        return None, []
    invalid = [
        UserError(
            "phone", "Enter a valid phone number, such as +4915123456789.", ErrorCode.INVALID_PHONE
        )
    ]
    if len(raw) > 32:
        return None, invalid
    try:
        number = phonenumbers.parse(raw, country or None)
    except phonenumbers.NumberParseException:
        return None, invalid
    if not phonenumbers.is_valid_number(number):
        return None, invalid
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), []
