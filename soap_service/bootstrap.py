"""The files a first start needs: data folder, master keyring, development certificate,
receipt and mail signing certificates. Safe to run again, and from several processes at
once."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path

from soap_service import crypto
from soap_service.errors import ConfigurationError
from soap_service.settings import Settings

log = logging.getLogger(__name__)


def ensure_files(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    crypto.Keyring.load_or_create(settings.master_key_file)
    if settings.tls_generate_dev_cert:
        _ensure_pair(
            settings.tls_cert_file,
            settings.tls_key_file,
            crypto.generate_self_signed_certificate,
            "a self-signed development certificate",
            lock=".generate.lock",
        )
    _require("TLS file", settings.tls_cert_file, settings.tls_key_file)
    if settings.receipt_generate_cert:
        _ensure_pair(
            settings.receipt_cert_file,
            settings.receipt_key_file,
            crypto.generate_receipt_signing_certificate,
            f"the receipt signing certificate {settings.receipt_cert_file}",
            lock=".receipts.lock",
        )
    _require("receipt signing file", settings.receipt_cert_file, settings.receipt_key_file)
    if settings.signing_generate_cert:
        address = settings.delivery.smtp.mail_from
        _ensure_pair(
            settings.signing_cert_file,
            settings.signing_key_file,
            lambda cert, key: crypto.generate_mail_signing_certificate(cert, key, address=address),
            f"the mail signing certificate {settings.signing_cert_file}",
            lock=".mail-signing.lock",
        )
    _require("mail signing file", settings.signing_cert_file, settings.signing_key_file)


def _ensure_pair(
    cert_file: Path,
    key_file: Path,
    generate: Callable[[Path, Path], None],
    what: str,
    *,
    lock: str,
) -> None:
    cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # `serve` and `init` may start together: one of them generates, the other waits.
    with open(cert_file.parent / lock, "w") as locked:
        fcntl.flock(locked, fcntl.LOCK_EX)
        if cert_file.is_file() and key_file.is_file():
            return
        generate(cert_file, key_file)
        log.info("generated %s", what)


def _require(what: str, *paths: Path) -> None:
    for path in paths:
        if not path.is_file():
            raise ConfigurationError(f"{what} {path.name} does not exist")
