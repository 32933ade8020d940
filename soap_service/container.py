"""The composition root: builds the long-lived parts from the settings, and the per-request
parts (one database connection per request) from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from urllib.parse import urlsplit

from soap_service import crypto
from soap_service.domain.auth import Authenticator, VerifiedPasswords
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Account
from soap_service.domain.pickup import PickupService
from soap_service.domain.receipts import ReceiptKind, ReceiptService
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore
from soap_service.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


class Container:
    def __init__(self, settings: Settings, *, database: Database | None = None) -> None:
        self.settings = settings
        self.database = database or Database(settings.database_url)
        self.keyring = crypto.Keyring.load_or_create(settings.master_key_file)
        self.verified_passwords = VerifiedPasswords()
        self.now = utc_now

    @cached_property
    def receipt_signer(self) -> crypto.PdfSigner:
        """Loaded at the first receipt: most requests never need it."""
        return crypto.PdfSigner(self.settings.receipt_cert_file, self.settings.receipt_key_file)

    def sign_receipt(self, pdf: bytes, kind: ReceiptKind) -> bytes:
        from soap_service.documents.receipt_pdf import TITLES

        location = urlsplit(self.settings.public_url).hostname or "soap-service"
        return self.receipt_signer.sign(pdf, reason=TITLES[kind], location=location)

    def open_scope(self) -> RequestScope:
        return RequestScope(self)

    def close(self) -> None:
        self.database.dispose()


class RequestScope:
    """What one request uses; `close()` returns its database connection."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self.account: Account | None = None
        self.operation: str | None = None
        self.outcome = "ok"  # or the fault code, for the request's log line
        self.body_format = "-"  # xml or mtom, once the guard has read the body

    @cached_property
    def store(self) -> SqlStore:
        return self._container.database.store()

    @cached_property
    def authenticator(self) -> Authenticator:
        container = self._container
        return Authenticator(
            store=self.store,
            keyring=container.keyring,
            verified=container.verified_passwords,
            time_window=timedelta(seconds=container.settings.wss_time_window_seconds),
            now=container.now,
        )

    @cached_property
    def messages(self) -> MessageService:
        container = self._container
        return MessageService(
            store=self.store,
            keyring=container.keyring,
            limits=container.settings.limits,
            default_language=container.settings.default_language,
            now=container.now,
        )

    @cached_property
    def pickup(self) -> PickupService:
        container = self._container
        return PickupService(store=self.store, keyring=container.keyring, now=container.now)

    @cached_property
    def receipts(self) -> ReceiptService:
        from soap_service.documents.receipt_pdf import render_receipt

        container = self._container
        return ReceiptService(
            store=self.store,
            keyring=container.keyring,
            render=render_receipt,
            sign=container.sign_receipt,
            now=container.now,
        )

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
