"""The privacy policy: its published versions, which one each person accepted, and the notice
people get when it changes materially."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import ScalarSelect

from auth.actor import Actor
from models import Account, NotificationKind, PolicyVersion, Role, utcnow
from resolvers import notifications, webhooks
from resolvers.audit import audit
from resolvers.errors import ErrorCode, Rejected, UserError

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
SUMMARY_MAX_LENGTH = 5000


@dataclass(frozen=True)
class PolicyStatus:
    accepted_version: str | None
    current_version: str
    acceptance_required: bool


@dataclass(frozen=True)
class Published:
    policy: PolicyVersion
    notified: int  # messages queued in the outbox


def _newest() -> Select[PolicyVersion]:
    return select(PolicyVersion).order_by(PolicyVersion.published_at.desc()).limit(1)


async def current_policy(session: AsyncSession) -> PolicyVersion:
    """The newest published version; a migration seeds the first one, so there always is one."""
    return (await session.scalars(_newest())).one()


def newest_version() -> ScalarSelect[str]:
    """The version in force, as a subquery for a statement that needs it beside other things."""
    return _newest().with_only_columns(PolicyVersion.version).scalar_subquery()


def acceptance_error(version: str, current_version: str, field: str) -> UserError | None:
    """Only the version in force can be accepted (at signup, and later with acceptPolicy)."""
    if version == current_version:
        return None
    return UserError(
        field,
        f"Please read and accept the current privacy policy ({current_version}).",
        ErrorCode.POLICY_OUTDATED,
    )


async def policy_status(session: AsyncSession, accepted_version: str | None) -> PolicyStatus:
    """Where a person stands, in one statement.

    Acceptance is required once any material version has been published after the one they
    accepted, even when a non-material update came after it: they have not yet agreed to that
    material change. Non-material updates alone never require it. Someone who never accepted
    any version (staff made by the CLI) is asked to.
    """
    accepted = aliased(PolicyVersion)
    accepted_at = (
        select(accepted.published_at).where(accepted.version == accepted_version).scalar_subquery()
    )
    current = (
        select(PolicyVersion.version)
        .order_by(PolicyVersion.published_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    material_since = exists().where(
        PolicyVersion.material.is_(True), PolicyVersion.published_at > accepted_at
    )
    row = (await session.execute(select(current, material_since))).one()
    return PolicyStatus(
        accepted_version=accepted_version,
        current_version=row[0],
        acceptance_required=accepted_version is None or bool(row[1]),
    )


def _publish_errors(version: str, summary: str) -> list[UserError]:
    errors = []
    if not VERSION_PATTERN.match(version):
        errors.append(
            UserError(
                "version",
                "Use 1 to 32 letters, digits, dots, dashes or underscores, such as 2026-01.",
                ErrorCode.INVALID_INPUT,
            )
        )
    if not 1 <= len(summary) <= SUMMARY_MAX_LENGTH:
        errors.append(
            UserError(
                "summary",
                f"Summarise what changed in 1 to {SUMMARY_MAX_LENGTH} characters.",
                ErrorCode.INVALID_INPUT,
            )
        )
    return errors


async def publish_policy_version(
    session: AsyncSession,
    officer: Actor,
    *,
    version: str,
    summary: str,
    material: bool,
    request_id: str | None = None,
) -> Published:
    """Publish a new version; it is in force at once.

    It is announced to every person whose account is not pending deletion (they hear of it if
    they cancel), one outbox message each, in the same transaction: a material version as a
    legal notice that goes whatever their choices, any other as a service update.
    """
    version, summary = version.strip(), summary.strip()
    errors = _publish_errors(version, summary)
    if errors:
        raise Rejected(*errors)
    exists_already = Rejected.one(
        ErrorCode.POLICY_VERSION_EXISTS, f"Version {version} has already been published.", "version"
    )
    if await session.get(PolicyVersion, version) is not None:
        raise exists_already
    policy = PolicyVersion(
        version=version, published_at=utcnow(), summary=summary, material=material
    )
    try:
        async with session.begin_nested():
            session.add(policy)
    except IntegrityError:
        # Another officer published the same version between our check and this insert.
        raise exists_already from None
    notified = await notifications.queue_for_accounts(
        session,
        (Account.role == Role.USER) & Account.deletion_due_at.is_(None),
        NotificationKind.POLICY_UPDATE if material else NotificationKind.POLICY_MINOR_UPDATE,
        {"version": version, "summary": summary},
    )
    await webhooks.policy_published(session, policy)
    await audit(
        session, officer, "policy.publish", [], f"Published policy version {version}", request_id
    )
    await session.flush()
    return Published(policy=policy, notified=notified)


async def queue_missed_notices(session: AsyncSession, account: Account, since: datetime) -> None:
    """The notices of material versions published since `since` (while the account was pending
    deletion, and so left out), for one it still has to accept: each is a legal notice the
    person is owed now that the account stays."""
    accepted_at = (
        select(PolicyVersion.published_at)
        .where(PolicyVersion.version == account.accepted_policy_version)
        .scalar_subquery()
    )
    missed = await session.scalars(
        select(PolicyVersion)
        .where(
            PolicyVersion.material.is_(True),
            PolicyVersion.published_at >= since,
            or_(accepted_at.is_(None), PolicyVersion.published_at > accepted_at),
        )
        .order_by(PolicyVersion.published_at)
    )
    for policy in missed:
        notifications.queue(
            session,
            account,
            NotificationKind.POLICY_UPDATE,
            {"version": policy.version, "summary": policy.summary},
        )
