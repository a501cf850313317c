"""What a request says about its caller besides its operation: that the session is in use, and
the Global Privacy Control signal. The edge applies it before the operation runs, in a short unit
of work of its own, only when there is something to write."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from auth.actor import Actor, note_session_use, session_use_is_stale
from resolvers import settings, visitors


@dataclass(frozen=True)
class Signals:
    """What the request carries: the GPC header, the device it names, its request id."""

    global_privacy_control: bool
    device_id: str | None
    request_id: str

    @property
    def gpc_from_device(self) -> bool:
        """A GPC signal from a signed-out device that names itself: it may have choices to
        honour the signal for."""
        return self.global_privacy_control and self.device_id is not None


def person_signals_due(actor: Actor, signals: Signals, now: datetime) -> bool:
    """Whether a signed-in person's request has something to write: a session last noted a while
    ago, or a GPC signal their account has not received yet (once received, its opted-out state
    holds, see `settings.apply_global_privacy_control`, so a request with it costs nothing more)."""
    gpc = signals.global_privacy_control and not actor.gpc_applied
    return gpc or session_use_is_stale(actor, now)


async def apply_person_signals(
    session: AsyncSession, actor: Actor, signals: Signals, now: datetime
) -> Actor:
    """Note the session's use and honour the GPC signal; the actor as it now is."""
    if session_use_is_stale(actor, now):
        await note_session_use(session, actor, now)
    if not signals.global_privacy_control or actor.gpc_applied:
        return actor
    await settings.apply_global_privacy_control(session, actor, signals.request_id)
    return dataclasses.replace(actor, gpc_applied=True)


async def visitor_signal_due(session: AsyncSession, signals: Signals) -> bool:
    """Whether a signed-out device with a visitor record sends a GPC signal it has not received
    yet (only reads: the signal is written once, then only read)."""
    if not signals.gpc_from_device:
        return False
    visitor = await visitors.find_visitor(session, signals.device_id)
    return visitor is not None and visitor.gpc_applied_at is None


async def apply_visitor_signal(session: AsyncSession, signals: Signals) -> None:
    """Honour the GPC signal for the signed-out device's choices."""
    await visitors.apply_global_privacy_control(session, signals.device_id, signals.request_id)
