"""Configuration read from environment variables, with the defaults a newcomer needs.

The variables and their defaults are listed in README.md ("Configuration").
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from auth import passwords, sealing, signing
from models.database import DatabaseTimeouts
from resolvers.erasure import MAX_GRACE_DAYS

T = TypeVar("T")
DEVELOPMENT = "development"
PRODUCTION = "production"


class ConfigError(RuntimeError):
    """The environment does not describe a configuration the API can run with: each problem,
    one setting each."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")
_IPV6 = re.compile(r"[0-9a-f:.]+")


@dataclass(frozen=True)
class SmtpServer:
    """Where the delivery worker sends mail (PRIVACY_API_SMTP_URL)."""

    host: str
    port: int
    # True: TLS from the first byte (smtps://). False: plain, upgraded with STARTTLS (smtp://),
    # which is required when there are credentials to send.
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Config:
    database_url: str
    secret_key: str
    environment: str = DEVELOPMENT
    allowed_origins: tuple[str, ...] = ()
    session_days: int = 30
    rate_limit_storage: str = "memory://"
    data_dir: Path = field(default_factory=lambda: Path("data"))
    # PRIVACY_API_PORT: where `serve` listens unless --port says otherwise.
    port: int = 8000
    # Where people reach the API: the base of links in emails (unsubscribe, export downloads).
    public_url: str = "http://127.0.0.1:8000"
    deletion_grace_days: int = 30
    export_valid_hours: int = 24
    # Addresses and networks of the reverse proxies whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    database_timeouts: DatabaseTimeouts = field(default_factory=DatabaseTimeouts)
    # Webhook receivers on loopback or private networks: for local tests only, never production.
    webhooks_allow_private: bool = False
    # An endpoint whose deliveries have all failed for this long is disabled.
    webhook_disable_after_hours: int = 24
    # The Ed25519 key consent receipts are signed with (PEM, or 32 raw bytes in base64); see
    # `receipt_signing_key` for when it may be empty.
    receipt_signing_key: str = ""
    # The Fernet keys webhook signing secrets are sealed with, the sealing one first; see
    # `webhook_sealer` for when there may be none.
    webhook_secret_keys: tuple[str, ...] = ()
    # A signed-out visitor's cookie choices are kept this long after their last choice (about
    # 13 months, the longest a cookie consent is commonly held to last), then purged.
    visitor_retention_days: int = 395
    # None: messages are written as .eml files to `mail_dir` instead of sent (development).
    smtp: SmtpServer | None = None
    mail_dir: Path = field(default_factory=lambda: Path("data") / "mail")
    # The From of every message; its domain is also the right-hand side of Message-IDs.
    mail_from: str = "Privacy <privacy@localhost>"
    # Whether `serve` delivers the outbox itself, beside the API (development: yes).
    deliver_in_serve: bool = False
    # How often each process writes the use counts of API keys (see auth.api_keys.KeyUsage).
    api_key_usage_flush_seconds: int = 60
    # How old an opt-out is before the sender API's feed lists it (see resolvers.sender).
    suppression_feed_delay_seconds: int = 60
    # PRIVACY_API_LOG_FORMAT, `json` or `text`; None: json in production, text in development.
    log_format_setting: str | None = None
    # PRIVACY_API_METRICS; None: GET /metrics answers in development only.
    metrics_setting: bool | None = None
    # PRIVACY_API_METRICS_PORT: metrics on a listener of their own, not on the API's port.
    metrics_port: int | None = None
    # Whether requests are traced with OpenTelemetry, as the standard OTEL_* variables ask.
    tracing: bool = False
    # The manifest of trusted documents the CMS and the app ship with (schema/documents.py).
    trusted_documents: Path | None = None
    # Whether callers who are not signed in may run only the manifest's documents.
    registered_documents_only: bool = False
    # Whether registered documents are answered by their compiled plans (schema/compiled.py).
    compiled_executor: bool = True

    @property
    def production(self) -> bool:
        return self.environment == PRODUCTION

    @property
    def log_format(self) -> str:
        """`json` (one object a line, for a log collector) or `text` (for a person)."""
        return self.log_format_setting or ("json" if self.production else "text")

    @property
    def metrics(self) -> bool:
        """Whether GET /metrics answers on the API's own port (Prometheus text format): never
        when the metrics have a port of their own."""
        if self.metrics_port is not None:
            return False
        return not self.production if self.metrics_setting is None else self.metrics_setting


def _development_secret(data_dir: Path) -> str:
    """Keep one generated secret per checkout so sign-in markers survive a restart."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def _origin(given: str) -> str:
    """One allowed origin as a browser writes it in `Origin`: scheme://host[:port], lower case,
    without the default port or a trailing slash; anything else is refused by name."""
    variable = "PRIVACY_API_ALLOWED_ORIGINS"
    if "*" in given:
        raise ConfigError(
            f"{variable} may not contain {given!r}: with credentials allowed, every matching "
            "site could call the API as its signed-in visitor; list each origin, such as "
            "https://cms.example.com"
        )
    refused = ConfigError(
        f"{variable}: {given!r} is not an origin; write each as scheme://host or "
        "scheme://host:port with nothing after it, such as https://cms.example.com"
    )
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError:
        raise refused from None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    is_name = _HOST_NAME.fullmatch(host) is not None
    is_ipv6 = parts.netloc.startswith("[") and _IPV6.fullmatch(host) is not None
    if (
        scheme not in _DEFAULT_PORTS
        or not (is_name or is_ipv6)
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or "?" in given
        or "#" in given
    ):
        raise refused
    origin = f"{scheme}://[{host}]" if is_ipv6 else f"{scheme}://{host}"
    return origin if port in (None, _DEFAULT_PORTS[scheme]) else f"{origin}:{port}"


def _smtp_server(raw: str) -> SmtpServer | None:
    """`smtp://user:pass@host:587` (STARTTLS) or `smtps://user:pass@host:465` (implicit TLS)."""
    if not raw:
        return None
    refused = ConfigError(
        "PRIVACY_API_SMTP_URL must look like smtp://user:password@host:587 (STARTTLS) or "
        "smtps://user:password@host:465 (TLS), with the user and password URL-encoded"
    )
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise refused from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps") or not parts.hostname or parts.path not in ("", "/"):
        raise refused
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if scheme == "smtps" else 587),
        implicit_tls=scheme == "smtps",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _mail_from(raw: str, public_url: str) -> str:
    """The sender: as configured, or privacy@ the public host (localhost for an address)."""
    if not raw:
        host = urlsplit(public_url).hostname or "localhost"
        domain = "localhost" if _IPV6.fullmatch(host) or host[-1:].isdigit() else host
        return f"Privacy <privacy@{domain}>"
    _, address = parseaddr(raw)
    if "@" not in address or any(character in raw for character in "\r\n"):
        raise ConfigError(
            "PRIVACY_API_MAIL_FROM must be an address, such as privacy@example.com or "
            "Privacy <privacy@example.com>"
        )
    return raw


def _switch(env: dict[str, str], variable: str) -> bool | None:
    """An on/off setting (1, true, yes; 0, false, no); None when it is not set."""
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return None
    if raw not in ("1", "true", "yes", "0", "false", "no"):
        raise ConfigError(f"{variable} must be 1 or 0 (true or false)")
    return raw in ("1", "true", "yes")


def _on_unless_production(env: dict[str, str], variable: str, environment: str) -> bool:
    chosen = _switch(env, variable)
    return environment != PRODUCTION if chosen is None else chosen


def _trusted_proxies(raw: str) -> tuple[str, ...]:
    """Addresses (`10.0.0.7`) and networks (`10.0.0.0/8`), comma-separated."""
    proxies = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            parsed = ipaddress.ip_network(entry, strict=False) if "/" in entry else None
            proxies.append(str(parsed or ipaddress.ip_address(entry)))
        except ValueError:
            raise ConfigError(
                f"PRIVACY_API_TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                "(such as 10.0.0.7 or 10.0.0.0/8)"
            ) from None
    return tuple(proxies)


class _Problems:
    """Every setting that is wrong, collected so that one refused start names them all."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(self, read: Callable[[], T], fallback: T) -> T:
        """What `read` gives, or `fallback` once its problem is noted."""
        try:
            return read()
        except ConfigError as error:
            self.found.extend(error.problems)
            return fallback

    def note(self, problem: str) -> None:
        """One wrong setting, in the words the refused start prints."""
        self.found.append(problem)


def load_config(env: dict[str, str] | None = None, *, serving: bool = False) -> Config:
    """Build the configuration from the environment (or the mapping given, for tests). Refused
    with every wrong setting named at once, before anything is written; `serving` adds what only
    the API needs (see `receipt_signing_key`)."""
    env = dict(os.environ if env is None else env)
    problems = _Problems()
    environment = env.get("PRIVACY_API_ENV", DEVELOPMENT).strip().lower()
    if environment not in (DEVELOPMENT, PRODUCTION):
        problems.note("PRIVACY_API_ENV must be 'development' or 'production'")
        environment = ""  # neither: no check of one environment's own applies
    data_dir = Path(env.get("PRIVACY_API_DATA_DIR", "data"))
    database_url = problems.check(
        lambda: _database_url(env.get("PRIVACY_API_DATABASE_URL")), None
    ) or (f"sqlite+aiosqlite:///{(data_dir / 'privacy.db').as_posix()}")
    secret_key = env.get("PRIVACY_API_SECRET_KEY", "")
    if not secret_key and environment == PRODUCTION:
        problems.note("PRIVACY_API_SECRET_KEY is required in production")
    elif secret_key and len(secret_key) < 32:
        problems.note("PRIVACY_API_SECRET_KEY must be at least 32 characters")
    origins: dict[str, None] = {}
    for given in filter(
        None, map(str.strip, env.get("PRIVACY_API_ALLOWED_ORIGINS", "").split(","))
    ):
        try:
            origins[_origin(given)] = None
        except ConfigError as error:
            problems.found.extend(error.problems)
    cost = env.get(passwords.COST_VARIABLE, passwords.STANDARD).strip().lower()
    if cost not in passwords.COSTS or (cost != passwords.STANDARD and environment == PRODUCTION):
        problems.note(
            f"{passwords.COST_VARIABLE} is for the test suite only: leave it unset "
            f"(passwords are hashed at the {passwords.STANDARD} cost)"
        )
    port = problems.check(lambda: _port(env, "PRIVACY_API_PORT") or DEFAULT_PORT, DEFAULT_PORT)
    metrics_port = problems.check(lambda: _port(env, "PRIVACY_API_METRICS_PORT"), None)
    public_url = env.get("PRIVACY_API_PUBLIC_URL", "").strip().rstrip("/")
    if not public_url:
        if environment == PRODUCTION:
            # Links in messages (unsubscribe, exports) would point at the developer's machine.
            problems.note("PRIVACY_API_PUBLIC_URL is required in production")
        public_url = f"http://127.0.0.1:{port}"
    given_signing_key = problems.check(lambda: _given_receipt_signing_key(env), "")
    if serving and environment == PRODUCTION and not env.get(RECEIPT_KEY_VARIABLE, "").strip():
        problems.note(RECEIPT_KEY_REQUIRED)
    no_keys: tuple[str, ...] = ()
    webhook_secret_keys = problems.check(lambda: _given_webhook_secret_keys(env), no_keys)
    numbers = {}
    for name, variable, default in (
        ("session_days", "PRIVACY_API_SESSION_DAYS", 30),
        ("deletion_grace_days", "PRIVACY_API_DELETION_GRACE_DAYS", 30),
        ("export_valid_hours", "PRIVACY_API_EXPORT_VALID_HOURS", 24),
        ("webhook_disable_after_hours", "PRIVACY_API_WEBHOOK_DISABLE_AFTER_HOURS", 24),
        ("visitor_retention_days", "PRIVACY_API_VISITOR_RETENTION_DAYS", 395),
        ("api_key_usage_flush_seconds", "PRIVACY_API_KEY_USAGE_FLUSH_SECONDS", 60),
        ("suppression_feed_delay_seconds", "PRIVACY_API_SUPPRESSION_FEED_DELAY_SECONDS", 60),
    ):
        raw = env.get(variable, str(default))
        if raw.strip().isdigit():
            numbers[name] = int(raw)
        else:
            problems.note(f"{variable} must be a whole number of 0 or more")
    if numbers.get("deletion_grace_days", 0) > MAX_GRACE_DAYS:
        problems.note(
            f"PRIVACY_API_DELETION_GRACE_DAYS must be 0 to {MAX_GRACE_DAYS}: a deletion request "
            "is answered within one calendar month (GDPR Art. 12(3)), so the erasure cannot wait "
            "longer"
        )
    allow_private = env.get("PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE", "").strip().lower()
    if allow_private not in ("", "0", "false", "1", "true"):
        problems.note("PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE must be 1 or 0")
    elif allow_private in ("1", "true") and environment == PRODUCTION:
        # It would let anyone who can register a webhook make the API call internal services.
        problems.note("PRIVACY_API_WEBHOOKS_ALLOW_PRIVATE is for development only")
    no_proxies: tuple[str, ...] = ()
    trusted_proxies = problems.check(
        lambda: _trusted_proxies(env.get("PRIVACY_API_TRUSTED_PROXIES", "")), no_proxies
    )
    database_timeouts = _database_timeouts(env, problems)
    smtp = problems.check(lambda: _smtp_server(env.get("PRIVACY_API_SMTP_URL", "").strip()), None)
    mail_from = problems.check(
        lambda: _mail_from(env.get("PRIVACY_API_MAIL_FROM", "").strip(), public_url), ""
    )
    deliver_in_serve = problems.check(
        lambda: _on_unless_production(env, "PRIVACY_API_DELIVER_IN_SERVE", environment), False
    )
    log_format = problems.check(
        lambda: _choice(env, "PRIVACY_API_LOG_FORMAT", ("json", "text")), None
    )
    metrics = problems.check(lambda: _switch(env, "PRIVACY_API_METRICS"), None)
    trusted_documents = env.get("PRIVACY_API_TRUSTED_DOCUMENTS", "").strip()
    registered_only = bool(
        problems.check(lambda: _switch(env, "PRIVACY_API_REGISTERED_DOCUMENTS_ONLY"), None)
    )
    if registered_only and not trusted_documents:
        # Nobody signed out could run anything, signing in included.
        problems.note(
            "PRIVACY_API_REGISTERED_DOCUMENTS_ONLY needs PRIVACY_API_TRUSTED_DOCUMENTS, the "
            "manifest of the documents the clients send"
        )
    compiled_executor = problems.check(lambda: _switch(env, "PRIVACY_API_COMPILED_EXECUTOR"), None)
    if problems.found:
        raise ConfigError(*problems.found)
    # Only a configuration that holds may write the development secrets.
    if not secret_key:
        secret_key = _development_secret(data_dir)
    if not given_signing_key and environment == DEVELOPMENT:
        given_signing_key = signing.development_key(data_dir)
    if not webhook_secret_keys and environment == DEVELOPMENT:
        webhook_secret_keys = (sealing.development_key(data_dir),)
    return Config(
        webhooks_allow_private=allow_private in ("1", "true"),
        database_url=database_url,
        secret_key=secret_key,
        environment=environment,
        allowed_origins=tuple(origins),
        rate_limit_storage=env.get("PRIVACY_API_RATE_LIMIT_STORAGE", "memory://"),
        data_dir=data_dir,
        port=port,
        public_url=public_url,
        trusted_proxies=trusted_proxies,
        database_timeouts=database_timeouts,
        receipt_signing_key=given_signing_key,
        webhook_secret_keys=webhook_secret_keys,
        smtp=smtp,
        mail_dir=Path(env.get("PRIVACY_API_MAIL_DIR", "").strip() or data_dir / "mail"),
        mail_from=mail_from,
        deliver_in_serve=deliver_in_serve,
        log_format_setting=log_format,
        metrics_setting=metrics,
        metrics_port=metrics_port,
        tracing=tracing_requested(env),
        trusted_documents=Path(trusted_documents) if trusted_documents else None,
        registered_documents_only=registered_only,
        compiled_executor=compiled_executor is not False,
        **numbers,
    )


DEFAULT_PORT = 8000


def _port(env: dict[str, str], variable: str) -> int | None:
    """A port setting; None when it is not set."""
    raw = env.get(variable, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{variable} must be a port number, 1 to 65535")
    return int(raw)


def _given_receipt_signing_key(env: dict[str, str]) -> str:
    """PRIVACY_API_RECEIPT_SIGNING_KEY, checked, or empty. Development without one gets a key
    generated once into the data folder (so receipts issued before a restart keep verifying);
    production without one loads (the workers sign nothing), and the API refuses to start: see
    `receipt_signing_key`."""
    given = env.get("PRIVACY_API_RECEIPT_SIGNING_KEY", "").strip()
    if not given:
        return ""
    try:
        signing.load_private_key(given)
    except signing.SigningKeyError as error:
        raise ConfigError(f"PRIVACY_API_RECEIPT_SIGNING_KEY: {error}") from None
    return given


def receipt_signing_key(config: Config) -> str:
    """The key consent receipts are signed with, for the API. Production has no fallback: a key
    made at start would change with every restart and differ between processes. A development
    configuration built by hand (tests) gets a throwaway key."""
    if config.receipt_signing_key:
        return config.receipt_signing_key
    if config.production:
        raise ConfigError(RECEIPT_KEY_REQUIRED)
    return signing.throwaway_key()


def _given_webhook_secret_keys(env: dict[str, str]) -> tuple[str, ...]:
    """PRIVACY_API_WEBHOOK_SECRET_KEY, checked, or none. Development without it gets a key
    generated once into the data folder; production without it loads (the purge seals nothing),
    and what seals or opens a webhook secret refuses to start: see `webhook_sealer`."""
    given = env.get("PRIVACY_API_WEBHOOK_SECRET_KEY", "")
    if not given.strip():
        return ()
    try:
        return sealing.parse_keys(given)
    except sealing.SealingKeyError as error:
        raise ConfigError(f"PRIVACY_API_WEBHOOK_SECRET_KEY: {error}") from None


def webhook_sealer(config: Config) -> sealing.Sealer:
    """What webhook signing secrets are sealed and opened with, for the API, the webhook worker
    and `migrate`. Production has no fallback: a key made at start would leave every stored
    secret unreadable after a restart."""
    if not config.webhook_secret_keys:
        raise ConfigError(
            "PRIVACY_API_WEBHOOK_SECRET_KEY is required in production: a Fernet key (32 random "
            "bytes in URL-safe base64) that webhook signing secrets are encrypted with"
        )
    return sealing.Sealer(config.webhook_secret_keys)


RECEIPT_KEY_VARIABLE = "PRIVACY_API_RECEIPT_SIGNING_KEY"
RECEIPT_KEY_REQUIRED = (
    f"{RECEIPT_KEY_VARIABLE} is required in production: an Ed25519 private key, PEM or its 32 "
    "raw bytes in base64"
)


def _choice(env: dict[str, str], variable: str, allowed: tuple[str, ...]) -> str | None:
    value = env.get(variable, "").strip().lower()
    if value and value not in allowed:
        raise ConfigError(f"{variable} must be {' or '.join(allowed)}")
    return value or None


# The URL schemes (SQLAlchemy dialect and driver) the API runs on, and what to write instead of
# the ones people often copy from elsewhere (a host's "postgres://", psycopg's "postgresql://").
SUPPORTED_DATABASES = {
    "postgresql": "postgresql+asyncpg://user:password@host:5432/name",
    "sqlite": "sqlite+aiosqlite:///path/to/privacy.db",
}
_ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}


def _database_url(url: str | None) -> str | None:
    """PRIVACY_API_DATABASE_URL, refused at start unless its scheme is one the API can use."""
    if not url:
        return None
    variable = "PRIVACY_API_DATABASE_URL"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{variable} is not a database URL; write it as "
            f"{SUPPORTED_DATABASES['postgresql']} or {SUPPORTED_DATABASES['sqlite']}"
        ) from None
    scheme = parsed.drivername
    backend = "postgresql" if scheme.startswith("postgres") else parsed.get_backend_name()
    if backend not in SUPPORTED_DATABASES:
        raise ConfigError(
            f"{variable} starts with {scheme}://, a database this API does not run on; use "
            f"{SUPPORTED_DATABASES['postgresql']} (or {SUPPORTED_DATABASES['sqlite']})"
        )
    if scheme != f"{backend}+{_ASYNC_DRIVERS[backend]}":
        raise ConfigError(
            f"{variable} starts with {scheme}://, but the API needs the "
            f"{_ASYNC_DRIVERS[backend]} driver: write {SUPPORTED_DATABASES[backend]}"
        )
    return url


def tracing_requested(env: dict[str, str]) -> bool:
    """True when the standard OpenTelemetry variables ask for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def _database_timeouts(env: dict[str, str], problems: _Problems) -> DatabaseTimeouts:
    """PRIVACY_API_DB_*_TIMEOUT: seconds (decimals allowed) before a wait on the database ends."""
    defaults = DatabaseTimeouts()
    seconds = {}
    for name in ("connect", "command", "statement", "pool"):
        variable = f"PRIVACY_API_DB_{name.upper()}_TIMEOUT"
        raw = env.get(variable, "").strip()
        try:
            value = float(raw) if raw else getattr(defaults, name)
        except ValueError:
            value = -1.0
        if 0 < value < 24 * 60 * 60:
            seconds[name] = value
        else:
            problems.note(f"{variable} must be a number of seconds above 0")
    return DatabaseTimeouts(**seconds)
