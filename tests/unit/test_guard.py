"""read_envelope: size limits, forbidden XML and the SOAP 1.1 envelope, on a fake WSGI environ."""

from __future__ import annotations

import base64
import gc
import io
from typing import Any

import pytest
from lxml import etree

from soap_service.errors import (
    ForbiddenXml,
    MalformedRequest,
    MessageTooLarge,
    UnsupportedMediaType,
    ValidationError,
    VersionMismatch,
)
from soap_service.soap.application import SoapEndpoint
from soap_service.web.guard import GuardLimits, declared_length, read_envelope

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TNS = "urn:soap-service:messaging:v1"
LIMIT = 1024 * 1024
LIMITS = GuardLimits(max_request_bytes=LIMIT, max_binary_bytes=LIMIT)
XML_CONTENT_TYPE = "text/xml; charset=utf-8"


def envelope(body: str = "<m:GetStatus><m:MessageId>x</m:MessageId></m:GetStatus>") -> str:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:m="{TNS}">'
        f"<soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )


VALID = envelope().encode()
XXE = '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + envelope(
    "<m:GetStatus><m:MessageId>&xxe;</m:MessageId></m:GetStatus>"
)
BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    + "]>"
    + envelope("<m:GetStatus><m:MessageId>&lol9;</m:MessageId></m:GetStatus>")
)


def environ(
    body: bytes, *, content_type: str | None = XML_CONTENT_TYPE, chunked: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {"wsgi.input": io.BytesIO(body)}
    if content_type is not None:
        result["CONTENT_TYPE"] = content_type
    if not chunked:
        result["CONTENT_LENGTH"] = str(len(body))
    return result


def read(body: bytes, **options: Any) -> etree._Element:
    return read_envelope(environ(body, **options), LIMITS).envelope


# A valid envelope.


@pytest.mark.parametrize("chunked", [False, True])
def test_a_valid_envelope_is_returned(chunked: bool) -> None:
    root = read(VALID, chunked=chunked)
    assert root.tag == f"{{{SOAP11}}}Envelope"
    operation = root.find(f"{{{SOAP11}}}Body")[0]  # type: ignore[index]
    assert operation.tag == f"{{{TNS}}}GetStatus"
    assert operation.findtext(f"{{{TNS}}}MessageId") == "x"


def test_an_envelope_without_header_with_declaration_and_comments_is_accepted() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- from the payroll system -->\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body>\n'
        f'  <m:GetStatus xmlns:m="{TNS}"/>\n</soapenv:Body></soapenv:Envelope>'
    ).encode()
    assert read(body).tag == f"{{{SOAP11}}}Envelope"


def test_bytes_beyond_the_content_length_are_not_read() -> None:
    request = environ(VALID + b"<trailing garbage")
    request["CONTENT_LENGTH"] = str(len(VALID))
    assert read_envelope(request, LIMITS).envelope.tag == f"{{{SOAP11}}}Envelope"
    assert request["wsgi.input"].tell() == len(VALID)


def test_a_latin1_request_is_decoded_by_its_charset() -> None:
    body = envelope("<m:GetStatus><m:Reference>Zürich</m:Reference></m:GetStatus>")
    root = read(body.encode("latin-1"), content_type="text/xml; charset=ISO-8859-1")
    assert root.findtext(f".//{{{TNS}}}Reference") == "Zürich"


def test_a_text_node_over_libxml2s_10_mb_default_parses() -> None:
    big = "QUJD" * (3 * 1024 * 1024)  # 12 MiB of base64 in one text node
    body = envelope(f"<m:SendMessage><m:Content>{big}</m:Content></m:SendMessage>").encode()
    root = read_envelope(
        environ(body), GuardLimits(max_request_bytes=16 * 2**20, max_binary_bytes=16 * 2**20)
    ).envelope
    assert len(root.findtext(f".//{{{TNS}}}Content") or "") == 12 * 1024 * 1024


# Empty and broken bodies.


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("body", [b"", b" \r\n\t "])
def test_an_empty_or_blank_body_is_refused(body: bytes, chunked: bool) -> None:
    with pytest.raises(MalformedRequest, match=r"^the request body is empty$"):
        read(body, chunked=chunked)


@pytest.mark.parametrize(
    "body",
    [b"hello", b"{}", b"<unclosed>", VALID[:-5], b"<a></b>"],
)
def test_a_body_that_is_not_xml_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedRequest, match=r"^the request is not well-formed XML \(line 1"):
        read(body)


def test_a_well_formed_document_that_is_no_envelope_is_refused() -> None:
    with pytest.raises(MalformedRequest, match=r"^the request is not a SOAP 1.1 Envelope$"):
        read(b"<Envelope><Body><op/></Body></Envelope>")


def test_the_not_well_formed_message_does_not_quote_the_request() -> None:
    with pytest.raises(MalformedRequest) as caught:
        read(b"<secret-payslip-data")
    assert "secret" not in caught.value.message


# Forbidden XML.


def test_an_external_entity_is_forbidden() -> None:
    with pytest.raises(ForbiddenXml, match=r"^DOCTYPE and entity declarations are not allowed$"):
        read(XXE.encode())


@pytest.mark.parametrize("chunked", [False, True])
def test_billion_laughs_is_forbidden_before_parsing(chunked: bool) -> None:
    with pytest.raises(ForbiddenXml, match=r"^DOCTYPE and entity declarations are not allowed$"):
        read(BILLION_LAUGHS.encode(), chunked=chunked)


# Processing instructions filling exactly the first block read (256 KiB).
PIS_FILLING_THE_FIRST_BLOCK = "<?pi  ?>" * (256 * 1024 // 8)
PRE_PARSE_REFUSAL = "^DOCTYPE and entity declarations are not allowed$"


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param('<?xml version="1.0" encoding="UTF-8"?>', id="declaration"),
        pytest.param("<?some-pi data?>\n", id="pi"),
        pytest.param(" \r\n\t", id="whitespace"),
        pytest.param("\ufeff<?xml version='1.0'?>", id="utf8-bom"),
        pytest.param("<!-- a comment -->", id="comment"),
        pytest.param('<?xml version="1.0"?>\n<!-- c -->\n', id="declaration-comment"),
        # The prolog is read in growing windows (1 KiB, 8 KiB ...): across their edges.
        pytest.param("<!--" + "x" * 3000 + "-->", id="comment-over-the-first-window"),
        pytest.param(" " * 1018 + "<!-- c -->", id="comment-cut-by-the-window"),
        pytest.param(" " * 1019 + "<?pi?>", id="pi-cut-by-the-window"),
        pytest.param("<?pi  ?>" * 2000, id="pis-over-three-windows"),
        pytest.param("\ufeff<!--" + "\u00e9" * 600 + "-->", id="utf8-bom-multibyte-comment"),
    ],
)
def test_a_doctype_after_the_prolog_is_refused_before_parsing(prefix: str) -> None:
    with pytest.raises(ForbiddenXml, match=PRE_PARSE_REFUSAL):
        read((prefix + XXE).encode())


@pytest.mark.parametrize("spaces", [1017, 1018, 1019, 1020, 1021, 8189])
def test_a_comment_cut_by_a_prolog_window_is_a_comment(spaces: int) -> None:
    # The window ends inside "<!--": that is not a DOCTYPE's "<!".
    root = read((" " * spaces + "<!-- c -->").encode() + VALID)
    assert root.tag == f"{{{SOAP11}}}Envelope"


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("<!-- a comment -->", id="comment"),
        pytest.param("\ufeff", id="utf8-bom"),
    ],
)
def test_an_external_entity_is_forbidden_wherever_the_doctype_is(prefix: str) -> None:
    # Whatever the prolog check misses, the parser resolves nothing and its DTD is refused.
    with pytest.raises(ForbiddenXml, match=r"DOCTYPE"):
        read((prefix + XXE).encode())


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param('<?xml version="1.0"?>', id="declaration"),
        pytest.param("<!-- a comment -->", id="comment"),
        pytest.param("\ufeff", id="utf8-bom"),
    ],
)
def test_billion_laughs_after_the_prolog_is_forbidden(prefix: str) -> None:
    with pytest.raises(ForbiddenXml, match=PRE_PARSE_REFUSAL):
        read((prefix + BILLION_LAUGHS).encode())


@pytest.mark.parametrize(
    "encoding",
    [
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        pytest.param("utf-32-le"),
    ],
)
def test_a_doctype_in_utf16_or_utf32_is_forbidden(encoding: str) -> None:
    body = ('<?xml version="1.0" encoding="UTF-16"?>' + BILLION_LAUGHS).encode(encoding)
    with pytest.raises(ForbiddenXml, match=PRE_PARSE_REFUSAL):
        read(body, content_type="text/xml")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-be"])
def test_a_doctype_after_a_long_utf16_or_utf32_prolog_is_forbidden(encoding: str) -> None:
    prolog = '<?xml version="1.0"?>' + "<!--" + "x" * 700 + "-->" + " " * 300
    body = (prolog + BILLION_LAUGHS).encode(encoding)
    with pytest.raises(ForbiddenXml, match=PRE_PARSE_REFUSAL):
        read(body, content_type="text/xml")


def test_a_prolog_filling_the_first_block_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedRequest, match=r"^the XML prolog is too long$"):
        read((PIS_FILLING_THE_FIRST_BLOCK + BILLION_LAUGHS).encode())


def test_an_unterminated_prolog_over_the_first_block_is_refused() -> None:
    body = b"<!--" + b"x" * (300 * 1024) + b"-->" + VALID
    with pytest.raises(MalformedRequest, match=r"^the XML prolog is too long$"):
        read(body)


# Sizes and Content-Length.


def test_a_content_length_over_the_limit_is_refused_without_reading() -> None:
    request = environ(b"<x/>")
    request["CONTENT_LENGTH"] = str(LIMIT + 1)
    with pytest.raises(MessageTooLarge, match=f"^the request is larger than {LIMIT} bytes"):
        read_envelope(request, LIMITS)
    assert request["wsgi.input"].tell() == 0


def test_a_chunked_body_over_the_limit_is_refused() -> None:
    padding = b" " * (LIMIT + 1 - len(VALID))
    request = environ(VALID + padding, chunked=True)
    with pytest.raises(MessageTooLarge, match=f"^the request is larger than {LIMIT} bytes"):
        read_envelope(request, LIMITS)


def test_a_chunked_body_of_exactly_the_limit_is_accepted() -> None:
    padding = b" " * (LIMIT - len(VALID))
    assert read(VALID + padding, chunked=True).tag == f"{{{SOAP11}}}Envelope"


def test_a_body_longer_than_its_content_length_is_cut_at_the_limit() -> None:
    # The stream holds more than declared: only the declared bytes are read.
    request = environ(VALID + b" " * (2 * LIMIT))
    request["CONTENT_LENGTH"] = str(len(VALID))
    assert read_envelope(request, LIMITS).envelope.tag == f"{{{SOAP11}}}Envelope"


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "0x10", "12 34", "1_000"])
def test_a_content_length_that_is_not_a_number_is_refused(value: str) -> None:
    request = environ(VALID)
    request["CONTENT_LENGTH"] = value
    with pytest.raises(MalformedRequest, match=r"^the Content-Length header is not a number$"):
        read_envelope(request, LIMITS)


def test_a_content_length_with_a_superscript_digit_is_refused() -> None:
    with pytest.raises(MalformedRequest, match=r"not a number"):
        declared_length({"CONTENT_LENGTH": "\u00b2"})


def test_a_body_shorter_than_its_content_length_is_refused() -> None:
    request = environ(VALID)
    request["CONTENT_LENGTH"] = str(len(VALID) + 10)
    with pytest.raises(MalformedRequest, match=r"^the request body is shorter than its Content"):
        read_envelope(request, LIMITS)


def test_declared_length() -> None:
    assert declared_length({}) is None
    assert declared_length({"CONTENT_LENGTH": ""}) is None
    assert declared_length({"CONTENT_LENGTH": " 42 "}) == 42


# Media types and SOAP versions.


def test_a_soap_12_envelope_is_a_version_mismatch() -> None:
    body = f'<env:Envelope xmlns:env="{SOAP12}"><env:Body><op/></env:Body></env:Envelope>'
    with pytest.raises(VersionMismatch, match=r"^SOAP 1.2 envelopes are not supported") as caught:
        read(body.encode())
    assert caught.value.code == "VersionMismatch"


@pytest.mark.parametrize(
    "content_type", ["application/soap+xml", 'application/soap+xml; charset=utf-8; action="x"']
)
def test_the_soap_12_media_type_is_a_version_mismatch(content_type: str) -> None:
    with pytest.raises(VersionMismatch, match=r"^SOAP 1.2 is not supported"):
        read(VALID, content_type=content_type)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/xml", "text/plain", "", None]
)
def test_other_media_types_are_refused(content_type: str | None) -> None:
    with pytest.raises(
        UnsupportedMediaType, match=r"must have Content-Type text/xml \(or multipart"
    ):
        read(VALID, content_type=content_type)


@pytest.mark.parametrize("content_type", ["TEXT/XML", "text/xml", 'text/xml; charset="UTF-8"'])
def test_text_xml_in_any_spelling_is_accepted(content_type: str) -> None:
    assert read(VALID, content_type=content_type).tag == f"{{{SOAP11}}}Envelope"


def test_an_unknown_charset_is_refused() -> None:
    with pytest.raises(UnsupportedMediaType, match=r"^the charset of the Content-Type"):
        read(VALID, content_type="text/xml; charset=klingon")


# The envelope's structure.


def test_an_empty_body_is_refused() -> None:
    with pytest.raises(MalformedRequest, match=r"^the SOAP Body is empty"):
        read(envelope("").encode())


def test_a_body_with_only_a_comment_is_empty() -> None:
    with pytest.raises(MalformedRequest, match=r"^the SOAP Body is empty"):
        read(envelope("<!-- nothing -->").encode())


def test_two_operations_are_refused() -> None:
    body = envelope("<m:GetStatus/><m:GetStatus/>").encode()
    with pytest.raises(MalformedRequest, match=r"^the SOAP Body must hold exactly one operation"):
        read(body)


def test_text_beside_the_operation_is_refused() -> None:
    with pytest.raises(MalformedRequest, match=r"^the SOAP Body must hold only the operation"):
        read(envelope("text<m:GetStatus/>").encode())
    with pytest.raises(MalformedRequest, match=r"^the SOAP Body must hold only the operation"):
        read(envelope("<m:GetStatus/>tail").encode())


@pytest.mark.parametrize(
    "children",
    [
        "<soapenv:Body><m:GetStatus/></soapenv:Body><soapenv:Header/>",
        "<soapenv:Header/>",
        "<soapenv:Body><m:GetStatus/></soapenv:Body><soapenv:Body><m:GetStatus/></soapenv:Body>",
        "<Body><m:GetStatus/></Body>",
        "<soapenv:Body><m:GetStatus/></soapenv:Body><m:Extra/>",
    ],
)
def test_the_envelope_holds_an_optional_header_and_one_body(children: str) -> None:
    body = (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:m="{TNS}">{children}</soapenv:Envelope>'
    )
    with pytest.raises(MalformedRequest, match=r"^the Envelope must hold an optional Header"):
        read(body.encode())


# Bounds on the tree, checked while it is read.

BIG = 64 * 2**20
GENEROUS = GuardLimits(max_request_bytes=BIG, max_binary_bytes=BIG)


def read_with(body: bytes, limits: GuardLimits) -> tuple[etree._Element | None, int]:
    """Parse; returns the root (or raises) and how far the stream was read."""
    request = environ(body)
    return read_envelope(request, limits).envelope, request["wsgi.input"].tell()


def test_a_flood_of_elements_is_refused_before_the_body_is_read() -> None:
    flood = envelope("<m:GetStatus>" + "<a/>" * 2_000_000 + "</m:GetStatus>").encode()
    request = environ(flood)
    with pytest.raises(MalformedRequest, match=r"^the request has more than 50000 elements$"):
        read_envelope(request, GENEROUS)
    assert request["wsgi.input"].tell() < len(flood) // 4  # stopped early, not at the end


def test_deep_nesting_is_refused() -> None:
    deep = envelope("<m:GetStatus>" + "<a>" * 100 + "</a>" * 100 + "</m:GetStatus>").encode()
    with pytest.raises(MalformedRequest, match=r"^the request nests deeper than 64 levels$"):
        read(deep)


def test_an_element_with_too_many_attributes_is_refused() -> None:
    attributes = " ".join(f'a{n}="1"' for n in range(100))
    crowded = envelope(f"<m:GetStatus {attributes}/>").encode()
    with pytest.raises(MalformedRequest, match=r"^an element has more than 64 attributes$"):
        read(crowded)


def test_attachment_bytes_are_added_up_as_each_attachment_completes() -> None:
    limits = GuardLimits(
        max_request_bytes=BIG, max_binary_bytes=3000, binary_tags=frozenset({f"{{{TNS}}}Content"})
    )
    chunk = base64.b64encode(b"x" * 1000).decode()
    body = envelope(
        "<m:SendMessage>"
        + "".join(f"<m:Content>{chunk}</m:Content>" for _ in range(3))
        + "<m:Content>AA==</m:Content>"  # one more byte: 3001
        + "<m:Other>"
        + "y" * 2_000_000
        + "</m:Other></m:SendMessage>"
    ).encode()
    request = environ(body)
    with pytest.raises(MessageTooLarge, match=r"^the attachments are 3001 bytes or more in total"):
        read_envelope(request, limits)
    assert request["wsgi.input"].tell() < len(body) // 2

    exactly = body.replace(b"<m:Content>AA==</m:Content>", b"")
    assert read_with(exactly, limits)[0] is not None


@pytest.mark.parametrize("charset", ["UTF-16LE", "utf-16le"])
def test_a_utf16_body_with_its_iana_charset_is_read(charset: str) -> None:
    body = envelope().encode("utf-16-le")
    assert read(body, content_type=f"text/xml; charset={charset}").tag == f"{{{SOAP11}}}Envelope"


@pytest.mark.parametrize("charset", ["cp437", "x-unknown-7"])
def test_a_charset_the_parser_does_not_know_is_unsupported(charset: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        read(VALID, content_type=f"text/xml; charset={charset}")


@pytest.mark.parametrize("namespaced", [False, True])
def test_a_hundred_thousand_attributes_are_refused_at_the_element(namespaced: bool) -> None:
    if namespaced:  # each with its own namespace declaration: the costly kind for a parser
        attributes = " ".join(f'xmlns:p{n}="urn:{n}" p{n}:a="1"' for n in range(50_000))
    else:
        attributes = " ".join(f'a{n}="1"' for n in range(100_000))
    crowded = envelope(f"<m:GetStatus {attributes}/>").encode()
    limits = GuardLimits(max_request_bytes=8 * LIMIT, max_binary_bytes=LIMIT)
    with pytest.raises(MalformedRequest, match=r"more than 64 attributes$"):
        read_envelope(environ(crowded), limits)


@pytest.mark.parametrize(
    ("body", "charset"),
    [
        (
            envelope("<m:GetStatus><m:MessageId>Zürich</m:MessageId></m:GetStatus>").encode(
                "latin-1"
            ),
            "utf-8",
        ),
        (VALID, "utf-16"),
        (envelope().encode("utf-16-le"), "utf-8"),
    ],
    ids=["latin-1 said utf-8", "utf-8 said utf-16", "utf-16 said utf-8"],
)
def test_a_charset_that_lies_about_the_bytes_is_malformed(body: bytes, charset: str) -> None:
    with pytest.raises(MalformedRequest, match=r"^the request is not well-formed XML"):
        read(body, content_type=f"text/xml; charset={charset}")


def test_an_rfc2231_charset_parameter_is_unsupported_not_an_error() -> None:
    with pytest.raises(UnsupportedMediaType, match="charset"):
        read(VALID, content_type="text/xml; charset*=utf-8''utf-8")


# What the markup may cost, counted before the parser sees it (markup.py), and what each
# operation may hold.

# The service's own operations, as the published schema bounds them.
ENDPOINT = SoapEndpoint("https://localhost/soap/v1")
OPERATION_ELEMENTS = ENDPOINT.operation_elements
PRODUCTION = GuardLimits.for_operations(
    max_request_bytes=56 * 2**20,
    max_binary_bytes=30 * 2**20,
    binary_tags=frozenset({f"{{{TNS}}}Content"}),
    operation_elements=OPERATION_ELEMENTS,
    operation_children=ENDPOINT.operation_children,
)


def test_a_flood_of_namespace_declarations_never_reaches_the_parser() -> None:
    declarations = b"".join(b' xmlns:p%d="u"' % n for n in range(1_500_000))
    flood = f'<soapenv:Envelope xmlns:soapenv="{SOAP11}"'.encode() + declarations + b"/>"
    request = environ(flood)
    with pytest.raises(MalformedRequest, match=r"^an element declares more than 32 namespaces$"):
        read_envelope(request, PRODUCTION)
    assert request["wsgi.input"].tell() <= 2 * 256 * 1024  # a block or two, of 26 MiB


def test_namespace_declarations_are_bounded_per_request() -> None:
    declared = "".join(f'<m:Reference xmlns:p{n}="urn:{n}"/>' for n in range(129))
    body = envelope(f"<m:GetStatus>{declared}</m:GetStatus>").encode()
    with pytest.raises(MalformedRequest, match=r"^the request declares more than 128 namespaces$"):
        read_envelope(environ(body), GENEROUS)


def test_the_header_holds_at_most_64_elements() -> None:
    def with_header(elements: int) -> bytes:
        header = "<h>" + "<a/>" * (elements - 1) + "</h>"
        return envelope().replace("<soapenv:Header/>", f"<soapenv:Header>{header}</soapenv:Header>")

    assert read_with(with_header(64).encode(), GENEROUS)[0] is not None
    with pytest.raises(MalformedRequest, match=r"^the SOAP Header has more than 64 elements$"):
        read_with(with_header(65).encode(), GENEROUS)


def test_an_operation_holds_at_most_what_a_valid_request_of_it_may() -> None:
    assert read_with(VALID, PRODUCTION)[0] is not None  # GetStatus and its MessageId
    crowded = envelope("<m:GetStatus><m:MessageId><a/><b/></m:MessageId></m:GetStatus>")
    with pytest.raises(MalformedRequest, match=r"may hold \(3\)$"):
        read_with(crowded.encode(), PRODUCTION)


def test_a_batch_is_refused_at_its_101st_entry_before_the_rest_is_parsed() -> None:
    assert ENDPOINT.operation_children[f"{{{TNS}}}SendMessages"] == (100, "Message elements")
    assert ENDPOINT.operation_children[f"{{{TNS}}}GetStatus"] == (2, "child elements")
    hundred = envelope("<m:SendMessages>" + "<m:Message/>" * 100 + "</m:SendMessages>")
    assert read_with(hundred.encode(), PRODUCTION)[0] is not None  # the schema judges them
    # Empty entries: 31,000 of them fit the element bound of 100 entries of 310.
    flood = envelope("<m:SendMessages>" + "<m:Message/>" * 31_000 + "</m:SendMessages>").encode()
    request = environ(flood)
    with pytest.raises(
        ValidationError, match=r"^SendMessages: at most 100 Message elements are allowed$"
    ):
        read_envelope(request, PRODUCTION)
    assert request["wsgi.input"].tell() <= 256 * 1024 < len(flood)
    crowded = envelope(
        "<m:GetStatus><m:MessageId>x</m:MessageId>" + "<m:X/>" * 2 + "</m:GetStatus>"
    )
    with pytest.raises(ValidationError, match=r"^GetStatus: at most 2 child elements are allowed$"):
        read_with(crowded.encode(), PRODUCTION)


def test_a_refused_request_leaves_nothing_for_the_cycle_collector() -> None:
    # lxml's pull parser and its unread events form a reference cycle: the guard reads them
    # out when it refuses, or the parsed part of the request would stay in memory.
    flood = envelope("<m:SendMessages>" + "<m:Message/>" * 31_000 + "</m:SendMessages>").encode()
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            try:
                read_envelope(environ(flood), PRODUCTION)
            except ValidationError as error:
                assert "at most 100" in str(error)
            else:
                raise AssertionError("the flood was not refused")
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable < 100  # unread: 24,000 (8,000 a request)


def test_no_request_holds_more_elements_than_the_envelope_header_and_largest_operation() -> None:
    # The largest is SendMessages: 100 messages of at most 310 elements each (SendMessage,
    # one message, holds 311: its own element and the message's).
    assert OPERATION_ELEMENTS[f"{{{TNS}}}SendMessage"] == 311
    assert OPERATION_ELEMENTS[f"{{{TNS}}}GetStatus"] == 3
    assert PRODUCTION.max_elements == 3 + 64 + 1 + 100 * 310
    flood = envelope("<m:Unknown>" + "<a/>" * 100_000 + "</m:Unknown>").encode()
    request = environ(flood)
    with pytest.raises(MalformedRequest, match=r"^the request has more than 31068 elements$"):
        read_envelope(request, PRODUCTION)
    assert request["wsgi.input"].tell() <= 256 * 1024


# Encodings: whatever the request comes in, the parser reads UTF-8 (what the scan saw).


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [
        ("utf-16", "text/xml"),  # with a BOM, no charset
        ("utf-16-le", "text/xml; charset=UTF-16LE"),
        ("utf-32", "text/xml"),
        ("utf-8-sig", "text/xml"),
    ],
)
def test_unicode_bodies_are_read_as_they_come(encoding: str, content_type: str) -> None:
    body = envelope("<m:GetStatus><m:Reference>Zürich</m:Reference></m:GetStatus>")
    root = read(body.encode(encoding), content_type=content_type)
    assert root.findtext(f".//{{{TNS}}}Reference") == "Zürich"


def test_the_xml_declaration_names_the_encoding_when_the_content_type_does_not() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?>' + envelope(
        "<m:GetStatus><m:Reference>Zürich</m:Reference></m:GetStatus>"
    )
    root = read(body.encode("latin-1"), content_type="text/xml")
    assert root.findtext(f".//{{{TNS}}}Reference") == "Zürich"


@pytest.mark.parametrize("content_type", ["text/xml; charset=KOI8-R", "text/xml"])
def test_an_encoding_outside_the_supported_few_is_unsupported(content_type: str) -> None:
    body = '<?xml version="1.0" encoding="KOI8-R"?>' + envelope()
    with pytest.raises(UnsupportedMediaType, match="not supported"):
        read(body.encode("koi8-r"), content_type=content_type)


def test_markup_only_another_encoding_would_reveal_is_never_parsed() -> None:
    # In UTF-7, "+ADw-" is "<": a parser that believed the declaration would see markup
    # the scan did not count. Declared alone, UTF-7 is not supported; under a UTF-8
    # Content-Type the parser reads UTF-8, where it is text.
    hidden = envelope().replace("<", "+ADw-").replace(">", "+AD4-")
    body = f'<?xml version="1.0" encoding="UTF-7"?>{hidden}'.encode()
    with pytest.raises(UnsupportedMediaType, match="UTF-7"):
        read(body, content_type="text/xml")
    with pytest.raises(MalformedRequest, match="not well-formed"):
        read(body, content_type="text/xml; charset=utf-8")


def test_the_largest_valid_send_message_passes_the_guard_inline_and_as_mtom() -> None:
    from soap_service.soap.application import SoapEndpoint

    endpoint = SoapEndpoint("https://localhost/soap/v1")
    limits = GuardLimits.for_operations(
        max_request_bytes=56 * 2**20,
        max_binary_bytes=30 * 2**20,
        binary_tags=endpoint.schema.binary_tags,
        operation_elements=endpoint.operation_elements,
    )
    recipients = "".join(
        f"<m:Recipient><m:Address>a{n}@example.ch</m:Address></m:Recipient>" for n in range(100)
    )
    xop = 'xmlns:xop="http://www.w3.org/2004/08/xop/include"'

    def attachments(content: str) -> str:
        return "".join(
            f"<m:Attachment><m:FileName>f{n}.pdf</m:FileName>"
            f"<m:ContentType>application/pdf</m:ContentType><m:Content>{content}</m:Content>"
            "</m:Attachment>"
            for n in range(20)
        )

    for content in ("JVBERi0=", f'<xop:Include {xop} href="cid:part"/>'):
        message = (
            "<m:SendMessage><m:Message><m:Reference>r</m:Reference><m:Type>registered</m:Type>"
            f"<m:Recipients>{recipients}</m:Recipients><m:Subject>s</m:Subject>"
            "<m:TextBody>t</m:TextBody><m:HtmlBody>h</m:HtmlBody>"
            f"<m:Attachments>{attachments(content)}</m:Attachments>"
            "<m:Language>de</m:Language><m:ExpiryDays>7</m:ExpiryDays></m:Message></m:SendMessage>"
        )
        root = read_with(envelope(message).encode(), limits)[0]
        assert root is not None
        assert endpoint.schema.schema.validate(root.find(f"{{{SOAP11}}}Body")[0]) == (
            "Include" not in content
        )
