"""Addresses staff could not tell apart from another (a Cyrillic a, U+0430, among Latin letters;
a long s, U+017F) are refused where an address is typed, alike whether the other is registered."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import Database, Notification, PasswordReset, PendingSignup
from resolvers.validation import LOOK_ALIKE_FORMS, MIXED_SCRIPTS, email_errors
from tests.helpers import gql, new_account, start_signup

RESET = """
mutation Request($input: RequestPasswordResetInput!) {
  requestPasswordReset(input: $input) { ok errors { field message code } }
}
"""
# Latin letters and the letters of other scripts drawn the same.
TWINS = {
    "a": "\u0430",  # CYRILLIC SMALL LETTER A
    "c": "\u0441",  # CYRILLIC SMALL LETTER ES
    "e": "\u0435",  # CYRILLIC SMALL LETTER IE
    "o": "\u043e",  # CYRILLIC SMALL LETTER O
    "p": "\u0440",  # CYRILLIC SMALL LETTER ER
    "x": "\u0445",  # CYRILLIC SMALL LETTER HA
    "i": "\u0456",  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "v": "\u03bd",  # GREEK SMALL LETTER NU
}
# A look-alike of a registered address, one of an address nobody has, and what both are told.
LOOK_ALIKES = [
    ("\u0430lice@example.com", "\u0430bby@example.com", MIXED_SCRIPTS),
    ("\u017fam@example.com", "\u017fue@example.com", LOOK_ALIKE_FORMS),  # LATIN SMALL LETTER LONG S
    ("\uff41lice@example.com", "\uff41bby@example.com", LOOK_ALIKE_FORMS),  # FULLWIDTH A
    ("alice@ex\u0430mple.com", "abby@ex\u0430mple.com", MIXED_SCRIPTS),
    # The same domain as IDNA writes it.
    ("alice@xn--exmple-4nf.com", "abby@xn--exmple-4nf.com", MIXED_SCRIPTS),
]


async def count(database: Database, model: type) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def error_of(payload: dict) -> list[dict]:
    errors: list[dict] = payload["errors"]
    return errors


class TestSignup:
    async def test_look_alikes_of_a_registered_address_are_refused_as_any_other(
        self, client, database
    ) -> None:
        await new_account(client, email="alice@example.com")
        await new_account(client, email="sam@example.com")

        for registered, unknown, message in LOOK_ALIKES:
            refused = await start_signup(client, email=registered)
            assert refused == await start_signup(client, email=unknown), registered
            assert error_of(refused) == [
                {"field": "email", "message": message, "code": "INVALID_EMAIL"}
            ], registered

        assert await count(database, PendingSignup) == 0
        assert await count(database, Notification) == 0

    async def test_addresses_in_one_script_are_welcome(self, client, database) -> None:
        for address in ("иван@пример.рф", "山田たろう@例え.jp", "josé.müller@example.de"):
            assert (await start_signup(client, email=address)) == {
                "confirmationSent": True,
                "errors": [],
            }

        assert await count(database, PendingSignup) == 3


class TestRequestPasswordReset:
    async def test_a_look_alike_of_a_registered_address_is_refused_as_any_other(
        self, client, database
    ) -> None:
        await new_account(client, email="alice@example.com")

        answers = [
            (await gql(client, RESET, {"input": {"email": address}}))["data"][
                "requestPasswordReset"
            ]
            for address in ("\u0430lice@example.com", "\u0430bby@example.com")
        ]

        assert answers[0] == answers[1]
        assert answers[0]["ok"] is False
        assert error_of(answers[0]) == [
            {"field": "email", "message": MIXED_SCRIPTS, "code": "INVALID_EMAIL"}
        ]
        assert await count(database, PasswordReset) == 0


CYRILLIC = "".join(map(chr, range(0x0430, 0x0450)))
GREEK = "".join(map(chr, range(0x03B1, 0x03CA)))
ascii_local_parts = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=20)


class TestTheRule:
    @given(
        local=ascii_local_parts.filter(lambda local: any(char in TWINS for char in local)),
        which=st.integers(min_value=0),
    )
    def test_one_latin_letter_swapped_for_its_twin_in_another_script_is_refused(
        self, local: str, which: int
    ) -> None:
        places = [n for n, char in enumerate(local) if char in TWINS]
        n = places[which % len(places)]
        spoof = local[:n] + TWINS[local[n]] + local[n + 1 :]

        # All twins at once make an address in one script, allowed as such (see below).
        if any(char.isascii() and char.isalpha() for char in spoof):
            assert email_errors(f"{spoof}@example.com")[1][0].message == MIXED_SCRIPTS
        assert email_errors(f"{local}@example.com") == (f"{local}@example.com", [])

    @given(
        st.sampled_from([string.ascii_lowercase, CYRILLIC, GREEK]).flatmap(
            lambda alphabet: st.text(alphabet, min_size=1, max_size=20)
        ),
        st.text(string.digits + "-_", max_size=3),
    )
    def test_letters_of_one_script_with_digits_and_punctuation_are_accepted(
        self, letters: str, rest: str
    ) -> None:
        address = f"{letters}{rest}@example.com"
        assert email_errors(address) == (address, [])

    @given(local=ascii_local_parts, which=st.integers(min_value=0))
    def test_a_full_width_form_of_any_character_is_refused(self, local: str, which: int) -> None:
        n = which % len(local)
        full_width = local[:n] + chr(ord(local[n]) + 0xFEE0) + local[n + 1 :]

        assert email_errors(f"{full_width}@example.com")[1][0].message == LOOK_ALIKE_FORMS

    @given(
        st.lists(
            st.sampled_from(["taro", "山田", "やまだ", "ヤマダ", "kim", "김철수", "王", "ㄅㄆ"]),
            min_size=1,
            max_size=4,
        )
    )
    def test_latin_mixes_only_with_the_scripts_written_beside_it(self, words: list[str]) -> None:
        local = "".join(words)
        scripts = {
            "japanese": {"山田", "やまだ", "ヤマダ", "taro", "kim", "王"},
            "korean": {"김철수", "山田", "王", "taro", "kim"},
            "chinese": {"ㄅㄆ", "山田", "王", "taro", "kim"},
        }
        allowed = any(set(words) <= words_of for words_of in scripts.values())

        assert (email_errors(f"{local}@example.com")[0] is not None) is allowed
