"""Settings are read once from the environment; logs never carry request content."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
from lxml import etree
from spyne import Fault
from spyne.protocol.soap.soap11 import _parse_xml_string

from soap_service.errors import ConfigurationError
from soap_service.logs import configure_logging, describe_exception
from soap_service.settings import OperatorIdentity, load_settings


def test_defaults_are_the_embedded_development_service(tmp_path: Path) -> None:
    settings = load_settings({"SOAP_SERVICE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'soap-service.sqlite3'}"
    assert settings.public_url == "https://localhost:8443/soap/v1"
    assert settings.soap_path == "/soap/v1"
    assert settings.bind == "127.0.0.1:8443"
    assert settings.tls_generate_dev_cert
    assert settings.master_key_file == tmp_path / "keys" / "master-keys.json"


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://soap@db/soap",
        "postgres://soap@db/soap",
        "postgresql+psycopg2://soap@db/soap",
    ],
)
def test_postgresql_urls_use_psycopg_3(given: str) -> None:
    settings = load_settings({"SOAP_SERVICE_DATABASE_URL": given})
    assert settings.database_url == "postgresql+psycopg://soap@db/soap"


def test_listening_beyond_this_host_needs_a_public_url_and_a_certificate() -> None:
    with pytest.raises(ConfigurationError, match="PUBLIC_URL and SOAP_SERVICE_TLS_CERT_FILE"):
        load_settings({"SOAP_SERVICE_BIND": "0.0.0.0:443"})
    settings = load_settings(
        {
            "SOAP_SERVICE_BIND": "0.0.0.0:443",
            "SOAP_SERVICE_PUBLIC_URL": "https://soap.example.ch/soap/v1",
            "SOAP_SERVICE_TLS_CERT_FILE": "/etc/soap/cert.pem",
            "SOAP_SERVICE_TLS_KEY_FILE": "/etc/soap/key.pem",
        }
    )
    assert settings.public_url == "https://soap.example.ch/soap/v1"
    assert not settings.tls_generate_dev_cert


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("PUBLIC_URL", "http://example.ch/soap", "https"),
        ("DATABASE_URL", "mysql://db/x", "sqlite:// or postgresql://"),
        ("WORKERS", "many", "whole number"),
        ("WORKERS", "0", "positive"),
        ("DEFAULT_LANGUAGE", "es", "de, fr, it, en"),
        ("TLS_CERT_FILE", "/etc/cert.pem", "both"),
        ("LOG_LEVEL", "chatty", "DEBUG, INFO, WARNING, ERROR"),
        ("TRUSTED_PROXIES", "10.0.0.1, proxy.internal", "not an IP address"),
        ("METRICS_TOKEN", "short", "at least 16"),
        ("TSA_URL", "ftp://tsa.example.ch/", "http:// or https://"),
        ("OPERATOR_NAME", "Post <evil@example.org>", "plain name"),
        ("OPERATOR_NAME", "x" * 81, "at most 80"),
        ("OPERATOR_IMPRINT_URL", "http://post.example.ch/impressum", "https://"),
        ("OPERATOR_PRIVACY_URL", 'https://post.example.ch/"x', "https://"),
    ],
)
def test_wrong_settings_are_refused_at_start(name: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        load_settings({f"SOAP_SERVICE_{name}": value})


PUBLIC = {
    "SOAP_SERVICE_BIND": "0.0.0.0:443",
    "SOAP_SERVICE_PUBLIC_URL": "https://soap.example.ch/soap/v1",
    "SOAP_SERVICE_TLS_CERT_FILE": "/etc/soap/cert.pem",
    "SOAP_SERVICE_TLS_KEY_FILE": "/etc/soap/key.pem",
}


@pytest.mark.parametrize(
    "credentials",
    [
        {"SMTP_USERNAME": "relay-user", "SMTP_PASSWORD": "secret"},
        {"SMTP_CLIENT_CERT_FILE": "/etc/soap/c.pem", "SMTP_CLIENT_KEY_FILE": "/etc/soap/k.pem"},
    ],
)
def test_relay_credentials_without_a_relay_are_refused(credentials: dict[str, str]) -> None:
    """Without a relay every mail goes to the recipient's own MX, which must never be
    offered our login or certificate."""
    given = {f"SOAP_SERVICE_{name}": value for name, value in credentials.items()}
    with pytest.raises(ConfigurationError, match="need SOAP_SERVICE_SMTP_RELAY"):
        load_settings({**PUBLIC, **given})
    relayed = load_settings({**PUBLIC, **given, "SOAP_SERVICE_SMTP_RELAY": "relay.example:587"})
    assert relayed.delivery.smtp.relay == ("relay.example", 587)


def test_a_relay_username_needs_its_password() -> None:
    with pytest.raises(ConfigurationError, match="both SOAP_SERVICE_SMTP_USERNAME"):
        load_settings({"SOAP_SERVICE_SMTP_USERNAME": "relay-user"})


@pytest.mark.parametrize(
    "mail_from",
    [
        "Payroll <no-reply@example.ch>",
        "no-reply@example.ch\r\nRCPT TO:<x@y.ch>",
        "no-reply",
        "@x.ch",
    ],
)
def test_the_sender_address_must_be_plain(mail_from: str) -> None:
    """It goes into MAIL FROM as it is: no display name, no line breaks."""
    with pytest.raises(ConfigurationError, match="SOAP_SERVICE_MAIL_FROM must be a plain"):
        load_settings({"SOAP_SERVICE_MAIL_FROM": mail_from})
    plain = load_settings({"SOAP_SERVICE_MAIL_FROM": "payroll@example.ch"})
    assert plain.delivery.smtp.mail_from == "payroll@example.ch"


def test_spyne_cannot_log_a_request_it_failed_to_parse(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("DEBUG")
    # configure_logging replaced the root handlers, caplog's too: put it back.
    logging.getLogger().addHandler(caplog.handler)
    secret = b"<soap:Envelope>payslip of MARKER-31b5 <unclosed"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Fault) as raised:
        # Spyne's own parser logs the whole request at ERROR level on a syntax error.
        _parse_xml_string([secret], etree.XMLParser())
    assert raised.value.faultcode == "Client.XMLSyntaxError"
    logging.getLogger("soap_service.test").debug("the handler is live")
    assert [record.getMessage() for record in caplog.records] == ["the handler is live"]
    assert "MARKER-31b5" not in caplog.text


def test_a_log_line_keeps_its_format_and_gunicorns_process_id(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Put back what configure_logging changes for the whole process.
    monkeypatch.setattr(logging, "_srcfile", logging._srcfile)  # type: ignore[attr-defined]
    monkeypatch.setattr(logging, "logMultiprocessing", logging.logMultiprocessing)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    configure_logging("INFO")  # its handler writes to the sys.stderr that capsys set
    logging.getLogger("soap_service.web.app").info("soap op=%s outcome=%s", "SendMessage", "ok")
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO soap_service.web.app: "
        r"soap op=SendMessage outcome=ok",
        line,
    ), line
    # The caller's location is not gathered any more; gunicorn's format needs the pid.
    record = logging.getLogger("gunicorn.error").makeRecord(
        "gunicorn.error", logging.INFO, "(unknown file)", 0, "Booting worker", (), None
    )
    assert logging.Formatter("[%(process)d] %(message)s").format(record) == (
        f"[{os.getpid()}] Booting worker"
    )


def test_an_exception_is_described_without_its_message() -> None:
    def fail() -> None:
        raise ValueError("SELECT secret FROM payslips WHERE name = 'Anna'")

    try:
        fail()
    except ValueError as exc:
        description = describe_exception(exc)
    assert description.startswith("ValueError at ")
    assert ":fail:" in description
    assert "SELECT" not in description and "Anna" not in description
    assert "/" not in description  # a module name, not a file path


def test_trusted_proxies_are_read_as_ip_addresses() -> None:
    settings = load_settings({"SOAP_SERVICE_TRUSTED_PROXIES": " 10.0.0.1,::1 , 2001:DB8::1"})
    assert settings.trusted_proxies == frozenset({"10.0.0.1", "::1", "2001:db8::1"})
    assert load_settings({}).trusted_proxies == frozenset()


def test_the_operator_is_named_once_for_notifications_pages_and_receipts() -> None:
    default = load_settings({})
    assert default.operator == OperatorIdentity(name="soap-service")
    assert default.delivery.operator is default.operator
    settings = load_settings(
        {
            "SOAP_SERVICE_OPERATOR_NAME": "  Beispiel   Post ",
            "SOAP_SERVICE_OPERATOR_ADDRESS": "Beispiel Post AG; Wankdorfallee 4 ;; 3030 Bern",
            "SOAP_SERVICE_OPERATOR_IMPRINT_URL": "https://post.example.ch/impressum",
            "SOAP_SERVICE_OPERATOR_PRIVACY_URL": "https://post.example.ch/datenschutz",
        }
    )
    assert settings.operator == OperatorIdentity(
        name="Beispiel Post",
        address_lines=("Beispiel Post AG", "Wankdorfallee 4", "3030 Bern"),
        imprint_url="https://post.example.ch/impressum",
        privacy_url="https://post.example.ch/datenschutz",
    )
