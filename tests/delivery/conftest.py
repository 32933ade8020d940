"""Fixtures for the delivery tests: a clock the test moves, a database with an account and
a way to send messages, a worker sending through an SMTP sink (`start_sink`, `foreign_tls`:
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from soap_service import crypto
from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.accounts import create_account
from soap_service.domain.messages import MessageService
from soap_service.domain.model import (
    Account,
    AttachmentDraft,
    Language,
    MessageDraft,
    MessageLimits,
    MessageStatus,
    MessageType,
)
from soap_service.domain.organisations import Organisation
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore
from soap_service.persistence.tables import EventRow, RecipientRow
from soap_service.settings import load_settings
from tests.smtp_sink import SmtpSink

# A fixed start: every time in these tests comes from the Clock, none from the wall.
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    """`now` for the service and the worker; the test moves it instead of sleeping."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Env:
    """A migrated database, a keyring, one sender account and its MessageService."""

    database: Database
    keyring: crypto.Keyring
    clock: Clock
    account: Account
    service: MessageService
    _store: SqlStore
    _references: int = field(default=0)

    def send(
        self,
        *recipients: str,
        type: MessageType = MessageType.CONFIDENTIAL,
        language: Language = Language.DE,
        subject: str = "Lohnabrechnung März",
        text_body: str = "Ihr Nettolohn beträgt CHF 6'543.21",
        expiry_days: int | None = None,
        html_body: str | None = None,
        attachments: tuple[AttachmentDraft, ...] = (),
        report_to: str | None = None,
    ) -> MessageStatus:
        self._references += 1
        return self.service.send(
            self.account,
            MessageDraft(
                reference=f"ref-{self._references}",
                type=type,
                recipients=recipients,
                subject=subject,
                text_body=text_body,
                language=language,
                expiry_days=expiry_days,
                html_body=html_body,
                attachments=attachments,
                report_to=report_to,
            ),
        )

    def close(self) -> None:
        self._store.close()
        self.database.dispose()

    def status(self, message_id: str) -> MessageStatus:
        return self.service.status(self.account, message_id=message_id)

    def recipient_ids(self, message_id: str) -> list[int]:
        recipients = RecipientRow.__table__
        with self.database.engine.connect() as connection:
            return list(
                connection.execute(
                    select(recipients.c.id)
                    .where(recipients.c.message_id == message_id)
                    .order_by(recipients.c.position)
                ).scalars()
            )

    def recipient_row(self, recipient_id: int) -> Any:
        recipients = RecipientRow.__table__
        with self.database.engine.connect() as connection:
            return connection.execute(
                select(recipients).where(recipients.c.id == recipient_id)
            ).one()

    def journal(self, recipient_id: int) -> list[tuple[str, str | None]]:
        """(kind, detail) of every event of one recipient, oldest first."""
        events = EventRow.__table__
        with self.database.engine.connect() as connection:
            rows = connection.execute(
                select(events.c.kind, events.c.detail)
                .where(events.c.recipient_id == recipient_id)
                .order_by(events.c.id)
            ).all()
        return [(row.kind, row.detail) for row in rows]


def make_env(database_url: str, folder: Path, *, show_subject: bool = False) -> Env:
    database = Database(database_url)
    database.upgrade()
    keyring = crypto.Keyring.load_or_create(folder / "keys" / "master-keys.json")
    clock = Clock()
    accounts = database.store()
    try:
        account = create_account(
            accounts,
            keyring,
            username="acme",
            organisation="ACME Treuhand AG",
            allow_digest=False,
            now=clock,
            show_subject=show_subject,
        ).account
    finally:
        accounts.close()
    store = database.store()
    service = MessageService(
        store=store,
        keyring=keyring,
        limits=MessageLimits(),
        default_language=Language.DE,
        now=clock,
    )
    return Env(
        database=database,
        keyring=keyring,
        clock=clock,
        account=account,
        service=service,
        _store=store,
    )


@pytest.fixture
def env_factory(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    envs: list[Env] = []

    def factory(database_url: str | None = None, **kwargs: Any) -> Env:
        url = database_url or f"sqlite:///{tmp_path / 'delivery.sqlite3'}"
        env = make_env(url, tmp_path, **kwargs)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


def worker_for(
    env: Env,
    sink: SmtpSink,
    folder: Path,
    *,
    ca: Path,
    name: str = "worker-1",
    delete_due_content: Callable[[], int] | None = None,
    organisations: list[Organisation] | None = None,
    mail_signer: crypto.MailSigner | None = None,
    **extra: str,
) -> DeliveryWorker:
    """A worker sending through `sink` as relay, trusting `ca`, on the env's clock; with
    `organisations`, confidential messages to their domains go to their gateways, signed
    by `mail_signer`."""
    environ = {
        "SOAP_SERVICE_DATA_DIR": str(folder),
        "SOAP_SERVICE_DATABASE_URL": env.database.url,
        "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
        "SOAP_SERVICE_SMTP_CA_FILE": str(ca),
        "SOAP_SERVICE_SMTP_TIMEOUT": "10",
        "SOAP_SERVICE_LEASE_SECONDS": "1",
        "SOAP_SERVICE_PICKUP_BASE_URL": "https://pickup.example.ch/m/",
    }
    environ.update({f"SOAP_SERVICE_{key}": value for key, value in extra.items()})
    settings = load_settings(environ)
    return DeliveryWorker(
        stores=env.database.store,
        keyring=env.keyring,
        settings=settings.delivery,
        now=env.clock,
        name=name,
        delete_due_content=delete_due_content,
        organisations=lambda: list(organisations or []),
        mail_signer=(lambda: mail_signer) if mail_signer else None,
    )
