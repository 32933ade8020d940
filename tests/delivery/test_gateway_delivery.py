"""Gateway delivery (issue 14) by DeliveryWorker.run_once against real SMTP servers
(aiosmtpd with STARTTLS): a confidential message to an organisation's domain goes to its
gateway as the message itself, S/MIME-signed, and its recipient becomes `delivered`;
everything else still gets a notification; TLS to a gateway is never weaker than its
policy. The same paths with a real Postfix as the gateway: tests/e2e/test_gateway_postfix.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from soap_service import crypto
from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.model import AttachmentDraft, MessageType, RecipientState
from soap_service.domain.organisations import Gateway, Organisation, TlsPolicy
from tests.delivery.conftest import Env, SmtpSink, worker_for
from tests.support import TlsFiles, smime_verify

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 300 + b"\n%%EOF\n"
CSV = b"Name;Betrag\r\nAnna;6543.21\r\n"
ATTACHMENTS = (
    AttachmentDraft(
        filename="Lohnabrechnung März.pdf", content_type="application/pdf", content=PDF
    ),
    AttachmentDraft(filename='plain "name".csv', content_type="text/csv", content=CSV),
)


@pytest.fixture
def env(database_url: str, env_factory: Callable[..., Env]) -> Env:
    return env_factory(database_url)


@pytest.fixture
def relay(start_sink: Callable[..., SmtpSink]) -> SmtpSink:
    """Where notifications go."""
    return start_sink()


@dataclass
class Harness:
    """A database with a sender (`env`), a relay for notifications, gateways started on
    demand with their own CA's certificate, and workers that know one organisation."""

    env: Env
    relay: SmtpSink
    start_sink: Callable[..., SmtpSink]
    gateway_files: TlsFiles
    signing_certificate: Path
    signer: crypto.MailSigner
    tls: TlsFiles
    folder: Path

    def gateway(self, **kwargs: Any) -> SmtpSink:
        """An SMTP server with STARTTLS and the gateway CA's certificate, unless told."""
        kwargs.setdefault("cert_chain", self.gateway_files.server_cert)
        kwargs.setdefault("key", self.gateway_files.server_key)
        return self.start_sink(**kwargs)

    def firm(self, gateway: SmtpSink, *, ca: Path | None = None, **options: Any) -> Organisation:
        """The organisation of firm.example, its gateway `gateway`, trusting `ca` (by
        default the gateway's own CA)."""
        trusted = ca or self.gateway_files.ca_cert
        return Organisation(
            name="firm",
            account=self.env.account,
            domains=("firm.example",),
            client_certificate=None,
            gateway=Gateway(
                host="127.0.0.1",
                port=gateway.port,
                ca=crypto.certificate_info(trusted.read_bytes()),
                **options,
            ),
        )

    def worker(self, organisation: Organisation, **settings: str) -> DeliveryWorker:
        return worker_for(
            self.env,
            self.relay,
            self.folder,
            ca=self.tls.ca_cert,
            organisations=[organisation],
            mail_signer=self.signer,
            **settings,
        )


@pytest.fixture
def h(
    env: Env,
    relay: SmtpSink,
    start_sink: Callable[..., SmtpSink],
    foreign_tls: TlsFiles,
    tls: TlsFiles,
    tmp_path: Path,
) -> Harness:
    certificate, key = tmp_path / "mail-signing.pem", tmp_path / "mail-signing-key.pem"
    crypto.generate_mail_signing_certificate(certificate, key, address="no-reply@secure.example")
    return Harness(
        env=env,
        relay=relay,
        start_sink=start_sink,
        # The gateway's own CA, not the one the worker trusts for notifications.
        gateway_files=foreign_tls,
        signing_certificate=certificate,
        signer=crypto.MailSigner(certificate, key),
        tls=tls,
        folder=tmp_path,
    )


def verified_entity(mail: bytes, certificate: Path, folder: Path) -> bytes:
    """What `openssl smime -verify` says the signature covers; fails if it does not verify."""
    checked = smime_verify(mail, certificate, folder)
    assert checked.returncode == 0, checked.stderr
    assert b"Verification successful" in checked.stderr
    return checked.stdout


def attachments_of(message: EmailMessage) -> list[tuple[str, str, bytes]]:
    return [
        (str(part.get_filename()), part.get_content_type(), part.get_payload(decode=True))
        for part in message.walk()
        if part.get_content_disposition() == "attachment" and part.get_filename() != "smime.p7s"
    ]


def bodies_of(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if part.get_content_maintype() == "text" and part.get_content_disposition() is None
    }


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_a_confidential_message_reaches_the_gateway_signed_and_is_delivered(
    h: Harness,
) -> None:
    gateway = h.gateway()
    organisation = h.firm(gateway)
    status = h.env.send(
        "anna@firm.example",
        "bob@hr.firm.example",  # a subdomain is the organisation's too
        "carla@other.example",
        html_body="<p>Ihr Nettolohn beträgt <b>CHF 6'543.21</b></p>",
        attachments=ATTACHMENTS,
        report_to="payroll@acme.example",
    )
    worker = h.worker(organisation)

    assert worker.run_once() == 3

    states = [recipient.state for recipient in h.env.status(status.message_id).recipients]
    assert states == [RecipientState.DELIVERED, RecipientState.DELIVERED, RecipientState.SENT]
    assert [mail.recipients for mail in gateway.received] == [
        ("anna@firm.example",),
        ("bob@hr.firm.example",),
    ]
    assert [mail.recipients for mail in h.relay.received] == [("carla@other.example",)]
    assert all(mail.tls for mail in gateway.received)

    mail = gateway.received[0]
    message = mail.message
    assert message.get_content_type() == "multipart/signed"
    assert message.get_param("protocol") == "application/pkcs7-signature"
    assert message.get_param("micalg") == "sha-256"
    assert message["Subject"] == "Lohnabrechnung März"
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "ACME Treuhand AG (soap-service)",
        "no-reply@localhost",
    )
    assert message["Reply-To"].addresses[0].addr_spec == "payroll@acme.example"
    assert message["To"].addresses[0].addr_spec == "anna@firm.example"
    assert message["X-Soap-Service-Message-Id"] == status.message_id
    assert message["X-Soap-Service-Type"] == "confidential"
    assert message["Message-ID"] == f"<{status.message_id}.1@localhost>"
    assert bodies_of(message) == {
        "text/plain": "Ihr Nettolohn beträgt CHF 6'543.21",
        "text/html": "<p>Ihr Nettolohn beträgt <b>CHF 6'543.21</b></p>",
    }
    assert attachments_of(message) == [
        ("Lohnabrechnung März.pdf", "application/pdf", PDF),
        ('plain "name".csv', "text/csv", CSV),
    ]
    # The signature covers the bodies and attachments, and OpenSSL checks it.
    signed = verified_entity(mail.data, h.signing_certificate, h.folder)
    assert signed.startswith(b"Content-Type: multipart/mixed")
    tampered = mail.data.replace(b"Content-Type: text/csv", b"Content-Type: text/plain", 1)
    assert tampered != mail.data
    assert smime_verify(tampered, h.signing_certificate, h.folder).returncode != 0

    anna = h.env.recipient_ids(status.message_id)[0]
    assert h.env.journal(anna) == [
        ("queued", "waiting for delivery"),
        ("delivered", "the gateway 127.0.0.1 accepted the message"),
    ]
    assert h.env.recipient_row(anna).last_error is None


def test_personal_and_registered_messages_to_a_gateway_domain_are_notified(
    h: Harness,
) -> None:
    gateway = h.gateway()
    organisation = h.firm(gateway)
    personal = h.env.send("anna@firm.example", type=MessageType.PERSONAL)
    registered = h.env.send("anna@firm.example", type=MessageType.REGISTERED)
    confidential = h.env.send("anna@firm.example")
    worker = h.worker(organisation)

    assert worker.run_once() == 3

    assert h.env.status(personal.message_id).recipients[0].state is RecipientState.SENT
    assert h.env.status(registered.message_id).recipients[0].state is RecipientState.SENT
    assert h.env.status(confidential.message_id).recipients[0].state is RecipientState.DELIVERED
    assert len(h.relay.received) == 2 and len(gateway.received) == 1
    assert gateway.received[0].message["X-Soap-Service-Message-Id"] == confidential.message_id


@pytest.mark.parametrize("insecure_hosts", ["", "127.0.0.1"])
def test_a_gateway_without_starttls_gets_nothing_and_is_deferred(
    h: Harness,
    insecure_hosts: str,
) -> None:
    """Not even a host named in SMTP_INSECURE_HOSTS gets a gateway mail in plain text."""
    gateway = h.gateway(cert_chain=None, key=None, starttls=False)
    organisation = h.firm(gateway)
    status = h.env.send("anna@firm.example")
    worker = h.worker(organisation, SMTP_INSECURE_HOSTS=insecure_hosts)

    worker.run_once()

    anna = h.env.status(status.message_id).recipients[0]
    assert anna.state is RecipientState.DEFERRED
    assert anna.last_error == "127.0.0.1 does not offer STARTTLS; nothing sent"
    assert gateway.events == [] and gateway.received == [] and h.relay.received == []


def test_a_gateway_certificate_from_another_ca_is_refused(
    h: Harness,
) -> None:
    """The gateway shows a certificate of its CA, but the organisation was registered
    with another CA (or none: the system's roots): nothing sent."""
    gateway = h.gateway()
    status = h.env.send("anna@firm.example")
    worker = h.worker(h.firm(gateway, ca=h.tls.ca_cert))

    worker.run_once()

    anna = h.env.status(status.message_id).recipients[0]
    assert anna.state is RecipientState.DEFERRED
    assert anna.last_error is not None
    assert anna.last_error.startswith("127.0.0.1 showed a certificate that does not verify")
    assert gateway.events == [] and gateway.received == []


def test_mutual_tls_shows_the_service_client_certificate_to_the_gateway_only(
    h: Harness,
) -> None:
    client_ca = trustme.CA(organization_name="Service client CA")
    client_ca.cert_pem.write_to_path(str(h.folder / "client-ca.pem"))
    client = client_ca.issue_cert("secure.example")
    client.cert_chain_pems[0].write_to_path(str(h.folder / "client.pem"))
    client.private_key_pem.write_to_path(str(h.folder / "client-key.pem"))
    gateway = h.gateway(client_ca=h.folder / "client-ca.pem")
    organisation = h.firm(gateway, tls=TlsPolicy.MUTUAL)

    # Without a client certificate the service does not even try.
    first = h.env.send("anna@firm.example")
    h.worker(organisation).run_once()
    anna = h.env.status(first.message_id).recipients[0]
    assert anna.state is RecipientState.DEFERRED
    assert anna.last_error == (
        "127.0.0.1 asks for mutual TLS and the service has no client certificate "
        "(SOAP_SERVICE_GATEWAY_CLIENT_CERT_FILE); nothing sent"
    )
    assert gateway.received == []

    h.env.clock.advance(hours=1)
    worker = h.worker(
        organisation,
        GATEWAY_CLIENT_CERT_FILE=str(h.folder / "client.pem"),
        GATEWAY_CLIENT_KEY_FILE=str(h.folder / "client-key.pem"),
    )
    second = h.env.send("bob@firm.example", "carla@other.example")
    assert worker.run_once() == 3
    assert h.env.status(first.message_id).recipients[0].state is RecipientState.DELIVERED
    states = [recipient.state for recipient in h.env.status(second.message_id).recipients]
    assert states == [RecipientState.DELIVERED, RecipientState.SENT]
    assert sorted(mail.recipients[0] for mail in gateway.received) == [
        "anna@firm.example",
        "bob@firm.example",
    ]


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        ("450 4.2.1 Mailbox busy", RecipientState.DEFERRED),
        ("550 5.1.1 No such user here", RecipientState.FAILED),
    ],
)
def test_the_gateways_refusal_defers_or_fails_the_recipient(
    h: Harness,
    reply: str,
    state: RecipientState,
) -> None:
    gateway = h.gateway()
    gateway.script.rcpt_replies["anna@firm.example"] = reply
    status = h.env.send("anna@firm.example", "bob@firm.example")
    worker = h.worker(h.firm(gateway))

    worker.run_once()

    anna, bob = h.env.status(status.message_id).recipients
    assert (anna.state, anna.last_error) == (state, reply)
    assert bob.state is RecipientState.DELIVERED
    assert h.relay.received == []


@pytest.mark.parametrize("fallback", [False, True])
def test_an_unreachable_gateway_fails_or_falls_back_after_the_retry_time(
    h: Harness,
    fallback: bool,
) -> None:
    gateway = h.gateway(cert_chain=None, key=None, starttls=False)
    organisation = h.firm(gateway, fallback_to_notification=fallback)
    status = h.env.send("anna@firm.example")
    worker = h.worker(organisation, GIVE_UP_SECONDS="3600")
    anna_id = h.env.recipient_ids(status.message_id)[0]

    worker.run_once()
    assert h.env.status(status.message_id).recipients[0].state is RecipientState.DEFERRED
    h.env.clock.advance(hours=2)
    worker.run_once()

    anna = h.env.status(status.message_id).recipients[0]
    if not fallback:
        assert anna.state is RecipientState.FAILED
        assert anna.last_error == (
            "gave up after 2 attempts: 127.0.0.1 does not offer STARTTLS; nothing sent"
        )
        assert h.relay.received == []
        return
    assert anna.state is RecipientState.DEFERRED
    assert anna.last_error == (
        "gateway given up after 2 attempts, a notification follows: "
        "127.0.0.1 does not offer STARTTLS; nothing sent"
    )
    assert h.env.recipient_row(anna_id).gateway_given_up_at == h.env.clock.now
    worker.run_once()  # due at once: the notification
    anna = h.env.status(status.message_id).recipients[0]
    assert anna.state is RecipientState.SENT
    assert [mail.recipients for mail in h.relay.received] == [("anna@firm.example",)]
    # The notification (with its message.html), not the message itself.
    notification = h.relay.received[0].message
    assert notification["X-Soap-Service-Delivery"] is None
    assert [part.get_filename() for part in notification.walk() if part.get_filename()] == [
        "message.html",
        "smime.p7s",
    ]
    assert gateway.received == []


def test_a_kept_gateway_connection_carries_a_whole_run(
    h: Harness,
) -> None:
    gateway = h.gateway()
    statuses = [
        h.env.send(f"employee{n}@firm.example", attachments=ATTACHMENTS[:1]) for n in range(12)
    ]
    worker = h.worker(h.firm(gateway))

    assert worker.run_once() == 12

    assert gateway.mail_connections() == 1
    assert [mail.message["X-Soap-Service-Message-Id"] for mail in gateway.received] == [
        status.message_id for status in statuses
    ]
