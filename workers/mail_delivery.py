"""The delivery loop: claim due messages, send each, mark it sent or record the failure, repeat.

Each step is a transaction of its own, and none is open while a message is being sent. Delivery
is at least once: a worker that stops between sending a message and marking it sent leaves its
claim to expire (after LEASE), and the message is sent again, with the same Message-ID, so a
receiver can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

import aiosmtplib

from models import Database, utcnow
from privacy_api.config import Config, SmtpServer
from resolvers import mail, mail_delivery, notifications, outbox, unsubscribe
from resolvers.mail_delivery import Outgoing

logger = logging.getLogger("privacy_api.delivery")

# How long a claim holds a message: well beyond the time to send a batch, so that only a worker
# that has stopped loses its messages to another.
LEASE = timedelta(minutes=10)
BATCH = 20
SMTP_TIMEOUT = 30.0


class Mailer(Protocol):
    async def send(self, email: EmailMessage, notification_id: uuid.UUID) -> Path | None:
        """Hand the email on; returns the file it was written to, if it was written to one."""


@dataclass(frozen=True)
class SmtpMailer:
    """Sends through an SMTP server, one connection per message."""

    server: SmtpServer
    timeout: float = SMTP_TIMEOUT

    async def send(self, email: EmailMessage, notification_id: uuid.UUID) -> Path | None:
        server = self.server
        # Credentials never cross the network in clear: with them, STARTTLS is required;
        # without (a local relay), it is used when the server offers it.
        start_tls = None if server.username is None else True
        await aiosmtplib.send(
            email,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=False if server.implicit_tls else start_tls,
            timeout=self.timeout,
        )
        return None


@dataclass(frozen=True)
class FolderMailer:
    """Development without a mail server: each message becomes an .eml file to open."""

    folder: Path

    async def send(self, email: EmailMessage, notification_id: uuid.UUID) -> Path | None:
        return await asyncio.to_thread(self._write, bytes(email), notification_id)

    def _write(self, content: bytes, notification_id: uuid.UUID) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{utcnow():%Y%m%d-%H%M%S}-{notification_id}.eml"
        partial = path.with_suffix(".part")
        # The file may hold a working code: readable by its owner only.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        partial.replace(path)
        return path

    def forget(self, addresses: Sequence[str]) -> int:
        """Delete every message written to one of these addresses (an erased account's);
        returns how many went."""
        wanted = {address.lower() for address in addresses}
        removed = 0
        for path in sorted(self.folder.glob("*.eml")):
            with path.open("rb") as handle:
                headers = BytesParser(policy=email.policy.default).parse(handle, headersonly=True)
            recipients = {address.lower() for _, address in getaddresses(headers.get_all("To", []))}
            if recipients & wanted:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


@dataclass(frozen=True)
class Backoff(outbox.Backoff):
    """Mail's retry schedule: doubling from a minute up to an hour, eight tries in all."""

    first: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=1)
    attempts: int | None = 8


@dataclass(frozen=True)
class DeliveryReport(outbox.Report):
    """What delivery did, in numbers (and, in development, the files written)."""

    sent: int = 0
    retrying: int = 0  # failed this time; tried again later
    failed: int = 0  # given up on
    suppressed: int = 0  # not sent: the person switched the topic off
    files: tuple[Path, ...] = ()

    @property
    def handled(self) -> int:
        return self.sent + self.retrying + self.failed + self.suppressed


def _failure(error: Exception) -> tuple[str, bool]:
    """Why an attempt failed, without the server's words (they may quote the address), and
    whether trying again is pointless."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({refusal.code for refusal in error.recipients})
        return f"recipient refused: SMTP {', '.join(map(str, codes))}", min(codes) >= 500
    if isinstance(error, aiosmtplib.SMTPResponseException):
        # A refused login or sender is our configuration, not the message: worth retrying
        # once it is fixed. A refused message or recipient stays refused.
        permanent = error.code >= 500 and isinstance(
            error, aiosmtplib.SMTPDataError | aiosmtplib.SMTPRecipientRefused
        )
        return f"{type(error).__name__}: SMTP {error.code}", permanent
    return type(error).__name__, False


@dataclass
class Delivery:
    """One delivery worker. Several may run at once, in one process or many."""

    database: Database
    mailer: Mailer
    envelope: mail.Envelope
    secret_key: str
    # The unsubscribe page's address for a token: the composition root (cli) passes
    # web.routes.PublicLinks(...).unsubscribe, as every link is built from the route constants.
    unsubscribe_link: Callable[[str], str]
    backoff: Backoff = field(default_factory=Backoff)
    lease: timedelta = LEASE
    batch: int = BATCH
    clock: Callable[[], datetime] = utcnow
    worker: str = field(default_factory=outbox.worker_name)

    async def step(self) -> DeliveryReport:
        """Claim up to a batch of due messages and deliver each."""
        async with self.database.transaction() as session:
            claimed = await mail_delivery.claim(
                session, worker=self.worker, now=self.clock(), lease=self.lease, limit=self.batch
            )
        report = DeliveryReport(suppressed=claimed.suppressed)
        for message in claimed.outgoing:
            report += await self._deliver(message)
        return report

    async def run_once(self) -> DeliveryReport:
        """Deliver everything due now, then return (for cron and tests)."""
        report = DeliveryReport()
        while (done := await self.step()).handled:
            report += done
        return report

    async def run(self, stop: asyncio.Event, poll: float = 2.0) -> None:
        """Deliver until `stop` is set, looking for new messages every `poll` seconds when idle.
        A step that fails (the database is away) is logged and tried again."""
        while not stop.is_set():
            try:
                done = await self.step()
            except Exception:
                logger.exception("A delivery step failed; trying again shortly.")
                done = DeliveryReport()
            if not done.handled:
                await outbox.idle(stop, poll)

    async def _deliver(self, message: Outgoing) -> DeliveryReport:
        try:
            email = mail.build_email(
                self.envelope,
                notification_id=message.id,
                recipient=message.recipient,
                subject=message.subject,
                body=message.body,
                html_body=message.html,
                created_at=message.created_at,
                unsubscribe=self._unsubscribe_link(message),
            )
            written = await self.mailer.send(email, message.id)
        except Exception as error:
            return await self._failed(message, error)
        async with self.database.transaction() as session:
            await notifications.mark_sent(session, [message.id])
        if written is not None:
            logger.info("Message %s written to %s", message.id, written)
            return DeliveryReport(sent=1, files=(written,))
        logger.info("Message %s sent", message.id)
        return DeliveryReport(sent=1)

    def _unsubscribe_link(self, message: Outgoing) -> str | None:
        if message.topic is None or message.account_id is None:
            return None
        token = unsubscribe.link_token(self.secret_key, message.account_id, message.topic)
        return self.unsubscribe_link(token)

    async def _failed(self, message: Outgoing, error: Exception) -> DeliveryReport:
        reason, permanent = _failure(error)
        if not isinstance(error, aiosmtplib.SMTPException | OSError):
            # By name only: the text of an error about a header may quote the address.
            logger.error("Message %s could not be built or sent: %s", message.id, reason)
        now = self.clock()
        retry_at = None if permanent else self.backoff.retry_at(now, message.attempts + 1)
        async with self.database.transaction() as session:
            status = await mail_delivery.record_failure(
                session, message.id, worker=self.worker, reason=reason, retry_at=retry_at
            )
        if retry_at is None:
            logger.warning("Message %s failed (%s); not trying again", message.id, reason)
            return DeliveryReport(failed=status is not None)
        logger.warning("Message %s failed (%s); trying again at %s", message.id, reason, retry_at)
        return DeliveryReport(retrying=status is not None)


def mailer_for(config: Config) -> Mailer:
    """The SMTP server configured, or the development mail folder."""
    if config.smtp is not None:
        return SmtpMailer(config.smtp)
    return FolderMailer(config.mail_dir)


def delivery_for(
    config: Config, database: Database, unsubscribe_link: Callable[[str], str]
) -> Delivery:
    """The delivery worker `config` describes, writing unsubscribe links with `unsubscribe_link`."""
    domain = config.mail_from.rpartition("@")[2].strip(" >") or "localhost"
    return Delivery(
        database=database,
        mailer=mailer_for(config),
        envelope=mail.Envelope(sender=config.mail_from, domain=domain),
        secret_key=config.secret_key,
        unsubscribe_link=unsubscribe_link,
    )
