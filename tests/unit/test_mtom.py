"""MTOM/XOP requests through the guard and the codec, on a fake WSGI environ: what the
attachment elements become, and every way a multipart body can be wrong."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from soap_service.errors import (
    ForbiddenXml,
    MalformedRequest,
    MessageTooLarge,
    UnsupportedMediaType,
    VersionMismatch,
)
from soap_service.soap.codec import Codec
from soap_service.soap.types import TNS
from soap_service.web.guard import GuardLimits, read_envelope

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
CONTENT = f"{{{TNS}}}Content"
LIMITS = GuardLimits(
    max_request_bytes=2**20, max_binary_bytes=4096, binary_tags=frozenset({CONTENT})
)
BOUNDARY = "uuid:4f1c-boundary"
MTOM_TYPE = (
    f'multipart/related;start="<root@test>";type="application/xop+xml";'
    f'boundary="{BOUNDARY}";start-info="text/xml"'
)


def soap(contents: list[str], prolog: str = "<?xml version='1.0' encoding='UTF-8'?>") -> str:
    attachments = "".join(
        f"<m:Attachment><m:FileName>f{n}.pdf</m:FileName><m:ContentType>application/pdf"
        f"</m:ContentType><m:Content>{content}</m:Content></m:Attachment>"
        for n, content in enumerate(contents)
    )
    return (
        f'{prolog}<S:Envelope xmlns:S="{SOAP11}" xmlns:m="{TNS}"><S:Body><m:SendMessage>'
        f"<m:Message><m:Attachments>{attachments}</m:Attachments></m:Message>"
        "</m:SendMessage></S:Body></S:Envelope>"
    )


def include(cid: str) -> str:
    return f'<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:{cid}"/>'


def multipart(root: str, parts: dict[str, bytes], *, root_type: str | None = None) -> bytes:
    out = io.BytesIO()
    out.write(f"--{BOUNDARY}\r\nContent-Id: <root@test>\r\n".encode())
    kind = root_type or 'application/xop+xml;charset=utf-8;type="text/xml"'
    out.write(f"Content-Type: {kind}\r\nContent-Transfer-Encoding: binary\r\n\r\n".encode())
    out.write(root.encode())
    for cid, content in parts.items():
        out.write(f"\r\n--{BOUNDARY}\r\nContent-Id: <{cid}>\r\n".encode())
        out.write(
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        )
        out.write(content)
    out.write(f"\r\n--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def environ(body: bytes, content_type: str = MTOM_TYPE, *, chunked: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"wsgi.input": io.BytesIO(body), "CONTENT_TYPE": content_type}
    if not chunked:
        result["CONTENT_LENGTH"] = str(len(body))
    return result


def contents(body: bytes, **options: Any) -> list[bytes]:
    """The attachment contents the codec reads from the request."""
    from soap_service.soap.application import SoapEndpoint

    guarded = read_envelope(environ(body, **options), LIMITS)
    assert guarded.mtom
    endpoint = SoapEndpoint("https://localhost/soap/v1")
    methods = endpoint.application.interface.service_method_map
    wrapper = methods[f"{{{TNS}}}SendMessage"][0].in_message
    operation = guarded.envelope.find(f"{{{SOAP11}}}Body")[0]
    [message] = Codec(TNS).read_arguments(wrapper, operation, binary_parts=guarded.binary_parts)
    return [attachment.Content for attachment in message.Attachments.Attachment]


def test_parts_take_the_place_of_their_includes_byte_for_byte() -> None:
    first, second = os.urandom(1000), b"%PDF\r\n--uuid:4f1c-not-the-boundary\r\n" + os.urandom(99)
    body = multipart(soap([include("a@test"), include("b%40x")]), {"a@test": first, "b@x": second})
    assert contents(body) == [first, second]


def test_inline_base64_and_mtom_mix() -> None:
    body = multipart(soap(["QUJD", include("a@test")]), {"a@test": b"xyz"})
    assert contents(body) == [b"ABC", b"xyz"]


def test_a_chunked_mtom_request_is_read_within_the_limit() -> None:
    body = multipart(soap([include("a@test")]), {"a@test": b"1234"})
    assert contents(body, chunked=True) == [b"1234"]


@pytest.mark.parametrize(
    ("root", "parts", "message"),
    [
        (soap([include("missing@test")]), {}, "refers to a part that is not in the request"),
        (soap([include("a@test"), include("a@test")]), {"a@test": b"x"}, "or again"),
        (soap([f"QUJD{include('a@test')}"]), {"a@test": b"x"}, "may only stand alone"),
        (
            soap(["x"]).replace("<m:FileName>f0.pdf", f"<m:FileName>{include('a@test')}"),
            {"a@test": b"x"},
            "may only stand alone",
        ),
        (
            soap(
                [
                    '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="http://x/"/>'
                ]
            ),
            {},
            "by cid:",
        ),
    ],
)
def test_includes_that_do_not_fit_are_refused(
    root: str, parts: dict[str, bytes], message: str
) -> None:
    with pytest.raises(MalformedRequest, match=message):
        read_envelope(environ(multipart(root, parts)), LIMITS)


def test_mtom_parts_count_against_the_attachment_limit() -> None:
    body = multipart(soap(["QUJD", include("a@test")]), {"a@test": b"x" * (4096 - 2)})
    with pytest.raises(MessageTooLarge, match="4097 bytes or more"):
        read_envelope(environ(body), LIMITS)
    exact = multipart(soap(["QUJD", include("a@test")]), {"a@test": b"x" * (4096 - 3)})
    assert [len(c) for c in contents(exact)] == [3, 4093]


def test_a_doctype_in_the_root_part_is_refused() -> None:
    root = soap([], prolog='<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]>')
    with pytest.raises(ForbiddenXml):
        read_envelope(environ(multipart(root, {})), LIMITS)


@pytest.mark.parametrize(
    ("content_type", "error"),
    [
        (f'multipart/related;boundary="{BOUNDARY}"', UnsupportedMediaType),
        (
            f'multipart/related;type="application/xop+xml";boundary="{BOUNDARY}";start-info="application/soap+xml"',
            VersionMismatch,
        ),
        ('multipart/related;type="application/xop+xml"', MalformedRequest),
    ],
)
def test_multipart_headers_that_are_not_soap_11_mtom(content_type: str, error: type) -> None:
    body = multipart(soap([]), {})
    with pytest.raises(error):
        read_envelope(environ(body, content_type), LIMITS)


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary anywhere",
        f"--{BOUNDARY}\r\nContent-Id: <root@test>".encode(),  # headers never end
        f"--{BOUNDARY}\r\nContent-Id: <root@test>\r\n\r\n<x/>".encode(),  # no closing line
    ],
)
def test_broken_multipart_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        read_envelope(environ(body), LIMITS)


def test_a_root_part_that_is_not_xop_is_refused() -> None:
    body = multipart(soap([]), {}, root_type="text/xml")
    with pytest.raises(UnsupportedMediaType, match="root part must be application/xop"):
        read_envelope(environ(body), LIMITS)


def test_an_oversized_multipart_body_is_cut_off_while_read() -> None:
    body = multipart(soap([include("a@test")]), {"a@test": b"x" * (2**20 + 1)})
    stream = environ(body, chunked=True)
    with pytest.raises(MessageTooLarge):
        read_envelope(stream, LIMITS)
    assert stream["wsgi.input"].tell() <= 2**20 + 256 * 1024


@pytest.mark.parametrize(
    "root_type",
    [
        "application/xop+xml;charset*=utf-8''utf-8;type=\"text/xml\"",
        'application/xop+xml;charset="utf\x00-8";type="text/xml"',
    ],
    ids=["rfc2231 charset", "NUL in the charset"],
)
def test_unreadable_root_part_headers_are_the_clients_mistake(root_type: str) -> None:
    body = multipart(soap([include("a@test")]), {"a@test": b"x"}, root_type=root_type)
    with pytest.raises((MalformedRequest, UnsupportedMediaType)):
        read_envelope(environ(body), LIMITS)


def test_many_attachments_after_a_large_one_cost_one_pass_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the estimate, each attachment's exact size is counted once: 300 elements after
    a large one cost 301 counts, not a recount of all before them each time (45,000)."""
    from soap_service.web import envelope

    counted: list[int] = []
    real = envelope._decoded_size
    monkeypatch.setattr(envelope, "_decoded_size", lambda text: counted.append(1) or real(text))
    limits = GuardLimits(
        max_request_bytes=2**20, max_binary_bytes=3500, binary_tags=LIMITS.binary_tags
    )
    big = "QUJD\n" * 1000  # wrapped base64: the estimate overshoots, the exact size fits
    body = soap([big, *[""] * 300]).encode()
    plain = {
        "wsgi.input": io.BytesIO(body),
        "CONTENT_TYPE": "text/xml",
        "CONTENT_LENGTH": str(len(body)),
    }
    assert not read_envelope(plain, limits).mtom
    assert len(counted) == 301
