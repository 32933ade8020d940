"""Relay options (SMTP login, a client certificate) and routing to a domain's MX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dns.exception
import dns.resolver
import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from soap_service.delivery.routing import NoRoute, Router, RouteUnknown
from soap_service.delivery.smtp import Route, SmtpSession, TlsContexts, TransportError
from soap_service.domain.model import RecipientState
from soap_service.settings import SmtpSettings, load_settings
from tests.delivery.conftest import Env, SmtpSink, worker_for
from tests.support import TlsFiles


@pytest.fixture
def env(env_factory: Callable[..., Env]) -> Env:
    return env_factory()


def only_relay_login(username: str, password: str) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            username.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


def state_after_one_run(env: Env, sink: SmtpSink, tmp_path: Path, ca: Path, **settings: str):
    sent = env.send("anna@example.ch")
    worker = worker_for(env, sink, tmp_path, ca=ca, **settings)
    try:
        worker.run_once()
    finally:
        worker.close()
    return env.status(sent.message_id).recipients[0]


def test_the_relay_login_is_given(
    env: Env, start_sink: Callable[..., SmtpSink], tls: TlsFiles, tmp_path: Path
) -> None:
    sink = start_sink(
        cert_chain=tls.server_cert,
        key=tls.server_key,
        authenticator=only_relay_login("relay-user", "relay-secret"),
        auth_required=True,
    )
    recipient = state_after_one_run(
        env, sink, tmp_path, tls.ca_cert, SMTP_USERNAME="relay-user", SMTP_PASSWORD="relay-secret"
    )
    assert recipient.state is RecipientState.SENT
    assert len(sink.received) == 1


def test_a_wrong_relay_login_defers_and_sends_nothing(
    env: Env, start_sink: Callable[..., SmtpSink], tls: TlsFiles, tmp_path: Path
) -> None:
    sink = start_sink(
        cert_chain=tls.server_cert,
        key=tls.server_key,
        authenticator=only_relay_login("relay-user", "relay-secret"),
        auth_required=True,
    )
    recipient = state_after_one_run(
        env, sink, tmp_path, tls.ca_cert, SMTP_USERNAME="relay-user", SMTP_PASSWORD="wrong"
    )
    assert recipient.state is RecipientState.DEFERRED
    assert "535" in (recipient.last_error or "")
    assert sink.received == []


@pytest.fixture(scope="module")
def client_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(client CA, client certificate chain, key): what a relay asking for mutual TLS
    trusts, and what the service presents."""
    folder = tmp_path_factory.mktemp("client-tls")
    ca = trustme.CA()
    client = ca.issue_cert("soap-service.example")
    ca.cert_pem.write_to_path(str(folder / "client-ca.pem"))
    client.private_key_and_cert_chain_pem.write_to_path(str(folder / "client.pem"))
    client.private_key_pem.write_to_path(str(folder / "client-key.pem"))
    return folder / "client-ca.pem", folder / "client.pem", folder / "client-key.pem"


def test_a_relay_asking_for_a_client_certificate_gets_it(
    env: Env,
    start_sink: Callable[..., SmtpSink],
    tls: TlsFiles,
    tmp_path: Path,
    client_certificate: tuple[Path, Path, Path],
) -> None:
    client_ca, chain, key = client_certificate
    sink = start_sink(cert_chain=tls.server_cert, key=tls.server_key, client_ca=client_ca)
    recipient = state_after_one_run(
        env,
        sink,
        tmp_path,
        tls.ca_cert,
        SMTP_CLIENT_CERT_FILE=str(chain),
        SMTP_CLIENT_KEY_FILE=str(key),
    )
    assert recipient.state is RecipientState.SENT


def test_without_the_client_certificate_nothing_is_sent(
    env: Env,
    start_sink: Callable[..., SmtpSink],
    tls: TlsFiles,
    tmp_path: Path,
    client_certificate: tuple[Path, Path, Path],
) -> None:
    client_ca, _, _ = client_certificate
    sink = start_sink(cert_chain=tls.server_cert, key=tls.server_key, client_ca=client_ca)
    recipient = state_after_one_run(env, sink, tmp_path, tls.ca_cert)
    assert recipient.state is RecipientState.DEFERRED
    assert sink.received == []
    assert sink.events == []


def smtp_settings(sink: SmtpSink, folder: Path, ca: Path, **extra: str) -> SmtpSettings:
    environ = {
        "SOAP_SERVICE_DATA_DIR": str(folder),
        "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
        "SOAP_SERVICE_SMTP_CA_FILE": str(ca),
        **{f"SOAP_SERVICE_{name}": value for name, value in extra.items()},
    }
    return load_settings(environ).delivery.smtp


def test_a_recipients_own_server_is_never_offered_the_relay_login(
    start_sink: Callable[..., SmtpSink], tls: TlsFiles, tmp_path: Path
) -> None:
    offered: list[Any] = []

    def record(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        offered.append(data)
        return AuthResult(success=True, handled=False)

    sink = start_sink(cert_chain=tls.server_cert, key=tls.server_key, authenticator=record)
    settings = smtp_settings(
        sink, tmp_path, tls.ca_cert, SMTP_USERNAME="relay-user", SMTP_PASSWORD="relay-secret"
    )
    contexts = TlsContexts.from_settings(settings)
    # The same server, once as a recipient's MX and once as the relay.
    as_mx = SmtpSession(Route("127.0.0.1", sink.port), settings, contexts)
    as_mx.open()
    as_mx.close()
    assert offered == []
    as_relay = SmtpSession(Route("127.0.0.1", sink.port, relay=True), settings, contexts)
    as_relay.open()
    as_relay.close()
    assert [(data.login, data.password) for data in offered] == [(b"relay-user", b"relay-secret")]


def test_a_recipients_own_server_is_never_shown_the_client_certificate(
    start_sink: Callable[..., SmtpSink],
    tls: TlsFiles,
    tmp_path: Path,
    client_certificate: tuple[Path, Path, Path],
) -> None:
    client_ca, chain, key = client_certificate
    sink = start_sink(cert_chain=tls.server_cert, key=tls.server_key, client_ca=client_ca)
    settings = smtp_settings(
        sink, tmp_path, tls.ca_cert, SMTP_CLIENT_CERT_FILE=str(chain), SMTP_CLIENT_KEY_FILE=str(key)
    )
    contexts = TlsContexts.from_settings(settings)
    with pytest.raises(TransportError):
        SmtpSession(Route("127.0.0.1", sink.port), settings, contexts).open()
    as_relay = SmtpSession(Route("127.0.0.1", sink.port, relay=True), settings, contexts)
    as_relay.open()  # as the relay, the same server gets the certificate
    as_relay.close()


# Routing by MX: DNS is the one outside part here, so it is replaced by answers we choose.


def mx(*records: tuple[int, str]) -> list[Any]:
    return [SimpleNamespace(preference=preference, exchange=host) for preference, host in records]


def resolving(monkeypatch: pytest.MonkeyPatch, answer: Any) -> list[str]:
    asked: list[str] = []

    def resolve(name: str, kind: str) -> Any:
        asked.append(f"{name} {kind}")
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(dns.resolver, "resolve", resolve)
    return asked


def test_a_relay_takes_every_mail() -> None:
    assert Router(("relay.example.ch", 587)).routes("anna@bücher.ch") == [
        Route("relay.example.ch", 587, relay=True)
    ]


def test_mail_exchangers_by_preference(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = resolving(monkeypatch, mx((20, "backup.example.ch."), (10, "mx.example.ch.")))
    assert Router(None).routes("anna@example.ch") == [
        Route("mx.example.ch", 25),
        Route("backup.example.ch", 25),
    ]
    assert asked == ["example.ch MX"]


def test_an_international_domain_is_looked_up_in_ascii(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = resolving(monkeypatch, mx((10, "mx.xn--bcher-kva.ch.")))
    Router(None).routes("anna@bücher.ch")
    assert asked == ["xn--bcher-kva.ch MX"]


def test_a_domain_without_mx_is_its_own_server(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving(monkeypatch, dns.resolver.NoAnswer())
    assert Router(None).routes("anna@example.ch") == [Route("example.ch", 25)]


@pytest.mark.parametrize(
    ("answer", "error", "says"),
    [
        (dns.resolver.NXDOMAIN(), NoRoute, "does not exist"),
        (mx((0, ".")), NoRoute, "accepts no mail"),
        (dns.exception.Timeout(), RouteUnknown, "DNS lookup"),
    ],
    ids=["no-such-domain", "null-mx", "dns-timeout"],
)
def test_domains_that_cannot_take_mail_now_or_ever(
    monkeypatch: pytest.MonkeyPatch, answer: Any, error: type[Exception], says: str
) -> None:
    resolving(monkeypatch, answer)
    with pytest.raises(error, match=says):
        Router(None).routes("anna@example.ch")
