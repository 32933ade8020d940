"""The composition root: every process the service runs is wired here from the settings
(the API under gunicorn, the SMTP channel, the delivery worker, the development mail
sink), and so is each
request's scope (its database connection and the domain services on it).

Channels and workers are handed what they share with others (the database's stores, the
keyring, the clock, their part of the settings); none of them opens a database or reads
a key file itself. A channel's modules are imported where its process is built, so that
a worker does not load Spyne or gunicorn.
"""

from __future__ import annotations

import functools
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from soap_service import backups, crypto
from soap_service.bootstrap import ensure_files
from soap_service.domain.accounts import NewCredentials, create_account
from soap_service.domain.auth import Authenticator, VerifiedPasswords
from soap_service.domain.delivery import QueueSummary
from soap_service.domain.inbox import InboxService
from soap_service.domain.journal import Journal
from soap_service.domain.logbook import Logbook
from soap_service.domain.login_throttle import LoginGuard, LoginThrottle
from soap_service.domain.master_keys import reconcile_master_keys
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Language
from soap_service.domain.organisations import (
    Gateway,
    Organisation,
    OrganisationConflict,
    OrganisationDraft,
    check_organisation,
    conflict_with,
    register_organisation,
)
from soap_service.domain.person_accounts import MAIL_THROTTLE, PersonAccounts
from soap_service.domain.person_sending import PersonSending
from soap_service.domain.pickup import PickupService
from soap_service.domain.ports import Store
from soap_service.domain.receipts import ReceiptFacts, ReceiptKind, ReceiptService
from soap_service.domain.retention import ContentRetention
from soap_service.domain.second_factor import SecondFactor
from soap_service.domain.sender_reports import ReportJob
from soap_service.domain.teams import Teams
from soap_service.logs import configure_logging
from soap_service.metrics import Glance, Metrics, exposition, glance
from soap_service.persistence.database import Database
from soap_service.settings import Settings

if TYPE_CHECKING:
    from soap_service.delivery.worker import DeliveryWorker
    from soap_service.server import HttpsServer
    from soap_service.smtp.server import SmtpChannel
    from soap_service.web.app import WebApp


def utc_now() -> datetime:
    return datetime.now(UTC)


class Container:
    """Long-lived parts, built at first use: a command that only migrates the database
    neither reads nor creates the keyring."""

    def __init__(self, settings: Settings, *, database: Database | None = None) -> None:
        self.settings = settings
        self._given_database = database
        self.verified_passwords = VerifiedPasswords()
        self.login_throttle = LoginThrottle()
        self.now = utc_now

    @cached_property
    def database(self) -> Database:
        return self._given_database or Database(self.settings.database_url)

    @cached_property
    def keyring(self) -> crypto.Keyring:
        return crypto.Keyring.load_or_create(self.settings.master_key_file)

    @cached_property
    def receipt_signer(self) -> crypto.PdfSigner:
        """Loaded at the first receipt: most requests never need it."""
        return crypto.PdfSigner(
            self.settings.receipt_cert_file,
            self.settings.receipt_key_file,
            timestamp_url=self.settings.timestamp_url,
        )

    @cached_property
    def metrics(self) -> Metrics:
        """This process's counters (metrics.py); in the metrics folder when the command
        asked for it (`count_in`), else in memory."""
        return Metrics()

    def delivery_queue(self) -> QueueSummary:
        with closing(self.database.store()) as store:
            return store.delivery_queue(self.now())

    def metrics_page(self) -> bytes:
        """Every counter of this host's processes and the queue, in Prometheus's format."""
        return exposition(self.settings.metrics_dir, self.delivery_queue, self.now())

    def status(self) -> Glance:
        return glance(self.settings.metrics_dir, self.delivery_queue, self.now())

    @cached_property
    def mail_signer(self) -> crypto.MailSigner:
        """Loaded at the first gateway mail."""
        return crypto.MailSigner(self.settings.signing_cert_file, self.settings.signing_key_file)

    def close(self) -> None:
        """Dispose of the database's connections; a later use opens new ones."""
        database = self.__dict__.pop("database", None)
        if database is not None:
            database.dispose()

    # Start-up.

    def prepare(self) -> None:
        """What a first start needs: files, database schema, the master keys' check."""
        ensure_files(self.settings)
        self.database.upgrade()
        self.check_master_keys()

    def check_master_keys(self) -> None:
        """Register the keyring's new keys; refuse one that differs from the database's."""
        with closing(self.database.store()) as store:
            reconcile_master_keys(store, self.keyring, str(self.settings.master_key_file), self.now)

    # Processes.

    def https_server(self) -> HttpsServer:
        """The API: gunicorn over HTTPS, each of its worker processes building its own
        container after the fork (no database connection crosses a fork)."""
        from soap_service.server import HttpsServer

        settings = self.settings

        def api_in_worker() -> WebApp:
            configure_logging(settings.log_level)
            return Container(settings).wsgi_app()

        return HttpsServer(settings, api_in_worker)

    def wsgi_app(self) -> WebApp:
        """The API's WSGI application: SOAP, pickup pages, health."""
        from soap_service.soap.application import SoapEndpoint
        from soap_service.web.app import WebApp

        self.keyring  # noqa: B018  # a missing or broken keyring stops the start, not a request
        return WebApp(
            settings=self.settings,
            endpoint=SoapEndpoint(self.settings.public_url),
            open_scope=self.open_scope,
            check_database=self.database.ping,
            metrics=self.metrics,
            metrics_page=self.metrics_page,
        )

    def smtp_channel(self) -> SmtpChannel:
        """The SMTP channel: sessions on an event loop, submissions in its threads, each
        with its own request scope."""
        from soap_service.smtp.server import SmtpChannel, tls_context

        settings = self.settings
        self.keyring  # noqa: B018  # a missing or broken keyring stops the start
        return SmtpChannel(
            settings=settings.smtp_channel,
            limits=settings.limits,
            tls=functools.partial(tls_context, settings.tls_cert_file, settings.tls_key_file),
            open_scope=self.open_scope,
            organisations=functools.partial(self.organisations, active_only=True),
            count=self.metrics.smtp_submission,
        )

    def delivery_worker(self, name: str | None = None) -> DeliveryWorker:
        from soap_service.delivery.worker import DeliveryWorker

        return DeliveryWorker(
            stores=self.database.store,
            keyring=self.keyring,
            settings=self.settings.delivery,
            now=self.now,
            name=name,
            delete_due_content=self.delete_due_content,
            receipt_file=self.receipt_file,
            # Gateways receive mail for their domains whether or not the organisation's
            # sender account may send.
            organisations=self.organisations,
            mail_signer=lambda: self.mail_signer,
            count=self.metrics.delivered,
        )

    def run_mail_sink(self, stop: threading.Event) -> None:
        from soap_service.devmail import run_mail_sink

        delivery = self.settings.delivery
        run_mail_sink(
            port=delivery.dev_mail_port,
            folder=delivery.dev_mail_dir,
            cert_file=self.settings.tls_cert_file,
            key_file=self.settings.tls_key_file,
            stop=stop,
        )

    # Operators' commands.

    def back_up(self, folder: Path) -> list[str]:
        """A backup of the database, the keyring and the receipt signing files."""
        return backups.back_up(self.settings, self.database, folder, self.now())

    def restore(self, folder: Path) -> None:
        """A backup into this (fresh) data folder and empty database, then brought to the
        current schema and checked against its keyring."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        backups.restore(self.settings, self.database, folder)
        self.database.upgrade()
        self.check_master_keys()

    def create_account(
        self,
        name: str,
        organisation: str | None,
        *,
        digest: bool,
        show_subject: bool = False,
        language: Language | None = None,
        expiry_days: int | None = None,
    ) -> NewCredentials:
        with closing(self.database.store()) as store:
            return create_account(
                store,
                self.keyring,
                username=name,
                organisation=organisation,
                allow_digest=digest,
                now=self.now,
                show_subject=show_subject,
                default_language=language,
                default_expiry_days=expiry_days,
                limits=self.settings.limits,
            )

    def teams(self) -> Teams:
        """Teams as the operator's commands see them (on a connection of their own: close
        it with `close()`)."""
        return Teams(store=self.database.store(), keyring=self.keyring, now=self.now)

    def add_organisation(
        self,
        name: str,
        *,
        domains: list[str],
        client_certificate_pem: bytes | None,
        account: str | None,
        display_name: str | None,
        gateway: Gateway | None = None,
    ) -> tuple[Organisation, NewCredentials | None]:
        """Register an organisation; without `account`, a sender account of its name is
        created for it (its credentials returned, to be shown once). Everything is checked
        before that account is made."""
        draft = check_organisation(
            name=name,
            domains=domains,
            client_certificate_pem=client_certificate_pem,
            gateway=gateway,
        )
        credentials = None
        with closing(self.database.store()) as store:
            conflict = conflict_with(draft, store.organisations())
            if conflict is not None:
                raise OrganisationConflict(conflict)
            if account is None:
                credentials = create_account(
                    store,
                    self.keyring,
                    username=draft.name,
                    organisation=display_name,
                    allow_digest=False,
                    now=self.now,
                )
                account = credentials.account.username
            organisation = register_organisation(
                store, draft, account_username=account, now=self.now()
            )
        return organisation, credentials

    def organisations(self, *, active_only: bool = False) -> list[Organisation]:
        with closing(self.database.store()) as store:
            return store.organisations(active_only=active_only)

    def organisation(self, name: str) -> Organisation | None:
        wanted = name.strip().lower()
        return next((found for found in self.organisations() if found.name == wanted), None)

    def update_organisation(self, organisation: Organisation) -> None:
        """Store an organisation's new domains, certificate and gateway."""
        draft = OrganisationDraft(
            name=organisation.name,
            domains=organisation.domains,
            client_certificate=organisation.client_certificate,
        )
        with closing(self.database.store()) as store:
            others = [found for found in store.organisations() if found.name != draft.name]
            conflict = conflict_with(draft, others)
            if conflict is not None:
                raise OrganisationConflict(conflict)
            if not store.update_organisation(organisation):
                raise OrganisationConflict(f"no organisation {organisation.name!r}")

    def remove_organisation(self, name: str) -> bool:
        with closing(self.database.store()) as store:
            return store.remove_organisation(name)

    # Requests.

    def open_scope(self) -> RequestScope:
        return RequestScope(self)

    def receipt_service(self, store: Store) -> ReceiptService:
        from soap_service.documents.receipt_pdf import render_receipt

        return ReceiptService(
            store=store,
            keyring=self.keyring,
            render=functools.partial(render_receipt, operator=self.settings.operator),
            sign=self.sign_receipt,
            now=self.now,
        )

    def content_retention(self, store: Store) -> ContentRetention:
        return ContentRetention(
            store=store,
            keep=timedelta(days=self.settings.retention_days),
            issue_receipts=self.receipt_service(store).issue_due,
            now=self.now,
        )

    def delete_due_content(self) -> int:
        """Delete the content of messages whose retention is over (a batch); how many."""
        with closing(self.database.store()) as store:
            return self.content_retention(store).delete_due()

    def receipt_file(self, report: ReportJob) -> tuple[str, bytes]:
        """The signed receipt a report to a sender carries (made and kept if new)."""
        with closing(self.database.store()) as store:
            receipt = self.receipt_service(store).receipt_of(
                report.account_id,
                ReceiptKind(report.kind.value),
                message_id=report.message_id,
                recipient=report.recipient,
            )
        return receipt.filename, receipt.pdf

    def sign_receipt(self, pdf: bytes, facts: ReceiptFacts) -> bytes:
        from soap_service.documents.receipt_pdf import receipt_title

        location = urlsplit(self.settings.public_url).hostname or "soap-service"
        reason = receipt_title(facts.kind, facts.language)
        return self.receipt_signer.sign(pdf, reason=reason, location=location)


class RequestScope:
    """What one request uses, built at first use; `close()` returns its database
    connection. It is the domain services a channel calls (soap.call.DomainServices)."""

    def __init__(self, container: Container) -> None:
        self._container = container

    @cached_property
    def store(self) -> Store:
        return self._container.database.store()

    @cached_property
    def authenticator(self) -> Authenticator:
        container = self._container
        return Authenticator(
            store=self.store,
            keyring=container.keyring,
            verified=container.verified_passwords,
            guard=LoginGuard(store=self.store, policy=container.login_throttle, now=container.now),
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
    def journal(self) -> Journal:
        return Journal(store=self.store, keyring=self._container.keyring)

    @cached_property
    def pickup(self) -> PickupService:
        container = self._container
        return PickupService(store=self.store, keyring=container.keyring, now=container.now)

    @cached_property
    def inbox(self) -> InboxService:
        container = self._container
        return InboxService(
            store=self.store,
            keyring=container.keyring,
            guard=LoginGuard(store=self.store, policy=container.login_throttle, now=container.now),
            now=container.now,
        )

    @cached_property
    def person_accounts(self) -> PersonAccounts:
        container = self._container
        return PersonAccounts(
            store=self.store,
            keyring=container.keyring,
            mail_guard=LoginGuard(store=self.store, policy=MAIL_THROTTLE, now=container.now),
            login_guard=LoginGuard(
                store=self.store, policy=container.login_throttle, now=container.now
            ),
            now=container.now,
        )

    @cached_property
    def receipts(self) -> ReceiptService:
        return self._container.receipt_service(self.store)

    @cached_property
    def person_sending(self) -> PersonSending:
        return PersonSending(store=self.store, messages=self.messages, now=self._container.now)

    @cached_property
    def logbook(self) -> Logbook:
        return Logbook(
            store=self.store,
            keyring=self._container.keyring,
            journal=self.journal,
            messages=self.messages,
            receipts=self.receipts,
            sending=self.person_sending,
            teams=self.teams,
        )

    @cached_property
    def second_factor(self) -> SecondFactor:
        container = self._container
        return SecondFactor(
            store=self.store,
            keyring=container.keyring,
            guard=LoginGuard(store=self.store, policy=container.login_throttle, now=container.now),
            now=container.now,
        )

    @cached_property
    def teams(self) -> Teams:
        return Teams(store=self.store, keyring=self._container.keyring, now=self._container.now)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
