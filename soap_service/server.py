"""Serving over HTTPS with gunicorn, and what must exist before the first request."""

from __future__ import annotations

import fcntl
import logging
import ssl
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from soap_service import crypto
from soap_service.container import Container, utc_now
from soap_service.domain.master_keys import reconcile_master_keys
from soap_service.errors import ConfigurationError
from soap_service.logs import configure_logging
from soap_service.persistence.database import Database
from soap_service.settings import Settings
from soap_service.soap.application import SoapEndpoint
from soap_service.web.app import WebApp

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> None:
    """Create what a first start needs: data folder, master keyring, development
    certificate, database schema. Safe to run again, and from several processes."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    crypto.Keyring.load_or_create(settings.master_key_file)
    if settings.tls_generate_dev_cert:
        _ensure_dev_certificate(settings.tls_cert_file, settings.tls_key_file)
    for path in (settings.tls_cert_file, settings.tls_key_file):
        if not path.is_file():
            raise ConfigurationError(f"TLS file {path.name} does not exist")
    if settings.receipt_generate_cert:
        _ensure_receipt_certificate(settings.receipt_cert_file, settings.receipt_key_file)
    for path in (settings.receipt_cert_file, settings.receipt_key_file):
        if not path.is_file():
            raise ConfigurationError(f"receipt signing file {path.name} does not exist")
    database = Database(settings.database_url)
    try:
        database.upgrade()
        check_master_keys(settings, database)
    finally:
        database.dispose()


def check_master_keys(settings: Settings, database: Database) -> None:
    store = database.store()
    try:
        reconcile_master_keys(
            store,
            crypto.Keyring.load(settings.master_key_file),
            str(settings.master_key_file),
            utc_now,
        )
    finally:
        store.close()


def _ensure_dev_certificate(cert_file: Path, key_file: Path) -> None:
    cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(cert_file.parent / ".generate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # `serve` and `init` may start together
        if cert_file.is_file() and key_file.is_file():
            return
        crypto.generate_self_signed_certificate(cert_file, key_file)
        log.info("generated a self-signed development certificate")


def _ensure_receipt_certificate(cert_file: Path, key_file: Path) -> None:
    cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(cert_file.parent / ".receipts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cert_file.is_file() and key_file.is_file():
            return
        crypto.generate_receipt_signing_certificate(cert_file, key_file)
        log.info("generated the receipt signing certificate %s", cert_file)


def build_wsgi_app(settings: Settings) -> WebApp:
    configure_logging(settings.log_level)
    return WebApp(Container(settings), SoapEndpoint(settings.public_url))


def _tls_context(config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpsServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        options = {
            "bind": [settings.bind],
            "workers": settings.workers,
            # Threads keep a worker answering health checks while one thread receives a
            # slow 30 MB upload.
            "worker_class": "gthread",
            "threads": settings.threads,
            "timeout": settings.worker_timeout,
            "graceful_timeout": 30,
            "keepalive": 5,
            "certfile": str(settings.tls_cert_file),
            "keyfile": str(settings.tls_key_file),
            "ssl_context": _tls_context,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "proc_name": "soap-service",
            # gunicorn's runtime control socket is one fixed path per user: two services
            # on one host would fight over it, and nothing here uses it.
            "control_socket_disable": True,
            # The app is built in each worker after the fork: no shared database sockets.
            "preload_app": False,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> WebApp:
        return build_wsgi_app(self._settings)
