"""The step before every GraphQL operation: what the request says about its caller (the session's
use, the Global Privacy Control signal, an API key's use), applied in a short unit of work of its
own, and only when there is something to write."""

from __future__ import annotations

from auth.api_keys import Machine, record_key_uses
from models import utcnow
from resolvers import callers
from schema.context import RequestContext
from web.cookies import RequestCaller
from web.services import Services


async def apply_caller_signals(
    context: RequestContext, caller: RequestCaller, services: Services
) -> None:
    """Note that the session was used (every few minutes) and honour a Global Privacy Control
    signal, committed before the operation reads anything.

    A request with an API key is counted as a use of the key, in memory; every minute or so one
    such request writes the counts gathered (see `KeyUsage`)."""
    machine = await context.machine()
    if machine is not None:
        await _count_key_use(context, machine, services)
        return
    actor = await context.actor()
    gpc = caller.sends_global_privacy_control
    if actor is None and not gpc:
        return  # nothing a signed-out request without the signal could write
    signals = callers.Signals(
        global_privacy_control=gpc, device_id=caller.device_id, request_id=context.request_id
    )
    if actor is None:
        if not signals.gpc_from_device:
            return
        async with context.reading() as session:
            due = await callers.visitor_signal_due(session, signals)
        if due:
            async with context.unit_of_work() as session:
                await callers.apply_visitor_signal(session, signals)
        return
    now = utcnow()
    if not callers.person_signals_due(actor, signals, now):
        return
    async with context.unit_of_work() as session:
        changed = await callers.apply_person_signals(session, actor, signals, now)
    if changed != actor:
        context.replace_actor(changed)


async def _count_key_use(context: RequestContext, machine: Machine, services: Services) -> None:
    usage = services.key_usage
    usage.note(machine.key_id, utcnow())
    if not usage.due():
        return
    taken = usage.take()
    try:
        async with context.unit_of_work() as session:
            await record_key_uses(session, taken)
    except BaseException:
        usage.give_back(taken)
        raise
