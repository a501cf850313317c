"""Delivering the outbox: through a real SMTP server started by the test, or into the development
mail folder; retries with backoff, a cap, suppression of switched-off topics, and workers racing.

Every link a delivered message carries is followed through the app, and must answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from jinja2.exceptions import UndefinedError
from sqlalchemy import event, select
from sqlalchemy.util import await_only

from models import Account, Database, DeliveryStatus, Notification, NotificationKind, Role, utcnow
from privacy_api.config import Config, ConfigError, SmtpServer, load_config
from resolvers import catalogue, erasure, mail, mail_delivery, notifications
from tests.helpers import (
    PASSWORD,
    changed,
    count_statements,
    gql,
    my_settings,
    preference,
    run_cli,
    run_until_stopped,
    signed_up,
)
from tests.test_cli import free_port
from tests.test_observability import scrape, value
from tests.test_policy import published, staff_token
from web.routes import PublicLinks
from workers.mail_delivery import Backoff, Delivery, delivery_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SENDER = "Privacy Team <privacy@mail.example.test>"
DOMAIN = "mail.example.test"
PUBLIC_URL = "http://127.0.0.1:8000"
URL = re.compile(r"https?://[^\s<>\"']+")
REQUEST_CHANGE = """
mutation Change($input: EmailChangeInput!) {
  requestEmailChange(input: $input) { errors { field code } }
}
"""
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
# Values for every template, so that each kind can be composed in one loop.
EVERY_VALUE: dict[str, object] = {
    "confirmation_link": f"{PUBLIC_URL}/confirm-email?token={mail.PLACEHOLDER}",
    "day": "1 June 2026",
    "when": "1 June 2026 at 12:00 UTC",
    "by_privacy_team": False,
    "request": "complaint",
    "outcome": "answered",
    "resolution": "We have corrected it.",
    "due_day": "1 August 2026",
    "reason": "It needs a search of the archive.",
    "version": "2026-06",
    "summary": "Logs are kept for 30 days.",
    "reset_link": f"{PUBLIC_URL}/reset-password?token={mail.PLACEHOLDER}",
    "valid_hours": 24,
    "valid_minutes": 30,
    "teen": "Ada",
    "asked": [catalogue.BY_KEY["data_sharing.research"]],
    "link": f"{PUBLIC_URL}/parental-consent?token={mail.PLACEHOLDER}",
    "valid_days": 7,
}


class Inbox:
    """The test's SMTP server: what it received, and what it is told to refuse."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each message as it came over the wire
        self.refusals: list[str] = []  # replies to the next messages, in order; then accepted
        self.refuse_always: str | None = None
        self.unknown_recipients: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.unknown_recipients:
            return "550 5.1.1 <" + address + "> no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_always is not None:
            return self.refuse_always
        if self.refusals:
            return self.refusals.pop(0)
        received = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(received, EmailMessage)
        self.received.append(received)
        self.raw.append(envelope.content)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.received if message["To"] == address]

    def raw_to(self, address: str) -> list[bytes]:
        pairs = zip(self.raw, self.received, strict=True)
        return [raw for raw, message in pairs if message["To"] == address]


def raw_header(raw: bytes, name: str) -> bytes | None:
    """A header's value as its bytes came over the wire, only unfolded (RFC 5322: a line break
    before a space or tab is removed): nothing decoded, as a mailbox provider reads it."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    unfolded = re.sub(rb"\r\n(?=[ \t])", b"", head)
    found = [
        line.split(b":", 1)[1].strip()
        for line in unfolded.split(b"\r\n")
        if line.lower().startswith(name.lower().encode() + b":")
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Clock:
    """A clock the test moves: backoff is checked by the times it schedules, not by waiting."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def smtp_config(config: Config, port: int) -> Config:
    return replace(
        config,
        smtp=SmtpServer(host="127.0.0.1", port=port, implicit_tls=False),
        mail_from=SENDER,
        public_url=PUBLIC_URL,
    )


def worker(
    config: Config, database: Database, port: int, clock: Clock | None = None, **changes: Any
) -> Delivery:
    """A delivery worker as `privacy-api deliver` builds it, sending to the test's server."""
    configured = smtp_config(config, port)
    built = delivery_for(configured, database, PublicLinks(configured.public_url).unsubscribe)
    return replace(built, clock=clock or Clock(), **changes)


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def html_of(message: EmailMessage) -> str | None:
    part = message.get_body(("html",))
    return None if part is None else str(part.get_content())  # type: ignore[union-attr]


def local(link: str) -> str:
    """The part of one of our public links the test client requests."""
    assert link.startswith(PUBLIC_URL + "/"), link
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def links_in(text: str) -> list[str]:
    return [link.rstrip(".,;:)") for link in URL.findall(text)]


async def outbox(database: Database) -> list[Notification]:
    async with database.session() as session:
        rows = await session.scalars(select(Notification).order_by(Notification.created_at))
        return list(rows)


async def account_named(database: Database, email: str) -> Account:
    async with database.session() as session:
        account = await session.scalar(select(Account).where(Account.email == email))
        assert account is not None
        return account


async def queued(database: Database, email: str, kind: NotificationKind, count: int = 1) -> None:
    """Messages of `kind` queued for the account with this email, as a use case would."""
    async with database.transaction() as session:
        account = await session.scalar(select(Account).where(Account.email == email))
        assert account is not None
        for _ in range(count):
            notifications.queue(session, account, kind, EVERY_VALUE)


async def ask_for_new_address(client: httpx.AsyncClient) -> str:
    token = await signed_up(client)
    variables = {"input": {"newEmail": "Ada.New@example.com", "currentPassword": PASSWORD}}
    body = await gql(client, REQUEST_CHANGE, variables, token=token)
    assert body["data"]["requestEmailChange"]["errors"] == []
    return token


class TestThroughSmtp:
    async def test_the_confirmation_arrives_and_its_link_confirms(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        token = await ask_for_new_address(client)

        report = await worker(config, database, port).run_once()

        assert report.sent == 1
        [message] = inbox.to("ada.new@example.com")
        [queued_row] = await outbox(database)
        assert message["Message-ID"] == f"<{queued_row.id}@{DOMAIN}>"
        assert message["From"] == SENDER
        assert message["Subject"] == "Confirm your new email address"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["List-Unsubscribe"] is None  # a confirmation is no list mail
        text = text_of(message)
        code = re.search(r"code in the app: (\S+)", text)
        assert code and mail.PLACEHOLDER not in text
        [link] = links_in(text)
        html = html_of(message)
        assert html is not None and f'href="{link}"' in html and code[1] in html
        # Sent: the outbox keeps the message, not the code.
        assert (queued_row.status, queued_row.secret) == (DeliveryStatus.SENT, None)
        assert queued_row.sent_at is not None

        page = await client.get(local(link))
        assert page.status_code == 200 and "<button" in page.text
        confirmed = await client.post(local(link))
        assert confirmed.status_code == 200
        me = await gql(client, "{ me { email } }", token=token)
        assert me["data"]["me"]["email"] == "ada.new@example.com"

        # The old address is told, through the same path.
        await worker(config, database, port).run_once()
        [warning] = inbox.to("ada@example.com")
        assert warning["Subject"] == "Your email address was changed"

    async def test_a_minor_policy_update_carries_one_click_unsubscribe_on_the_wire(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        person = await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-06", material=False)

        await worker(config, database, port).run_once()

        [message] = inbox.to("ada@example.com")
        assert message["Subject"] == "A small update to our privacy policy (2026-06)"
        [raw] = inbox.raw_to("ada@example.com")
        # Mail providers read these headers as bytes: an RFC 2047 encoded-word is no link.
        header = raw_header(raw, "List-Unsubscribe")
        assert header is not None and b"=?" not in header
        assert header.startswith(b"<" + PUBLIC_URL.encode()) and header.endswith(b">")
        assert raw_header(raw, "List-Unsubscribe-Post") == b"List-Unsubscribe=One-Click"
        link = header[1:-1].decode("ascii")
        assert link in text_of(message)  # for people whose mail client shows no button
        assert (await client.get(local(link))).status_code == 200
        # What a mail client sends for one click (RFC 8058).
        response = await client.post(local(link), data=ONE_CLICK)
        assert response.status_code == 200
        assert not preference(await my_settings(client, person), "EMAIL", "SERVICE_UPDATES")

    async def test_a_material_policy_notice_is_a_legal_notice_sent_whatever_the_choices(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        person = await signed_up(client)
        off = {"channel": "EMAIL", "topic": "SERVICE_UPDATES", "enabled": False}
        await changed(client, "setCommunicationPreference", off, token=person)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-06")

        report = await worker(config, database, port).run_once()

        assert (report.sent, report.suppressed) == (1, 0)
        [message] = inbox.to("ada@example.com")
        assert message["Subject"] == "We have updated our privacy policy (2026-06)"
        [raw] = inbox.raw_to("ada@example.com")
        assert raw_header(raw, "List-Unsubscribe") is None
        assert raw_header(raw, "List-Unsubscribe-Post") is None
        assert "unsubscribe" not in text_of(message).lower()

    async def test_every_kind_is_delivered_in_english_whatever_the_locale(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        await signed_up(client)
        async with database.transaction() as session:
            account = await session.scalar(select(Account).where(Account.role == Role.USER))
            assert account is not None
            account.locale = "pt-BR"  # no translation shipped: English
            for kind in NotificationKind:
                notifications.queue(session, account, kind, EVERY_VALUE, secret="the-code")
            notifications.queue_last_message(session, "gone@example.com", "pt-BR")

        report = await worker(config, database, port).run_once()

        assert report.sent == len(NotificationKind) + 1
        subjects = {message["Subject"] for message in inbox.received}
        expected = {mail.compose(kind, "en", EVERY_VALUE).subject for kind in NotificationKind}
        assert subjects == expected
        ids = {message["Message-ID"] for message in inbox.received}
        assert len(ids) == len(NotificationKind) + 1
        [last] = inbox.to("gone@example.com")
        assert last["Subject"] == "Your account has been erased"
        # A message to an address without an account is deleted once sent; the rest are kept.
        rows = await outbox(database)
        assert len(rows) == len(NotificationKind)
        assert {row.status for row in rows} == {DeliveryStatus.SENT}

    async def test_a_message_for_a_topic_switched_off_since_is_suppressed(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        person = await signed_up(client)
        officer = await staff_token(client, database)
        await published(client, officer, "2026-06", material=False)
        off = {"channel": "EMAIL", "topic": "SERVICE_UPDATES", "enabled": False}
        await changed(client, "setCommunicationPreference", off, token=person)

        report = await worker(config, database, port).run_once()

        assert (report.sent, report.suppressed) == (0, 1)
        assert inbox.to("ada@example.com") == []
        [notice] = [row for row in await outbox(database) if row.account_id is not None]
        assert (notice.status, notice.sent_at) == (DeliveryStatus.SUPPRESSED, None)
        # The person sees it too.
        body = await gql(client, "{ me { messages { kind status sentAt } } }", token=person)
        assert body["data"]["me"]["messages"] == [
            {"kind": "POLICY_MINOR_UPDATE", "status": "SUPPRESSED", "sentAt": None}
        ]


class TestFailures:
    async def test_a_refusing_server_is_tried_again_later_with_growing_delays(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        inbox.refusals = ["451 4.3.0 Try again later", "421 4.7.0 Busy"]
        await ask_for_new_address(client)
        clock = Clock()
        first = timedelta(minutes=1)
        sender = worker(config, database, port, clock, backoff=Backoff(first=first))

        assert (await sender.run_once()).retrying == 1
        [row] = await outbox(database)
        assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
        assert row.next_attempt_at == clock.now + first
        assert row.failure == "SMTPDataError: SMTP 451"
        assert row.secret is not None  # still needed to send it
        # Not due yet: nothing is tried.
        assert (await sender.run_once()).handled == 0

        clock.now = row.next_attempt_at
        assert (await sender.run_once()).retrying == 1
        [row] = await outbox(database)
        assert row.attempts == 2 and row.next_attempt_at == clock.now + 2 * first

        clock.now = row.next_attempt_at
        assert (await sender.run_once()).sent == 1
        assert len(inbox.to("ada.new@example.com")) == 1
        [row] = await outbox(database)
        assert (row.status, row.secret) == (DeliveryStatus.SENT, None)

    async def test_after_the_last_attempt_it_is_failed_with_a_reason_naming_no_one(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        inbox.refuse_always = "452 4.2.2 Mailbox of ada.new@example.com is full"
        await ask_for_new_address(client)
        clock = Clock()
        sender = worker(config, database, port, clock, backoff=Backoff(attempts=3))

        reports = []
        for _ in range(3):
            reports.append(await sender.run_once())
            [row] = await outbox(database)
            if row.next_attempt_at is not None:
                clock.now = row.next_attempt_at

        assert [(r.retrying, r.failed) for r in reports] == [(1, 0), (1, 0), (0, 1)]
        [row] = await outbox(database)
        assert (row.status, row.attempts, row.secret) == (DeliveryStatus.FAILED, 3, None)
        assert row.failure == "SMTPDataError: SMTP 452"
        clock.now += timedelta(days=1)
        assert (await sender.run_once()).handled == 0
        assert inbox.received == []

    async def test_an_unknown_recipient_fails_at_once(self, client, database, config, smtp) -> None:
        inbox, port = smtp
        inbox.unknown_recipients = {"ada.new@example.com"}
        await ask_for_new_address(client)

        report = await worker(config, database, port).run_once()

        assert (report.failed, report.retrying) == (1, 0)
        [row] = await outbox(database)
        assert row.status is DeliveryStatus.FAILED
        assert row.failure == "recipient refused: SMTP 550"

    async def test_credentials_are_never_sent_without_tls(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp  # offers no STARTTLS
        await ask_for_new_address(client)
        sender = worker(config, database, port)
        server = SmtpServer("127.0.0.1", port, implicit_tls=False, username="u", password="p")
        sender = replace(sender, mailer=replace(sender.mailer, server=server))

        report = await sender.run_once()

        assert report.retrying == 1 and inbox.received == []
        [row] = await outbox(database)
        assert row.failure == "SMTPException"

    async def test_no_server_listening_is_retried(self, client, database, config) -> None:
        await ask_for_new_address(client)

        report = await worker(config, database, free_port()).run_once()

        assert report.retrying == 1
        [row] = await outbox(database)
        assert row.status is DeliveryStatus.PENDING and row.failure


def meet_after_first_read(database: Database, meeting: asyncio.Barrier) -> None:
    """Hold the worker's first claim, after it has read its candidates, until the other worker
    has read its own too."""

    first_read = [True]

    def wait(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if first_read[0] and statement.startswith("SELECT notifications.id"):
            first_read[0] = False
            await_only(asyncio.wait_for(meeting.wait(), 10))

    event.listen(database.engine.sync_engine, "after_cursor_execute", wait)


class TestPrune:
    async def test_failed_and_suppressed_messages_are_deleted_after_30_days(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        inbox.unknown_recipients = {"ada@example.com"}
        await signed_up(client)
        await queued(database, "ada@example.com", NotificationKind.EMAIL_CHANGED)
        await worker(config, database, port).run_once()
        [failed] = await outbox(database)
        assert failed.status is DeliveryStatus.FAILED

        async with database.transaction() as session:
            kept = await erasure.prune_expired(session, utcnow() + timedelta(days=29))
        async with database.transaction() as session:
            pruned = await erasure.prune_expired(session, utcnow() + timedelta(days=31))

        assert (kept.notifications, pruned.notifications) == (0, 1)
        assert await outbox(database) == []


class TestClaims:
    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    async def test_two_workers_racing_send_each_message_once(
        self, client, config, smtp, clean_database_url
    ) -> None:
        inbox, port = smtp
        await signed_up(client)
        setup = Database(clean_database_url)
        first, second = Database(clean_database_url), Database(clean_database_url)
        try:
            await queued(setup, "ada@example.com", NotificationKind.EMAIL_CHANGED, 60)
            workers = [
                worker(config, first, port, batch=4, worker="first"),
                worker(config, second, port, batch=4, worker="second"),
            ]
            # The worst moment: both have read their candidates before either claims them.
            meeting = asyncio.Barrier(2)
            for database in (first, second):
                meet_after_first_read(database, meeting)

            reports = await asyncio.gather(*(each.run_once() for each in workers))

            assert sum(report.sent for report in reports) == 60
            assert all(report.sent for report in reports)  # they shared the work
            ids = [message["Message-ID"] for message in inbox.received]
            assert len(ids) == len(set(ids)) == 60
            rows = await outbox(setup)
            assert {row.status for row in rows} == {DeliveryStatus.SENT}
            assert {f"<{row.id}@{DOMAIN}>" for row in rows} == set(ids)
        finally:
            for database in (setup, first, second):
                await database.dispose()

    @pytest.mark.parametrize("waiting", [3, 30])
    async def test_a_claim_takes_the_same_statements_however_many_it_takes(
        self, client, database, waiting
    ) -> None:
        await signed_up(client)
        await queued(database, "ada@example.com", NotificationKind.POLICY_MINOR_UPDATE, waiting)

        with count_statements(database.engine) as statements:
            async with database.transaction() as session:
                taken = await mail_delivery.claim(
                    session, worker="w", now=utcnow(), lease=timedelta(minutes=1), limit=50
                )

        assert len(taken.outgoing) == waiting
        # The candidates, the claim (returning the rows) and the accounts' settings for topics.
        assert len(statements) == 3, statements

    async def test_a_crashed_workers_claim_expires_and_the_resend_keeps_the_message_id(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        await ask_for_new_address(client)
        clock = Clock()
        # A worker claims the message, then stops before sending it (or before marking it sent).
        async with database.transaction() as session:
            taken = await mail_delivery.claim(
                session, worker="crashed", now=clock.now, lease=timedelta(minutes=10), limit=10
            )
        [crashed] = taken.outgoing
        other = worker(config, database, port, clock, lease=timedelta(minutes=10))

        assert (await other.run_once()).handled == 0  # held by the first worker

        clock.now += timedelta(minutes=10)
        assert (await other.run_once()).sent == 1
        [message] = inbox.received
        assert message["Message-ID"] == mail.message_id(crashed.id, DOMAIN)


class TestMailFolder:
    async def test_deliver_once_writes_eml_files_whose_links_answer(
        self, client, database, clean_database_url, tmp_path
    ) -> None:
        await ask_for_new_address(client)
        folder = tmp_path / "mail"

        code, out, err = await run_cli(
            clean_database_url,
            tmp_path,
            "deliver",
            "--once",
            PRIVACY_API_MAIL_DIR=str(folder),
            PRIVACY_API_PUBLIC_URL=PUBLIC_URL,
        )

        assert code == 0, err
        [written] = folder.glob("*.eml")
        assert f"Wrote {written}" in out
        assert "Delivered 1, suppressed 0" in out
        message = message_from_bytes(written.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        assert message["To"] == "ada.new@example.com"
        [link] = links_in(text_of(message))
        assert (await client.get(local(link))).status_code == 200
        [row] = await outbox(database)
        # The public host is an address, so the sender, and Message-IDs, are @localhost.
        assert message["Message-ID"] == f"<{row.id}@localhost>"
        assert row.status is DeliveryStatus.SENT

    # A real process, for how it stops on SIGTERM; what it does on each database is the same
    # step the in-process tests run on both.
    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    async def test_deliver_runs_until_told_to_stop(
        self, client, clean_database_url, tmp_path
    ) -> None:
        await ask_for_new_address(client)
        folder = tmp_path / "mail"

        code, out = await run_until_stopped(
            clean_database_url, tmp_path, "deliver", lambda: any(folder.glob("*.eml"))
        )

        assert code == 0, out
        [written] = folder.glob("*.eml")
        assert f"written to {written}" in out
        assert "ada.new@example.com" not in out

    async def test_nothing_to_deliver(self, clean_database_url, tmp_path) -> None:
        code, out, _ = await run_cli(clean_database_url, tmp_path, "deliver", "--once")

        assert code == 0
        assert "Delivered 0, suppressed 0 (topic switched off), 0 to try again later" in out
        assert not (tmp_path / "mail").exists()


class TestTemplates:
    @pytest.mark.parametrize(
        ("locale", "tried"),
        [
            ("pt-BR", ["pt-br", "pt", "en"]),
            ("de", ["de", "en"]),
            (None, ["en"]),
            ("../../etc", ["en"]),
        ],
    )
    def test_the_translations_tried_for_a_locale(self, locale: str | None, tried: list[str]):
        assert mail.locales_for(locale) == tried

    def test_a_value_a_template_needs_is_never_left_out_silently(self) -> None:
        with pytest.raises(UndefinedError, match="version"):
            mail.compose(NotificationKind.POLICY_UPDATE, "en", {"summary": "s"})

    def test_values_are_escaped_in_html(self) -> None:
        link = 'https://x.example/?a=1&b="2"'
        composed = mail.compose(
            NotificationKind.EMAIL_CONFIRMATION, "en", {"confirmation_link": link}
        )

        assert composed.html is not None
        assert 'href="https://x.example/?a=1&amp;b=&#34;2&#34;"' in composed.html
        assert link in composed.body


class TestSettings:
    def test_smtp_url_forms(self) -> None:
        starttls = load_config({"PRIVACY_API_SMTP_URL": "smtp://ada%40x:p%3Ass@mail.example.com"})
        tls = load_config({"PRIVACY_API_SMTP_URL": "smtps://mail.example.com"})

        assert starttls.smtp == SmtpServer(
            "mail.example.com", 587, implicit_tls=False, username="ada@x", password="p:ss"
        )
        assert "p:ss" not in repr(starttls.smtp)
        assert tls.smtp == SmtpServer("mail.example.com", 465, implicit_tls=True)

    @pytest.mark.parametrize(
        "url", ["http://mail.example.com", "smtp://", "smtp://host:port", "smtp://h/path"]
    )
    def test_a_url_that_is_not_smtp_is_refused(self, url: str) -> None:
        with pytest.raises(ConfigError, match="PRIVACY_API_SMTP_URL"):
            load_config({"PRIVACY_API_SMTP_URL": url})

    def test_serve_delivers_in_development_only_unless_told(self, tmp_path: Path) -> None:
        base = {"PRIVACY_API_DATA_DIR": str(tmp_path)}
        production = {
            **base,
            "PRIVACY_API_ENV": "production",
            "PRIVACY_API_SECRET_KEY": "x" * 32,
            "PRIVACY_API_PUBLIC_URL": "https://privacy.example.com",
        }

        assert load_config(base).deliver_in_serve
        assert load_config(base).mail_dir == tmp_path / "mail"
        assert not load_config(production).deliver_in_serve
        assert load_config(production).mail_from == "Privacy <privacy@privacy.example.com>"
        told = {**production, "PRIVACY_API_DELIVER_IN_SERVE": "true"}
        assert load_config(told).deliver_in_serve

    async def test_production_deliver_needs_an_smtp_server(
        self, clean_database_url, tmp_path
    ) -> None:
        code, _, err = await run_cli(
            clean_database_url,
            tmp_path,
            "deliver",
            "--once",
            PRIVACY_API_ENV="production",
            PRIVACY_API_PUBLIC_URL="https://privacy.example.com",
        )

        assert code == 2
        assert "PRIVACY_API_SMTP_URL" in err


class TestWorkerMetrics:
    """What an operator's alerts watch at /metrics: how much mail waits, for how long, and how
    much of it the server refused, read from the outbox whichever worker did the work."""

    async def test_waiting_retrying_and_failed_messages_show_in_a_scrape(
        self, client, database, config, smtp
    ) -> None:
        inbox, port = smtp
        inbox.refuse_always = "451 4.3.0 Try again later"
        await ask_for_new_address(client)
        waiting = scrape(await client.get("/metrics"))
        assert value(waiting, "privacy_api_outbox_unsent_messages") == 1
        assert value(waiting, "privacy_api_outbox_retrying_messages") == 0
        assert value(waiting, "privacy_api_outbox_failed_messages") == 0

        clock = Clock()
        sender = worker(config, database, port, clock, backoff=Backoff(attempts=2))
        assert (await sender.run_once()).retrying == 1
        retrying = scrape(await client.get("/metrics"))
        assert value(retrying, "privacy_api_outbox_unsent_messages") == 1
        assert value(retrying, "privacy_api_outbox_retrying_messages") == 1
        assert value(retrying, "privacy_api_outbox_oldest_unsent_age_seconds") >= 0

        [row] = await outbox(database)
        assert row.next_attempt_at is not None
        clock.now = row.next_attempt_at
        assert (await sender.run_once()).failed == 1
        given_up = scrape(await client.get("/metrics"))
        assert value(given_up, "privacy_api_outbox_unsent_messages") == 0
        assert value(given_up, "privacy_api_outbox_retrying_messages") == 0
        assert value(given_up, "privacy_api_outbox_failed_messages") == 1
        assert value(given_up, "privacy_api_outbox_oldest_unsent_age_seconds") == 0
