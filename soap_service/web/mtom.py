"""MTOM/XOP requests: a multipart/related body whose root part is the SOAP envelope and
whose attachment elements say <xop:Include href="cid:..."/> instead of holding base64.

As JAX-WS with MTOM enabled sends them (the root part starts with an XML declaration).
The whole body is read within the request limit; the root part goes through the same
guarded parser as a plain request; each Include is taken out of its element and the
referenced part's bytes kept beside the envelope by the element's path, for the codec.
The decoded attachments of a request count against one limit, inline or MTOM.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any
from urllib.parse import unquote

from soap_service.errors import (
    MalformedRequest,
    MessageTooLarge,
    UnsupportedMediaType,
    VersionMismatch,
)
from soap_service.web.envelope import (
    BLOCK_BYTES,
    GuardedRequest,
    GuardLimits,
    check_binary_total,
    parse_envelope,
    too_large,
)

XOP_INCLUDE = "{http://www.w3.org/2004/08/xop/include}Include"
MAX_PARTS = 64
MAX_HEADER_BYTES = 8192


class _Part:
    def __init__(self, headers: Message, content: memoryview) -> None:
        self.headers = headers
        self.content = content

    @property
    def content_id(self) -> str | None:
        value = self.headers.get("content-id")
        return str(value).strip().strip("<>") if value else None


def read_mtom(
    environ: Mapping[str, Any], length: int | None, limits: GuardLimits
) -> GuardedRequest:
    try:
        return _read_mtom(environ, length, limits)
    except (ValueError, TypeError, UnicodeError, LookupError):
        # Headers the email package cannot take (NUL bytes, RFC 2231 oddities): the
        # client's mistake, answered as such.
        raise MalformedRequest("the multipart request has headers that cannot be read") from None


def _read_mtom(
    environ: Mapping[str, Any], length: int | None, limits: GuardLimits
) -> GuardedRequest:
    header = Message()
    header["content-type"] = environ.get("CONTENT_TYPE", "")
    if str(header.get_param("type") or "").lower() != "application/xop+xml":
        raise UnsupportedMediaType(
            'a multipart request must be MTOM: multipart/related; type="application/xop+xml"'
        )
    start_info = str(header.get_param("start-info") or "text/xml").split(";")[0].strip().lower()
    if start_info == "application/soap+xml":
        raise VersionMismatch("SOAP 1.2 is not supported: send SOAP 1.1 (start-info text/xml)")
    boundary = header.get_param("boundary")
    if not boundary or not isinstance(boundary, str) or len(boundary) > 200:
        raise MalformedRequest("the multipart request has no usable boundary")
    body = _read_body(environ["wsgi.input"], length, limits.max_request_bytes)
    parts = _split(body, boundary.encode("latin-1"))
    start = header.get_param("start")
    root = _root_part(parts, str(start).strip("<>") if start else None)

    root_type = Message()
    root_type["content-type"] = root.headers.get("content-type", "")
    if root_type.get_content_type() != "application/xop+xml":
        raise UnsupportedMediaType("the MTOM root part must be application/xop+xml")
    envelope, inline_size = parse_envelope(
        io.BytesIO(bytes(root.content)), len(root.content), root_type.get_param("charset"), limits
    )

    by_id = {part.content_id: part for part in parts if part is not root and part.content_id}
    found: dict[str, bytes] = {}
    total = inline_size()  # inline base64 beside the parts (usually none)
    for include in list(envelope.iter(XOP_INCLUDE)):
        element = include.getparent()
        if (
            element is None
            or element.tag not in limits.binary_tags
            or len(element) != 1
            or (element.text or "").strip()
            or (include.tail or "").strip()
        ):
            raise MalformedRequest("xop:Include may only stand alone in an attachment's Content")
        href = include.get("href") or ""
        if not href.startswith("cid:"):
            raise MalformedRequest("an xop:Include must refer to a part by cid:")
        # Each part once: a part referred to twice would count once and be stored twice.
        part = by_id.pop(unquote(href[4:]), None)
        if part is None:
            raise MalformedRequest(
                "an xop:Include refers to a part that is not in the request, or again"
            )
        content = _decoded(part)
        total += len(content)
        check_binary_total(total, limits)
        element.remove(include)
        element.text = None
        found[envelope.getroottree().getpath(element)] = content
    return GuardedRequest(envelope, found, mtom=True)


def _read_body(stream: Any, length: int | None, limit: int) -> bytearray:
    body = bytearray()
    while True:
        want = BLOCK_BYTES if length is None else min(BLOCK_BYTES, length - len(body))
        block = stream.read(want) if want > 0 else b""
        if not block:
            break
        body += block
        if len(body) > limit:
            raise MessageTooLarge(too_large(limit))
    if length is not None and len(body) < length:
        raise MalformedRequest("the request body is shorter than its Content-Length")
    return body


def _split(body: bytearray, boundary: bytes) -> list[_Part]:
    """The parts between `--boundary` lines, their content as views into `body`."""
    view = memoryview(body)
    delimiter = b"--" + boundary
    position = body.find(delimiter)
    if position < 0:
        raise MalformedRequest("the multipart request has no part with its boundary")
    parts: list[_Part] = []
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            return parts  # the closing delimiter
        line_end = body.find(b"\r\n", position)
        headers_end = body.find(b"\r\n\r\n", position)
        if line_end < 0 or headers_end < 0 or headers_end - line_end > MAX_HEADER_BYTES:
            raise MalformedRequest("a part of the multipart request has no complete headers")
        headers = BytesHeaderParser().parsebytes(bytes(body[line_end + 2 : headers_end + 4]))
        content_start = headers_end + 4
        next_delimiter = body.find(b"\r\n" + delimiter, content_start)
        if next_delimiter < 0:
            raise MalformedRequest("the multipart request ends without its closing boundary")
        parts.append(_Part(headers, view[content_start:next_delimiter]))
        if len(parts) > MAX_PARTS:
            raise MalformedRequest(f"the multipart request has more than {MAX_PARTS} parts")
        position = next_delimiter + 2


def _root_part(parts: list[_Part], start: str | None) -> _Part:
    if not parts:
        raise MalformedRequest("the multipart request has no parts")
    if start is None:
        return parts[0]
    for part in parts:
        if part.content_id == start:
            return part
    raise MalformedRequest("the multipart request has no part named by its start parameter")


def _decoded(part: _Part) -> bytes:
    encoding = str(part.headers.get("content-transfer-encoding") or "binary").strip().lower()
    if encoding in ("binary", "8bit", "7bit"):
        return bytes(part.content)
    if encoding == "base64":
        try:
            return base64.b64decode(bytes(part.content), validate=False)
        except (binascii.Error, ValueError):
            raise MalformedRequest("an MTOM part is not valid base64") from None
    raise MalformedRequest(f"an MTOM part has an unknown transfer encoding {encoding[:20]!r}")
