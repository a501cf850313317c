"""The age gate: ages from a date of birth, plausibility, the under-13 refusal, digital consent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from resolvers.account import AGE_RESTRICTED_MESSAGE, check_age
from resolvers.age import (
    DEFAULT_DIGITAL_CONSENT_AGE,
    DIGITAL_CONSENT_AGE,
    US_STATE_CONSENT_AGE,
    age_on,
    digital_consent_age,
    is_minor,
    is_old_enough,
    is_plausible_birth_date,
    today_everywhere,
)
from resolvers.errors import ErrorCode, Rejected
from resolvers.validation import country_errors, us_state_errors

ONE_DAY = timedelta(days=1)
# Wide enough to hold every leap-year rule (1900 and 2100 are common years, 2000 is a leap year).
birth_dates = st.dates(min_value=date(1890, 1, 1), max_value=date(2150, 12, 31))
leap_day_births = st.sampled_from([1896, 1904, 1960, 1996, 2000, 2004, 2024, 2096]).map(
    lambda year: date(year, 2, 29)
)
countries = st.sampled_from([*sorted(DIGITAL_CONSENT_AGE), "US", "BR", "JP", None])


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def birthday(birth_date: date, year: int) -> date:
    """The documented rule: the anniversary, or 1 March when 29 February is missing that year."""
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def refusal(birth_date: date, today: date, *, refused_recently: bool = False) -> Rejected:
    with pytest.raises(Rejected) as raised:
        check_age(birth_date, today, refused_recently=refused_recently)
    return raised.value


class TestAgeOn:
    def test_birthday_today_counts(self) -> None:
        assert age_on(date(2000, 6, 15), date(2013, 6, 15)) == 13

    def test_day_before_birthday_does_not(self) -> None:
        assert age_on(date(2000, 6, 15), date(2013, 6, 14)) == 12

    def test_born_today_is_zero(self) -> None:
        assert age_on(date(2024, 1, 1), date(2024, 1, 1)) == 0

    @given(birth_date=birth_dates, days=st.integers(0, 200 * 366), step=st.integers(0, 800))
    def test_never_decreases_as_today_advances(
        self, birth_date: date, days: int, step: int
    ) -> None:
        today = birth_date + timedelta(days=days)
        later = today + timedelta(days=step)
        assert age_on(birth_date, later) >= age_on(birth_date, today)

    @given(birth_date=birth_dates, years=st.integers(1, 130))
    def test_goes_up_by_exactly_one_on_each_birthday(self, birth_date: date, years: int) -> None:
        day = birthday(birth_date, birth_date.year + years)
        assert age_on(birth_date, day) == years
        assert age_on(birth_date, day - ONE_DAY) == years - 1

    @given(birth_date=birth_dates, days=st.integers(0, 130 * 366))
    def test_changes_on_no_other_day(self, birth_date: date, days: int) -> None:
        today = birth_date + timedelta(days=days)
        tomorrow = today + ONE_DAY
        if tomorrow != birthday(birth_date, tomorrow.year):
            assert age_on(birth_date, tomorrow) == age_on(birth_date, today)

    @given(birth_date=leap_day_births, years=st.integers(1, 120))
    def test_leap_day_birthday_is_1_march_in_common_years(
        self, birth_date: date, years: int
    ) -> None:
        year = birth_date.year + years
        assume(not is_leap(year))
        assert age_on(birth_date, date(year, 2, 28)) == years - 1
        assert age_on(birth_date, date(year, 3, 1)) == years

    @given(birth_date=leap_day_births, years=st.integers(1, 30).map(lambda n: 4 * n))
    def test_leap_day_birthday_is_29_february_in_leap_years(
        self, birth_date: date, years: int
    ) -> None:
        year = birth_date.year + years
        assume(is_leap(year))
        assert age_on(birth_date, date(year, 2, 28)) == years - 1
        assert age_on(birth_date, date(year, 2, 29)) == years

    def test_leap_day_examples(self) -> None:
        born = date(2008, 2, 29)
        assert age_on(born, date(2021, 2, 28)) == 12
        assert age_on(born, date(2021, 3, 1)) == 13
        assert age_on(born, date(2024, 2, 29)) == 16
        # 2100 is not a leap year although it is divisible by four.
        assert age_on(date(2096, 2, 29), date(2100, 2, 28)) == 3
        assert age_on(date(2096, 2, 29), date(2100, 3, 1)) == 4


class TestIsPlausibleBirthDate:
    today_dates = st.dates(min_value=date(1950, 1, 1), max_value=date(2200, 12, 31))

    @given(today=today_dates, days=st.integers(1, 100 * 366))
    def test_a_date_in_the_future_is_implausible(self, today: date, days: int) -> None:
        assert not is_plausible_birth_date(today + timedelta(days=days), today)

    @given(today=today_dates)
    def test_born_today_is_plausible(self, today: date) -> None:
        assert is_plausible_birth_date(today, today)

    @given(today=today_dates)
    def test_exactly_120_years_ago_today_is_plausible(self, today: date) -> None:
        # On 29 February of a year whose 120-years-earlier year is common, nobody turns 120.
        assume(not (today.month == 2 and today.day == 29 and not is_leap(today.year - 120)))
        born = today.replace(year=today.year - 120)
        assert is_plausible_birth_date(born, today)

    @given(today=today_dates, days=st.integers(1, 100 * 366))
    def test_more_than_120_years_ago_is_implausible(self, today: date, days: int) -> None:
        assume(not (today.month == 2 and today.day == 29 and not is_leap(today.year - 120)))
        born = today.replace(year=today.year - 120) - timedelta(days=days)
        assert not is_plausible_birth_date(born, today)

    def test_leap_day_birth_reaches_120_on_1_march_of_a_common_year(self) -> None:
        # 2100 is a common year, so someone born on 29 February 1980 turns 120 on 1 March 2100.
        assert is_plausible_birth_date(date(1980, 2, 29), date(2100, 3, 1))
        assert not is_plausible_birth_date(date(1980, 2, 29), date(2100, 3, 2))
        assert is_plausible_birth_date(date(1904, 2, 29), date(2024, 2, 29))
        assert not is_plausible_birth_date(date(1904, 2, 29), date(2024, 3, 1))


class TestIsOldEnough:
    @given(birth_date=birth_dates)
    def test_day_before_13th_birthday_is_not(self, birth_date: date) -> None:
        assert not is_old_enough(birth_date, birthday(birth_date, birth_date.year + 13) - ONE_DAY)

    @given(birth_date=birth_dates)
    def test_13th_birthday_is(self, birth_date: date) -> None:
        assert is_old_enough(birth_date, birthday(birth_date, birth_date.year + 13))


class TestCheckAge:
    @given(birth_date=birth_dates)
    def test_day_before_13th_birthday_is_refused(self, birth_date: date) -> None:
        today = birthday(birth_date, birth_date.year + 13) - ONE_DAY
        error = refusal(birth_date, today).errors[0]
        assert (error.code, error.field) == (ErrorCode.AGE_RESTRICTED, "birthDate")

    @given(birth_date=birth_dates)
    def test_13th_birthday_is_allowed(self, birth_date: date) -> None:
        check_age(birth_date, birthday(birth_date, birth_date.year + 13))

    def test_leap_day_child_turns_13_on_1_march(self) -> None:
        born = date(2008, 2, 29)
        assert refusal(born, date(2021, 2, 28)).errors[0].code is ErrorCode.AGE_RESTRICTED
        check_age(born, date(2021, 3, 1))

    def test_refusal_names_neither_the_threshold_nor_a_passing_date(self) -> None:
        error = refusal(date(2015, 1, 1), date(2025, 1, 1)).errors[0]
        assert error.message == AGE_RESTRICTED_MESSAGE
        assert not any(char.isdigit() for char in error.message)

    def test_future_date_is_invalid(self) -> None:
        error = refusal(date(2030, 1, 1), date(2025, 1, 1)).errors[0]
        assert (error.code, error.field) == (ErrorCode.INVALID_BIRTH_DATE, "birthDate")

    def test_more_than_120_years_ago_is_invalid(self) -> None:
        error = refusal(date(1904, 12, 31), date(2025, 1, 1)).errors[0]
        assert error.code is ErrorCode.INVALID_BIRTH_DATE

    def test_refused_recently_refuses_an_adult(self) -> None:
        error = refusal(date(1980, 1, 1), date(2025, 1, 1), refused_recently=True).errors[0]
        assert (error.code, error.message) == (ErrorCode.AGE_RESTRICTED, AGE_RESTRICTED_MESSAGE)

    def test_refused_recently_wins_over_an_implausible_date(self) -> None:
        # Another try after a refusal learns nothing, whatever date it gives.
        error = refusal(date(2030, 1, 1), date(2025, 1, 1), refused_recently=True).errors[0]
        assert error.code is ErrorCode.AGE_RESTRICTED

    def test_adult_passes(self) -> None:
        check_age(date(1990, 12, 10), date(2025, 1, 1))


class TestDigitalConsentAge:
    @pytest.mark.parametrize(
        ("country", "age"),
        [("DE", 16), ("FR", 15), ("AT", 14), ("GB", 13), ("de", 16), (None, 13)],
    )
    def test_by_country(self, country: str | None, age: int) -> None:
        assert digital_consent_age(country, None) == age

    def test_unknown_country_gets_the_default(self) -> None:
        assert digital_consent_age("ZZ", None) == DEFAULT_DIGITAL_CONSENT_AGE == 13

    def test_every_age_is_within_gdpr_article_8(self) -> None:
        assert all(13 <= age <= 16 for age in DIGITAL_CONSENT_AGE.values())


class TestUsStates:
    @pytest.mark.parametrize(
        ("state", "age"),
        [("US-CA", 16), ("us-ca", 16), ("US-CT", 18), ("US-OR", 16), ("US-TX", 13), (None, 18)],
    )
    def test_by_state_and_the_strictest_without_one(self, state: str | None, age: int) -> None:
        assert digital_consent_age("US", state) == age

    def test_no_state_means_the_strictest_of_the_table(self) -> None:
        assert digital_consent_age("US", None) == max(US_STATE_CONSENT_AGE.values())

    def test_every_state_of_the_table_is_an_iso_3166_2_us_subdivision(self) -> None:
        assert all(us_state_errors(code, "US") == (code, []) for code in US_STATE_CONSENT_AGE)

    def test_a_state_outside_the_us_counts_for_nothing(self) -> None:
        assert digital_consent_age("DE", "US-CA") == 16
        assert digital_consent_age("GB", "US-CT") == 13


class TestIsMinor:
    @given(birth_date=birth_dates, country=countries)
    def test_minor_until_the_consent_birthday(self, birth_date: date, country: str | None) -> None:
        consent_day = birthday(birth_date, birth_date.year + digital_consent_age(country, None))
        assert is_minor(birth_date, country, None, consent_day - ONE_DAY)
        assert not is_minor(birth_date, country, None, consent_day)

    @pytest.mark.parametrize(
        ("country", "minor"), [("DE", True), ("FR", False), ("GB", False), ("JP", False)]
    )
    def test_a_15_year_old(self, country: str, minor: bool) -> None:
        assert is_minor(date(2010, 5, 1), country, None, date(2025, 5, 1)) is minor

    def test_13_year_old_in_germany_is_minor_but_not_in_britain(self) -> None:
        assert is_minor(date(2012, 1, 1), "DE", None, date(2025, 1, 1))
        assert not is_minor(date(2012, 1, 1), "GB", None, date(2025, 1, 1))

    def test_without_a_birth_date_is_not_minor(self) -> None:
        # Staff accounts are created by the CLI without an age screen.
        assert not is_minor(None, "DE", None, date(2025, 1, 1))


class TestWhereTheyLive:
    @pytest.mark.parametrize("region", ["GP", "GF", "MQ", "RE", "YT", "MF"])
    def test_frances_outermost_regions_take_frances_age(self, region: str) -> None:
        assert digital_consent_age(region, None) == digital_consent_age("FR", None) == 15
        assert is_minor(date(2011, 5, 1), region, None, date(2025, 5, 1))

    @pytest.mark.parametrize("territory", ["BL", "PM", "NC", "PF", "WF", "TF"])
    def test_territories_outside_the_eu_keep_the_default(self, territory: str) -> None:
        assert digital_consent_age(territory, None) == DEFAULT_DIGITAL_CONSENT_AGE
        assert not is_minor(date(2011, 5, 1), territory, None, date(2025, 5, 1))

    @pytest.mark.parametrize(("typed", "stored"), [("UK", "GB"), ("uk", "GB"), ("EL", "GR")])
    def test_codes_people_type_are_read_as_iso(self, typed: str, stored: str) -> None:
        assert country_errors(typed) == (stored, [])


class TestBirthdayBegunEverywhere:
    BORN = date(2013, 3, 10)

    def test_the_date_is_the_one_in_the_last_time_zone(self) -> None:
        assert today_everywhere(datetime(2026, 3, 10, 11, 59, tzinfo=UTC)) == date(2026, 3, 9)
        assert today_everywhere(datetime(2026, 3, 10, 12, 0, tzinfo=UTC)) == date(2026, 3, 10)

    def test_a_thirteenth_birthday_counts_once_it_has_begun_everywhere(self) -> None:
        # In London and New York it is already the birthday; on Baker Island not yet.
        before = today_everywhere(datetime(2026, 3, 10, 11, 0, tzinfo=UTC))
        after = today_everywhere(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
        assert refusal(self.BORN, before).errors[0].code is ErrorCode.AGE_RESTRICTED
        check_age(self.BORN, after)
