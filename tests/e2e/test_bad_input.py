"""Every kind of bad input gets its own fault, stores nothing and leaves the server up.

Each request carries a marker string; neither the fault nor the server's log may echo it.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import Sender
from tests.support import (
    ServiceProcess,
    count_messages,
    digest_security_header,
    envelope,
    fault_of,
    security_header,
)

MARKER = "MARKER-7f3a9c"
PE_HEADER = b"MZ" + b"\0" * 58 + struct.pack("<I", 64) + b"PE\0\0" + b"\0" * 64


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Sender], bytes]
    code: str
    content_type: str = "text/xml; charset=utf-8"
    says: str = ""


def authed(body: str) -> Callable[[Sender], bytes]:
    return lambda sender: envelope(body, security_header(sender.username, sender.password))


def reference() -> str:
    return f"bad-{uuid.uuid4().hex[:10]}"


def message(**parts: str) -> str:
    """A SendMessage body; keyword arguments replace elements (None-like '' drops them)."""
    elements = {
        "Reference": f"<m:Reference>{reference()}</m:Reference>",
        "Type": "<m:Type>confidential</m:Type>",
        "Recipients": "<m:Recipients><m:Recipient><m:Address>a@example.ch</m:Address>"
        "</m:Recipient></m:Recipients>",
        "Subject": f"<m:Subject>Subject {MARKER}</m:Subject>",
        "TextBody": f"<m:TextBody>Body {MARKER}</m:TextBody>",
        "Attachments": "",
    }
    elements.update(parts)
    return (
        "<m:SendMessage><m:Message>" + "".join(elements.values()) + "</m:Message></m:SendMessage>"
    )


def attachment(name: str, content_base64: str) -> str:
    return (
        "<m:Attachments><m:Attachment>"
        f"<m:FileName>{name}</m:FileName><m:ContentType>application/pdf</m:ContentType>"
        f"<m:Content>{content_base64}</m:Content></m:Attachment></m:Attachments>"
    )


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)

CASES = [
    # SOAP-encoding references (href/id, multiRef): document/literal has none, and they
    # are never followed, so a cycle costs nothing.
    Case(
        "cyclic multiRef beside the operation",
        authed(
            '<m:GetStatus><m:MessageId href="#id1"/></m:GetStatus>'
            '<multiRef id="id1"><m:MessageId href="#id1"/></multiRef>'
        ),
        "Client.MalformedRequest",
        says="exactly one operation element",
    ),
    Case(
        "cyclic href inside the operation",
        authed('<m:GetStatus><m:MessageId id="id1" href="#id1">x</m:MessageId></m:GetStatus>'),
        "Client.ValidationError",
    ),
    Case(
        "no credentials",
        lambda s: envelope(message()),
        "Client.AuthenticationFailed",
        says="UsernameToken",
    ),
    Case(
        "wrong password",
        lambda s: envelope(message(), security_header(s.username, "wrong-" + MARKER)),
        "Client.AuthenticationFailed",
        says="username or password",
    ),
    Case(
        "unknown user",
        lambda s: envelope(message(), security_header("nobody-" + MARKER, s.password)),
        "Client.AuthenticationFailed",
        says="username or password",
    ),
    Case(
        "malformed XML",
        lambda s: b"<soap:Envelope><unclosed " + MARKER.encode(),
        "Client.MalformedRequest",
        says="well-formed",
    ),
    Case("empty body", lambda s: b"", "Client.MalformedRequest", says="empty"),
    Case(
        "empty SOAP Body",
        lambda s: envelope("", security_header(s.username, s.password)),
        "Client.MalformedRequest",
        says="Body is empty",
    ),
    Case(
        "not a SOAP envelope",
        lambda s: f"<order>{MARKER}</order>".encode(),
        "Client.MalformedRequest",
    ),
    Case(
        "XXE entity",
        lambda s: (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            + envelope(message(Subject="<m:Subject>&e;</m:Subject>")).split(b"?>", 1)[1]
        ),
        "Client.ForbiddenXml",
    ),
    Case("billion laughs", lambda s: BILLION_LAUGHS, "Client.ForbiddenXml"),
    Case(
        "unknown operation",
        authed(f"<m:DeleteEverything>{MARKER}</m:DeleteEverything>"),
        "Client.UnknownOperation",
        says="SendMessage",
    ),
    Case(
        "missing required field",
        authed(message(Subject="")),
        "Client.ValidationError",
        says="Subject",
    ),
    Case(
        "wrong enum value",
        authed(message(Type=f"<m:Type>urgent-{MARKER}</m:Type>")),
        "Client.ValidationError",
        says="confidential, personal, registered",
    ),
    Case(
        "number out of range",
        authed(message(Attachments="<m:ExpiryDays>99999999999</m:ExpiryDays>")),
        "Client.ValidationError",
        says="ExpiryDays",
    ),
    Case(
        "too many recipients",
        authed(
            message(
                Recipients="<m:Recipients>"
                + "".join(
                    f"<m:Recipient><m:Address>r{n}@example.ch</m:Address></m:Recipient>"
                    for n in range(101)
                )
                + "</m:Recipients>"
            )
        ),
        "Client.ValidationError",
        says="at most 100 Recipient elements",
    ),
    Case(
        "too many attachments",
        authed(
            message(
                Attachments="<m:Attachments>"
                + "".join(
                    f"<m:Attachment><m:FileName>{n}.pdf</m:FileName>"
                    "<m:ContentType>application/pdf</m:ContentType>"
                    "<m:Content>JVBERi0xLjQ=</m:Content></m:Attachment>"
                    for n in range(21)
                )
                + "</m:Attachments>"
            )
        ),
        "Client.ValidationError",
        says="at most 20 Attachment elements",
    ),
    Case(
        "enum value imitating libxml2's message",
        authed(message(Type=f"<m:Type>of the set {{{MARKER}}}</m:Type>")),
        "Client.ValidationError",
        says="confidential, personal, registered",
    ),
    Case(
        "invalid address",
        authed(
            message(
                Recipients="<m:Recipients><m:Recipient><m:Address>not an address</m:Address>"
                "</m:Recipient></m:Recipients>"
            )
        ),
        "Client.InvalidAddress",
        says="Recipient 1",
    ),
    Case(
        "executable attachment",
        authed(
            message(Attachments=attachment("payslip.pdf", base64.b64encode(PE_HEADER).decode()))
        ),
        "Client.AttachmentRejected",
        says="Windows executable",
    ),
    Case(
        "blocked extension",
        authed(message(Attachments=attachment("run.exe", "JVBERi0xLjQ="))),
        "Client.AttachmentRejected",
        says=".exe",
    ),
    Case(
        "invalid base64",
        authed(message(Attachments=attachment("a.pdf", f"JVBERi0x!{MARKER}"))),
        "Client.InvalidBase64",
        says="Content",
    ),
    Case(
        "SOAP 1.2 content type",
        authed(message()),
        "VersionMismatch",
        content_type="application/soap+xml; charset=utf-8",
    ),
    Case(
        "wrong content type",
        authed(message()),
        "Client.UnsupportedMediaType",
        content_type="application/json",
    ),
    # What the markup would cost the parser, refused before the parser sees it.
    Case(
        "a million and a half namespace declarations",
        lambda s: envelope(
            message(),
            security_header(s.username, s.password)
            + "<x:h "
            + " ".join(f'xmlns:p{n}="u{MARKER}"' for n in range(1_500_000))
            + "/>",
        ),
        "Client.MalformedRequest",
        says="more than 32 namespaces",
    ),
    Case(
        "49,000 elements in an unknown header, no credentials",
        lambda s: envelope(message(), "<x:h xmlns:x='urn:x'>" + "<a/>" * 49_000 + "</x:h>"),
        "Client.MalformedRequest",
        says="more than 31068 elements",
    ),
    Case(
        "30,000 elements of distinct names in the Body, no credentials",
        lambda s: envelope(
            "<m:SendMessages>" + "".join(f"<m:e{n}/>" for n in range(30_000)) + "</m:SendMessages>"
        ),
        "Client.MalformedRequest",
        says="more than 256 distinct element names",
    ),
    Case(
        "an operation holding more elements than a valid one may",
        authed("<m:GetStatus><m:MessageId>" + "<a/>" * 5 + "</m:MessageId></m:GetStatus>"),
        "Client.MalformedRequest",
        says="may hold (3)",
    ),
    Case(
        "an operation with more child elements than a valid one may have",
        authed("<m:GetStatus>" + "<m:MessageId>x</m:MessageId>" * 5 + "</m:GetStatus>"),
        "Client.ValidationError",
        says="GetStatus: at most 2 child elements are allowed",
    ),
    Case(
        "unknown mustUnderstand header",
        lambda s: envelope(
            message(),
            security_header(s.username, s.password)
            + '<x:Routing xmlns:x="urn:other" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
            ' soap:mustUnderstand="1">r</x:Routing>',
        ),
        "MustUnderstand",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_its_own_fault_and_stores_nothing(
    service: ServiceProcess, sender: Sender, case: Case
) -> None:
    before = count_messages(service.database_url)

    response = service.post(case.build(sender), content_type=case.content_type)

    code, text = fault_of(response)
    assert code == case.code
    assert case.says in text
    assert MARKER not in response.text
    assert not any(internal in text for internal in ("Traceback", ".py", "site-packages", "SELECT"))
    assert count_messages(service.database_url) == before
    assert service.session().get(f"{service.base_url}/health", timeout=5).status_code == 200


def test_a_reused_nonce_is_refused(service: ServiceProcess, sender: Sender) -> None:
    header = digest_security_header(sender.username, sender.password)
    body = "<m:GetStatus><m:Reference>absent</m:Reference></m:GetStatus>"

    first = service.post(envelope(body, header))
    replay = service.post(envelope(body, header))

    assert fault_of(first)[0] == "Client.NotFound"  # authenticated, then nothing found
    code, text = fault_of(replay)
    assert code == "Client.AuthenticationFailed"
    assert "replay" in text


def test_a_stale_created_is_refused(service: ServiceProcess, sender: Sender) -> None:
    stale = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = digest_security_header(sender.username, sender.password, created=stale)
    body = "<m:GetStatus><m:Reference>absent</m:Reference></m:GetStatus>"

    code, text = fault_of(service.post(envelope(body, header)))

    assert code == "Client.AuthenticationFailed"
    assert "300 seconds away" in text


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    service: ServiceProcess,
) -> None:
    context = ssl.create_default_context(cafile=str(service.tls.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            b"POST /soap/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: text/xml; charset=utf-8\r\n"
            b"Content-Length: 1073741824\r\n\r\n<soap:Envelope"
        )
        answer = b""
        while b"</soap:Envelope>" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 500")
    assert b"Client.MessageTooLarge" in answer
    assert service.session().get(f"{service.base_url}/health", timeout=5).status_code == 200


def test_a_chunked_body_is_capped_while_it_is_read(service: ServiceProcess, sender: Sender) -> None:
    limit = 56 * 1024 * 1024
    sent = 0

    def chunks() -> Iterator[bytes]:  # a generator: requests sends it chunked
        nonlocal sent
        yield envelope(message(), security_header(sender.username, sender.password))[:-20]
        block = b"A" * (1024 * 1024)
        while sent < limit + 8 * 1024 * 1024:
            sent += len(block)
            yield block

    try:
        response = service.session().post(
            service.url, data=chunks(), headers={"Content-Type": "text/xml"}, timeout=60
        )
    except Exception as exc:  # the server may close before the client finishes sending
        pytest.fail(f"the client did not get the fault: {exc!r}")
    code, _ = fault_of(response)
    assert code == "Client.MessageTooLarge"


def test_the_log_never_echoes_request_content(service: ServiceProcess, sender: Sender) -> None:
    for case in CASES:
        service.post(case.build(sender), content_type=case.content_type)
    log = service.log_text()
    assert MARKER not in log
    assert "Traceback" not in log
    assert "SELECT" not in log and "INSERT" not in log


@pytest.mark.parametrize(
    "action", ['"GetStatus"', "GetStatus", '"urn:soap-service:messaging:v1/CancelMessage"']
)
def test_a_soap_action_naming_another_operation_is_refused(
    service: ServiceProcess, sender: Sender, action: str
) -> None:
    count = count_messages(service.database_url)
    body = envelope(message(), security_header(sender.username, sender.password))
    code, text = fault_of(service.post(body, SOAPAction=action))
    assert (code, text) == (
        "Client.UnknownOperation",
        "the SOAPAction header names another operation than the Body (SendMessage)",
    )
    assert count_messages(service.database_url) == count


@pytest.mark.parametrize(
    "action", ['""', '"SendMessage"', "SendMessage", '"urn:soap-service:messaging:v1#SendMessage"']
)
def test_a_soap_action_that_is_empty_or_names_the_body_operation_is_accepted(
    service: ServiceProcess, sender: Sender, action: str
) -> None:
    body = envelope(message(), security_header(sender.username, sender.password))
    response = service.post(body, SOAPAction=action)
    assert response.status_code == 200, response.text[:300]
