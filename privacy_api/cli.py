"""The `privacy-api` command: serve, migrate, export-schema, create-staff, verify-ledger, purge,
apply-age-rules, unsubscribe-link, notifications, deliver, deliver-webhooks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import getpass
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

import uvicorn
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection
from starlette.applications import Starlette

from auth.sealing import UnreadableSecret
from models import Database, Role, utcnow
from models.availability import is_unavailable
from privacy_api import startup
from privacy_api.config import Config, ConfigError, load_config, receipt_signing_key, webhook_sealer
from resolvers import account as accounts
from resolvers import consent, erasure, notifications, policy, unsubscribe, visitors, webhooks
from resolvers.account import Client
from resolvers.catalogue import Topic
from resolvers.consent import BrokenLink
from resolvers.errors import Rejected
from schema import build_schema, schema_sdl
from schema.documents import ManifestError, PersistedQueries
from web import access_log, metrics
from web.app import create_app
from web.metrics import MULTIPROCESS_DIR
from web.routes import PublicLinks
from web.services import Services
from workers import age_rules
from workers import purge as purge_worker
from workers import webhooks as webhook_worker
from workers.mail_delivery import DeliveryReport, delivery_for

# The folder that holds this package, migrations/ and schema.graphql (the checkout, or
# site-packages where the app is installed).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("privacy_api.cli")
DEMO_EMAIL = "demo@example.com"


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return config


async def migrate(database_url: str) -> None:
    """Bring the database to the newest schema."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    database = Database(database_url)

    def upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(upgrade)
    finally:
        await database.dispose()


async def seal_webhook_secrets(config: Config) -> int:
    """Seal every stored webhook secret with the first PRIVACY_API_WEBHOOK_SECRET_KEY (plain ones
    from before secrets were sealed, and ones under a key being retired); returns how many
    endpoints there are. Without endpoints no key is needed."""
    database = Database(config.database_url)
    try:
        async with database.transaction() as session:
            if not await webhooks.count_webhooks(session):
                return 0
            return await webhooks.reseal_secrets(session, webhook_sealer(config))
    finally:
        await database.dispose()


def _migrate_and_seal(config: Config) -> str | None:
    """The schema brought up to date and the webhook secrets sealed; or why the secrets could
    not be (the schema is migrated either way, and running it again finishes the job)."""
    asyncio.run(migrate(config.database_url))
    try:
        asyncio.run(seal_webhook_secrets(config))
    except (ConfigError, UnreadableSecret) as error:
        return f"Configuration error: {error}"
    return None


async def create_demo_account(config: Config) -> tuple[str, str] | None:
    """In development, on an empty database, an adult account to try the API with."""
    database = Database(config.database_url)
    try:
        async with database.transaction() as session:
            if await accounts.count_accounts(session):
                return None
            password = secrets.token_urlsafe(12)
            current = await policy.current_policy(session)
            await accounts.create_confirmed_account(
                session,
                Client(address="cli", user_agent="privacy-api cli", session_days=1),
                email=DEMO_EMAIL,
                password=password,
                display_name="Demo Person",
                birth_date=date(1990, 5, 17),
                country="DE",
                accept_policy_version=current.version,
            )
            return DEMO_EMAIL, password
    finally:
        await database.dispose()


async def create_staff(config: Config, email: str, name: str, role: Role, password: str) -> None:
    database = Database(config.database_url)
    try:
        async with database.transaction() as session:
            await accounts.create_staff(
                session, email=email, password=password, display_name=name, role=role
            )
    finally:
        await database.dispose()


# How many disagreeing settings verify-ledger names; more than a few means a wider problem.
DISAGREEMENTS_SHOWN = 20


async def verify_ledger(
    config: Config,
) -> tuple[int, BrokenLink | None, list[consent.Disagreement]]:
    database = Database(config.database_url)
    try:
        async with database.session() as session:
            checked, broken = await consent.verify_ledger(session)
        async with database.session() as session:
            visitor_checked, visitor_broken = await visitors.verify_visitor_ledgers(session)
        checked += visitor_checked
        if broken is None and visitor_broken is not None:
            # Named as an account's would be; the id is the visitor record's.
            broken = dataclasses.replace(
                visitor_broken, reason=f"(a signed-out visitor's chain) {visitor_broken.reason}"
            )
        async with database.session() as session:
            disagreements = await consent.disagreeing_settings(
                session, limit=DISAGREEMENTS_SHOWN + 1
            )
        return checked, broken, disagreements
    finally:
        await database.dispose()


async def purge(config: Config) -> tuple[purge_worker.PurgeReport, erasure.Pruned, int]:
    """Erase due accounts, prune what has served its use, and delete expired visitors."""
    database = Database(config.database_url)
    try:
        now = utcnow()
        # In development the mail folder holds every message sent: an erasure empties it too.
        mail_dir = None if config.smtp is not None else config.mail_dir
        report = await purge_worker.purge_due_accounts(database, config.secret_key, now, mail_dir)
        pruned = await purge_worker.prune_expired(database, now)
        retention = timedelta(days=config.visitor_retention_days)
        return report, pruned, await purge_worker.purge_expired_visitors(database, now, retention)
    finally:
        await database.dispose()


async def apply_age_rules(config: Config) -> age_rules.AgeRulesReport:
    database = Database(config.database_url)
    try:
        return await age_rules.apply_age_rules(database)
    finally:
        await database.dispose()


async def unsubscribe_link(config: Config, email: str, topic: Topic) -> unsubscribe.Link:
    database = Database(config.database_url)
    try:
        async with database.session() as session:
            return await unsubscribe.unsubscribe_link(
                session,
                secret_key=config.secret_key,
                unsubscribe_link=PublicLinks(config.public_url).unsubscribe,
                email=email,
                topic=topic,
            )
    finally:
        await database.dispose()


async def unsent_notifications(
    config: Config, *, limit: int, mark_sent: bool
) -> tuple[list[tuple[str, str]], int]:
    """The oldest unsent messages (recipient, subject), read before any is marked sent (which
    forgets some addresses), and, when asked, how many of them were then marked sent."""
    database = Database(config.database_url)
    try:
        async with database.transaction() as session:
            waiting = list(await notifications.pending(session, limit=limit))
            listed = [(message.recipient, message.subject) for message in waiting]
            marked = 0
            if mark_sent:
                marked = await notifications.mark_sent(session, [n.id for n in waiting])
            return listed, marked
    finally:
        await database.dispose()


async def deliver(config: Config, *, once: bool) -> DeliveryReport:
    """Deliver the outbox: what is due now (`once`), or until SIGINT or SIGTERM."""
    database = Database(config.database_url, config.database_timeouts)
    try:
        worker = delivery_for(config, database, PublicLinks(config.public_url).unsubscribe)
        if once:
            return await worker.run_once()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stopping in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stopping, stop.set)
        await worker.run(stop)
        return DeliveryReport()
    finally:
        await database.dispose()


async def deliver_webhooks(config: Config, *, once: bool) -> webhook_worker.StepReport:
    """Deliver webhooks: what is due now (`once`), or until SIGINT or SIGTERM."""
    database = Database(config.database_url, config.database_timeouts)
    try:
        stop = asyncio.Event()
        if not once:  # a run that ends by itself needs no way to be stopped
            loop = asyncio.get_running_loop()
            for stopping in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(stopping, stop.set)
        return await webhook_worker.run(
            database, webhook_worker.Delivery.from_config(config), once=once, stop=stop
        )
    finally:
        await database.dispose()


def cmd_deliver_webhooks(args: argparse.Namespace, config: Config) -> int:
    try:
        webhook_sealer(config)
    except ConfigError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    report = asyncio.run(deliver_webhooks(config, once=args.once))
    print(
        f"Attempted {report.attempted} webhook deliveries: {report.delivered} delivered, "
        f"{report.attempted - report.delivered} to retry."
    )
    return 0


def _refused(error: ConfigError) -> int:
    """Every problem of a refused configuration, one line each, and the exit code for it."""
    if len(error.problems) == 1:
        print(f"Configuration error: {error.problems[0]}", file=sys.stderr)
    else:
        print(f"Configuration errors ({len(error.problems)}):", file=sys.stderr)
        for problem in error.problems:
            print(f"- {problem}", file=sys.stderr)
    return 2


def _port_taken(host: str, port: int) -> str | None:
    """The line to print when nothing can listen on host:port (as uvicorn will bind it), checked
    before anything is migrated or created."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "is in use" if error.errno == errno.EADDRINUSE else f"({error.strerror})"
            return (
                f"Cannot listen on {host}:{port}: the port {reason}. Stop what holds it, or "
                "serve on another port with --port or PRIVACY_API_PORT."
            )
    return None


def check_documents(config: Config) -> None:
    """The trusted documents' manifest, read and every document validated once here, so that
    one that cannot run stops the start with a line rather than each worker with a traceback."""
    if config.trusted_documents is not None:
        schema = build_schema(production=config.production)
        PersistedQueries.load(
            config.trusted_documents, schema, registered_only=config.registered_documents_only
        )


# Seconds between looks at the outbox when `serve` delivers it itself (the worker's own is 2).
SERVE_DELIVERY_POLL = 0.5


def serving_app() -> Starlette:
    """The app each `serve` process runs (uvicorn's factory): in development, or when
    PRIVACY_API_DELIVER_IN_SERVE says so, it delivers the outbox too; in production that is
    `privacy-api deliver`'s job."""
    config = load_config()
    if not config.deliver_in_serve:
        return create_app(config)

    async def deliver(services: Services, stop: asyncio.Event) -> None:
        delivery = delivery_for(
            config, services.database, PublicLinks(config.public_url).unsubscribe
        )
        # A developer waits for these messages (a signup's code): look twice a second.
        await delivery.run(stop, poll=SERVE_DELIVERY_POLL)

    return create_app(config, alongside=deliver)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    port = config.port if args.port is None else args.port
    try:
        receipt_signing_key(config)
        webhook_sealer(config)
        check_documents(config)
    except ConfigError as error:
        return _refused(error)
    except ManifestError as error:
        return _refused(ConfigError(str(error)))
    listening = [port] if config.metrics_port is None else [port, config.metrics_port]
    for taken in filter(None, (_port_taken(args.host, each) for each in listening)):
        print(taken, file=sys.stderr)
        return 2
    if args.workers > 1 and config.rate_limit_storage.startswith("memory://"):
        # Each process would count on its own: ten tries at a password become ten per process.
        print(
            "Configuration error: --workers above 1 needs rate limits the processes share; "
            "set PRIVACY_API_RATE_LIMIT_STORAGE (such as redis://127.0.0.1:6379).",
            file=sys.stderr,
        )
        return 2
    if not config.production and not os.environ.get("PRIVACY_API_PUBLIC_URL", "").strip():
        # Links in messages point at the port served (read again by each worker's app).
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        os.environ["PRIVACY_API_PUBLIC_URL"] = f"http://{host}:{port}"
    if args.migrate:
        problem = _migrate_and_seal(config)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    if not config.production:
        demo = asyncio.run(create_demo_account(config))
        if demo:
            print(f"Demo account created: email {demo[0]}  password {demo[1]}")
    counts = None
    if args.workers > 1 and not os.environ.get(MULTIPROCESS_DIR):
        # Each worker writes its counts there; a scrape of any worker adds them all up.
        counts = os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="privacy-api-metrics-")
    if config.metrics_port is not None:
        metrics.listen(config, args.host, config.metrics_port)
        logger.info("Metrics on http://%s:%s/metrics", args.host, config.metrics_port)
    logger.info("GraphQL API on http://%s:%s/graphql", args.host, port)
    uvicorn.run(
        "privacy_api.cli:serving_app",
        factory=True,
        host=args.host,
        port=port,
        workers=args.workers,
        # A worker still importing the app on a busy host is not dead: give it time to answer.
        timeout_worker_healthcheck=30,
        log_level="info",
        log_config=access_log.log_config(config.log_format, tracing=config.tracing),
        # web.observe writes each request's line, with its route, operation and duration.
        access_log=False,
        # No `Server: uvicorn`: naming the software and nothing else helps only whoever scans
        # for servers with a known flaw.
        server_header=False,
        # The client address that per-client rate limits count is the peer's, unless the peer
        # is a proxy the operator named (uvicorn would otherwise believe anyone on loopback).
        proxy_headers=bool(config.trusted_proxies),
        forwarded_allow_ips=list(config.trusted_proxies),
    )
    if counts:
        shutil.rmtree(counts, ignore_errors=True)
    return 0


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    problem = _migrate_and_seal(config)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    print("Database is up to date.")
    return 0


def cmd_export_schema(args: argparse.Namespace, config: Config | None) -> int:
    Path(args.output).write_text(schema_sdl())
    print(f"Wrote {args.output}")
    return 0


def cmd_create_staff(args: argparse.Namespace, config: Config) -> int:
    password = os.environ.get("PRIVACY_API_STAFF_PASSWORD") or getpass.getpass("Password: ")
    role = Role.SUPPORT if args.role == "support" else Role.PRIVACY_OFFICER
    try:
        asyncio.run(create_staff(config, args.email, args.name, role, password))
    except Rejected as rejected:
        for error in rejected.errors:
            print(f"{error.field}: {error.message}", file=sys.stderr)
        return 1
    print(f"Created {args.role} account {args.email}")
    return 0


def cmd_verify_ledger(args: argparse.Namespace, config: Config) -> int:
    checked, broken, disagreements = asyncio.run(verify_ledger(config))
    if broken is None:
        print(f"Checked {checked} consent events: every chain is intact.")
    else:
        print(
            f"Broken chain at consent event {broken.event_id} (account {broken.account_id}, "
            f"event number {broken.seq}): {broken.reason}.",
            file=sys.stderr,
        )
    if not disagreements:
        print("Every stored setting and accepted policy matches its newest consent event.")
    for disagreement in disagreements[:DISAGREEMENTS_SHOWN]:
        print(
            f"Account {disagreement.account_id}, {disagreement.key}: stored "
            f"{_shown(disagreement.stored, 'no value')} but its newest consent event says "
            f"{_shown(disagreement.recorded, 'there is no event')}.",
            file=sys.stderr,
        )
    if len(disagreements) > DISAGREEMENTS_SHOWN:
        print(f"... and more; only the first {DISAGREEMENTS_SHOWN} are named.", file=sys.stderr)
    return 0 if broken is None and not disagreements else 1


def _shown(value: str | None, absent: str) -> str:
    return f"{absent} (the default)" if value is None else repr(value)


def cmd_purge(args: argparse.Namespace, config: Config) -> int:
    if args.every is not None:
        return asyncio.run(purge_every(config, args.every))
    return _purge_report(config, *asyncio.run(purge(config)))


def next_slot(now: datetime, every: timedelta) -> datetime:
    """The first whole multiple of `every` since the Unix epoch after `now`: scheduled runs stay
    on the clock (`1d` at midnight UTC, `1h` on the hour) however long each one takes, and a
    restart keeps them there."""
    slots = (now - _EPOCH) // every + 1
    return _EPOCH + slots * every


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def purge_every(config: Config, every: timedelta) -> int:
    """`purge --every`: a run now, then one at each slot of the clock (`next_slot`), until SIGINT
    or SIGTERM, which ends the wait at once or a run in its tracks (each erasure is a
    transaction of its own: the one cut short is rolled back, and the next run does it)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stopping in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stopping, stop.set)
    while not stop.is_set():
        run = asyncio.create_task(purge(config))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
            break
        try:
            _purge_report(config, *run.result())
        except Exception as error:
            if not is_unavailable(error):
                raise
            # The next slot tries again; a scheduler that exited would need a restart.
            logger.warning("purge: the database is unavailable; trying again at the next slot")
        slot = next_slot(datetime.now(UTC), every)
        print(f"Next purge at {slot:%Y-%m-%d %H:%M:%S} UTC.", flush=True)
        # The wait is measured on the monotonic clock; woken a moment early, wait the rest.
        while not stop.is_set() and (left := (slot - datetime.now(UTC)).total_seconds()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), left)
    print("Stopped.", flush=True)
    return 0


def _purge_report(
    config: Config,
    report: purge_worker.PurgeReport,
    pruned: erasure.Pruned,
    expired_visitors: int,
) -> int:
    print(
        f"Accounts due for deletion: {report.purged} purged, "
        f"{report.held} held back by a legal hold, "
        f"{report.waiting} waiting for their deletion notice to be sent."
    )
    print(
        f"No longer needed, deleted: {pruned.sessions} expired sessions, {pruned.exports} used "
        f"or expired export links, {pruned.idempotency_keys} idempotency keys, "
        f"{pruned.notifications} sent messages, {pruned.pending_signups} unconfirmed signups, "
        f"{pruned.password_resets} password reset links, {expired_visitors} signed-out "
        f"visitors' cookie choices older than {config.visitor_retention_days} days."
    )
    if report.failed:
        print(
            f"{report.failed} could not be purged and were left intact (see the log above); "
            "the next run tries them again.",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_apply_age_rules(args: argparse.Namespace, config: Config) -> int:
    report = asyncio.run(apply_age_rules(config))
    accounts = "account" if report.protected == 1 else "accounts"
    print(
        f"Age rules applied: {report.protected} {accounts} of people below the age of digital "
        "consent had what a minor may not have switched off."
    )
    if report.failed:
        print(
            f"{report.failed} could not be changed and were left as they were (see the log "
            "above); run the command again.",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_unsubscribe_link(args: argparse.Namespace, config: Config) -> int:
    try:
        link = asyncio.run(unsubscribe_link(config, args.email, Topic[args.topic]))
    except Rejected as rejected:
        for error in rejected.errors:
            print(f"{error.field}: {error.message}", file=sys.stderr)
        return 1
    print(link.url)
    for name, value in link.headers.items():
        print(f"{name}: {value}")
    print(f"Valid until {link.valid_until:%Y-%m-%d}; it needs no sign-in.")
    return 0


def cmd_notifications(args: argparse.Namespace, config: Config) -> int:
    waiting, marked = asyncio.run(
        unsent_notifications(config, limit=args.limit, mark_sent=args.mark_sent)
    )
    if not waiting:
        print("No unsent notifications.")
        return 0
    for recipient, subject in waiting:
        print(f"{recipient}\t{subject}")
    if args.mark_sent:
        print(f"Marked {marked} as sent.")
    if len(waiting) == args.limit:
        more = "run again for the next ones" if args.mark_sent else "raise --limit to see them"
        print(f"There may be more than these {args.limit}: {more}.")
    return 0


def cmd_deliver(args: argparse.Namespace, config: Config) -> int:
    if config.production and config.smtp is None:
        print(
            "Configuration error: production mail needs PRIVACY_API_SMTP_URL "
            "(such as smtp://user:password@mail.example.com:587).",
            file=sys.stderr,
        )
        return 2
    # Running on, each message is logged as it goes; once, the summary below says it all.
    level = logging.WARNING if args.once else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    if config.smtp is None:
        print(f"No PRIVACY_API_SMTP_URL: writing messages to {config.mail_dir}/ as .eml files.")
    report = asyncio.run(deliver(config, once=args.once))
    if not args.once:
        return 0
    for path in report.files:
        print(f"Wrote {path}")
    print(
        f"Delivered {report.sent}, suppressed {report.suppressed} (topic switched off), "
        f"{report.retrying} to try again later, {report.failed} failed."
    )
    return 1 if report.failed else 0


_UNITS = {"s": 1, "m": 60, "h": 60 * 60, "d": 24 * 60 * 60}


def _interval(text: str) -> timedelta:
    """`90s`, `30m`, `6h`, `1d`."""
    found = re.fullmatch(r"([1-9][0-9]{0,5})([smhd])", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError("a whole number and s, m, h or d, such as 1d or 6h")
    return timedelta(seconds=int(found[1]) * _UNITS[found[2]])


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("a whole number of 1 or more")
    return int(text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help with its default, where there is one to show (not for a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    try:
        return f"%(prog)s {metadata.version('privacy-settings-api')}"
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "%(prog)s (not installed)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="privacy-api",
        description="The account privacy settings API: serve it, migrate its database, and run "
        "its workers and maintenance. Settings come from PRIVACY_API_* variables (README, "
        '"Configuration"); `privacy-api COMMAND --help` describes each command.',
        formatter_class=_HelpFormatter,
    )
    root.add_argument("--version", action="version", version=_version())
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help[:1].upper() + help[1:] + ".",
            formatter_class=_HelpFormatter,
        )  # fmt: skip

    serve = command("serve", "migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=int,
        help="port to listen on (default: PRIVACY_API_PORT, which defaults to 8000)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="API processes, one per core (above 1 needs PRIVACY_API_RATE_LIMIT_STORAGE shared)",
    )
    serve.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not migrate first (when a one-shot `migrate` runs before the API starts)",
    )
    serve.set_defaults(handler=cmd_serve, checks_rate_limits=True)

    command("migrate", "apply the database migrations").set_defaults(handler=cmd_migrate)

    export = command("export-schema", "write the GraphQL SDL")
    export.add_argument(
        "--output", default=str(PROJECT_ROOT / "schema.graphql"), help="file to write"
    )
    export.set_defaults(handler=cmd_export_schema, needs_config=False)

    command(
        "verify-ledger",
        "check every account's consent hash chain, and that each stored setting is what its "
        "newest consent event says",
    ).set_defaults(handler=cmd_verify_ledger)

    purging = command(
        "purge",
        "erase accounts whose deletion date has passed and data kept past its use (run it daily)",
    )
    purging.add_argument(
        "--every",
        type=_interval,
        metavar="INTERVAL",
        help="run now, then on the clock at every INTERVAL (1d: midnight UTC; 6h, 30m, 90s) "
        "until SIGTERM, instead of once",
    )
    purging.set_defaults(handler=cmd_purge)

    command(
        "apply-age-rules",
        "protect everyone the age rules make a minor (run after a deploy that changed them)",
    ).set_defaults(handler=cmd_apply_age_rules)

    staff = command(
        "create-staff",
        "create a staff account (password from PRIVACY_API_STAFF_PASSWORD or a prompt)",
    )
    staff.add_argument("--email", required=True, help="the staff member's sign-in address")
    staff.add_argument("--name", required=True, help="the name shown to colleagues")
    staff.add_argument(
        "--role", choices=["support", "privacy-officer"], required=True, help="what they may do"
    )
    staff.set_defaults(handler=cmd_create_staff)

    link = command(
        "unsubscribe-link",
        "print an account's one-click unsubscribe link (starting with PRIVACY_API_PUBLIC_URL) "
        "and the headers a mailer sends",
    )
    link.add_argument("--email", required=True, help="the account's address")
    link.add_argument(
        "--topic",
        choices=[topic.name for topic in Topic],
        required=True,
        help="the communication topic the link switches off",
    )
    link.set_defaults(handler=cmd_unsubscribe_link)

    outbox = command(
        "notifications", "list unsent outbox messages (recipient, subject), oldest first"
    )
    outbox.add_argument("--limit", type=_positive, default=100, help="how many to list")
    outbox.add_argument(
        "--mark-sent", action="store_true", help="then mark the listed messages as sent"
    )
    outbox.set_defaults(handler=cmd_notifications)

    deliver = command(
        "deliver",
        "send the outbox by SMTP (PRIVACY_API_SMTP_URL; without it, .eml files in "
        "data/mail/) until stopped",
    )
    deliver.add_argument(
        "--once", action="store_true", help="deliver what is due now, then exit (for cron)"
    )
    deliver.set_defaults(handler=cmd_deliver)

    webhook_delivery = command(
        "deliver-webhooks",
        "deliver webhook events to the registered endpoints, retrying failures (runs until "
        "stopped)",
    )
    webhook_delivery.add_argument(
        "--once", action="store_true", help="stop once nothing is due instead of waiting"
    )
    webhook_delivery.set_defaults(handler=cmd_deliver_webhooks)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = None
    if getattr(args, "needs_config", True):
        try:
            config = load_config(serving=args.handler is cmd_serve)
        except ConfigError as error:
            return _refused(error)
        access_log.configure(config.log_format, tracing=config.tracing)
        # Bounded waits, so that a wrong URL or a server that is down ends the start with a line
        # that says so, rather than a traceback or a process that hangs.
        found = startup.problems(config, rate_limits=getattr(args, "checks_rate_limits", False))
        for problem in found:
            print(problem, file=sys.stderr)
        if found:
            return 2
    try:
        return int(args.handler(args, config))
    except Exception as error:
        if not is_unavailable(error):
            raise
        kind = type(error)
        print(
            f"Database unavailable ({kind.__module__}.{kind.__qualname__}): the command "
            "stopped. Run it again once the database answers.",
            file=sys.stderr,
        )
        return 1
