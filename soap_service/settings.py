"""Every setting of the service, read once from the environment.

`load_settings()` is the only place that reads ``os.environ``; everything else receives
the frozen `Settings` object (or the part of it it needs) from the composition root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from soap_service.domain.model import Language, MessageLimits
from soap_service.errors import ConfigurationError

PREFIX = "SOAP_SERVICE_"
DEV_PORT = 8443
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
    # Largest request body read. 30 MiB of attachments is 40 MiB of base64 (41 MiB with
    # line breaks); two 1 MiB bodies can grow several times when XML-escaped.
    max_request_bytes: int
    # A UsernameToken's Created may differ this much from our clock.
    wss_time_window_seconds: int
    default_language: Language
    log_level: str
    limits: MessageLimits = field(default_factory=MessageLimits)

    @property
    def soap_path(self) -> str:
        return urlsplit(self.public_url).path or "/"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ

    def get(name: str, default: str) -> str:
        value = env.get(PREFIX + name, "").strip()
        return value or default

    data_dir = Path(get("DATA_DIR", "var")).resolve()
    bind = get("BIND", f"127.0.0.1:{DEV_PORT}")
    host, _, port = bind.rpartition(":")
    public_url = env.get(PREFIX + "PUBLIC_URL", "").strip()
    cert = env.get(PREFIX + "TLS_CERT_FILE", "").strip()
    key = env.get(PREFIX + "TLS_KEY_FILE", "").strip()
    if bool(cert) != bool(key):
        raise ConfigurationError(f"set both {PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE")
    if host not in LOOPBACK_HOSTS and not (public_url and cert):
        # Listening beyond this host is production: a WSDL pointing at localhost and a
        # self-signed certificate would only fail later, at every client.
        raise ConfigurationError(
            f"{PREFIX}BIND {bind} listens beyond this host: set {PREFIX}PUBLIC_URL and "
            f"{PREFIX}TLS_CERT_FILE / {PREFIX}TLS_KEY_FILE"
        )
    public_url = public_url or f"https://localhost:{port}/soap/v1"
    if urlsplit(public_url).scheme != "https":
        raise ConfigurationError(f"{PREFIX}PUBLIC_URL must be an https:// URL")
    log_level = get("LOG_LEVEL", "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigurationError(f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")

    language = get("DEFAULT_LANGUAGE", Language.DE.value)
    if language not in {item.value for item in Language}:
        raise ConfigurationError(f"{PREFIX}DEFAULT_LANGUAGE must be one of de, fr, it, en")

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
        tls_cert_file=Path(cert) if cert else data_dir / "tls" / "dev-cert.pem",
        tls_key_file=Path(key) if key else data_dir / "tls" / "dev-key.pem",
        tls_generate_dev_cert=not cert,
        max_request_bytes=_positive_int(
            get("MAX_REQUEST_BYTES", str(56 * 1024 * 1024)), "MAX_REQUEST_BYTES"
        ),
        wss_time_window_seconds=_positive_int(get("WSS_TIME_WINDOW", "300"), "WSS_TIME_WINDOW"),
        default_language=Language(language),
        log_level=log_level,
    )


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
