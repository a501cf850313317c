"""The request path under races: the edge owns each transaction, so retries and bursts hold."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import func, select

from models import ConsentActor, ConsentEvent
from tests.helpers import (
    PROJECT_ROOT,
    SETTINGS_FIELDS,
    change,
    changed,
    codes,
    gql,
    my_settings,
    post,
    preference,
    signed_up,
)

SET_PREFERENCE = "setCommunicationPreference"
GPC = {"Sec-GPC": "1"}


def toggle(channel: str, topic: str, enabled: bool, **extra: Any) -> dict[str, Any]:
    return {"channel": channel, "topic": topic, "enabled": enabled, **extra}


async def events_for(database: Any, key: str, actor: ConsentActor | None = None) -> int:
    async with database.session() as session:
        query = select(func.count()).select_from(ConsentEvent).where(ConsentEvent.key == key)
        if actor is not None:
            query = query.where(ConsentEvent.actor == actor)
        return int(await session.scalar(query) or 0)


class TestRacingRetries:
    async def test_twenty_retries_racing_with_one_key_all_get_the_first_result(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        retried = toggle("EMAIL", "MARKETING", True, idempotencyKey="racing-retry-01")

        answers = await asyncio.gather(
            *(change(client, SET_PREFERENCE, retried, token=token) for _ in range(20))
        )

        assert all(answer["errors"] == [] for answer in answers), answers
        assert all(preference(a["account"], "EMAIL", "MARKETING") for a in answers)
        assert len({repr(answer) for answer in answers}) == 1
        assert await events_for(database, "communication.email.marketing") == 2  # signup, once

    async def test_a_burst_of_requests_with_the_gpc_signal_writes_one_event(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        await changed(client, "setCookieConsent", {"advertising": True}, token=token)

        answers = await asyncio.gather(*(my_settings(client, token, headers=GPC) for _ in range(6)))

        assert all(me["cookieConsent"]["gpcApplied"] for me in answers)
        assert all(me["cookieConsent"]["advertising"] is False for me in answers)
        assert await events_for(database, "cookies.advertising", ConsentActor.GPC) == 1


class TestSeveralMutationsInOneRequest:
    async def test_a_refused_second_mutation_keeps_the_first_ones_result(
        self, client, database
    ) -> None:
        token = await signed_up(client)
        document = f"""
        mutation Both($first: CommunicationPreferenceInput!,
                      $second: CommunicationPreferenceInput!) {{
          first: setCommunicationPreference(input: $first) {{
            account {{ id {SETTINGS_FIELDS} }} errors {{ code }}
          }}
          second: setCommunicationPreference(input: $second) {{
            account {{ id }} errors {{ code }}
          }}
        }}
        """
        variables = {
            "first": toggle("EMAIL", "NEWSLETTER", True, idempotencyKey="both-0001"),
            "second": toggle("PUSH", "NEWSLETTER", True, idempotencyKey="both-0001"),
        }

        body = await gql(client, document, variables, token=token)

        assert "errors" not in body, body
        assert body["data"]["first"]["errors"] == []
        assert preference(body["data"]["first"]["account"], "EMAIL", "NEWSLETTER") is True
        assert codes(body["data"]["second"]) == ["IDEMPOTENCY_KEY_REUSED"]
        assert body["data"]["second"]["account"] is None
        me = await my_settings(client, token)
        assert preference(me, "EMAIL", "NEWSLETTER") is True
        assert preference(me, "PUSH", "NEWSLETTER") is False

    async def test_a_refused_profile_change_after_a_change_keeps_both_answers(self, client) -> None:
        token = await signed_up(client)
        document = """
        mutation {
          on: setCommunicationPreference(input: {channel: PUSH, topic: NEWSLETTER, enabled: true}) {
            errors { code }
          }
          profile: updateProfile(input: {country: "Atlantis"}) {
            account { id } errors { field code }
          }
        }
        """
        body = (await post(client, document, token=token)).json()

        assert body["data"]["on"]["errors"] == [], body
        assert [e["field"] for e in body["data"]["profile"]["errors"]] == ["country"]
        assert preference(await my_settings(client, token), "PUSH", "NEWSLETTER") is True

    async def test_a_failed_mutation_does_not_undo_an_earlier_one(self, client) -> None:
        token = await signed_up(client)
        document = """
        mutation {
          on: setCommunicationPreference(
            input: {channel: EMAIL, topic: RECOMMENDATIONS, enabled: true}
          ) { errors { code } }
          locked: setCommunicationPreference(
            input: {channel: EMAIL, topic: SECURITY_ALERTS, enabled: false}
          ) { errors { code } }
        }
        """
        response = await post(client, document, token=token)

        assert response.json()["data"]["on"]["errors"] == []
        assert codes(response.json()["data"]["locked"]) == ["SETTING_LOCKED"]
        assert preference(await my_settings(client, token), "EMAIL", "RECOMMENDATIONS") is True


def test_only_the_edge_commits() -> None:
    """Use cases add and flush; the transaction is committed in models/database.py alone."""
    committing = re.compile(r"\.(commit|rollback)\(")
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for folder in ("resolvers", "auth", "schema", "web", "workers")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if committing.search(line)
    ]
    assert offenders == [], offenders
