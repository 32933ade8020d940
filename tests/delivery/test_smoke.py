"""The worker delivers a SendMessage to a real SMTP server over verified STARTTLS."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from soap_service import crypto
from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.accounts import create_account
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Language, MessageDraft, MessageLimits, MessageType
from soap_service.persistence.database import Database
from soap_service.settings import load_settings
from tests.smtp_sink import SmtpSink
from tests.support import TlsFiles


def test_a_message_is_delivered_over_starttls(tmp_path: Path, tls: TlsFiles) -> None:
    sink = SmtpSink(cert_chain=tls.server_cert, key=tls.server_key).start()
    try:
        settings = load_settings(
            {
                "SOAP_SERVICE_DATA_DIR": str(tmp_path),
                "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
                "SOAP_SERVICE_SMTP_CA_FILE": str(tls.ca_cert),
            }
        )
        database = Database(settings.database_url)
        database.upgrade()
        keyring = crypto.Keyring.load_or_create(settings.master_key_file)
        now = lambda: datetime.now(UTC)  # noqa: E731
        account = create_account(
            database.store(),
            keyring,
            username="acme",
            organisation="ACME AG",
            allow_digest=False,
            now=now,
        ).account
        status = MessageService(
            store=database.store(),
            keyring=keyring,
            limits=MessageLimits(),
            default_language=Language.DE,
            now=now,
        ).send(
            account,
            MessageDraft(
                reference="r1",
                type=MessageType.CONFIDENTIAL,
                recipients=("anna@example.ch",),
                subject="Lohn",
                text_body="Hallo",
            ),
        )
        worker = DeliveryWorker(
            stores=database.store, keyring=keyring, settings=settings.delivery, now=now
        )
        assert worker.run_once() == 1
        [mail] = sink.received
        assert mail.tls
        assert mail.recipients == ("anna@example.ch",)
        assert mail.message_id == f"<{status.message_id}.1@localhost>"
        assert "ACME AG" in str(mail.message["Subject"])
        bodies = [part.get_content() for part in mail.message.walk() if not part.is_multipart()]
        assert len(bodies) == 3
        assert all("Hallo" not in body and "Lohn" not in body for body in bodies)
        database.dispose()
    finally:
        sink.stop()
