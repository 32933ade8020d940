"""Mutual TLS: an organisation's mail server, registered with its client certificate,
submits without a password as the organisation's account, and only from its domains.
Real `soap-service smtp` process and CLI, both databases."""

from __future__ import annotations

import re
import smtplib
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from sqlalchemy import create_engine, text

from tests.smtp.conftest import reply_text, submit
from tests.support import ServiceProcess, SmtpChannelProcess, count_messages

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class RegisteredServer:
    name: str
    cert_chain: Path  # the mail server's certificate and key, as its TLS client presents
    username: str
    password: str


def client_files(folder: Path, name: str) -> tuple[Path, Path]:
    """A client certificate from the organisation's own CA: (certificate, key+chain)."""
    ca = trustme.CA(organization_name=f"{name} CA")
    leaf = ca.issue_cert(f"mail.{name}.example")
    certificate = folder / f"{name}-cert.pem"
    chain = folder / f"{name}-chain.pem"
    certificate.write_bytes(leaf.cert_chain_pems[0].bytes())
    chain.write_bytes(leaf.private_key_and_cert_chain_pem.bytes())
    return certificate, chain


@pytest.fixture(scope="module")
def registered(
    service: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> RegisteredServer:
    folder = tmp_path_factory.mktemp("client-certs")
    name = f"firm{uuid.uuid4().hex[:6]}"
    certificate, chain = client_files(folder, name)
    output = service.cli(
        "organisation",
        "add",
        name,
        "--domain",
        "firm.example",
        "--domain",
        "Fírma.example",
        "--client-cert",
        str(certificate),
        "--display-name",
        "Firm Ltd",
    ).stdout
    username = re.search(r"username: (\S+)", output)
    password = re.search(r"password: (\S+)", output)
    assert username and password, output
    assert "domains:     firm.example, xn--frma-vpa.example" in output
    return RegisteredServer(name, chain, username.group(1), password.group(1))


@pytest.fixture(scope="module")
def mtls_channel(
    service: ServiceProcess, registered: RegisteredServer
) -> Iterator[SmtpChannelProcess]:
    """Started after the organisation was registered: it reads certificates at start."""
    process = SmtpChannelProcess(service=service, name="smtp-mtls").start()
    yield process
    process.stop()


def connect_with(channel: SmtpChannelProcess, chain: Path | None) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=str(channel.service.tls.ca_cert))
    if chain is not None:
        context.load_cert_chain(chain)
    client = smtplib.SMTP("127.0.0.1", channel.port, timeout=30)
    client.starttls(context=context)
    client.ehlo()
    return client


def mail_from(author: str) -> bytes:
    return (
        f"From: Payroll <{author}>\r\nSubject: Payslip\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@firm.example>\r\n\r\nYour payslip.\r\n"
    ).encode()


def test_a_registered_certificate_submits_without_a_password_as_its_organisation(
    service: ServiceProcess, mtls_channel: SmtpChannelProcess, registered: RegisteredServer
) -> None:
    before = count_messages(service.database_url)
    with connect_with(mtls_channel, registered.cert_chain) as client:
        replies = submit(client, mail_from("hr@firm.example"), mail_from="bounces@firm.example")
        sub = submit(client, mail_from("lohn@hr.firm.example"), mail_from="lohn@hr.firm.example")
    assert reply_text(replies.mail) == "250 2.1.0 Sender ok"
    assert replies.data_reply.startswith("250 2.0.0 Ok: stored as secure message ")
    assert sub.data_reply.startswith("250 2.0.0 ")  # a subdomain is the organisation's too
    assert count_messages(service.database_url) == before + 2
    # The messages are the organisation's account's: it follows them over SOAP.
    stored_id = replies.data_reply.rsplit(" ", 1)[1]
    soap = service.client(registered.username, registered.password)
    assert soap.service.GetStatus(MessageId=stored_id).State == "queued"


def test_a_certificate_session_sends_only_from_its_domains(
    service: ServiceProcess, mtls_channel: SmtpChannelProcess, registered: RegisteredServer
) -> None:
    before = count_messages(service.database_url)
    with connect_with(mtls_channel, registered.cert_chain) as client:
        assert reply_text(client.mail("ceo@other.example")) == (
            "550 5.7.1 The sender address is not in the domains registered for this client "
            "certificate"
        )
        client.rset()
        assert reply_text(client.mail("x@notfirm.example")).startswith("550 5.7.1 ")
        client.rset()
        forged = submit(client, mail_from("ceo@other.example"), mail_from="hr@firm.example")
    assert forged.data_reply == (
        "554 5.7.1 The From address is not in the domains registered for this client certificate"
    )
    assert count_messages(service.database_url) == before


def test_without_a_certificate_the_session_must_log_in(
    mtls_channel: SmtpChannelProcess, registered: RegisteredServer
) -> None:
    with connect_with(mtls_channel, None) as client:
        assert reply_text(client.mail("hr@firm.example")) == "530 5.7.0 Authentication required"
        client.login(registered.username, registered.password)
        # Logged in with a password, the account may name any sender address.
        assert reply_text(client.mail("someone@elsewhere.example")) == "250 2.1.0 Sender ok"


def test_an_unregistered_certificate_from_an_unknown_ca_gets_no_session(
    mtls_channel: SmtpChannelProcess, tmp_path: Path
) -> None:
    _, chain = client_files(tmp_path, "stranger")
    refused = (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)
    with pytest.raises(refused), connect_with(mtls_channel, chain) as client:
        client.noop()


def test_the_organisation_commands(service: ServiceProcess, registered: RegisteredServer) -> None:
    listing = service.cli("organisation", "list").stdout
    assert registered.name in listing
    assert f"account:     {registered.username} (Firm Ltd)" in listing
    taken = service.cli("organisation", "add", "other", "--domain", "firm.example", check=False)
    assert (taken.returncode, taken.stderr.strip()) == (
        1,
        f"soap-service: firm.example belongs to the organisation {registered.name!r}",
    )
    # Nothing was made of it, not even the account it would have had: the name is free.
    again = service.cli("account", "add", "other")
    assert "password:" in again.stdout
    bad = service.cli("organisation", "add", "bad", "--domain", "no spaces.ch", check=False)
    assert bad.returncode == 2
    assert "is not a domain name" in bad.stderr
    missing = service.cli(
        "organisation",
        "add",
        "nocert",
        "--domain",
        "x.example",
        "--client-cert",
        "/nonexistent",
        check=False,
    )
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "soap-service: cannot read /nonexistent: No such file or directory",
    )
    added = service.cli("organisation", "add", "gone", "--domain", "gone.example")
    assert "certificate: none (its mail server uses SMTP AUTH)" in added.stdout
    assert service.cli("organisation", "remove", "gone").returncode == 0
    assert "gone" not in service.cli("organisation", "list").stdout
    assert service.cli("organisation", "remove", "gone", check=False).returncode == 1


def test_a_disabled_accounts_certificate_no_longer_authenticates(
    service: ServiceProcess, tmp_path: Path
) -> None:
    certificate, chain = client_files(tmp_path, "closing")
    service.cli(
        "organisation",
        "add",
        "closing",
        "--domain",
        "closing.example",
        "--client-cert",
        str(certificate),
    )
    engine = create_engine(service.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE accounts SET disabled = true WHERE username = 'closing'")
            )
    finally:
        engine.dispose()
    channel = SmtpChannelProcess(service=service, name="smtp-disabled").start()
    try:
        # No longer registered for the channel: like any certificate from an unknown CA.
        refused = (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)
        with pytest.raises(refused), connect_with(channel, chain) as client:
            client.mail("hr@closing.example")
    finally:
        channel.stop()
