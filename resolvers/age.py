"""The age gate: age from a date of birth alone, and the age of digital consent by country.

Birthdays: a person reaches a new age on the anniversary of their birth date, once that day has
begun everywhere (in UTC-12), since the API does not know where they are. Someone born on
29 February reaches it on 1 March in years without a 29 February (the later of the two possible
days, so nobody is treated as older than they are).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

MINIMUM_AGE = 13
OLDEST_PLAUSIBLE_AGE = 120

# GDPR Art. 8 lets each EU/EEA state set the age of digital consent between 13 and 16;
# the UK keeps 13. Everywhere else this API uses 13.
DEFAULT_DIGITAL_CONSENT_AGE = 13
DIGITAL_CONSENT_AGE: dict[str, int] = {
    "AT": 14, "BE": 13, "BG": 14, "HR": 16, "CY": 14, "CZ": 15, "DK": 13, "EE": 13,
    "FI": 13, "FR": 15, "DE": 16, "GR": 15, "HU": 16, "IE": 16, "IT": 14, "LV": 13,
    "LT": 14, "LU": 16, "MT": 13, "NL": 16, "PL": 16, "PT": 13, "RO": 16, "SK": 16,
    "SI": 15, "ES": 14, "SE": 13, "IS": 13, "LI": 16, "NO": 13, "GB": 13,
    # France's outermost regions are part of the EU under their own ISO codes, so France's age
    # applies there. Its territories outside the EU (BL, PM, NC, PF, WF, TF) keep the default.
    "GP": 15, "GF": 15, "MQ": 15, "RE": 15, "YT": 15, "MF": 15,
}  # fmt: skip
# US state laws that protect teens' data from sale, sharing, targeted advertising or profiling
# unless they (or a parent) opt in, by ISO 3166-2 code: below the age, a person living there is
# a minor for this API, with the protection minors get everywhere (README, "US states"). States
# whose rules stop at 13 (COPPA's age, which nobody younger than can sign up anyway) keep 13.
US_STATE_CONSENT_AGE: dict[str, int] = {
    "US-CA": 16,  # CCPA as amended by the CPRA, Cal. Civ. Code § 1798.120(c)
    "US-CO": 18,  # Colorado Privacy Act, as amended by SB 24-041 (from 1 October 2025)
    "US-CT": 18,  # Connecticut Data Privacy Act, as amended by Public Act 23-56 (SB 3)
    "US-DE": 18,  # Delaware Personal Data Privacy Act
    "US-NH": 16,  # New Hampshire privacy act, RSA 507-H
    "US-NJ": 18,  # New Jersey Data Privacy Act
    "US-OR": 16,  # Oregon Consumer Privacy Act
}
# Someone in the US who has not said in which state: the strictest state's rule.
US_WITHOUT_STATE_CONSENT_AGE = max(US_STATE_CONSENT_AGE.values())
# The last time zone to reach a date is UTC-12: a birthday counts once it has begun everywhere,
# so nobody is treated as older than they are wherever they live.
LAST_TIME_ZONE = timedelta(hours=-12)


def today_everywhere(now: datetime) -> date:
    """The date of `now` (aware, UTC) in the time zone that reaches each date last."""
    return (now + LAST_TIME_ZONE).date()


def age_on(birth_date: date, today: date) -> int:
    """Whole years of age on `today`; a birthday today counts as reached."""
    years = today.year - birth_date.year
    # Comparing (month, day) puts 29 February after 28 February, so in a common year
    # the birthday is reached on 1 March.
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def is_plausible_birth_date(birth_date: date, today: date) -> bool:
    """Not in the future and not more than 120 years ago."""
    if birth_date > today:
        return False
    # More than 120 years ago means the 120th birthday was already reached yesterday.
    return age_on(birth_date, today - timedelta(days=1)) < OLDEST_PLAUSIBLE_AGE


def is_old_enough(birth_date: date, today: date) -> bool:
    return age_on(birth_date, today) >= MINIMUM_AGE


def digital_consent_age(country: str | None, us_state: str | None) -> int:
    """The age from which a person may give consent online themself where they live."""
    if (country or "").upper() == "US":
        if us_state is None:
            return US_WITHOUT_STATE_CONSENT_AGE
        return US_STATE_CONSENT_AGE.get(us_state.upper(), DEFAULT_DIGITAL_CONSENT_AGE)
    return DIGITAL_CONSENT_AGE.get((country or "").upper(), DEFAULT_DIGITAL_CONSENT_AGE)


def is_minor(
    birth_date: date | None, country: str | None, us_state: str | None, today: date
) -> bool:
    """Below the age at which the person may give consent online themself."""
    if birth_date is None:
        return False
    return age_on(birth_date, today) < digital_consent_age(country, us_state)
