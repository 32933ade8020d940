"""What each setting is for, and which settings each command uses: the "settings" part
of every `soap-service COMMAND --help`. A test checks that every variable settings.py
reads is described here and that every name here is one it reads."""

from __future__ import annotations

from soap_service.settings import PREFIX

DESCRIBED: dict[str, str] = {
    "DATA_DIR": "data folder (default ./var)",
    "DATABASE_URL": "sqlite:///… or postgresql://… (default: SQLite in the data folder)",
    "MASTER_KEY_FILE": "keyring of master keys (default var/keys/master-keys.json)",
    "LOG_LEVEL": "DEBUG, INFO (default), WARNING or ERROR",
    "BIND": "where the API and pages listen (default 127.0.0.1:8443)",
    "PUBLIC_URL": "the https:// address clients call, written into the WSDL",
    "TLS_CERT_FILE": "TLS certificate chain (default: a generated development one)",
    "TLS_KEY_FILE": "TLS key, with TLS_CERT_FILE",
    "WORKERS": "gunicorn worker processes (default min(4, 2 x cores))",
    "THREADS": "threads per worker process (default 4)",
    "WORKER_TIMEOUT": "seconds before a stuck worker process is replaced (default 300)",
    "MAX_REQUEST_BYTES": "largest request read (default 56 MiB)",
    "WSS_TIME_WINDOW": "seconds a UsernameToken's Created may differ (default 300)",
    "TRUSTED_PROXIES": "reverse proxies whose X-Forwarded-For names the client",
    "DEFAULT_LANGUAGE": "de (default), fr, it or en: for messages that give none",
    "RETENTION_DAYS": "days a settled message's content is kept (default 30)",
    "RECEIPT_CERT_FILE": "certificate that signs receipts (default: generated)",
    "RECEIPT_KEY_FILE": "its key, with RECEIPT_CERT_FILE",
    "TSA_URL": "an RFC 3161 time stamping authority for receipts (default: none)",
    "PICKUP_BASE_URL": "where notification links point (default <public origin>/m/)",
    "OPERATOR_NAME": "who runs the service, in notifications, pages, receipts",
    "OPERATOR_ADDRESS": "the operator's address, lines separated by ;",
    "OPERATOR_IMPRINT_URL": "https:// link to the operator's imprint",
    "OPERATOR_PRIVACY_URL": "https:// link to the operator's privacy page",
    "SMTP_BIND": "where the SMTP channel listens (default 127.0.0.1:2525)",
    "SMTP_HOSTNAME": "the name in its greeting (default: the public URL's host)",
    "SMTP_ADDRESS_SUFFIX": "suffix marking a secure recipient (default .<public host>)",
    "SMTP_MAX_MESSAGE_BYTES": "the SIZE advertised and enforced (default 48 MiB)",
    "SMTP_CHANNEL_TIMEOUT": "seconds a silent client is kept (default 300)",
    "SMTP_CONCURRENCY": "submissions stored at once per process (default 8)",
    "SMTP_RELAY": "host:port of a relay (default: the mail sink in development; MX)",
    "SMTP_CA_FILE": "a CA to trust besides the system's",
    "SMTP_INSECURE_HOSTS": "hosts reached without verified STARTTLS (comma-separated)",
    "SMTP_CLIENT_CERT_FILE": "client certificate for the relay",
    "SMTP_CLIENT_KEY_FILE": "its key, with SMTP_CLIENT_CERT_FILE",
    "SMTP_USERNAME": "login at the relay",
    "SMTP_PASSWORD": "password at the relay, with SMTP_USERNAME",
    "SMTP_TIMEOUT": "seconds per SMTP step (default 30)",
    "MAIL_FROM": "From of notifications and gateway mails (default no-reply@<host>)",
    "SIGNING_CERT_FILE": "certificate that S/MIME-signs mails (default: generated)",
    "SIGNING_KEY_FILE": "its key, with SIGNING_CERT_FILE",
    "GATEWAY_CLIENT_CERT_FILE": "client certificate for gateways with mutual TLS",
    "GATEWAY_CLIENT_KEY_FILE": "its key, with GATEWAY_CLIENT_CERT_FILE",
    "RETRY_MIN_SECONDS": "first retry after (default 300), doubling",
    "RETRY_MAX_SECONDS": "retries at most this far apart (default 4000)",
    "GIVE_UP_SECONDS": "a recipient fails after retrying this long (default 5 days)",
    "LEASE_SECONDS": "how long a worker's claim lasts unrenewed (default 120)",
    "WORKER_BATCH": "recipients a worker claims at once (default 250)",
    "WORKER_POLL_MS": "how long an idle worker waits (default 500)",
    "DEV_MAIL_PORT": "port of the development mail sink (default 8025)",
    "METRICS_TOKEN": "bearer token of /metrics (Prometheus format); unset: no /metrics",
}

STORE = ("DATA_DIR", "DATABASE_URL", "MASTER_KEY_FILE", "LOG_LEVEL")
OPERATOR = ("OPERATOR_NAME", "OPERATOR_ADDRESS", "OPERATOR_IMPRINT_URL", "OPERATOR_PRIVACY_URL")
RECEIPTS = ("RECEIPT_CERT_FILE", "RECEIPT_KEY_FILE", "TSA_URL")
TLS = ("TLS_CERT_FILE", "TLS_KEY_FILE")
API = (
    *STORE,
    "BIND",
    "PUBLIC_URL",
    *TLS,
    "WORKERS",
    "THREADS",
    "WORKER_TIMEOUT",
    "MAX_REQUEST_BYTES",
    "WSS_TIME_WINDOW",
    "TRUSTED_PROXIES",
    "DEFAULT_LANGUAGE",
    "RETENTION_DAYS",
    *RECEIPTS,
    "PICKUP_BASE_URL",
    *OPERATOR,
    "METRICS_TOKEN",
)
SMTP_CHANNEL = (
    *STORE,
    "SMTP_BIND",
    "SMTP_HOSTNAME",
    "SMTP_ADDRESS_SUFFIX",
    "SMTP_MAX_MESSAGE_BYTES",
    "SMTP_CHANNEL_TIMEOUT",
    "SMTP_CONCURRENCY",
    "PUBLIC_URL",
    *TLS,
    "DEFAULT_LANGUAGE",
)
DELIVERY = (
    *STORE,
    "SMTP_RELAY",
    "SMTP_CA_FILE",
    "SMTP_INSECURE_HOSTS",
    "SMTP_CLIENT_CERT_FILE",
    "SMTP_CLIENT_KEY_FILE",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_TIMEOUT",
    "MAIL_FROM",
    "SIGNING_CERT_FILE",
    "SIGNING_KEY_FILE",
    "GATEWAY_CLIENT_CERT_FILE",
    "GATEWAY_CLIENT_KEY_FILE",
    "RETRY_MIN_SECONDS",
    "RETRY_MAX_SECONDS",
    "GIVE_UP_SECONDS",
    "LEASE_SECONDS",
    "WORKER_BATCH",
    "WORKER_POLL_MS",
    "PUBLIC_URL",
    "PICKUP_BASE_URL",
    "RETENTION_DAYS",
    *RECEIPTS,
    *OPERATOR,
)
SINK = ("DATA_DIR", *TLS, "DEV_MAIL_PORT")

# Each command (as typed after `soap-service`) and the settings it uses; a command not
# named here uses STORE.
USED_BY: dict[str, tuple[str, ...]] = {
    "serve": API,
    "smtp": SMTP_CHANNEL,
    "worker": DELIVERY,
    "mail-sink": SINK,
    "dev": (*API, *SMTP_CHANNEL, *DELIVERY, *SINK),
    "init": (*STORE, *TLS, *RECEIPTS[:2], "SIGNING_CERT_FILE", "SIGNING_KEY_FILE", "MAIL_FROM"),
    "wsdl": ("PUBLIC_URL",),
    "receipt-certificate": (*STORE, *RECEIPTS[:2]),
    "signing-certificate": (*STORE, "SIGNING_CERT_FILE", "SIGNING_KEY_FILE", "MAIL_FROM"),
    "backup": (*STORE, *RECEIPTS[:2]),
    "restore": (*STORE, *RECEIPTS[:2]),
    "retention": (*STORE, "RETENTION_DAYS"),
    "account add": (*STORE, "DEFAULT_LANGUAGE"),
    "dev-account": (*STORE, "SMTP_BIND"),
    "status": STORE,
}


def settings_epilog(command: str) -> str:
    """The help's closing part: the settings `command` uses, one a line."""
    names = list(dict.fromkeys(USED_BY.get(command, STORE)))  # in order, each once
    width = max(len(PREFIX + name) for name in names)
    lines = [f"  {PREFIX + name:<{width}}  {DESCRIBED[name]}" for name in names]
    return "settings it uses (environment variables; see the README):\n" + "\n".join(lines)
