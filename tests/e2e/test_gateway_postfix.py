"""A real Postfix (Debian's) as an organisation's gateway (issue 14): the service's worker
delivers confidential messages to it over mutual TLS (`smtpd_tls_security_level =
encrypt`, `smtpd_tls_req_ccert = yes` with the service's client CA), Postfix puts them
into a Maildir, and the test checks the signature with `openssl smime -verify` and every
attachment byte for byte. Gateways that offer no STARTTLS, show a certificate of an
unknown CA, refuse the service's client certificate or refuse recipients get nothing
they should not, and the recipients are deferred or failed with the reason."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests import postfix
from tests.e2e.stack import Stack, new_reference
from tests.e2e.test_pickup_browser import browser, read_link, register_in  # noqa: F401
from tests.smtp_sink import SmtpSink
from tests.support import free_port, smime_verify

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(postfix.available() is not None, reason=str(postfix.available())),
]

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 400 + b"\n%%EOF\n"
CSV = b"Lohnart;Betrag\r\nGrundlohn;7'200.00\r\nAHV;-381.60\r\n"


class Certificates:
    """Files for one CA and a certificate it issued."""

    def __init__(self, folder: Path, name: str, ca_name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.authority = trustme.CA(organization_name=ca_name)
        leaf = self.authority.issue_cert(name)
        self.ca = folder / "ca.pem"
        self.cert = folder / "cert.pem"
        self.chain = folder / "chain.pem"
        self.key = folder / "key.pem"
        self.authority.cert_pem.write_to_path(str(self.ca))
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(self.chain))
        leaf.private_key_pem.write_to_path(str(self.key))


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., postfix.GatewayPostfix]]:
    started: list[postfix.GatewayPostfix] = []

    def start(**kwargs: Any) -> postfix.GatewayPostfix:
        server = postfix.GatewayPostfix(port=free_port(), **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def add_organisation(
    stack: Stack, name: str, server: postfix.GatewayPostfix, ca: Path, tls: str = "enforced"
) -> None:
    stack.service.cli(
        "organisation", "add", name, "--domain", server.domain,
        "--gateway", f"127.0.0.1:{server.port}", "--tls", tls, "--gateway-ca", str(ca),
    )  # fmt: skip


def send(stack: Stack, message_type: str, *addresses: str) -> str:
    result = stack.client.service.SendMessage(
        Message={
            "Reference": new_reference(),
            "Type": message_type,
            "Recipients": {"Recipient": [{"Address": address} for address in addresses]},
            "Subject": f"Lohnabrechnung Dezember ({message_type})",
            "TextBody": "Guten Tag\nIhre Lohnabrechnung liegt bei.",
            "HtmlBody": "<p>Guten Tag</p><p><b>Nettolohn:</b> CHF 6'543.21</p>",
            "Attachments": {
                "Attachment": [
                    {
                        "FileName": "Lohn-2026-12.pdf",
                        "ContentType": "application/pdf",
                        "Content": PDF,
                    },
                    {"FileName": "Lohnarten März.csv", "ContentType": "text/csv", "Content": CSV},
                ]
            },
            "Language": "de",
        }
    )
    return str(result.MessageId)


def test_postfix_receives_the_confidential_message_signed_and_the_registered_one_is_picked_up(
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
    gateways: Callable[..., postfix.GatewayPostfix],
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    stack = make_stack("postgresql")
    relay = start_sink()
    server_tls = Certificates(tmp_path / "gateway", "127.0.0.1", "Firm gateway CA")
    client_tls = Certificates(tmp_path / "client", "client.soap-service.test", "Service CA")
    server = gateways(
        domain="firm.example",
        cert_file=server_tls.chain,
        key_file=server_tls.key,
        require_client_cert=client_tls.ca,
    )
    add_organisation(stack, "firm", server, server_tls.ca, tls="mutual")
    stack.start_worker(
        relay,
        "worker",
        GATEWAY_CLIENT_CERT_FILE=str(client_tls.cert),
        GATEWAY_CLIENT_KEY_FILE=str(client_tls.key),
    )

    confidential = send(stack, "confidential", "anna@firm.example", "bob@other.example")
    registered = send(stack, "registered", "anna@firm.example")

    anna, bob = stack.wait_for_states(
        confidential, lambda rs: rs[0].State == "delivered" and rs[1].State == "sent", "delivery"
    )
    assert anna.LastError is None
    [notified] = stack.wait_all(registered, "sent")
    [raw] = server.wait_for("anna@firm.example", 1)
    assert server.messages("bob@other.example") == []
    assert [kind for kind, _ in stack.journal(confidential, 1)] == ["queued", "delivered"]

    # The signature holds for the mail as Postfix stored it (LF line ends, its Received
    # headers on top), against the certificate `soap-service signing-certificate` prints.
    certificate = tmp_path / "signing.pem"
    certificate.write_text(stack.service.cli("signing-certificate").stdout)
    verified = smime_verify(raw, certificate, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert b"Verification successful" in verified.stderr
    tampered = raw.replace(b"Content-Type: text/csv", b"Content-Type: text/x")
    assert tampered != raw
    assert smime_verify(tampered, certificate, tmp_path).returncode != 0

    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Lohnabrechnung Dezember (confidential)"
    assert message["X-Soap-Service-Message-Id"] == confidential
    assert message["Delivered-To"] == "anna@firm.example"
    assert "with ESMTPS" in message["Received"]  # TLS all the way
    # The attachments are inside the signed part, the signature beside it.
    assert [part.get_content_type() for part in message.get_payload()] == [  # type: ignore[union-attr]
        "multipart/mixed",
        "application/pkcs7-signature",
    ]
    signed_part = message.get_payload()[0]  # type: ignore[index]
    files = [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in signed_part.iter_attachments()
    ]
    assert files == [
        ("Lohn-2026-12.pdf", "application/pdf", PDF),
        ("Lohnarten März.csv", "text/csv", CSV),
    ]
    html = signed_part.get_body(preferencelist=("html",))
    assert html.get_content() == "<p>Guten Tag</p><p><b>Nettolohn:</b> CHF 6'543.21</p>"

    # The registered message went to the same recipient as a notification, not to the
    # gateway, and is picked up and accepted on the pickup page.
    [mail] = [m for m in relay.received if m.recipients == ("anna@firm.example",)]
    assert mail.message["X-Soap-Service-Message-Id"] is None
    context = browser.new_context()
    page = context.new_page()
    page.goto(read_link(mail.message))
    register_in(page)
    assert page.locator("#subject").inner_text() == "Lohnabrechnung Dezember (registered)"
    with page.expect_navigation():
        page.get_by_role("button", name="Annehmen und öffnen").click()
    assert page.locator("#html-body").inner_text() == "Guten Tag\n\nNettolohn: CHF 6'543.21"
    context.close()
    assert stack.recipients(registered)[0].State == "accepted"
    assert notified.Address == "anna@firm.example"
    assert len(server.messages("anna@firm.example")) == 1
    assert bob.Address == "bob@other.example"


def test_postfix_gateways_that_fall_short_get_nothing_and_their_recipients_wait_or_fail(
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
    gateways: Callable[..., postfix.GatewayPostfix],
    tmp_path: Path,
) -> None:
    stack = make_stack("sqlite")
    relay = start_sink()
    server_tls = Certificates(tmp_path / "gateway", "127.0.0.1", "Firm gateway CA")
    stranger = Certificates(tmp_path / "stranger", "127.0.0.1", "Unknown CA")
    service_client = Certificates(tmp_path / "client", "client.soap-service.test", "Service CA")
    their_clients = Certificates(tmp_path / "theirs", "client.firm.test", "Their own CA")

    plain = gateways(domain="plain.example", tls="none")
    add_organisation(stack, "plain", plain, server_tls.ca)
    unknown = gateways(domain="unknown.example", cert_file=stranger.chain, key_file=stranger.key)
    add_organisation(stack, "unknown", unknown, server_tls.ca)
    picky = gateways(
        domain="picky.example",
        cert_file=server_tls.chain,
        key_file=server_tls.key,
        require_client_cert=their_clients.ca,
    )
    add_organisation(stack, "picky", picky, server_tls.ca, tls="mutual")
    refusing = gateways(
        domain="refusing.example",
        cert_file=server_tls.chain,
        key_file=server_tls.key,
        refuse={
            "busy@refusing.example": "450 4.2.1 mailbox busy",
            "gone@refusing.example": "550 5.1.1 no such user",
        },
    )
    add_organisation(stack, "refusing", refusing, server_tls.ca)

    addresses = (
        "anna@plain.example",
        "anna@unknown.example",
        "anna@picky.example",
        "busy@refusing.example",
        "gone@refusing.example",
        "anna@refusing.example",
    )
    message_id = send(stack, "confidential", *addresses)
    stack.start_worker(
        relay,
        "worker",
        RETRY_MIN_SECONDS="3600",
        RETRY_MAX_SECONDS="3600",
        GATEWAY_CLIENT_CERT_FILE=str(service_client.cert),
        GATEWAY_CLIENT_KEY_FILE=str(service_client.key),
    )
    recipients = stack.wait_for_states(
        message_id, lambda rs: all(r.Attempts >= 1 for r in rs), "one attempt each"
    )

    outcomes = {r.Address: (r.State, r.LastError) for r in recipients}
    assert outcomes["anna@plain.example"] == (
        "deferred",
        "127.0.0.1 does not offer STARTTLS; nothing sent",
    )
    state, error = outcomes["anna@unknown.example"]
    assert state == "deferred"
    assert error.startswith("127.0.0.1 showed a certificate that does not verify")
    assert outcomes["anna@picky.example"] == (
        "deferred",
        "127.0.0.1 refused the connection after STARTTLS: 421 4.7.1 mx.picky.example Error: "
        "Client certificate not trusted; nothing sent",
    )
    assert outcomes["busy@refusing.example"] == (
        "deferred",
        "450 4.2.1 <busy@refusing.example>: Recipient address rejected: mailbox busy",
    )
    assert outcomes["gone@refusing.example"] == (
        "failed",
        "550 5.1.1 <gone@refusing.example>: Recipient address rejected: no such user",
    )
    assert outcomes["anna@refusing.example"] == ("delivered", None)
    assert len(refusing.wait_for("anna@refusing.example", 1)) == 1

    # Nothing reached the other gateways, and no MAIL FROM was ever given to them: no
    # envelope in plain text, nor to a server that failed the TLS policy.
    for server in (plain, unknown, picky):
        assert server.messages(f"anna@{server.domain}") == []
        log = server.log_text()
        assert "connect from" in log
        assert "from=<" not in log, log[-2000:]
    assert relay.received == []  # no notification without the organisation's fallback
