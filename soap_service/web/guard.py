"""The request guard: what every SOAP request passes before Spyne sees it.

- The body is read in blocks and fed to the XML parser as it arrives: it is never held
  whole as bytes, and reading stops as soon as it passes the size limit (a declared
  Content-Length over the limit is refused before reading anything).
- A DOCTYPE (the door to XXE and entity expansion) is refused by looking at the prolog
  before the parser gets a byte; the parser itself loads no DTD, resolves no entity and
  touches no network.
- libxml2 refuses text nodes over 10 MB unless asked for "huge" trees, and a 30 MB
  attachment is 40 MB of base64: huge trees are allowed, the size limit bounds them.
- Elements are counted, and their depth and attributes bounded, as they are parsed; the
  decoded size of attachments is added up as each one completes.
- The envelope must be SOAP 1.1 with exactly one operation element in its Body.

This module is the entry: it reads the headers and sends the body to envelope.py (the
parsing within the limits) or, for MTOM, to mtom.py.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from email.message import Message
from typing import Any

from soap_service.errors import (
    MalformedRequest,
    MessageTooLarge,
    UnsupportedMediaType,
    VersionMismatch,
)
from soap_service.web.encoding import Charset
from soap_service.web.envelope import (
    BLOCK_BYTES,
    GuardedRequest,
    GuardLimits,
    parse_envelope,
    too_large,
)
from soap_service.web.mtom import read_mtom

__all__ = [
    "GuardLimits",
    "GuardedRequest",
    "content_type_of",
    "declared_length",
    "discard_body",
    "read_envelope",
]


def content_type_of(environ: Mapping[str, Any]) -> tuple[str, Charset]:
    return _parse_content_type(environ.get("CONTENT_TYPE", ""))


# A client sends the same few Content-Type values again and again, and the email
# package's parser costs more than the rest of the guard's header work.
@functools.lru_cache(maxsize=256)
def _parse_content_type(value: str) -> tuple[str, Charset]:
    header = Message()
    header["content-type"] = value
    return header.get_content_type(), header.get_param("charset")


def declared_length(environ: Mapping[str, Any]) -> int | None:
    """The Content-Length, None for a chunked request; refuses a malformed value."""
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise MalformedRequest("the Content-Length header is not a number")
    return int(raw)


def read_envelope(environ: Mapping[str, Any], limits: GuardLimits) -> GuardedRequest:
    """Read, size-check and parse the request body: text/xml, or MTOM/XOP."""
    mime_type, charset = content_type_of(environ)
    if mime_type == "application/soap+xml":
        raise VersionMismatch("SOAP 1.2 is not supported: send SOAP 1.1 with Content-Type text/xml")
    length = declared_length(environ)
    if length is not None and length > limits.max_request_bytes:
        raise MessageTooLarge(too_large(limits.max_request_bytes))
    if length == 0:
        raise MalformedRequest("the request body is empty")
    if mime_type == "multipart/related":
        return read_mtom(environ, length, limits)
    if mime_type != "text/xml":
        raise UnsupportedMediaType(
            "a SOAP 1.1 request must have Content-Type text/xml (or multipart/related for MTOM)"
        )
    root, _ = parse_envelope(environ["wsgi.input"], length, charset, limits)
    return GuardedRequest(root)


def discard_body(environ: Mapping[str, Any], limit: int) -> bool:
    """Read and drop up to `limit` bytes, so a client still sending can read our fault;
    whether the body's end was reached."""
    stream = environ["wsgi.input"]
    remaining = limit
    while remaining > 0:
        block = stream.read(min(BLOCK_BYTES, remaining))
        if not block:
            return True
        remaining -= len(block)
    return not stream.read(1)
