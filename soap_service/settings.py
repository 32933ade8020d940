"""Every setting of the service, read once from the environment.

`load_settings()` is the only place that reads ``os.environ``; everything else receives
the frozen `Settings` object (or the part of it it needs) from the composition root.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from soap_service.domain.model import Language, MessageLimits
from soap_service.errors import ConfigurationError

PREFIX = "SOAP_SERVICE_"
DEV_PORT = 8443
DEV_SMTP_PORT = 2525
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """Where notification e-mails go and how: always over verified STARTTLS, except to hosts
    an operator names in `insecure_hosts`."""

    # None: deliver to each recipient domain's MX; else this relay for every mail.
    relay: tuple[str, int] | None
    # A CA to trust besides the system's (a private relay, the development mail sink).
    ca_file: Path | None
    insecure_hosts: frozenset[str]
    client_cert_file: Path | None
    client_key_file: Path | None
    username: str | None
    password: str | None
    timeout_seconds: float
    mail_from: str
    # The name this host gives in EHLO and in Message-IDs.
    hostname: str
    # The service's client certificate for organisations' gateways with mutual TLS (never
    # shown to any other server); None: such gateways are deferred until one is set.
    gateway_client_cert_file: Path | None = None
    gateway_client_key_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class OperatorIdentity:
    """Who runs the service, as recipients and senders read it on notifications, pages and
    receipts: a name they can check, an address, and the legal pages (imprint, privacy)."""

    name: str = "soap-service"
    address_lines: tuple[str, ...] = ()
    imprint_url: str | None = None
    privacy_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeliverySettings:
    smtp: SmtpSettings
    # Retries like Postfix: from retry_min, doubling, capped at retry_max; give up after.
    retry_min_seconds: int
    retry_max_seconds: int
    give_up_seconds: int
    # How long a worker's claim lasts: a crashed worker's recipients are taken up again
    # at most this long after its last renewal.
    lease_seconds: int
    batch_size: int
    poll_seconds: float
    # Recipients open their messages at pickup_base_url + token.
    pickup_base_url: str
    # The development mail sink (`soap-service mail-sink`): port and mailbox folder.
    dev_mail_port: int
    dev_mail_dir: Path
    operator: OperatorIdentity = field(default_factory=OperatorIdentity)


@dataclass(frozen=True, kw_only=True)
class SmtpChannelSettings:
    """The SMTP channel (`soap-service smtp`): where it listens and what it accepts."""

    bind: tuple[str, int]
    # The name it gives in its greeting and EHLO answer.
    hostname: str
    # `anna@example.ch` + suffix (IncaMail: `.incamail.ch`) names the secure recipient
    # `anna@example.ch`; the suffix is matched without regard to case.
    address_suffix: str
    # The SIZE advertised and enforced: the largest message's MIME form (30 MiB of
    # attachments is 41 MiB in base64 with line breaks, plus two bodies and headers).
    max_message_bytes: int
    # A client silent for this long is disconnected (RFC 5321 asks servers for 5 minutes).
    timeout_seconds: int
    # Submissions handled at once per process (each holds a database connection while
    # its message is stored); further ones wait their turn.
    concurrency: int


@dataclass(frozen=True, kw_only=True)
class Settings:
    data_dir: Path
    database_url: str
    master_key_file: Path
    # The HTTPS URL clients call; it is the address written into the served WSDL.
    public_url: str
    bind: str
    workers: int
    threads: int
    worker_timeout: int
    tls_cert_file: Path
    tls_key_file: Path
    # True when the certificate paths are the defaults: `serve` then generates a
    # self-signed development certificate if none exists yet.
    tls_generate_dev_cert: bool
    # Receipts of registered messages are signed with this key and certificate; generated
    # (self-signed) on first start when the defaults are used.
    receipt_cert_file: Path
    receipt_key_file: Path
    receipt_generate_cert: bool
    # An RFC 3161 time stamping authority: receipts then carry its time stamp (PAdES B-T).
    timestamp_url: str | None
    # Mails delivered to organisations' gateways are S/MIME-signed with this key and
    # certificate; generated (self-signed, for the notifications' From address) on first
    # start when the defaults are used.
    signing_cert_file: Path
    signing_key_file: Path
    signing_generate_cert: bool
    # Largest request body read. 30 MiB of attachments is 40 MiB of base64 (41 MiB with
    # line breaks); two 1 MiB bodies can grow several times when XML-escaped.
    max_request_bytes: int
    # A UsernameToken's Created may differ this much from our clock.
    wss_time_window_seconds: int
    # Reverse proxies whose X-Forwarded-For names the client (failed logins are throttled
    # by client address); empty: the peer's address is the client's.
    trusted_proxies: frozenset[str]
    # A message's bodies and attachments are deleted this long after it is settled (every
    # recipient done, or expired).
    retention_days: int
    default_language: Language
    log_level: str
    # /metrics answers only a request with this bearer token; None: no /metrics page.
    metrics_token: str | None
    delivery: DeliverySettings
    smtp_channel: SmtpChannelSettings
    limits: MessageLimits = field(default_factory=MessageLimits)

    @property
    def operator(self) -> OperatorIdentity:
        return self.delivery.operator

    @property
    def metrics_dir(self) -> Path:
        """Where this host's processes keep their counters (metrics.py)."""
        return self.data_dir / "metrics"

    @property
    def soap_path(self) -> str:
        return urlsplit(self.public_url).path or "/"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    get = _reader(os.environ if environ is None else environ)
    data_dir = Path(get("DATA_DIR", "var")).resolve()
    bind = get("BIND", f"127.0.0.1:{DEV_PORT}")
    host = bind.rpartition(":")[0]
    tls = _tls_files(get, data_dir)
    public_url = _public_url(get, bind, tls_given=not tls.generate)
    log_level = _log_level(get)
    language = _default_language(get)
    keys = data_dir / "keys"
    receipts = _signing_pair(get, "RECEIPT", keys / "receipts.pem", keys / "receipts-key.pem")
    signing = _signing_pair(
        get, "SIGNING", keys / "mail-signing.pem", keys / "mail-signing-key.pem"
    )
    return Settings(
        data_dir=data_dir,
        database_url=normalise_database_url(
            get("DATABASE_URL", f"sqlite:///{data_dir / 'soap-service.sqlite3'}")
        ),
        master_key_file=Path(get("MASTER_KEY_FILE", str(data_dir / "keys" / "master-keys.json"))),
        public_url=public_url,
        bind=bind,
        workers=_positive_int(get("WORKERS", str(min(4, 2 * (os.cpu_count() or 1)))), "WORKERS"),
        threads=_positive_int(get("THREADS", "4"), "THREADS"),
        worker_timeout=_positive_int(get("WORKER_TIMEOUT", "300"), "WORKER_TIMEOUT"),
        tls_cert_file=tls.cert_file,
        tls_key_file=tls.key_file,
        tls_generate_dev_cert=tls.generate,
        receipt_cert_file=receipts.cert_file,
        receipt_key_file=receipts.key_file,
        receipt_generate_cert=receipts.generate,
        timestamp_url=_timestamp_url(get("TSA_URL", "")),
        signing_cert_file=signing.cert_file,
        signing_key_file=signing.key_file,
        signing_generate_cert=signing.generate,
        max_request_bytes=_positive_int(
            get("MAX_REQUEST_BYTES", str(56 * 1024 * 1024)), "MAX_REQUEST_BYTES"
        ),
        wss_time_window_seconds=_positive_int(get("WSS_TIME_WINDOW", "300"), "WSS_TIME_WINDOW"),
        trusted_proxies=_addresses(get("TRUSTED_PROXIES", ""), "TRUSTED_PROXIES"),
        retention_days=_positive_int(get("RETENTION_DAYS", "30"), "RETENTION_DAYS"),
        default_language=language,
        log_level=log_level,
        metrics_token=_metrics_token(get("METRICS_TOKEN", "")),
        delivery=_delivery_settings(
            get,
            data_dir,
            public_url,
            development=host in LOOPBACK_HOSTS,
            tls_generated=tls.generate,
            operator=_operator(get),
        ),
        smtp_channel=_smtp_channel_settings(get, public_url),
    )


_Get = Callable[[str, str], str]


def _reader(env: Mapping[str, str]) -> _Get:
    """get(name, default): the variable SOAP_SERVICE_<name>, stripped; blank is unset."""

    def get(name: str, default: str) -> str:
        value = env.get(PREFIX + name, "").strip()
        return value or default

    return get


class _CertAndKey(NamedTuple):
    cert_file: Path
    key_file: Path
    # True when neither file was given: the defaults, generated when missing.
    generate: bool


def _tls_files(get: _Get, data_dir: Path) -> _CertAndKey:
    cert, key = get("TLS_CERT_FILE", ""), get("TLS_KEY_FILE", "")
    if bool(cert) != bool(key):
        raise ConfigurationError(f"set both {PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE")
    return _CertAndKey(
        cert_file=Path(cert) if cert else data_dir / "tls" / "dev-cert.pem",
        key_file=Path(key) if key else data_dir / "tls" / "dev-key.pem",
        generate=not cert,
    )


def _signing_pair(get: _Get, name: str, default: Path, default_key: Path) -> _CertAndKey:
    """A signing certificate and key given as SOAP_SERVICE_<name>_CERT_FILE and _KEY_FILE,
    or the defaults, generated when missing."""
    cert, key = get(f"{name}_CERT_FILE", ""), get(f"{name}_KEY_FILE", "")
    if bool(cert) != bool(key):
        raise ConfigurationError(
            f"set both {PREFIX}{name}_CERT_FILE and {PREFIX}{name}_KEY_FILE, or neither"
        )
    return _CertAndKey(
        cert_file=Path(cert) if cert else default,
        key_file=Path(key) if key else default_key,
        generate=not cert,
    )


def _public_url(get: _Get, bind: str, *, tls_given: bool) -> str:
    host, _, port = bind.rpartition(":")
    public_url = get("PUBLIC_URL", "")
    if host not in LOOPBACK_HOSTS and not (public_url and tls_given):
        # Listening beyond this host is production: a WSDL pointing at localhost and a
        # self-signed certificate would only fail later, at every client.
        raise ConfigurationError(
            f"{PREFIX}BIND {bind} listens beyond this host: set {PREFIX}PUBLIC_URL and "
            f"{PREFIX}TLS_CERT_FILE / {PREFIX}TLS_KEY_FILE"
        )
    public_url = public_url or f"https://localhost:{port}/soap/v1"
    if urlsplit(public_url).scheme != "https":
        raise ConfigurationError(f"{PREFIX}PUBLIC_URL must be an https:// URL")
    return public_url


def _log_level(get: _Get) -> str:
    log_level = get("LOG_LEVEL", "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigurationError(f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return log_level


def _default_language(get: _Get) -> Language:
    language = get("DEFAULT_LANGUAGE", Language.DE.value)
    if language not in {item.value for item in Language}:
        raise ConfigurationError(f"{PREFIX}DEFAULT_LANGUAGE must be one of de, fr, it, en")
    return Language(language)


def _delivery_settings(
    get: _Get,
    data_dir: Path,
    public_url: str,
    *,
    development: bool,
    tls_generated: bool,
    operator: OperatorIdentity,
) -> DeliverySettings:
    dev_mail_port = _positive_int(get("DEV_MAIL_PORT", "8025"), "DEV_MAIL_PORT")
    relay_text = get("SMTP_RELAY", f"127.0.0.1:{dev_mail_port}" if development else "")
    relay = _host_port(relay_text, "SMTP_RELAY") if relay_text else None
    # In development the mail sink presents the development certificate: trust it.
    default_ca = str(data_dir / "tls" / "dev-cert.pem") if development and tls_generated else ""
    ca_file = get("SMTP_CA_FILE", default_ca)
    client_cert, client_key = get("SMTP_CLIENT_CERT_FILE", ""), get("SMTP_CLIENT_KEY_FILE", "")
    username, password = get("SMTP_USERNAME", ""), get("SMTP_PASSWORD", "")
    _check_smtp_credentials(relay, client_cert, client_key, username, password)
    gateway_cert = get("GATEWAY_CLIENT_CERT_FILE", "")
    gateway_key = get("GATEWAY_CLIENT_KEY_FILE", "")
    if bool(gateway_cert) != bool(gateway_key):
        raise ConfigurationError(
            f"set both {PREFIX}GATEWAY_CLIENT_CERT_FILE and {PREFIX}GATEWAY_CLIENT_KEY_FILE"
        )
    hostname = urlsplit(public_url).hostname or "localhost"
    retry_min, retry_max = _retry_bounds(get)
    origin = public_url.split("/", 3)
    return DeliverySettings(
        smtp=SmtpSettings(
            relay=relay,
            ca_file=Path(ca_file) if ca_file else None,
            insecure_hosts=frozenset(
                name.strip().lower()
                for name in get("SMTP_INSECURE_HOSTS", "").split(",")
                if name.strip()
            ),
            client_cert_file=Path(client_cert) if client_cert else None,
            client_key_file=Path(client_key) if client_key else None,
            username=username or None,
            password=password or None,
            timeout_seconds=float(_positive_int(get("SMTP_TIMEOUT", "30"), "SMTP_TIMEOUT")),
            mail_from=_bare_address(
                get("MAIL_FROM", f"no-reply@{_mail_domain(hostname)}"), "MAIL_FROM"
            ),
            hostname=hostname,
            gateway_client_cert_file=Path(gateway_cert) if gateway_cert else None,
            gateway_client_key_file=Path(gateway_key) if gateway_key else None,
        ),
        retry_min_seconds=retry_min,
        retry_max_seconds=retry_max,
        give_up_seconds=_positive_int(get("GIVE_UP_SECONDS", str(5 * 86400)), "GIVE_UP_SECONDS"),
        lease_seconds=_positive_int(get("LEASE_SECONDS", "120"), "LEASE_SECONDS"),
        batch_size=_positive_int(get("WORKER_BATCH", "250"), "WORKER_BATCH"),
        poll_seconds=_positive_int(get("WORKER_POLL_MS", "500"), "WORKER_POLL_MS") / 1000,
        pickup_base_url=get("PICKUP_BASE_URL", "/".join(origin[:3]) + "/m/"),
        dev_mail_port=dev_mail_port,
        dev_mail_dir=data_dir / "mail",
        operator=operator,
    )


def _operator(get: _Get) -> OperatorIdentity:
    name = " ".join(get("OPERATOR_NAME", "soap-service").split())
    if len(name) > 80 or any(c in name for c in '<>()"\\'):
        raise ConfigurationError(
            f"{PREFIX}OPERATOR_NAME must be a plain name of at most 80 characters "
            "(no < > ( ) or quotes: it goes into mail headers)"
        )
    # Lines are separated by ";" (or line breaks): "Example AG; Hauptstrasse 1; 3000 Bern".
    lines = tuple(
        " ".join(line.split())
        for line in get("OPERATOR_ADDRESS", "").replace("\n", ";").split(";")
        if line.strip()
    )
    return OperatorIdentity(
        name=name,
        address_lines=lines,
        imprint_url=_optional_https_url(get("OPERATOR_IMPRINT_URL", ""), "OPERATOR_IMPRINT_URL"),
        privacy_url=_optional_https_url(get("OPERATOR_PRIVACY_URL", ""), "OPERATOR_PRIVACY_URL"),
    )


def _metrics_token(value: str) -> str | None:
    if value and (len(value) < 16 or not value.isascii() or not value.isprintable()):
        raise ConfigurationError(
            f"{PREFIX}METRICS_TOKEN must be at least 16 printable ASCII characters"
        )
    return value or None


def _timestamp_url(value: str) -> str | None:
    """A time stamping authority's address: http:// is usual (its answers are signed)."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{PREFIX}TSA_URL must be an http:// or https:// URL")
    return value


def _optional_https_url(value: str, name: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or any(c in value for c in " <>\"'"):
        raise ConfigurationError(f"{PREFIX}{name} must be an https:// URL")
    return value


def _smtp_channel_settings(get: _Get, public_url: str) -> SmtpChannelSettings:
    hostname = urlsplit(public_url).hostname or "localhost"
    suffix = get("SMTP_ADDRESS_SUFFIX", "." + hostname).lower()
    if not suffix.startswith(".") or len(suffix) < 3 or any(c in suffix for c in " @<>\t"):
        raise ConfigurationError(
            f"{PREFIX}SMTP_ADDRESS_SUFFIX must be a domain suffix such as .incamail.ch"
        )
    return SmtpChannelSettings(
        bind=_host_port(get("SMTP_BIND", f"127.0.0.1:{DEV_SMTP_PORT}"), "SMTP_BIND"),
        hostname=get("SMTP_HOSTNAME", hostname),
        address_suffix=suffix,
        max_message_bytes=_positive_int(
            get("SMTP_MAX_MESSAGE_BYTES", str(48 * 1024 * 1024)), "SMTP_MAX_MESSAGE_BYTES"
        ),
        timeout_seconds=_positive_int(get("SMTP_CHANNEL_TIMEOUT", "300"), "SMTP_CHANNEL_TIMEOUT"),
        concurrency=_positive_int(get("SMTP_CONCURRENCY", "8"), "SMTP_CONCURRENCY"),
    )


def _check_smtp_credentials(
    relay: tuple[str, int] | None, client_cert: str, client_key: str, username: str, password: str
) -> None:
    if bool(client_cert) != bool(client_key):
        raise ConfigurationError(
            f"set both {PREFIX}SMTP_CLIENT_CERT_FILE and {PREFIX}SMTP_CLIENT_KEY_FILE"
        )
    if bool(username) != bool(password):
        raise ConfigurationError(f"set both {PREFIX}SMTP_USERNAME and {PREFIX}SMTP_PASSWORD")
    if (username or client_cert) and relay is None:
        # Credentials are for a relay; a recipient's own mail server must never see them.
        raise ConfigurationError(
            f"{PREFIX}SMTP_USERNAME and {PREFIX}SMTP_CLIENT_CERT_FILE need {PREFIX}SMTP_RELAY"
        )


def _retry_bounds(get: _Get) -> tuple[int, int]:
    retry_min = _positive_int(get("RETRY_MIN_SECONDS", "300"), "RETRY_MIN_SECONDS")
    retry_max = _positive_int(get("RETRY_MAX_SECONDS", "4000"), "RETRY_MAX_SECONDS")
    if retry_max < retry_min:
        raise ConfigurationError(f"{PREFIX}RETRY_MAX_SECONDS is below RETRY_MIN_SECONDS")
    return retry_min, retry_max


def _mail_domain(host: str) -> str:
    """The host as an address's domain: an IP address as a literal (`[127.0.0.1]`), which
    is what RFC 5321 allows and what mail servers such as Postfix accept."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"[{host}]" if address.version == 4 else f"[IPv6:{host}]"


def _bare_address(value: str, name: str) -> str:
    """An address as SMTP's MAIL FROM carries it: local@domain, nothing around it."""
    local, _, domain = value.rpartition("@")
    if not local or not domain or not value.isascii() or any(c in value for c in " <>\t\r\n"):
        raise ConfigurationError(f"{PREFIX}{name} must be a plain address such as a@b.ch")
    return value


def _host_port(value: str, name: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"{PREFIX}{name} must be host:port")
    return host, int(port)


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL whatever form of URL the operator gave."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if not url.startswith(("sqlite", "postgresql+psycopg://")):
        raise ConfigurationError(f"{PREFIX}DATABASE_URL must be a sqlite:// or postgresql:// URL")
    return url


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"{PREFIX}{name} must be a whole number") from None
    if number <= 0:
        raise ConfigurationError(f"{PREFIX}{name} must be positive")
    return number


def _addresses(value: str, name: str) -> frozenset[str]:
    """A comma-separated list of IP addresses, each written as ipaddress writes it."""
    found = set()
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            found.add(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ConfigurationError(f"{PREFIX}{name}: {item!r:.60} is not an IP address") from None
    return frozenset(found)
